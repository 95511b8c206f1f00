//! Many tasks, one frozen model: a batch that mixes tasks scores (and trains) every row exactly
//! as its own prompt would alone, multi-task training learns every task, its per-task prompt
//! folders work alone, and `predict` serving a mixed batch equals serving each task alone.
//! All on the built-in model, in seconds.

mod common;

use candle_core::{Tensor, Var};
use common::max_abs_diff;
use gradprompt::artifact::Artifact;
use gradprompt::methods::input::Row;
use gradprompt::methods::score::{score, score_mixed};
use gradprompt::methods::{MethodKind, MethodSettings, Prompt};
use gradprompt::model::{KvPrefix, Model};
use gradprompt::run::{Mix, MultiTaskResult, MultiTaskSpec, RunSpec, TrainConfig};
use gradprompt::serve::{self, Input};
use gradprompt::task::{encode, Task, Template};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn model() -> &'static Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| Model::load("builtin").expect("the built-in model loads"))
}

fn sample(name: &str) -> Task {
    Task::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("sample_tasks")
            .join(name),
    )
    .unwrap()
}

/// The first `n` train examples of `task` encoded with `template`, as rows using prompt `p`.
fn rows(task: &Task, template: &str, n: usize, p: usize) -> Vec<Row> {
    let template = Template::parse(template).unwrap();
    task.train[..n]
        .iter()
        .map(|e| {
            let e = encode(&template, e, task, &model().tokenizer).unwrap();
            Row::gold(&e).with_prompt(p)
        })
        .collect()
}

fn random(shape: (usize, usize), seed: u64) -> Var {
    let n = shape.0 * shape.1;
    let v: Vec<f32> = (0..n)
        .map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 1000.0 - 0.5) * 0.2)
        .collect();
    Var::from_tensor(&Tensor::from_vec(v, shape, model().llm.device()).unwrap()).unwrap()
}

/// A prefix of `n` positions in every layer, as trainable variables.
fn random_prefix(n: usize, seed: u64) -> Vec<(Var, Var)> {
    let c = model().config();
    (0..c.num_hidden_layers)
        .map(|l| {
            let kv = |s: u64| {
                let t = random(
                    (c.num_key_value_heads * n, c.head_dim),
                    seed * 31 + l as u64 * 7 + s,
                );
                let t = t
                    .as_tensor()
                    .reshape((1, c.num_key_value_heads, n, c.head_dim))
                    .unwrap();
                Var::from_tensor(&t).unwrap()
            };
            (kv(1), kv(2))
        })
        .collect()
}

fn flat(prefix: &[(Var, Var)]) -> Vec<&Var> {
    prefix.iter().flat_map(|(k, v)| [k, v]).collect()
}

fn prefix_of(vars: &[(Var, Var)]) -> KvPrefix {
    KvPrefix::new(
        vars.iter()
            .map(|(k, v)| (k.as_tensor().clone(), v.as_tensor().clone()))
            .collect(),
    )
}

/// Row log-probabilities and each variable's gradient of the summed loss.
fn scored(prompts: &[Prompt], rows: &[Row], vars: &[&Var]) -> (Vec<f32>, Vec<Option<Tensor>>) {
    let s = score_mixed(&model().llm, prompts, rows).unwrap();
    let grads = s.nll_sum.backward().unwrap();
    (
        s.row_logprob.to_vec1().unwrap(),
        vars.iter()
            .map(|v| grads.get(v.as_tensor()).cloned())
            .collect(),
    )
}

