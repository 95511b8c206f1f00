//! Every method learns on the real model: on a sample task where SmolLM2-135M's zero-shot
//! prompt is weak (country -> continent: 0.66 dev accuracy), the train loss falls and the best
//! dev accuracy beats zero-shot on the same dev examples. Budgets are small so CI stays quick;
//! docs/results.md has the full-length runs. (Prefix Tuning's label-word initialisation alone
//! already beats zero-shot here; its falling loss shows the training.)

mod common;

use common::*;
use gradprompt::methods::MethodKind;
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

fn learns(method: MethodKind, steps: usize) {
    let f = fixture();
    assert_learned(
        &train_method(&f.model, &f.task, method, steps),
        &f.zero_shot,
    );
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
    learns(MethodKind::Autoprompt, 30);
}

#[test]
fn fine_tuning_learns_on_smollm2() {
    learns(MethodKind::FineTuning, 20);
}
