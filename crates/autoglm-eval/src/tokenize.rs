//! sacrebleu's BLEU tokenizers: `13a`, `intl`, `zh`, `char` and `none`.
//!
//! Each one reproduces the regular-expression passes of sacrebleu 2.6.0 literally
//! (leftmost, non-overlapping substitutions applied one after another), so that
//! the tokens, and therefore the scores, are the same.

use std::fmt;
use std::str::FromStr;

use unicode_general_category::{get_general_category, GeneralCategory as Gc};

use crate::error::Error;
use crate::text::{collapse_whitespace, is_py_whitespace, py_strip, unescape_xml};

/// A BLEU tokenizer, named as in sacrebleu's `--tokenize` option.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[non_exhaustive]
pub enum Tokenizer {
    /// No tokenization at all (`none`).
    #[serde(rename = "none")]
    None,
    /// mteval-v13a, the WMT standard and sacrebleu's default (`13a`).
    #[default]
    #[serde(rename = "13a")]
    V13a,
    /// mteval-v14 international tokenization on Unicode punctuation and symbols (`intl`).
    #[serde(rename = "intl")]
    Intl,
    /// Chinese: every CJK character is a token, the rest as `13a` (`zh`).
    #[serde(rename = "zh")]
    Zh,
    /// Every character is a token (`char`).
    #[serde(rename = "char")]
    Char,
}

impl Tokenizer {
    /// All tokenizers, in the order sacrebleu lists them.
    pub const ALL: [Tokenizer; 5] = [
        Tokenizer::None,
        Tokenizer::Zh,
        Tokenizer::V13a,
        Tokenizer::Intl,
        Tokenizer::Char,
    ];

    /// The name sacrebleu uses in `--tokenize` and in signatures.
    pub fn name(self) -> &'static str {
        match self {
            Tokenizer::None => "none",
            Tokenizer::V13a => "13a",
            Tokenizer::Intl => "intl",
            Tokenizer::Zh => "zh",
            Tokenizer::Char => "char",
        }
    }

    /// Tokenizes one line; tokens in the result are separated by single spaces.
    ///
    /// # Examples
    /// ```
    /// use autoglm_eval::Tokenizer;
    /// assert_eq!(Tokenizer::V13a.tokenize("Hello, world!"), "Hello , world !");
    /// assert_eq!(Tokenizer::Intl.tokenize("it's 3-4"), "it ' s 3-4");
    /// ```
    pub fn tokenize(self, line: &str) -> String {
        match self {
            Tokenizer::None => line.to_owned(),
            Tokenizer::V13a => tokenize_13a(line),
            Tokenizer::Intl => tokenize_intl(line),
            Tokenizer::Zh => tokenize_zh(line),
            Tokenizer::Char => {
                let mut out = String::with_capacity(line.len() * 2);
                for (i, c) in line.chars().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push(c);
                }
                out
            }
        }
    }
}

impl fmt::Display for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Tokenizer {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Tokenizer::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| Error::UnknownOption {
                option: "tokenize",
                value: s.to_owned(),
                expected: "none, zh, 13a, intl, char",
            })
    }
}

/// The symbols of the first 13a pass: `[\{-\~\[-\` -\&\(-\+\:-\@\/]`.
#[inline(always)]
fn is_13a_symbol(b: u8) -> bool {
    matches!(b, b'{'..=b'~' | b'['..=b'`' | b' '..=b'&' | b'('..=b'+' | b':'..=b'@' | b'/')
}

