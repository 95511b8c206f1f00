//! Inside a learned prompt: the nearest vocabulary tokens of soft vectors, AutoPrompt's trigger
//! text, and a playground that scores a typed input with and without the prompt. The work is
//! the engine's (`playground`), run on background threads.

use super::job::{keyed_result, retain_key, Job, Keyed};
use super::{run_label, Focus, Session};
use crate::playground::{self, Answer, Comparison, Learned};
use std::collections::BTreeMap;

/// The inspect view: what was learned and the playground, each computed for one prompt.
#[derive(Default)]
pub struct Inspect {
    /// Nearest tokens or trigger text of the prompt it was computed for.
    pub learned: Keyed<Focus, Learned>,
    /// Playground input, per field.
    pub inputs: BTreeMap<String, String>,
    /// The last playground score, with the prompt it was computed for.
    pub play: Keyed<Focus, Comparison>,
}

impl Inspect {
    pub fn pump(&mut self) {
        if let Some((_, job)) = &mut self.learned {
            job.poll();
        }
        if let Some((_, job)) = &mut self.play {
            job.poll();
        }
    }

    /// The finished inspection, with the prompt it was computed for.
    pub fn learned(&self) -> Option<(&Focus, &Result<Learned, String>)> {
        keyed_result(&self.learned)
    }

    /// The finished playground score, with the prompt it was computed for.
    pub fn play(&self) -> Option<(&Focus, &Result<Comparison, String>)> {
        keyed_result(&self.play)
    }

    /// Forgets results and pending work for any prompt other than `focus` (a result that
    /// arrives for an old focus is dropped, never shown against the new one).
    pub fn retain_focus(&mut self, focus: Option<&Focus>) {
        retain_key(&mut self.learned, focus);
        retain_key(&mut self.play, focus);
    }

    pub fn busy(&self) -> bool {
        self.learned.as_ref().is_some_and(|j| j.1.is_running())
            || self.play.as_ref().is_some_and(|j| j.1.is_running())
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, session: &mut Session) {
        focus_picker(ui, session);
        let Some(job) = session.artifact() else {
            ui.label("Choose a finished run above (or import a prompt folder in the Export tab).");
            return;
        };
        let art = match job.result() {
            None => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(job.label());
                });
                return;
            }
            Some(Ok(a)) => a.clone(),
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
                return;
            }
        };
        let focus = session.focus.clone().expect("focused");
        let m = &art.manifest;
        ui.label(format!(
            "{} on {} | test {} {:.3} | template {}",
            m.method.id(),
            m.task,
            m.result.metric,
            m.result.test_metric,
            m.template
        ));
        let Some(model) = session.model.ready().cloned() else {
            ui.weak("Load the model the prompt was trained on to look inside it.");
            return;
        };
        if let Err(e) = art.check_model(&model) {
            ui.colored_label(ui.visuals().error_fg_color, format!("{e:#}"));
            return;
        }

        ui.separator();
        ui.heading("What was learned");
        if self.learned.as_ref().map(|l| &l.0) != Some(&focus) {
            let (m2, a2) = (model.clone(), art.clone());
            self.learned = Some((
                focus.clone(),
                Job::spawn("looking inside the prompt", move || {
                    playground::inspect(&m2, &a2, playground::NEAREST_TOKENS)
                }),
            ));
        }
        match self.learned() {
            Some((_, Ok(learned))) => learned_ui(ui, learned, &m.template),
            Some((_, Err(e))) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            None => {
                ui.spinner();
            }
        }

        ui.separator();
        ui.heading("Playground");
        let task = match session.task_named(&m.task) {
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                ui.weak(e);
                return;
            }
            None => {
                ui.spinner();
                return;
            }
        };
        if self.inputs.is_empty() || m.fields.iter().any(|f| !self.inputs.contains_key(f)) {
            // Start from a real test example so that the first score means something.
            self.inputs = task
                .test
                .first()
                .map(|e| e.fields.clone())
                .unwrap_or_default();
        }
        for f in &m.fields {
            ui.horizontal(|ui| {
                let l = ui.label(format!("{{{f}}}"));
                ui.text_edit_singleline(self.inputs.entry(f.clone()).or_default())
                    .labelled_by(l.id);
            });
        }
        let scoring = self.play.as_ref().is_some_and(|j| j.1.is_running());
        ui.horizontal(|ui| {
            if ui
                .add_enabled(!scoring, egui::Button::new("Score"))
                .clicked()
            {
                let (m2, t2, a2) = (model.clone(), task.clone(), art.clone());
                let inputs = self.inputs.clone();
                self.play = Some((
                    focus.clone(),
                    Job::spawn("scoring", move || {
                        playground::compare(&m2, &t2, &a2, &inputs)
                    }),
                ));
            }
            if scoring {
                ui.spinner();
            }
        });
        match self.play() {
            Some((_, Ok(c))) => comparison_ui(ui, c),
            Some((_, Err(e))) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            None => {}
        }
    }
}

