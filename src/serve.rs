//! Serving many tasks from one frozen model: saved prompts (one per task) answer input rows
//! that each name their task, in batches that mix tasks, every row with its own prompt (its
//! soft vectors in its own slots, its own key/value prefix; prefixes of different lengths are
//! padded and masked, `methods::input`). A prompt costs kilobytes where a fine-tuned model is a
//! whole copy, and one forward serves every task in the batch.
//!
//! Classification rows rank the task's labels by the total log-probability of each label's
//! answer (the way `eval` does) and report each label's probability among them; generation rows
//! are continued greedily, one row at a time, with their own prompt. Depends on the model, task,
//! methods, artifact and the evaluation's greedy decoder; knows nothing of a front end.

use crate::artifact::Artifact;
use crate::methods::input::Row;
use crate::methods::score::score_mixed;
use crate::methods::{MethodKind, Prompt};
use crate::model::Model;
use crate::task::{
    encode, AnswerEnd, Example, Metric, Origins, Task, TaskKind, TaskSpec, Template,
};
use crate::train::eval::greedy_answer;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Greedy tokens a generation row may produce when its prompt records no budget (one saved
/// before budgets were recorded): the task default. Decoding stops earlier at the answer's end.
pub const MAX_NEW_TOKENS: usize = crate::task::DEFAULT_MAX_NEW_TOKENS;

/// One task's saved prompt, ready to serve.
pub struct Served {
    /// The task as the prompt's manifest describes it (name, kind, fields, verbalizer).
    pub task: Task,
    pub template: Template,
    pub prompt: Prompt,
    pub dir: PathBuf,
    /// The prompt's found label tokens (AutoPrompt's `--search-labels`), scored in place of
    /// the verbalizer's answers; None for a prompt that uses the verbalizer.
    pub label_token_ids: Option<Vec<Vec<u32>>>,
}

/// Loads saved prompts for `model`. Each must be a prompt (not a fine-tuned model copy), for
/// this model, and for a task no other loaded prompt serves.
pub fn load_prompts(model: &Model, dirs: &[PathBuf]) -> Result<Vec<Served>> {
    load_prompts_for(model, dirs, None, None)
}

/// As [`load_prompts`]; a PEFT adapter folder without `gradprompt.json` serves `adapter_task`
/// with `template` (else that task's own template), as `Artifact::load_for` reads it.
pub fn load_prompts_for(
    model: &Model,
    dirs: &[PathBuf],
    adapter_task: Option<&Task>,
    template: Option<&str>,
) -> Result<Vec<Served>> {
    let mut out: Vec<Served> = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let adapter_without_meta = crate::artifact::adapter::is_adapter(dir)
            && !dir.join(crate::artifact::adapter::META_FILE).is_file();
        let art = if adapter_without_meta {
            Artifact::load_for(dir, adapter_task, template)?
        } else {
            Artifact::load(dir)?
        };
        let m = &art.manifest;
        if m.method == MethodKind::FineTuning {
            bail!(
                "{}: a fine-tuned model copy, not a prompt; predict serves prompts over one frozen model (use eval for it)",
                dir.display()
            );
        }
        let (_, prompt) = art
            .prompt_for(model)
            .with_context(|| format!("{}", dir.display()))?;
        if let Some(other) = out.iter().find(|s| s.task.spec.name == m.task) {
            bail!(
                "{} and {} are both prompts for task {:?}; give one prompt per task",
                other.dir.display(),
                dir.display(),
                m.task
            );
        }
        let template = Template::parse(&m.template)
            .map_err(|e| anyhow::anyhow!("{}: template {}: {e}", dir.display(), m.template))?;
        out.push(Served {
            task: task_of(&art, dir),
            template,
            prompt,
            dir: dir.clone(),
            label_token_ids: m.label_token_ids.clone(),
        });
    }
    Ok(out)
}

/// The task a prompt was trained for, as far as serving needs it (no examples).
fn task_of(art: &Artifact, dir: &Path) -> Task {
    let m = &art.manifest;
    Task {
        spec: TaskSpec {
            name: m.task.clone(),
            description: String::new(),
            kind: m.task_kind,
            fields: m.fields.clone(),
            template: m.template.clone(),
            verbalizer: m.verbalizer.clone(),
            metric: match m.task_kind {
                TaskKind::Classification => Metric::Accuracy,
                TaskKind::Generation => Metric::ExactMatch,
            },
            notes: String::new(),
            // The end and budget the prompt was trained with; a prompt saved before they were
            // recorded decodes as today's tasks do (to EOS, the default budget).
            stop: match &m.answer_end {
                AnswerEnd::Stop(stop) => Some(stop.clone()),
                AnswerEnd::Eos | AnswerEnd::Unmarked => None,
            },
            max_new_tokens: m.max_new_tokens,
        },
        dir: dir.to_path_buf(),
        train: Vec::new(),
        dev: Vec::new(),
        test: Vec::new(),
        origins: Origins::default(),
    }
}

/// One input row: which served task it is for, and its fields.
#[derive(Debug, Clone)]
pub struct Input {
    /// Index into the served prompts.
    pub task: usize,
    pub fields: BTreeMap<String, String>,
}

