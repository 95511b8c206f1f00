//! Looking inside a learned prompt and trying it on one input: the nearest vocabulary tokens of
//! soft vectors, AutoPrompt's trigger text, and label probabilities with and without the prompt.
//! The GUI calls these from a background thread; they know nothing of it.

use crate::artifact::Artifact;
use crate::methods::tensor_names::{PROMPT_EMBEDDINGS, TRIGGER_IDS};
use crate::methods::{MethodKind, Prompt};
use crate::model::{Llm, Model};
use crate::task::{encode, Example, Task, TaskKind, Template};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor, D};
use std::collections::BTreeMap;

/// For each row of `vectors` (`[n, hidden]`), the `k` vocabulary tokens whose input embeddings
/// are closest by cosine similarity, best first, as (decoded token, similarity).
pub fn nearest_tokens(
    llm: &Llm,
    tok: &tokenizers::Tokenizer,
    vectors: &Tensor,
    k: usize,
) -> Result<Vec<Vec<(String, f32)>>> {
    let unit = |t: &Tensor| -> Result<Tensor> {
        let t = t.to_dtype(DType::F32)?;
        let norm = t
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-12, f32::MAX)?;
        Ok(t.broadcast_div(&norm)?)
    };
    let emb = llm.embedding_matrix().detach();
    let (n, d) = vectors
        .dims2()
        .context("soft vectors must be [n, hidden]")?;
    if d != emb.dim(1)? {
        bail!(
            "the vectors have width {d} but the model's embeddings have width {}",
            emb.dim(1)?
        );
    }
    let sims = unit(vectors)?.matmul(&unit(&emb)?.t()?)?;
    let rows: Vec<Vec<f32>> = sims.to_vec2()?;
    let mut out = Vec::with_capacity(n);
    for row in rows {
        let mut idx: Vec<usize> = (0..row.len()).collect();
        let k = k.min(row.len());
        idx.select_nth_unstable_by(k.saturating_sub(1), |&a, &b| row[b].total_cmp(&row[a]));
        idx.truncate(k);
        idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        out.push(
            idx.into_iter()
                .map(|i| (token_text(tok, i as u32), row[i]))
                .collect(),
        );
    }
    Ok(out)
}

fn token_text(tok: &tokenizers::Tokenizer, id: u32) -> String {
    tok.decode(&[id], false)
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| tok.id_to_token(id))
        .unwrap_or_else(|| format!("<{id}>"))
}

/// What can be read from a learned prompt.
#[derive(Debug, Clone)]
pub enum Learned {
    /// Soft vectors (Prompt Tuning, P-Tuning): the nearest tokens of each.
    Soft(Vec<Vec<(String, f32)>>),
    /// AutoPrompt's trigger tokens, one string per slot, and the whole trigger text.
    Triggers { tokens: Vec<String>, text: String },
    /// Nothing token-shaped to show, and why.
    Opaque(String),
}

/// Nearest vocabulary tokens shown per soft vector when no other number is asked for.
pub const NEAREST_TOKENS: usize = 5;

/// Reads a learned prompt against the model it was trained on.
pub fn inspect(model: &Model, art: &Artifact, k: usize) -> Result<Learned> {
    art.check_model(model)?;
    Ok(match art.manifest.method {
        MethodKind::PromptTuning | MethodKind::PTuning => Learned::Soft(nearest_tokens(
            &model.llm,
            &model.tokenizer,
            art.tensor(PROMPT_EMBEDDINGS)?,
            k,
        )?),
        MethodKind::Autoprompt => {
            let ids = art.tensor(TRIGGER_IDS)?.to_vec1::<u32>()?;
            Learned::Triggers {
                tokens: ids
                    .iter()
                    .map(|&i| token_text(&model.tokenizer, i))
                    .collect(),
                text: model.decode(&ids)?,
            }
        }
        MethodKind::PrefixTuning => Learned::Opaque(
            "prefix tuning stores keys and values for every attention layer, not input \
             embeddings, so there are no vectors to compare with the vocabulary"
                .into(),
        ),
        MethodKind::FineTuning => {
            Learned::Opaque("fine-tuning changes the weights; there is no prompt to read".into())
        }
        MethodKind::ZeroShot => {
            Learned::Opaque("zero-shot learns nothing; its prompt is the template".into())
        }
    })
}

