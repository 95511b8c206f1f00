//! Where answers end and where text begins (issue 14, points 1 and 2), on the built-in model:
//! a generation target is the answer then the model's end-of-sequence token and the loss covers
//! it; greedy decoding stops at that token within the task's fixed budget, never a budget taken
//! from the gold answer; BOS is put before the text exactly when the tokenizer adds one, after
//! the soft vectors as PEFT orders them; and the choice is in the saved prompt's manifest, whose
//! older form still loads.

mod common;

use gradprompt::artifact::Artifact;
use gradprompt::methods::input::{model_token, Row};
use gradprompt::methods::score::score;
use gradprompt::methods::{MethodKind, Prompt};
use gradprompt::model::Model;
use gradprompt::run::{RunSpec, TrainConfig};
use gradprompt::task::{AnswerEnd, Piece, Task, END_OF_SEQUENCE};
use gradprompt::train::eval::{evaluate, greedy_with_prompt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn builtin() -> &'static Model {
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

/// country-capital without its declared stop text: its answers end with the model's EOS, as a
/// task's do when it declares none.
fn capitals_ending_in_eos() -> Task {
    let mut task = sample("country-capital");
    assert_eq!(task.spec.stop.as_deref(), Some("."));
    task.spec.stop = None;
    assert_eq!(task.answer_end(), AnswerEnd::Eos);
    task
}

fn spec(method: MethodKind, steps: usize, out: Option<PathBuf>) -> RunSpec {
    RunSpec {
        method,
        settings: Default::default(),
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

fn run(model: &Model, task: &Task, spec: &RunSpec) -> gradprompt::run::RunResult {
    let (tx, _rx) = crossbeam_channel::unbounded();
    let (_ctx, crx) = crossbeam_channel::unbounded();
    gradprompt::train::train(model, task, spec, &tx, &crx).unwrap()
}

/// A prompt-tuning run on country-capital, saved: trained with EOS after every target.
fn trained_capitals() -> &'static (tempfile::TempDir, PathBuf) {
    static T: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("capitals");
        run(
            builtin(),
            &capitals_ending_in_eos(),
            &spec(MethodKind::PromptTuning, 100, Some(out.clone())),
        );
        (dir, out)
    })
}

#[test]
fn the_built_in_models_end_of_sequence_token_is_its_endoftext() {
    let m = builtin();
    assert_eq!(m.llm.cfg.eos_token_id, Some(0));
    assert_eq!(m.tokenizer.id_to_token(0).as_deref(), Some("<|endoftext|>"));
    assert_eq!(model_token(&m.llm, END_OF_SEQUENCE).unwrap(), 0);
    assert_eq!(model_token(&m.llm, 17).unwrap(), 17);
}

#[test]
fn generation_training_includes_the_eos_token_in_the_loss() {
    let m = builtin();
    let task = capitals_ending_in_eos();
    let prepared =
        gradprompt::train::prepare(m, &task, &spec(MethodKind::PromptTuning, 1, None)).unwrap();
    let e = &prepared.train_set[0];
    let gold = &e.candidates[e.gold];
    assert_eq!(gold.last(), Some(&END_OF_SEQUENCE), "{gold:?}");
    let answer_only = m
        .tokenizer
        .encode(format!(" {}", e.answer_text), false)
        .unwrap()
        .get_ids()
        .to_vec();
    assert_eq!(gold[..gold.len() - 1], answer_only[..]);

    // The row training scores (`Row::gold`, as the trainer builds batches) counts the EOS as an
    // answer token, and its log-probability is the one of the model's id 0 at that position.
    let prompt = prepared.method.prompt(&m.llm).unwrap().detached();
    let row = Row::gold(e);
    let full = score(&m.llm, &prompt, std::slice::from_ref(&row)).unwrap();
    assert_eq!(full.answer_tokens, answer_only.len() + 1);
    let mut without = row.clone();
    without.answer.pop();
    let part = score(&m.llm, &prompt, &[without]).unwrap();
    let mut explicit = row.clone();
    *explicit.answer.last_mut().unwrap() = 0;
    let same = score(&m.llm, &prompt, &[explicit]).unwrap();
    let lp = |s: &gradprompt::methods::score::Scored| s.row_logprob.to_vec1::<f32>().unwrap()[0];
    assert!(
        lp(&full) < lp(&part),
        "the EOS term adds nothing to the loss: {} vs {}",
        lp(&full),
        lp(&part)
    );
    assert!((lp(&full) - lp(&same)).abs() < 1e-5);

    // Classification answers are label words ranked against each other: no EOS.
    let cls = sample("country-continent");
    let p = gradprompt::train::prepare(m, &cls, &spec(MethodKind::PromptTuning, 1, None)).unwrap();
    assert!(p.train_set[0]
        .candidates
        .iter()
        .all(|c| !c.contains(&END_OF_SEQUENCE)));
    assert_eq!(p.train_set[0].end, AnswerEnd::Unmarked);
}

