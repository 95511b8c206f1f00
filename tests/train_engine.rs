//! The training engine on a tiny random model: repeatable runs, artifacts that reload to the same
//! predictions and refuse other models, PEFT export layouts, and the worker's commands.

mod common;

use common::*;
use gradprompt::artifact::Artifact;
use gradprompt::methods::{Encoder, MethodKind, MethodSettings};
use gradprompt::model::Model;
use gradprompt::run::{Command, Event, RunResult, RunSpec, TrainConfig};
use gradprompt::task::{Task, Template};
use gradprompt::train::{self, worker::Worker};
use std::path::Path;
use std::sync::Arc;

fn spec(method: MethodKind, out: Option<&Path>) -> RunSpec {
    RunSpec {
        method,
        settings: MethodSettings {
            num_virtual_tokens: 3,
            prefix_len: 3,
            prefix_hidden: 16,
            encoder_hidden: 8,
            num_triggers: 2,
            top_k: 4,
            ..Default::default()
        },
        template: None,
        config: TrainConfig {
            steps: 4,
            batch_size: 4,
            eval_every: 2,
            seed: 7,
            ..Default::default()
        },
        out: out.map(Path::to_path_buf),
    }
}

fn run(model: &Model, task: &Task, spec: &RunSpec) -> RunResult {
    let (ev_tx, _ev_rx) = crossbeam_channel::unbounded();
    let (_cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    train::train(model, task, spec, &ev_tx, &cmd_rx).unwrap()
}

const TRAINED: [MethodKind; 5] = [
    MethodKind::PromptTuning,
    MethodKind::PrefixTuning,
    MethodKind::PTuning,
    MethodKind::Autoprompt,
    MethodKind::FineTuning,
];

#[test]
fn a_same_seed_rerun_gives_identical_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(&dir.path().join("m"), 1);
    write_synthetic_task(&dir.path().join("t"));
    let task = Task::load(&dir.path().join("t")).unwrap();
    for m in TRAINED {
        let a = run(&model, &task, &spec(m, None));
        let b = run(&model, &task, &spec(m, None));
        assert_eq!(a.steps, 4, "{m:?}");
        assert_eq!(a.train_loss_first, b.train_loss_first, "{m:?}");
        assert_eq!(a.train_loss_last, b.train_loss_last, "{m:?}");
        assert_eq!(a.dev_metric, b.dev_metric, "{m:?}");
        assert_eq!(a.test_metric, b.test_metric, "{m:?}");
        assert_eq!(a.readable, b.readable, "{m:?}");
        assert!(a.train_loss_first.unwrap().is_finite());
    }
}

#[test]
fn an_exported_prompt_reloads_to_the_same_metric_and_refuses_another_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(&dir.path().join("m"), 1);
    let other = tiny_model(&dir.path().join("other"), 2);
    write_synthetic_task(&dir.path().join("t"));
    let task = Task::load(&dir.path().join("t")).unwrap();
    for m in TRAINED {
        let out = dir.path().join(format!("art-{}", m.id()));
        let r = run(&model, &task, &spec(m, Some(&out)));
        let art = Artifact::load(&out).unwrap();
        assert_eq!(art.manifest.method, m);
        assert_eq!(art.manifest.result.test_metric, r.test_metric);
        // A fine-tuned run is a Hugging Face model folder: its weights are model.safetensors.
        let stored = match m {
            MethodKind::FineTuning => "model.safetensors",
            _ => "prompt.safetensors",
        };
        let bytes = std::fs::metadata(out.join(stored)).unwrap().len() as usize;
        assert_eq!(
            bytes, r.artifact_bytes,
            "{m:?}: stored bytes are the file's size"
        );

        let (own, prompt) = art.prompt_for(&model).unwrap();
        let template = Template::parse(&art.manifest.template).unwrap();
        let test =
            train::encode_split(&task, &template, gradprompt::task::Split::Test, &model).unwrap();
        let llm = own.as_ref().unwrap_or(&model.llm);
        let reloaded =
            train::eval::evaluate(llm, &prompt, task.spec.kind, &test, &model.tokenizer).unwrap();
        assert_eq!(reloaded.metric, r.test_metric, "{m:?}");

        let err = format!(
            "{:#}",
            art.prompt_for(&other)
                .err()
                .expect("another model must be refused")
        );
        assert!(
            err.contains("trained on model") && err.contains(&model.fingerprint),
            "{err}"
        );
    }
    // The trained artifact's stored size tells the storage story: a model copy vs a few vectors.
    let ft = Artifact::load(&dir.path().join("art-fine-tuning")).unwrap();
    let pt = Artifact::load(&dir.path().join("art-prompt-tuning")).unwrap();
    assert!(ft.manifest.result.artifact_bytes > 50 * pt.manifest.result.artifact_bytes);
}