/// Scores `a_rows` (prompt 0) and `b_rows` (prompt 1) interleaved in one batch and each set
/// alone with its own prompt; the row log-probabilities and the gradients must agree.
fn mixed_equals_alone(
    prompts: [Prompt; 2],
    a_rows: Vec<Row>,
    b_rows: Vec<Row>,
    vars: [Vec<&Var>; 2],
) {
    let mut mixed = Vec::new();
    let mut order = Vec::new();
    for i in 0..a_rows.len().max(b_rows.len()) {
        if let Some(r) = b_rows.get(i) {
            mixed.push(r.clone());
            order.push((1, i));
        }
        if let Some(r) = a_rows.get(i) {
            mixed.push(r.clone());
            order.push((0, i));
        }
    }
    let all_vars: Vec<&Var> = vars.iter().flatten().copied().collect();
    let (lp_mixed, g_mixed) = scored(&prompts, &mixed, &all_vars);
    let mut g_alone = Vec::new();
    let mut lp_alone = [Vec::new(), Vec::new()];
    for (p, rows) in [(0usize, &a_rows), (1, &b_rows)] {
        let alone: Vec<Row> = rows.iter().map(|r| r.clone().with_prompt(0)).collect();
        let s = score(&model().llm, &prompts[p], &alone).unwrap();
        lp_alone[p] = s.row_logprob.to_vec1::<f32>().unwrap();
        let grads = s.nll_sum.backward().unwrap();
        g_alone.extend(vars[p].iter().map(|v| grads.get(v.as_tensor()).cloned()));
    }
    for (j, &(p, i)) in order.iter().enumerate() {
        let (m, a) = (lp_mixed[j], lp_alone[p][i]);
        assert!(
            (m - a).abs() < 1e-4,
            "row {i} of prompt {p}: mixed {m}, alone {a}"
        );
    }
    for (k, (m, a)) in g_mixed.iter().zip(&g_alone).enumerate() {
        let (m, a) = (m.as_ref().unwrap(), a.as_ref().unwrap());
        // Relative to the gradient's size: padding changes the order of f32 sums.
        let d = max_abs_diff(m, a);
        let size = a
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            d <= 1e-4 * size.max(1.0),
            "gradient of variable {k}: mixed and alone differ by {d} (largest entry {size})"
        );
    }
}

#[test]
fn a_mixed_batch_scores_soft_prompts_of_different_lengths_as_each_alone() {
    let d = model().config().hidden_size;
    let (a, b) = (random((3, d), 1), random((5, d), 2));
    let prompts = [
        Prompt::with_soft(a.as_tensor().clone()),
        Prompt::with_soft(b.as_tensor().clone()),
    ];
    let a_rows = rows(
        &sample("country-continent"),
        "[P*3] {country} is in [ANSWER]",
        4,
        0,
    );
    let b_rows = rows(
        &sample("country-capital"),
        "[P*5]The capital of {country} is [ANSWER]",
        3,
        1,
    );
    mixed_equals_alone(prompts, a_rows, b_rows, [vec![&a], vec![&b]]);
}

#[test]
fn a_mixed_batch_scores_prefixes_of_different_lengths_as_each_alone() {
    let (a, b) = (random_prefix(2, 1), random_prefix(5, 2));
    let prompts = [
        Prompt::with_prefix(prefix_of(&a)),
        Prompt::with_prefix(prefix_of(&b)),
    ];
    let a_rows = rows(
        &sample("country-continent"),
        "{country} is in [ANSWER]",
        4,
        0,
    );
    let b_rows = rows(
        &sample("animal-class"),
        "The {animal} is a kind of [ANSWER]",
        3,
        1,
    );
    // The block op (the training path) and the frozen path both see per-row prefix lengths.
    mixed_equals_alone(prompts, a_rows, b_rows, [flat(&a), flat(&b)]);
}

#[test]
fn a_mixed_batch_scores_soft_slots_between_anchor_words_as_each_alone() {
    let d = model().config().hidden_size;
    let (a, b) = (random((4, d), 3), random((2, d), 4));
    let prompts = [
        Prompt::with_soft(a.as_tensor().clone()),
        Prompt::with_soft(b.as_tensor().clone()),
    ];
    let a_rows = rows(
        &sample("country-continent"),
        "[P*2] {country} [P] continent [P] [ANSWER]",
        4,
        0,
    );
    let b_rows = rows(
        &sample("country-capital"),
        "The capital [P] of {country} [P] is [ANSWER]",
        4,
        1,
    );
    mixed_equals_alone(prompts, a_rows, b_rows, [vec![&a], vec![&b]]);
}

