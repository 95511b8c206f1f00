//! Every stored run as a table with every setting and every result as a column
//! ([`super::runs_table`]), sortable by a click on a header and filtered by words typed above
//! it; select runs for the comparison. Statuses are told apart by name and colour (finished,
//! early-stopped, stopped, interrupted, failed, cancelled). A multi-task run lists its tasks and
//! shows the mean dev and test metric over them.
//!
//! A run's Details (its label is a button) rename it, keep a free-text note (both saved in its
//! run.json), and offer "Clone settings from this run", which puts its model, task(s), method,
//! settings and template into the setup ([`clone_settings`]). They also open the run's test
//! predictions ([`super::predictions`]): every test example with its prediction, the errors
//! alone, and the confusion matrix of a classification task.
//!
//! Run folders whose record could not be read are listed above them, each with a Remove that
//! (after asking) moves the folder into the runs folder's `.removed/`. An interrupted or stopped
//! run shows Resume, enabled when its checkpoint is on disk and otherwise saying why on hover
//! ([`Session::resume_offer`]). A read-only session (another workbench owns the runs folder)
//! shows no Delete, Remove, Resume or Save.

use super::colors::RunColors;
use super::predictions::PredictionsView;
use super::runs_table::{columns, View};
use super::session::ResumeOffer;
use super::{run_label, Action, App, Focus, Session, Tab};
use crate::methods::{MethodKind, SoftInit};
use crate::runs::{RunRecord, RunStatus};
use crate::task::Template;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;

/// The label of the button that copies a run's setup into the setup panel.
pub const CLONE_SETTINGS: &str = "Clone settings from this run";
/// The label of the button in a run's details that opens its test predictions.
pub const TEST_PREDICTIONS: &str = "Test predictions";
/// What the run's details call AutoPrompt's found label tokens, before the tokens by label.
pub const FOUND_LABEL_TOKENS: &str = "label tokens (found by the search)";

/// The runs view: the table of stored runs and the selection for the comparison.
#[derive(Default)]
pub struct RunsView {
    /// Runs picked for the comparison.
    pub selected: BTreeSet<String>,
    /// An unreadable run folder the user asked to remove, waiting for the confirmation.
    pub confirm_remove: Option<OsString>,
    /// Sort column, order and filter.
    pub view: View,
    /// The run whose details are open, with its name and note as being edited.
    pub details: Option<Details>,
    /// A cloned run's template, put into the editor once its task is the current one (the
    /// editor is reset when a task arrives).
    pub pending_template: Option<(PathBuf, MethodKind, String)>,
    /// The test predictions of a run, when opened from its details.
    pub predictions: Option<PredictionsView>,
}

/// A run's name and note as the user edits them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    pub id: String,
    pub name: String,
    pub note: String,
}

impl RunsView {
    /// Picks up the predictions once they are read.
    pub fn pump(&mut self) {
        if let Some(p) = &mut self.predictions {
            p.pump();
        }
    }

    pub fn busy(&self) -> bool {
        self.predictions.as_ref().is_some_and(|p| p.busy())
    }

