//! The desktop workbench driven headless with egui_kittest, by labels: the template chips,
//! training with live plots (injected events, and a real worker on a tiny model), the run
//! store, the comparison with baselines, inspection and export; closing during training, a
//! second workbench on one runs folder, and removing a run folder that cannot be read; several
//! tasks ticked for one run, with per-task dev lines, per-task rows next to single-task runs
//! and the storage picture (one frozen model + N prompts against N fine-tuned copies); Resume
//! on a stopped run (it ends as an uninterrupted run would) and where it is not offered, also
//! for a multi-task run; every way a run ends under its own status; a colour per plotted run
//! that survives a relaunch; the plots before the first run, naming the metric, and against
//! training time; rename and note; the runs table sorted and filtered; Clone settings; and
//! Compare with six bars, what each run learned, its steps, dev and seed.

mod common;

use common::gui::{app_at, harness, settle, step_until};

use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use gradprompt::gui::compare::Storage;
use gradprompt::gui::plots::task_line_name;
use gradprompt::gui::setup::SEVERAL_TASKS;
use gradprompt::gui::{App, Closing, Focus, ModelState, Options, Tab, QUIT_QUESTION};
use gradprompt::methods::MethodKind;
use gradprompt::run::{
    Event, Mix, MultiTaskResult, MultiTaskSpec, RunResult, RunSpec, TaskScore, TrainConfig,
};
use gradprompt::runs::{RunRecord, RunStatus, RunStore, TaskRef};
use std::path::Path;
use std::time::Duration;

fn tiny_app(root: &Path) -> App {
    let model_dir = root.join("model");
    common::write_checkpoint(&model_dir, &common::tiny_config(true), 7);
    app_at(root, model_dir.to_str().unwrap())
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
        label_tokens: None,
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

    // Saved as it goes: another store opened now sees the curve so far. The app owns the
    // runs folder, so that store is read-only and leaves the live run as it is.
    let id = h.state().session.active.as_ref().unwrap().id.clone();
    // Records are written on the session's writer thread: wait for it before reading the disk.
    h.state().session.flush_records();
    let other = RunStore::open(&dir.path().join("runs")).unwrap();
    assert!(other.read_only().is_some());
    let r = other.get(&id).unwrap();
    assert_eq!(r.status, RunStatus::Paused);
    assert!(!r.evals.is_empty());
    drop(other);

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
        // In the table, and beside its bar.
        assert_eq!(h.get_all_by_label(&label).count(), 2, "{label}");
    }
    h.get_by_label("0.750 accuracy");
    h.get_by_label("51.2000%");
    h.get_by_label("2.0 kB");
    h.get_by_label("Run the baselines");

    // The runs list shows every run with its status and settings.
    h.state_mut().tab = Tab::Runs;
    settle(&mut h);
    assert_eq!(h.get_all_by_label("finished").count(), 3);
    // Every setting in a column of its own: prompt tuning's init and learning rate.
    h.get_by_label("vocab");
    h.get_by_label("0.03");
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
    // Zero-shot learned nothing: the export view says so and offers no export.
    let zero = h
        .state()
        .session
        .store
        .runs
        .iter()
        .find(|r| r.method() == MethodKind::ZeroShot)
        .unwrap()
        .id
        .clone();
    h.state_mut().session.focus = Some(Focus::Run(zero));
    h.state_mut().tab = Tab::Export;
    step_until(
        &mut h,
        Duration::from_secs(60),
        "the zero-shot run's record",
        |a| a.session.artifact().is_some_and(|j| j.result().is_some()),
    );
    h.get_by_label(gradprompt::gui::export::ZERO_SHOT_EXPORT);
    assert!(h.query_by_label("Export native").is_none());
    h.state_mut().tab = Tab::Compare;
    h.step();
    // In the table, and beside its bar.
    assert_eq!(
        h.get_all_by_label(&gradprompt::gui::run_label(&r)).count(),
        2
    );

    // Inspect: nearest tokens of the soft vectors, and the playground.
    h.state_mut().session.focus = Some(Focus::Run(r.id.clone()));
    h.state_mut().tab = Tab::Inspect;
    h.step();
    step_until(&mut h, Duration::from_secs(60), "nearest tokens", |a| {
        a.inspect.learned().is_some_and(|l| l.1.is_ok())
    });
    h.get_by_label_contains("Nearest vocabulary tokens");
    h.get_by_label("[P] 1");
    // ... and where each vector sits in the template (prompt tuning: before the input).
    assert!(h.get_all_by_label_contains("between the start and").count() > 1);
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
    // The recipe: train.py, recipe.json and the task's splits, in a folder of their own.
    let recipe = dir.path().join("recipe");
    h.state_mut().export.out_path = recipe.display().to_string();
    h.step();
    h.get_by_label("Export PEFT recipe").click();
    h.step();
    step_until(&mut h, Duration::from_secs(120), "the recipe export", |a| {
        a.export
            .message
            .as_ref()
            .is_some_and(|m| m.as_ref().is_err() || m.as_ref().unwrap().contains("recipe"))
    });
    assert!(
        matches!(&h.state().export.message, Some(Ok(m)) if m.contains("accelerate launch")),
        "{:?}",
        h.state().export.message
    );
    for f in ["train.py", "recipe.json", "train.jsonl", "test.jsonl"] {
        assert!(recipe.join(f).is_file(), "{f} missing from the recipe");
    }

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
    // The same folder spelled another way is the same import, not a second entry.
    let other_spelling = out.join("..").join(out.file_name().unwrap());
    h.state_mut().export.import_path = other_spelling.display().to_string();
    h.step();
    h.get_by_label("Import prompt").click();
    h.step();
    step_until(&mut h, Duration::from_secs(60), "the second import", |a| {
        matches!(&a.export.message, Some(Ok(m)) if m.contains(".."))
            || matches!(a.export.message, Some(Err(_)))
    });
    assert_eq!(h.state().session.imported.len(), 1);
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
    // Evaluated here, the imported prompt joins Compare beside the runs trained here.
    h.step();
    h.state_mut().tab = Tab::Compare;
    h.step();
    let rows = gradprompt::gui::compare::rows(&h.state().session, &h.state().runs.selected);
    let imported = rows
        .iter()
        .find(|x| x.imported.as_deref() == Some(out.as_path()))
        .expect("the imported prompt in Compare");
    assert!((imported.test - got).abs() < 1e-9);
    assert!(h.get_all_by_label("imported: exported").count() >= 1);
    h.state_mut().tab = Tab::Export;
    h.step();

    // The runs survive a restart.
    h.state().session.flush_records();
    let reopened = RunStore::open(&dir.path().join("runs")).unwrap();
    assert_eq!(reopened.runs.len(), 3);
    assert!(reopened
        .runs
        .iter()
        .all(|r| r.status == RunStatus::Finished));
    drop(reopened);

    // So does the import, with its test score: a new window lists it in Compare again.
    drop(h);
    let mut h = harness(app_at(dir.path(), "builtin"));
    step_until(
        &mut h,
        Duration::from_secs(60),
        "the import read again",
        |a| !a.session.imported.is_empty() || a.session.notice.is_some(),
    );
    let again = &h.state().session.imported;
    assert_eq!(again.len(), 1, "{:?}", h.state().session.notice);
    assert_eq!(again[0].dir, out);
    assert_eq!(again[0].test, Some(got));
    h.state_mut().tab = Tab::Compare;
    settle(&mut h);
    assert!(h.get_all_by_label("imported: exported").count() >= 1);
}