fn spec(
    method: MethodKind,
    steps: usize,
    settings: MethodSettings,
    out: Option<PathBuf>,
) -> RunSpec {
    RunSpec {
        method,
        settings,
        template: None,
        config: TrainConfig {
            steps,
            batch_size: 8,
            eval_every: 10,
            seed: 1,
            ..Default::default()
        },
        out,
    }
}

fn train_tasks(tasks: &[Task], spec: &MultiTaskSpec) -> anyhow::Result<MultiTaskResult> {
    let (tx, _rx) = crossbeam_channel::unbounded();
    let (_ctx, crx) = crossbeam_channel::unbounded();
    gradprompt::train::multi_task::train_tasks(model(), tasks, spec, &tx, &crx)
}

fn train_one(task: &Task, spec: &RunSpec) -> gradprompt::run::RunResult {
    let (tx, _rx) = crossbeam_channel::unbounded();
    let (_ctx, crx) = crossbeam_channel::unbounded();
    gradprompt::train::train(model(), task, spec, &tx, &crx).unwrap()
}

#[test]
fn multi_task_prompt_tuning_beats_zero_shot_on_both_tasks_and_its_folders_work_alone() {
    let tasks = [sample("country-continent"), sample("animal-class")];
    let out = tempfile::tempdir().unwrap();
    let multi = MultiTaskSpec {
        run: spec(
            MethodKind::PromptTuning,
            30,
            MethodSettings::default(),
            Some(out.path().to_path_buf()),
        ),
        mix: Mix::Proportional,
        shared_tokens: 2,
    };
    let r = train_tasks(&tasks, &multi).unwrap();
    assert_eq!(r.tasks.len(), 2);
    assert!(r.train_loss_last.unwrap() < r.train_loss_first.unwrap());
    for (task, score) in tasks.iter().zip(&r.tasks) {
        let zero = train_one(
            task,
            &spec(MethodKind::ZeroShot, 0, Default::default(), None),
        );
        eprintln!(
            "{}: multi-task dev {:.3} test {:.3}, zero-shot dev {:.3} test {:.3}",
            score.task, score.dev_metric, score.test_metric, zero.dev_metric, zero.test_metric
        );
        assert!(
            score.dev_metric > zero.dev_metric && score.test_metric > zero.test_metric,
            "{}: multi-task dev/test {}/{} do not beat zero-shot {}/{}",
            score.task,
            score.dev_metric,
            score.test_metric,
            zero.dev_metric,
            zero.test_metric
        );
        // The folder alone (shared vectors folded in) reproduces the task's test score.
        let dir = out.path().join(&task.spec.name);
        assert_eq!(score.artifact.as_deref(), Some(dir.to_str().unwrap()));
        let art = Artifact::load(&dir).unwrap();
        art.manifest.check_task(task, &dir, false).unwrap();
        let alone = gradprompt::playground::score_on_test(model(), task, &art).unwrap();
        assert!(
            (alone.metric - score.test_metric).abs() < 1e-9,
            "{}: the folder alone scores {} on test, the run reported {}",
            task.spec.name,
            alone.metric,
            score.test_metric
        );
        // Each task's test predictions beside its prompt, agreeing with its test score.
        let kept = gradprompt::predictions::Predictions::load(&dir)
            .unwrap()
            .expect("predictions.jsonl in the task's folder");
        assert!((kept.accuracy() - score.test_metric).abs() < 1e-9);
    }
    let summary = std::fs::read_to_string(out.path().join("multi-task.json")).unwrap();
    assert!(summary.contains("\"tasks\""), "{summary}");
}

