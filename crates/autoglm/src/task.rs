//! The YAML task: what to learn from which data, how to clean it, what to search and
//! within which budget. Strict: an unknown key is an error naming its line and
//! column; relative paths resolve against the YAML file's directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::clean::Rule;
use crate::error::{Error, Result};
use crate::space::{HyperSpace, ModelSpace, SearchConfig};
use crate::tokenizer::TokenizerConfig;

/// A task, as written in `task.yaml`.
///
/// ```
/// let task = autoglm::Task::from_yaml_str(
///     "name: demo
/// data:
///   input: mr
///   target: ref
///   train: train.jsonl
///   split: {dev: 0.1, test: 0.1}
/// cleaning:
///   - normalize: nfkc
///   - whitespace: collapse
///   - required: [input, target]
/// ",
///     std::path::Path::new("/data/tasks"),
/// )?;
/// assert_eq!(task.data.train, std::path::Path::new("/data/tasks/train.jsonl"));
/// assert_eq!(task.cleaning.len(), 3);
/// # Ok::<(), autoglm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// A name for the run (the default output directory is `runs/NAME`).
    #[serde(default = "default_name")]
    pub name: String,
    /// Where the examples come from.
    pub data: DataConfig,
    /// Cleaning rules, applied in order to every training and dev row.
    #[serde(default)]
    pub cleaning: Vec<Rule>,
    /// The tokenizer: trained on the training split (default) or loaded.
    #[serde(default)]
    pub tokenizer: TokenizerConfig,
    /// The structure search space.
    #[serde(default)]
    pub model: ModelSpace,
    /// The training hyperparameter search space.
    #[serde(default)]
    pub training: HyperSpace,
    /// Sampler, pruner, metric, budget, decoding.
    #[serde(default)]
    pub search: SearchConfig,
    /// Where the results go (default `runs/NAME` beside the YAML file).
    #[serde(default)]
    pub output: Option<PathBuf>,
    /// What the run exports beside the f32 model.
    #[serde(default)]
    pub export: ExportConfig,
}

/// What `autoglm run` exports beside the f32 model (`model/`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// Storage types of quantized copies (`f16`, `bf16`, `q8_0`, `q4_0`; `q8`, `q4`
    /// accepted), each written to `model-STORAGE/` and scored on dev and test.
    #[serde(default)]
    pub quantize: Vec<String>,
    /// `awq` (the default: calibrated on training rows) or `rtn` (round to nearest),
    /// for the block formats.
    #[serde(default)]
    pub method: Option<String>,
    /// Training rows the calibration runs on (default
    /// [`crate::DEFAULT_CALIBRATION_ROWS`]).
    #[serde(default)]
    pub calibration_rows: Option<usize>,
}

impl ExportConfig {
    /// The storage types asked for.
    ///
    /// # Errors
    /// [`Error::Task`] naming the entry that is not a storage type.
    pub fn storages(&self) -> Result<Vec<autoglm_ops::Storage>> {
        self.quantize
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.parse()
                    .map_err(|e| Error::Task(format!("export.quantize[{i}]: {e}")))
            })
            .collect()
    }

    /// The quantization method.
    ///
    /// # Errors
    /// [`Error::Task`] for a method other than `rtn` or `awq`.
    pub fn method(&self) -> Result<autoglm_models::quantize::Method> {
        self.method
            .as_deref()
            .unwrap_or("awq")
            .parse()
            .map_err(|e| Error::Task(format!("export.method: {e}")))
    }
}

fn default_name() -> String {
    "task".into()
}

/// The data sources and their field mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// File format of every source (default: from each file's extension, `.jsonl` /
    /// `.json` or `.csv`).
    #[serde(default)]
    pub format: Option<Format>,
    /// The field (JSONL key or CSV column) holding the input.
    pub input: String,
    /// The field holding the target text.
    pub target: String,
    /// Training rows.
    pub train: PathBuf,
    /// Dev rows (rows with equal input form one multi-reference item); without it, a
    /// `split.dev` share of the training rows.
    #[serde(default)]
    pub dev: Option<PathBuf>,
    /// The test set; without it, a `split.test` share of the training rows.
    #[serde(default)]
    pub test: Option<TestSource>,
    /// Shares of the training rows held out where `dev` or `test` is not given.
    #[serde(default)]
    pub split: Split,
    /// What a row that cannot be read does: stop with an error naming file and line
    /// (default), or go to the quarantine.
    #[serde(default)]
    pub on_malformed: OnMalformed,
}

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
}

impl Format {
    /// The format of `path`: `format` if given, else from its extension.
    ///
    /// # Errors
    /// [`Error::Task`] for an extension that names no format.
    pub fn of(path: &Path, format: Option<Format>) -> Result<Format> {
        if let Some(f) = format {
            return Ok(f);
        }
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "json" | "ndjson") => Ok(Format::Jsonl),
            Some("csv") => Ok(Format::Csv),
            _ => Err(Error::Task(format!(
                "{}: cannot tell the format from the extension; set data.format (jsonl or csv)",
                path.display()
            ))),
        }
    }
}

