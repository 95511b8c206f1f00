//! Side by side: the selected runs, always with the fine-tuning and zero-shot baselines of the
//! same task and model when they exist, and a one-click way to run the missing baselines.
//!
//! A multi-task run shows one row per task, each next to the latest single-task run of that
//! task with the same method and model, and the storage picture of its tasks: one frozen model
//! plus N prompts against N fine-tuned model copies.
//!
//! Each row shows what was learned next to its numbers: the template with its slots,
//! AutoPrompt's trigger text, or the nearest vocabulary token of each soft vector (read on a
//! background thread when the run's model is the one loaded), with its steps, dev score, seed
//! and how it ended. The bars are drawn as a table of their own (label, bar, value), so no
//! label is ever dropped or cut however many rows there are; the table copies or saves as CSV.
//!
//! Uncertainty: each row's test score comes with its 95% Wilson interval on the run's test
//! split ("0.857 [0.71, 0.94], n=35", and a whisker on its bar), and runs that differ only in
//! seed form a [`SeedGroup`], shown as mean ± sample standard deviation over its seeds (with
//! n), a bar and a ±std whisker. The arithmetic is [`crate::stats`]'s.

use super::colors::RunColors;
use super::job::Job;
use super::{human_bytes, run_label, Action, Session};
use crate::artifact::Artifact;
use crate::methods::MethodKind;
use crate::playground::Learned;
use crate::run::MultiTaskResult;
use crate::runs::{RunRecord, RunStatus};
use crate::stats;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

/// One row of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    /// The run's label, as the table shows it.
    pub run: String,
    /// The run's label, with the task for a multi-task run's row (the bar chart's names).
    pub label: String,
    pub method: MethodKind,
    pub task: String,
    pub metric: String,
    pub test: f64,
    /// The test split's size: the n of the test score's interval (unknown for a record written
    /// before runs kept it, unless its task is the current one).
    pub test_n: Option<usize>,
    pub trainable: usize,
    pub model_params: usize,
    pub bytes: usize,
    pub wall_seconds: f64,
    /// Added because it is a baseline of a selected run, not selected itself.
    pub baseline: bool,
    /// One task of a multi-task run: how many tasks the run trained. Its trainable
    /// parameters are the whole run's (every task's prompt and the shared part).
    pub multi_task: Option<usize>,
    /// Added as the single-task run of a multi-task row's task and method.
    pub single_task_peer: bool,
    pub dev: f64,
    /// Steps trained, of the steps asked for.
    pub steps: usize,
    pub total_steps: usize,
    pub seed: u64,
    pub status: RunStatus,
    /// The template the prompt was trained with, slots and all.
    pub template: String,
    /// The learned prompt as text, where it is text (AutoPrompt's triggers).
    pub readable: Option<String>,
    /// AutoPrompt's found label tokens on one line (`RunResult::label_tokens_line`), where
    /// the run searched for them.
    pub label_tokens: Option<String>,
    /// The prompt folder, where one was saved (for the nearest tokens).
    pub artifact: Option<PathBuf>,
    pub model: String,
    /// Imported from this folder (a PEFT adapter, a recipe's result), not trained here.
    pub imported: Option<PathBuf>,
}

impl Row {
    /// What the last column says about where the row comes from.
    pub fn note(&self) -> String {
        if let Some(dir) = &self.imported {
            return format!("imported from {}", dir.display());
        }
        match self.multi_task {
            Some(n) => format!("multi-task, {n} tasks"),
            None if self.baseline => "baseline".into(),
            None if self.single_task_peer => "single-task".into(),
            None => String::new(),
        }
    }
}

fn row(r: &RunRecord, baseline: bool) -> Option<Row> {
    let res = r.result.as_ref()?;
    Some(Row {
        dev: res.dev_metric,
        steps: res.steps,
        total_steps: r.total_steps.max(res.steps),
        seed: r.spec.config.seed,
        status: r.status,
        template: res.template.clone(),
        readable: res.readable.clone(),
        label_tokens: res.label_tokens_line(),
        artifact: r.artifact_dir().map(PathBuf::from),
        model: r.model.clone(),
        id: r.id.clone(),
        run: run_label(r),
        label: run_label(r),
        method: r.method(),
        task: r.task.clone(),
        metric: res.metric.to_string(),
        test: res.test_metric,
        test_n: None,
        trainable: res.trainable_params,
        model_params: res.model_params,
        bytes: res.artifact_bytes,
        wall_seconds: res.wall_seconds,
        baseline,
        multi_task: None,
        single_task_peer: false,
        imported: None,
    })
}

