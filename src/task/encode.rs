//! Encoding: a template filled with one example becomes the pieces a model consumes: token
//! ids for text, numbered places for soft vectors and trigger tokens, and the token ids of
//! every answer candidate.
//!
//! Consecutive text and field values are joined and tokenized as one string, so BPE merges
//! do not depend on where a field boundary falls; a `[P]` or `[T]` slot breaks the string.
//! The whitespace right before `[ANSWER]` moves from the prompt into each answer candidate:
//! `The capital of {country} is [ANSWER]` scores `" Paris"`, which is how BPE tokenizers
//! see a word after a space, instead of a prompt ending in a lone space token.
//!
//! Special tokens, as the model's own tokenizer settings place them and PEFT orders them:
//! - BOS: put before the text exactly when the tokenizer adds it ([`bos_tokens`]: what its
//!   post-processor puts in front of a text, which the loaders in `model` build from
//!   `tokenizer.json`, `tokenizer_config.json`'s `add_bos_token` or GGUF's
//!   `tokenizer.ggml.add_bos_token`). Soft vectors at the start of the template stay in front
//!   of it, as PEFT feeds `[virtual tokens][BOS] text`; Prefix Tuning's prefix is not a
//!   position of the input, so its BOS is the first text position after the prefix.
//!   SmolLM2's GGUF says `add_bos_token = false` and the built-in model's tokenizer has no
//!   post-processor: neither adds one.
//! - The end of a generated answer ([`AnswerEnd`]): the generation target is the answer then
//!   the model's end-of-sequence token ([`END_OF_SEQUENCE`] stands for it here, as this module
//!   knows no model), or the answer then the task's `"stop"` text, tokenized with it. The loss
//!   covers that end, so training teaches where an answer stops. Classification answers are
//!   label words ranked against each other: nothing follows them.

use anyhow::{bail, Context, Result};
use tokenizers::Tokenizer;

use super::dataset::{AnswerEnd, Example, Task, TaskKind};
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

/// Stands for the model's end-of-sequence token at the end of a generation target: the task
/// layer knows no model, so `methods::input::model_token` puts the model's own id
/// (`Config::eos_token_id`: `<|im_end|>`, id 2, from SmolLM2's GGUF `tokenizer.ggml.eos_token_id`;
/// `<|endoftext|>`, id 0, from the built-in model's config.json) in its place wherever ids meet
/// the model. No vocabulary comes near this id.
pub const END_OF_SEQUENCE: u32 = u32::MAX;

/// An example ready for scoring: the prompt, then one of `candidates` follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub prompt: Vec<Piece>,
    /// Token ids of each answer candidate (with the moved whitespace in front). A generation
    /// target ends with its end marker ([`END_OF_SEQUENCE`], or the stop text's tokens).
    pub candidates: Vec<Vec<u32>>,
    /// Index of the correct candidate.
    pub gold: usize,
    /// The correct answer as plain text (no leading whitespace, no end marker), for display
    /// and exact match.
    pub answer_text: String,
    /// How the answer ends: what greedy decoding stops at.
    pub end: AnswerEnd,
    /// The decoding budget (the task's `max_new_tokens`; 0 for classification).
    pub max_new_tokens: usize,
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