#[test]
fn an_import_whose_folder_is_gone_is_said_and_dropped_from_the_list() {
    use gradprompt::runs::{ImportRecord, IMPORTS_FILE};
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    let gone = dir.path().join("gone");
    let list = vec![ImportRecord {
        dir: gone.clone(),
        test: Some(0.5),
    }];
    std::fs::write(
        runs.join(IMPORTS_FILE),
        serde_json::to_string(&list).unwrap(),
    )
    .unwrap();
    let mut h = harness(tiny_app(dir.path()));
    step_until(&mut h, Duration::from_secs(30), "the notice", |a| {
        a.session
            .notice
            .as_deref()
            .is_some_and(|n| n.contains("could not be read again"))
    });
    let notice = h.state().session.notice.clone().unwrap();
    assert!(notice.contains(&gone.display().to_string()), "{notice}");
    assert!(h.state().session.imported.is_empty());
    let left: Vec<ImportRecord> =
        serde_json::from_str(&std::fs::read_to_string(runs.join(IMPORTS_FILE)).unwrap()).unwrap();
    assert_eq!(left, vec![]);
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
    // A live record left by a workbench that went away (one that cannot be saved again is
    // warned about: see runs.rs, a_live_record_that_cannot_be_saved_again_...).
    let live = record(&app, "123-001-prompt-tuning");
    std::fs::create_dir_all(runs.join(&live.id)).unwrap();
    std::fs::write(
        runs.join(&live.id).join("run.json"),
        serde_json::to_string(&live).unwrap(),
    )
    .unwrap();
    // Labels cut ids by characters, not bytes.
    let odd = record(&app, "12é45é-001-x");
    assert_eq!(gradprompt::gui::run_label(&odd), "prompt-tuning #2é45é.1");
    // The app owns the runs folder while it lives; this store must own it to mark runs.
    drop(app);

    let mut store = RunStore::open(&runs).unwrap();
    assert!(store.read_only().is_none());
    assert!(store.get("../victim").is_none());
    assert!(
        store
            .unreadable
            .iter()
            .any(|u| u.folder == "evil" && u.error.contains("not its folder")),
        "{:?}",
        store.unreadable
    );
    assert!(store.warnings.is_empty(), "{:?}", store.warnings);
    assert_eq!(
        store.get(&live.id).map(|r| r.status),
        Some(RunStatus::Interrupted)
    );
    assert!(store.delete("../victim").is_err());
    assert!(dir.path().join("victim").is_dir());
    drop(store);
    // Marked on disk too, and the record was replaced whole (nothing left beside it).
    let again = RunStore::open(&runs).unwrap();
    assert_eq!(
        again.get(&live.id).map(|r| r.status),
        Some(RunStatus::Interrupted)
    );
    let names: Vec<_> = std::fs::read_dir(runs.join(&live.id))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["run.json"]);
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

/// Puts a run in the app as the active one, fed through channels by the test.
fn attach_active_run(
    app: &mut App,
) -> (
    String,
    crossbeam_channel::Receiver<gradprompt::run::Command>,
    crossbeam_channel::Sender<Event>,
) {
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let id = app.session.store.new_id(MethodKind::PromptTuning);
    let rec = record(app, &id);
    app.session.store.add(rec).unwrap();
    app.session.active = Some(gradprompt::gui::Active {
        id: id.clone(),
        commands: cmd_tx,
        events: ev_rx,
        worker: None,
    });
    ev_tx
        .send(Event::Started {
            total_steps: 10,
            template: "[P*8]{x} w5 w6 [ANSWER]".into(),
            trainable_params: 512,
            model_params: 1000,
        })
        .unwrap();
    (id, cmd_rx, ev_tx)
}

/// What the window's close button does: a close request for the root viewport.
fn request_close(h: &mut Harness<'static, App>) {
    h.input_mut()
        .viewports
        .entry(egui::ViewportId::ROOT)
        .or_default()
        .events
        .push(egui::ViewportEvent::Close);
    h.step();
}

fn viewport_commands(h: &Harness<'static, App>) -> Vec<egui::ViewportCommand> {
    h.output()
        .viewport_output
        .get(&egui::ViewportId::ROOT)
        .map(|v| v.commands.clone())
        .unwrap_or_default()
}

#[test]
fn closing_the_window_while_a_run_trains_asks_first() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_at(dir.path(), "/nonexistent/model");
    let mut h = harness(app);
    h.step();
    // Nothing training: the close goes through, as before.
    request_close(&mut h);
    assert!(!viewport_commands(&h).contains(&egui::ViewportCommand::CancelClose));
    assert_eq!(h.state().closing, Closing::Open);
    assert!(h.query_by_label(QUIT_QUESTION).is_none());

    let (id, cmd_rx, ev_tx) = attach_active_run(h.state_mut());
    h.step();
    request_close(&mut h);
    assert!(viewport_commands(&h).contains(&egui::ViewportCommand::CancelClose));
    // A modal is measured in its first frame and shown in the next.
    h.step();
    h.get_by_label(QUIT_QUESTION);
    // Clicking the close button again while asked changes nothing.
    request_close(&mut h);
    assert!(viewport_commands(&h).contains(&egui::ViewportCommand::CancelClose));
    h.get_by_label(QUIT_QUESTION);

    // "Keep training": the question goes, the run goes on, nothing is sent to the worker.
    h.get_by_label("Keep training").click();
    h.step();
    h.step();
    assert_eq!(h.state().closing, Closing::Open);
    assert!(h.query_by_label(QUIT_QUESTION).is_none());
    assert_eq!(
        cmd_rx.try_recv(),
        Err(crossbeam_channel::TryRecvError::Empty)
    );
    assert_eq!(h.state().session.active.as_ref().map(|a| &a.id), Some(&id));
    assert_eq!(
        h.state().session.store.get(&id).unwrap().status,
        RunStatus::Running
    );

    // Ctrl+Q asks the same question.
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Q);
    h.step();
    h.get_by_label(QUIT_QUESTION);

    // "Stop and quit": Stop goes to the worker and the window waits for the run to end (the
    // worker saves the best checkpoint before it reports Finished), then closes.
    h.get_by_label("Stop and quit").click();
    h.step();
    h.step();
    h.step();
    assert_eq!(cmd_rx.try_recv(), Ok(gradprompt::run::Command::Stop));
    assert_eq!(h.state().closing, Closing::Stopping);
    h.get_by_label("Stopping the run...");
    request_close(&mut h);
    assert!(viewport_commands(&h).contains(&egui::ViewportCommand::CancelClose));
    ev_tx
        .send(Event::Finished(Box::new(result(
            "prompt-tuning",
            0.75,
            512,
            2048,
        ))))
        .unwrap();
    h.step();
    assert_eq!(h.state().closing, Closing::Quitting);
    assert!(viewport_commands(&h).contains(&egui::ViewportCommand::Close));
    request_close(&mut h);
    assert!(!viewport_commands(&h).contains(&egui::ViewportCommand::CancelClose));
    assert_eq!(
        h.state().session.store.get(&id).unwrap().status,
        RunStatus::Finished
    );
}

