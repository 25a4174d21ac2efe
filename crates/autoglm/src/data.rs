//! Reading the task's data (JSONL or CSV with a field mapping), cleaning it, holding
//! out dev and test inputs, and grouping rows with equal input into multi-reference
//! items. Files are streamed row by row; every row read is either kept or written to
//! the quarantine with the rule that rejected it, and the report counts both.
//!
//! Test references are not read here when the task gives them apart (inputs file plus
//! references file): [`Prepared::test_references`] reads them once the search is over.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clean::{Cleaner, CleaningReport, Row, Verdict};
use crate::error::{write_json, write_lines, Error, Result};
use crate::rundir::DataDir;
use crate::task::{Format, OnMalformed, Task};

/// An input with every reference text given for it (dev and test sets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The input.
    pub input: String,
    /// Its references, in file order.
    pub references: Vec<String>,
}

/// Counts for one source file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceReport {
    /// The file.
    pub file: PathBuf,
    /// Non-blank rows read.
    pub rows: usize,
    /// Blank lines skipped.
    pub blank_lines: usize,
    /// Rows that could not be parsed (quarantined as `malformed`).
    pub malformed: usize,
    /// Rows without the input or target field (quarantined as `missing_field`).
    pub missing_field: usize,
    /// What the cleaning rules did to the other rows.
    pub cleaning: CleaningReport,
}

impl SourceReport {
    /// Rows kept after cleaning.
    pub fn kept(&self) -> usize {
        self.cleaning.kept
    }

    /// Whether every row read is accounted for (kept, or quarantined by one cause).
    pub fn balanced(&self) -> bool {
        self.rows
            == self.malformed + self.missing_field + self.cleaning.kept + self.cleaning.rejected
    }
}

/// What preparation did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataReport {
    /// The training file.
    pub train: SourceReport,
    /// The dev file, when the task gives one.
    pub dev: Option<SourceReport>,
    /// The test file of rows, when the task gives one.
    pub test: Option<SourceReport>,
    /// Training rows, dev and test items after the split.
    pub train_rows: usize,
    /// Dev items (distinct inputs) and their references.
    pub dev_items: usize,
    /// Dev references.
    pub dev_references: usize,
    /// Test inputs.
    pub test_items: usize,
    /// Distinct inputs moved from the training rows to dev and to test by the split.
    pub split_inputs: (usize, usize),
    /// Rows in the quarantine file.
    pub quarantined: usize,
}

/// The cleaned, split data of a task.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Training rows.
    pub train: Vec<Row>,
    /// Dev items.
    pub dev: Vec<Item>,
    /// Test inputs (cleaned by the task's rewriting rules, as training inputs are).
    pub test_inputs: Vec<String>,
    /// Where the test references are.
    test_refs: RefSource,
    /// The counts.
    pub report: DataReport,
}

#[derive(Debug, Clone)]
enum RefSource {
    /// A JSONL file of reference arrays given by the task.
    Given(PathBuf),
    /// Written by preparation (test rows from a file or from the split).
    Stored(PathBuf),
}

impl Prepared {
    /// The test references, one list per test input. Call it only after every choice
    /// has been made on dev.
    ///
    /// # Errors
    /// [`Error::Io`]; [`Error::Data`] naming the line that is not a JSON array of
    /// strings; [`Error::Input`] if the count differs from the inputs'.
    pub fn test_references(&self) -> Result<Vec<Vec<String>>> {
        let path = match &self.test_refs {
            RefSource::Given(p) | RefSource::Stored(p) => p,
        };
        let refs = read_reference_lists(path)?;
        if refs.len() != self.test_inputs.len() {
            return Err(Error::Input(format!(
                "{}: {} reference lists for {} test inputs",
                path.display(),
                refs.len(),
                self.test_inputs.len()
            )));
        }
        Ok(refs)
    }
}

/// One JSON array of strings per line.
fn read_reference_lists(path: &Path) -> Result<Vec<Vec<String>>> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        let refs: Vec<String> = serde_json::from_str(&line).map_err(|e| Error::Data {
            file: path.to_owned(),
            line: i + 1,
            reason: format!("expected a JSON array of reference strings: {e}"),
        })?;
        out.push(refs);
    }
    Ok(out)
}

