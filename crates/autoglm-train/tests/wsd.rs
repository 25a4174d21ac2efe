//! Warmup–stable–decay continuation (issue 25's training side): a run that scores
//! rungs on cooldown branches and continues its stable phase in between ends with the
//! weights and the loss curve of a run trained straight through, bit for bit — in
//! memory, through a checkpoint resumed in a fresh trainer, and through a `TrainRun`
//! directory reopened after the rung.

use std::collections::BTreeMap;
use std::path::PathBuf;

use autoglm_graph::DType;
use autoglm_ops::Tensor;
use autoglm_train::{
    Control, Dataset, DecayShape, LossRecord, RunOptions, Schedule, StepReport, TrainConfig,
    TrainRun, Trainer,
};

mod common;

fn model() -> PathBuf {
    common::fixture("glm_gqa_bias")
}

fn dataset(n: usize, seed: u64) -> Dataset {
    common::dataset(n, 320, seed)
}

/// A WSD run planned as `steps` steps, the last `decay_steps` of them cooldown.
fn config(steps: u64, decay_steps: u64, dtype: DType) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 3,
        grad_accum: 2,
        lr: 3e-3,
        schedule: Schedule::Wsd,
        warmup_steps: 2,
        decay_steps,
        decay_shape: DecayShape::OneMinusSqrt,
        min_lr_ratio: 0.1,
        shuffle: true,
        seed: 7,
        dtype,
        ..TrainConfig::default()
    }
}

/// Every weight's bits, by name.
fn bits(w: &BTreeMap<String, Tensor>) -> BTreeMap<String, Vec<u32>> {
    w.iter()
        .map(|(n, t)| {
            let x = t.as_f32().expect("f32 master weights");
            (n.clone(), x.iter().map(|v| v.to_bits()).collect())
        })
        .collect()
}

/// What a step did, bit for bit: step, loss, rate, gradient norm.
fn curve(reports: &[StepReport]) -> Vec<(u64, u64, u64, u64)> {
    reports
        .iter()
        .map(|r| {
            (
                r.step,
                r.loss.to_bits(),
                r.lr.to_bits(),
                r.grad_norm.to_bits(),
            )
        })
        .collect()
}

fn fit_to(t: &mut Trainer, data: &Dataset, until: u64) -> Vec<StepReport> {
    let mut out = Vec::new();
    t.fit_to(data, until, |_, r| {
        out.push(*r);
        Ok(Control::Continue)
    })
    .unwrap();
    out
}

/// The straight run: 16 stable steps (2 of warm-up), then a cooldown of 4.
struct Straight {
    reports: Vec<StepReport>,
    weights: BTreeMap<String, Vec<u32>>,
}

fn straight(data: &Dataset, dtype: DType) -> Straight {
    let mut b = Trainer::from_pretrained(&model(), config(20, 4, dtype)).unwrap();
    let reports = fit_to(&mut b, data, u64::MAX);
    assert_eq!(reports.len(), 20);
    Straight {
        reports,
        weights: bits(&b.weights()),
    }
}

/// From a trainer in the stable phase at step 8 (planned 8 + 2): the rung's cooldown
/// branch of 2 (its dev loss evaluated and thrown away), the stable phase continued to
/// 16, and the last cooldown branch of 4. Returns the main line's reports from step 9
/// on, the final branch's reports and weights.
fn rungs_from_8(
    a: &mut Trainer,
    data: &Dataset,
    dev: &Dataset,
) -> (Vec<StepReport>, Vec<StepReport>, BTreeMap<String, Vec<u32>>) {
    assert_eq!(a.steps_done(), 8);
    let at_8 = bits(&a.weights());
    let stable_dev = a.eval_loss(dev).unwrap();
    let (cooled_dev, branch) = a
        .cooldown_branch(2, data, |t, reports| {
            assert_eq!(t.steps_done(), 10);
            assert_ne!(bits(&t.weights()), at_8, "the branch trained nothing");
            Ok((t.eval_loss(dev)?, reports.to_vec()))
        })
        .unwrap();
    // The rung's cooldown ran at falling rates, from the peak down.
    assert_eq!(branch.len(), 2);
    assert!(
        branch[0].lr == 3e-3 && branch[1].lr < branch[0].lr,
        "{branch:?}"
    );
    assert!(cooled_dev.is_finite() && cooled_dev != stable_dev);
    // And left nothing behind: the weights, the step, the plan are as they were.
    assert_eq!(a.steps_done(), 8);
    assert_eq!(bits(&a.weights()), at_8, "the branch was not undone");
    assert_eq!((a.config().steps, a.config().decay_steps), (10, 2));
    assert_eq!(a.eval_loss(dev).unwrap().to_bits(), stable_dev.to_bits());

    // Promoted: the stable phase continues to 16, with a cooldown of 4 after it.
    a.plan_cooldown(16, 4).unwrap();
    let main = fit_to(a, data, 16);
    assert_eq!(a.steps_done(), 16);
    let (weights, last) = a
        .cooldown_branch(4, data, |t, reports| {
            Ok((bits(&t.weights()), reports.to_vec()))
        })
        .unwrap();
    assert_eq!(a.steps_done(), 16);
    (main, last, weights)
}

