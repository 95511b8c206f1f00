//! The workbench's setup side and its layout, driven headless with egui_kittest by labels and
//! measured from the harness: chips that never squeeze or split, a side panel that does not
//! grow as chips are added, template errors said once and where, each method's settings and
//! template kept while switching, the whole setup kept across a restart (in an in-memory
//! storage: these tests never read the user's own), a tab row that stays put when the progress
//! bar comes and goes, and the window at 1280x800, 1024x640, 800x600 and 480x360.

#![cfg(feature = "gui")]

mod common;

use common::gui::harness_at;

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use gradprompt::gui::{App, Options, Tab, STORAGE_KEY};
use gradprompt::methods::MethodKind;
use gradprompt::run::{Event, RunSpec, TrainConfig};
use gradprompt::runs::RunRecord;
use std::collections::HashMap;
use std::path::Path;

/// The sizes the layout is checked at (points).
const SIZES: [(f32, f32); 3] = [(1280.0, 800.0), (1024.0, 640.0), (800.0, 600.0)];

fn options(root: &Path) -> Options {
    let task = root.join("task");
    if !task.exists() {
        common::write_synthetic_task(&task);
    }
    let mut opts = Options::new(root.join("runs"));
    // No model is needed to lay out the setup; a missing one shows its error in place.
    opts.model = "/nonexistent/model".into();
    opts.task = Some(task);
    opts
}

fn app_at(root: &Path, method: MethodKind) -> App {
    let mut app = App::new(options(root));
    app.setup.method = method;
    app.reset_template();
    app
}

/// A few frames: enough for panels to settle their sizes.
fn settle(h: &mut Harness<'static, App>) {
    for _ in 0..4 {
        h.step();
    }
}

fn rect_of(h: &Harness<'static, App>, label: &str) -> egui::Rect {
    h.get_by_label(label).rect()
}

/// Whether `r` lies inside a window of `w` x `h` points.
fn inside(r: egui::Rect, w: f32, h: f32) -> bool {
    r.min.x >= -0.5 && r.min.y >= -0.5 && r.max.x <= w + 0.5 && r.max.y <= h + 0.5
}

/// An in-memory stand-in for eframe's storage (the real one is a file in the user's folder).
#[derive(Default)]
struct MemoryStorage(HashMap<String, String>);

impl eframe::Storage for MemoryStorage {
    fn get_string(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
    fn set_string(&mut self, key: &str, value: String) {
        self.0.insert(key.to_string(), value);
    }
    fn remove_string(&mut self, key: &str) {
        self.0.remove(key);
    }
    fn flush(&mut self) {}
}

/// The height of one line of chip text, as the harness lays it out.
fn line_height(h: &Harness<'static, App>) -> f32 {
    rect_of(h, "[ANSWER]").height()
}

#[test]
fn chips_stay_on_one_line_wherever_a_row_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = app_at(dir.path(), MethodKind::PTuning);
    // Long enough to fill rows at every panel width, with a text chip and [P] chips landing
    // near the ends of rows.
    let text = "[P]{x} one two [P] three four five six [P] seven eight nine [P][P] ten eleven \
                twelve thirteen [P] w5 w6 [ANSWER]";
    app.editor.set_text(text, app.setup.method);
    assert_eq!(app.editor.error, None);
    // Tall enough for the whole setup: what is measured is how the chips lay out.
    const TALL: f32 = 1400.0;
    let mut h = harness_at(app, 1280.0, TALL);
    settle(&mut h);
    for width in [1280.0, 1100.0, 1000.0, 900.0, 800.0, 700.0] {
        h.set_size(egui::vec2(width, TALL));
        settle(&mut h);
        let line = line_height(&h);
        let segments = h.state().editor.segments.clone();
        let panel_right = h.state().side_width;
        for seg in &segments {
            let label = gradprompt::gui::template_editor::chip_label(seg);
            for node in h.get_all_by_label(&label) {
                let r = node.rect();
                assert!(
                    r.height() <= line + 0.5,
                    "at width {width} the chip {label} is {} high, more than a line ({line})",
                    r.height()
                );
                assert!(
                    r.max.x <= panel_right + 0.5,
                    "at width {width} the chip {label} ends at {} past the panel ({panel_right})",
                    r.max.x
                );
            }
        }
        // What follows the chips is still on screen.
        assert!(inside(rect_of(&h, "[ANSWER]"), width, TALL));
        assert!(inside(rect_of(&h, "valid layout"), width, TALL));
    }
}

