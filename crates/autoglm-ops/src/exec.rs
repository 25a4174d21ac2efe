//! The executor: a graph compiled against a registry and a device into a plan of
//! kernel calls in topological order, with liveness-based buffer reuse and in-place
//! kernels where the input dies at that step.

use std::collections::HashMap;

use autoglm_graph::{BinaryOp, DType, Dim, Graph, NodeId, OpKind, TensorType};

use crate::error::{Error, KernelError, Result};
use crate::registry::{Device, Kernel, Prepacked, Registry};
use crate::tensor::{Data, Tensor};

/// How to compile a graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The device whose kernels run it.
    pub device: Device,
    /// Worker threads for the kernels (1: everything on the calling thread's pool of
    /// one).
    pub threads: usize,
    /// Let kernels lay out bound parameters once for their inner loops (the CPU matrix
    /// product packs its weights; on by default). Off, every call reads the tensors
    /// as they are: for comparisons, and to save the memory of the packed copies.
    pub prepack: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            device: Device::Cpu,
            threads: 1,
            prepack: true,
        }
    }
}

/// What one run did with memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// The most bytes the executor's intermediate buffers held at once (live values
    /// and pooled free buffers), outputs included.
    pub peak_bytes: usize,
    /// The most bytes the live intermediate values needed at once (their sizes, not the
    /// capacity of the buffers holding them, and without the pooled free buffers): the
    /// plan's own peak, as PyTorch's `max_memory_allocated` is to
    /// [`RunStats::peak_bytes`]' `max_memory_reserved`.
    pub peak_live_bytes: usize,
    /// The bytes of every intermediate value of the run added up (what a runtime
    /// without reuse would hold at the end).
    pub naive_bytes: usize,
    /// Kernel calls.
    pub steps: usize,
    /// Of those, calls that wrote over their dead first input.
    pub inplace_steps: usize,
}

struct Step {
    node: NodeId,
    op: OpKind,
    ty: TensorType,
    kernel: Kernel,
    inputs: Vec<usize>,
    out: usize,
    inplace: bool,
    /// Slots whose last use is this step.
    free: Vec<usize>,
    /// The kernel's prepacked form of each input, where it made one (bound parameters).
    packed: Vec<Option<Prepacked>>,
}

/// Where a value comes from.
#[derive(Clone)]
pub(crate) enum Source {
    Input(String, TensorType),
    Parameter(String, TensorType),
    Constant(Tensor),
    Step,
}

