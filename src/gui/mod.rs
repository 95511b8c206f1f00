//! The desktop workbench (egui/eframe). It talks to the engine only through the training
//! worker's channels and the run store, both held by the [`session::Session`], the state every
//! view shares (store, model, task, queue, active run, focused prompt). Each view is a struct that
//! owns its own UI state and draws with `ui(&mut self, ui, session, ...)`; what a view cannot do
//! on its own (start a run from the setup and the template, switch tabs, open a file dialog,
//! delete a run that other views show) it returns as an [`Action`] that the [`App`] applies.
//!
//! Nothing reads or writes files inside a frame; there are no exceptions. Slow work runs on
//! background threads as a [`job::Job`] picked up by a later frame: model loading, reading a
//! task folder (chosen in the setup, needed by a queued run or by a prompt trained on another
//! task), reading the focused prompt, inspection, scoring, exporting and importing. Run
//! records (`run.json`) are written and deleted by the session's
//! [`record_writer::RecordWriter`] thread, in order; on exit the active run is saved as
//! interrupted and the app waits for every pending write. Native file dialogs run on threads
//! of their own too. The start task and the list of sample tasks are read before the first
//! frame, in [`App::new`].
//!
//! Closing the window (its close button, or Ctrl+Q) while a run is training asks first
//! ([`Closing`]): "Stop and quit" stops the run, waits until its best checkpoint is evaluated
//! and saved, then closes; "Keep training" carries on. When another workbench owns the runs
//! folder the app runs read-only under a banner saying so (see [`crate::runs::ReadOnly`]).
//!
//! A run that was interrupted (the window closed or the app crashed mid-run, or Stop) keeps the
//! engine's checkpoint in its output folder; the runs view offers Resume on it
//! ([`App::resume_run`]), which loads the run's model if another one is loaded, and queues the
//! run to continue under its id, its curve kept up to the checkpoint's step.
//!
//! A run may train several tasks' prompts at once (the setup's "several tasks in one run", for
//! the methods in [`crate::methods::task_prompts::MULTI_TASK_METHODS`]): the session queues it
//! like any run, the plots draw each task's dev line, and the comparison puts each task's row
//! next to the single-task runs and shows what N tasks cost to store.
//!
//! The window's layout: the setup and the template on the left in a panel that scrolls, can be
//! narrowed down to 200 points and collapsed (it never takes more than 45% of the window, so the
//! plots keep more than half); on the right the training controls, the tabs and the current
//! view. The controls keep the progress bar's room when no run is active and notices are shown
//! in a bar at the bottom, so the tab row never moves under the pointer.
//!
//! The setup (model, task, method, each method's settings and templates) and the layout (the
//! side panel, the tab) are saved across restarts in eframe's storage ([`App::save_to`],
//! [`App::with_saved`], as JSON under [`STORAGE_KEY`]); the window's size is eframe's own.
//!
//! One file per view: [`setup`] (model, task, method, settings), [`template_editor`] (the chip
//! row), [`training`] (controls and progress), [`plots`], [`runs_view`] (with a run's test
//! [`predictions`]), [`compare`], [`inspect`] (nearest tokens, triggers, playground) and
//! [`export`] (native / PEFT, import).

pub mod colors;
pub mod compare;
pub mod export;
pub mod inspect;
pub mod job;
pub mod plots;
pub mod png;
pub mod predictions;
pub mod record_writer;
pub mod runs_table;
pub mod runs_view;
pub mod session;
pub mod setup;
pub mod template_editor;
pub mod training;

pub use job::Job;
pub use session::{Active, Focus, ModelState, Session};

use crate::methods::{MethodKind, MethodSettings};
use crate::run::{Command, MultiTaskSpec, RunSpec};
use crate::runs::RunRecord;
use crossbeam_channel::Receiver;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How the app starts.
#[derive(Debug, Clone)]
pub struct Options {
    /// Model spec to load at start (`builtin`, a folder, a .gguf or a .whl).
    pub model: String,
    /// `model` was named on the command line: it wins over the model of the saved setup.
    pub model_named: bool,
    /// Task folder to select at start (default: a sample task).
    pub task: Option<PathBuf>,
    /// Where runs are stored.
    pub runs_dir: PathBuf,
    /// Folder whose subfolders are offered as tasks.
    pub sample_tasks: PathBuf,
    /// Queue one run with the default setup as soon as the model is loaded (for demos and
    /// screenshots).
    pub autostart: bool,
}