/// A row as read, before cleaning.
pub(crate) enum Record {
    Row(Row),
    /// Could not be used: the quarantine rule and reason.
    Bad(&'static str, String),
}

/// The quarantine file.
struct Quarantine {
    out: BufWriter<File>,
    path: PathBuf,
    count: usize,
}

impl Quarantine {
    fn put(
        &mut self,
        split: &str,
        file: &Path,
        line: usize,
        rule: &str,
        reason: &str,
        row: Value,
    ) -> Result<()> {
        let entry = serde_json::json!({
            "split": split, "file": file, "line": line, "rule": rule, "reason": reason, "row": row,
        });
        writeln!(self.out, "{entry}").map_err(|e| Error::io(&self.path, e))?;
        self.count += 1;
        Ok(())
    }
}

/// A field's value as text: strings as they are, numbers and booleans printed, arrays
/// joined by ", ", objects linearised as `key[value], …` in key order (the E2E style); null or
/// absent: none.
fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => Some(
            a.iter()
                .filter_map(|x| text_of(Some(x)))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        Value::Object(o) => {
            // Keys sorted: the same text whatever serde_json's map order is.
            let mut kv: Vec<(&String, &Value)> = o.iter().collect();
            kv.sort_by(|a, b| a.0.cmp(b.0));
            Some(
                kv.into_iter()
                    .filter_map(|(k, x)| text_of(Some(x)).map(|t| format!("{k}[{t}]")))
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        }
        other => Some(other.to_string()),
    }
}

/// Streams the rows of a source read from `file` (`path` names it in errors):
/// `each(line, record, raw)` per non-blank row; returns the blank lines skipped.
pub(crate) fn read_source(
    file: impl std::io::Read,
    path: &Path,
    format: Format,
    fields: (&str, &str),
    mut each: impl FnMut(usize, Record, Value) -> Result<()>,
) -> Result<usize> {
    let mut blank = 0;
    let to_record = |obj: &serde_json::Map<String, Value>| -> Record {
        match (text_of(obj.get(fields.0)), text_of(obj.get(fields.1))) {
            (Some(input), Some(target)) => Record::Row(Row { input, target }),
            (i, _) => Record::Bad(
                "missing_field",
                format!(
                    "no '{}' field",
                    if i.is_none() { fields.0 } else { fields.1 }
                ),
            ),
        }
    };
    match format {
        Format::Jsonl => {
            for (i, line) in BufReader::new(file).lines().enumerate() {
                let line = match line {
                    Ok(l) => l,
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        each(
                            i + 1,
                            Record::Bad("malformed", "not UTF-8 text".into()),
                            Value::Null,
                        )?;
                        continue;
                    }
                    Err(e) => return Err(Error::io(path, e)),
                };
                if line.trim().is_empty() {
                    blank += 1;
                    continue;
                }
                match serde_json::from_str::<Value>(&line) {
                    Ok(Value::Object(obj)) => {
                        let rec = to_record(&obj);
                        each(i + 1, rec, Value::Object(obj))?;
                    }
                    Ok(other) => each(
                        i + 1,
                        Record::Bad("malformed", "not a JSON object".into()),
                        other,
                    )?,
                    Err(e) => each(
                        i + 1,
                        Record::Bad("malformed", format!("invalid JSON: {e}")),
                        Value::String(line),
                    )?,
                }
            }
        }
        Format::Csv => {
            let mut rd = csv::ReaderBuilder::new().from_reader(file);
            let headers = rd
                .headers()
                .map_err(|e| Error::Data {
                    file: path.to_owned(),
                    line: 1,
                    reason: format!("cannot read the header row: {e}"),
                })?
                .clone();
            for f in [fields.0, fields.1] {
                if !headers.iter().any(|h| h == f) {
                    return Err(Error::Data {
                        file: path.to_owned(),
                        line: 1,
                        reason: format!(
                            "no column '{f}' (the header has {:?})",
                            headers.iter().collect::<Vec<_>>()
                        ),
                    });
                }
            }
            for rec in rd.records() {
                match rec {
                    Ok(r) => {
                        let line = r.position().map_or(0, |p| p.line() as usize);
                        if r.iter().all(|c| c.trim().is_empty()) {
                            blank += 1;
                            continue;
                        }
                        let obj: serde_json::Map<String, Value> = headers
                            .iter()
                            .zip(r.iter())
                            .map(|(h, c)| (h.to_owned(), Value::String(c.to_owned())))
                            .collect();
                        let rec = to_record(&obj);
                        each(line, rec, Value::Object(obj))?;
                    }
                    Err(e) => {
                        let line = e.position().map_or(0, |p| p.line() as usize);
                        each(
                            line,
                            Record::Bad("malformed", format!("invalid CSV: {e}")),
                            Value::Null,
                        )?;
                    }
                }
            }
        }
    }
    Ok(blank)
}

