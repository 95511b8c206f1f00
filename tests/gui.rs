//! The desktop workbench driven headless with egui_kittest, by labels: the template chips,
//! training with live plots (injected events, and a real worker on a tiny model), the run
//! store, the comparison with baselines, inspection and export.

mod common;

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use gradprompt::gui::{App, Focus, ModelState, Options, Tab};
use gradprompt::methods::MethodKind;
use gradprompt::run::{Event, RunResult, RunSpec, TrainConfig};
use gradprompt::runs::{RunRecord, RunStatus, RunStore};
use std::path::Path;
use std::time::{Duration, Instant};

fn harness(app: App) -> Harness<'static, App> {
    Harness::builder()
        .with_size(egui::Vec2::new(1600.0, 1400.0))
        .build_ui_state(|ui, app: &mut App| app.show(ui), app)
}

/// An app on the synthetic task; `model` is a path (loaded in the background).
fn app_at(root: &Path, model: &str) -> App {
    let task = root.join("task");
    common::write_synthetic_task(&task);
    let mut opts = Options::new(root.join("runs"));
    opts.model = model.to_string();
    opts.task = Some(task);
    App::new(opts)
}

fn tiny_app(root: &Path) -> App {
    let model_dir = root.join("model");
    common::write_checkpoint(&model_dir, &common::tiny_config(true), 7);
    app_at(root, model_dir.to_str().unwrap())
}