/// Reads input rows (JSON Lines): each line an object with `"task"` naming a served task and
/// that task's fields as strings. Errors name the file and line.
pub fn read_inputs(path: &Path, served: &[Served]) -> Result<Vec<Input>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| anyhow::anyhow!("{}: not UTF-8 text ({e})", path.display()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = || format!("{}:{}", path.display(), i + 1);
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}: not valid JSON", at()))?;
        let Some(obj) = value.as_object() else {
            bail!("{}: each line must be a JSON object", at());
        };
        let Some(name) = obj.get("task").and_then(|t| t.as_str()) else {
            bail!("{}: the row has no \"task\" naming its task", at());
        };
        let Some(task) = served.iter().position(|s| s.task.spec.name == name) else {
            let known: Vec<&str> = served.iter().map(|s| s.task.spec.name.as_str()).collect();
            bail!(
                "{}: no prompt serves task {name:?} (the prompts given serve: {}); add its --prompt",
                at(),
                known.join(", ")
            );
        };
        let mut fields = BTreeMap::new();
        for f in &served[task].task.spec.fields {
            match obj.get(f) {
                Some(serde_json::Value::String(s)) => {
                    fields.insert(f.clone(), s.clone());
                }
                Some(_) => bail!("{}: field {f:?} must be a string", at()),
                None => bail!("{}: task {name:?} needs the field {f:?}", at()),
            }
        }
        out.push(Input { task, fields });
    }
    Ok(out)
}

/// One row's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub task: String,
    /// The label (classification) or the generated text (generation).
    pub prediction: String,
    /// Classification: each label's probability among the task's labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<BTreeMap<String, f64>>,
    /// Generation: the generated text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// Answers every input row, in input order. Classification rows share forwards of up to
/// `batch_size` rows whatever their tasks; generation rows are decoded one by one.
pub fn predict(
    model: &Model,
    served: &[Served],
    inputs: &[Input],
    batch_size: usize,
) -> Result<Vec<Prediction>> {
    if batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let prompts: Vec<Prompt> = served.iter().map(|s| s.prompt.detached()).collect();
    let mut out: Vec<Option<Prediction>> = vec![None; inputs.len()];
    let classify: Vec<usize> = (0..inputs.len())
        .filter(|&i| served[inputs[i].task].task.spec.kind == TaskKind::Classification)
        .collect();
    for chunk in classify.chunks(batch_size) {
        let mut rows = Vec::new();
        let mut spans = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let s = &served[inputs[i].task];
            let labels = s.task.labels();
            let e = encode_input(
                s,
                &inputs[i],
                labels.first().cloned().unwrap_or_default(),
                &model.tokenizer,
            )
            .with_context(|| format!("input row {}", i + 1))?;
            spans.push((i, rows.len(), labels));
            rows.extend(
                Row::candidates(&e)
                    .into_iter()
                    .map(|r| r.with_prompt(inputs[i].task)),
            );
        }
        let lp = score_mixed(&model.llm, &prompts, &rows)?
            .row_logprob
            .to_vec1::<f32>()?;
        for (i, at, labels) in spans {
            let lp = &lp[at..at + labels.len()];
            let max = lp.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let z: f64 = lp.iter().map(|&l| (l as f64 - max).exp()).sum();
            let probs: BTreeMap<String, f64> = labels
                .iter()
                .zip(lp)
                .map(|(l, &v)| (l.clone(), (v as f64 - max).exp() / z))
                .collect();
            let best = labels
                .iter()
                .zip(lp)
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(l, _)| l.clone())
                .unwrap_or_default();
            out[i] = Some(Prediction {
                task: served[inputs[i].task].task.spec.name.clone(),
                prediction: best,
                probabilities: Some(probs),
                text: None,
            });
        }
    }
    for (i, input) in inputs.iter().enumerate() {
        let s = &served[input.task];
        if s.task.spec.kind != TaskKind::Generation {
            continue;
        }
        // Any answer text will do: only the prompt is encoded for decoding.
        let e = encode_input(s, input, "-".into(), &model.tokenizer)
            .with_context(|| format!("input row {}", i + 1))?;
        // The prompt's recorded stop rule and budget, as evaluation decodes.
        let text = greedy_answer(&model.llm, &prompts[input.task], &e, &model.tokenizer)?;
        out[i] = Some(Prediction {
            task: s.task.spec.name.clone(),
            prediction: text.clone(),
            probabilities: None,
            text: Some(text),
        });
    }
    Ok(out
        .into_iter()
        .map(|p| p.expect("every row is classification or generation"))
        .collect())
}

/// The same rows served the way a server that cannot mix prompts in a batch must: each batch of
/// `batch_size` arriving rows split by task, one forward per task. Used to measure what mixing
/// buys (`gradprompt bench --only serve`); the predictions are the same.
pub fn predict_one_task_at_a_time(
    model: &Model,
    served: &[Served],
    inputs: &[Input],
    batch_size: usize,
) -> Result<Vec<Prediction>> {
    let mut out = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(batch_size.max(1)) {
        let mut answered: Vec<Option<Prediction>> = vec![None; chunk.len()];
        for t in 0..served.len() {
            let own: Vec<usize> = (0..chunk.len()).filter(|&i| chunk[i].task == t).collect();
            if own.is_empty() {
                continue;
            }
            let rows: Vec<Input> = own.iter().map(|&i| chunk[i].clone()).collect();
            for (i, p) in own
                .into_iter()
                .zip(predict(model, served, &rows, batch_size)?)
            {
                answered[i] = Some(p);
            }
        }
        out.extend(
            answered
                .into_iter()
                .map(|p| p.expect("every row has a task")),
        );
    }
    Ok(out)
}

/// The row's prompt encoded with its task's template; `answer` stands in for the unknown gold.
fn encode_input(
    s: &Served,
    input: &Input,
    answer: String,
    tok: &tokenizers::Tokenizer,
) -> Result<crate::task::Encoded> {
    let example = Example {
        fields: input.fields.clone(),
        answer,
    };
    let mut e = vec![encode(&s.template, &example, &s.task, tok)?];
    if let Some(found) = &s.label_token_ids {
        crate::methods::label_search::use_as_verbalizer(found, &mut [&mut e])
            .with_context(|| format!("{}: label_token_ids", s.dir.display()))?;
    }
    Ok(e.remove(0))
}
