//! The runs table's columns: every setting and every result of a run as text and as a sort
//! key, so the runs view can sort by any column and filter on any cell. Plain functions over
//! [`RunRecord`]; knows nothing of egui.

use super::{human_bytes, run_label};
use crate::methods::{Encoder, Judge, MethodKind, SoftInit};
use crate::run::{default_lr, Mix};
use crate::runs::RunRecord;
use std::cmp::Ordering;

/// How a cell sorts: numbers by value (empty cells last), text alphabetically.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    Num(Option<f64>),
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub text: String,
    pub key: Key,
}

fn text(s: impl Into<String>) -> Cell {
    let text = s.into();
    Cell {
        key: Key::Text(text.to_lowercase()),
        text,
    }
}

fn num(v: Option<f64>, shown: impl FnOnce(f64) -> String) -> Cell {
    Cell {
        text: v.map(shown).unwrap_or_default(),
        key: Key::Num(v),
    }
}

fn count(v: Option<usize>) -> Cell {
    num(v.map(|v| v as f64), |v| format!("{v}"))
}

/// One column: its header, what its hover says, and its cell for a run.
pub struct Column {
    pub name: &'static str,
    pub about: &'static str,
    pub cell: fn(&RunRecord) -> Cell,
}

/// Whether a method uses a setting (other methods leave that column empty).
fn uses(r: &RunRecord, methods: &[MethodKind]) -> bool {
    methods.contains(&r.method())
}

fn trains(r: &RunRecord) -> bool {
    r.method() != MethodKind::ZeroShot
}

/// Test metric, dev metric, trainable share and stored bytes of a run, single- or multi-task
/// (then the mean over tasks, and all tasks' prompts).
struct Scores {
    dev: f64,
    test: f64,
    best_step: usize,
    trainable: usize,
    model_params: usize,
    bytes: usize,
    wall: f64,
    first_loss: Option<f32>,
    last_loss: Option<f32>,
}

fn scores(r: &RunRecord) -> Option<Scores> {
    if let Some(res) = &r.result {
        return Some(Scores {
            dev: res.dev_metric,
            test: res.test_metric,
            best_step: res.best_step,
            trainable: res.trainable_params,
            model_params: res.model_params,
            bytes: res.artifact_bytes,
            wall: res.wall_seconds,
            first_loss: res.train_loss_first,
            last_loss: res.train_loss_last,
        });
    }
    let res = r.multi.as_ref()?.result.as_ref()?;
    Some(Scores {
        dev: res.dev_metric,
        test: res.test_metric,
        best_step: res.best_step,
        trainable: res.trainable_params,
        model_params: res.model_params,
        bytes: res.artifact_bytes,
        wall: res.wall_seconds,
        first_loss: res.train_loss_first,
        last_loss: res.train_loss_last,
    })
}

fn metric3(v: f64) -> String {
    format!("{v:.3}")
}