/// Steps frames until `done` holds, failing after `limit`.
fn step_until(
    h: &mut Harness<'static, App>,
    limit: Duration,
    what: &str,
    done: impl Fn(&App) -> bool,
) {
    let start = Instant::now();
    while !done(h.state()) {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    h.step();
}

fn drag(h: &mut Harness<'static, App>, from: egui::Pos2, to: egui::Pos2) {
    h.drag_at(from);
    h.step();
    h.hover_at(from + egui::vec2(12.0, 0.0));
    h.step();
    h.hover_at(to);
    h.step();
    h.step();
    h.drop_at(to);
    h.step();
    h.step();
}

#[test]
fn dragging_chips_changes_the_template() {
    let dir = tempfile::tempdir().unwrap();
    // No model is needed to edit a template; a missing one must not stop the editor.
    let mut app = app_at(dir.path(), "/nonexistent/model");
    app.setup.method = MethodKind::PTuning;
    app.reset_template();
    let mut h = harness(app);
    step_until(&mut h, Duration::from_secs(30), "the model error", |a| {
        matches!(a.session.model, ModelState::Failed { .. })
    });
    h.get_by_label_contains("cannot load /nonexistent/model");
    assert_eq!(h.state().editor.text, "[P*8]{x} w5 w6 [ANSWER]");

    // Move the field to the right half of the anchor text: it lands after it.
    let from = h.get_by_label("{x}").rect().center();
    let anchor = h.get_by_label("\" w5 w6 \"").rect();
    drag(&mut h, from, anchor.right_center() - egui::vec2(4.0, 0.0));
    assert_eq!(h.state().editor.text, "[P*8] w5 w6 {x}[ANSWER]");

    // A new soft chip from the palette, dropped on the left half of the field.
    let from = h.get_by_label("+ soft [P]").rect().center();
    let field = h.get_by_label("{x}").rect();
    drag(&mut h, from, field.left_center() + egui::vec2(4.0, 0.0));
    assert_eq!(h.state().editor.text, "[P*8] w5 w6 [P]{x}[ANSWER]");
    h.get_by_label("valid layout");

    // Prompt Tuning keeps soft vectors at the start, whatever is dropped where.
    h.state_mut().setup.method = MethodKind::PromptTuning;
    h.state_mut().reset_template();
    h.step();
    let from = h.get_by_label("+ soft [P]").rect().center();
    let anchor = h.get_by_label("\" w5 w6 \"").rect();
    drag(&mut h, from, anchor.right_center() - egui::vec2(4.0, 0.0));
    assert_eq!(h.state().editor.text, "[P*8][P]{x} w5 w6 [ANSWER]");

    // An invalid layout typed as text is explained with the engine's message.
    h.state_mut().editor.text = "{y} w5 [ANSWER]".into();
    let t = gradprompt::task::Template::parse("{y} w5 [ANSWER]").unwrap();
    h.state_mut().editor.segments = t.segments;
    h.step();
    h.get_by_label_contains("unknown field {y}");
}

fn result(method: &str, test: f64, trainable: usize, bytes: usize) -> RunResult {
    RunResult {
        method: method.into(),
        task: "synthetic".into(),
        model: "m".into(),
        template: "{x} w5 w6 [ANSWER]".into(),
        steps: 10,
        train_loss_first: Some(2.0),
        train_loss_last: Some(1.0),
        metric: gradprompt::task::Metric::Accuracy,
        dev_metric: test,
        test_metric: test,
        best_step: 10,
        trainable_params: trainable,
        model_params: 1000,
        artifact_bytes: bytes,
        wall_seconds: 3.0,
        artifact: None,
        readable: None,
        stopped_early: false,
    }
}

#[test]
fn injected_events_reach_the_plots_and_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_at(dir.path(), "/nonexistent/model");
    let mut h = harness(app);
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    {
        let app = h.state_mut();
        let task = app.session.task.clone().unwrap();
        let spec = RunSpec {
            method: MethodKind::PromptTuning,
            settings: Default::default(),
            template: None,
            config: TrainConfig {
                steps: 10,
                ..Default::default()
            },
            out: None,
        };
        let id = app.session.store.new_id(MethodKind::PromptTuning);
        let rec = RunRecord::new(id.clone(), "m", &task.spec.name, &task.dir, spec);
        app.session.store.add(rec).unwrap();
        app.plots.shown.insert(id.clone());
        app.session.active = Some(gradprompt::gui::Active {
            id,
            commands: cmd_tx,
            events: ev_rx,
            worker: None,
        });
    }
    ev_tx
        .send(Event::Started {
            total_steps: 10,
            template: "[P*8]{x} w5 w6 [ANSWER]".into(),
            trainable_params: 512,
            model_params: 1000,
        })
        .unwrap();
    for step in 1..=3 {
        ev_tx
            .send(Event::Step {
                step,
                loss: 3.0 / step as f32,
                lr: 0.01,
                examples_per_s: 40.0,
            })
            .unwrap();
    }
    ev_tx
        .send(Event::Eval {
            step: 3,
            dev_metric: 0.5,
            best: true,
        })
        .unwrap();
    h.step();
    h.step();
    assert_eq!(h.state().plots.drawn_loss_points, 3);
    assert_eq!(h.state().plots.drawn_eval_points, 1);
    h.get_by_label_contains("Step 3 / 10");

    // Pause goes to the worker as a command; the Paused event flips the button.
    h.get_by_label("Pause").click();
    h.step();
    assert_eq!(cmd_rx.try_recv(), Ok(gradprompt::run::Command::Pause));
    ev_tx.send(Event::Paused).unwrap();
    h.step();
    h.get_by_label("Resume");

    // Saved as it goes: another store opened now sees the curve so far, as interrupted.
    let id = h.state().session.active.as_ref().unwrap().id.clone();
    // Records are written on the session's writer thread: wait for it before reading the disk.
    h.state().session.flush_records();
    let other = RunStore::open(&dir.path().join("runs")).unwrap();
    let r = other.get(&id).unwrap();
    assert_eq!(r.status, RunStatus::Interrupted);
    assert!(!r.evals.is_empty());

    ev_tx
        .send(Event::Finished(Box::new(result(
            "prompt-tuning",
            0.75,
            512,
            2048,
        ))))
        .unwrap();
    drop(ev_tx);
    h.step();
    h.step();
    assert!(h.state().session.active.is_none());
    let r = h.state().session.store.get(&id).unwrap();
    assert_eq!(r.status, RunStatus::Finished);
    assert_eq!(r.losses.len(), 3);
    h.state().session.flush_records();
    let reopened = RunStore::open(&dir.path().join("runs")).unwrap();
    assert_eq!(reopened.get(&id).unwrap().status, RunStatus::Finished);
}

