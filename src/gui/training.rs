//! Train, Pause/Resume, Stop, and the progress of the active run (steps, examples/s, ETA).

use super::{run_label, App, ModelState};
use crate::run::{Command, Event};
use crate::runs::RunStatus;
use std::time::{Duration, Instant};

/// Wall time of the active run since its `Started` event, less the time spent paused: the ETA
/// divides it by the steps done, so evaluations so far are part of the estimate.
#[derive(Debug, Clone)]
pub struct RunClock {
    /// The run this clock times.
    pub id: String,
    started: Instant,
    paused_at: Option<Instant>,
    paused: Duration,
}

impl RunClock {
    pub fn new(id: String) -> RunClock {
        RunClock {
            id,
            started: Instant::now(),
            paused_at: None,
            paused: Duration::ZERO,
        }
    }

    /// Follows pauses and resumes.
    pub fn on_event(&mut self, ev: &Event) {
        match ev {
            Event::Paused => {
                self.paused_at.get_or_insert_with(Instant::now);
            }
            Event::Resumed => {
                if let Some(t) = self.paused_at.take() {
                    self.paused += t.elapsed();
                }
            }
            _ => {}
        }
    }

    /// Time spent running (not paused).
    pub fn elapsed(&self) -> Duration {
        let now = self.paused_at.unwrap_or_else(Instant::now);
        now.saturating_duration_since(self.started)
            .saturating_sub(self.paused)
    }

    /// Seconds left at the average pace so far, once a step has been done.
    pub fn eta_secs(&self, step: usize, total: usize) -> Option<f64> {
        (step > 0)
            .then(|| self.elapsed().as_secs_f64() / step as f64 * total.saturating_sub(step) as f64)
    }
}

pub fn ui(app: &mut App, ui: &mut egui::Ui) {
    let status = app.active_record().map(|r| r.status);
    ui.horizontal(|ui| {
        let can_queue = app.task.is_some()
            && app.task_job.is_none()
            && !matches!(app.model, ModelState::Failed { .. } | ModelState::Empty);
        if ui
            .add_enabled(can_queue, egui::Button::new("Train"))
            .on_disabled_hover_text("load a model and choose a task first")
            .clicked()
        {
            app.queue_current();
        }
        let paused = status == Some(RunStatus::Paused);
        let label = if paused { "Resume" } else { "Pause" };
        if ui
            .add_enabled(status.is_some(), egui::Button::new(label))
            .clicked()
        {
            app.send(if paused {
                Command::Resume
            } else {
                Command::Pause
            });
        }
        if ui
            .add_enabled(status.is_some(), egui::Button::new("Stop"))
            .on_hover_text("stop now; the best dev checkpoint so far is evaluated and kept")
            .clicked()
        {
            app.send(Command::Stop);
        }
        if !app.queue.is_empty() {
            ui.label(format!("{} queued", app.queue.len()));
            if ui.small_button("Clear queue").clicked() {
                for id in std::mem::take(&mut app.queue) {
                    if let Some(i) = app.store.index_of(&id) {
                        let _ = app.store.set_status(
                            i,
                            RunStatus::Failed,
                            Some("removed from the queue".into()),
                        );
                    }
                }
            }
        }
    });
    let Some(r) = app.active_record() else {
        if let ModelState::Loading { spec, .. } = &app.model {
            if !app.queue.is_empty() {
                ui.label(format!("waiting for {spec} to load..."));
            }
        }
        return;
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
    let eta = app
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
