//! The desktop workbench (egui/eframe). It talks to the engine only through the training
//! worker's channels and the run store. The slow work runs on background threads ([`Job`]) whose
//! results are drained here every frame: model loading, training, inspection, scoring, reading
//! a task folder chosen in the setup, exporting and importing prompts. A few small reads and
//! writes still happen in a frame: the run records (`run.json`, as events arrive), the start
//! task (read before the first frame), a focused run's prompt folder (once per change of focus)
//! and a task other than the current one (once, when a queued run starts or a prompt trained on
//! it is inspected).
//!
//! One file per view: [`setup`] (model, task, method, settings), [`template_editor`] (the chip
//! row), [`training`] (controls and progress), [`plots`], [`runs_view`], [`compare`],
//! [`inspect`] (nearest tokens, triggers, playground) and [`export`] (native / PEFT, import).

pub mod compare;
pub mod export;
pub mod inspect;
pub mod plots;
pub mod runs_view;
pub mod setup;
pub mod template_editor;
pub mod training;

use crate::artifact::Artifact;
use crate::methods::{MethodKind, MethodSettings};
use crate::model::Model;
use crate::run::{Command, Event, RunSpec, TrainConfig};
use crate::runs::{RunRecord, RunStatus, RunStore};
use crate::task::Task;
use crate::train::worker::Worker;
use crossbeam_channel::{Receiver, Sender};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How the app starts.
#[derive(Debug, Clone)]
pub struct Options {
    /// Model spec to load at start (`builtin`, a folder, a .gguf or a .whl).
    pub model: String,
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
            model: "builtin".into(),
            task: None,
            runs_dir,
            sample_tasks: Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_tasks"),
            autostart: false,
        }
    }
}

/// Engine work on a background thread whose result is picked up by a later frame.
pub struct Job<T> {
    rx: Receiver<Result<T, String>>,
}

impl<T: Send + 'static> Job<T> {
    pub fn spawn(f: impl FnOnce() -> anyhow::Result<T> + Send + 'static) -> Job<T> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("internal error (panic)")));
            let _ = tx.send(out.map_err(|e| format!("{e:#}")));
        });
        Job { rx }
    }

    /// The result, once; None while running.
    pub fn poll(&self) -> Option<Result<T, String>> {
        match self.rx.try_recv() {
            Ok(r) => Some(r),
            Err(crossbeam_channel::TryRecvError::Empty) => None,
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                Some(Err("the background thread ended without a result".into()))
            }
        }
    }
}

pub enum ModelState {
    Empty,
    Loading { spec: String, job: Job<Model> },
    Ready(Arc<Model>),
    Failed { spec: String, error: String },
}

