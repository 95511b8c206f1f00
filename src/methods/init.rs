//! Where trainable prompts start: uniform draws and token ids sampled from the vocabulary, both
//! from the run's seeded generator (candle's own random tensors are not seedable, and runs must
//! repeat exactly).

use super::RunRng;
use crate::model::Llm;
use anyhow::Result;
use candle_core::Tensor;
use rand::Rng;

/// How many of the first vocabulary ids initial tokens are drawn from. Lester et al. (2021)
/// sample Prompt Tuning's initial vectors from the 5,000 most common tokens of T5's vocabulary,
/// which is ordered by frequency; in a byte-level BPE vocabulary the ids follow the merge order,
/// most frequent pair first, so the first ids stand in for the most common tokens.
pub const COMMON_TOKENS: usize = 5000;

/// `n` token ids drawn uniformly from the first [`COMMON_TOKENS`] of the vocabulary (all of it
/// when it is smaller).
pub fn sample_vocab_ids(llm: &Llm, n: usize, rng: &mut RunRng) -> Vec<u32> {
    let limit = llm.cfg.vocab_size.min(COMMON_TOKENS) as u32;
    (0..n).map(|_| rng.random_range(0..limit)).collect()
}

/// `[ids, hidden]`: a copy of the input embeddings of `ids`, to start trainable vectors from.
pub fn token_embeddings(llm: &Llm, ids: &[u32]) -> Result<Tensor> {
    Ok(llm
        .embedding_matrix()
        .index_select(&Tensor::new(ids, llm.device())?, 0)?
        .copy()?)
}

/// Uniform values in `[-scale, scale]`.
pub fn uniform(rng: &mut RunRng, shape: (usize, usize), scale: f32, llm: &Llm) -> Result<Tensor> {
    let n = shape.0 * shape.1;
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-scale..=scale)).collect();
    Ok(Tensor::from_vec(v, shape, llm.device())?)
}
