//! Entry points for the fuzz targets in `fuzz/` (hidden from the docs; they live here
//! so that ordinary builds type-check them).
#![doc(hidden)]

use crate::{
    Bleu, BleuConfig, Chrf, ChrfConfig, Metric, RougeConfig, RougeScorer, RougeTokenizer,
    RougeType, Ter, TerConfig, Tokenizer,
};

/// Splits fuzz input into a hypothesis and references at NUL bytes.
fn split(data: &[u8]) -> Option<(String, Vec<String>)> {
    let s = std::str::from_utf8(data).ok()?;
    let mut parts = s.split('\0');
    let hyp = parts.next()?.to_owned();
    let refs: Vec<String> = parts.map(str::to_owned).collect();
    if refs.is_empty() {
        return None;
    }
    Some((hyp, refs))
}

/// Every tokenizer on arbitrary UTF-8: no panic, and normalised output.
pub fn check_tokenizers(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    for t in Tokenizer::ALL {
        let out = t.tokenize(s);
        // Every tokenizer but `none` and `char` returns tokens joined by single spaces.
        if !matches!(t, Tokenizer::None | Tokenizer::Char) {
            assert_eq!(out, crate::text::collapse_whitespace(&out), "{t}");
        }
    }
    for tok in [RougeTokenizer::Default, RougeTokenizer::Cjk] {
        for stem in [false, true] {
            let cfg = RougeConfig::default()
                .with_stemmer(stem)
                .with_tokenizer(tok);
            for w in crate::rouge_tokenize(s, &cfg) {
                assert!(!w.is_empty());
            }
        }
    }
}

/// Every metric on arbitrary hypothesis/references: no panic, scores in range.
pub fn check_metrics(data: &[u8]) {
    let Some((hyp, refs)) = split(data) else {
        return;
    };
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    for tok in Tokenizer::ALL {
        let bleu = Bleu::new(BleuConfig::sentence().with_tokenize(tok)).expect("valid config");
        let s = bleu.sentence_score_from(&bleu.line_stats(&hyp, &refs).expect("refs"));
        assert!((0.0..=100.0 + 1e-9).contains(&s.score), "{s:?}");
    }
    let chrf = Chrf::new(ChrfConfig::plus_plus()).expect("valid config");
    let s = chrf.sentence_score_from(&chrf.line_stats(&hyp, &refs).expect("refs"));
    assert!((0.0..=100.0 + 1e-9).contains(&s.score), "{s:?}");
    if hyp.len() + refs.iter().map(|r| r.len()).sum::<usize>() < 2000 {
        let ter = Ter::new(
            TerConfig::default()
                .with_normalized(true)
                .with_asian_support(true),
        );
        let s = ter.sentence_score_from(&ter.line_stats(&hyp, &refs).expect("refs"));
        assert!(s.score >= 0.0);
    }
    let rouge = RougeScorer::new(
        &RougeType::STANDARD,
        RougeConfig::default().with_stemmer(true),
    )
    .expect("types given");
    for s in rouge.score_multi(&refs, &hyp).expect("refs") {
        assert!((0.0..=1.0).contains(&s.fmeasure), "{s:?}");
    }
}
