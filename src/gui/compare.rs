//! Side by side: the selected runs, always with the fine-tuning and zero-shot baselines of the
//! same task and model when they exist, and a one-click way to run the missing baselines.

use super::{human_bytes, run_label, Action, Session};
use crate::methods::MethodKind;
use crate::runs::{RunRecord, RunStatus};
use egui_plot::{Bar, BarChart, Plot};
use std::collections::BTreeSet;

/// One row of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    pub label: String,
    pub method: MethodKind,
    pub task: String,
    pub metric: String,
    pub test: f64,
    pub trainable: usize,
    pub model_params: usize,
    pub bytes: usize,
    pub wall_seconds: f64,
    /// Added because it is a baseline of a selected run, not selected itself.
    pub baseline: bool,
}

fn row(r: &RunRecord, baseline: bool) -> Option<Row> {
    let res = r.result.as_ref()?;
    Some(Row {
        id: r.id.clone(),
        label: run_label(r),
        method: r.method(),
        task: r.task.clone(),
        metric: res.metric.to_string(),
        test: res.test_metric,
        trainable: res.trainable_params,
        model_params: res.model_params,
        bytes: res.artifact_bytes,
        wall_seconds: res.wall_seconds,
        baseline,
    })
}

/// The rows to show: the selected finished runs (or, with none selected, the latest finished
/// run of each method on the current task), then the baselines of every (task, model) among
/// them that are not already there.
pub fn rows(session: &Session, selected: &BTreeSet<String>) -> Vec<Row> {
    let store = &session.store;
    let mut picked: Vec<&RunRecord> = store
        .runs
        .iter()
        .filter(|r| selected.contains(&r.id) && r.status == RunStatus::Finished)
        .collect();
    if selected.is_empty() {
        if let (Some(task), Some(model)) = (&session.task, session.model_spec()) {
            for m in MethodKind::ALL {
                if let Some(r) = store.latest_finished(&task.spec.name, model, m) {
                    picked.push(r);
                }
            }
        }
    }
    let mut out: Vec<Row> = picked.iter().filter_map(|r| row(r, false)).collect();
    let pairs: Vec<(String, String)> = picked
        .iter()
        .map(|r| (r.task.clone(), r.model.clone()))
        .collect();
    for (task, model) in pairs {
        for m in [MethodKind::FineTuning, MethodKind::ZeroShot] {
            if let Some(r) = store.latest_finished(&task, &model, m) {
                if !out.iter().any(|x| x.id == r.id) {
                    out.extend(row(r, true));
                }
            }
        }
    }
    out
}

/// The comparison view; the runs it compares are the runs view's selection.
pub struct Compare;

impl Compare {
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        session: &Session,
        selected: &BTreeSet<String>,
    ) -> Option<Action> {
        let mut action = None;
        let rows = rows(session, selected);
        ui.horizontal(|ui| {
        if ui
            .add_enabled(
                session.store.read_only().is_none(),
                egui::Button::new("Run the baselines"),
            )
            .on_hover_text("queue zero-shot and fine-tuning on the current task and model")
            .on_disabled_hover_text("read-only: another workbench is using the runs folder")
            .clicked()
        {
            action = Some(Action::QueueBaselines);
        }
        if selected.is_empty() {
            ui.weak("No runs selected (Runs tab): showing the latest finished run of each method on the current task.");
        }
    });
        if let Some(task) = &session.task {
            let model = session.model_spec().unwrap_or("");
            for m in [MethodKind::FineTuning, MethodKind::ZeroShot] {
                if session
                    .store
                    .latest_finished(&task.spec.name, model, m)
                    .is_none()
                {
                    ui.weak(format!(
                        "no finished {} run for {} on this model yet",
                        m.id(),
                        task.spec.name
                    ));
                }
            }
        }
        if rows.is_empty() {
            ui.label("Nothing to compare yet: train a method, then come back.");
            return action;
        }
        egui::Grid::new("compare")
            .striped(true)
            .num_columns(8)
            .show(ui, |ui| {
                for h in [
                    "run",
                    "task",
                    "test metric",
                    "trainable params",
                    "% of model",
                    "bytes stored per task",
                    "wall time",
                    "",
                ] {
                    ui.strong(h);
                }
                ui.end_row();
                for r in &rows {
                    ui.label(&r.label);
                    ui.label(&r.task);
                    ui.label(format!("{:.3} {}", r.test, r.metric));
                    ui.label(r.trainable.to_string());
                    ui.label(if r.model_params > 0 {
                        format!("{:.4}%", 100.0 * r.trainable as f64 / r.model_params as f64)
                    } else {
                        String::new()
                    });
                    ui.label(human_bytes(r.bytes));
                    ui.label(super::training::fmt_secs(r.wall_seconds));
                    ui.weak(if r.baseline { "baseline" } else { "" });
                    ui.end_row();
                }
            });
        let bars: Vec<Bar> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| Bar::new(i as f64, r.test).name(&r.label).width(0.6))
            .collect();
        let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
        ui.label("Test metric");
        Plot::new("compare-bars")
            .height(ui.available_height().clamp(120.0, 320.0))
            .include_y(0.0)
            .include_y(1.0)
            .x_axis_formatter(move |m, _| {
                let i = m.value.round();
                if (m.value - i).abs() < 1e-6 && i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .show(ui, |p| p.bar_chart(BarChart::new("test metric", bars)));
        action
    }
}
