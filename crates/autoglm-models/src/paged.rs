//! The decoder for serving: ragged batches over a block-paged key/value cache.
//!
//! [`Model`](crate::Model) runs the graph on rectangular batches whose rows share
//! one length. A server's batch is ragged: one sequence feeds its whole prompt (or a
//! chunk of it) while others feed one token each, and sequences join and leave
//! between steps. [`PagedModel::step`] takes such a batch as a list of [`Chunk`]s —
//! each some consecutive tokens of one sequence at its own positions — and runs
//! every token through the projections as one matrix (the expensive part, the packed
//! GEMM of `autoglm-ops`), then attention per token against its own sequence.
//!
//! Keys and values live in a [`PagedCache`]: fixed-size blocks of `block_size`
//! positions, handed out from one preallocated pool. A sequence owns a list of blocks
//! (its block table), so sequences of any length share the memory without
//! fragmentation, and finishing (or preempting) a sequence returns its blocks at
//! once. This is vLLM's PagedAttention layout on the CPU.
//!
//! The arithmetic is the graph's (same weight layout, same rotary tables, same row
//! kernels); logits agree with [`Model::forward`](crate::Model::forward) to float
//! rounding (tested).

use std::collections::BTreeMap;
use std::path::Path;

use autoglm_ops::quant::SharedBytes;
use autoglm_ops::{rows, PackedMatrix, Storage, StoragePlan, Tensor};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;

use crate::checkpoint::Checkpoint;
use crate::config::{Activation, ModelConfig, ModelType};
use crate::decode::GenerationOptions;
use crate::error::{Error, Result};
use crate::generate::pick;
use crate::model::{f32s, load_weights, read_source, rope_tables, sources, transpose, Source};

/// A pool of key/value blocks for every layer of one model.
#[derive(Debug)]
pub struct PagedCache {
    block_size: usize,
    num_blocks: usize,
    kv_heads: usize,
    head_dim: usize,
    /// Per layer, keys and values: `[block, kv_head, …]`, each block's keys
    /// transposed (`[head_dim, slot]`) and its values row-major (`[slot, head_dim]`),
    /// as [`rows::attend`] reads them.
    layers: Vec<(Vec<f32>, Vec<f32>)>,
    free: Vec<u32>,
}

impl PagedCache {
    /// A pool of `num_blocks` blocks of `block_size` positions for `cfg`'s layers.
    ///
    /// # Errors
    /// [`Error::Input`] for a zero block size.
    pub fn new(cfg: &ModelConfig, block_size: usize, num_blocks: usize) -> Result<PagedCache> {
        if block_size == 0 {
            return Err(Error::Input(
                "a cache block holds at least one position".into(),
            ));
        }
        let per_layer = num_blocks * cfg.num_kv_heads * block_size * cfg.head_dim;
        Ok(PagedCache {
            block_size,
            num_blocks,
            kv_heads: cfg.num_kv_heads,
            head_dim: cfg.head_dim,
            layers: (0..cfg.num_layers)
                .map(|_| (vec![0.0; per_layer], vec![0.0; per_layer]))
                .collect(),
            // Popped from the end: hand out low block numbers first.
            free: (0..num_blocks as u32).rev().collect(),
        })
    }

    /// As many blocks as fit in `bytes` (at least one).
    ///
    /// # Errors
    /// As [`PagedCache::new`].
    pub fn with_memory(cfg: &ModelConfig, block_size: usize, bytes: usize) -> Result<PagedCache> {
        let per = Self::bytes_per_block(cfg, block_size);
        PagedCache::new(cfg, block_size, (bytes / per.max(1)).max(1))
    }

    /// Bytes one block takes over all layers (keys and values, f32).
    pub fn bytes_per_block(cfg: &ModelConfig, block_size: usize) -> usize {
        2 * cfg.num_layers * cfg.num_kv_heads * block_size * cfg.head_dim * 4
    }

    /// Positions per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks in the pool.
    pub fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    /// Blocks not handed out.
    pub fn free_blocks(&self) -> usize {
        self.free.len()
    }

    /// Blocks needed to hold `positions` positions.
    pub fn blocks_for(&self, positions: usize) -> usize {
        positions.div_ceil(self.block_size)
    }

    /// Takes `n` blocks, or none at all (`None`) if fewer are free.
    pub fn allocate(&mut self, n: usize) -> Option<Vec<u32>> {
        if n > self.free.len() {
            return None;
        }
        Some(self.free.split_off(self.free.len() - n))
    }

    /// Grows `table` to hold `positions` positions; `false` (and `table` unchanged)
    /// if the pool has too few free blocks.
    pub fn reserve(&mut self, table: &mut Vec<u32>, positions: usize) -> bool {
        let need = self.blocks_for(positions).saturating_sub(table.len());
        match self.allocate(need) {
            Some(b) => {
                table.extend(b);
                true
            }
            None => false,
        }
    }

    /// Returns blocks to the pool (a sequence's table when it finishes).
    pub fn release(&mut self, blocks: &mut Vec<u32>) {
        self.free.append(blocks);
    }
}

