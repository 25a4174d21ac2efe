//! Post-training quantization of a model's weights, and how much it costs.
//!
//! Round to nearest ([`Method::Rtn`]) stores each weight as ggml's reference
//! quantizer rounds it ([`crate::save_pretrained_as`]). Activation-aware scaling
//! ([`Method::Awq`], after Lin et al., *AWQ*, 2024) first runs the f32 model over a
//! few hundred calibration sequences and, for each group of products that read the
//! same input (q, k, v; gate and up; o; down):
//!
//! 1. measures each input channel's mean magnitude `m`;
//! 2. for α in 0, 0.05, …, 0.95 scales the weights' input rows by `s = m^α` (normalised
//!    so that `max s · min s = 1`), quantizes, and measures the squared error of the
//!    group's outputs on up to 512 calibration rows, `‖X·(s⁻¹·Q(s·W)) − X·W‖²`;
//!    α = 0 is round to nearest, so the choice is never worse on these rows;
//! 3. keeps the best `s`, multiplying the weights by it and dividing the operation
//!    before them by it (the norm's weight and bias for q, k, v and for gate/up or fc1;
//!    v's output columns for o, with the scales of the query heads that share a key
//!    head averaged; up's output columns for down, since `silu(g)·(u/s) = silu(g)·u/s`),
//!    so the f32 model computes the same function;
//! 4. then clips each 32-block of each weight column to `r·max|w|` for the r in
//!    1, 0.95, …, 0.55 that gives the least output error `eᵀ·G·e` on the block's
//!    input channels (`G = XᵀX` of the scaled inputs).
//!
//! The result is an f32 model whose round-to-nearest quantization is the calibrated
//! one: saving it with [`crate::save_pretrained_as`] (or storing it at load) applies
//! it. GELU MLPs keep round to nearest for fc2 (no exact fold through GELU); the
//! output head is not scaled (it may be tied to the embedding).
//!
//! [`compare`] measures a quantized model against its original on held-out
//! sequences: perplexity ratio, mean KL divergence and top-1 agreement of the
//! next-token distributions (the figures llama.cpp's `llama-perplexity
//! --kl-divergence` reports).

use std::collections::BTreeMap;

use autoglm_ops::{PackedMatrix, Storage, StoragePlan, Tensor};

use crate::config::{Activation, ModelConfig};
use crate::error::{Error, Result};
use crate::model::{f32s, Model};
use crate::paged::{Chunk, PagedCache, PagedModel, Site};

/// How weights are quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// Round to nearest, per block (ggml's reference quantizers).
    #[default]
    Rtn,
    /// Activation-aware scales and clipping from calibration data, then round to
    /// nearest.
    Awq,
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Method> {
        match s {
            "rtn" => Ok(Method::Rtn),
            "awq" => Ok(Method::Awq),
            other => Err(Error::Input(format!(
                "quantization method '{other}': expected rtn or awq"
            ))),
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Rtn => "rtn",
            Method::Awq => "awq",
        })
    }
}

/// What calibration chose for one group of products.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupChoice {
    /// The layer.
    pub layer: usize,
    /// The products' shared input.
    pub site: Site,
    /// The chosen exponent (0: plain round to nearest).
    pub alpha: f32,
    /// Squared output error on the calibration rows with round to nearest.
    pub error_rtn: f64,
    /// The same with the chosen scales, before clipping.
    pub error_scaled: f64,
    /// Blocks clipped below their maximum.
    pub clipped_blocks: usize,
}

/// Rows of calibration activations kept per product input.
const ROWS: usize = 512;
/// Exponents tried.
const ALPHAS: usize = 20;
/// Clip ratios tried: 1, 0.95, …, 0.55.
const CLIPS: usize = 10;

/// One product input's calibration statistics.
#[derive(Debug, Default, Clone)]
struct Stats {
    width: usize,
    /// Σ |x| per channel.
    abs_sum: Vec<f64>,
    rows: usize,
    /// Kept rows, row-major.
    kept: Vec<f32>,
}

