//! GGUF, llama.cpp's model file: the container read and written byte for byte as
//! ggml's `gguf.cpp` and the `gguf` Python package do (version 3, little-endian).
//!
//! A file is a header (`GGUF`, version, tensor and key counts), typed key–value
//! metadata in the order written, one record per tensor (name, dimensions innermost
//! first, ggml type, offset into the data section), zero padding to the alignment
//! (`general.alignment`, 32 by default), and the tensors' bytes, each padded to the
//! alignment. [`Gguf::parse`] checks what `gguf.cpp` checks — unique keys and names,
//! known types, rows that are whole blocks, offsets that follow one another, data
//! inside the file — and names the key or tensor at fault. [`GgufWriter`] writes keys
//! in insertion order after `general.architecture`, as gguf-py's `GGUFWriter` does.
//!
//! ```
//! use autoglm_models::gguf::{GgmlType, Gguf, GgufWriter, Value};
//! let mut w = GgufWriter::new("glm4");
//! w.add("glm4.block_count", Value::U32(2)).unwrap();
//! let data: Vec<u8> = [1.0f32, 2.0, 3.0].iter().flat_map(|x| x.to_le_bytes()).collect();
//! w.add_tensor("output_norm.weight", &[3], GgmlType::F32, data).unwrap();
//! let bytes = w.to_bytes();
//! let g = Gguf::parse(&bytes, "model.gguf".as_ref()).unwrap();
//! assert_eq!(g.get("general.architecture"), Some(&Value::String("glm4".into())));
//! let t = g.tensor("output_norm.weight").unwrap();
//! assert_eq!(g.data(&bytes, t)[4..8], 2.0f32.to_le_bytes());
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The alignment of tensor data when the file does not say (`general.alignment`).
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The longest tensor name ggml takes, in bytes (`GGML_MAX_NAME` − 1).
pub const MAX_NAME: usize = 63;
/// The most dimensions a tensor has (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;

/// The element types this crate reads and writes (ggml's type ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    /// 32-bit floats (0).
    F32,
    /// IEEE half floats (1).
    F16,
    /// 32-value blocks of 4-bit codes and an f16 scale (2).
    Q4_0,
    /// 32-value blocks of 4-bit codes, an f16 scale and minimum (3).
    Q4_1,
    /// 32-value blocks of 8-bit codes and an f16 scale (8).
    Q8_0,
    /// 256-value super-blocks of 6-bit codes with 8-bit sub-scales (14).
    Q6_K,
    /// bfloat16 (30).
    BF16,
}

impl GgmlType {
    /// Every type.
    pub const ALL: [GgmlType; 7] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::Q6_K,
        GgmlType::BF16,
    ];

    /// The type with ggml id `id`, if this crate knows it.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        GgmlType::ALL.into_iter().find(|t| t.id() == id)
    }

    /// ggml's id.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q8_0 => 8,
            GgmlType::Q6_K => 14,
            GgmlType::BF16 => 30,
        }
    }

    /// ggml's name.
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "f32",
            GgmlType::F16 => "f16",
            GgmlType::Q4_0 => "q4_0",
            GgmlType::Q4_1 => "q4_1",
            GgmlType::Q8_0 => "q8_0",
            GgmlType::Q6_K => "q6_K",
            GgmlType::BF16 => "bf16",
        }
    }

    /// Values per block and bytes per block.
    pub fn block(self) -> (u64, u64) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q6_K => (256, 210),
        }
    }

    /// Bytes of a tensor of this type with dimensions `dims` (innermost first); `None`
    /// when a row is not a whole number of blocks or the size overflows.
    pub fn bytes_for(self, dims: &[u64]) -> Option<u64> {
        let (per, bytes) = self.block();
        let (&row, rest) = dims.split_first()?;
        if !row.is_multiple_of(per) {
            return None;
        }
        rest.iter()
            .try_fold((row / per).checked_mul(bytes)?, |acc, &d| {
                acc.checked_mul(d)
            })
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Type 0.
    U8(u8),
    /// Type 1.
    I8(i8),
    /// Type 2.
    U16(u16),
    /// Type 3.
    I16(i16),
    /// Type 4.
    U32(u32),
    /// Type 5.
    I32(i32),
    /// Type 6.
    F32(f32),
    /// Type 7 (one byte, 0 or 1).
    Bool(bool),
    /// Type 8 (UTF-8).
    String(String),
    /// Type 9: elements of one type (given, so that an empty array keeps it), never
    /// arrays themselves.
    Array(u32, Vec<Value>),
    /// Type 10.
    U64(u64),
    /// Type 11.
    I64(i64),
    /// Type 12.
    F64(f64),
}