#[test]
fn rungs_on_cooldown_branches_end_as_the_straight_run_bit_for_bit() {
    let data = dataset(10, 12345);
    let dev = dataset(7, 999);
    for dtype in [DType::F32, DType::F16] {
        let b = straight(&data, dtype);
        // The cooldown is where the plans differ: a plan one step shorter gives other
        // weights (the comparisons below can fail).
        let mut other = Trainer::from_pretrained(&model(), config(19, 3, dtype)).unwrap();
        fit_to(&mut other, &data, u64::MAX);
        assert_ne!(bits(&other.weights()), b.weights, "{dtype:?}");

        // Run A, in memory: planned 8 + 2 at first.
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("checkpoint-8");
        let mut a = Trainer::from_pretrained(&model(), config(10, 2, dtype)).unwrap();
        let head = fit_to(&mut a, &data, 8);
        assert_eq!(
            curve(&head),
            curve(&b.reports[..8]),
            "{dtype:?}: stable phase"
        );
        // A checkpoint at the rung, saved after a cooldown branch was taken and undone.
        a.cooldown_branch(2, &data, |_, _| Ok(())).unwrap();
        a.save_checkpoint(&ck).unwrap();
        let (at_rung, scale_at_rung) = (bits(&a.weights()), a.loss_scale());
        assert_eq!(scale_at_rung.is_some(), dtype == DType::F16);
        let (main, last, w_a) = rungs_from_8(&mut a, &data, &dev);
        assert_eq!(
            curve(&main),
            curve(&b.reports[8..16]),
            "{dtype:?}: the continued stable phase left the straight run's curve"
        );
        assert_eq!(
            curve(&last),
            curve(&b.reports[16..]),
            "{dtype:?}: the last cooldown differs from the straight run's"
        );
        assert_eq!(w_a, b.weights, "{dtype:?}: W_A != W_B");

        // Through the checkpoint at step 8, in a fresh trainer (its plan: 8 + 2).
        let mut c = Trainer::resume(&ck).unwrap();
        assert_eq!(bits(&c.weights()), at_rung);
        assert_eq!(c.loss_scale(), scale_at_rung);
        let (main_c, last_c, w_c) = rungs_from_8(&mut c, &data, &dev);
        assert_eq!(curve(&main_c), curve(&b.reports[8..16]), "{dtype:?}");
        assert_eq!(curve(&last_c), curve(&b.reports[16..]), "{dtype:?}");
        assert_eq!(w_c, b.weights, "{dtype:?}: resumed W_A != W_B");

        // A stable-phase checkpoint resumed into the longer plan and trained through.
        let mut d = Trainer::resume_with(&ck, |c| {
            c.steps = 20;
            c.decay_steps = 4;
        })
        .unwrap();
        let rest = fit_to(&mut d, &data, u64::MAX);
        assert_eq!(curve(&rest), curve(&b.reports[8..]), "{dtype:?}");
        assert_eq!(bits(&d.weights()), b.weights, "{dtype:?}");
    }
}

