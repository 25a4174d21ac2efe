//! A weight matrix laid out once for repeated products: the CPU executor's packed
//! GEMM, for callers that drive their own loop (a serving runtime whose batch is a
//! ragged set of sequences, say) instead of running a graph.

use crate::cpu;
use crate::error::{Error, Result};

/// A row-major `k × n` f32 matrix (`[in, out]`, the graph's linear layout), packed
/// for the AVX-512 micro-kernel where this machine has it and kept as is for the
/// general GEMM elsewhere.
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
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Packed(cpu::gemm::PackedB),
    Plain(Vec<f32>),
}

impl PackedMatrix {
    /// Lays out `w` (`k × n`, row-major).
    ///
    /// # Errors
    /// [`Error::Shape`] when `w` does not hold `k · n` values or a side is zero.
    pub fn new(w: &[f32], k: usize, n: usize) -> Result<PackedMatrix> {
        if w.len() != k * n || k == 0 || n == 0 {
            return Err(Error::Shape(format!(
                "a packed matrix of {k} × {n} needs {} values, got {}",
                k * n,
                w.len()
            )));
        }
        let inner = match cpu::gemm::PackedB::new(w, k, n) {
            Some(p) => Inner::Packed(p),
            None => Inner::Plain(w.to_vec()),
        };
        Ok(PackedMatrix { k, n, inner })
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
        match &self.inner {
            Inner::Packed(w) => cpu::packed_matmul_slices(x, w, bias, out),
            Inner::Plain(w) => cpu::plain_matmul_slices(x, w, bias, out, m, k, n),
        }
        .map_err(|source| Error::Kernel {
            node: None,
            op: "matmul".into(),
            source,
        })
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
}
