//! Per-example results of scoring a split, for error analysis: for each example the text the
//! model saw, the gold answer, the prediction, its probability and whether it was right; and,
//! for classification, the confusion matrix built from them.
//!
//! `train::eval` fills [`Predictions`] from the same numbers the metric is computed from, so
//! [`Predictions::accuracy`] is the reported score. A run writes its test predictions as
//! [`PREDICTIONS_FILE`] (JSON Lines, one [`Prediction`] per line) beside its prompt, and
//! `gradprompt eval --predictions FILE` writes the same lines.
//!
//! Plain data and files: depends on the task vocabulary and `atomic` only, never on the
//! model, the trainer, the run store or a front end.

use crate::task::TaskKind;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// The test predictions of a run, in its output folder (beside `manifest.json`).
pub const PREDICTIONS_FILE: &str = "predictions.jsonl";

/// One example as it was scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The text the model saw: the template filled with the example, without soft vectors,
    /// trigger tokens or the answer.
    pub input: String,
    /// The correct answer (classification: the gold label's answer word).
    pub gold: String,
    /// Classification: the label answer ranked first. Generation: the greedy continuation.
    pub prediction: String,
    /// Classification: the predicted label's probability normalised over the labels (the
    /// softmax of their total log-probabilities, which the metric ranks). Generation: `None`
    /// (`null` in the file); the greedy text is given without a probability. Readers tell the
    /// two kinds apart by it ([`Predictions::from_rows`]).
    pub probability: Option<f64>,
    /// Counted as right by the task's metric (classification: the gold label ranked first;
    /// generation: exact match after normalisation).
    pub correct: bool,
}

/// Every example of a split, in split order.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub kind: TaskKind,
    /// Classification: the label answers in the order the model scored them (empty for
    /// generation, and for predictions read back from a file, which do not store them).
    pub labels: Vec<String>,
    pub rows: Vec<Prediction>,
}

impl Predictions {
    /// Predictions read back without their kind: classification when every row has a
    /// probability, generation otherwise (see [`Prediction::probability`]).
    pub fn from_rows(rows: Vec<Prediction>) -> Predictions {
        let classification = !rows.is_empty() && rows.iter().all(|r| r.probability.is_some());
        Predictions {
            kind: if classification {
                TaskKind::Classification
            } else {
                TaskKind::Generation
            },
            labels: Vec::new(),
            rows,
        }
    }

    pub fn correct(&self) -> usize {
        self.rows.iter().filter(|r| r.correct).count()
    }

    /// Correct over all examples: the task's metric (accuracy or exact match), 0 when empty.
    pub fn accuracy(&self) -> f64 {
        crate::task::accuracy(self.correct(), self.rows.len())
    }

    /// The confusion matrix of a classification task; `None` for generation.
    pub fn confusion(&self) -> Option<ConfusionMatrix> {
        (self.kind == TaskKind::Classification)
            .then(|| ConfusionMatrix::new(&self.labels, &self.rows))
    }

    /// The rows as JSON Lines.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        for r in &self.rows {
            // A struct of strings, numbers and booleans always serialises.
            out.push_str(&serde_json::to_string(r).unwrap_or_default());
            out.push('\n');
        }
        out
    }

    /// Writes the rows to `path` (beside it first, then renamed into place).
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::atomic::write_file(path, self.to_jsonl().as_bytes())
            .with_context(|| format!("writing the predictions to {}", path.display()))
    }

    /// Writes [`PREDICTIONS_FILE`] into a run's output folder.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.write(&dir.join(PREDICTIONS_FILE))
    }

    /// Reads a predictions file; an unreadable line is an error naming the file and the line.
    pub fn read(path: &Path) -> Result<Predictions> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let mut rows = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let row: Prediction = serde_json::from_str(line).with_context(|| {
                format!(
                    "{} line {}: not a prediction (input, gold, prediction, probability, correct)",
                    path.display(),
                    i + 1
                )
            })?;
            rows.push(row);
        }
        Ok(Predictions::from_rows(rows))
    }

    /// Reads a run's [`PREDICTIONS_FILE`]; `None` when the folder has none (runs written before
    /// predictions were kept, or whose test evaluation never ran).
    pub fn load(dir: &Path) -> Result<Option<Predictions>> {
        let path = dir.join(PREDICTIONS_FILE);
        if !path.exists() {
            return Ok(None);
        }
        Predictions::read(&path).map(Some)
    }
}

/// Refuses a path predictions cannot be written to, naming it, so a typo is found before an
/// evaluation that may take minutes: an existing folder, a parent that is missing or not a
/// folder, or a folder this process cannot write in.
pub fn check_writable(path: &Path) -> Result<()> {
    if path.is_dir() {
        bail!(
            "--predictions {}: is a folder; give a file name, e.g. {}",
            path.display(),
            path.join(PREDICTIONS_FILE).display()
        );
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!(
            "--predictions {}: the folder {} does not exist; create it or give another path",
            path.display(),
            parent.display()
        );
    }
    tempfile::Builder::new()
        .prefix(".gradprompt-probe-")
        .tempfile_in(parent)
        .map(drop)
        .with_context(|| {
            format!(
                "--predictions {}: cannot write in {}",
                path.display(),
                parent.display()
            )
        })
}

