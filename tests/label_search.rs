//! AutoPrompt's automatic label-token search (`methods::label_search`, issue 14) on the built-in
//! model: it finds k distinct, non-special tokens per class, no token in two classes, and the
//! tokens it finds tell the classes apart when a class is scored by the summed probability of
//! its tokens, as the paper scores them.

use candle_core::D;
use gradprompt::methods::input::{embed_rows, Row};
use gradprompt::methods::label_search::{class_logprob, search};
use gradprompt::methods::{template_for, MethodKind, MethodSettings, Prompt};
use gradprompt::model::{ForwardInput, LogitRows, Model};
use gradprompt::task::{encode, Encoded, Split, Task};
use std::collections::HashSet;
use std::path::Path;

fn encoded(model: &Model, task: &str, split: Split) -> (Task, Vec<Encoded>) {
    let task = Task::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("sample_tasks")
            .join(task),
    )
    .unwrap();
    let template = template_for(
        MethodKind::Autoprompt,
        &MethodSettings::default(),
        &task.template().unwrap(),
    );
    let set = task
        .examples(split)
        .iter()
        .map(|e| encode(&template, e, &task, &model.tokenizer).unwrap())
        .collect();
    (task, set)
}

/// AutoPrompt's starting triggers: " the" in every slot.
fn start_triggers(model: &Model) -> Vec<u32> {
    vec![model.encode(" the").unwrap()[0]; MethodSettings::default().num_triggers]
}

#[test]
fn the_label_search_finds_k_distinct_ordinary_tokens_per_class_and_none_shared() {
    let model = Model::load("builtin").unwrap();
    let (task, train) = encoded(&model, "country-continent", Split::Train);
    let k = 3;
    let found = search(
        &model.llm,
        &model.tokenizer,
        &train,
        &start_triggers(&model),
        k,
    )
    .unwrap();
    assert_eq!(found.len(), task.labels().len());
    let special: HashSet<u32> = model
        .tokenizer
        .get_added_tokens_decoder()
        .keys()
        .copied()
        .collect();
    let mut all = HashSet::new();
    for (class, tokens) in task.labels().iter().zip(&found) {
        let words: Vec<String> = tokens
            .iter()
            .map(|&t| model.decode(&[t]).unwrap())
            .collect();
        eprintln!("{class}: {words:?}");
        assert_eq!(tokens.len(), k, "{class}");
        assert_eq!(
            tokens.iter().collect::<HashSet<_>>().len(),
            k,
            "{class}: {words:?}"
        );
        for (&t, w) in tokens.iter().zip(&words) {
            assert!(!special.contains(&t), "{class}: special token {t}");
            assert!(!w.trim().is_empty(), "{class}: token {t} has no text");
            assert!(all.insert(t), "{class}: token {w:?} is another class's too");
        }
    }
}

#[test]
fn the_found_label_tokens_tell_the_classes_apart_when_scored_by_their_summed_probability() {
    // Scored as the run scores with the found verbalizer: each class's log-probability is the
    // log of its tokens' summed probabilities at the answer position. On held-out dev rows the
    // found tokens must beat chance (1 / classes) clearly; tokens drawn without the classifier
    // would sit at chance. Measured: 0.343 against chance 0.167 (tokens like " Europe" for
    // Europe among noise such as " battery" for Africa: the built-in model is small).
    let model = Model::load("builtin").unwrap();
    let (task, train) = encoded(&model, "country-continent", Split::Train);
    let (_, dev) = encoded(&model, "country-continent", Split::Dev);
    let triggers = start_triggers(&model);
    let found = search(&model.llm, &model.tokenizer, &train, &triggers, 2).unwrap();
    let prompt = Prompt {
        triggers: triggers.clone(),
        ..Default::default()
    };
    let rows: Vec<Row> = dev.iter().map(Row::gold).collect();
    let (embeds, mask, _) = embed_rows(&model.llm, &prompt, &rows).unwrap();
    let t = embeds.dim(1).unwrap();
    let at = rows
        .iter()
        .enumerate()
        .map(|(r, row)| (r * t + row.pieces.len() - 1) as u32)
        .collect();
    let logits = model
        .llm
        .forward(&ForwardInput {
            embeds: &embeds,
            attention_mask: Some(&mask),
            prefix: None,
            logits: LogitRows::Rows(at),
            keep_kv: false,
        })
        .unwrap()
        .logits;
    let logp: Vec<Vec<f32>> = candle_nn::ops::log_softmax(&logits, D::Minus1)
        .unwrap()
        .to_vec2()
        .unwrap();
    let correct = dev
        .iter()
        .zip(&logp)
        .filter(|(e, lp)| {
            let scores: Vec<f32> = found
                .iter()
                .map(|tokens| {
                    class_logprob(&tokens.iter().map(|&w| lp[w as usize]).collect::<Vec<_>>())
                })
                .collect();
            let best = (0..scores.len())
                .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
                .unwrap();
            best == e.gold
        })
        .count();
    let accuracy = correct as f64 / dev.len() as f64;
    let chance = 1.0 / task.labels().len() as f64;
    eprintln!("dev accuracy with the found tokens: {accuracy:.3} (chance {chance:.3})");
    assert!(
        accuracy > chance + 0.1,
        "dev accuracy {accuracy:.3} with the found label tokens, chance {chance:.3}"
    );
}
