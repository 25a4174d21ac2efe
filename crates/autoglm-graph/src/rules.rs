//! Rewrite rules as data: `name: (gelu (layer_norm ?x ?g ?b ?eps)) => (fused_layer_norm_gelu
//! ?x ?g ?b ?eps)`, applied to a fixpoint.
//!
//! A pattern is an op name followed by its inputs (patterns or `?variables` bound to
//! values) and then its scalar attributes (numbers or `?variables` bound to numbers), in
//! the order [`OpKind::scalar_attrs`] lists them. A rule fires at a node when the
//! left side matches there, every inner node of the match is used only inside it (so
//! fusing never duplicates work), and the [`KernelSupport`] says every op of the right
//! side can run; the right side is then built and takes over the node's users.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId};
use crate::op::OpKind;
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

/// One side of a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// `?name`: any value (or attribute), the same wherever the name recurs.
    Var(String),
    /// A number (an attribute).
    Num(f64),
    /// An op applied to inputs, then attributes.
    Op {
        /// The op's name, as [`OpKind::name`] gives it.
        name: String,
        /// Inputs, then scalar attributes.
        args: Vec<Pattern>,
    },
}

/// A rewrite rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Its name, used in reports.
    pub name: String,
    lhs: Pattern,
    rhs: Pattern,
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

#[derive(Clone, Copy, PartialEq)]
enum Bound {
    Value(NodeId),
    Num(f64),
}

