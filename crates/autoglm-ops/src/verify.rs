//! Rewrite rules verified by execution: the rule's left side is instantiated as a
//! small graph (its variables become inputs of shapes, and its number variables take
//! values, found by a search that keeps what type-checks and lets the rule fire), the
//! graph is run on random inputs before and after the rewrite, and the results are
//! compared within the element type's tolerance.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use autoglm_graph::{apply_rules, DType, Graph, NodeId, OpKind, Pattern, Rule, TensorType};

use crate::error::{Error, Result};
use crate::exec::{Executor, Options};
use crate::registry::{Device, Registry};
use crate::tensor::Tensor;

/// How to verify.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyOptions {
    /// Element types to check in (f32 always makes sense; f16/bf16 use looser
    /// tolerances).
    pub dtypes: Vec<DType>,
    /// Distinct instantiations (shapes and attribute values) to check per type.
    pub instances: usize,
    /// Random inputs per instantiation.
    pub trials: usize,
    /// Seed of the random inputs.
    pub seed: u64,
    /// Graphs tried before giving up on finding instantiations where the rule fires.
    pub max_attempts: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            dtypes: vec![DType::F32],
            instances: 3,
            trials: 3,
            seed: 0,
            max_attempts: 20_000,
        }
    }
}

/// The outcome of verifying one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleCheck {
    /// The rule's name.
    pub rule: String,
    /// The element type checked.
    pub dtype: DType,
    /// Instantiations where it fired and was compared.
    pub instances: usize,
    /// The input shapes and attribute values of the first instantiation, readable.
    pub example: String,
    /// The largest |before − after| over all elements, runs and types.
    pub max_abs_err: f64,
    /// The largest |before − after| / max |before| over the same.
    pub max_rel_err: f64,
    /// Whether every comparison was within tolerance.
    pub passed: bool,
}

/// Shapes the search assigns to value variables: ranks 1–3 over sizes 8, 4 and 2,
/// larger first (the first that fits wins), then a few of rank 4.
fn candidate_shapes() -> Vec<Vec<u64>> {
    let sizes = [8u64, 4, 2];
    let mut out: Vec<Vec<u64>> = Vec::new();
    for rank in 1..=3 {
        let mut idx = vec![0usize; rank];
        loop {
            out.push(idx.iter().map(|&i| sizes[i]).collect());
            let mut k = rank;
            while k > 0 {
                k -= 1;
                idx[k] += 1;
                if idx[k] < sizes.len() {
                    break;
                }
                idx[k] = 0;
            }
            if idx.iter().all(|&i| i == 0) {
                break;
            }
        }
    }
    // Size-1 rows broadcast against the others (degenerate sizes alone would make
    // weak checks: a LayerNorm over one element ignores its input).
    out.push(vec![1, 8]);
    // Attention heads `[b, h, t, d]` (with `t = d`, one shape serves all operands).
    out.push(vec![2, 4, 8, 8]);
    out
}

/// Values the search assigns to number variables.
const CANDIDATE_NUMBERS: [f64; 9] = [0.5, 1e-5, 4.0, 2.0, 8.0, -1.0, 0.125, 1.0, 0.0];

/// An assignment of the left side's variables.
#[derive(Clone, Default)]
struct Assign {
    shapes: BTreeMap<String, Vec<u64>>,
    numbers: BTreeMap<String, f64>,
}

/// Why building an instance stopped.
enum Stop {
    /// A variable needs a value.
    Need(String, bool),
    /// The assignment does not type-check.
    Bad,
}

/// Builds the left side with the assignment; inputs are named after the variables.
fn build(
    g: &mut Graph,
    p: &Pattern,
    a: &Assign,
    dtype: DType,
    nodes: &mut BTreeMap<String, NodeId>,
) -> std::result::Result<NodeId, Stop> {
    match p {
        Pattern::Var(v) => {
            if let Some(&n) = nodes.get(v) {
                return Ok(n);
            }
            let shape = a
                .shapes
                .get(v)
                .ok_or_else(|| Stop::Need(v.clone(), false))?;
            let n = g
                .input(v, TensorType::new(dtype, shape.iter().copied()))
                .map_err(|_| Stop::Bad)?;
            nodes.insert(v.clone(), n);
            Ok(n)
        }
        Pattern::Num(x) => g.constant(*x, dtype).map_err(|_| Stop::Bad),
        Pattern::Op { name, args } => {
            let (n_in, n_attr) = OpKind::rule_signature(name, args.len()).ok_or(Stop::Bad)?;
            let mut attrs = Vec::with_capacity(n_attr);
            for x in &args[n_in..] {
                attrs.push(match x {
                    Pattern::Num(x) => *x,
                    Pattern::Var(v) => *a
                        .numbers
                        .get(v)
                        .ok_or_else(|| Stop::Need(v.clone(), true))?,
                    Pattern::Op { .. } => return Err(Stop::Bad),
                });
            }
            // A constant's value is its attribute; it has no inputs.
            if name == "constant" {
                return g.constant(attrs[0], dtype).map_err(|_| Stop::Bad);
            }
            let mut ins = Vec::with_capacity(n_in);
            for x in &args[..n_in] {
                ins.push(build(g, x, a, dtype, nodes)?);
            }
            let op = OpKind::from_name(name, &attrs, dtype).ok_or(Stop::Bad)?;
            g.add(op, &ins).map_err(|_| Stop::Bad)
        }
    }
}

