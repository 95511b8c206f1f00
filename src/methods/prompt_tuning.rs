//! Prompt Tuning (Lester et al. 2021): n soft vectors before the input, trained directly at the
//! input embedding layer. The paper found label-word and vocabulary initialisation better than
//! random, and a high learning rate (0.3 with Adafactor) works.

use super::init::{sample_vocab_ids, token_embeddings, uniform};
use super::optim::AdamW;
use super::step::gradient_step;
use super::tensor_names::{PEFT_EMBEDDING, PROMPT_EMBEDDINGS};
use super::RunRng;
use super::{Batch, Method, MethodSettings, Prompt, SoftInit, StepContext};
use crate::model::Llm;
use anyhow::{bail, Result};
use candle_core::{Tensor, Var};

pub struct PromptTuning {
    soft: Var,
    opt: AdamW,
}

/// `[n, d]` initial vectors, as `init` says.
pub fn init_vectors(
    llm: &Llm,
    n: usize,
    init: &SoftInit,
    labels: &[String],
    tok: &tokenizers::Tokenizer,
    rng: &mut RunRng,
) -> Result<Tensor> {
    let d = llm.cfg.hidden_size;
    let emb = llm.embedding_matrix();
    let from_ids = |ids: Vec<u32>| -> Result<Tensor> {
        if ids.is_empty() {
            bail!("the initialisation text has no tokens");
        }
        let cycled: Vec<u32> = (0..n).map(|i| ids[i % ids.len()]).collect();
        token_embeddings(llm, &cycled)
    };
    let encode = |text: &str| -> Result<Vec<u32>> { crate::task::tokenize(tok, text) };
    match init {
        SoftInit::Random => uniform(rng, (n, d), 0.5, llm),
        SoftInit::Vocab => from_ids(sample_vocab_ids(llm, tok, n, rng)?),
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
            let rest = sample_vocab_ids(llm, tok, n - rows.len(), rng)?;
            if !rest.is_empty() {
                // Exactly the slots the labels left (cycling them to `n` made n extra rows that
                // no slot used but that were trained, counted and exported).
                let t = token_embeddings(llm, &rest)?;
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
        rng: &mut RunRng,
        settings: &MethodSettings,
    ) -> Result<Self> {
        if n == 0 {
            bail!("prompt tuning needs at least one soft slot ([P]) at the start of the template");
        }
        let soft = Var::from_tensor(&init_vectors(llm, n, init, labels, tok, rng)?)?;
        let opt = AdamW::for_method(vec![soft.clone()], vec![true], settings)?;
        Ok(Self { soft, opt })
    }
}

impl Method for PromptTuning {
    fn prompt(&self, _llm: &Llm) -> Result<Prompt> {
        Ok(Prompt::with_soft(self.soft.as_tensor().clone()))
    }

    fn train_step(&mut self, ctx: &mut StepContext, batch: &Batch) -> Result<f32> {
        let llm = ctx.llm;
        let soft = self.soft.clone();
        let prompt_fn = || Ok(Prompt::with_soft(soft.as_tensor().clone()));
        gradient_step(llm, &prompt_fn, batch, &mut self.opt, ctx.lr)
    }

    fn export(&self, _llm: &Llm) -> Result<Vec<(String, Tensor)>> {
        Ok(vec![(
            PROMPT_EMBEDDINGS.into(),
            self.soft.as_tensor().copy()?,
        )])
    }

    fn peft_state(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(vec![(PEFT_EMBEDDING.into(), self.soft.as_tensor().copy()?)])
    }

    fn vars(&self) -> &[Var] {
        self.opt.vars()
    }

    fn optimizer(&mut self) -> Option<&mut AdamW> {
        Some(&mut self.opt)
    }
}
