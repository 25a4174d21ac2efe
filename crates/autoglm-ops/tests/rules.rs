//! Every built-in rule passes the automatic verifier, in f32 and in bf16/f16.

use autoglm_graph::{builtin_rules, DType, Rule};
use autoglm_ops::{verify_rule, Registry, VerifyOptions};

#[test]
fn every_builtin_rule_verifies_by_execution() {
    let reg = Registry::with_cpu_kernels();
    let opts = VerifyOptions {
        dtypes: vec![DType::F32, DType::BF16],
        ..VerifyOptions::default()
    };
    for rule in builtin_rules() {
        for c in verify_rule(&rule, &reg, &opts).unwrap_or_else(|e| panic!("{e}")) {
            assert!(c.passed, "{c:?}");
            assert!(c.instances >= 2, "{c:?}");
            if c.dtype == DType::F32 {
                assert!(c.max_rel_err < 1e-5, "{c:?}");
            }
            eprintln!(
                "{:24} {:4} {} instances, max |Δ| {:.1e}, rel {:.1e} ({})",
                c.rule, c.dtype, c.instances, c.max_abs_err, c.max_rel_err, c.example
            );
        }
    }
}

#[test]
fn a_wrong_rule_fails_verification() {
    let reg = Registry::with_cpu_kernels();
    // tanh is not the GELU.
    let bad = Rule::parse("bad: (gelu ?x) => (tanh ?x)").unwrap();
    let c = verify_rule(&bad, &reg, &VerifyOptions::default()).unwrap();
    assert!(!c[0].passed, "{c:?}");
    // A subtly wrong constant is caught too.
    let bad =
        Rule::parse("bad_eps: (layer_norm ?x ?g ?b ?e) => (layer_norm ?x ?g ?b 0.5)").unwrap();
    let c = verify_rule(&bad, &reg, &VerifyOptions::default()).unwrap();
    assert!(!c[0].passed, "{c:?}");
    // A rule that can never fire is an error naming it.
    let never = Rule::parse("never: (exp ?x) => (log ?x) if (< 1 0)").unwrap();
    let e = verify_rule(&never, &reg, &VerifyOptions::default()).unwrap_err();
    assert!(e.to_string().contains("never"), "{e}");
}
