//! The graph: nodes computing one typed value each from earlier nodes' values.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, IntoEdgeReferences, NodeIndexable};
use petgraph::Direction;
use serde::{Deserialize, Serialize};

use crate::custom::OpDef;
use crate::error::{Error, Result};
use crate::infer::infer;
use crate::op::OpKind;
use crate::types::{DType, TensorType};

/// A node's identity; stable while other nodes are added or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

impl NodeId {
    fn index(self) -> NodeIndex<u32> {
        NodeIndex::new(self.0 as usize)
    }

    fn of(i: NodeIndex<u32>) -> NodeId {
        NodeId(i.index() as u32)
    }
}

/// A node: an op and the type of the value it computes.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// What it computes.
    pub op: OpKind,
    /// The type of its value (inferred).
    pub ty: TensorType,
    /// A recomputed copy of a value (gradient checkpointing,
    /// [`crate::Gradients::checkpoint`]): [`Graph::schedule`] runs it just before its
    /// first user instead of as soon as it can, and common-subexpression elimination
    /// never merges it with a node that is not recomputed.
    pub recompute: bool,
}

/// A tensor graph. Edges run from an input to the node using it, weighted by the input
/// slot; every node has one output value whose type is inferred when it is added.
///
/// # Examples
/// ```
/// use autoglm_graph::{BinaryOp, DType, Dim, Graph, OpKind, TensorType};
/// # fn main() -> autoglm_graph::Result<()> {
/// let mut g = Graph::new();
/// let x = g.input("x", TensorType::new(DType::F32, [Dim::sym("batch"), Dim::Known(512)]))?;
/// let w = g.parameter("w", TensorType::new(DType::F32, [512u64, 128]))?;
/// let y = g.add(OpKind::MatMul, &[x, w])?;
/// let s = g.add(OpKind::Unary { f: autoglm_graph::UnaryOp::Silu }, &[y])?;
/// g.set_outputs(&[s])?;
/// assert_eq!(g.node(s)?.ty.to_string(), "f32[batch,128]");
/// g.verify()?;
/// let again = autoglm_graph::Graph::from_json(&g.to_json())?;
/// assert_eq!(again.to_json(), g.to_json());
/// # let _ = BinaryOp::Add;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Graph {
    g: StableDiGraph<Node, usize, u32>,
    outputs: Vec<NodeId>,
    custom: BTreeMap<String, Arc<dyn OpDef>>,
}

/// The serialized form: nodes in topological order, inputs by position.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Repr {
    nodes: Vec<NodeRepr>,
    outputs: Vec<usize>,
}

