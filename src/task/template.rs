//! The template language: where the input fields, the trainable prompt positions and the
//! answer sit.
//!
//! ```text
//! [P*3] {country} [P*3] capital [P*3] [ANSWER]
//! ```
//!
//! - plain text is copied as written (for P-Tuning these are the discrete anchor tokens);
//! - `{name}` is replaced by the example's value of the input field `name`;
//! - `[P]` / `[P*n]` are soft slots: one / n trainable vectors (Prompt Tuning, P-Tuning);
//! - `[T]` / `[T*n]` are AutoPrompt trigger slots: one / n learned discrete tokens;
//! - `[ANSWER]` is where the answer goes; it appears exactly once and ends the template;
//! - `{{`, `}}`, `[[`, `]]` write a literal brace or bracket.
//!
//! Which slots a method accepts is decided by [`Template::check`] with that method's
//! [`SlotRules`]; parsing only checks the syntax.

use std::fmt;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Literal text, escapes already resolved.
    Text(String),
    /// An input field slot `{name}`.
    Field(String),
    /// `n` consecutive soft (trainable vector) positions.
    Soft(usize),
    /// `n` consecutive AutoPrompt trigger positions.
    Trigger(usize),
    /// The answer slot.
    Answer,
}

/// A parsed template. Build it with [`Template::parse`]; print it back with `to_string()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub segments: Vec<Segment>,
}

/// A template problem, located at a character index (not a byte index) of the template text,
/// so an editor can put the cursor on it. For errors found by [`Template::check`] the index
/// refers to the canonical form (`template.to_string()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub position: usize,
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "template error at character {}: {}",
            self.position, self.message
        )
    }
}

impl std::error::Error for TemplateError {}

fn err<T>(position: usize, message: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError {
        position,
        message: message.into(),
    })
}

/// Where a method may put soft slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftPlacement {
    /// The method has no soft vectors (AutoPrompt, Prefix Tuning, baselines).
    None,
    /// Only a block at the very beginning (Prompt Tuning prepends its vectors).
    StartOnly,
    /// Any position, mixed with anchor text (P-Tuning).
    Anywhere,
}

/// What a method accepts in a template; `method` names the method in error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRules {
    pub soft: SoftPlacement,
    pub triggers: bool,
    pub min_soft: usize,
    pub min_triggers: usize,
    pub method: &'static str,
}

const UNKNOWN_SLOT_HINT: &str = "expected [P], [P*n], [T], [T*n] or [ANSWER]";