/// A row for an imported prompt (in this window or an earlier one: the runs folder's
/// `imports.json`), beside the runs trained here: its test score measured here, or the one its
/// folder reports (a recipe's `results.json`, carried in `gradprompt.json`); a bare adapter
/// with neither is left out until it is evaluated.
fn imported_row(i: &super::session::Imported) -> Option<Row> {
    let m = &i.artifact.manifest;
    let res = &m.result;
    let test = i.test.or(Some(res.test_metric).filter(|t| t.is_finite()))?;
    let name = i
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| i.dir.display().to_string());
    let label = format!("imported: {name}");
    Some(Row {
        dev: res.dev_metric,
        steps: res.steps,
        total_steps: m.config.steps.max(res.steps),
        seed: m.config.seed,
        status: RunStatus::Finished,
        template: m.template.clone(),
        readable: res.readable.clone(),
        label_tokens: res.label_tokens_line(),
        artifact: Some(i.dir.clone()),
        model: m.model.spec.clone(),
        id: i.dir.display().to_string(),
        run: label.clone(),
        label,
        method: m.method,
        task: m.task.clone(),
        metric: res.metric.to_string(),
        test,
        test_n: None,
        trainable: res.trainable_params,
        model_params: res.model_params,
        bytes: res.artifact_bytes,
        wall_seconds: res.wall_seconds,
        baseline: false,
        multi_task: None,
        single_task_peer: false,
        imported: Some(i.dir.clone()),
    })
}

/// One row per task of a finished multi-task run.
fn task_rows(r: &RunRecord) -> Vec<Row> {
    let Some(res) = r.multi.as_ref().and_then(|m| m.result.as_ref()) else {
        return Vec::new();
    };
    res.tasks
        .iter()
        .map(|t| Row {
            dev: t.dev_metric,
            steps: res.steps,
            total_steps: r.total_steps.max(res.steps),
            seed: r.spec.config.seed,
            status: r.status,
            template: t.template.clone(),
            readable: None,
            label_tokens: None,
            artifact: r.task_artifact_dir(&t.task),
            model: r.model.clone(),
            id: r.id.clone(),
            run: run_label(r),
            label: format!("{} [{}]", run_label(r), t.task),
            method: r.method(),
            task: t.task.clone(),
            metric: t.metric.to_string(),
            test: t.test_metric,
            test_n: None,
            trainable: res.trainable_params,
            model_params: res.model_params,
            bytes: t.artifact_bytes,
            wall_seconds: res.wall_seconds,
            baseline: false,
            multi_task: Some(res.tasks.len()),
            single_task_peer: false,
            imported: None,
        })
        .collect()
}

/// What N tasks cost to keep: one frozen model plus N prompts, against N fine-tuned copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Storage {
    pub tasks: usize,
    /// One model's weights as f32.
    pub model_bytes: usize,
    /// All tasks' prompt folders' tensors together.
    pub prompt_bytes: usize,
}

impl Storage {
    pub fn of(r: &MultiTaskResult) -> Storage {
        Storage {
            tasks: r.tasks.len(),
            model_bytes: r.model_params * 4,
            prompt_bytes: r.tasks.iter().map(|t| t.artifact_bytes).sum(),
        }
    }

    /// "1 frozen model (4.2 MB) + 2 prompts (8.4 kB)".
    pub fn prompts_line(&self) -> String {
        format!(
            "1 frozen model ({}) + {} prompts ({})",
            human_bytes(self.model_bytes),
            self.tasks,
            human_bytes(self.prompt_bytes)
        )
    }

    /// "2 fine-tuned copies (2 × 4.2 MB)".
    pub fn copies_line(&self) -> String {
        format!(
            "{n} fine-tuned copies ({n} × {})",
            human_bytes(self.model_bytes),
            n = self.tasks
        )
    }

    pub fn prompts_total(&self) -> usize {
        self.model_bytes + self.prompt_bytes
    }

    pub fn copies_total(&self) -> usize {
        self.model_bytes * self.tasks
    }
}