/// One node: the op's fields (an unknown field is an error, reported by the op) and
/// the positions of its inputs.
#[derive(Serialize, Deserialize)]
struct NodeRepr {
    #[serde(flatten)]
    op: OpKind,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    inputs: Vec<usize>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    recompute: bool,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Graph::default()
    }

    /// Adds a node computing `op` from `inputs` (in slot order).
    ///
    /// # Errors
    /// [`Error::UnknownNode`] for a missing input, [`Error::Type`] if the inputs do not
    /// fit the op (the graph is unchanged).
    pub fn add(&mut self, op: OpKind, inputs: &[NodeId]) -> Result<NodeId> {
        let types = inputs
            .iter()
            .map(|&i| self.node(i).map(|n| &n.ty))
            .collect::<Result<Vec<_>>>()?;
        let ty = self.infer(&op, &types).map_err(|reason| Error::Type {
            node: NodeId(self.g.node_bound() as u32),
            op: op.name(),
            reason,
        })?;
        let id = NodeId::of(self.g.add_node(Node {
            op,
            ty,
            recompute: false,
        }));
        for (slot, &i) in inputs.iter().enumerate() {
            self.g.add_edge(i.index(), id.index(), slot);
        }
        Ok(id)
    }

    /// The output type of `op` on inputs of types `types`: [`infer`] for built-in ops,
    /// the registered [`OpDef`] for custom ones.
    ///
    /// # Errors
    /// What does not fit, or an unregistered custom op.
    pub fn infer(
        &self,
        op: &OpKind,
        types: &[&TensorType],
    ) -> std::result::Result<TensorType, String> {
        let OpKind::Custom { name, attrs } = op else {
            return infer(op, types);
        };
        let def = self.custom.get(name).ok_or_else(|| {
            format!("custom op '{name}' is not registered with the graph (Graph::register_op)")
        })?;
        match def.arity() {
            Some(n) if types.len() != n => {
                Err(format!("{name} takes {n} inputs, got {}", types.len()))
            }
            None if types.is_empty() => Err(format!("{name} needs at least one input")),
            _ => def.infer(attrs, types),
        }
    }

    /// Registers a user-defined op so nodes can use it as [`OpKind::Custom`]; a
    /// definition with the same name is replaced.
    pub fn register_op(&mut self, def: Arc<dyn OpDef>) {
        self.custom.insert(def.name().to_owned(), def);
    }

    /// The registered definition of the custom op `name`.
    pub fn custom_op(&self, name: &str) -> Option<&Arc<dyn OpDef>> {
        self.custom.get(name)
    }

    /// Replaces every custom op that has a decomposition by its built-in form (for
    /// targets without a kernel for it). Returns how many were replaced.
    ///
    /// # Errors
    /// An error from a decomposition, or [`Error::Type`] if a decomposition's result
    /// does not have the custom op's type.
    pub fn decompose_custom_ops(&mut self) -> Result<usize> {
        let mut done = 0;
        for n in self.topo_order()? {
            let OpKind::Custom { name, attrs } = self.node(n)?.op.clone() else {
                continue;
            };
            let Some(def) = self.custom.get(&name).cloned() else {
                continue;
            };
            let inputs = self.inputs(n)?;
            if let Some(new) = def.decompose(self, &attrs, &inputs) {
                self.replace_uses(n, new?)?;
                done += 1;
            }
        }
        self.eliminate_dead_code();
        Ok(done)
    }

    /// Adds a graph input.
    ///
    /// # Errors
    /// As [`Graph::add`].
    pub fn input(&mut self, name: &str, ty: TensorType) -> Result<NodeId> {
        self.add(
            OpKind::Input {
                name: name.to_owned(),
                ty,
            },
            &[],
        )
    }

    /// Adds a parameter.
    ///
    /// # Errors
    /// As [`Graph::add`].
    pub fn parameter(&mut self, name: &str, ty: TensorType) -> Result<NodeId> {
        self.add(
            OpKind::Parameter {
                name: name.to_owned(),
                ty,
            },
            &[],
        )
    }

    /// Adds a scalar constant.
    ///
    /// # Errors
    /// As [`Graph::add`].
    pub fn constant(&mut self, value: f64, dtype: DType) -> Result<NodeId> {
        self.add(OpKind::Constant { value, dtype }, &[])
    }

    /// Sets the values the graph returns.
    ///
    /// # Errors
    /// [`Error::UnknownNode`].
    pub fn set_outputs(&mut self, outputs: &[NodeId]) -> Result<()> {
        for &o in outputs {
            self.node(o)?;
        }
        self.outputs = outputs.to_vec();
        Ok(())
    }

    /// The values the graph returns.
    pub fn outputs(&self) -> &[NodeId] {
        &self.outputs
    }

    /// A node.
    ///
    /// # Errors
    /// [`Error::UnknownNode`].
    pub fn node(&self, id: NodeId) -> Result<&Node> {
        self.g.node_weight(id.index()).ok_or(Error::UnknownNode(id))
    }

    /// Marks `id` as recomputed (or not): see [`Node::recompute`].
    ///
    /// # Errors
    /// [`Error::UnknownNode`].
    pub fn set_recompute(&mut self, id: NodeId, recompute: bool) -> Result<()> {
        self.g
            .node_weight_mut(id.index())
            .ok_or(Error::UnknownNode(id))?
            .recompute = recompute;
        Ok(())
    }

    /// Makes `node` read `new` in input slot `slot`.
    ///
    /// # Errors
    /// [`Error::UnknownNode`]; [`Error::Type`] if `new`'s type differs from the value
    /// it replaces or `new` depends on `node`.
    pub(crate) fn replace_input(&mut self, node: NodeId, slot: usize, new: NodeId) -> Result<()> {
        let edge = self
            .g
            .edges_directed(node.index(), Direction::Incoming)
            .find(|e| *e.weight() == slot)
            .map(|e| (e.id(), NodeId::of(e.source())));
        let n = self.node(node)?;
        let Some((edge, old)) = edge else {
            return Err(Error::Type {
                node,
                op: n.op.name(),
                reason: format!("has no input slot {slot}"),
            });
        };
        let (from, to) = (&self.node(old)?.ty, &self.node(new)?.ty);
        if from != to || self.depends_on(new, node) {
            return Err(Error::Type {
                node,
                op: n.op.name(),
                reason: format!("input {slot} ({from}) cannot become {new} ({to})"),
            });
        }
        self.g.remove_edge(edge);
        self.g.add_edge(new.index(), node.index(), slot);
        Ok(())
    }

    /// The inputs of a node, in slot order.
    ///
    /// # Errors
    /// [`Error::UnknownNode`].
    pub fn inputs(&self, id: NodeId) -> Result<Vec<NodeId>> {
        self.node(id)?;
        let mut e: Vec<(usize, NodeId)> = self
            .g
            .edges_directed(id.index(), Direction::Incoming)
            .map(|e| (*e.weight(), NodeId::of(e.source())))
            .collect();
        e.sort_unstable();
        Ok(e.into_iter().map(|(_, n)| n).collect())
    }

    /// The nodes that use `id`'s value, with the input slot, in id order.
    ///
    /// # Errors
    /// [`Error::UnknownNode`].
    pub fn users(&self, id: NodeId) -> Result<Vec<(NodeId, usize)>> {
        self.node(id)?;
        let mut u: Vec<(NodeId, usize)> = self
            .g
            .edges_directed(id.index(), Direction::Outgoing)
            .map(|e| (NodeId::of(e.target()), *e.weight()))
            .collect();
        u.sort_unstable();
        Ok(u)
    }

    /// Makes every user of `old` (and the graph outputs) use `new` instead; `old` stays,
    /// unused, until [`Graph::eliminate_dead_code`] removes it.
    ///
    /// # Errors
    /// [`Error::UnknownNode`], or [`Error::Type`] if the two values' types differ, or if
    /// `old` is an input of `new` (redirecting would make a cycle).
    pub fn replace_uses(&mut self, old: NodeId, new: NodeId) -> Result<()> {
        let (to, from) = (self.node(new)?.ty.clone(), self.node(old)?);
        let problem = if from.ty != to {
            Some(format!(
                "{old} has type {} but its replacement {new} has {to}",
                from.ty
            ))
        } else if self.depends_on(new, old) {
            Some(format!("{new} depends on {old}, so it cannot replace it"))
        } else {
            None
        };
        if let Some(reason) = problem {
            return Err(Error::Type {
                node: old,
                op: from.op.name(),
                reason,
            });
        }
        for (user, slot) in self.users(old)? {
            let e = self
                .g
                .find_edge(old.index(), user.index())
                .expect("users are joined by an edge");
            self.g.remove_edge(e);
            self.g.add_edge(new.index(), user.index(), slot);
        }
        for o in &mut self.outputs {
            if *o == old {
                *o = new;
            }
        }
        Ok(())
    }

    /// Whether `a`'s value is computed from `b`'s (or `a` is `b`).
    fn depends_on(&self, a: NodeId, b: NodeId) -> bool {
        self.ancestors(vec![a]).contains(&b)
    }

    /// `roots` and every node their values are computed from.
    fn ancestors(&self, mut stack: Vec<NodeId>) -> BTreeSet<NodeId> {
        let mut seen = BTreeSet::new();
        while let Some(n) = stack.pop() {
            if seen.insert(n) {
                stack.extend(
                    self.g
                        .edges_directed(n.index(), Direction::Incoming)
                        .map(|e| NodeId::of(e.source())),
                );
            }
        }
        seen
    }

    /// Removes the nodes the outputs do not depend on (graph inputs are kept: they are
    /// part of the signature). Returns how many were removed.
    pub fn eliminate_dead_code(&mut self) -> usize {
        let live = self.ancestors(self.outputs.clone());
        let dead: Vec<NodeId> = self
            .node_ids()
            .filter(|n| !live.contains(n))
            .filter(|&n| !matches!(self.g[n.index()].op, OpKind::Input { .. }))
            .collect();
        for n in &dead {
            self.g.remove_node(n.index());
        }
        dead.len()
    }

    /// Common-subexpression elimination: nodes with the same op, attributes and inputs
    /// as an earlier node are replaced by it (inputs and parameters, which are named,
    /// are never merged). Returns how many were merged; they become dead code.
    pub fn eliminate_common_subexpressions(&mut self) -> usize {
        let order = self.topo_order().expect("graphs built by add are acyclic");
        let mut seen: std::collections::HashMap<(String, bool, Vec<NodeId>), NodeId> =
            std::collections::HashMap::new();
        let mut merged = 0;
        for n in order {
            let node = &self.g[n.index()];
            if matches!(node.op, OpKind::Input { .. } | OpKind::Parameter { .. }) {
                continue;
            }
            let key = (
                serde_json::to_string(&node.op).expect("ops serialize"),
                node.recompute,
                self.inputs(n).expect("listed"),
            );
            match seen.get(&key) {
                Some(&first) => {
                    self.replace_uses(n, first)
                        .expect("equal ops on equal inputs have equal types");
                    merged += 1;
                }
                None => {
                    seen.insert(key, n);
                }
            }
        }
        merged
    }

    /// Constant folding: a unary, binary or cast node whose inputs are all scalar
    /// constants becomes a constant (computed in f64, then rounded to f32 for f32
    /// values). Left alone: f16/bf16 values (their rounding belongs to the kernels),
    /// erf and the GELUs, non-finite results, and integer results that are not whole
    /// numbers (an integer division that would truncate).
    /// Returns how many nodes were folded; their old inputs may become dead code.
    pub fn fold_constants(&mut self) -> usize {
        let order = self.topo_order().expect("graphs built by add are acyclic");
        let mut folded = 0;
        for n in order {
            let ins = self.inputs(n).expect("listed");
            let consts: Option<Vec<f64>> = ins
                .iter()
                .map(|&i| match self.g[i.index()].op {
                    OpKind::Constant { value, .. } => Some(value),
                    _ => None,
                })
                .collect();
            let Some(c) = consts.filter(|c| !c.is_empty()) else {
                continue;
            };
            let node = &self.g[n.index()];
            let Some(value) = fold(&node.op, &c) else {
                continue;
            };
            let dtype = node.ty.dtype;
            let value = match dtype {
                DType::F64 => value,
                DType::F32 => f64::from(value as f32),
                DType::I64 | DType::I32 if value.fract() == 0.0 => value,
                _ => continue,
            };
            let k = self
                .add(OpKind::Constant { value, dtype }, &[])
                .expect("scalar constants always type-check");
            self.replace_uses(n, k)
                .expect("a scalar constant replaces a scalar");
            folded += 1;
        }
        folded
    }

    /// The number of nodes.
    pub fn node_count(&self) -> usize {
        self.g.node_count()
    }

    /// Every node id, in increasing order.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.g.node_indices().map(NodeId::of)
    }

    /// The nodes in an order where every node comes after its inputs (smallest id first
    /// among the ready ones, so the order is deterministic).
    ///
    /// # Errors
    /// [`Error::Invalid`] if the graph has a cycle.
    pub fn topo_order(&self) -> Result<Vec<NodeId>> {
        let mut indegree: std::collections::BTreeMap<NodeId, usize> = self
            .node_ids()
            .map(|n| {
                (
                    n,
                    self.g
                        .edges_directed(n.index(), Direction::Incoming)
                        .count(),
                )
            })
            .collect();
        let mut ready: BTreeSet<NodeId> = indegree
            .iter()
            .filter(|(_, &d)| d == 0)
            .map(|(&n, _)| n)
            .collect();
        let mut order = Vec::with_capacity(indegree.len());
        while let Some(n) = ready.pop_first() {
            order.push(n);
            for e in self.g.edges_directed(n.index(), Direction::Outgoing) {
                let m = NodeId::of(e.target());
                let d = indegree.get_mut(&m).expect("targets are nodes");
                *d -= 1;
                if *d == 0 {
                    ready.insert(m);
                }
            }
        }
        if order.len() != indegree.len() {
            return Err(Error::Invalid(vec!["the graph has a cycle".into()]));
        }
        Ok(order)
    }

    /// The nodes that every path from `from` to `to` passes through, strictly between
    /// them, in order: the residual stream of a sequential model (each block's input
    /// and its output), the natural checkpoints of [`crate::Gradients::checkpoint`].
    /// Empty if `to` does not depend on `from`.
    ///
    /// # Errors
    /// [`Error::UnknownNode`]; [`Error::Invalid`] if the graph has a cycle.
    pub fn cut_points(&self, from: NodeId, to: NodeId) -> Result<Vec<NodeId>> {
        self.node(from)?;
        let before = self.ancestors(vec![self.node(to).map(|_| to)?]);
        if !before.contains(&from) {
            return Ok(Vec::new());
        }
        let mut between = BTreeSet::from([from]);
        let order: Vec<NodeId> = self
            .topo_order()?
            .into_iter()
            .filter(|n| before.contains(n))
            .filter(|&n| {
                let on = n == from
                    || self
                        .g
                        .edges_directed(n.index(), Direction::Incoming)
                        .any(|e| between.contains(&NodeId::of(e.source())));
                if on {
                    between.insert(n);
                }
                on
            })
            .collect();
        let pos: BTreeMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        // A node is passed by every path unless an edge of the region jumps over it.
        let mut jumps = vec![0i64; order.len() + 1];
        for &n in &order {
            for e in self.g.edges_directed(n.index(), Direction::Outgoing) {
                if let Some(&v) = pos.get(&NodeId::of(e.target())) {
                    jumps[pos[&n] + 1] += 1;
                    jumps[v] -= 1;
                }
            }
        }
        let mut open = 0;
        let mut cuts = Vec::new();
        for (i, &n) in order.iter().enumerate() {
            open += jumps[i];
            if open == 0 && n != from && n != to {
                cuts.push(n);
            }
        }
        Ok(cuts)
    }

    /// The order to run the nodes in: each node that is not recomputed comes as
    /// [`Graph::topo_order`] would place it if the recomputed nodes ([`Node::recompute`])
    /// were free (smallest id first among the ready ones), and each recomputed node
    /// just before the first node that needs it, so its value lives only while its
    /// users run. Recomputed outputs that nothing uses come last.
    ///
    /// # Errors
    /// [`Error::Invalid`] if the graph has a cycle.
    pub fn schedule(&self) -> Result<Vec<NodeId>> {
        let topo = self.topo_order()?;
        let lazy = |n: NodeId| self.g[n.index()].recompute;
        // The nodes that are not recomputed which each node waits for, looking
        // through recomputed inputs.
        let mut frontier: BTreeMap<NodeId, BTreeSet<NodeId>> = BTreeMap::new();
        let mut waits: BTreeMap<NodeId, BTreeSet<NodeId>> = BTreeMap::new();
        for &n in &topo {
            let mut w = BTreeSet::new();
            for i in self.inputs(n)? {
                match frontier.get(&i) {
                    Some(f) => w.extend(f.iter().copied()),
                    None => {
                        w.insert(i);
                    }
                }
            }
            if lazy(n) {
                frontier.insert(n, w);
            } else {
                waits.insert(n, w);
            }
        }
        let mut users: BTreeMap<NodeId, Vec<NodeId>> = BTreeMap::new();
        let mut indegree: BTreeMap<NodeId, usize> = BTreeMap::new();
        for (&n, w) in &waits {
            indegree.insert(n, w.len());
            for &i in w {
                users.entry(i).or_default().push(n);
            }
        }
        let mut ready: BTreeSet<NodeId> = indegree
            .iter()
            .filter(|(_, &d)| d == 0)
            .map(|(&n, _)| n)
            .collect();
        let mut placed = BTreeSet::new();
        let mut order = Vec::with_capacity(topo.len());
        let mut place = |root: NodeId, order: &mut Vec<NodeId>| {
            // Depth first over the recomputed inputs not yet placed; a node goes in
            // after all of them.
            let mut stack = vec![(root, false)];
            while let Some((n, expanded)) = stack.pop() {
                if placed.contains(&n) {
                    continue;
                }
                if expanded {
                    placed.insert(n);
                    order.push(n);
                    continue;
                }
                stack.push((n, true));
                let ins = self.inputs(n).expect("listed");
                for &i in ins.iter().rev() {
                    if lazy(i) && !placed.contains(&i) {
                        stack.push((i, false));
                    }
                }
            }
        };
        while let Some(n) = ready.pop_first() {
            place(n, &mut order);
            for &u in users.get(&n).map_or(&[][..], Vec::as_slice) {
                let d = indegree.get_mut(&u).expect("users wait");
                *d -= 1;
                if *d == 0 {
                    ready.insert(u);
                }
            }
        }
        for &n in &topo {
            place(n, &mut order);
        }
        Ok(order)
    }

    /// Checks the whole graph and reports every problem: cycles, unknown outputs,
    /// duplicate input or parameter names, and nodes whose recorded type is not what
    /// their op infers from their inputs.
    ///
    /// # Errors
    /// [`Error::Invalid`] listing the problems.
    pub fn verify(&self) -> Result<()> {
        let mut problems = Vec::new();
        if let Err(Error::Invalid(p)) = self.topo_order() {
            problems.extend(p);
        }
        for o in &self.outputs {
            if self.node(*o).is_err() {
                problems.push(format!("output {o} is not a node"));
            }
        }
        let mut names = BTreeSet::new();
        for id in self.node_ids() {
            let node = self.node(id)?;
            if let OpKind::Input { name, .. } | OpKind::Parameter { name, .. } = &node.op {
                if !names.insert(name.clone()) {
                    problems.push(format!("node {id}: the name '{name}' is used twice"));
                }
            }
            let inputs = self.inputs(id)?;
            let types: Vec<&TensorType> = inputs
                .iter()
                .map(|&i| &self.node(i).expect("edges join nodes").ty)
                .collect();
            match self.infer(&node.op, &types) {
                Err(reason) => problems.push(format!("node {id} ({}): {reason}", node.op.name())),
                Ok(ty) if ty != node.ty => problems.push(format!(
                    "node {id} ({}): recorded type {} but its inputs give {ty}",
                    node.op.name(),
                    node.ty
                )),
                Ok(_) => {}
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(problems))
        }
    }

    /// The graph as JSON: nodes in topological order, each with its op's fields and the
    /// positions of its inputs, then the output positions.
    ///
    /// # Panics
    /// If the graph has a cycle (graphs built with [`Graph::add`] cannot).
    pub fn to_json(&self) -> String {
        let order = self.topo_order().expect("graphs built by add are acyclic");
        let pos: std::collections::BTreeMap<NodeId, usize> =
            order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        let repr = Repr {
            nodes: order
                .iter()
                .map(|&n| NodeRepr {
                    op: self.node(n).expect("listed").op.clone(),
                    recompute: self.node(n).expect("listed").recompute,
                    inputs: self
                        .inputs(n)
                        .expect("listed")
                        .iter()
                        .map(|i| pos[i])
                        .collect(),
                })
                .collect(),
            outputs: self.outputs.iter().map(|o| pos[o]).collect(),
        };
        serde_json::to_string_pretty(&repr).expect("graphs serialize")
    }

    /// Reads a graph written by [`Graph::to_json`], re-inferring every type.
    ///
    /// # Errors
    /// [`Error::Json`] naming the line and column or the node position that is wrong,
    /// [`Error::Type`] for inputs that do not fit an op.
    pub fn from_json(text: &str) -> Result<Self> {
        Graph::from_json_with_ops(text, &[])
    }

    /// [`Graph::from_json`] for graphs using custom ops: `ops` are registered first.
    ///
    /// # Errors
    /// As [`Graph::from_json`]; a custom op not in `ops` is a type error naming it.
    pub fn from_json_with_ops(text: &str, ops: &[Arc<dyn OpDef>]) -> Result<Self> {
        let repr: Repr = serde_json::from_str(text).map_err(|e| Error::Json(e.to_string()))?;
        let mut g = Graph::new();
        for op in ops {
            g.register_op(op.clone());
        }
        let mut ids = Vec::with_capacity(repr.nodes.len());
        for (i, n) in repr.nodes.into_iter().enumerate() {
            let inputs = n
                .inputs
                .iter()
                .map(|&p| {
                    ids.get(p).copied().ok_or_else(|| {
                        Error::Json(format!("nodes[{i}]: input {p} is not an earlier node"))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let id = g.add(n.op, &inputs)?;
            g.set_recompute(id, n.recompute)?;
            ids.push(id);
        }
        let outputs = repr
            .outputs
            .iter()
            .map(|&p| {
                ids.get(p)
                    .copied()
                    .ok_or_else(|| Error::Json(format!("output {p} is not a node")))
            })
            .collect::<Result<Vec<_>>>()?;
        g.set_outputs(&outputs)?;
        Ok(g)
    }

    /// The graph in Graphviz DOT: one box per node labelled with its op and type,
    /// outputs doubly outlined.
    pub fn to_dot(&self) -> String {
        let mut s = String::from("digraph {\n  node [shape=box, fontname=monospace];\n");
        for id in self.node_ids() {
            let n = self.node(id).expect("listed");
            let detail = match &n.op {
                OpKind::Input { name, .. } | OpKind::Parameter { name, .. } => format!(" {name}"),
                OpKind::Constant { value, .. } => format!(" {value}"),
                _ => String::new(),
            };
            let periph = if self.outputs.contains(&id) {
                ", peripheries=2"
            } else {
                ""
            };
            s += &format!(
                "  n{} [label=\"{id} {}{}\\n{}\"{periph}];\n",
                id.0,
                n.op.name(),
                detail.replace('"', "\\\""),
                n.ty
            );
        }
        for e in self.g.edge_references() {
            s += &format!(
                "  n{} -> n{} [label=\"{}\"];\n",
                e.source().index(),
                e.target().index(),
                e.weight()
            );
        }
        s + "}\n"
    }
}

/// The value of a foldable op on scalar inputs.
fn fold(op: &OpKind, c: &[f64]) -> Option<f64> {
    use crate::op::{BinaryOp as B, UnaryOp as U};
    Some(match (op, c) {
        (OpKind::Unary { f }, &[x]) => match f {
            U::Neg => -x,
            U::Exp => x.exp(),
            U::Log => x.ln(),
            U::Tanh => x.tanh(),
            U::Sqrt => x.sqrt(),
            U::Rsqrt => 1.0 / x.sqrt(),
            U::Recip => 1.0 / x,
            U::Relu => x.max(0.0),
            U::Silu => x / (1.0 + (-x).exp()),
            U::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            U::Step => f64::from(u8::from(x > 0.0)),
            U::Erf | U::Gelu | U::GeluTanh => return None,
        },
        (OpKind::Binary { f }, &[a, b]) => match f {
            B::Add => a + b,
            B::Sub => a - b,
            B::Mul => a * b,
            B::Div => a / b,
            B::Pow => a.powf(b),
            B::Max => a.max(b),
            B::Min => a.min(b),
        },
        (OpKind::Cast { to }, &[x]) => match to {
            DType::Bool => f64::from(u8::from(x != 0.0)),
            DType::I64 | DType::I32 => x.trunc(),
            _ => x,
        },
        _ => return None,
    })
    .filter(|v| v.is_finite())
}