#[test]
fn cooldowns_are_refused_where_continuation_would_not_be_exact() {
    let data = dataset(10, 12345);
    // A run that has cooled down is past its stable phase.
    let mut t = Trainer::from_pretrained(&model(), config(10, 2, DType::F32)).unwrap();
    fit_to(&mut t, &data, 9);
    let e = t.plan_cooldown(16, 4).unwrap_err().to_string();
    assert!(e.contains("past the cooldown start 8"), "{e}");
    let e = t.cooldown_branch(1, &data, |_, _| Ok(())).unwrap_err();
    assert!(e.to_string().contains("past the cooldown start"), "{e}");
    assert_eq!(t.steps_done(), 9);
    // The cooldown cannot start before the steps taken.
    let mut t = Trainer::from_pretrained(&model(), config(10, 2, DType::F32)).unwrap();
    fit_to(&mut t, &data, 5);
    let e = t.plan_cooldown(4, 4).unwrap_err().to_string();
    assert!(e.contains("5 steps are done"), "{e}");
    // Nor inside the warm-up.
    let mut t = Trainer::from_pretrained(&model(), config(10, 2, DType::F32)).unwrap();
    fit_to(&mut t, &data, 1);
    let e = t.cooldown_branch(2, &data, |_, _| Ok(())).unwrap_err();
    assert!(
        e.to_string().contains("inside the warm-up of 2 steps"),
        "{e}"
    );
    // Another schedule has no stable phase.
    let cosine = TrainConfig {
        schedule: Schedule::Cosine,
        ..config(10, 2, DType::F32)
    };
    let mut t = Trainer::from_pretrained(&model(), cosine).unwrap();
    let e = t.cooldown_branch(2, &data, |_, _| Ok(())).unwrap_err();
    assert!(e.to_string().contains("not wsd"), "{e}");
    // An error inside the branch still restores the trainer.
    let mut t = Trainer::from_pretrained(&model(), config(10, 2, DType::F32)).unwrap();
    fit_to(&mut t, &data, 4);
    let before = bits(&t.weights());
    let e = t
        .cooldown_branch(3, &data, |_, _| -> autoglm_train::Result<()> {
            Err(autoglm_train::Error::Input("evaluation failed".into()))
        })
        .unwrap_err();
    assert!(e.to_string().contains("evaluation failed"));
    assert_eq!((t.steps_done(), bits(&t.weights())), (4, before));
    assert_eq!(t.config().steps, 10);
    // A bad ratio is refused up front.
    let bad = TrainConfig {
        min_lr_ratio: 1.5,
        ..config(10, 2, DType::F32)
    };
    let e = Trainer::from_pretrained(&model(), bad).unwrap_err();
    assert!(e.to_string().contains("min_lr_ratio"), "{e}");
}

#[test]
fn a_run_directory_scores_rungs_and_resumes_into_a_longer_plan() {
    let data = dataset(10, 12345);
    let b = straight(&data, DType::F32);
    let want_log: String = b
        .reports
        .iter()
        .map(|r| serde_json::to_string(&LossRecord::from(r)).unwrap() + "\n")
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let options = RunOptions {
        keep_last: std::num::NonZeroUsize::new(1),
        resume: true,
        ..RunOptions::default()
    };
    let open = |steps, decay| {
        TrainRun::start_or_resume(
            &out,
            &model(),
            config(steps, decay, DType::F32),
            options.clone(),
        )
        .unwrap()
    };
    // First rung: stable to 8, saved, scored on a branch; then the process "dies".
    let mut run = open(10, 2);
    assert!(run.resumed_from().is_none());
    let last = run.fit_to(&data, 8, |_, _| Ok(Control::Continue)).unwrap();
    assert_eq!(last.map(|r| r.step), Some(8));
    assert_eq!(run.save_checkpoint().unwrap().step, 8);
    run.trainer_mut()
        .cooldown_branch(2, &data, |t, _| t.eval_loss(&data))
        .unwrap();
    assert!(
        !out.join("model.safetensors").exists(),
        "a rung is not the end of the run"
    );
    drop(run);
    // Promoted: reopened with the longer plan, it continues from the rung.
    let mut run = open(20, 4);
    assert_eq!(run.resumed_from().map(|c| c.step), Some(8));
    assert_eq!(run.trainer().config().decay_steps, 4);
    run.fit_to(&data, 16, |_, _| Ok(Control::Continue)).unwrap();
    run.save_checkpoint().unwrap();
    let w = run
        .trainer_mut()
        .cooldown_branch(4, &data, |t, _| Ok(bits(&t.weights())))
        .unwrap();
    assert_eq!(
        w, b.weights,
        "the rung's cooled weights differ from the straight run's"
    );
    let log = std::fs::read_to_string(run.loss_log()).unwrap();
    assert_eq!(
        log,
        want_log[..log.len()],
        "the main line's losses.jsonl differs"
    );
    assert_eq!(log.lines().count(), 16);
    // Only the newest checkpoint is kept.
    let cks: Vec<u64> = autoglm_train::checkpoints(&out)
        .unwrap()
        .iter()
        .map(|c| c.step)
        .collect();
    assert_eq!(cks, [16]);
    // Trained to the end, the run writes the straight run's log and final model.
    run.fit(&data, |_, _| Ok(Control::Continue)).unwrap();
    assert_eq!(std::fs::read_to_string(run.loss_log()).unwrap(), want_log);
    assert_eq!(bits(&run.trainer().weights()), b.weights);
    assert!(out.join("model.safetensors").is_file());
}