impl Options {
    pub fn new(runs_dir: PathBuf) -> Options {
        Options {
            model: crate::model::BUILTIN.into(),
            model_named: false,
            task: None,
            runs_dir,
            sample_tasks: Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_tasks"),
            autostart: false,
        }
    }
}

/// What a native file dialog was opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogTarget {
    ModelFile,
    ModelFolder,
    TaskFolder,
    ExportFolder,
    ImportFolder,
}

/// Opens a native dialog on its own thread (a dialog may be modal, or missing altogether);
/// the answer arrives over a channel.
fn spawn_dialog(target: DialogTarget) -> Receiver<Option<PathBuf>> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let d = rfd::FileDialog::new();
        let picked = match target {
            DialogTarget::ModelFile => d
                .add_filter("model", &["gguf", "whl", "zip"])
                .set_title("Choose a model file")
                .pick_file(),
            DialogTarget::ModelFolder => d.set_title("Choose a model folder").pick_folder(),
            DialogTarget::TaskFolder => d.set_title("Choose a task folder").pick_folder(),
            DialogTarget::ExportFolder => d.set_title("Export the prompt into").pick_folder(),
            DialogTarget::ImportFolder => d.set_title("Import a prompt folder").pick_folder(),
        };
        let _ = tx.send(picked);
    });
    rx
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tab {
    Plots,
    Runs,
    Compare,
    Inspect,
    Export,
}

/// What a view asks of the app: things that involve another view's state or the app's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The template goes back to the method's default.
    ResetTemplate,
    /// Switch to this method, keeping the current one's settings and template for later.
    SwitchMethod(MethodKind),
    /// Queue a run of what the setup and the template editor show.
    Train,
    /// Queue the fine-tuning and zero-shot baselines of the current task.
    QueueBaselines,
    Show(Tab),
    OpenDialog(DialogTarget),
    /// Delete a stored run (and forget it in the views that list it).
    DeleteRun(String),
    /// Continue an interrupted run from its checkpoint (loading its model first if need be).
    ResumeRun(String),
    /// Put a stored run's model, task, method, settings and template into the setup.
    CloneSettings(String),
}

/// Where closing the window stands: a close request while a run is training asks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Closing {
    /// A close request closes at once, unless a run is training (then it asks).
    #[default]
    Open,
    /// "A run is training — stop it and quit?" is on screen.
    Asking,
    /// Stop was sent: the window closes once the run has saved its best checkpoint.
    Stopping,
    /// The next close request is let through.
    Quitting,
}

/// The question shown when the window is closed during training.
pub const QUIT_QUESTION: &str = "A run is training — stop it and quit?";

/// The key of the saved setup and layout in eframe's storage.
pub const STORAGE_KEY: &str = "gradprompt.workbench";

/// The side panel's default width, and its narrowest.
const SIDE_WIDTH: f32 = 460.0;
const SIDE_MIN: f32 = 200.0;
/// The side panel never takes more than this share of the window, so the plots keep more than
/// half of it (at 800x600 the default 460 left them about 190 points).
const SIDE_MAX_SHARE: f32 = 0.45;

/// The window's layout as saved across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Layout {
    pub side_open: bool,
    pub side_width: f32,
    pub tab: Tab,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            side_open: true,
            side_width: SIDE_WIDTH,
            tab: Tab::Plots,
        }
    }
}

/// Everything saved across restarts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Saved {
    pub setup: setup::SavedSetup,
    pub layout: Layout,
}

impl Saved {
    /// The saved setup in `storage`: None when there is none; an unreadable one is an error
    /// that says so (the app then starts from the defaults and shows it).
    pub fn load(storage: &dyn eframe::Storage) -> Result<Option<Saved>, String> {
        let Some(text) = storage.get_string(STORAGE_KEY) else {
            return Ok(None);
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            format!(
                "the setup saved at the last exit could not be read ({e}); starting from the \
                 defaults (it is replaced at the next exit)"
            )
        })
    }
}

pub struct App {
    pub session: Session,
    pub closing: Closing,
    pub tab: Tab,
    pub setup: setup::Setup,
    pub editor: template_editor::TemplateEditor,
    pub training: training::Training,
    pub plots: plots::Plots,
    pub runs: runs_view::RunsView,
    pub compare: compare::Compare,
    pub inspect: inspect::Inspect,
    pub export: export::Export,
    pub dialog: Option<(DialogTarget, Receiver<Option<PathBuf>>)>,
    /// Whether the side panel (setup and template) is shown.
    pub side_open: bool,
    /// The side panel's width as last drawn (what the layout saves).
    pub side_width: f32,
    /// The room kept for the training controls and the progress bar.
    training_height: f32,
    autostart: bool,
}

