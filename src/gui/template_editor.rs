//! The template as a row of chips (input fields, anchor text, soft `[P]` slots, trigger `[T]` slots,
//! the answer). Chips are dragged to reorder; new slot chips are dragged in from a palette.
//! Layouts are checked with the engine's own `Template::check`, and one real example is shown
//! rendered through the template with its token count.

use super::{ModelState, Session};
use crate::methods::{MethodKind, MethodSettings};
use crate::task::{encode, render_text, Segment, Task, Template, TemplateError};

/// How visible the chips are while the typed text does not parse (they are not what it says).
const STALE_OPACITY: f32 = 0.35;

/// What is being dragged.
#[derive(Debug, Clone, PartialEq)]
pub enum ChipDrag {
    /// The chip at this index.
    Move(usize),
    /// A new chip from the palette.
    New(Segment),
}

#[derive(Default)]
pub struct TemplateEditor {
    pub segments: Vec<Segment>,
    /// The template as text; typing here is the other way to edit it.
    pub text: String,
    /// Why the typed text does not parse (the parser's message, shown as it is). The chips then
    /// still hold the last valid template: the view greys them and says so, and Train is
    /// refused until the text parses again.
    pub error: Option<String>,
    pub selected: Option<usize>,
}

impl TemplateEditor {
    pub fn set(&mut self, t: Template, method: MethodKind) {
        self.segments = t.segments;
        self.selected = None;
        self.error = None;
        self.normalize(method);
    }

    /// The method's default template for `task` (the task's own, with the method's slots where
    /// the paper puts them); without a task, nothing changes.
    pub fn reset(&mut self, task: Option<&Task>, method: MethodKind, settings: &MethodSettings) {
        let Some(task) = task else { return };
        match task.template() {
            Ok(t) => {
                let t = crate::methods::template_for(method, settings, &t);
                self.set(t, method);
            }
            Err(e) => self.error = Some(format!("{e:#}")),
        }
    }

    /// Shows `text` as the template: its chips when it parses, else the text with its error
    /// (a remembered template may be one the user left half-typed).
    pub fn set_text(&mut self, text: &str, method: MethodKind) {
        match Template::parse(text) {
            Ok(t) => self.set(t, method),
            Err(e) => {
                self.text = text.to_string();
                self.error = Some(e.to_string());
                self.selected = None;
            }
        }
    }

    pub fn template(&self) -> Template {
        Template {
            segments: self.segments.clone(),
        }
    }

    /// Keeps chips and text in step after a chip edit. Prompt Tuning prepends its vectors, so
    /// its soft chips always move to the start. The text is reparsed so that adjacent text
    /// chips merge as the engine would see them. The text is rebuilt from the chips, so an
    /// error from an earlier typo no longer applies and is cleared.
    pub fn normalize(&mut self, method: MethodKind) {
        self.error = None;
        if method == MethodKind::PromptTuning {
            let (soft, rest): (Vec<Segment>, Vec<Segment>) = self
                .segments
                .drain(..)
                .partition(|s| matches!(s, Segment::Soft(_)));
            self.segments = soft.into_iter().chain(rest).collect();
        }
        self.segments
            .retain(|s| !matches!(s, Segment::Text(t) if t.is_empty()));
        let text = self.template().to_string();
        if let Ok(t) = Template::parse(&text) {
            self.segments = t.segments;
        }
        self.text = self.template().to_string();
        if self.selected.is_some_and(|i| i >= self.segments.len()) {
            self.selected = None;
        }
    }

    fn answer_index(&self) -> usize {
        self.segments
            .iter()
            .position(|s| *s == Segment::Answer)
            .unwrap_or(self.segments.len())
    }

    /// Applies a drop: `to` is the index the chip should land before (the answer stays last).
    pub fn drop_chip(&mut self, what: &ChipDrag, to: usize, method: MethodKind) {
        let to = to.min(self.answer_index());
        match what {
            ChipDrag::Move(from) => {
                let from = *from;
                if from >= self.segments.len() || self.segments[from] == Segment::Answer {
                    return;
                }
                let seg = self.segments.remove(from);
                let to = if from < to { to - 1 } else { to };
                self.segments.insert(to, seg);
                self.selected = Some(to);
            }
            ChipDrag::New(seg) => {
                self.segments.insert(to, seg.clone());
                self.selected = Some(to);
            }
        }
        self.normalize(method);
    }

    pub fn remove(&mut self, i: usize, method: MethodKind) {
        if i < self.segments.len() && self.segments[i] != Segment::Answer {
            self.segments.remove(i);
            self.selected = None;
            self.normalize(method);
        }
    }

