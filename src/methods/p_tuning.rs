//! P-Tuning (Liu et al. 2021): pseudo tokens at any positions of the template, between discrete
//! anchor tokens, produced by a prompt encoder that models the dependence between them: a
//! two-layer bidirectional LSTM followed by an MLP (the paper; PEFT's `LSTM`), or an MLP alone
//! (PEFT's default). At export the encoder's output vectors are stored and the encoder dropped.

use super::init::{sample_vocab_ids, token_embeddings, uniform};
use super::optim::AdamW;
use super::step::gradient_step;
use super::tensor_names::{PROMPT_EMBEDDINGS, P_TUNING_LSTM, P_TUNING_MLP};
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
        let input = Var::from_tensor(&token_embeddings(llm, &sample_vocab_ids(llm, k, rng))?)?;
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
        // run's seeded one, PyTorch-style uniform(+-1/sqrt(fan_in)), so runs repeat exactly.
        let mut named: Vec<(String, Var)> = varmap
            .data()
            .lock()
            .expect("varmap lock")
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, v) in &named {
            let dims = v.dims().to_vec();
            let fan_in = if dims.len() == 2 { dims[1] } else { hidden };
            let n = v.elem_count();
            let t = uniform(rng, (1, n), 1.0 / (fan_in as f32).sqrt(), llm)?.reshape(dims)?;
            v.set(&t)?;
        }
        let mut vars = vec![input.clone()];
        let mut decays = vec![true];
        for (name, v) in named {
            // Biases are not decayed (the Hugging Face convention).
            decays.push(!name.contains("bias"));
            vars.push(v);
        }
        let opt = AdamW::for_method(vars, decays, settings)?;
        Ok(Self {
            encoder: PromptEncoder { input, lstm, mlp },
            opt,
        })
    }
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
}
