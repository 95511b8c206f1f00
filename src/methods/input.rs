//! The model's input for a method's prompt: the rows (an encoded prompt and the answer after
//! it), the training batch, and the `[b, T, d]` embeddings with the prompt's soft vectors and
//! trigger tokens in their template slots. Shared by every method, so all are trained and
//! evaluated on the same input. Depends on the model, the task encoding and `Prompt` only.

use super::Prompt;
use crate::model::Llm;
use crate::task::{Encoded, Piece};
use anyhow::{bail, Result};
use candle_core::Tensor;

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
