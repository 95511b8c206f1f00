//! Inside a learned prompt: the nearest vocabulary tokens of soft vectors, AutoPrompt's trigger
//! text, and a playground that scores a typed input with and without the prompt. The work is
//! the engine's (`playground`), run on background threads.

use super::{run_label, App, Focus, Job};
use crate::playground::{self, Answer, Comparison, Learned};
use crate::runs::RunStatus;
use std::collections::BTreeMap;

#[derive(Default)]
pub struct InspectState {
    learned_job: Option<(Focus, Job<Learned>)>,
    pub learned: Option<(Focus, Result<Learned, String>)>,
    /// Playground input, per field.
    pub inputs: BTreeMap<String, String>,
    play_job: Option<(Focus, Job<Comparison>)>,
    /// The last playground score, with the prompt it was computed for.
    pub play: Option<(Focus, Result<Comparison, String>)>,
}

impl InspectState {
    pub fn pump(&mut self) {
        if let Some((f, job)) = &self.learned_job {
            if let Some(r) = job.poll() {
                self.learned = Some((f.clone(), r));
                self.learned_job = None;
            }
        }
        if let Some((f, job)) = &self.play_job {
            if let Some(r) = job.poll() {
                self.play = Some((f.clone(), r));
                self.play_job = None;
            }
        }
    }

    /// Forgets results and pending work for any prompt other than `focus` (a result that
    /// arrives for an old focus is dropped, never shown against the new one).
    pub fn retain_focus(&mut self, focus: Option<&Focus>) {
        let keep = |f: &Focus| Some(f) == focus;
        if self.play.as_ref().is_some_and(|p| !keep(&p.0)) {
            self.play = None;
        }
        if self.play_job.as_ref().is_some_and(|j| !keep(&j.0)) {
            self.play_job = None;
        }
        if self.learned.as_ref().is_some_and(|l| !keep(&l.0)) {
            self.learned = None;
        }
        if self.learned_job.as_ref().is_some_and(|j| !keep(&j.0)) {
            self.learned_job = None;
        }
    }

    pub fn busy(&self) -> bool {
        self.learned_job.is_some() || self.play_job.is_some()
    }
}

/// Picks the prompt the inspect and export views work on.
pub fn focus_picker(app: &mut App, ui: &mut egui::Ui) {
    let current = match &app.focus {
        Some(Focus::Run(id)) => app
            .store
            .get(id)
            .map(|r| format!("{} on {}", run_label(r), r.task))
            .unwrap_or_else(|| "(deleted run)".into()),
        Some(Focus::Imported(p)) => format!("imported {}", p.display()),
        None => "(choose a run)".into(),
    };
    let mut pick = None;
    egui::ComboBox::from_label("prompt")
        .selected_text(current)
        .show_ui(ui, |ui| {
            for r in app.store.runs.iter().rev() {
                if r.status == RunStatus::Finished && r.artifact_dir().is_some() {
                    let f = Focus::Run(r.id.clone());
                    let on = app.focus.as_ref() == Some(&f);
                    if ui
                        .selectable_label(on, format!("{} on {}", run_label(r), r.task))
                        .clicked()
                    {
                        pick = Some(f);
                    }
                }
            }
        });
    if let Some(f) = pick {
        app.focus = Some(f);
    }
}