#[test]
fn a_chip_wider_than_the_panel_is_cut_not_wrapped() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = app_at(dir.path(), MethodKind::PTuning);
    let long = "a very long anchor text that is wider than any side panel could be, on purpose";
    app.editor
        .set_text(&format!("[P]{{x}} {long} [ANSWER]"), app.setup.method);
    let mut h = harness_at(app, 800.0, 600.0);
    settle(&mut h);
    let line = line_height(&h);
    let chip = h.get_by_label(&format!("\" {long} \"")).rect();
    assert!(chip.height() <= line + 0.5, "the long chip wrapped");
    assert!(chip.max.x <= h.state().side_width + 0.5);
}

#[test]
fn the_side_panel_does_not_widen_as_chips_are_added_or_edited() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_at(dir.path(), MethodKind::PTuning);
    let mut h = harness_at(app, 1280.0, 800.0);
    settle(&mut h);
    let before = h.state().side_width;
    for _ in 0..12 {
        h.get_by_label("+ text").click_accesskit();
        h.step();
        h.get_by_label("+ soft [P]").click_accesskit();
        h.step();
    }
    settle(&mut h);
    assert!(h.state().editor.segments.len() > 24);
    assert!(
        (h.state().side_width - before).abs() < 1.0,
        "the panel went from {before} to {}",
        h.state().side_width
    );
    // Edit a text chip into a long one.
    let text_chip = h
        .state()
        .editor
        .segments
        .iter()
        .find(|s| matches!(s, gradprompt::task::Segment::Text(_)))
        .map(gradprompt::gui::template_editor::chip_label)
        .unwrap();
    h.get_by_label(&text_chip).click();
    h.step();
    let field = h.get_by_label("anchor text");
    field.focus();
    field.type_text(&"and more words ".repeat(12));
    settle(&mut h);
    assert!(
        (h.state().side_width - before).abs() < 1.0,
        "the panel went from {before} to {} after a chip edit",
        h.state().side_width
    );
}

#[test]
fn a_template_error_is_said_once_with_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_at(dir.path(), MethodKind::PTuning);
    let mut h = harness_at(app, 1280.0, 800.0);
    settle(&mut h);
    let good = h.state().editor.text.clone();
    let field = h.get_by_label("as text:");
    field.focus();
    h.step();
    h.key_press(egui::Key::End);
    h.step();
    h.get_by_label("as text:").type_text(" [P");
    settle(&mut h);
    let typed = h.state().editor.text.clone();
    assert_eq!(typed, format!("{good} [P"));
    let want = gradprompt::task::Template::parse(&typed).unwrap_err();
    assert!(want.position > 0);
    // A label keeps its text in the node's value.
    let verdict = h.get_by_label_contains("invalid:").value().unwrap();
    assert_eq!(verdict, format!("invalid: {want}"));
    assert_eq!(verdict.matches("template error").count(), 1, "{verdict}");

    // The chips are not passed off as the typed template: the editor says they are the last
    // valid one, and the preview waits.
    h.get_by_label_contains("the greyed chips above are the last valid template");
    assert!(h
        .query_by_label("Preview (first training example):")
        .is_none());

    // Train refuses it with the same single message.
    h.state_mut().queue_current();
    let notice = h.state().session.notice.clone().unwrap();
    assert_eq!(notice.matches("template error").count(), 1, "{notice}");
    assert!(notice.contains(&format!("character {}", want.position)));

    // Back to the chips: the text is the last valid template again.
    h.get_by_label("Back to the chips").click();
    settle(&mut h);
    assert_eq!(h.state().editor.text, good);
    h.get_by_label("valid layout");
    h.get_by_label("Preview (first training example):");
}

