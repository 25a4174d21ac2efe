//! Reverse-mode automatic differentiation as a graph transform: [`grad`] appends to a
//! copy of the graph the nodes that compute the gradients of a scalar loss with respect
//! to chosen nodes, as JAX's `grad` does to a program. The backward nodes are ordinary
//! ops, so the rewrite rules and the executor's buffer reuse apply to them as well.
//!
//! Every built-in op has a gradient rule except those with nothing to differentiate
//! (masks, integer and shape-only inputs); fused ops are differentiated through their
//! definition (attention recomputes its probabilities, the norms their normalised
//! input). Custom ops must be decomposed first ([`Graph::decompose_custom_ops`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId};
use crate::op::{BinaryOp, OpKind, ReduceOp, UnaryOp};
use crate::types::{Dim, Shape, TensorType};

/// A graph extended by the gradients of a loss: [`Gradients::graph`] computes
/// everything the original did, and its outputs are set to the loss followed by one
/// gradient per requested node (each of that node's type).
#[derive(Debug, Clone)]
pub struct Gradients {
    /// The original graph with the backward nodes added; outputs `[loss, grads…]`.
    pub graph: Graph,
    /// The loss node.
    pub loss: NodeId,
    /// The gradient of the loss with respect to each requested node, in order.
    pub grads: Vec<NodeId>,
    /// The nodes of the original graph (the forward pass).
    forward: BTreeSet<NodeId>,
}

impl Gradients {
    /// Gradient checkpointing: the forward values strictly between `checkpoints` (a
    /// node downstream of one checkpoint and upstream of another: the inside of a
    /// transformer layer when the checkpoints are the layer inputs) are no longer kept
    /// for the backward pass; the backward nodes read recomputed copies instead
    /// ([`crate::Node::recompute`]), which [`Graph::schedule`] runs just before they
    /// are needed. Memory traded for compute, as `torch.utils.checkpoint` does: the
    /// values kept are the checkpoints and what lies outside them, and one segment's
    /// values at a time.
    ///
    /// Returns how many nodes are recomputed. The gradients' values are unchanged (the
    /// copies run the same ops on the same values).
    ///
    /// ```
    /// use autoglm_graph::{grad, DType, Graph, OpKind, ReduceOp, TensorType, UnaryOp};
    ///
    /// let mut g = Graph::new();
    /// let x = g.input("x", TensorType::new(DType::F64, [4u64]))?;
    /// let a = g.add(OpKind::Unary { f: UnaryOp::Tanh }, &[x])?;
    /// let b = g.add(OpKind::Unary { f: UnaryOp::Tanh }, &[a])?;
    /// let c = g.add(OpKind::Unary { f: UnaryOp::Tanh }, &[b])?;
    /// let d = g.add(OpKind::Unary { f: UnaryOp::Tanh }, &[c])?;
    /// let loss = g.add(OpKind::Reduce { f: ReduceOp::Sum, axes: vec![0], keep_dims: false }, &[d])?;
    /// let mut grads = grad(&g, loss, &[x])?;
    /// // Keep `a` and `d`; `b` and `c` are recomputed from `a` in the backward pass.
    /// assert_eq!(grads.checkpoint(&[a, d])?, 2);
    /// # Ok::<(), autoglm_graph::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::UnknownNode`] for a checkpoint that is not a node of the forward pass.
    pub fn checkpoint(&mut self, checkpoints: &[NodeId]) -> Result<usize> {
        let g = &mut self.graph;
        for &c in checkpoints {
            if !self.forward.contains(&c) {
                return Err(Error::UnknownNode(c));
            }
        }
        let order: Vec<NodeId> = g
            .topo_order()?
            .into_iter()
            .filter(|n| self.forward.contains(n))
            .collect();
        let marks: BTreeSet<NodeId> = checkpoints.iter().copied().collect();
        // Downstream of a checkpoint (strictly), and upstream of one (strictly).
        let mut down = BTreeSet::new();
        for &n in &order {
            if g.inputs(n)?
                .iter()
                .any(|i| marks.contains(i) || down.contains(i))
            {
                down.insert(n);
            }
        }
        let mut up = BTreeSet::new();
        for &n in order.iter().rev() {
            if marks.contains(&n) || up.contains(&n) {
                up.extend(g.inputs(n)?);
            }
        }
        let inside = |n: &NodeId| down.contains(n) && up.contains(n) && !marks.contains(n);
        // The backward nodes' reads of inside values, and the inside values those are
        // computed from.
        let mut reads = Vec::new();
        for n in g.node_ids().filter(|n| !self.forward.contains(n)) {
            for (slot, i) in g.inputs(n)?.into_iter().enumerate() {
                if inside(&i) {
                    reads.push((n, slot, i));
                }
            }
        }
        let mut needed: BTreeSet<NodeId> = reads.iter().map(|r| r.2).collect();
        for &n in order.iter().rev() {
            if needed.contains(&n) {
                needed.extend(g.inputs(n)?.into_iter().filter(|i| inside(i)));
            }
        }
        let mut copy = BTreeMap::new();
        for &n in order.iter().filter(|n| needed.contains(n)) {
            let ins: Vec<NodeId> = g
                .inputs(n)?
                .into_iter()
                .map(|i| copy.get(&i).copied().unwrap_or(i))
                .collect();
            let op = g.node(n)?.op.clone();
            let c = g.add(op, &ins)?;
            g.set_recompute(c, true)?;
            copy.insert(n, c);
        }
        for (n, slot, i) in reads {
            g.replace_input(n, slot, copy[&i])?;
        }
        Ok(copy.len())
    }
}