/// The columns, in the order the table shows them: the run, how it ended and its scores first
/// (what is looked for most, visible without scrolling), then where and every setting, then
/// every other result.
pub fn columns() -> Vec<Column> {
    vec![
        Column {
            name: "run",
            about: "the run's name (rename it in its details), else its method and id",
            cell: |r| text(run_label(r)),
        },
        Column {
            name: "status",
            about: "finished, early-stopped (patience), stopped (by you), interrupted (the app went away), failed, cancelled (taken off the queue)",
            cell: |r| text(r.status.label()),
        },
        Column {
            name: "method",
            about: "the training method",
            cell: |r| text(r.method().id()),
        },
        Column {
            name: "task",
            about: "the task (a multi-task run's tasks joined with +)",
            cell: |r| text(&r.task),
        },
        Column {
            name: "test",
            about: "test metric of the best checkpoint",
            cell: |r| num(scores(r).map(|s| s.test), metric3),
        },
        Column {
            name: "dev",
            about: "dev metric at the best checkpoint (the last evaluation while it runs; a multi-task run's mean over tasks)",
            cell: |r| match scores(r) {
                Some(s) => num(Some(s.dev), metric3),
                None => num(r.evals.last().map(|e| e.1), metric3),
            },
        },
        Column {
            name: "metric",
            about: "what dev and test measure",
            cell: |r| {
                text(match (&r.multi, r.metric_name()) {
                    (Some(_), None) => "mean of the tasks' metrics".to_string(),
                    (_, m) => m.map(|m| m.to_string()).unwrap_or_default(),
                })
            },
        },
        Column {
            name: "steps",
            about: "steps trained of steps asked for",
            cell: |r| {
                let done = r.result_steps().unwrap_or_else(|| r.step());
                let total = if r.total_steps > 0 {
                    r.total_steps
                } else {
                    r.spec.config.steps
                };
                Cell {
                    text: format!("{done} / {total}"),
                    key: Key::Num(Some(done as f64)),
                }
            },
        },
        Column {
            name: "model",
            about: "the model's file or folder name",
            cell: |r| text(super::runs_view::short_model(&r.model)),
        },
        Column {
            name: "created",
            about: "when the run was queued (UTC)",
            cell: |r| Cell {
                text: utc(r.created_ms),
                key: Key::Num(Some(r.created_ms as f64)),
            },
        },
        Column {
            name: "lr",
            about: "peak learning rate (the method's default where none was set)",
            cell: |r| {
                let uses_lr = !matches!(r.method(), MethodKind::ZeroShot | MethodKind::Autoprompt);
                let lr = uses_lr.then(|| r.spec.config.lr.unwrap_or_else(|| default_lr(r.method())));
                num(lr, |v| format!("{v}"))
            },
        },
        Column {
            name: "batch",
            about: "rows per micro-batch",
            cell: |r| count(trains(r).then_some(r.spec.config.batch_size)),
        },
        Column {
            name: "grad accum",
            about: "micro-batches per update",
            cell: |r| count(trains(r).then_some(r.spec.config.grad_accum)),
        },
        Column {
            name: "eval every",
            about: "steps between dev evaluations",
            cell: |r| count(trains(r).then_some(r.spec.config.eval_every)),
        },
        Column {
            name: "patience",
            about: "evaluations without a better dev score before stopping early (0: never)",
            cell: |r| count(trains(r).then_some(r.spec.config.patience)),
        },
        Column {
            name: "warmup",
            about: "fraction of the steps warming the learning rate up",
            cell: |r| num(trains(r).then_some(r.spec.config.warmup), |v| format!("{v}")),
        },
        Column {
            name: "seed",
            about: "the random seed",
            cell: |r| count(Some(r.spec.config.seed as usize)),
        },
        Column {
            name: "virtual tokens",
            about: "Prompt Tuning / P-Tuning: soft vectors added when the template has none",
            cell: |r| {
                count(
                    uses(r, &[MethodKind::PromptTuning, MethodKind::PTuning])
                        .then_some(r.spec.settings.num_virtual_tokens),
                )
            },
        },
        Column {
            name: "init",
            about: "Prompt Tuning: how the soft vectors start",
            cell: |r| {
                text(if uses(r, &[MethodKind::PromptTuning]) {
                    match &r.spec.settings.init {
                        SoftInit::Random => "random".to_string(),
                        SoftInit::Vocab => "vocab".to_string(),
                        SoftInit::Labels => "labels".to_string(),
                        SoftInit::Text(t) => format!("text {t:?}"),
                    }
                } else {
                    String::new()
                })
            },
        },
        Column {
            name: "prefix",
            about: "Prefix Tuning: prefix length and the MLP's hidden width",
            cell: |r| {
                let s = &r.spec.settings;
                let on = uses(r, &[MethodKind::PrefixTuning]);
                num(on.then_some(s.prefix_len as f64), |_| {
                    format!("{}, MLP {}", s.prefix_len, s.prefix_hidden)
                })
            },
        },
        Column {
            name: "encoder",
            about: "P-Tuning: the prompt encoder and its hidden width",
            cell: |r| {
                let s = &r.spec.settings;
                text(if uses(r, &[MethodKind::PTuning]) {
                    let e = match s.encoder {
                        Encoder::Lstm => "LSTM",
                        Encoder::Mlp => "MLP",
                    };
                    format!("{e} {}", s.encoder_hidden)
                } else {
                    String::new()
                })
            },
        },
        Column {
            name: "triggers",
            about: "AutoPrompt: trigger slots added when the template has none, candidates per slot, and whether candidates were judged by accuracy instead of loss",
            cell: |r| {
                let s = &r.spec.settings;
                let on = uses(r, &[MethodKind::Autoprompt]);
                num(on.then_some(s.num_triggers as f64), |_| {
                    let by = match s.judge {
                        Judge::Loss => "",
                        Judge::Accuracy => ", by accuracy",
                    };
                    format!("{}, top-k {}{by}", s.num_triggers, s.top_k)
                })
            },
        },
        Column {
            name: "multi-task",
            about: "a multi-task run: how many tasks, how batches mix them, and the shared vectors",
            cell: |r| match &r.multi {
                Some(m) => Cell {
                    text: format!(
                        "{} tasks, mix {}, shared {}",
                        m.tasks.len(),
                        match m.mix {
                            Mix::Proportional => "proportional",
                            Mix::Uniform => "uniform",
                        },
                        m.shared_tokens
                    ),
                    key: Key::Num(Some(m.tasks.len() as f64)),
                },
                None => num(None, |_| String::new()),
            },
        },
        Column {
            name: "template",
            about: "the template as the engine resolved it",
            cell: |r| {
                text(
                    r.template
                        .as_deref()
                        .or(r.spec.template.as_deref())
                        .unwrap_or("(task default)"),
                )
            },
        },
        Column {
            name: "best step",
            about: "the step of the best dev score, whose prompt is kept",
            cell: |r| count(scores(r).map(|s| s.best_step)),
        },
        Column {
            name: "trainable",
            about: "trainable parameters",
            cell: |r| count(scores(r).map(|s| s.trainable).or(r.trainable_params)),
        },
        Column {
            name: "% of model",
            about: "trainable parameters as a share of the model's",
            cell: |r| {
                let share = scores(r)
                    .map(|s| (s.trainable, s.model_params))
                    .or(r.trainable_params.zip(r.model_params))
                    .filter(|(_, m)| *m > 0)
                    .map(|(t, m)| 100.0 * t as f64 / m as f64);
                num(share, |v| format!("{v:.4}%"))
            },
        },
        Column {
            name: "stored",
            about: "bytes stored per task (all tasks' prompts for a multi-task run)",
            cell: |r| num(scores(r).map(|s| s.bytes as f64), |v| human_bytes(v as usize)),
        },
        Column {
            name: "wall time",
            about: "training and evaluation time",
            cell: |r| {
                num(scores(r).map(|s| s.wall), super::training::fmt_secs)
            },
        },
        Column {
            name: "first loss",
            about: "train loss at the first step",
            cell: |r| num(scores(r).and_then(|s| s.first_loss).map(f64::from), metric3),
        },
        Column {
            name: "last loss",
            about: "train loss at the end (mean of the last steps)",
            cell: |r| num(scores(r).and_then(|s| s.last_loss).map(f64::from), metric3),
        },
        Column {
            name: "examples/s",
            about: "training speed at the last step",
            cell: |r| num(r.examples_per_s, |v| format!("{v:.1}")),
        },
        Column {
            name: "note",
            about: "your note (edit it in the run's details)",
            cell: |r| text(r.note.lines().next().unwrap_or("")),
        },
    ]
}

