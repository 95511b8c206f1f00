//! Scoring from a key/value cache equals full-sequence scoring. Classification evaluation runs
//! each example's prompt once and scores every label from its cache; AutoPrompt scores every
//! candidate trigger list from the cache of the part before the first trigger. Both must give
//! the full-sequence path's numbers (within f32 rounding) for every method's prompt, on the
//! built-in model and sample_tasks/country-continent (prompts of several lengths, labels of one
//! and two tokens).

mod common;

use gradprompt::methods::autoprompt::{
    trigger_accuracies, trigger_losses, trigger_losses_full, Labelled,
};
use gradprompt::methods::RunRng;
use gradprompt::methods::{self, Batch, MethodKind, MethodSettings, Prompt, Row, StepContext};
use gradprompt::model::{Llm, Model};
use gradprompt::task::Split;
use gradprompt::task::{Encoded, Task, Template};
use gradprompt::train::encode_split;
use gradprompt::train::eval::{candidate_logprobs, candidate_logprobs_full};
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

const TOL: f32 = 1e-4;

struct Fixture {
    model: Model,
    task: Task,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let model = Model::load("builtin").expect("the built-in model loads");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_tasks/country-continent");
        Fixture {
            model,
            task: Task::load(&dir).unwrap(),
        }
    })
}

/// The method's template (the task's own, or `given`, with the method's slots added) and the
/// dev split encoded with it.
fn setup(kind: MethodKind, given: Option<&str>) -> (Template, Vec<Encoded>) {
    let f = fixture();
    let given = match given {
        Some(t) => Template::parse(t).unwrap(),
        None => f.task.template().unwrap(),
    };
    let template = methods::template_for(kind, &MethodSettings::default(), &given);
    let dev = encode_split(&f.task, &template, Split::Dev, &f.model).unwrap();
    (template, dev)
}

fn build(kind: MethodKind, template: &Template) -> Box<dyn methods::Method> {
    let f = fixture();
    let labels: Vec<String> = f
        .task
        .labels()
        .iter()
        .map(|l| format!(" {}", f.task.answer_text(l)))
        .collect();
    let mut rng = RunRng::seed_from_u64(7);
    methods::build(
        kind,
        &MethodSettings::default(),
        &f.model.llm,
        template,
        &labels,
        &f.model.tokenizer,
        &mut rng,
    )
    .unwrap()
}

/// Cached and full scores of every candidate of every example agree.
fn assert_same_scores(what: &str, llm: &Llm, prompt: &Prompt, encoded: &[Encoded]) {
    let t = Instant::now();
    let full = candidate_logprobs_full(llm, prompt, encoded).unwrap();
    let full_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let cached = candidate_logprobs(llm, prompt, encoded).unwrap();
    let cached_s = t.elapsed().as_secs_f64();
    assert_eq!(full.len(), cached.len());
    let mut worst = 0f32;
    for (i, (a, b)) in full.iter().zip(&cached).enumerate() {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!(
                x.is_finite() && y.is_finite(),
                "{what}: example {i}: {a:?} vs {b:?}"
            );
            worst = worst.max((x - y).abs());
        }
        assert!(
            worst <= TOL,
            "{what}: example {i}: full {a:?} vs cached {b:?}"
        );
    }
    let lens: std::collections::BTreeSet<usize> = encoded.iter().map(|e| e.prompt.len()).collect();
    eprintln!(
        "{what}: {} examples, prompt lengths {lens:?}: full {full_s:.3} s, cached {cached_s:.3} s, \
         max |diff| {worst:.2e}",
        encoded.len()
    );
}

#[test]
fn zero_shot_scores_from_cache() {
    let (_, dev) = setup(MethodKind::ZeroShot, None);
    let lens: std::collections::BTreeSet<usize> = dev.iter().map(|e| e.prompt.len()).collect();
    let answer_lens: std::collections::BTreeSet<usize> =
        dev[0].candidates.iter().map(Vec::len).collect();
    // The fixture exercises what the cache must get right: prompts of several lengths (several
    // cache groups) and labels of one token (read from the prompt's last logits) and of more.
    assert!(lens.len() > 1, "prompt lengths {lens:?}");
    assert!(
        answer_lens.contains(&1) && answer_lens.iter().any(|&n| n > 1),
        "answer lengths {answer_lens:?}"
    );
    assert_same_scores("zero-shot", &fixture().model.llm, &Prompt::default(), &dev);
}