#[test]
fn a_second_workbench_on_one_runs_folder_is_read_only_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    // The first workbench: it owns the folder and has a run in progress.
    let mut first = RunStore::open(&runs).unwrap();
    let spec = RunSpec {
        method: MethodKind::PromptTuning,
        settings: Default::default(),
        template: None,
        config: TrainConfig::default(),
        out: None,
    };
    let id = first.new_id(MethodKind::PromptTuning);
    let mut live = RunRecord::new(id.clone(), "m", "synthetic", dir.path(), spec);
    live.status = RunStatus::Running;
    first.add(live).unwrap();
    let broken = runs.join("5-001-prompt-tuning");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("run.json"), "{").unwrap();

    // A second store on the folder is refused any write.
    let mut second = RunStore::open(&runs).unwrap();
    assert!(second.read_only().is_some());
    assert!(second.delete(&id).is_err());
    drop(second);

    // The second workbench: a banner, no Train, no Delete or Remove, and the live run untouched.
    let app = app_at(dir.path(), "/nonexistent/model");
    let mut h = harness(app);
    h.step();
    h.get_by_label_contains(&format!(
        "Read-only: another workbench (process {})",
        std::process::id()
    ));
    assert!(h.get_by_label("Train").accesskit_node().is_disabled());
    assert_eq!(h.state_mut().queue_current(), None);
    h.step();
    h.get_by_label_contains("cannot train here");
    h.state_mut().tab = Tab::Runs;
    settle(&mut h);
    h.get_by_label("running");
    h.get_by_label("Could not read (1)");
    assert!(h.query_by_label("Delete").is_none());
    assert!(h.query_by_label("Remove...").is_none());
    let on_disk: RunRecord =
        serde_json::from_str(&std::fs::read_to_string(runs.join(&id).join("run.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk.status, RunStatus::Running);

    // The first workbench goes away (its lock with it): "Check again" takes the folder over.
    drop(first);
    h.get_by_label("Check again").click();
    h.step();
    step_until(&mut h, Duration::from_secs(30), "the runs folder", |a| {
        !a.session.rechecking()
    });
    assert!(h.state().session.store.read_only().is_none());
    assert!(h.query_by_label_contains("Read-only").is_none());
    h.get_by_label("interrupted");
    h.get_by_label("Delete");
    h.get_by_label("Remove...");
}

#[test]
fn a_run_folder_that_cannot_be_read_is_listed_and_removed_into_dot_removed() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let broken = runs.join("5-001-prompt-tuning");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("run.json"), "{ \"id\": ").unwrap();
    let app = app_at(dir.path(), "/nonexistent/model");
    let mut h = harness(app);
    h.step();
    h.get_by_label_contains("1 stored run(s) could not be read");
    h.state_mut().tab = Tab::Runs;
    settle(&mut h);
    h.get_by_label("Could not read (1)");
    h.get_by_label("5-001-prompt-tuning");
    h.get_by_label_contains("EOF while parsing");

    // Cancel keeps it.
    h.get_by_label("Remove...").click();
    // A modal is measured in its first frame and shown in the next.
    h.step();
    h.step();
    h.get_by_label("Remove this run folder?");
    h.get_by_label("Cancel").click();
    h.step();
    h.step();
    assert!(h.query_by_label("Remove this run folder?").is_none());
    h.get_by_label("Could not read (1)");

    h.get_by_label("Remove...").click();
    // A modal is measured in its first frame and shown in the next.
    h.step();
    h.step();
    h.get_by_label("Move to .removed").click();
    h.step();
    h.step();
    assert!(h.query_by_label("Remove this run folder?").is_none());
    assert!(h.query_by_label_contains("Could not read").is_none());
    h.get_by_label_contains("moved 5-001-prompt-tuning into");
    h.state().session.flush_records();
    assert!(!broken.exists());
    let kept = runs
        .join(".removed")
        .join("5-001-prompt-tuning")
        .join("run.json");
    assert_eq!(std::fs::read_to_string(kept).unwrap(), "{ \"id\": ");
    // The next start no longer reports it.
    drop(h);
    let store = RunStore::open(&runs).unwrap();
    assert!(store.unreadable.is_empty(), "{:?}", store.unreadable);
}

/// A finished multi-task result over `tasks` (test metric and stored bytes per task).
fn tasks_result(tasks: &[(&str, f64, usize)]) -> MultiTaskResult {
    MultiTaskResult {
        method: "prompt-tuning".into(),
        model: "m".into(),
        mix: Mix::Proportional,
        shared_tokens: 0,
        steps: 10,
        train_loss_first: Some(2.0),
        train_loss_last: Some(1.0),
        dev_metric: 0.6,
        test_metric: 0.6,
        best_step: 10,
        trainable_params: 1024,
        model_params: 1_000_000,
        artifact_bytes: tasks.iter().map(|t| t.2).sum(),
        wall_seconds: 4.0,
        stopped_early: false,
        tasks: tasks
            .iter()
            .map(|&(task, test, bytes)| TaskScore {
                task: task.into(),
                metric: gradprompt::task::Metric::Accuracy,
                dev_metric: test,
                test_metric: test,
                best_dev_metric: test,
                best_dev_step: 10,
                template: "[P*8]{x} w5 w6 [ANSWER]".into(),
                artifact_bytes: bytes,
                artifact: None,
            })
            .collect(),
    }
}

#[test]
fn a_multi_task_run_plots_each_tasks_dev_line_and_compares_per_task_with_its_storage() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_at(dir.path(), "/nonexistent/model");
    let mut h = harness(app);
    let (cmd_tx, _cmd_rx) = crossbeam_channel::unbounded();
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (id, single) = {
        let app = h.state_mut();
        let task = app.session.task.clone().unwrap();
        // A single-task run of one of the tasks, with the same method and model.
        let single = app.session.store.new_id(MethodKind::PromptTuning);
        let i = app.session.store.add(record(app, &single)).unwrap();
        app.session.store.runs[i].apply(&Event::Finished(Box::new(result(
            "prompt-tuning",
            0.7,
            512,
            2048,
        ))));
        let tasks = vec![
            TaskRef {
                name: "synthetic".into(),
                dir: task.dir.clone(),
            },
            TaskRef {
                name: "other".into(),
                dir: dir.path().join("other"),
            },
        ];
        let spec = MultiTaskSpec {
            run: RunSpec {
                method: MethodKind::PromptTuning,
                settings: Default::default(),
                template: None,
                config: TrainConfig {
                    steps: 10,
                    ..Default::default()
                },
                out: None,
            },
            mix: Mix::Proportional,
            shared_tokens: 0,
        };
        let id = app.session.store.new_id(MethodKind::PromptTuning);
        let rec = RunRecord::new_multi(id.clone(), "m", tasks, spec);
        app.session.store.add(rec).unwrap();
        app.plots.shown.insert(id.clone());
        app.session.active = Some(gradprompt::gui::Active {
            id: id.clone(),
            commands: cmd_tx,
            events: ev_rx,
            worker: None,
        });
        (id, single)
    };
    ev_tx
        .send(Event::Started {
            total_steps: 10,
            template: "synthetic: [P*8]{x} w5 w6 [ANSWER]  |  other: [P*8]{x} [ANSWER]".into(),
            trainable_params: 1024,
            model_params: 1_000_000,
        })
        .unwrap();
    for (step, a, b) in [(0, 0.5, 0.25), (5, 0.75, 0.5)] {
        if step > 0 {
            ev_tx
                .send(Event::Step {
                    step,
                    loss: 1.0,
                    lr: 0.01,
                    examples_per_s: 40.0,
                })
                .unwrap();
        }
        for (task, d) in [("synthetic", a), ("other", b)] {
            ev_tx
                .send(Event::TaskEval {
                    step,
                    task: task.into(),
                    dev_metric: d,
                })
                .unwrap();
        }
        ev_tx
            .send(Event::Eval {
                step,
                dev_metric: (a + b) / 2.0,
                best: true,
            })
            .unwrap();
    }
    h.step();
    h.step();
    // The mean over tasks and one dev line per task, named after the task.
    let r = h.state().session.store.get(&id).unwrap().clone();
    assert_eq!(r.evals, vec![(0, 0.375), (5, 0.625)]);
    assert_eq!(h.state().plots.drawn_eval_points, 2);
    assert_eq!(
        h.state().plots.drawn_task_lines,
        vec![task_line_name(&r, "synthetic"), task_line_name(&r, "other")]
    );
    h.get_by_label_contains("Step 5 / 10");

    ev_tx
        .send(Event::FinishedTasks(Box::new(tasks_result(&[
            ("synthetic", 0.8, 3000),
            ("other", 0.9, 5000),
        ]))))
        .unwrap();
    drop(ev_tx);
    h.step();
    h.step();
    assert!(h.state().session.active.is_none());
    assert_eq!(
        h.state().session.store.get(&id).unwrap().status,
        RunStatus::Finished
    );

    // Compare the multi-task run: a row per task, the single-task run of the same task and
    // method next to its row, and the storage picture with the run's numbers.
    h.state_mut().runs.selected.insert(id.clone());
    h.state_mut().tab = Tab::Compare;
    h.step();
    let rows = gradprompt::gui::compare::rows(&h.state().session, &h.state().runs.selected);
    let shown: Vec<(&str, &str, bool)> = rows
        .iter()
        .map(|r| (r.id.as_str(), r.task.as_str(), r.single_task_peer))
        .collect();
    assert_eq!(
        shown,
        vec![
            (id.as_str(), "synthetic", false),
            (single.as_str(), "synthetic", true),
            (id.as_str(), "other", false),
        ]
    );
    assert_eq!(rows[2].bytes, 5000);
    let label = gradprompt::gui::run_label(h.state().session.store.get(&id).unwrap());
    assert_eq!(h.get_all_by_label(&label).count(), 2);
    h.get_by_label("0.900 accuracy");
    h.get_by_label("single-task");
    assert_eq!(h.get_all_by_label("multi-task, 2 tasks").count(), 2);
    h.get_by_label(&format!("Storage for 2 tasks ({label})"));
    h.get_by_label("1 frozen model (4.0 MB) + 2 prompts (8.0 kB)");
    h.get_by_label("2 fine-tuned copies (2 × 4.0 MB)");
    h.get_by_label("= 8.0 MB");

    // The runs list shows the tasks and the mean scores; the record reloads as it was.
    h.state_mut().tab = Tab::Runs;
    settle(&mut h);
    h.get_by_label("synthetic + other");
    // Dev and test, each the mean over tasks.
    assert_eq!(h.get_all_by_label("0.600").count(), 2);
    h.get_by_label_contains("2 tasks, mix proportional, shared 0");
    h.state().session.flush_records();
    drop(h);
    let reopened = RunStore::open(&dir.path().join("runs")).unwrap();
    let m = reopened.get(&id).unwrap().multi.clone().unwrap();
    assert_eq!(m.task_evals[1], vec![(0, 0.25), (5, 0.5)]);
    assert_eq!(m.result.unwrap().tasks[1].test_metric, 0.9);
}

