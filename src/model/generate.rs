//! Greedy decoding, using the forward's key/value output as a cache.

use super::{ids_tensor, ForwardInput, LogitRows, Model};
use anyhow::Result;

/// Greedily continues `prompt` by up to `max_new_tokens`, stopping at the end-of-sequence token.
/// Returns the continuation's ids.
pub fn greedy(model: &Model, prompt_ids: &[u32], max_new_tokens: usize) -> Result<Vec<u32>> {
    let llm = &model.llm;
    let device = llm.device().clone();
    let eos = llm.cfg.eos_token_id;
    let mut out = Vec::new();
    let mut cache = None;
    let mut next_input = prompt_ids.to_vec();
    for _ in 0..max_new_tokens {
        if next_input.is_empty() {
            break;
        }
        let embeds = llm.embed(&ids_tensor(&next_input, &device)?)?;
        let res = llm.forward(&ForwardInput {
            embeds: &embeds,
            attention_mask: None,
            prefix: cache.as_ref(),
            logits: LogitRows::Last,
            keep_kv: true,
        })?;
        let next = res.logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?;
        if Some(next) == eos {
            break;
        }
        out.push(next);
        cache = res.kv;
        next_input = vec![next];
    }
    Ok(out)
}
