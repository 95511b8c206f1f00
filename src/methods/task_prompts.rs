//! Many tasks' prompts over one frozen model: one prompt per task (each a method of the same
//! kind, with its own variables and optimiser) and an optional shared part that every task uses
//! in front of its own (N soft vectors, or N prefix positions). A batch mixes rows of all tasks,
//! each row with its own task's prompt (`Row::prompt` is the task's index), and one backward
//! pass updates every prompt that a row of the batch used.
//!
//! What each task keeps is its own prompt with the shared part folded in: the shared vectors
//! (or prefix positions) in front of its own, so the export works alone like a single-task one.
//!
//! Only the gradient-trained prompt methods compose this way: AutoPrompt's discrete search and
//! fine-tuning's weight copy are not prompts a batch can mix.

use super::optim::AdamW;
use super::step::loss_and_grads_mixed;
use super::tensor_names::PROMPT_EMBEDDINGS;
use super::{Batch, Method, MethodKind, Prompt, Snapshot, StepContext};
use crate::model::{KvPrefix, Llm};
use anyhow::{bail, Context, Result};
use candle_core::{Tensor, Var};

/// The methods whose prompts a batch can mix.
pub const MULTI_TASK_METHODS: [MethodKind; 3] = [
    MethodKind::PromptTuning,
    MethodKind::PrefixTuning,
    MethodKind::PTuning,
];

/// Refuses a method that cannot train several tasks' prompts in one batch.
pub fn check_multi_task(kind: MethodKind) -> Result<()> {
    if !MULTI_TASK_METHODS.contains(&kind) {
        let ok: Vec<_> = MULTI_TASK_METHODS.iter().map(|k| k.id()).collect();
        bail!(
            "{} cannot train several tasks in one run (a batch can mix only learned prompts: {})",
            kind.id(),
            ok.join(", ")
        );
    }
    Ok(())
}

pub struct TaskPrompts {
    /// One method per task, in task order.
    pub tasks: Vec<Box<dyn Method>>,
    /// The part every task uses in front of its own (a method of the same kind with the shared
    /// number of vectors or prefix positions).
    pub shared: Option<Box<dyn Method>>,
}

/// The shared part's prompt in front of a task's own: soft vectors before its soft vectors
/// (the task's template has the shared slots first), prefix positions before its prefix.
pub fn join(shared: &Prompt, own: &Prompt) -> Result<Prompt> {
    let soft = match (&shared.soft, &own.soft) {
        (Some(s), Some(o)) => Some(Tensor::cat(&[s, o], 0)?),
        (s, o) => s.clone().or_else(|| o.clone()),
    };
    let prefix = match (&shared.prefix, &own.prefix) {
        (Some(s), Some(o)) => Some(KvPrefix::new(
            s.layers
                .iter()
                .zip(&o.layers)
                .map(|((sk, sv), (ok, ov))| {
                    Ok((Tensor::cat(&[sk, ok], 2)?, Tensor::cat(&[sv, ov], 2)?))
                })
                .collect::<Result<_>>()?,
        )),
        (s, o) => s.clone().or_else(|| o.clone()),
    };
    Ok(Prompt {
        soft,
        prefix,
        triggers: own.triggers.clone(),
        trigger_embeds: None,
    })
}

impl TaskPrompts {
    /// Every task's prompt with the shared part in front, in task order.
    pub fn prompts(&self, llm: &Llm) -> Result<Vec<Prompt>> {
        let shared = self.shared.as_ref().map(|s| s.prompt(llm)).transpose()?;
        self.tasks
            .iter()
            .map(|m| {
                let own = m.prompt(llm)?;
                match &shared {
                    Some(s) => join(s, &own),
                    None => Ok(own),
                }
            })
            .collect()
    }

    /// Every method, the shared part last.
    fn methods(&self) -> impl Iterator<Item = &dyn Method> {
        self.tasks
            .iter()
            .chain(self.shared.iter())
            .map(|m| m.as_ref())
    }

    /// Every method, the shared part last (the order a checkpoint saves them in).
    pub fn methods_mut(&mut self) -> Vec<&mut dyn Method> {
        self.tasks
            .iter_mut()
            .chain(self.shared.iter_mut())
            .map(|m| m.as_mut() as &mut dyn Method)
            .collect()
    }

    pub fn trainable_params(&self) -> usize {
        self.methods().map(|m| m.trainable_params()).sum()
    }

    /// One update on a batch mixing tasks: one forward and backward for all rows, then each
    /// task that had rows in the batch steps its own optimiser, and the shared part steps on
    /// the gradient from every task. A task without rows is not stepped (its variables got no
    /// gradient; AdamW's moments would otherwise still move it). Returns the mean answer-token
    /// loss before the update.
    pub fn train_step(&mut self, ctx: &mut StepContext, batch: &Batch) -> Result<f32> {
        let llm = ctx.llm;
        let vars: Vec<Var> = self.methods().flat_map(|m| m.vars().to_vec()).collect();
        let (loss, grads) = {
            let this = &*self;
            let prompts_fn = || this.prompts(llm);
            loss_and_grads_mixed(llm, &prompts_fn, batch, &vars)?
        };
        let mut grads = grads.into_iter();
        let present: Vec<bool> = (0..self.tasks.len())
            .map(|k| batch.rows.iter().any(|r| r.prompt == k))
            .collect();
        let owners = self
            .tasks
            .iter_mut()
            .zip(present)
            .chain(self.shared.iter_mut().map(|s| (s, true)));
        for (m, present) in owners {
            let n = m.vars().len();
            let g: Vec<Option<Tensor>> = grads.by_ref().take(n).collect();
            if !present {
                continue;
            }
            let g = g
                .into_iter()
                .enumerate()
                .map(|(i, g)| {
                    g.with_context(|| {
                        format!("internal error: trainable tensor {i} of a task in the batch received no gradient")
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let opt: &mut AdamW = m
                .optimizer()
                .context("internal error: a multi-task method without an optimiser")?;
            opt.set_learning_rate(ctx.lr);
            opt.step(&g)?;
        }
        Ok(loss)
    }

    /// What task `k` stores: its own tensors with the shared part's folded in front.
    pub fn export(&self, llm: &Llm, k: usize) -> Result<Vec<(String, Tensor)>> {
        let own = self.tasks[k].export(llm)?;
        let Some(shared) = &self.shared else {
            return Ok(own);
        };
        let shared = shared.export(llm)?;
        let get = |tensors: &[(String, Tensor)]| -> Result<Tensor> {
            tensors
                .iter()
                .find(|(n, _)| n == PROMPT_EMBEDDINGS)
                .map(|(_, t)| t.clone())
                .with_context(|| format!("internal error: no {PROMPT_EMBEDDINGS} to fold"))
        };
        let folded = Tensor::cat(&[get(&shared)?, get(&own)?], 0)?;
        Ok(vec![(PROMPT_EMBEDDINGS.to_string(), folded)])
    }

    /// Snapshots of every task's state and the shared part's, to keep the best checkpoint.
    pub fn snapshot(&self) -> Result<Vec<Snapshot>> {
        self.methods().map(|m| m.snapshot()).collect()
    }

    pub fn restore(&mut self, snapshots: &[Snapshot]) -> Result<()> {
        let methods = self.tasks.iter_mut().chain(self.shared.iter_mut());
        for (m, s) in methods.zip(snapshots) {
            m.restore(s)?;
        }
        Ok(())
    }
}