impl ModelState {
    pub fn ready(&self) -> Option<&Arc<Model>> {
        match self {
            ModelState::Ready(m) => Some(m),
            _ => None,
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

/// The run being trained and its channels.
pub struct Active {
    pub id: String,
    pub commands: Sender<Command>,
    pub events: Receiver<Event>,
    /// None when the channels were attached by hand (tests feed events directly).
    pub worker: Option<Worker>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Plots,
    Runs,
    Compare,
    Inspect,
    Export,
}

/// A prompt the inspect and export views work on: a run's, or one imported from a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Focus {
    Run(String),
    Imported(PathBuf),
}

pub struct App {
    pub setup: setup::Setup,
    pub editor: template_editor::TemplateEditor,
    pub store: RunStore,
    pub model: ModelState,
    pub task: Option<Arc<Task>>,
    /// A task folder being read for the setup (the current task stays until it is ready).
    pub task_job: Option<(PathBuf, Job<Task>)>,
    /// Tasks read for prompts trained on another task than the current one.
    named_tasks: std::collections::HashMap<PathBuf, Arc<Task>>,
    /// Run ids waiting to start, in order.
    pub queue: VecDeque<String>,
    pub active: Option<Active>,
    pub tab: Tab,
    pub plots: plots::PlotsState,
    pub runs: runs_view::RunsState,
    pub inspect: inspect::InspectState,
    pub export: export::ExportState,
    pub focus: Option<Focus>,
    /// The focused prompt, loaded (or why it could not be).
    pub loaded: Option<(Focus, Result<Arc<Artifact>, String>)>,
    pub dialog: Option<(DialogTarget, Receiver<Option<PathBuf>>)>,
    /// The last problem worth telling the user that has no better place.
    pub notice: Option<String>,
    /// Times the active run for its ETA (started by its `Started` event).
    pub run_clock: Option<training::RunClock>,
    autostart: bool,
}

impl App {
    pub fn new(opts: Options) -> App {
        let (store, store_error) = match RunStore::open(&opts.runs_dir) {
            Ok(s) => (s, None),
            Err(e) => {
                // Still usable: runs go to a temporary folder for this session.
                let tmp =
                    std::env::temp_dir().join(format!("gradprompt-runs-{}", std::process::id()));
                let s = RunStore::open(&tmp).expect("a temporary runs folder");
                (
                    s,
                    Some(format!(
                        "{e:#}; runs of this session go to {} and will not be kept",
                        tmp.display()
                    )),
                )
            }
        };
        let setup = setup::Setup::new(&opts);
        let mut app = App {
            setup,
            editor: template_editor::TemplateEditor::default(),
            store,
            model: ModelState::Empty,
            task: None,
            task_job: None,
            named_tasks: Default::default(),
            queue: VecDeque::new(),
            active: None,
            tab: Tab::Plots,
            plots: plots::PlotsState::default(),
            runs: runs_view::RunsState::default(),
            inspect: inspect::InspectState::default(),
            export: export::ExportState::default(),
            focus: None,
            loaded: None,
            dialog: None,
            notice: store_error,
            run_clock: None,
            autostart: opts.autostart,
        };
        if !app.store.unreadable.is_empty() {
            app.notice = Some(format!(
                "some stored runs could not be read: {}",
                app.store.unreadable.join("; ")
            ));
        }
        app.load_model(&opts.model);
        let task_dir = opts.task.clone().or_else(|| app.setup.default_task());
        if let Some(dir) = task_dir {
            // Before the first frame, so the start task is there from the start.
            app.setup.task_path = dir.display().to_string();
            let loaded = Task::load(&dir);
            app.task_loaded(loaded.map_err(|e| format!("{e:#}")));
        }
        // The latest runs of the start task are plotted, so a restart shows where things were.
        if let Some(task) = &app.task {
            let recent = app
                .store
                .runs
                .iter()
                .rev()
                .filter(|r| r.task == task.spec.name && !r.losses.is_empty())
                .take(3)
                .map(|r| r.id.clone());
            app.plots.shown.extend(recent);
        }
        app
    }

    /// Starts loading a model on a background thread.
    pub fn load_model(&mut self, spec: &str) {
        let spec = spec.trim().to_string();
        self.setup.model_path = spec.clone();
        if spec.is_empty() {
            self.model = ModelState::Failed {
                spec,
                error: "type a model path, or `builtin`".into(),
            };
            return;
        }
        let s = spec.clone();
        self.model = ModelState::Loading {
            spec,
            job: Job::spawn(move || Model::load(&s)),
        };
    }

    /// Starts reading a task folder on a background thread; when it is ready it becomes the
    /// current task and the template editor is reset.
    pub fn select_task(&mut self, dir: &Path) {
        self.setup.task_path = dir.display().to_string();
        let d = dir.to_path_buf();
        self.task_job = Some((dir.to_path_buf(), Job::spawn(move || Task::load(&d))));
    }

    fn task_loaded(&mut self, loaded: Result<Task, String>) {
        match loaded {
            Ok(t) => {
                self.task = Some(Arc::new(t));
                self.setup.task_error = None;
                self.reset_template();
            }
            Err(e) => self.setup.task_error = Some(e),
        }
    }

    /// The method's default template for the current task (the task's own, with the method's
    /// slots where the paper puts them).
    pub fn reset_template(&mut self) {
        if let Some(task) = &self.task {
            match task.template() {
                Ok(t) => {
                    let t =
                        crate::methods::template_for(self.setup.method, &self.setup.settings, &t);
                    self.editor.set(t, self.setup.method);
                }
                Err(e) => self.editor.error = Some(format!("{e:#}")),
            }
        }
    }

    pub fn model_spec(&self) -> Option<&str> {
        match &self.model {
            ModelState::Loading { spec, .. } | ModelState::Failed { spec, .. } => Some(spec),
            ModelState::Ready(m) => Some(&m.spec),
            ModelState::Empty => None,
        }
    }

    /// Queues a run of the current task with the current model; it starts when the model is
    /// ready and the run before it has ended. Returns the run id.
    pub fn queue_run(
        &mut self,
        method: MethodKind,
        settings: MethodSettings,
        template: Option<String>,
        config: TrainConfig,
    ) -> Option<String> {
        let Some(task) = self.task.clone() else {
            self.notice = Some("choose a task first".into());
            return None;
        };
        let Some(model) = self.model_spec().map(str::to_string) else {
            self.notice = Some("choose a model first".into());
            return None;
        };
        let id = self.store.new_id(method);
        // A fine-tuned model is a whole model copy: its size is measured, not written.
        let out = (method != MethodKind::FineTuning).then(|| self.store.prompt_dir(&id));
        let spec = RunSpec {
            method,
            settings,
            template,
            config,
            out,
        };
        let record = RunRecord::new(id.clone(), &model, &task.spec.name, &task.dir, spec);
        if let Err(e) = self.store.add(record) {
            self.notice = Some(format!("cannot record the run: {e:#}"));
            return None;
        }
        self.plots.shown.insert(id.clone());
        self.queue.push_back(id.clone());
        Some(id)
    }

    /// Queues a run of what the setup shows.
    pub fn queue_current(&mut self) -> Option<String> {
        let method = self.setup.method;
        if let Err(e) = self.editor.check(method, self.task.as_deref()) {
            self.notice = Some(format!("the template is not valid: {e}"));
            return None;
        }
        self.queue_run(
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
            self.queue_run(m, MethodSettings::default(), None, config);
        }
    }

    pub fn send(&self, cmd: Command) {
        if let Some(a) = &self.active {
            let _ = a.commands.send(cmd);
        }
    }

    pub fn active_record(&self) -> Option<&RunRecord> {
        self.active.as_ref().and_then(|a| self.store.get(&a.id))
    }

    /// Everything that moves without the user: background results, worker events, the queue.
    pub fn pump(&mut self) {
        if let ModelState::Loading { spec, job } = &self.model {
            if let Some(r) = job.poll() {
                self.model = match r {
                    Ok(m) => ModelState::Ready(Arc::new(m)),
                    Err(error) => ModelState::Failed {
                        spec: spec.clone(),
                        error,
                    },
                };
                if self.autostart && self.model.ready().is_some() {
                    self.autostart = false;
                    self.queue_current();
                }
            }
        }
        if let Some(r) = self.task_job.as_ref().and_then(|j| j.1.poll()) {
            self.task_job = None;
            self.task_loaded(r);
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
                    self.notice =
                        Some("the file dialog could not be shown; type the path instead".into());
                }
            }
        }
        self.drain_events();
        self.start_next();
        // Results are keyed by the prompt they were computed for: drop any for an old focus
        // (before and after polling, so one that arrives now for an old focus is dropped too).
        self.inspect.retain_focus(self.focus.as_ref());
        self.export.retain_focus(self.focus.as_ref());
        self.inspect.pump();
        if let Some((dir, art)) = self.export.pump() {
            // An import was read: it becomes the focused prompt, already loaded.
            let focus = Focus::Imported(dir);
            self.focus = Some(focus.clone());
            self.loaded = Some((focus, Ok(art)));
        }
        self.inspect.retain_focus(self.focus.as_ref());
        self.export.retain_focus(self.focus.as_ref());
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

    fn drain_events(&mut self) {
        let Some(active) = &self.active else { return };
        let Some(i) = self.store.index_of(&active.id) else {
            self.active = None;
            return;
        };
        let mut ended = false;
        loop {
            match active.events.try_recv() {
                Ok(ev) => {
                    ended |= matches!(ev, Event::Finished(_) | Event::Failed(_));
                    if matches!(ev, Event::Started { .. }) {
                        self.run_clock = Some(training::RunClock::new(active.id.clone()));
                    }
                    if let Some(c) = self.run_clock.as_mut().filter(|c| c.id == active.id) {
                        c.on_event(&ev);
                    }
                    if let Err(e) = self.store.apply(i, &ev) {
                        self.notice = Some(format!("cannot save the run: {e:#}"));
                    }
                }
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    if !ended {
                        let _ = self.store.set_status(
                            i,
                            RunStatus::Failed,
                            Some("the training thread ended without a result".into()),
                        );
                    }
                    ended = true;
                    break;
                }
            }
        }
        if ended {
            self.run_clock = None;
            let _ = self.store.save(i);
            if let Some(a) = self.active.take() {
                if let Some(w) = a.worker {
                    // The last event has arrived, so the thread is returning.
                    w.join();
                }
            }
        }
    }