/// Saved prompts for the serving tests: trained for a few steps, which is enough to make them
/// differ from the model's own behaviour; what is tested is that mixing does not change them.
fn saved_prompt(
    task: &str,
    method: MethodKind,
    settings: MethodSettings,
    template: Option<&str>,
    dir: &Path,
) -> PathBuf {
    let out = dir.join(format!("{task}-{}-{}", method.id(), settings.prefix_len));
    let mut s = spec(method, 3, settings, Some(out.clone()));
    s.template = template.map(str::to_string);
    train_one(&sample(task), &s);
    out
}

/// Predictions of a batch mixing the tasks equal predictions of each task's rows alone.
fn served_mixed_equals_alone(prompts: &[PathBuf], rows: &str) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("rows.jsonl");
    std::fs::write(&input, rows).unwrap();
    let served = serve::load_prompts(model(), prompts).unwrap();
    let inputs = serve::read_inputs(&input, &served).unwrap();
    let mixed = serve::predict(model(), &served, &inputs, 16).unwrap();
    for t in 0..served.len() {
        let own: Vec<usize> = (0..inputs.len()).filter(|&i| inputs[i].task == t).collect();
        let alone_in: Vec<Input> = own.iter().map(|&i| inputs[i].clone()).collect();
        let alone = serve::predict(model(), &served, &alone_in, 16).unwrap();
        for (&i, a) in own.iter().zip(&alone) {
            let m = &mixed[i];
            assert_eq!(m.task, a.task);
            assert_eq!(m.prediction, a.prediction, "row {i}");
            let (mp, ap) = (
                m.probabilities.as_ref().unwrap(),
                a.probabilities.as_ref().unwrap(),
            );
            for (label, p) in mp {
                assert!(
                    (p - ap[label]).abs() < 1e-4,
                    "row {i} label {label}: {p} vs {}",
                    ap[label]
                );
            }
        }
    }
}

const MIXED_ROWS: &str = r#"{"task": "country-continent", "country": "France"}
{"task": "animal-class", "animal": "eagle"}
{"task": "animal-class", "animal": "salmon"}
{"task": "country-continent", "country": "Japan"}
{"task": "country-continent", "country": "Brazil"}
{"task": "animal-class", "animal": "frog"}
"#;

#[test]
fn predict_serves_a_mixed_batch_of_prompt_tuning_prompts_as_each_task_alone() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = [
        saved_prompt(
            "country-continent",
            MethodKind::PromptTuning,
            Default::default(),
            None,
            dir.path(),
        ),
        saved_prompt(
            "animal-class",
            MethodKind::PromptTuning,
            MethodSettings {
                num_virtual_tokens: 3,
                ..Default::default()
            },
            None,
            dir.path(),
        ),
    ];
    served_mixed_equals_alone(&prompts, MIXED_ROWS);
}

#[test]
fn predict_serves_a_mixed_batch_of_prefixes_of_two_lengths_as_each_task_alone() {
    let dir = tempfile::tempdir().unwrap();
    let settings = |n| MethodSettings {
        prefix_len: n,
        ..Default::default()
    };
    let prompts = [
        saved_prompt(
            "country-continent",
            MethodKind::PrefixTuning,
            settings(3),
            None,
            dir.path(),
        ),
        saved_prompt(
            "animal-class",
            MethodKind::PrefixTuning,
            settings(7),
            None,
            dir.path(),
        ),
    ];
    served_mixed_equals_alone(&prompts, MIXED_ROWS);
}

#[test]
fn predict_serves_a_mixed_batch_of_p_tuning_prompts_with_anchors_mid_template_as_each_alone() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = [
        saved_prompt(
            "country-continent",
            MethodKind::PTuning,
            Default::default(),
            Some("[P*2] {country} [P] continent [P*2] [ANSWER]"),
            dir.path(),
        ),
        saved_prompt(
            "animal-class",
            MethodKind::PTuning,
            Default::default(),
            Some("The {animal} [P*3] is a kind of [ANSWER]"),
            dir.path(),
        ),
    ];
    served_mixed_equals_alone(&prompts, MIXED_ROWS);
}