    /// Forgets what it shows of a run that was deleted.
    pub fn forget(&mut self, id: &str) {
        self.selected.remove(id);
        if self.predictions.as_ref().is_some_and(|p| p.run == id) {
            self.predictions = None;
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, session: &mut Session) -> Option<Action> {
        let mut action = None;
        ui.horizontal(|ui| {
            ui.label(format!(
                "{} runs in {}",
                session.store.runs.len(),
                session.store.dir().display()
            ));
            if ui.button("Compare selected").clicked() {
                action = Some(Action::Show(Tab::Compare));
            }
            ui.label("filter:");
            ui.add(
                egui::TextEdit::singleline(&mut self.view.filter)
                    .hint_text("words in any column")
                    .desired_width(200.0),
            );
            if !self.view.filter.is_empty() && ui.small_button("Clear").clicked() {
                self.view.filter.clear();
            }
        });
        if let Some(a) = self.details_ui(ui, session) {
            action = Some(a);
        }
        if let Some(p) = &mut self.predictions {
            if p.ui(ui) {
                self.predictions = None;
            }
        }
        let mut delete = None;
        let mut inspect = None;
        let mut resume = None;
        let active = session.active.as_ref().map(|a| a.id.clone());
        let writable = session.store.read_only().is_none();
        let cols = columns();
        // Not shrunk to the table: a short table's floating horizontal scroll bar sat over its
        // last row and took the clicks meant for it.
        egui::ScrollArea::both()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                if !session.store.unreadable.is_empty() {
                    ui.strong(format!(
                        "Could not read ({})",
                        session.store.unreadable.len()
                    ));
                    for u in &session.store.unreadable {
                        ui.horizontal(|ui| {
                            ui.monospace(u.folder.to_string_lossy());
                            if writable
                                && ui
                                    .small_button("Remove...")
                                    .on_hover_text("move this folder out of the runs list")
                                    .clicked()
                            {
                                self.confirm_remove = Some(u.folder.clone());
                            }
                        });
                        ui.colored_label(ui.visuals().warn_fg_color, &u.error);
                    }
                    ui.separator();
                }
                let rows = self.view.rows(&session.store.runs, &cols);
                let listed: Vec<&RunRecord> = rows.iter().map(|(r, _)| *r).collect();
                let colors = RunColors::of(&[], &listed);
                if rows.len() < session.store.runs.len() {
                    ui.weak(format!(
                        "{} of {} runs match the filter",
                        rows.len(),
                        session.store.runs.len()
                    ));
                }
                egui::Grid::new("runs")
                    .striped(true)
                    .num_columns(cols.len() + 4)
                    .show(ui, |ui| {
                        ui.strong("compare");
                        for _ in 0..3 {
                            ui.strong("");
                        }
                        for (c, col) in cols.iter().enumerate() {
                            let arrow = match (self.view.sort == Some(c), self.view.descending) {
                                (true, false) => " ^",
                                (true, true) => " v",
                                (false, _) => "",
                            };
                            let header =
                                egui::RichText::new(format!("{}{arrow}", col.name)).strong();
                            if ui
                                .add(egui::Button::new(header).frame(false))
                                .on_hover_text(format!("{} (click to sort)", col.about))
                                .clicked()
                            {
                                self.view.click(c);
                            }
                        }
                        ui.end_row();
                        for (r, cells) in &rows {
                            let mut sel = self.selected.contains(&r.id);
                            if ui
                                .checkbox(&mut sel, "")
                                .on_hover_text("include in the comparison")
                                .changed()
                            {
                                if sel {
                                    self.selected.insert(r.id.clone());
                                } else {
                                    self.selected.remove(&r.id);
                                }
                            }
                            // One cell per action (an empty one where a run has none), so the
                            // columns line up without a nested layout in the scrolled table.
                            if r.artifact_dir().is_some() {
                                if ui.small_button("Inspect").clicked() {
                                    inspect = Some(r.id.clone());
                                }
                            } else {
                                ui.label("");
                            }
                            let offer = session.resume_offer(&r.id);
                            if offer == ResumeOffer::Hidden {
                                ui.label("");
                            } else if resume_button(ui, offer) {
                                resume = Some(r.id.clone());
                            }
                            let live =
                                active.as_ref() == Some(&r.id) || session.queue.contains(&r.id);
                            if writable && !live {
                                if ui.small_button("Delete").clicked() {
                                    delete = Some(r.id.clone());
                                }
                            } else {
                                ui.label("");
                            }
                            for (col, cell) in cols.iter().zip(cells) {
                                match col.name {
                                    "run" => {
                                        let text =
                                            egui::RichText::new(&cell.text).color(colors.get(r));
                                        if ui
                                            .add(egui::Button::new(text).frame(false))
                                            .on_hover_text(format!(
                                                "{}: details, rename, note, clone its \
                                                 settings, test predictions",
                                                r.id
                                            ))
                                            .clicked()
                                        {
                                            self.details = Some(Details {
                                                id: r.id.clone(),
                                                name: r
                                                    .given_name()
                                                    .unwrap_or_default()
                                                    .to_string(),
                                                note: r.note.clone(),
                                            });
                                        }
                                    }
                                    "status" => {
                                        ui.label(
                                            egui::RichText::new(&cell.text)
                                                .color(status_color(ui, r.status)),
                                        )
                                        .on_hover_text(
                                            match &r.error {
                                                Some(e) => format!("{}\n{e}", r.status.meaning()),
                                                None => r.status.meaning().to_string(),
                                            },
                                        );
                                    }
                                    "template" | "note" => {
                                        // Long text would push the table wider than the window.
                                        let full = if col.name == "note" {
                                            &r.note
                                        } else {
                                            &cell.text
                                        };
                                        ui.monospace(shorten(&cell.text, 40)).on_hover_text(full);
                                    }
                                    "dev" | "test" if r.multi.is_some() => {
                                        ui.label(&cell.text).on_hover_text(multi_scores(r));
                                    }
                                    _ => {
                                        ui.label(&cell.text);
                                    }
                                }
                            }
                            ui.end_row();
                        }
                    });
            });
        if let Some(folder) = self.confirm_remove.clone() {
            let removed = session.store.dir().join(crate::runs::REMOVED_DIR);
            let modal = egui::Modal::new(egui::Id::unique("confirm-remove-run-folder")).show(
                ui.ctx(),
                |ui| {
                    ui.heading("Remove this run folder?");
                    ui.label(format!(
                        "{} leaves the runs list and moves into {}. Nothing is deleted: move \
                         it back to restore it.",
                        folder.to_string_lossy(),
                        removed.display()
                    ));
                    ui.horizontal(|ui| {
                        if ui.button("Move to .removed").clicked() {
                            session.remove_unreadable(&folder);
                            self.confirm_remove = None;
                        }
                        if ui.button("Cancel").clicked() {
                            self.confirm_remove = None;
                        }
                    });
                },
            );
            if modal.should_close() {
                self.confirm_remove = None;
            }
        }
        if let Some(id) = inspect {
            session.set_focus(Focus::Run(id));
            action = Some(Action::Show(Tab::Inspect));
        }
        if let Some(id) = delete {
            if self.details.as_ref().is_some_and(|d| d.id == id) {
                self.details = None;
            }
            action = Some(Action::DeleteRun(id));
        }
        if let Some(id) = resume {
            action = Some(Action::ResumeRun(id));
        }
        action
    }

    /// The open run's details: rename, note, clone its settings.
    fn details_ui(&mut self, ui: &mut egui::Ui, session: &mut Session) -> Option<Action> {
        let d = self.details.as_mut()?;
        let Some(r) = session.store.get(&d.id).cloned() else {
            self.details = None;
            return None;
        };
        let mut action = None;
        let mut close = false;
        let writable = session.store.read_only().is_none();
        let default_label = {
            let mut plain = r.clone();
            plain.name = None;
            run_label(&plain)
        };
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.strong(format!("Run {}", r.id));
                ui.label(egui::RichText::new(r.status.label()).color(status_color(ui, r.status)));
            });
            ui.horizontal(|ui| {
                ui.label("Name:");
                ui.add(
                    egui::TextEdit::singleline(&mut d.name)
                        .hint_text(&default_label)
                        .desired_width(260.0),
                );
            });
            ui.label("Note:");
            ui.add(
                egui::TextEdit::multiline(&mut d.note)
                    .hint_text("what you tried, what you saw")
                    .desired_rows(2)
                    .desired_width(f32::INFINITY),
            );
            if let Some(line) = r.result.as_ref().and_then(|res| res.label_tokens_line()) {
                ui.label(format!("{FOUND_LABEL_TOKENS}: {line}"));
            }
            ui.horizontal(|ui| {
                let changed =
                    d.name.trim() != r.given_name().unwrap_or_default() || d.note != r.note;
                if ui
                    .add_enabled(writable && changed, egui::Button::new("Save name and note"))
                    .on_disabled_hover_text(if writable {
                        "nothing changed"
                    } else {
                        "read-only: another workbench is using the runs folder"
                    })
                    .clicked()
                {
                    let (id, name, note) = (d.id.clone(), d.name.clone(), d.note.clone());
                    session.annotate(&id, &name, &note);
                }
                if ui
                    .button(CLONE_SETTINGS)
                    .on_hover_text(
                        "put this run's model, task(s), method, settings and template into the \
                         setup on the left, ready to train again or to change one thing",
                    )
                    .clicked()
                {
                    action = Some(Action::CloneSettings(d.id.clone()));
                }
                let saved = r.artifact_dir().is_some();
                if ui
                    .add_enabled(saved, egui::Button::new(TEST_PREDICTIONS))
                    .on_hover_text(
                        "every test example with the prediction, its probability and whether \
                         it was right; the errors alone; the confusion matrix",
                    )
                    .on_disabled_hover_text(if r.multi.is_some() {
                        "a multi-task run keeps each task's predictions in its task's folder \
                         (predictions.jsonl beside the task's prompt); this view shows one \
                         task's run only"
                    } else {
                        "the run has not saved a prompt (yet)"
                    })
                    .clicked()
                {
                    self.predictions = Some(PredictionsView::open(&r));
                }
                if ui.button("Close").clicked() {
                    close = true;
                }
            });
        });
        if close {
            self.details = None;
        }
        action
    }
}

