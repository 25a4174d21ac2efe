//! Optuna's artifacts: files attached to a trial, kept in an artifact store and
//! listed in the journal, as `optuna.artifacts.upload_artifact` keeps them.
//!
//! [`FileSystemArtifactStore`] is Optuna's `FileSystemArtifactStore` layout: one
//! file per artifact, named by its id (a UUID), in one directory (which may be a
//! shared mount). The trial's system attribute `artifacts:{id}` holds the
//! artifact's [`ArtifactMeta`] as the JSON text Python's `json.dumps` gives, so
//! `optuna.artifacts.get_all_artifact_meta` and optuna-dashboard list it and
//! `optuna.artifacts.download_artifact` fetches it.
//!
//! Unlike Optuna, the file is written before its attribute, under a temporary
//! name renamed into place: a reader never finds an attribute whose file is
//! missing or partly written.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::pyjson::{PyJson, Separators};
use crate::{Error, Result};

/// The prefix of a trial system attribute that lists an artifact.
pub const ARTIFACTS_ATTR_PREFIX: &str = "artifacts:";

/// Optuna's `DEFAULT_MIME_TYPE`.
pub const DEFAULT_MIME_TYPE: &str = "application/octet-stream";

/// What the journal records of an artifact (Optuna's `ArtifactMeta`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactMeta {
    /// Its id: the file's name in the store.
    pub artifact_id: String,
    /// The uploaded file's base name.
    pub filename: String,
    /// Its MIME type.
    pub mimetype: String,
    /// Its content encoding (`gzip`, say), if any.
    pub encoding: Option<String>,
}

impl ArtifactMeta {
    /// The attribute value: `json.dumps(dataclasses.asdict(meta))`.
    pub fn to_attr(&self) -> PyJson {
        let text = PyJson::Dict(vec![
            ("artifact_id".into(), PyJson::Str(self.artifact_id.clone())),
            ("filename".into(), PyJson::Str(self.filename.clone())),
            ("mimetype".into(), PyJson::Str(self.mimetype.clone())),
            (
                "encoding".into(),
                self.encoding.clone().map_or(PyJson::Null, PyJson::Str),
            ),
        ])
        .dumps(Separators::Default);
        PyJson::Str(text)
    }

    /// The metadata an attribute value holds.
    ///
    /// # Errors
    /// [`Error::Storage`] when it is not a JSON text of Optuna's `ArtifactMeta`.
    pub fn from_attr(value: &PyJson) -> Result<ArtifactMeta> {
        let bad = |why: &str| Error::Storage {
            reason: format!("an artifact attribute {why}"),
        };
        let PyJson::Str(text) = value else {
            return Err(bad("is not a string"));
        };
        let v = PyJson::parse(text).map_err(|e| bad(&format!("is not JSON: {e}")))?;
        let field = |k: &str| v.get(k).and_then(PyJson::as_str).map(str::to_owned);
        Ok(ArtifactMeta {
            artifact_id: field("artifact_id").ok_or_else(|| bad("has no 'artifact_id'"))?,
            filename: field("filename").ok_or_else(|| bad("has no 'filename'"))?,
            mimetype: field("mimetype").unwrap_or_else(|| DEFAULT_MIME_TYPE.to_owned()),
            encoding: field("encoding"),
        })
    }
}

/// The MIME type and encoding Python's `mimetypes.guess_type` gives a file name,
/// for the names this workspace uploads (`.json`, `.txt`, `.jsonl`, `.gz`);
/// anything else is [`DEFAULT_MIME_TYPE`], as Optuna falls back to it.
pub fn guess_type(filename: &str) -> (String, Option<String>) {
    let (stem, encoding) = match filename.strip_suffix(".gz") {
        Some(stem) => (stem, Some("gzip".to_owned())),
        None => (filename, None),
    };
    let ext = Path::new(stem)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let mime = match ext.as_deref() {
        Some("json") => "application/json",
        Some("txt") => "text/plain",
        Some("html") => "text/html",
        Some("png") => "image/png",
        Some("csv") => "text/csv",
        _ => DEFAULT_MIME_TYPE,
    };
    (mime.to_owned(), encoding)
}

/// Optuna's `FileSystemArtifactStore`: artifacts as files named by their ids in
/// one directory.
#[derive(Debug, Clone)]
pub struct FileSystemArtifactStore {
    base: PathBuf,
}

impl FileSystemArtifactStore {
    /// The store in directory `base`, created if missing.
    ///
    /// # Errors
    /// [`Error::Io`] when the directory cannot be created.
    pub fn new(base: &Path) -> Result<FileSystemArtifactStore> {
        std::fs::create_dir_all(base).map_err(|source| Error::Io {
            path: base.to_owned(),
            source,
        })?;
        Ok(FileSystemArtifactStore {
            base: base.to_owned(),
        })
    }

    /// The store's directory.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// Where artifact `id` is kept.
    pub fn path(&self, id: &str) -> PathBuf {
        self.base.join(id)
    }