/// The four regex passes of sacrebleu's `TokenizerRegexp`, followed by whitespace collapsing.
///
/// The passes are run on bytes: every pattern position is either an ASCII character
/// or "anything but a digit", and the bytes of a multi-byte UTF-8 character are never
/// ASCII, so byte-wise matching finds exactly the character-wise matches.
pub(crate) fn regexp_passes(line: &[u8], possessive: bool) -> Vec<u8> {
    let mut a = Vec::with_capacity(line.len() * 2 + 8);
    // 1: ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> " \1 "
    for &b in line {
        if is_13a_symbol(b) {
            a.extend_from_slice(&[b' ', b, b' ']);
        } else {
            a.push(b);
        }
    }
    if possessive {
        // TER's normaliser: "'s " -> " 's " (the "'s$" rule cannot match on padded text).
        a = replace_bytes(&a, b"'s ", b" 's ");
    }
    let is_digit = |b: u8| b.is_ascii_digit();
    let is_dc = |b: u8| b == b'.' || b == b',';
    // 2: ([^0-9])([\.,]) -> "\1 \2 "
    let b = pair_pass(
        &a,
        |x, y| !is_digit(x) && is_dc(y),
        |x, y, o| o.extend_from_slice(&[x, b' ', y, b' ']),
    );
    // 3: ([\.,])([^0-9]) -> " \1 \2"
    let c = pair_pass(
        &b,
        |x, y| is_dc(x) && !is_digit(y),
        |x, y, o| o.extend_from_slice(&[b' ', x, b' ', y]),
    );
    // 4: ([0-9])(-) -> "\1 \2 "
    pair_pass(
        &c,
        |x, y| is_digit(x) && y == b'-',
        |x, y, o| o.extend_from_slice(&[x, b' ', y, b' ']),
    )
}

/// [`regexp_passes`] without the possessive rule, then Python's `' '.join(s.split())`:
/// what the `13a` and `zh` tokenizers do, in one pass and without intermediate buffers.
///
/// Each pass is a left-to-right transducer: the first maps every byte on its own, and
/// each two-character pass holds back one byte (a pair matches, is replaced and
/// consumed, or the held byte is let through). Feeding each pass's output to the next
/// byte by byte, then flushing them in order, gives what running the passes one after
/// the other gives.
pub(crate) fn regexp_passes_collapsed(line: &[u8]) -> String {
    let mut p = PairPasses {
        held: [None; 3],
        out: Vec::with_capacity(line.len() * 2 + 8),
    };
    let mut i = 0;
    while i < line.len() {
        // Passes 2–4 only act around digits, '.', ',' and '-' ("pair bytes"). When
        // passes 3 and 4 hold nothing and pass 2 holds no pair byte, a run of bytes that
        // are not pair bytes either goes through them unchanged after the byte held by
        // pass 2, and the last byte of the run (after pass 1) is held instead.
        if p.held[1].is_none() && p.held[2].is_none() && p.held[0].is_none_or(|x| !is_pair_byte(x))
        {
            let start = i;
            while i < line.len() && !is_pair_byte(line[i]) {
                i += 1;
            }
            if i > start {
                if let Some(x) = p.held[0] {
                    p.out.push(x);
                }
                for &b in &line[start..i] {
                    if is_13a_symbol(b) {
                        p.out.extend_from_slice(&[b' ', b, b' ']);
                    } else {
                        p.out.push(b);
                    }
                }
                p.held[0] = p.out.pop();
            }
            if i == line.len() {
                break;
            }
        }
        let b = line[i];
        if is_13a_symbol(b) {
            p.feed2(b' ');
            p.feed2(b);
            p.feed2(b' ');
        } else {
            p.feed2(b);
        }
        p.settle();
        i += 1;
    }
    let mut out = p.finish();
    collapse_in_place(&mut out);
    String::from_utf8(out).expect("tokenizer passes keep UTF-8 valid")
}

/// The bytes that passes 2–4 look at: digits, '.', ',' and '-'.
#[inline(always)]
fn is_pair_byte(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'.' | b',' | b'-')
}

/// Passes 2–4 of [`regexp_passes`] as transducers, each holding back at most one byte.
struct PairPasses {
    /// The byte held by pass 2, 3 and 4.
    held: [Option<u8>; 3],
    out: Vec<u8>,
}

