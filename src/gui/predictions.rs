//! A run's test predictions, for error analysis: a table of the test examples (the text the
//! model saw, the gold answer, the prediction and its probability), narrowed to the errors or by
//! words typed above it, and for a classification task the confusion matrix (gold rows,
//! predicted columns, the diagonal in the "right" colour).
//!
//! Opened from a run's details in the runs view ([`super::runs_view`]). The predictions are the
//! ones the run wrote when it evaluated its test split (`predictions.jsonl` in its prompt
//! folder, [`crate::predictions`]); they are read on a background [`Job`], never in a frame. A
//! run recorded before predictions were kept has no file, and the view says how to make one.

use super::job::Job;
use super::run_label;
use crate::predictions::{ConfusionMatrix, Prediction, Predictions, PREDICTIONS_FILE};
use crate::runs::RunRecord;
use crate::task::TaskKind;

/// The checkbox that keeps only the wrong predictions.
pub const ERRORS_ONLY: &str = "errors only";
/// The heading over the confusion matrix.
pub const CONFUSION_HEADING: &str = "Confusion matrix (rows: gold, columns: predicted)";
/// The button that closes the view.
pub const CLOSE: &str = "Close predictions";
/// Rows drawn at most; more are reached through the filter. A test split of a few thousand
/// examples would otherwise be laid out every frame.
const MAX_ROWS: usize = 500;
/// Characters of an input shown in its cell (the whole text on hover).
const INPUT_CHARS: usize = 90;

/// One run's predictions as the user looks at them.
pub struct PredictionsView {
    /// The run they belong to.
    pub run: String,
    title: String,
    job: Job<Option<Predictions>>,
    pub errors_only: bool,
    /// Words that every shown row contains (in its input, gold answer or prediction).
    pub filter: String,
    /// The rows (indices into the predictions) drawn in the last frame, for the tests.
    pub shown: Vec<usize>,
}

impl PredictionsView {
    /// Starts reading the run's predictions in the background.
    pub fn open(r: &RunRecord) -> PredictionsView {
        let job = match r.artifact_dir() {
            Some(dir) => {
                let dir = dir.to_path_buf();
                Job::spawn("reading the test predictions", move || {
                    Predictions::load(&dir)
                })
            }
            None => Job::finished("", Ok(None)),
        };
        PredictionsView {
            run: r.id.clone(),
            title: run_label(r),
            job,
            errors_only: false,
            filter: String::new(),
            shown: Vec::new(),
        }
    }

    pub fn pump(&mut self) {
        self.job.poll();
    }

    pub fn busy(&self) -> bool {
        self.job.is_running()
    }

    /// The predictions, once read (`None` while reading, when the run has none, or on error).
    pub fn predictions(&self) -> Option<&Predictions> {
        match self.job.result() {
            Some(Ok(Some(p))) => Some(p),
            _ => None,
        }
    }

    /// Draws the view; returns true when the user closed it.
    pub fn ui(&mut self, ui: &mut egui::Ui) -> bool {
        let mut close = false;
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.strong(format!("Test predictions of {}", self.title));
                if ui.button(CLOSE).clicked() {
                    close = true;
                }
            });
            let preds = match self.job.result() {
                None => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label(self.job.label());
                    });
                    return;
                }
                Some(Err(e)) => {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                    return;
                }
                Some(Ok(None)) => {
                    ui.weak(format!(
                        "This run saved no {PREDICTIONS_FILE} (runs recorded before predictions \
                         were kept have none). `gradprompt eval --task DIR --prompt \
                         RUN/prompt --predictions FILE` writes them for its prompt."
                    ));
                    return;
                }
                Some(Ok(Some(p))) => p.clone(),
            };
            self.shown = filtered(&preds.rows, self.errors_only, &self.filter);
            summary_ui(ui, &preds);
            ui.horizontal(|ui| {
                ui.checkbox(&mut self.errors_only, ERRORS_ONLY)
                    .on_hover_text("show only the examples the prompt got wrong");
                ui.label("filter:");
                ui.add(
                    egui::TextEdit::singleline(&mut self.filter)
                        .hint_text("words in the input, gold or prediction")
                        .desired_width(220.0),
                );
                if !self.filter.is_empty() && ui.small_button("Clear").clicked() {
                    self.filter.clear();
                }
            });
            if let Some(m) = preds.confusion() {
                confusion_ui(ui, &m);
            }
            table_ui(ui, &preds, &self.shown);
        });
        close
    }
}

/// Indices of the rows kept by "errors only" and by the filter's words (each must occur,
/// case-insensitively, in the row's input, gold answer or prediction).
pub fn filtered(rows: &[Prediction], errors_only: bool, filter: &str) -> Vec<usize> {
    let words: Vec<String> = filter
        .split_whitespace()
        .map(|w| w.to_lowercase())
        .collect();
    rows.iter()
        .enumerate()
        .filter(|(_, r)| !(errors_only && r.correct))
        .filter(|(_, r)| {
            let text = format!("{}\n{}\n{}", r.input, r.gold, r.prediction).to_lowercase();
            words.iter().all(|w| text.contains(w.as_str()))
        })
        .map(|(i, _)| i)
        .collect()
}

