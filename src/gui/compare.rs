//! Side by side: the selected runs, always with the fine-tuning and zero-shot baselines of the
//! same task and model when they exist, and a one-click way to run the missing baselines.
//!
//! A multi-task run shows one row per task, each next to the latest single-task run of that
//! task with the same method and model, and the storage picture of its tasks: one frozen model
//! plus N prompts against N fine-tuned model copies.

use super::{human_bytes, run_label, Action, Session};
use crate::methods::MethodKind;
use crate::run::MultiTaskResult;
use crate::runs::{RunRecord, RunStatus};
use egui_plot::{Bar, BarChart, Plot};
use std::collections::BTreeSet;

/// One row of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    /// The run's label, as the table shows it.
    pub run: String,
    /// The run's label, with the task for a multi-task run's row (the bar chart's names).
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
    /// One task of a multi-task run: how many tasks the run trained. Its trainable
    /// parameters are the whole run's (every task's prompt and the shared part).
    pub multi_task: Option<usize>,
    /// Added as the single-task run of a multi-task row's task and method.
    pub single_task_peer: bool,
}

impl Row {
    /// What the last column says about where the row comes from.
    pub fn note(&self) -> String {
        match self.multi_task {
            Some(n) => format!("multi-task, {n} tasks"),
            None if self.baseline => "baseline".into(),
            None if self.single_task_peer => "single-task".into(),
            None => String::new(),
        }
    }
}

fn row(r: &RunRecord, baseline: bool) -> Option<Row> {
    let res = r.result.as_ref()?;
    Some(Row {
        id: r.id.clone(),
        run: run_label(r),
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
        multi_task: None,
        single_task_peer: false,
    })
}

/// One row per task of a finished multi-task run.
fn task_rows(r: &RunRecord) -> Vec<Row> {
    let Some(res) = r.multi.as_ref().and_then(|m| m.result.as_ref()) else {
        return Vec::new();
    };
    res.tasks
        .iter()
        .map(|t| Row {
            id: r.id.clone(),
            run: run_label(r),
            label: format!("{} [{}]", run_label(r), t.task),
            method: r.method(),
            task: t.task.clone(),
            metric: t.metric.to_string(),
            test: t.test_metric,
            trainable: res.trainable_params,
            model_params: res.model_params,
            bytes: t.artifact_bytes,
            wall_seconds: res.wall_seconds,
            baseline: false,
            multi_task: Some(res.tasks.len()),
            single_task_peer: false,
        })
        .collect()
}

/// What N tasks cost to keep: one frozen model plus N prompts, against N fine-tuned copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Storage {
    pub tasks: usize,
    /// One model's weights as f32.
    pub model_bytes: usize,
    /// All tasks' prompt folders' tensors together.
    pub prompt_bytes: usize,
}

impl Storage {
    pub fn of(r: &MultiTaskResult) -> Storage {
        Storage {
            tasks: r.tasks.len(),
            model_bytes: r.model_params * 4,
            prompt_bytes: r.tasks.iter().map(|t| t.artifact_bytes).sum(),
        }
    }

    /// "1 frozen model (4.2 MB) + 2 prompts (8.4 kB)".
    pub fn prompts_line(&self) -> String {
        format!(
            "1 frozen model ({}) + {} prompts ({})",
            human_bytes(self.model_bytes),
            self.tasks,
            human_bytes(self.prompt_bytes)
        )
    }

    /// "2 fine-tuned copies (2 × 4.2 MB)".
    pub fn copies_line(&self) -> String {
        format!(
            "{n} fine-tuned copies ({n} × {})",
            human_bytes(self.model_bytes),
            n = self.tasks
        )
    }

    pub fn prompts_total(&self) -> usize {
        self.model_bytes + self.prompt_bytes
    }

    pub fn copies_total(&self) -> usize {
        self.model_bytes * self.tasks
    }
}