impl PairPasses {
    /// 2: `([^0-9])([\.,])` -> `"\1 \2 "`.
    #[inline(always)]
    fn feed2(&mut self, y: u8) {
        match self.held[0].take() {
            Some(x) if !x.is_ascii_digit() && matches!(y, b'.' | b',') => {
                for b in [x, b' ', y, b' '] {
                    self.feed3(b);
                }
            }
            Some(x) => {
                self.feed3(x);
                self.held[0] = Some(y);
            }
            None => self.held[0] = Some(y),
        }
    }

    /// 3: `([\.,])([^0-9])` -> `" \1 \2"`.
    #[inline(always)]
    fn feed3(&mut self, y: u8) {
        match self.held[1].take() {
            Some(x) if matches!(x, b'.' | b',') && !y.is_ascii_digit() => {
                for b in [b' ', x, b' ', y] {
                    self.feed4(b);
                }
            }
            Some(x) => {
                self.feed4(x);
                self.held[1] = Some(y);
            }
            None => self.held[1] = Some(y),
        }
    }

    /// 4: `([0-9])(-)` -> `"\1 \2 "`.
    #[inline(always)]
    fn feed4(&mut self, y: u8) {
        match self.held[2].take() {
            Some(x) if x.is_ascii_digit() && y == b'-' => {
                self.out.extend_from_slice(&[x, b' ', y, b' ']);
            }
            Some(x) => {
                self.out.push(x);
                self.held[2] = Some(y);
            }
            None => self.held[2] = Some(y),
        }
    }

    /// Lets through the bytes held by passes 3 and 4 that no later byte can change:
    /// pass 4 replaces only a held digit, pass 3 only a held '.' or ','.
    #[inline(always)]
    fn settle(&mut self) {
        if let Some(x) = self.held[2] {
            if x.is_ascii_digit() {
                return;
            }
            self.out.push(x);
            self.held[2] = None;
        }
        if let Some(x) = self.held[1] {
            if !matches!(x, b'.' | b',') {
                self.held[1] = None;
                if x.is_ascii_digit() {
                    self.held[2] = Some(x);
                } else {
                    self.out.push(x);
                }
            }
        }
    }

    /// Lets the held bytes through, pass after pass.
    fn finish(mut self) -> Vec<u8> {
        if let Some(x) = self.held[0].take() {
            self.feed3(x);
        }
        if let Some(x) = self.held[1].take() {
            self.feed4(x);
        }
        if let Some(x) = self.held[2].take() {
            self.out.push(x);
        }
        self.out
    }
}

/// Python's `' '.join(s.split())` on the UTF-8 text `v`, in place.
fn collapse_in_place(v: &mut Vec<u8>) {
    let (mut r, mut w) = (0, 0);
    let mut gap = false;
    while r < v.len() {
        let b = v[r];
        let (len, space) = if b < 0x80 {
            // ASCII whitespace for Python: \t \n \v \f \r, U+001C..=U+001F and ' '.
            (1, matches!(b, b'\t'..=b'\r' | 0x1c..=b' '))
        } else {
            let len = if b >= 0xF0 {
                4
            } else if b >= 0xE0 {
                3
            } else {
                2
            };
            let lead = (b as u32) & (0x7F >> len);
            let c = v[r + 1..r + len]
                .iter()
                .fold(lead, |c, &x| (c << 6) | (x as u32 & 0x3F));
            (len, char::from_u32(c).is_some_and(is_py_whitespace))
        };
        if space {
            gap = true;
        } else {
            if gap && w > 0 {
                v[w] = b' ';
                w += 1;
            }
            gap = false;
            if len == 1 {
                v[w] = b;
            } else {
                v.copy_within(r..r + len, w);
            }
            w += len;
        }
        r += len;
    }
    v.truncate(w);
}

