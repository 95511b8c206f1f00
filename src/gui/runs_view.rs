//! Every stored run with its method, task, settings and status; select runs for the comparison.

use super::{human_bytes, run_label, App, Focus, Tab};
use crate::methods::{Encoder, MethodKind, SoftInit};
use crate::run::default_lr;
use crate::runs::{RunRecord, RunStatus};
use std::collections::BTreeSet;

#[derive(Default)]
pub struct RunsState {
    /// Runs picked for the comparison.
    pub selected: BTreeSet<String>,
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
    [own, train, format!("seed {}", c.seed)]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn ui(app: &mut App, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        ui.label(format!(
            "{} runs in {}",
            app.store.runs.len(),
            app.store.dir().display()
        ));
        if ui.button("Compare selected").clicked() {
            app.tab = Tab::Compare;
        }
    });
    let mut delete = None;
    let mut inspect = None;
    let active = app.active.as_ref().map(|a| a.id.clone());
    egui::ScrollArea::vertical().show(ui, |ui| {
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
                for r in app.store.runs.iter().rev() {
                    let mut sel = app.runs.selected.contains(&r.id);
                    if ui
                        .checkbox(&mut sel, "")
                        .on_hover_text("include in the comparison")
                        .changed()
                    {
                        if sel {
                            app.runs.selected.insert(r.id.clone());
                        } else {
                            app.runs.selected.remove(&r.id);
                        }
                    }
                    ui.label(run_label(r));
                    let st = ui.label(r.status.label());
                    if let Some(e) = &r.error {
                        st.on_hover_text(e);
                    }
                    ui.label(&r.task);
                    ui.label(short_model(&r.model)).on_hover_text(&r.model);
                    match &r.result {
                        Some(res) => {
                            ui.label(format!("{:.3}", res.dev_metric));
                            ui.label(format!("{:.3}", res.test_metric))
                                .on_hover_text(format!(
                                    "{} | {} stored | {:.1} s",
                                    res.metric,
                                    human_bytes(res.artifact_bytes),
                                    res.wall_seconds
                                ));
                        }
                        None => {
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
                        if r.status == RunStatus::Finished
                            && r.artifact_dir().is_some()
                            && ui.small_button("Inspect").clicked()
                        {
                            inspect = Some(r.id.clone());
                        }
                        let live = active.as_ref() == Some(&r.id) || app.queue.contains(&r.id);
                        if !live && ui.small_button("Delete").clicked() {
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
    if let Some(id) = inspect {
        app.focus = Some(Focus::Run(id));
        app.tab = Tab::Inspect;
    }
    if let Some(id) = delete {
        app.runs.selected.remove(&id);
        app.plots.shown.remove(&id);
        if let Err(e) = app.store.delete(&id) {
            app.notice = Some(format!("{e:#}"));
        }
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