pub fn ui(app: &mut App, ui: &mut egui::Ui) {
    focus_picker(app, ui);
    let Some(art) = app.focused_artifact() else {
        ui.label("Choose a finished run above (or import a prompt folder in the Export tab).");
        return;
    };
    let art = match art {
        Ok(a) => a,
        Err(e) => {
            ui.colored_label(ui.visuals().error_fg_color, e);
            return;
        }
    };
    let focus = app.focus.clone().expect("focused");
    let m = &art.manifest;
    ui.label(format!(
        "{} on {} | test {} {:.3} | template {}",
        m.method.id(),
        m.task,
        m.result.metric,
        m.result.test_metric,
        m.template
    ));
    let Some(model) = app.model.ready().cloned() else {
        ui.weak("Load the model the prompt was trained on to look inside it.");
        return;
    };
    if let Err(e) = art.check_model(&model) {
        ui.colored_label(ui.visuals().error_fg_color, format!("{e:#}"));
        return;
    }

    ui.separator();
    ui.heading("What was learned");
    let have = app.inspect.learned.as_ref().map(|l| &l.0) == Some(&focus);
    let running = app.inspect.learned_job.as_ref().map(|j| &j.0) == Some(&focus);
    if !have && !running {
        let (m2, a2) = (model.clone(), art.clone());
        app.inspect.learned_job = Some((
            focus.clone(),
            Job::spawn(move || playground::inspect(&m2, &a2, 5)),
        ));
    }
    match &app.inspect.learned {
        Some((f, Ok(learned))) if *f == focus => learned_ui(ui, learned),
        Some((f, Err(e))) if *f == focus => {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        _ => {
            ui.spinner();
        }
    }

    ui.separator();
    ui.heading("Playground");
    let task = match app.task_named(&m.task) {
        Ok(t) => t,
        Err(e) => {
            ui.weak(e);
            return;
        }
    };
    if app.inspect.inputs.is_empty() || m.fields.iter().any(|f| !app.inspect.inputs.contains_key(f))
    {
        // Start from a real test example so that the first score means something.
        app.inspect.inputs = task
            .test
            .first()
            .map(|e| e.fields.clone())
            .unwrap_or_default();
    }
    for f in &m.fields {
        ui.horizontal(|ui| {
            let l = ui.label(format!("{{{f}}}"));
            ui.text_edit_singleline(app.inspect.inputs.entry(f.clone()).or_default())
                .labelled_by(l.id);
        });
    }
    let scoring = app.inspect.play_job.as_ref().map(|j| &j.0) == Some(&focus);
    ui.horizontal(|ui| {
        if ui
            .add_enabled(!scoring, egui::Button::new("Score"))
            .clicked()
        {
            let (m2, t2, a2) = (model.clone(), task.clone(), art.clone());
            let inputs = app.inspect.inputs.clone();
            app.inspect.play = None;
            app.inspect.play_job = Some((
                focus.clone(),
                Job::spawn(move || playground::compare(&m2, &t2, &a2, &inputs)),
            ));
        }
        if scoring {
            ui.spinner();
        }
    });
    match &app.inspect.play {
        Some((f, Ok(c))) if *f == focus => comparison_ui(ui, c),
        Some((f, Err(e))) if *f == focus => {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        _ => {}
    }
}

fn learned_ui(ui: &mut egui::Ui, learned: &Learned) {
    match learned {
        Learned::Soft(rows) => {
            ui.label("Nearest vocabulary tokens of each soft vector (cosine similarity):");
            egui::Grid::new("nearest").striped(true).show(ui, |ui| {
                for (i, near) in rows.iter().enumerate() {
                    ui.label(format!("[P] {}", i + 1));
                    let s: Vec<String> =
                        near.iter().map(|(t, c)| format!("{t:?} {c:.2}")).collect();
                    ui.monospace(s.join("   "));
                    ui.end_row();
                }
            });
        }
        Learned::Triggers { tokens, text } => {
            ui.label("Trigger tokens:");
            ui.monospace(format!("{tokens:?}"));
            ui.label("As text:");
            ui.monospace(format!("{text:?}"));
        }
        Learned::Opaque(why) => {
            ui.weak(why);
        }
    }
}

fn comparison_ui(ui: &mut egui::Ui, c: &Comparison) {
    match (&c.without, &c.with_prompt) {
        (Answer::Labels(without), Answer::Labels(with)) => {
            egui::Grid::new("play").striped(true).show(ui, |ui| {
                ui.strong("label");
                ui.strong("without the prompt (zero-shot)");
                ui.strong("with the learned prompt");
                ui.end_row();
                for ((label, p0), (_, p1)) in without.iter().zip(with) {
                    ui.label(label);
                    ui.add(
                        egui::ProgressBar::new(*p0)
                            .text(format!("{:.1}%", 100.0 * p0))
                            .desired_width(180.0),
                    );
                    ui.add(
                        egui::ProgressBar::new(*p1)
                            .text(format!("{:.1}%", 100.0 * p1))
                            .desired_width(180.0),
                    );
                    ui.end_row();
                }
            });
        }
        (without, with) => {
            let text = |a: &Answer| match a {
                Answer::Text(t) => format!("{t:?}"),
                Answer::Labels(l) => format!("{l:?}"),
            };
            ui.label(format!("without the prompt: {}", text(without)));
            ui.label(format!("with the learned prompt: {}", text(with)));
        }
    }
}