#[test]
fn greedy_decoding_stops_at_eos_before_the_budget() {
    let m = builtin();
    let task = capitals_ending_in_eos();
    let (_, out) = trained_capitals();
    let art = Artifact::load(out).unwrap();
    assert_eq!(art.manifest.answer_end, AnswerEnd::Eos);
    assert_eq!(art.manifest.max_new_tokens, Some(32));
    assert_eq!(art.manifest.adds_bos, Some(false));
    let (_, prompt) = art.prompt_for(m).unwrap();
    let template = gradprompt::task::Template::parse(&art.manifest.template).unwrap();
    let dev =
        gradprompt::train::encode_split(&task, &template, gradprompt::task::Split::Dev, m).unwrap();
    let mut stopped = 0;
    for e in &dev {
        assert_eq!(e.max_new_tokens, 32);
        let ids = greedy_with_prompt(&m.llm, &prompt, e, e.max_new_tokens, &m.tokenizer).unwrap();
        assert!(
            !ids.contains(&0),
            "the EOS itself is never part of the answer"
        );
        if ids.len() < e.max_new_tokens {
            stopped += 1;
        }
    }
    // Trained with EOS after every target, it ends (nearly) every answer itself.
    assert!(
        stopped * 10 >= dev.len() * 9,
        "only {stopped} of {} dev answers ended before the budget",
        dev.len()
    );
    // The prediction is the text before the EOS, and exact match is that text against the gold.
    let r = evaluate(&m.llm, &prompt, task.spec.kind, &dev, &m.tokenizer).unwrap();
    let right = dev
        .iter()
        .zip(&r.predictions)
        .filter(|(e, p)| **p == e.answer_text)
        .count();
    assert_eq!(r.metric, right as f64 / dev.len() as f64);
}

#[test]
fn a_declared_stop_text_ends_the_target_and_the_decoded_answer() {
    // The sample generation tasks end their sentences with ".": the target is " Paris." and
    // decoding stops at the first "." (the built-in model puts one after a capital).
    let m = builtin();
    let task = sample("country-capital");
    let p = gradprompt::train::prepare(m, &task, &spec(MethodKind::ZeroShot, 0, None)).unwrap();
    let e = &p.dev_set[0];
    assert_eq!(e.end, AnswerEnd::Stop(".".into()));
    let target = m.decode(&e.candidates[0]).unwrap();
    assert_eq!(target, format!(" {}.", e.answer_text));
    let mut ended = 0;
    for e in &p.dev_set {
        let ids = greedy_with_prompt(
            &m.llm,
            &Prompt::default(),
            e,
            e.max_new_tokens,
            &m.tokenizer,
        )
        .unwrap();
        let text = m.decode(&ids).unwrap();
        if text.contains('.') {
            ended += 1;
            assert!(
                text.ends_with('.'),
                "decoding ran on past the stop: {text:?}"
            );
        }
    }
    assert!(ended > 0);
    let r = evaluate(
        &m.llm,
        &Prompt::default(),
        task.spec.kind,
        &p.dev_set,
        &m.tokenizer,
    )
    .unwrap();
    assert!(
        r.predictions.iter().all(|p| !p.contains('.')),
        "{:?}",
        r.predictions
    );
    assert!(r.metric > 0.0, "{:?}", r.predictions);
}

#[test]
fn the_metric_never_looks_at_the_gold_answers_length() {
    // The same prompts with the gold answers swapped for one-token and for long ones: the
    // predictions must not change (the old budget was the gold length + 4 tokens, so a model
    // that runs on was cut wherever the gold answer said).
    let m = builtin();
    let task = sample("antonyms");
    let p = gradprompt::train::prepare(m, &task, &spec(MethodKind::ZeroShot, 0, None)).unwrap();
    let prompt = Prompt::default();
    let dev = &p.dev_set[..12];
    let base = evaluate(&m.llm, &prompt, task.spec.kind, dev, &m.tokenizer).unwrap();
    for gold in [vec![5u32, END_OF_SEQUENCE], vec![5u32; 40]] {
        let changed: Vec<_> = dev
            .iter()
            .cloned()
            .map(|mut e| {
                e.candidates = vec![gold.clone()];
                e
            })
            .collect();
        let r = evaluate(&m.llm, &prompt, task.spec.kind, &changed, &m.tokenizer).unwrap();
        assert_eq!(r.predictions, base.predictions);
    }
    // And the zero-shot template does run on past its answer here, so the old budget would
    // have changed what was compared.
    assert!(
        base.predictions
            .iter()
            .any(|p| m.tokenizer.encode(p.as_str(), false).unwrap().len() > 6),
        "{:?}",
        base.predictions
    );
}