impl Value {
    /// The type id.
    pub fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::String(_) => 8,
            Value::Array(..) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }

    /// An array of strings.
    pub fn strings<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Value {
        Value::Array(
            8,
            items.into_iter().map(|s| Value::String(s.into())).collect(),
        )
    }

    /// The value as an unsigned integer, if it is one of the integer types and fits.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is one of the float types.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Value::U8(v) => out.push(*v),
            Value::I8(v) => out.extend(v.to_le_bytes()),
            Value::U16(v) => out.extend(v.to_le_bytes()),
            Value::I16(v) => out.extend(v.to_le_bytes()),
            Value::U32(v) => out.extend(v.to_le_bytes()),
            Value::I32(v) => out.extend(v.to_le_bytes()),
            Value::F32(v) => out.extend(v.to_le_bytes()),
            Value::Bool(v) => out.push(u8::from(*v)),
            Value::String(s) => write_str(out, s),
            Value::Array(t, items) => {
                out.extend(t.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for v in items {
                    v.write(out);
                }
            }
            Value::U64(v) => out.extend(v.to_le_bytes()),
            Value::I64(v) => out.extend(v.to_le_bytes()),
            Value::F64(v) => out.extend(v.to_le_bytes()),
        }
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// One tensor's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Its name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions, innermost (contiguous) first: a `[out, in]` matrix is `[in, out]`.
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Offset of its bytes from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Number of values.
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Bytes of its data (checked when the file was parsed or the tensor added).
    pub fn bytes(&self) -> u64 {
        self.ty.bytes_for(&self.dims).unwrap_or(0)
    }
}

/// A parsed GGUF header: metadata and tensor records; the bytes stay with the caller
/// (a memory map, say) and [`Gguf::data`] slices them.
#[derive(Debug, Clone, PartialEq)]
pub struct Gguf {
    /// The format version (2 or 3).
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    /// Tensor records in file order.
    pub tensors: Vec<TensorInfo>,
    /// The alignment of tensor data.
    pub alignment: u64,
    /// Where the data section starts in the file.
    pub data_start: u64,
}

/// A cursor over the file's bytes whose errors name the file and what was read.
struct Reader<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn fail<T>(&self, reason: impl Into<String>) -> Result<T> {
        Err(Error::Checkpoint {
            path: self.path.to_path_buf(),
            reason: reason.into(),
        })
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let left = (self.bytes.len() - self.pos) as u64;
        if n > left {
            return self.fail(format!(
                "{}: needs {n} bytes at offset {}, the file has {left} left",
                what(),
                self.pos
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        Ok(self.take(N as u64, what)?.try_into().expect("N bytes"))
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let n = self.u64(what)?;
        let raw = self.take(n, what)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => self.fail(format!("{}: not UTF-8: {e}", what())),
        }
    }

    /// A count of items that take at least `min_bytes` each: never more than the rest
    /// of the file holds (a lying count must not allocate).
    fn count(&mut self, min_bytes: u64, what: &dyn Fn() -> String) -> Result<u64> {
        let n = self.u64(what)?;
        let left = (self.bytes.len() - self.pos) as u64;
        if n.saturating_mul(min_bytes) > left {
            return self.fail(format!(
                "{}: {n} items cannot fit in the {left} bytes left",
                what()
            ));
        }
        Ok(n)
    }

    fn value(&mut self, ty: u32, what: &dyn Fn() -> String) -> Result<Value> {
        Ok(match ty {
            0 => Value::U8(self.array::<1>(what)?[0]),
            1 => Value::I8(i8::from_le_bytes(self.array(what)?)),
            2 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return self.fail(format!("{}: bool byte {b} is neither 0 nor 1", what())),
            },
            8 => Value::String(self.string(what)?),
            9 => {
                let elem = self.u32(what)?;
                if elem == 9 {
                    return self.fail(format!("{}: an array of arrays", what()));
                }
                let min = match elem {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    t => return self.fail(format!("{}: unknown element type {t}", what())),
                };
                let n = self.count(min, what)?;
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem, what)?);
                }
                Value::Array(elem, items)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            t => return self.fail(format!("{}: unknown value type {t}", what())),
        })
    }
}