/// The finished multi-task runs among the picked ones, with their results.
fn multi_results<'a>(
    session: &'a Session,
    selected: &BTreeSet<String>,
) -> Vec<(&'a RunRecord, &'a MultiTaskResult)> {
    picked(session, selected)
        .into_iter()
        .filter_map(|r| Some((r, r.multi.as_ref()?.result.as_ref()?)))
        .collect()
}
/// The rows to show: the selected finished runs (or, with none selected, the latest finished
/// run of each method on the current task), then the baselines of every (task, model) among
/// them that are not already there.
///
/// A multi-task run gives one row per task, each followed by the latest single-task run of that
/// task with the same method and model (when there is one and it is not shown already).
pub fn rows(session: &Session, selected: &BTreeSet<String>) -> Vec<Row> {
    let store = &session.store;
    let picked = picked(session, selected);
    let mut out: Vec<Row> = Vec::new();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for r in &picked {
        if r.multi.is_none() {
            out.extend(row(r, false));
            pairs.push((r.task.clone(), r.model.clone()));
            continue;
        }
        for t in task_rows(r) {
            let peer = store.latest_finished(&t.task, &r.model, r.method());
            pairs.push((t.task.clone(), r.model.clone()));
            out.push(t);
            if let Some(p) = peer.filter(|p| !picked.iter().any(|x| x.id == p.id)) {
                if !out.iter().any(|x| x.id == p.id) {
                    out.extend(row(p, false).map(|x| Row {
                        single_task_peer: true,
                        ..x
                    }));
                }
            }
        }
    }
    pairs.dedup();
    for (task, model) in pairs {
        for m in [MethodKind::FineTuning, MethodKind::ZeroShot] {
            if let Some(r) = store.latest_finished(&task, &model, m) {
                if !out.iter().any(|x| x.id == r.id) {
                    out.extend(row(r, true));
                }
            }
        }
    }
    for r in &mut out {
        r.test_n = test_examples(session, &r.id, &r.task);
    }
    // Imported prompts, on the tasks shown (all of them when nothing else is).
    for i in &session.imported {
        if let Some(row) = imported_row(i) {
            if out.is_empty() || out.iter().any(|x| x.task == row.task) {
                out.push(row);
            }
        }
    }
    out
}

/// How many test examples run `id` was scored on for `task`: what the run recorded when it
/// started, else (a record written before runs kept it) the current task's, when it is the
/// run's task folder.
pub fn test_examples(session: &Session, id: &str, task: &str) -> Option<usize> {
    let r = session.store.get(id)?;
    if let Some((_, n)) = r.test_examples.iter().find(|(t, _)| t == task) {
        return Some(*n);
    }
    let current = session.task.as_ref()?;
    let dir = match &r.multi {
        Some(m) => &m.tasks.iter().find(|t| t.name == task)?.dir,
        None => &r.task_dir,
    };
    (current.spec.name == task && current.dir == *dir).then(|| current.test.len())
}

/// Runs that differ only in seed: the same model, task folder(s), method, settings, template
/// and training settings. For a multi-task run, one group per task (of runs with the same
/// tasks).
#[derive(Debug, Clone, PartialEq)]
pub struct SeedGroup {
    /// "prompt-tuning on synthetic, seeds 0,1,2".
    pub label: String,
    pub task: String,
    pub metric: String,
    /// The runs, one per seed (the latest run of a seed repeated), in seed order.
    pub ids: Vec<String>,
    pub seeds: Vec<u64>,
    pub tests: Vec<f64>,
    pub summary: stats::Summary,
}

impl SeedGroup {
    /// "test accuracy 0.850 ± 0.050 (n=3)": mean ± sample standard deviation over the seeds.
    pub fn line(&self) -> String {
        format!("test {} {}", self.metric, self.summary.line())
    }
}

/// What runs that differ only in seed have in common (empty: a record that cannot be said).
fn group_key(r: &RunRecord) -> String {
    let mut spec = r.spec.clone();
    spec.config.seed = 0;
    spec.out = None;
    let tasks = r.multi.as_ref().map(|m| {
        (
            m.tasks.iter().map(|t| &t.dir).collect::<Vec<_>>(),
            m.mix,
            m.shared_tokens,
        )
    });
    serde_json::to_string(&(&r.model, &r.task_dir, &spec, tasks)).unwrap_or_default()
}

/// A complete run's test score on `task` (its own, or one task's of a multi-task run).
fn test_on(r: &RunRecord, task: &str) -> Option<(f64, String)> {
    if !r.status.is_complete() {
        return None;
    }
    match (&r.result, r.multi.as_ref().and_then(|m| m.result.as_ref())) {
        (Some(res), None) if r.multi.is_none() => Some((res.test_metric, res.metric.to_string())),
        (_, Some(res)) => res
            .tasks
            .iter()
            .find(|t| t.task == task)
            .map(|t| (t.test_metric, t.metric.to_string())),
        _ => None,
    }
}