/// A compiled graph, ready to run.
///
/// # Examples
/// ```
/// use autoglm_graph::{DType, Dim, Graph, OpKind, TensorType, UnaryOp};
/// use autoglm_ops::{Executor, Options, Registry, Tensor};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut g = Graph::new();
/// let x = g.input("x", TensorType::new(DType::F32, [Dim::sym("n"), Dim::Known(2)]))?;
/// let y = g.add(OpKind::Unary { f: UnaryOp::Relu }, &[x])?;
/// g.set_outputs(&[y])?;
/// let mut exec = Executor::new(&g, &Registry::with_cpu_kernels(), Options::default())?;
/// let x = Tensor::from_f32(&[2, 2], vec![-1.0, 2.0, 3.0, -4.0])?;
/// let out = exec.run(&[("x", &x)])?;
/// assert_eq!(out[0].as_f32().unwrap(), &[0.0, 2.0, 3.0, 0.0]);
/// # Ok(()) }
/// ```
pub struct Executor {
    sources: Vec<Source>,
    params: Vec<Option<Tensor>>,
    steps: Vec<Step>,
    outputs: Vec<usize>,
    pool: rayon::ThreadPool,
    free: Vec<Data>,
    stats: RunStats,
    /// Per-step seconds of the runs since profiling was turned on.
    profile: Option<Vec<f64>>,
    /// Whether kernels may prepack bound parameters.
    prepack: bool,
    /// The storage of the weights kernels prepack.
    plan: crate::StoragePlan,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("steps", &self.steps.len())
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

impl Executor {
    /// Compiles `graph` for `options.device`: every node gets its kernel now, so a
    /// missing kernel is an error here, naming the node.
    ///
    /// # Errors
    /// [`Error::NoKernel`]; [`Error::Graph`] if the graph is invalid.
    pub fn new(graph: &Graph, registry: &Registry, options: Options) -> Result<Executor> {
        let Plan {
            sources,
            steps: planned,
            outputs,
            types,
            dying: dying_at,
        } = plan(graph)?;
        let mut steps = Vec::with_capacity(planned.len());
        for p in planned {
            let kernel = registry
                .kernel(&p.op, options.device, p.ty.dtype)
                .map_err(|e| match e {
                    Error::NoKernel {
                        op, device, dtype, ..
                    } => Error::NoKernel {
                        op,
                        device,
                        dtype,
                        node: Some(p.node),
                    },
                    e => e,
                })?
                .clone();
            steps.push(Step {
                node: p.node,
                op: p.op,
                ty: p.ty,
                kernel,
                packed: vec![None; p.inputs.len()],
                inputs: p.inputs,
                out: p.out,
                inplace: false,
                free: Vec::new(),
            });
        }
        for (s, mut dying) in steps.iter_mut().zip(dying_at) {
            let can_overwrite = |x: usize, s: &Step| {
                dying.contains(&x)
                    && s.inputs.iter().filter(|&&y| y == x).count() == 1
                    && (types[x] == s.ty
                        || (matches!(s.op, OpKind::Reshape { .. }) && types[x].dtype == s.ty.dtype))
            };
            // A commutative op may overwrite its second input instead of its first.
            let commutative = matches!(
                s.op,
                OpKind::Binary {
                    f: BinaryOp::Add | BinaryOp::Mul | BinaryOp::Max | BinaryOp::Min
                }
            );
            if commutative
                && s.kernel.inplace.is_some()
                && !can_overwrite(s.inputs[0], s)
                && can_overwrite(s.inputs[1], s)
            {
                s.inputs.swap(0, 1);
            }
            let first = s.inputs.first().copied();
            s.inplace = s.kernel.inplace.is_some() && first.is_some_and(|x| can_overwrite(x, s));
            if s.inplace {
                dying.retain(|&x| Some(x) != first);
            }
            s.free = dying;
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.threads.max(1))
            .build()
            .map_err(|e| Error::Binding(format!("thread pool: {e}")))?;
        let params = vec![None; sources.len()];
        Ok(Executor {
            sources,
            params,
            steps,
            outputs,
            pool,
            free: Vec::new(),
            stats: RunStats::default(),
            profile: None,
            prepack: options.prepack,
            plan: crate::StoragePlan::default(),
        })
    }

    /// The names and types of the parameters the graph needs.
    pub fn parameters(&self) -> Vec<(&str, &TensorType)> {
        self.sources
            .iter()
            .filter_map(|s| match s {
                Source::Parameter(n, t) => Some((n.as_str(), t)),
                _ => None,
            })
            .collect()
    }

    /// Binds a parameter's value.
    ///
    /// # Errors
    /// [`Error::Binding`] for an unknown name or a tensor of the wrong type.
    pub fn set_parameter(&mut self, name: &str, value: Tensor) -> Result<()> {
        let i = self
            .sources
            .iter()
            .position(|s| matches!(s, Source::Parameter(n, _) if n == name))
            .ok_or_else(|| Error::Binding(format!("the graph has no parameter '{name}'")))?;
        let Source::Parameter(_, ty) = &self.sources[i] else {
            unreachable!("found as a parameter")
        };
        check_type(name, ty, &value, &mut HashMap::new())?;
        // Kernels that read this parameter may lay it out for themselves now, once.
        let storage = self.plan.storage_of(name);
        for s in self.steps.iter_mut().filter(|_| self.prepack) {
            if let Some((pack, _)) = &s.kernel.prepack {
                for (j, &x) in s.inputs.iter().enumerate() {
                    if x == i {
                        s.packed[j] = pack(&s.op, j, &value, storage);
                    }
                }
            }
        }
        self.params[i] = Some(value);
        Ok(())
    }

    /// Stores the weights bound from now on as `plan` says, where their kernels can
    /// (the CPU matrix product: [`crate::PackedMatrix`]). The parameter tensors stay
    /// bound as they are (f32), so that gradients and [`Executor::parameter`] read
    /// them; the products read the stored form. Needs prepacking on
    /// ([`Options::prepack`]).
    pub fn set_storage_plan(&mut self, plan: crate::StoragePlan) {
        self.plan = plan;
    }

