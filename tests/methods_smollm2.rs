//! Every method learns on the real model: on a sample task where SmolLM2-135M's zero-shot
//! prompt is weak (country -> continent: 0.66 dev accuracy), the train loss falls, a dev
//! evaluation after step 0 beats the method's own step-0 score (Prefix Tuning's label-word
//! initialisation alone already beats zero-shot here: only this shows its training), and the
//! best dev accuracy beats zero-shot on the same dev examples. Budgets are small so CI stays
//! quick; docs/results.md has the full-length runs.

mod common;

use common::*;
use gradprompt::methods::{MethodKind, MethodSettings};
use gradprompt::run::RunResult;
use gradprompt::task::Task;
use std::path::Path;
use std::sync::OnceLock;

/// The task with its dev and test splits cut to 20 examples, so evaluations are quick.
fn small_task(dir: &Path) -> Task {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_tasks/country-continent");
    std::fs::create_dir_all(dir).unwrap();
    for f in ["task.json", "train.jsonl"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    for f in ["dev.jsonl", "test.jsonl"] {
        let text = std::fs::read_to_string(src.join(f)).unwrap();
        let head: Vec<&str> = text.lines().take(20).collect();
        std::fs::write(dir.join(f), head.join("\n")).unwrap();
    }
    Task::load(dir).unwrap()
}

struct Fixture {
    model: gradprompt::model::Model,
    task: Task,
    zero_shot: RunResult,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let task = small_task(&dir.path().join("task"));
        let model = smollm2();
        let zero_shot = train_method(&model, &task, MethodKind::ZeroShot, 0);
        Fixture {
            model,
            task,
            zero_shot,
            _dir: dir,
        }
    })
}

/// Trains as `common::train_method` does (batch 8, dev every 10 steps, seed 1), checks that a
/// dev evaluation after step 0 is strictly above the step-0 one, then `assert_learned` (or,
/// without `loss_must_fall`, only that the best dev score beats zero-shot's).
fn learns_with(method: MethodKind, steps: usize, settings: MethodSettings, loss_must_fall: bool) {
    let f = fixture();
    let (r, evals) = train_with_evals(&f.model, &f.task, method, settings, steps);
    assert_eq!(evals.first().map(|e| e.0), Some(0), "{method:?}: {evals:?}");
    assert!(
        evals[1..].iter().any(|e| e.1 > evals[0].1),
        "{method:?}: no dev evaluation after step 0 beats its step-0 score ({evals:?})"
    );
    if loss_must_fall {
        assert_learned(&r, &f.zero_shot);
    } else {
        assert!(
            r.dev_metric > f.zero_shot.dev_metric,
            "{method:?}: best dev {} does not beat zero-shot {}",
            r.dev_metric,
            f.zero_shot.dev_metric
        );
    }
}

fn learns(method: MethodKind, steps: usize) {
    learns_with(method, steps, MethodSettings::default(), true);
}

#[test]
fn prompt_tuning_learns_on_smollm2() {
    learns(MethodKind::PromptTuning, 30);
}

#[test]
fn prefix_tuning_learns_on_smollm2() {
    learns(MethodKind::PrefixTuning, 30);
}

#[test]
fn p_tuning_learns_on_smollm2() {
    // The BiLSTM encoder starts slower than direct soft vectors (measured: no dev gain after 30
    // steps, 0.86 after 40 on the full dev split).
    learns(MethodKind::PTuning, 60);
}

#[test]
fn autoprompt_learns_on_smollm2() {
    // 8 candidate rows instead of the default 32 keep this within the CI budget (its triggers
    // open the template, so every candidate row is a full forward); the built-in model's test
    // runs the default. Its train loss is not required to fall: the loss reported is each
    // step's batch (different rows each step) under the current triggers, while the search
    // lowers the loss on the candidate rows. Measured: the first batch's 0.64 against 0.86 for
    // the last ones, while dev accuracy rose above its step-0 score to 0.95 at step 30
    // (zero-shot 0.70).
    let settings = MethodSettings {
        candidate_rows: 8,
        ..Default::default()
    };
    learns_with(MethodKind::Autoprompt, 30, settings, false);
}

#[test]
fn fine_tuning_learns_on_smollm2() {
    learns(MethodKind::FineTuning, 20);
}