/// Scales and (with `clip`) clips `weights` (the graph's layout) for `storage` from
/// the model's activations on `sequences` (token ids, each at most the model's
/// context), as the module describes. Returns the new weights and each group's
/// choice. Without clipping the new weights compute the same function in f32.
///
/// # Errors
/// [`Error::Input`] for a storage that is not a block format, no sequences, or a
/// sequence longer than the model's context; model errors.
pub fn calibrate(
    config: &ModelConfig,
    weights: &BTreeMap<String, Tensor>,
    sequences: &[Vec<u32>],
    storage: Storage,
    threads: usize,
    clip_blocks: bool,
) -> Result<(BTreeMap<String, Tensor>, Vec<GroupChoice>)> {
    if storage.block_format().is_none() {
        return Err(Error::Input(format!(
            "calibrated quantization is for the block formats (q8_0, q4_0), not {storage}"
        )));
    }
    let total: usize = sequences.iter().map(Vec::len).sum();
    if total == 0 {
        return Err(Error::Input("calibration: no tokens".into()));
    }
    let stats = observe(config, weights, sequences, threads, total)?;
    let mut w = weights.clone();
    let plan = crate::storage_plan(storage);
    let mut choices = Vec::new();
    let (nh, nkv, d) = (config.num_heads, config.num_kv_heads, config.head_dim);
    let silu = config.activation == Activation::Silu;
    for ((layer, site), st) in &stats {
        let p = |n: &str| format!("l{layer}.{n}");
        let (names, fold): (Vec<String>, Fold) = match site {
            Site::Qkv => (vec![p("q.w"), p("k.w"), p("v.w")], Fold::Norm(p("ln1"))),
            Site::Up if silu => (vec![p("gate.w"), p("up.w")], Fold::Norm(p("ln2"))),
            Site::Up => (vec![p("fc1.w")], Fold::Norm(p("ln2"))),
            Site::O => (vec![p("o.w")], Fold::Columns(p("v"))),
            Site::Down if silu => (vec![p("down.w")], Fold::Columns(p("up"))),
            Site::Down => continue,
        };
        let k = st.width;
        let fits = names.iter().all(|n| {
            let s = plan.storage_of(n);
            s.block_format().is_some() && s.fits(k)
        });
        if !fits {
            continue;
        }
        let mut mean: Vec<f64> = st.abs_sum.iter().map(|a| a / st.rows as f64).collect();
        if *site == Site::O && nh != nkv {
            // Heads sharing a key/value head share its value columns' scale.
            let group = nh / nkv;
            for g in 0..nkv {
                for j in 0..d {
                    let avg = (0..group)
                        .map(|i| mean[((g * group + i) * d) + j])
                        .sum::<f64>()
                        / group as f64;
                    for i in 0..group {
                        mean[(g * group + i) * d + j] = avg;
                    }
                }
            }
        }
        let x = &st.kept;
        let mats: Vec<(String, Vec<f32>, usize)> = names
            .iter()
            .map(|n| {
                let t = get(&w, n)?;
                Ok((n.clone(), f32s(t).to_vec(), t.shape()[1]))
            })
            .collect::<Result<_>>()?;
        let reference: Vec<Vec<f32>> = mats
            .iter()
            .map(|(_, m, n)| product(x, m, k, *n))
            .collect::<Result<_>>()?;
        let mut best: Option<(f32, f64, Vec<f32>)> = None;
        let mut error_rtn = 0.0;
        for a in 0..ALPHAS {
            let alpha = a as f32 / ALPHAS as f32;
            let s = scales(&mean, alpha);
            let mut err = 0.0;
            for ((name, m, n), want) in mats.iter().zip(&reference) {
                let scaled = scale_rows(m, &s, *n, false);
                let mut q = fake_quant(&scaled, k, *n, plan.storage_of(name))?;
                q = scale_rows(&q, &s, *n, true);
                err += sq_diff(&product(x, &q, k, *n)?, want);
            }
            if a == 0 {
                error_rtn = err;
            }
            if best.as_ref().is_none_or(|b| err < b.1) {
                best = Some((alpha, err, s));
            }
        }
        let (alpha, error_scaled, s) = best.expect("at least one exponent");
        // Apply: weights' input rows times s, the operation before divided by s.
        let mut clipped_blocks = 0;
        let xs = scale_rows(x, &s, k, true);
        let gram = block_grams(&xs, k);
        for (name, m, n) in &mats {
            let mut scaled = scale_rows(m, &s, *n, false);
            if clip_blocks {
                clipped_blocks += clip(&mut scaled, *n, plan.storage_of(name), &gram)?;
            }
            put(&mut w, name, scaled)?;
        }
        match fold {
            Fold::Norm(norm) => {
                for part in ["w", "b"] {
                    let name = format!("{norm}.{part}");
                    if let Some(t) = w.get(&name) {
                        let v: Vec<f32> = f32s(t).iter().zip(&s).map(|(a, s)| a / s).collect();
                        put(&mut w, &name, v)?;
                    }
                }
            }
            Fold::Columns(lin) => {
                // The product whose output columns feed these channels: for o, v's
                // columns (one per key/value head and dim); for down, up's.
                let wname = format!("{lin}.w");
                let t = get(&w, &wname)?;
                let n = t.shape()[1];
                let col_scale: Vec<f32> = if *site == Site::O {
                    (0..n)
                        .map(|c| {
                            let (g, j) = (c / d, c % d);
                            s[(g * (nh / nkv)) * d + j]
                        })
                        .collect()
                } else {
                    s.clone()
                };
                let v: Vec<f32> = f32s(t)
                    .iter()
                    .enumerate()
                    .map(|(i, a)| a / col_scale[i % n])
                    .collect();
                put(&mut w, &wname, v)?;
                let bname = format!("{lin}.b");
                if let Some(b) = w.get(&bname) {
                    let v: Vec<f32> = f32s(b).iter().zip(&col_scale).map(|(a, s)| a / s).collect();
                    put(&mut w, &bname, v)?;
                }
            }
        }
        choices.push(GroupChoice {
            layer: *layer,
            site: *site,
            alpha,
            error_rtn,
            error_scaled,
            clipped_blocks,
        });
    }
    Ok((w, choices))
}

