#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod bleu;
mod chrf;
mod error;
pub mod fuzz;
mod metric;
mod porter;
mod rouge;
mod signature;
mod significance;
mod ter;
pub mod text;
mod tokenize;

pub use bleu::{
    corpus_bleu, sentence_bleu, Bleu, BleuConfig, BleuRefs, BleuScore, BleuStats, Smooth,
    MAX_NGRAM_ORDER,
};
pub use chrf::{corpus_chrf, sentence_chrf, Chrf, ChrfConfig, ChrfRefs, ChrfScore, ChrfStats};
pub use error::{Error, Result};
#[cfg(feature = "rayon")]
pub use metric::score_corpus_par;
pub use metric::{prepare_all, score_corpus, score_systems, Corpus, Metric};
pub use porter::porter_stem;
pub use rouge::{
    bootstrap_aggregate, rouge_tokenize, AggregateScore, RougeConfig, RougeScore, RougeScorer,
    RougeTargets, RougeTokenizer, RougeType,
};
pub use signature::{
    NumRefs, Signature, AUTOGLM_EVAL_VERSION, ROUGE_SCORE_VERSION, SACREBLEU_VERSION,
};
pub use significance::{
    paired_approximate_randomization, paired_approximate_randomization_mean, paired_bootstrap,
    paired_bootstrap_mean, PairedResult, PairedTest, Seed,
};
pub use ter::{corpus_ter, sentence_ter, Ter, TerConfig, TerRefs, TerScore, TerStats};
pub use tokenize::Tokenizer;