/// The gradients of `loss` (a scalar: rank 0 or every dimension 1, floating point)
/// with respect to the nodes `wrt` (floating point; usually parameters or inputs).
/// A node the loss does not depend on gets a zero gradient.
///
/// ```
/// use autoglm_graph::{grad, BinaryOp, DType, Graph, OpKind, ReduceOp, TensorType};
///
/// let mut g = Graph::new();
/// let x = g.input("x", TensorType::new(DType::F64, [3u64]))?;
/// let sq = g.add(OpKind::Binary { f: BinaryOp::Mul }, &[x, x])?;
/// let loss = g.add(OpKind::Reduce { f: ReduceOp::Sum, axes: vec![0], keep_dims: false }, &[sq])?;
/// let d = grad(&g, loss, &[x])?; // d(Σ x²)/dx = 2x
/// assert_eq!(d.graph.outputs(), &[loss, d.grads[0]]);
/// assert_eq!(d.graph.node(d.grads[0])?.ty, TensorType::new(DType::F64, [3u64]));
/// # Ok::<(), autoglm_graph::Error>(())
/// ```
///
/// # Errors
/// [`Error::Grad`] for a loss that is not a float scalar, a non-float node in `wrt`,
/// or an op on the path whose gradient is not defined (a custom op, the gradient of a
/// rotary table); [`Error::UnknownNode`] for ids not in the graph.
pub fn grad(g: &Graph, loss: NodeId, wrt: &[NodeId]) -> Result<Gradients> {
    let lt = g.node(loss)?.ty.clone();
    if !lt.dtype.is_float() || lt.shape.iter().any(|d| *d != Dim::Known(1)) {
        return Err(err(
            loss,
            "loss",
            format!("must be a float scalar, got {lt}"),
        ));
    }
    for &w in wrt {
        let t = &g.node(w)?.ty;
        if !t.dtype.is_float() {
            return Err(err(w, "wrt", format!("cannot differentiate by {t}")));
        }
    }
    let order = g.topo_order()?;
    let forward: BTreeSet<NodeId> = order.iter().copied().collect();
    // Nodes that depend on a requested node (forward) and that the loss depends on
    // (backward): only these carry gradients.
    let mut depends: BTreeSet<NodeId> = wrt.iter().copied().collect();
    for &n in &order {
        if g.inputs(n)?.iter().any(|i| depends.contains(i)) {
            depends.insert(n);
        }
    }
    let mut needed = BTreeSet::new();
    needed.insert(loss);
    for &n in order.iter().rev() {
        if needed.contains(&n) {
            for i in g.inputs(n)? {
                needed.insert(i);
            }
        }
    }
    let live: BTreeSet<NodeId> = depends.intersection(&needed).copied().collect();
    let mut b = Builder { g: g.clone() };
    let one = b.g.constant(1.0, lt.dtype)?;
    let seed = b.add(OpKind::ExpandAs, &[one, loss])?;
    let mut adj: BTreeMap<NodeId, NodeId> = BTreeMap::new();
    if live.contains(&loss) {
        adj.insert(loss, seed);
    }
    for &n in order.iter().rev() {
        let Some(&dy) = adj.get(&n) else { continue };
        let inputs = g.inputs(n)?;
        if !inputs.iter().any(|i| live.contains(i)) {
            continue;
        }
        let want: Vec<bool> = inputs.iter().map(|i| live.contains(i)).collect();
        let grads = b.rule(n, &inputs, &want, dy)?;
        for ((i, gi), w) in inputs.iter().zip(grads).zip(want) {
            let (true, Some(gi)) = (w, gi) else { continue };
            let total = match adj.get(i) {
                Some(&prev) => b.bin(BinaryOp::Add, prev, gi)?,
                None => gi,
            };
            adj.insert(*i, total);
        }
    }
    let mut grads = Vec::with_capacity(wrt.len());
    for &w in wrt {
        grads.push(match adj.get(&w) {
            Some(&d) => d,
            None => {
                let zero = b.g.constant(0.0, b.ty(w)?.dtype)?;
                b.add(OpKind::ExpandAs, &[zero, w])?
            }
        });
    }
    let mut outs = vec![loss];
    outs.extend(&grads);
    b.g.set_outputs(&outs)?;
    Ok(Gradients {
        graph: b.g,
        loss,
        grads,
        forward,
    })
}

fn err(node: NodeId, op: &str, reason: String) -> Error {
    Error::Grad {
        node,
        op: op.to_owned(),
        reason,
    }
}

/// Adds backward nodes to a graph.
struct Builder {
    g: Graph,
}