#[test]
fn only_the_learned_prompt_methods_can_tick_several_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_at(dir.path(), "/nonexistent/model");
    let mut h = harness(app);
    h.step();
    h.get_by_label(SEVERAL_TASKS).click();
    h.step();
    assert!(h.state().setup.multi_task());
    // The current task comes ticked; one task is not a multi-task run.
    let current = h.state().session.task.as_ref().unwrap().dir.clone();
    assert!(h.state().setup.ticked.contains(&current));
    h.get_by_label("tick at least two tasks to train them in one run");
    h.get_by_label("shared tokens");
    assert_eq!(h.state_mut().queue_current(), None);
    h.step();
    h.get_by_label_contains("tick at least two tasks for a multi-task run");
    assert!(h.state().session.store.runs.is_empty());

    // AutoPrompt's discrete search cannot share a batch: the switch is disabled, says why, and
    // Train queues a run of the current task alone.
    h.state_mut().setup.method = MethodKind::Autoprompt;
    h.state_mut().reset_template();
    h.step();
    assert!(h.get_by_label(SEVERAL_TASKS).accesskit_node().is_disabled());
    h.get_by_label_contains("autoprompt cannot train several tasks in one run");
    assert!(h.query_by_label("shared tokens").is_none());
    assert!(!h.state().setup.multi_task());
    let id = h.state_mut().queue_current().unwrap();
    let r = h.state().session.store.get(&id).unwrap();
    assert!(r.multi.is_none());
    assert_eq!(r.task, "synthetic");
}

#[test]
fn ticking_two_tasks_trains_one_run_on_the_built_in_model_with_a_prompt_folder_per_task() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::new(Options::new(dir.path().join("runs")));
    let mut h = harness(app);
    step_until(&mut h, Duration::from_secs(60), "the model", |a| {
        a.session.model.ready().is_some()
    });
    assert_eq!(
        h.state().session.task.as_ref().unwrap().spec.name,
        "country-continent"
    );
    h.state_mut().setup.config.steps = 6;
    h.state_mut().setup.config.eval_every = 3;

    // First a single-task run of the current task, to compare against.
    h.get_by_label("Train").click();
    h.step();
    step_until(
        &mut h,
        Duration::from_secs(300),
        "the single-task run",
        |a| a.session.active.is_none() && a.session.queue.is_empty(),
    );
    let single = h.state().session.store.runs.last().unwrap().clone();
    assert_eq!(single.status, RunStatus::Finished, "{:?}", single.error);

    h.get_by_label(SEVERAL_TASKS).click();
    h.step();
    h.get_by_role_and_label(egui::Role::CheckBox, "animal-class")
        .click();
    h.step();
    h.state_mut().setup.shared_tokens = 1;
    h.get_by_label("Train").click();
    h.step();
    step_until(
        &mut h,
        Duration::from_secs(300),
        "per-task dev lines",
        |a| a.plots.drawn_task_lines.len() == 2,
    );
    step_until(
        &mut h,
        Duration::from_secs(300),
        "the multi-task run",
        |a| a.session.active.is_none() && a.session.queue.is_empty(),
    );
    let r = h.state().session.store.runs.last().unwrap().clone();
    assert_eq!(r.status, RunStatus::Finished, "{:?}", r.error);
    let m = r.multi.clone().unwrap();
    let names: Vec<&str> = m.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["animal-class", "country-continent"]);
    assert_eq!(m.shared_tokens, 1);
    assert_eq!(r.losses.len(), 6);
    assert_eq!(r.evals.len(), 3);
    for evals in &m.task_evals {
        assert_eq!(evals.iter().map(|e| e.0).collect::<Vec<_>>(), [0, 3, 6]);
    }
    let res = m.result.clone().unwrap();
    // Each task's prompt folder in the run's folder, as `train --out` writes them.
    for t in &res.tasks {
        let folder = r.task_artifact_dir(&t.task).unwrap();
        assert!(folder.join("prompt.safetensors").is_file(), "{folder:?}");
        assert_eq!(t.artifact.as_deref(), folder.to_str());
    }
    assert!(r
        .spec
        .out
        .as_ref()
        .unwrap()
        .join("multi-task.json")
        .is_file());

    // Plots: the loss, the mean and one dev line per task.
    h.state_mut().tab = Tab::Plots;
    h.step();
    for t in ["animal-class", "country-continent"] {
        assert!(
            h.state()
                .plots
                .drawn_task_lines
                .contains(&task_line_name(&r, t)),
            "{:?}",
            h.state().plots.drawn_task_lines
        );
    }

    // Compare (nothing selected: the current task's latest runs): the multi-task run's rows
    // and the single-task run, with the storage picture of the run's own numbers.
    h.state_mut().tab = Tab::Compare;
    h.step();
    let rows = gradprompt::gui::compare::rows(&h.state().session, &h.state().runs.selected);
    let multi_rows: Vec<&str> = rows
        .iter()
        .filter(|x| x.id == r.id)
        .map(|x| x.task.as_str())
        .collect();
    assert_eq!(multi_rows, ["animal-class", "country-continent"]);
    assert!(rows.iter().any(|x| x.id == single.id));
    let s = Storage::of(&res);
    assert_eq!(s.tasks, 2);
    assert_eq!(s.model_bytes, res.model_params * 4);
    assert_eq!(s.prompt_bytes, res.artifact_bytes);
    assert!(s.prompt_bytes > 0 && s.prompts_total() < s.copies_total());
    h.get_by_label(&s.prompts_line());
    h.get_by_label(&s.copies_line());

    // Each task's prompt folder is offered to the inspector, and works there alone.
    let folder = r.task_artifact_dir("animal-class").unwrap();
    h.state_mut().session.focus = Some(Focus::Imported(folder));
    h.state_mut().tab = Tab::Inspect;
    h.step();
    step_until(&mut h, Duration::from_secs(60), "nearest tokens", |a| {
        a.inspect.learned().is_some_and(|l| l.1.is_ok())
    });
    h.get_by_value(&format!(
        "{} on animal-class (multi-task)",
        gradprompt::gui::run_label(&r)
    ));
    h.get_by_label("[P] 1");
}