    /// The engine's verdict on the layout for this method and task.
    pub fn check(&self, method: MethodKind, task: Option<&Task>) -> Result<(), TemplateError> {
        // The parser's own error, which says where: wrapping the stored message in another
        // error repeated its prefix ("template error at character 0: template error at
        // character 58: ...").
        if self.error.is_some() {
            Template::parse(&self.text)?;
        }
        let fields = task.map(|t| t.spec.fields.clone()).unwrap_or_default();
        self.template().check(&method.slot_rules(), &fields)
    }
}

/// How a chip reads: these strings are also the chips' accessible labels.
pub fn chip_label(s: &Segment) -> String {
    match s {
        Segment::Text(t) => format!("\"{}\"", t.replace('\n', "\\n")),
        Segment::Field(name) => format!("{{{name}}}"),
        Segment::Soft(1) => "[P]".into(),
        Segment::Soft(n) => format!("[P*{n}]"),
        Segment::Trigger(1) => "[T]".into(),
        Segment::Trigger(n) => format!("[T*{n}]"),
        Segment::Answer => "[ANSWER]".into(),
    }
}

fn chip_color(s: &Segment, ui: &egui::Ui) -> egui::Color32 {
    let dark = ui.visuals().dark_mode;
    let pick = |d: (u8, u8, u8), l: (u8, u8, u8)| {
        let (r, g, b) = if dark { d } else { l };
        egui::Color32::from_rgb(r, g, b)
    };
    match s {
        Segment::Text(_) => pick((60, 60, 60), (225, 225, 225)),
        Segment::Field(_) => pick((30, 70, 120), (200, 220, 250)),
        Segment::Soft(_) => pick((100, 50, 120), (235, 210, 245)),
        Segment::Trigger(_) => pick((120, 80, 20), (250, 230, 190)),
        Segment::Answer => pick((30, 100, 50), (200, 240, 210)),
    }
}

fn chip_text(s: &Segment) -> egui::RichText {
    egui::RichText::new(chip_label(s)).monospace()
}

/// The width a chip takes on one line.
fn chip_width(ui: &egui::Ui, s: &Segment) -> f32 {
    let galley = egui::WidgetText::from(chip_text(s)).into_galley(
        ui,
        Some(egui::TextWrapMode::Extend),
        f32::INFINITY,
        egui::TextStyle::Button,
    );
    galley.size().x + 2.0 * ui.spacing().button_padding.x
}

/// Places the next chip of a wrapped row: a chip that does not fit the rest of the row starts
/// the next one. The row cannot do this by itself because a dragged chip is drawn in a scope
/// of its own, which only sees the space left; that is what squeezed an end-of-row text chip
/// to one character per line and split "[P]" into "[" and "P]". Returns whether the chip is
/// wider than a whole row (then it is cut with "…", never wrapped).
fn place_chip(ui: &mut egui::Ui, s: &Segment) -> bool {
    let width = chip_width(ui, s);
    // Within what is visible too: the row's own rect grows with anything that overflowed.
    let right = ui.max_rect().right().min(ui.clip_rect().right());
    let row = right - ui.max_rect().left();
    let left = right - ui.cursor().left();
    if width > left && left < row - 0.5 {
        ui.end_row();
    }
    width > row
}

fn chip_button(ui: &mut egui::Ui, s: &Segment, selected: bool, too_wide: bool) -> egui::Response {
    let fill = chip_color(s, ui);
    let b = egui::Button::new(chip_text(s))
        .fill(fill)
        .selected(selected)
        .corner_radius(8.0)
        .wrap_mode(if too_wide {
            egui::TextWrapMode::Truncate
        } else {
            egui::TextWrapMode::Extend
        });
    ui.add(b)
}

/// Palette chips for a method: only the slots it accepts.
fn palette(method: MethodKind, fields: &[String]) -> Vec<(Segment, String)> {
    let mut out = Vec::new();
    match method {
        MethodKind::PromptTuning | MethodKind::PTuning => {
            out.push((Segment::Soft(1), "+ soft [P]".to_string()))
        }
        MethodKind::Autoprompt => out.push((Segment::Trigger(1), "+ trigger [T]".to_string())),
        _ => {}
    }
    out.push((Segment::Text(" anchor ".into()), "+ text".to_string()));
    for f in fields {
        out.push((Segment::Field(f.clone()), format!("+ {{{f}}}")));
    }
    out
}

