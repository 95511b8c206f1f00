//! Export a learned prompt (the native folder, a Hugging Face PEFT adapter where the method has
//! one, and a transformers + PEFT recipe that repeats the run under accelerate), and import a
//! prompt folder to evaluate it or try it in the playground.

use super::inspect::focus_picker;
use super::job::{keyed_result, retain_key, Job, Keyed};
use super::session::TaskSource;
use super::{Action, DialogTarget, Focus, Session, Tab};
use crate::artifact::Artifact;
use std::path::PathBuf;
use std::sync::Arc;

/// Why a zero-shot run offers no export: it learned nothing.
pub const ZERO_SHOT_EXPORT: &str =
    "Zero-shot learned nothing: there is no prompt to export (it is the task's template as written).";

/// A file operation of this view, run on a background thread.
enum FileOp {
    Native(PathBuf),
    Peft(PathBuf),
    /// The folder, and the base model `train.py` should be launched with.
    Recipe(PathBuf, String),
    Import(PathBuf),
}

/// The export view: its folders, the running export or import, and the test-split score.
#[derive(Default)]
pub struct Export {
    pub out_path: String,
    pub import_path: String,
    /// What the last export or import did, or why it failed.
    pub message: Option<Result<String, String>>,
    /// The running export or import (an import yields the prompt it read).
    file_job: Option<(FileOp, Job<Option<Artifact>>)>,
    /// The last test-split score, with the prompt it was computed for.
    pub eval: Keyed<Focus, f64>,
}

impl Export {
    /// Picks up background results; returns a prompt that was just imported.
    pub fn pump(&mut self) -> Option<(PathBuf, Arc<Artifact>)> {
        if let Some((_, job)) = &mut self.eval {
            job.poll();
        }
        if !self.file_job.as_mut().is_some_and(|j| j.1.poll()) {
            return None;
        }
        let (op, job) = self.file_job.take().expect("a job");
        let mut imported = None;
        self.message = job.into_result().map(|r| {
            r.map(|art| match op {
                FileOp::Native(out) => format!("wrote the prompt to {}", out.display()),
                FileOp::Peft(out) => format!("wrote a PEFT adapter to {}", out.display()),
                FileOp::Recipe(out, base) => format!(
                    "wrote a PEFT recipe to {}: run `accelerate launch train.py --model {base}` inside it",
                    out.display()
                ),
                FileOp::Import(p) => {
                    let msg = format!("imported {}", p.display());
                    imported = art.map(|a| (p, Arc::new(a)));
                    msg
                }
            })
        });
        imported
    }

    /// The finished test-split score, with the prompt it was computed for.
    pub fn eval(&self) -> Option<(&Focus, &Result<f64, String>)> {
        keyed_result(&self.eval)
    }

    /// Forgets the score and pending evaluation of any prompt other than `focus`.
    pub fn retain_focus(&mut self, focus: Option<&Focus>) {
        retain_key(&mut self.eval, focus);
    }

    pub fn busy(&self) -> bool {
        self.eval.as_ref().is_some_and(|j| j.1.is_running()) || self.file_job.is_some()
    }

    fn start_file_job(
        &mut self,
        op: FileOp,
        label: String,
        f: impl FnOnce() -> anyhow::Result<Option<Artifact>> + Send + 'static,
    ) {
        self.message = None;
        self.file_job = Some((op, Job::spawn(label, f)));
    }