/// The token ids the tokenizer's own settings put before a text (its BOS, where it adds one;
/// empty for SmolLM2 and the built-in model). Read off the tokenizer by encoding a probe text
/// with and without special tokens, so every loader's way of saying it (a `tokenizer.json`
/// post-processor, `add_bos_token`, GGUF metadata turned into a post-processor) counts alike.
/// Tokens a tokenizer appends after a text (an EOS some add) are not taken: the answer follows
/// the prompt, and the end of a generated answer is [`AnswerEnd`]'s business.
pub fn bos_tokens(tok: &Tokenizer) -> Result<Vec<u32>> {
    let probe = "a";
    let plain = tokenize(tok, probe)?;
    let with = tok
        .encode(probe, true)
        .map_err(|e| anyhow::anyhow!("cannot tokenize {probe:?} with special tokens: {e}"))?;
    let with = with.get_ids();
    // The text's last occurrence: a BOS may share an id with the probe's own token.
    Ok((0..=with.len().saturating_sub(plain.len()))
        .rev()
        .find(|&at| with[at..].starts_with(&plain))
        .map(|at| with[..at].to_vec())
        .unwrap_or_default())
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
    let bos = bos_tokens(tok)?;
    if !bos.is_empty() {
        let at = prompt
            .iter()
            .position(|p| !matches!(p, Piece::Soft(_)))
            .unwrap_or(prompt.len());
        prompt.splice(at..at, bos.into_iter().map(Piece::Token));
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
        TaskKind::Generation => {
            let target = match task.answer_end() {
                AnswerEnd::Stop(stop) => candidate(&format!("{}{stop}", example.answer))?,
                AnswerEnd::Eos | AnswerEnd::Unmarked => {
                    let mut ids = candidate(&example.answer)?;
                    ids.push(END_OF_SEQUENCE);
                    ids
                }
            };
            (vec![target], 0)
        }
    };
    Ok(Encoded {
        prompt,
        candidates,
        gold,
        answer_text: task.answer_text(&example.answer).to_string(),
        end: task.answer_end(),
        max_new_tokens: task.max_new_tokens(),
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
            stop: None,
            max_new_tokens: None,
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
        assert_eq!(e.candidates, vec![vec![id("ĠParis"), END_OF_SEQUENCE]]);
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
        assert_eq!(
            tok_e.unwrap().candidates,
            vec![vec![id("Paris"), END_OF_SEQUENCE]]
        );
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
        assert_eq!(e.candidates, vec![vec![id("ĠParis"), END_OF_SEQUENCE]]);
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

    /// The test tokenizer with a BOS added the way Llama's `tokenizer.json` adds it: a
    /// TemplateProcessing post-processor `<s> $A`.
    fn bos_tokenizer() -> Tokenizer {
        let mut tok = tokenizer();
        let bos = tokenizers::processors::template::TemplateProcessing::builder()
            .try_single("[UNK] $A")
            .unwrap()
            .special_tokens(vec![("[UNK]".to_string(), 0)])
            .build()
            .unwrap();
        tok.with_post_processor(Some(bos));
        tok
    }

    #[test]
    fn bos_is_added_only_when_the_tokenizer_adds_it_after_leading_soft_vectors() {
        assert_eq!(bos_tokens(&tokenizer()).unwrap(), Vec::<u32>::new());
        let tok = bos_tokenizer();
        assert_eq!(bos_tokens(&tok).unwrap(), vec![0]);
        let ex = example(&[("country", "France")], "Paris");
        let task = task(TaskKind::Generation);
        // PEFT's order: [virtual tokens][BOS] text.
        let t = Template::parse("[P*2]The capital of {country} is [ANSWER]").unwrap();
        let e = encode(&t, &ex, &task, &tok).unwrap();
        let mut want = vec![Piece::Soft(0), Piece::Soft(1), Piece::Token(0)];
        want.extend(tokens(&["The", "Ġcapital", "Ġof", "ĠFrance", "Ġis"]));
        assert_eq!(e.prompt, want);
        // Without leading soft vectors (zero-shot, AutoPrompt's triggers, Prefix Tuning) BOS
        // is the first position; the answer never gets one.
        let t = Template::parse("[T]The capital of {country} is [ANSWER]").unwrap();
        let e = encode(&t, &ex, &task, &tok).unwrap();
        assert_eq!(&e.prompt[..2], &[Piece::Token(0), Piece::Trigger(0)]);
        assert_eq!(e.candidates, vec![vec![id("ĠParis"), END_OF_SEQUENCE]]);
        // The same template on a tokenizer without BOS has no such token.
        let e = encode(&t, &ex, &task, &tokenizer()).unwrap();
        assert_eq!(e.prompt[0], Piece::Trigger(0));
    }

    #[test]
    fn a_declared_stop_text_ends_the_target_instead_of_eos() {
        let tok = tokenizer();
        let mut task = task(TaskKind::Generation);
        task.spec.stop = Some(" is".into());
        task.spec.max_new_tokens = Some(5);
        let t = Template::parse("The capital of {country} is [ANSWER]").unwrap();
        let e = encode(&t, &example(&[("country", "France")], "Paris"), &task, &tok).unwrap();
        assert_eq!(e.candidates, vec![vec![id("ĠParis"), id("Ġis")]]);
        assert_eq!(e.end, AnswerEnd::Stop(" is".into()));
        assert_eq!(e.max_new_tokens, 5);
        assert_eq!(e.answer_text, "Paris");
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