/// Picks the prompt the inspect and export views work on.
pub fn focus_picker(ui: &mut egui::Ui, session: &mut Session) {
    let current = match &session.focus {
        Some(Focus::Run(id)) => session
            .store
            .get(id)
            .map(|r| format!("{} on {}", run_label(r), r.task))
            .unwrap_or_else(|| "(deleted run)".into()),
        Some(Focus::Imported(p)) => multi_task_prompt_name(session, p)
            .unwrap_or_else(|| format!("imported {}", p.display())),
        None => "(choose a run)".into(),
    };
    let mut pick = None;
    egui::ComboBox::from_label("prompt")
        .selected_text(current)
        .show_ui(ui, |ui| {
            for r in session.store.runs.iter().rev() {
                if r.artifact_dir().is_some() {
                    let f = Focus::Run(r.id.clone());
                    let on = session.focus.as_ref() == Some(&f);
                    if ui
                        .selectable_label(on, format!("{} on {}", run_label(r), r.task))
                        .clicked()
                    {
                        pick = Some(f);
                    }
                }
                // A multi-task run's prompts: each task's folder works alone.
                let tasks = r.multi.iter().flat_map(|m| &m.tasks);
                for (t, dir) in tasks.filter_map(|t| Some((t, r.task_artifact_dir(&t.name)?))) {
                    let f = Focus::Imported(dir);
                    let on = session.focus.as_ref() == Some(&f);
                    let text = format!("{} on {} (multi-task)", run_label(r), t.name);
                    if ui.selectable_label(on, text).clicked() {
                        pick = Some(f);
                    }
                }
            }
        });
    if let Some(f) = pick {
        session.set_focus(f);
    }
}

/// A vocabulary token, quoted. A byte-level token that is part of a multi-byte character
/// decodes to U+FFFD, which the bundled fonts cannot draw (nearest tokens of the built-in
/// model's soft vectors include such pieces): it is written as the escape `\u{fffd}`.
fn quoted(token: &str) -> String {
    format!("{token:?}").replace('\u{fffd}', "\\u{fffd}")
}

/// "prompt-tuning #12345.1 on animal-class (multi-task)" when `dir` is one task's prompt folder
/// of a multi-task run in the store.
fn multi_task_prompt_name(session: &Session, dir: &std::path::Path) -> Option<String> {
    session.store.runs.iter().find_map(|r| {
        let t = r
            .multi
            .as_ref()?
            .tasks
            .iter()
            .find(|t| r.task_artifact_dir(&t.name).as_deref() == Some(dir))?;
        Some(format!("{} on {} (multi-task)", run_label(r), t.name))
    })
}