/// The seed groups of the rows shown: for each row, every finished (or early-stopped) run in
/// the store that differs from it only in seed, the latest of each seed; a group needs two
/// seeds or more.
pub fn seed_groups(session: &Session, rows: &[Row]) -> Vec<SeedGroup> {
    let mut keys: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for row in rows {
        let Some(rec) = session.store.get(&row.id) else {
            continue;
        };
        let key = group_key(rec);
        let full = format!("{key}\n{}", row.task);
        if key.is_empty() || keys.contains(&full) {
            continue;
        }
        keys.push(full);
        let mut members: Vec<(u64, &RunRecord, f64, String)> = Vec::new();
        for r in session.store.runs.iter().rev() {
            let seed = r.spec.config.seed;
            if members.iter().any(|m| m.0 == seed) || group_key(r) != key {
                continue;
            }
            if let Some((test, metric)) = test_on(r, &row.task) {
                members.push((seed, r, test, metric));
            }
        }
        if members.len() < 2 {
            continue;
        }
        members.sort_by_key(|m| m.0);
        let tests: Vec<f64> = members.iter().map(|m| m.2).collect();
        let seeds: Vec<u64> = members.iter().map(|m| m.0).collect();
        out.push(SeedGroup {
            label: format!(
                "{} on {}, seeds {}",
                rec.method().id(),
                row.task,
                stats::format_seeds(&seeds)
            ),
            task: row.task.clone(),
            metric: members[0].3.clone(),
            ids: members.iter().map(|m| m.1.id.clone()).collect(),
            summary: stats::Summary::of(&tests).expect("two seeds or more"),
            seeds,
            tests,
        });
    }
    out
}

/// The selected finished runs or, with none selected, the latest finished run of each method on
/// the current task and model and the latest finished multi-task run that trained it.
fn picked<'a>(session: &'a Session, selected: &BTreeSet<String>) -> Vec<&'a RunRecord> {
    let store = &session.store;
    let mut picked: Vec<&RunRecord> = store
        .runs
        .iter()
        // A stopped run's best checkpoint so far has a result too, and the user picked it.
        .filter(|r| selected.contains(&r.id) && !r.status.is_live())
        .collect();
    if selected.is_empty() {
        if let (Some(task), Some(model)) = (&session.task, session.model_spec()) {
            picked.extend(store.latest_finished_multi(&task.spec.name, model));
            for m in MethodKind::ALL {
                if let Some(r) = store.latest_finished(&task.spec.name, model, m) {
                    picked.push(r);
                }
            }
        }
    }
    picked
}

/// The storage picture of every multi-task run compared.
pub fn storage(session: &Session, selected: &BTreeSet<String>) -> Vec<(String, Storage)> {
    multi_results(session, selected)
        .into_iter()
        .map(|(r, res)| (run_label(r), Storage::of(res)))
        .collect()
}

/// Why P-Tuning's trainable share is large next to its small stored size.
pub const P_TUNING_NOTE: &str = "P-Tuning trains a prompt encoder (an LSTM or MLP) that produces \
its vectors, so many parameters train; only the vectors it produced are stored, and the encoder \
is dropped at export: hence a large trainable share next to a few kilobytes stored.";