#[test]
fn peft_export_matches_the_peft_layout() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(&dir.path().join("m"), 1);
    write_synthetic_task(&dir.path().join("t"));
    let task = Task::load(&dir.path().join("t")).unwrap();
    let cfg = model.config().clone();
    for (m, peft_type, width) in [
        (MethodKind::PromptTuning, "PROMPT_TUNING", cfg.hidden_size),
        (MethodKind::PTuning, "P_TUNING", cfg.hidden_size),
        (
            MethodKind::PrefixTuning,
            "PREFIX_TUNING",
            cfg.num_hidden_layers * 2 * cfg.kv_dim(),
        ),
    ] {
        let out = dir.path().join(format!("art-{}", m.id()));
        run(&model, &task, &spec(m, Some(&out)));
        let art = Artifact::load(&out).unwrap();
        let peft_dir = dir.path().join(format!("peft-{}", m.id()));
        gradprompt::peft::export(&art, &peft_dir).unwrap();
        let c: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(peft_dir.join("adapter_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(c["peft_type"], peft_type);
        assert_eq!(c["task_type"], "CAUSAL_LM");
        assert_eq!(c["num_virtual_tokens"], 3);
        assert_eq!(c["num_layers"], cfg.num_hidden_layers);
        let st = candle_core::safetensors::load(
            peft_dir.join("adapter_model.safetensors"),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        assert_eq!(st.len(), 1);
        let t = &st["prompt_embeddings"];
        assert_eq!(t.dtype(), candle_core::DType::F32);
        assert_eq!(t.dims(), &[3, width]);
        if m == MethodKind::PrefixTuning {
            // Grouped-query attention: PEFT records the key/value heads.
            assert_eq!(c["num_attention_heads"], cfg.num_key_value_heads);
            assert_eq!(c["token_dim"], cfg.kv_dim());
            assert_eq!(c["prefix_projection"], false);
        } else {
            assert_eq!(c["token_dim"], cfg.hidden_size);
        }
    }

    // P-Tuning with pseudo tokens between anchors has no PEFT equivalent; AutoPrompt neither.
    let mut s = spec(MethodKind::PTuning, Some(&dir.path().join("mid")));
    s.template = Some("{x} [P*2] w5 [P] w6 [ANSWER]".into());
    s.settings.encoder = Encoder::Mlp;
    run(&model, &task, &s);
    let err = gradprompt::peft::export(
        &Artifact::load(&dir.path().join("mid")).unwrap(),
        &dir.path().join("x"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("only at the start"), "{err}");
    run(
        &model,
        &task,
        &spec(MethodKind::Autoprompt, Some(&dir.path().join("ap"))),
    );
    let err = gradprompt::peft::export(
        &Artifact::load(&dir.path().join("ap")).unwrap(),
        &dir.path().join("y"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no PEFT"), "{err}");
}

#[test]
fn the_worker_streams_events_and_obeys_pause_resume_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let model = Arc::new(tiny_model(&dir.path().join("m"), 1));
    write_synthetic_task(&dir.path().join("t"));
    let task = Arc::new(Task::load(&dir.path().join("t")).unwrap());

    let mut s = spec(MethodKind::PromptTuning, None);
    s.config.steps = 1000;
    let worker = Worker::spawn(model.clone(), task.clone(), s);
    worker.send(Command::Pause);
    let mut saw = Vec::new();
    let mut result = None;
    for ev in worker.events.iter() {
        match ev {
            Event::Paused => {
                saw.push("paused");
                worker.send(Command::Resume);
            }
            Event::Resumed => {
                saw.push("resumed");
            }
            Event::Step { step, loss, .. } => {
                assert!(loss.is_finite());
                if step == 3 {
                    worker.send(Command::Stop);
                }
            }
            Event::Finished(r) => result = Some(r),
            Event::Failed(e) => panic!("failed: {e}"),
            _ => {}
        }
    }
    worker.join();
    assert_eq!(saw, ["paused", "resumed"]);
    let r = result.expect("a stopped run still finishes with its best checkpoint");
    assert!(r.stopped_early);
    assert!(r.steps >= 3 && r.steps < 1000, "ran {} steps", r.steps);

    // A bad template fails through the same channel, with the reason.
    let mut s = spec(MethodKind::PromptTuning, None);
    s.template = Some("{x} [P*2] w5 [ANSWER]".into());
    let worker = Worker::spawn(model, task, s);
    let last = worker.events.iter().last().unwrap();
    match last {
        Event::Failed(e) => assert!(e.contains("only at the start"), "{e}"),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn a_diverging_run_fails_clearly_and_keeps_the_best_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(&dir.path().join("m"), 1);
    write_synthetic_task(&dir.path().join("t"));
    let task = Task::load(&dir.path().join("t")).unwrap();
    let out = dir.path().join("art");
    // Steps near f32's largest value overflow the prefix MLP's weights to infinity within a
    // few steps, and the loss to NaN. (At 1e30 the run used to diverge too, but since the MLP's
    // last layer starts at zero the prefix stays finite there: the model's norms squash it and
    // the loss settles at ln(vocabulary).)
    let mut s = spec(MethodKind::PrefixTuning, Some(&out));
    s.config.lr = Some(1e38);
    s.config.steps = 20;
    s.config.warmup = 0.0;
    let (ev_tx, _ev_rx) = crossbeam_channel::unbounded();
    let (_cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let err = format!(
        "{:#}",
        train::train(&model, &task, &s, &ev_tx, &cmd_rx).unwrap_err()
    );
    assert!(
        err.contains("not finite") && err.contains("learning rate"),
        "{err}"
    );
    assert!(
        err.contains("best checkpoint") && err.contains(&out.display().to_string()),
        "{err}"
    );
    let art = Artifact::load(&out).unwrap();
    let (_, prompt) = art.prompt_for(&model).unwrap();
    for (k, v) in &prompt.prefix.unwrap().layers {
        for t in [k, v] {
            let x: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            assert!(
                x.iter().all(|x| x.is_finite()),
                "the saved prompt is the last good one"
            );
        }
    }
}
