//! Tensors to and from safetensors files (the format of Hugging Face checkpoints).

use std::collections::BTreeMap;
use std::path::Path;

use half::{bf16, f16};
use safetensors::tensor::{Dtype as SDtype, TensorView};
use safetensors::SafeTensors;

use crate::error::{Error, Result};
use crate::tensor::{Data, Tensor};

fn io_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Binding(format!("{}: {e}", path.display()))
}

/// Reads every tensor of a safetensors file, by name.
///
/// # Errors
/// [`Error::Binding`] naming the file (and tensor) for unreadable files, malformed
/// headers or element types this crate does not hold (e.g. u8, f8).
pub fn load_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| io_err(path, e))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data = match view.dtype() {
            SDtype::F32 => Data::F32(le(raw, f32::from_le_bytes)),
            SDtype::F64 => Data::F64(le(raw, f64::from_le_bytes)),
            SDtype::F16 => Data::F16(le(raw, |b| f16::from_bits(u16::from_le_bytes(b)))),
            SDtype::BF16 => Data::BF16(le(raw, |b| bf16::from_bits(u16::from_le_bytes(b)))),
            SDtype::I64 => Data::I64(le(raw, i64::from_le_bytes)),
            SDtype::I32 => Data::I32(le(raw, i32::from_le_bytes)),
            SDtype::BOOL => Data::Bool(raw.iter().map(|&b| b != 0).collect()),
            other => {
                return Err(io_err(
                    path,
                    format!("tensor '{name}': element type {other:?} is not supported"),
                ))
            }
        };
        let t = Tensor::new(view.shape(), data)
            .map_err(|e| io_err(path, format!("tensor '{name}': {e}")))?;
        out.insert(name, t);
    }
    Ok(out)
}

/// Little-endian elements of `N` bytes.
fn le<T, const N: usize>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N)
        .map(|c| f(c.try_into().expect("chunks of N bytes")))
        .collect()
}

/// Writes tensors to a safetensors file.
///
/// # Errors
/// [`Error::Binding`] naming the file.
pub fn save_safetensors(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<()> {
    let encoded: Vec<(String, SDtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| {
            let (dtype, bytes) = match t.data() {
                Data::F32(v) => (
                    SDtype::F32,
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ),
                Data::F64(v) => (
                    SDtype::F64,
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ),
                Data::F16(v) => (
                    SDtype::F16,
                    v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
                ),
                Data::BF16(v) => (
                    SDtype::BF16,
                    v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
                ),
                Data::I64(v) => (
                    SDtype::I64,
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ),
                Data::I32(v) => (
                    SDtype::I32,
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ),
                Data::Bool(v) => (SDtype::BOOL, v.iter().map(|&b| u8::from(b)).collect()),
            };
            (n.clone(), dtype, t.shape().to_vec(), bytes)
        })
        .collect();
    let views = encoded
        .iter()
        .map(|(n, d, s, b)| {
            Ok((
                n.clone(),
                TensorView::new(*d, s.clone(), b).map_err(|e| io_err(path, e))?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, None, path).map_err(|e| io_err(path, e))
}
