//! Setup: the model, the task (or, for the learned-prompt methods, several tasks ticked for one
//! run, with how batches mix them and the shared part), the method and its settings (defaults
//! from the papers), with the method's "when to use it" note, and the seeds a run is repeated
//! over ("0,1,2" queues three runs that differ only in seed; the session does the queueing).

use super::{Action, DialogTarget, ModelState, Options, Session};
use crate::methods::task_prompts::{check_multi_task, MULTI_TASK_METHODS};
use crate::methods::{Encoder, Judge, MethodKind, MethodSettings, SoftInit};
use crate::run::{default_lr, Mix, TrainConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The label of AutoPrompt's label-token search checkbox (`--search-labels 1`).
pub const SEARCH_LABELS: &str = "search label tokens";

/// The label of AutoPrompt's judge-by-accuracy checkbox (`--judge accuracy`).
pub const JUDGE_BY_ACCURACY: &str = "judge candidates by accuracy";

/// The label of AutoPrompt's candidate rows (`--candidate-rows`).
pub const CANDIDATE_ROWS: &str = "candidate rows";
/// The label of the seeds field.
pub const SEEDS: &str = "seeds";

/// The checkbox that turns a run into a multi-task run.
pub const SEVERAL_TASKS: &str = "several tasks in one run";

/// The largest shared part the setup offers (the engine allows more; a few vectors is what
/// helps, and a drag past this is more likely a slip).
const MAX_SHARED_IN_SETUP: usize = 64;

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
    /// "several tasks in one run" is ticked (it applies only to [`MULTI_TASK_METHODS`]).
    pub several_tasks: bool,
    /// The task folders ticked for a multi-task run.
    pub ticked: BTreeSet<PathBuf>,
    pub mix: Mix,
    pub shared_tokens: usize,
    /// What each method other than the current one was last set to.
    pub kept: Vec<Kept>,
    /// The template each method was last given, per task (a template names its task's fields).
    pub templates: Vec<KeptTemplate>,
    /// The seeds each run is repeated over, as typed ("0", "0,1,2"); its first seed is
    /// `config.seed`.
    pub seeds: String,
    /// Where models run ("cpu", "cuda:0", "metal"): `--device`'s choice, in the window. Not
    /// kept across restarts: a saved GPU choice would fail on a machine without one.
    pub device: String,
}

/// The label of the device choice.
pub const DEVICE: &str = "device";

/// The devices offered; a GPU this build lacks says so when chosen.
const DEVICES: [&str; 3] = ["cpu", "cuda:0", "metal"];

/// A method's settings as the user left them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Kept {
    pub method: MethodKind,
    pub settings: MethodSettings,
    pub config: TrainConfig,
    pub init_text: String,
}

/// A method's template for one task, as text (possibly half-typed: it is shown as it was left).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptTemplate {
    pub method: MethodKind,
    pub task: PathBuf,
    pub text: String,
}

/// The setup as saved across restarts (in eframe's storage, as JSON). Every field has a default
/// so that a setup saved by an older version still loads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedSetup {
    /// The model that was loaded (or loading); None: the built-in one.
    pub model: Option<String>,
    pub task: Option<PathBuf>,
    pub method: MethodKind,
    pub settings: MethodSettings,
    pub config: TrainConfig,
    pub init_text: String,
    pub several_tasks: bool,
    pub ticked: BTreeSet<PathBuf>,
    pub mix: Mix,
    pub shared_tokens: usize,
    pub kept: Vec<Kept>,
    pub templates: Vec<KeptTemplate>,
    /// Absent from setups saved before seeds could be repeated: then `config.seed` alone.
    pub seeds: Option<String>,
}

