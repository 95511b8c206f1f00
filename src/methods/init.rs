//! Where trainable prompts start: uniform and normal draws and token ids sampled from the
//! vocabulary, all from the run's seeded generator (candle's own random tensors are not
//! seedable, and runs must repeat exactly).

use super::RunRng;
use crate::model::Llm;
use anyhow::{bail, Result};
use candle_core::Tensor;
use rand::Rng;

/// How many of the first vocabulary ids initial tokens are drawn from. Lester et al. (2021)
/// sample Prompt Tuning's initial vectors from the 5,000 most common tokens of T5's vocabulary,
/// which is ordered by frequency; in a byte-level BPE vocabulary the ids follow the merge order,
/// most frequent pair first, so the first ids stand in for the most common tokens.
pub const COMMON_TOKENS: usize = 5000;

/// `n` token ids drawn uniformly from the first [`COMMON_TOKENS`] of the vocabulary (all of it
/// when it is smaller), never a special token (`<|endoftext|>`, SmolLM2's 17 control tokens at
/// ids 0-16): their embeddings are trained for markers, not words, and a prompt started from
/// `<|im_end|>` starts from "the text ends here".
pub fn sample_vocab_ids(
    llm: &Llm,
    tok: &tokenizers::Tokenizer,
    n: usize,
    rng: &mut RunRng,
) -> Result<Vec<u32>> {
    let special: std::collections::HashSet<u32> = tok
        .get_added_tokens_decoder()
        .iter()
        .filter(|(_, t)| t.special)
        .map(|(id, _)| *id)
        .collect();
    let limit = llm.cfg.vocab_size.min(COMMON_TOKENS) as u32;
    let allowed: Vec<u32> = (0..limit).filter(|id| !special.contains(id)).collect();
    if allowed.is_empty() && n > 0 {
        bail!("the first {limit} token ids are all special tokens: no word to start a prompt from");
    }
    Ok((0..n)
        .map(|_| allowed[rng.random_range(0..allowed.len())])
        .collect())
}

/// `[ids, hidden]`: a copy of the input embeddings of `ids`, to start trainable vectors from.
pub fn token_embeddings(llm: &Llm, ids: &[u32]) -> Result<Tensor> {
    Ok(llm
        .embedding_matrix()
        .index_select(&Tensor::new(ids, llm.device())?, 0)?
        .copy()?)
}

/// Standard normal values (Box-Muller over the seeded generator), as PyTorch's
/// `nn.Embedding` starts its weights.
pub fn standard_normal(rng: &mut RunRng, shape: (usize, usize), llm: &Llm) -> Result<Tensor> {
    let n = shape.0 * shape.1;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            // 1 - u is in (0, 1]: the logarithm stays finite.
            let u1: f64 = 1.0 - rng.random::<f64>();
            let u2: f64 = rng.random::<f64>();
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect();
    Ok(Tensor::from_vec(v, shape, llm.device())?)
}

/// Uniform values in `[-scale, scale]`.
pub fn uniform(rng: &mut RunRng, shape: (usize, usize), scale: f32, llm: &Llm) -> Result<Tensor> {
    let n = shape.0 * shape.1;
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-scale..=scale)).collect();
    Ok(Tensor::from_vec(v, shape, llm.device())?)
}