#[test]
fn comparison_always_shows_the_baselines() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_at(dir.path(), "/nonexistent/model");
    let mut h = harness(app);
    let mut ids = Vec::new();
    {
        let app = h.state_mut();
        let task = app.session.task.clone().unwrap();
        for (m, test, trainable, bytes) in [
            (MethodKind::FineTuning, 0.9, 1000, 4000),
            (MethodKind::ZeroShot, 0.5, 0, 0),
            (MethodKind::PromptTuning, 0.75, 512, 2048),
        ] {
            let spec = RunSpec {
                method: m,
                settings: Default::default(),
                template: None,
                config: TrainConfig::default(),
                out: None,
            };
            let id = app.session.store.new_id(m);
            let i = app
                .session
                .store
                .add(RunRecord::new(
                    id.clone(),
                    "m",
                    &task.spec.name,
                    &task.dir,
                    spec,
                ))
                .unwrap();
            app.session.store.runs[i].apply(&Event::Finished(Box::new(result(
                m.id(),
                test,
                trainable,
                bytes,
            ))));
            ids.push(id);
        }
        // Only the prompt-tuning run is selected; the baselines come along.
        app.runs.selected.insert(ids[2].clone());
        app.tab = Tab::Compare;
    }
    h.step();
    let rows = gradprompt::gui::compare::rows(&h.state().session, &h.state().runs.selected);
    let methods: Vec<MethodKind> = rows.iter().map(|r| r.method).collect();
    assert_eq!(
        methods,
        vec![
            MethodKind::PromptTuning,
            MethodKind::FineTuning,
            MethodKind::ZeroShot
        ]
    );
    assert!(!rows[0].baseline && rows[1].baseline && rows[2].baseline);
    for id in &ids {
        let label = gradprompt::gui::run_label(h.state().session.store.get(id).unwrap());
        h.get_by_label(&label);
    }
    h.get_by_label("0.750 accuracy");
    h.get_by_label("51.2000%");
    h.get_by_label("2.0 kB");
    h.get_by_label("Run the baselines");

    // The runs list shows every run with its status and settings.
    h.state_mut().tab = Tab::Runs;
    h.step();
    assert_eq!(h.get_all_by_label("finished").count(), 3);
    h.get_by_label("init vocab, 100 steps, lr 0.03, batch 8, seed 0");
}

#[test]
fn a_real_run_trains_compares_inspects_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let app = tiny_app(dir.path());
    let mut h = harness(app);
    step_until(&mut h, Duration::from_secs(60), "the model", |a| {
        a.session.model.ready().is_some()
    });
    h.state_mut().setup.config.steps = 12;
    h.state_mut().setup.config.eval_every = 4;
    // The preview counts tokens with the loaded tokenizer.
    h.get_by_label_contains("input positions before the answer");

    h.get_by_label("Train").click();
    h.step();
    step_until(&mut h, Duration::from_secs(300), "plot points", |a| {
        a.plots.drawn_loss_points > 0
    });
    step_until(&mut h, Duration::from_secs(300), "the run to finish", |a| {
        a.session.active.is_none() && a.session.queue.is_empty()
    });
    let r = h.state().session.store.runs.last().unwrap().clone();
    assert_eq!(r.status, RunStatus::Finished, "{:?}", r.error);
    assert_eq!(r.losses.len(), 12);
    assert_eq!(r.evals.len(), 4);
    assert_eq!(h.state().plots.drawn_loss_points, 12);
    let art_dir = r.artifact_dir().unwrap().to_path_buf();
    assert!(art_dir.join("prompt.safetensors").is_file());

    // The baselines, queued with one click from the comparison.
    h.state_mut().tab = Tab::Compare;
    h.step();
    h.get_by_label("Run the baselines").click();
    h.step();
    step_until(&mut h, Duration::from_secs(600), "the baselines", |a| {
        a.session.active.is_none() && a.session.queue.is_empty()
    });
    h.step();
    let rows = gradprompt::gui::compare::rows(&h.state().session, &h.state().runs.selected);
    let mut methods: Vec<MethodKind> = rows.iter().map(|r| r.method).collect();
    methods.sort_by_key(|m| m.id());
    assert_eq!(
        methods,
        vec![
            MethodKind::FineTuning,
            MethodKind::PromptTuning,
            MethodKind::ZeroShot
        ],
        "{:?}",
        h.state()
            .session
            .store
            .runs
            .iter()
            .map(|r| (&r.id, r.status, &r.error))
            .collect::<Vec<_>>()
    );
    h.get_by_label(&gradprompt::gui::run_label(&r));

    // Inspect: nearest tokens of the soft vectors, and the playground.
    h.state_mut().session.focus = Some(Focus::Run(r.id.clone()));
    h.state_mut().tab = Tab::Inspect;
    h.step();
    step_until(&mut h, Duration::from_secs(60), "nearest tokens", |a| {
        a.inspect.learned().is_some_and(|l| l.1.is_ok())
    });
    h.get_by_label_contains("Nearest vocabulary tokens");
    h.get_by_label("[P] 1");
    h.get_by_label("Score").click();
    h.step();
    step_until(&mut h, Duration::from_secs(60), "the playground", |a| {
        a.inspect.play().is_some()
    });
    assert!(
        matches!(h.state().inspect.play(), Some((f, Ok(_))) if *f == Focus::Run(r.id.clone())),
        "{:?}",
        h.state().inspect.play().map(|p| p.1.as_ref().err())
    );
    h.get_by_label("with the learned prompt");

    // Export: native and PEFT.
    let out = dir.path().join("exported");
    h.state_mut().export.out_path = out.display().to_string();
    h.state_mut().tab = Tab::Export;
    h.step();
    h.get_by_label("Export native").click();
    h.step();
    step_until(&mut h, Duration::from_secs(60), "the native export", |a| {
        a.export.message.is_some()
    });
    assert!(
        matches!(h.state().export.message, Some(Ok(_))),
        "{:?}",
        h.state().export.message
    );
    assert!(out.join("manifest.json").is_file());
    assert!(out.join("prompt.safetensors").is_file());
    h.get_by_label("Export PEFT adapter").click();
    h.step();
    step_until(&mut h, Duration::from_secs(60), "the PEFT export", |a| {
        a.export
            .message
            .as_ref()
            .is_some_and(|m| m.as_ref().is_err() || m.as_ref().unwrap().contains("PEFT"))
    });
    assert!(out.join("adapter_config.json").is_file());
    assert!(out.join("adapter_model.safetensors").is_file());

    // Import the exported folder and evaluate it: the same test metric as at training time.
    h.state_mut().export.import_path = out.display().to_string();
    h.step();
    h.get_by_label("Import prompt").click();
    h.step();
    step_until(&mut h, Duration::from_secs(60), "the import", |a| {
        a.session.focus == Some(Focus::Imported(out.clone()))
            || matches!(a.export.message, Some(Err(_)))
    });
    assert_eq!(h.state().session.focus, Some(Focus::Imported(out.clone())));
    h.get_by_label("Evaluate on the test split").click();
    h.step();
    step_until(&mut h, Duration::from_secs(60), "the evaluation", |a| {
        a.export.eval().is_some()
    });
    let (f, got) = h
        .state()
        .export
        .eval()
        .map(|(f, r)| (f.clone(), r.clone()))
        .unwrap();
    assert_eq!(f, Focus::Imported(out.clone()));
    let got = got.unwrap();
    assert!((got - r.result.as_ref().unwrap().test_metric).abs() < 1e-9);

    // The runs survive a restart.
    h.state().session.flush_records();
    let reopened = RunStore::open(&dir.path().join("runs")).unwrap();
    assert_eq!(reopened.runs.len(), 3);
    assert!(reopened
        .runs
        .iter()
        .all(|r| r.status == RunStatus::Finished));
}

