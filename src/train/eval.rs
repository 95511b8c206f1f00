//! Scoring a prompt on a split, the same way for every method: classification ranks the label
//! answers by total log-probability; generation greedily continues the prompt up to the
//! answer's end (the model's end-of-sequence token or the task's stop text) within the task's
//! budget and compares the text before the end with the target (see `task::metric`).
//!
//! [`predict`] returns the same scoring example by example ([`crate::predictions`]): the text
//! each example showed the model, its gold answer, the prediction and, for classification, the
//! label probability the ranking used. [`evaluate`] is its summary; neither scores twice.

use crate::methods::cached_score::{self, Continuation};
use crate::methods::input::embed_rows;
use crate::methods::score::score;
use crate::methods::Prompt;
use crate::methods::Row;
use crate::model::{ForwardInput, Llm, LogitRows};
use crate::predictions::{Prediction, Predictions};
use crate::task::{exact_match, text_before_stop, AnswerEnd, Encoded, Piece, TaskKind};
use anyhow::Result;
use candle_core::Tensor;

/// Rows per forward while scoring the full sequences (the reference path).
const SCORE_ROWS: usize = 32;

/// Candidate rows (and prompts) per forward on the cached path. Its rows are short (the answer
/// tokens after a cached prompt), so more fit in the memory one full-sequence chunk takes.
const CACHED_ROWS: usize = 64;

/// Per-example outcome of an evaluation.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub metric: f64,
    pub predictions: Vec<String>,
}

pub fn evaluate(
    llm: &Llm,
    prompt: &Prompt,
    kind: TaskKind,
    encoded: &[Encoded],
    tok: &tokenizers::Tokenizer,
) -> Result<Outcome> {
    let p = predict(llm, prompt, kind, encoded, tok)?;
    Ok(Outcome {
        metric: p.accuracy(),
        predictions: p.rows.into_iter().map(|r| r.prediction).collect(),
    })
}

/// Scores `encoded` as [`evaluate`] does and returns every example's result; its
/// [`Predictions::accuracy`] is [`evaluate`]'s metric. Classification rows carry the predicted
/// label's probability over the labels; generation rows the greedy text without a probability.
pub fn predict(
    llm: &Llm,
    prompt: &Prompt,
    kind: TaskKind,
    encoded: &[Encoded],
    tok: &tokenizers::Tokenizer,
) -> Result<Predictions> {
    let owned;
    let llm = if llm.is_trainable() {
        owned = llm.detached()?;
        &owned
    } else {
        llm
    };
    let prompt = &prompt.detached();
    match kind {
        TaskKind::Classification => classify(llm, prompt, encoded, tok),
        TaskKind::Generation => {
            let out = generate(llm, prompt, encoded, tok)?;
            let rows = encoded
                .iter()
                .zip(out.predictions)
                .map(|(e, text)| Prediction {
                    input: input_text(e, tok),
                    gold: e.answer_text.clone(),
                    correct: exact_match(&text, &e.answer_text),
                    prediction: text,
                    probability: None,
                })
                .collect();
            Ok(Predictions {
                kind,
                labels: Vec::new(),
                rows,
            })
        }
    }
}

