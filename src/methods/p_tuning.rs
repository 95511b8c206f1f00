//! P-Tuning (Liu et al. 2021): pseudo tokens at any positions of the template, between discrete
//! anchor tokens, produced by a prompt encoder that models the dependence between them: a
//! two-layer bidirectional LSTM followed by an MLP (the paper; PEFT's `LSTM`), or an MLP alone
//! (PEFT's default). At export the encoder's output vectors are stored and the encoder dropped.
//!
//! Initialisation follows PEFT's `PromptEncoder` and PyTorch's defaults: the encoder's input
//! is an `nn.Embedding`, N(0, 1) (it was the embeddings of sampled vocabulary tokens: the
//! encoder's output is never a token's embedding anyway); every LSTM weight and bias
//! U(+-1/sqrt(hidden)) as `nn.LSTM`; every linear weight and bias U(+-1/sqrt(fan_in)) as
//! `nn.Linear`.
//!
//! Kept on purpose: the encoder width defaults to 128 (`MethodSettings::encoder_hidden`),
//! where PEFT defaults to the model's width (576 on SmolLM2). At 576 the BiLSTM encoder has
//! about 15M weights instead of 1.1M, ten times the SmolLM2 prompt it produces, and the
//! learning rate (1e-3) was measured at 128; the width only shapes training (the export holds
//! the encoder's output), and the manifest and PEFT export record the width used. A run that
//! wants PEFT's default sets the width to the model's.

use super::init::{standard_normal, uniform};
use super::optim::AdamW;
use super::step::gradient_step;
use super::tensor_names::{PEFT_EMBEDDING, PROMPT_EMBEDDINGS, P_TUNING_LSTM, P_TUNING_MLP};
use super::RunRng;
use super::{Batch, Encoder, Method, MethodSettings, Prompt, StepContext};
use crate::model::Llm;
use anyhow::{bail, Result};
use candle_core::{DType, Module, Tensor, Var, D};
use candle_nn::rnn::{Direction, LSTMConfig, LSTM, RNN};
use candle_nn::{VarBuilder, VarMap};

/// The encoder's layers; cloning shares the variables.
#[derive(Clone)]
struct PromptEncoder {
    input: Var,
    /// Two bidirectional layers as (forward, backward) pairs; empty for the MLP encoder.
    lstm: Vec<(LSTM, LSTM)>,
    mlp: Vec<candle_nn::Linear>,
}

impl PromptEncoder {
    /// `[k, d]` pseudo-token vectors.
    fn forward(&self) -> Result<Tensor> {
        let mut x = self.input.as_tensor().unsqueeze(0)?; // [1, k, d]
        for (fwd, bwd) in &self.lstm {
            let k = x.dim(1)?;
            let f = fwd.states_to_tensor(&fwd.seq(&x)?)?; // [1, k, h]
            let rev_idx = Tensor::new((0..k as u32).rev().collect::<Vec<_>>(), x.device())?;
            let x_rev = x.index_select(&rev_idx, 1)?;
            let b = bwd
                .states_to_tensor(&bwd.seq(&x_rev)?)?
                .index_select(&rev_idx, 1)?;
            x = Tensor::cat(&[f, b], D::Minus1)?;
        }
        let mut x = x.squeeze(0)?;
        let last = self.mlp.len() - 1;
        for (i, layer) in self.mlp.iter().enumerate() {
            x = layer.forward(&x)?;
            if i < last {
                x = x.relu()?;
            }
        }
        Ok(x)
    }
}

pub struct PTuning {
    encoder: PromptEncoder,
    opt: AdamW,
    /// PEFT's name for each of the optimiser's variables, in its order.
    names: Vec<String>,
}

