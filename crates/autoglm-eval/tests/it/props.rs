//! Property tests: invariants that hold for any input.

use autoglm_eval::{
    sentence_bleu, sentence_chrf, sentence_ter, BleuConfig, ChrfConfig, RougeConfig, RougeScorer,
    RougeType, TerConfig, Tokenizer,
};
use proptest::prelude::*;

/// Text made of words, punctuation, CJK, emoji, digits with separators and odd whitespace.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z]{1,8}",
        "[0-9]{1,3}([.,][0-9]{3})?",
        Just(".".to_owned()),
        Just(",".to_owned()),
        Just("-".to_owned()),
        Just("'s".to_owned()),
        Just("&amp;".to_owned()),
        Just("中文".to_owned()),
        Just("😀".to_owned()),
        Just("«»".to_owned()),
        Just("\u{a0}".to_owned()),
        Just("\t".to_owned()),
        "[\\PC]{1,3}",
    ];
    prop::collection::vec((piece, prop_oneof![Just(" "), Just(""), Just("  ")]), 0..25)
        .prop_map(|v| v.into_iter().map(|(p, s)| format!("{p}{s}")).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn hypothesis_equal_to_reference_scores_perfectly(s in text()) {
        for tok in Tokenizer::ALL {
            let cfg = BleuConfig::sentence().with_tokenize(tok);
            let b = sentence_bleu(&s, &[&s], &cfg).unwrap();
            prop_assert!(b.score == 0.0 || (b.score - 100.0).abs() < 1e-9, "{tok}: {b:?}");
            if b.sys_len > 0 { prop_assert!((b.score - 100.0).abs() < 1e-9); }
        }
        let c = sentence_chrf(&s, &[&s], &ChrfConfig::plus_plus()).unwrap();
        prop_assert!(c.score == 0.0 || (c.score - 100.0).abs() < 1e-9);
        prop_assert_eq!(sentence_ter(&s, &[&s], &TerConfig::default()).unwrap().score, 0.0);
        let r = RougeScorer::new(&RougeType::STANDARD, RougeConfig::default().with_stemmer(true)).unwrap();
        for sc in r.score(&s, &s) {
            prop_assert!(sc.fmeasure == 0.0 || sc.fmeasure == 1.0);
        }
    }

    #[test]
    fn scores_stay_in_range(h in text(), r1 in text(), r2 in text()) {
        for tok in Tokenizer::ALL {
            let b = sentence_bleu(&h, &[&r1, &r2], &BleuConfig::sentence().with_tokenize(tok)).unwrap();
            prop_assert!((0.0..=100.0 + 1e-9).contains(&b.score));
        }
        let c = sentence_chrf(&h, &[&r1, &r2], &ChrfConfig::default()).unwrap();
        prop_assert!((0.0..=100.0 + 1e-9).contains(&c.score));
        prop_assert!(sentence_ter(&h, &[&r1, &r2], &TerConfig::default()).unwrap().score >= 0.0);
    }

    #[test]
    fn more_references_never_hurt(h in text(), r1 in text(), r2 in text()) {
        // Multi-reference metrics take the best reference (or the max counts):
        // adding a reference cannot lower chrF or ROUGE, nor raise TER edits.
        let c1 = sentence_chrf(&h, &[&r1], &ChrfConfig::default()).unwrap().score;
        let c2 = sentence_chrf(&h, &[&r1, &r2], &ChrfConfig::default()).unwrap().score;
        prop_assert!(c2 >= c1);
        let t1 = sentence_ter(&h, &[&r1], &TerConfig::default()).unwrap();
        let t2 = sentence_ter(&h, &[&r1, &r2], &TerConfig::default()).unwrap();
        prop_assert!(t2.num_edits <= t1.num_edits);
        let r = RougeScorer::new(&RougeType::STANDARD, RougeConfig::default()).unwrap();
        let a = r.score_multi(&[&r1], &h).unwrap();
        let b = r.score_multi(&[&r1, &r2], &h).unwrap();
        for (x, y) in a.iter().zip(&b) { prop_assert!(y.fmeasure >= x.fmeasure); }
    }

    #[test]
    fn rouge_n_is_symmetric_in_f(a in text(), b in text()) {
        // Swapping target and prediction swaps precision and recall; F is unchanged.
        let r = RougeScorer::new(&[RougeType::N(1), RougeType::N(2), RougeType::L], RougeConfig::default()).unwrap();
        let x = r.score(&a, &b);
        let y = r.score(&b, &a);
        for (s, t) in x.iter().zip(&y) {
            prop_assert!((s.fmeasure - t.fmeasure).abs() < 1e-12);
            prop_assert!((s.precision - t.recall).abs() < 1e-12);
        }
    }

    #[test]
    fn fuzz_checks_hold(h in text(), r in text()) {
        let data = format!("{h}\0{r}");
        autoglm_eval::fuzz::check_tokenizers(data.as_bytes());
        autoglm_eval::fuzz::check_metrics(data.as_bytes());
    }
}

fn naive_lcs(a: &[String], b: &[String]) -> usize {
    let mut t = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            t[i][j] = if a[i - 1] == b[j - 1] {
                t[i - 1][j - 1] + 1
            } else {
                t[i - 1][j].max(t[i][j - 1])
            };
        }
    }
    t[a.len()][b.len()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn rouge_l_matches_the_textbook_lcs(a in prop::collection::vec("[a-e]", 0..200), b in prop::collection::vec("[a-f]", 0..200)) {
        // The scorer uses a bit-parallel LCS (several 64-bit words past 64 tokens).
        let r = RougeScorer::new(&[RougeType::L, RougeType::LSum], RougeConfig::default()).unwrap();
        let s = r.score(&a.join(" "), &b.join(" "));
        let l = naive_lcs(&a, &b);
        if a.is_empty() || b.is_empty() {
            prop_assert_eq!(s[0].recall, 0.0);
        } else {
            prop_assert_eq!(s[0].recall, l as f64 / a.len() as f64);
            prop_assert_eq!(s[0].precision, l as f64 / b.len() as f64);
        }
        prop_assert_eq!(s[0], s[1]); // one sentence each: ROUGE-Lsum equals ROUGE-L
    }
}
