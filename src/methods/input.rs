//! The model's input for a method's prompt: the rows (an encoded prompt and the answer after
//! it), the training batch, and the `[b, T, d]` embeddings with the prompt's soft vectors and
//! trigger tokens in their template slots. Shared by every method, so all are trained and
//! evaluated on the same input. Depends on the model, the task encoding and `Prompt` only.
//!
//! A batch may mix tasks: each row names which of the batch's prompts it uses (`Row::prompt`),
//! and gets that prompt's soft vectors and triggers in its slots and that prompt's key/value
//! prefix (`mixed_prefix`), so one frozen model serves and trains many prompts at once.

use super::Prompt;
use crate::model::{KvPrefix, Llm};
use crate::task::{Encoded, Piece, END_OF_SEQUENCE};
use anyhow::{bail, Result};
use candle_core::Tensor;

/// One sequence: the encoded prompt and the answer tokens that follow it.
#[derive(Debug, Clone)]
pub struct Row {
    pub pieces: Vec<Piece>,
    pub answer: Vec<u32>,
    /// Which of the batch's prompts this row uses (always 0 when a batch has one prompt).
    pub prompt: usize,
}

impl Row {
    /// The prompt followed by the gold answer (what training sees).
    pub fn gold(e: &Encoded) -> Row {
        Row {
            pieces: e.prompt.clone(),
            answer: e.candidates[e.gold].clone(),
            prompt: 0,
        }
    }

    /// The prompt followed by each candidate answer (what classification scoring ranks).
    pub fn candidates(e: &Encoded) -> Vec<Row> {
        e.candidates
            .iter()
            .map(|c| Row {
                pieces: e.prompt.clone(),
                answer: c.clone(),
                prompt: 0,
            })
            .collect()
    }

    /// The same row using the batch's prompt `prompt`.
    pub fn with_prompt(mut self, prompt: usize) -> Row {
        self.prompt = prompt;
        self
    }
}

