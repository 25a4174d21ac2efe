//! JSON as Python's `json` module reads and writes it, which is what Optuna's
//! journal holds: integers and floats kept apart, objects in insertion order, the
//! bare tokens `NaN`, `Infinity` and `-Infinity` for non-finite floats (which
//! `serde_json` rejects), and on output `json.dumps`' exact bytes — `ensure_ascii`
//! escapes with lowercase hex, Python's shortest float `repr` (`1e-05`, `1e+16`,
//! `3.0`), compact (`,` `:`) or default (`, ` `: `) separators.
//!
//! Reading goes through `serde_json`: a first pass marks every string literal (one
//! character prepended) and turns the three bare tokens into marked strings of their
//! own, so that no string in the data can be taken for a non-finite float.

use std::fmt::Write as _;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value as Python's `json` holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum PyJson {
    /// `null` (`None`).
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer (Python `int`; beyond `i64` it is read as a float).
    Int(i64),
    /// A float, NaN and ±∞ included.
    Float(f64),
    /// A string.
    Str(String),
    /// An array.
    List(Vec<PyJson>),
    /// An object, keys in insertion order (a repeated key keeps its first place and
    /// its last value, as a Python `dict` does).
    Dict(Vec<(String, PyJson)>),
}

/// Separators of `json.dumps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Separators {
    /// `(",", ":")`: the journal file's lines.
    Compact,
    /// `(", ", ": ")`: the default (distributions nested in a line, Redis values).
    Default,
}