#[test]
fn each_method_keeps_its_template_and_settings_while_switching() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_at(dir.path(), MethodKind::PTuning);
    let mut h = harness_at(app, 1280.0, 800.0);
    settle(&mut h);
    // A custom P-Tuning template and settings.
    h.get_by_label("+ soft [P]").click_accesskit();
    h.step();
    let custom = h.state().editor.text.clone();
    assert_ne!(custom, "[P*8]{x} w5 w6 [ANSWER]");
    h.state_mut().setup.settings.encoder_hidden = 64;
    h.state_mut().setup.config.steps = 50;
    h.step();

    h.get_by_label("prompt-tuning").click();
    settle(&mut h);
    assert_eq!(h.state().setup.method, MethodKind::PromptTuning);
    assert_eq!(h.state().editor.text, "[P*8]{x} w5 w6 [ANSWER]");
    // A method used for the first time carries the steps over, with its own learning rate.
    assert_eq!(h.state().setup.config.steps, 50);
    h.state_mut().setup.config.steps = 300;
    h.state_mut().setup.config.lr = Some(0.1);
    h.step();

    h.get_by_label("p-tuning").click();
    settle(&mut h);
    assert_eq!(h.state().editor.text, custom);
    assert_eq!(h.state().setup.settings.encoder_hidden, 64);
    assert_eq!(h.state().setup.config.steps, 50);
    assert_eq!(h.state().setup.config.lr, None);

    h.get_by_label("prompt-tuning").click();
    settle(&mut h);
    assert_eq!(h.state().setup.config.steps, 300);
    assert_eq!(h.state().setup.config.lr, Some(0.1));
}

#[test]
fn the_whole_setup_and_layout_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_at(dir.path(), MethodKind::PTuning);
    let mut h = harness_at(app, 1280.0, 800.0);
    settle(&mut h);
    h.get_by_label("+ soft [P]").click_accesskit();
    h.step();
    let custom = h.state().editor.text.clone();
    h.state_mut().setup.config.steps = 250;
    h.state_mut().setup.settings.encoder_hidden = 96;
    h.get_by_label("Runs").click();
    h.step();
    h.get_by_label("« Hide").click();
    settle(&mut h);
    assert!(!h.state().side_open);

    let mut storage = MemoryStorage::default();
    eframe::App::save(h.state_mut(), &mut storage);
    assert!(storage.0.contains_key(STORAGE_KEY));
    drop(h);

    let again = App::with_saved(options(dir.path()), Some(&storage));
    assert_eq!(again.setup.method, MethodKind::PTuning);
    assert_eq!(again.editor.text, custom);
    assert_eq!(again.setup.config.steps, 250);
    assert_eq!(again.setup.settings.encoder_hidden, 96);
    assert_eq!(again.tab, Tab::Runs);
    assert!(!again.side_open);
    // The model that was being loaded is the one reopened.
    assert_eq!(
        again.session.model_spec(),
        Some("/nonexistent/model"),
        "the saved model"
    );
    let mut h = harness_at(again, 1280.0, 800.0);
    settle(&mut h);
    // Collapsed, the setup comes back with one click.
    assert!(h.query_by_label("« Hide").is_none());
    h.get_by_label("Setup »").click();
    settle(&mut h);
    assert!(h.state().side_open);
    h.get_by_label("« Hide");

    // A model named on the command line wins over the saved one.
    let mut opts = options(dir.path());
    opts.model = "/another/model".into();
    opts.model_named = true;
    let named = App::with_saved(opts, Some(&storage));
    assert_eq!(named.session.model_spec(), Some("/another/model"));
    assert_eq!(named.setup.method, MethodKind::PTuning);
}

#[test]
fn an_unreadable_saved_setup_starts_from_the_defaults_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = MemoryStorage::default();
    eframe::Storage::set_string(&mut storage, STORAGE_KEY, "{not json".into());
    let app = App::with_saved(options(dir.path()), Some(&storage));
    assert_eq!(app.setup.method, MethodKind::PromptTuning);
    let notice = app.session.notice.clone().unwrap();
    assert!(notice.contains("could not be read"), "{notice}");
}