#[test]
fn predict_refuses_a_row_whose_task_no_prompt_serves_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = [saved_prompt(
        "country-continent",
        MethodKind::PromptTuning,
        Default::default(),
        None,
        dir.path(),
    )];
    let served = serve::load_prompts(model(), &prompts).unwrap();
    let input = dir.path().join("rows.jsonl");
    std::fs::write(
        &input,
        "{\"task\": \"country-continent\", \"country\": \"France\"}\n{\"task\": \"antonyms\", \"word\": \"hot\"}\n",
    )
    .unwrap();
    let e = format!("{:#}", serve::read_inputs(&input, &served).unwrap_err());
    assert!(e.contains("rows.jsonl:2") && e.contains("antonyms"), "{e}");
    std::fs::write(&input, "{\"task\": \"country-continent\"}\n").unwrap();
    let e = format!("{:#}", serve::read_inputs(&input, &served).unwrap_err());
    assert!(e.contains("rows.jsonl:1") && e.contains("country"), "{e}");
}

#[test]
fn a_method_whose_prompts_cannot_share_a_batch_is_refused_before_training() {
    let tasks = [sample("country-continent"), sample("animal-class")];
    for method in [
        MethodKind::Autoprompt,
        MethodKind::FineTuning,
        MethodKind::ZeroShot,
    ] {
        let multi = MultiTaskSpec {
            run: spec(method, 5, Default::default(), None),
            mix: Mix::Uniform,
            shared_tokens: 0,
        };
        let e = format!("{:#}", train_tasks(&tasks, &multi).unwrap_err());
        assert!(e.contains("cannot train several tasks"), "{method:?}: {e}");
    }
}

#[test]
fn two_tasks_with_one_name_are_refused_before_training() {
    let tasks = [sample("country-continent"), sample("country-continent")];
    let multi = MultiTaskSpec {
        run: spec(MethodKind::PromptTuning, 5, Default::default(), None),
        mix: Mix::Proportional,
        shared_tokens: 0,
    };
    let e = format!("{:#}", train_tasks(&tasks, &multi).unwrap_err());
    assert!(e.contains("two tasks are named"), "{e}");
}

#[test]
fn a_classification_and_a_generation_task_train_together_with_a_shared_prefix() {
    let tasks = [sample("country-continent"), sample("country-capital")];
    let out = tempfile::tempdir().unwrap();
    let multi = MultiTaskSpec {
        run: spec(
            MethodKind::PrefixTuning,
            4,
            MethodSettings {
                prefix_len: 3,
                ..Default::default()
            },
            Some(out.path().to_path_buf()),
        ),
        mix: Mix::Uniform,
        shared_tokens: 2,
    };
    let r = train_tasks(&tasks, &multi).unwrap();
    assert_eq!(r.steps, 4);
    assert_eq!(r.tasks[0].metric.name(), "accuracy");
    assert_eq!(r.tasks[1].metric.name(), "exact_match");
    // Each task's folder holds the shared 2 positions and its own 3, and says so.
    for t in &tasks {
        let art = Artifact::load(&out.path().join(&t.spec.name)).unwrap();
        assert_eq!(art.manifest.settings.prefix_len, 5);
        let prefix = art
            .tensor(gradprompt::methods::tensor_names::PROMPT_EMBEDDINGS)
            .unwrap();
        assert_eq!(prefix.dim(0).unwrap(), 5);
    }
}

#[test]
fn predict_refuses_a_prompt_trained_on_another_model() {
    let dir = tempfile::tempdir().unwrap();
    let prompt = saved_prompt(
        "country-continent",
        MethodKind::PromptTuning,
        Default::default(),
        None,
        dir.path(),
    );
    let other = common::tiny_model(&dir.path().join("tiny"), 5);
    let e = serve::load_prompts(&other, std::slice::from_ref(&prompt))
        .err()
        .map(|e| format!("{e:#}"))
        .expect("a prompt for another model is refused");
    assert!(
        e.contains(prompt.to_str().unwrap())
            && e.contains("only works with the model it was trained on"),
        "{e}"
    );
}