/// Reads, cleans and quarantines one source; returns the kept rows (with their line).
fn clean_source(
    task: &Task,
    split: &str,
    path: &Path,
    cleaner: &mut Cleaner,
    quarantine: &mut Quarantine,
) -> Result<(Vec<Row>, SourceReport)> {
    let d = &task.data;
    let format = Format::of(path, d.format)?;
    let mut rep = SourceReport {
        file: path.to_owned(),
        ..SourceReport::default()
    };
    let mut kept = Vec::new();
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    rep.blank_lines = read_source(
        file,
        path,
        format,
        (&d.input, &d.target),
        |line, rec, raw| {
            rep.rows += 1;
            match rec {
                Record::Bad(rule, reason) => {
                    if rule == "malformed" {
                        if d.on_malformed == OnMalformed::Error {
                            return Err(Error::Data {
                                file: path.to_owned(),
                                line,
                                reason: format!(
                                "{reason} (set data.on_malformed: quarantine to skip such rows)"
                            ),
                            });
                        }
                        rep.malformed += 1;
                    } else {
                        rep.missing_field += 1;
                    }
                    quarantine.put(split, path, line, rule, &reason, raw)
                }
                Record::Row(row) => match cleaner.apply(row) {
                    Verdict::Keep(row) => {
                        kept.push(row);
                        Ok(())
                    }
                    Verdict::Reject { rule, reason } => {
                        quarantine.put(split, path, line, &rule, &reason, raw)
                    }
                },
            }
        },
    )?;
    rep.cleaning = cleaner.report().clone();
    Ok((kept, rep))
}

/// Groups rows by input, inputs in first-seen order.
fn group(rows: Vec<Row>) -> Vec<Item> {
    let mut at: HashMap<String, usize> = HashMap::new();
    let mut items: Vec<Item> = Vec::new();
    for r in rows {
        match at.get(&r.input) {
            Some(&i) => items[i].references.push(r.target),
            None => {
                at.insert(r.input.clone(), items.len());
                items.push(Item {
                    input: r.input,
                    references: vec![r.target],
                });
            }
        }
    }
    items
}

fn write_jsonl<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    let f = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = BufWriter::new(f);
    for r in rows {
        writeln!(w, "{}", serde_json::to_string(r).expect("serializable"))
            .map_err(|e| Error::io(path, e))?;
    }
    w.flush().map_err(|e| Error::io(path, e))
}