impl App {
    pub fn new(opts: Options) -> App {
        let session = Session::new(&opts);
        let mut setup = setup::Setup::new(&opts);
        if let Some(dir) = opts.task.clone().or_else(|| session.default_task()) {
            setup.task_path = dir.display().to_string();
        }
        let mut app = App {
            session,
            closing: Closing::Open,
            tab: Tab::Plots,
            setup,
            editor: template_editor::TemplateEditor::default(),
            training: training::Training,
            plots: plots::Plots::default(),
            runs: runs_view::RunsView::default(),
            compare: compare::Compare::default(),
            inspect: inspect::Inspect::default(),
            export: export::Export::default(),
            dialog: None,
            side_open: true,
            side_width: SIDE_WIDTH,
            training_height: 0.0,
            autostart: opts.autostart,
        };
        app.reset_template();
        // The latest runs of the start task are plotted, so a restart shows where things were.
        if let Some(task) = &app.session.task {
            let recent = app
                .session
                .store
                .runs
                .iter()
                .rev()
                .filter(|r| r.covers_task(&task.spec.name) && !r.losses.is_empty())
                .take(3)
                .map(|r| r.id.clone());
            app.plots.shown.extend(recent);
        }
        app
    }

    /// An app that starts where the last one was left, when `storage` holds a saved setup: its
    /// model (unless `opts` names one), task (unless `opts` names one, and if the folder is
    /// still there), method, every method's settings and templates, and the layout.
    pub fn with_saved(mut opts: Options, storage: Option<&dyn eframe::Storage>) -> App {
        let (saved, problem) = match storage.map(Saved::load) {
            Some(Ok(saved)) => (saved, None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        if let Some(s) = &saved {
            if !opts.model_named {
                if let Some(m) = &s.setup.model {
                    opts.model = m.clone();
                }
            }
            if opts.task.is_none() {
                opts.task = s.setup.task.clone().filter(|d| d.is_dir());
            }
        }
        let mut app = App::new(opts);
        if let Some(s) = saved {
            app.setup.restore(s.setup);
            // The saved seeds count even while the side panel (which sets them) is collapsed.
            app.session.seeds = app.setup.seed_list();
            app.side_open = s.layout.side_open;
            app.side_width = s.layout.side_width.max(SIDE_MIN);
            app.tab = s.layout.tab;
            app.restore_template();
        }
        if problem.is_some() {
            app.session.notice = problem;
        }
        app
    }

    /// What [`App::save_to`] saves.
    pub fn saved(&self) -> Saved {
        let model = match &self.session.model {
            // A model that failed to load is not worth reopening on.
            ModelState::Failed { .. } | ModelState::Empty => None,
            _ => self.session.model_spec(),
        };
        let task = self.session.task.as_ref().map(|t| t.dir.as_path());
        Saved {
            setup: self.setup.saved(model, task),
            layout: Layout {
                side_open: self.side_open,
                side_width: self.side_width,
                tab: self.tab,
            },
        }
    }

    /// Saves the setup and the layout into `storage` (eframe calls this on exit and every few
    /// seconds).
    pub fn save_to(&mut self, storage: &mut dyn eframe::Storage) {
        self.remember_template();
        match serde_json::to_string(&self.saved()) {
            Ok(text) => storage.set_string(STORAGE_KEY, text),
            Err(e) => self.session.notice = Some(format!("the setup could not be saved: {e}")),
        }
    }

    /// Starts loading a model on a background thread.
    pub fn load_model(&mut self, spec: &str) {
        self.setup.model_path = spec.trim().to_string();
        self.session.load_model(spec);
    }

    /// Starts reading a task folder on a background thread; when it is ready it becomes the
    /// current task and the template editor is reset.
    pub fn select_task(&mut self, dir: &Path) {
        self.setup.task_path = dir.display().to_string();
        self.session.select_task(dir);
    }

    /// The method's default template for the current task (the task's own, with the method's
    /// slots where the paper puts them).
    pub fn reset_template(&mut self) {
        self.editor.reset(
            self.session.task.as_deref(),
            self.setup.method,
            &self.setup.settings,
        );
    }

    /// Switches the method, keeping the current one's settings and template: the new method
    /// gets back what it was last set to (its template for the current task included), or its
    /// default template the first time.
    pub fn switch_method(&mut self, to: MethodKind) {
        if to == self.setup.method {
            return;
        }
        self.remember_template();
        self.setup.switch_method(to);
        self.restore_template();
    }

    /// Remembers the editor's template as the current method's for the current task.
    fn remember_template(&mut self) {
        if let Some(task) = &self.session.task {
            self.setup
                .keep_template(self.setup.method, &task.dir, &self.editor.text);
        }
    }

    /// The current method's template for the current task as it was left, else its default.
    pub fn restore_template(&mut self) {
        let kept = self.session.task.as_ref().and_then(|t| {
            self.setup
                .kept_template(self.setup.method, &t.dir)
                .map(str::to_string)
        });
        match kept {
            Some(text) => self.editor.set_text(&text, self.setup.method),
            None => self.reset_template(),
        }
    }

    /// Queues a run of what the setup shows: a multi-task run of the ticked tasks when
    /// "several tasks in one run" is on, else a run of the current task with the template.
    pub fn queue_current(&mut self) -> Option<String> {
        let method = self.setup.method;
        if self.setup.multi_task() {
            let dirs = self.setup.ticked_tasks(&self.session);
            // Each task uses its own template with the method's slots (the engine's default).
            let spec = MultiTaskSpec {
                run: RunSpec {
                    method,
                    settings: self.setup.settings.clone(),
                    template: None,
                    config: self.setup.config.clone(),
                    out: None,
                },
                mix: self.setup.mix,
                shared_tokens: self.setup.shared_tokens,
            };
            // Every seed's run is plotted.
            let ids = self.session.queue_tasks_seeds(spec, &dirs);
            self.plots.shown.extend(ids.iter().cloned());
            return ids.into_iter().next();
        }
        if let Err(e) = self.editor.check(method, self.session.task.as_deref()) {
            self.session.notice = Some(format!("the template is not valid: {e}"));
            return None;
        }
        self.queue(
            method,
            self.setup.settings.clone(),
            Some(self.editor.text.clone()),
            self.setup.config.clone(),
        )
    }

    /// Queues the fine-tuning and zero-shot baselines for the current task.
    pub fn queue_baselines(&mut self) {
        for m in [MethodKind::ZeroShot, MethodKind::FineTuning] {
            let mut config = self.setup.config.clone();
            config.lr = None;
            self.queue(m, MethodSettings::default(), None, config);
        }
    }

    fn queue(
        &mut self,
        method: MethodKind,
        settings: MethodSettings,
        template: Option<String>,
        config: crate::run::TrainConfig,
    ) -> Option<String> {
        // Every seed's run is plotted.
        let ids = self.session.queue_run_seeds(RunSpec {
            method,
            settings,
            template,
            config,
            out: None,
        });
        self.plots.shown.extend(ids.iter().cloned());
        ids.into_iter().next()
    }

    /// Everything that moves without the user: the session's background results and events,
    /// dialog answers, and the views' own background results.
    pub fn pump(&mut self) {
        let arrived = self.session.pump();
        if arrived.task {
            self.restore_template();
        }
        runs_view::apply_cloned_template(self);
        if arrived.model && self.autostart {
            self.autostart = false;
            self.queue_current();
        }
        if let Some((target, rx)) = &self.dialog {
            let target = *target;
            match rx.try_recv() {
                Ok(picked) => {
                    self.dialog = None;
                    if let Some(p) = picked {
                        self.dialog_answer(target, p);
                    }
                }
                Err(crossbeam_channel::TryRecvError::Empty) => {}
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    // The dialog thread ended without an answer (no dialog backend, or it
                    // panicked): forget it so later dialogs can open.
                    self.dialog = None;
                    self.session.notice =
                        Some("the file dialog could not be shown; type the path instead".into());
                }
            }
        }
        // Results are keyed by the prompt they were computed for: drop any for an old focus
        // (before and after polling, so one that arrives now for an old focus is dropped too).
        self.inspect.retain_focus(self.session.focus.as_ref());
        self.export.retain_focus(self.session.focus.as_ref());
        self.inspect.pump();
        self.runs.pump();
        if let Some((dir, art)) = self.export.pump() {
            // An import was read: it becomes the focused prompt, already loaded.
            self.session.focus_imported(dir, art);
        }
        // An imported prompt's test score, once measured here, puts it in Compare.
        if let Some((Focus::Imported(dir), Ok(score))) = self.export.eval() {
            self.session.import_scored(dir, *score);
        }
        self.inspect.retain_focus(self.session.focus.as_ref());
        self.export.retain_focus(self.session.focus.as_ref());
    }

    fn dialog_answer(&mut self, target: DialogTarget, path: PathBuf) {
        match target {
            DialogTarget::ModelFile | DialogTarget::ModelFolder => {
                self.load_model(&path.display().to_string())
            }
            DialogTarget::TaskFolder => self.select_task(&path),
            DialogTarget::ExportFolder => self.export.out_path = path.display().to_string(),
            DialogTarget::ImportFolder => self.export.import_path = path.display().to_string(),
        }
    }

    pub fn open_dialog(&mut self, target: DialogTarget) {
        if self.dialog.is_none() {
            self.dialog = Some((target, spawn_dialog(target)));
        }
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::ResetTemplate => self.reset_template(),
            Action::SwitchMethod(m) => self.switch_method(m),
            Action::Train => {
                self.queue_current();
            }
            Action::QueueBaselines => self.queue_baselines(),
            Action::Show(tab) => self.tab = tab,
            Action::OpenDialog(target) => self.open_dialog(target),
            Action::DeleteRun(id) => {
                self.runs.forget(&id);
                self.plots.shown.remove(&id);
                self.session.delete_run(&id);
            }
            Action::ResumeRun(id) => {
                self.resume_run(&id);
            }
            Action::CloneSettings(id) => runs_view::clone_settings(self, &id),
        }
    }