/// Which calibrated weights [`calibrate_checked`] kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The scales without clipping.
    Scaled,
    /// The scales and the clipping.
    ScaledClipped,
    /// Neither: round to nearest was closest to the f32 model on the calibration
    /// sequences.
    Rtn,
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Variant::Scaled => "awq",
            Variant::ScaledClipped => "awq+clip",
            Variant::Rtn => "rtn",
        })
    }
}

/// [`calibrate`] with and without clipping, then the candidate (or plain round to
/// nearest) whose quantized model is closest to the f32 model on the calibration
/// sequences themselves, by mean KL divergence of the next-token distributions at
/// the positions `scored` gives (each sequence's first scored token: the target
/// after a prompt, say; the prompt's activations are calibrated on all the same).
/// The per-group objectives are proxies (each product's output error); this check
/// keeps a calibration only where it helps the whole model on the data it was fitted
/// on.
///
/// # Errors
/// As [`calibrate`].
pub fn calibrate_checked(
    config: &ModelConfig,
    weights: &BTreeMap<String, Tensor>,
    sequences: &[Vec<u32>],
    scored_from: &[usize],
    storage: Storage,
    threads: usize,
) -> Result<Checked> {
    let (scaled, choices) = calibrate(config, weights, sequences, storage, threads, false)?;
    let (clipped, clip_choices) = calibrate(config, weights, sequences, storage, threads, true)?;
    let load = |w: &BTreeMap<String, Tensor>, s: Storage| {
        let opts = crate::LoadOptions {
            threads,
            storage: Some(s),
            ..crate::LoadOptions::default()
        };
        Model::from_weights(config.clone(), w.clone(), &opts)
    };
    let scored: Vec<(Vec<u32>, usize)> = sequences
        .iter()
        .zip(scored_from)
        .filter(|(s, &from)| from >= 1 && from < s.len())
        .map(|(s, &from)| (s.clone(), from))
        .collect();
    let mut reference = load(weights, Storage::F32)?;
    let mut kl = [0.0; 3];
    for (i, w) in [weights, &scaled, &clipped].into_iter().enumerate() {
        kl[i] = compare(&mut reference, &mut load(w, storage)?, &scored)?.mean_kl;
    }
    let best = (0..3).fold(0, |b, i| if kl[i] < kl[b] { i } else { b });
    let (weights, choices, variant) = match best {
        1 => (scaled, choices, Variant::Scaled),
        2 => (clipped, clip_choices, Variant::ScaledClipped),
        _ => (weights.clone(), Vec::new(), Variant::Rtn),
    };
    Ok(Checked {
        weights,
        choices,
        variant,
        calibration_kl: kl,
    })
}