/// Consecutive tokens of one sequence in a [`PagedModel::step`].
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a> {
    /// The tokens, at positions `start..start + tokens.len()`.
    pub tokens: &'a [u32],
    /// Position of the first token (the sequence's length in the cache before).
    pub start: usize,
    /// The sequence's block table, covering at least `start + tokens.len()`
    /// positions.
    pub blocks: &'a [u32],
    /// Whether to return the logits of the chunk's last token.
    pub logits: bool,
}

/// One layer's weights, fused where one product serves several projections.
struct Layer {
    ln1: (Vec<f32>, Option<Vec<f32>>),
    ln2: (Vec<f32>, Option<Vec<f32>>),
    post_attn: Option<Vec<f32>>,
    post_mlp: Option<Vec<f32>>,
    /// `[hidden, (heads + 2·kv_heads)·head_dim]`: q, k, v side by side.
    qkv: PackedMatrix,
    qkv_b: Option<Vec<f32>>,
    o: PackedMatrix,
    o_b: Option<Vec<f32>>,
    /// SiLU: gate and up side by side `[hidden, 2·inter]`; GELU: fc1.
    up: PackedMatrix,
    up_b: Option<Vec<f32>>,
    down: PackedMatrix,
    down_b: Option<Vec<f32>>,
}

/// The inputs of a layer's linear products, as [`PagedModel::step_observed`] shows
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Site {
    /// The attention block's normed input: q, k and v read it.
    Qkv,
    /// The attention's output over all heads: the output projection reads it.
    O,
    /// The MLP's normed input: gate and up (or fc1) read it.
    Up,
    /// The activation's output: down (or fc2) reads it.
    Down,
}

/// What [`PagedModel::step_observed`] calls with each layer's product inputs.
pub type Observer<'a> = dyn FnMut(usize, Site, &[f32]) + Send + 'a;

/// Scratch buffers of one step, kept between steps.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    qkv: Vec<f32>,
    att: Vec<f32>,
    o: Vec<f32>,
    up: Vec<f32>,
    act: Vec<f32>,
    m: Vec<f32>,
    last: Vec<f32>,
}

/// A decoder for ragged batches over a [`PagedCache`].
pub struct PagedModel {
    config: ModelConfig,
    embed: Table,
    layers: Vec<Layer>,
    norm: (Vec<f32>, Option<Vec<f32>>),
    head: PackedMatrix,
    /// Rotary tables `[max_positions, rotary_dim]`.
    cos: Vec<f32>,
    sin: Vec<f32>,
    pool: std::sync::Arc<rayon::ThreadPool>,
    scratch: Scratch,
    weight_bytes: usize,
}

impl std::fmt::Debug for PagedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PagedModel")
            .field("config", &self.config)
            .field("threads", &self.pool.current_num_threads())
            .finish_non_exhaustive()
    }
}

/// Columns side by side: `[k, n1] ‖ [k, n2] ‖ … → [k, Σn]`.
fn hcat(parts: &[&Tensor]) -> (Vec<f32>, usize, usize) {
    let k = parts[0].shape()[0];
    let n: usize = parts.iter().map(|t| t.shape()[1]).sum();
    let mut out = Vec::with_capacity(k * n);
    for r in 0..k {
        for t in parts {
            let c = t.shape()[1];
            out.extend_from_slice(&f32s(t)[r * c..(r + 1) * c]);
        }
    }
    (out, k, n)
}

/// What a model read in place takes, in bytes ([`PagedModel::memory_need`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryNeed {
    /// Matrices read from the mapped file at every step (q8_0/q4_0 blocks):
    /// resident once touched, which the first step does.
    pub mapped: usize,
    /// The embedding rows' share: a row's buffer where rows are read from the file
    /// (unix), else the mapped pages the sequence's tokens touch, at most.
    pub embedding: usize,
    /// Weights copied into memory: norms, biases, rotary tables and matrices stored
    /// as f32/f16/bf16 (laid out as panels), with the largest such matrix's copies
    /// while it is laid out.
    pub heap: usize,
    /// The key/value cache.
    pub cache: usize,
    /// One step's buffers and the logits.
    pub scratch: usize,
}

impl MemoryNeed {
    /// The sum.
    pub fn total(&self) -> usize {
        self.mapped + self.embedding + self.heap + self.cache + self.scratch
    }
}

/// The embedding table's rows as stored (in place in a mapped file).
struct Table {
    bytes: SharedBytes,
    storage: Storage,
    cols: usize,
    /// The file the table is in and its offset there: rows are read with `pread`
    /// rather than through the mapping, so that a sequence's few rows do not bring
    /// the pages around them into the resident set (a fault on a mapped file maps
    /// up to 64 KiB of cached pages around it).
    #[cfg(unix)]
    file: Option<(std::fs::File, u64)>,
}

impl Table {
    /// `rows × cols` values stored as `storage` in `bytes`.
    fn new(bytes: SharedBytes, storage: Storage, rows: usize, cols: usize) -> Result<Table> {
        if !storage.fits(cols) || bytes.len() != rows * storage.bytes_for(cols) {
            return Err(Error::Input(format!(
                "an embedding of {rows} × {cols} in {storage} cannot be {} bytes",
                bytes.len()
            )));
        }
        Ok(Table {
            bytes,
            storage,
            cols,
            #[cfg(unix)]
            file: None,
        })
    }