impl Template {
    /// Parses template text. Checks syntax only: escapes, slot names, repeat counts, and that
    /// `[ANSWER]` appears exactly once as the last thing in the template.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let chars: Vec<char> = text.chars().collect();
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut answer_at: Option<usize> = None;
        let mut i = 0;
        while i < chars.len() {
            if answer_at.is_some() {
                return err(i, "nothing may follow [ANSWER]; it must end the template");
            }
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            match c {
                '{' | '[' if next == Some(c) => {
                    literal.push(c);
                    i += 2;
                }
                '}' | ']' if next == Some(c) => {
                    literal.push(c);
                    i += 2;
                }
                '}' | ']' => {
                    return err(
                        i,
                        format!("unmatched '{c}'; write '{c}{c}' for a literal '{c}'"),
                    );
                }
                '{' | '[' => {
                    let close = if c == '{' { '}' } else { ']' };
                    // A slot ends at its closing bracket; an opening bracket before it means
                    // this one was left open (reading on would blame the wrong thing, such as
                    // a bad repeat count).
                    let end = chars[i + 1..]
                        .iter()
                        .position(|&x| x == close || x == '{' || x == '[');
                    let Some(len) = end.filter(|&n| chars[i + 1 + n] == close) else {
                        return err(
                            i,
                            format!("'{c}' is never closed; write '{c}{c}' for a literal '{c}'"),
                        );
                    };
                    let inner: String = chars[i + 1..i + 1 + len].iter().collect();
                    let segment = if c == '{' {
                        parse_field(&inner, i)?
                    } else {
                        parse_slot(&inner, i)?
                    };
                    if segment == Segment::Answer {
                        answer_at = Some(i);
                    }
                    if !literal.is_empty() {
                        segments.push(Segment::Text(std::mem::take(&mut literal)));
                    }
                    segments.push(segment);
                    i += len + 2;
                }
                _ => {
                    literal.push(c);
                    i += 1;
                }
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Text(literal));
        }
        if answer_at.is_none() {
            return err(
                chars.len(),
                "the template has no [ANSWER] slot; end it with [ANSWER]",
            );
        }
        Ok(Template { segments })
    }

    /// Total number of soft vectors (`[P*3] x [P]` has 4).
    pub fn soft_count(&self) -> usize {
        self.segments
            .iter()
            .map(|s| if let Segment::Soft(n) = s { *n } else { 0 })
            .sum()
    }

    /// Total number of trigger tokens.
    pub fn trigger_count(&self) -> usize {
        self.segments
            .iter()
            .map(|s| if let Segment::Trigger(n) = s { *n } else { 0 })
            .sum()
    }

    /// Field names used, in order of first appearance, without repeats.
    pub fn fields(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in &self.segments {
            if let Segment::Field(name) = s {
                if !out.contains(name) {
                    out.push(name.clone());
                }
            }
        }
        out
    }

    /// The whitespace that ends the literal text right before `[ANSWER]` (`" "` for
    /// `... is [ANSWER]`). Encoding moves it from the prompt into the answer tokens.
    pub fn answer_prefix_whitespace(&self) -> &str {
        let Some(pos) = self.segments.iter().position(|s| *s == Segment::Answer) else {
            return "";
        };
        match pos.checked_sub(1).map(|p| &self.segments[p]) {
            Some(Segment::Text(t)) => &t[t.trim_end().len()..],
            _ => "",
        }
    }

    /// A copy with `[P*n]` in front, for methods that prepend their vectors to a plain
    /// template. `n == 0` returns an unchanged copy.
    pub fn with_soft_prefix(&self, n: usize) -> Template {
        let mut segments = Vec::with_capacity(self.segments.len() + 1);
        if n > 0 {
            segments.push(Segment::Soft(n));
        }
        segments.extend(self.segments.iter().cloned());
        Template { segments }
    }

    /// Checks the template against a method's rules and the task's input fields.
    pub fn check(&self, rules: &SlotRules, known_fields: &[String]) -> Result<(), TemplateError> {
        let positions = self.positions();
        let method = rules.method;
        let mut answers = 0;
        let mut before_first_other = true;
        for (seg, &at) in self.segments.iter().zip(&positions) {
            if answers > 0 {
                return err(at, "nothing may follow [ANSWER]; it must end the template");
            }
            match seg {
                Segment::Soft(0) | Segment::Trigger(0) => {
                    return err(at, "a repeat count must be at least 1");
                }
                Segment::Soft(_) => match rules.soft {
                    SoftPlacement::None => {
                        return err(
                            at,
                            format!("{method} does not use soft slots [P]; remove it"),
                        );
                    }
                    SoftPlacement::StartOnly if !before_first_other => {
                        return err(
                            at,
                            format!("{method} allows soft slots only at the start of the template"),
                        );
                    }
                    _ => {}
                },
                Segment::Trigger(_) if !rules.triggers => {
                    return err(
                        at,
                        format!("{method} does not use trigger slots [T]; remove it"),
                    );
                }
                Segment::Field(name) if !known_fields.contains(name) => {
                    return err(
                        at,
                        format!(
                            "unknown field {{{name}}}; the task's fields are: {}",
                            list_or_none(known_fields)
                        ),
                    );
                }
                Segment::Answer => answers += 1,
                _ => {}
            }
            if !matches!(seg, Segment::Soft(_)) {
                before_first_other = false;
            }
        }
        let end = positions.last().copied().unwrap_or(0);
        if answers == 0 {
            return err(
                end,
                "the template has no [ANSWER] slot; end it with [ANSWER]",
            );
        }
        let soft = self.soft_count();
        if soft < rules.min_soft {
            return err(
                0,
                format!(
                    "{method} needs at least {} soft vector(s) [P]; the template has {soft}",
                    rules.min_soft
                ),
            );
        }
        let triggers = self.trigger_count();
        if triggers < rules.min_triggers {
            return err(
                0,
                format!(
                    "{method} needs at least {} trigger token(s) [T]; the template has {triggers}",
                    rules.min_triggers
                ),
            );
        }
        Ok(())
    }

    /// Character index of each segment in the canonical text.
    fn positions(&self) -> Vec<usize> {
        let mut at = 0;
        self.segments
            .iter()
            .map(|s| {
                let here = at;
                at += segment_text(s).chars().count();
                here
            })
            .collect()
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "(none)".to_string()
    } else {
        names.join(", ")
    }
}