fn learned_ui(ui: &mut egui::Ui, learned: &Learned, template: &str) {
    match learned {
        Learned::Soft(rows) => {
            ui.label("Nearest vocabulary tokens of each soft vector (cosine similarity):");
            // Where each vector sits in the template; a prefix's vectors have no place in the
            // text (they are keys and values), so they keep their numbers alone.
            let places = crate::task::Template::parse(template)
                .map(|t| soft_places(&t))
                .unwrap_or_default();
            let places = (places.len() == rows.len()).then_some(places);
            egui::Grid::new("nearest").striped(true).show(ui, |ui| {
                for (i, near) in rows.iter().enumerate() {
                    ui.label(format!("[P] {}", i + 1));
                    if let Some(p) = &places {
                        ui.weak(&p[i]);
                    }
                    let s: Vec<String> = near
                        .iter()
                        .map(|(t, c)| format!("{} {c:.2}", quoted(t)))
                        .collect();
                    ui.monospace(s.join("   "));
                    ui.end_row();
                }
            });
        }
        Learned::Triggers { tokens, text } => {
            ui.label("Trigger tokens:");
            ui.monospace(format!("{tokens:?}"));
            ui.label("As text:");
            ui.monospace(format!("{text:?}"));
        }
        Learned::Opaque(why) => {
            ui.weak(why);
        }
    }
}

fn comparison_ui(ui: &mut egui::Ui, c: &Comparison) {
    match (&c.without, &c.with_prompt) {
        (Answer::Labels(without), Answer::Labels(with)) => {
            egui::Grid::new("play").striped(true).show(ui, |ui| {
                ui.strong("label");
                ui.strong("without the prompt (zero-shot)");
                ui.strong("with the learned prompt");
                ui.end_row();
                for ((label, p0), (_, p1)) in without.iter().zip(with) {
                    ui.label(label);
                    ui.add(
                        egui::ProgressBar::new(*p0)
                            .text(format!("{:.1}%", 100.0 * p0))
                            .desired_width(180.0),
                    );
                    ui.add(
                        egui::ProgressBar::new(*p1)
                            .text(format!("{:.1}%", 100.0 * p1))
                            .desired_width(180.0),
                    );
                    ui.end_row();
                }
            });
        }
        (without, with) => {
            let text = |a: &Answer| match a {
                Answer::Text(t) => format!("{t:?}"),
                Answer::Labels(l) => format!("{l:?}"),
            };
            ui.label(format!("without the prompt: {}", text(without)));
            ui.label(format!("with the learned prompt: {}", text(with)));
        }
    }
}

/// For each soft vector of `t`, in order, where it sits: between which parts of the template
/// (the start, `{field}`, a few words of text, `[ANSWER]`), and which of its run it is.
pub fn soft_places(t: &crate::task::Template) -> Vec<String> {
    use crate::task::Segment;
    let describe = |s: Option<&Segment>, end: &str| -> String {
        match s {
            None => end.to_string(),
            Some(Segment::Field(f)) => format!("{{{f}}}"),
            Some(Segment::Answer) => "[ANSWER]".into(),
            Some(Segment::Text(x)) => {
                let x = x.trim();
                let words: Vec<&str> = x.split_whitespace().take(3).collect();
                let more = if x.split_whitespace().count() > 3 {
                    "..."
                } else {
                    ""
                };
                format!("\"{}{more}\"", words.join(" "))
            }
            Some(Segment::Soft(_)) => "soft vectors".into(),
            Some(Segment::Trigger(_)) => "triggers".into(),
        }
    };
    let mut out = Vec::new();
    for (k, seg) in t.segments.iter().enumerate() {
        if let Segment::Soft(n) = seg {
            let before = describe(
                k.checked_sub(1).and_then(|j| t.segments.get(j)),
                "the start",
            );
            let after = describe(t.segments.get(k + 1), "the end");
            for j in 0..*n {
                out.push(format!("{} of {n}, between {before} and {after}", j + 1));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_soft_vector_is_placed_between_the_template_parts_around_its_run() {
        let t = crate::task::Template::parse("[P*2]{x}[P] is the capital of [ANSWER]").unwrap();
        assert_eq!(
            super::soft_places(&t),
            [
                "1 of 2, between the start and {x}",
                "2 of 2, between the start and {x}",
                "1 of 1, between {x} and \"is the capital...\"",
            ]
        );
    }

    #[test]
    fn a_token_that_is_part_of_a_character_is_shown_as_an_escape_not_a_glyph() {
        assert_eq!(super::quoted("\u{fffd}ab"), "\"\\u{fffd}ab\"");
        assert_eq!(super::quoted(" Peru"), "\" Peru\"");
    }
}