    /// Row `t` (checked against the vocabulary before) into `out`.
    ///
    /// # Errors
    /// [`Error::Io`] if reading the file fails.
    fn row(&self, t: usize, out: &mut [f32]) -> Result<()> {
        let len = self.storage.bytes_for(self.cols);
        let sizes = "the table's sizes were checked when it was built";
        #[cfg(unix)]
        if let Some((file, at)) = &self.file {
            use std::os::unix::fs::FileExt;
            let mut buf = vec![0u8; len];
            file.read_exact_at(&mut buf, at + (t * len) as u64)
                .map_err(|source| Error::Io {
                    path: "(embedding rows)".into(),
                    source,
                })?;
            crate::checkpoint::decode(&buf, self.storage, out).expect(sizes);
            return Ok(());
        }
        crate::checkpoint::decode(&self.bytes[t * len..(t + 1) * len], self.storage, out)
            .expect(sizes);
        Ok(())
    }
}

/// Where [`PagedModel::assemble`] gets its weights.
trait Weights {
    /// The graph weights `names` (`[k, n_i]` each) side by side: one product.
    fn matrix(&self, names: &[String]) -> Result<PackedMatrix>;
    /// A vector (norm, bias), if the model has it.
    fn vector(&self, name: &str) -> Result<Option<Vec<f32>>>;
    /// The embedding table.
    fn embed(&self) -> Result<Table>;
}

/// Weights in the graph's layout, stored as a plan says.
struct Params<'a> {
    config: &'a ModelConfig,
    params: &'a BTreeMap<String, Tensor>,
    plan: &'a StoragePlan,
}

impl Params<'_> {
    fn get(&self, name: &str) -> Result<&Tensor> {
        self.params
            .get(name)
            .ok_or_else(|| Error::Input(format!("no weight '{name}'")))
    }
}

impl Weights for Params<'_> {
    fn matrix(&self, names: &[String]) -> Result<PackedMatrix> {
        let tied;
        let parts: Vec<&Tensor> = if names == ["head.w"]
            && !self.params.contains_key("head.w")
            && self.config.tie_word_embeddings
        {
            tied = transpose(self.get("embed")?);
            vec![&tied]
        } else {
            names.iter().map(|n| self.get(n)).collect::<Result<_>>()?
        };
        let (w, k, n) = hcat(&parts);
        let storage = self.plan.storage_of(&names[0]).or_fallback(k);
        PackedMatrix::with_storage(&w, k, n, storage).map_err(Error::from)
    }

    fn vector(&self, name: &str) -> Result<Option<Vec<f32>>> {
        Ok(self.params.get(name).map(|t| f32s(t).to_vec()))
    }

    fn embed(&self) -> Result<Table> {
        let t = self.get("embed")?;
        let (v, h) = (self.config.vocab_size, self.config.hidden_size);
        if t.shape() != [v, h] {
            return Err(Error::Input(format!(
                "weight 'embed' is {:?}, not [{v}, {h}]",
                t.shape()
            )));
        }
        let bytes: Vec<u8> = f32s(t).iter().flat_map(|x| x.to_le_bytes()).collect();
        Table::new(SharedBytes::owned(bytes), Storage::F32, v, h)
    }
}

/// A checkpoint read in place.
struct Mapped {
    ck: Checkpoint,
    sources: BTreeMap<String, Source>,
    /// Block matrices repacked into panels in memory for the fastest kernels
    /// (`QuantMatrix::repacked`), instead of read in place.
    repack: bool,
}

impl Mapped {
    fn open(dir: &Path, config: &ModelConfig, repack: bool) -> Result<Mapped> {
        let ck = Checkpoint::open(dir)?;
        let sources = sources(config)
            .into_iter()
            .map(|s| (s.graph.clone(), s))
            .collect();
        Ok(Mapped {
            ck,
            sources,
            repack,
        })
    }

    fn source(&self, name: &str) -> Result<&Source> {
        self.sources
            .get(name)
            .ok_or_else(|| Error::Input(format!("no weight '{name}'")))
    }
}

impl Weights for Mapped {
    fn matrix(&self, names: &[String]) -> Result<PackedMatrix> {
        let sources = names
            .iter()
            .map(|n| self.source(n))
            .collect::<Result<Vec<_>>>()?;
        let raws = sources
            .iter()
            .map(|s| self.ck.raw(&s.hf, &s.shape))
            .collect::<Result<Vec<_>>>()?;
        let storage = raws[0].1;
        let k = sources[0].shape[1];
        let same = raws.iter().all(|r| r.1 == storage) && sources.iter().all(|s| s.shape[1] == k);
        if let (Some(format), true) = (storage.block_format(), same) {
            let parts = raws
                .into_iter()
                .zip(&sources)
                .map(|((bytes, _), s)| {
                    let order = s
                        .rows
                        .as_ref()
                        .map(|r| r.iter().map(|&i| i as u32).collect());
                    (bytes, order)
                })
                .collect();
            let q = autoglm_ops::quant::QuantMatrix::from_segments(format, k, parts)?;
            let q = if self.repack { q.repacked() } else { q };
            return Ok(PackedMatrix::from_quant(q));
        }
        // Panels are laid out in memory: read as f32, stored as the file stores them.
        let parts = sources
            .iter()
            .map(|s| read_source(&self.ck, s))
            .collect::<Result<Vec<_>>>()?;
        let (w, k, n) = hcat(&parts.iter().collect::<Vec<_>>());
        PackedMatrix::with_storage(&w, k, n, storage.or_fallback(k)).map_err(Error::from)
    }