/// The header of the comparison table (and of its CSV).
pub const CSV_HEADER: [&str; 20] = [
    "run",
    "id",
    "method",
    "task",
    "status",
    "metric",
    "test",
    "test_examples",
    "test_ci95_low",
    "test_ci95_high",
    "dev",
    "steps",
    "steps_asked",
    "seed",
    "trainable_params",
    "percent_of_model",
    "bytes_stored_per_task",
    "wall_seconds",
    "template",
    "learned",
];

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The comparison as CSV: a header, then one line per row. `learned` gives a row's learned
/// prompt summary where one is known.
pub fn csv(rows: &[Row], learned: impl Fn(&Row) -> Option<String>) -> String {
    let mut out = CSV_HEADER.join(",");
    out.push('\n');
    for r in rows {
        let share = if r.model_params > 0 {
            format!("{:.6}", 100.0 * r.trainable as f64 / r.model_params as f64)
        } else {
            String::new()
        };
        let ci = r.test_n.and_then(|n| stats::wilson_interval(r.test, n));
        let fields = [
            r.run.clone(),
            r.id.clone(),
            r.method.id().to_string(),
            r.task.clone(),
            r.status.label().to_string(),
            r.metric.clone(),
            format!("{}", r.test),
            r.test_n.map(|n| n.to_string()).unwrap_or_default(),
            ci.map(|c| format!("{:.4}", c.0)).unwrap_or_default(),
            ci.map(|c| format!("{:.4}", c.1)).unwrap_or_default(),
            format!("{}", r.dev),
            r.steps.to_string(),
            r.total_steps.to_string(),
            r.seed.to_string(),
            r.trainable.to_string(),
            share,
            r.bytes.to_string(),
            format!("{:.3}", r.wall_seconds),
            r.template.clone(),
            learned(r).unwrap_or_default(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// The one-line summary of a learned prompt: the nearest token of each soft vector, or the
/// trigger text.
pub fn learned_summary(l: &Learned) -> String {
    match l {
        Learned::Soft(vectors) => {
            let tops: Vec<String> = vectors
                .iter()
                .map(|v| v.first().map(|t| format!("{:?}", t.0)).unwrap_or_default())
                .collect();
            format!("nearest tokens: {}", tops.join(" "))
        }
        Learned::Triggers { text, .. } => format!("triggers: {text:?}"),
        Learned::Opaque(why) => why.clone(),
    }
}

/// What a row's method learned that needs no reading of its prompt folder.
fn learned_without_reading(r: &Row) -> Option<String> {
    match r.method {
        MethodKind::Autoprompt => r.readable.as_ref().map(|t| match &r.label_tokens {
            Some(found) => format!("triggers: {t:?}; label tokens: {found}"),
            None => format!("triggers: {t:?}"),
        }),
        MethodKind::PrefixTuning => {
            Some("a key/value prefix in every layer (no tokens to read)".into())
        }
        MethodKind::FineTuning => Some("changed weights (no prompt)".into()),
        MethodKind::ZeroShot => Some("nothing (the template as written)".into()),
        MethodKind::PromptTuning | MethodKind::PTuning => None,
    }
}

/// The comparison view; the runs it compares are the runs view's selection.
#[derive(Default)]
pub struct Compare {
    /// Nearest-token summaries of soft prompts, by prompt folder, read in the background.
    learned: HashMap<PathBuf, Job<String>>,
    /// Where "Save as CSV" writes, and how the last save went.
    pub csv_path: String,
    save: Option<Job<PathBuf>>,
    /// The bar chart's PNG export.
    pub bars_png: super::png::Export,
}

impl Compare {
    /// A row's learned prompt summary: known from the record, read (the run's model loaded),
    /// or why not yet.
    fn learned(&mut self, r: &Row, session: &Session) -> Option<String> {
        if let Some(s) = learned_without_reading(r) {
            return Some(s);
        }
        let dir = r.artifact.clone()?;
        let model = session.model.ready().filter(|m| m.spec == r.model)?.clone();
        let job = self.learned.entry(dir.clone()).or_insert_with(|| {
            Job::spawn("reading the prompt...", move || {
                let art = Artifact::load(&dir)?;
                let l = crate::playground::inspect(&model, &art, 1)?;
                Ok(learned_summary(&l))
            })
        });
        job.poll();
        match job.result() {
            Some(Ok(s)) => Some(s.clone()),
            Some(Err(e)) => Some(format!("(cannot read: {e})")),
            None => None,
        }
    }

    /// Whether a background read or save is under way.
    pub fn busy(&self) -> bool {
        self.learned.values().any(Job::is_running)
            || self.save.as_ref().is_some_and(Job::is_running)
            || self.bars_png.busy()
    }

    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        session: &Session,
        selected: &BTreeSet<String>,
    ) -> Option<Action> {
        let mut action = None;
        let rows = rows(session, selected);
        ui.horizontal(|ui| {
            if ui
                .add_enabled(
                    session.store.read_only().is_none(),
                    egui::Button::new("Run the baselines"),
                )
                .on_hover_text("queue zero-shot and fine-tuning on the current task and model")
                .on_disabled_hover_text("read-only: another workbench is using the runs folder")
                .clicked()
            {
                action = Some(Action::QueueBaselines);
            }
            if selected.is_empty() {
                ui.weak("No runs selected (Runs tab): showing the latest finished run of each method on the current task.");
            }
        });
        if let Some(task) = &session.task {
            let model = session.model_spec().unwrap_or("");
            for m in [MethodKind::FineTuning, MethodKind::ZeroShot] {
                if session
                    .store
                    .latest_finished(&task.spec.name, model, m)
                    .is_none()
                {
                    ui.weak(format!(
                        "no finished {} run for {} on this model yet",
                        m.id(),
                        task.spec.name
                    ));
                }
            }
        }
        if rows.is_empty() {
            ui.label("Nothing to compare yet: train a method, then come back.");
            return action;
        }
        let learned: Vec<Option<String>> = rows.iter().map(|r| self.learned(r, session)).collect();
        let records: Vec<&RunRecord> = rows
            .iter()
            .filter_map(|r| session.store.get(&r.id))
            .collect();
        let colors = RunColors::of(&records, &[]);
        let text_color = ui.visuals().text_color();
        let color_of = |r: &Row| {
            session
                .store
                .get(&r.id)
                .map(|rec| colors.get(rec))
                .unwrap_or(text_color)
        };
        // Not shrunk to the table: a short table's floating horizontal scroll bar sat over its
        // last row and took the clicks meant for it.
        egui::ScrollArea::both()
            .auto_shrink([false, false])
            .show(ui, |ui| {
            egui::Grid::new("compare")
                .striped(true)
                .num_columns(13)
                .show(ui, |ui| {
                    // The table scrolls sideways: its cells keep their lines whole rather
                    // than wrap the last column to a word per line.
                    ui.style_mut().wrap_mode = Some(egui::TextWrapMode::Extend);
                    for h in [
                        "run",
                        "task",
                        "test metric",
                        "test, 95% interval",
                        "dev",
                        "steps",
                        "seed",
                        "trainable params",
                        "% of model",
                        "bytes stored per task",
                        "wall time",
                        "learned prompt",
                        "",
                    ] {
                        ui.strong(h);
                    }
                    ui.end_row();
                    for (r, learned) in rows.iter().zip(&learned) {
                        ui.label(egui::RichText::new(&r.run).color(color_of(r)));
                        ui.label(&r.task);
                        ui.label(format!("{:.3} {}", r.test, r.metric));
                        ui.label(stats::score_with_interval(r.test, r.test_n))
                            .on_hover_text(INTERVAL_NOTE);
                        ui.label(format!("{:.3}", r.dev));
                        let steps = ui.label(format!("{} / {}", r.steps, r.total_steps));
                        if r.status != RunStatus::Finished {
                            steps.on_hover_text(format!(
                                "{}: {}",
                                r.status.label(),
                                r.status.meaning()
                            ));
                        }
                        ui.label(r.seed.to_string());
                        ui.label(r.trainable.to_string());
                        let share = ui.label(if r.model_params > 0 {
                            format!("{:.4}%", 100.0 * r.trainable as f64 / r.model_params as f64)
                        } else {
                            String::new()
                        });
                        if r.method == MethodKind::PTuning {
                            share.on_hover_text(P_TUNING_NOTE);
                        }
                        ui.label(human_bytes(r.bytes));
                        ui.label(super::training::fmt_secs(r.wall_seconds));
                        ui.vertical(|ui| {
                            ui.monospace(&r.template);
                            match learned {
                                Some(l) => ui.weak(l),
                                None if r.artifact.is_some() => ui.weak(
                                    "nearest tokens: load the run's model to read them",
                                ),
                                None => ui.weak(""),
                            };
                        });
                        let mut note = r.note();
                        if r.status != RunStatus::Finished {
                            note = [note, r.status.label().to_string()]
                                .into_iter()
                                .filter(|n| !n.is_empty())
                                .collect::<Vec<_>>()
                                .join(", ");
                        }
                        let note = ui.weak(note);
                        if r.multi_task.is_some() {
                            note.on_hover_text(
                                "one run trained every task's prompt: its trainable parameters and \
                                 wall time are the whole run's; bytes are this task's prompt folder",
                            );
                        }
                        ui.end_row();
                    }
                });
            if rows.iter().any(|r| r.method == MethodKind::PTuning) {
                ui.weak(P_TUNING_NOTE);
            }
            self.csv_ui(ui, session, &rows, &learned);
            for (label, s) in storage(session, selected) {
                storage_ui(ui, &label, &s);
            }
            let groups = seed_groups(session, &rows);
            ui.add_space(8.0);
            ui.strong("Test metric");
            let mut rect = bars_ui(ui, &rows, color_of);
            if !groups.is_empty() {
                ui.add_space(6.0);
                ui.strong("Runs that differ only in seed (mean ± sample std over the seeds)");
                rect = rect.union(groups_ui(ui, &groups));
            }
            let path = session
                .store
                .dir()
                .join("exports")
                .join(super::png::file_name("compare"));
            self.bars_png.ui(ui, "Save bars as PNG", rect, path);
        });
        action
    }

    /// Copy the table as CSV, or save it into a file (on a background thread).
    fn csv_ui(
        &mut self,
        ui: &mut egui::Ui,
        session: &Session,
        rows: &[Row],
        learned: &[Option<String>],
    ) {
        let text = || {
            csv(rows, |r| {
                rows.iter()
                    .position(|x| std::ptr::eq(x, r))
                    .and_then(|i| learned[i].clone())
            })
        };
        if self.csv_path.is_empty() {
            self.csv_path = session
                .store
                .dir()
                .join("compare.csv")
                .display()
                .to_string();
        }
        ui.horizontal(|ui| {
            if ui.button("Copy table as CSV").clicked() {
                ui.ctx().copy_text(text());
            }
            ui.add(egui::TextEdit::singleline(&mut self.csv_path).desired_width(320.0));
            let saving = self.save.as_ref().is_some_and(Job::is_running);
            if ui
                .add_enabled(!saving, egui::Button::new("Save as CSV"))
                .clicked()
            {
                let path = PathBuf::from(self.csv_path.trim());
                let body = text();
                self.save = Some(Job::spawn("saving the CSV...", move || {
                    crate::atomic::write_file(&path, body.as_bytes())?;
                    Ok(path)
                }));
            }
            if let Some(job) = &mut self.save {
                job.poll();
                match job.result() {
                    Some(Ok(p)) => {
                        ui.weak(format!("saved {}", p.display()));
                    }
                    Some(Err(e)) => {
                        ui.colored_label(ui.visuals().error_fg_color, e);
                    }
                    None => {
                        ui.spinner();
                    }
                }
            }
        });
    }
}

/// What the interval column means, for a hover.
pub const INTERVAL_NOTE: &str = "95% confidence interval of the test score (Wilson score \
interval) on n test examples: how far the score could be from the run's true accuracy by the luck \
of a small test set";

/// A whisker over a bar of `rect` (scaled 0..1): a line from `lo` to `hi` with end caps.
fn whisker(p: &egui::Painter, rect: egui::Rect, lo: f64, hi: f64, color: egui::Color32) {
    let x = |v: f64| rect.left() + rect.width() * v.clamp(0.0, 1.0) as f32;
    let y = rect.center().y;
    let stroke = egui::Stroke::new(1.5, color);
    p.line_segment([egui::pos2(x(lo), y), egui::pos2(x(hi), y)], stroke);
    for v in [lo, hi] {
        p.line_segment(
            [egui::pos2(x(v), y - 5.0), egui::pos2(x(v), y + 5.0)],
            stroke,
        );
    }
}

/// Each seed group as a bar at its mean with a ±std whisker, and the line beside it.
fn groups_ui(ui: &mut egui::Ui, groups: &[SeedGroup]) -> egui::Rect {
    let width = bar_width(
        ui,
        groups.iter().map(|g| g.label.clone()),
        groups.iter().map(SeedGroup::line),
    );
    egui::Grid::new("compare-seed-groups")
        .num_columns(3)
        .spacing([8.0, 4.0])
        .show(ui, |ui| {
            for g in groups {
                ui.label(&g.label);
                let (rect, resp) =
                    ui.allocate_exact_size(egui::vec2(width, 16.0), egui::Sense::hover());
                let p = ui.painter();
                p.rect_filled(rect, 2.0, ui.visuals().extreme_bg_color);
                let bar = egui::Rect::from_min_size(
                    rect.min,
                    egui::vec2(rect.width() * g.summary.mean.clamp(0.0, 1.0) as f32, 16.0),
                );
                p.rect_filled(bar, 2.0, ui.visuals().selection.bg_fill);
                if let Some(s) = g.summary.std {
                    whisker(
                        p,
                        rect,
                        g.summary.mean - s,
                        g.summary.mean + s,
                        ui.visuals().text_color(),
                    );
                }
                let each: Vec<String> = g
                    .seeds
                    .iter()
                    .zip(&g.tests)
                    .map(|(s, t)| format!("seed {s}: {t:.3}"))
                    .collect();
                resp.on_hover_text(format!("{}\n{}", g.label, each.join("\n")));
                ui.label(g.line());
                ui.end_row();
            }
        })
        .response
        .rect
}

/// The test metric as horizontal bars, one table row each: the label in a column of its own
/// (never dropped nor cut, however many bars: egui_plot dropped one of six bar labels), the bar
/// scaled to 0..1, and the value; hovering a bar says everything about it.
fn bars_ui(
    ui: &mut egui::Ui,
    rows: &[Row],
    color_of: impl Fn(&Row) -> egui::Color32,
) -> egui::Rect {
    let width = bar_width(
        ui,
        rows.iter().map(|r| r.label.clone()),
        rows.iter().map(|r| format!("{:.3}", r.test)),
    );
    egui::Grid::new("compare-bars")
        .num_columns(3)
        .spacing([8.0, 4.0])
        .show(ui, |ui| {
            for r in rows {
                ui.label(&r.label);
                let (rect, resp) =
                    ui.allocate_exact_size(egui::vec2(width, 16.0), egui::Sense::hover());
                let p = ui.painter();
                p.rect_filled(rect, 2.0, ui.visuals().extreme_bg_color);
                let v = r.test.clamp(0.0, 1.0) as f32;
                let bar = egui::Rect::from_min_size(rect.min, egui::vec2(rect.width() * v, 16.0));
                p.rect_filled(bar, 2.0, color_of(r));
                let ci = r.test_n.and_then(|n| stats::wilson_interval(r.test, n));
                if let Some((lo, hi)) = ci {
                    whisker(p, rect, lo, hi, ui.visuals().text_color());
                }
                resp.on_hover_text(format!(
                    "{}\n{}: test {} {}, dev {:.3}, {} of {} steps, seed {}",
                    r.label,
                    r.task,
                    stats::score_with_interval(r.test, r.test_n),
                    r.metric,
                    r.dev,
                    r.steps,
                    r.total_steps,
                    r.seed
                ));
                ui.label(format!("{:.3}", r.test));
                ui.end_row();
            }
        })
        .response
        .rect
}

/// The bars' width: what the widest label and the widest value leave of the row (so neither
/// text is ever cut: a seed group's "test accuracy 0.980 ± 0.000 (n=3)" was clipped at the
/// window's edge behind a bar sized from the width alone), at most 480 px and at least 60.
fn bar_width(
    ui: &egui::Ui,
    labels: impl Iterator<Item = String>,
    values: impl Iterator<Item = String>,
) -> f32 {
    let font = egui::TextStyle::Body.resolve(ui.style());
    let widest = |texts: &mut dyn Iterator<Item = String>| {
        texts
            .map(|t| {
                ui.painter()
                    .layout_no_wrap(t, font.clone(), egui::Color32::WHITE)
                    .size()
                    .x
            })
            .fold(0.0f32, f32::max)
    };
    let (label, value) = (widest(&mut { labels }), widest(&mut { values }));
    // What is visible, not what is available: the view scrolls sideways for the wide table, so
    // the available width runs past the window's edge.
    let visible = (ui.clip_rect().right() - ui.cursor().left()).min(ui.available_width());
    // Two grid gaps of 8 px, and a margin for the whisker's end cap.
    (visible - label - value - 24.0).clamp(60.0, 480.0)
}

/// One multi-task run's storage: its two ways of keeping N tasks, and how many times smaller
/// the prompts are.
fn storage_ui(ui: &mut egui::Ui, label: &str, s: &Storage) {
    ui.add_space(6.0);
    ui.strong(format!("Storage for {} tasks ({label})", s.tasks));
    egui::Grid::new(("storage", label))
        .num_columns(2)
        .show(ui, |ui| {
            ui.label(s.prompts_line());
            ui.label(format!("= {}", human_bytes(s.prompts_total())));
            ui.end_row();
            ui.label(s.copies_line());
            ui.label(format!("= {}", human_bytes(s.copies_total())));
            ui.end_row();
        });
    if s.prompts_total() > 0 {
        ui.weak(format!(
            "The prompts keep these {} tasks in {:.1}× less than fine-tuned copies (model \
             weights as f32).",
            s.tasks,
            s.copies_total() as f64 / s.prompts_total() as f64
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csv_has_a_header_and_quotes_commas_quotes_and_line_breaks() {
        let row = Row {
            id: "1-001-autoprompt".into(),
            run: "mine, \"best\"".into(),
            label: "mine".into(),
            method: MethodKind::Autoprompt,
            task: "t".into(),
            metric: "accuracy".into(),
            test: 0.75,
            test_n: Some(20),
            trainable: 0,
            model_params: 1000,
            bytes: 16,
            wall_seconds: 2.0,
            baseline: false,
            multi_task: None,
            single_task_peer: false,
            imported: None,
            dev: 0.5,
            steps: 60,
            total_steps: 100,
            seed: 3,
            status: RunStatus::EarlyStopped,
            template: "[T*2] {x}\n[ANSWER]".into(),
            readable: Some("atlas globe".into()),
            label_tokens: None,
            artifact: None,
            model: "m".into(),
        };
        let text = csv(&[row], learned_without_reading);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], CSV_HEADER.join(","));
        assert!(
            text.contains("\"mine, \"\"best\"\"\",1-001-autoprompt,autoprompt,t,early-stopped,accuracy,0.75,20,0.5313,0.8881,0.5,60,100,3,0,0.000000,16,2.000,\"[T*2] {x}\n[ANSWER]\",\"triggers: \"\"atlas globe\"\"\""),
            "{text}"
        );
    }
}
