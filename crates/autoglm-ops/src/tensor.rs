//! Dense row-major tensors of any of the graph's element types.

use autoglm_graph::DType;
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use ndarray::{ArrayViewD, ArrayViewMutD, IxDyn};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::error::{Error, Result};

/// A tensor's elements, one vector per element type.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Data {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    Bool(Vec<bool>),
}

/// Applies `$body` with `$v` bound to the element vector, whatever its type.
macro_rules! each_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            Data::F32($v) => $body,
            Data::F16($v) => $body,
            Data::BF16($v) => $body,
            Data::F64($v) => $body,
            Data::I64($v) => $body,
            Data::I32($v) => $body,
            Data::Bool($v) => $body,
        }
    };
}

impl Data {
    /// `n` zeros of type `dtype`.
    pub fn zeros(dtype: DType, n: usize) -> Data {
        match dtype {
            DType::F32 => Data::F32(vec![0.0; n]),
            DType::F16 => Data::F16(vec![f16::ZERO; n]),
            DType::BF16 => Data::BF16(vec![bf16::ZERO; n]),
            DType::F64 => Data::F64(vec![0.0; n]),
            DType::I64 => Data::I64(vec![0; n]),
            DType::I32 => Data::I32(vec![0; n]),
            DType::Bool => Data::Bool(vec![false; n]),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Data::F32(_) => DType::F32,
            Data::F16(_) => DType::F16,
            Data::BF16(_) => DType::BF16,
            Data::F64(_) => DType::F64,
            Data::I64(_) => DType::I64,
            Data::I32(_) => DType::I32,
            Data::Bool(_) => DType::Bool,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        each_data!(self, v => v.len())
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes allocated (capacity, not length).
    pub fn capacity_bytes(&self) -> usize {
        each_data!(self, v => v.capacity()) * self.dtype().size_bytes()
    }

    /// Resizes to `n` elements (new ones zero), keeping the allocation when it fits.
    pub(crate) fn resize(&mut self, n: usize) {
        match self {
            Data::F32(v) => v.resize(n, 0.0),
            Data::F16(v) => v.resize(n, f16::ZERO),
            Data::BF16(v) => v.resize(n, bf16::ZERO),
            Data::F64(v) => v.resize(n, 0.0),
            Data::I64(v) => v.resize(n, 0),
            Data::I32(v) => v.resize(n, 0),
            Data::Bool(v) => v.resize(n, false),
        }
    }

    /// Element `i` as f64 (booleans are 0 and 1).
    pub fn get_f64(&self, i: usize) -> f64 {
        match self {
            Data::F32(v) => f64::from(v[i]),
            Data::F16(v) => f64::from(v[i]),
            Data::BF16(v) => f64::from(v[i]),
            Data::F64(v) => v[i],
            Data::I64(v) => v[i] as f64,
            Data::I32(v) => f64::from(v[i]),
            Data::Bool(v) => f64::from(u8::from(v[i])),
        }
    }

    /// Values converted from f64 (rounded to the type; integers truncate).
    pub fn from_f64(dtype: DType, values: impl Iterator<Item = f64>) -> Data {
        match dtype {
            DType::F32 => Data::F32(values.map(|x| x as f32).collect()),
            DType::F16 => Data::F16(values.map(f16::from_f64).collect()),
            DType::BF16 => Data::BF16(values.map(bf16::from_f64).collect()),
            DType::F64 => Data::F64(values.collect()),
            DType::I64 => Data::I64(values.map(|x| x as i64).collect()),
            DType::I32 => Data::I32(values.map(|x| x as i32).collect()),
            DType::Bool => Data::Bool(values.map(|x| x != 0.0).collect()),
        }
    }
}

/// A dense tensor: a shape and its elements in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Data,
}

impl Tensor {
    /// A tensor from a shape and elements.
    ///
    /// # Errors
    /// [`Error::Shape`] if the element count is not the shape's volume.
    pub fn new(shape: &[usize], data: Data) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::Shape(format!(
                "shape {shape:?} holds {n} elements, got {}",
                data.len()
            )));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            data,
        })
    }

    /// An f32 tensor.
    ///
    /// # Errors
    /// As [`Tensor::new`].
    pub fn from_f32(shape: &[usize], values: Vec<f32>) -> Result<Tensor> {
        Tensor::new(shape, Data::F32(values))
    }

    /// Zeros.
    pub fn zeros(dtype: DType, shape: &[usize]) -> Tensor {
        Tensor {
            shape: shape.to_vec(),
            data: Data::zeros(dtype, shape.iter().product()),
        }
    }

    /// A scalar (shape `[]`).
    pub fn scalar(value: f64, dtype: DType) -> Tensor {
        Tensor {
            shape: Vec::new(),
            data: Data::from_f64(dtype, std::iter::once(value)),
        }
    }

    /// Random values: floats uniform in `[lo, hi)`, integers in `lo..hi`, booleans
    /// fair coins; reproducible from `seed`.
    pub fn random(dtype: DType, shape: &[usize], lo: f64, hi: f64, seed: u64) -> Tensor {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let values = (0..n).map(|_| match dtype {
            DType::Bool => f64::from(u8::from(rng.random::<bool>())),
            DType::I64 | DType::I32 => {
                (lo + (rng.random::<f64>() * (hi - lo)).floor()).min(hi - 1.0)
            }
            _ => lo + rng.random::<f64>() * (hi - lo),
        });
        Tensor {
            shape: shape.to_vec(),
            data: Data::from_f64(dtype, values),
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The elements.
    pub fn data(&self) -> &Data {
        &self.data
    }

    /// The elements, mutably (their number must not change).
    pub fn data_mut(&mut self) -> &mut Data {
        &mut self.data
    }

    /// The tensor's parts.
    pub fn into_parts(self) -> (Vec<usize>, Data) {
        (self.shape, self.data)
    }

    /// Sets a new shape of the same volume (a free reshape).
    ///
    /// # Errors
    /// [`Error::Shape`] if the volume differs.
    pub fn reshape(&mut self, shape: &[usize]) -> Result<()> {
        if shape.iter().product::<usize>() != self.len() {
            return Err(Error::Shape(format!(
                "cannot reshape {:?} to {shape:?}",
                self.shape
            )));
        }
        self.shape = shape.to_vec();
        Ok(())
    }

    /// The f32 elements, if the tensor is f32.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The f32 elements mutably, if the tensor is f32.
    pub fn as_f32_mut(&mut self) -> Option<&mut [f32]> {
        match &mut self.data {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }

    /// An ndarray view of an f32 tensor.
    pub fn view_f32(&self) -> Option<ArrayViewD<'_, f32>> {
        ArrayViewD::from_shape(IxDyn(&self.shape), self.as_f32()?).ok()
    }

    /// A mutable ndarray view of an f32 tensor.
    pub fn view_f32_mut(&mut self) -> Option<ArrayViewMutD<'_, f32>> {
        let shape = self.shape.clone();
        ArrayViewMutD::from_shape(IxDyn(&shape), self.as_f32_mut()?).ok()
    }

    /// Every element as f64.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        (0..self.len()).map(|i| self.data.get_f64(i)).collect()
    }

    /// Every element as f32.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            // The slice conversions use the F16C instructions where the CPU has them.
            Data::F16(v) => {
                let mut out = vec![0.0; v.len()];
                v.convert_to_f32_slice(&mut out);
                out
            }
            Data::BF16(v) => {
                let mut out = vec![0.0; v.len()];
                v.convert_to_f32_slice(&mut out);
                out
            }
            _ => self.to_f64_vec().into_iter().map(|x| x as f32).collect(),
        }
    }

    /// The tensor converted to `dtype` (floats round, integers truncate, booleans are
    /// "not zero").
    pub fn cast(&self, dtype: DType) -> Tensor {
        let data = match (&self.data, dtype) {
            (d, t) if d.dtype() == t => d.clone(),
            (_, DType::F32) if self.dtype().is_float() => Data::F32(self.to_f32_vec()),
            (Data::F32(v), DType::F16) => {
                let mut out = vec![f16::ZERO; v.len()];
                out.convert_from_f32_slice(v);
                Data::F16(out)
            }
            (Data::F32(v), DType::BF16) => {
                let mut out = vec![bf16::ZERO; v.len()];
                out.convert_from_f32_slice(v);
                Data::BF16(out)
            }
            _ => Data::from_f64(dtype, (0..self.len()).map(|i| self.data.get_f64(i))),
        };
        Tensor {
            shape: self.shape.clone(),
            data,
        }
    }
}
