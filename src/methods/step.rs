//! One training update of a method's variables: the mean answer-token loss of a batch and its
//! gradients, accumulated over micro-batches, then one step of the optimiser (`optim.rs`).

use super::input::Batch;
use super::optim::AdamW;
use super::score::score_mixed;
use super::Prompt;
use crate::model::Llm;
use anyhow::{bail, Context, Result};
use candle_core::{Tensor, Var};

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
    let prompts_fn = || Ok(vec![prompt_fn()?]);
    let (loss, grads) = loss_and_grads_mixed(llm, &prompts_fn, batch, vars)?;
    let grads = grads
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            g.with_context(|| format!("internal error: trainable tensor {i} received no gradient"))
        })
        .collect::<Result<_>>()?;
    Ok((loss, grads))
}

/// [`loss_and_grads`] for a batch whose rows use different prompts (`Row::prompt` indexes the
/// prompts `prompts_fn` builds): one forward and backward per micro-batch for all of them. A
/// variable that no row's prompt reaches gets `None` (a task absent from the batch: its
/// optimiser must skip the step, as PyTorch skips a parameter without a gradient).
pub fn loss_and_grads_mixed(
    llm: &Llm,
    prompts_fn: &dyn Fn() -> Result<Vec<Prompt>>,
    batch: &Batch,
    vars: &[Var],
) -> Result<(f32, Vec<Option<Tensor>>)> {
    let total: usize = batch.rows.iter().map(|r| r.answer.len()).sum();
    let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
    let mut loss = 0f32;
    let micro = batch.micro_batch.max(1);
    // Each micro-batch is padded to its longest row, and the loss is a sum over the whole
    // batch's answer tokens, so grouping rows of like length into the same micro-batch cuts the
    // padding and leaves the loss and gradients as they were.
    let mut rows = std::borrow::Cow::Borrowed(&batch.rows[..]);
    if rows.len() > micro {
        rows.to_mut()
            .sort_by_key(|r| r.pieces.len() + r.answer.len());
    }
    for chunk in rows.chunks(micro) {
        // The prompt is rebuilt per micro-batch: a reparameterised prompt (prefix MLP, P-Tuning
        // encoder) must be in each micro-batch's graph.
        let prompts = prompts_fn()?;
        let s = score_mixed(llm, &prompts, chunk)?;
        let l = (s.nll_sum / total as f64)?;
        loss += l.to_scalar::<f32>()?;
        let store = llm.backward(&l)?;
        for (i, v) in vars.iter().enumerate() {
            if let Some(g) = store.get(v.as_tensor()) {
                grads[i] = Some(match grads[i].take() {
                    Some(acc) => (acc + g)?,
                    None => g.clone(),
                });
            }
        }
    }
    if !loss.is_finite() {
        bail!("the loss is {loss} (not finite): lower the learning rate");
    }
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
