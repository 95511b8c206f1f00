//! Helpers shared by the workbench tests (tests/gui*.rs): a headless harness around the app,
//! an app on the synthetic task, and stepping frames until something holds.

use egui_kittest::Harness;
use gradprompt::gui::{App, Options};
use std::path::Path;
use std::time::{Duration, Instant};

/// The app in a 1600 x 1400 window: room for every panel, so a test finds a widget by label
/// without scrolling to it.
pub fn harness(app: App) -> Harness<'static, App> {
    harness_at(app, 1600.0, 1400.0)
}

/// The app in a window of `w` x `h` points.
pub fn harness_at(app: App, w: f32, h: f32) -> Harness<'static, App> {
    Harness::builder()
        .with_size(egui::Vec2::new(w, h))
        .build_ui_state(|ui, app: &mut App| app.show(ui), app)
}

/// An app on the synthetic task (six test examples) in `root/task`, with its runs in
/// `root/runs`; `model` is a path or spec, loaded in the background (a missing one shows its
/// error in place, which is enough for tests that need no model).
pub fn app_at(root: &Path, model: &str) -> App {
    let task = root.join("task");
    if !task.exists() {
        super::write_synthetic_task(&task);
    }
    let mut opts = Options::new(root.join("runs"));
    opts.model = model.to_string();
    opts.task = Some(task);
    App::new(opts)
}

/// Steps frames until `done` holds, failing after `limit`.
pub fn step_until(
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

/// A few frames, for a view just shown: its tables size their columns over the first frames,
/// and a click aimed at the first frame's layout can miss.
pub fn settle(h: &mut Harness<'static, App>) {
    for _ in 0..3 {
        h.step();
    }
}
