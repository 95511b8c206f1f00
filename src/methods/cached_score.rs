//! Scoring many continuations of a shared head from one key/value cache: the head (the prompt
//! with its soft vectors, triggers and prefix) runs once with `keep_kv`, and every continuation
//! (a class label's answer, an AutoPrompt candidate's trigger tokens and what follows them) runs
//! on that cache. Classification evaluation and AutoPrompt's candidate search use it; the
//! full-sequence path (`score::score` on every row) stays the reference they must equal.
//!
//! Why: scoring each label by re-running the whole prompt costs about one full forward per
//! label per example; with the cache the prompt runs once per example and each label adds only
//! its own answer tokens (for single-token labels, nothing at all).
//!
//! Exactness: a cache fed back as a prefix is visible to every query (the model has no mask on
//! a prefix), so a cache must hold no padding. Heads are therefore grouped by exact length
//! (pieces count) and each group's cache comes from an unpadded forward; only continuations are
//! right-padded, under the attention mask. Each continuation row gets its own head's cache by
//! `index_select` along the batch. The first answer token, when nothing stands between head and
//! answer, is read from the head forward's last-position logits.

use super::input::{embed_rows, model_token, Row};
use super::Prompt;
use crate::model::{ForwardInput, KvPrefix, Llm, LogitRows};
use crate::task::Piece;
use anyhow::{bail, Context, Result};
use candle_core::{Tensor, D};
use std::collections::BTreeMap;

/// One sequence to score: `heads[head]`, then `tail`, then `answer`; only the answer tokens are
/// scored.
#[derive(Debug, Clone)]
pub struct Continuation<'a> {
    pub head: usize,
    pub tail: Vec<Piece>,
    pub answer: &'a [u32],
}

/// Whether `prompt` can be scored from a cache: its prefix, if any, is one prefix for every row
/// (`[1, kv_heads, n, head_dim]`). Per-row prefixes would have to be split with the rows.
pub fn cacheable(prompt: &Prompt) -> bool {
    match &prompt.prefix {
        None => true,
        Some(p) => p
            .layers
            .iter()
            .all(|(k, v)| k.dim(0).ok() == Some(1) && v.dim(0).ok() == Some(1)),
    }
}

/// Each continuation's summed answer-token log-probability (in `rows` order), equal to what
/// `score::score` gives for the row `heads[head] ++ tail` / `answer`. At most `max_rows`
/// continuation rows (and heads) go into one forward.
pub fn continuation_logprobs(
    llm: &Llm,
    prompt: &Prompt,
    heads: &[&[Piece]],
    rows: &[Continuation],
    max_rows: usize,
) -> Result<Vec<f32>> {
    if !cacheable(prompt) {
        bail!("internal error: a per-row prefix cannot be scored from a shared cache");
    }
    let max_rows = max_rows.max(1);
    let mut of_head: Vec<Vec<usize>> = vec![Vec::new(); heads.len()];
    for (r, c) in rows.iter().enumerate() {
        if c.answer.is_empty() {
            bail!("a row needs a prompt and an answer");
        }
        of_head
            .get_mut(c.head)
            .context("internal error: a continuation names a head that does not exist")?
            .push(r);
    }
    // Heads of one length share an unpadded cache forward.
    let mut by_len: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (h, head) in heads.iter().enumerate() {
        if of_head[h].is_empty() {
            continue;
        }
        if head.is_empty() {
            bail!("internal error: an empty head has nothing to cache");
        }
        by_len.entry(head.len()).or_default().push(h);
    }
    let mut out = vec![0f32; rows.len()];
    for group in by_len.values() {
        let mut chunk: Vec<usize> = Vec::new();
        let mut chunk_rows = 0;
        for &h in group {
            let n = of_head[h].len();
            if !chunk.is_empty() && chunk_rows + n > max_rows {
                score_chunk(
                    llm, prompt, heads, rows, &of_head, &chunk, max_rows, &mut out,
                )?;
                chunk.clear();
                chunk_rows = 0;
            }
            chunk.push(h);
            chunk_rows += n;
        }
        if !chunk.is_empty() {
            score_chunk(
                llm, prompt, heads, rows, &of_head, &chunk, max_rows, &mut out,
            )?;
        }
    }
    Ok(out)
}

