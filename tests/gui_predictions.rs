//! The workbench's test predictions, driven by labels with egui_kittest: opened from a finished
//! run's details in the runs table, "errors only" keeps exactly the wrong rows, the text filter
//! narrows them, the confusion matrix is shown for a classification task and not for a
//! generation one, and a run recorded before predictions were kept says it has none.

mod common;

use common::gui::harness;

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use gradprompt::gui::predictions::{CONFUSION_HEADING, ERRORS_ONLY};
use gradprompt::gui::runs_view::TEST_PREDICTIONS;
use gradprompt::gui::{run_label, App, Tab};
use gradprompt::methods::MethodKind;
use gradprompt::predictions::{Prediction, Predictions};
use gradprompt::run::{RunResult, RunSpec, TrainConfig};
use gradprompt::runs::{RunRecord, RunStatus};
use gradprompt::task::{Metric, TaskKind};
use std::path::Path;
use std::time::{Duration, Instant};

/// An app on the synthetic task with no model (none is needed to look at saved predictions).
fn app_at(root: &Path) -> App {
    common::gui::app_at(root, "/nonexistent/model")
}

/// The synthetic task's six test inputs; the ones at `wrong` were predicted wrong.
fn rows(wrong: &[usize]) -> Vec<Prediction> {
    (42..48)
        .enumerate()
        .map(|(k, i)| {
            let gold = if i % 2 == 0 { "w10" } else { "w11" };
            let other = if i % 2 == 0 { "w11" } else { "w10" };
            let correct = !wrong.contains(&k);
            Prediction {
                input: format!("w{i} w{} w5 w6", i % 7 + 12),
                gold: gold.into(),
                prediction: if correct { gold } else { other }.into(),
                probability: Some(0.75),
                correct,
            }
        })
        .collect()
}

/// A finished prompt-tuning run on the app's task, with `predictions` (if any) written into
/// its prompt folder as the trainer writes them.
fn finished_run(app: &mut App, predictions: Option<Predictions>) -> String {
    let id = app.session.store.new_id(MethodKind::PromptTuning);
    let task = app.session.task.clone().unwrap();
    let out = app.session.store.prompt_dir(&id);
    let spec = RunSpec {
        method: MethodKind::PromptTuning,
        settings: Default::default(),
        template: None,
        config: TrainConfig::default(),
        out: Some(out.clone()),
    };
    let mut r = RunRecord::new(id.clone(), "m", &task.spec.name, &task.dir, spec);
    r.status = RunStatus::Finished;
    r.total_steps = 10;
    r.losses = (1..=10).map(|s| (s, Some(1.0 / s as f32))).collect();
    r.evals = vec![(0, 0.5), (10, 0.7)];
    r.result = Some(RunResult {
        method: "prompt-tuning".into(),
        task: task.spec.name.clone(),
        model: "m".into(),
        template: "[P*8]{x} w5 w6 [ANSWER]".into(),
        steps: 10,
        train_loss_first: Some(2.0),
        train_loss_last: Some(1.0),
        metric: Metric::Accuracy,
        dev_metric: 0.7,
        test_metric: predictions.as_ref().map(|p| p.accuracy()).unwrap_or(0.5),
        best_step: 10,
        trainable_params: 512,
        model_params: 10_000,
        artifact_bytes: 2048,
        wall_seconds: 1.0,
        artifact: Some(out.display().to_string()),
        readable: None,
        stopped_early: false,
        label_tokens: None,
    });
    std::fs::create_dir_all(&out).unwrap();
    if let Some(p) = predictions {
        p.save(&out).unwrap();
    }
    app.session.store.add(r).unwrap();
    id
}

fn classification(wrong: &[usize]) -> Predictions {
    Predictions {
        kind: TaskKind::Classification,
        labels: vec!["w10".into(), "w11".into()],
        rows: rows(wrong),
    }
}

/// Opens the Runs tab, the run's details and its test predictions, and waits until they are
/// read.
fn open_predictions(h: &mut Harness<'static, App>, id: &str) {
    h.state_mut().tab = Tab::Runs;
    for _ in 0..3 {
        h.step();
    }
    let label = run_label(h.state().session.store.get(id).unwrap());
    h.get_by_label(&label).click();
    for _ in 0..3 {
        h.step();
    }
    h.get_by_label(TEST_PREDICTIONS).click();
    let start = Instant::now();
    loop {
        h.step();
        let busy = h.state().runs.predictions.as_ref().is_none_or(|p| p.busy());
        if !busy {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "never read");
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..3 {
        h.step();
    }
}

fn shown_inputs(h: &Harness<'static, App>, all: &[Prediction]) -> Vec<String> {
    all.iter()
        .filter(|r| h.query_by_label(&r.input).is_some())
        .map(|r| r.input.clone())
        .collect()
}

#[test]
fn a_finished_runs_predictions_open_from_its_details_and_errors_only_shows_the_wrong_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(app_at(dir.path()));
    let wrong = [1, 4];
    let id = finished_run(h.state_mut(), Some(classification(&wrong)));
    open_predictions(&mut h, &id);

    let all = rows(&wrong);
    assert_eq!(
        shown_inputs(&h, &all).len(),
        6,
        "every test example is listed"
    );
    h.get_by_label_contains("4 of 6 right");

    h.get_by_label(ERRORS_ONLY).click();
    for _ in 0..3 {
        h.step();
    }
    let errors: Vec<String> = wrong.iter().map(|&k| all[k].input.clone()).collect();
    assert_eq!(shown_inputs(&h, &all), errors);
    h.get_by_label_contains("2 of 6 examples shown");

    // The filter narrows what "errors only" left.
    h.state_mut().runs.predictions.as_mut().unwrap().filter = "w43".into();
    for _ in 0..3 {
        h.step();
    }
    assert_eq!(shown_inputs(&h, &all), [all[1].input.clone()]);
}

#[test]
fn a_classification_runs_predictions_show_the_confusion_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(app_at(dir.path()));
    let id = finished_run(h.state_mut(), Some(classification(&[0, 1, 2])));
    open_predictions(&mut h, &id);
    h.get_by_label(CONFUSION_HEADING);
    // Gold w10 (inputs 42, 44, 46): 42 and 44 wrong -> 1 right, 2 predicted w11; gold w11
    // (43, 45, 47): 43 wrong -> 2 right, 1 predicted w10.
    let m = h
        .state()
        .runs
        .predictions
        .as_ref()
        .unwrap()
        .predictions()
        .unwrap()
        .confusion()
        .unwrap();
    assert_eq!(m.counts, [[1, 2], [1, 2]]);
    h.get_by_label("gold \\ predicted");
}

#[test]
fn a_generation_run_has_no_confusion_matrix_and_an_older_run_says_it_saved_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(app_at(dir.path()));
    let mut gen = rows(&[2]);
    for r in &mut gen {
        r.probability = None;
    }
    let id = finished_run(h.state_mut(), Some(Predictions::from_rows(gen.clone())));
    open_predictions(&mut h, &id);
    assert_eq!(shown_inputs(&h, &gen).len(), 6);
    assert!(h.query_by_label(CONFUSION_HEADING).is_none());

    let old = finished_run(h.state_mut(), None);
    open_predictions(&mut h, &old);
    h.get_by_label_contains("saved no predictions.jsonl");
    assert!(shown_inputs(&h, &gen).is_empty());
}