/// The model's answer to one input.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Classification: each label's answer text and its probability among the labels
    /// (softmax over the labels' total log-probabilities).
    Labels(Vec<(String, f32)>),
    /// Generation: the greedy continuation.
    Text(String),
}

/// Scores one input: `fields` filled into `template`, with `prompt` in place, and a class
/// scored by its found label token where `label_tokens` has them (AutoPrompt's search).
pub fn answer(
    llm: &Llm,
    prompt: &Prompt,
    template: &Template,
    task: &Task,
    fields: &BTreeMap<String, String>,
    tok: &tokenizers::Tokenizer,
    label_tokens: Option<&[Vec<u32>]>,
) -> Result<Answer> {
    for f in template.fields() {
        if !fields.contains_key(&f) {
            bail!("the input has no value for field {{{f}}}");
        }
    }
    let labels = task.labels();
    let example = Example {
        fields: fields.clone(),
        // The gold answer does not matter for scoring all labels; generation needs a
        // non-empty placeholder only to build the encoded form.
        answer: labels.first().cloned().unwrap_or_else(|| "?".into()),
    };
    let mut e = vec![encode(template, &example, task, tok)?];
    if let Some(found) = label_tokens {
        crate::methods::label_search::use_as_verbalizer(found, &mut [&mut e])?;
    }
    let e = e.remove(0);
    match task.spec.kind {
        TaskKind::Classification => {
            let lp = crate::train::eval::candidate_logprobs(
                llm,
                &prompt.detached(),
                std::slice::from_ref(&e),
            )?
            .remove(0);
            let max = lp.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exp: Vec<f32> = lp.iter().map(|v| (v - max).exp()).collect();
            let sum: f32 = exp.iter().sum();
            Ok(Answer::Labels(
                labels
                    .iter()
                    .zip(exp)
                    .map(|(l, p)| (task.answer_text(l).to_string(), p / sum))
                    .collect(),
            ))
        }
        TaskKind::Generation => {
            // The same stop rule and budget as evaluation (the task's).
            let text = crate::train::eval::greedy_answer(llm, &prompt.detached(), &e, tok)?;
            Ok(Answer::Text(text))
        }
    }
}

/// One input answered with the learned prompt and without it (the task's own template on the
/// frozen model, as zero-shot).
#[derive(Debug, Clone)]
pub struct Comparison {
    pub with_prompt: Answer,
    pub without: Answer,
}

pub fn compare(
    model: &Model,
    task: &Task,
    art: &Artifact,
    fields: &BTreeMap<String, String>,
) -> Result<Comparison> {
    let (own, prompt) = art.prompt_for(model)?;
    let template = Template::parse(&art.manifest.template)
        .map_err(|e| anyhow::anyhow!("the prompt's template: {e}"))?;
    let llm = own.as_ref().unwrap_or(&model.llm);
    let with_prompt = answer(
        llm,
        &prompt,
        &template,
        task,
        fields,
        &model.tokenizer,
        art.manifest.label_token_ids.as_deref(),
    )?;
    let without = answer(
        &model.llm,
        &Prompt::default(),
        &task.template()?,
        task,
        fields,
        &model.tokenizer,
        None,
    )?;
    Ok(Comparison {
        with_prompt,
        without,
    })
}

/// A saved prompt scored on a task's test split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestScore {
    /// The task's metric on the test split.
    pub metric: f64,
    /// Test examples scored.
    pub examples: usize,
}

/// Scores a saved prompt on `task`'s test split (what `gradprompt eval` prints).
pub fn score_on_test(model: &Model, task: &Task, art: &Artifact) -> Result<TestScore> {
    let (own, prompt) = art.prompt_for(model)?;
    let template = Template::parse(&art.manifest.template)
        .map_err(|e| anyhow::anyhow!("the prompt's template: {e}"))?;
    let mut test = crate::train::encode_split(task, &template, crate::task::Split::Test, model)?;
    art.manifest.use_label_tokens(&mut [&mut test])?;
    let llm = own.as_ref().unwrap_or(&model.llm);
    let out = crate::train::eval::evaluate(llm, &prompt, task.spec.kind, &test, &model.tokenizer)?;
    Ok(TestScore {
        metric: out.metric,
        examples: test.len(),
    })
}

/// The test metric of a saved prompt on `task` (the workbench's export view shows it).
pub fn evaluate_artifact(model: &Model, task: &Task, art: &Artifact) -> Result<f64> {
    Ok(score_on_test(model, task, art)?.metric)
}