    /// Each bound weight a kernel holds as a [`crate::PackedMatrix`]: its name, storage
    /// and bytes, in parameter order.
    pub fn stored_weights(&self) -> Vec<(String, crate::Storage, usize)> {
        let mut seen = vec![false; self.sources.len()];
        let mut out = Vec::new();
        for s in &self.steps {
            for (j, &x) in s.inputs.iter().enumerate() {
                let Some(m) = s.packed[j]
                    .as_ref()
                    .and_then(|p| p.downcast_ref::<crate::PackedMatrix>())
                else {
                    continue;
                };
                if let (Some(Source::Parameter(name, _)), false) = (self.sources.get(x), seen[x]) {
                    seen[x] = true;
                    out.push((x, name.clone(), m.storage(), m.bytes()));
                }
            }
        }
        out.sort_by_key(|e| e.0);
        out.into_iter().map(|(_, n, s, b)| (n, s, b)).collect()
    }

    /// A bound parameter's value.
    pub fn parameter(&self, name: &str) -> Option<&Tensor> {
        let i = self
            .sources
            .iter()
            .position(|s| matches!(s, Source::Parameter(n, _) if n == name))?;
        self.params[i].as_ref()
    }

    /// Every bound parameter, mutable in place (an optimizer's update), by name. The
    /// shapes and types must stay as they are. Kernels' packed forms of parameters are
    /// dropped, since the values change: later runs read the tensors as they are
    /// ([`Executor::set_parameter`] packs again).
    pub fn parameters_mut(&mut self) -> Vec<(&str, &mut Tensor)> {
        for s in &mut self.steps {
            s.packed.iter_mut().for_each(|p| *p = None);
        }
        self.sources
            .iter()
            .zip(self.params.iter_mut())
            .filter_map(|(s, p)| match (s, p) {
                (Source::Parameter(n, _), Some(t)) => Some((n.as_str(), t)),
                _ => None,
            })
            .collect()
    }

    /// Hands a tensor's buffer (typically an output of an earlier run that is no longer
    /// needed) to the executor's pool, so later runs reuse it instead of allocating
    /// and faulting in fresh memory.
    pub fn recycle(&mut self, t: Tensor) {
        let d = t.into_parts().1;
        if d.capacity_bytes() > 0 {
            self.free.push(d);
        }
    }

    /// A buffer of `n` elements of `dtype` from the pool (contents unspecified: a
    /// reused buffer keeps what it held), for a tensor the caller builds and later
    /// hands back with [`Executor::recycle`], so that pool and caller trade buffers
    /// instead of the pool growing with every step.
    pub fn take_buffer(&mut self, dtype: DType, n: usize) -> Data {
        Memory::new(&mut self.free).take(dtype, n)
    }

    /// Starts (or, with `false`, stops and clears) timing every kernel call.
    pub fn set_profiling(&mut self, on: bool) {
        self.profile = on.then(|| vec![0.0; self.steps.len()]);
    }

    /// Seconds spent in each step's kernel since profiling started, with the step's
    /// node and op name, slowest first.
    pub fn profile(&self) -> Vec<(NodeId, String, f64)> {
        let Some(p) = &self.profile else {
            return Vec::new();
        };
        let mut v: Vec<(NodeId, String, f64)> = self
            .steps
            .iter()
            .zip(p)
            .map(|(s, &t)| (s.node, s.op.name(), t))
            .collect();
        v.sort_by(|a, b| b.2.total_cmp(&a.2));
        v
    }

    /// Kernel calls per run.
    pub fn num_steps(&self) -> usize {
        self.steps.len()
    }

    /// The statistics of the last run.
    pub fn stats(&self) -> RunStats {
        self.stats
    }

