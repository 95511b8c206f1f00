//! Seeds and uncertainty in the workbench, driven headless with egui_kittest by labels: the
//! setup's "seeds" queues one run per seed (a list that cannot be read queues nothing and says
//! why), and Compare shows runs that differ only in seed as a group with mean ± sample std and
//! n, and every run's test score with its 95% Wilson interval on its test split.

mod common;

use common::gui::{app_at, harness, settle, step_until};

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use gradprompt::gui::compare::{rows, seed_groups};
use gradprompt::gui::setup::SEEDS;
use gradprompt::gui::{App, Tab};
use gradprompt::methods::MethodKind;
use gradprompt::run::{RunResult, RunSpec, TrainConfig};
use gradprompt::runs::{RunRecord, RunStatus};
use gradprompt::stats::{score_with_interval, Summary};
use std::time::Duration;

#[test]
fn queueing_three_seeds_trains_three_runs_that_compare_as_one_group() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    common::write_checkpoint(&model_dir, &common::tiny_config(true), 7);
    let mut h = harness(app_at(dir.path(), model_dir.to_str().unwrap()));
    step_until(&mut h, Duration::from_secs(60), "the model", |a| {
        a.session.model.ready().is_some()
    });
    h.state_mut().setup.config.steps = 4;
    h.state_mut().setup.config.eval_every = 2;
    settle(&mut h);
    assert_eq!(h.state().setup.seeds, "0");

    // A list that cannot be read: said under the field, and Train queues nothing.
    let field = h.get_by_label(SEEDS);
    field.focus();
    h.step();
    h.key_press(egui::Key::End);
    h.step();
    h.get_by_label(SEEDS).type_text(",,x");
    settle(&mut h);
    assert_eq!(h.state().setup.seeds, "0,,x");
    h.get_by_label_contains("item 2 is empty");
    h.get_by_label("Train").click();
    settle(&mut h);
    assert!(h.state().session.store.runs.is_empty());
    let notice = h.state().session.notice.clone().unwrap_or_default();
    assert!(
        notice.contains("seeds") && notice.contains("item 2 is empty"),
        "{notice}"
    );

    // 0,1,2: three runs, in order, that differ only in seed.
    let field = h.get_by_label(SEEDS);
    field.focus();
    h.step();
    h.key_press(egui::Key::End);
    for _ in 0..3 {
        h.key_press(egui::Key::Backspace);
        h.step();
    }
    h.get_by_label(SEEDS).type_text(",1,2");
    settle(&mut h);
    assert_eq!(h.state().setup.seeds, "0,1,2");
    h.get_by_label("Train queues 3 runs, one per seed");
    h.get_by_label("Train").click();
    h.step();
    let runs = h.state().session.store.runs.clone();
    let seeds: Vec<u64> = runs.iter().map(|r| r.spec.config.seed).collect();
    assert_eq!(seeds, [0, 1, 2]);
    let without_seed = |r: &RunRecord| {
        let mut spec = r.spec.clone();
        spec.config.seed = 0;
        spec.out = None;
        serde_json::to_string(&spec).unwrap()
    };
    assert!(runs
        .iter()
        .all(|r| without_seed(r) == without_seed(&runs[0])));
    assert!(runs.iter().all(|r| r.method() == MethodKind::PromptTuning));

    step_until(&mut h, Duration::from_secs(600), "the three runs", |a| {
        a.session.active.is_none() && a.session.queue.is_empty()
    });
    let runs = h.state().session.store.runs.clone();
    let mut tests = Vec::new();
    for r in &runs {
        assert_eq!(r.status, RunStatus::Finished, "{:?}", r.error);
        // The n of its interval, kept in the record.
        assert_eq!(r.test_examples, [("synthetic".to_string(), 6)]);
        tests.push(r.result.as_ref().unwrap().test_metric);
    }

    // Compare (nothing selected: the latest run of each method, and its group).
    h.state_mut().tab = Tab::Compare;
    settle(&mut h);
    let shown = rows(&h.state().session, &h.state().runs.selected);
    let groups = seed_groups(&h.state().session, &shown);
    assert_eq!(groups.len(), 1, "{groups:?}");
    let ids: Vec<String> = runs.iter().map(|r| r.id.clone()).collect();
    assert_eq!(groups[0].ids, ids);
    let summary = Summary::of(&tests).unwrap();
    assert_eq!(groups[0].summary, summary);
    h.get_by_label("prompt-tuning on synthetic, seeds 0,1,2");
    h.get_by_label(&format!("test accuracy {}", summary.line()));
    assert!(summary.line().contains(" ± ") && summary.line().ends_with("(n=3)"));
    // The latest run's own score with its interval on 6 test examples.
    h.get_by_label(&score_with_interval(tests[2], Some(6)));
}