    fn vector(&self, name: &str) -> Result<Option<Vec<f32>>> {
        match self.sources.get(name) {
            Some(s) => Ok(Some(f32s(&read_source(&self.ck, s)?).to_vec())),
            None => Ok(None),
        }
    }

    fn embed(&self) -> Result<Table> {
        let s = self.source("embed")?;
        let (bytes, storage) = self.ck.raw(&s.hf, &s.shape)?;
        #[allow(unused_mut)]
        let mut table = Table::new(bytes, storage, s.shape[0], s.shape[1])?;
        #[cfg(unix)]
        if let Some((path, at)) = self.ck.location(&s.hf) {
            let file = std::fs::File::open(path).map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
            table.file = Some((file, at));
        }
        Ok(table)
    }
}

impl PagedModel {
    /// Loads `dir/config.json` and the checkpoint, with `threads` kernel threads.
    ///
    /// # Errors
    /// As [`crate::Model::load`].
    pub fn load(dir: &Path, threads: usize) -> Result<PagedModel> {
        PagedModel::load_as(dir, threads, None)
    }

    /// [`PagedModel::load`] with the linear weights stored as
    /// [`crate::storage_plan`]`(storage)` says; `None`: as the checkpoint stores them
    /// ([`PagedModel::map`], with block matrices repacked in memory for the fastest
    /// kernels; a GGUF file is read into memory).
    ///
    /// # Errors
    /// As [`crate::Model::load`].
    pub fn load_as(dir: &Path, threads: usize, storage: Option<Storage>) -> Result<PagedModel> {
        if crate::model::is_gguf(dir) {
            let (config, weights, plan) = crate::import_gguf(dir)?;
            let plan = storage.map_or(plan, crate::storage_plan);
            return PagedModel::from_weights_as(config, weights, threads, &plan);
        }
        if storage.is_none() {
            return PagedModel::map_with(dir, threads, true);
        }
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let ck = Checkpoint::open(dir)?;
        let storage = storage.map_or_else(|| ck.storage(), Ok)?;
        let params = load_weights(&config, &ck)?;
        PagedModel::from_weights_as(config, params, threads, &crate::storage_plan(storage))
    }

    /// Builds the model from weights in the graph's layout ([`load_weights`]).
    ///
    /// # Errors
    /// [`Error::Input`] naming a missing weight or one of the wrong size.
    pub fn from_weights(
        config: ModelConfig,
        params: BTreeMap<String, Tensor>,
        threads: usize,
    ) -> Result<PagedModel> {
        PagedModel::from_weights_as(config, params, threads, &StoragePlan::default())
    }

    /// [`PagedModel::from_weights`] with each linear weight stored as `plan` says for
    /// its graph name (a fused product, such as q, k and v side by side, as its first
    /// part says: `l0.q.w`), in the fallback format where a block format does not fit
    /// ([`Storage::or_fallback`]).
    ///
    /// # Errors
    /// As [`PagedModel::from_weights`].
    pub fn from_weights_as(
        config: ModelConfig,
        params: BTreeMap<String, Tensor>,
        threads: usize,
        plan: &StoragePlan,
    ) -> Result<PagedModel> {
        let weights = Params {
            config: &config,
            params: &params,
            plan,
        };
        PagedModel::assemble(&weights, config.clone(), threads)
    }

    /// Opens `dir` (`config.json` and a safetensors checkpoint) and reads its weights
    /// in place: matrices stored as q8_0/q4_0 blocks run on the file's mapped bytes
    /// (several tensors side by side and rows in any order, without a copy), the
    /// embedding's rows are read from the file as tokens need them, and only the
    /// rest (norms, biases, matrices stored as f32/f16/bf16, which are laid out as
    /// panels) is copied into memory. Each weight keeps the storage its file gives
    /// it. What this takes is [`PagedModel::memory_need`]. (The products read rows
    /// in place with kernels a little slower than those of matrices repacked in
    /// memory, which [`PagedModel::load`] does: the price of not copying them.)
    ///
    /// # Errors
    /// As [`crate::Model::load`].
    pub fn map(dir: &Path, threads: usize) -> Result<PagedModel> {
        PagedModel::map_with(dir, threads, false)
    }

    /// [`PagedModel::map`], the block matrices repacked in memory if `repack`.
    fn map_with(dir: &Path, threads: usize, repack: bool) -> Result<PagedModel> {
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let weights = Mapped::open(dir, &config, repack)?;
        PagedModel::assemble(&weights, config, threads)
    }