    /// "Export PEFT recipe": the run as a transformers + PEFT `train.py` with the task's splits
    /// (`peft::recipe`), for `accelerate launch` on a GPU machine. Needs the loaded model (the
    /// recipe replays the run's initialisation and batch order) and the run's task.
    fn recipe_button(
        &mut self,
        ui: &mut egui::Ui,
        session: &Session,
        a: &Arc<Artifact>,
        out: &std::path::Path,
        has_out: bool,
    ) {
        let problem = crate::peft::recipe::unsupported(a);
        let r = ui.add_enabled(
            has_out && problem.is_none(),
            egui::Button::new("Export PEFT recipe"),
        );
        let r = match &problem {
            Some(why) => r.on_disabled_hover_text(why),
            None => r.on_hover_text(
                "train.py + recipe.json + the task's splits: `accelerate launch train.py --model NAME` on one or many GPUs (docs/handoff.md)",
            ),
        };
        if !r.clicked() {
            return;
        }
        let task = session.task_source(&a.manifest.task);
        match (session.model.ready().cloned(), task) {
            (Some(model), Ok(task)) => {
                let base = crate::peft::default_base_model(&model.spec);
                let (a, o) = (a.clone(), out.to_path_buf());
                self.start_file_job(
                    FileOp::Recipe(o.clone(), base.clone()),
                    format!("writing {}", o.display()),
                    move || {
                        let task = TaskSource::load(task)?;
                        crate::peft::recipe::write(&model, &task, &a, &base, &o).map(|_| None)
                    },
                );
            }
            (None, _) => self.message = Some(Err("load the model first".into())),
            (_, Err(e)) => self.message = Some(Err(e)),
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, session: &mut Session) -> Option<Action> {
        let mut action = None;
        ui.heading("Export");
        focus_picker(ui, session);
        // None: no prompt focused; Some(None): it is being read.
        let art = session.artifact().map(|j| j.result().cloned());
        ui.horizontal(|ui| {
            ui.label("into folder");
            ui.add(
                egui::TextEdit::singleline(&mut self.out_path)
                    .hint_text("a folder to write into")
                    .desired_width(360.0),
            );
            if ui.button("Choose...").clicked() {
                action = Some(Action::OpenDialog(DialogTarget::ExportFolder));
            }
        });
        let out = PathBuf::from(self.out_path.trim());
        let has_out = !self.out_path.trim().is_empty() && self.file_job.is_none();
        match &art {
            None => {
                ui.weak("Choose a finished run, or import a prompt below.");
            }
            Some(None) => {
                ui.spinner();
            }
            Some(Some(Err(e))) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            Some(Some(Ok(a))) if a.manifest.method == crate::methods::MethodKind::ZeroShot => {
                ui.weak(ZERO_SHOT_EXPORT);
            }
            Some(Some(Ok(a))) => {
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
                        self.start_file_job(
                            FileOp::Native(out.clone()),
                            format!("writing {}", out.display()),
                            move || a.save(&o).map(|_| None),
                        );
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
                        self.start_file_job(
                            FileOp::Peft(out.clone()),
                            format!("writing {}", out.display()),
                            move || crate::peft::export(&a, &o).map(|_| None),
                        );
                    }
                    self.recipe_button(ui, session, a, &out, has_out);
                    if self.file_job.is_some() {
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
                egui::TextEdit::singleline(&mut self.import_path)
                    .hint_text("a folder with manifest.json and prompt.safetensors")
                    .desired_width(360.0),
            );
            if ui.button("Choose...").clicked() {
                action = Some(Action::OpenDialog(DialogTarget::ImportFolder));
            }
            let idle = self.file_job.is_none();
            if ui
                .add_enabled(idle, egui::Button::new("Import prompt"))
                .clicked()
            {
                let p = PathBuf::from(self.import_path.trim());
                let d = p.clone();
                self.start_file_job(
                    FileOp::Import(p),
                    format!("reading {}", d.display()),
                    move || Artifact::load(&d).map(Some),
                );
            }
        });
        if let (Some(Some(Ok(a))), Some(focus)) = (&art, session.focus.clone()) {
            ui.horizontal(|ui| {
                let busy = self.eval.as_ref().is_some_and(|j| j.1.is_running());
                if ui
                    .add_enabled(!busy, egui::Button::new("Evaluate on the test split"))
                    .clicked()
                {
                    let label = "evaluating on the test split";
                    let job = match (
                        session.model.ready().cloned(),
                        session.task_source(&a.manifest.task),
                    ) {
                        (Some(model), Ok(task)) => {
                            let a = a.clone();
                            Job::spawn(label, move || {
                                let task = TaskSource::load(task)?;
                                crate::playground::evaluate_artifact(&model, &task, &a)
                            })
                        }
                        (None, _) => Job::finished(label, Err("load the model first".into())),
                        (_, Err(e)) => Job::finished(label, Err(e)),
                    };
                    self.eval = Some((focus.clone(), job));
                }
                if busy {
                    ui.spinner();
                }
                if ui.button("Play with it").clicked() {
                    action = Some(Action::Show(Tab::Inspect));
                }
            });
            match self.eval() {
                Some((_, Ok(m))) => {
                    ui.label(format!(
                        "test {} {m:.4} (at training time: {:.4})",
                        a.manifest.result.metric, a.manifest.result.test_metric
                    ));
                }
                Some((_, Err(e))) => {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                }
                None => {}
            }
        }
        match &self.message {
            Some(Ok(m)) => {
                ui.label(m);
            }
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            None => {}
        }
        action
    }
}
