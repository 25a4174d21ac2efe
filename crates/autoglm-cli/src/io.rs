//! Reading line-aligned inputs: plain text files (one segment per line) and JSONL files
//! whose lines are arrays of references. Errors name the file and the line.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// An input problem, with the file and 1-based line where it was found.
#[derive(Debug, Error)]
pub enum InputError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line is not valid UTF-8.
    #[error("{path}:{line}: invalid UTF-8 at byte {col} of the line")]
    Utf8 {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// 1-based byte offset in the line.
        col: usize,
    },
    /// A JSONL line is not an array of strings.
    #[error("{path}:{line}: expected a JSON array of reference strings: {reason}")]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        reason: String,
    },
    /// A JSONL line holds an empty array.
    #[error("{path}:{line}: no reference on this line (empty array)")]
    NoReference {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// Two inputs do not have the same number of lines.
    #[error("{a} has {na} lines but {b} has {nb}")]
    LineCount {
        /// First file.
        a: PathBuf,
        /// Its line count.
        na: usize,
        /// Second file.
        b: PathBuf,
        /// Its line count.
        nb: usize,
    },
}

/// Splits `bytes` into lines at `\n`; a final newline does not start an extra line,
/// and empty lines are kept.
///
/// # Errors
/// [`InputError::Utf8`] naming the line of the first invalid byte.
pub fn split_lines(path: &Path, bytes: &[u8]) -> Result<Vec<String>, InputError> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    body.split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| {
            String::from_utf8(l.to_vec()).map_err(|e| InputError::Utf8 {
                path: path.to_owned(),
                line: i + 1,
                col: e.utf8_error().valid_up_to() + 1,
            })
        })
        .collect()
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, InputError> {
    let r = if path == Path::new("-") {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut v).map(|_| v)
    } else {
        std::fs::read(path)
    };
    r.map_err(|source| InputError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Reads a text file (or `-` for standard input) into lines.
///
/// # Errors
/// Unreadable file or invalid UTF-8.
pub fn read_lines(path: &Path) -> Result<Vec<String>, InputError> {
    split_lines(path, &read_bytes(path)?)
}

/// Parses JSONL references: each line a JSON array of strings (at least one).
///
/// # Errors
/// Invalid UTF-8, invalid JSON, a non-array or non-string element, or an empty array.
pub fn parse_refs_jsonl(path: &Path, bytes: &[u8]) -> Result<Vec<Vec<String>>, InputError> {
    split_lines(path, bytes)?
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let v: Vec<String> = serde_json::from_str(l).map_err(|e| InputError::Json {
                path: path.to_owned(),
                line: i + 1,
                reason: e.to_string(),
            })?;
            if v.is_empty() {
                return Err(InputError::NoReference {
                    path: path.to_owned(),
                    line: i + 1,
                });
            }
            Ok(v)
        })
        .collect()
}

/// Reads references from JSONL (`refs_jsonl`) or from line-aligned files, one per
/// reference (`ref_files`, all with the same number of lines), into one list per line.
///
/// # Errors
/// Any [`InputError`].
pub fn read_refs(
    ref_files: &[PathBuf],
    refs_jsonl: Option<&Path>,
) -> Result<Vec<Vec<String>>, InputError> {
    let mut per_line: Vec<Vec<String>> = match refs_jsonl {
        Some(p) => parse_refs_jsonl(p, &read_bytes(p)?)?,
        None => Vec::new(),
    };
    let mut first: Option<(PathBuf, usize)> = refs_jsonl.map(|p| (p.to_owned(), per_line.len()));
    for f in ref_files {
        let lines = read_lines(f)?;
        match &first {
            None => {
                first = Some((f.clone(), lines.len()));
                per_line = lines.into_iter().map(|l| vec![l]).collect();
            }
            Some((a, na)) => {
                if *na != lines.len() {
                    return Err(InputError::LineCount {
                        a: a.clone(),
                        na: *na,
                        b: f.clone(),
                        nb: lines.len(),
                    });
                }
                for (v, l) in per_line.iter_mut().zip(lines) {
                    v.push(l);
                }
            }
        }
    }
    Ok(per_line)
}

/// Checks that hypotheses and references have the same number of lines.
///
/// # Errors
/// [`InputError::LineCount`] naming both inputs.
pub fn check_aligned(
    hyp: &Path,
    n_hyp: usize,
    refs: &Path,
    n_refs: usize,
) -> Result<(), InputError> {
    if n_hyp != n_refs {
        return Err(InputError::LineCount {
            a: hyp.to_owned(),
            na: n_hyp,
            b: refs.to_owned(),
            nb: n_refs,
        });
    }
    Ok(())
}

/// Fuzz entry point: input reading never panics and round-trips line structure.
#[doc(hidden)]
pub fn fuzz_check_input(data: &[u8]) {
    let p = Path::new("fuzz");
    if let Ok(lines) = split_lines(p, data) {
        let joined = lines.join("\n");
        let expect = data.strip_suffix(b"\n").unwrap_or(data);
        assert_eq!(joined.as_bytes(), expect);
    }
    if let Ok(refs) = parse_refs_jsonl(p, data) {
        assert!(refs.iter().all(|r| !r.is_empty()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_newline_does_not_add_a_line() {
        let p = Path::new("x");
        assert_eq!(split_lines(p, b"a\n\nb\n").unwrap(), ["a", "", "b"]);
        assert_eq!(split_lines(p, b"a\nb").unwrap(), ["a", "b"]);
        assert_eq!(split_lines(p, b"\n").unwrap(), [""]);
        assert!(split_lines(p, b"").unwrap().is_empty());
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = split_lines(Path::new("h.txt"), b"ok\nbad \xff\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "h.txt:2: invalid UTF-8 at byte 5 of the line"
        );
        let e = parse_refs_jsonl(Path::new("r.jsonl"), b"[\"a\"]\n[]\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "r.jsonl:2: no reference on this line (empty array)"
        );
        let e = parse_refs_jsonl(Path::new("r.jsonl"), b"{\"a\": 1}\n").unwrap_err();
        assert!(e
            .to_string()
            .starts_with("r.jsonl:1: expected a JSON array"));
    }
}
