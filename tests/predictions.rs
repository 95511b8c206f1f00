//! Error analysis on the built-in model: a trained prompt's per-example test predictions agree
//! with its reported test score, the confusion matrix counts every example once with the right
//! ones on its diagonal, generation rows carry the greedy text, and `gradprompt eval
//! --predictions FILE` writes one line per test example (refusing a bad path before anything
//! loads).

use gradprompt::artifact::Artifact;
use gradprompt::methods::MethodKind;
use gradprompt::model::Model;
use gradprompt::predictions::{Prediction, Predictions, PREDICTIONS_FILE};
use gradprompt::run::{RunResult, RunSpec, TrainConfig};
use gradprompt::task::{Split, Task, TaskKind, Template};
use gradprompt::train;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_gradprompt");

fn sample_task(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample_tasks")
        .join(name)
}

/// A few steps of prompt tuning, saved to `out`: enough for a mix of right and wrong answers.
fn train_briefly(model: &Model, task: &Task, method: MethodKind, out: &Path) -> RunResult {
    let spec = RunSpec {
        method,
        settings: Default::default(),
        template: None,
        config: TrainConfig {
            steps: if method == MethodKind::ZeroShot { 0 } else { 6 },
            eval_every: 6,
            seed: 3,
            ..Default::default()
        },
        out: Some(out.to_path_buf()),
    };
    let (tx, _rx) = crossbeam_channel::unbounded();
    let (_ctx, crx) = crossbeam_channel::unbounded();
    train::train(model, task, &spec, &tx, &crx).unwrap()
}

/// The saved prompt's predictions on the test split, as `eval` computes them.
fn predict_saved(model: &Model, task: &Task, dir: &Path) -> Predictions {
    let art = Artifact::load(dir).unwrap();
    let (own, prompt) = art.prompt_for(model).unwrap();
    let template = Template::parse(&art.manifest.template).unwrap();
    let test = train::encode_split(task, &template, Split::Test, model).unwrap();
    let llm = own.as_ref().unwrap_or(&model.llm);
    train::eval::predict(llm, &prompt, task.spec.kind, &test, &model.tokenizer).unwrap()
}

#[test]
fn classification_predictions_match_the_test_score_and_fill_the_confusion_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::load("builtin").unwrap();
    let task = Task::load(&sample_task("country-continent")).unwrap();
    let out = dir.path().join("run");
    let result = train_briefly(&model, &task, MethodKind::PromptTuning, &out);
    let p = predict_saved(&model, &task, &out);

    let n = task.test.len();
    assert_eq!(p.kind, TaskKind::Classification);
    assert_eq!(p.rows.len(), n);
    assert_eq!(p.accuracy(), result.test_metric);

    let labels = task.labels().len();
    for r in &p.rows {
        let q = r.probability.unwrap();
        // The winner of a softmax over k labels holds at least 1/k of it.
        assert!(q >= 1.0 / labels as f64 - 1e-9 && q <= 1.0 + 1e-9, "{r:?}");
        assert_eq!(r.correct, r.gold == r.prediction, "{r:?}");
        assert!(!r.input.is_empty() && !r.input.contains("[P]"), "{r:?}");
    }
    let m = p.confusion().unwrap();
    assert_eq!(m.labels.len(), labels, "{:?}", m.labels);
    assert_eq!(m.total(), n);
    assert_eq!(m.diagonal(), p.correct());
}

#[test]
fn generation_predictions_are_the_greedy_text_scored_by_exact_match() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::load("builtin").unwrap();
    let task = Task::load(&sample_task("country-capital")).unwrap();
    let out = dir.path().join("run");
    let result = train_briefly(&model, &task, MethodKind::ZeroShot, &out);
    let p = predict_saved(&model, &task, &out);

    assert_eq!(p.kind, TaskKind::Generation);
    assert_eq!(p.rows.len(), task.test.len());
    assert_eq!(p.accuracy(), result.test_metric);
    assert!(p.confusion().is_none());
    for r in &p.rows {
        assert_eq!(r.probability, None, "{r:?}");
        assert_eq!(
            r.correct,
            gradprompt::task::exact_match(&r.prediction, &r.gold)
        );
    }
}

/// The trainer keeps its final test evaluation's predictions (`train::finish` writes
/// `Predictions::save` beside the artifact).
#[test]
fn a_training_run_writes_its_test_predictions_into_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::load("builtin").unwrap();
    let task = Task::load(&sample_task("country-continent")).unwrap();
    let out = dir.path().join("run");
    let result = train_briefly(&model, &task, MethodKind::PromptTuning, &out);
    let saved = Predictions::load(&out).unwrap().expect(PREDICTIONS_FILE);
    assert_eq!(saved.rows.len(), task.test.len());
    assert_eq!(saved.accuracy(), result.test_metric);
    // The same examples, answers and verdicts as the saved prompt gives; the probabilities
    // within the last digit JSON keeps.
    let again = predict_saved(&model, &task, &out);
    for (a, b) in saved.rows.iter().zip(&again.rows) {
        assert_eq!(
            (&a.input, &a.gold, &a.prediction, a.correct),
            (&b.input, &b.gold, &b.prediction, b.correct)
        );
        assert!((a.probability.unwrap() - b.probability.unwrap()).abs() < 1e-9);
    }
}

#[test]
fn eval_with_predictions_writes_a_line_per_test_example_and_prints_the_confusion_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::load("builtin").unwrap();
    let task_dir = sample_task("country-continent");
    let task = Task::load(&task_dir).unwrap();
    let out = dir.path().join("run");
    train_briefly(&model, &task, MethodKind::PromptTuning, &out);
    let file = dir.path().join("preds.jsonl");
    let run = Command::new(BIN)
        .args(["eval", "--task"])
        .arg(&task_dir)
        .arg("--prompt")
        .arg(&out)
        .arg("--predictions")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), task.test.len());
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for key in ["input", "gold", "prediction", "probability", "correct"] {
            assert!(v.get(key).is_some(), "{key} missing from {line}");
        }
        let _: Prediction = serde_json::from_value(v).unwrap();
    }
    assert!(
        stdout.contains("confusion matrix (rows: gold, columns: predicted)"),
        "{stdout}"
    );
    // Every label heads a row of the printed matrix.
    let labels = Predictions::read(&file)
        .unwrap()
        .confusion()
        .unwrap()
        .labels;
    for l in labels {
        assert!(stdout.lines().any(|s| s.starts_with(&l)), "{l}: {stdout}");
    }
}

#[test]
fn eval_refuses_a_predictions_path_it_cannot_write_before_loading_anything() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("no-such-folder").join("preds.jsonl");
    // The prompt and model do not exist either: the path is checked first, so the error is
    // about it.
    let run = Command::new(BIN)
        .args([
            "eval",
            "--model",
            "/nonexistent/model",
            "--task",
            "/nonexistent/task",
            "--prompt",
            "/nonexistent/prompt",
            "--predictions",
        ])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains("--predictions") && stderr.contains(&*bad.to_string_lossy()),
        "{stderr}"
    );
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(!bad.exists());
}
