//! A weight matrix laid out once for repeated products: the CPU executor's packed
//! GEMM, for callers that drive their own loop (a serving runtime whose batch is a
//! ragged set of sequences, say) instead of running a graph.

use half::{bf16, f16};

use crate::cpu;
use crate::cpu::gemm::PackedB;
use crate::error::{Error, Result};
use crate::quant::{BlockFormat, QuantMatrix, BLOCK};

/// How a [`PackedMatrix`] stores its elements.
///
/// | storage | bytes per weight | product |
/// |---|---|---|
/// | [`Storage::F32`] | 4 | packed f32 panels |
/// | [`Storage::F16`], [`Storage::Bf16`] | 2 | the same panels and micro-kernels, each element widened to f32 in registers as it is loaded: exactly the f32 product of the rounded weights |
/// | [`Storage::Q8_0`], [`Storage::Q4_0`] | 34 / 32, 18 / 32 | ggml's blocks ([`crate::quant`]), activations quantized to `Q8_0` per row, integer dot products |
///
/// The block formats need rows (the product's inner dimension) whose length is a
/// multiple of 32 ([`Storage::fits`]). On a machine without AVX-512F the f16 and
/// bf16 matrices are widened to f32 when they are built (same results, twice the
/// bytes: [`PackedMatrix::bytes`] says so).
///
/// ```
/// use autoglm_ops::Storage;
/// let s: Storage = "q8_0".parse().unwrap();
/// assert_eq!(s, Storage::Q8_0);
/// assert!(s.fits(64) && !s.fits(48));
/// assert_eq!(Storage::Bf16.to_string(), "bf16");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Storage {
    /// Single precision (the default).
    #[default]
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
    /// ggml's `Q8_0`: 32 int8 codes and an f16 scale per block (8.5 bits a weight).
    Q8_0,
    /// ggml's `Q4_0`: 32 4-bit codes and an f16 scale per block (4.5 bits a weight).
    Q4_0,
}

impl Storage {
    /// Every storage, widest first.
    pub const ALL: [Storage; 5] = [
        Storage::F32,
        Storage::F16,
        Storage::Bf16,
        Storage::Q8_0,
        Storage::Q4_0,
    ];

    /// The name used in files and on the command line (`f32`, `f16`, `bf16`, `q8_0`,
    /// `q4_0`).
    pub fn name(self) -> &'static str {
        match self {
            Storage::F32 => "f32",
            Storage::F16 => "f16",
            Storage::Bf16 => "bf16",
            Storage::Q8_0 => "q8_0",
            Storage::Q4_0 => "q4_0",
        }
    }

    /// The block format, for the quantized storages.
    pub fn block_format(self) -> Option<BlockFormat> {
        match self {
            Storage::Q8_0 => Some(BlockFormat::Q8_0),
            Storage::Q4_0 => Some(BlockFormat::Q4_0),
            _ => None,
        }
    }

    /// Bytes that `n` weights take (a whole number of blocks for the block formats).
    pub fn bytes_for(self, n: usize) -> usize {
        match self {
            Storage::F32 => 4 * n,
            Storage::F16 | Storage::Bf16 => 2 * n,
            Storage::Q8_0 | Storage::Q4_0 => self
                .block_format()
                .map_or(0, |f| f.bytes_for(n.next_multiple_of(BLOCK))),
        }
    }

    /// Whether a matrix whose rows hold `k` inputs can be stored this way.
    pub fn fits(self, k: usize) -> bool {
        self.block_format().is_none() || k.is_multiple_of(BLOCK)
    }

    /// This storage where it [fits](Storage::fits) rows of `k`, else the fallback
    /// format: f16 (two bytes a weight, and exact for the weights of a checkpoint
    /// saved in f16).
    pub fn or_fallback(self, k: usize) -> Storage {
        if self.fits(k) {
            self
        } else {
            Storage::F16
        }
    }
}

