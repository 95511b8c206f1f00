//! Live plots: train loss per step (smoothed, optionally on a log scale) and the dev metric per
//! evaluation, with several runs overlaid and each toggleable. A multi-task run draws its mean
//! dev metric over tasks (the score that picks its checkpoint) and, dashed, one dev line per
//! task named after the task.

use super::{run_label, Session};
use crate::runs::RunRecord;
use egui_plot::{Legend, Line, LineStyle, Plot, PlotPoints, Points};
use std::collections::BTreeSet;

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

/// A run keeps its colour as other runs come and go.
fn run_color(id: &str) -> egui::Color32 {
    color(color_index(id))
}

fn color_index(id: &str) -> usize {
    let h = id.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    h as usize
}

/// Task `k` of a multi-task run: the palette's next colours after the run's own, so its tasks'
/// lines differ from each other and from the run's mean (hashing task names made two of two
/// sample tasks the same blue).
fn task_color(run_id: &str, k: usize) -> egui::Color32 {
    color(color_index(run_id) % 8 + 1 + k)
}

/// The legend name of a multi-task run's dev line for one task: the task first, so the legend
/// reads as a list of tasks; the run after it, so two runs' lines for one task stay apart.
pub fn task_line_name(run: &RunRecord, task: &str) -> String {
    format!("{task} ({})", run_label(run))
}

fn color(i: usize) -> egui::Color32 {
    const C: [(u8, u8, u8); 8] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (23, 190, 207),
    ];
    let (r, g, b) = C[i % C.len()];
    egui::Color32::from_rgb(r, g, b)
}

/// How many runs the list offers (the latest); older ones are counted, not listed.
pub const MAX_LISTED: usize = 24;

impl Plots {
    pub fn ui(&mut self, ui: &mut egui::Ui, session: &Session) {
        let task = session.task.as_ref().map(|t| t.spec.name.clone());
        let st = self;
        ui.horizontal(|ui| {
            ui.add(egui::Slider::new(&mut st.smoothing, 0.0..=0.99).text("smoothing"));
            ui.checkbox(&mut st.log_scale, "log scale");
            ui.checkbox(&mut st.current_task_only, "current task only");
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
        ui.horizontal_wrapped(|ui| {
            ui.label("runs:");
            if matching > MAX_LISTED {
                ui.weak(format!("(showing the latest {MAX_LISTED} of {matching})"));
            }
            for r in &candidates {
                let mut on = st.shown.contains(&r.id);
                let text = egui::RichText::new(run_label(r)).color(run_color(&r.id));
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
        // Both plots share the step axis, so an evaluation lines up with the loss at that step.
        let steps_axis = ui.scope_id().with("steps-axis");

        let log = st.log_scale;
        let smoothing = st.smoothing;
        let h = (ui.available_height() - 40.0).max(200.0);
        ui.label("Train loss per step");
        let mut loss_plot = Plot::new("loss")
            .height(h * 0.55)
            .legend(Legend::default())
            .link_axis(steps_axis, [true, false])
            .x_axis_label("step");
        if log {
            loss_plot = loss_plot.y_axis_formatter(|m, _| format!("{:.3}", 10f64.powf(m.value)));
        }
        loss_plot.show(ui, |p| {
            for r in &drawn {
                let tf = |v: f64| if log { v.max(1e-12).log10() } else { v };
                let raw: Vec<[f64; 2]> = r
                    .losses
                    .iter()
                    .filter_map(|&(s, l)| l.map(|l| [s as f64, tf(l as f64)]))
                    .collect();
                let sm: Vec<[f64; 2]> = smooth(&r.losses, smoothing)
                    .into_iter()
                    .map(|[s, v]| [s, tf(v)])
                    .collect();
                let c = run_color(&r.id);
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
        });
        ui.label("Dev metric per evaluation");
        // Dev metrics climb towards 1 on the right, where a top-right legend would cover them.
        Plot::new("dev")
            .height(h * 0.4)
            .legend(Legend::default().position(egui_plot::Corner::RightBottom))
            .link_axis(steps_axis, [true, false])
            .x_axis_label("step")
            .include_y(0.0)
            .include_y(1.0)
            .show(ui, |p| {
                for r in &drawn {
                    let pts: Vec<[f64; 2]> = r.evals.iter().map(|&(s, m)| [s as f64, m]).collect();
                    let c = run_color(&r.id);
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
                        let pts: Vec<[f64; 2]> =
                            evals.iter().map(|&(s, m)| [s as f64, m]).collect();
                        let c = task_color(&r.id, k);
                        let name = task_line_name(r, &t.name);
                        p.line(
                            Line::new(name.clone(), PlotPoints::new(pts.clone()))
                                .color(c)
                                .style(LineStyle::dashed_loose()),
                        );
                        p.points(Points::new(name, PlotPoints::new(pts)).color(c).radius(2.0));
                    }
                }
            });
    }
}
