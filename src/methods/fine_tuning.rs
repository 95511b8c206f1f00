//! Full fine-tuning, the baseline: every weight of a trainable copy of the model is updated
//! with the same template and loss as the prompt methods. It stores a whole model per task.

use super::inject::gradient_step;
use super::optim::AdamW;
use super::{Batch, Method, MethodKind, Prompt, StepContext};
use crate::model::Llm;
use anyhow::Result;
use candle_core::{Tensor, Var};

pub struct FineTuning {
    model: Llm,
    vars: Vec<(String, Var)>,
    opt: AdamW,
}

impl FineTuning {
    pub fn new(frozen: &Llm) -> Result<Self> {
        let (model, vars) = frozen.trainable_copy()?;
        let opt = AdamW::new(vars.iter().map(|(_, v)| v.clone()).collect(), 0.01)?;
        Ok(Self { model, vars, opt })
    }
}

impl Method for FineTuning {
    fn kind(&self) -> MethodKind {
        MethodKind::FineTuning
    }

    fn prompt(&self, _llm: &Llm) -> Result<Prompt> {
        Ok(Prompt::default())
    }

    fn model<'a>(&'a self, _frozen: &'a Llm) -> &'a Llm {
        &self.model
    }

    fn train_step(&mut self, ctx: &mut StepContext, batch: &Batch) -> Result<f32> {
        let prompt_fn = || Ok(Prompt::default());
        gradient_step(&self.model, &prompt_fn, batch, &mut self.opt, ctx.lr)
    }

    fn trainable_params(&self) -> usize {
        self.vars.iter().map(|(_, v)| v.elem_count()).sum()
    }

    fn export(&self, _llm: &Llm) -> Result<Vec<(String, Tensor)>> {
        self.vars
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
            .collect()
    }

    fn snapshot(&self) -> Result<Vec<Tensor>> {
        self.vars
            .iter()
            .map(|(_, v)| Ok(v.as_tensor().copy()?))
            .collect()
    }

    fn restore(&mut self, snapshot: &[Tensor]) -> Result<()> {
        for ((_, v), t) in self.vars.iter().zip(snapshot) {
            v.set(t)?;
        }
        Ok(())
    }
}