/// The text tokens of an example's prompt, decoded: what the model read around its soft
/// vectors and triggers, which are left out.
fn input_text(e: &Encoded, tok: &tokenizers::Tokenizer) -> String {
    let ids: Vec<u32> = e
        .prompt
        .iter()
        .filter_map(|p| match p {
            Piece::Token(id) => Some(*id),
            Piece::Soft(_) | Piece::Trigger(_) => None,
        })
        .collect();
    tok.decode(&ids, false)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A candidate answer as text, without the whitespace the template moved into it.
fn answer_label(ids: &[u32], tok: &tokenizers::Tokenizer) -> String {
    tok.decode(ids, false)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The candidates' total log-probabilities for each example. The prompt (soft vectors,
/// triggers, prefix) and input run once per example and every candidate is scored from that
/// key/value cache (`methods::cached_score`); equal to [`candidate_logprobs_full`] within f32
/// rounding.
pub fn candidate_logprobs(
    llm: &Llm,
    prompt: &Prompt,
    encoded: &[Encoded],
) -> Result<Vec<Vec<f32>>> {
    if !cached_score::cacheable(prompt) {
        return candidate_logprobs_full(llm, prompt, encoded);
    }
    let heads: Vec<&[Piece]> = encoded.iter().map(|e| e.prompt.as_slice()).collect();
    let rows: Vec<Continuation> = encoded
        .iter()
        .enumerate()
        .flat_map(|(i, e)| {
            e.candidates.iter().map(move |c| Continuation {
                head: i,
                tail: vec![],
                answer: c,
            })
        })
        .collect();
    let lp = cached_score::continuation_logprobs(llm, prompt, &heads, &rows, CACHED_ROWS)?;
    Ok(split_per_example(&lp, encoded))
}

/// The reference: every (example, candidate) row runs the whole prompt again, as full-sequence
/// scoring does (the way PEFT users rank labels). Kept for the equivalence tests and the bench.
pub fn candidate_logprobs_full(
    llm: &Llm,
    prompt: &Prompt,
    encoded: &[Encoded],
) -> Result<Vec<Vec<f32>>> {
    let rows: Vec<Row> = encoded.iter().flat_map(Row::candidates).collect();
    let mut lp = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(SCORE_ROWS) {
        lp.extend(score(llm, prompt, chunk)?.row_logprob.to_vec1::<f32>()?);
    }
    Ok(split_per_example(&lp, encoded))
}

fn split_per_example(lp: &[f32], encoded: &[Encoded]) -> Vec<Vec<f32>> {
    let mut out = Vec::with_capacity(encoded.len());
    let mut at = 0;
    for e in encoded {
        out.push(lp[at..at + e.candidates.len()].to_vec());
        at += e.candidates.len();
    }
    out
}

/// Ranks each example's label answers by total log-probability (the metric), keeping the
/// winner's probability normalised over the labels.
fn classify(
    llm: &Llm,
    prompt: &Prompt,
    encoded: &[Encoded],
    tok: &tokenizers::Tokenizer,
) -> Result<Predictions> {
    let lps = candidate_logprobs(llm, prompt, encoded)?;
    let mut rows = Vec::with_capacity(encoded.len());
    for (e, lp) in encoded.iter().zip(&lps) {
        let best = lp
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap_or(0);
        rows.push(Prediction {
            input: input_text(e, tok),
            gold: answer_label(&e.candidates[e.gold], tok),
            prediction: answer_label(&e.candidates[best], tok),
            probability: Some(label_probability(lp, best)),
            correct: best == e.gold,
        });
    }
    let labels = encoded
        .first()
        .map(|e| e.candidates.iter().map(|c| answer_label(c, tok)).collect())
        .unwrap_or_default();
    Ok(Predictions {
        kind: TaskKind::Classification,
        labels,
        rows,
    })
}

/// Candidate `i`'s probability among all candidates: the softmax of the total
/// log-probabilities, in f64 (a label's total over several tokens can be far below f32's
/// smallest exponent).
fn label_probability(lp: &[f32], i: usize) -> f64 {
    let at = lp[i] as f64;
    let sum: f64 = lp.iter().map(|&l| (l as f64 - at).exp()).sum();
    if sum.is_finite() && sum > 0.0 {
        1.0 / sum
    } else {
        0.0
    }
}

fn generate(
    llm: &Llm,
    prompt: &Prompt,
    encoded: &[Encoded],
    tok: &tokenizers::Tokenizer,
) -> Result<Outcome> {
    let mut correct = 0;
    let mut predictions = Vec::new();
    for e in encoded {
        let answer = greedy_answer(llm, prompt, e, tok)?;
        if exact_match(&answer, &e.answer_text) {
            correct += 1;
        }
        predictions.push(answer);
    }
    Ok(Outcome {
        metric: crate::task::accuracy(correct, encoded.len()),
        predictions,
    })
}

/// The answer greedy decoding gives for an encoded prompt: the text before its end (the model's
/// end-of-sequence token or the stop text), whitespace-trimmed, within the example's budget
/// (the task's `max_new_tokens`, never the gold answer's length: the metric must not know the
/// answer before it is produced). Evaluation, the playground and serving all answer this way.
pub fn greedy_answer(
    llm: &Llm,
    prompt: &Prompt,
    e: &Encoded,
    tok: &tokenizers::Tokenizer,
) -> Result<String> {
    let ids = greedy_with_prompt(llm, prompt, e, e.max_new_tokens, tok)?;
    let text = tok.decode(&ids, false).unwrap_or_default();
    Ok(text_before_stop(&text, &e.end).trim().to_string())
}

/// Greedy continuation of an encoded prompt (soft vectors, triggers and prefix in place), up to
/// `max_new` tokens: it stops at the model's end-of-sequence token (not returned), or once the
/// decoded text holds the example's stop text (the tokens that completed it are returned; cut
/// the text with `task::text_before_stop`). The same rule for evaluation, the playground and
/// serving.
pub fn greedy_with_prompt(
    llm: &Llm,
    prompt: &Prompt,
    e: &Encoded,
    max_new: usize,
    tok: &tokenizers::Tokenizer,
) -> Result<Vec<u32>> {
    let row = Row {
        pieces: e.prompt.clone(),
        answer: vec![],
        prompt: 0,
    };
    let (embeds, _, _) = embed_rows(llm, prompt, std::slice::from_ref(&row))?;
    let mut out = Vec::new();
    let mut res = llm.forward(&ForwardInput {
        embeds: &embeds,
        attention_mask: None,
        prefix: prompt.prefix.as_ref(),
        logits: LogitRows::Last,
        keep_kv: true,
    })?;
    for _ in 0..max_new {
        let next = res.logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?;
        if Some(next) == llm.cfg.eos_token_id {
            break;
        }
        out.push(next);
        if let AnswerEnd::Stop(stop) = &e.end {
            // Decoded whole, as a stop text may span tokens or sit inside one.
            let text = tok.decode(&out, false).unwrap_or_default();
            if !stop.is_empty() && text.contains(stop.as_str()) {
                break;
            }
        }
        let x = llm.embed(&Tensor::new(&[next], llm.device())?.unsqueeze(0)?)?;
        res = llm.forward(&ForwardInput {
            embeds: &x,
            attention_mask: None,
            prefix: res.kv.as_ref(),
            logits: LogitRows::Last,
            keep_kv: true,
        })?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::label_probability;

    #[test]
    fn a_labels_probability_is_the_softmax_of_the_total_log_probabilities() {
        let p = label_probability(&[-1.0, -2.0, -3.0], 0);
        let want = 1.0 / (1.0 + (-1.0f64).exp() + (-2.0f64).exp());
        assert!((p - want).abs() < 1e-12, "{p} vs {want}");
        // Totals of long answers lie far below exp's range in f32; their ratio still counts.
        assert!((label_probability(&[-2000.0, -2000.0], 1) - 0.5).abs() < 1e-12);
        assert_eq!(
            label_probability(&[f32::NEG_INFINITY, f32::NEG_INFINITY], 0),
            0.0
        );
    }
}
