//! Shared loading code of the end-to-end benchmark programs.

use std::path::Path;

use anyhow::{Context, Result};

/// Python's `read_text().split("\n")[:-1]`: the lines of a file that ends with a newline.
///
/// # Errors
/// Unreadable or non-UTF-8 file.
pub fn read_lines(p: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(p).with_context(|| p.display().to_string())?;
    let mut v: Vec<String> = text.split('\n').map(str::to_owned).collect();
    v.pop();
    Ok(v)
}

/// E2E references: one JSON array per line.
///
/// # Errors
/// Unreadable file or a line that is not an array of strings.
pub fn read_refs_jsonl(p: &Path) -> Result<Vec<Vec<String>>> {
    read_lines(p)?
        .iter()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{}", p.display(), i + 1)))
        .collect()
}
