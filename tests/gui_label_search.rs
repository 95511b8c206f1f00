//! AutoPrompt's label-token search in the workbench, driven headless with egui_kittest by
//! labels: ticking "search label tokens" in AutoPrompt's settings trains with `--search-labels
//! 1`, and the finished run's details and Compare's learned-prompt column show the tokens found.
//! Ticking "judge candidates by accuracy" beside it trains with `--judge accuracy`.

mod common;

use common::gui::{settle, step_until};

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use gradprompt::gui::run_label;
use gradprompt::gui::runs_view::FOUND_LABEL_TOKENS;
use gradprompt::gui::setup::{CANDIDATE_ROWS, JUDGE_BY_ACCURACY, SEARCH_LABELS};
use gradprompt::gui::{App, Options, Tab};
use gradprompt::methods::{Judge, MethodKind};
use std::time::Duration;

#[test]
fn ticking_search_label_tokens_trains_autoprompt_with_them_and_the_details_show_them() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    common::write_checkpoint(&model_dir, &common::tiny_config(true), 7);
    let task = dir.path().join("task");
    common::write_synthetic_task(&task);
    let mut opts = Options::new(dir.path().join("runs"));
    opts.model = model_dir.to_str().unwrap().to_string();
    opts.task = Some(task);
    let mut h = Harness::builder()
        .with_size(egui::Vec2::new(1600.0, 1400.0))
        .build_ui_state(|ui, app: &mut App| app.show(ui), App::new(opts));
    step_until(&mut h, Duration::from_secs(60), "the model", |a| {
        a.session.model.ready().is_some()
    });

    h.get_by_label(MethodKind::Autoprompt.id()).click();
    settle(&mut h);
    assert_eq!(h.state().setup.method, MethodKind::Autoprompt);
    h.state_mut().setup.config.steps = 2;
    h.state_mut().setup.config.eval_every = 1;
    settle(&mut h);
    assert_eq!(h.state().setup.settings.search_labels, 0);
    h.get_by_label(SEARCH_LABELS).click();
    settle(&mut h);
    assert_eq!(h.state().setup.settings.search_labels, 1);
    // The rows candidates are judged on are offered beside it, and the run takes them.
    assert!(h.get_all_by_label(CANDIDATE_ROWS).count() >= 1);
    assert_eq!(h.state().setup.settings.candidate_rows, 32);
    h.state_mut().setup.settings.candidate_rows = 4;
    assert_eq!(h.state().setup.settings.judge, Judge::Loss);
    h.get_by_label(JUDGE_BY_ACCURACY).click();
    settle(&mut h);
    assert_eq!(h.state().setup.settings.judge, Judge::Accuracy);

    h.get_by_label("Train").click();
    h.step();
    step_until(&mut h, Duration::from_secs(300), "the run", |a| {
        a.session.active.is_none() && a.session.queue.is_empty()
    });
    let r = h.state().session.store.runs[0].clone();
    assert_eq!(r.spec.settings.search_labels, 1);
    assert_eq!(r.spec.settings.candidate_rows, 4);
    assert_eq!(r.spec.settings.judge, Judge::Accuracy);
    let found = r
        .result
        .as_ref()
        .unwrap_or_else(|| panic!("the run did not finish: {:?}", r.status))
        .label_tokens
        .clone()
        .expect("the result holds the found label tokens");
    assert_eq!(found.keys().cloned().collect::<Vec<_>>(), ["even", "odd"]);
    let line = r.result.as_ref().unwrap().label_tokens_line().unwrap();

    // The run's details show them, by label.
    h.state_mut().tab = Tab::Runs;
    settle(&mut h);
    h.get_by_label(&run_label(&r)).click();
    settle(&mut h);
    h.get_by_label(&format!("{FOUND_LABEL_TOKENS}: {line}"));

    // So does Compare's learned-prompt column (nothing selected: the latest run per method).
    h.state_mut().runs.selected.clear();
    h.state_mut().tab = Tab::Compare;
    settle(&mut h);
    let rows = gradprompt::gui::compare::rows(&h.state().session, &h.state().runs.selected);
    assert_eq!(rows[0].label_tokens.as_deref(), Some(line.as_str()));
    h.get_by_label_contains(&format!("label tokens: {line}"));
}
