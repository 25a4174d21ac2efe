//! The committed subset of the golden values (first 40 E2E lines of `tgen`), checked
//! whether or not `shared/` is present, so the suite always asserts something.

use autoglm_eval::{
    Bleu, BleuConfig, Chrf, ChrfConfig, Metric, RougeConfig, RougeScorer, RougeType, Ter, TerConfig,
};
use serde_json::Value;

use crate::util::Checker;

const FIXTURE: &str = include_str!("../data/e2e-tgen-40.sacrebleu-2.6.0.rouge-score-0.1.2.jsonl");

#[test]
fn committed_fixture_matches_references() {
    let bleu = Bleu::new(BleuConfig::sentence()).expect("config");
    let chrf = Chrf::new(ChrfConfig::default()).expect("config");
    let chrfpp = Chrf::new(ChrfConfig::plus_plus()).expect("config");
    let ter = Ter::new(TerConfig::default());
    let mut ck = Checker::default();
    for (i, line) in FIXTURE.lines().enumerate() {
        let v: Value = serde_json::from_str(line).expect("fixture line");
        let hyp = v["hyp"].as_str().expect("hyp");
        let refs: Vec<&str> = v["refs"]
            .as_array()
            .expect("refs")
            .iter()
            .map(|r| r.as_str().expect("str"))
            .collect();
        let s = bleu.line_stats(hyp, &refs).expect("refs");
        ck.val(
            || format!("line{i}/bleu"),
            bleu.sentence_score_from(&s).score,
            &v["sentence_bleu_13a"],
            1e-9,
        );
        let s = chrf.line_stats(hyp, &refs).expect("refs");
        ck.val(
            || format!("line{i}/chrf"),
            chrf.sentence_score_from(&s).score,
            &v["chrf"],
            1e-9,
        );
        let s = chrfpp.line_stats(hyp, &refs).expect("refs");
        ck.val(
            || format!("line{i}/chrf++"),
            chrfpp.sentence_score_from(&s).score,
            &v["chrf++"],
            1e-9,
        );
        let s = ter.line_stats(hyp, &refs).expect("refs");
        ck.val(
            || format!("line{i}/ter"),
            ter.sentence_score_from(&s).score,
            &v["ter"],
            1e-9,
        );
        for (st, stem) in [("nostem", false), ("stem", true)] {
            let sc = RougeScorer::new(
                &RougeType::STANDARD,
                RougeConfig::default().with_stemmer(stem),
            )
            .expect("types");
            for mode in ["first_ref", "multi_max"] {
                let got = if mode == "first_ref" {
                    sc.score(refs[0], hyp)
                } else {
                    sc.score_multi(&refs, hyp).expect("refs")
                };
                let want = &v[format!("rouge/{st}/{mode}")];
                for (k, t) in ["rouge1", "rouge2", "rougeL", "rougeLsum"]
                    .iter()
                    .enumerate()
                {
                    ck.val(
                        || format!("line{i}/{st}/{mode}/{t}/p"),
                        got[k].precision,
                        &want[t][0],
                        1e-9,
                    );
                    ck.val(
                        || format!("line{i}/{st}/{mode}/{t}/r"),
                        got[k].recall,
                        &want[t][1],
                        1e-9,
                    );
                    ck.val(
                        || format!("line{i}/{st}/{mode}/{t}/f"),
                        got[k].fmeasure,
                        &want[t][2],
                        1e-9,
                    );
                }
            }
        }
    }
    ck.finish("fixture");
}