impl PTuning {
    pub fn new(
        llm: &Llm,
        k: usize,
        kind: Encoder,
        hidden: usize,
        rng: &mut RunRng,
        settings: &MethodSettings,
    ) -> Result<Self> {
        if k == 0 {
            bail!("P-Tuning needs at least one soft slot ([P]) in the template");
        }
        let d = llm.cfg.hidden_size;
        let dev = llm.device();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, dev);
        let input = Var::from_tensor(&standard_normal(rng, (k, d), llm)?)?;
        let (lstm, mlp) = match kind {
            Encoder::Lstm => {
                let mut layers = Vec::new();
                for l in 0..2 {
                    let in_dim = if l == 0 { d } else { 2 * hidden };
                    let cfg = |direction| LSTMConfig {
                        layer_idx: l,
                        direction,
                        ..Default::default()
                    };
                    let f = candle_nn::lstm(
                        in_dim,
                        hidden,
                        cfg(Direction::Forward),
                        vb.pp(P_TUNING_LSTM),
                    )?;
                    let b = candle_nn::lstm(
                        in_dim,
                        hidden,
                        cfg(Direction::Backward),
                        vb.pp(P_TUNING_LSTM),
                    )?;
                    layers.push((f, b));
                }
                let mlp = vec![
                    candle_nn::linear(2 * hidden, 2 * hidden, vb.pp(P_TUNING_MLP[0]))?,
                    candle_nn::linear(2 * hidden, d, vb.pp(P_TUNING_MLP[1]))?,
                ];
                (layers, mlp)
            }
            Encoder::Mlp => (
                vec![],
                vec![
                    candle_nn::linear(d, hidden, vb.pp(P_TUNING_MLP[0]))?,
                    candle_nn::linear(hidden, hidden, vb.pp(P_TUNING_MLP[1]))?,
                    candle_nn::linear(hidden, d, vb.pp(P_TUNING_MLP[2]))?,
                ],
            ),
        };
        // VarMap initialises from candle's unseeded generator; re-draw every weight from the
        // run's seeded one, as PyTorch initialises it, so runs repeat exactly.
        let mut named: Vec<(String, Var)> = varmap
            .data()
            .lock()
            .expect("varmap lock")
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let fan_ins: std::collections::HashMap<String, usize> = named
            .iter()
            .filter(|(_, v)| v.rank() == 2)
            .map(|(n, v)| (layer_of(n).to_string(), v.dims()[1]))
            .collect();
        for (name, v) in &named {
            let bound = init_bound(name, hidden, &fan_ins)?;
            let dims = v.dims().to_vec();
            let t = uniform(rng, (1, v.elem_count()), bound, llm)?.reshape(dims)?;
            v.set(&t)?;
        }
        let mut vars = vec![input.clone()];
        let mut decays = vec![true];
        let mut names = vec![PEFT_EMBEDDING.to_string()];
        for (name, v) in named {
            // Biases are not decayed (the Hugging Face convention).
            decays.push(!name.contains("bias"));
            vars.push(v);
            names.push(name);
        }
        let opt = AdamW::for_method(vars, decays, settings)?;
        Ok(Self {
            encoder: PromptEncoder { input, lstm, mlp },
            opt,
            names,
        })
    }
}

/// The layer a weight belongs to: `mlp.0` for `mlp.0.weight` and `mlp.0.bias`.
fn layer_of(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(layer, _)| layer)
}

/// PyTorch's initial bound for the encoder weight `name`: `nn.LSTM` draws every weight and bias
/// from U(+-1/sqrt(hidden)); `nn.Linear` its weight and bias from U(+-1/sqrt(fan_in)), the
/// layer's input width.
fn init_bound(
    name: &str,
    hidden: usize,
    fan_ins: &std::collections::HashMap<String, usize>,
) -> Result<f32> {
    let fan_in = if name.starts_with(P_TUNING_LSTM) {
        hidden
    } else {
        *fan_ins
            .get(layer_of(name))
            .ok_or_else(|| anyhow::anyhow!("internal error: no weight for the encoder's {name}"))?
    };
    Ok(1.0 / (fan_in as f32).sqrt())
}

impl Method for PTuning {
    fn prompt(&self, _llm: &Llm) -> Result<Prompt> {
        Ok(Prompt::with_soft(self.encoder.forward()?))
    }

    fn train_step(&mut self, ctx: &mut StepContext, batch: &Batch) -> Result<f32> {
        let encoder = self.encoder.clone();
        let prompt_fn = || Ok(Prompt::with_soft(encoder.forward()?));
        gradient_step(ctx.llm, &prompt_fn, batch, &mut self.opt, ctx.lr)
    }

    fn export(&self, _llm: &Llm) -> Result<Vec<(String, Tensor)>> {
        Ok(vec![(
            PROMPT_EMBEDDINGS.into(),
            self.encoder.forward()?.detach().copy()?,
        )])
    }

    fn vars(&self) -> &[Var] {
        self.opt.vars()
    }

    fn optimizer(&mut self) -> Option<&mut AdamW> {
        Some(&mut self.opt)
    }

    fn peft_state(&self) -> Result<Vec<(String, Tensor)>> {
        let vars = self.opt.vars();
        self.names
            .iter()
            .zip(vars)
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::init_bound;
    use std::collections::HashMap;

    #[test]
    fn encoder_weights_start_within_pytorchs_bounds() {
        let fan_ins = HashMap::from([
            ("mlp_head.0".to_string(), 256),
            ("mlp_head.2".to_string(), 64),
        ]);
        let close = |a: f32, b: f32| (a - b).abs() < 1e-7;
        // nn.LSTM: 1/sqrt(hidden) for input, recurrent and bias weights, whatever the input.
        for name in [
            "lstm_head.weight_ih_l0",
            "lstm_head.weight_hh_l1_reverse",
            "lstm_head.bias_ih_l0",
        ] {
            assert!(close(
                init_bound(name, 128, &fan_ins).unwrap(),
                1.0 / 128f32.sqrt()
            ));
        }
        // nn.Linear: 1/sqrt(fan_in) for the weight and its bias alike.
        assert!(close(
            init_bound("mlp_head.0.weight", 128, &fan_ins).unwrap(),
            1.0 / 16.0
        ));
        assert!(close(
            init_bound("mlp_head.0.bias", 128, &fan_ins).unwrap(),
            1.0 / 16.0
        ));
        assert!(close(
            init_bound("mlp_head.2.bias", 128, &fan_ins).unwrap(),
            1.0 / 8.0
        ));
        assert!(init_bound("mlp_head.9.bias", 128, &fan_ins).is_err());
    }
}
