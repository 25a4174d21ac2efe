//! Data cleaning as a rules engine: each rule either rewrites a row (normalisation,
//! whitespace, case, masking) or rejects it (required fields, patterns, lengths,
//! duplicates), in the order the task lists them. A rejected row is never dropped
//! silently: the caller sends it to the quarantine with the rule's name and reason,
//! and [`CleaningReport`] counts, per rule, the rows it changed and rejected.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use gaoya::minhash::{calculate_minhash_params, MinHashIndex, MinHasher, MinHasher32};
use regex::Regex;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result};

/// One example: an input and its target text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Row {
    /// The input (for data-to-text, the attribute list).
    pub input: String,
    /// The text to produce.
    pub target: String,
}

impl Row {
    fn get(&self, f: Field) -> &str {
        match f {
            Field::Input => &self.input,
            Field::Target => &self.target,
        }
    }

    fn get_mut(&mut self, f: Field) -> &mut String {
        match f {
            Field::Input => &mut self.input,
            Field::Target => &mut self.target,
        }
    }
}

/// Which side of a row a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Field {
    /// The input.
    Input,
    /// The target.
    Target,
}

const BOTH: [Field; 2] = [Field::Input, Field::Target];

/// A cleaning rule, as one item of the task's `cleaning:` list (`- normalize: nfkc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// Unicode normalisation of both fields.
    Normalize(NormalForm),
    /// Whitespace: `trim` the ends, or `collapse` every run to one space (and trim).
    Whitespace(WhitespaceMode),
    /// Lower-case these fields.
    Lowercase(Vec<Field>),
    /// Reject rows where one of these fields is empty.
    Required(Vec<Field>),
    /// Reject rows whose field does not match a pattern (or does, with
    /// `reject_match`).
    Regex(RegexRule),
    /// Reject rows whose field is too short or too long.
    Length(LengthRule),
    /// Replace e-mail addresses, phone numbers and URLs by placeholders.
    Mask(MaskRule),
    /// Reject exact repeats of an earlier row (`pair`: same input and target),
    /// input or target.
    Dedup(DedupKey),
    /// Reject rows whose text is nearly a repeat of an earlier row's (MinHash over
    /// word shingles, LSH candidates, estimated Jaccard similarity above a threshold).
    NearDedup(NearDedupRule),
}

/// A Unicode normal form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormalForm {
    /// Canonical composition.
    Nfc,
    /// Compatibility composition (full-width letters, ligatures, non-breaking
    /// spaces become their plain forms).
    Nfkc,
    /// Canonical decomposition.
    Nfd,
    /// Compatibility decomposition.
    Nfkd,
}

/// A whitespace rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhitespaceMode {
    /// Remove leading and trailing whitespace.
    Trim,
    /// Every run of whitespace becomes one space; ends trimmed.
    Collapse,
}

/// `regex:` rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexRule {
    /// The field to test.
    pub field: Field,
    /// A pattern in the `regex` crate's syntax (matched anywhere; anchor it with `^…$`).
    pub pattern: String,
    /// Reject rows that match, instead of rows that do not.
    #[serde(default)]
    pub reject_match: bool,
}

/// `length:` rule; every bound is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LengthRule {
    /// The field to measure.
    pub field: Field,
    /// Fewest characters.
    #[serde(default)]
    pub min_chars: Option<usize>,
    /// Most characters.
    #[serde(default)]
    pub max_chars: Option<usize>,
    /// Fewest whitespace-separated words.
    #[serde(default)]
    pub min_words: Option<usize>,
    /// Most words.
    #[serde(default)]
    pub max_words: Option<usize>,
}

/// `mask:` rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskRule {
    /// What to mask (default: all three).
    #[serde(default = "all_kinds")]
    pub kinds: Vec<MaskKind>,
    /// Where (default: both fields).
    #[serde(default = "both_fields")]
    pub fields: Vec<Field>,
}

fn all_kinds() -> Vec<MaskKind> {
    vec![MaskKind::Email, MaskKind::Phone, MaskKind::Url]
}

fn both_fields() -> Vec<Field> {
    BOTH.to_vec()
}

/// Personal data a mask replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskKind {
    /// `name@host.tld` → `<email>`.
    Email,
    /// Seven or more digits in phone layout (`+44 1223 456789`, `(01223) 456-789`)
    /// → `<phone>`; prices and ratings (`£20-25`, `5 out of 5`) are left alone.
    Phone,
    /// `http(s)://…` and `www.…` → `<url>`.
    Url,
}

/// What makes two rows the same for `dedup:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DedupKey {
    /// Input and target both equal.
    Pair,
    /// Input equal.
    Input,
    /// Target equal.
    Target,
}