    fn start_next(&mut self) {
        if self.active.is_some() {
            return;
        }
        let Some(id) = self.queue.front().cloned() else {
            return;
        };
        let Some(i) = self.store.index_of(&id) else {
            self.queue.pop_front();
            return;
        };
        let want = self.store.runs[i].model.clone();
        let model = match &self.model {
            ModelState::Loading { .. } => return,
            ModelState::Ready(m) if m.spec == want => m.clone(),
            ModelState::Ready(m) => {
                self.queue.pop_front();
                let msg = format!(
                    "queued for model {want}, but {} is loaded now; queue it again",
                    m.spec
                );
                let _ = self.store.set_status(i, RunStatus::Failed, Some(msg));
                return;
            }
            ModelState::Failed { error, .. } => {
                self.queue.pop_front();
                let msg = format!("the model could not be loaded: {error}");
                let _ = self.store.set_status(i, RunStatus::Failed, Some(msg));
                return;
            }
            ModelState::Empty => {
                self.queue.pop_front();
                let _ =
                    self.store
                        .set_status(i, RunStatus::Failed, Some("no model was loaded".into()));
                return;
            }
        };
        self.queue.pop_front();
        let r = &self.store.runs[i];
        let task = match &self.task {
            Some(t) if t.dir == r.task_dir => Ok(t.clone()),
            _ => Task::load(&r.task_dir).map(Arc::new),
        };
        let task = match task {
            Ok(t) => t,
            Err(e) => {
                let _ = self
                    .store
                    .set_status(i, RunStatus::Failed, Some(format!("{e:#}")));
                return;
            }
        };
        let worker = Worker::spawn(model, task, r.spec.clone());
        let _ = self.store.set_status(i, RunStatus::Running, None);
        self.active = Some(Active {
            id,
            commands: worker.commands.clone(),
            events: worker.events.clone(),
            worker: Some(worker),
        });
    }