/// Searches assignments depth-first, calling `found` for each where the rule fires;
/// stops when `found` returns false or the attempt budget is spent.
/// With `uniform`, every value variable gets the shape of the first one (many rules
/// fire when all operands share a shape, and this finds them fast).
struct Search<'a> {
    rule: &'a Rule,
    registry: &'a Registry,
    dtype: DType,
    uniform: bool,
    /// Where the candidate lists start (varies between searches).
    rotate: usize,
}

fn search(
    s: &Search<'_>,
    a: &mut Assign,
    budget: &mut usize,
    found: &mut dyn FnMut(&Assign, Graph, Graph) -> bool,
) -> bool {
    let Search {
        rule,
        registry,
        dtype,
        uniform,
        rotate,
    } = *s;
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    let mut g = Graph::new();
    let mut nodes = BTreeMap::new();
    match build(&mut g, rule.lhs(), a, dtype, &mut nodes) {
        Ok(root) => {
            if g.set_outputs(&[root]).is_err() {
                return true;
            }
            let mut after = g.clone();
            let fired = apply_rules(
                &mut after,
                std::slice::from_ref(rule),
                &registry.support(Device::Cpu),
                4,
            )
            .map(|r| r.total() > 0)
            .unwrap_or(false);
            !fired || found(a, g, after)
        }
        Err(Stop::Bad) => true,
        Err(Stop::Need(v, number)) => {
            if number {
                // Later instances start from other values, for variety.
                let k = rotate;
                for i in 0..CANDIDATE_NUMBERS.len() {
                    let x = CANDIDATE_NUMBERS[(i + k) % CANDIDATE_NUMBERS.len()];
                    a.numbers.insert(v.clone(), x);
                    if !search(s, a, budget, found) {
                        return false;
                    }
                }
                a.numbers.remove(&v);
            } else {
                let shapes = match a.shapes.values().next() {
                    Some(first) if uniform => vec![first.clone()],
                    _ => {
                        let mut c = candidate_shapes();
                        let k = (rotate * 7) % c.len();
                        c.rotate_left(k);
                        c
                    }
                };
                for shape in shapes {
                    a.shapes.insert(v.clone(), shape);
                    if !search(s, a, budget, found) {
                        return false;
                    }
                }
                a.shapes.remove(&v);
            }
            true
        }
    }
}

/// Tolerances (absolute, relative to the largest reference magnitude) per type.
fn tolerance(dtype: DType) -> (f64, f64) {
    match dtype {
        DType::F16 => (2e-2, 2e-2),
        DType::BF16 => (1e-1, 5e-2),
        _ => (1e-5, 1e-4),
    }
}