    /// Runs the graph on named inputs, returning the outputs in order.
    ///
    /// # Errors
    /// [`Error::Binding`] for a missing, unknown or ill-typed input or an unbound
    /// parameter; [`Error::Kernel`] if a kernel fails.
    pub fn run(&mut self, inputs: &[(&str, &Tensor)]) -> Result<Vec<Tensor>> {
        let Executor {
            sources,
            params,
            steps,
            outputs,
            pool,
            free,
            stats,
            profile,
            prepack: _,
            plan: _,
        } = self;
        // Bind symbols from the inputs.
        let mut syms = HashMap::new();
        let mut values: Vec<Value<'_>> = Vec::with_capacity(sources.len());
        for (i, s) in sources.iter().enumerate() {
            values.push(match s {
                Source::Input(name, ty) => {
                    let t = named_input(inputs, name)?;
                    check_type(name, ty, t, &mut syms)?;
                    Value::Ref(t)
                }
                Source::Parameter(name, _) => Value::Ref(
                    params[i]
                        .as_ref()
                        .ok_or_else(|| Error::Binding(format!("parameter '{name}' is not set")))?,
                ),
                Source::Constant(t) => Value::Ref(t),
                Source::Step => Value::Empty,
            });
        }
        // An input may bind a sum symbol (`p+t`) directly: it must agree with its terms.
        for (name, &v) in syms.iter().filter(|(n, _)| n.contains('+')) {
            if let Some(sum) = sum_of_terms(name, &syms).filter(|&sum| sum != v) {
                return Err(Error::Binding(format!(
                    "the size '{name}' is {v} in the inputs, but its terms add up to {sum}"
                )));
            }
        }
        if let Some((n, _)) = inputs.iter().find(|(n, _)| {
            !sources
                .iter()
                .any(|s| matches!(s, Source::Input(m, _) if m == n))
        }) {
            return Err(Error::Binding(format!("the graph has no input '{n}'")));
        }
        let mut mem = Memory::new(free);
        let mut run = RunStats::default();
        pool.install(|| -> Result<()> {
            for (si, s) in steps.iter().enumerate() {
                let started = profile.as_ref().map(|_| std::time::Instant::now());
                let fail = |source: KernelError| Error::Kernel {
                    node: Some(s.node),
                    op: s.op.name(),
                    source,
                };
                let shape = concrete(&s.ty, &syms).map_err(fail)?;
                let n: usize = shape.iter().product();
                run.naive_bytes += n * s.ty.dtype.size_bytes();
                let result = if s.inplace {
                    let Value::Own(mut io) =
                        std::mem::replace(&mut values[s.inputs[0]], Value::Empty)
                    else {
                        return Err(fail("the in-place input is not an owned buffer".into()));
                    };
                    let rest: Vec<&Tensor> =
                        s.inputs[1..].iter().map(|&x| values[x].get()).collect();
                    (s.kernel.inplace.as_ref().expect("checked at compile"))(&s.op, &mut io, &rest)
                        .map_err(fail)?;
                    io.reshape(&shape)?;
                    run.inplace_steps += 1;
                    io
                } else {
                    let mut out = Tensor::new(&shape, mem.take(s.ty.dtype, n))?;
                    let ins: Vec<&Tensor> = s.inputs.iter().map(|&x| values[x].get()).collect();
                    match &s.kernel.prepack {
                        Some((_, packed)) if s.packed.iter().any(Option::is_some) => {
                            let p: Vec<Option<&Prepacked>> =
                                s.packed.iter().map(Option::as_ref).collect();
                            packed(&s.op, &ins, &p, &mut out).map_err(fail)?;
                        }
                        _ => (s.kernel.run)(&s.op, &ins, &mut out).map_err(fail)?,
                    }
                    out
                };
                if let (Some(p), Some(t0)) = (profile.as_mut(), started) {
                    p[si] += t0.elapsed().as_secs_f64();
                }
                values[s.out] = Value::Own(result);
                for &x in &s.free {
                    if let Value::Own(t) = std::mem::replace(&mut values[x], Value::Empty) {
                        mem.give(t.into_parts().1);
                    }
                }
                run.steps += 1;
            }
            Ok(())
        })?;
        let mut result = Vec::with_capacity(outputs.len());
        for (k, &o) in outputs.iter().enumerate() {
            let again = outputs[k + 1..].contains(&o);
            result.push(match &mut values[o] {
                Value::Own(_) if !again => match std::mem::replace(&mut values[o], Value::Empty) {
                    Value::Own(t) => t,
                    _ => unreachable!("matched as owned"),
                },
                v => v.get().clone(),
            });
        }
        // Whatever is still owned (nothing, normally) goes back to the pool.
        for v in values {
            if let Value::Own(t) = v {
                mem.give(t.into_parts().1);
            }
        }
        run.peak_bytes = mem.peak;
        run.peak_live_bytes = mem.peak_live;
        *stats = run;
        Ok(result)
    }
}

enum Value<'a> {
    Empty,
    Ref(&'a Tensor),
    Own(Tensor),
}

impl Value<'_> {
    fn get(&self) -> &Tensor {
        match self {
            Value::Ref(t) => t,
            Value::Own(t) => t,
            Value::Empty => panic!("a value was read after its last use (planner bug)"),
        }
    }
}

/// The buffer pool: freed buffers are reused best-fit by element type.
struct Memory<'a> {
    free: &'a mut Vec<Data>,
    live: usize,
    pooled: usize,
    peak: usize,
    /// Bytes the live values need, and the most of that.
    need: usize,
    peak_live: usize,
}