fn summary_ui(ui: &mut egui::Ui, p: &Predictions) {
    let n = p.rows.len();
    let right = p.correct();
    let probability = match p.kind {
        TaskKind::Classification => {
            "probability: the predicted label's, normalised over the labels"
        }
        TaskKind::Generation => "generation: the greedy text, no probability",
    };
    ui.label(format!(
        "{right} of {n} right ({:.1}%), {} wrong; {probability}",
        100.0 * p.accuracy(),
        n - right
    ));
}

/// The colours of right and wrong predictions (the confusion matrix's diagonal and the rest).
fn right_color() -> egui::Color32 {
    egui::Color32::from_rgb(60, 170, 80)
}

fn wrong_color(ui: &egui::Ui) -> egui::Color32 {
    ui.visuals().error_fg_color
}

fn confusion_ui(ui: &mut egui::Ui, m: &ConfusionMatrix) {
    ui.strong(CONFUSION_HEADING);
    egui::ScrollArea::horizontal()
        .id_salt("confusion-matrix")
        .show(ui, |ui| {
            egui::Grid::new("confusion-matrix")
                .striped(true)
                .show(ui, |ui| {
                    ui.weak("gold \\ predicted");
                    for l in &m.labels {
                        ui.strong(l);
                    }
                    ui.end_row();
                    for (g, row) in m.counts.iter().enumerate() {
                        ui.strong(&m.labels[g]);
                        for (p, &n) in row.iter().enumerate() {
                            let text = egui::RichText::new(n.to_string());
                            let text = if g == p {
                                // The diagonal: bold and green, whatever its count.
                                text.strong().color(right_color())
                            } else if n > 0 {
                                text.color(wrong_color(ui))
                            } else {
                                text.weak()
                            };
                            ui.label(text).on_hover_text(format!(
                                "gold {}, predicted {}: {n}",
                                m.labels[g], m.labels[p]
                            ));
                        }
                        ui.end_row();
                    }
                });
        });
}

fn table_ui(ui: &mut egui::Ui, p: &Predictions, shown: &[usize]) {
    if shown.len() < p.rows.len() {
        ui.weak(format!(
            "{} of {} examples shown",
            shown.len(),
            p.rows.len()
        ));
    }
    if shown.len() > MAX_ROWS {
        ui.weak(format!(
            "the first {MAX_ROWS} are listed; narrow them with the filter"
        ));
    }
    egui::ScrollArea::vertical()
        .id_salt("predictions-table")
        .max_height(360.0)
        .auto_shrink([false, true])
        .show(ui, |ui| {
            egui::Grid::new("predictions-table")
                .striped(true)
                .num_columns(5)
                .show(ui, |ui| {
                    for h in ["#", "input", "gold", "prediction", "probability"] {
                        ui.strong(h);
                    }
                    ui.end_row();
                    for &i in shown.iter().take(MAX_ROWS) {
                        let r = &p.rows[i];
                        ui.weak((i + 1).to_string());
                        ui.monospace(shorten(&r.input, INPUT_CHARS))
                            .on_hover_text(&r.input);
                        ui.label(&r.gold);
                        let color = if r.correct {
                            right_color()
                        } else {
                            wrong_color(ui)
                        };
                        ui.label(egui::RichText::new(&r.prediction).color(color))
                            .on_hover_text(if r.correct { "right" } else { "wrong" });
                        ui.label(match r.probability {
                            Some(q) => format!("{q:.3}"),
                            None => "-".into(),
                        });
                        ui.end_row();
                    }
                });
        });
}

fn shorten(s: &str, n: usize) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() <= n {
        one_line
    } else {
        format!("{}...", one_line.chars().take(n).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(input: &str, correct: bool) -> Prediction {
        Prediction {
            input: input.into(),
            gold: "w10".into(),
            prediction: if correct { "w10" } else { "w11" }.into(),
            probability: Some(0.6),
            correct,
        }
    }

    #[test]
    fn the_filter_keeps_errors_and_rows_holding_every_typed_word() {
        let rows = [
            row("w42 w12", true),
            row("w43 w13", false),
            row("w44 w14", false),
        ];
        assert_eq!(filtered(&rows, false, ""), [0, 1, 2]);
        assert_eq!(filtered(&rows, true, ""), [1, 2]);
        assert_eq!(filtered(&rows, true, "W43"), [1]);
        assert_eq!(filtered(&rows, false, "w4 w11"), [1, 2]);
        assert!(filtered(&rows, false, "w42 w13").is_empty());
    }
}