impl Default for SavedSetup {
    fn default() -> Self {
        let s = Setup::new(&Options::new(PathBuf::new()));
        s.saved(None, None)
    }
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
            several_tasks: false,
            ticked: BTreeSet::new(),
            mix: Mix::Proportional,
            shared_tokens: 0,
            kept: Vec::new(),
            templates: Vec::new(),
            seeds: TrainConfig::default().seed.to_string(),
            device: device_name(&crate::runtime::device()),
        }
    }

    /// The seeds Train repeats a run over, read from the seeds field.
    pub fn seed_list(&self) -> Result<Vec<u64>, String> {
        crate::stats::parse_seeds(&self.seeds)
    }

    /// The seeds field follows a seed set from elsewhere (a run's settings cloned, another
    /// method's kept configuration): when the list reads and its first seed is not
    /// `config.seed` any more, the field becomes that seed alone.
    fn follow_config_seed(&mut self) {
        if let Ok(list) = self.seed_list() {
            if list.first() != Some(&self.config.seed) {
                self.seeds = self.config.seed.to_string();
            }
        }
    }

    /// Switches to `to`, keeping the current method's settings: `to` gets back what it was
    /// last set to. A method not used yet starts from the current settings and configuration
    /// (steps, batch size, seed carry over), except the learning rate, which is per method.
    pub fn switch_method(&mut self, to: MethodKind) {
        if to == self.method {
            return;
        }
        self.keep_current();
        self.method = to;
        match self.kept.iter().find(|k| k.method == to) {
            Some(k) => {
                self.settings = k.settings.clone();
                self.config = k.config.clone();
                self.init_text = k.init_text.clone();
            }
            None => {
                self.config.lr = None;
                // The label search and the judge are AutoPrompt's alone; another method would be
                // refused.
                if to != MethodKind::Autoprompt {
                    self.settings.search_labels = 0;
                    self.settings.judge = Judge::Loss;
                }
            }
        }
    }

    fn keep_current(&mut self) {
        let now = Kept {
            method: self.method,
            settings: self.settings.clone(),
            config: self.config.clone(),
            init_text: self.init_text.clone(),
        };
        match self.kept.iter_mut().find(|k| k.method == self.method) {
            Some(k) => *k = now,
            None => self.kept.push(now),
        }
    }

    /// Remembers `text` as `method`'s template for the task in `task`.
    pub fn keep_template(&mut self, method: MethodKind, task: &Path, text: &str) {
        match self
            .templates
            .iter_mut()
            .find(|t| t.method == method && t.task == task)
        {
            Some(t) if t.text == text => {}
            Some(t) => t.text = text.to_string(),
            None => self.templates.push(KeptTemplate {
                method,
                task: task.to_path_buf(),
                text: text.to_string(),
            }),
        }
    }

    /// The template `method` was last given for the task in `task`.
    pub fn kept_template(&self, method: MethodKind, task: &Path) -> Option<&str> {
        self.templates
            .iter()
            .find(|t| t.method == method && t.task == task)
            .map(|t| t.text.as_str())
    }

    /// The setup to save: `model` is the model spec in use, `task` the current task folder.
    pub fn saved(&self, model: Option<&str>, task: Option<&Path>) -> SavedSetup {
        SavedSetup {
            model: model.map(str::to_string),
            task: task.map(Path::to_path_buf),
            method: self.method,
            settings: self.settings.clone(),
            config: self.config.clone(),
            init_text: self.init_text.clone(),
            several_tasks: self.several_tasks,
            ticked: self.ticked.clone(),
            mix: self.mix,
            shared_tokens: self.shared_tokens,
            kept: self.kept.clone(),
            templates: self.templates.clone(),
            seeds: Some(self.seeds.clone()),
        }
    }

    /// Takes back a saved setup (the model and the task are the app's to load).
    pub fn restore(&mut self, s: SavedSetup) {
        self.method = s.method;
        self.settings = s.settings;
        self.config = s.config;
        self.init_text = s.init_text;
        self.several_tasks = s.several_tasks;
        self.ticked = s.ticked;
        self.mix = s.mix;
        self.shared_tokens = s.shared_tokens;
        self.kept = s.kept;
        self.templates = s.templates;
        self.seeds = s.seeds.unwrap_or_else(|| self.config.seed.to_string());
        self.follow_config_seed();
    }

    /// Whether Train queues a multi-task run: several tasks ticked on, with a method whose
    /// prompts a batch can mix.
    pub fn multi_task(&self) -> bool {
        self.several_tasks && MULTI_TASK_METHODS.contains(&self.method)
    }

    /// The task folders a multi-task run trains, in the order the setup lists them.
    pub fn ticked_tasks(&self, session: &Session) -> Vec<PathBuf> {
        task_choices(session)
            .into_iter()
            .filter(|d| self.ticked.contains(d))
            .collect()
    }

    /// The device row: choosing one moves the models there (the loaded model is loaded again);
    /// a GPU this build was not compiled for is refused with how to build it.
    fn device_ui(&mut self, ui: &mut egui::Ui, session: &mut Session) {
        let before = self.device.clone();
        egui::ComboBox::from_label(DEVICE)
            .selected_text(&self.device)
            .show_ui(ui, |ui| {
                for d in DEVICES {
                    ui.selectable_value(&mut self.device, d.to_string(), d);
                }
            })
            .response
            .on_hover_text(
                "where the model runs; a GPU needs a build with --features cuda or metal, \
                 and the GPU path is untested (docs/handoff.md)",
            );
        if self.device == before {
            return;
        }
        match crate::runtime::parse_device(&self.device) {
            Ok(d) => {
                crate::runtime::set_device(d);
                if let Some(spec) = session.model_spec().map(str::to_string) {
                    session.load_model(&spec);
                }
            }
            Err(e) => {
                session.notice = Some(format!("{e:#}"));
                self.device = before;
            }
        }
    }

    fn load_model(&mut self, session: &mut Session, spec: &str) {
        self.model_path = spec.trim().to_string();
        session.load_model(spec);
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, session: &mut Session) -> Option<Action> {
        let mut action = None;
        ui.heading("Model");
        // Rows wrap and text fields take at most the width there is: a fixed-width row made
        // the side panel grow, and it never shrank back.
        ui.horizontal_wrapped(|ui| {
            let edit = ui.add(
                egui::TextEdit::singleline(&mut self.model_path)
                    .hint_text("builtin, a folder, a .gguf or a .whl")
                    .desired_width(field_width(ui, 240.0)),
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
            // On the same wrapped row: a row of its own pushed the panel's lower controls
            // further down.
            self.device_ui(ui, session);
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
        ui.horizontal_wrapped(|ui| {
            ui.add(
                egui::TextEdit::singleline(&mut self.task_path)
                    .hint_text("a task folder")
                    .desired_width(field_width(ui, 300.0)),
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
        self.several_tasks_ui(ui, session);

        ui.separator();
        ui.heading("Method");
        ui.horizontal_wrapped(|ui| {
            for m in MethodKind::ALL {
                if ui.selectable_label(self.method == m, m.id()).clicked() && m != self.method {
                    // The app switches: the template is the editor's, not the setup's.
                    action = Some(Action::SwitchMethod(m));
                }
            }
        });
        ui.label(egui::RichText::new(self.method.when_to_use()).italics());
        self.follow_config_seed();
        self.settings_ui(ui);
        self.seeds_ui(ui, session);
        action
    }

    /// The seeds field: one run per seed; its list goes to the session, which queues.
    fn seeds_ui(&mut self, ui: &mut egui::Ui, session: &mut Session) {
        if self.method == MethodKind::ZeroShot {
            // Nothing is drawn at random: one run, whatever the seeds.
            session.seeds = Ok(Vec::new());
            return;
        }
        ui.horizontal_wrapped(|ui| {
            let l = ui.label(SEEDS);
            ui.add(
                egui::TextEdit::singleline(&mut self.seeds)
                    .hint_text("0, or 0,1,2")
                    .desired_width(field_width(ui, 160.0)),
            )
            .labelled_by(l.id)
            .on_hover_text(
                "one run per seed, in order (0,1,2 queues three runs that differ only in \
                 seed); Compare shows their mean ± standard deviation",
            );
        });
        let list = self.seed_list();
        match &list {
            Ok(seeds) => {
                self.config.seed = seeds[0];
                if seeds.len() > 1 {
                    ui.weak(format!("Train queues {} runs, one per seed", seeds.len()));
                }
            }
            Err(e) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
        }
        session.seeds = list;
    }

    /// The multi-task part of the setup: the switch (disabled, with the reason, for methods
    /// whose prompts cannot share a batch), the tasks to tick, the mix and the shared part.
    fn several_tasks_ui(&mut self, ui: &mut egui::Ui, session: &Session) {
        let refusal = check_multi_task(self.method)
            .err()
            .map(|e| format!("{e:#}"));
        let mut on = self.multi_task();
        let changed = ui
            .add_enabled(
                refusal.is_none(),
                egui::Checkbox::new(&mut on, SEVERAL_TASKS),
            )
            .on_hover_text(
                "one prompt per task over one frozen model, trained in batches that mix the tasks",
            )
            .on_disabled_hover_text(refusal.clone().unwrap_or_default())
            .changed();
        if changed {
            self.several_tasks = on;
            if on && self.ticked.is_empty() {
                // The current task is the natural first tick.
                self.ticked
                    .extend(session.task.as_ref().map(|t| t.dir.clone()));
            }
        }
        if let Some(why) = refusal {
            if self.several_tasks {
                ui.weak(format!("{why}: this run trains the current task alone."));
            }
            return;
        }
        if !self.several_tasks {
            return;
        }
        ui.horizontal_wrapped(|ui| {
            ui.label("tasks:");
            for dir in task_choices(session) {
                let mut t = self.ticked.contains(&dir);
                if ui.checkbox(&mut t, task_folder_name(&dir)).changed() {
                    if t {
                        self.ticked.insert(dir);
                    } else {
                        self.ticked.remove(&dir);
                    }
                }
            }
        });
        let n = self.ticked_tasks(session).len();
        if n < 2 {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                "tick at least two tasks to train them in one run",
            );
        }
        egui::Grid::new("multi-task").num_columns(2).show(ui, |ui| {
            ui.label("mix");
            ui.horizontal(|ui| {
                ui.selectable_value(&mut self.mix, Mix::Proportional, "proportional")
                    .on_hover_text("each task in proportion to its train split");
                ui.selectable_value(&mut self.mix, Mix::Uniform, "uniform")
                    .on_hover_text("each row's task drawn uniformly, whatever the split sizes");
            });
            ui.end_row();
            let l = ui.label("shared tokens");
            ui.add(egui::DragValue::new(&mut self.shared_tokens).range(0..=MAX_SHARED_IN_SETUP))
                .labelled_by(l.id)
                .on_hover_text(
                    "vectors (or prefix positions) every task uses in front of its own, trained \
                     jointly; 0: none",
                );
            ui.end_row();
        });
        ui.weak(
            "Each task keeps its own template with the method's slots; the template below is \
             for single-task runs.",
        );
    }

    fn settings_ui(&mut self, ui: &mut egui::Ui) {
        let method = self.method;
        let init_text = &mut self.init_text;
        let s = &mut self.settings;
        let c = &mut self.config;
        if method == MethodKind::PromptTuning {
            // Outside the grid: a grid row cannot grow when its cell wraps, and four choices
            // wrap in a narrow panel.
            ui.horizontal_wrapped(|ui| {
                ui.label("init");
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
            if let SoftInit::Text(t) = &mut s.init {
                ui.horizontal_wrapped(|ui| {
                    let l = ui.label("init text");
                    if ui
                        .add(
                            egui::TextEdit::singleline(&mut *init_text)
                                .desired_width(field_width(ui, 240.0)),
                        )
                        .labelled_by(l.id)
                        .changed()
                    {
                        *t = init_text.clone();
                    }
                });
            }
        }
        egui::Grid::new("settings").num_columns(2).show(ui, |ui| {
            match method {
                MethodKind::PromptTuning => {}
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
                    let l = ui.label(CANDIDATE_ROWS);
                    ui.add(egui::DragValue::new(&mut s.candidate_rows).range(1..=4096))
                        .labelled_by(l.id)
                        .on_hover_text(
                            "training rows each step's candidates are judged on, drawn apart \
                             from the batch whose gradient proposed them; fewer is faster and \
                             noisier (--candidate-rows)",
                        );
                    ui.end_row();
                    ui.label("label tokens");
                    let mut search = s.search_labels > 0;
                    if ui
                        .checkbox(&mut search, SEARCH_LABELS)
                        .on_hover_text("the AutoPrompt paper's label-token search (section 2.2): a classification task's classes are scored by the token the search finds for each (one per class) instead of the verbalizer's words")
                        .changed()
                    {
                        s.search_labels = usize::from(search);
                    }
                    ui.end_row();
                    ui.label("judge");
                    let mut by_accuracy = s.judge == Judge::Accuracy;
                    if ui
                        .checkbox(&mut by_accuracy, JUDGE_BY_ACCURACY)
                        .on_hover_text("classification: a swap only when a candidate gets more candidate rows right, ranking the label answers as evaluation does (the AutoPrompt authors' code); unticked, a swap when it lowers the gold answers' loss (--judge)")
                        .changed()
                    {
                        s.judge = if by_accuracy { Judge::Accuracy } else { Judge::Loss };
                    }
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
            }
        });
    }
}

/// The task folders that can be ticked: the sample tasks, and the current task when it is not
/// one of them.
pub fn task_choices(session: &Session) -> Vec<PathBuf> {
    let mut out = session.sample_tasks.clone();
    if let Some(t) = &session.task {
        if !out.contains(&t.dir) {
            out.push(t.dir.clone());
        }
    }
    out
}

/// A text field's width: `want`, or less in a narrow panel.
fn field_width(ui: &egui::Ui, want: f32) -> f32 {
    want.min(ui.available_width() - 8.0).max(60.0)
}

fn task_folder_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

/// How `--device` names `d`.
fn device_name(d: &candle_core::Device) -> String {
    match d.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { .. } => "metal".into(),
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

    #[test]
    fn a_saved_setup_with_fields_missing_loads_with_the_defaults_for_them() {
        // As one saved by an older version would be.
        let s: SavedSetup = serde_json::from_str(
            r#"{"method": "p-tuning", "config": {"steps": 40, "lr": null,
                "batch_size": 4, "grad_accum": 1, "eval_every": 10, "patience": 0,
                "warmup": 0.1, "seed": 3}}"#,
        )
        .unwrap();
        assert_eq!(s.method, MethodKind::PTuning);
        assert_eq!(s.config.steps, 40);
        assert_eq!(
            s.settings.encoder_hidden,
            MethodSettings::default().encoder_hidden
        );
        assert!(s.templates.is_empty() && s.model.is_none());
    }

    #[test]
    fn the_seeds_are_saved_and_follow_a_seed_set_from_elsewhere() {
        let mut s = Setup::new(&Options::new(PathBuf::from("runs")));
        assert_eq!(s.seed_list(), Ok(vec![TrainConfig::default().seed]));
        s.seeds = "4,5,6".into();
        s.config.seed = 4;
        let saved = s.saved(None, None);
        let mut back = Setup::new(&Options::new(PathBuf::from("runs")));
        back.restore(saved);
        assert_eq!(back.seeds, "4,5,6");
        // A run's settings cloned (or another method's kept): the field becomes its seed.
        back.config.seed = 9;
        back.follow_config_seed();
        assert_eq!(back.seeds, "9");
        // A list being typed that does not read yet is left alone.
        back.seeds = "9,".into();
        back.follow_config_seed();
        assert_eq!(back.seeds, "9,");
        // A setup saved before seeds existed: its one seed.
        let old: SavedSetup = serde_json::from_str(
            r#"{"method": "p-tuning", "config": {"steps": 40, "lr": null,
                "batch_size": 4, "grad_accum": 1, "eval_every": 10, "patience": 0,
                "warmup": 0.1, "seed": 3}}"#,
        )
        .unwrap();
        back.restore(old);
        assert_eq!(back.seeds, "3");
    }

    #[test]
    fn switching_methods_keeps_each_methods_settings() {
        let mut s = Setup::new(&Options::new(PathBuf::from("runs")));
        s.config.steps = 300;
        s.config.lr = Some(0.1);
        s.switch_method(MethodKind::Autoprompt);
        // First use: the steps carry over, the learning rate is the method's own.
        assert_eq!((s.config.steps, s.config.lr), (300, None));
        s.settings.top_k = 32;
        s.config.steps = 20;
        s.switch_method(MethodKind::PromptTuning);
        assert_eq!((s.config.steps, s.config.lr), (300, Some(0.1)));
        s.switch_method(MethodKind::Autoprompt);
        assert_eq!((s.config.steps, s.settings.top_k), (20, 32));
    }
}