    /// What running `dir`'s model read in place ([`PagedModel::map`]) for one
    /// sequence of `positions` positions takes, computed from its configuration and
    /// the checkpoint's header before a weight is read; steps of at most `chunk`
    /// tokens, a cache of `block_size`-position blocks.
    ///
    /// # Errors
    /// As [`PagedModel::map`].
    pub fn memory_need(
        dir: &Path,
        positions: usize,
        chunk: usize,
        block_size: usize,
    ) -> Result<MemoryNeed> {
        const PAGE: usize = 4096;
        let cfg = ModelConfig::from_file(&dir.join("config.json"))?;
        let ck = Checkpoint::open(dir)?;
        let all = sources(&cfg);
        let embed = all
            .iter()
            .find(|s| s.graph == "embed")
            .expect("every model has one");
        let mut need = MemoryNeed::default();
        let mut largest = 0;
        for s in &all {
            let (_, storage) = ck.raw(&s.hf, &s.shape)?;
            let values = s.rows.as_ref().map_or(s.shape[0], Vec::len)
                * s.shape[1..].iter().product::<usize>();
            if s.graph == "embed" {
                // Rows are read into a buffer (unix), or else through the mapping,
                // where each touched row maps up to 64 KiB of cached pages around it.
                let row = storage.bytes_for(s.shape[1]);
                let table = (row * s.shape[0]).next_multiple_of(PAGE);
                need.embedding = if cfg!(unix) {
                    row
                } else {
                    (positions.min(s.shape[0]) * 16 * PAGE).min(table)
                };
            } else if s.linear && storage.block_format().is_some() {
                need.mapped += storage.bytes_for(values);
                if s.hf == embed.hf {
                    // A tied head reads the whole table: no rows on top.
                    need.embedding = 0;
                }
            } else if s.linear {
                // Laid out as panels (columns padded to 16), after f32 copies at load.
                let (k, n) = (s.shape[1], values / s.shape[1]);
                need.heap += storage.or_fallback(k).bytes_for(k * n.next_multiple_of(16));
                largest = largest.max(3 * 4 * k * n);
            } else {
                need.heap += 4 * values;
            }
        }
        need.heap += largest;
        // The rotary tables.
        need.heap += 2 * 4 * cfg.max_position_embeddings.max(1) * cfg.rotary_dim;
        need.cache = PagedCache::bytes_per_block(&cfg, block_size) * positions.div_ceil(block_size);
        let (h, d) = (cfg.hidden_size, cfg.head_dim);
        let qkv = (cfg.num_heads + 2 * cfg.num_kv_heads) * d;
        let up = match cfg.activation {
            Activation::Silu => 2 * cfg.intermediate_size,
            _ => cfg.intermediate_size,
        };
        // A step's buffers (x, h, qkv, attention, o, up, activation, mlp), the
        // attention's scores per thread, and the logits with a copy for sampling.
        let row = 5 * h + qkv + cfg.num_heads * d + up + cfg.intermediate_size;
        need.scratch = 4 * (chunk.max(1) * row + 2 * (positions + d) + 2 * cfg.vocab_size + 2 * h);
        Ok(need)
    }

    /// Builds the model from `weights`.
    fn assemble(weights: &dyn Weights, config: ModelConfig, threads: usize) -> Result<PagedModel> {
        let names = |parts: &[String]| weights.matrix(parts);
        let cat_bias = |names: &[String], widths: &[usize]| -> Result<Option<Vec<f32>>> {
            let parts = names
                .iter()
                .map(|n| weights.vector(n))
                .collect::<Result<Vec<_>>>()?;
            if parts.iter().all(Option::is_none) {
                return Ok(None);
            }
            let mut b = Vec::new();
            for (p, &w) in parts.into_iter().zip(widths) {
                match p {
                    Some(v) => b.extend(v),
                    None => b.extend(std::iter::repeat_n(0.0, w)),
                }
            }
            Ok(Some(b))
        };
        let (d, nh, nkv, inter) = (
            config.head_dim,
            config.num_heads,
            config.num_kv_heads,
            config.intermediate_size,
        );
        let need = |name: &str| -> Result<Vec<f32>> {
            weights
                .vector(name)?
                .ok_or_else(|| Error::Input(format!("no weight '{name}'")))
        };
        let norm = |name: &str| -> Result<(Vec<f32>, Option<Vec<f32>>)> {
            Ok((
                need(&format!("{name}.w"))?,
                weights.vector(&format!("{name}.b"))?,
            ))
        };
        let mut layers = Vec::with_capacity(config.num_layers);
        for l in 0..config.num_layers {
            let p = |n: &str| format!("l{l}.{n}");
            let qkv = names(&[p("q.w"), p("k.w"), p("v.w")])?;
            let qkv_b = cat_bias(&[p("q.b"), p("k.b"), p("v.b")], &[nh * d, nkv * d, nkv * d])?;
            let (up, up_b, down, down_b) = match config.activation {
                Activation::Silu => (
                    names(&[p("gate.w"), p("up.w")])?,
                    cat_bias(&[p("gate.b"), p("up.b")], &[inter, inter])?,
                    names(&[p("down.w")])?,
                    weights.vector(&p("down.b"))?,
                ),
                Activation::Gelu | Activation::GeluTanh => (
                    names(&[p("fc1.w")])?,
                    weights.vector(&p("fc1.b"))?,
                    names(&[p("fc2.w")])?,
                    weights.vector(&p("fc2.b"))?,
                ),
            };
            let glm4 = config.model_type == ModelType::Glm4;
            layers.push(Layer {
                ln1: norm(&p("ln1"))?,
                ln2: norm(&p("ln2"))?,
                post_attn: if glm4 {
                    Some(need(&p("post_attn.w"))?)
                } else {
                    None
                },
                post_mlp: if glm4 {
                    Some(need(&p("post_mlp.w"))?)
                } else {
                    None
                },
                qkv,
                qkv_b,
                o: names(&[p("o.w")])?,
                o_b: weights.vector(&p("o.b"))?,
                up,
                up_b,
                down,
                down_b,
            });
        }
        let head = names(&["head.w".to_string()])?;
        let embed = weights.embed()?;
        let norm = norm("norm")?;
        // What is held: the matrices as stored, the embedding as stored, the rest f32.
        let vectors = |v: &Option<Vec<f32>>| v.as_ref().map_or(0, Vec::len);
        let floats: usize = layers
            .iter()
            .map(|l| {
                l.ln1.0.len()
                    + vectors(&l.ln1.1)
                    + l.ln2.0.len()
                    + vectors(&l.ln2.1)
                    + vectors(&l.post_attn)
                    + vectors(&l.post_mlp)
                    + vectors(&l.qkv_b)
                    + vectors(&l.o_b)
                    + vectors(&l.up_b)
                    + vectors(&l.down_b)
            })
            .sum::<usize>()
            + norm.0.len()
            + vectors(&norm.1);
        let matrices: usize = layers
            .iter()
            .flat_map(|l| [&l.qkv, &l.o, &l.up, &l.down])
            .chain([&head])
            .map(PackedMatrix::bytes)
            .sum();
        let weight_bytes = 4 * floats + matrices + embed.bytes.len();
        let positions: Vec<usize> = (0..config.max_position_embeddings.max(1)).collect();
        let (cos, sin) = rope_tables(&positions, config.rotary_dim, config.rope_theta);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()
            .map_err(|e| Error::Input(format!("kernel threads: {e}")))?;
        Ok(PagedModel {
            embed,
            norm,
            layers,
            head,
            cos: f32s(&cos).to_vec(),
            sin: f32s(&sin).to_vec(),
            pool: std::sync::Arc::new(pool),
            scratch: Scratch::default(),
            weight_bytes,
            config,
        })
    }

