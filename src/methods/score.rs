//! Scoring answers: the log-probability of each row's answer tokens under the model with a
//! prompt, in the gradient graph when the prompt is. Training's loss is taken from it; the
//! key/value-cached path (`cached_score.rs`) that evaluation and AutoPrompt's candidate search
//! use must equal it.

use super::input::{embed_mixed, mixed_prefix, model_token, Row};
use super::Prompt;
use crate::model::{ForwardInput, Llm, LogitRows};
use anyhow::{bail, Result};
use candle_core::{Tensor, D};

/// Log-probabilities of the answers.
pub struct Scored {
    /// `[rows]`: each row's summed answer-token log-probability.
    pub row_logprob: Tensor,
    /// Scalar: summed negative log-likelihood over all answer tokens.
    pub nll_sum: Tensor,
    pub answer_tokens: usize,
}

/// Scores each row's answer tokens under the model with the prompt.
pub fn score(llm: &Llm, prompt: &Prompt, rows: &[Row]) -> Result<Scored> {
    score_mixed(llm, std::slice::from_ref(prompt), rows)
}

/// [`score`] for a batch whose rows use different prompts (`Row::prompt`): one forward, each
/// row with its own soft vectors, triggers and key/value prefix.
pub fn score_mixed(llm: &Llm, prompts: &[Prompt], rows: &[Row]) -> Result<Scored> {
    let (embeds, mask, _) = embed_mixed(llm, prompts, rows)?;
    let prefix = mixed_prefix(prompts, rows)?;
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
            targets.push(model_token(llm, id)?);
            owner.push(r);
        }
    }
    let dev = llm.device();
    let out = llm.forward(&ForwardInput {
        embeds: &embeds,
        attention_mask: Some(&mask),
        prefix: prefix.as_ref(),
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