/// The Resume buttons of the runs list, as (enabled) flags, in the list's order.
fn resume_buttons(h: &Harness<'static, App>) -> Vec<bool> {
    h.query_all_by_label("Resume")
        .map(|n| !n.accesskit_node().is_disabled())
        .collect()
}

#[test]
fn a_stopped_run_resumes_from_its_checkpoint_and_ends_as_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let mut h = harness(App::new(Options::new(runs.clone())));
    step_until(&mut h, Duration::from_secs(60), "the model", |a| {
        a.session.model.ready().is_some()
    });
    h.state_mut().setup.config.steps = 12;
    h.state_mut().setup.config.eval_every = 3;
    h.step();

    // The run as it goes when nothing stops it.
    h.get_by_label("Train").click();
    h.step();
    step_until(&mut h, Duration::from_secs(300), "the whole run", |a| {
        a.session.active.is_none() && a.session.queue.is_empty()
    });
    let whole = h.state().session.store.runs.last().unwrap().clone();
    assert_eq!(whole.status, RunStatus::Finished, "{:?}", whole.error);
    let whole_result = whole.result.clone().unwrap();
    assert_eq!(whole_result.steps, 12);

    // The same run, trained by the engine over a channel that holds each event until the app
    // takes it: the engine cannot run more than a step ahead of what the app has seen, so the
    // Stop below lands mid-way, however fast the machine.
    let (id, engine) = {
        let app = h.state_mut();
        let id = app.session.store.new_id(MethodKind::PromptTuning);
        let spec = RunSpec {
            method: MethodKind::PromptTuning,
            settings: app.setup.settings.clone(),
            template: Some(app.editor.text.clone()),
            config: app.setup.config.clone(),
            out: Some(app.session.store.prompt_dir(&id)),
        };
        assert_eq!(whole.spec.template, spec.template);
        let model = app.session.model.ready().unwrap().clone();
        let task = app.session.task.clone().unwrap();
        let rec = RunRecord::new(
            id.clone(),
            &model.spec,
            &task.spec.name,
            &task.dir,
            spec.clone(),
        );
        app.session.store.add(rec).unwrap();
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let (ev_tx, ev_rx) = crossbeam_channel::bounded(0);
        let engine = std::thread::spawn(move || {
            let last = match gradprompt::train::train(&model, &task, &spec, &ev_tx, &cmd_rx) {
                Ok(r) => Event::Finished(Box::new(r)),
                Err(e) => Event::Failed(format!("{e:#}")),
            };
            let _ = ev_tx.send(last);
        });
        app.session.active = Some(gradprompt::gui::Active {
            id: id.clone(),
            commands: cmd_tx,
            events: ev_rx,
            worker: None,
        });
        (id, engine)
    };
    step_until(&mut h, Duration::from_secs(300), "four steps", |a| {
        a.session.store.get(&id).is_some_and(|r| r.step() >= 4)
    });
    h.state_mut().session.send(gradprompt::run::Command::Stop);
    step_until(&mut h, Duration::from_secs(300), "the stop", |a| {
        a.session.active.is_none()
    });
    engine.join().unwrap();
    let stopped = h.state().session.store.get(&id).unwrap().clone();
    assert_eq!(stopped.status, RunStatus::Stopped, "{:?}", stopped.error);
    let at = stopped.result.as_ref().unwrap().steps;
    assert!((4..12).contains(&at), "stopped at step {at}");
    let out = stopped.spec.out.clone().unwrap();
    let saved = gradprompt::train::checkpoint::load(&out).unwrap();
    assert_eq!(saved.state.step, at);
    // The stopped run's best prompt so far is there to inspect meanwhile.
    assert_eq!(stopped.artifact_dir(), Some(out.as_path()));
    h.state_mut().tab = Tab::Runs;
    step_until(
        &mut h,
        Duration::from_secs(30),
        "the checkpoint check",
        |a| a.session.resume_offer(&id) == gradprompt::gui::session::ResumeOffer::Ready,
    );
    assert_eq!(resume_buttons(&h), [true]);

    // Then the workbench crashes after it recorded two more steps and an evaluation than the
    // checkpoint holds: they are trained again on Resume, so their points must go.
    drop(h);
    let mut crashed = stopped.clone();
    crashed.status = RunStatus::Running;
    crashed.result = None;
    for step in at + 1..=at + 2 {
        crashed.losses.push((step, Some(9.0)));
    }
    crashed.evals.push((at + 2, 0.0));
    gradprompt::runs::write_record(&runs, &crashed).unwrap();

    let mut h = harness(App::new(Options::new(runs.clone())));
    h.state_mut().tab = Tab::Runs;
    settle(&mut h);
    assert_eq!(
        h.state().session.store.get(&id).unwrap().status,
        RunStatus::Interrupted
    );
    // One button: the uninterrupted run finished, and has none.
    assert_eq!(resume_buttons(&h), [true]);
    h.get_by_label("Resume").click();
    h.step();
    assert_eq!(h.state().session.queue.front(), Some(&id));
    step_until(&mut h, Duration::from_secs(300), "the resumed run", |a| {
        a.session.active.is_none()
            && a.session.queue.is_empty()
            && a.session.store.get(&id).unwrap().status != RunStatus::Queued
    });
    assert!(resume_buttons(&h).is_empty());
    let r = h.state().session.store.get(&id).unwrap().clone();
    assert_eq!(r.status, RunStatus::Finished, "{:?}", r.error);
    // Same id, same folder, the whole curve once: the points before the checkpoint kept, the
    // crashed ones replaced, and every value as the uninterrupted run's.
    assert_eq!(h.state().session.store.runs.len(), 2);
    assert_eq!(r.spec.out.as_deref(), Some(out.as_path()));
    let steps: Vec<usize> = r.losses.iter().map(|l| l.0).collect();
    assert_eq!(steps, (1..=12).collect::<Vec<_>>());
    assert_eq!(r.losses, whole.losses);
    assert_eq!(r.evals, whole.evals);
    let res = r.result.clone().unwrap();
    assert_eq!(res.steps, 12);
    assert_eq!(res.dev_metric, whole_result.dev_metric);
    assert_eq!(res.test_metric, whole_result.test_metric);
    assert_eq!(res.best_step, whole_result.best_step);
    assert_eq!(res.train_loss_first, whole_result.train_loss_first);
    assert_eq!(res.train_loss_last, whole_result.train_loss_last);
    let prompt = |d: &Path| std::fs::read(d.join("prompt.safetensors")).unwrap();
    assert_eq!(
        prompt(&out),
        prompt(whole.artifact_dir().unwrap()),
        "the resumed prompt differs from the uninterrupted one"
    );
    // A completed run has nothing to resume: its checkpoint is gone.
    assert!(!gradprompt::train::checkpoint::dir_of(&out).exists());
    drop(h);
    let on_disk = RunStore::open(&runs).unwrap();
    let d = on_disk.get(&id).unwrap();
    assert_eq!(d.status, RunStatus::Finished);
    assert_eq!(d.losses, whole.losses);
}