/// Which [`Storage`] each weight gets: one for all, with exceptions by parameter name
/// (the output head at a higher precision, say). An executor applies it to the
/// weights it binds after [`crate::Executor::set_storage_plan`].
///
/// ```
/// use autoglm_ops::{Storage, StoragePlan};
/// let plan = StoragePlan::uniform(Storage::Q4_0).with("head.w", Storage::Q8_0);
/// assert_eq!(plan.storage_of("l0.q.w"), Storage::Q4_0);
/// assert_eq!(plan.storage_of("head.w"), Storage::Q8_0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoragePlan {
    /// The storage of every weight not named in `by_name`.
    pub default: Storage,
    /// Exceptions, by parameter name.
    pub by_name: std::collections::BTreeMap<String, Storage>,
}

impl StoragePlan {
    /// Every weight in `storage`.
    pub fn uniform(storage: Storage) -> StoragePlan {
        StoragePlan {
            default: storage,
            by_name: Default::default(),
        }
    }

    /// The plan with `name` stored as `storage`.
    #[must_use]
    pub fn with(mut self, name: &str, storage: Storage) -> StoragePlan {
        self.by_name.insert(name.to_string(), storage);
        self
    }

    /// The storage asked for the weight `name`.
    pub fn storage_of(&self, name: &str) -> Storage {
        self.by_name.get(name).copied().unwrap_or(self.default)
    }
}

impl std::fmt::Display for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Storage {
    type Err = Error;

    /// Parses a [`Storage::name`]; `q8` and `q4` are accepted for `q8_0` and `q4_0`.
    fn from_str(s: &str) -> Result<Storage> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Storage::F32,
            "f16" | "float16" => Storage::F16,
            "bf16" | "bfloat16" => Storage::Bf16,
            "q8" | "q8_0" => Storage::Q8_0,
            "q4" | "q4_0" => Storage::Q4_0,
            other => {
                return Err(Error::Unsupported(format!(
                    "storage '{other}': expected one of f32, f16, bf16, q8_0, q4_0"
                )))
            }
        })
    }
}

/// A row-major `k × n` matrix (`[in, out]`, the graph's linear layout) laid out for
/// repeated products in one of the [`Storage`] types: packed for the AVX-512
/// micro-kernel where this machine has it (f32, or f16 / bf16 widened in registers),
/// kept as f32 for the general GEMM elsewhere, or in ggml's quantized blocks.
///
/// ```
/// use autoglm_ops::PackedMatrix;
/// let w = PackedMatrix::new(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3).unwrap();
/// let mut out = [0.0f32; 3];
/// w.matmul(&[1.0, 1.0], Some(&[0.5, 0.5, 0.5]), &mut out).unwrap();
/// assert_eq!(out, [5.5, 7.5, 9.5]);
/// ```
#[derive(Debug)]
pub struct PackedMatrix {
    k: usize,
    n: usize,
    storage: Storage,
    inner: Inner,
}

/// One variant per way the product runs (device storages join here).
#[derive(Debug)]
enum Inner {
    Packed(PackedB),
    F16(PackedB<f16>),
    Bf16(PackedB<bf16>),
    Plain(Vec<f32>),
    Quant(QuantMatrix),
}

impl PackedMatrix {
    /// Lays out `w` (`k × n`, row-major).
    ///
    /// # Errors
    /// [`Error::Shape`] when `w` does not hold `k · n` values or a side is zero.
    pub fn new(w: &[f32], k: usize, n: usize) -> Result<PackedMatrix> {
        PackedMatrix::with_storage(w, k, n, Storage::F32)
    }

    /// Lays out `w` (`k × n`, row-major) rounded to `storage` (round to nearest
    /// even for the half types, ggml's reference quantizers for the blocks).
    ///
    /// # Errors
    /// [`Error::Shape`] when `w` does not hold `k · n` values, a side is zero, or
    /// `storage` is a block format and `k` is not a multiple of 32.
    pub fn with_storage(w: &[f32], k: usize, n: usize, storage: Storage) -> Result<PackedMatrix> {
        if w.len() != k * n || k == 0 || n == 0 {
            return Err(Error::Shape(format!(
                "a packed matrix of {k} × {n} needs {} values, got {}",
                k * n,
                w.len()
            )));
        }
        let widened = || -> Vec<f32> {
            match storage {
                Storage::F16 => w.iter().map(|&x| f16::from_f32(x).to_f32()).collect(),
                Storage::Bf16 => w.iter().map(|&x| bf16::from_f32(x).to_f32()).collect(),
                _ => w.to_vec(),
            }
        };
        let inner = match storage {
            Storage::F32 => PackedB::new(w, k, n).map(Inner::Packed),
            Storage::F16 => PackedB::from_f32(w, k, n).map(Inner::F16),
            Storage::Bf16 => PackedB::from_f32(w, k, n).map(Inner::Bf16),
            Storage::Q8_0 | Storage::Q4_0 => {
                let format = storage.block_format().expect("a block storage");
                Some(Inner::Quant(QuantMatrix::from_f32(w, k, n, format)?))
            }
        }
        .unwrap_or_else(|| Inner::Plain(widened()));
        Ok(PackedMatrix {
            k,
            n,
            storage,
            inner,
        })
    }