impl<'a> Memory<'a> {
    /// The pool over `free`, nothing live.
    fn new(free: &'a mut Vec<Data>) -> Memory<'a> {
        let pooled = free.iter().map(Data::capacity_bytes).sum();
        Memory {
            free,
            live: 0,
            pooled,
            peak: 0,
            need: 0,
            peak_live: 0,
        }
    }

    fn take(&mut self, dtype: DType, n: usize) -> Data {
        let fits = |d: &Data| d.dtype() == dtype;
        let bytes = n * dtype.size_bytes();
        // Among the free buffers with room (a buffer of 1 MiB or more at most twice
        // the request: a request does not take a much larger buffer that a later,
        // larger request of the pass needs), first one that already holds `n`
        // elements (no zero fill: a pass repeats the same requests, so each buffer
        // settles into one role), then the smallest.
        let roomy = |d: &Data| {
            fits(d)
                && d.capacity_bytes() >= bytes
                && (d.capacity_bytes() <= 2 * bytes || d.capacity_bytes() < 1 << 20)
        };
        let best = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, d)| roomy(d) && d.len() >= n)
            .min_by_key(|(_, d)| d.len())
            .or_else(|| {
                self.free
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| roomy(d))
                    .min_by_key(|(_, d)| d.capacity_bytes())
            })
            .map(|(i, _)| i)
            .or_else(|| {
                // None fits: the largest of those too small grows (rather than
                // another being added); if every free buffer is much larger, a new one.
                self.free
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| fits(d) && d.capacity_bytes() < bytes)
                    .max_by_key(|(_, d)| d.capacity_bytes())
                    .map(|(i, _)| i)
            });
        let mut d = match best {
            Some(i) => {
                let d = self.free.swap_remove(i);
                self.pooled -= d.capacity_bytes();
                d
            }
            None => Data::zeros(dtype, 0),
        };
        d.resize(n);
        self.live += d.capacity_bytes();
        self.peak = self.peak.max(self.live + self.pooled);
        self.need += bytes;
        self.peak_live = self.peak_live.max(self.need);
        d
    }

    fn give(&mut self, d: Data) {
        self.live = self.live.saturating_sub(d.capacity_bytes());
        self.need = self.need.saturating_sub(d.len() * d.dtype().size_bytes());
        if d.capacity_bytes() == 0 {
            return;
        }
        self.pooled += d.capacity_bytes();
        self.free.push(d);
    }
}

/// A compute node of a [`Plan`].
pub(crate) struct PlannedStep {
    pub(crate) node: NodeId,
    pub(crate) op: OpKind,
    pub(crate) ty: TensorType,
    /// The value slots it reads.
    pub(crate) inputs: Vec<usize>,
    /// The slot it writes.
    pub(crate) out: usize,
}

/// A graph laid out for execution, shared by the CPU and GPU executors: one value slot
/// per node in [`Graph::schedule`]'s order, where each value comes from, the compute
/// nodes in that order, the output slots, each slot's type, and the computed values
/// each step reads last.
pub(crate) struct Plan {
    pub(crate) sources: Vec<Source>,
    pub(crate) steps: Vec<PlannedStep>,
    pub(crate) outputs: Vec<usize>,
    pub(crate) types: Vec<TensorType>,
    pub(crate) dying: Vec<Vec<usize>>,
}

/// Lays out `graph` (verified) for execution.
pub(crate) fn plan(graph: &Graph) -> Result<Plan> {
    graph.verify()?;
    let order = graph.schedule()?;
    let slot: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let outputs: Vec<usize> = graph.outputs().iter().map(|o| slot[o]).collect();
    let mut sources = Vec::with_capacity(order.len());
    let mut steps = Vec::new();
    let mut types = Vec::with_capacity(order.len());
    for &n in &order {
        let node = graph.node(n)?;
        types.push(node.ty.clone());
        sources.push(match &node.op {
            OpKind::Input { name, ty } => Source::Input(name.clone(), ty.clone()),
            OpKind::Parameter { name, ty } => Source::Parameter(name.clone(), ty.clone()),
            OpKind::Constant { value, dtype } => Source::Constant(Tensor::scalar(*value, *dtype)),
            op => {
                steps.push(PlannedStep {
                    node: n,
                    op: op.clone(),
                    ty: node.ty.clone(),
                    inputs: graph.inputs(n)?.iter().map(|i| slot[i]).collect(),
                    out: slot[&n],
                });
                Source::Step
            }
        });
    }
    let inputs: Vec<&[usize]> = steps.iter().map(|s| s.inputs.as_slice()).collect();
    let dying = dying_values(&inputs, order.len(), &outputs, |x| {
        matches!(sources[x], Source::Step)
    });
    Ok(Plan {
        sources,
        steps,
        outputs,
        types,
        dying,
    })
}

