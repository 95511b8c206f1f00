//! Turning encoded examples plus a method's prompt into the model's input, and scoring the
//! answer tokens. Shared by every method, so all are trained and evaluated the same way.

use super::optim::AdamW;
use super::Prompt;
use crate::model::{ForwardInput, Llm, LogitRows};
use crate::task::{Encoded, Piece};
use anyhow::{bail, Result};
use candle_core::{Tensor, Var, D};

/// One sequence: the encoded prompt and the answer tokens that follow it.
#[derive(Debug, Clone)]
pub struct Row {
    pub pieces: Vec<Piece>,
    pub answer: Vec<u32>,
}

impl Row {
    /// The prompt followed by the gold answer (what training sees).
    pub fn gold(e: &Encoded) -> Row {
        Row {
            pieces: e.prompt.clone(),
            answer: e.candidates[e.gold].clone(),
        }
    }

    /// The prompt followed by each candidate answer (what classification scoring ranks).
    pub fn candidates(e: &Encoded) -> Vec<Row> {
        e.candidates
            .iter()
            .map(|c| Row {
                pieces: e.prompt.clone(),
                answer: c.clone(),
            })
            .collect()
    }
}

/// A training batch, split into micro-batches whose gradients are accumulated.
pub struct Batch {
    pub rows: Vec<Row>,
    pub micro_batch: usize,
}

/// Log-probabilities of the answers.
pub struct Scored {
    /// `[rows]`: each row's summed answer-token log-probability.
    pub row_logprob: Tensor,
    /// Scalar: summed negative log-likelihood over all answer tokens.
    pub nll_sum: Tensor,
    pub answer_tokens: usize,
}

/// Builds `[b, T, d]` input embeddings and the `[b, T]` padding mask for rows (right-padded),
/// with the prompt's soft vectors and triggers in their slots. The full sequence
/// (prompt + answer) is embedded; `lengths` gives each row's length.
pub fn embed_rows(
    llm: &Llm,
    prompt: &Prompt,
    rows: &[Row],
) -> Result<(Tensor, Tensor, Vec<usize>)> {
    let b = rows.len();
    let lengths: Vec<usize> = rows
        .iter()
        .map(|r| r.pieces.len() + r.answer.len())
        .collect();
    let t = *lengths.iter().max().unwrap_or(&0);
    if b == 0 || t == 0 {
        bail!("nothing to embed");
    }
    let soft_n = prompt
        .soft
        .as_ref()
        .map(|s| s.dim(0))
        .transpose()?
        .unwrap_or(0);
    let trig_embeds_n = prompt
        .trigger_embeds
        .as_ref()
        .map(|s| s.dim(0))
        .transpose()?
        .unwrap_or(0);
    let mut ids = vec![0u32; b * t];
    let mut mask = vec![0f32; b * t];
    // Index into [token embeddings (b*t) ; soft vectors ; trigger vectors].
    let mut gather: Vec<u32> = (0..(b * t) as u32).collect();
    let mut needs_table = false;
    for (r, row) in rows.iter().enumerate() {
        for (i, p) in row.pieces.iter().enumerate() {
            let at = r * t + i;
            match *p {
                Piece::Token(id) => ids[at] = id,
                Piece::Soft(j) => {
                    if j >= soft_n {
                        bail!("the template has more soft slots than the method has vectors ({soft_n})");
                    }
                    gather[at] = (b * t + j) as u32;
                    needs_table = true;
                }
                Piece::Trigger(j) => {
                    if j >= prompt.triggers.len() {
                        bail!(
                            "the template has more trigger slots than the method has triggers ({})",
                            prompt.triggers.len()
                        );
                    }
                    if trig_embeds_n > 0 {
                        gather[at] = (b * t + soft_n + j) as u32;
                        needs_table = true;
                    } else {
                        ids[at] = prompt.triggers[j];
                    }
                }
            }
            mask[at] = 1.0;
        }
        for (i, &id) in row.answer.iter().enumerate() {
            let at = r * t + row.pieces.len() + i;
            ids[at] = id;
            mask[at] = 1.0;
        }
    }
    let dev = llm.device();
    let d = llm.cfg.hidden_size;
    let tok = llm
        .embedding_matrix()
        .index_select(&Tensor::new(ids.as_slice(), dev)?, 0)?;
    let embeds = if needs_table {
        let mut parts = vec![tok];
        if let Some(s) = &prompt.soft {
            parts.push(s.clone());
        }
        if let Some(s) = &prompt.trigger_embeds {
            parts.push(s.clone());
        }
        let table = Tensor::cat(&parts, 0)?;
        table.index_select(&Tensor::new(gather.as_slice(), dev)?, 0)?
    } else {
        tok
    };
    let embeds = embeds.reshape((b, t, d))?;
    let mask = Tensor::from_vec(mask, (b, t), dev)?;
    Ok((embeds, mask, lengths))
}