    /// Takes a quantized matrix as it is (from a GGUF file, say).
    pub fn from_quant(q: QuantMatrix) -> PackedMatrix {
        let storage = match q.format() {
            BlockFormat::Q8_0 => Storage::Q8_0,
            // `QuantMatrix` holds no other format (it has no product for `Q4_1`).
            _ => Storage::Q4_0,
        };
        PackedMatrix {
            k: q.k(),
            n: q.n(),
            storage,
            inner: Inner::Quant(q),
        }
    }

    /// How the elements are stored.
    pub fn storage(&self) -> Storage {
        self.storage
    }

    /// The bytes the matrix holds in memory (f32 where half panels were widened on
    /// a machine without AVX-512F; q8_0 repacked for VNNI carries each block's
    /// weight sums too, 12 % more).
    pub fn bytes(&self) -> usize {
        match &self.inner {
            Inner::Packed(p) => p.bytes(),
            Inner::F16(p) => p.bytes(),
            Inner::Bf16(p) => p.bytes(),
            Inner::Plain(w) => 4 * w.len(),
            Inner::Quant(q) => q.bytes(),
        }
    }

    /// Rows (the product's inner dimension).
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// `out = x · self (+ bias)` for row-major `x` (`m × k`) and `out` (`m × n`),
    /// split over the current rayon pool's threads (rows, or for one to four rows
    /// the columns).
    ///
    /// # Errors
    /// [`Error::Shape`] when the sizes do not agree; [`Error::Kernel`] if the product
    /// fails.
    pub fn matmul(&self, x: &[f32], bias: Option<&[f32]>, out: &mut [f32]) -> Result<()> {
        let (k, n) = (self.k, self.n);
        let m = x.len() / k;
        if x.len() != m * k || out.len() != m * n || bias.is_some_and(|b| b.len() != n) {
            return Err(Error::Shape(format!(
                "packed product: {} inputs, {} outputs, bias {:?} against [{k}, {n}]",
                x.len(),
                out.len(),
                bias.map(<[f32]>::len)
            )));
        }
        self.matmul_slices(x, bias, out)
            .map_err(|source| Error::Kernel {
                node: None,
                op: "matmul".into(),
                source,
            })
    }

    /// [`PackedMatrix::matmul`] for sizes already checked (`x.len()` a multiple of
    /// `k`, `out` as many rows of `n`): the executor's matmul kernel.
    pub(crate) fn matmul_slices(
        &self,
        x: &[f32],
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> std::result::Result<(), crate::KernelError> {
        let (k, n) = (self.k, self.n);
        let m = x.len() / k;
        match &self.inner {
            Inner::Packed(w) => cpu::packed_matmul_slices(x, w, bias, out),
            Inner::F16(w) => cpu::packed_matmul_slices(x, w, bias, out),
            Inner::Bf16(w) => cpu::packed_matmul_slices(x, w, bias, out),
            Inner::Plain(w) => cpu::plain_matmul_slices(x, w, bias, out, m, k, n),
            Inner::Quant(q) => {
                q.matmul(x, out)
                    .map_err(|e| crate::KernelError::Shape(e.to_string()))?;
                if let Some(b) = bias {
                    for row in out.chunks_exact_mut(n) {
                        for (o, b) in row.iter_mut().zip(b) {
                            *o += b;
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_a_plain_product_for_every_row_count() {
        let (k, n) = (300, 70);
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..n).map(|j| j as f32 / 10.0).collect();
        let p = PackedMatrix::new(&w, k, n).unwrap();
        for m in [1, 2, 3, 5, 13, 40] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 31) % 17) as f32 / 17.0 - 0.3)
                .collect();
            let mut out = vec![0.0; m * n];
            p.matmul(&x, Some(&b), &mut out).unwrap();
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|t| x[i * k + t] * w[t * n + j]).sum::<f32>() + b[j];
                    let got = out[i * n + j];
                    assert!(
                        (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{m} rows, ({i}, {j}): {got} vs {want}"
                    );
                }
            }
        }
        let mut out = vec![0.0; n];
        assert!(p.matmul(&[0.0; 3], None, &mut out).is_err());
        assert!(PackedMatrix::new(&w, k, n + 1).is_err());
    }

