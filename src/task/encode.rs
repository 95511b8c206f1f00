//! Encoding: a template filled with one example becomes the pieces a model consumes: token
//! ids for text, numbered places for soft vectors and trigger tokens, and the token ids of
//! every answer candidate.
//!
//! Consecutive text and field values are joined and tokenized as one string, so BPE merges
//! do not depend on where a field boundary falls; a `[P]` or `[T]` slot breaks the string.
//! The whitespace right before `[ANSWER]` moves from the prompt into each answer candidate:
//! `The capital of {country} is [ANSWER]` scores `" Paris"`, which is how BPE tokenizers
//! see a word after a space, instead of a prompt ending in a lone space token.

use anyhow::{bail, Context, Result};
use tokenizers::Tokenizer;

use super::dataset::{Example, Task, TaskKind};
use super::template::{Segment, Template};

/// One input position of the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// A vocabulary token.
    Token(u32),
    /// The i-th soft vector of the template (0-based, in template order).
    Soft(usize),
    /// The i-th trigger token of the template (0-based, in template order).
    Trigger(usize),
}

/// An example ready for scoring: the prompt, then one of `candidates` follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub prompt: Vec<Piece>,
    /// Token ids of each answer candidate (with the moved whitespace in front).
    pub candidates: Vec<Vec<u32>>,
    /// Index of the correct candidate.
    pub gold: usize,
    /// The correct answer as plain text (no leading whitespace), for display and exact match.
    pub answer_text: String,
}

/// Splits `s` into its body and its trailing whitespace.
pub fn split_answer_whitespace(s: &str) -> (&str, &str) {
    let body = s.trim_end();
    (body, &s[body.len()..])
}

/// Tokenizes without special tokens (the model's BOS, if any, is the caller's choice).
pub fn tokenize(tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    let encoding = tok
        .encode(text, false)
        .map_err(|e| anyhow::anyhow!("cannot tokenize {text:?}: {e}"))?;
    Ok(encoding.get_ids().to_vec())
}

fn field_value<'a>(example: &'a Example, name: &str) -> Result<&'a str> {
    match example.fields.get(name) {
        Some(v) => Ok(v),
        None => {
            let known: Vec<&str> = example.fields.keys().map(String::as_str).collect();
            bail!(
                "the example has no value for field {{{name}}} (it has: {})",
                known.join(", ")
            )
        }
    }
}

/// Encodes one example with `template`. The template is assumed to have passed
/// [`Template::parse`]; a hand-built one without `[ANSWER]` is an error here too.
pub fn encode(
    template: &Template,
    example: &Example,
    task: &Task,
    tok: &Tokenizer,
) -> Result<Encoded> {
    let mut prompt = Vec::new();
    let mut run = String::new();
    let mut soft = 0;
    let mut trigger = 0;
    let mut prefix = None;

    let flush = |run: &mut String, prompt: &mut Vec<Piece>| -> Result<()> {
        if !run.is_empty() {
            prompt.extend(tokenize(tok, run)?.into_iter().map(Piece::Token));
            run.clear();
        }
        Ok(())
    };

    for segment in &template.segments {
        match segment {
            Segment::Text(t) => run.push_str(t),
            Segment::Field(name) => run.push_str(field_value(example, name)?),
            Segment::Soft(n) => {
                flush(&mut run, &mut prompt)?;
                prompt.extend((soft..soft + n).map(Piece::Soft));
                soft += n;
            }
            Segment::Trigger(n) => {
                flush(&mut run, &mut prompt)?;
                prompt.extend((trigger..trigger + n).map(Piece::Trigger));
                trigger += n;
            }
            Segment::Answer => {
                let (body, ws) = split_answer_whitespace(&run);
                prefix = Some(ws.to_string());
                let mut body = body.to_string();
                flush(&mut body, &mut prompt)?;
                run.clear();
                break;
            }
        }
    }
    let Some(prefix) = prefix else {
        bail!("the template {template} has no [ANSWER] slot");
    };
    if prompt.is_empty() {
        bail!("the prompt before [ANSWER] is empty; the model needs at least one token or slot to predict from");
    }

    let candidate = |text: &str| -> Result<Vec<u32>> {
        let ids = tokenize(tok, &format!("{prefix}{text}"))?;
        if ids.is_empty() {
            bail!("the answer {text:?} tokenizes to nothing");
        }
        Ok(ids)
    };
    let (candidates, gold) = match task.spec.kind {
        TaskKind::Classification => {
            let labels = task.labels();
            let gold = labels
                .iter()
                .position(|l| *l == example.answer)
                .with_context(|| {
                    format!(
                        "label {:?} is not one of the task's labels ({})",
                        example.answer,
                        labels.join(", ")
                    )
                })?;
            let candidates = labels
                .iter()
                .map(|l| candidate(task.answer_text(l)))
                .collect::<Result<Vec<_>>>()?;
            (candidates, gold)
        }
        TaskKind::Generation => (vec![candidate(&example.answer)?], 0),
    };
    Ok(Encoded {
        prompt,
        candidates,
        gold,
        answer_text: task.answer_text(&example.answer).to_string(),
    })
}