/// A leftmost, non-overlapping substitution of a two-character pattern.
#[inline]
fn pair_pass(
    s: &[u8],
    matches: impl Fn(u8, u8) -> bool,
    replace: impl Fn(u8, u8, &mut Vec<u8>),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + s.len() / 4 + 4);
    let mut i = 0;
    while i < s.len() {
        if i + 1 < s.len() && matches(s[i], s[i + 1]) {
            replace(s[i], s[i + 1], &mut out);
            i += 2;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// Python's `str.replace` on bytes (leftmost, non-overlapping).
pub(crate) fn replace_bytes(s: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

fn tokenize_13a(line: &str) -> String {
    let mut s = line.as_bytes().to_vec();
    if line.contains("<skipped>") {
        s = replace_bytes(&s, b"<skipped>", b"");
    }
    if s.contains(&b'\n') {
        s = replace_bytes(&s, b"-\n", b"");
        s = replace_bytes(&s, b"\n", b" ");
    }
    if s.contains(&b'&') {
        s = unescape_xml(&s);
    }
    let mut padded = Vec::with_capacity(s.len() + 2);
    padded.push(b' ');
    padded.extend_from_slice(&s);
    padded.push(b' ');
    regexp_passes_collapsed(&padded)
}

#[inline]
fn is_punct(c: char) -> bool {
    matches!(
        get_general_category(c),
        Gc::ConnectorPunctuation
            | Gc::DashPunctuation
            | Gc::OpenPunctuation
            | Gc::ClosePunctuation
            | Gc::InitialPunctuation
            | Gc::FinalPunctuation
            | Gc::OtherPunctuation
    )
}

#[inline]
fn is_number(c: char) -> bool {
    matches!(
        get_general_category(c),
        Gc::DecimalNumber | Gc::LetterNumber | Gc::OtherNumber
    )
}

#[inline]
fn is_symbol(c: char) -> bool {
    matches!(
        get_general_category(c),
        Gc::MathSymbol | Gc::CurrencySymbol | Gc::ModifierSymbol | Gc::OtherSymbol
    )
}

fn char_pair_pass(s: &[char], matches: impl Fn(char, char) -> bool, before: bool) -> Vec<char> {
    let mut out = Vec::with_capacity(s.len() + s.len() / 2 + 4);
    let mut i = 0;
    while i < s.len() {
        if i + 1 < s.len() && matches(s[i], s[i + 1]) {
            if before {
                // " \1 \2"
                out.extend_from_slice(&[' ', s[i], ' ', s[i + 1]]);
            } else {
                // "\1 \2 "
                out.extend_from_slice(&[s[i], ' ', s[i + 1], ' ']);
            }
            i += 2;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

fn tokenize_intl(line: &str) -> String {
    if line.is_ascii()
        && !line
            .bytes()
            .any(|b| b.is_ascii_punctuation() || b.is_ascii_control())
    {
        return collapse_whitespace(line);
    }
    let chars: Vec<char> = line.chars().collect();
    // (\P{N})(\p{P}) -> "\1 \2 "
    let a = char_pair_pass(&chars, |x, y| !is_number(x) && is_punct(y), false);
    // (\p{P})(\P{N}) -> " \1 \2"
    let b = char_pair_pass(&a, |x, y| is_punct(x) && !is_number(y), true);
    // (\p{S}) -> " \1 "
    let mut out = String::with_capacity(b.len() * 2);
    for c in b {
        if is_symbol(c) {
            out.push(' ');
            out.push(c);
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    collapse_whitespace(&out)
}

/// sacrebleu's `TokenizerZh._is_chinese_char`, including the effect of two Python string
/// literals that were meant as astral code points (`'\u20000'` is U+2000 followed by `0`):
/// compared as strings they cover U+2001..=U+2A6D and U+2F81..=U+2FA1.
pub(crate) fn is_zh_char(c: char) -> bool {
    let u = c as u32;
    matches!(u,
        0x3400..=0x4DB5
        | 0x4E00..=0x9FA5
        | 0x9FA6..=0x9FBB
        | 0xF900..=0xFA2D
        | 0xFA30..=0xFA6A
        | 0xFA70..=0xFAD9
        | 0x2001..=0x2A6D
        | 0x2F81..=0x2FA1
        | 0xFF00..=0xFFEF
        | 0x2E80..=0x2EFF
        | 0x3000..=0x303F
        | 0x31C0..=0x31EF
        | 0x2F00..=0x2FDF
        | 0x2FF0..=0x2FFF
        | 0x3100..=0x312F
        | 0x31A0..=0x31BF
        | 0xFE10..=0xFE1F
        | 0xFE30..=0xFE4F
        // U+2600..=U+26FF and U+2700..=U+27BF are listed too, inside the range above.
        | 0x3200..=0x32FF
        | 0x3300..=0x33FF)
}

fn tokenize_zh(line: &str) -> String {
    let line = py_strip(line);
    let mut s = String::with_capacity(line.len() * 2);
    for c in line.chars() {
        if is_zh_char(c) {
            s.push(' ');
            s.push(c);
            s.push(' ');
        } else {
            s.push(c);
        }
    }
    regexp_passes_collapsed(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(t: Tokenizer, input: &str, expect: &str) {
        assert_eq!(t.tokenize(input), expect, "{t} on {input:?}");
    }

    #[test]
    fn v13a_rules() {
        check(Tokenizer::V13a, "1,000.5 and 2018.", "1,000.5 and 2018 .");
        check(Tokenizer::V13a, "x-1 3-4 it's", "x-1 3 - 4 it's");
        check(Tokenizer::V13a, "wait...", "wait . . .");
        check(Tokenizer::V13a, "&amp;lt; &amp;quot;", "< & quot ;");
        check(Tokenizer::V13a, "a<skipped>b", "ab");
    }

    /// The passes one after the other, as sacrebleu runs its regular expressions.
    fn passes_then_collapse(s: &[u8]) -> String {
        collapse_whitespace(&String::from_utf8(regexp_passes(s, false)).expect("utf-8"))
    }

    #[test]
    fn fused_passes_equal_the_passes_in_sequence() {
        const PIECES: [&str; 24] = [
            "a", "Z", "1", "9", ".", ",", "-", "'", " ", "  ", "\t", "\u{1f}", "\u{a0}", "\u{85}",
            "\u{3000}", "\u{2009}", "ä", "我", "😀", "$", "&", "(", "/", "\n",
        ];
        let mut seed = 0x853C_49E6_748F_EA9Bu64;
        for round in 0..20_000 {
            let len = round % 40;
            let s: String = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    PIECES[(seed % PIECES.len() as u64) as usize]
                })
                .collect();
            assert_eq!(
                regexp_passes_collapsed(s.as_bytes()),
                passes_then_collapse(s.as_bytes()),
                "{s:?}"
            );
        }
        for b in 0..128u8 {
            let s = format!("x{}y", b as char);
            assert_eq!(
                regexp_passes_collapsed(s.as_bytes()),
                passes_then_collapse(s.as_bytes())
            );
        }
    }

    #[test]
    fn intl_rules() {
        check(Tokenizer::Intl, "In 2018.", "In 2018.");
        check(Tokenizer::Intl, "x-1", "x - 1");
        check(Tokenizer::Intl, "3-4", "3-4");
        check(Tokenizer::Intl, "it's", "it ' s");
        check(Tokenizer::Intl, "5€ «oui»", "5 € « oui »");
    }

    #[test]
    fn zh_rules() {
        check(Tokenizer::Zh, "我爱你。2018.", "我 爱 你 。 2018.");
        check(Tokenizer::Zh, "“hi”", "“ hi ”");
    }

    #[test]
    fn char_and_none() {
        check(Tokenizer::Char, "a b", "a   b");
        check(Tokenizer::None, " a  b ", " a  b ");
    }
}