/// Scores each row's answer tokens under the model with the prompt.
pub fn score(llm: &Llm, prompt: &Prompt, rows: &[Row]) -> Result<Scored> {
    let (embeds, mask, _) = embed_rows(llm, prompt, rows)?;
    let t = embeds.dim(1)?;
    let mut positions = Vec::new();
    let mut targets = Vec::new();
    let mut owner = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        if row.pieces.is_empty() || row.answer.is_empty() {
            bail!("a row needs a prompt and an answer");
        }
        for (i, &id) in row.answer.iter().enumerate() {
            // The logits at the position before each answer token predict it.
            positions.push((r * t + row.pieces.len() + i - 1) as u32);
            targets.push(id);
            owner.push(r);
        }
    }
    let dev = llm.device();
    let out = llm.forward(&ForwardInput {
        embeds: &embeds,
        attention_mask: Some(&mask),
        prefix: prompt.prefix.as_ref(),
        logits: LogitRows::Rows(positions),
        keep_kv: false,
    })?;
    let logp = candle_nn::ops::log_softmax(&out.logits, D::Minus1)?;
    let n = targets.len();
    let target = Tensor::from_vec(targets, (n, 1), dev)?;
    let token_lp = logp.gather(&target, 1)?.squeeze(1)?;
    // Sum token log-probs per row with a 0/1 matrix, which keeps the sum differentiable.
    let mut m = vec![0f32; rows.len() * n];
    for (j, &r) in owner.iter().enumerate() {
        m[r * n + j] = 1.0;
    }
    let m = Tensor::from_vec(m, (rows.len(), n), dev)?;
    let row_logprob = m.matmul(&token_lp.unsqueeze(1)?)?.squeeze(1)?;
    let nll_sum = token_lp.sum_all()?.neg()?;
    Ok(Scored {
        row_logprob,
        nll_sum,
        answer_tokens: n,
    })
}

/// Mean answer-token loss of a batch and the gradients of `vars` (in order), accumulated over
/// micro-batches. Only the variables' gradients are kept: each micro-batch's full gradient store
/// (every intermediate of the graph) is dropped as soon as they are read, so memory does not grow
/// with `--grad-accum`. Fails if a variable received no gradient: candle's fused ops cut the
/// graph silently, and a prompt that never changes must not pass for trained.
pub fn loss_and_grads(
    llm: &Llm,
    prompt_fn: &dyn Fn() -> Result<Prompt>,
    batch: &Batch,
    vars: &[Var],
) -> Result<(f32, Vec<Tensor>)> {
    let total: usize = batch.rows.iter().map(|r| r.answer.len()).sum();
    let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
    let mut loss = 0f32;
    for chunk in batch.rows.chunks(batch.micro_batch.max(1)) {
        // The prompt is rebuilt per micro-batch: a reparameterised prompt (prefix MLP, P-Tuning
        // encoder) must be in each micro-batch's graph.
        let prompt = prompt_fn()?;
        let s = score(llm, &prompt, chunk)?;
        let l = (s.nll_sum / total as f64)?;
        loss += l.to_scalar::<f32>()?;
        let store = l.backward()?;
        for (i, v) in vars.iter().enumerate() {
            let Some(g) = store.get(v.as_tensor()) else {
                bail!("internal error: trainable tensor {i} received no gradient");
            };
            grads[i] = Some(match grads[i].take() {
                Some(acc) => (acc + g)?,
                None => g.clone(),
            });
        }
    }
    if !loss.is_finite() {
        bail!("the loss is {loss} (not finite): lower the learning rate");
    }
    let grads = grads
        .into_iter()
        .map(|g| g.expect("a batch has at least one row"))
        .collect();
    Ok((loss, grads))
}

/// One AdamW update of the optimiser's variables on a batch.
pub fn gradient_step(
    llm: &Llm,
    prompt_fn: &dyn Fn() -> Result<Prompt>,
    batch: &Batch,
    opt: &mut AdamW,
    lr: f64,
) -> Result<f32> {
    let (loss, grads) = loss_and_grads(llm, prompt_fn, batch, opt.vars())?;
    opt.set_learning_rate(lr);
    opt.step(&grads)?;
    Ok(loss)
}