#[test]
fn a_chip_edit_clears_a_stale_typing_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = app_at(dir.path(), "/nonexistent/model");
    app.setup.method = MethodKind::PTuning;
    app.reset_template();
    let mut h = harness(app);
    h.step();
    // A typo in the text field: the chips keep the last valid template, the editor says why.
    let err = gradprompt::task::Template::parse("[P*8]{x w5 w6 [ANSWER]").unwrap_err();
    h.state_mut().editor.text = "[P*8]{x w5 w6 [ANSWER]".into();
    h.state_mut().editor.error = Some(err.to_string());
    h.step();
    h.get_by_label_contains("invalid:");
    // Removing a chip rebuilds the text from the chips: the old error no longer applies.
    h.get_by_label("\" w5 w6 \"").click();
    h.step();
    h.get_by_label("Remove chip").click_accesskit();
    h.step();
    h.step();
    assert_eq!(h.state().editor.text, "[P*8]{x}[ANSWER]");
    assert_eq!(h.state().editor.error, None);
    h.get_by_label("valid layout");
}

#[test]
fn a_dialog_that_ends_without_an_answer_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_at(dir.path(), "/nonexistent/model");
    let mut h = harness(app);
    let (tx, rx) = crossbeam_channel::bounded(1);
    drop(tx);
    h.state_mut().dialog = Some((gradprompt::gui::DialogTarget::TaskFolder, rx));
    h.step();
    assert!(h.state().dialog.is_none());
    h.get_by_label_contains("the file dialog could not be shown");

    // A task folder is read in the background; the current task stays until it is ready.
    h.state_mut().select_task(&dir.path().join("no-such-task"));
    step_until(&mut h, Duration::from_secs(30), "the task error", |a| {
        a.session.task_job.is_none()
    });
    assert!(h.state().session.task_error.is_some());
    assert!(h.state().session.task.is_some());
    h.state_mut().select_task(&dir.path().join("task"));
    step_until(&mut h, Duration::from_secs(30), "the task", |a| {
        a.session.task_job.is_none()
    });
    assert_eq!(h.state().session.task_error, None);
}

fn record(app: &App, id: &str) -> RunRecord {
    let task = app.session.task.clone().unwrap();
    let spec = RunSpec {
        method: MethodKind::PromptTuning,
        settings: Default::default(),
        template: None,
        config: TrainConfig::default(),
        out: None,
    };
    RunRecord::new(id.to_string(), "m", &task.spec.name, &task.dir, spec)
}