#[test]
fn resume_is_offered_only_where_a_checkpoint_is_and_never_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_at(dir.path(), "/nonexistent/model");
    let runs = dir.path().join("runs");
    // Two runs the workbench was closed on: one stopped after it saved a checkpoint, one
    // before it had saved any; and a fine-tuning run recorded before fine-tuning runs had an
    // output folder (older runs folders hold such records).
    let mut ids = Vec::new();
    for (n, method) in [
        MethodKind::PromptTuning,
        MethodKind::PromptTuning,
        MethodKind::FineTuning,
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("{}-001-{}", 100 + n, method.id());
        let mut r = record(&app, &id);
        r.spec.method = method;
        r.status = RunStatus::Running;
        r.losses = vec![(1, Some(1.0))];
        if method != MethodKind::FineTuning {
            let out = runs.join(&id).join("prompt");
            std::fs::create_dir_all(&out).unwrap();
            r.spec.out = Some(out);
        }
        gradprompt::runs::write_record(&runs, &r).unwrap();
        ids.push(id);
    }
    let saved = gradprompt::train::checkpoint::dir_of(&runs.join(&ids[0]).join("prompt"));
    std::fs::create_dir_all(&saved).unwrap();
    std::fs::write(saved.join("state.json"), "{}").unwrap();
    drop(app);

    let mut h = harness(app_at(dir.path(), "/nonexistent/model"));
    h.state_mut().tab = Tab::Runs;
    settle(&mut h);
    // Newest first: the fine-tuning run, the one without a checkpoint, the one with.
    assert_eq!(resume_buttons(&h), [false, false, true]);
    use gradprompt::gui::session::ResumeOffer;
    let offer = |h: &Harness<'static, App>, i: usize| h.state().session.resume_offer(&ids[i]);
    assert_eq!(offer(&h, 0), ResumeOffer::Ready);
    assert!(matches!(offer(&h, 1), ResumeOffer::Unavailable(w) if w.contains("no checkpoint")));
    assert!(matches!(offer(&h, 2), ResumeOffer::Unavailable(w) if w.contains("no output folder")));
    // A disabled Resume does nothing.
    h.query_all_by_label("Resume").next().unwrap().click();
    h.step();
    assert!(h.state().session.queue.is_empty());

    // A second workbench on the same folder only reads it: no Resume at all.
    let mut other = harness(app_at(dir.path(), "/nonexistent/model"));
    other.state_mut().tab = Tab::Runs;
    other.step();
    assert!(other.state().session.store.read_only().is_some());
    assert_eq!(other.state().session.store.runs.len(), 3);
    assert!(resume_buttons(&other).is_empty());
    assert!(!other.state_mut().resume_run(&ids[0]));
    drop(other);

    // Resume needs the run's model ("m" here): it is loaded first, and when it cannot be, the
    // run goes back to interrupted, still resumable, saying why.
    h.query_all_by_label("Resume").last().unwrap().click();
    h.step();
    step_until(&mut h, Duration::from_secs(60), "the failed resume", |a| {
        a.session.queue.is_empty() && !matches!(a.session.model, ModelState::Loading { .. })
    });
    assert_eq!(h.state().setup.model_path, "m");
    let r = h.state().session.store.get(&ids[0]).unwrap().clone();
    assert_eq!(r.status, RunStatus::Interrupted);
    assert!(
        r.error
            .as_deref()
            .is_some_and(|e| e.contains("could not be loaded")),
        "{:?}",
        r.error
    );
    assert_eq!(resume_buttons(&h), [false, false, true]);
}

#[test]
fn a_stopped_multi_task_run_resumes_and_finishes_with_every_step_and_each_tasks_curve() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let mut h = harness(App::new(Options::new(runs.clone())));
    step_until(&mut h, Duration::from_secs(60), "the model", |a| {
        a.session.model.ready().is_some()
    });
    let steps = 9;
    // A multi-task run trained by the engine over a channel that holds each event until the
    // app takes it, so the Stop below lands mid-way however fast the machine (as above).
    let (id, engine) = {
        let app = h.state_mut();
        let id = app.session.store.new_id(MethodKind::PromptTuning);
        let spec = MultiTaskSpec {
            run: RunSpec {
                method: MethodKind::PromptTuning,
                settings: Default::default(),
                template: None,
                config: TrainConfig {
                    steps,
                    eval_every: 3,
                    ..TrainConfig::default()
                },
                out: Some(app.session.store.prompt_dir(&id)),
            },
            mix: Mix::Proportional,
            shared_tokens: 1,
        };
        let model = app.session.model.ready().unwrap().clone();
        let dirs = ["animal-class", "country-continent"].map(|n| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("sample_tasks")
                .join(n)
        });
        let tasks: Vec<gradprompt::task::Task> = dirs
            .iter()
            .map(|d| gradprompt::task::Task::load(d).unwrap())
            .collect();
        let refs = tasks
            .iter()
            .map(|t| TaskRef {
                name: t.spec.name.clone(),
                dir: t.dir.clone(),
            })
            .collect();
        let rec = RunRecord::new_multi(id.clone(), &model.spec, refs, spec.clone());
        app.session.store.add(rec).unwrap();
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let (ev_tx, ev_rx) = crossbeam_channel::bounded(0);
        let engine = std::thread::spawn(move || {
            let last = match gradprompt::train::multi_task::train_tasks(
                &model, &tasks, &spec, &ev_tx, &cmd_rx,
            ) {
                Ok(r) => Event::FinishedTasks(Box::new(r)),
                Err(e) => Event::Failed(format!("{e:#}")),
            };
            let _ = ev_tx.send(last);
        });
        app.session.active = Some(gradprompt::gui::Active {
            id: id.clone(),
            commands: cmd_tx,
            events: ev_rx,
            worker: None,
        });
        (id, engine)
    };
    step_until(&mut h, Duration::from_secs(300), "four steps", |a| {
        a.session.store.get(&id).is_some_and(|r| r.step() >= 4)
    });
    h.state_mut().session.send(gradprompt::run::Command::Stop);
    step_until(&mut h, Duration::from_secs(300), "the stop", |a| {
        a.session.active.is_none()
    });
    engine.join().unwrap();
    let stopped = h.state().session.store.get(&id).unwrap().clone();
    assert_eq!(stopped.status, RunStatus::Stopped, "{:?}", stopped.error);
    let at = stopped
        .multi
        .as_ref()
        .unwrap()
        .result
        .as_ref()
        .unwrap()
        .steps;
    assert!((4..steps).contains(&at), "stopped at step {at}");
    let out = stopped.spec.out.clone().unwrap();
    assert_eq!(
        gradprompt::train::checkpoint::load(&out)
            .unwrap()
            .state
            .step,
        at
    );

    // The workbench goes away; the next one offers Resume and the run ends as a whole one.
    drop(h);
    let mut h = harness(App::new(Options::new(runs.clone())));
    h.state_mut().tab = Tab::Runs;
    settle(&mut h);
    assert_eq!(resume_buttons(&h), [true]);
    h.get_by_label("Resume").click();
    h.step();
    assert_eq!(h.state().session.queue.front(), Some(&id));
    step_until(&mut h, Duration::from_secs(300), "the resumed run", |a| {
        a.session.active.is_none()
            && a.session.queue.is_empty()
            && a.session.store.get(&id).unwrap().status != RunStatus::Queued
    });
    let r = h.state().session.store.get(&id).unwrap().clone();
    assert_eq!(r.status, RunStatus::Finished, "{:?}", r.error);
    assert!(resume_buttons(&h).is_empty());
    let steps_seen: Vec<usize> = r.losses.iter().map(|l| l.0).collect();
    assert_eq!(steps_seen, (1..=steps).collect::<Vec<_>>());
    assert_eq!(
        r.evals.iter().map(|e| e.0).collect::<Vec<_>>(),
        [0, 3, 6, 9]
    );
    let m = r.multi.clone().unwrap();
    for evals in &m.task_evals {
        assert_eq!(evals.iter().map(|e| e.0).collect::<Vec<_>>(), [0, 3, 6, 9]);
    }
    let res = m.result.unwrap();
    assert_eq!(res.steps, steps);
    for t in &res.tasks {
        let folder = r.task_artifact_dir(&t.task).unwrap();
        assert!(folder.join("prompt.safetensors").is_file(), "{folder:?}");
    }
    assert!(!gradprompt::train::checkpoint::dir_of(&out).exists());
}