/// Each task's scores of a multi-task run, for the hover of its mean.
fn multi_scores(r: &RunRecord) -> String {
    let Some(res) = r.multi.as_ref().and_then(|m| m.result.as_ref()) else {
        return "mean over tasks".into();
    };
    let each: Vec<String> = res
        .tasks
        .iter()
        .map(|t| {
            format!(
                "{}: dev {:.3}, test {:.3} {}, {} stored",
                t.task,
                t.dev_metric,
                t.test_metric,
                t.metric,
                super::human_bytes(t.artifact_bytes)
            )
        })
        .collect();
    format!(
        "mean over tasks\n{}\n{:.1} s",
        each.join("\n"),
        res.wall_seconds
    )
}

/// Puts run `id`'s model, task (or a multi-task run's tasks), method, settings and template into
/// the setup. The model and a task other than the current one load in the background; the
/// template goes into the editor once its task is there ([`apply_cloned_template`]).
pub fn clone_settings(app: &mut App, id: &str) {
    let Some(r) = app.session.store.get(id).cloned() else {
        return;
    };
    let s = &mut app.setup;
    s.method = r.spec.method;
    s.settings = r.spec.settings.clone();
    s.config = r.spec.config.clone();
    if let SoftInit::Text(t) = &r.spec.settings.init {
        s.init_text = t.clone();
    }
    match &r.multi {
        Some(m) => {
            s.several_tasks = true;
            s.ticked = m.tasks.iter().map(|t| t.dir.clone()).collect();
            s.mix = m.mix;
            s.shared_tokens = m.shared_tokens;
        }
        None => s.several_tasks = false,
    }
    if app.session.model_spec() != Some(r.model.as_str()) {
        app.load_model(&r.model);
    }
    // A multi-task run trains each task's own template; a single-task run's is the one it
    // was given (the task's default with the method's slots when none was).
    let template = match &r.multi {
        Some(_) => None,
        None => r.spec.template.clone().or(r.template.clone()),
    };
    let current = app.session.task.as_ref().map(|t| t.dir.clone());
    if current.as_ref() != Some(&r.task_dir) {
        app.select_task(&r.task_dir);
    }
    match template {
        Some(t) => app.runs.pending_template = Some((r.task_dir.clone(), r.spec.method, t)),
        None => {
            app.runs.pending_template = None;
            app.reset_template();
        }
    }
    apply_cloned_template(app);
    app.session.notice = Some(format!(
        "the setup now holds the settings of {}; change what you want and press Train",
        run_label(&r)
    ));
}