    /// The structure.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Bytes of the weights as held: the linear weights in their storage, the
    /// embedding, norms and biases in f32.
    pub fn weight_bytes(&self) -> usize {
        self.weight_bytes
    }

    /// Kernel threads.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// The checks every step makes before it runs.
    fn check_chunks(&self, cache: &PagedCache, chunks: &[Chunk<'_>]) -> Result<()> {
        let cfg = &self.config;
        let bs = cache.block_size;
        for (i, c) in chunks.iter().enumerate() {
            let end = c.start + c.tokens.len();
            if c.tokens.is_empty() {
                return Err(Error::Input(format!("chunk {i} has no tokens")));
            }
            if end > cfg.max_position_embeddings {
                return Err(Error::Input(format!(
                    "chunk {i} reaches position {end}, beyond the model's {}",
                    cfg.max_position_embeddings
                )));
            }
            if c.blocks.len() * bs < end {
                return Err(Error::Input(format!(
                    "chunk {i}: {} blocks of {bs} do not hold {end} positions",
                    c.blocks.len()
                )));
            }
            if c.blocks.iter().any(|&b| b as usize >= cache.num_blocks) {
                return Err(Error::Input(format!(
                    "chunk {i} names a block outside the cache"
                )));
            }
            if let Some(bad) = c.tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
                return Err(Error::Input(format!(
                    "token id {bad} is outside the vocabulary (size {})",
                    cfg.vocab_size
                )));
            }
        }
        Ok(())
    }