    /// Writes artifact `id` from `body`, all or nothing (a temporary file renamed
    /// into place).
    ///
    /// # Errors
    /// [`Error::Storage`] for an id that is not a plain file name; [`Error::Io`].
    pub fn write(&self, id: &str, body: &mut dyn Read) -> Result<()> {
        check_id(id)?;
        let path = self.path(id);
        let tmp = self
            .base
            .join(format!(".{id}.{}.partial", super::file::unique()));
        let io = |p: &Path| {
            let p = p.to_owned();
            move |source| Error::Io { path: p, source }
        };
        let r = (|| {
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            std::io::copy(body, &mut f).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io(&path))
        })();
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r
    }

    /// Opens artifact `id` for reading.
    ///
    /// # Errors
    /// [`Error::Storage`] when the store has no such artifact; [`Error::Io`].
    pub fn open(&self, id: &str) -> Result<std::fs::File> {
        check_id(id)?;
        let path = self.path(id);
        std::fs::File::open(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                Error::Storage {
                    reason: format!("artifact {id} is not in {}", self.base.display()),
                }
            } else {
                Error::Io { path, source }
            }
        })
    }

    /// Copies artifact `id` to `dest` (Optuna's `download_artifact`), all or
    /// nothing.
    ///
    /// # Errors
    /// As [`FileSystemArtifactStore::open`]; [`Error::Io`] writing `dest`.
    pub fn download(&self, id: &str, dest: &Path) -> Result<()> {
        let mut f = self.open(id)?;
        let tmp = dest.with_extension(format!("{}.partial", super::file::unique()));
        let io = |p: &Path| {
            let p = p.to_owned();
            move |source| Error::Io { path: p, source }
        };
        let r = (|| {
            let mut out = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            std::io::copy(&mut f, &mut out).map_err(io(&tmp))?;
            std::fs::rename(&tmp, dest).map_err(io(dest))
        })();
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r
    }

    /// Removes artifact `id` (Optuna's `remove`).
    ///
    /// # Errors
    /// As [`FileSystemArtifactStore::open`].
    pub fn remove(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let path = self.path(id);
        std::fs::remove_file(&path).map_err(|source| Error::Io { path, source })
    }
}

/// An artifact id must name a file in the store, nothing above or below it.
fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.starts_with('.') || id.contains(['/', '\\', '\0']) {
        return Err(Error::Storage {
            reason: format!("'{id}' is not an artifact id"),
        });
    }
    Ok(())
}

/// A new artifact id: a random UUID, as Optuna's `str(uuid.uuid4())`.
pub fn new_artifact_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_written_as_python_dumps_it_and_read_back() {
        let meta = ArtifactMeta {
            artifact_id: "0b6f5d2e-1c43-4a4e-9d7c-3f3b1f0c2a11".into(),
            filename: "model.safetensors".into(),
            mimetype: DEFAULT_MIME_TYPE.into(),
            encoding: None,
        };
        let attr = meta.to_attr();
        assert_eq!(
            attr,
            PyJson::Str(
                r#"{"artifact_id": "0b6f5d2e-1c43-4a4e-9d7c-3f3b1f0c2a11", "filename": "model.safetensors", "mimetype": "application/octet-stream", "encoding": null}"#
                    .into()
            )
        );
        assert_eq!(ArtifactMeta::from_attr(&attr).unwrap(), meta);
        assert!(ArtifactMeta::from_attr(&PyJson::Int(3)).is_err());
        assert!(ArtifactMeta::from_attr(&PyJson::Str("{".into())).is_err());
    }

    #[test]
    fn the_store_keeps_one_file_per_id_and_refuses_paths() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileSystemArtifactStore::new(&dir.path().join("a")).unwrap();
        let id = new_artifact_id();
        assert_eq!(id.len(), 36);
        store.write(&id, &mut &b"weights"[..]).unwrap();
        assert_eq!(std::fs::read(store.path(&id)).unwrap(), b"weights");
        let names: Vec<_> = std::fs::read_dir(store.base()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
        let dest = dir.path().join("copy.bin");
        store.download(&id, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"weights");
        for bad in ["../x", "", ".hidden", "a/b"] {
            assert!(store.write(bad, &mut &b""[..]).is_err(), "{bad}");
        }
        assert!(matches!(
            store.open(&new_artifact_id()),
            Err(Error::Storage { .. })
        ));
        store.remove(&id).unwrap();
        assert!(store.open(&id).is_err());
    }

    #[test]
    fn types_are_guessed_as_python_guesses_them() {
        assert_eq!(guess_type("config.json").0, "application/json");
        assert_eq!(guess_type("model.safetensors").0, DEFAULT_MIME_TYPE);
        assert_eq!(
            guess_type("outputs.txt.gz"),
            ("text/plain".to_owned(), Some("gzip".to_owned()))
        );
    }
}
