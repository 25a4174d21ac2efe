//! Hugging Face checkpoints: `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`, memory-mapped; tensors read by name into f32.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use autoglm_ops::quant::{BlockFormat, SharedBytes, BLOCK};
use autoglm_ops::{Data, Storage, Tensor};
use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata};
use safetensors::SafeTensors;

use crate::error::{Error, Result};

/// A safetensors file's bytes: mapped, or in memory.
enum Bytes {
    Map(Mmap),
    Owned(Vec<u8>),
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Map(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// One safetensors file with its parsed header.
struct Shard {
    path: PathBuf,
    /// Shared with the matrices that read their rows in place.
    map: Arc<Bytes>,
    /// Bytes before the data (8 + header length).
    data_start: usize,
    meta: Metadata,
}

/// The tensors of a checkpoint directory, by name.
pub struct Checkpoint {
    dir: PathBuf,
    shards: Vec<Shard>,
    /// Tensor name → shard.
    index: BTreeMap<String, usize>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("dir", &self.dir)
            .field("shards", &self.shards.len())
            .field("tensors", &self.index.len())
            .finish()
    }
}

fn ckpt_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl Shard {
    fn open(path: &Path) -> Result<Shard> {
        let file = File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: the file is mapped read-only; like every mmap-based loader we rely on
        // it not being truncated while mapped (a checkpoint is not written in place).
        let map = unsafe { Mmap::map(&file) }.map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Shard::from_bytes(path, Bytes::Map(map))
    }

    fn from_bytes(path: &Path, map: Bytes) -> Result<Shard> {
        let (n, meta) = SafeTensors::read_metadata(&map)
            .map_err(|e| ckpt_err(path, format!("not a valid safetensors file: {e}")))?;
        Ok(Shard {
            path: path.to_path_buf(),
            map: Arc::new(map),
            data_start: 8 + n,
            meta,
        })
    }
}

impl Checkpoint {
    /// Opens `dir/model.safetensors`, or the shards that
    /// `dir/model.safetensors.index.json` lists.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming the file: no weights file, a malformed index, a
    /// missing or corrupt shard, a tensor the index places in a shard that lacks it.
    pub fn open(dir: &Path) -> Result<Checkpoint> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        let mut shards = Vec::new();
        let mut index = BTreeMap::new();
        if index_path.exists() {
            let text = std::fs::read_to_string(&index_path).map_err(|source| Error::Io {
                path: index_path.clone(),
                source,
            })?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| ckpt_err(&index_path, format!("malformed index: {e}")))?;
            let map = v
                .get("weight_map")
                .and_then(serde_json::Value::as_object)
                .ok_or_else(|| ckpt_err(&index_path, "no 'weight_map' object"))?;
            let mut by_file: HashMap<String, usize> = HashMap::new();
            for (name, file) in map {
                let file = file.as_str().ok_or_else(|| {
                    ckpt_err(
                        &index_path,
                        format!("weight_map['{name}'] is not a file name"),
                    )
                })?;
                if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                    return Err(ckpt_err(
                        &index_path,
                        format!("weight_map['{name}'] = '{file}' is not a file in the directory"),
                    ));
                }
                let i = match by_file.get(file) {
                    Some(&i) => i,
                    None => {
                        shards.push(Shard::open(&dir.join(file))?);
                        by_file.insert(file.to_owned(), shards.len() - 1);
                        shards.len() - 1
                    }
                };
                if shards[i].meta.info(name).is_none() {
                    return Err(ckpt_err(
                        &shards[i].path,
                        format!("the index places tensor '{name}' here, but the file lacks it"),
                    ));
                }
                index.insert(name.clone(), i);
            }
        } else if single.exists() {
            let shard = Shard::open(&single)?;
            for name in shard.meta.tensors().keys() {
                index.insert(name.clone(), 0);
            }
            shards.push(shard);
        } else {
            return Err(ckpt_err(
                dir,
                "no model.safetensors or model.safetensors.index.json in this directory",
            ));
        }
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            shards,
            index,
        })
    }

    /// A checkpoint of one safetensors file held in memory (`name` stands for its path
    /// in errors).
    ///
    /// # Errors
    /// [`Error::Checkpoint`] if the bytes are not a valid safetensors file.
    pub fn from_bytes(name: &Path, bytes: Vec<u8>) -> Result<Checkpoint> {
        let shard = Shard::from_bytes(name, Bytes::Owned(bytes))?;
        let index = shard
            .meta
            .tensors()
            .keys()
            .map(|k| (k.clone(), 0))
            .collect();
        Ok(Checkpoint {
            dir: name.to_path_buf(),
            shards: vec![shard],
            index,
        })
    }

    /// A tensor's shape as stored.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let s = &self.shards[*self.index.get(name)?];
        s.meta.info(name).map(|i| i.shape.clone())
    }

    /// The tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// Whether the checkpoint has a tensor of this name.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The value of a key in the first file's `__metadata__`.
    fn metadata(&self, key: &str) -> Option<&str> {
        self.shards
            .first()?
            .meta
            .metadata()
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    /// How the checkpoint stores its linear weights: the body storage a quantized
    /// checkpoint names ([`crate::save_pretrained_as`]), else f16 or bf16 where every
    /// 2-D tensor has that type, else f32.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] for a storage name this version does not know.
    pub fn storage(&self) -> Result<Storage> {
        if let Some(s) = self.metadata(STORAGE_KEY) {
            return s
                .parse()
                .map_err(|e| ckpt_err(&self.dir, format!("'{STORAGE_KEY}': {e}")));
        }
        let types: std::collections::BTreeSet<String> = self
            .names()
            .filter(|n| self.shape(n).is_some_and(|s| s.len() == 2))
            .filter_map(|n| self.dtype(n))
            .collect();
        Ok(
            match types.iter().map(String::as_str).collect::<Vec<_>>()[..] {
                ["F16"] => Storage::F16,
                ["BF16"] => Storage::Bf16,
                _ => Storage::F32,
            },
        )
    }

    /// The block format of a `u8` tensor of a file whose `__metadata__` names a block
    /// storage: the one whose bytes per row its second dimension is (`Q8_0` takes 34
    /// per 32 values, `Q4_0` 18, so the two never agree); `None` for other tensors.
    fn block_format(
        &self,
        shard: &Shard,
        name: &str,
        info: &safetensors::tensor::TensorInfo,
        shape: &[usize],
    ) -> Result<Option<BlockFormat>> {
        if info.dtype != Dtype::U8 {
            return Ok(None);
        }
        let key = shard
            .meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(STORAGE_KEY));
        let storage: Option<Storage> = key.and_then(|s| s.parse().ok());
        if storage.and_then(Storage::block_format).is_none() {
            return Err(ckpt_err(
                &shard.path,
                format!(
                    "tensor '{name}' is u8, which only a block-quantized file holds ('{STORAGE_KEY}' is {key:?})"
                ),
            ));
        }
        let [rows, cols] = shape[..] else {
            return Err(ckpt_err(
                &shard.path,
                format!(
                    "tensor '{name}' is stored as blocks, but the config implies a {}-dimensional tensor",
                    shape.len()
                ),
            ));
        };
        let format = [BlockFormat::Q8_0, BlockFormat::Q4_0]
            .into_iter()
            .find(|f| info.shape == [rows, f.bytes_for(cols)] && cols.is_multiple_of(BLOCK));
        format.map(Some).ok_or_else(|| {
            ckpt_err(
                &shard.path,
                format!(
                    "tensor '{name}' ({shape:?} as blocks) should be u8 [{rows}, {}] (q8_0) or [{rows}, {}] (q4_0) with {cols} a multiple of {BLOCK}, but it is {:?}",
                    BlockFormat::Q8_0.bytes_for(cols),
                    BlockFormat::Q4_0.bytes_for(cols),
                    info.shape
                ),
            )
        })
    }

    /// The element type of a tensor (`"F32"`, `"BF16"`…).
    pub fn dtype(&self, name: &str) -> Option<String> {
        let s = &self.shards[*self.index.get(name)?];
        s.meta.info(name).map(|i| format!("{:?}", i.dtype))
    }

    /// Reads a tensor as f32 (f16 and bf16 widened exactly, blocks expanded), checking
    /// its shape.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming the file and tensor: missing, of another shape
    /// than `shape`, or of an element type other than f32/f16/bf16 (or `u8` blocks
    /// in a block-quantized file).
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let (raw, storage) = self.raw(name, shape)?;
        let n: usize = shape.iter().product();
        let mut data = vec![0.0f32; n];
        decode(&raw, storage, &mut data)
            .map_err(|e| ckpt_err(&self.dir, format!("tensor '{name}': {e}")))?;
        Tensor::new(shape, Data::F32(data))
            .map_err(|e| ckpt_err(&self.dir, format!("tensor '{name}': {e}")))
    }

    /// A tensor's bytes as stored, read in place (shared with the file's mapping), and
    /// how they store its values: f32, f16, bf16, or rows of q8_0/q4_0 blocks.
    ///
    /// # Errors
    /// As [`Checkpoint::tensor`].
    pub(crate) fn raw(&self, name: &str, shape: &[usize]) -> Result<(SharedBytes, Storage)> {
        let &i = self
            .index
            .get(name)
            .ok_or_else(|| ckpt_err(&self.dir, format!("tensor '{name}' is missing")))?;
        let s = &self.shards[i];
        let info = s
            .meta
            .info(name)
            .ok_or_else(|| ckpt_err(&s.path, format!("tensor '{name}' is missing")))?;
        let storage = match self.block_format(s, name, info, shape)? {
            Some(BlockFormat::Q8_0) => Storage::Q8_0,
            Some(_) => Storage::Q4_0,
            None if info.shape != shape => {
                return Err(ckpt_err(
                    &s.path,
                    format!(
                        "tensor '{name}' has shape {:?}, the config implies {shape:?}",
                        info.shape
                    ),
                ))
            }
            None => match info.dtype {
                Dtype::F32 => Storage::F32,
                Dtype::F16 => Storage::F16,
                Dtype::BF16 => Storage::Bf16,
                other => {
                    return Err(ckpt_err(
                        &s.path,
                        format!(
                        "tensor '{name}' has element type {other:?} (f32, f16 or bf16 expected)"
                    ),
                    ))
                }
            },
        };
        let (a, b) = info.data_offsets;
        let owner: Arc<dyn AsRef<[u8]> + Send + Sync> = s.map.clone();
        let bytes = SharedBytes::new(owner, s.data_start + a..s.data_start + b)
            .map_err(|e| ckpt_err(&s.path, format!("tensor '{name}': {e}")))?;
        Ok((bytes, storage))
    }

    /// The file a tensor is in and its bytes' offset there (`None` for a checkpoint
    /// held in memory).
    pub(crate) fn location(&self, name: &str) -> Option<(&Path, u64)> {
        let s = &self.shards[*self.index.get(name)?];
        if !matches!(*s.map, Bytes::Map(_)) {
            return None;
        }
        let info = s.meta.info(name)?;
        Some((&s.path, (s.data_start + info.data_offsets.0) as u64))
    }
}

