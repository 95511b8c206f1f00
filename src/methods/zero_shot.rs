//! Zero-shot: the template as written, nothing trained. The floor every method must beat.

use super::score::score;
use super::{Batch, Method, Prompt, StepContext};
use crate::model::Llm;
use anyhow::Result;
use candle_core::{Tensor, Var};

pub struct ZeroShot;

impl Method for ZeroShot {
    fn prompt(&self, _llm: &Llm) -> Result<Prompt> {
        Ok(Prompt::default())
    }

    fn train_step(&mut self, ctx: &mut StepContext, batch: &Batch) -> Result<f32> {
        // Nothing to update; report the loss so curves still show where zero-shot stands.
        let s = score(ctx.llm, &Prompt::default(), &batch.rows)?;
        Ok((s.nll_sum / s.answer_tokens as f64)?.to_scalar::<f32>()?)
    }

    fn export(&self, _llm: &Llm) -> Result<Vec<(String, Tensor)>> {
        Ok(vec![])
    }

    fn vars(&self) -> &[Var] {
        &[]
    }
}