/// The model's id for an answer token: `task::END_OF_SEQUENCE` (which ends a generation target)
/// becomes the model's end-of-sequence token; every other id is the model's already.
pub fn model_token(llm: &Llm, id: u32) -> Result<u32> {
    if id != END_OF_SEQUENCE {
        return Ok(id);
    }
    match llm.cfg.eos_token_id {
        Some(eos) => Ok(eos),
        None => bail!(
            "the model declares no end-of-sequence token (config.json \"eos_token_id\", GGUF \"tokenizer.ggml.eos_token_id\"), which ends a generation answer; give the task a \"stop\" text in its task.json instead"
        ),
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
    embed_mixed(llm, std::slice::from_ref(prompt), rows)
}

/// [`embed_rows`] for a batch whose rows use different prompts: each row's slots are filled
/// from `prompts[row.prompt]`.
pub fn embed_mixed(
    llm: &Llm,
    prompts: &[Prompt],
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
    let rows_of = |n: &Option<Tensor>| n.as_ref().map(|s| s.dim(0)).transpose();
    // Each used prompt's soft vectors, then its trigger vectors, follow the b*t token rows in
    // one gather table: `soft_at[p]` and `trig_at[p]` are where they start. A prompt no row
    // uses stays out of the graph, so its variables get no gradient (not a zero one).
    let used: Vec<bool> = (0..prompts.len())
        .map(|p| rows.iter().any(|r| r.prompt == p))
        .collect();
    let mut table_rows = b * t;
    let mut soft_at = Vec::with_capacity(prompts.len());
    let mut trig_at = Vec::with_capacity(prompts.len());
    let mut soft_n = Vec::with_capacity(prompts.len());
    let mut trig_embeds_n = Vec::with_capacity(prompts.len());
    for (p, &u) in prompts.iter().zip(&used) {
        let (s, tr) = if u {
            (
                rows_of(&p.soft)?.unwrap_or(0),
                rows_of(&p.trigger_embeds)?.unwrap_or(0),
            )
        } else {
            (0, 0)
        };
        soft_at.push(table_rows);
        trig_at.push(table_rows + s);
        table_rows += s + tr;
        soft_n.push(s);
        trig_embeds_n.push(tr);
    }
    let mut ids = vec![0u32; b * t];
    let mut mask = vec![0f32; b * t];
    let mut gather: Vec<u32> = (0..(b * t) as u32).collect();
    let mut needs_table = false;
    for (r, row) in rows.iter().enumerate() {
        let p = row.prompt;
        let Some(prompt) = prompts.get(p) else {
            bail!(
                "internal error: a row uses prompt {p} of a batch with {}",
                prompts.len()
            );
        };
        for (i, piece) in row.pieces.iter().enumerate() {
            let at = r * t + i;
            match *piece {
                Piece::Token(id) => ids[at] = id,
                Piece::Soft(j) => {
                    if j >= soft_n[p] {
                        bail!(
                            "the template has more soft slots than the method has vectors ({})",
                            soft_n[p]
                        );
                    }
                    gather[at] = (soft_at[p] + j) as u32;
                    needs_table = true;
                }
                Piece::Trigger(j) => {
                    if j >= prompt.triggers.len() {
                        bail!(
                            "the template has more trigger slots than the method has triggers ({})",
                            prompt.triggers.len()
                        );
                    }
                    if trig_embeds_n[p] > 0 {
                        gather[at] = (trig_at[p] + j) as u32;
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
            ids[at] = model_token(llm, id)?;
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
        for (p, _) in prompts.iter().zip(&used).filter(|(_, &u)| u) {
            parts.extend(p.soft.iter().cloned());
            parts.extend(p.trigger_embeds.iter().cloned());
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

/// The key/value prefix of a batch whose rows use different prompts: one `[b, kv_heads, n,
/// head_dim]` tensor per layer, each row holding its own prompt's prefix padded at the end to
/// the longest (`n`), with each row's length so the padding is masked and the row's text is
/// numbered from its own prefix's end. A prompt without a prefix counts as length 0. When every
/// row uses one prompt, that prompt's prefix is returned as it is (shared by the batch).
pub fn mixed_prefix(prompts: &[Prompt], rows: &[Row]) -> Result<Option<KvPrefix>> {
    let first = rows.first().map(|r| r.prompt).unwrap_or(0);
    if rows.iter().all(|r| r.prompt == first) {
        return Ok(prompts.get(first).and_then(|p| p.prefix.clone()));
    }
    let len = |p: usize| {
        prompts
            .get(p)
            .and_then(|p| p.prefix.as_ref())
            .map_or(0, KvPrefix::len)
    };
    let n = rows.iter().map(|r| len(r.prompt)).max().unwrap_or(0);
    if n == 0 {
        return Ok(None);
    }
    // Any prompt's prefix gives the layer count and the key/value shape.
    let Some(first) = prompts.iter().find_map(|p| p.prefix.as_ref()) else {
        return Ok(None);
    };
    let (layers_n, template) = (first.layers.len(), &first.layers[0].0);
    // The prompts the rows use, each once, in a fixed order; rows index into them.
    let mut used: Vec<usize> = rows.iter().map(|r| r.prompt).collect();
    used.sort_unstable();
    used.dedup();
    let which: Vec<u32> = rows
        .iter()
        .map(|r| used.binary_search(&r.prompt).unwrap_or(0) as u32)
        .collect();
    let (_, kvh, _, hd) = template.dims4()?;
    let which = Tensor::new(which.as_slice(), template.device())?;
    let padded = |t: Option<&Tensor>| -> Result<Tensor> {
        let have = t.map_or(Ok(0), |t| t.dim(2))?;
        let zeros = Tensor::zeros((1, kvh, n - have, hd), template.dtype(), template.device())?;
        Ok(match t {
            Some(t) if have == n => t.clone(),
            Some(t) => Tensor::cat(&[t, &zeros], 2)?,
            None => zeros,
        })
    };
    let mut layers = Vec::with_capacity(layers_n);
    for l in 0..layers_n {
        let mut ks = Vec::with_capacity(used.len());
        let mut vs = Vec::with_capacity(used.len());
        for &p in &used {
            let kv = prompts[p].prefix.as_ref().map(|x| &x.layers[l]);
            ks.push(padded(kv.map(|(k, _)| k))?);
            vs.push(padded(kv.map(|(_, v)| v))?);
        }
        let k = Tensor::cat(&ks, 0)?.index_select(&which, 0)?;
        let v = Tensor::cat(&vs, 0)?.index_select(&which, 0)?;
        layers.push((k, v));
    }
    let lens: Vec<usize> = rows.iter().map(|r| len(r.prompt)).collect();
    Ok(Some(KvPrefix {
        layers,
        row_lens: (!lens.iter().all(|&l| l == n)).then_some(lens),
    }))
}