/// Verifies one rule: finds up to `opts.instances` instantiations of its left side
/// where it fires (per element type), runs each before and after the rewrite on the
/// CPU with random inputs, and compares.
///
/// # Errors
/// [`Error::Verify`] if no instantiation where the rule fires was found within the
/// budget; kernel errors while running.
pub fn verify_rule(
    rule: &Rule,
    registry: &Registry,
    opts: &VerifyOptions,
) -> Result<Vec<RuleCheck>> {
    let mut checks = Vec::new();
    let failure: RefCell<Option<Error>> = RefCell::new(None);
    for &dtype in &opts.dtypes {
        let mut check = RuleCheck {
            rule: rule.name.clone(),
            dtype,
            instances: 0,
            example: String::new(),
            max_abs_err: 0.0,
            max_rel_err: 0.0,
            passed: true,
        };
        let (atol, rtol) = tolerance(dtype);
        let count = Cell::new(0usize);
        let mut seed = opts.seed;
        let mut seen = std::collections::BTreeSet::new();
        let mut on_found = |a: &Assign, before: Graph, after: Graph| {
            if !seen.insert(describe(a)) {
                return true;
            }
            let r = compare(&before, &after, registry, opts.trials, &mut seed);
            match r {
                Ok((abs, rel)) => {
                    check.max_abs_err = check.max_abs_err.max(abs);
                    check.max_rel_err = check.max_rel_err.max(rel);
                    if !(abs <= atol || rel <= rtol) {
                        check.passed = false;
                    }
                    if check.example.is_empty() {
                        check.example = describe(a);
                    }
                    count.set(count.get() + 1);
                }
                Err(e) => *failure.borrow_mut() = Some(e),
            }
            // Stop at each new instance; the next search starts elsewhere.
            false
        };
        // Each instance comes from a fresh search whose candidate lists start at a
        // different place, so instances differ in shapes and numbers.
        let mut budget = opts.max_attempts;
        'outer: for round in 0..opts.instances * 4 {
            if count.get() >= opts.instances || failure.borrow().is_some() || budget == 0 {
                break;
            }
            for uniform in [true, false] {
                let before = count.get();
                let s = Search {
                    rule,
                    registry,
                    dtype,
                    uniform,
                    rotate: round,
                };
                search(&s, &mut Assign::default(), &mut budget, &mut on_found);
                if count.get() > before || failure.borrow().is_some() {
                    continue 'outer;
                }
            }
        }
        if let Some(e) = failure.take() {
            return Err(e);
        }
        let count = count.get();
        if count == 0 {
            return Err(Error::Verify {
                rule: rule.name.clone(),
                reason: format!(
                    "no instantiation of the left side where the rule fires was found for {dtype} in {} attempts (inputs of rank 1–3 over sizes 8, 4, 2, a few of rank 4; numbers from {CANDIDATE_NUMBERS:?})",
                    opts.max_attempts
                ),
            });
        }
        check.instances = count;
        checks.push(check);
    }
    Ok(checks)
}

fn describe(a: &Assign) -> String {
    let mut parts: Vec<String> = a
        .shapes
        .iter()
        .map(|(v, s)| format!("?{v}: {s:?}"))
        .collect();
    parts.extend(a.numbers.iter().map(|(v, x)| format!("?{v} = {x}")));
    parts.join(", ")
}

/// Runs both graphs on the same random inputs; the largest absolute and relative
/// differences.
fn compare(
    before: &Graph,
    after: &Graph,
    registry: &Registry,
    trials: usize,
    seed: &mut u64,
) -> Result<(f64, f64)> {
    let mut e1 = Executor::new(before, registry, Options::default())?;
    let mut e2 = Executor::new(after, registry, Options::default())?;
    let inputs: Vec<(String, TensorType)> = before
        .node_ids()
        .filter_map(|n| match &before.node(n).ok()?.op {
            OpKind::Input { name, ty } => Some((name.clone(), ty.clone())),
            _ => None,
        })
        .collect();
    // Inputs the rewrite dropped are not fed to the rewritten graph.
    let names_after: Vec<String> = after
        .node_ids()
        .filter_map(|n| match &after.node(n).ok()?.op {
            OpKind::Input { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    let (mut abs, mut rel) = (0.0f64, 0.0f64);
    for _ in 0..trials {
        let tensors: Vec<(String, Tensor)> = inputs
            .iter()
            .map(|(name, ty)| {
                *seed += 1;
                let shape: Vec<usize> = ty
                    .shape
                    .iter()
                    .map(|d| d.known().unwrap_or(1) as usize)
                    .collect();
                (
                    name.clone(),
                    Tensor::random(ty.dtype, &shape, -2.0, 2.0, *seed),
                )
            })
            .collect();
        let feed: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let feed_after: Vec<(&str, &Tensor)> = feed
            .iter()
            .copied()
            .filter(|(n, _)| names_after.iter().any(|m| m == n))
            .collect();
        let r1 = e1.run(&feed)?.remove(0).to_f64_vec();
        let r2 = e2.run(&feed_after)?.remove(0).to_f64_vec();
        let scale = r1
            .iter()
            .filter(|x| x.is_finite())
            .fold(0.0f64, |m, x| m.max(x.abs()))
            .max(1e-30);
        for (x, y) in r1.iter().zip(&r2) {
            let d = if x.is_nan() && y.is_nan() || x == y {
                0.0
            } else {
                (x - y).abs()
            };
            let d = if d.is_nan() { f64::INFINITY } else { d };
            abs = abs.max(d);
            rel = rel.max(d / scale);
        }
    }
    Ok((abs, rel))
}

/// Verifies every rule; checks in order, an error for a rule that could not be
/// instantiated is reported as a failed check.
pub fn verify_rules(
    rules: &[Rule],
    registry: &Registry,
    opts: &VerifyOptions,
) -> Vec<std::result::Result<Vec<RuleCheck>, Error>> {
    rules
        .iter()
        .map(|r| verify_rule(r, registry, opts))
        .collect()
}