    /// Queues an interrupted run to continue from its checkpoint, and plots it. Its model must
    /// be the one it was trained with: when another is loaded and nothing else is queued or
    /// training, the run's model is loaded (in the background, as the setup does; the run waits
    /// in the queue). When other runs still need the loaded model, nothing changes under them:
    /// the notice names the model to load once they are done. Returns whether it was queued.
    pub fn resume_run(&mut self, id: &str) -> bool {
        if self.session.resume_offer(id) != session::ResumeOffer::Ready {
            // Says why in the notice, without loading a model for nothing.
            return self.session.resume_run(id);
        }
        let Some(want) = self.session.store.get(id).map(|r| r.model.clone()) else {
            return false;
        };
        let loaded = self.session.model_spec().map(str::to_string);
        if loaded.as_deref() != Some(want.as_str())
            || matches!(self.session.model, session::ModelState::Failed { .. })
        {
            if self.session.training() || !self.session.queue.is_empty() {
                self.session.notice = Some(format!(
                    "this run was trained with the model {want}, and {} is loaded for the runs \
                     queued now: resume it when they are done (it loads {want})",
                    loaded.as_deref().unwrap_or("no model")
                ));
                return false;
            }
            self.load_model(&want);
            self.session.notice = Some(format!("loading {want} to resume the run on it"));
        }
        let queued = self.session.resume_run(id);
        if queued {
            self.plots.shown.insert(id.to_string());
        }
        queued
    }