/// Ends a run attached with [`attach_active_run`] with `last` after `steps` steps.
fn end_run(h: &mut Harness<'static, App>, ev: &crossbeam_channel::Sender<Event>, last: Event) {
    ev.send(last).unwrap();
    step_until(h, Duration::from_secs(10), "the run's end", |a| {
        a.session.active.is_none()
    });
}

#[test]
fn every_way_a_run_ends_is_listed_under_its_own_status() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(app_at(dir.path(), "/nonexistent/model"));
    let ended = |steps: usize, stopped_early: bool| {
        Event::Finished(Box::new(RunResult {
            steps,
            stopped_early,
            ..result("prompt-tuning", 0.5, 8, 32)
        }))
    };

    // Stopped by the user at step 4 of 10 (the engine says "stopped early" for that too).
    let (stopped, cmds, ev) = attach_active_run(h.state_mut());
    // A run queued behind it, then taken off the queue: cancelled, not failed.
    let spec = record(h.state(), "x").spec;
    let queued = h.state_mut().session.queue_run(spec).unwrap();
    h.step();
    h.get_by_label("Clear queue").click();
    h.step();
    h.get_by_label("Stop").click();
    h.step();
    assert_eq!(cmds.try_recv(), Ok(gradprompt::run::Command::Stop));
    end_run(&mut h, &ev, ended(4, true));
    // Patience ended this one at step 6 of 10, with nobody pressing Stop.
    let (early, _c, ev) = attach_active_run(h.state_mut());
    end_run(&mut h, &ev, ended(6, true));
    let (whole, _c, ev) = attach_active_run(h.state_mut());
    end_run(&mut h, &ev, ended(10, false));
    let (failed, _c, ev) = attach_active_run(h.state_mut());
    end_run(&mut h, &ev, Event::Failed("out of memory".into()));
    // Running when the workbench went away: interrupted at the next start.
    let (crashed, _c, _ev) = attach_active_run(h.state_mut());
    h.step();
    h.state().session.flush_records();
    drop(h);

    let mut h = harness(app_at(dir.path(), "/nonexistent/model"));
    let status =
        |h: &Harness<'static, App>, id: &str| h.state().session.store.get(id).unwrap().status;
    for (id, want) in [
        (&stopped, RunStatus::Stopped),
        (&queued, RunStatus::Cancelled),
        (&early, RunStatus::EarlyStopped),
        (&whole, RunStatus::Finished),
        (&failed, RunStatus::Failed),
        (&crashed, RunStatus::Interrupted),
    ] {
        assert_eq!(status(&h, id), want, "{id}");
    }
    h.state_mut().tab = Tab::Runs;
    settle(&mut h);
    for label in [
        "stopped",
        "cancelled",
        "early-stopped",
        "finished",
        "failed",
        "interrupted",
    ] {
        assert_eq!(h.get_all_by_label(label).count(), 1, "{label}");
    }
    // Its hover says what the status means, and why.
    let why = h.state().session.store.get(&stopped).unwrap().error.clone();
    assert!(
        why.as_deref()
            .is_some_and(|e| e.contains("stopped at step 4 of 10")),
        "{why:?}"
    );
}

/// A finished run of `method` on the app's task, with a loss curve, added to the store.
fn finished_run(app: &mut App, method: MethodKind, test: f64) -> String {
    let id = app.session.store.new_id(method);
    let mut r = record(app, &id);
    r.spec.method = method;
    r.colour = Some(gradprompt::gui::colors::pick(&app.session.store.runs));
    r.status = RunStatus::Finished;
    r.total_steps = 10;
    r.losses = (1..=10).map(|s| (s, Some(1.0 / s as f32))).collect();
    r.evals = vec![(0, 0.2), (10, test)];
    r.result = Some(RunResult {
        steps: 10,
        ..result(method.id(), test, 8, 32)
    });
    app.session.store.add(r).unwrap();
    id
}

#[test]
fn every_plotted_run_has_its_own_colour_and_keeps_it_after_a_relaunch() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(app_at(dir.path(), "/nonexistent/model"));
    // Twelve runs over every method, as many as a busy afternoon leaves.
    let ids: Vec<String> = (0..12)
        .map(|n| {
            let m = MethodKind::ALL[n % MethodKind::ALL.len()];
            finished_run(h.state_mut(), m, 0.5)
        })
        .collect();
    h.state_mut().plots.shown = ids.iter().cloned().collect();
    h.step();
    let first = h.state().plots.drawn.colors.clone();
    assert_eq!(first.len(), 12);
    let mut distinct: Vec<egui::Color32> = first.iter().map(|c| c.1).collect();
    distinct.sort_by_key(|c| c.to_array());
    distinct.dedup();
    assert_eq!(distinct.len(), 12, "{first:?}");
    drop(h);

    let mut h = harness(app_at(dir.path(), "/nonexistent/model"));
    h.state_mut().plots.shown = ids.iter().cloned().collect();
    h.step();
    let mut again = h.state().plots.drawn.colors.clone();
    let mut before = first.clone();
    again.sort_by(|a, b| a.0.cmp(&b.0));
    before.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(again, before);
}

#[test]
fn before_the_first_run_the_plots_say_press_train_and_then_name_the_metric() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(app_at(dir.path(), "/nonexistent/model"));
    h.step();
    h.get_by_label(gradprompt::gui::plots::PRESS_TRAIN);
    assert_eq!(h.state().plots.drawn_loss_points, 0);

    // A run that trains: its points get their training time, and both axes are offered.
    let (id, _c, ev) = attach_active_run(h.state_mut());
    h.state_mut().plots.shown.insert(id.clone());
    for step in 1..=3 {
        ev.send(Event::Step {
            step,
            loss: 1.0,
            lr: 0.01,
            examples_per_s: 10.0,
        })
        .unwrap();
    }
    ev.send(Event::Eval {
        step: 3,
        dev_metric: 0.5,
        best: true,
    })
    .unwrap();
    ev.send(Event::Finished(Box::new(RunResult {
        steps: 3,
        ..result("prompt-tuning", 0.5, 8, 32)
    })))
    .unwrap();
    h.step();
    h.step();
    let r = h.state().session.store.get(&id).unwrap().clone();
    assert_eq!(
        r.loss_secs.iter().map(|p| p.0).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(r.eval_secs.len(), 1);
    assert!(h
        .query_by_label(gradprompt::gui::plots::PRESS_TRAIN)
        .is_none());
    h.get_by_label("Train loss per step");
    h.get_by_label("Dev accuracy per evaluation");
    h.get_by_label("time").click();
    h.step();
    h.get_by_label("Train loss over training time");
    h.get_by_label("Dev accuracy over training time");
    assert_eq!(h.state().plots.drawn_loss_points, 3);
}