    /// Writes the active run's record with every event received so far (step saves are spaced
    /// out, so the last second of the curve may not be on disk yet). The run cannot finish once
    /// the app is gone, so it is saved as interrupted.
    pub fn save_on_exit(&mut self) {
        let Some(active) = &self.active else { return };
        let Some(i) = self.store.index_of(&active.id) else {
            return;
        };
        while let Ok(ev) = active.events.try_recv() {
            self.store.runs[i].apply(&ev);
        }
        if self.store.runs[i].status.is_live() {
            self.store.runs[i].status = RunStatus::Interrupted;
        }
        if let Err(e) = self.store.save(i) {
            eprintln!("gradprompt: cannot save the run on exit: {e:#}");
        }
    }

    /// Loads the focused prompt if it changed.
    pub fn focused_artifact(&mut self) -> Option<Result<Arc<Artifact>, String>> {
        let focus = self.focus.clone()?;
        if self.loaded.as_ref().map(|l| &l.0) != Some(&focus) {
            let dir = match &focus {
                Focus::Run(id) => self
                    .store
                    .get(id)
                    .and_then(|r| r.artifact_dir().map(Path::to_path_buf)),
                Focus::Imported(p) => Some(p.clone()),
            };
            let loaded = match dir {
                Some(d) => Artifact::load(&d).map(Arc::new).map_err(|e| format!("{e:#}")),
                None => Err("this run has no saved prompt (it is not finished, or it is a fine-tuning run, whose model copy is not kept)".into()),
            };
            self.loaded = Some((focus, loaded));
        }
        self.loaded.as_ref().map(|l| l.1.clone())
    }

