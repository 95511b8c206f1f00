//! Prompt Tuning (Lester et al. 2021): n soft vectors before the input, trained directly at the
//! input embedding layer. The paper found label-word and vocabulary initialisation better than
//! random, and a high learning rate (0.3 with Adafactor) works.

use super::inject::gradient_step;
use super::optim::AdamW;
use super::{uniform, Batch, Method, MethodKind, Prompt, SoftInit, StepContext};
use crate::model::Llm;
use anyhow::{bail, Result};
use candle_core::{Tensor, Var};
use rand::rngs::StdRng;
use rand::Rng;

pub struct PromptTuning {
    soft: Var,
    opt: AdamW,
}

/// `[n, d]` initial vectors, shared with P-Tuning's direct form.
pub fn init_vectors(
    llm: &Llm,
    n: usize,
    init: &SoftInit,
    labels: &[String],
    tok: &tokenizers::Tokenizer,
    rng: &mut StdRng,
) -> Result<Tensor> {
    let d = llm.cfg.hidden_size;
    let emb = llm.embedding_matrix();
    let from_ids = |ids: Vec<u32>| -> Result<Tensor> {
        if ids.is_empty() {
            bail!("the initialisation text has no tokens");
        }
        let cycled: Vec<u32> = (0..n).map(|i| ids[i % ids.len()]).collect();
        Ok(emb
            .index_select(&Tensor::new(cycled.as_slice(), llm.device())?, 0)?
            .copy()?)
    };
    let encode = |text: &str| -> Result<Vec<u32>> { crate::task::tokenize(tok, text) };
    match init {
        SoftInit::Random => uniform(rng, (n, d), 0.5, llm),
        SoftInit::Vocab => {
            let limit = llm.cfg.vocab_size.min(5000) as u32;
            let ids = (0..n).map(|_| rng.random_range(0..limit)).collect();
            from_ids(ids)
        }
        SoftInit::Labels => {
            let mut rows = Vec::with_capacity(n);
            for label in labels.iter().take(n) {
                let ids = encode(label)?;
                if ids.is_empty() {
                    bail!("label {label:?} has no tokens");
                }
                let t = emb.index_select(&Tensor::new(ids.as_slice(), llm.device())?, 0)?;
                rows.push(t.mean(0)?);
            }
            let limit = llm.cfg.vocab_size.min(5000) as u32;
            let rest: Vec<u32> = (rows.len()..n)
                .map(|_| rng.random_range(0..limit))
                .collect();
            if !rest.is_empty() {
                let t = from_ids(rest)?;
                for i in 0..t.dim(0)? {
                    rows.push(t.get(i)?);
                }
            }
            Ok(Tensor::stack(&rows, 0)?.copy()?)
        }
        SoftInit::Text(t) => from_ids(encode(t)?),
    }
}

impl PromptTuning {
    pub fn new(
        llm: &Llm,
        n: usize,
        init: &SoftInit,
        labels: &[String],
        tok: &tokenizers::Tokenizer,
        rng: &mut StdRng,
    ) -> Result<Self> {
        if n == 0 {
            bail!("prompt tuning needs at least one soft slot ([P]) at the start of the template");
        }
        let soft = Var::from_tensor(&init_vectors(llm, n, init, labels, tok, rng)?)?;
        let opt = AdamW::new(vec![soft.clone()], 0.0)?;
        Ok(Self { soft, opt })
    }
}

impl Method for PromptTuning {
    fn kind(&self) -> MethodKind {
        MethodKind::PromptTuning
    }

    fn prompt(&self, _llm: &Llm) -> Result<Prompt> {
        Ok(Prompt::with_soft(self.soft.as_tensor().clone()))
    }

    fn train_step(&mut self, ctx: &mut StepContext, batch: &Batch) -> Result<f32> {
        let llm = ctx.llm;
        let soft = self.soft.clone();
        let prompt_fn = || Ok(Prompt::with_soft(soft.as_tensor().clone()));
        gradient_step(llm, &prompt_fn, batch, &mut self.opt, ctx.lr)
    }

    fn trainable_params(&self) -> usize {
        self.soft.elem_count()
    }

    fn export(&self, _llm: &Llm) -> Result<Vec<(String, Tensor)>> {
        Ok(vec![(
            "prompt_embeddings".into(),
            self.soft.as_tensor().copy()?,
        )])
    }

    fn snapshot(&self) -> Result<Vec<Tensor>> {
        Ok(vec![self.soft.as_tensor().copy()?])
    }

    fn restore(&mut self, snapshot: &[Tensor]) -> Result<()> {
        self.soft.set(&snapshot[0])?;
        Ok(())
    }
}