fn parse_field(inner: &str, at: usize) -> Result<Segment, TemplateError> {
    let valid = !inner.is_empty()
        && inner
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '.');
    if !valid {
        return err(
            at,
            format!(
                "invalid field name {{{inner}}}; use letters, digits, '_', '-' or '.', \
                 or write '{{{{' for a literal brace"
            ),
        );
    }
    Ok(Segment::Field(inner.to_string()))
}

/// The largest repeat count of one slot. Far above what the papers use (Prompt Tuning's longest
/// prompt is 150 vectors, Prefix Tuning's 200), and a bound that keeps a typo such as
/// `[P*99999]` an error instead of a run that allocates until it aborts.
pub const MAX_REPEAT: usize = 1024;

fn parse_slot(inner: &str, at: usize) -> Result<Segment, TemplateError> {
    if inner == "ANSWER" {
        return Ok(Segment::Answer);
    }
    let (kind, count) = match inner.split_once('*') {
        Some((k, n)) => (k, Some(n)),
        None => (inner, None),
    };
    let make: fn(usize) -> Segment = match kind {
        "P" => Segment::Soft,
        "T" => Segment::Trigger,
        _ => return err(at, format!("unknown slot [{inner}]; {UNKNOWN_SLOT_HINT}")),
    };
    let n = match count {
        None => 1,
        Some(digits) => match digits.parse::<usize>() {
            Ok(0) => return err(at, format!("[{inner}]: a repeat count must be at least 1")),
            Ok(n) if n > MAX_REPEAT => {
                return err(
                    at,
                    format!("[{inner}]: a repeat count may be at most {MAX_REPEAT}"),
                )
            }
            Ok(n) if digits.chars().all(|c| c.is_ascii_digit()) => n,
            _ => {
                return err(
                    at,
                    format!("[{inner}]: the repeat count must be a whole number, as in [{kind}*3]"),
                )
            }
        },
    };
    Ok(make(n))
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '{' | '}' | '[' | ']') {
            out.push(c);
        }
        out.push(c);
    }
    out
}

