//! Every stored run with its method, task, settings and status; select runs for the comparison.
//! A multi-task run lists its tasks and shows the mean dev and test metric over them (each
//! task's own on hover).
//! Run folders whose record could not be read are listed above them, each with a Remove that
//! (after asking) moves the folder into the runs folder's `.removed/`. An interrupted run shows
//! Resume, enabled when its checkpoint is on disk and otherwise saying why on hover
//! ([`Session::resume_offer`]). A read-only session (another workbench owns the runs folder)
//! shows no Delete, Remove or Resume.

use super::session::ResumeOffer;
use super::{human_bytes, run_label, Action, Focus, Session, Tab};
use crate::methods::{Encoder, MethodKind, SoftInit};
use crate::run::default_lr;
use crate::runs::RunRecord;
use std::collections::BTreeSet;
use std::ffi::OsString;

/// The runs view: the table of stored runs and the selection for the comparison.
#[derive(Default)]
pub struct RunsView {
    /// Runs picked for the comparison.
    pub selected: BTreeSet<String>,
    /// An unreadable run folder the user asked to remove, waiting for the confirmation.
    pub confirm_remove: Option<OsString>,
}

/// The settings that matter for the run's method, in one line.
pub fn settings_summary(r: &RunRecord) -> String {
    let s = &r.spec.settings;
    let c = &r.spec.config;
    let lr = c.lr.unwrap_or_else(|| default_lr(r.method()));
    let own = match r.method() {
        MethodKind::PromptTuning => format!(
            "init {}",
            match &s.init {
                SoftInit::Random => "random".to_string(),
                SoftInit::Vocab => "vocab".to_string(),
                SoftInit::Labels => "labels".to_string(),
                SoftInit::Text(t) => format!("text {t:?}"),
            }
        ),
        MethodKind::PrefixTuning => format!("prefix {}, MLP {}", s.prefix_len, s.prefix_hidden),
        MethodKind::PTuning => format!(
            "{} encoder {}",
            match s.encoder {
                Encoder::Lstm => "LSTM",
                Encoder::Mlp => "MLP",
            },
            s.encoder_hidden
        ),
        MethodKind::Autoprompt => format!("top-k {}", s.top_k),
        MethodKind::FineTuning | MethodKind::ZeroShot => String::new(),
    };
    let train = match r.method() {
        MethodKind::ZeroShot => String::new(),
        MethodKind::Autoprompt => format!("{} steps, batch {}", c.steps, c.batch_size),
        _ => format!("{} steps, lr {lr}, batch {}", c.steps, c.batch_size),
    };
    let tasks = match &r.multi {
        Some(m) => format!(
            "{} tasks, mix {}, shared {}",
            m.tasks.len(),
            match m.mix {
                crate::run::Mix::Proportional => "proportional",
                crate::run::Mix::Uniform => "uniform",
            },
            m.shared_tokens
        ),
        None => String::new(),
    };
    [tasks, own, train, format!("seed {}", c.seed)]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

impl RunsView {
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
        });
        let mut delete = None;
        let mut inspect = None;
        let mut resume = None;
        let active = session.active.as_ref().map(|a| a.id.clone());
        let writable = session.store.read_only().is_none();
        egui::ScrollArea::vertical().show(ui, |ui| {
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
            egui::Grid::new("runs")
                .striped(true)
                .num_columns(10)
                .show(ui, |ui| {
                    for h in [
                        "compare", "run", "status", "task", "model", "dev", "test", "", "settings",
                        "template",
                    ] {
                        ui.strong(h);
                    }
                    ui.end_row();
                    for r in session.store.runs.iter().rev() {
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
                        ui.label(run_label(r));
                        let st = ui.label(r.status.label());
                        if let Some(e) = &r.error {
                            st.on_hover_text(e);
                        }
                        ui.label(&r.task);
                        ui.label(short_model(&r.model)).on_hover_text(&r.model);
                        let multi = r.multi.as_ref().and_then(|m| m.result.as_ref());
                        match (&r.result, multi) {
                            (_, Some(res)) => {
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
                                            human_bytes(t.artifact_bytes)
                                        )
                                    })
                                    .collect();
                                let each = format!(
                                    "mean over tasks\n{}\n{:.1} s",
                                    each.join("\n"),
                                    res.wall_seconds
                                );
                                ui.label(format!("{:.3}", res.dev_metric))
                                    .on_hover_text(&each);
                                ui.label(format!("{:.3}", res.test_metric))
                                    .on_hover_text(&each);
                            }
                            (Some(res), None) => {
                                ui.label(format!("{:.3}", res.dev_metric));
                                ui.label(format!("{:.3}", res.test_metric))
                                    .on_hover_text(format!(
                                        "{} | {} stored | {:.1} s",
                                        res.metric,
                                        human_bytes(res.artifact_bytes),
                                        res.wall_seconds
                                    ));
                            }
                            (None, None) => {
                                ui.label(
                                    r.evals
                                        .last()
                                        .map(|e| format!("{:.3}", e.1))
                                        .unwrap_or_default(),
                                );
                                ui.label("");
                            }
                        }
                        ui.horizontal(|ui| {
                            if r.artifact_dir().is_some() && ui.small_button("Inspect").clicked() {
                                inspect = Some(r.id.clone());
                            }
                            if resume_button(ui, session.resume_offer(&r.id)) {
                                resume = Some(r.id.clone());
                            }
                            let live =
                                active.as_ref() == Some(&r.id) || session.queue.contains(&r.id);
                            if writable && !live && ui.small_button("Delete").clicked() {
                                delete = Some(r.id.clone());
                            }
                        });
                        ui.label(settings_summary(r));
                        let template = r
                            .template
                            .as_deref()
                            .or(r.spec.template.as_deref())
                            .unwrap_or("(task default)");
                        // Long templates would push the table wider than the window.
                        ui.monospace(shorten(template, 48)).on_hover_text(template);
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
            action = Some(Action::DeleteRun(id));
        }
        if let Some(id) = resume {
            action = Some(Action::ResumeRun(id));
        }
        action
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
