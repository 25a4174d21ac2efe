//! What several test files share.

use std::path::{Path, PathBuf};

/// The checkpoint fixtures (`tests/fixtures/*` with a `config.json`), sorted; all
/// seven are expected.
pub(crate) fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("fixtures directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("config.json").exists())
        .collect();
    v.sort();
    assert!(v.len() >= 7, "fixtures missing under {}", root.display());
    v
}