    /// Follows close requests (the window's close button, Ctrl+Q, the platform's quit): while a
    /// run is training the close is cancelled and the question asked; after "Stop and quit" the
    /// window closes by itself once the run has ended.
    fn handle_close(&mut self, ctx: &egui::Context) {
        if self.closing == Closing::Stopping && !self.session.training() {
            // The run has ended, its best checkpoint saved: now the window may go.
            self.closing = Closing::Quitting;
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        let ctrl_q = ctx.input_mut(|i| i.consume_key(egui::Modifiers::COMMAND, egui::Key::Q));
        let requested = ctx.input(|i| i.viewport().close_requested());
        if !requested && !ctrl_q {
            return;
        }
        let let_through = match self.closing {
            Closing::Quitting => true,
            Closing::Open => !self.session.training(),
            Closing::Asking | Closing::Stopping => false,
        };
        if let_through {
            if ctrl_q {
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
            return;
        }
        if self.closing == Closing::Open {
            self.closing = Closing::Asking;
        }
        if requested {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
        }
    }

    /// "Stop and quit": no queued run starts any more, the active one is told to stop (it
    /// evaluates and saves its best checkpoint), and the window closes when it has ended.
    pub fn stop_and_quit(&mut self) {
        self.session.closing = true;
        self.session.send(Command::Stop);
        self.closing = Closing::Stopping;
    }

    /// The question while closing during training, and the wait after "Stop and quit".
    fn close_dialog(&mut self, ctx: &egui::Context) {
        match self.closing {
            Closing::Asking => {
                let modal =
                    egui::Modal::new(egui::Id::unique("quit-while-training")).show(ctx, |ui| {
                        ui.heading(QUIT_QUESTION);
                        ui.label(
                            "Stop and quit: the run stops now, its best checkpoint so far is \
                         evaluated and saved, then the window closes. Resume (Runs tab) \
                         continues it next time.",
                        );
                        ui.horizontal(|ui| {
                            if ui.button("Stop and quit").clicked() {
                                self.stop_and_quit();
                            }
                            if ui.button("Keep training").clicked() {
                                self.closing = Closing::Open;
                            }
                        });
                    });
                // Escape or a click beside the question keeps training, the safe answer.
                if modal.should_close() && self.closing == Closing::Asking {
                    self.closing = Closing::Open;
                }
            }
            Closing::Stopping => {
                egui::Modal::new(egui::Id::unique("quit-while-training")).show(ctx, |ui| {
                    ui.heading("Stopping the run...");
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label(
                            "its best checkpoint is being evaluated and saved; the window \
                             closes when that is done.",
                        );
                    });
                    if ui
                        .button("Quit without waiting")
                        .on_hover_text(
                            "the run is saved as interrupted, with its curve but no prompt; Resume \
                             (Runs tab) continues it from its last checkpoint",
                        )
                        .clicked()
                    {
                        self.closing = Closing::Quitting;
                        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                    }
                });
            }
            Closing::Open | Closing::Quitting => {}
        }
    }