/// Puts a cloned run's template into the editor once its task is the current one and no other
/// task is being read (called after every pump: a task's arrival resets the editor).
pub fn apply_cloned_template(app: &mut App) {
    let Some((dir, method, text)) = app.runs.pending_template.clone() else {
        return;
    };
    let ready =
        app.session.task_job.is_none() && app.session.task.as_ref().is_some_and(|t| t.dir == dir);
    if !ready {
        if app.session.task_job.is_none() && app.session.task_error.is_some() {
            // The task could not be read: nothing to put the template on.
            app.runs.pending_template = None;
        }
        return;
    }
    app.runs.pending_template = None;
    match Template::parse(&text) {
        Ok(t) => app.editor.set(t, method),
        Err(e) => {
            app.session.notice = Some(format!("the cloned run's template does not parse: {e}"))
        }
    }
}

/// A run's Resume button as its [`ResumeOffer`] says (none, disabled with the reason on hover,
/// or enabled); returns whether it was clicked.
pub fn resume_button(ui: &mut egui::Ui, offer: ResumeOffer) -> bool {
    let why = match offer {
        ResumeOffer::Hidden => return false,
        ResumeOffer::Unavailable(why) => Some(why),
        ResumeOffer::Ready => None,
    };
    let b = ui.add_enabled(why.is_none(), egui::Button::new("Resume").small());
    match why {
        Some(why) => b.on_disabled_hover_text(why).clicked(),
        None => b
            .on_hover_text(
                "continue this run from its last checkpoint (same id and folder, its curve kept); \
                 steps after the checkpoint are trained again",
            )
            .clicked(),
    }
}

/// Each ending its own colour, so a stopped or early-stopped run is not read as finished, nor
/// a cancelled one as failed.
pub fn status_color(ui: &egui::Ui, status: RunStatus) -> egui::Color32 {
    use egui::Color32;
    match status {
        RunStatus::Queued | RunStatus::Running | RunStatus::Paused => ui.visuals().text_color(),
        RunStatus::Finished => Color32::from_rgb(60, 170, 80),
        RunStatus::EarlyStopped => Color32::from_rgb(40, 160, 160),
        RunStatus::Stopped => Color32::from_rgb(200, 140, 30),
        RunStatus::Interrupted => ui.visuals().warn_fg_color,
        RunStatus::Failed => ui.visuals().error_fg_color,
        RunStatus::Cancelled => ui.visuals().weak_text_color(),
    }
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(n).collect::<String>())
    }
}

/// The file or folder name of a model spec.
pub fn short_model(spec: &str) -> String {
    std::path::Path::new(spec)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| spec.to_string())
}
