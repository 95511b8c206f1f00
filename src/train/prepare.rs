//! Preparation: everything a run needs before its first step, checked before any training
//! starts, so bad input fails at once with the field or example it comes from.

use crate::methods::label_search;
use crate::methods::RunRng;
use crate::methods::{self, Method};
use crate::model::Model;
use crate::run::{default_lr, RunSpec};
use crate::task::{encode, Encoded, Split, Task, Template};
use anyhow::{bail, Context, Result};
use rand::SeedableRng;

/// A run ready to train: its template, its freshly built method and its encoded splits.
pub struct Prepared {
    pub template: Template,
    pub method: Box<dyn Method>,
    pub train_set: Vec<Encoded>,
    pub dev_set: Vec<Encoded>,
    pub test_set: Vec<Encoded>,
    /// AutoPrompt's found label tokens, one list per label (`--search-labels`), already in
    /// place of the verbalizer's answers in the three sets; None where the verbalizer is used.
    pub label_tokens: Option<Vec<Vec<u32>>>,
    /// Steps to run: zero-shot trains nothing whatever the config says.
    pub steps: usize,
    pub peak_lr: f64,
    /// The run's one random stream (method initialisation, batch order, method steps), seeded
    /// from the config, so a seed fixes the whole run.
    pub rng: RunRng,
}

pub fn prepare(model: &Model, task: &Task, spec: &RunSpec) -> Result<Prepared> {
    let cfg = &spec.config;
    spec.check()?;
    let mut rng = RunRng::seed_from_u64(cfg.seed);
    let PreparedTask {
        template,
        method,
        train_set,
        dev_set,
        test_set,
        label_tokens,
    } = prepare_task(model, task, spec, 0, &mut rng)?;
    let steps = if spec.method == methods::MethodKind::ZeroShot {
        0
    } else {
        cfg.steps
    };
    Ok(Prepared {
        template,
        method,
        train_set,
        dev_set,
        test_set,
        label_tokens,
        steps,
        peak_lr: cfg.lr.unwrap_or_else(|| default_lr(spec.method)),
        rng,
    })
}

/// One task ready to train: its template (as encoded), its method and its encoded splits.
pub struct PreparedTask {
    pub template: Template,
    pub method: Box<dyn Method>,
    pub train_set: Vec<Encoded>,
    pub dev_set: Vec<Encoded>,
    pub test_set: Vec<Encoded>,
    /// As [`Prepared::label_tokens`].
    pub label_tokens: Option<Vec<Vec<u32>>>,
}

/// Builds a task's method (drawing its initial values from `rng`) and encodes its splits.
/// `shared` is the number of positions a multi-task run's shared part puts in front of the
/// task's own prompt: soft slots at the start of the encoded template, or prefix positions,
/// counted in the context check. The method itself gets only the task's own slots.
pub fn prepare_task(
    model: &Model,
    task: &Task,
    spec: &RunSpec,
    shared: usize,
    rng: &mut RunRng,
) -> Result<PreparedTask> {
    let template = resolve_template(task, spec)?;
    let context = model.llm.cfg.max_position_embeddings;
    if spec.method == methods::MethodKind::PrefixTuning
        && spec.settings.prefix_len + shared >= context
    {
        bail!(
            "--prefix-len {} leaves no room for text in the model's context of {context} positions",
            spec.settings.prefix_len + shared
        );
    }
    let labels = task.label_answers();
    template
        .check(&spec.method.slot_rules(), &task.spec.fields)
        .map_err(|e| anyhow::anyhow!("template {template}: {e}"))?;
    let mut method = methods::build(
        spec.method,
        &spec.settings,
        &model.llm,
        &template,
        &labels,
        &model.tokenizer,
        rng,
    )?;
    let (template, prefix) = match spec.method {
        methods::MethodKind::PrefixTuning => (template, spec.settings.prefix_len + shared),
        _ => (template.with_soft_prefix(shared), 0),
    };
    let mut train_set = encode_split(task, &template, Split::Train, model)?;
    let mut dev_set = encode_split(task, &template, Split::Dev, model)?;
    let mut test_set = encode_split(task, &template, Split::Test, model)?;
    let k = spec.settings.search_labels;
    label_search::check(k, spec.method, task.spec.kind)?;
    methods::autoprompt::check_judge(spec.settings.judge, spec.method, task.spec.kind)?;
    // Searched from the method's starting triggers, before any training: the paper finds the
    // label tokens first and then searches the triggers against them.
    let label_tokens = if k > 0 {
        let triggers = method.prompt(&model.llm)?.triggers;
        let found = label_search::search(&model.llm, &model.tokenizer, &train_set, &triggers, k)
            .context("the label-token search (--search-labels)")?;
        label_search::use_as_verbalizer(
            &found,
            &mut [&mut train_set, &mut dev_set, &mut test_set],
        )?;
        Some(found)
    } else {
        None
    };
    for (split, set) in [
        (Split::Train, &train_set),
        (Split::Dev, &dev_set),
        (Split::Test, &test_set),
    ] {
        check_context(task, split, set, prefix, context)?;
    }
    method.use_train_split(&train_set);
    Ok(PreparedTask {
        template,
        method,
        train_set,
        dev_set,
        test_set,
        label_tokens,
    })
}

/// Encodes a split, naming the example's file and line on failure.
pub fn encode_split(
    task: &Task,
    template: &Template,
    split: Split,
    model: &Model,
) -> Result<Vec<Encoded>> {
    task.examples(split)
        .iter()
        .enumerate()
        .map(|(i, e)| {
            encode(template, e, task, &model.tokenizer).with_context(|| task.origin(split, i))
        })
        .collect()
}

/// Every example must fit the model's context with its longest answer (and a prefix's
/// positions, which number the text from the prefix length): found here, not after training
/// when the test split is scored.
fn check_context(
    task: &Task,
    split: Split,
    set: &[Encoded],
    prefix: usize,
    context: usize,
) -> Result<()> {
    for (i, e) in set.iter().enumerate() {
        let answer = e.candidates.iter().map(Vec::len).max().unwrap_or(0);
        let needed = prefix + e.prompt.len() + answer;
        if needed > context {
            let with_prefix = if prefix > 0 {
                format!(" (a prefix of {prefix} included)")
            } else {
                String::new()
            };
            bail!(
                "{}: this example needs {needed} positions{with_prefix}, more than the model's context of {context}; shorten it or the template",
                task.origin(split, i)
            );
        }
    }
    Ok(())
}

/// The template a run uses, checked against the method's rules.
pub fn resolve_template(task: &Task, spec: &RunSpec) -> Result<Template> {
    let given = match &spec.template {
        Some(t) => Template::parse(t).map_err(|e| anyhow::anyhow!("--template: {e}"))?,
        None => task.template()?,
    };
    Ok(methods::template_for(spec.method, &spec.settings, &given))
}