/// Unix milliseconds as "2026-11-28 23:41" (UTC), without a date crate.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rest / 3600,
        (rest % 3600) / 60
    )
}

fn compare_keys(a: &Key, b: &Key) -> Ordering {
    match (a, b) {
        (Key::Num(a), Key::Num(b)) => match (a, b) {
            (Some(a), Some(b)) => a.total_cmp(b),
            // Empty cells last, whichever way the column sorts.
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        },
        (Key::Text(a), Key::Text(b)) => a.cmp(b),
        (Key::Num(_), Key::Text(_)) => Ordering::Less,
        (Key::Text(_), Key::Num(_)) => Ordering::Greater,
    }
}

/// How the table is ordered and which runs it keeps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    /// The column sorted by (`None`: newest first).
    pub sort: Option<usize>,
    pub descending: bool,
    /// Words every kept run has in some cell (case-insensitive).
    pub filter: String,
}

impl View {
    /// A click on column `c`'s header: sort by it, or flip the order if it is sorted by it.
    pub fn click(&mut self, c: usize) {
        if self.sort == Some(c) {
            self.descending = !self.descending;
        } else {
            self.sort = Some(c);
            self.descending = false;
        }
    }

    /// The runs to list, as (run, its cells), filtered and sorted.
    pub fn rows<'a>(
        &self,
        runs: &'a [RunRecord],
        columns: &[Column],
    ) -> Vec<(&'a RunRecord, Vec<Cell>)> {
        let words: Vec<String> = self
            .filter
            .to_lowercase()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let mut rows: Vec<(&RunRecord, Vec<Cell>)> = runs
            .iter()
            .rev()
            .map(|r| (r, columns.iter().map(|c| (c.cell)(r)).collect::<Vec<_>>()))
            .filter(|(r, cells)| {
                words.iter().all(|w| {
                    cells.iter().any(|c| c.text.to_lowercase().contains(w))
                        || r.note.to_lowercase().contains(w)
                })
            })
            .collect();
        if let Some(c) = self.sort.filter(|c| *c < columns.len()) {
            rows.sort_by(|a, b| {
                let o = compare_keys(&a.1[c].key, &b.1[c].key);
                let empty = |k: &Key| matches!(k, Key::Num(None));
                if self.descending && !empty(&a.1[c].key) && !empty(&b.1[c].key) {
                    o.reverse()
                } else {
                    o
                }
            });
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::RunSpec;
    use std::path::Path;

    fn run(id: &str, method: MethodKind, seed: u64) -> RunRecord {
        let mut spec = RunSpec {
            method,
            settings: Default::default(),
            template: None,
            config: Default::default(),
            out: None,
        };
        spec.config.seed = seed;
        RunRecord::new(id.into(), "m", "t", Path::new("t"), spec)
    }

    #[test]
    fn the_table_sorts_by_any_column_and_keeps_runs_matching_every_word() {
        let runs = vec![
            run("1-001-prompt-tuning", MethodKind::PromptTuning, 2),
            run("2-001-autoprompt", MethodKind::Autoprompt, 0),
            run("3-001-prefix-tuning", MethodKind::PrefixTuning, 1),
        ];
        let cols = columns();
        let seed = cols.iter().position(|c| c.name == "seed").unwrap();
        let mut view = View::default();
        let ids = |v: &View| -> Vec<String> {
            v.rows(&runs, &cols)
                .iter()
                .map(|(r, _)| r.id.clone())
                .collect()
        };
        // Newest first until a header is clicked.
        assert_eq!(ids(&view)[0], "3-001-prefix-tuning");
        view.click(seed);
        assert_eq!(
            ids(&view),
            [
                "2-001-autoprompt",
                "3-001-prefix-tuning",
                "1-001-prompt-tuning"
            ]
        );
        view.click(seed);
        assert_eq!(ids(&view)[0], "1-001-prompt-tuning");
        view.filter = "TUNING prefix".into();
        assert_eq!(ids(&view), ["3-001-prefix-tuning"]);
        // Settings a method does not use stay empty, and sort last.
        let lr = cols.iter().position(|c| c.name == "lr").unwrap();
        view = View::default();
        view.click(lr);
        assert_eq!(ids(&view)[2], "2-001-autoprompt");
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(1_764_373_312_000), "2025-11-28 23:41");
    }
}
