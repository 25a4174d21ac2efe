//! The layout of a run's output directory, in one place: every file `autoglm run`
//! reads or writes there is named here, and nowhere else.
//!
//! ```text
//! OUTPUT/
//!   data/            cleaned splits (DataDir)
//!   tokenizer.json   the task's tokenizer
//!   study.jsonl      the search's journal (rerunning continues it)
//!   trials/N/stable  a multi-fidelity trial's checkpoint at its last rung (removed
//!                    once the trial is finished)
//!   extension.json   the incumbent's extension to the time budget (multi-fidelity)
//!   best/            the best trial's model so far (config, weights, tokenizer,
//!                    trial.json, dev_outputs.txt); written as .best.tmp, then renamed
//!   predictions/test.txt
//!   scores.json      dev/test scores of the chosen model and of the baseline
//!   report.html
//!   model/           the export (Hugging Face layout)
//!   baseline/        optional: another run of the same task (random search, say;
//!                    a link or a copy), drawn beside the report's anytime curve
//! ```
//!
//! ```
//! use autoglm::RunDir;
//! let run = RunDir::new("runs/quickstart");
//! assert_eq!(run.journal(), std::path::Path::new("runs/quickstart/study.jsonl"));
//! assert_eq!(run.data().quarantine(), std::path::Path::new("runs/quickstart/data/quarantine.jsonl"));
//! ```

use std::path::{Path, PathBuf};

/// A run's output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> RunDir {
        RunDir { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Cleaned data: `data/`.
    pub fn data(&self) -> DataDir {
        DataDir::new(self.root.join("data"))
    }

    /// The task's tokenizer: `tokenizer.json`.
    pub fn tokenizer(&self) -> PathBuf {
        self.root.join("tokenizer.json")
    }

    /// The search's journal: `study.jsonl`.
    pub fn journal(&self) -> PathBuf {
        self.root.join("study.jsonl")
    }

    /// Trial `number`'s checkpoint in the constant-rate phase of a multi-fidelity
    /// search: `trials/N/stable`.
    pub fn trial_checkpoint(&self, number: u64) -> PathBuf {
        self.trial_dir(number).join("stable")
    }

    /// Trial `number`'s directory: `trials/N`.
    pub fn trial_dir(&self, number: u64) -> PathBuf {
        self.root.join("trials").join(number.to_string())
    }

    /// What the extension of a multi-fidelity search's incumbent ran:
    /// `extension.json`.
    pub fn extension(&self) -> PathBuf {
        self.root.join("extension.json")
    }

    /// Another run of the same task to compare with, when one is put there (a link
    /// or a copy): `baseline/`. The report draws its incumbent beside the anytime
    /// curve.
    pub fn baseline(&self) -> RunDir {
        RunDir::new(self.root.join("baseline"))
    }

    /// The best trial's model: `best/` (a Hugging Face directory with `trial.json`
    /// and `dev_outputs.txt` beside the weights).
    pub fn best(&self) -> PathBuf {
        self.root.join("best")
    }

    /// Where the next best model is written before it replaces `best/`.
    pub fn best_staging(&self) -> PathBuf {
        self.root.join(".best.tmp")
    }

    /// The best trial's number and settings: `best/trial.json`.
    pub fn best_trial(&self) -> PathBuf {
        self.best().join(BEST_TRIAL)
    }

    /// The chosen model's test outputs: `predictions/test.txt`.
    pub fn test_predictions(&self) -> PathBuf {
        self.root.join("predictions").join("test.txt")
    }

    /// Dev and test scores: `scores.json`.
    pub fn scores(&self) -> PathBuf {
        self.root.join("scores.json")
    }

    /// The HTML report: `report.html`.
    pub fn report(&self) -> PathBuf {
        self.root.join("report.html")
    }

    /// The exported model: `model/`.
    pub fn model(&self) -> PathBuf {
        self.root.join("model")
    }
}

/// In `best/` (and its staging copy): the trial's number and settings.
pub(crate) const BEST_TRIAL: &str = "trial.json";
/// In `best/`: the trial's outputs on the search's dev inputs.
pub(crate) const BEST_DEV_OUTPUTS: &str = "dev_outputs.txt";
/// In a model directory: the structure.
pub(crate) const MODEL_CONFIG: &str = "config.json";
/// In a model directory: the weights.
pub(crate) const MODEL_WEIGHTS: &str = "model.safetensors";
/// In a model directory: the tokenizer.
pub(crate) const MODEL_TOKENIZER: &str = "tokenizer.json";
/// In an exported model directory: transformers' decoding settings.
pub(crate) const MODEL_GENERATION_CONFIG: &str = "generation_config.json";
/// In an exported model directory: the task, best trial, scores and history.
pub(crate) const MODEL_AUTOGLM: &str = "autoglm.json";

/// The cleaned data of a run: the splits, the quarantine and the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Cleaned training rows: `train.jsonl`.
    pub fn train(&self) -> PathBuf {
        self.root.join("train.jsonl")
    }

    /// Dev items (input and references): `dev.jsonl`.
    pub fn dev(&self) -> PathBuf {
        self.root.join("dev.jsonl")
    }

    /// Test inputs, one a line: `test_inputs.txt`.
    pub fn test_inputs(&self) -> PathBuf {
        self.root.join("test_inputs.txt")
    }

    /// Test references held out of the training file: `test_references.jsonl`.
    pub fn test_references(&self) -> PathBuf {
        self.root.join("test_references.jsonl")
    }

    /// Rejected rows, each with the rule that rejected it: `quarantine.jsonl`.
    pub fn quarantine(&self) -> PathBuf {
        self.root.join("quarantine.jsonl")
    }

    /// Counts of what cleaning did: `report.json`.
    pub fn report(&self) -> PathBuf {
        self.root.join("report.json")
    }
}