/// `near_dedup:` rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NearDedupRule {
    /// The text compared (default: input and target joined).
    #[serde(default = "both_fields")]
    pub fields: Vec<Field>,
    /// Estimated Jaccard similarity of the shingle sets above which a row is a near
    /// repeat (default 0.8).
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Hash functions of the signature (default 128).
    #[serde(default = "default_num_hashes")]
    pub num_hashes: usize,
    /// Words per shingle (default 3), lower-cased.
    #[serde(default = "default_shingle")]
    pub shingle: usize,
}

fn default_threshold() -> f64 {
    0.8
}
fn default_num_hashes() -> usize {
    128
}
fn default_shingle() -> usize {
    3
}

impl Rule {
    /// The rule's name in reports and the quarantine.
    pub fn name(&self) -> String {
        match self {
            Rule::Normalize(f) => format!("normalize:{}", ser(f)),
            Rule::Whitespace(m) => format!("whitespace:{}", ser(m)),
            Rule::Lowercase(_) => "lowercase".into(),
            Rule::Required(_) => "required".into(),
            Rule::Regex(r) => format!("regex:{}", ser(&r.field)),
            Rule::Length(r) => format!("length:{}", ser(&r.field)),
            Rule::Mask(_) => "mask".into(),
            Rule::Dedup(k) => format!("dedup:{}", ser(k)),
            Rule::NearDedup(_) => "near_dedup".into(),
        }
    }

    /// Checks the rule's settings.
    ///
    /// # Errors
    /// [`Error::Task`] naming the rule and what is wrong.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Task(format!("cleaning rule {}: {m}", self.name())));
        match self {
            Rule::Regex(r) => {
                if let Err(e) = Regex::new(&r.pattern) {
                    return bad(format!("pattern {:?}: {e}", r.pattern));
                }
            }
            Rule::Length(r) => {
                for (lo, hi, what) in [
                    (r.min_chars, r.max_chars, "chars"),
                    (r.min_words, r.max_words, "words"),
                ] {
                    if let (Some(lo), Some(hi)) = (lo, hi) {
                        if lo > hi {
                            return bad(format!("min_{what} {lo} is above max_{what} {hi}"));
                        }
                    }
                }
            }
            Rule::NearDedup(r) => {
                if !(r.threshold > 0.0 && r.threshold < 1.0) {
                    return bad(format!("threshold {} is not in (0, 1)", r.threshold));
                }
                if r.num_hashes < 8 || r.shingle == 0 {
                    return bad("num_hashes must be at least 8 and shingle at least 1".into());
                }
            }
            Rule::Required(f) | Rule::Lowercase(f) if f.is_empty() => {
                return bad("names no field".into())
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether the rule only rewrites rows (never rejects one): the rules applied to
    /// test inputs.
    pub fn is_transform(&self) -> bool {
        matches!(
            self,
            Rule::Normalize(_) | Rule::Whitespace(_) | Rule::Lowercase(_) | Rule::Mask(_)
        )
    }
}

fn ser<T: Serialize>(x: &T) -> String {
    serde_json::to_value(x)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// What the cleaner decided about a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Keep it (possibly rewritten).
    Keep(Row),
    /// Reject it.
    Reject {
        /// The rule's name ([`Rule::name`]).
        rule: String,
        /// Why, for the quarantine.
        reason: String,
    },
}

/// Counts of one rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCount {
    /// The rule's name.
    pub rule: String,
    /// Rows it rewrote.
    pub changed: usize,
    /// Rows it rejected.
    pub rejected: usize,
}

/// What a cleaner did to the rows it saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleaningReport {
    /// Rows given to the cleaner.
    pub rows: usize,
    /// Rows kept.
    pub kept: usize,
    /// Rows rejected (the sum of the rules' `rejected`).
    pub rejected: usize,
    /// Per rule, in order.
    pub rules: Vec<RuleCount>,
}

enum Compiled {
    Normalize(NormalForm),
    Whitespace(WhitespaceMode),
    Lowercase(Vec<Field>),
    Required(Vec<Field>),
    Regex {
        field: Field,
        re: Regex,
        reject_match: bool,
    },
    Length(LengthRule),
    Mask {
        kinds: Vec<MaskKind>,
        fields: Vec<Field>,
    },
    Dedup {
        key: DedupKey,
        seen: HashSet<u64>,
    },
    NearDedup {
        fields: Vec<Field>,
        shingle: usize,
        hasher: MinHasher32<fnv::FnvBuildHasher>,
        index: Box<MinHashIndex<u32, usize>>,
        next: usize,
        /// The row numbers (among those kept by this rule) of the indexed rows.
        first_seen: Vec<usize>,
    },
}