/// What [`calibrate_checked`] kept.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The weights to store (round to nearest applies the calibration).
    pub weights: BTreeMap<String, Tensor>,
    /// Each group's choice in the kept calibration (none for [`Variant::Rtn`]).
    pub choices: Vec<GroupChoice>,
    /// Which candidate was kept.
    pub variant: Variant,
    /// Mean KL on the calibration sequences of round to nearest, the scales, and the
    /// scales with clipping.
    pub calibration_kl: [f64; 3],
}

/// Where a group's inverse scales go.
enum Fold {
    /// Into a norm's weight and bias (`ln1`, `ln2`).
    Norm(String),
    /// Into a product's output columns (`v`, `up`).
    Columns(String),
}

fn get<'a>(w: &'a BTreeMap<String, Tensor>, name: &str) -> Result<&'a Tensor> {
    w.get(name)
        .ok_or_else(|| Error::Input(format!("no weight '{name}'")))
}

fn put(w: &mut BTreeMap<String, Tensor>, name: &str, v: Vec<f32>) -> Result<()> {
    let shape = get(w, name)?.shape().to_vec();
    w.insert(name.to_string(), Tensor::from_f32(&shape, v)?);
    Ok(())
}

/// Runs the f32 model over `sequences` and gathers each product input's statistics.
fn observe(
    config: &ModelConfig,
    weights: &BTreeMap<String, Tensor>,
    sequences: &[Vec<u32>],
    threads: usize,
    total: usize,
) -> Result<BTreeMap<(usize, Site), Stats>> {
    let mut model = PagedModel::from_weights_as(
        config.clone(),
        weights.clone(),
        threads,
        &StoragePlan::default(),
    )?;
    let longest = sequences.iter().map(Vec::len).max().unwrap_or(0);
    if longest > config.max_position_embeddings {
        return Err(Error::Input(format!(
            "calibration: a sequence of {longest} tokens is longer than the model's context ({})",
            config.max_position_embeddings
        )));
    }
    let block = 16;
    let mut cache = PagedCache::new(config, block, longest.div_ceil(block).max(1))?;
    let stride = total.div_ceil(ROWS).max(1);
    let mut stats: BTreeMap<(usize, Site), Stats> = BTreeMap::new();
    let mut seen = 0usize;
    for seq in sequences.iter().filter(|s| !s.is_empty()) {
        let mut table = Vec::new();
        if !cache.reserve(&mut table, seq.len()) {
            return Err(Error::Input("calibration: the cache is too small".into()));
        }
        let chunk = Chunk {
            tokens: seq,
            start: 0,
            blocks: &table,
            logits: false,
        };
        let base = seen;
        model.step_observed(&mut cache, &[chunk], &mut |layer, site, rows| {
            let st = stats.entry((layer, site)).or_default();
            let width = rows.len() / seq.len();
            if st.width == 0 {
                st.width = width;
                st.abs_sum = vec![0.0; width];
            }
            for (i, row) in rows.chunks_exact(width).enumerate() {
                for (a, x) in st.abs_sum.iter_mut().zip(row) {
                    *a += f64::from(x.abs());
                }
                st.rows += 1;
                if (base + i).is_multiple_of(stride) {
                    st.kept.extend_from_slice(row);
                }
            }
        })?;
        seen += seq.len();
        cache.release(&mut table);
    }
    Ok(stats)
}

