//! Rewrite rules as data: `name: (gelu (layer_norm ?x ?g ?b ?eps)) =>
//! (fused_layer_norm_gelu ?x ?g ?b ?eps)`, applied to a fixpoint.
//!
//! A pattern is an op name followed by its inputs (patterns, `?variables` bound to
//! values, or numbers, which stand for scalar constants) and then its scalar attributes
//! (numbers or `?variables` bound to numbers), in the order [`OpKind::scalar_attrs`]
//! lists them; `(constant ?c)` binds a scalar constant's value. `add`, `mul`, `max` and
//! `min` match their inputs in either order.
//!
//! An optional guard follows the right side: `if` and conditions that must all hold,
//! written as expressions over bound numbers — `(== (* 2 ?h) ?r)`, `(< ?eps 0.1)` —
//! with `(rank ?v)` and `(dim ?v axis)` reading a bound value's type (symbolic sizes
//! fail the guard). Code can add guards of any kind with [`Rule::with_guard`].
//!
//! A rule fires at a node when the left side matches there, every inner node of the
//! match is used only inside it (so fusing never duplicates work), its guards hold, and
//! the [`KernelSupport`] says every op of the right side can run; the right side is
//! then built and takes over the node's users.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId};
use crate::op::{BinaryOp, OpKind};
use crate::types::DType;

/// Whether a target can run an op on a type; the rewriter asks before a rule fires.
/// `autoglm-ops` implements it from its kernel registry.
pub trait KernelSupport {
    /// Whether `op` with results of type `dtype` has a kernel.
    fn supports(&self, op: &OpKind, dtype: DType) -> bool;
}

/// Every op is supported (for symbolic rewriting without a target).
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyKernel;

impl KernelSupport for AnyKernel {
    fn supports(&self, _: &OpKind, _: DType) -> bool {
        true
    }
}

/// One side of a rule (or a guard expression).
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// `?name`: any value (or attribute), the same wherever the name recurs.
    Var(String),
    /// A number: an attribute, or as an input a scalar constant of that value.
    Num(f64),
    /// An op applied to inputs, then attributes.
    Op {
        /// The op's name, as [`OpKind::name`] gives it.
        name: String,
        /// Inputs, then scalar attributes.
        args: Vec<Pattern>,
    },
}

impl Pattern {
    /// `?name`.
    pub fn var(name: &str) -> Pattern {
        Pattern::Var(name.to_owned())
    }