/// The finished multi-task runs among the picked ones, with their results.
fn multi_results<'a>(
    session: &'a Session,
    selected: &BTreeSet<String>,
) -> Vec<(&'a RunRecord, &'a MultiTaskResult)> {
    picked(session, selected)
        .into_iter()
        .filter_map(|r| Some((r, r.multi.as_ref()?.result.as_ref()?)))
        .collect()
}
/// The rows to show: the selected finished runs (or, with none selected, the latest finished
/// run of each method on the current task), then the baselines of every (task, model) among
/// them that are not already there.
///
/// A multi-task run gives one row per task, each followed by the latest single-task run of that
/// task with the same method and model (when there is one and it is not shown already).
pub fn rows(session: &Session, selected: &BTreeSet<String>) -> Vec<Row> {
    let store = &session.store;
    let picked = picked(session, selected);
    let mut out: Vec<Row> = Vec::new();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for r in &picked {
        if r.multi.is_none() {
            out.extend(row(r, false));
            pairs.push((r.task.clone(), r.model.clone()));
            continue;
        }
        for t in task_rows(r) {
            let peer = store.latest_finished(&t.task, &r.model, r.method());
            pairs.push((t.task.clone(), r.model.clone()));
            out.push(t);
            if let Some(p) = peer.filter(|p| !picked.iter().any(|x| x.id == p.id)) {
                if !out.iter().any(|x| x.id == p.id) {
                    out.extend(row(p, false).map(|x| Row {
                        single_task_peer: true,
                        ..x
                    }));
                }
            }
        }
    }
    pairs.dedup();
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

/// The selected finished runs or, with none selected, the latest finished run of each method on
/// the current task and model and the latest finished multi-task run that trained it.
fn picked<'a>(session: &'a Session, selected: &BTreeSet<String>) -> Vec<&'a RunRecord> {
    let store = &session.store;
    let mut picked: Vec<&RunRecord> = store
        .runs
        .iter()
        .filter(|r| selected.contains(&r.id) && r.status == RunStatus::Finished)
        .collect();
    if selected.is_empty() {
        if let (Some(task), Some(model)) = (&session.task, session.model_spec()) {
            picked.extend(store.latest_finished_multi(&task.spec.name, model));
            for m in MethodKind::ALL {
                if let Some(r) = store.latest_finished(&task.spec.name, model, m) {
                    picked.push(r);
                }
            }
        }
    }
    picked
}

/// The storage picture of every multi-task run compared.
pub fn storage(session: &Session, selected: &BTreeSet<String>) -> Vec<(String, Storage)> {
    multi_results(session, selected)
        .into_iter()
        .map(|(r, res)| (run_label(r), Storage::of(res)))
        .collect()
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
                    ui.label(&r.run);
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
                    let note = ui.weak(r.note());
                    if r.multi_task.is_some() {
                        note.on_hover_text(
                            "one run trained every task's prompt: its trainable parameters and \
                             wall time are the whole run's; bytes are this task's prompt folder",
                        );
                    }
                    ui.end_row();
                }
            });
        for (label, s) in storage(session, selected) {
            storage_ui(ui, &label, &s);
        }
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

/// One multi-task run's storage: its two ways of keeping N tasks, and how many times smaller
/// the prompts are.
fn storage_ui(ui: &mut egui::Ui, label: &str, s: &Storage) {
    ui.add_space(6.0);
    ui.strong(format!("Storage for {} tasks ({label})", s.tasks));
    egui::Grid::new(("storage", label))
        .num_columns(2)
        .show(ui, |ui| {
            ui.label(s.prompts_line());
            ui.label(format!("= {}", human_bytes(s.prompts_total())));
            ui.end_row();
            ui.label(s.copies_line());
            ui.label(format!("= {}", human_bytes(s.copies_total())));
            ui.end_row();
        });
    if s.prompts_total() > 0 {
        ui.weak(format!(
            "The prompts keep these {} tasks in {:.1}× less than fine-tuned copies (model \
             weights as f32).",
            s.tasks,
            s.copies_total() as f64 / s.prompts_total() as f64
        ));
    }
}