/// The view: the palette, the chip row, the selected chip, the text, the verdict and a preview.
impl TemplateEditor {
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        session: &Session,
        method: MethodKind,
        settings: &mut MethodSettings,
    ) {
        ui.heading("Template");
        match method {
            MethodKind::PromptTuning => {
                ui.weak("Prompt Tuning prepends its soft vectors: [P] chips stay at the start.");
            }
            MethodKind::PTuning => {
                ui.weak("P-Tuning: drag [P] chips anywhere, between anchor words.");
            }
            MethodKind::Autoprompt => {
                ui.weak("AutoPrompt: drag [T] trigger chips where the learned words go.");
            }
            MethodKind::PrefixTuning => {
                ui.horizontal_wrapped(|ui| {
                    let l =
                        ui.label("Prefix length (key/value positions in every attention layer):");
                    ui.add(egui::DragValue::new(&mut settings.prefix_len).range(1..=512))
                        .labelled_by(l.id);
                });
            }
            MethodKind::FineTuning | MethodKind::ZeroShot => {
                ui.weak("No trainable slots: the template is used as written.");
            }
        }

        // While the typed text does not parse, the chips still hold the last valid template:
        // they are greyed, a line under the text says they are not what it says, and the
        // preview waits. They stay in place rather than vanish, so the editor does not jump
        // with every keystroke; editing one goes back to the chips (the text is rebuilt from
        // them), which is the quick way out of a typo.
        let stale = self.error.is_some();

        // Palette.
        let fields = session
            .task
            .as_ref()
            .map(|t| t.spec.fields.clone())
            .unwrap_or_default();
        let mut clicked_new = None;
        ui.scope(|ui| {
            if stale {
                ui.multiply_opacity(STALE_OPACITY);
            }
            ui.horizontal_wrapped(|ui| {
                ui.label("Drag in:");
                for (k, (seg, name)) in palette(method, &fields).into_iter().enumerate() {
                    let id = ui.scope_id().with(("palette", k));
                    let r = ui.dnd_drag_source(id, ChipDrag::New(seg.clone()), |ui| {
                        ui.add(egui::Button::new(name).fill(chip_color(&seg, ui)))
                    });
                    if r.inner.clicked() {
                        clicked_new = Some(seg);
                    }
                }
            });
        });
        if let Some(seg) = clicked_new {
            let at = self.answer_index();
            self.drop_chip(&ChipDrag::New(seg), at, method);
        }

        // The chip row. Dropping on the left half of a chip inserts before it, on the right half
        // after it.
        let mut dropped: Option<(ChipDrag, usize)> = None;
        let mut clicked = None;
        let segments = self.segments.clone();
        egui::Frame::group(ui.style()).show(ui, |ui| {
            if stale {
                ui.multiply_opacity(STALE_OPACITY);
            }
            ui.horizontal_wrapped(|ui| {
                ui.spacing_mut().item_spacing.x = 6.0;
                for (i, seg) in segments.iter().enumerate() {
                    let selected = self.selected == Some(i);
                    let too_wide = place_chip(ui, seg);
                    let response = if *seg == Segment::Answer {
                        chip_button(ui, seg, selected, too_wide)
                    } else {
                        let id = ui.scope_id().with(("chip", i));
                        let r = ui.dnd_drag_source(id, ChipDrag::Move(i), |ui| {
                            chip_button(ui, seg, selected, too_wide)
                        });
                        if r.inner.clicked() {
                            clicked = Some(i);
                        }
                        r.response
                    };
                    let rect = response.rect;
                    let pointer = ui.ctx().pointer_interact_pos();
                    let after = pointer.is_some_and(|p| p.x > rect.center().x);
                    if response.dnd_hover_payload::<ChipDrag>().is_some() {
                        let x = if after {
                            rect.right() + 3.0
                        } else {
                            rect.left() - 3.0
                        };
                        ui.painter().vline(
                            x,
                            rect.y_range(),
                            egui::Stroke::new(3.0, ui.visuals().selection.bg_fill),
                        );
                    }
                    if let Some(p) = response.dnd_release_payload::<ChipDrag>() {
                        dropped = Some(((*p).clone(), if after { i + 1 } else { i }));
                    }
                }
            });
        });
        if let Some((what, to)) = dropped {
            self.drop_chip(&what, to, method);
        }
        if let Some(i) = clicked {
            self.selected = if self.selected == Some(i) {
                None
            } else {
                Some(i)
            };
        }

        self.selected_chip_ui(ui, method, &fields);

        // The same template as text.
        ui.horizontal(|ui| {
            let l = ui.label("as text:");
            let r = ui
                .add(
                    // Wrapped over as many lines as it needs (a one-line field grew with a long
                    // template and widened the side panel); Enter does not add a line.
                    egui::TextEdit::multiline(&mut self.text)
                        .font(egui::TextStyle::Monospace)
                        .desired_rows(1)
                        .return_key(None)
                        .desired_width(f32::INFINITY),
                )
                .labelled_by(l.id);
            if r.changed() {
                match Template::parse(&self.text) {
                    Ok(t) => {
                        self.segments = t.segments;
                        self.error = None;
                        self.selected = None;
                    }
                    Err(e) => self.error = Some(e.to_string()),
                }
            }
        });
        if self.error.is_some() {
            // Said below the text, not above the chips, so that nothing moves under the cursor
            // while typing.
            ui.weak(
                "The text does not parse: the greyed chips above are the last valid template, \
                 not this one (editing a chip goes back to them).",
            );
            if ui.small_button("Back to the chips").clicked() {
                self.text = self.template().to_string();
                self.error = None;
            }
        }
        if ui.small_button("Reset to the method's default").clicked() {
            self.reset(session.task.as_deref(), method, settings);
        }

        match self.check(method, session.task.as_deref()) {
            Ok(()) => {
                ui.colored_label(egui::Color32::from_rgb(60, 160, 80), "valid layout");
            }
            Err(e) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("invalid: {e}"));
            }
        }
        if self.error.is_some() {
            ui.weak("The preview comes back once the text parses.");
        } else {
            self.preview_ui(ui, session, method, settings);
        }
    }

    fn selected_chip_ui(&mut self, ui: &mut egui::Ui, method: MethodKind, fields: &[String]) {
        let Some(i) = self.selected else { return };
        let Some(seg) = self.segments.get(i).cloned() else {
            return;
        };
        let mut changed = None;
        let mut remove = false;
        let is_answer = seg == Segment::Answer;
        ui.horizontal(|ui| {
            ui.label(format!("chip {}:", i + 1));
            match seg {
                Segment::Soft(mut n) => {
                    let l = ui.label("soft vectors");
                    if ui
                        .add(egui::DragValue::new(&mut n).range(1..=256))
                        .labelled_by(l.id)
                        .changed()
                    {
                        changed = Some(Segment::Soft(n));
                    }
                }
                Segment::Trigger(mut n) => {
                    let l = ui.label("trigger tokens");
                    if ui
                        .add(egui::DragValue::new(&mut n).range(1..=64))
                        .labelled_by(l.id)
                        .changed()
                    {
                        changed = Some(Segment::Trigger(n));
                    }
                }
                Segment::Text(mut t) => {
                    let l = ui.label("anchor text");
                    if ui.text_edit_singleline(&mut t).labelled_by(l.id).changed() {
                        changed = Some(Segment::Text(t));
                    }
                }
                Segment::Field(ref name) => {
                    egui::ComboBox::from_id_salt("field")
                        .selected_text(format!("{{{name}}}"))
                        .show_ui(ui, |ui| {
                            for f in fields {
                                if ui.selectable_label(f == name, f).clicked() {
                                    changed = Some(Segment::Field(f.clone()));
                                }
                            }
                        });
                }
                Segment::Answer => {
                    ui.label("the answer: always last");
                }
            }
            if !is_answer && ui.button("Remove chip").clicked() {
                remove = true;
            }
        });
        if remove {
            self.remove(i, method);
        } else if let Some(s) = changed {
            // Empty text is kept while typing; normalize drops it only on the next structural edit.
            self.segments[i] = s;
            self.text = self.template().to_string();
            self.error = None;
        }
    }

    fn preview_ui(
        &self,
        ui: &mut egui::Ui,
        session: &Session,
        method: MethodKind,
        settings: &MethodSettings,
    ) {
        let Some(task) = session.task.clone() else {
            return;
        };
        let Some(example) = task.train.first() else {
            return;
        };
        let t = self.template();
        ui.label("Preview (first training example):");
        ui.add(
            egui::Label::new(egui::RichText::new(render_text(&t, example, &task)).monospace())
                .wrap(),
        );
        match &session.model {
            ModelState::Ready(m) => match encode(&t, example, &task, &m.tokenizer) {
                Ok(e) => {
                    let mut s = format!(
                    "{} input positions before the answer ({} soft, {} trigger); answer {} token(s)",
                    e.prompt.len(),
                    t.soft_count(),
                    t.trigger_count(),
                    e.candidates.get(e.gold).map(Vec::len).unwrap_or(0)
                );
                    if method == MethodKind::PrefixTuning {
                        s.push_str(&format!(
                            ", plus a {}-position key/value prefix in every layer",
                            settings.prefix_len
                        ));
                    }
                    ui.weak(s);
                }
                Err(e) => {
                    ui.colored_label(ui.visuals().error_fg_color, format!("{e:#}"));
                }
            },
            _ => {
                ui.weak("token count once the model has loaded");
            }
        }
    }
}