    /// The banner of a read-only session, with a way to look again.
    fn read_only_banner(&mut self, ui: &mut egui::Ui) {
        let Some(ro) = self.session.store.read_only() else {
            return;
        };
        let msg = format!("Read-only: {}", ro.message(self.session.store.dir()));
        egui::Frame::new()
            .fill(ui.visuals().extreme_bg_color)
            .stroke(egui::Stroke::new(1.0, ui.visuals().warn_fg_color))
            .inner_margin(6.0)
            .show(ui, |ui| {
                ui.colored_label(ui.visuals().warn_fg_color, msg);
                ui.horizontal(|ui| {
                    if self.session.rechecking() {
                        ui.spinner();
                    } else if ui
                        .button("Check again")
                        .on_hover_text(
                            "read the runs folder again, and use it if the other workbench has closed",
                        )
                        .clicked()
                    {
                        self.session.recheck_runs_folder();
                    }
                });
            });
    }

    fn busy(&self) -> bool {
        self.session.busy()
            || self.dialog.is_some()
            || self.inspect.busy()
            || self.runs.busy()
            || self.export.busy()
            || self.compare.busy()
    }

    /// Draws the whole app into `ui` (the eframe entry point and the tests both call this).
    pub fn show(&mut self, ui: &mut egui::Ui) {
        self.pump();
        self.handle_close(ui.ctx());
        let mut actions = Vec::new();
        self.side_panel(ui, &mut actions);
        // Notices live in a bar at the bottom: above the tabs, one appearing pushed the tab
        // row down under the pointer.
        if let Some(n) = self.session.notice.clone() {
            egui::Panel::bottom("notice").show(ui, |ui| {
                ui.horizontal_wrapped(|ui| {
                    ui.colored_label(ui.visuals().warn_fg_color, n);
                    if ui.small_button("Dismiss").clicked() {
                        self.session.notice = None;
                    }
                });
            });
        }
        egui::CentralPanel::default().show(ui, |ui| {
            self.read_only_banner(ui);
            self.training_controls(ui, &mut actions);
            ui.separator();
            ui.horizontal_wrapped(|ui| {
                if !self.side_open
                    && ui
                        .button("Setup »")
                        .on_hover_text("show the setup and the template")
                        .clicked()
                {
                    self.side_open = true;
                }
                for (tab, name) in [
                    (Tab::Plots, "Plots"),
                    (Tab::Runs, "Runs"),
                    (Tab::Compare, "Compare"),
                    (Tab::Inspect, "Inspect"),
                    (Tab::Export, "Export"),
                ] {
                    ui.selectable_value(&mut self.tab, tab, name);
                }
            });
            ui.separator();
            let s = &mut self.session;
            let action = match self.tab {
                Tab::Plots => {
                    self.plots.ui(ui, s);
                    None
                }
                Tab::Runs => self.runs.ui(ui, s),
                Tab::Compare => self.compare.ui(ui, s, &self.runs.selected),
                Tab::Inspect => {
                    self.inspect.ui(ui, s);
                    None
                }
                Tab::Export => self.export.ui(ui, s),
            };
            actions.extend(action);
        });
        for a in actions {
            self.apply(a);
        }
        // Every frame, so that a task switch or an exit finds the template as it was left.
        self.remember_template();
        self.close_dialog(ui.ctx());
        if self.busy() {
            ui.ctx().request_repaint_after(Duration::from_millis(100));
        }
    }