    /// Runs one step: every chunk's tokens at their positions, writing their keys and
    /// values into `cache`, and returns the logits `[n, vocab]` of the last token of
    /// each chunk that asks for them (`n` of them, in chunk order).
    ///
    /// # Errors
    /// [`Error::Input`] for an empty chunk, ids outside the vocabulary, positions
    /// beyond the model's, or a block table too short for the chunk.
    pub fn step(&mut self, cache: &mut PagedCache, chunks: &[Chunk<'_>]) -> Result<Vec<f32>> {
        self.check_chunks(cache, chunks)?;
        let pool = std::sync::Arc::clone(&self.pool);
        pool.install(|| self.step_in_pool(cache, chunks, None))
    }

    /// [`PagedModel::step`], showing `observe` the input rows of every layer's linear
    /// products as they are computed (`[tokens, width]`, row-major): what a
    /// calibrating quantizer measures.
    ///
    /// # Errors
    /// As [`PagedModel::step`].
    pub fn step_observed(
        &mut self,
        cache: &mut PagedCache,
        chunks: &[Chunk<'_>],
        observe: &mut Observer<'_>,
    ) -> Result<Vec<f32>> {
        self.check_chunks(cache, chunks)?;
        let pool = std::sync::Arc::clone(&self.pool);
        pool.install(|| self.step_in_pool(cache, chunks, Some(observe)))
    }

    fn step_in_pool(
        &mut self,
        cache: &mut PagedCache,
        chunks: &[Chunk<'_>],
        mut observe: Option<&mut Observer<'_>>,
    ) -> Result<Vec<f32>> {
        let cfg = &self.config;
        let (h, d, nh, nkv) = (
            cfg.hidden_size,
            cfg.head_dim,
            cfg.num_heads,
            cfg.num_kv_heads,
        );
        let eps = cfg.norm_eps as f32;
        let group = cfg.group();
        let rot = cfg.rotary_dim;
        let bs = cache.block_size;
        // Every token's sequence (chunk) and position.
        let tokens: Vec<(usize, usize)> = chunks
            .iter()
            .enumerate()
            .flat_map(|(ci, c)| (0..c.tokens.len()).map(move |j| (ci, c.start + j)))
            .collect();
        let n = tokens.len();
        let s = &mut self.scratch;
        let qkv_w = (nh + 2 * nkv) * d;
        let up_w = self.layers.first().map_or(0, |l| l.up.n());
        let inter = self.layers.first().map_or(0, |l| l.down.k());
        for (buf, len) in [
            (&mut s.x, n * h),
            (&mut s.h, n * h),
            (&mut s.qkv, n * qkv_w),
            (&mut s.att, n * nh * d),
            (&mut s.o, n * h),
            (&mut s.up, n * up_w),
            (&mut s.act, n * inter),
            (&mut s.m, n * h),
        ] {
            buf.resize(len, 0.0);
        }
        for (row, tok) in
            s.x.chunks_exact_mut(h)
                .zip(chunks.iter().flat_map(|c| c.tokens))
        {
            self.embed.row(*tok as usize, row)?;
        }
        let norm = |x: &[f32], w: &(Vec<f32>, Option<Vec<f32>>), out: &mut [f32]| match &w.1 {
            Some(b) => rows::layer_norm(x, &w.0, b, eps, out),
            None => rows::rms_norm(x, &w.0, eps, out),
        };
        let scale = 1.0 / (d as f32).sqrt();
        for (li, layer) in self.layers.iter().enumerate() {
            norm(&s.x, &layer.ln1, &mut s.h);
            if let Some(f) = observe.as_mut() {
                f(li, Site::Qkv, &s.h);
            }
            layer.qkv.matmul(&s.h, layer.qkv_b.as_deref(), &mut s.qkv)?;
            // Rotary on the first `rot` dims of every query and key head (halves).
            if rot > 0 {
                let half = rot / 2;
                for (row, &(_, pos)) in s.qkv.chunks_exact_mut(qkv_w).zip(&tokens) {
                    let cos = &self.cos[pos * rot..pos * rot + half];
                    let sin = &self.sin[pos * rot..pos * rot + half];
                    for head in row[..(nh + nkv) * d].chunks_exact_mut(d) {
                        for i in 0..half {
                            let (a, b) = (head[i], head[i + half]);
                            head[i] = a * cos[i] - b * sin[i];
                            head[i + half] = b * cos[i] + a * sin[i];
                        }
                    }
                }
            }
            // Keys and values into the cache.
            let (kv_heads, head_dim) = (cache.kv_heads, cache.head_dim);
            let offset =
                move |block: u32, g: usize| (block as usize * kv_heads + g) * bs * head_dim;
            let (kc, vc) = &mut cache.layers[li];
            for (row, &(ci, pos)) in s.qkv.chunks_exact(qkv_w).zip(&tokens) {
                let block = chunks[ci].blocks[pos / bs];
                let slot = pos % bs;
                for g in 0..nkv {
                    let at = (block as usize * nkv + g) * bs * d;
                    // Keys transposed within the block, values row-major.
                    for (j, &k) in row[(nh + g) * d..(nh + g + 1) * d].iter().enumerate() {
                        kc[at + j * bs + slot] = k;
                    }
                    vc[at + slot * d..at + (slot + 1) * d]
                        .copy_from_slice(&row[(nh + nkv + g) * d..(nh + nkv + g + 1) * d]);
                }
            }
            // Attention of every token against its own sequence, causal: the query
            // heads that share a key/value head, of up to `per` consecutive tokens of
            // one sequence, go through the cached blocks as one tile.
            let (kc, vc) = (&*kc, &*vc);
            let qkv = &s.qkv;
            let per = (rows::ATTENTION_TILE / group).max(1);
            let attend = |(u, out): (usize, &mut [f32])| {
                let first = u * per;
                let mut slots: Vec<&mut [f32]> = out.chunks_mut(d).collect();
                let mut scores = Vec::new();
                let (mut keys, mut values) = (Vec::new(), Vec::new());
                let units = slots.len() / nh;
                let mut t0 = 0;
                while t0 < units {
                    let ci = tokens[first + t0].0;
                    let mut t1 = t0 + 1;
                    while t1 < units && tokens[first + t1].0 == ci {
                        t1 += 1;
                    }
                    let table = chunks[ci].blocks;
                    let longest = tokens[first + t1 - 1].1 + 1;
                    let blocks = &table[..longest.div_ceil(bs)];
                    for g in 0..nkv {
                        keys.clear();
                        values.clear();
                        for &block in blocks {
                            let at = offset(block, g);
                            keys.push(&kc[at..at + bs * d]);
                            values.push(&vc[at..at + bs * d]);
                        }
                        let kv = rows::KvBlocks {
                            keys: &keys,
                            values: &values,
                            block: bs,
                            head_dim: d,
                        };
                        let mut queries = Vec::with_capacity((t1 - t0) * group);
                        let mut lens = Vec::with_capacity(queries.capacity());
                        let mut outs = Vec::with_capacity(queries.capacity());
                        for t in t0..t1 {
                            let ti = first + t;
                            for hh in g * group..(g + 1) * group {
                                queries.push(&qkv[ti * qkv_w + hh * d..ti * qkv_w + (hh + 1) * d]);
                                lens.push(tokens[ti].1 + 1);
                                outs.push(std::mem::take(&mut slots[t * nh + hh]));
                            }
                        }
                        rows::attend(&kv, &queries, &lens, scale, &mut scores, &mut outs);
                    }
                    t0 = t1;
                }
            };
            if rayon::current_num_threads() > 1 && n > per {
                s.att
                    .par_chunks_mut(per * nh * d)
                    .enumerate()
                    .for_each(attend);
            } else {
                s.att.chunks_mut(per * nh * d).enumerate().for_each(attend);
            }
            if let Some(f) = observe.as_mut() {
                f(li, Site::O, &s.att);
            }
            layer.o.matmul(&s.att, layer.o_b.as_deref(), &mut s.o)?;
            if let Some(w) = &layer.post_attn {
                rows::rms_norm(&s.o, w, eps, &mut s.h);
                std::mem::swap(&mut s.o, &mut s.h);
            }
            // The MLP's input: ln2 of the block input (parallel) or of x + attention.
            if !cfg.parallel_residual {
                add_into(&mut s.x, &s.o);
            }
            norm(&s.x, &layer.ln2, &mut s.h);
            if let Some(f) = observe.as_mut() {
                f(li, Site::Up, &s.h);
            }
            layer.up.matmul(&s.h, layer.up_b.as_deref(), &mut s.up)?;
            match cfg.activation {
                Activation::Silu => {
                    for (a, gu) in s
                        .act
                        .chunks_exact_mut(inter)
                        .zip(s.up.chunks_exact(2 * inter))
                    {
                        a.copy_from_slice(&gu[..inter]);
                        rows::silu(a);
                        for (x, &u) in a.iter_mut().zip(&gu[inter..]) {
                            *x *= u;
                        }
                    }
                }
                Activation::Gelu => {
                    s.act.copy_from_slice(&s.up);
                    rows::gelu(&mut s.act);
                }
                Activation::GeluTanh => {
                    s.act.copy_from_slice(&s.up);
                    rows::gelu_tanh(&mut s.act);
                }
            }
            if let Some(f) = observe.as_mut() {
                f(li, Site::Down, &s.act);
            }
            layer
                .down
                .matmul(&s.act, layer.down_b.as_deref(), &mut s.m)?;
            if let Some(w) = &layer.post_mlp {
                rows::rms_norm(&s.m, w, eps, &mut s.h);
                std::mem::swap(&mut s.m, &mut s.h);
            }
            if cfg.parallel_residual {
                add_into(&mut s.x, &s.o);
            }
            add_into(&mut s.x, &s.m);
        }
        // The last token of each chunk that wants logits.
        let mut ends = Vec::new();
        let mut at = 0;
        for c in chunks {
            at += c.tokens.len();
            if c.logits {
                ends.push(at - 1);
            }
        }
        s.last.clear();
        for &t in &ends {
            s.last.extend_from_slice(&s.x[t * h..(t + 1) * h]);
        }
        let mut normed = vec![0.0f32; s.last.len()];
        norm(&s.last, &self.norm, &mut normed);
        let mut logits = vec![0.0f32; ends.len() * cfg.vocab_size];
        if !ends.is_empty() {
            self.head.matmul(&normed, None, &mut logits)?;
        }
        Ok(logits)
    }
}

fn add_into(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Picks tokens from logits with [`GenerationOptions`]' processors (repetition
/// penalty, temperature, top-k, top-p; greedy at temperature 0), seeded. Beam search
/// is not a per-token choice and has no sampler.
#[derive(Debug, Clone)]
pub struct Sampler {
    options: GenerationOptions,
    rng: Pcg64Mcg,
}

impl Sampler {
    /// A sampler for `options` (its `seed` seeds the generator).
    ///
    /// # Errors
    /// [`Error::Option`] for options [`GenerationOptions::check`] refuses or beam
    /// search (`num_beams` > 1).
    pub fn new(options: GenerationOptions) -> Result<Sampler> {
        options.check()?;
        if options.is_beam_search() {
            return Err(Error::Option {
                option: "num_beams",
                reason: "must be 1 here: beam search is not a per-token choice".into(),
            });
        }
        let rng = Pcg64Mcg::seed_from_u64(options.seed);
        Ok(Sampler { options, rng })
    }

    /// The options.
    pub fn options(&self) -> &GenerationOptions {
        &self.options
    }

    /// The next token given one row of logits (changed in place) and the sequence so
    /// far (prompt included, for the repetition penalty).
    pub fn next(&mut self, logits: &mut [f32], seen: &[u32]) -> u32 {
        pick(logits, seen, &self.options, &mut self.rng)
    }
}