/// The value fed for the input `name`.
pub(crate) fn named_input<'a, T>(inputs: &[(&str, &'a T)], name: &str) -> Result<&'a T> {
    inputs
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .ok_or_else(|| Error::Binding(format!("input '{name}' is missing")))
}

/// Liveness: for each step (given by the value slots it reads, in execution order),
/// the computed values (`computed(slot)`) it reads last, sorted and without repeats;
/// graph outputs never die.
pub(crate) fn dying_values(
    step_inputs: &[&[usize]],
    slots: usize,
    outputs: &[usize],
    computed: impl Fn(usize) -> bool,
) -> Vec<Vec<usize>> {
    let mut last = vec![None; slots];
    for (i, ins) in step_inputs.iter().enumerate() {
        for &x in *ins {
            last[x] = Some(i);
        }
    }
    step_inputs
        .iter()
        .enumerate()
        .map(|(i, ins)| {
            let mut d: Vec<usize> = ins
                .iter()
                .copied()
                .filter(|&x| last[x] == Some(i) && computed(x) && !outputs.contains(&x))
                .collect();
            d.sort_unstable();
            d.dedup();
            d
        })
        .collect()
}

/// A symbol's size: bound by an input, or a sum of bound symbols and numbers
/// (`p+t`, as a concatenation of symbolic sizes produces), or a product (`b*t`, as
/// flattening leading dims produces).
fn resolve(s: &str, syms: &HashMap<String, usize>) -> Option<usize> {
    match syms.get(s) {
        Some(&n) => Some(n),
        None if s.contains('+') => sum_of_terms(s, syms),
        None if s.contains('*') => s
            .split('*')
            .map(|f| {
                syms.get(f.trim())
                    .copied()
                    .or_else(|| f.trim().parse().ok())
            })
            .product(),
        None => None,
    }
}

/// `a+b+3` from the bound sizes of its terms (`None` if one is unbound).
fn sum_of_terms(s: &str, syms: &HashMap<String, usize>) -> Option<usize> {
    s.split('+')
        .map(|term| {
            let term = term.trim();
            syms.get(term).copied().or_else(|| term.parse().ok())
        })
        .sum()
}

/// A type's shape with its symbols replaced by their bound sizes.
pub(crate) fn concrete(
    ty: &TensorType,
    syms: &HashMap<String, usize>,
) -> std::result::Result<Vec<usize>, KernelError> {
    ty.shape
        .iter()
        .map(|d| match d {
            Dim::Known(n) => Ok(*n as usize),
            Dim::Sym(s) => resolve(s, syms).ok_or_else(|| KernelError::UnboundSize {
                symbol: s.to_string(),
            }),
        })
        .collect()
}

/// Checks a tensor against a declared type, binding its symbols.
fn check_type(
    name: &str,
    ty: &TensorType,
    t: &Tensor,
    syms: &mut HashMap<String, usize>,
) -> Result<()> {
    check_shape(name, ty, t.dtype(), t.shape(), syms)
}

/// Checks an element type and shape against a declared type, binding its symbols.
pub(crate) fn check_shape(
    name: &str,
    ty: &TensorType,
    dtype: DType,
    shape: &[usize],
    syms: &mut HashMap<String, usize>,
) -> Result<()> {
    let bad = |why: String| Error::Binding(format!("'{name}' should be {ty}: {why}"));
    if dtype != ty.dtype {
        return Err(bad(format!("got element type {dtype}")));
    }
    if shape.len() != ty.rank() {
        return Err(bad(format!("got shape {shape:?}")));
    }
    for (d, &n) in ty.shape.iter().zip(shape) {
        match d {
            Dim::Known(k) if *k as usize != n => {
                return Err(bad(format!("got shape {shape:?}")));
            }
            Dim::Sym(s) => {
                let b = *syms.entry(s.clone()).or_insert(n);
                if b != n {
                    return Err(bad(format!("'{s}' is {b} elsewhere but {n} here")));
                }
            }
            Dim::Known(_) => {}
        }
    }
    Ok(())
}