/// `x · w` for row-major `x` (`· × k`) and `w` (`k × n`).
fn product(x: &[f32], w: &[f32], k: usize, n: usize) -> Result<Vec<f32>> {
    let m = PackedMatrix::new(w, k, n)?;
    let mut out = vec![0.0; x.len() / k * n];
    m.matmul(x, None, &mut out)?;
    Ok(out)
}

fn sq_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum()
}

/// `m^alpha` per channel, normalised so that `max · min = 1` (channels that never
/// fire get the smallest positive scale).
fn scales(mean: &[f64], alpha: f32) -> Vec<f32> {
    let s: Vec<f64> = mean
        .iter()
        .map(|&m| m.max(1e-8).powf(f64::from(alpha)))
        .collect();
    let (lo, hi) = s.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &x| {
        (lo.min(x), hi.max(x))
    });
    let norm = (lo * hi).sqrt();
    s.iter().map(|x| (x / norm) as f32).collect()
}

/// Row `i` of row-major `m` (`· × n`) times `s[i]` (or divided by it).
fn scale_rows(m: &[f32], s: &[f32], n: usize, divide: bool) -> Vec<f32> {
    m.chunks_exact(n)
        .zip(s)
        .flat_map(|(row, &f)| row.iter().map(move |&x| if divide { x / f } else { x * f }))
        .collect()
}

/// `w` (`k × n`, blocks running down each column) as `storage` rounds it.
fn fake_quant(w: &[f32], k: usize, n: usize, storage: Storage) -> Result<Vec<f32>> {
    let format = storage
        .block_format()
        .ok_or_else(|| Error::Input(format!("{storage} is not a block format")))?;
    let mut out = vec![0.0; w.len()];
    let mut col = vec![0.0f32; k];
    let mut back = vec![0.0f32; k];
    for j in 0..n {
        for (i, c) in col.iter_mut().enumerate() {
            *c = w[i * n + j];
        }
        format.dequantize(&format.quantize(&col)?, &mut back)?;
        for (i, b) in back.iter().enumerate() {
            out[i * n + j] = *b;
        }
    }
    Ok(out)
}

/// `XᵀX` restricted to each 32-block of channels (`k / 32` matrices of 32 × 32).
fn block_grams(x: &[f32], k: usize) -> Vec<[[f64; 32]; 32]> {
    let mut grams = vec![[[0.0f64; 32]; 32]; k / 32];
    for row in x.chunks_exact(k) {
        for (b, g) in grams.iter_mut().enumerate() {
            let r = &row[b * 32..(b + 1) * 32];
            for (i, gi) in g.iter_mut().enumerate() {
                let xi = f64::from(r[i]);
                for (j, gij) in gi.iter_mut().enumerate() {
                    *gij += xi * f64::from(r[j]);
                }
            }
        }
    }
    grams
}

/// Clips each 32-block of each column of `w` (`k × n`) to the ratio of its largest
/// magnitude that gives the least output error; returns how many blocks it clipped.
fn clip(w: &mut [f32], n: usize, storage: Storage, grams: &[[[f64; 32]; 32]]) -> Result<usize> {
    let format = storage
        .block_format()
        .ok_or_else(|| Error::Input(format!("{storage} is not a block format")))?;
    let mut clipped = 0;
    let mut back = [0.0f32; 32];
    for j in 0..n {
        for (b, g) in grams.iter().enumerate() {
            let block: Vec<f32> = (0..32).map(|i| w[(b * 32 + i) * n + j]).collect();
            let amax = block.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            if amax == 0.0 {
                continue;
            }
            let mut best = (f64::INFINITY, 1.0f32, block.clone());
            for c in 0..CLIPS {
                let r = 1.0 - 0.05 * c as f32;
                let lim = r * amax;
                let cand: Vec<f32> = block.iter().map(|x| x.clamp(-lim, lim)).collect();
                format.dequantize(&format.quantize(&cand)?, &mut back)?;
                let e: Vec<f64> = back
                    .iter()
                    .zip(&block)
                    .map(|(q, x)| f64::from(q - x))
                    .collect();
                let err: f64 = (0..32)
                    .map(|i| e[i] * (0..32).map(|t| g[i][t] * e[t]).sum::<f64>())
                    .sum();
                if err < best.0 {
                    best = (err, r, cand);
                }
            }
            if best.1 < 1.0 {
                clipped += 1;
                for (i, v) in best.2.iter().enumerate() {
                    w[(b * 32 + i) * n + j] = *v;
                }
            }
        }
    }
    Ok(clipped)
}