    /// The task a prompt was trained on: the current one if the name matches, else a sample
    /// task of that name.
    /// Read once, then kept: the views ask every frame.
    pub fn task_named(&mut self, name: &str) -> Result<Arc<Task>, String> {
        if let Some(t) = &self.task {
            if t.spec.name == name {
                return Ok(t.clone());
            }
        }
        for dir in &self.setup.task_dirs {
            if dir.file_name().and_then(|n| n.to_str()) == Some(name) {
                if let Some(t) = self.named_tasks.get(dir) {
                    return Ok(t.clone());
                }
                let t = Task::load(dir)
                    .map(Arc::new)
                    .map_err(|e| format!("{e:#}"))?;
                self.named_tasks.insert(dir.clone(), t.clone());
                return Ok(t);
            }
        }
        Err(format!(
            "the prompt was trained on task \"{name}\"; choose that task in the setup first"
        ))
    }

    fn busy(&self) -> bool {
        self.active.is_some()
            || !self.queue.is_empty()
            || matches!(self.model, ModelState::Loading { .. })
            || self.task_job.is_some()
            || self.dialog.is_some()
            || self.inspect.busy()
            || self.export.busy()
    }

    /// Draws the whole app into `ui` (the eframe entry point and the tests both call this).
    pub fn show(&mut self, ui: &mut egui::Ui) {
        self.pump();
        egui::Panel::left("setup")
            .resizable(true)
            .default_size(460.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    setup::ui(self, ui);
                    ui.separator();
                    template_editor::ui(self, ui);
                });
            });
        egui::CentralPanel::default().show(ui, |ui| {
            training::ui(self, ui);
            if let Some(n) = self.notice.clone() {
                ui.horizontal(|ui| {
                    ui.colored_label(ui.visuals().warn_fg_color, n);
                    if ui.small_button("Dismiss").clicked() {
                        self.notice = None;
                    }
                });
            }
            ui.separator();
            ui.horizontal(|ui| {
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
            match self.tab {
                Tab::Plots => plots::ui(self, ui),
                Tab::Runs => runs_view::ui(self, ui),
                Tab::Compare => compare::ui(self, ui),
                Tab::Inspect => inspect::ui(self, ui),
                Tab::Export => export::ui(self, ui),
            }
        });
        if self.busy() {
            ui.ctx().request_repaint_after(Duration::from_millis(100));
        }
    }
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.send(Command::Stop);
        self.save_on_exit();
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
        Box::new(move |_cc| Ok(Box::new(App::new(opts)))),
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
    // The id is "<ms>-<counter>-<method>": the last digits of the time tell sessions apart,
    // the counter runs queued in the same millisecond (the two baselines).
    let mut parts = r.id.split('-');
    let stamp = parts.next().unwrap_or("");
    let skip = stamp.chars().count().saturating_sub(5);
    let short: String = stamp.chars().skip(skip).collect();
    let n = parts.next().unwrap_or("").trim_start_matches('0');
    format!("{} #{short}.{n}", r.method().id())
}