#[test]
fn prompt_tuning_scores_from_cache() {
    let (template, dev) = setup(MethodKind::PromptTuning, None);
    let m = build(MethodKind::PromptTuning, &template);
    let llm = &fixture().model.llm;
    assert_same_scores(
        "prompt tuning",
        llm,
        &m.prompt(llm).unwrap().detached(),
        &dev,
    );
}

#[test]
fn p_tuning_scores_from_cache() {
    // Soft vectors around the input and right before the answer: the cache ends on a soft
    // vector.
    let (template, dev) = setup(
        MethodKind::PTuning,
        Some("[P*3] {country} [P*2] is a country in the continent of [P*2] [ANSWER]"),
    );
    let m = build(MethodKind::PTuning, &template);
    let llm = &fixture().model.llm;
    assert_same_scores("p-tuning", llm, &m.prompt(llm).unwrap().detached(), &dev);
}

#[test]
fn prefix_tuning_scores_from_cache() {
    let (template, dev) = setup(MethodKind::PrefixTuning, None);
    let m = build(MethodKind::PrefixTuning, &template);
    let llm = &fixture().model.llm;
    let prompt = m.prompt(llm).unwrap().detached();
    assert!(prompt.prefix.as_ref().is_some_and(|p| !p.is_empty()));
    assert_same_scores("prefix tuning", llm, &prompt, &dev);
}

#[test]
fn autoprompt_triggers_score_from_cache() {
    let llm = &fixture().model.llm;
    let mut rng = RunRng::seed_from_u64(3);
    // Triggers first (the default layout: the cache starts at a trigger) and in the middle.
    for given in [
        None,
        Some("{country} [T*3] is a country in the continent of [ANSWER]"),
    ] {
        let (template, dev) = setup(MethodKind::Autoprompt, given);
        let prompt = Prompt {
            triggers: (0..template.trigger_count())
                .map(|_| rng.random_range(10..llm.cfg.vocab_size as u32))
                .collect(),
            ..Default::default()
        };
        assert_same_scores(&format!("autoprompt {template}"), llm, &prompt, &dev);
    }
}

#[test]
fn fine_tuning_scores_from_cache() {
    // Fine-tuning scores with its own (trainable) model: one update makes it differ from the
    // frozen one.
    let f = fixture();
    let (template, dev) = setup(MethodKind::FineTuning, None);
    let mut m = build(MethodKind::FineTuning, &template);
    let train = encode_split(&f.task, &template, Split::Train, &f.model).unwrap();
    let batch = Batch {
        rows: train.iter().take(8).map(Row::gold).collect(),
        micro_batch: 8,
    };
    let mut rng = RunRng::seed_from_u64(1);
    let mut ctx = StepContext {
        llm: &f.model.llm,
        lr: 1e-2,
        rng: &mut rng,
    };
    m.train_step(&mut ctx, &batch).unwrap();
    let llm = m.model(&f.model.llm);
    assert!(llm.is_trainable());
    let prompt = m.prompt(llm).unwrap();
    let before = candidate_logprobs_full(&f.model.llm, &prompt, &dev[..4]).unwrap();
    let after = candidate_logprobs_full(llm, &prompt, &dev[..4]).unwrap();
    assert_ne!(before, after, "the update changed nothing");
    assert_same_scores("fine-tuning (trainable copy)", llm, &prompt, &dev);
    assert_same_scores(
        "fine-tuning (detached, as evaluation runs it)",
        &llm.detached().unwrap(),
        &prompt,
        &dev,
    );
}