/// Values stored as `storage` in `raw` (whole rows of `out.len() / rows` values for the
/// block formats), widened or expanded into `out`.
///
/// # Errors
/// [`autoglm_ops::Error::Shape`] when the sizes disagree.
pub(crate) fn decode(raw: &[u8], storage: Storage, out: &mut [f32]) -> autoglm_ops::Result<()> {
    let half = |c: &[u8]| u16::from_le_bytes([c[0], c[1]]);
    if let Some(f) = storage.block_format() {
        return f.dequantize(raw, out);
    }
    if raw.len() != storage.bytes_for(out.len()) {
        return Err(autoglm_ops::Error::Shape(format!(
            "{} bytes of {storage} for {} values",
            raw.len(),
            out.len()
        )));
    }
    match storage {
        Storage::F32 => {
            for (x, c) in out.iter_mut().zip(raw.chunks_exact(4)) {
                *x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        Storage::F16 => {
            for (x, c) in out.iter_mut().zip(raw.chunks_exact(2)) {
                *x = f16::from_bits(half(c)).to_f32();
            }
        }
        _ => {
            for (x, c) in out.iter_mut().zip(raw.chunks_exact(2)) {
                *x = bf16::from_bits(half(c)).to_f32();
            }
        }
    }
    Ok(())
}

/// The `__metadata__` key naming a block-quantized checkpoint's body storage (its
/// only key, so the header's bytes do not depend on a hash map's order).
pub(crate) const STORAGE_KEY: &str = "autoglm.storage";