/// Prepares the task's data into `dir` (`train.jsonl`, `dev.jsonl`,
/// `test_inputs.txt`, `quarantine.jsonl`, `report.json`; test references held out of
/// the training file go to `test_references.jsonl`).
///
/// Training rows (and dev rows from a dev file) go through every cleaning rule; test
/// inputs only through the rewriting ones ([`crate::clean::Rule::is_transform`]):
/// nothing is dropped from a test set. Held-out dev and test inputs are distinct
/// inputs of the cleaned training rows, drawn by a seeded shuffle, so no input is in
/// two splits.
///
/// # Errors
/// [`Error::Io`], [`Error::Data`] naming file and line, [`Error::Input`] when no
/// training row is left.
pub fn prepare(task: &Task, dir: &Path) -> Result<Prepared> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let files = DataDir::new(dir);
    let d = &task.data;
    let qpath = files.quarantine();
    let mut quarantine = Quarantine {
        out: BufWriter::new(File::create(&qpath).map_err(|e| Error::io(&qpath, e))?),
        path: qpath.clone(),
        count: 0,
    };
    let mut report = DataReport::default();
    let (train_rows, rep) = clean_source(
        task,
        "train",
        &d.train,
        &mut Cleaner::new(&task.cleaning)?,
        &mut quarantine,
    )?;
    report.train = rep;
    let dev_rows = match &d.dev {
        Some(p) => {
            let (rows, rep) = clean_source(
                task,
                "dev",
                p,
                &mut Cleaner::new(&task.cleaning)?,
                &mut quarantine,
            )?;
            report.dev = Some(rep);
            Some(rows)
        }
        None => None,
    };
    let transforms: Vec<_> = task
        .cleaning
        .iter()
        .filter(|r| r.is_transform())
        .cloned()
        .collect();
    let mut test_cleaner = Cleaner::new(&transforms)?;
    let mut clean_input = |s: String| match test_cleaner.apply(Row {
        input: s,
        target: String::new(),
    }) {
        Verdict::Keep(r) => r.input,
        Verdict::Reject { .. } => unreachable!("rewriting rules keep every row"),
    };
    // (inputs, stored references) of a test set read now.
    let mut test_now: Option<Vec<Item>> = None;
    let mut test_given_inputs: Option<Vec<String>> = None;
    if let Some(t) = &d.test {
        if let Some(p) = &t.file {
            let (rows, rep) =
                clean_source(task, "test", p, &mut Cleaner::new(&[])?, &mut quarantine)?;
            report.test = Some(rep);
            test_now = Some(group(rows));
        } else if let Some(p) = &t.inputs {
            let f = File::open(p).map_err(|e| Error::io(p, e))?;
            let lines = BufReader::new(f)
                .lines()
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|e| Error::io(p, e))?;
            test_given_inputs = Some(lines);
        }
    }
    // The split, over the distinct inputs of the cleaned training rows.
    let need_dev = dev_rows.is_none();
    let need_test = d.test.is_none();
    let mut items = group(train_rows);
    let mut order: Vec<usize> = (0..items.len()).collect();
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(d.split.seed);
    order.shuffle(&mut rng);
    let n = items.len();
    let share = |on: bool, s: f64| {
        if on {
            (s * n as f64).round() as usize
        } else {
            0
        }
    };
    let (n_dev, n_test) = (share(need_dev, d.split.dev), share(need_test, d.split.test));
    if n_dev + n_test >= n {
        return Err(Error::Input(format!(
            "{}: {n} distinct inputs left after cleaning, too few to hold out {n_dev} for dev and {n_test} for test",
            d.train.display()
        )));
    }
    let mut role = vec![0u8; n];
    for &i in &order[..n_dev] {
        role[i] = 1;
    }
    for &i in &order[n_dev..n_dev + n_test] {
        role[i] = 2;
    }
    report.split_inputs = (n_dev, n_test);
    let (mut train, mut dev_split, mut test_split) = (Vec::new(), Vec::new(), Vec::new());
    for (item, r) in items.drain(..).zip(role) {
        match r {
            1 => dev_split.push(item),
            2 => test_split.push(item),
            _ => train.extend(item.references.into_iter().map(|t| Row {
                input: item.input.clone(),
                target: t,
            })),
        }
    }
    let dev = match dev_rows {
        Some(rows) => group(rows),
        None => dev_split,
    };
    if need_test {
        test_now = Some(test_split);
    }
    let (test_inputs, test_refs) = match (test_now, test_given_inputs) {
        (Some(items), _) => {
            let refs_path = files.test_references();
            let lists: Vec<&Vec<String>> = items.iter().map(|i| &i.references).collect();
            write_jsonl(&refs_path, &lists)?;
            (
                items
                    .into_iter()
                    .map(|i| clean_input(i.input))
                    .collect::<Vec<_>>(),
                RefSource::Stored(refs_path),
            )
        }
        (None, Some(inputs)) => {
            let refs = d
                .test
                .as_ref()
                .and_then(|t| t.references.clone())
                .expect("checked: inputs come with references");
            (
                inputs.into_iter().map(clean_input).collect(),
                RefSource::Given(refs),
            )
        }
        (None, None) => unreachable!("a test set is given or split off"),
    };
    if train.is_empty() {
        return Err(Error::Input(format!(
            "{}: no training rows left after cleaning (see {})",
            d.train.display(),
            qpath.display()
        )));
    }
    quarantine.out.flush().map_err(|e| Error::io(&qpath, e))?;
    report.quarantined = quarantine.count;
    report.train_rows = train.len();
    report.dev_items = dev.len();
    report.dev_references = dev.iter().map(|i| i.references.len()).sum();
    report.test_items = test_inputs.len();
    write_jsonl(&files.train(), &train)?;
    write_jsonl(&files.dev(), &dev)?;
    write_lines(&files.test_inputs(), &test_inputs)?;
    write_json(&files.report(), &report)?;
    Ok(Prepared {
        train,
        dev,
        test_inputs,
        test_refs,
        report,
    })
}