/// A copy of the built-in model folder whose tokenizer adds BOS (`<|endoftext|>`, id 0) the way
/// `how` says: "post-processor" (tokenizer.json, as Llama's) or "tokenizer_config"
/// (`"add_bos_token": true`, as a Llama tokenizer_config.json says it).
fn builtin_adding_bos(dir: &Path, how: &str) -> Model {
    let src = gradprompt::model::builtin_dir();
    std::fs::create_dir_all(dir).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    match how {
        "post-processor" => {
            let path = dir.join("tokenizer.json");
            let mut tok: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            tok["post_processor"] = serde_json::json!({
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                           {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [0],
                                                     "tokens": ["<|endoftext|>"]}}
            });
            std::fs::write(&path, tok.to_string()).unwrap();
        }
        _ => std::fs::write(
            dir.join("tokenizer_config.json"),
            r#"{"add_bos_token": true, "bos_token": "<|endoftext|>"}"#,
        )
        .unwrap(),
    }
    Model::load(dir.to_str().unwrap()).unwrap()
}

#[test]
fn bos_comes_after_the_soft_tokens_exactly_when_the_tokenizer_adds_it() {
    // The built-in model's tokenizer adds none (no post-processor, no tokenizer_config.json).
    assert!(gradprompt::task::bos_tokens(&builtin().tokenizer)
        .unwrap()
        .is_empty());
    let dir = tempfile::tempdir().unwrap();
    let task = sample("country-capital");
    for how in ["post-processor", "tokenizer_config"] {
        let m = builtin_adding_bos(&dir.path().join(how), how);
        assert_eq!(gradprompt::task::bos_tokens(&m.tokenizer).unwrap(), vec![0]);
        let text = m
            .tokenizer
            .encode(
                format!("The capital of {} is", task.train[0].fields["country"]),
                false,
            )
            .unwrap()
            .get_ids()
            .to_vec();
        // Prompt tuning: [virtual tokens][BOS] text, as PEFT feeds it.
        let p = gradprompt::train::prepare(&m, &task, &spec(MethodKind::PromptTuning, 1, None))
            .unwrap();
        let n = p.template.soft_count();
        let row = &p.train_set[0].prompt;
        assert!(
            row[..n].iter().all(|x| matches!(x, Piece::Soft(_))),
            "{how}: {row:?}"
        );
        assert_eq!(row[n], Piece::Token(0), "{how}: {row:?}");
        let rest: Vec<Piece> = text.iter().map(|&i| Piece::Token(i)).collect();
        assert_eq!(row[n + 1..], rest[..], "{how}");
        // Prefix tuning: the prefix is no input position, so BOS is the first text position.
        let p = gradprompt::train::prepare(&m, &task, &spec(MethodKind::PrefixTuning, 1, None))
            .unwrap();
        assert_eq!(p.train_set[0].prompt[0], Piece::Token(0), "{how}");
        assert_eq!(p.train_set[0].prompt[1..], rest[..], "{how}");
    }
}

#[test]
fn a_prompt_trained_without_bos_is_refused_on_a_tokenizer_that_adds_one() {
    let (_, out) = trained_capitals();
    let art = Artifact::load(out).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let m = builtin_adding_bos(dir.path(), "tokenizer_config");
    let err = format!("{:#}", art.check_model(&m).unwrap_err());
    assert!(err.contains("without a BOS token"), "{err}");
    art.check_model(builtin()).unwrap();
}