/// Runs the heads of `chunk` (all of one length) once and scores their continuations.
#[allow(clippy::too_many_arguments)]
fn score_chunk(
    llm: &Llm,
    prompt: &Prompt,
    heads: &[&[Piece]],
    rows: &[Continuation],
    of_head: &[Vec<usize>],
    chunk: &[usize],
    max_rows: usize,
    out: &mut [f32],
) -> Result<()> {
    let dev = llm.device();
    let head_rows: Vec<Row> = chunk
        .iter()
        .map(|&h| Row {
            pieces: heads[h].to_vec(),
            answer: vec![],
            prompt: 0,
        })
        .collect();
    let (embeds, _, _) = embed_rows(llm, prompt, &head_rows)?;
    let res = llm.forward(&ForwardInput {
        embeds: &embeds,
        attention_mask: None,
        prefix: prompt.prefix.as_ref(),
        logits: LogitRows::Last,
        keep_kv: true,
    })?;
    let cache = res
        .kv
        .context("internal error: the forward kept no cache")?;

    // Answers that follow the head directly: their first token is predicted by the head's last
    // position.
    let mut first_idx = Vec::new();
    let mut first_row = Vec::new();
    // Rows that still have input after the head (tail pieces, or answer tokens before the last).
    let mut cont: Vec<(usize, usize)> = Vec::new();
    for (g, &h) in chunk.iter().enumerate() {
        for &r in &of_head[h] {
            let c = &rows[r];
            if c.tail.is_empty() {
                first_idx.push((g * llm.cfg.vocab_size) as u32 + model_token(llm, c.answer[0])?);
                first_row.push(r);
            }
            if c.tail.len() + c.answer.len() > 1 {
                cont.push((g, r));
            }
        }
    }
    if !first_idx.is_empty() {
        let logp = candle_nn::ops::log_softmax(&res.logits, D::Minus1)?.flatten_all()?;
        let lp: Vec<f32> = logp
            .index_select(&Tensor::new(first_idx.as_slice(), dev)?, 0)?
            .to_vec1()?;
        for (&r, v) in first_row.iter().zip(lp) {
            out[r] += v;
        }
    }

    for sub in cont.chunks(max_rows) {
        let owner: Vec<u32> = sub.iter().map(|&(g, _)| g as u32).collect();
        let owner = Tensor::new(owner.as_slice(), dev)?;
        let kv = KvPrefix::new(
            cache
                .layers
                .iter()
                .map(|(k, v)| Ok((k.index_select(&owner, 0)?, v.index_select(&owner, 0)?)))
                .collect::<Result<Vec<_>>>()?,
        );
        // The input after the head: the tail, then every answer token but the last (nothing
        // after the last is predicted).
        let tail_rows: Vec<Row> = sub
            .iter()
            .map(|&(_, r)| {
                let c = &rows[r];
                Row {
                    pieces: c.tail.clone(),
                    answer: c.answer[..c.answer.len() - 1].to_vec(),
                    prompt: 0,
                }
            })
            .collect();
        let (embeds, mask, _) = embed_rows(llm, prompt, &tail_rows)?;
        let t = embeds.dim(1)?;
        let mut positions = Vec::new();
        let mut targets = Vec::new();
        let mut owner_row = Vec::new();
        for (i, &(_, r)) in sub.iter().enumerate() {
            let c = &rows[r];
            for (j, &id) in c.answer.iter().enumerate() {
                // Answer token j is predicted at tail position tail.len() + j - 1; position -1
                // is the head's last, already read above.
                if c.tail.len() + j == 0 {
                    continue;
                }
                positions.push((i * t + c.tail.len() + j - 1) as u32);
                targets.push(model_token(llm, id)?);
                owner_row.push(r);
            }
        }
        let res = llm.forward(&ForwardInput {
            embeds: &embeds,
            attention_mask: Some(&mask),
            prefix: Some(&kv),
            logits: LogitRows::Rows(positions),
            keep_kv: false,
        })?;
        let logp = candle_nn::ops::log_softmax(&res.logits, D::Minus1)?;
        let n = targets.len();
        let target = Tensor::from_vec(targets, (n, 1), dev)?;
        let lp: Vec<f32> = logp.gather(&target, 1)?.squeeze(1)?.to_vec1()?;
        for (&r, v) in owner_row.iter().zip(lp) {
            out[r] += v;
        }
    }
    Ok(())
}