impl PyJson {
    /// Parses one JSON text as Python's `json.loads` does (bare `NaN`, `Infinity`,
    /// `-Infinity` accepted).
    ///
    /// # Errors
    /// A message saying what is wrong and where.
    pub fn parse(text: &str) -> Result<PyJson, String> {
        let marked = mark(text)?;
        let mut de = serde_json::Deserializer::from_str(&marked);
        let v = de
            .deserialize_any(MarkedVisitor)
            .map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())?;
        Ok(v)
    }

    /// `json.dumps(self, separators=…)` with Python's defaults otherwise.
    pub fn dumps(&self, sep: Separators) -> String {
        let mut out = String::new();
        self.write(&mut out, sep);
        out
    }

    /// Appends [`PyJson::dumps`]' text to `out`.
    pub fn write(&self, out: &mut String, sep: Separators) {
        let (item, colon) = match sep {
            Separators::Compact => (",", ":"),
            Separators::Default => (", ", ": "),
        };
        match self {
            PyJson::Null => out.push_str("null"),
            PyJson::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            PyJson::Int(i) => {
                let _ = write!(out, "{i}");
            }
            PyJson::Float(x) => py_float(*x, out),
            PyJson::Str(s) => py_str(s, out),
            PyJson::List(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(item);
                    }
                    v.write(out, sep);
                }
                out.push(']');
            }
            PyJson::Dict(items) => {
                out.push('{');
                for (i, (k, v)) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(item);
                    }
                    py_str(k, out);
                    out.push_str(colon);
                    v.write(out, sep);
                }
                out.push('}');
            }
        }
    }

    /// The value of `key` in an object.
    pub fn get(&self, key: &str) -> Option<&PyJson> {
        match self {
            PyJson::Dict(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A number as a float (Python's `float(x)` of an `int` or `float`).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            PyJson::Int(i) => Some(i as f64),
            PyJson::Float(x) => Some(x),
            _ => None,
        }
    }

    /// An integer, or a float with an integral value (as Python's `int(x)` of it).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            PyJson::Int(i) => Some(i),
            PyJson::Float(x) if x.fract() == 0.0 && x.abs() < 9.2e18 => Some(x as i64),
            _ => None,
        }
    }

    /// A string's text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            PyJson::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An object's entries.
    pub fn as_dict(&self) -> Option<&[(String, PyJson)]> {
        match self {
            PyJson::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The value as `serde_json` holds it, where it can (`None` for NaN or ±∞
    /// anywhere inside).
    pub fn to_serde(&self) -> Option<serde_json::Value> {
        Some(match self {
            PyJson::Null => serde_json::Value::Null,
            PyJson::Bool(b) => serde_json::Value::Bool(*b),
            PyJson::Int(i) => serde_json::Value::from(*i),
            PyJson::Float(x) => serde_json::Value::Number(serde_json::Number::from_f64(*x)?),
            PyJson::Str(s) => serde_json::Value::String(s.clone()),
            PyJson::List(items) => {
                serde_json::Value::Array(items.iter().map(PyJson::to_serde).collect::<Option<_>>()?)
            }
            PyJson::Dict(items) => serde_json::Value::Object(
                items
                    .iter()
                    .map(|(k, v)| Some((k.clone(), v.to_serde()?)))
                    .collect::<Option<_>>()?,
            ),
        })
    }

    /// A `serde_json` value as Python would hold it (integers stay integers, object
    /// keys in `serde_json`'s order).
    pub fn from_serde(v: &serde_json::Value) -> PyJson {
        match v {
            serde_json::Value::Null => PyJson::Null,
            serde_json::Value::Bool(b) => PyJson::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => PyJson::Int(i),
                None => PyJson::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => PyJson::Str(s.clone()),
            serde_json::Value::Array(a) => PyJson::List(a.iter().map(PyJson::from_serde).collect()),
            serde_json::Value::Object(o) => PyJson::Dict(
                o.iter()
                    .map(|(k, v)| (k.clone(), PyJson::from_serde(v)))
                    .collect(),
            ),
        }
    }
}

/// Python's `repr` of a float, as `json.dumps` writes it: the shortest digits that
/// read back to the same value, in fixed notation when the decimal exponent is in
/// `-4..16` (with at least one digit after the point), otherwise `d.ddde±XX`.
fn py_float(x: f64, out: &mut String) {
    if x.is_nan() {
        out.push_str("NaN");
        return;
    }
    if x.is_infinite() {
        out.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `-1.2345e-7`.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` has an exponent");
    let exp: i32 = exp.parse().expect("an integer exponent");
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if neg {
        out.push('-');
    }
    if !(-4..16).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', int_len - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(&digits);
    }
}

/// A string as `json.dumps` writes it with `ensure_ascii`: the short escapes for `"`
/// `\` and `\n \r \t \b \f`, everything else outside space…`~` as `\uXXXX` (lowercase
/// hex; UTF-16 surrogate pairs above U+FFFF).
fn py_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// The text with every string literal's content prefixed by `s` and the bare
/// non-finite tokens replaced by the strings `"n"`, `"i+"`, `"i-"`.
fn mark(text: &str) -> Result<String, String> {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len() + text.len() / 8 + 8);
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        let token: Option<(&str, usize)> = match b[i] {
            b'"' => {
                out.push_str(&text[copied..i]);
                out.push_str("\"s");
                i += 1;
                let start = i;
                loop {
                    match b.get(i) {
                        None => return Err(format!("unterminated string at byte {start}")),
                        Some(b'\\') => i += 2,
                        Some(b'"') => break,
                        Some(_) => i += 1,
                    }
                }
                out.push_str(&text[start..i]);
                out.push('"');
                i += 1;
                copied = i;
                continue;
            }
            b'N' if text[i..].starts_with("NaN") => Some(("\"n\"", 3)),
            b'I' if text[i..].starts_with("Infinity") => Some(("\"i+\"", 8)),
            b'-' if text[i..].starts_with("-Infinity") => Some(("\"i-\"", 9)),
            _ => None,
        };
        match token {
            Some((marked, len)) => {
                out.push_str(&text[copied..i]);
                out.push_str(marked);
                i += len;
                copied = i;
            }
            None => i += 1,
        }
    }
    out.push_str(&text[copied..]);
    Ok(out)
}

struct MarkedVisitor;

impl<'de> Visitor<'de> for MarkedVisitor {
    type Value = PyJson;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<PyJson, E> {
        Ok(PyJson::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<PyJson, E> {
        Ok(PyJson::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<PyJson, E> {
        Ok(PyJson::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<PyJson, E> {
        Ok(i64::try_from(v).map_or(PyJson::Float(v as f64), PyJson::Int))
    }

    fn visit_f64<E>(self, v: f64) -> Result<PyJson, E> {
        Ok(PyJson::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<PyJson, E> {
        match v {
            "n" => Ok(PyJson::Float(f64::NAN)),
            "i+" => Ok(PyJson::Float(f64::INFINITY)),
            "i-" => Ok(PyJson::Float(f64::NEG_INFINITY)),
            _ => v
                .strip_prefix('s')
                .map(|s| PyJson::Str(s.to_owned()))
                .ok_or_else(|| E::custom("an unmarked string (internal error)")),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PyJson, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element_seed(Seed)? {
            items.push(v);
        }
        Ok(PyJson::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PyJson, A::Error> {
        let mut items: Vec<(String, PyJson)> = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            let k = k
                .strip_prefix('s')
                .ok_or_else(|| de::Error::custom("a key that is not a string"))?
                .to_owned();
            let v = map.next_value_seed(Seed)?;
            match items.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = v,
                None => items.push((k, v)),
            }
        }
        Ok(PyJson::Dict(items))
    }
}

struct Seed;

impl<'de> de::DeserializeSeed<'de> for Seed {
    type Value = PyJson;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<PyJson, D::Error> {
        d.deserialize_any(MarkedVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_as_python_repr_writes_them() {
        let cases = [
            (1e16, "1e+16"),
            (1e-5, "1e-05"),
            (1e15, "1000000000000000.0"),
            (1e-4, "0.0001"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (3.0, "3.0"),
            (0.1, "0.1"),
            (123.456, "123.456"),
            (1.5e300, "1.5e+300"),
            (-2.5e-7, "-2.5e-07"),
            (5e-324, "5e-324"),
            (0.152_917_573_048_683_3, "0.1529175730486833"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (x, want) in cases {
            assert_eq!(PyJson::Float(x).dumps(Separators::Compact), want, "{x:e}");
        }
    }

    #[test]
    fn strings_are_escaped_as_ensure_ascii_escapes_them() {
        let s = PyJson::Str("é\"\\\n\u{7f}/😀\u{1}".into());
        assert_eq!(
            s.dumps(Separators::Compact),
            r#""\u00e9\"\\\n\u007f/\ud83d\ude00\u0001""#
        );
    }

    #[test]
    fn parsing_keeps_ints_floats_order_and_non_finite_tokens() {
        let line = r#"{"b":[1,2.0,NaN,-Infinity,Infinity,null,true],"a":"NaN","c":{"x":"-Infinity"},"b2":"s\"q"}"#;
        let v = PyJson::parse(line).unwrap();
        let PyJson::Dict(items) = &v else { panic!() };
        assert_eq!(
            items.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["b", "a", "c", "b2"]
        );
        let PyJson::List(b) = v.get("b").unwrap() else {
            panic!()
        };
        assert_eq!(b[0], PyJson::Int(1));
        assert_eq!(b[1], PyJson::Float(2.0));
        assert!(matches!(b[2], PyJson::Float(x) if x.is_nan()));
        assert_eq!(b[3], PyJson::Float(f64::NEG_INFINITY));
        assert_eq!(b[4], PyJson::Float(f64::INFINITY));
        assert_eq!(v.get("a"), Some(&PyJson::Str("NaN".into())));
        assert_eq!(
            v.get("c").unwrap().get("x"),
            Some(&PyJson::Str("-Infinity".into()))
        );
        assert_eq!(v.get("b2"), Some(&PyJson::Str("s\"q".into())));
        // Written back byte for byte (Python's compact form of the same object).
        assert_eq!(v.dumps(Separators::Compact), line);
        assert!(PyJson::parse(r#"{"a":1"#).is_err());
        assert!(PyJson::parse(r#"{"a":1} x"#).is_err());
        assert!(PyJson::parse(r#"{"a":"#).is_err());
    }

    #[test]
    fn repeated_keys_keep_the_last_value_in_the_first_place() {
        let v = PyJson::parse(r#"{"a":1,"b":2,"a":3}"#).unwrap();
        assert_eq!(v.dumps(Separators::Default), r#"{"a": 3, "b": 2}"#);
    }
}
