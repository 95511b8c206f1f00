//! Train, Pause/Resume, Stop, and the progress of the active run (steps, examples/s, ETA).

use super::{run_label, Action, ModelState, Session};
use crate::run::Command;
use crate::runs::RunStatus;

/// The training controls and the progress bar: all their state is the session's (the queue,
/// the active run and its clock).
pub struct Training;

impl Training {
    pub fn ui(&mut self, ui: &mut egui::Ui, session: &mut Session) -> Option<Action> {
        let mut action = None;
        let status = session.active_record().map(|r| r.status);
        ui.horizontal(|ui| {
            let writable = session.store.read_only().is_none();
            let can_queue = writable
                && session.task.is_some()
                && session.task_job.is_none()
                && !matches!(session.model, ModelState::Failed { .. } | ModelState::Empty);
            if ui
                .add_enabled(can_queue, egui::Button::new("Train"))
                .on_disabled_hover_text(if writable {
                    "load a model and choose a task first"
                } else {
                    "read-only: another workbench is using the runs folder"
                })
                .clicked()
            {
                action = Some(Action::Train);
            }
            let paused = status == Some(RunStatus::Paused);
            let label = if paused { "Resume" } else { "Pause" };
            if ui
                .add_enabled(status.is_some(), egui::Button::new(label))
                .clicked()
            {
                session.send(if paused {
                    Command::Resume
                } else {
                    Command::Pause
                });
            }
            if ui
                .add_enabled(status.is_some(), egui::Button::new("Stop"))
                .on_hover_text(
                    "stop now; the best dev checkpoint so far is evaluated and kept, and Resume \
                     (Runs tab) continues the run where it stopped",
                )
                .clicked()
            {
                session.send(Command::Stop);
            }
            if !session.queue.is_empty() {
                ui.label(format!("{} queued", session.queue.len()));
                if ui.small_button("Clear queue").clicked() {
                    session.clear_queue();
                }
            }
        });
        let Some(r) = session.active_record() else {
            if let ModelState::Loading { spec, .. } = &session.model {
                if !session.queue.is_empty() {
                    ui.label(format!("waiting for {spec} to load..."));
                }
            }
            return action;
        };
        let step = r.step();
        let total = r.total_steps;
        let frac = if total > 0 {
            step as f32 / total as f32
        } else {
            0.0
        };
        let mut text = format!("{}  |  Step {step} / {total}", run_label(r));
        if let Some(eps) = r.examples_per_s.filter(|v| *v > 0.0) {
            text.push_str(&format!("  |  {eps:.1} examples/s"));
        }
        let eta = session
            .run_clock
            .as_ref()
            .filter(|c| c.id == r.id)
            .and_then(|c| c.eta_secs(step, total));
        if let Some(eta) = eta {
            text.push_str(&format!("  |  ETA {}", fmt_secs(eta)));
        }
        if let Some(&(_, dev)) = r.evals.last() {
            text.push_str(&format!("  |  dev {dev:.3}"));
        }
        match r.status {
            RunStatus::Queued | RunStatus::Running if r.template.is_none() => {
                text.push_str("  |  preparing (building the method, encoding the splits)...")
            }
            RunStatus::Running if r.evals.is_empty() => {
                text.push_str("  |  scoring the starting point on dev...")
            }
            RunStatus::Paused => text.push_str("  |  paused"),
            _ => {}
        }
        ui.add(egui::ProgressBar::new(frac).text(text));
        action
    }
}

/// `1h 02m`, `3m 07s`, `12s`.
pub fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}
