//! Live plots: train loss per step (smoothed, optionally on a log scale) and the dev metric per
//! evaluation, with several runs overlaid and each toggleable. A multi-task run draws its mean
//! dev metric over tasks (the score that picks its checkpoint) and, dashed, one dev line per
//! task named after the task.

use super::colors::{color, RunColors};
use super::{run_label, Session};
use crate::runs::RunRecord;
use egui_plot::{GridInput, GridMark, Line, LineStyle, Plot, PlotPoints, Points};
use std::collections::{BTreeSet, HashMap};

/// The plots view: which runs are drawn and how.
pub struct Plots {
    /// Run ids drawn.
    pub shown: BTreeSet<String>,
    /// Exponential moving average weight of the past (0: raw loss).
    pub smoothing: f32,
    pub log_scale: bool,
    /// Only the current task's runs are offered (curves of other tasks are not comparable).
    pub current_task_only: bool,
    /// Loss points drawn in the last frame, over all runs (what a test can observe).
    pub drawn_loss_points: usize,
    pub drawn_eval_points: usize,
    /// The legend names of the per-task dev lines drawn in the last frame.
    pub drawn_task_lines: Vec<String>,
    pub x_axis: XAxis,
    /// What the last frame drew (colours, titles).
    pub drawn: Drawn,
    /// Each plot's PNG export.
    pub loss_png: super::png::Export,
    pub dev_png: super::png::Export,
}

impl Default for Plots {
    fn default() -> Self {
        Plots {
            shown: BTreeSet::new(),
            smoothing: 0.6,
            log_scale: false,
            current_task_only: true,
            drawn_loss_points: 0,
            drawn_eval_points: 0,
            drawn_task_lines: Vec::new(),
            x_axis: XAxis::Steps,
            drawn: Drawn::default(),
            loss_png: Default::default(),
            dev_png: Default::default(),
        }
    }
}

/// The exponential moving average of a curve (with bias correction, so the start is not pulled
/// towards zero); non-finite losses are skipped.
pub fn smooth(points: &[(usize, Option<f32>)], weight: f32) -> Vec<[f64; 2]> {
    let w = weight.clamp(0.0, 0.999) as f64;
    let mut avg = 0.0;
    let mut norm = 0.0;
    let mut out = Vec::with_capacity(points.len());
    for &(step, loss) in points {
        let Some(l) = loss else { continue };
        avg = w * avg + (1.0 - w) * l as f64;
        norm = w * norm + (1.0 - w);
        out.push([step as f64, avg / norm]);
    }
    out
}

/// Task `k` of a multi-task run whose own colour is `run`: the palette's next colours after
/// the run's own, so its tasks' lines differ from each other and from the run's mean (hashing
/// task names made two of two sample tasks the same blue).
fn task_color(run: usize, k: usize) -> egui::Color32 {
    color(run + 1 + k)
}

/// The legend name of a multi-task run's dev line for one task: the task first, so the legend
/// reads as a list of tasks; the run after it, so two runs' lines for one task stay apart.
pub fn task_line_name(run: &RunRecord, task: &str) -> String {
    format!("{task} ({})", run_label(run))
}

/// What the plots' x axis measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    Steps,
    /// Seconds of training (pauses left out), for runs whose record has the times.
    Time,
}

/// What a frame of the plots showed, for tests to observe.
#[derive(Debug, Default, Clone)]
pub struct Drawn {
    /// Each drawn run's colour, by label.
    pub colors: Vec<(String, egui::Color32)>,
    /// The dev plot's title (it names the metric).
    pub dev_title: String,
}

