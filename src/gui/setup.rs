//! Setup: the model, the task, the method and its settings (defaults from the papers), with the
//! method's "when to use it" note.

use super::{Action, DialogTarget, ModelState, Options, Session};
use crate::methods::{Encoder, MethodKind, MethodSettings, SoftInit};
use crate::run::{default_lr, TrainConfig};
use std::path::PathBuf;

/// The setup view. Its method, settings and training configuration start from the engine's
/// own defaults (`MethodSettings::default()`, `TrainConfig::default()`, `default_lr`), so the
/// command line and the workbench cannot disagree.
pub struct Setup {
    /// The typed model path (a dialog may be unavailable, so typing always works).
    pub model_path: String,
    pub task_path: String,
    pub method: MethodKind,
    pub settings: MethodSettings,
    pub config: TrainConfig,
    /// Text for `SoftInit::Text`, kept while another init is chosen.
    pub init_text: String,
}

impl Setup {
    pub fn new(opts: &Options) -> Setup {
        Setup {
            model_path: opts.model.clone(),
            task_path: String::new(),
            method: MethodKind::PromptTuning,
            settings: MethodSettings::default(),
            config: TrainConfig::default(),
            init_text: String::new(),
        }
    }

    fn load_model(&mut self, session: &mut Session, spec: &str) {
        self.model_path = spec.trim().to_string();
        session.load_model(spec);
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, session: &mut Session) -> Option<Action> {
        let mut action = None;
        ui.heading("Model");
        ui.horizontal(|ui| {
            let edit = ui.add(
                egui::TextEdit::singleline(&mut self.model_path)
                    .hint_text("builtin, a folder, a .gguf or a .whl")
                    .desired_width(240.0),
            );
            let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if ui.button("Load").clicked() || enter {
                let spec = self.model_path.clone();
                self.load_model(session, &spec);
            }
            if ui.button("File...").clicked() {
                action = Some(Action::OpenDialog(DialogTarget::ModelFile));
            }
            if ui.button("Folder...").clicked() {
                action = Some(Action::OpenDialog(DialogTarget::ModelFolder));
            }
            if ui.button("Built-in").clicked() {
                self.load_model(session, crate::model::BUILTIN);
            }
        });
        match &session.model {
            ModelState::Empty => {
                ui.weak("no model loaded");
            }
            ModelState::Loading { job, .. } => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(job.label());
                });
            }
            ModelState::Ready(m) => {
                let c = m.config();
                ui.label(format!(
                    "{}: {} layers, hidden {}, vocabulary {}, {:.1} M parameters",
                    m.spec,
                    c.num_hidden_layers,
                    c.hidden_size,
                    c.vocab_size,
                    c.parameter_count() as f64 / 1e6
                ));
            }
            ModelState::Failed { spec, error } => {
                ui.colored_label(
                    ui.visuals().error_fg_color,
                    format!("cannot load {spec}: {error}"),
                );
                ui.weak("Type another path above, or choose a file or folder.");
            }
        }

        ui.separator();
        ui.heading("Task");
        let current = session.task.as_ref().map(|t| t.dir.clone());
        let mut chosen = None;
        egui::ComboBox::from_label("sample task")
            .selected_text(
                session
                    .task
                    .as_ref()
                    .map(|t| t.spec.name.clone())
                    .unwrap_or_else(|| "(none)".into()),
            )
            .show_ui(ui, |ui| {
                for dir in &session.sample_tasks {
                    let name = dir
                        .file_name()
                        .map(|n| n.to_string_lossy().to_string())
                        .unwrap_or_default();
                    if ui
                        .selectable_label(current.as_ref() == Some(dir), name)
                        .clicked()
                    {
                        chosen = Some(dir.clone());
                    }
                }
            });
        ui.horizontal(|ui| {
            ui.add(
                egui::TextEdit::singleline(&mut self.task_path)
                    .hint_text("a task folder")
                    .desired_width(300.0),
            );
            if ui.button("Open").clicked() {
                chosen = Some(PathBuf::from(self.task_path.trim()));
            }
            if ui.button("Folder...").clicked() {
                action = Some(Action::OpenDialog(DialogTarget::TaskFolder));
            }
        });
        if let Some(dir) = chosen {
            self.task_path = dir.display().to_string();
            session.select_task(&dir);
        }
        if let Some(job) = &session.task_job {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(job.label());
            });
        }
        if let Some(e) = &session.task_error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        if let Some(t) = &session.task {
            ui.label(format!(
                "{} ({:?}): {} train / {} dev / {} test",
                t.spec.description,
                t.spec.kind,
                t.train.len(),
                t.dev.len(),
                t.test.len()
            ));
        }

        ui.separator();
        ui.heading("Method");
        let before = self.method;
        ui.horizontal_wrapped(|ui| {
            for m in MethodKind::ALL {
                ui.selectable_value(&mut self.method, m, m.id());
            }
        });
        if self.method != before {
            action = Some(Action::ResetTemplate);
        }
        ui.label(egui::RichText::new(self.method.when_to_use()).italics());
        self.settings_ui(ui);
        action
    }

    fn settings_ui(&mut self, ui: &mut egui::Ui) {
        let method = self.method;
        let init_text = &mut self.init_text;
        let s = &mut self.settings;
        let c = &mut self.config;
        egui::Grid::new("settings").num_columns(2).show(ui, |ui| {
            match method {
                MethodKind::PromptTuning => {
                    ui.label("init");
                    ui.horizontal(|ui| {
                        let is_text = matches!(s.init, SoftInit::Text(_));
                        for (v, name) in [
                            (SoftInit::Random, "random"),
                            (SoftInit::Vocab, "vocabulary"),
                            (SoftInit::Labels, "class labels"),
                        ] {
                            if ui.selectable_label(s.init == v, name).clicked() {
                                s.init = v;
                            }
                        }
                        if ui.selectable_label(is_text, "text").clicked() {
                            s.init = SoftInit::Text(init_text.clone());
                        }
                    });
                    ui.end_row();
                    if let SoftInit::Text(t) = &mut s.init {
                        let l = ui.label("init text");
                        if ui
                            .text_edit_singleline(&mut *init_text)
                            .labelled_by(l.id)
                            .changed()
                        {
                            *t = init_text.clone();
                        }
                        ui.end_row();
                    }
                }
                MethodKind::PrefixTuning => {
                    let l = ui.label("MLP hidden width");
                    ui.add(egui::DragValue::new(&mut s.prefix_hidden).range(8..=4096))
                        .labelled_by(l.id);
                    ui.end_row();
                }
                MethodKind::PTuning => {
                    ui.label("prompt encoder");
                    ui.horizontal(|ui| {
                        ui.selectable_value(&mut s.encoder, Encoder::Lstm, "BiLSTM + MLP");
                        ui.selectable_value(&mut s.encoder, Encoder::Mlp, "MLP");
                    });
                    ui.end_row();
                    let l = ui.label("encoder hidden width");
                    ui.add(egui::DragValue::new(&mut s.encoder_hidden).range(8..=4096))
                        .labelled_by(l.id);
                    ui.end_row();
                }
                MethodKind::Autoprompt => {
                    let l = ui.label("candidates per step (top-k)");
                    ui.add(egui::DragValue::new(&mut s.top_k).range(1..=256))
                        .labelled_by(l.id);
                    ui.end_row();
                }
                MethodKind::FineTuning | MethodKind::ZeroShot => {}
            }
            if method != MethodKind::ZeroShot {
                let l = ui.label("steps");
                ui.add(egui::DragValue::new(&mut c.steps).range(1..=100_000))
                    .labelled_by(l.id);
                ui.end_row();
                if method != MethodKind::Autoprompt {
                    let l = ui.label("learning rate");
                    ui.horizontal(|ui| {
                        let mut own = c.lr.is_some();
                        if ui
                            .checkbox(&mut own, format!("custom (default {})", default_lr(method)))
                            .changed()
                        {
                            c.lr = own.then(|| default_lr(method));
                        }
                        if let Some(lr) = &mut c.lr {
                            ui.add(
                                egui::DragValue::new(lr)
                                    .speed(1e-4)
                                    .range(1e-7..=10.0)
                                    .max_decimals(6),
                            )
                            .labelled_by(l.id);
                        }
                    });
                    ui.end_row();
                }
                let l = ui.label("batch size");
                ui.add(egui::DragValue::new(&mut c.batch_size).range(1..=1024))
                    .labelled_by(l.id);
                ui.end_row();
                let l = ui.label("gradient accumulation");
                ui.add(egui::DragValue::new(&mut c.grad_accum).range(1..=64))
                    .labelled_by(l.id);
                ui.end_row();
                let l = ui.label("evaluate every");
                ui.add(egui::DragValue::new(&mut c.eval_every).range(1..=100_000))
                    .labelled_by(l.id);
                ui.end_row();
                let l = ui.label("patience (0: never stop early)");
                ui.add(egui::DragValue::new(&mut c.patience).range(0..=1000))
                    .labelled_by(l.id);
                ui.end_row();
                let l = ui.label("warm-up fraction");
                ui.add(
                    egui::DragValue::new(&mut c.warmup)
                        .speed(0.01)
                        .range(0.0..=1.0),
                )
                .labelled_by(l.id);
                ui.end_row();
                let l = ui.label("seed");
                ui.add(egui::DragValue::new(&mut c.seed)).labelled_by(l.id);
                ui.end_row();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setup_starts_from_the_engines_defaults() {
        let s = Setup::new(&Options::new(PathBuf::from("runs")));
        // Compared as text: the engine's settings types do not implement PartialEq.
        assert_eq!(
            format!("{:?}", s.config),
            format!("{:?}", TrainConfig::default())
        );
        assert_eq!(
            format!("{:?}", s.settings),
            format!("{:?}", MethodSettings::default())
        );
    }
}
