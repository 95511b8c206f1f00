//! Cases cheaper through the library than the command line: the engine refuses them before a
//! training step, on a tiny random model, and a saved prompt's manifest must agree with its
//! tensors.

use crate::common::{tiny_model, write_synthetic_task};
use gradprompt::methods::{MethodKind, MethodSettings};
use gradprompt::run::{Event, RunSpec, TrainConfig};
use gradprompt::task::Task;
use std::path::Path;

fn spec(method: MethodKind, out: Option<&Path>) -> RunSpec {
    RunSpec {
        method,
        settings: MethodSettings {
            num_virtual_tokens: 3,
            prefix_len: 3,
            prefix_hidden: 16,
            ..Default::default()
        },
        template: None,
        config: TrainConfig {
            steps: 4,
            batch_size: 4,
            eval_every: 2,
            ..Default::default()
        },
        out: out.map(Path::to_path_buf),
    }
}

/// The error of a run that must fail, and whether it got as far as a training step.
fn refused(task: &Task, spec: &RunSpec) -> (String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(&dir.path().join("m"), 3);
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (_cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let e = gradprompt::train::train(&model, task, spec, &ev_tx, &cmd_rx).unwrap_err();
    let stepped = ev_rx.try_iter().any(|e| matches!(e, Event::Step { .. }));
    (format!("{e:#}"), stepped)
}

#[test]
fn a_test_example_longer_than_the_context_is_refused_before_training_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let task_dir = dir.path().join("task");
    write_synthetic_task(&task_dir);
    // The tiny model's context is 128 positions; line 3 of test.jsonl gets 200 words.
    let test = std::fs::read_to_string(task_dir.join("test.jsonl")).unwrap();
    let mut lines: Vec<String> = test.lines().map(String::from).collect();
    lines[2] = format!(
        r#"{{"x": "{}", "label": "odd"}}"#,
        vec!["w12"; 200].join(" ")
    );
    std::fs::write(task_dir.join("test.jsonl"), lines.join("\n")).unwrap();
    let task = Task::load(&task_dir).unwrap();
    let out = dir.path().join("out");
    let (e, stepped) = refused(&task, &spec(MethodKind::PromptTuning, Some(&out)));
    assert!(
        e.contains("test.jsonl:3") && e.contains("context of 128"),
        "{e}"
    );
    assert!(!stepped, "the run trained before refusing");
    assert!(!out.exists(), "nothing is written for a refused run");
}

#[test]
fn a_prefix_counts_towards_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let task_dir = dir.path().join("task");
    write_synthetic_task(&task_dir);
    let task = Task::load(&task_dir).unwrap();
    let mut s = spec(MethodKind::PrefixTuning, None);
    s.settings.prefix_len = 126;
    let (e, stepped) = refused(&task, &s);
    assert!(
        e.contains("train.jsonl:1") && e.contains("a prefix of 126"),
        "{e}"
    );
    assert!(!stepped);
}

#[test]
fn numbers_out_of_range_are_refused_before_training_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let task_dir = dir.path().join("task");
    write_synthetic_task(&task_dir);
    let task = Task::load(&task_dir).unwrap();
    type Change = fn(&mut RunSpec);
    let cases: [(&str, Change); 6] = [
        ("--batch-size", |s| s.config.batch_size = 1_000_000),
        ("--batch-size", |s| s.config.batch_size = usize::MAX),
        ("--grad-accum", |s| s.config.grad_accum = 1 << 63),
        ("--lr", |s| s.config.lr = Some(-1.0)),
        ("--eval-every", |s| s.config.eval_every = 0),
        ("--steps", |s| s.config.steps = 0),
    ];
    for (flag, change) in cases {
        let mut s = spec(MethodKind::PromptTuning, None);
        change(&mut s);
        let (e, stepped) = refused(&task, &s);
        assert!(e.contains(flag), "{flag}: {e}");
        assert!(!stepped, "{flag}: trained before refusing");
    }
}

/// Trains `method` for a step on the tiny model and saves it to `out`.
fn saved(method: MethodKind, out: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let task_dir = dir.path().join("task");
    write_synthetic_task(&task_dir);
    let task = Task::load(&task_dir).unwrap();
    let model = tiny_model(&dir.path().join("m"), 3);
    let mut s = spec(method, Some(out));
    s.config.steps = 1;
    let (ev_tx, _ev_rx) = crossbeam_channel::unbounded();
    let (_cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    gradprompt::train::train(&model, &task, &s, &ev_tx, &cmd_rx).unwrap();
}

#[test]
fn every_saved_prompt_passes_the_manifest_against_tensors_check() {
    for method in [
        MethodKind::PromptTuning,
        MethodKind::PrefixTuning,
        MethodKind::PTuning,
        MethodKind::Autoprompt,
        MethodKind::FineTuning,
        MethodKind::ZeroShot,
    ] {
        let dir = tempfile::tempdir().unwrap();
        saved(method, &dir.path().join("p"));
        gradprompt::artifact::Artifact::load(&dir.path().join("p"))
            .unwrap_or_else(|e| panic!("{method:?}: {e:#}"));
    }
}

#[test]
fn a_manifest_whose_slots_disagree_with_its_tensors_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p");
    saved(MethodKind::PromptTuning, &out);
    let path = out.join("manifest.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // Three soft slots where three were trained: fine. One fewer: refused.
    let template = json["template"].as_str().unwrap().to_string();
    assert!(template.starts_with("[P*3]"), "{template}");
    json["template"] = template.replacen("[P*3]", "[P*2]", 1).into();
    std::fs::write(&path, json.to_string()).unwrap();
    let e = format!(
        "{:#}",
        gradprompt::artifact::Artifact::load(&out).err().unwrap()
    );
    assert!(e.contains("3 rows") && e.contains("2 soft slots"), "{e}");
}

#[test]
fn a_prompt_with_nan_values_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p");
    saved(MethodKind::PromptTuning, &out);
    let st = out.join("prompt.safetensors");
    let mut map = candle_core::safetensors::load(&st, &candle_core::Device::Cpu).unwrap();
    let t = map.get("prompt_embeddings").unwrap();
    let nan = (t * f64::NAN).unwrap();
    map.insert("prompt_embeddings".into(), nan);
    candle_core::safetensors::save(&map, &st).unwrap();
    let e = format!(
        "{:#}",
        gradprompt::artifact::Artifact::load(&out).err().unwrap()
    );
    assert!(e.contains("NaN") && e.contains("prompt_embeddings"), "{e}");
}