#[test]
fn autoprompt_candidate_losses_from_cache() {
    let f = fixture();
    let llm = &f.model.llm;
    // Rows whose first trigger comes late, in the middle, first (nothing to cache: the full
    // path) and never (every list scores the same), mixed in one call as a batch may mix them.
    let templates = [
        "{country} is a country in the continent of [T*4] [ANSWER]",
        "{country} [T*4] is a country in the continent of [ANSWER]",
        "[T*4] {country} is a country in the continent of [ANSWER]",
        "{country} is a country in the continent of [ANSWER]",
    ];
    let mut rows = Vec::new();
    for t in templates {
        let template = Template::parse(t).unwrap();
        let train = encode_split(&f.task, &template, Split::Train, &f.model).unwrap();
        rows.extend(train.iter().skip(rows.len()).take(5).map(Row::gold));
    }
    let mut rng = RunRng::seed_from_u64(5);
    let current: Vec<u32> = (0..4)
        .map(|_| rng.random_range(10..llm.cfg.vocab_size as u32))
        .collect();
    // Lists that change random slots, and lists that change only slot 2 as one search step
    // does (then the slots before it are shared, even on rows that open with the triggers).
    let mut random = vec![current.clone()];
    let mut one_slot = vec![current.clone()];
    for _ in 0..10 {
        let mut s = current.clone();
        s[rng.random_range(0..4)] = rng.random_range(10..llm.cfg.vocab_size as u32);
        random.push(s);
        let mut s = current.clone();
        s[2] = rng.random_range(10..llm.cfg.vocab_size as u32);
        one_slot.push(s);
    }
    let cases = [&rows[..], &rows[..5], &rows[10..15]]
        .into_iter()
        .flat_map(|r| [(r, &random), (r, &one_slot)]);
    for (rows, sets) in cases {
        let t = Instant::now();
        let full = trigger_losses_full(llm, rows, sets).unwrap();
        let full_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let cached = trigger_losses(llm, rows, sets).unwrap();
        let cached_s = t.elapsed().as_secs_f64();
        assert_eq!(full.len(), sets.len());
        let worst = full
            .iter()
            .zip(&cached)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= TOL, "full {full:?} vs cached {cached:?}");
        assert!(full.iter().all(|l| l.is_finite() && *l > 0.0));
        eprintln!(
            "autoprompt losses, {} rows x {} lists: full {full_s:.3} s, cached {cached_s:.3} s, \
             max |diff| {worst:.2e}",
            rows.len(),
            sets.len()
        );
    }
    // The full path batches rows of like length across lists: each row's loss must come back
    // to its own row and list. Reference: every (list, row) pair scored alone.
    let tokens: usize = rows.iter().map(|r| r.answer.len()).sum();
    let alone: Vec<f32> = random
        .iter()
        .map(|set| {
            rows.iter()
                .map(|r| {
                    let l = trigger_losses_full(
                        llm,
                        std::slice::from_ref(r),
                        std::slice::from_ref(set),
                    );
                    l.unwrap()[0] * r.answer.len() as f32
                })
                .sum::<f32>()
                / tokens as f32
        })
        .collect();
    let full = trigger_losses_full(llm, &rows, &random).unwrap();
    for (a, b) in alone.iter().zip(&full) {
        assert!((a - b).abs() <= TOL, "alone {alone:?} vs batched {full:?}");
    }
}

#[test]
fn autoprompt_candidate_accuracy_is_the_accuracy_evaluation_gives() {
    // `--judge accuracy`: each list's share of rows whose gold label scores highest, from one
    // cached run per (list, row), must equal ranking the full-sequence scores of every label.
    let f = fixture();
    let llm = &f.model.llm;
    let template =
        Template::parse("[T*4] {country} is a country in the continent of [ANSWER]").unwrap();
    let train = encode_split(&f.task, &template, Split::Train, &f.model).unwrap();
    let rows = &train[..24];
    let mut rng = RunRng::seed_from_u64(9);
    let mut sets = vec![(0..4)
        .map(|_| rng.random_range(10..llm.cfg.vocab_size as u32))
        .collect::<Vec<u32>>()];
    for _ in 0..6 {
        let mut s = sets[0].clone();
        s[rng.random_range(0..4)] = rng.random_range(10..llm.cfg.vocab_size as u32);
        sets.push(s);
    }
    let labelled: Vec<Labelled> = rows
        .iter()
        .map(|e| Labelled {
            pieces: &e.prompt,
            labels: &e.candidates,
            gold: e.gold,
        })
        .collect();
    let got = trigger_accuracies(llm, &labelled, &sets).unwrap();
    let want: Vec<f32> = sets
        .iter()
        .map(|set| {
            let prompt = Prompt {
                triggers: set.clone(),
                ..Default::default()
            };
            let lp = candidate_logprobs_full(llm, &prompt, rows).unwrap();
            let right = rows
                .iter()
                .zip(&lp)
                .filter(|(e, s)| (0..s.len()).all(|i| i == e.gold || s[i] < s[e.gold]))
                .count();
            right as f32 / rows.len() as f32
        })
        .collect();
    assert_eq!(got, want);
    // Not a constant: the lists must not all score alike, or the test shows nothing.
    assert!(
        want.iter().any(|a| *a != want[0]) || (want[0] > 0.0 && want[0] < 1.0),
        "{want:?}"
    );
}
