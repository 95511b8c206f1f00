//! Export a learned prompt (the native folder, and a Hugging Face PEFT adapter where the method
//! has one), and import a prompt folder to evaluate it or try it in the playground.

use super::inspect::focus_picker;
use super::{App, DialogTarget, Focus, Job, Tab};
use crate::artifact::Artifact;
use std::path::PathBuf;
use std::sync::Arc;

/// A file operation of this view, run on a background thread.
enum FileOp {
    Native(PathBuf),
    Peft(PathBuf),
    Import(PathBuf),
}

#[derive(Default)]
pub struct ExportState {
    pub out_path: String,
    pub import_path: String,
    /// What the last export or import did, or why it failed.
    pub message: Option<Result<String, String>>,
    /// The running export or import (an import yields the prompt it read).
    file_job: Option<(FileOp, Job<Option<Artifact>>)>,
    eval_job: Option<(Focus, Job<f64>)>,
    /// The last test-split score, with the prompt it was computed for.
    pub eval: Option<(Focus, Result<f64, String>)>,
}

impl ExportState {
    /// Picks up background results; returns a prompt that was just imported.
    pub fn pump(&mut self) -> Option<(PathBuf, Arc<Artifact>)> {
        let mut imported = None;
        if let Some(r) = self.file_job.as_ref().and_then(|j| j.1.poll()) {
            let (op, _) = self.file_job.take().expect("a job");
            self.message = Some(r.map(|art| match op {
                FileOp::Native(out) => format!("wrote the prompt to {}", out.display()),
                FileOp::Peft(out) => format!("wrote a PEFT adapter to {}", out.display()),
                FileOp::Import(p) => {
                    let msg = format!("imported {}", p.display());
                    imported = art.map(|a| (p, Arc::new(a)));
                    msg
                }
            }));
        }
        if let Some((f, job)) = &self.eval_job {
            if let Some(r) = job.poll() {
                self.eval = Some((f.clone(), r));
                self.eval_job = None;
            }
        }
        imported
    }

    /// Forgets the score and pending evaluation of any prompt other than `focus`.
    pub fn retain_focus(&mut self, focus: Option<&Focus>) {
        if self.eval.as_ref().is_some_and(|e| Some(&e.0) != focus) {
            self.eval = None;
        }
        if self.eval_job.as_ref().is_some_and(|j| Some(&j.0) != focus) {
            self.eval_job = None;
        }
    }

    pub fn busy(&self) -> bool {
        self.eval_job.is_some() || self.file_job.is_some()
    }
}

pub fn ui(app: &mut App, ui: &mut egui::Ui) {
    ui.heading("Export");
    focus_picker(app, ui);
    let art = app.focused_artifact();
    ui.horizontal(|ui| {
        ui.label("into folder");
        ui.add(
            egui::TextEdit::singleline(&mut app.export.out_path)
                .hint_text("a folder to write into")
                .desired_width(360.0),
        );
        if ui.button("Choose...").clicked() {
            app.open_dialog(DialogTarget::ExportFolder);
        }
    });
    let out = PathBuf::from(app.export.out_path.trim());
    let has_out = !app.export.out_path.trim().is_empty() && app.export.file_job.is_none();
    match &art {
        None => {
            ui.weak("Choose a finished run, or import a prompt below.");
        }
        Some(Err(e)) => {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        Some(Ok(a)) => {
            let peft_problem = crate::peft::unsupported(a);
            ui.horizontal(|ui| {
                if ui
                    .add_enabled(has_out, egui::Button::new("Export native"))
                    .on_hover_text(
                        "manifest.json + prompt.safetensors: reload with `gradprompt eval`",
                    )
                    .clicked()
                {
                    let (a, o) = (a.clone(), out.clone());
                    app.export.message = None;
                    app.export.file_job = Some((
                        FileOp::Native(out.clone()),
                        Job::spawn(move || a.save(&o).map(|_| None)),
                    ));
                }
                let r = ui.add_enabled(
                    has_out && peft_problem.is_none(),
                    egui::Button::new("Export PEFT adapter"),
                );
                let r = match &peft_problem {
                    Some(why) => r.on_disabled_hover_text(why),
                    None => r.on_hover_text("adapter_config.json + adapter_model.safetensors"),
                };
                if r.clicked() {
                    let (a, o) = (a.clone(), out.clone());
                    app.export.message = None;
                    app.export.file_job = Some((
                        FileOp::Peft(out.clone()),
                        Job::spawn(move || crate::peft::export(&a, &o).map(|_| None)),
                    ));
                }
                if app.export.file_job.is_some() {
                    ui.spinner();
                }
            });
            if let Some(why) = peft_problem {
                ui.weak(format!("No PEFT adapter: {why}"));
            }
        }
    }

    ui.separator();
    ui.heading("Import");
    ui.horizontal(|ui| {
        ui.label("prompt folder");
        ui.add(
            egui::TextEdit::singleline(&mut app.export.import_path)
                .hint_text("a folder with manifest.json and prompt.safetensors")
                .desired_width(360.0),
        );
        if ui.button("Choose...").clicked() {
            app.open_dialog(DialogTarget::ImportFolder);
        }
        let idle = app.export.file_job.is_none();
        if ui
            .add_enabled(idle, egui::Button::new("Import prompt"))
            .clicked()
        {
            let p = PathBuf::from(app.export.import_path.trim());
            let d = p.clone();
            app.export.message = None;
            app.export.file_job = Some((
                FileOp::Import(p),
                Job::spawn(move || Artifact::load(&d).map(Some)),
            ));
        }
    });
    if let (Some(Ok(a)), Some(focus)) = (&art, app.focus.clone()) {
        ui.horizontal(|ui| {
            let busy = app.export.eval_job.as_ref().map(|j| &j.0) == Some(&focus);
            if ui
                .add_enabled(!busy, egui::Button::new("Evaluate on the test split"))
                .clicked()
            {
                app.export.eval = None;
                match (app.model.ready().cloned(), app.task_named(&a.manifest.task)) {
                    (Some(model), Ok(task)) => {
                        let a = a.clone();
                        app.export.eval_job = Some((
                            focus.clone(),
                            Job::spawn(move || {
                                crate::playground::evaluate_artifact(&model, &task, &a)
                            }),
                        ));
                    }
                    (None, _) => {
                        app.export.eval = Some((focus.clone(), Err("load the model first".into())))
                    }
                    (_, Err(e)) => app.export.eval = Some((focus.clone(), Err(e))),
                }
            }
            if busy {
                ui.spinner();
            }
            if ui.button("Play with it").clicked() {
                app.tab = Tab::Inspect;
            }
        });
        match &app.export.eval {
            Some((f, Ok(m))) if *f == focus => {
                ui.label(format!(
                    "test {} {m:.4} (at training time: {:.4})",
                    a.manifest.result.metric, a.manifest.result.test_metric
                ));
            }
            Some((f, Err(e))) if *f == focus => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            _ => {}
        }
    }
    match &app.export.message {
        Some(Ok(m)) => {
            ui.label(m);
        }
        Some(Err(e)) => {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        None => {}
    }
}