    /// The setup and the template, in a side panel that scrolls (both ways: a row that does
    /// not fit scrolls rather than widening the panel for good), can be narrowed and collapsed.
    fn side_panel(&mut self, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
        let max = (ui.available_width() * SIDE_MAX_SHARE).max(SIDE_MIN);
        let shown = egui::Panel::left("setup")
            .resizable(true)
            .default_size(self.side_width.clamp(SIDE_MIN, max))
            .size_range(SIDE_MIN..=max)
            .show_collapsible(ui, &mut self.side_open, |ui| {
                // Above the scrolled part, so it is there however far down the setup is.
                let hide = ui
                    .button("« Hide")
                    .on_hover_text(
                        "collapse the setup panel (\"Setup »\" beside the tabs brings it back)",
                    )
                    .clicked();
                egui::ScrollArea::both()
                    .auto_shrink([false, false])
                    .show(ui, |ui| {
                        actions.extend(self.setup.ui(ui, &mut self.session));
                        ui.separator();
                        let method = self.setup.method;
                        self.editor
                            .ui(ui, &self.session, method, &mut self.setup.settings);
                    });
                hide
            });
        if let Some(r) = shown {
            self.side_width = r.response.rect.width();
            if r.inner {
                self.side_open = false;
            }
        }
    }

    /// Train / Pause / Stop and the progress bar, in a block that keeps the bar's room while no
    /// run is active: the tab row below stays where it is when the bar comes and goes (it
    /// moved about 22 points, so a click meant for a tab landed on the control above).
    fn training_controls(&mut self, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
        let top = ui.cursor().top();
        actions.extend(self.training.ui(ui, &mut self.session));
        let used = ui.cursor().top() - top;
        // A row of buttons and the bar under it.
        let row = ui.spacing().interact_size.y.max(
            ui.text_style_height(&egui::TextStyle::Button) + 2.0 * ui.spacing().button_padding.y,
        );
        let floor = 2.0 * row + 2.0 * ui.spacing().item_spacing.y;
        self.training_height = self.training_height.max(floor).max(used);
        if used < self.training_height {
            ui.add_space(self.training_height - used);
        }
    }
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        self.save_to(storage);
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.session.send(Command::Stop);
        self.session.save_on_exit();
    }
}

/// Opens the window (blocks until it is closed).
pub fn run(opts: Options) -> anyhow::Result<()> {
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("gradprompt")
            .with_inner_size([1500.0, 950.0]),
        ..Default::default()
    };
    eframe::run_native(
        "gradprompt",
        native,
        Box::new(move |cc| Ok(Box::new(App::with_saved(opts, cc.storage)))),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}

/// Bytes as B / kB / MB / GB.
pub fn human_bytes(n: usize) -> String {
    let n = n as f64;
    if n < 1e3 {
        format!("{n} B")
    } else if n < 1e6 {
        format!("{:.1} kB", n / 1e3)
    } else if n < 1e9 {
        format!("{:.1} MB", n / 1e6)
    } else {
        format!("{:.2} GB", n / 1e9)
    }
}

/// A short label for a run: method and the end of its id.
pub fn run_label(r: &RunRecord) -> String {
    if let Some(name) = r.given_name() {
        return name.to_string();
    }
    // The id is "<ms>-<counter>-<method>": the last digits of the time tell sessions apart,
    // the counter runs queued in the same millisecond (the two baselines).
    let mut parts = r.id.split('-');
    let stamp = parts.next().unwrap_or("");
    let skip = stamp.chars().count().saturating_sub(5);
    let short: String = stamp.chars().skip(skip).collect();
    let n = parts.next().unwrap_or("").trim_start_matches('0');
    format!("{} #{short}.{n}", r.method().id())
}
