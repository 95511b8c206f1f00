//! Speed measurements behind `gradprompt bench`: the forward on a fixed batch, and one backward
//! to soft input vectors (the cost of a prompt-tuning step without the optimiser).

use crate::model::{ForwardInput, LogitRows, Model};
use anyhow::Result;
use candle_core::{Device, Tensor, Var};
use std::time::Instant;

#[derive(Debug, serde::Serialize)]
pub struct BenchResult {
    pub model: String,
    pub batch: usize,
    pub seq_len: usize,
    pub threads: usize,
    pub repeats: usize,
    /// Median seconds per forward with logits at every position.
    pub forward_all_logits_s: f64,
    /// Median seconds per forward with logits at the last position of each row.
    pub forward_last_logits_s: f64,
    /// Median seconds per forward + backward to trainable input embeddings (loss on the last
    /// position of each row).
    pub forward_backward_s: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(model: &Model, batch: usize, seq_len: usize, repeats: usize) -> Result<BenchResult> {
    let dev = Device::Cpu;
    let vocab = model.config().vocab_size as u32;
    // Deterministic, ordinary-looking ids (avoid the control tokens at the start of the vocab).
    let ids: Vec<u32> = (0..batch * seq_len)
        .map(|i| 100 + ((i as u32).wrapping_mul(2654435761) % (vocab - 100)))
        .collect();
    let ids = Tensor::from_vec(ids, (batch, seq_len), &dev)?;
    let embeds = model.llm.embed(&ids)?;
    let time = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        f()?; // warm-up
        let mut times = Vec::new();
        for _ in 0..repeats {
            let t = Instant::now();
            f()?;
            times.push(t.elapsed().as_secs_f64());
        }
        Ok(median(times))
    };
    let forward = |rows: LogitRows| -> Result<Tensor> {
        Ok(model
            .llm
            .forward(&ForwardInput {
                embeds: &embeds,
                attention_mask: None,
                prefix: None,
                logits: rows,
                keep_kv: false,
            })?
            .logits)
    };
    let all = time(&mut || forward(LogitRows::All).map(|_| ()))?;
    let last = time(&mut || forward(LogitRows::Last).map(|_| ()))?;
    let soft = Var::from_tensor(&embeds)?;
    let fb = time(&mut || {
        let out = model.llm.forward(&ForwardInput {
            embeds: soft.as_tensor(),
            attention_mask: None,
            prefix: None,
            logits: LogitRows::Last,
            keep_kv: false,
        })?;
        let targets = Tensor::zeros(batch, candle_core::DType::U32, &dev)?;
        let loss = candle_nn::loss::cross_entropy(&out.logits, &targets)?;
        loss.backward()?;
        Ok(())
    })?;
    Ok(BenchResult {
        model: model.spec.clone(),
        batch,
        seq_len,
        threads: candle_core::utils::get_num_threads(),
        repeats,
        forward_all_logits_s: all,
        forward_last_logits_s: last,
        forward_backward_s: fb,
    })
}