/// Patterns of the `mask` rule.
struct Masks {
    email: Regex,
    url: Regex,
    phone: Regex,
}

impl Masks {
    fn new() -> Masks {
        Masks {
            email: Regex::new(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b")
                .expect("valid"),
            url: Regex::new(r#"(?i)\b(?:https?://|www\.)[^\s<>"']+[^\s<>"'.,;:!?)]"#)
                .expect("valid"),
            phone: Regex::new(
                r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,5}\)[\s.-]?)?\d{2,8}(?:[\s.-]\d{2,8}){0,3}",
            )
            .expect("valid"),
        }
    }

    fn apply(&self, kinds: &[MaskKind], text: &str) -> String {
        let mut out = text.to_owned();
        for k in kinds {
            out = match k {
                MaskKind::Email => self.email.replace_all(&out, "<email>").into_owned(),
                MaskKind::Url => self.url.replace_all(&out, "<url>").into_owned(),
                MaskKind::Phone => self
                    .phone
                    .replace_all(&out, |c: &regex::Captures<'_>| {
                        let m = &c[0];
                        let digits = m.chars().filter(char::is_ascii_digit).count();
                        if digits >= 7 {
                            "<phone>".to_owned()
                        } else {
                            m.to_owned()
                        }
                    })
                    .into_owned(),
            };
        }
        out
    }
}

/// A streaming cleaner: rules compiled once, duplicate state kept across rows.
///
/// ```
/// use autoglm::clean::{Cleaner, Row, Rule, Verdict, WhitespaceMode, DedupKey};
///
/// let mut c = Cleaner::new(&[Rule::Whitespace(WhitespaceMode::Collapse), Rule::Dedup(DedupKey::Pair)])?;
/// let row = |t: &str| Row { input: "name[Aromi]".into(), target: t.into() };
/// assert_eq!(c.apply(row("Aromi  is a  pub. ")), Verdict::Keep(row("Aromi is a pub.")));
/// assert!(matches!(c.apply(row("Aromi is a pub.")), Verdict::Reject { .. }));
/// assert_eq!((c.report().kept, c.report().rejected), (1, 1));
/// # Ok::<(), autoglm::Error>(())
/// ```
pub struct Cleaner {
    rules: Vec<(String, Compiled)>,
    masks: Option<Masks>,
    report: CleaningReport,
}