/// Counts of (gold, predicted) label pairs: `counts[gold][predicted]`, rows and columns in
/// `labels` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    pub labels: Vec<String>,
    pub counts: Vec<Vec<usize>>,
}

impl ConfusionMatrix {
    /// The matrix of `rows` over `known` labels, followed by any other label that occurs as a
    /// gold answer or a prediction, sorted (all of them, sorted, when `known` is empty).
    pub fn new(known: &[String], rows: &[Prediction]) -> ConfusionMatrix {
        let mut labels: Vec<String> = known.to_vec();
        let mut extra: Vec<String> = rows
            .iter()
            .flat_map(|r| [&r.gold, &r.prediction])
            .filter(|l| !labels.contains(l))
            .cloned()
            .collect();
        extra.sort();
        extra.dedup();
        labels.extend(extra);
        let at = |l: &str| labels.iter().position(|x| x == l).unwrap_or(0);
        let mut counts = vec![vec![0; labels.len()]; labels.len()];
        for r in rows {
            counts[at(&r.gold)][at(&r.prediction)] += 1;
        }
        ConfusionMatrix { labels, counts }
    }

    /// Every example counted.
    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }

    /// The examples whose prediction is their gold label.
    pub fn diagonal(&self) -> usize {
        (0..self.labels.len()).map(|i| self.counts[i][i]).sum()
    }
}

/// A plain-text table: one row per gold label, one column per predicted label.
impl fmt::Display for ConfusionMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = |s: &str| s.chars().count();
        let first = self
            .labels
            .iter()
            .map(|l| width(l))
            .chain([width("gold \\ predicted")])
            .max()
            .unwrap_or(0);
        let cols: Vec<usize> = self
            .labels
            .iter()
            .enumerate()
            .map(|(j, l)| {
                let widest = self.counts.iter().map(|row| row[j].to_string().len());
                widest.chain([width(l)]).max().unwrap_or(1)
            })
            .collect();
        write!(f, "{:<first$}", "gold \\ predicted")?;
        for (l, w) in self.labels.iter().zip(&cols) {
            write!(f, "  {l:>w$}")?;
        }
        writeln!(f)?;
        for (l, row) in self.labels.iter().zip(&self.counts) {
            write!(f, "{l:<first$}")?;
            for (n, w) in row.iter().zip(&cols) {
                write!(f, "  {n:>w$}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(gold: &str, prediction: &str) -> Prediction {
        Prediction {
            input: format!("{gold}?"),
            gold: gold.into(),
            prediction: prediction.into(),
            probability: Some(0.5),
            correct: gold == prediction,
        }
    }

    #[test]
    fn the_confusion_matrix_puts_gold_in_rows_and_predictions_in_columns() {
        let rows = [row("a", "a"), row("a", "b"), row("b", "b"), row("c", "a")];
        let m = ConfusionMatrix::new(&["b".into(), "a".into()], &rows);
        assert_eq!(m.labels, ["b", "a", "c"]);
        assert_eq!(m.counts, [[1, 0, 0], [1, 1, 0], [0, 1, 0]]);
        assert_eq!(m.total(), 4);
        assert_eq!(m.diagonal(), 2);
        let text = m.to_string();
        assert!(text.starts_with("gold \\ predicted  b  a  c\n"), "{text}");
        assert!(text.contains("\na                 1  1  0\n"), "{text}");
    }

    #[test]
    fn predictions_round_trip_through_their_file_and_keep_their_kind() {
        let dir = tempfile::tempdir().unwrap();
        let p = Predictions {
            kind: TaskKind::Classification,
            labels: vec!["a".into(), "b".into()],
            rows: vec![row("a", "a"), row("b", "a")],
        };
        p.save(dir.path()).unwrap();
        let back = Predictions::load(dir.path()).unwrap().unwrap();
        assert_eq!(back.rows, p.rows);
        assert_eq!(back.kind, TaskKind::Classification);
        assert_eq!(back.accuracy(), 0.5);

        let mut g = row("Paris", "Lyon");
        g.probability = None;
        let gen = Predictions::from_rows(vec![g]);
        assert_eq!(gen.kind, TaskKind::Generation);
        assert!(gen.confusion().is_none());
        assert!(gen.to_jsonl().contains("\"probability\":null"));
    }

    #[test]
    fn a_folder_without_predictions_loads_as_none_and_a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Predictions::load(dir.path()).unwrap().is_none());
        std::fs::write(dir.path().join(PREDICTIONS_FILE), "{\"input\": 1}\n").unwrap();
        let e = format!("{:#}", Predictions::load(dir.path()).unwrap_err());
        assert!(e.contains("predictions.jsonl line 1"), "{e}");
    }

    #[test]
    fn a_path_that_cannot_take_predictions_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = format!("{:#}", check_writable(dir.path()).unwrap_err());
        assert!(e.contains("is a folder"), "{e}");
        let missing = dir.path().join("no/such/folder/p.jsonl");
        let e = format!("{:#}", check_writable(&missing).unwrap_err());
        assert!(
            e.contains("does not exist") && e.contains("no/such/folder"),
            "{e}"
        );
        check_writable(&dir.path().join("p.jsonl")).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