fn segment_text(s: &Segment) -> String {
    match s {
        Segment::Text(t) => escape(t),
        Segment::Field(name) => format!("{{{name}}}"),
        Segment::Soft(1) => "[P]".to_string(),
        Segment::Soft(n) => format!("[P*{n}]"),
        Segment::Trigger(1) => "[T]".to_string(),
        Segment::Trigger(n) => format!("[T*{n}]"),
        Segment::Answer => "[ANSWER]".to_string(),
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.segments {
            f.write_str(&segment_text(s))?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Template {
    type Err = TemplateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Template::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(soft: SoftPlacement, triggers: bool) -> SlotRules {
        SlotRules {
            soft,
            triggers,
            min_soft: 0,
            min_triggers: 0,
            method: "test method",
        }
    }

    fn fields(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn round_trips_canonical_layouts() {
        for text in [
            "[P*3] {country} [P*3] capital [P*3] [ANSWER]",
            "[T*4] {review} [ANSWER]",
            "[P*20]{country} is a country in the continent of [ANSWER]",
            "[P][P] {a} and {b}? [T] [ANSWER]",
            "Q: {{not a field}} [[not a slot]] {q}\nA:[ANSWER]",
            "[ANSWER]",
        ] {
            let t = Template::parse(text).unwrap();
            assert_eq!(t.to_string(), text);
        }
    }

    #[test]
    fn parses_segments() {
        let t = Template::parse("[P*3] {country} [P] capital [ANSWER]").unwrap();
        assert_eq!(
            t.segments,
            vec![
                Segment::Soft(3),
                Segment::Text(" ".into()),
                Segment::Field("country".into()),
                Segment::Text(" ".into()),
                Segment::Soft(1),
                Segment::Text(" capital ".into()),
                Segment::Answer,
            ]
        );
        assert_eq!(t.soft_count(), 4);
        assert_eq!(t.trigger_count(), 0);
        assert_eq!(t.fields(), vec!["country".to_string()]);
        assert_eq!(t.answer_prefix_whitespace(), " ");
    }

    #[test]
    fn escapes_become_literal_text() {
        let t = Template::parse("{{x}} [[y]] [ANSWER]").unwrap();
        assert_eq!(t.segments[0], Segment::Text("{x} [y] ".into()));
    }

    #[test]
    fn adjacent_soft_slots_are_not_merged() {
        let t = Template::parse("[P][P*2]{x}[ANSWER]").unwrap();
        assert_eq!(t.segments[0], Segment::Soft(1));
        assert_eq!(t.segments[1], Segment::Soft(2));
        assert_eq!(t.to_string(), "[P][P*2]{x}[ANSWER]");
    }

    #[test]
    fn counts_and_fields() {
        let t = Template::parse("[T*4] {a} {b} {a} [T] [ANSWER]").unwrap();
        assert_eq!(t.trigger_count(), 5);
        assert_eq!(t.fields(), fields(&["a", "b"]));
        let t = Template::parse("{a}\n\t[ANSWER]").unwrap();
        assert_eq!(t.answer_prefix_whitespace(), "\n\t");
        let t = Template::parse("{a}[ANSWER]").unwrap();
        assert_eq!(t.answer_prefix_whitespace(), "");
    }

    #[test]
    fn an_unclosed_bracket_is_reported_as_unclosed_where_it_opens() {
        let e = parse_err("[P*3 {country} is in [ANSWER]");
        assert_eq!(e.position, 0);
        assert!(e.message.contains("never closed"), "{}", e.message);
        let e = parse_err("Q: {country is in [ANSWER]");
        assert_eq!(e.position, 3);
        assert!(e.message.contains("never closed"), "{}", e.message);
    }

    #[test]
    fn a_huge_repeat_count_is_an_error_not_an_allocation() {
        let e = parse_err("[P*99999] {country} is in [ANSWER]");
        assert!(e.message.contains("at most 1024"), "{}", e.message);
        assert!(Template::parse("[P*1024] {c} [ANSWER]").is_ok());
    }

    fn parse_err(text: &str) -> TemplateError {
        Template::parse(text).unwrap_err()
    }

    #[test]
    fn errors_point_at_the_character() {
        let e = parse_err("{country} is in [X] [ANSWER]");
        assert_eq!(e.position, 16);
        assert_eq!(
            e.to_string(),
            "template error at character 16: unknown slot [X]; expected [P], [P*n], [T], [T*n] or [ANSWER]"
        );
        // Positions count characters, not bytes.
        assert_eq!(parse_err("é [Q] [ANSWER]").position, 2);
        assert_eq!(parse_err("ab [P*0] [ANSWER]").position, 3);
        assert!(parse_err("[P*0] [ANSWER]").message.contains("at least 1"));
        assert!(parse_err("[P*x] [ANSWER]").message.contains("whole number"));
        assert!(parse_err("[P*+3] [ANSWER]")
            .message
            .contains("whole number"));
        assert_eq!(parse_err("abc {country").position, 4);
        assert!(parse_err("abc {country").message.contains("never closed"));
        assert_eq!(parse_err("a } b [ANSWER]").position, 2);
        assert_eq!(parse_err("a ] b [ANSWER]").position, 2);
        assert_eq!(parse_err("{bad name} [ANSWER]").position, 0);
        assert_eq!(parse_err("{} [ANSWER]").position, 0);
    }

    #[test]
    fn answer_must_appear_once_at_the_end() {
        let e = parse_err("{x} is");
        assert_eq!(e.position, 6);
        assert!(e.message.contains("no [ANSWER]"));
        let e = parse_err("{x} [ANSWER].");
        assert_eq!(e.position, 12);
        assert!(e.message.contains("nothing may follow"));
        assert_eq!(parse_err("[ANSWER] [ANSWER]").position, 8);
        assert_eq!(parse_err("[ANSWER] ").position, 8);
    }

    #[test]
    fn check_start_only() {
        let r = SlotRules {
            method: "prompt tuning",
            ..rules(SoftPlacement::StartOnly, false)
        };
        let known = fields(&["country"]);
        Template::parse("[P*20][P]{country} is [ANSWER]")
            .unwrap()
            .check(&r, &known)
            .unwrap();
        let e = Template::parse("[P*2] {country} [P] is [ANSWER]")
            .unwrap()
            .check(&r, &known)
            .unwrap_err();
        assert_eq!(e.position, 16);
        assert_eq!(
            e.message,
            "prompt tuning allows soft slots only at the start of the template"
        );
        // A template without [P] becomes valid once the method prepends its vectors.
        let plain = Template::parse("{country} is [ANSWER]").unwrap();
        plain.with_soft_prefix(5).check(&r, &known).unwrap();
        assert_eq!(
            plain.with_soft_prefix(5).to_string(),
            "[P*5]{country} is [ANSWER]"
        );
        assert_eq!(plain.with_soft_prefix(0), plain);
    }

    #[test]
    fn check_anywhere_and_none() {
        let known = fields(&["country"]);
        let t = Template::parse("[P*3] {country} [P*3] capital [P*3] [ANSWER]").unwrap();
        t.check(&rules(SoftPlacement::Anywhere, false), &known)
            .unwrap();
        let e = t
            .check(&rules(SoftPlacement::None, true), &known)
            .unwrap_err();
        assert_eq!(e.position, 0);
        assert!(e.message.contains("test method does not use soft slots"));
    }

    #[test]
    fn check_triggers() {
        let known = fields(&["review"]);
        let t = Template::parse("{review} [T*4] [ANSWER]").unwrap();
        t.check(&rules(SoftPlacement::None, true), &known).unwrap();
        let e = t
            .check(&rules(SoftPlacement::Anywhere, false), &known)
            .unwrap_err();
        assert_eq!(e.position, 9);
        assert!(e.message.contains("does not use trigger slots"));
    }

    #[test]
    fn check_minimums() {
        let known = fields(&["x"]);
        let t = Template::parse("[P*2] {x} [T] [ANSWER]").unwrap();
        let r = SlotRules {
            min_soft: 3,
            ..rules(SoftPlacement::Anywhere, true)
        };
        assert!(t
            .check(&r, &known)
            .unwrap_err()
            .message
            .contains("at least 3 soft"));
        let r = SlotRules {
            min_triggers: 2,
            ..rules(SoftPlacement::Anywhere, true)
        };
        assert!(t
            .check(&r, &known)
            .unwrap_err()
            .message
            .contains("at least 2 trigger"));
        let r = SlotRules {
            min_soft: 2,
            min_triggers: 1,
            ..rules(SoftPlacement::Anywhere, true)
        };
        t.check(&r, &known).unwrap();
    }

    #[test]
    fn check_unknown_field() {
        let t = Template::parse("{country} and {city} [ANSWER]").unwrap();
        let e = t
            .check(&rules(SoftPlacement::None, false), &fields(&["country"]))
            .unwrap_err();
        assert_eq!(e.position, 14);
        assert!(e.message.contains("unknown field {city}"), "{}", e.message);
        assert!(e.message.contains("country"));
    }

    #[test]
    fn check_rejects_hand_built_templates_that_parse_would_reject() {
        let r = rules(SoftPlacement::Anywhere, true);
        let t = Template {
            segments: vec![Segment::Soft(0), Segment::Answer],
        };
        assert!(t.check(&r, &[]).is_err());
        let t = Template {
            segments: vec![Segment::Text("x".into())],
        };
        assert!(t
            .check(&r, &[])
            .unwrap_err()
            .message
            .contains("no [ANSWER]"));
        let t = Template {
            segments: vec![Segment::Answer, Segment::Text("x".into())],
        };
        assert_eq!(t.check(&r, &[]).unwrap_err().position, 8);
    }
}