impl Builder {
    fn add(&mut self, op: OpKind, inputs: &[NodeId]) -> Result<NodeId> {
        self.g.add(op, inputs)
    }

    fn ty(&self, n: NodeId) -> Result<TensorType> {
        Ok(self.g.node(n)?.ty.clone())
    }

    fn c(&mut self, value: f64, like: NodeId) -> Result<NodeId> {
        let dtype = self.ty(like)?.dtype;
        self.g.constant(value, dtype)
    }

    fn un(&mut self, f: UnaryOp, x: NodeId) -> Result<NodeId> {
        self.add(OpKind::Unary { f }, &[x])
    }

    fn bin(&mut self, f: BinaryOp, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.add(OpKind::Binary { f }, &[a, b])
    }

    fn mul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.bin(BinaryOp::Mul, a, b)
    }

    fn sub(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.bin(BinaryOp::Sub, a, b)
    }

    /// `x · k` for a scalar `k`.
    fn scale(&mut self, x: NodeId, k: f64) -> Result<NodeId> {
        let c = self.c(k, x)?;
        self.mul(x, c)
    }

    /// Sum over `axes`, keeping them as size 1.
    fn sum_keep(&mut self, x: NodeId, axes: Vec<i64>) -> Result<NodeId> {
        self.add(
            OpKind::Reduce {
                f: ReduceOp::Sum,
                axes,
                keep_dims: true,
            },
            &[x],
        )
    }

    fn mean_last(&mut self, x: NodeId) -> Result<NodeId> {
        self.add(
            OpKind::Reduce {
                f: ReduceOp::Mean,
                axes: vec![-1],
                keep_dims: true,
            },
            &[x],
        )
    }

    /// The last two axes swapped.
    fn t(&mut self, x: NodeId) -> Result<NodeId> {
        let r = self.ty(x)?.rank();
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(r - 2, r - 1);
        self.add(OpKind::Permute { perm }, &[x])
    }

    fn matmul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.add(OpKind::MatMul, &[a, b])
    }

    fn reshape(&mut self, x: NodeId, shape: Shape) -> Result<NodeId> {
        if self.ty(x)?.shape == shape {
            return Ok(x);
        }
        self.add(OpKind::Reshape { shape }, &[x])
    }

    /// `grad` (of a broadcast result) summed down to the shape of `target`, as
    /// broadcasting's adjoint: leading axes summed away, stretched size-1 axes summed
    /// back to 1.
    fn sum_to(&mut self, grad: NodeId, target: NodeId) -> Result<NodeId> {
        let (gt, tt) = (self.ty(grad)?, self.ty(target)?);
        if gt.shape == tt.shape {
            return Ok(grad);
        }
        let (rg, rt) = (gt.rank(), tt.rank());
        let bad = || {
            err(
                target,
                "broadcast",
                format!("cannot sum a gradient {gt} down to {tt}"),
            )
        };
        if rg < rt {
            return Err(bad());
        }
        let lead = rg - rt;
        let mut axes: Vec<i64> = (0..lead as i64).collect();
        for (i, (d, want)) in gt.shape[lead..].iter().zip(&tt.shape).enumerate() {
            if d == want {
                continue;
            }
            if *want != Dim::Known(1) {
                return Err(bad());
            }
            axes.push((lead + i) as i64);
        }
        let summed = self.sum_keep(grad, axes)?;
        self.reshape(summed, tt.shape)
    }

    /// The gradients of node `n` (inputs `ins`) for the inputs with `want`, given the
    /// gradient `dy` of its value.
    fn rule(
        &mut self,
        n: NodeId,
        ins: &[NodeId],
        want: &[bool],
        dy: NodeId,
    ) -> Result<Vec<Option<NodeId>>> {
        let op = self.g.node(n)?.op.clone();
        let none = |k: usize| vec![None; k];
        let fail = |reason: &str| err(n, &op.name(), reason.to_owned());
        Ok(match &op {
            OpKind::Input { .. } | OpKind::Parameter { .. } | OpKind::Constant { .. } => Vec::new(),
            // Outputs that do not vary with their float inputs.
            OpKind::CausalMask { .. } | OpKind::PaddingMask { .. } => none(ins.len()),
            OpKind::Unary { f } => vec![Some(self.unary(*f, ins[0], n, dy)?)],
            OpKind::Binary { f } => self.binary(*f, ins[0], ins[1], n, dy, want)?,
            OpKind::MatMul => {
                let (dx, dw, _) = self.product_backward(ins[0], ins[1], dy, want[0], want[1])?;
                vec![dx, dw]
            }
            OpKind::Linear => {
                let (x, w, bias) = (ins[0], ins[1], ins[2]);
                // The bias reads `dy` in the shape the products read it (flattened
                // rows where they are), so a flattening reshape is its only use.
                let (dx, dw, dy) = self.product_backward(x, w, dy, want[0], want[1])?;
                let db = if want[2] {
                    Some(self.sum_to(dy, bias)?)
                } else {
                    None
                };
                vec![dx, dw, db]
            }
            OpKind::Reduce { f, axes, keep_dims } => {
                vec![Some(self.reduce(*f, axes, *keep_dims, ins[0], n, dy)?)]
            }
            OpKind::Softmax { axis } => {
                // y ⊙ (dy − Σ dy ⊙ y)
                let yd = self.mul(dy, n)?;
                let s = self.sum_keep(yd, vec![*axis])?;
                let d = self.sub(dy, s)?;
                vec![Some(self.mul(n, d)?)]
            }
            OpKind::LogSoftmax { axis } => {
                // dy − exp(y) ⊙ Σ dy
                let s = self.sum_keep(dy, vec![*axis])?;
                let p = self.un(UnaryOp::Exp, n)?;
                let ps = self.mul(p, s)?;
                vec![Some(self.sub(dy, ps)?)]
            }
            OpKind::LayerNorm { eps } => self.layer_norm(ins, *eps, dy, want)?,
            OpKind::FusedLayerNormGelu { eps } => {
                let z = self.add(OpKind::LayerNorm { eps: *eps }, ins)?;
                let dz = self.unary(UnaryOp::Gelu, z, n, dy)?;
                self.layer_norm(ins, *eps, dz, want)?
            }
            OpKind::RmsNorm { eps } => {
                let (x, gamma) = (ins[0], ins[1]);
                let ms = {
                    let sq = self.mul(x, x)?;
                    self.mean_last(sq)?
                };
                let e = self.c(*eps, x)?;
                let v = self.bin(BinaryOp::Add, ms, e)?;
                let r = self.un(UnaryOp::Rsqrt, v)?;
                let xh = self.mul(x, r)?;
                let mut out = vec![None, None];
                if want[0] {
                    // r ⊙ (dxh − xh ⊙ mean(dxh ⊙ xh))
                    let dxh = self.mul(dy, gamma)?;
                    let p = self.mul(dxh, xh)?;
                    let m = self.mean_last(p)?;
                    let xm = self.mul(xh, m)?;
                    let d = self.sub(dxh, xm)?;
                    out[0] = Some(self.mul(r, d)?);
                }
                if want[1] {
                    let p = self.mul(dy, xh)?;
                    out[1] = Some(self.sum_to(p, gamma)?);
                }
                out
            }
            OpKind::Reshape { .. } => {
                let shape = self.ty(ins[0])?.shape;
                vec![Some(self.reshape(dy, shape)?)]
            }
            OpKind::Permute { perm } => {
                let mut inv = vec![0; perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    inv[p] = i;
                }
                vec![Some(self.add(OpKind::Permute { perm: inv }, &[dy])?)]
            }
            OpKind::Concat { axis } => {
                let mut start = 0u64;
                let mut out = Vec::with_capacity(ins.len());
                for (&i, &w) in ins.iter().zip(want) {
                    let t = self.ty(i)?;
                    let ax = resolve(*axis, t.rank());
                    let size = t.shape[ax].known().ok_or_else(|| {
                        fail("concat of a symbolic size has no gradient (slice it first)")
                    })?;
                    out.push(if w {
                        Some(self.add(
                            OpKind::Slice {
                                axis: *axis,
                                start,
                                end: start + size,
                            },
                            &[dy],
                        )?)
                    } else {
                        None
                    });
                    start += size;
                }
                out
            }
            OpKind::Slice { axis, start, end } => {
                let t = self.ty(ins[0])?;
                let size = t.shape[resolve(*axis, t.rank())].known().unwrap_or(*end);
                vec![Some(self.add(
                    OpKind::Pad {
                        axis: *axis,
                        before: *start,
                        after: size - end,
                    },
                    &[dy],
                )?)]
            }
            OpKind::Pad { axis, before, .. } => {
                let t = self.ty(ins[0])?;
                let size = t.shape[resolve(*axis, t.rank())].known().unwrap_or(0);
                vec![Some(self.add(
                    OpKind::Slice {
                        axis: *axis,
                        start: *before,
                        end: before + size,
                    },
                    &[dy],
                )?)]
            }
            OpKind::Gather { axis } => vec![
                Some(self.add(OpKind::ScatterAdd { axis: *axis }, &[ins[0], ins[1], dy])?),
                None,
            ],
            OpKind::ScatterAdd { axis } => vec![
                None,
                None,
                Some(self.add(OpKind::Gather { axis: *axis }, &[dy, ins[1]])?),
            ],
            OpKind::ExpandAs => vec![Some(self.sum_to(dy, ins[0])?), None],
            OpKind::RepeatInterleave { axis, repeats } => {
                vec![Some(self.repeat_backward(dy, ins[0], *axis, *repeats)?)]
            }
            OpKind::Cast { .. } => {
                let to = self.ty(ins[0])?.dtype;
                if !to.is_float() {
                    return Err(fail("a cast from a non-float type has no gradient"));
                }
                vec![Some(self.add(OpKind::Cast { to }, &[dy])?)]
            }
            OpKind::Where => {
                let zero = self.c(0.0, dy)?;
                let mut out = vec![None, None, None];
                if want[1] {
                    let d = self.add(OpKind::Where, &[ins[0], dy, zero])?;
                    out[1] = Some(self.sum_to(d, ins[1])?);
                }
                if want[2] {
                    let d = self.add(OpKind::Where, &[ins[0], zero, dy])?;
                    out[2] = Some(self.sum_to(d, ins[2])?);
                }
                out
            }
            OpKind::SwiGlu => {
                let (gate, up) = (ins[0], ins[1]);
                let mut out = vec![None, None];
                if want[0] {
                    let s = self.un(UnaryOp::Silu, gate)?;
                    let du = self.mul(dy, up)?;
                    out[0] = Some(self.unary(UnaryOp::Silu, gate, s, du)?);
                }
                if want[1] {
                    let s = self.un(UnaryOp::Silu, gate)?;
                    out[1] = Some(self.mul(dy, s)?);
                }
                out
            }
            OpKind::Attention { scale } => {
                let g = self.attention(ins[0], ins[1], ins[2], ins[3], *scale, dy, want)?;
                g.to_vec()
            }
            OpKind::GroupedAttention { scale } => {
                let (q, k, v) = (ins[0], ins[1], ins[2]);
                let (hq, hkv) = {
                    let (tq, tk) = (self.ty(q)?, self.ty(k)?);
                    let r = tq.rank();
                    (tq.shape[r - 3].clone(), tk.shape[r - 3].clone())
                };
                let group = match (hq.known(), hkv.known()) {
                    (Some(a), Some(b)) => a / b,
                    _ => 1,
                };
                let r = self.ty(q)?.rank() as i64;
                let rep = OpKind::RepeatInterleave {
                    axis: r - 3,
                    repeats: group,
                };
                let (kr, vr) = if group > 1 {
                    (self.add(rep.clone(), &[k])?, self.add(rep, &[v])?)
                } else {
                    (k, v)
                };
                let kt = self.t(kr)?;
                let g = self.attention(q, kt, vr, ins[3], *scale, dy, want)?;
                let dk = match g[1] {
                    Some(dkt) => {
                        let dk = self.t(dkt)?;
                        Some(self.repeat_backward(dk, k, r - 3, group)?)
                    }
                    None => None,
                };
                let dv = match g[2] {
                    Some(dv) => Some(self.repeat_backward(dv, v, r - 3, group)?),
                    None => None,
                };
                vec![g[0], dk, dv, g[3]]
            }
            OpKind::Rope { rot } => {
                if want[1] || want[2] {
                    return Err(fail("rope has no gradient with respect to its tables"));
                }
                // The rotation's transpose: the same op with the halves of sin swapped
                // and negated.
                let (cos, sin) = (ins[1], ins[2]);
                let h = rot / 2;
                let hi = self.add(
                    OpKind::Slice {
                        axis: -1,
                        start: h,
                        end: *rot,
                    },
                    &[sin],
                )?;
                let lo = self.add(
                    OpKind::Slice {
                        axis: -1,
                        start: 0,
                        end: h,
                    },
                    &[sin],
                )?;
                let swapped = self.add(OpKind::Concat { axis: -1 }, &[hi, lo])?;
                let ns = self.un(UnaryOp::Neg, swapped)?;
                vec![
                    Some(self.add(OpKind::Rope { rot: *rot }, &[dy, cos, ns])?),
                    None,
                    None,
                ]
            }
            OpKind::CrossEntropy { ignore_index } => vec![
                Some(self.add(
                    OpKind::CrossEntropyBackward {
                        ignore_index: *ignore_index,
                    },
                    &[ins[0], ins[1], dy],
                )?),
                None,
            ],
            OpKind::CrossEntropyBackward { .. } => {
                return Err(fail("second derivatives of cross-entropy are not defined"))
            }
            OpKind::Custom { .. } => {
                return Err(fail(
                    "custom ops have no gradient rule; decompose them first",
                ))
            }
        })
    }

    /// `dx` for `y = f(x)` given `dy` (`y` is the node's value, reused where the
    /// derivative is cheapest from it).
    fn unary(&mut self, f: UnaryOp, x: NodeId, y: NodeId, dy: NodeId) -> Result<NodeId> {
        use std::f64::consts::{FRAC_1_SQRT_2, FRAC_2_SQRT_PI, PI};
        let d = match f {
            UnaryOp::Neg => return self.un(UnaryOp::Neg, dy),
            UnaryOp::Exp => y,
            UnaryOp::Log => return self.bin(BinaryOp::Div, dy, x),
            UnaryOp::Tanh => {
                let yy = self.mul(y, y)?;
                let one = self.c(1.0, x)?;
                self.sub(one, yy)?
            }
            UnaryOp::Erf => {
                let xx = self.mul(x, x)?;
                let n = self.un(UnaryOp::Neg, xx)?;
                let e = self.un(UnaryOp::Exp, n)?;
                self.scale(e, FRAC_2_SQRT_PI)?
            }
            UnaryOp::Sqrt => {
                let h = self.scale(dy, 0.5)?;
                return self.bin(BinaryOp::Div, h, y);
            }
            UnaryOp::Rsqrt => {
                // −½ x^{−3/2} = −½ y / x
                let q = self.bin(BinaryOp::Div, y, x)?;
                self.scale(q, -0.5)?
            }
            UnaryOp::Recip => {
                let yy = self.mul(y, y)?;
                self.un(UnaryOp::Neg, yy)?
            }
            UnaryOp::Relu => self.un(UnaryOp::Step, x)?,
            UnaryOp::Step => {
                let zero = self.c(0.0, x)?;
                return self.add(OpKind::ExpandAs, &[zero, x]);
            }
            UnaryOp::Sigmoid => {
                let one = self.c(1.0, x)?;
                let om = self.sub(one, y)?;
                self.mul(y, om)?
            }
            UnaryOp::Silu => {
                // σ (1 + x (1 − σ))
                let s = self.un(UnaryOp::Sigmoid, x)?;
                let one = self.c(1.0, x)?;
                let om = self.sub(one, s)?;
                let xo = self.mul(x, om)?;
                let p = self.bin(BinaryOp::Add, one, xo)?;
                self.mul(s, p)?
            }
            UnaryOp::Gelu => {
                // Φ(x) + x φ(x)
                let xs = self.scale(x, FRAC_1_SQRT_2)?;
                let e = self.un(UnaryOp::Erf, xs)?;
                let one = self.c(1.0, x)?;
                let cdf = self.bin(BinaryOp::Add, e, one)?;
                let cdf = self.scale(cdf, 0.5)?;
                let xx = self.mul(x, x)?;
                let xx = self.scale(xx, -0.5)?;
                let pdf = self.un(UnaryOp::Exp, xx)?;
                let pdf = self.scale(pdf, 1.0 / (2.0 * PI).sqrt())?;
                let xp = self.mul(x, pdf)?;
                self.bin(BinaryOp::Add, cdf, xp)?
            }
            UnaryOp::GeluTanh => {
                // ½ (1 + t) + ½ x (1 − t²) c (1 + 3a x²), t = tanh(c (x + a x³))
                const A: f64 = 0.044715;
                let c = (2.0 / PI).sqrt();
                let xx = self.mul(x, x)?;
                let x3 = self.mul(xx, x)?;
                let ax3 = self.scale(x3, A)?;
                let u = self.bin(BinaryOp::Add, x, ax3)?;
                let u = self.scale(u, c)?;
                let t = self.un(UnaryOp::Tanh, u)?;
                let one = self.c(1.0, x)?;
                let op = self.bin(BinaryOp::Add, one, t)?;
                let left = self.scale(op, 0.5)?;
                let tt = self.mul(t, t)?;
                let sech = self.sub(one, tt)?;
                let axx = self.scale(xx, 3.0 * A)?;
                let du = self.bin(BinaryOp::Add, one, axx)?;
                let du = self.scale(du, c)?;
                let r = self.mul(sech, du)?;
                let r = self.mul(r, x)?;
                let r = self.scale(r, 0.5)?;
                self.bin(BinaryOp::Add, left, r)?
            }
        };
        self.mul(dy, d)
    }

    fn binary(
        &mut self,
        f: BinaryOp,
        a: NodeId,
        b: NodeId,
        y: NodeId,
        dy: NodeId,
        want: &[bool],
    ) -> Result<Vec<Option<NodeId>>> {
        let (da, db) = match f {
            BinaryOp::Add => (Some(dy), Some(dy)),
            BinaryOp::Sub => (
                Some(dy),
                want[1].then(|| self.un(UnaryOp::Neg, dy)).transpose()?,
            ),
            BinaryOp::Mul => (
                want[0].then(|| self.mul(dy, b)).transpose()?,
                want[1].then(|| self.mul(dy, a)).transpose()?,
            ),
            BinaryOp::Div => {
                let da = want[0]
                    .then(|| self.bin(BinaryOp::Div, dy, b))
                    .transpose()?;
                let db = if want[1] {
                    // −dy · y / b
                    let q = self.bin(BinaryOp::Div, y, b)?;
                    let p = self.mul(dy, q)?;
                    Some(self.un(UnaryOp::Neg, p)?)
                } else {
                    None
                };
                (da, db)
            }
            BinaryOp::Pow => {
                let da = if want[0] {
                    // dy · b · a^(b−1)
                    let one = self.c(1.0, b)?;
                    let bm = self.sub(b, one)?;
                    let p = self.bin(BinaryOp::Pow, a, bm)?;
                    let p = self.mul(p, b)?;
                    Some(self.mul(dy, p)?)
                } else {
                    None
                };
                let db = if want[1] {
                    // dy · y · ln a
                    let l = self.un(UnaryOp::Log, a)?;
                    let p = self.mul(y, l)?;
                    Some(self.mul(dy, p)?)
                } else {
                    None
                };
                (da, db)
            }
            BinaryOp::Max | BinaryOp::Min => {
                // The larger (smaller) input takes the gradient; ties share it, as
                // PyTorch's maximum/minimum.
                let (hi, lo) = if f == BinaryOp::Max { (a, b) } else { (b, a) };
                let d1 = self.sub(hi, lo)?;
                let d2 = self.sub(lo, hi)?;
                let s1 = self.un(UnaryOp::Step, d1)?;
                let s2 = self.un(UnaryOp::Step, d2)?;
                let one = self.c(1.0, a)?;
                let diff = self.sub(s1, s2)?;
                let wa = self.bin(BinaryOp::Add, one, diff)?;
                let wa = self.scale(wa, 0.5)?;
                let da = want[0].then(|| self.mul(dy, wa)).transpose()?;
                let db = if want[1] {
                    let wb = self.sub(one, wa)?;
                    Some(self.mul(dy, wb)?)
                } else {
                    None
                };
                (da, db)
            }
        };
        let da = match da.filter(|_| want[0]) {
            Some(d) => Some(self.sum_to(d, a)?),
            None => None,
        };
        let db = match db.filter(|_| want[1]) {
            Some(d) => Some(self.sum_to(d, b)?),
            None => None,
        };
        Ok(vec![da, db])
    }

    /// For `x [..., k] · w [k, n]` with `x` of rank above 2: `x` and `dy` with their
    /// leading dims flattened into rows (`[b·t, k]`, `[b·t, n]`), and `x`'s shape;
    /// `None` where the product is of another kind.
    fn flat_rows(
        &mut self,
        x: NodeId,
        w: NodeId,
        dy: NodeId,
    ) -> Result<Option<(NodeId, NodeId, Shape)>> {
        let (tx, tw, tdy) = (self.ty(x)?, self.ty(w)?, self.ty(dy)?);
        if tw.rank() != 2 || tx.rank() <= 2 {
            return Ok(None);
        }
        let lead = &tx.shape[..tx.rank() - 1];
        if lead
            .iter()
            .any(|d| matches!(d, Dim::Sym(s) if s.contains('+')))
        {
            return Ok(None);
        }
        let rows = product(lead);
        let flat = |t: &TensorType| -> Shape {
            [rows.clone(), t.shape[t.rank() - 1].clone()]
                .into_iter()
                .collect()
        };
        let x2 = self.reshape(x, flat(&tx))?;
        let dy2 = self.reshape(dy, flat(&tdy))?;
        Ok(Some((x2, dy2, tx.shape)))
    }

    /// Gradients of `a · b` given `dy`: `dy · bᵀ` and `aᵀ · dy`, summed down to the
    /// operands' shapes; a weight shared by every row (`b` of rank 2) takes one
    /// product over the flattened rows instead of per-batch products summed. Also
    /// returns `dy` as the products read it (flattened, or as given).
    fn product_backward(
        &mut self,
        a: NodeId,
        b: NodeId,
        dy: NodeId,
        want_a: bool,
        want_b: bool,
    ) -> Result<(Option<NodeId>, Option<NodeId>, NodeId)> {
        if let Some((a2, dy2, shape)) = self.flat_rows(a, b, dy)? {
            let da = if want_a {
                let bt = self.t(b)?;
                let d = self.matmul(dy2, bt)?;
                Some(self.reshape(d, shape)?)
            } else {
                None
            };
            let db = if want_b {
                let at = self.t(a2)?;
                Some(self.matmul(at, dy2)?)
            } else {
                None
            };
            return Ok((da, db, dy2));
        }
        let da = if want_a {
            let bt = self.t(b)?;
            let d = self.matmul(dy, bt)?;
            Some(self.sum_to(d, a)?)
        } else {
            None
        };
        let db = if want_b {
            let at = self.t(a)?;
            let d = self.matmul(at, dy)?;
            Some(self.sum_to(d, b)?)
        } else {
            None
        };
        Ok((da, db, dy))
    }

    fn reduce(
        &mut self,
        f: ReduceOp,
        axes: &[i64],
        keep_dims: bool,
        x: NodeId,
        y: NodeId,
        dy: NodeId,
    ) -> Result<NodeId> {
        let xt = self.ty(x)?;
        let r = xt.rank();
        let idx: Vec<usize> = axes.iter().map(|&a| resolve(a, r)).collect();
        let kept: Shape = xt
            .shape
            .iter()
            .enumerate()
            .map(|(i, d)| {
                if idx.contains(&i) {
                    Dim::Known(1)
                } else {
                    d.clone()
                }
            })
            .collect();
        let (dyk, yk) = if keep_dims {
            (dy, y)
        } else {
            (self.reshape(dy, kept.clone())?, self.reshape(y, kept)?)
        };
        match f {
            ReduceOp::Sum => self.add(OpKind::ExpandAs, &[dyk, x]),
            ReduceOp::Mean => {
                let e = self.add(OpKind::ExpandAs, &[dyk, x])?;
                let count: Option<u64> = idx.iter().map(|&i| xt.shape[i].known()).product();
                match count {
                    Some(n) => self.scale(e, 1.0 / n as f64),
                    None => {
                        let one = self.c(1.0, x)?;
                        let ones = self.add(OpKind::ExpandAs, &[one, x])?;
                        let n = self.sum_keep(ones, axes.to_vec())?;
                        self.bin(BinaryOp::Div, e, n)
                    }
                }
            }
            ReduceOp::Max | ReduceOp::Min => {
                // Spread evenly over the elements equal to the extremum.
                let (hi, lo) = if f == ReduceOp::Max { (yk, x) } else { (x, yk) };
                let d = self.sub(hi, lo)?;
                let s = self.un(UnaryOp::Step, d)?;
                let one = self.c(1.0, x)?;
                let eq = self.sub(one, s)?;
                let n = self.sum_keep(eq, axes.to_vec())?;
                let share = self.bin(BinaryOp::Div, dyk, n)?;
                self.mul(eq, share)
            }
        }
    }

    fn layer_norm(
        &mut self,
        ins: &[NodeId],
        eps: f64,
        dy: NodeId,
        want: &[bool],
    ) -> Result<Vec<Option<NodeId>>> {
        let (x, gamma, beta) = (ins[0], ins[1], ins[2]);
        let mu = self.mean_last(x)?;
        let xc = self.sub(x, mu)?;
        let sq = self.mul(xc, xc)?;
        let var = self.mean_last(sq)?;
        let e = self.c(eps, x)?;
        let v = self.bin(BinaryOp::Add, var, e)?;
        let r = self.un(UnaryOp::Rsqrt, v)?;
        let xh = self.mul(xc, r)?;
        let mut out = vec![None, None, None];
        if want[0] {
            // r ⊙ (dxh − mean(dxh) − xh ⊙ mean(dxh ⊙ xh))
            let dxh = self.mul(dy, gamma)?;
            let m1 = self.mean_last(dxh)?;
            let p = self.mul(dxh, xh)?;
            let m2 = self.mean_last(p)?;
            let xm = self.mul(xh, m2)?;
            let d = self.sub(dxh, m1)?;
            let d = self.sub(d, xm)?;
            out[0] = Some(self.mul(r, d)?);
        }
        if want[1] {
            let p = self.mul(dy, xh)?;
            out[1] = Some(self.sum_to(p, gamma)?);
        }
        if want[2] {
            out[2] = Some(self.sum_to(dy, beta)?);
        }
        Ok(out)
    }

    /// Gradients of `softmax(q·kt·scale + mask)·v` (the probabilities recomputed).
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &mut self,
        q: NodeId,
        kt: NodeId,
        v: NodeId,
        mask: NodeId,
        scale: f64,
        dy: NodeId,
        want: &[bool],
    ) -> Result<[Option<NodeId>; 4]> {
        let s = self.matmul(q, kt)?;
        let s = self.scale(s, scale)?;
        let s = self.bin(BinaryOp::Add, s, mask)?;
        let p = self.add(OpKind::Softmax { axis: -1 }, &[s])?;
        let mut out = [None; 4];
        if want[2] {
            let pt = self.t(p)?;
            let dv = self.matmul(pt, dy)?;
            out[2] = Some(self.sum_to(dv, v)?);
        }
        if !(want[0] || want[1] || want[3]) {
            return Ok(out);
        }
        let vt = self.t(v)?;
        let dp = self.matmul(dy, vt)?;
        let pd = self.mul(dp, p)?;
        let sm = self.sum_keep(pd, vec![-1])?;
        let d = self.sub(dp, sm)?;
        let ds = self.mul(p, d)?;
        if want[3] {
            out[3] = Some(self.sum_to(ds, mask)?);
        }
        let dss = self.scale(ds, scale)?;
        if want[0] {
            let k = self.t(kt)?;
            let dq = self.matmul(dss, k)?;
            out[0] = Some(self.sum_to(dq, q)?);
        }
        if want[1] {
            let qt = self.t(q)?;
            let dkt = self.matmul(qt, dss)?;
            out[1] = Some(self.sum_to(dkt, kt)?);
        }
        Ok(out)
    }

    /// The adjoint of repeat-interleave: `dy` with each group of `repeats` slices
    /// along `axis` summed, in the type of `x`.
    fn repeat_backward(
        &mut self,
        dy: NodeId,
        x: NodeId,
        axis: i64,
        repeats: u64,
    ) -> Result<NodeId> {
        if repeats == 1 {
            return Ok(dy);
        }
        let xt = self.ty(x)?;
        let ax = resolve(axis, xt.rank());
        let mut split: Shape = xt.shape.clone();
        split.insert(ax + 1, Dim::Known(repeats));
        let r = self.reshape(dy, split)?;
        self.add(
            OpKind::Reduce {
                f: ReduceOp::Sum,
                axes: vec![ax as i64 + 1],
                keep_dims: false,
            },
            &[r],
        )
    }
}

/// The product of dims: known sizes multiplied, symbols joined into a product symbol
/// (`b*t`, which the executor evaluates from its factors).
fn product(dims: &[Dim]) -> Dim {
    let mut known = 1u64;
    let mut syms: Vec<&str> = Vec::new();
    for d in dims {
        match d {
            Dim::Known(n) => known *= n,
            Dim::Sym(s) => syms.push(s),
        }
    }
    if syms.is_empty() {
        return Dim::Known(known);
    }
    let mut name = syms.join("*");
    if known != 1 {
        name.push_str(&format!("*{known}"));
    }
    Dim::Sym(name)
}

/// An axis (negative from the end) as an index; the caller's op already checked it.
fn resolve(a: i64, rank: usize) -> usize {
    if a < 0 {
        (a + rank as i64).max(0) as usize
    } else {
        a as usize
    }
}
