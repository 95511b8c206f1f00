//! Full fine-tuning, the baseline: every weight of a trainable copy of the model is updated
//! with the same template and loss as the prompt methods. It stores a whole model per task.

use super::optim::AdamW;
use super::step::gradient_step;
use super::{Batch, Method, Prompt, StepContext};
use crate::model::Llm;
use anyhow::Result;
use candle_core::{Tensor, Var};

pub struct FineTuning {
    model: Llm,
    /// The model's tensor names, in the order of the optimiser's variables.
    names: Vec<String>,
    opt: AdamW,
}

impl FineTuning {
    pub fn new(frozen: &Llm) -> Result<Self> {
        let (model, named) = frozen.trainable_copy()?;
        let (names, vars) = named.into_iter().unzip();
        let opt = AdamW::new(vars, 0.01)?;
        Ok(Self { model, names, opt })
    }
}

impl Method for FineTuning {
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

    fn export(&self, _llm: &Llm) -> Result<Vec<(String, Tensor)>> {
        self.names
            .iter()
            .zip(self.opt.vars())
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
            .collect()
    }

    fn vars(&self) -> &[Var] {
        self.opt.vars()
    }

    fn optimizer(&mut self) -> Option<&mut AdamW> {
        Some(&mut self.opt)
    }
}