/// `x` rounded up to a multiple of `align` (a power of two).
fn pad(x: u64, align: u64) -> Option<u64> {
    Some(x.checked_add(align - 1)? & !(align - 1))
}

impl Gguf {
    /// Parses the header of a GGUF file's bytes; `path` names the file in errors.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming the file and the key or tensor at fault: not GGUF,
    /// an unsupported version, a truncated or lying header (counts, lengths, sizes or
    /// offsets beyond the file), a duplicate key or tensor name, an unknown value or
    /// tensor type, a row that is not a whole number of blocks, an alignment that is
    /// not a power of two, offsets that skip or overlap.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Gguf> {
        let mut r = Reader {
            path,
            bytes,
            pos: 0,
        };
        let magic = r.array::<4>(&|| "the magic".into())?;
        if &magic != b"GGUF" {
            return r.fail(format!("not a GGUF file (it starts with {magic:02x?})"));
        }
        let version = r.u32(&|| "the version".into())?;
        if !(2..=3).contains(&version) {
            return r.fail(format!(
                "GGUF version {version} (versions 2 and 3 are read)"
            ));
        }
        let n_tensors = r.u64(&|| "the tensor count".into())?;
        // Smallest key: an empty name, a type and a one-byte value.
        let n_kv = r.count(8 + 4 + 1, &|| "the key count".into())?;
        let mut metadata = Vec::with_capacity(n_kv as usize);
        let mut keys = HashSet::new();
        for i in 0..n_kv {
            let key = r.string(&|| format!("key {i}"))?;
            if key.is_empty() {
                return r.fail(format!("key {i}: empty"));
            }
            let what = || format!("key '{key}'");
            if !keys.insert(key.clone()) {
                return r.fail(format!("{}: appears twice", what()));
            }
            let ty = r.u32(&what)?;
            let v = r.value(ty, &what)?;
            metadata.push((key, v));
        }
        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, Value::U32(a))) if a.is_power_of_two() => u64::from(*a),
            Some((_, v)) => {
                return r.fail(format!(
                    "key 'general.alignment': {v:?} (a u32 power of two expected)"
                ))
            }
        };
        // Each record: a name, one dimension, a type and an offset at least.
        let left = (r.bytes.len() - r.pos) as u64;
        if n_tensors.saturating_mul(8 + 4 + 8 + 4 + 8) > left {
            return r.fail(format!(
                "the tensor count {n_tensors} cannot fit in the {left} bytes left"
            ));
        }
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut names = HashSet::new();
        for i in 0..n_tensors {
            let name = r.string(&|| format!("tensor {i}'s name"))?;
            let what = || format!("tensor '{name}'");
            if name.len() > MAX_NAME {
                return r.fail(format!("{}: a name longer than {MAX_NAME} bytes", what()));
            }
            if !names.insert(name.clone()) {
                return r.fail(format!("{}: appears twice", what()));
            }
            let n_dims = r.u32(&what)?;
            if n_dims == 0 || n_dims as usize > MAX_DIMS {
                return r.fail(format!("{}: {n_dims} dimensions (1 to {MAX_DIMS})", what()));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64(&what)?);
            }
            let id = r.u32(&what)?;
            let Some(ty) = GgmlType::from_id(id) else {
                return r.fail(format!(
                    "{}: ggml type {id} is not one this crate reads",
                    what()
                ));
            };
            if ty.bytes_for(&dims).is_none() {
                return r.fail(format!(
                    "{}: dimensions {dims:?} do not fit {ty} (rows of whole {}-value blocks)",
                    what(),
                    ty.block().0
                ));
            }
            let offset = r.u64(&what)?;
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
            });
        }
        let overflow = || "the data section's size overflows".to_string();
        let data_start = pad(r.pos as u64, alignment).ok_or_else(|| Error::Checkpoint {
            path: path.to_path_buf(),
            reason: overflow(),
        })?;
        let mut next = 0u64;
        for t in &tensors {
            if t.offset != next {
                return r.fail(format!(
                    "tensor '{}': at offset {} of the data, where {next} was expected (data in record order, each padded to {alignment})",
                    t.name, t.offset
                ));
            }
            let end = data_start
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(t.bytes()));
            match end {
                Some(e) if e <= bytes.len() as u64 => {}
                _ => {
                    return r.fail(format!(
                    "tensor '{}': {} bytes at offset {} run past the end of the file ({} bytes)",
                    t.name,
                    t.bytes(),
                    data_start.saturating_add(t.offset),
                    bytes.len()
                ))
                }
            }
            next = t
                .offset
                .checked_add(t.bytes())
                .and_then(|e| pad(e, alignment))
                .ok_or_else(|| Error::Checkpoint {
                    path: path.to_path_buf(),
                    reason: overflow(),
                })?;
        }
        Ok(Gguf {
            version,
            metadata,
            tensors,
            alignment,
            data_start,
        })
    }

    /// Reads and parses a file.
    ///
    /// # Errors
    /// [`Error::Io`], or what [`Gguf::parse`] finds.
    pub fn read(path: &Path) -> Result<(Gguf, Vec<u8>)> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: PathBuf::from(path),
            source,
        })?;
        let g = Gguf::parse(&bytes, path)?;
        Ok((g, bytes))
    }

    /// The value of a key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A tensor's record.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A tensor's bytes in `bytes` (the file these records were parsed from).
    ///
    /// # Panics
    /// When `bytes` is shorter than the file the records came from.
    pub fn data<'a>(&self, bytes: &'a [u8], t: &TensorInfo) -> &'a [u8] {
        let start = (self.data_start + t.offset) as usize;
        &bytes[start..start + t.bytes() as usize]
    }
}

