//! Setup: the model, the task, the method and its settings (defaults from the papers), with the
//! method's "when to use it" note.

use super::{App, DialogTarget, ModelState, Options};
use crate::methods::{Encoder, MethodKind, MethodSettings, SoftInit};
use crate::run::{default_lr, TrainConfig};
use std::path::PathBuf;

pub struct Setup {
    /// The typed model path (a dialog may be unavailable, so typing always works).
    pub model_path: String,
    pub task_dirs: Vec<PathBuf>,
    pub task_path: String,
    pub task_error: Option<String>,
    pub method: MethodKind,
    pub settings: MethodSettings,
    pub config: TrainConfig,
    /// Text for `SoftInit::Text`, kept while another init is chosen.
    pub init_text: String,
}

impl Setup {
    pub fn new(opts: &Options) -> Setup {
        let mut task_dirs: Vec<PathBuf> = std::fs::read_dir(&opts.sample_tasks)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.join("task.json").is_file())
                    .collect()
            })
            .unwrap_or_default();
        task_dirs.sort();
        Setup {
            model_path: opts.model.clone(),
            task_dirs,
            task_path: String::new(),
            task_error: None,
            method: MethodKind::PromptTuning,
            settings: MethodSettings::default(),
            config: TrainConfig::default(),
            init_text: String::new(),
        }
    }

    /// country-continent if it is there (zero-shot is weak on it, so learning shows), else the
    /// first sample task.
    pub fn default_task(&self) -> Option<PathBuf> {
        self.task_dirs
            .iter()
            .find(|p| p.ends_with("country-continent"))
            .or(self.task_dirs.first())
            .cloned()
    }
}

pub fn ui(app: &mut App, ui: &mut egui::Ui) {
    ui.heading("Model");
    ui.horizontal(|ui| {
        let edit = ui.add(
            egui::TextEdit::singleline(&mut app.setup.model_path)
                .hint_text("builtin, a folder, a .gguf or a .whl")
                .desired_width(240.0),
        );
        let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        if ui.button("Load").clicked() || enter {
            let spec = app.setup.model_path.clone();
            app.load_model(&spec);
        }
        if ui.button("File...").clicked() {
            app.open_dialog(DialogTarget::ModelFile);
        }
        if ui.button("Folder...").clicked() {
            app.open_dialog(DialogTarget::ModelFolder);
        }
        if ui.button("Built-in").clicked() {
            app.load_model("builtin");
        }
    });
    match &app.model {
        ModelState::Empty => {
            ui.weak("no model loaded");
        }
        ModelState::Loading { spec, .. } => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("loading {spec}..."));
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
    let current = app.task.as_ref().map(|t| t.dir.clone());
    let mut chosen = None;
    egui::ComboBox::from_label("sample task")
        .selected_text(
            app.task
                .as_ref()
                .map(|t| t.spec.name.clone())
                .unwrap_or_else(|| "(none)".into()),
        )
        .show_ui(ui, |ui| {
            for dir in &app.setup.task_dirs {
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
            egui::TextEdit::singleline(&mut app.setup.task_path)
                .hint_text("a task folder")
                .desired_width(300.0),
        );
        if ui.button("Open").clicked() {
            chosen = Some(PathBuf::from(app.setup.task_path.trim()));
        }
        if ui.button("Folder...").clicked() {
            app.open_dialog(DialogTarget::TaskFolder);
        }
    });
    if let Some(dir) = chosen {
        app.select_task(&dir);
    }
    if let Some((dir, _)) = &app.task_job {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(format!("reading {}...", dir.display()));
        });
    }
    if let Some(e) = &app.setup.task_error {
        ui.colored_label(ui.visuals().error_fg_color, e);
    }
    if let Some(t) = &app.task {
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
    let before = app.setup.method;
    ui.horizontal_wrapped(|ui| {
        for m in MethodKind::ALL {
            ui.selectable_value(&mut app.setup.method, m, m.id());
        }
    });
    if app.setup.method != before {
        app.reset_template();
    }
    ui.label(egui::RichText::new(app.setup.method.when_to_use()).italics());
    settings_ui(app, ui);
}

fn settings_ui(app: &mut App, ui: &mut egui::Ui) {
    let method = app.setup.method;
    let s = &mut app.setup.settings;
    let c = &mut app.setup.config;
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
                        s.init = SoftInit::Text(app.setup.init_text.clone());
                    }
                });
                ui.end_row();
                if let SoftInit::Text(t) = &mut s.init {
                    let l = ui.label("init text");
                    if ui
                        .text_edit_singleline(&mut app.setup.init_text)
                        .labelled_by(l.id)
                        .changed()
                    {
                        *t = app.setup.init_text.clone();
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