/// A test set: a file of rows like the training data, or one input per line with
/// a JSONL file of reference lists (one JSON array of strings per line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSource {
    /// Rows with the input and target fields (grouped by input).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// One input per line.
    #[serde(default)]
    pub inputs: Option<PathBuf>,
    /// One JSON array of reference strings per line, aligned with `inputs`.
    #[serde(default)]
    pub references: Option<PathBuf>,
}

/// Shares held out of the training rows (by a seeded shuffle of the distinct inputs,
/// so that no input is in two splits).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    /// Share of the inputs for dev, when no dev file is given.
    #[serde(default = "default_share")]
    pub dev: f64,
    /// Share of the inputs for test, when no test set is given.
    #[serde(default = "default_share")]
    pub test: f64,
    /// Seed of the shuffle.
    #[serde(default)]
    pub seed: u64,
}

fn default_share() -> f64 {
    0.1
}

impl Default for Split {
    fn default() -> Self {
        Split {
            dev: default_share(),
            test: default_share(),
            seed: 0,
        }
    }
}

/// What to do with a row that cannot be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMalformed {
    /// Stop with an error naming the file and line.
    #[default]
    Error,
    /// Send it to the quarantine (rule `malformed`) and go on.
    Quarantine,
}

impl Task {
    /// Reads a task file; relative paths resolve against its directory.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file; [`Error::Task`] naming the file, line and
    /// column of a YAML or schema error, or what is inconsistent.
    pub fn from_yaml_file(path: &Path) -> Result<Task> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Task::from_yaml_str(&text, base).map_err(|e| match e {
            Error::Task(m) => Error::Task(format!("{}: {m}", path.display())),
            e => e,
        })
    }

    /// Parses a task; relative paths resolve against `base`.
    ///
    /// # Errors
    /// [`Error::Task`] naming the line and column of a YAML or schema error, or what
    /// is inconsistent.
    pub fn from_yaml_str(text: &str, base: &Path) -> Result<Task> {
        let mut task: Task =
            serde_saphyr::from_str(text).map_err(|e| Error::Task(e.to_string()))?;
        task.resolve(base);
        task.check()?;
        Ok(task)
    }

    fn resolve(&mut self, base: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        let d = &mut self.data;
        abs(&mut d.train);
        if let Some(p) = &mut d.dev {
            abs(p);
        }
        if let Some(t) = &mut d.test {
            for p in [&mut t.file, &mut t.inputs, &mut t.references]
                .into_iter()
                .flatten()
            {
                abs(p);
            }
        }
        if let Some(p) = &mut self.tokenizer.path {
            abs(p);
        }
        if let Some(p) = &mut self.model.checkpoint {
            abs(p);
        }
        for p in &mut self.search.warm_start {
            abs(p);
        }
        if let Some(p) = &mut self.search.artifacts {
            abs(p);
        }
        if let Some(st) = &mut self.search.storage {
            if !st.contains("://") && Path::new(st.as_str()).is_relative() {
                *st = base.join(st.as_str()).to_string_lossy().into_owned();
            }
        }
        match &mut self.output {
            Some(p) => abs(p),
            None => self.output = Some(base.join("runs").join(&self.name)),
        }
    }

    fn check(&self) -> Result<()> {
        self.export.storages()?;
        self.export.method()?;
        if self.export.calibration_rows == Some(0) {
            return Err(Error::Task(
                "export.calibration_rows: 0 rows cannot calibrate".into(),
            ));
        }
        let d = &self.data;
        let share = |s: f64, what: &str| {
            if (0.0..1.0).contains(&s) {
                Ok(())
            } else {
                Err(Error::Task(format!(
                    "data.split.{what}: {s} is not a share in [0, 1)"
                )))
            }
        };
        share(d.split.dev, "dev")?;
        share(d.split.test, "test")?;
        let held = if d.dev.is_none() { d.split.dev } else { 0.0 }
            + if d.test.is_none() { d.split.test } else { 0.0 };
        if held >= 1.0 {
            return Err(Error::Task(format!(
                "data.split: dev and test take {held} of the training rows, none would be left"
            )));
        }
        if d.input == d.target {
            return Err(Error::Task(format!(
                "data.input and data.target are both '{}'",
                d.input
            )));
        }
        if let Some(t) = &d.test {
            match (&t.file, &t.inputs, &t.references) {
                (Some(_), None, None) | (None, Some(_), Some(_)) => {}
                _ => {
                    return Err(Error::Task(
                        "data.test: give either `file`, or both `inputs` and `references`".into(),
                    ))
                }
            }
        }
        for r in &self.cleaning {
            r.check()?;
        }
        crate::space::check(&self.model, &self.training, &self.search)
    }

    /// The output directory.
    pub fn output_dir(&self) -> &Path {
        self.output.as_deref().unwrap_or(Path::new("runs"))
    }
}