impl std::fmt::Debug for Cleaner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cleaner")
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl Cleaner {
    /// Compiles `rules`.
    ///
    /// # Errors
    /// [`Error::Task`] for an invalid rule ([`Rule::check`]).
    pub fn new(rules: &[Rule]) -> Result<Cleaner> {
        let mut compiled = Vec::with_capacity(rules.len());
        let mut masks = None;
        for r in rules {
            r.check()?;
            let c = match r.clone() {
                Rule::Normalize(f) => Compiled::Normalize(f),
                Rule::Whitespace(m) => Compiled::Whitespace(m),
                Rule::Lowercase(f) => Compiled::Lowercase(f),
                Rule::Required(f) => Compiled::Required(f),
                Rule::Regex(r) => Compiled::Regex {
                    field: r.field,
                    re: Regex::new(&r.pattern).map_err(|e| Error::Task(e.to_string()))?,
                    reject_match: r.reject_match,
                },
                Rule::Length(l) => Compiled::Length(l),
                Rule::Mask(m) => {
                    masks.get_or_insert_with(Masks::new);
                    Compiled::Mask {
                        kinds: m.kinds,
                        fields: m.fields,
                    }
                }
                Rule::Dedup(key) => Compiled::Dedup {
                    key,
                    seen: HashSet::new(),
                },
                Rule::NearDedup(n) => {
                    let (bands, width) = calculate_minhash_params(n.threshold, n.num_hashes);
                    Compiled::NearDedup {
                        fields: n.fields,
                        shingle: n.shingle,
                        hasher: MinHasher32::new(bands * width),
                        index: Box::new(MinHashIndex::new(bands, width, n.threshold)),
                        next: 0,
                        first_seen: Vec::new(),
                    }
                }
            };
            compiled.push((r.name(), c));
        }
        let report = CleaningReport {
            rules: compiled
                .iter()
                .map(|(name, _)| RuleCount {
                    rule: name.clone(),
                    ..RuleCount::default()
                })
                .collect(),
            ..CleaningReport::default()
        };
        Ok(Cleaner {
            rules: compiled,
            masks,
            report,
        })
    }

    /// Runs the rules over `row`, in order; the first rejection ends it.
    pub fn apply(&mut self, mut row: Row) -> Verdict {
        self.report.rows += 1;
        for (i, (name, rule)) in self.rules.iter_mut().enumerate() {
            let before = row.clone();
            let reject = |reason: String| Some(reason);
            let rejected: Option<String> = match rule {
                Compiled::Normalize(form) => {
                    for f in BOTH {
                        let s = row.get_mut(f);
                        *s = match form {
                            NormalForm::Nfc => s.nfc().collect(),
                            NormalForm::Nfkc => s.nfkc().collect(),
                            NormalForm::Nfd => s.nfd().collect(),
                            NormalForm::Nfkd => s.nfkd().collect(),
                        };
                    }
                    None
                }
                Compiled::Whitespace(mode) => {
                    for f in BOTH {
                        let s = row.get_mut(f);
                        *s = match mode {
                            WhitespaceMode::Trim => s.trim().to_owned(),
                            WhitespaceMode::Collapse => {
                                s.split_whitespace().collect::<Vec<_>>().join(" ")
                            }
                        };
                    }
                    None
                }
                Compiled::Lowercase(fields) => {
                    for &f in fields.iter() {
                        let s = row.get_mut(f);
                        *s = s.to_lowercase();
                    }
                    None
                }
                Compiled::Required(fields) => fields
                    .iter()
                    .find(|&&f| row.get(f).trim().is_empty())
                    .and_then(|&f| reject(format!("{} is empty", ser(&f)))),
                Compiled::Regex {
                    field,
                    re,
                    reject_match,
                } => {
                    let hit = re.is_match(row.get(*field));
                    if hit == *reject_match {
                        reject(format!(
                            "{} {} /{}/",
                            ser(field),
                            if hit { "matches" } else { "does not match" },
                            re.as_str()
                        ))
                    } else {
                        None
                    }
                }
                Compiled::Length(l) => {
                    let text = row.get(l.field);
                    let chars = text.chars().count();
                    let words = text.split_whitespace().count();
                    let out = |n: usize, lo: Option<usize>, hi: Option<usize>| {
                        lo.is_some_and(|lo| n < lo) || hi.is_some_and(|hi| n > hi)
                    };
                    if out(chars, l.min_chars, l.max_chars) {
                        reject(format!("{} has {chars} characters", ser(&l.field)))
                    } else if out(words, l.min_words, l.max_words) {
                        reject(format!("{} has {words} words", ser(&l.field)))
                    } else {
                        None
                    }
                }
                Compiled::Mask { kinds, fields } => {
                    let masks = self.masks.as_ref().expect("compiled with the rule");
                    for &f in fields.iter() {
                        let s = row.get_mut(f);
                        *s = masks.apply(kinds, s);
                    }
                    None
                }
                Compiled::Dedup { key, seen } => {
                    let mut h = DefaultHasher::new();
                    match key {
                        DedupKey::Pair => (&row.input, &row.target).hash(&mut h),
                        DedupKey::Input => row.input.hash(&mut h),
                        DedupKey::Target => row.target.hash(&mut h),
                    }
                    if seen.insert(h.finish()) {
                        None
                    } else {
                        reject(format!("repeats an earlier row's {}", ser(key)))
                    }
                }
                Compiled::NearDedup {
                    fields,
                    shingle,
                    hasher,
                    index,
                    next,
                    first_seen,
                } => {
                    let text: String = fields
                        .iter()
                        .map(|&f| row.get(f).to_lowercase())
                        .collect::<Vec<_>>()
                        .join(" ");
                    let words: Vec<&str> = text.split_whitespace().collect();
                    let shingles: Vec<String> = if words.len() <= *shingle {
                        vec![words.join(" ")]
                    } else {
                        words.windows(*shingle).map(|w| w.join(" ")).collect()
                    };
                    let sig = hasher.create_signature(shingles.iter());
                    match index.query_one(&sig) {
                        Some((&id, sim)) => reject(format!(
                            "near repeat (similarity {sim:.2}) of the {}th row kept before it",
                            first_seen[id] + 1
                        )),
                        None => {
                            index.insert(*next, sig);
                            first_seen.push(self.report.kept);
                            *next += 1;
                            None
                        }
                    }
                }
            };
            let count = &mut self.report.rules[i];
            if let Some(reason) = rejected {
                count.rejected += 1;
                self.report.rejected += 1;
                return Verdict::Reject {
                    rule: name.clone(),
                    reason,
                };
            }
            if row != before {
                count.changed += 1;
            }
        }
        self.report.kept += 1;
        Verdict::Keep(row)
    }

    /// The counts so far.
    pub fn report(&self) -> &CleaningReport {
        &self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: &str, t: &str) -> Row {
        Row {
            input: i.into(),
            target: t.into(),
        }
    }

    fn keep(c: &mut Cleaner, r: Row) -> Row {
        match c.apply(r) {
            Verdict::Keep(r) => r,
            v => panic!("rejected: {v:?}"),
        }
    }

    #[test]
    fn masks_personal_data_but_not_prices_or_ratings() {
        let mut c = Cleaner::new(&[Rule::Mask(MaskRule {
            kinds: all_kinds(),
            fields: both_fields(),
        })])
        .unwrap();
        let r = keep(
            &mut c,
            row(
                "name[Aromi], priceRange[£20-25], customer rating[5 out of 5]",
                "Mail bob.smith@example.co.uk or call +44 1223 456789 or (01223) 456-789, see https://aromi.example/menu. Prices £20-25, rated 3 out of 5, open 10-11.",
            ),
        );
        assert_eq!(
            r.input,
            "name[Aromi], priceRange[£20-25], customer rating[5 out of 5]"
        );
        assert_eq!(
            r.target,
            "Mail <email> or call <phone> or <phone>, see <url>. Prices £20-25, rated 3 out of 5, open 10-11."
        );
        assert_eq!(c.report().rules[0].changed, 1);
    }

    #[test]
    fn near_duplicates_are_rejected_and_distinct_rows_kept() {
        let mut c = Cleaner::new(&[Rule::NearDedup(NearDedupRule {
            fields: vec![Field::Target],
            threshold: 0.5,
            num_hashes: 128,
            shingle: 2,
        })])
        .unwrap();
        let a = "The Eagle is a cheap coffee shop near Burger King in the city centre with a low rating";
        keep(&mut c, row("x", a));
        keep(
            &mut c,
            row(
                "y",
                "Zizzi is an Italian pub by the river that is not family friendly at all",
            ),
        );
        let near = "The Eagle is a cheap coffee shop near Burger King in the city centre with a low rating!";
        assert!(
            matches!(c.apply(row("z", near)), Verdict::Reject { ref rule, .. } if rule == "near_dedup")
        );
        assert_eq!(c.report().kept, 2);
    }

    #[test]
    fn rejection_rules_name_the_reason_and_counts_add_up() {
        let rules = vec![
            Rule::Normalize(NormalForm::Nfkc),
            Rule::Whitespace(WhitespaceMode::Collapse),
            Rule::Lowercase(vec![Field::Input]),
            Rule::Required(vec![Field::Input, Field::Target]),
            Rule::Regex(RegexRule {
                field: Field::Input,
                pattern: r"^name\[".into(),
                reject_match: false,
            }),
            Rule::Length(LengthRule {
                field: Field::Target,
                min_chars: None,
                max_chars: None,
                min_words: Some(2),
                max_words: Some(8),
            }),
            Rule::Dedup(DedupKey::Pair),
        ];
        let mut c = Cleaner::new(&rules).unwrap();
        // Full-width letters and a non-breaking space become plain.
        let r = keep(&mut c, row("NAME[Ｚizzi]", "Zizzi\u{a0}is   a pub."));
        assert_eq!(r, row("name[zizzi]", "Zizzi is a pub."));
        let cases = [
            (row("name[a]", "   "), "required", "target is empty"),
            (
                row("eatType[pub]", "A pub."),
                "regex:input",
                "does not match",
            ),
            (row("name[a]", "Pub."), "length:target", "1 words"),
            (
                row("name[zizzi]", "Zizzi is a pub."),
                "dedup:pair",
                "repeats",
            ),
        ];
        for (r, rule, why) in cases {
            match c.apply(r) {
                Verdict::Reject { rule: got, reason } => {
                    assert_eq!(got, rule);
                    assert!(reason.contains(why), "{reason}");
                }
                v => panic!("kept: {v:?}"),
            }
        }
        let rep = c.report();
        assert_eq!((rep.rows, rep.kept, rep.rejected), (5, 1, 4));
        assert_eq!(rep.rules.iter().map(|r| r.rejected).sum::<usize>(), 4);
        assert_eq!(rep.rules[0].changed, 1);
    }

    #[test]
    fn invalid_rules_are_errors() {
        let bad = Rule::Regex(RegexRule {
            field: Field::Input,
            pattern: "([".into(),
            reject_match: false,
        });
        assert!(Cleaner::new(&[bad])
            .unwrap_err()
            .to_string()
            .contains("regex:input"));
    }
}
