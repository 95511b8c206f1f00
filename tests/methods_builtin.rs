//! Every method learns on the built-in model, in seconds: on country -> capital (the corpus
//! states every capital, never as "The capital of X is") the train loss falls, a dev
//! evaluation after step 0 beats the method's own step-0 score (so the gain is the training's,
//! not the initialisation's), and the best dev exact match beats the zero-shot template on the
//! same dev examples. The SmolLM2 tests (`methods_smollm2.rs`) are the real-model check; these
//! keep the method suite fast.

mod common;

use common::{assert_learned, train_method, train_with_evals};
use gradprompt::methods::MethodKind;
use gradprompt::model::Model;
use gradprompt::run::RunResult;
use gradprompt::task::Task;
use std::path::Path;
use std::sync::OnceLock;

struct Fixture {
    model: Model,
    task: Task,
    zero_shot: RunResult,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let model = Model::load("builtin").expect("the built-in model loads");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_tasks/country-capital");
        let task = Task::load(&dir).unwrap();
        let zero_shot = train_method(&model, &task, MethodKind::ZeroShot, 0);
        Fixture {
            model,
            task,
            zero_shot,
        }
    })
}

/// The method learned: some dev evaluation after step 0 is strictly above its own step-0
/// score, and it beats zero-shot with a falling train loss (`common::assert_learned`).
fn learns(method: MethodKind, steps: usize) {
    let f = fixture();
    let (r, evals) = train_with_evals(&f.model, &f.task, method, Default::default(), steps);
    assert_eq!(evals.first().map(|e| e.0), Some(0), "{method:?}: {evals:?}");
    let start = evals[0].1;
    let best_after = evals[1..].iter().map(|e| e.1).fold(f64::MIN, f64::max);
    assert!(
        best_after > start,
        "{method:?}: no dev evaluation after step 0 beats its step-0 score {start} ({evals:?})"
    );
    assert!(
        r.best_step > 0,
        "{method:?}: the kept checkpoint is the untrained one"
    );
    assert_learned(&r, &f.zero_shot);
}

#[test]
fn the_learning_check_refuses_a_method_that_only_starts_well() {
    // Zero-shot never changes: its only evaluation is step 0, so it cannot pass `learns`.
    let result = std::panic::catch_unwind(|| learns(MethodKind::ZeroShot, 0));
    assert!(result.is_err(), "zero-shot passed as having learned");
}

#[test]
fn zero_shot_knows_a_little() {
    // The model states capitals only in other phrasings: the task's own template gets some
    // right (a generated answer has no chance level) but far from all.
    let zs = &fixture().zero_shot;
    assert!(
        zs.test_metric > 0.0 && zs.test_metric < 0.5,
        "zero-shot test exact match {}",
        zs.test_metric
    );
}

#[test]
fn prompt_tuning_learns_on_builtin() {
    learns(MethodKind::PromptTuning, 100);
}

#[test]
fn prefix_tuning_learns_on_builtin() {
    learns(MethodKind::PrefixTuning, 100);
}

#[test]
fn p_tuning_learns_on_builtin() {
    learns(MethodKind::PTuning, 100);
}

#[test]
fn autoprompt_learns_on_builtin() {
    learns(MethodKind::Autoprompt, 100);
}

#[test]
fn fine_tuning_learns_on_builtin() {
    learns(MethodKind::FineTuning, 100);
}

#[test]
fn prompt_tuning_from_labels_makes_exactly_one_vector_per_slot() {
    use gradprompt::methods::{self, MethodSettings, SoftInit};
    use rand::SeedableRng;
    let model = &fixture().model;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_tasks/country-continent");
    let task = Task::load(&dir).unwrap();
    let settings = MethodSettings {
        num_virtual_tokens: 8,
        init: SoftInit::Labels,
        ..Default::default()
    };
    let template = methods::template_for(
        MethodKind::PromptTuning,
        &settings,
        &task.template().unwrap(),
    );
    let labels: Vec<String> = task
        .labels()
        .iter()
        .map(|l| format!(" {}", task.answer_text(l)))
        .collect();
    assert!(
        labels.len() < 8,
        "the test needs slots left after the labels"
    );
    let mut rng = gradprompt::methods::RunRng::seed_from_u64(0);
    let m = methods::build(
        MethodKind::PromptTuning,
        &settings,
        &model.llm,
        &template,
        &labels,
        &model.tokenizer,
        &mut rng,
    )
    .unwrap();
    let d = model.llm.cfg.hidden_size;
    assert_eq!(m.trainable_params(), 8 * d);
    let exported = m.export(&model.llm).unwrap();
    assert_eq!(exported[0].1.dims(), &[8, d]);
}

#[test]
fn vocabulary_initialisation_never_draws_a_special_token() {
    use rand::SeedableRng;
    let model = &fixture().model;
    let special: Vec<u32> = model
        .tokenizer
        .get_added_tokens_decoder()
        .iter()
        .filter(|(_, t)| t.special)
        .map(|(id, _)| *id)
        .collect();
    assert!(!special.is_empty(), "the test needs a special token");
    let mut rng = gradprompt::methods::RunRng::seed_from_u64(0);
    // 20,000 draws from 2,048 ids: each id would come up about ten times.
    let ids =
        gradprompt::methods::init::sample_vocab_ids(&model.llm, &model.tokenizer, 20_000, &mut rng)
            .unwrap();
    assert!(ids.iter().all(|id| !special.contains(id)));
    assert!(ids
        .iter()
        .all(|&id| (id as usize) < model.llm.cfg.vocab_size));
}

#[test]
fn autoprompt_judged_by_accuracy_learns_on_builtin_classification() {
    // `--judge accuracy` (the AutoPrompt authors' comparison on a task with labels): on
    // country-continent, where the built-in model's template is at 0.37, the search must still
    // raise dev above its own step 0 and beat zero-shot.
    use gradprompt::methods::{Judge, MethodSettings};
    let model = &fixture().model;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_tasks/country-continent");
    let task = Task::load(&dir).unwrap();
    let zero_shot = train_method(model, &task, MethodKind::ZeroShot, 0);
    let settings = MethodSettings {
        judge: Judge::Accuracy,
        ..Default::default()
    };
    let (r, evals) = train_with_evals(model, &task, MethodKind::Autoprompt, settings, 60);
    let start = evals[0].1;
    let best_after = evals[1..].iter().map(|e| e.1).fold(f64::MIN, f64::max);
    assert!(best_after > start, "{evals:?}");
    assert_learned(&r, &zero_shot);
}