#[test]
fn the_run_store_skips_records_it_cannot_trust() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    std::fs::create_dir_all(runs.join("evil")).unwrap();
    std::fs::create_dir_all(dir.path().join("victim")).unwrap();
    let app = app_at(dir.path(), "/nonexistent/model");
    // A record whose id points outside its folder.
    let mut r = record(&app, "../victim");
    r.status = RunStatus::Finished;
    std::fs::write(
        runs.join("evil").join("run.json"),
        serde_json::to_string(&r).unwrap(),
    )
    .unwrap();
    // A live record that cannot be re-saved as interrupted (its temporary file is a folder).
    let live = record(&app, "123-001-prompt-tuning");
    std::fs::create_dir_all(runs.join(&live.id).join("run.json.tmp")).unwrap();
    std::fs::write(
        runs.join(&live.id).join("run.json"),
        serde_json::to_string(&live).unwrap(),
    )
    .unwrap();

    let mut store = RunStore::open(&runs).unwrap();
    assert!(store.get("../victim").is_none());
    assert!(
        store
            .unreadable
            .iter()
            .any(|u| u.contains("not its folder")),
        "{:?}",
        store.unreadable
    );
    assert!(
        store.unreadable.iter().any(|u| u.contains("interrupted")),
        "{:?}",
        store.unreadable
    );
    assert_eq!(
        store.get(&live.id).map(|r| r.status),
        Some(RunStatus::Interrupted)
    );
    assert!(store.delete("../victim").is_err());
    assert!(dir.path().join("victim").is_dir());

    // Labels cut ids by characters, not bytes.
    let odd = record(&app, "12é45é-001-x");
    assert_eq!(gradprompt::gui::run_label(&odd), "prompt-tuning #2é45é.1");
}

#[test]
fn exit_saves_the_active_run_and_old_results_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_at(dir.path(), "/nonexistent/model");
    let mut h = harness(app);
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let id = {
        let app = h.state_mut();
        let id = app.session.store.new_id(MethodKind::PromptTuning);
        let rec = record(app, &id);
        app.session.store.add(rec).unwrap();
        app.session.active = Some(gradprompt::gui::Active {
            id: id.clone(),
            commands: cmd_tx,
            events: ev_rx,
            worker: None,
        });
        id
    };
    ev_tx
        .send(Event::Started {
            total_steps: 10,
            template: "[P*8]{x} w5 w6 [ANSWER]".into(),
            trainable_params: 512,
            model_params: 1000,
        })
        .unwrap();
    // Steps arriving faster than the store saves them.
    for step in 1..=5 {
        ev_tx
            .send(Event::Step {
                step,
                loss: 1.0,
                lr: 0.01,
                examples_per_s: 40.0,
            })
            .unwrap();
    }
    h.step();
    h.get_by_label_contains("ETA");
    for step in 6..=7 {
        ev_tx
            .send(Event::Step {
                step,
                loss: 1.0,
                lr: 0.01,
                examples_per_s: 40.0,
            })
            .unwrap();
    }
    h.state_mut().session.send(gradprompt::run::Command::Stop);
    h.state_mut().session.save_on_exit();
    assert_eq!(cmd_rx.try_recv(), Ok(gradprompt::run::Command::Stop));
    let reopened = RunStore::open(&dir.path().join("runs")).unwrap();
    let r = reopened.get(&id).unwrap();
    assert_eq!(r.losses.len(), 7);
    assert_eq!(r.status, RunStatus::Interrupted);

    // A score computed for another prompt is not shown against the focused one.
    let a = Focus::Imported(dir.path().join("a"));
    let b = Focus::Imported(dir.path().join("b"));
    h.state_mut().session.focus = Some(b.clone());
    h.state_mut().export.eval = Some((a, gradprompt::gui::Job::finished("score", Ok(0.5))));
    h.step();
    assert!(h.state().export.eval.is_none());
}

#[test]
fn the_plot_list_says_when_it_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_at(dir.path(), "/nonexistent/model");
    let mut h = harness(app);
    {
        let app = h.state_mut();
        for _ in 0..26 {
            let id = app.session.store.new_id(MethodKind::PromptTuning);
            let mut rec = record(app, &id);
            rec.losses.push((1, Some(1.0)));
            rec.status = RunStatus::Failed;
            app.session.store.add(rec).unwrap();
        }
        app.tab = Tab::Plots;
    }
    h.step();
    h.get_by_label_contains("showing the latest 24 of 26");
}
