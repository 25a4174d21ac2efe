//! Python string semantics that the reference tools rely on.
//!
//! sacrebleu and rouge-score are written in Python, so "whitespace" means what
//! `str.split()` splits on and "lowercase" means `str.lower()`.
//! These helpers reproduce exactly those definitions.

/// Is `c` whitespace for Python's `str.split()` / `str.strip()`?
///
/// This is `char::is_whitespace` plus the information separators
/// U+001C..=U+001F, which Python counts as whitespace and Rust does not.
#[inline]
pub fn is_py_whitespace(c: char) -> bool {
    matches!(c, '\u{1c}'..='\u{1f}') || c.is_whitespace()
}

/// Python's `str.split()` with no argument: runs of whitespace separate, no empty pieces.
pub fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_whitespace).filter(|t| !t.is_empty())
}

/// Python's `str.rstrip()`.
#[inline]
pub fn py_rstrip(s: &str) -> &str {
    s.trim_end_matches(is_py_whitespace)
}

/// Python's `str.strip()`.
#[inline]
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_whitespace)
}

/// Python's `' '.join(s.split())`, appended to `out`.
pub fn collapse_whitespace_into(s: &str, out: &mut String) {
    let mut first = true;
    for tok in py_split(s) {
        if !first {
            out.push(' ');
        }
        out.push_str(tok);
        first = false;
    }
}

/// Python's `' '.join(s.split())`.
pub fn collapse_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    collapse_whitespace_into(s, &mut out);
    out
}

/// Python's `str.lower()` (full Unicode mapping, final sigma in context).
#[inline]
pub fn py_lower(s: &str) -> String {
    if s.is_ascii() {
        s.to_ascii_lowercase()
    } else {
        s.to_lowercase()
    }
}

/// Interns strings to dense ids `0, 1, 2, …` in order of first appearance.
#[derive(Debug, Clone, Default)]
pub(crate) struct Vocab {
    ids: rustc_hash::FxHashMap<String, u32>,
}

impl Vocab {
    /// The id of `s`, assigning the next one if it is new.
    pub(crate) fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.ids.len() as u32;
        self.ids.insert(s.to_owned(), id);
        id
    }

    /// The id of `s`, if it was interned.
    #[inline]
    pub(crate) fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    /// How many strings were interned.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }
}

/// Sorts `items` and counts equal neighbours: `(value, count)` in ascending order.
pub(crate) fn count_sorted<T: Ord + Copy>(mut items: Vec<T>) -> Vec<(T, u32)> {
    items.sort_unstable();
    let mut out: Vec<(T, u32)> = Vec::with_capacity(items.len());
    for x in items {
        match out.last_mut() {
            Some((last, c)) if *last == x => *c += 1,
            _ => out.push((x, 1)),
        }
    }
    out
}

/// Replaces the XML entities `&quot;`, `&amp;`, `&lt;`, `&gt;`, one after the other in
/// that order, as sacrebleu's 13a and tercom tokenizers do.
pub(crate) fn unescape_xml(s: &[u8]) -> Vec<u8> {
    use crate::tokenize::replace_bytes;
    let mut b = replace_bytes(s, b"&quot;", b"\"");
    for (from, to) in [(&b"&amp;"[..], &b"&"[..]), (b"&lt;", b"<"), (b"&gt;", b">")] {
        b = replace_bytes(&b, from, to);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_whitespace_includes_separators() {
        assert!(is_py_whitespace('\u{1c}'));
        assert!(is_py_whitespace('\u{a0}'));
        assert!(is_py_whitespace('\u{3000}'));
        assert!(!is_py_whitespace('\u{200b}'));
        assert_eq!(
            py_split("a\u{1f}b  c\u{85}").collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn lower_matches_python() {
        assert_eq!(py_lower("ΣΑΣ"), "σας");
        assert_eq!(py_lower("İ"), "i\u{307}");
    }
}