    /// Half panels widen exactly, so their products have the bits of the f32
    /// product of the rounded weights (the widen-at-load path), for every row count
    /// and kernel (wide, tiled, split over threads).
    #[test]
    fn half_panels_give_the_bits_of_widened_weights() {
        let (k, n) = (300, 600);
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 7919) % 1009) as f32 / 997.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..n).map(|j| j as f32 / 100.0).collect();
        for storage in [Storage::F16, Storage::Bf16] {
            let half = PackedMatrix::with_storage(&w, k, n, storage).unwrap();
            let rounded: Vec<f32> = match storage {
                Storage::F16 => w.iter().map(|&x| f16::from_f32(x).to_f32()).collect(),
                _ => w.iter().map(|&x| bf16::from_f32(x).to_f32()).collect(),
            };
            assert_ne!(rounded, w, "{storage} rounds");
            let wide = PackedMatrix::new(&rounded, k, n).unwrap();
            assert_eq!(half.storage(), storage);
            if cpu::gemm::available() {
                assert!(
                    2 * half.bytes() <= wide.bytes() + 128,
                    "{storage} is half the size"
                );
            }
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                for m in [1, 2, 3, 4, 5, 13, 40] {
                    let x: Vec<f32> = (0..m * k)
                        .map(|i| ((i * 31) % 17) as f32 / 17.0 - 0.3)
                        .collect();
                    let (mut got, mut want) = (vec![0.0; m * n], vec![1.0; m * n]);
                    pool.install(|| {
                        half.matmul(&x, Some(&b), &mut got).unwrap();
                        wide.matmul(&x, Some(&b), &mut want).unwrap();
                    });
                    assert!(
                        got.iter()
                            .zip(&want)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{storage}, {m} rows, {threads} threads"
                    );
                }
            }
        }
    }

    #[test]
    fn block_storages_add_the_bias_to_the_quantized_product() {
        let (k, n) = (64, 40);
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 13) % 29) as f32 / 29.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..n).map(|j| j as f32).collect();
        let x: Vec<f32> = (0..2 * k).map(|i| ((i * 7) % 11) as f32 / 11.0).collect();
        for storage in [Storage::Q8_0, Storage::Q4_0] {
            let p = PackedMatrix::with_storage(&w, k, n, storage).unwrap();
            let q = QuantMatrix::from_f32(&w, k, n, storage.block_format().unwrap()).unwrap();
            // The blocks, and for Q8_0 repacked for VNNI each block's weight sums.
            assert_eq!(p.bytes(), q.bytes());
            assert!(p.bytes() >= storage.bytes_for(k * n));
            let (mut got, mut want) = (vec![0.0; 2 * n], vec![0.0; 2 * n]);
            p.matmul(&x, Some(&b), &mut got).unwrap();
            q.matmul(&x, &mut want).unwrap();
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(*g, w + b[i % n], "{storage} output {i}");
            }
            let err = PackedMatrix::with_storage(&w[..48 * n], 48, n, storage).unwrap_err();
            assert!(err.to_string().contains("48"), "{err}");
        }
    }

    #[test]
    fn storage_names_round_trip() {
        for s in Storage::ALL {
            assert_eq!(s.name().parse::<Storage>().unwrap(), s);
        }
        assert_eq!("Q4".parse::<Storage>().unwrap(), Storage::Q4_0);
        let err = "q5_k".parse::<Storage>().unwrap_err().to_string();
        assert!(err.contains("q5_k") && err.contains("q8_0"), "{err}");
    }
}