#[test]
fn a_run_is_renamed_and_annotated_and_both_survive_a_relaunch() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(app_at(dir.path(), "/nonexistent/model"));
    let id = finished_run(h.state_mut(), MethodKind::PTuning, 0.9);
    let label = gradprompt::gui::run_label(h.state().session.store.get(&id).unwrap());
    h.state_mut().tab = Tab::Runs;
    settle(&mut h);
    h.get_by_label(&label).click();
    h.step();
    {
        let d = h.state_mut().runs.details.as_mut().unwrap();
        assert_eq!(d.id, id);
        d.name = "  p-tuning, wide encoder ".into();
        d.note = "encoder 256 wide\nbetter than 128".into();
    }
    h.step();
    h.get_by_label("Save name and note").click();
    h.step();
    h.get_by_label("p-tuning, wide encoder");
    h.state().session.flush_records();
    drop(h);

    let mut h = harness(app_at(dir.path(), "/nonexistent/model"));
    let r = h.state().session.store.get(&id).unwrap().clone();
    assert_eq!(r.name.as_deref(), Some("p-tuning, wide encoder"));
    assert_eq!(r.note, "encoder 256 wide\nbetter than 128");
    assert_eq!(gradprompt::gui::run_label(&r), "p-tuning, wide encoder");
    h.state_mut().tab = Tab::Runs;
    settle(&mut h);
    h.get_by_label("p-tuning, wide encoder");
}

#[test]
fn the_runs_table_sorts_by_a_clicked_header_and_filters_by_words() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(app_at(dir.path(), "/nonexistent/model"));
    let a = finished_run(h.state_mut(), MethodKind::PromptTuning, 0.6);
    let b = finished_run(h.state_mut(), MethodKind::Autoprompt, 0.9);
    let c = finished_run(h.state_mut(), MethodKind::PrefixTuning, 0.3);
    let label = |h: &Harness<'static, App>, id: &str| {
        gradprompt::gui::run_label(h.state().session.store.get(id).unwrap())
    };
    let order = |h: &Harness<'static, App>| -> Vec<String> {
        h.query_all_by_label_contains(" #")
            .map(|n| n.accesskit_node().label().unwrap_or_default())
            .collect()
    };
    h.state_mut().tab = Tab::Runs;
    settle(&mut h);
    // Newest first.
    assert_eq!(order(&h), [label(&h, &c), label(&h, &b), label(&h, &a)]);
    h.get_by_label("test").click();
    // The click sorts the table from the next frame on.
    settle(&mut h);
    assert_eq!(order(&h), [label(&h, &c), label(&h, &a), label(&h, &b)]);
    h.get_by_label("test ^").click();
    settle(&mut h);
    assert_eq!(order(&h), [label(&h, &b), label(&h, &a), label(&h, &c)]);
    h.state_mut().runs.view.filter = "autoprompt".into();
    settle(&mut h);
    assert_eq!(order(&h), [label(&h, &b)]);
    h.get_by_label_contains("1 of 3 runs match the filter");
}

#[test]
fn clone_settings_puts_a_runs_method_settings_and_template_into_the_setup() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(app_at(dir.path(), "/nonexistent/model"));
    let id = finished_run(h.state_mut(), MethodKind::PTuning, 0.9);
    let template = "[P*2]{x} w5 [P] w6 [ANSWER]";
    {
        let r = &mut h.state_mut().session.store.runs[0];
        r.spec.template = Some(template.into());
        r.spec.config.steps = 37;
        r.spec.config.seed = 5;
        r.spec.settings.encoder_hidden = 48;
    }
    assert_eq!(h.state().setup.method, MethodKind::PromptTuning);
    h.state_mut().tab = Tab::Runs;
    settle(&mut h);
    let label = gradprompt::gui::run_label(h.state().session.store.get(&id).unwrap());
    h.get_by_label(&label).click();
    // The click opens the details; they are drawn from the next frame on.
    settle(&mut h);
    h.get_by_label(gradprompt::gui::runs_view::CLONE_SETTINGS)
        .click();
    h.step();
    h.step();
    let app = h.state();
    assert_eq!(app.setup.method, MethodKind::PTuning);
    assert_eq!(app.setup.config.steps, 37);
    assert_eq!(app.setup.config.seed, 5);
    assert_eq!(app.setup.settings.encoder_hidden, 48);
    assert_eq!(
        app.editor.template(),
        gradprompt::task::Template::parse(template).unwrap()
    );
}

#[test]
fn compare_names_every_bar_and_shows_what_each_run_learned_with_its_steps_dev_and_seed() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(app_at(dir.path(), "/nonexistent/model"));
    let ids: Vec<String> = MethodKind::ALL
        .iter()
        .chain([MethodKind::PTuning].iter())
        .enumerate()
        .map(|(n, &m)| finished_run(h.state_mut(), m, 0.1 * (n + 1) as f64))
        .collect();
    assert!(ids.len() >= 6);
    {
        let app = h.state_mut();
        for (n, id) in ids.iter().enumerate() {
            let i = app.session.store.index_of(id).unwrap();
            let r = &mut app.session.store.runs[i];
            r.spec.config.seed = 40 + n as u64;
            if r.method() == MethodKind::Autoprompt {
                r.result.as_mut().unwrap().readable = Some("atlas globe".into());
            }
        }
        app.runs.selected = ids.iter().cloned().collect();
        app.tab = Tab::Compare;
    }
    h.step();
    let rows = gradprompt::gui::compare::rows(&h.state().session, &h.state().runs.selected);
    assert_eq!(rows.len(), ids.len());
    for r in &rows {
        // The table's label and the bar's own.
        assert_eq!(h.get_all_by_label(&r.label).count(), 2, "{}", r.label);
    }
    h.get_by_label("triggers: \"atlas globe\"");
    h.get_by_label("a key/value prefix in every layer (no tokens to read)");
    assert_eq!(h.get_all_by_label("10 / 10").count(), ids.len());
    h.get_by_label("45");
    h.get_by_label(gradprompt::gui::compare::P_TUNING_NOTE);
    h.get_by_label("Copy table as CSV");
    let csv = gradprompt::gui::compare::csv(&rows, |_| None);
    assert_eq!(csv.lines().count(), rows.len() + 1);
}

#[test]
fn choosing_a_gpu_this_build_lacks_says_how_to_build_it_and_keeps_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(app_at(dir.path(), "/nonexistent/model"));
    h.step();
    assert_eq!(h.state().setup.device, "cpu");
    h.get_by_role_and_label(egui::Role::ComboBox, gradprompt::gui::setup::DEVICE)
        .click();
    // Frames, not `run`: the missing model's load shows a spinner until it fails, and `run`
    // refuses a UI that keeps repainting (it failed that way under load).
    settle(&mut h);
    h.get_by_label("cuda:0").click();
    h.step();
    h.step();
    if candle_core::utils::cuda_is_available() {
        return; // a CUDA build: the choice is valid there
    }
    assert_eq!(h.state().setup.device, "cpu");
    let notice = h.state().session.notice.clone().unwrap_or_default();
    assert!(notice.contains("--features cuda"), "{notice}");
}