fn tokens(text: &str) -> Vec<String> {
    text.replace('(', " ( ")
        .replace(')', " ) ")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn parse_pattern(toks: &[String], pos: &mut usize) -> std::result::Result<Pattern, String> {
    let t = toks.get(*pos).ok_or("unexpected end of the pattern")?;
    *pos += 1;
    if t == "(" {
        let name = toks.get(*pos).ok_or("an op name must follow '('")?.clone();
        *pos += 1;
        let mut args = Vec::new();
        while toks.get(*pos).map(String::as_str) != Some(")") {
            if *pos >= toks.len() {
                return Err(format!("'({name}' is not closed"));
            }
            args.push(parse_pattern(toks, pos)?);
        }
        *pos += 1;
        // The op must exist and take this many inputs plus attributes.
        let (n_in, n_attr) = signature(&name).ok_or_else(|| format!("unknown op '{name}'"))?;
        if args.len() != n_in + n_attr {
            return Err(format!(
                "'{name}' takes {n_in} inputs and {n_attr} attributes, got {} arguments",
                args.len()
            ));
        }
        if args[..n_in].iter().any(|a| matches!(a, Pattern::Num(_))) {
            return Err(format!(
                "an input of '{name}' is a number; inputs are patterns or ?variables"
            ));
        }
        if args[n_in..].iter().any(|a| matches!(a, Pattern::Op { .. })) {
            return Err(format!(
                "an attribute of '{name}' is an op; attributes are numbers or ?variables"
            ));
        }
        Ok(Pattern::Op { name, args })
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

/// Inputs and scalar attributes of the op called `name`, if rules can use it.
fn signature(name: &str) -> Option<(usize, usize)> {
    (0..=1).find_map(|k| {
        let op = OpKind::from_name(name, &vec![0.0; k])?;
        Some((op.arity()?, k))
    })
}

fn vars(p: &Pattern, out: &mut Vec<String>) {
    match p {
        Pattern::Var(v) => out.push(v.clone()),
        Pattern::Num(_) => {}
        Pattern::Op { args, .. } => args.iter().for_each(|a| vars(a, out)),
    }
}

impl Rule {
    /// Parses `name: lhs => rhs` (the name is optional).
    ///
    /// # Errors
    /// [`Error::Rule`] saying what is wrong: syntax, an unknown op, a wrong argument
    /// count, a left side that is not an op, or a right-side variable the left side
    /// does not bind.
    pub fn parse(text: &str) -> Result<Rule> {
        let err = |m: String| Error::Rule(format!("'{}': {m}", text.trim()));
        let (name, body) = match text.split_once(':') {
            Some((n, b)) if !n.contains('(') => (n.trim().to_owned(), b),
            _ => (String::new(), text),
        };
        let (l, r) = body
            .split_once("=>")
            .ok_or_else(|| err("a rule is 'lhs => rhs'".into()))?;
        let side = |s: &str| -> Result<Pattern> {
            let toks = tokens(s);
            let mut pos = 0;
            let p = parse_pattern(&toks, &mut pos).map_err(&err)?;
            if pos != toks.len() {
                return Err(err(format!("unexpected '{}' after the pattern", toks[pos])));
            }
            Ok(p)
        };
        let (lhs, rhs) = (side(l)?, side(r)?);
        if !matches!(lhs, Pattern::Op { .. }) {
            return Err(err("the left side must be an op".into()));
        }
        let (mut lv, mut rv) = (Vec::new(), Vec::new());
        vars(&lhs, &mut lv);
        vars(&rhs, &mut rv);
        if let Some(v) = rv.iter().find(|v| !lv.contains(v)) {
            return Err(err(format!("?{v} is not bound by the left side")));
        }
        let name = if name.is_empty() {
            text.trim().to_owned()
        } else {
            name
        };
        Ok(Rule { name, lhs, rhs })
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

    fn matches(&self, g: &Graph, root: NodeId) -> Option<BTreeMap<String, Bound>> {
        let mut b = BTreeMap::new();
        matches_at(g, root, &self.lhs, true, &mut b).then_some(b)
    }
}

fn bind(b: &mut BTreeMap<String, Bound>, v: &str, x: Bound) -> bool {
    match b.get(v) {
        Some(old) => *old == x,
        None => {
            b.insert(v.to_owned(), x);
            true
        }
    }
}

fn matches_at(
    g: &Graph,
    n: NodeId,
    p: &Pattern,
    root: bool,
    b: &mut BTreeMap<String, Bound>,
) -> bool {
    match p {
        Pattern::Var(v) => bind(b, v, Bound::Value(n)),
        Pattern::Num(_) => false,
        Pattern::Op { name, args } => {
            let Ok(node) = g.node(n) else { return false };
            if node.op.name() != *name {
                return false;
            }
            // Inner nodes must not be used outside the match (nor be graph outputs).
            if !root && (g.users(n).map_or(true, |u| u.len() != 1) || g.outputs().contains(&n)) {
                return false;
            }
            let (Ok(inputs), Some(attrs)) = (g.inputs(n), node.op.scalar_attrs()) else {
                return false;
            };
            let (pin, pattr) = args.split_at(inputs.len().min(args.len()));
            pin.len() == inputs.len()
                && pattr.len() == attrs.len()
                && pin
                    .iter()
                    .zip(&inputs)
                    .all(|(p, &i)| matches_at(g, i, p, false, b))
                && pattr.iter().zip(&attrs).all(|(p, &a)| match p {
                    Pattern::Num(x) => *x == a,
                    Pattern::Var(v) => bind(b, v, Bound::Num(a)),
                    Pattern::Op { .. } => false,
                })
        }
    }
}

/// The scalar attributes a pattern's attribute arguments resolve to.
fn attrs_of(args: &[Pattern], b: &BTreeMap<String, Bound>) -> Option<Vec<f64>> {
    args.iter()
        .map(|a| match a {
            Pattern::Num(x) => Some(*x),
            Pattern::Var(v) => match b.get(v)? {
                Bound::Num(x) => Some(*x),
                Bound::Value(_) => None,
            },
            Pattern::Op { .. } => None,
        })
        .collect()
}

/// The ops of a right side with their attributes resolved, outermost first.
fn rhs_ops(p: &Pattern, b: &BTreeMap<String, Bound>, out: &mut Vec<OpKind>) -> Option<()> {
    if let Pattern::Op { name, args } = p {
        let (n_in, _) = signature(name)?;
        out.push(OpKind::from_name(name, &attrs_of(&args[n_in..], b)?)?);
        for a in &args[..n_in] {
            rhs_ops(a, b, out)?;
        }
    }
    Some(())
}

fn build(g: &mut Graph, p: &Pattern, b: &BTreeMap<String, Bound>) -> Option<NodeId> {
    match p {
        Pattern::Var(v) => match b.get(v)? {
            Bound::Value(n) => Some(*n),
            Bound::Num(_) => None,
        },
        Pattern::Num(_) => None,
        Pattern::Op { name, args } => {
            let (n_in, _) = signature(name)?;
            let inputs = args[..n_in]
                .iter()
                .map(|a| build(g, a, b))
                .collect::<Option<Vec<_>>>()?;
            let attrs = attrs_of(&args[n_in..], b)?;
            g.add(OpKind::from_name(name, &attrs)?, &inputs).ok()
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
                let Some(b) = rule.matches(g, n) else {
                    continue;
                };
                let dtype = g.node(n)?.ty.dtype;
                let mut ops = Vec::new();
                if rhs_ops(&rule.rhs, &b, &mut ops).is_none()
                    || !ops.iter().all(|op| support.supports(op, dtype))
                {
                    continue;
                }
                let Some(new) = build(g, &rule.rhs, &b) else {
                    continue;
                };
                if new == n || g.replace_uses(n, new).is_err() {
                    continue;
                }
                *report.fired.entry(rule.name.clone()).or_default() += 1;
                changed = true;
                break;
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

/// The built-in fusion rules.
pub fn builtin_rules() -> Vec<Rule> {
    Rule::parse_set(BUILTIN).expect("built-in rules parse")
}

const BUILTIN: &str = "\
# LayerNorm followed by (erf) GELU becomes one pass over the row.
fuse_layer_norm_gelu: (gelu (layer_norm ?x ?g ?b ?eps)) => (fused_layer_norm_gelu ?x ?g ?b ?eps)
";