/// A finished prompt-tuning run on the app's task with `seed`, `steps` and test score `test`
/// on `n` test examples.
fn finished(app: &mut App, seed: u64, steps: usize, test: f64, n: usize) -> String {
    let task = app.session.task.clone().unwrap();
    let id = app.session.store.new_id(MethodKind::PromptTuning);
    let spec = RunSpec {
        method: MethodKind::PromptTuning,
        settings: Default::default(),
        template: Some("[P*4]{x} w5 w6 [ANSWER]".into()),
        config: TrainConfig {
            seed,
            steps,
            ..Default::default()
        },
        out: None,
    };
    let mut r = RunRecord::new(id.clone(), "m", &task.spec.name, &task.dir, spec);
    r.status = RunStatus::Finished;
    r.total_steps = steps;
    r.test_examples = vec![(task.spec.name.clone(), n)];
    r.result = Some(RunResult {
        method: "prompt-tuning".into(),
        task: task.spec.name.clone(),
        model: "m".into(),
        template: "[P*4]{x} w5 w6 [ANSWER]".into(),
        steps,
        train_loss_first: Some(2.0),
        train_loss_last: Some(1.0),
        metric: gradprompt::task::Metric::Accuracy,
        dev_metric: test,
        test_metric: test,
        best_step: steps,
        trainable_params: 64,
        model_params: 1000,
        artifact_bytes: 256,
        wall_seconds: 1.0,
        artifact: None,
        readable: None,
        stopped_early: false,
        label_tokens: None,
    });
    app.session.store.add(r).unwrap();
    id
}

#[test]
fn compare_shows_a_seed_groups_mean_and_std_and_each_runs_wilson_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(app_at(dir.path(), "/nonexistent/model"));
    let (group, other) = {
        let app = h.state_mut();
        let group: Vec<String> = [(2, 0.5), (0, 0.75), (1, 1.0)]
            .iter()
            .map(|&(seed, test)| finished(app, seed, 100, test, 20))
            .collect();
        // Other steps: not the same configuration, so not in the group.
        let other = finished(app, 3, 50, 30.0 / 35.0, 35);
        app.runs.selected = group.iter().chain([&other]).cloned().collect();
        app.tab = Tab::Compare;
        (group, other)
    };
    settle(&mut h);
    let shown = rows(&h.state().session, &h.state().runs.selected);
    let groups = seed_groups(&h.state().session, &shown);
    assert_eq!(groups.len(), 1, "{groups:?}");
    // In seed order: seeds 0, 1, 2 scored 0.75, 1.0, 0.5.
    assert_eq!(groups[0].seeds, [0, 1, 2]);
    assert_eq!(
        groups[0].ids,
        [group[1].clone(), group[2].clone(), group[0].clone()]
    );
    assert!(!groups[0].ids.contains(&other));
    // Mean 0.75; deviations -0.25, 0, 0.25: sample std sqrt(0.125 / 2) = 0.25.
    h.get_by_label("prompt-tuning on synthetic, seeds 0,1,2");
    h.get_by_label("test accuracy 0.750 ± 0.250 (n=3)");
    // One run's score with its interval: 30 of 35 right.
    h.get_by_label("0.857 [0.71, 0.94], n=35");
    // A perfect score on 20 examples is not certain.
    h.get_by_label("1.000 [0.84, 1.00], n=20");
    h.get_by_label("test, 95% interval");
}

#[test]
fn a_seed_groups_line_stays_inside_a_1024_wide_window_beside_the_setup_panel() {
    // The group's line ("test accuracy 0.750 ± 0.250 (n=3)") sat behind a bar sized from the
    // window's width alone and was cut at the window's edge, with the setup panel open.
    let dir = tempfile::tempdir().unwrap();
    let app = app_at(dir.path(), "/nonexistent/model");
    let mut h = Harness::builder()
        .with_size(egui::Vec2::new(1024.0, 640.0))
        .build_ui_state(|ui, app: &mut App| app.show(ui), app);
    {
        let app = h.state_mut();
        let ids: Vec<String> = [(0, 0.5), (1, 0.75), (2, 1.0)]
            .iter()
            .map(|&(seed, test)| finished(app, seed, 100, test, 20))
            .collect();
        app.runs.selected = ids.into_iter().collect();
        app.tab = Tab::Compare;
    }
    settle(&mut h);
    let line = h.get_by_label("test accuracy 0.750 ± 0.250 (n=3)").rect();
    assert!(
        line.right() <= 1024.0,
        "the group's line ends at {}",
        line.right()
    );
    // The bars end before it: the whisker's cap stays on screen too.
    assert!(line.left() < 1024.0 - 100.0);
}