/// Writes a GGUF file (version 3): `general.architecture` first, then the keys in the
/// order added, the tensor records and the tensors' bytes in the order added.
#[derive(Debug, Clone)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<(TensorInfo, Vec<u8>)>,
    alignment: u64,
}

impl GgufWriter {
    /// A file for architecture `arch` (`glm4`, `chatglm`, `gptneox`, …).
    pub fn new(arch: &str) -> GgufWriter {
        GgufWriter {
            metadata: vec![("general.architecture".into(), Value::String(arch.into()))],
            tensors: Vec::new(),
            alignment: DEFAULT_ALIGNMENT,
        }
    }

    /// Adds a key. `general.alignment` (a u32 power of two) also sets the alignment.
    ///
    /// # Errors
    /// A key added twice, an empty key, a bad alignment, or an array whose elements
    /// are not all of its type (or are arrays).
    pub fn add(&mut self, key: &str, value: Value) -> Result<()> {
        let bad = |reason: String| Error::Checkpoint {
            path: PathBuf::from("<gguf writer>"),
            reason: format!("key '{key}': {reason}"),
        };
        if key.is_empty() || self.metadata.iter().any(|(k, _)| k == key) {
            return Err(bad("empty or added twice".into()));
        }
        if let Value::Array(t, items) = &value {
            if *t == 9 || items.iter().any(|v| v.type_id() != *t) {
                return Err(bad(format!(
                    "array elements must all be of type {t}, not arrays"
                )));
            }
        }
        if key == "general.alignment" {
            match value {
                Value::U32(a) if a.is_power_of_two() => self.alignment = u64::from(a),
                _ => return Err(bad("a u32 power of two expected".into())),
            }
        }
        self.metadata.push((key.into(), value));
        Ok(())
    }