/// The dev plot's title, naming the metric of the runs drawn (a multi-task run's mean is
/// over each task's own metric).
pub fn dev_title(runs: &[&RunRecord], x: XAxis) -> String {
    let mut names: Vec<String> = Vec::new();
    for r in runs {
        let name = match (&r.multi, r.metric_name()) {
            (Some(_), Some(m)) => format!("{} (mean over tasks)", metric_words(m)),
            (Some(_), None) => "mean of each task's metric".to_string(),
            (None, Some(m)) => metric_words(m).to_string(),
            (None, None) => "metric".to_string(),
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let what = if names.is_empty() {
        "metric".to_string()
    } else {
        names.join(" / ")
    };
    match x {
        XAxis::Steps => format!("Dev {what} per evaluation"),
        XAxis::Time => format!("Dev {what} over training time"),
    }
}

fn metric_words(m: crate::task::Metric) -> &'static str {
    match m {
        crate::task::Metric::Accuracy => "accuracy",
        crate::task::Metric::ExactMatch => "exact match",
    }
}

/// Grid marks at 1-2-5 steps, the labelled ones at least ~90 points apart: the default
/// (powers of ten) labelled a 100-step axis only at 0 and 100 when the tens were too close
/// for their labels. `min_step` is the smallest step labelled (1 for steps).
fn nice_marks(input: GridInput, min_step: f64) -> Vec<GridMark> {
    let (lo, hi) = input.bounds;
    if input.base_step_size <= 0.0 || !lo.is_finite() || !hi.is_finite() || hi <= lo {
        return Vec::new();
    }
    // base_step_size is the value of 8 points (egui_plot's minimum grid spacing).
    let per_point = input.base_step_size / 8.0;
    let nice = |at_least: f64| {
        let p = 10f64.powf(at_least.max(1e-12).log10().floor());
        [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|m| m * p)
            .find(|s| *s >= at_least)
            .unwrap_or(10.0 * p)
    };
    let major = nice((90.0 * per_point).max(min_step));
    let minor = nice((16.0 * per_point).max(min_step / 5.0)).min(major);
    let mut marks = Vec::new();
    for (step, size) in [(major, major), (minor, minor)] {
        let mut v = (lo / step).ceil() * step;
        while v <= hi && marks.len() < 1000 {
            let on_major = size < major && ((v / major).round() * major - v).abs() < step * 1e-6;
            if !on_major {
                marks.push(GridMark {
                    // + 0.0 turns the -0.0 that ceil gives just left of the origin into 0.0
                    // (the axis read "-0").
                    value: v + 0.0,
                    step_size: size,
                });
            }
            v += step;
        }
    }
    marks
}

/// How many runs the list offers (the latest); older ones are counted, not listed.
pub const MAX_LISTED: usize = 24;

/// The message shown instead of empty axes before there is anything to plot.
pub const PRESS_TRAIN: &str =
    "No runs to plot yet: press Train (above) to train the method set up on the left; its train \
     loss and dev score are drawn here as it trains.";

/// A run's points as (x, y) on the chosen axis: by step, or by the training time recorded for
/// that step (points without a time are left out).
fn xs<T: Copy>(points: &[(usize, T)], secs: &[(usize, f64)], x: XAxis) -> Vec<(f64, T)> {
    match x {
        XAxis::Steps => points.iter().map(|&(s, v)| (s as f64, v)).collect(),
        XAxis::Time => {
            let at: HashMap<usize, f64> = secs.iter().copied().collect();
            points
                .iter()
                .filter_map(|&(s, v)| at.get(&s).map(|&t| (t, v)))
                .collect()
        }
    }
}

impl Plots {
    pub fn ui(&mut self, ui: &mut egui::Ui, session: &Session) {
        let task = session.task.as_ref().map(|t| t.spec.name.clone());
        let st = self;
        ui.horizontal_wrapped(|ui| {
            ui.add(egui::Slider::new(&mut st.smoothing, 0.0..=0.99).text("smoothing"));
            ui.checkbox(&mut st.log_scale, "log scale");
            ui.checkbox(&mut st.current_task_only, "current task only");
            ui.label("x axis:");
            ui.selectable_value(&mut st.x_axis, XAxis::Steps, "steps");
            ui.selectable_value(&mut st.x_axis, XAxis::Time, "time")
                .on_hover_text("seconds of training, pauses left out (runs recorded before times were kept plot by steps only)");
        });
        let mut candidates: Vec<&RunRecord> = session
            .store
            .runs
            .iter()
            .rev()
            .filter(|r| !r.losses.is_empty() || !r.evals.is_empty() || r.status.is_live())
            .filter(|r| !st.current_task_only || task.as_ref().is_some_and(|t| r.covers_task(t)))
            .collect();
        let matching = candidates.len();
        candidates.truncate(MAX_LISTED);
        let drawn_before: Vec<&RunRecord> = candidates
            .iter()
            .filter(|r| st.shown.contains(&r.id))
            .copied()
            .collect();
        // The plotted runs never share a colour; the list beside them is the legend, outside
        // the plots, so it covers no data.
        let colors = RunColors::of(&drawn_before, &candidates);
        ui.horizontal_wrapped(|ui| {
            ui.label("runs:");
            if matching > MAX_LISTED {
                ui.weak(format!("(showing the latest {MAX_LISTED} of {matching})"));
            }
            for r in &candidates {
                let mut on = st.shown.contains(&r.id);
                let text = egui::RichText::new(run_label(r)).color(colors.get(r));
                if ui.checkbox(&mut on, text).changed() {
                    if on {
                        st.shown.insert(r.id.clone());
                    } else {
                        st.shown.remove(&r.id);
                    }
                }
            }
        });
        let drawn: Vec<&RunRecord> = candidates
            .iter()
            .filter(|r| st.shown.contains(&r.id))
            .copied()
            .collect();
        let colors = RunColors::of(&drawn, &candidates);
        st.drawn_loss_points = drawn
            .iter()
            .map(|r| r.losses.iter().filter(|l| l.1.is_some()).count())
            .sum();
        st.drawn_eval_points = drawn.iter().map(|r| r.evals.len()).sum();
        st.drawn_task_lines = drawn
            .iter()
            .flat_map(|r| {
                r.multi.iter().flat_map(move |m| {
                    m.tasks
                        .iter()
                        .zip(&m.task_evals)
                        .filter(|(_, e)| !e.is_empty())
                        .map(move |(t, _)| task_line_name(r, &t.name))
                })
            })
            .collect();
        let x = st.x_axis;
        st.drawn = Drawn {
            colors: drawn
                .iter()
                .map(|r| (run_label(r), colors.get(r)))
                .collect(),
            dev_title: dev_title(&drawn, x),
        };
        if drawn.is_empty() {
            ui.add_space(24.0);
            if candidates.is_empty() {
                ui.heading(PRESS_TRAIN);
            } else {
                ui.label("Tick a run above to plot it.");
            }
            return;
        }
        // Both plots share the x axis, so an evaluation lines up with the loss at that step.
        let x_link = ui.scope_id().with(("x-axis", x == XAxis::Time));
        let x_label = match x {
            XAxis::Steps => "step",
            XAxis::Time => "training time (s)",
        };
        let min_step = match x {
            XAxis::Steps => 1.0,
            XAxis::Time => 0.1,
        };

        let log = st.log_scale;
        let smoothing = st.smoothing;
        let h = (ui.available_height() - 110.0).max(200.0);
        ui.label(match x {
            XAxis::Steps => "Train loss per step",
            XAxis::Time => "Train loss over training time",
        });
        let mut loss_plot = Plot::new("loss")
            .height(h * 0.55)
            .link_axis(x_link, [true, false])
            .x_axis_label(x_label)
            .x_grid_spacer(move |g| nice_marks(g, min_step));
        if log {
            loss_plot = loss_plot.y_axis_formatter(|m, _| format!("{:.3}", 10f64.powf(m.value)));
        }
        let exports = session.store.dir().join("exports");
        let loss_rect = loss_plot
            .show(ui, |p| {
                for r in &drawn {
                    let tf = |v: f64| if log { v.max(1e-12).log10() } else { v };
                    let raw: Vec<[f64; 2]> = xs(&r.losses, &r.loss_secs, x)
                        .into_iter()
                        .filter_map(|(t, l)| l.map(|l| [t, tf(l as f64)]))
                        .collect();
                    // Smoothed by step, then placed on the chosen axis.
                    let smoothed: Vec<(usize, f64)> = smooth(&r.losses, smoothing)
                        .into_iter()
                        .map(|[s, v]| (s as usize, tf(v)))
                        .collect();
                    let sm: Vec<[f64; 2]> = xs(&smoothed, &r.loss_secs, x)
                        .into_iter()
                        .map(|(t, v)| [t, v])
                        .collect();
                    let c = colors.get(r);
                    let name = run_label(r);
                    if smoothing > 0.0 {
                        p.line(
                            Line::new(format!("{name} raw"), PlotPoints::new(raw))
                                .color(c.gamma_multiply(0.3))
                                .width(1.0),
                        );
                    }
                    p.line(Line::new(name, PlotPoints::new(sm)).color(c).width(2.0));
                }
            })
            .response
            .rect;
        let path = exports.join(super::png::file_name("loss"));
        st.loss_png.ui(ui, "Save loss plot as PNG", loss_rect, path);
        ui.label(&st.drawn.dev_title);
        let task_lines: Vec<(String, egui::Color32)> = drawn
            .iter()
            .flat_map(|r| {
                let c = colors.index(r);
                r.multi.iter().flat_map(move |m| {
                    m.tasks
                        .iter()
                        .zip(&m.task_evals)
                        .enumerate()
                        .filter(|(_, (_, e))| !e.is_empty())
                        .map(move |(k, (t, _))| (task_line_name(r, &t.name), task_color(c, k)))
                })
            })
            .collect();
        if !task_lines.is_empty() {
            ui.horizontal_wrapped(|ui| {
                ui.weak("dashed, each task:");
                for (name, c) in &task_lines {
                    ui.label(egui::RichText::new(format!("- - {name}")).color(*c));
                }
            });
        }
        let dev_rect = Plot::new("dev")
            .height(h * 0.4)
            .link_axis(x_link, [true, false])
            .x_axis_label(x_label)
            .x_grid_spacer(move |g| nice_marks(g, min_step))
            .include_y(0.0)
            .include_y(1.0)
            .show(ui, |p| {
                for r in &drawn {
                    let pts: Vec<[f64; 2]> = xs(&r.evals, &r.eval_secs, x)
                        .into_iter()
                        .map(|(t, m)| [t, m])
                        .collect();
                    let c = colors.get(r);
                    let name = match r.multi {
                        Some(_) => format!("{} mean over tasks", run_label(r)),
                        None => run_label(r),
                    };
                    p.line(Line::new(name.clone(), PlotPoints::new(pts.clone())).color(c));
                    p.points(Points::new(name, PlotPoints::new(pts)).color(c).radius(3.0));
                    let Some(m) = &r.multi else { continue };
                    for (k, (t, evals)) in m.tasks.iter().zip(&m.task_evals).enumerate() {
                        if evals.is_empty() {
                            continue;
                        }
                        let pts: Vec<[f64; 2]> = xs(evals, &r.eval_secs, x)
                            .into_iter()
                            .map(|(t, m)| [t, m])
                            .collect();
                        let c = task_color(colors.index(r), k);
                        let name = task_line_name(r, &t.name);
                        p.line(
                            Line::new(name.clone(), PlotPoints::new(pts.clone()))
                                .color(c)
                                .style(LineStyle::dashed_loose()),
                        );
                        p.points(Points::new(name, PlotPoints::new(pts)).color(c).radius(2.0));
                    }
                }
            })
            .response
            .rect;
        let path = exports.join(super::png::file_name("dev"));
        st.dev_png.ui(ui, "Save dev plot as PNG", dev_rect, path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled(bounds: (f64, f64), points: f64) -> Vec<f64> {
        let input = GridInput {
            bounds,
            base_step_size: (bounds.1 - bounds.0) / points * 8.0,
        };
        let marks = nice_marks(input, 1.0);
        let major = marks.iter().map(|m| m.step_size).fold(0.0, f64::max);
        marks
            .iter()
            .filter(|m| m.step_size == major)
            .map(|m| m.value)
            .collect()
    }

    #[test]
    fn a_hundred_steps_are_labelled_more_often_than_at_0_and_100() {
        // 100 steps over 500 points: the tens are 50 points apart, too close for labels.
        let marks = labelled((0.0, 100.0), 500.0);
        assert_eq!(marks, [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        // A short run is labelled at whole steps, never at halves.
        let marks = labelled((0.0, 4.0), 600.0);
        assert_eq!(marks, [0.0, 1.0, 2.0, 3.0, 4.0]);
        // The origin is 0, not -0, when the axis starts just left of it.
        let marks = labelled((-4.0, 100.0), 500.0);
        assert!(marks[0].is_sign_positive() && marks[0] == 0.0, "{marks:?}");
    }
}