    /// `(name args…)`.
    pub fn op(name: &str, args: impl IntoIterator<Item = Pattern>) -> Pattern {
        Pattern::Op {
            name: name.to_owned(),
            args: args.into_iter().collect(),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Var(v) => write!(f, "?{v}"),
            Pattern::Num(x) => write!(f, "{x:?}"),
            Pattern::Op { name, args } => {
                write!(f, "({name}")?;
                for a in args {
                    write!(f, " {a}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// What a left side bound: values by variable name and numbers by variable name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Match {
    /// Variables bound to values (nodes).
    pub values: BTreeMap<String, NodeId>,
    /// Variables bound to numbers (attributes, constants).
    pub numbers: BTreeMap<String, f64>,
    /// The nodes the left side's ops matched, root first.
    pub nodes: Vec<NodeId>,
}

/// A guard written in code: whether the rule may fire on this match.
pub type GuardFn = Arc<dyn Fn(&Graph, &Match) -> bool + Send + Sync>;

/// A rewrite rule.
#[derive(Clone)]
pub struct Rule {
    /// Its name, used in reports.
    pub name: String,
    lhs: Pattern,
    rhs: Pattern,
    guards: Vec<Pattern>,
    code_guards: Vec<GuardFn>,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rule({self}")?;
        if !self.code_guards.is_empty() {
            write!(f, " + {} code guards", self.code_guards.len())?;
        }
        f.write_str(")")
    }
}

impl fmt::Display for Rule {
    /// The text form [`Rule::parse`] reads (code guards are not shown; a name that
    /// the text form could not carry, such as an unnamed rule's text, is left out).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = &self.name;
        let nameable = !n.is_empty()
            && n.trim() == n
            && !n.contains(['(', ')', ':', '\n', '#'])
            && !n.contains("=>");
        if nameable {
            write!(f, "{n}: ")?;
        }
        write!(f, "{} => {}", self.lhs, self.rhs)?;
        if !self.guards.is_empty() {
            f.write_str(" if")?;
            for g in &self.guards {
                write!(f, " {g}")?;
            }
        }
        Ok(())
    }
}

/// What [`apply_rules`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Times each rule fired, by name.
    pub fired: BTreeMap<String, usize>,
    /// Passes over the graph (the last one changed nothing, unless the limit hit).
    pub passes: usize,
    /// Whether the pass limit stopped it before a fixpoint.
    pub hit_limit: bool,
}

impl Report {
    /// Rewrites in total.
    pub fn total(&self) -> usize {
        self.fired.values().sum()
    }
}

fn tokens(text: &str) -> Vec<String> {
    text.replace('(', " ( ")
        .replace(')', " ) ")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// One s-expression, unchecked.
fn parse_sexpr(toks: &[String], pos: &mut usize) -> std::result::Result<Pattern, String> {
    let t = toks.get(*pos).ok_or("unexpected end of the pattern")?;
    *pos += 1;
    if t == "(" {
        let name = toks.get(*pos).ok_or("an op name must follow '('")?.clone();
        if name == "(" || name == ")" {
            return Err(format!("an op name must follow '(', got '{name}'"));
        }
        *pos += 1;
        let mut args = Vec::new();
        while toks.get(*pos).map(String::as_str) != Some(")") {
            if *pos >= toks.len() {
                return Err(format!("'({name}' is not closed"));
            }
            args.push(parse_sexpr(toks, pos)?);
        }
        *pos += 1;
        Ok(Pattern::Op { name, args })
    } else if t == ")" {
        Err("unexpected ')'".into())
    } else if let Some(v) = t.strip_prefix('?') {
        if v.is_empty() {
            return Err("'?' needs a variable name".into());
        }
        Ok(Pattern::Var(v.to_owned()))
    } else {
        t.parse::<f64>()
            .map(Pattern::Num)
            .map_err(|_| format!("'{t}' is neither '(', a ?variable nor a number"))
    }
}

/// Checks that every op of a side exists and gets the right arguments; right sides may
/// compute attributes with guard expressions.
fn check_pattern(p: &Pattern, rhs: bool) -> std::result::Result<(), String> {
    let Pattern::Op { name, args } = p else {
        return Ok(());
    };
    let (n_in, n_attr) =
        OpKind::rule_signature(name, args.len()).ok_or_else(|| format!("unknown op '{name}'"))?;
    if args.len() != n_in + n_attr {
        return Err(format!(
            "'{name}' takes {n_in} inputs and {n_attr} attributes, got {} arguments",
            args.len()
        ));
    }
    for a in &args[n_in..] {
        match a {
            Pattern::Op { .. } if rhs => check_guard(a)?,
            Pattern::Op { .. } => {
                return Err(format!(
                    "an attribute of '{name}' is an op; attributes are numbers or ?variables"
                ))
            }
            _ => {}
        }
    }
    args[..n_in].iter().try_for_each(|a| check_pattern(a, rhs))
}

const GUARD_OPS: [(&str, usize); 14] = [
    ("==", 2),
    ("!=", 2),
    ("<", 2),
    ("<=", 2),
    (">", 2),
    (">=", 2),
    ("+", 2),
    ("-", 2),
    ("*", 2),
    ("/", 2),
    ("not", 1),
    ("abs", 1),
    ("rank", 1),
    ("dim", 2),
];

fn check_guard(p: &Pattern) -> std::result::Result<(), String> {
    let Pattern::Op { name, args } = p else {
        return Ok(());
    };
    let ok = match name.as_str() {
        "and" | "or" => !args.is_empty(),
        n => GUARD_OPS.iter().any(|(g, k)| *g == n && *k == args.len()),
    };
    if !ok {
        return Err(format!(
            "guard '({name} …)' with {} arguments is not one of and/or, {}",
            args.len(),
            GUARD_OPS
                .iter()
                .map(|(g, k)| format!("{g}/{k}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    args.iter().try_for_each(check_guard)
}

fn vars(p: &Pattern, out: &mut Vec<String>) {
    match p {
        Pattern::Var(v) => out.push(v.clone()),
        Pattern::Num(_) => {}
        Pattern::Op { args, .. } => args.iter().for_each(|a| vars(a, out)),
    }
}

impl Rule {
    /// A rule from patterns built in code, checked as [`Rule::parse`] checks text.
    ///
    /// # Errors
    /// [`Error::Rule`] as for [`Rule::parse`].
    pub fn new(name: &str, lhs: Pattern, rhs: Pattern) -> Result<Rule> {
        Rule::checked(name.to_owned(), lhs, rhs, Vec::new())
            .map_err(|m| Error::Rule(format!("'{name}': {m}")))
    }

    fn checked(
        name: String,
        lhs: Pattern,
        rhs: Pattern,
        guards: Vec<Pattern>,
    ) -> std::result::Result<Rule, String> {
        check_pattern(&lhs, false)?;
        check_pattern(&rhs, true)?;
        guards.iter().try_for_each(check_guard)?;
        if !matches!(lhs, Pattern::Op { .. }) {
            return Err("the left side must be an op".into());
        }
        let (mut lv, mut rv) = (Vec::new(), Vec::new());
        vars(&lhs, &mut lv);
        vars(&rhs, &mut rv);
        guards.iter().for_each(|g| vars(g, &mut rv));
        if let Some(v) = rv.iter().find(|v| !lv.contains(v)) {
            return Err(format!("?{v} is not bound by the left side"));
        }
        Ok(Rule {
            name,
            lhs,
            rhs,
            guards,
            code_guards: Vec::new(),
        })
    }

    /// Adds a guard written in code; the rule fires only where it returns true.
    #[must_use]
    pub fn with_guard(mut self, guard: GuardFn) -> Rule {
        self.code_guards.push(guard);
        self
    }

    /// The left side.
    pub fn lhs(&self) -> &Pattern {
        &self.lhs
    }

    /// The right side.
    pub fn rhs(&self) -> &Pattern {
        &self.rhs
    }

    /// Parses `name: lhs => rhs [if guard…]` (the name is optional).
    ///
    /// # Errors
    /// [`Error::Rule`] saying what is wrong: syntax, an unknown op, a wrong argument
    /// count, a left side that is not an op, or a right-side or guard variable the left
    /// side does not bind.
    pub fn parse(text: &str) -> Result<Rule> {
        let err = |m: String| Error::Rule(format!("'{}': {m}", text.trim()));
        let (name, body) = match text.split_once(':') {
            Some((n, b)) if !n.contains('(') && !n.contains("=>") => (n.trim().to_owned(), b),
            _ => (String::new(), text),
        };
        let (l, r) = body
            .split_once("=>")
            .ok_or_else(|| err("a rule is 'lhs => rhs'".into()))?;
        let lt = tokens(l);
        let mut pos = 0;
        let lhs = parse_sexpr(&lt, &mut pos).map_err(&err)?;
        if pos != lt.len() {
            return Err(err(format!("unexpected '{}' after the pattern", lt[pos])));
        }
        let rt = tokens(r);
        let mut pos = 0;
        let rhs = parse_sexpr(&rt, &mut pos).map_err(&err)?;
        let mut guards = Vec::new();
        if pos < rt.len() {
            if rt[pos] != "if" {
                return Err(err(format!(
                    "unexpected '{}' after the pattern (a guard starts with 'if')",
                    rt[pos]
                )));
            }
            pos += 1;
            if pos == rt.len() {
                return Err(err("'if' needs at least one condition".into()));
            }
            while pos < rt.len() {
                guards.push(parse_sexpr(&rt, &mut pos).map_err(&err)?);
            }
        }
        let name = if name.is_empty() {
            text.trim().to_owned()
        } else {
            name
        };
        Rule::checked(name, lhs, rhs, guards).map_err(err)
    }

    /// Parses one rule per line; blank lines and lines starting with `#` are skipped.
    ///
    /// # Errors
    /// [`Error::Rule`] naming the line.
    pub fn parse_set(text: &str) -> Result<Vec<Rule>> {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map(|(i, l)| {
                Rule::parse(l).map_err(|e| match e {
                    Error::Rule(m) => Error::Rule(format!("line {}: {m}", i + 1)),
                    other => other,
                })
            })
            .collect()
    }

    /// The match of the left side at `root`, if it matches there, uses no inner node
    /// from outside, and its guards hold.
    pub fn matches(&self, g: &Graph, root: NodeId) -> Option<Match> {
        let mut m = Match::default();
        if !matches_at(g, root, &self.lhs, &mut m) {
            return None;
        }
        // Inner nodes must be used only inside the match (and not be graph outputs);
        // constants may be shared, as they cost nothing to keep.
        let inside = |n: &NodeId| m.nodes.contains(n);
        for &n in &m.nodes[1..] {
            if matches!(g.node(n).ok()?.op, OpKind::Constant { .. }) {
                continue;
            }
            if g.outputs().contains(&n) || !g.users(n).ok()?.iter().all(|(u, _)| inside(u)) {
                return None;
            }
        }
        let guards_hold = self.guards.iter().all(|e| eval(g, &m, e) == Some(1.0))
            && self.code_guards.iter().all(|f| f(g, &m));
        guards_hold.then_some(m)
    }
}

fn bind_value(m: &mut Match, v: &str, n: NodeId) -> bool {
    if m.numbers.contains_key(v) {
        return false;
    }
    *m.values.entry(v.to_owned()).or_insert(n) == n
}

fn bind_number(m: &mut Match, v: &str, x: f64) -> bool {
    if m.values.contains_key(v) {
        return false;
    }
    *m.numbers.entry(v.to_owned()).or_insert(x) == x
}

/// Constants in patterns match within a relative 1e-6 (decimal literals of 1/√2 and
/// the like).
fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

fn commutative(op: &OpKind) -> bool {
    matches!(
        op,
        OpKind::Binary {
            f: BinaryOp::Add | BinaryOp::Mul | BinaryOp::Max | BinaryOp::Min
        }
    )
}

fn matches_at(g: &Graph, n: NodeId, p: &Pattern, m: &mut Match) -> bool {
    let Ok(node) = g.node(n) else { return false };
    match p {
        Pattern::Var(v) => bind_value(m, v, n),
        Pattern::Num(x) => matches!(node.op, OpKind::Constant { value, .. } if close(value, *x)),
        Pattern::Op { name, args } => {
            if node.op.name() != *name {
                return false;
            }
            let (Ok(inputs), Some(attrs)) = (g.inputs(n), node.op.scalar_attrs()) else {
                return false;
            };
            let (pin, pattr) = args.split_at(inputs.len().min(args.len()));
            if pin.len() != inputs.len() || pattr.len() != attrs.len() {
                return false;
            }
            let attrs_ok = pattr.iter().zip(&attrs).all(|(p, &a)| match p {
                Pattern::Num(x) => *x == a,
                Pattern::Var(v) => bind_number(m, v, a),
                Pattern::Op { .. } => false,
            });
            if !attrs_ok {
                return false;
            }
            m.nodes.push(n);
            let orders: &[[usize; 2]] = if commutative(&node.op) {
                &[[0, 1], [1, 0]]
            } else {
                &[[0, 1]]
            };
            if inputs.len() != 2 {
                return pin
                    .iter()
                    .zip(&inputs)
                    .all(|(p, &i)| matches_at(g, i, p, m));
            }
            for order in orders {
                let mut trial = m.clone();
                if order
                    .iter()
                    .zip(pin)
                    .all(|(&k, p)| matches_at(g, inputs[k], p, &mut trial))
                {
                    *m = trial;
                    return true;
                }
            }
            false
        }
    }
}

/// A guard expression's value (booleans are 1 and 0); `None` if it cannot be computed
/// (a symbolic size, an unbound name).
fn eval(g: &Graph, m: &Match, e: &Pattern) -> Option<f64> {
    let b = |x: bool| f64::from(u8::from(x));
    match e {
        Pattern::Num(x) => Some(*x),
        Pattern::Var(v) => m.numbers.get(v).copied(),
        Pattern::Op { name, args } => {
            let ty = |a: &Pattern| match a {
                Pattern::Var(v) => Some(&g.node(*m.values.get(v)?).ok()?.ty),
                _ => None,
            };
            if name == "rank" {
                return Some(ty(&args[0])?.rank() as f64);
            }
            if name == "dim" {
                let t = ty(&args[0])?;
                let a = eval(g, m, &args[1])? as i64;
                let i = if a < 0 { a + t.rank() as i64 } else { a };
                return t
                    .shape
                    .get(usize::try_from(i).ok()?)?
                    .known()
                    .map(|d| d as f64);
            }
            let vals = args
                .iter()
                .map(|a| eval(g, m, a))
                .collect::<Option<Vec<f64>>>()?;
            Some(match (name.as_str(), vals.as_slice()) {
                ("and", v) => b(v.iter().all(|&x| x != 0.0)),
                ("or", v) => b(v.iter().any(|&x| x != 0.0)),
                ("not", &[x]) => b(x == 0.0),
                ("abs", &[x]) => x.abs(),
                ("==", &[x, y]) => b(x == y),
                ("!=", &[x, y]) => b(x != y),
                ("<", &[x, y]) => b(x < y),
                ("<=", &[x, y]) => b(x <= y),
                (">", &[x, y]) => b(x > y),
                (">=", &[x, y]) => b(x >= y),
                ("+", &[x, y]) => x + y,
                ("-", &[x, y]) => x - y,
                ("*", &[x, y]) => x * y,
                ("/", &[x, y]) => x / y,
                _ => return None,
            })
        }
    }
}

/// The scalar attributes a pattern's attribute arguments resolve to.
fn attrs_of(g: &Graph, args: &[Pattern], m: &Match) -> Option<Vec<f64>> {
    args.iter().map(|a| eval(g, m, a)).collect()
}

/// The ops of a right side with their attributes resolved, outermost first.
fn rhs_ops(g: &Graph, p: &Pattern, m: &Match, dtype: DType, out: &mut Vec<OpKind>) -> Option<()> {
    if let Pattern::Op { name, args } = p {
        let (n_in, _) = OpKind::rule_signature(name, args.len())?;
        out.push(OpKind::from_name(
            name,
            &attrs_of(g, &args[n_in..], m)?,
            dtype,
        )?);
        for a in &args[..n_in] {
            rhs_ops(g, a, m, dtype, out)?;
        }
    }
    Some(())
}

/// Adds the nodes of a right side; they are recomputed ones if the node they replace
/// is.
fn build(g: &mut Graph, p: &Pattern, m: &Match, dtype: DType, recompute: bool) -> Option<NodeId> {
    match p {
        Pattern::Var(v) => m.values.get(v).copied(),
        Pattern::Num(x) => g.constant(*x, dtype).ok(),
        Pattern::Op { name, args } => {
            let (n_in, _) = OpKind::rule_signature(name, args.len())?;
            let inputs = args[..n_in]
                .iter()
                .map(|a| build(g, a, m, dtype, recompute))
                .collect::<Option<Vec<_>>>()?;
            let attrs = attrs_of(g, &args[n_in..], m)?;
            let n = g
                .add(OpKind::from_name(name, &attrs, dtype)?, &inputs)
                .ok()?;
            g.set_recompute(n, recompute).ok()?;
            Some(n)
        }
    }
}

/// Applies `rules` until none fires (or `max_passes` passes), removing what they leave
/// unused after each pass.
///
/// # Errors
/// [`Error::Invalid`] if the graph has a cycle.
pub fn apply_rules(
    g: &mut Graph,
    rules: &[Rule],
    support: &dyn KernelSupport,
    max_passes: usize,
) -> Result<Report> {
    let mut report = Report::default();
    while report.passes < max_passes {
        report.passes += 1;
        let mut changed = false;
        for n in g.topo_order()? {
            for rule in rules {
                if g.node(n).is_err() {
                    break;
                }
                if try_rule(g, rule, n, support)? {
                    *report.fired.entry(rule.name.clone()).or_default() += 1;
                    changed = true;
                    break;
                }
            }
        }
        g.eliminate_dead_code();
        if !changed {
            return Ok(report);
        }
    }
    report.hit_limit = true;
    Ok(report)
}

/// Fires `rule` at `n` if it applies; whether it did.
fn try_rule(g: &mut Graph, rule: &Rule, n: NodeId, support: &dyn KernelSupport) -> Result<bool> {
    let Some(m) = rule.matches(g, n) else {
        return Ok(false);
    };
    let (dtype, recompute) = (g.node(n)?.ty.dtype, g.node(n)?.recompute);
    let mut ops = Vec::new();
    if rhs_ops(g, &rule.rhs, &m, dtype, &mut ops).is_none()
        || !ops
            .iter()
            .filter(|op| !matches!(op, OpKind::Constant { .. }))
            .all(|op| support.supports(op, dtype))
    {
        return Ok(false);
    }
    let Some(new) = build(g, &rule.rhs, &m, dtype, recompute) else {
        return Ok(false);
    };
    Ok(new != n && g.replace_uses(n, new).is_ok())
}

/// The built-in rules: decomposed norms and activations recognised as single ops,
/// then fusions.
pub fn builtin_rules() -> Vec<Rule> {
    Rule::parse_set(BUILTIN_RULES).expect("built-in rules parse")
}

/// The text of [`builtin_rules`] (one rule per line).
pub const BUILTIN_RULES: &str = "\
# Decomposed activations become single ops.
gelu_erf: (mul (mul ?x 0.5) (add (erf (mul ?x 0.7071067811865476)) 1)) => (gelu ?x)
gelu_erf_div: (mul (mul ?x 0.5) (add (erf (div ?x 1.4142135623730951)) 1)) => (gelu ?x)
gelu_erf_outer: (mul ?x (mul 0.5 (add (erf (mul ?x 0.7071067811865476)) 1))) => (gelu ?x)
gelu_tanh: (mul (mul ?x 0.5) (add (tanh (mul (add ?x (mul (pow ?x 3) 0.044715)) 0.7978845608028654)) 1)) => (gelu_tanh ?x)
silu: (mul ?x (sigmoid ?x)) => (silu ?x)
silu_exp: (div ?x (add (exp (neg ?x)) 1)) => (silu ?x)
# Decomposed norms over the last axis become single ops.
rms_norm: (mul (mul ?x (rsqrt (add (reduce_mean (pow ?x 2) -1 1) (constant ?eps)))) ?g) => (rms_norm ?x ?g ?eps) if (== (rank ?g) 1)
rms_norm_sq: (mul (mul ?x (rsqrt (add (reduce_mean (mul ?x ?x) -1 1) (constant ?eps)))) ?g) => (rms_norm ?x ?g ?eps) if (== (rank ?g) 1)
layer_norm: (add (mul (div (sub ?x (reduce_mean ?x -1 1)) (sqrt (add (reduce_mean (pow (sub ?x (reduce_mean ?x -1 1)) 2) -1 1) (constant ?eps)))) ?g) ?b) => (layer_norm ?x ?g ?b ?eps) if (== (rank ?g) 1) (== (rank ?b) 1)
# Fusions.
fuse_layer_norm_gelu: (gelu (layer_norm ?x ?g ?b ?eps)) => (fused_layer_norm_gelu ?x ?g ?b ?eps)
swiglu: (mul (silu ?g) ?u) => (swiglu ?g ?u)
linear: (add (matmul ?x ?w) ?b) => (linear ?x ?w ?b) if (== (rank ?w) 2) (== (rank ?b) 1)
attention: (matmul (softmax (add (mul (matmul ?q ?kt) (constant ?s)) ?m) -1) ?v) => (attention ?q ?kt ?v ?m ?s)
attention_div: (matmul (softmax (add (div (matmul ?q ?kt) (constant ?s)) ?m) -1) ?v) => (attention ?q ?kt ?v ?m (/ 1 ?s))
# Attention over cached keys [b, h, s, d]: no transposed copy, no repeated key/value heads.
grouped_attention: (attention ?q (permute (repeat_interleave ?k 1 ?g) 0 1 3 2) (repeat_interleave ?v 1 ?g) ?m ?s) => (grouped_attention ?q ?k ?v ?m ?s)
attention_keys: (attention ?q (permute ?k 0 1 3 2) ?v ?m ?s) => (grouped_attention ?q ?k ?v ?m ?s)
# Rotary embedding (halves rotated): on the whole last axis, then on a leading part.
rope: (add (mul ?x ?cos) (mul (concat (neg (slice ?x -1 ?h ?r)) (slice ?x -1 0 ?h) -1) ?sin)) => (rope ?x ?cos ?sin ?r) if (== (* 2 ?h) ?r) (== ?r (dim ?x -1))
rope_partial: (concat (rope (slice ?x -1 0 ?r) ?cos ?sin ?r) (slice ?x -1 ?r ?d) -1) => (rope ?x ?cos ?sin ?r) if (< ?r ?d) (== ?d (dim ?x -1))
";