    /// Adds a tensor: `dims` innermost first, `data` its bytes in type `ty`.
    ///
    /// # Errors
    /// A name added twice or longer than [`MAX_NAME`], no or too many dimensions, rows
    /// that are not whole blocks, or data of the wrong size.
    pub fn add_tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> Result<()> {
        let bad = |reason: String| Error::Checkpoint {
            path: PathBuf::from("<gguf writer>"),
            reason: format!("tensor '{name}': {reason}"),
        };
        if name.len() > MAX_NAME || self.tensors.iter().any(|(t, _)| t.name == name) {
            return Err(bad(format!("added twice or longer than {MAX_NAME} bytes")));
        }
        if dims.is_empty() || dims.len() > MAX_DIMS {
            return Err(bad(format!("{} dimensions (1 to {MAX_DIMS})", dims.len())));
        }
        match ty.bytes_for(dims) {
            Some(n) if n == data.len() as u64 => {}
            Some(n) => {
                return Err(bad(format!(
                    "{} bytes given, {ty} {dims:?} takes {n}",
                    data.len()
                )))
            }
            None => {
                return Err(bad(format!(
                    "dimensions {dims:?} do not fit {ty} (rows of whole {}-value blocks)",
                    ty.block().0
                )))
            }
        }
        self.tensors.push((
            TensorInfo {
                name: name.into(),
                dims: dims.to_vec(),
                ty,
                offset: 0,
            },
            data,
        ));
        Ok(())
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(b"GGUF");
        out.extend(3u32.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            write_str(&mut out, k);
            out.extend(v.type_id().to_le_bytes());
            v.write(&mut out);
        }
        let a = self.alignment;
        let padded = |n: u64| pad(n, a).expect("sizes fit in memory");
        let mut offset = 0u64;
        for (t, data) in &self.tensors {
            write_str(&mut out, &t.name);
            out.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.ty.id().to_le_bytes());
            out.extend(offset.to_le_bytes());
            offset = padded(offset + data.len() as u64);
        }
        out.resize(padded(out.len() as u64) as usize, 0);
        for (_, data) in &self.tensors {
            out.extend(data);
            out.resize(padded(out.len() as u64) as usize, 0);
        }
        out
    }

    /// Writes the file.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn write(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_bytes()).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the fuzzer: a row length near `u64::MAX` overflowed the block count
    /// times the block size before the checked product.
    #[test]
    fn huge_rows_are_none_not_an_overflow() {
        for ty in GgmlType::ALL {
            let (per, bytes) = ty.block();
            let want = (u64::MAX / per).checked_mul(bytes);
            assert_eq!(ty.bytes_for(&[u64::MAX / per * per]), want, "{ty}");
            assert_eq!(
                ty.bytes_for(&[per, u64::MAX]),
                bytes.checked_mul(u64::MAX),
                "{ty}"
            );
        }
        assert_eq!(GgmlType::F32.bytes_for(&[u64::MAX]), None);
        assert_eq!(GgmlType::Q8_0.bytes_for(&[64, 3]), Some(2 * 34 * 3));
    }

    fn sample() -> GgufWriter {
        let mut w = GgufWriter::new("glm4");
        w.add("glm4.block_count", Value::U32(2)).unwrap();
        w.add("glm4.rope.freq_base", Value::F32(10000.0)).unwrap();
        w.add("tokenizer.ggml.tokens", Value::strings(["<s>", "a", "é"]))
            .unwrap();
        w.add(
            "tokenizer.ggml.token_type",
            Value::Array(5, vec![Value::I32(3), Value::I32(1), Value::I32(1)]),
        )
        .unwrap();
        w.add("x.flag", Value::Bool(true)).unwrap();
        w.add("x.big", Value::I64(-5)).unwrap();
        w.add_tensor("a", &[3], GgmlType::F32, vec![0; 12]).unwrap();
        w.add_tensor("b", &[32, 2], GgmlType::Q8_0, vec![7; 68])
            .unwrap();
        w
    }

    #[test]
    fn a_written_file_parses_back() {
        let w = sample();
        let bytes = w.to_bytes();
        let g = Gguf::parse(&bytes, Path::new("x.gguf")).unwrap();
        assert_eq!(g.version, 3);
        assert_eq!(g.metadata, w.metadata);
        assert_eq!(g.tensors.len(), 2);
        assert_eq!(g.tensors[1].offset, 32, "12 bytes padded to 32");
        assert_eq!(g.data_start % 32, 0);
        assert_eq!(g.data(&bytes, &g.tensors[1]), &[7u8; 68][..]);
        assert_eq!(
            bytes.len() as u64,
            g.data_start + 32 + 96,
            "the last tensor padded too"
        );
    }

    #[test]
    fn damaged_files_name_what_is_wrong() {
        let bytes = sample().to_bytes();
        let p = Path::new("m.gguf");
        let err = |b: &[u8]| Gguf::parse(b, p).unwrap_err().to_string();
        assert!(err(b"GGML....").contains("not a GGUF file"));
        // Every cut before the last tensor's last byte is an error, never a panic (its
        // padding may be missing: this reader needs the data only).
        let g = Gguf::parse(&bytes, p).unwrap();
        let end = (g.data_start + 32 + 68) as usize;
        for n in 0..end {
            assert!(Gguf::parse(&bytes[..n], p).is_err(), "{n}");
        }
        assert!(Gguf::parse(&bytes[..end], p).is_ok());
        let e = err(&bytes[..bytes.len() - 100]);
        assert!(
            e.contains("tensor 'b'") && e.contains("past the end"),
            "{e}"
        );
        // A lying key count.
        let mut b = bytes.clone();
        b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(err(&b).contains("cannot fit"), "{}", err(&b));
        // An unknown tensor type: find b's record (name "b", 2 dims).
        let at = bytes
            .windows(9)
            .position(|w| w == [1, 0, 0, 0, 0, 0, 0, 0, b'b'])
            .unwrap();
        let ty_at = at + 9 + 4 + 16;
        let mut b = bytes.clone();
        b[ty_at..ty_at + 4].copy_from_slice(&99u32.to_le_bytes());
        assert!(err(&b).contains("tensor 'b': ggml type 99"), "{}", err(&b));
        // A row that is not whole blocks.
        let mut b = bytes.clone();
        b[at + 13..at + 21].copy_from_slice(&31u64.to_le_bytes());
        assert!(err(&b).contains("whole 32-value blocks"), "{}", err(&b));
        // An offset that skips.
        let mut b = bytes;
        b[ty_at + 4..ty_at + 12].copy_from_slice(&64u64.to_le_bytes());
        assert!(err(&b).contains("where 32 was expected"), "{}", err(&b));
    }

    #[test]
    fn the_writer_refuses_what_readers_would() {
        let mut w = GgufWriter::new("glm4");
        assert!(w.add("general.architecture", Value::U32(1)).is_err());
        assert!(w.add("general.alignment", Value::U32(3)).is_err());
        assert!(w
            .add("x", Value::Array(4, vec![Value::U32(1), Value::I32(1)]))
            .is_err());
        assert!(w
            .add_tensor("t", &[31], GgmlType::Q4_0, vec![0; 18])
            .is_err());
        assert!(w
            .add_tensor("t", &[32], GgmlType::Q4_0, vec![0; 17])
            .is_err());
        assert!(w
            .add_tensor(&"n".repeat(64), &[1], GgmlType::F32, vec![0; 4])
            .is_err());
        w.add("general.alignment", Value::U32(64)).unwrap();
        w.add_tensor("t", &[32], GgmlType::Q4_0, vec![0; 18])
            .unwrap();
        let bytes = w.to_bytes();
        let g = Gguf::parse(&bytes, Path::new("x")).unwrap();
        assert_eq!((g.alignment, g.data_start % 64), (64, 0));
        assert_eq!(bytes.len() as u64, g.data_start + 64);
    }
}