#[test]
fn a_manifest_from_before_bos_and_answer_ends_were_recorded_still_loads() {
    let (_, out) = trained_capitals();
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    std::fs::create_dir_all(&old).unwrap();
    for f in ["prompt.safetensors", "manifest.json"] {
        std::fs::copy(out.join(f), old.join(f)).unwrap();
    }
    let path = old.join("manifest.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let obj = v.as_object_mut().unwrap();
    for key in ["adds_bos", "answer_end", "max_new_tokens"] {
        assert!(obj.remove(key).is_some(), "the manifest records {key}");
    }
    std::fs::write(&path, v.to_string()).unwrap();
    let art = Artifact::load(&old).unwrap();
    // Older manifests: no BOS was ever added, and generation targets carried no end marker.
    assert_eq!(art.manifest.adds_bos, Some(false));
    assert_eq!(art.manifest.answer_end, AnswerEnd::Unmarked);
    assert_eq!(art.manifest.max_new_tokens, None);
    let task = sample("country-capital");
    art.manifest.check_task(&task, &old, false).unwrap();
    let score = gradprompt::playground::score_on_test(builtin(), &task, &art).unwrap();
    assert!(score.metric > 0.0);
}

#[test]
fn a_prompt_is_refused_on_a_task_whose_answers_end_otherwise() {
    // Trained with EOS after its answers; the sample task ends them with ".".
    let (_, out) = trained_capitals();
    let art = Artifact::load(out).unwrap();
    art.manifest
        .check_task(&capitals_ending_in_eos(), out, false)
        .unwrap();
    let task = sample("country-capital");
    let err = format!(
        "{:#}",
        art.manifest.check_task(&task, out, false).unwrap_err()
    );
    assert!(err.contains("stop text \".\""), "{err}");
    art.manifest.check_task(&task, out, true).unwrap();
}

#[test]
fn export_carries_the_bos_and_answer_end_choice_to_peft_and_the_recipe() {
    let (_, out) = trained_capitals();
    let art = Artifact::load(out).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let adapter = dir.path().join("adapter");
    gradprompt::peft::export(&art, &adapter).unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(adapter.join("gradprompt.json")).unwrap())
            .unwrap();
    assert_eq!(meta["adds_bos"], serde_json::json!(false));
    assert_eq!(meta["answer_end"], serde_json::json!("eos"));
    assert_eq!(meta["max_new_tokens"], serde_json::json!(32));
    let back = Artifact::load(&adapter).unwrap();
    assert_eq!(back.manifest.adds_bos, Some(false));
    assert_eq!(back.manifest.answer_end, AnswerEnd::Eos);
    assert_eq!(back.manifest.max_new_tokens, Some(32));

    // train.py reads them from recipe.json's gradprompt_json.
    let recipe = dir.path().join("recipe");
    gradprompt::peft::recipe::write(builtin(), &capitals_ending_in_eos(), &art, "base", &recipe)
        .unwrap();
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(recipe.join("recipe.json")).unwrap())
            .unwrap();
    assert_eq!(r["gradprompt_json"]["adds_bos"], serde_json::json!(false));
    assert_eq!(r["gradprompt_json"]["answer_end"], serde_json::json!("eos"));
    let py = std::fs::read_to_string(recipe.join("train.py")).unwrap();
    assert!(py.contains("gp.get(\"adds_bos\", False)") && py.contains("[self.eos]"));
}

#[test]
fn smollm2_adds_no_bos_and_ends_answers_with_im_end() {
    // SmolLM2's GGUF: tokenizer.ggml.add_bos_token = false, eos_token_id = 2 (<|im_end|>).
    let m = common::smollm2();
    assert!(gradprompt::task::bos_tokens(&m.tokenizer)
        .unwrap()
        .is_empty());
    assert_eq!(m.llm.cfg.eos_token_id, Some(2));
    assert_eq!(m.tokenizer.id_to_token(2).as_deref(), Some("<|im_end|>"));
    assert_eq!(model_token(&m.llm, END_OF_SEQUENCE).unwrap(), 2);
    // The sample task's "." ends SmolLM2's own sentence: zero-shot answers stop there.
    let task = sample("country-capital");
    let p = gradprompt::train::prepare(&m, &task, &spec(MethodKind::ZeroShot, 0, None)).unwrap();
    let dev = &p.dev_set[..8];
    let r = evaluate(
        &m.llm,
        &Prompt::default(),
        task.spec.kind,
        dev,
        &m.tokenizer,
    )
    .unwrap();
    assert!(
        r.predictions.iter().all(|p| !p.contains('.')),
        "{:?}",
        r.predictions
    );
    assert!(r.metric > 0.0, "{:?}", r.predictions);
}

#[test]
fn a_saved_model_folder_says_add_bos_token_as_its_tokenizer_adds_it() {
    let dir = tempfile::tempdir().unwrap();
    for (m, adds) in [
        (
            builtin_adding_bos(&dir.path().join("bos"), "post-processor"),
            true,
        ),
        (Model::load("builtin").unwrap(), false),
    ] {
        let tensors: Vec<_> = m.llm.named_tensors();
        let files =
            gradprompt::model::hf::folder_files(m.config(), &tensors, &m.tokenizer).unwrap();
        let (_, cfg) = files
            .iter()
            .find(|(n, _)| *n == "tokenizer_config.json")
            .unwrap();
        let cfg: serde_json::Value = serde_json::from_slice(cfg).unwrap();
        assert_eq!(cfg["add_bos_token"], serde_json::json!(adds));
    }
}
