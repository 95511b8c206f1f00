//! Full fine-tuning, the baseline: every weight of a trainable copy of the model is updated
//! with the same template and loss as the prompt methods. It stores a whole model per task.
//!
//! It follows the Hugging Face Trainer's conventions: weight decay (0 by default, as the
//! Trainer's) is never applied to norm weights and biases, nor to the token embeddings, and
//! gradients are clipped to a global norm (`optim.rs`).

use super::optim::AdamW;
use super::step::gradient_step;
use super::{Batch, Method, MethodSettings, Prompt, StepContext};
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
    pub fn new(frozen: &Llm, settings: &MethodSettings) -> Result<Self> {
        let (model, named) = frozen.trainable_copy()?;
        let (names, vars): (Vec<String>, Vec<Var>) = named.into_iter().unzip();
        let decays = names.iter().map(|n| decays_weight(n)).collect();
        let opt = AdamW::for_method(vars, decays, settings)?;
        Ok(Self { model, names, opt })
    }
}

/// Whether weight decay applies to the model weight of this Hugging Face name: not to norms
/// (`*_layernorm`, `model.norm`) and biases, which the Trainer exempts
/// (`get_decay_parameter_names`), nor to the token embeddings: decaying them pulls every
/// token's vector towards zero, rare tokens most (they get the fewest gradient updates to
/// push back), and with a tied head it shrinks the logits too.
pub fn decays_weight(name: &str) -> bool {
    !(name.contains("norm") || name.ends_with("bias") || name.contains("embed_tokens"))
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

#[cfg(test)]
mod tests {
    use super::decays_weight;

    #[test]
    fn norms_biases_and_embeddings_are_not_decayed() {
        for name in [
            "model.embed_tokens.weight",
            "model.norm.weight",
            "model.layers.0.input_layernorm.weight",
            "model.layers.3.post_attention_layernorm.weight",
            "model.layers.0.self_attn.q_proj.bias",
        ] {
            assert!(!decays_weight(name), "{name}");
        }
        for name in [
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.0.mlp.down_proj.weight",
            "lm_head.weight",
        ] {
            assert!(decays_weight(name), "{name}");
        }
    }
}