/// A human-readable rendering for previews: soft vectors show as `[P]`, trigger tokens as
/// `[T]` (one per position), the answer slot as the gold answer text, and a missing field as
/// its `{name}`.
pub fn render_text(template: &Template, example: &Example, task: &Task) -> String {
    let mut out = String::new();
    for segment in &template.segments {
        match segment {
            Segment::Text(t) => out.push_str(t),
            Segment::Field(name) => match example.fields.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&format!("{{{name}}}")),
            },
            Segment::Soft(n) => out.push_str(&"[P]".repeat(*n)),
            Segment::Trigger(n) => out.push_str(&"[T]".repeat(*n)),
            Segment::Answer => out.push_str(task.answer_text(&example.answer)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::dataset::{Metric, TaskSpec};
    use std::collections::BTreeMap;
    use std::str::FromStr;

    const WORDS: &[&str] = &[
        "[UNK]",
        "The",
        "Ġcapital",
        "Ġof",
        "ĠFrance",
        "France",
        "Ġis",
        "ĠParis",
        "Paris",
        "Ġ",
        "ĠEurope",
        "ĠAfrica",
        "ĠNorth",
        "ĠAmerica",
        "Ġin",
        "Fr",
        "ance",
    ];

    /// A word-level vocabulary behind a GPT-2 style byte-level pre-tokenizer, so a word after a
    /// space is a different token (`ĠParis`) from the bare word (`Paris`), as in real BPE.
    fn tokenizer() -> Tokenizer {
        let vocab: BTreeMap<&str, usize> = WORDS.iter().enumerate().map(|(i, w)| (*w, i)).collect();
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
            "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
        });
        Tokenizer::from_str(&json.to_string()).unwrap()
    }

    fn id(word: &str) -> u32 {
        WORDS.iter().position(|w| *w == word).unwrap() as u32
    }

    fn tokens(words: &[&str]) -> Vec<Piece> {
        words.iter().map(|w| Piece::Token(id(w))).collect()
    }

    fn task(kind: TaskKind) -> Task {
        let verbalizer: BTreeMap<String, String> = [
            ("europe", "Europe"),
            ("africa", "Africa"),
            ("na", "North America"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let spec = TaskSpec {
            name: "t".into(),
            description: String::new(),
            kind,
            fields: vec!["country".into()],
            template: "{country} is in [ANSWER]".into(),
            verbalizer: (kind == TaskKind::Classification).then_some(verbalizer),
            metric: Metric::Accuracy,
            notes: String::new(),
        };
        Task {
            spec,
            dir: ".".into(),
            train: vec![],
            dev: vec![],
            test: vec![],
            origins: Default::default(),
        }
    }

    fn example(pairs: &[(&str, &str)], answer: &str) -> Example {
        let fields = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Example {
            fields,
            answer: answer.to_string(),
        }
    }

    #[test]
    fn splits_trailing_whitespace() {
        assert_eq!(split_answer_whitespace("is "), ("is", " "));
        assert_eq!(split_answer_whitespace("A:\n\t"), ("A:", "\n\t"));
        assert_eq!(split_answer_whitespace("is"), ("is", ""));
        assert_eq!(split_answer_whitespace("  "), ("", "  "));
    }

    #[test]
    fn moves_the_space_before_the_answer_into_the_answer() {
        let tok = tokenizer();
        let t = Template::parse("The capital of {country} is [ANSWER]").unwrap();
        let e = encode(
            &t,
            &example(&[("country", "France")], "Paris"),
            &task(TaskKind::Generation),
            &tok,
        )
        .unwrap();
        assert_eq!(
            e.prompt,
            tokens(&["The", "Ġcapital", "Ġof", "ĠFrance", "Ġis"])
        );
        assert_eq!(e.candidates, vec![vec![id("ĠParis")]]);
        assert_eq!(e.gold, 0);
        assert_eq!(e.answer_text, "Paris");
        // Without a space before the slot the answer is the bare word.
        let t = Template::parse("The capital of {country} is:[ANSWER]").unwrap();
        let tok_e = encode(
            &t,
            &example(&[("country", "France")], "Paris"),
            &task(TaskKind::Generation),
            &tok,
        );
        assert_eq!(tok_e.unwrap().candidates, vec![vec![id("Paris")]]);
    }

    #[test]
    fn fields_and_text_are_tokenized_together() {
        let tok = tokenizer();
        let t = Template::parse("{a}{b} is [ANSWER]").unwrap();
        let ex = example(&[("a", "Fr"), ("b", "ance")], "Paris");
        let e = encode(&t, &ex, &task(TaskKind::Generation), &tok).unwrap();
        assert_eq!(e.prompt, tokens(&["France", "Ġis"]));
    }

    #[test]
    fn slots_break_the_text_and_are_numbered_in_order() {
        let tok = tokenizer();
        let t = Template::parse("[P*2]The capital[P] of {country}[T*2] is[T][P] [ANSWER]").unwrap();
        let ex = example(&[("country", "France")], "Paris");
        let e = encode(&t, &ex, &task(TaskKind::Generation), &tok).unwrap();
        let mut want = vec![Piece::Soft(0), Piece::Soft(1)];
        want.extend(tokens(&["The", "Ġcapital"]));
        want.push(Piece::Soft(2));
        want.extend(tokens(&["Ġof", "ĠFrance"]));
        want.extend([Piece::Trigger(0), Piece::Trigger(1)]);
        want.extend(tokens(&["Ġis"]));
        want.extend([Piece::Trigger(2), Piece::Soft(3)]);
        assert_eq!(e.prompt, want);
        assert_eq!(e.candidates, vec![vec![id("ĠParis")]]);
    }

    #[test]
    fn classification_scores_every_label_in_label_order() {
        let tok = tokenizer();
        let t = Template::parse("{country} is in [ANSWER]").unwrap();
        let task = task(TaskKind::Classification);
        let e = encode(
            &t,
            &example(&[("country", "France")], "europe"),
            &task,
            &tok,
        )
        .unwrap();
        assert_eq!(e.prompt, tokens(&["France", "Ġis", "Ġin"]));
        assert_eq!(
            e.candidates,
            vec![
                vec![id("ĠAfrica")],
                vec![id("ĠEurope")],
                vec![id("ĠNorth"), id("ĠAmerica")]
            ]
        );
        assert_eq!(e.gold, 1);
        assert_eq!(e.answer_text, "Europe");
        let e = encode(&t, &example(&[("country", "Peru")], "na"), &task, &tok).unwrap();
        assert_eq!(e.gold, 2);
        assert_eq!(e.answer_text, "North America");
    }

    #[test]
    fn errors_are_reported_not_panicked() {
        let tok = tokenizer();
        let task = task(TaskKind::Classification);
        let t = Template::parse("{city} is in [ANSWER]").unwrap();
        let err = encode(
            &t,
            &example(&[("country", "France")], "europe"),
            &task,
            &tok,
        )
        .unwrap_err();
        assert!(err.to_string().contains("{city}"), "{err}");
        let t = Template::parse("{country} is in [ANSWER]").unwrap();
        let err = encode(&t, &example(&[("country", "France")], "asia"), &task, &tok).unwrap_err();
        assert!(err.to_string().contains("\"asia\""), "{err}");
        let t = Template::parse(" [ANSWER]").unwrap();
        let err = encode(&t, &example(&[], "europe"), &task, &tok).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        let t = Template {
            segments: vec![Segment::Text("x".into())],
        };
        assert!(encode(&t, &example(&[], "europe"), &task, &tok).is_err());
    }

    #[test]
    fn renders_previews() {
        let t = Template::parse("[P*2] {country} [T] capital {missing} [ANSWER]").unwrap();
        let ex = example(&[("country", "Mali")], "africa");
        assert_eq!(
            render_text(&t, &ex, &task(TaskKind::Classification)),
            "[P][P] Mali [T] capital {missing} Africa"
        );
    }
}