/// A quantized model against its original on the same sequences (teacher forcing).
#[derive(Debug, Clone, PartialEq)]
pub struct Quality {
    /// Next-token predictions compared.
    pub tokens: usize,
    /// The original's perplexity on the scored tokens.
    pub perplexity_reference: f64,
    /// The quantized model's.
    pub perplexity: f64,
    /// `perplexity / perplexity_reference`.
    pub perplexity_ratio: f64,
    /// Mean `KL(original ‖ quantized)` of the next-token distributions, nats.
    pub mean_kl: f64,
    /// Share of positions where both put the same token first.
    pub top1_agreement: f64,
}

impl Quality {
    /// The figures as a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "tokens": self.tokens,
            "perplexity_reference": self.perplexity_reference,
            "perplexity": self.perplexity,
            "perplexity_ratio": self.perplexity_ratio,
            "mean_kl": self.mean_kl,
            "top1_agreement": self.top1_agreement,
        })
    }
}

/// Scores `candidate` against `reference` on `sequences`: each is token ids with the
/// index of its first scored token (the tokens before it are the prompt; every later
/// token is predicted from the ones before it).
///
/// # Errors
/// [`Error::Input`] when no token is scored or a start is out of range; model errors.
pub fn compare(
    reference: &mut Model,
    candidate: &mut Model,
    sequences: &[(Vec<u32>, usize)],
) -> Result<Quality> {
    // Equal lengths batch together.
    let mut by_len: BTreeMap<usize, Vec<&(Vec<u32>, usize)>> = BTreeMap::new();
    for s in sequences {
        if s.1 == 0 || s.1 >= s.0.len() {
            return Err(Error::Input(format!(
                "a sequence of {} tokens scored from token {}: needs 1 ≤ start < length",
                s.0.len(),
                s.1
            )));
        }
        by_len.entry(s.0.len()).or_default().push(s);
    }
    let v = reference.config().vocab_size;
    let (mut n, mut nll_r, mut nll_c, mut kl, mut same) = (0usize, 0.0, 0.0, 0.0, 0usize);
    for (len, group) in by_len {
        for batch in group.chunks(16) {
            let ids: Vec<Vec<u32>> = batch.iter().map(|s| s.0.clone()).collect();
            let lr = reference.forward(&ids)?;
            let lc = candidate.forward(&ids)?;
            let (lr, lc) = (f32s(&lr), f32s(&lc));
            for (b, s) in batch.iter().enumerate() {
                for t in s.1..len {
                    let at = (b * len + t - 1) * v;
                    let (pr, pc) = (log_softmax(&lr[at..at + v]), log_softmax(&lc[at..at + v]));
                    let next = s.0[t] as usize;
                    nll_r -= pr[next];
                    nll_c -= pc[next];
                    kl += pr
                        .iter()
                        .zip(&pc)
                        .map(|(a, c)| a.exp() * (a - c))
                        .sum::<f64>();
                    same += usize::from(argmax(&pr) == argmax(&pc));
                    n += 1;
                }
            }
        }
    }
    if n == 0 {
        return Err(Error::Input("no tokens to compare".into()));
    }
    let (pr, pc) = ((nll_r / n as f64).exp(), (nll_c / n as f64).exp());
    Ok(Quality {
        tokens: n,
        perplexity_reference: pr,
        perplexity: pc,
        perplexity_ratio: pc / pr,
        mean_kl: kl / n as f64,
        top1_agreement: same as f64 / n as f64,
    })
}

fn log_softmax(x: &[f32]) -> Vec<f64> {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let lse = f64::from(max)
        + x.iter()
            .map(|&v| f64::from(v - max).exp())
            .sum::<f64>()
            .ln();
    x.iter().map(|&v| f64::from(v) - lse).collect()
}

fn argmax(x: &[f64]) -> usize {
    x.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}