/// Makes a run active with its first steps, as the worker would report them.
fn start_run(app: &mut App) -> crossbeam_channel::Sender<Event> {
    let (cmd_tx, _cmd_rx) = crossbeam_channel::unbounded();
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
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
    app.session.active = Some(gradprompt::gui::Active {
        id,
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
    ev_tx
        .send(Event::Step {
            step: 1,
            loss: 2.0,
            lr: 0.01,
            examples_per_s: 40.0,
        })
        .unwrap();
    ev_tx
}

#[test]
fn the_tab_row_stays_put_when_the_progress_bar_and_notices_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_at(dir.path(), MethodKind::PromptTuning);
    let mut h = harness_at(app, 1280.0, 800.0);
    settle(&mut h);
    let tabs = rect_of(&h, "Runs");

    let events = start_run(h.state_mut());
    settle(&mut h);
    h.get_by_label_contains("Step 1 / 10");
    assert_eq!(rect_of(&h, "Runs"), tabs, "the progress bar moved the tabs");

    h.state_mut().session.notice = Some("a notice".into());
    settle(&mut h);
    h.get_by_label("a notice");
    assert_eq!(rect_of(&h, "Runs"), tabs, "a notice moved the tabs");

    drop(events);
    h.state_mut().session.active = None;
    h.state_mut().session.notice = None;
    settle(&mut h);
    assert!(h.query_by_label_contains("Step 1 / 10").is_none());
    assert_eq!(
        rect_of(&h, "Runs"),
        tabs,
        "the bar going away moved the tabs"
    );
}

/// The widest node under the "Train loss per step" label: the loss plot. Before the first run
/// the plots' column holds the "press Train" message instead (wrapped to the column's width).
fn loss_plot(h: &Harness<'static, App>) -> egui::Rect {
    if let Some(empty) = h.query_by_label_contains("No runs to plot yet") {
        return empty.rect();
    }
    let label = rect_of(h, "Train loss per step");
    h.query_all_by(|n| n.bounding_box().is_some())
        .map(|n| n.rect())
        .filter(|r| r.min.y >= label.max.y - 0.5 && r.min.x >= label.min.x - 16.0)
        .filter(|r| r.height() > 40.0)
        .max_by(|a, b| a.width().total_cmp(&b.width()))
        .expect("the loss plot")
}

#[test]
fn train_the_tabs_and_the_plots_stay_reachable_at_common_window_sizes() {
    for (w, hgt) in SIZES {
        let dir = tempfile::tempdir().unwrap();
        let app = app_at(dir.path(), MethodKind::PromptTuning);
        let mut h = harness_at(app, w, hgt);
        settle(&mut h);
        let train = rect_of(&h, "Train");
        assert!(inside(train, w, hgt), "Train at {w}x{hgt}: {train:?}");
        for tab in ["Plots", "Runs", "Compare", "Inspect", "Export"] {
            let r = rect_of(&h, tab);
            assert!(inside(r, w, hgt), "{tab} at {w}x{hgt}: {r:?}");
        }
        let plot = loss_plot(&h);
        assert!(inside(plot, w, hgt), "the loss plot at {w}x{hgt}: {plot:?}");
        assert!(
            plot.width() >= w / 2.0,
            "the loss plot gets {} of {w} at {w}x{hgt}",
            plot.width()
        );
        // The side panel is narrower than what remains.
        assert!(h.state().side_width <= 0.45 * w + 1.0);
    }
}

#[test]
fn the_side_panel_scrolls_and_collapses() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_at(dir.path(), MethodKind::PTuning);
    let mut h = harness_at(app, 800.0, 600.0);
    settle(&mut h);
    // The template's verdict is below the fold at this height; the wheel brings it up.
    let before = rect_of(&h, "valid layout");
    assert!(
        before.min.y > 600.0,
        "expected the verdict below the fold: {before:?}"
    );
    h.hover_at(egui::pos2(100.0, 300.0));
    h.step();
    h.event(egui::Event::MouseWheel {
        unit: egui::MouseWheelUnit::Point,
        delta: egui::vec2(0.0, -2000.0),
        modifiers: egui::Modifiers::NONE,
        phase: egui::TouchPhase::Move,
        source: egui::MouseWheelSource::Wheel,
    });
    settle(&mut h);
    for _ in 0..20 {
        h.step();
    }
    let after = rect_of(&h, "valid layout");
    assert!(after.max.y <= 600.0, "scrolled to {after:?}");

    // Collapse: the central panel takes the whole width; the button brings the panel back.
    h.get_by_label("« Hide").click();
    settle(&mut h);
    for _ in 0..20 {
        h.step();
    }
    assert!(h.query_by_label("valid layout").is_none());
    assert!(loss_plot(&h).width() >= 700.0);
    h.get_by_label("Setup »").click();
    settle(&mut h);
    for _ in 0..20 {
        h.step();
    }
    h.get_by_label("valid layout");
}

#[test]
fn train_is_reachable_in_a_tiny_window() {
    let dir = tempfile::tempdir().unwrap();
    let app = app_at(dir.path(), MethodKind::PromptTuning);
    let mut h = harness_at(app, 480.0, 360.0);
    settle(&mut h);
    let train = rect_of(&h, "Train");
    assert!(inside(train, 480.0, 360.0), "Train at 480x360: {train:?}");
    assert!(train.width() > 20.0);
}
