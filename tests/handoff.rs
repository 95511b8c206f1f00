//! Handing work to Hugging Face and taking it back (issue 15): a fine-tuned model is a Hugging
//! Face model folder that `--model DIR` loads; PEFT exports say how they were made; PEFT adapter
//! folders work wherever a gradprompt prompt folder does. Drives the real binary on the
//! built-in model.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_gradprompt");

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample_tasks")
        .join(name)
}

fn ok(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "gradprompt {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(ok(args).trim()).unwrap()
}

fn train(method: &str, task: &str, template: Option<&str>, out: &Path) -> serde_json::Value {
    let task = sample(task);
    let mut args = vec![
        "train",
        "--method",
        method,
        "--steps",
        "12",
        "--eval-every",
        "6",
        "--seed",
        "5",
        "--json",
        "--task",
        task.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    if let Some(t) = template {
        args.extend(["--template", t]);
    }
    json(&args)
}

#[test]
fn a_fine_tuned_model_is_a_hugging_face_folder_that_loads_back_as_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ft");
    let trained = train("fine-tuning", "country-continent", None, &out);
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "manifest.json",
    ] {
        assert!(
            out.join(f).is_file(),
            "{f} missing in the fine-tuned folder"
        );
    }
    assert!(
        !out.join("prompt.safetensors").exists(),
        "the weights are stored once, in model.safetensors"
    );
    assert_eq!(
        trained["artifact_bytes"].as_u64().unwrap(),
        std::fs::metadata(out.join("model.safetensors"))
            .unwrap()
            .len(),
        "the stored bytes are the weights file's size"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "LlamaForCausalLM");
    let names =
        candle_core::safetensors::load(out.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    assert!(names.contains_key("model.layers.0.self_attn.q_proj.weight"));
    assert!(names.contains_key("model.embed_tokens.weight"));

    let task = sample("country-continent");
    let dir = out.to_str().unwrap();
    // The folder as the model itself, and as a fine-tuned copy over the base model.
    for model in [dir, "builtin"] {
        let scored = json(&[
            "eval",
            "--model",
            model,
            "--task",
            task.to_str().unwrap(),
            "--prompt",
            dir,
            "--json",
        ]);
        assert_eq!(
            scored["test_metric"], trained["test_metric"],
            "eval --model {model} does not reproduce the test score"
        );
    }
    // As a plain model, it answers like any other.
    let info = json(&["info", "--model", dir]);
    assert_eq!(info["layers"], config["num_hidden_layers"]);
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn export(prompt: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec![
        "export",
        "--format",
        "peft",
        "--prompt",
        prompt.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    ok(&args);
}

fn eval(prompt: &Path, task: &str) -> serde_json::Value {
    let task = sample(task);
    json(&[
        "eval",
        "--task",
        task.to_str().unwrap(),
        "--prompt",
        prompt.to_str().unwrap(),
        "--json",
    ])
}

/// `predict` on the country-continent rows, with extra flags.
fn predict(prompt: &Path, rows: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "predict",
        "--prompt",
        prompt.to_str().unwrap(),
        "--input",
        rows.to_str().unwrap(),
    ];
    args.extend(extra);
    ok(&args)
}

fn rows(dir: &Path) -> PathBuf {
    let p = dir.join("rows.jsonl");
    std::fs::write(
        &p,
        "{\"task\": \"country-continent\", \"country\": \"Peru\"}\n\
         {\"task\": \"country-continent\", \"country\": \"Kenya\"}\n\
         {\"task\": \"country-continent\", \"country\": \"Norway\"}\n",
    )
    .unwrap();
    p
}

#[test]
fn a_peft_export_says_which_base_model_template_and_verbalizer_it_was_made_with() {
    let tmp = tempfile::tempdir().unwrap();
    let prompt = tmp.path().join("pt");
    train("prompt-tuning", "country-continent", None, &prompt);
    let named = tmp.path().join("named");
    export(
        &prompt,
        &named,
        &["--base-model", "HuggingFaceTB/SmolLM2-135M-Instruct"],
    );
    let config = read_json(&named.join("adapter_config.json"));
    assert_eq!(
        config["base_model_name_or_path"],
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    );
    let meta = read_json(&named.join("gradprompt.json"));
    let manifest = read_json(&prompt.join("manifest.json"));
    assert_eq!(meta["format"], "gradprompt-peft/1");
    assert_eq!(meta["template"], manifest["template"]);
    assert_eq!(
        meta["text_template"],
        "{country} is a country in the continent of [ANSWER]"
    );
    assert_eq!(meta["verbalizer"], manifest["verbalizer"]);
    assert_eq!(meta["answer_whitespace"], "moved-into-answer");
    assert_eq!(
        meta["base_model_name_or_path"],
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    );

    // Without --base-model: the built-in model's folder, which transformers loads by path.
    let default = tmp.path().join("default");
    export(&prompt, &default, &[]);
    let base = read_json(&default.join("adapter_config.json"))["base_model_name_or_path"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        Path::new(&base).join("config.json").is_file(),
        "default base model {base:?} is not a model folder"
    );
}

/// Trains `method`, exports it as a PEFT adapter, and checks that the adapter folder scores,
/// plays and predicts as the prompt folder does.
fn an_adapter_stands_in_for_its_prompt(method: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let prompt = tmp.path().join("prompt");
    let trained = train(method, "country-continent", None, &prompt);
    let adapter = tmp.path().join("adapter");
    export(&prompt, &adapter, &[]);
    let scored = eval(&adapter, "country-continent");
    assert_eq!(scored["method"], method);
    assert_eq!(
        scored["test_metric"], trained["test_metric"],
        "{method}: the adapter scores differently from its prompt folder"
    );
    let rows = rows(tmp.path());
    assert_eq!(
        predict(&adapter, &rows, &[]),
        predict(&prompt, &rows, &[]),
        "{method}: the adapter predicts differently"
    );
    let task = sample("country-continent");
    let play = |p: &Path| {
        ok(&[
            "play",
            "--task",
            task.to_str().unwrap(),
            "--prompt",
            p.to_str().unwrap(),
            "--input",
            "country=Peru",
        ])
    };
    assert_eq!(play(&adapter), play(&prompt));
    if method != "prefix-tuning" {
        let inspect = |p: &Path| ok(&["inspect", "--prompt", p.to_str().unwrap()]);
        assert_eq!(inspect(&adapter), inspect(&prompt));
    }

    // Without gradprompt.json the adapter is PEFT's two files only: predict takes the task
    // and template from flags, and scores as before.
    std::fs::remove_file(adapter.join("gradprompt.json")).unwrap();
    let template = read_json(&prompt.join("manifest.json"))["template"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        predict(
            &adapter,
            &rows,
            &[
                "--adapter-task",
                task.to_str().unwrap(),
                "--template",
                &template
            ]
        ),
        predict(&prompt, &rows, &[]),
        "{method}: the bare adapter predicts differently"
    );
}

#[test]
fn a_prompt_tuning_adapter_works_wherever_its_prompt_folder_does() {
    an_adapter_stands_in_for_its_prompt("prompt-tuning");
}

#[test]
fn a_p_tuning_adapter_works_wherever_its_prompt_folder_does() {
    an_adapter_stands_in_for_its_prompt("p-tuning");
}

#[test]
fn a_prefix_tuning_adapter_works_wherever_its_prompt_folder_does() {
    an_adapter_stands_in_for_its_prompt("prefix-tuning");
}

/// An adapter folder as PEFT itself writes one (no gradprompt.json), from a config and a
/// `prompt_embeddings` tensor.
fn peft_folder(dir: &Path, config: serde_json::Value, rows: usize, width: usize) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("adapter_config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();
    let values: Vec<f32> = (0..rows * width)
        .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.1)
        .collect();
    let t =
        candle_core::Tensor::from_vec(values, (rows, width), &candle_core::Device::Cpu).unwrap();
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("prompt_embeddings".to_string(), t)]),
        dir.join("adapter_model.safetensors"),
    )
    .unwrap();
}

#[test]
fn a_peft_prefix_adapter_saved_with_its_projection_reads_as_its_flat_prefix() {
    // The built-in model: 4 layers, 2 key/value heads of 32. PEFT sizes a grouped-query
    // prefix by the key/value heads and saves the projection's output, whatever
    // prefix_projection says.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prefix");
    peft_folder(
        &dir,
        serde_json::json!({
            "peft_type": "PREFIX_TUNING", "task_type": "CAUSAL_LM", "inference_mode": true,
            "num_virtual_tokens": 5, "token_dim": 64, "num_layers": 4,
            "num_attention_heads": 2, "num_transformer_submodules": 1,
            "prefix_projection": true, "encoder_hidden_size": 512,
            "base_model_name_or_path": "somewhere/builtin"
        }),
        5,
        4 * 2 * 64,
    );
    let tmp_rows = rows(tmp.path());
    let task = sample("country-continent");
    let out = predict(&dir, &tmp_rows, &["--adapter-task", task.to_str().unwrap()]);
    assert_eq!(out.lines().count(), 3, "{out}");

    // The same tensor one layer short does not fit, and says so.
    let short = tmp.path().join("short");
    peft_folder(
        &short,
        serde_json::json!({
            "peft_type": "PREFIX_TUNING", "task_type": "CAUSAL_LM",
            "num_virtual_tokens": 5, "token_dim": 64, "num_layers": 3
        }),
        5,
        3 * 2 * 64,
    );
    let err = Command::new(BIN)
        .args([
            "predict",
            "--prompt",
            short.to_str().unwrap(),
            "--input",
            tmp_rows.to_str().unwrap(),
            "--adapter-task",
            task.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!err.status.success());
    let msg = String::from_utf8_lossy(&err.stderr);
    assert!(msg.contains("3 layers"), "{msg}");
}

#[test]
fn a_bare_peft_adapter_asks_for_its_task_instead_of_guessing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pt");
    peft_folder(
        &dir,
        serde_json::json!({
            "peft_type": "PROMPT_TUNING", "task_type": "CAUSAL_LM",
            "num_virtual_tokens": 4, "token_dim": 128, "num_layers": 4
        }),
        4,
        128,
    );
    let rows = rows(tmp.path());
    let out = Command::new(BIN)
        .args([
            "predict",
            "--prompt",
            dir.to_str().unwrap(),
            "--input",
            rows.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains("gradprompt.json") && msg.contains("--adapter-task"),
        "{msg}"
    );
    // Wider than the model's embeddings: refused by shape, naming both.
    let wide = tmp.path().join("wide");
    peft_folder(
        &wide,
        serde_json::json!({
            "peft_type": "PROMPT_TUNING", "task_type": "CAUSAL_LM",
            "num_virtual_tokens": 4, "token_dim": 576, "num_layers": 30,
            "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct"
        }),
        4,
        576,
    );
    let out = Command::new(BIN)
        .args(["inspect", "--prompt", wide.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains("SmolLM2") && msg.contains("hidden size 576"),
        "{msg}"
    );
}

#[test]
fn a_recipe_carries_the_splits_the_batch_order_and_the_initial_vectors() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = trained_recipe("prompt-tuning", tmp.path());
    for f in [
        "train.py",
        "requirements.txt",
        "README.md",
        "recipe.json",
        "init.safetensors",
        "train.jsonl",
        "dev.jsonl",
        "test.jsonl",
    ] {
        assert!(recipe.join(f).is_file(), "{f} missing from the recipe");
    }
    let r = read_json(&recipe.join("recipe.json"));
    assert_eq!(r["peft"]["class"], "PromptTuningConfig");
    assert_eq!(r["steps"], 12);
    let order = r["order"].as_array().unwrap();
    assert_eq!(order.len(), 12);
    assert!(order.iter().all(|b| b.as_array().unwrap().len() == 8));
    let train_rows = std::fs::read_to_string(recipe.join("train.jsonl"))
        .unwrap()
        .lines()
        .count();
    let n = r["peft"]["num_virtual_tokens"].as_u64().unwrap() as usize;
    let init =
        candle_core::safetensors::load(recipe.join("init.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    // PEFT's PromptEmbedding names its vectors `embedding.weight`: train.py loads them strictly.
    assert_eq!(init["embedding.weight"].dims(), &[n, 128]);
    assert_eq!(init.len(), 1);
    // 12 steps of 8 stay inside the first epoch: distinct examples of the training split, in
    // a shuffled order, as gradprompt draws them.
    let drawn: Vec<u64> = order
        .iter()
        .flat_map(|b| b.as_array().unwrap().iter().map(|i| i.as_u64().unwrap()))
        .collect();
    let mut sorted = drawn.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 96);
    assert!(sorted.iter().all(|&i| (i as usize) < train_rows));
    assert_ne!(drawn, sorted, "the order is not shuffled");
    assert!(std::fs::read_to_string(recipe.join("README.md"))
        .unwrap()
        .contains("accelerate launch train.py --model"));
}

/// Trains `method` 12 steps on country-continent in `tmp` and exports the run as a recipe;
/// returns the recipe folder.
fn trained_recipe(method: &str, tmp: &Path) -> PathBuf {
    let run = tmp.join("run");
    train(method, "country-continent", None, &run);
    let recipe = tmp.join("recipe");
    ok(&[
        "export",
        "--format",
        "peft-recipe",
        "--run",
        run.to_str().unwrap(),
        "--task",
        sample("country-continent").to_str().unwrap(),
        "--out",
        recipe.to_str().unwrap(),
    ]);
    recipe
}

/// Exports a 12-step run of `method` as a recipe and reads its init.safetensors back.
fn recipe_init(method: &str) -> std::collections::HashMap<String, candle_core::Tensor> {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = trained_recipe(method, tmp.path());
    assert_eq!(
        read_json(&recipe.join("recipe.json"))["init"],
        "init.safetensors"
    );
    candle_core::safetensors::load(recipe.join("init.safetensors"), &candle_core::Device::Cpu)
        .unwrap()
}

fn names_and_shapes(
    init: &std::collections::HashMap<String, candle_core::Tensor>,
) -> Vec<(String, Vec<usize>)> {
    let mut v: Vec<_> = init
        .iter()
        .map(|(n, t)| (n.clone(), t.dims().to_vec()))
        .collect();
    v.sort();
    v
}

fn expected(list: &[(&str, &[usize])]) -> Vec<(String, Vec<usize>)> {
    let mut v: Vec<_> = list
        .iter()
        .map(|(n, d)| (n.to_string(), d.to_vec()))
        .collect();
    v.sort();
    v
}

#[test]
fn a_p_tuning_recipe_starts_from_the_runs_encoder_under_pefts_names_and_shapes() {
    // The state dict of PEFT 0.21's PromptEncoder (LSTM, encoder_hidden_size 128, 2 layers) on
    // the built-in model's shape (hidden 128), as PEFT printed it: train.py loads it strictly.
    let mut want: Vec<(&str, &[usize])> = vec![
        ("embedding.weight", &[8, 128]),
        ("mlp_head.0.weight", &[256, 256]),
        ("mlp_head.0.bias", &[256]),
        ("mlp_head.2.weight", &[128, 256]),
        ("mlp_head.2.bias", &[128]),
    ];
    let names: Vec<(String, Vec<usize>)> = (0..2)
        .flat_map(|l| {
            ["", "_reverse"].into_iter().flat_map(move |dir| {
                let input = if l == 0 { 128 } else { 256 };
                [
                    (format!("lstm_head.weight_ih_l{l}{dir}"), vec![512, input]),
                    (format!("lstm_head.weight_hh_l{l}{dir}"), vec![512, 128]),
                    (format!("lstm_head.bias_ih_l{l}{dir}"), vec![512]),
                    (format!("lstm_head.bias_hh_l{l}{dir}"), vec![512]),
                ]
            })
        })
        .collect();
    want.extend(names.iter().map(|(n, d)| (n.as_str(), d.as_slice())));
    let init = recipe_init("p-tuning");
    assert_eq!(names_and_shapes(&init), expected(&want));
}

#[test]
fn a_prefix_tuning_recipe_starts_from_the_runs_projection_and_real_text_offset() {
    // PEFT's PrefixEncoder names (projection 512 wide, output 4 layers x 2 x 64 key/value
    // width), with gradprompt's embedding as wide as the model (128; PEFT's is 64 on this
    // grouped-query model, train.py resizes it) and the real-text offset beside them.
    let init = recipe_init("prefix-tuning");
    assert_eq!(
        names_and_shapes(&init),
        expected(&[
            ("embedding.weight", &[8, 128]),
            ("transform.0.weight", &[512, 128]),
            ("transform.0.bias", &[512]),
            ("transform.2.weight", &[512, 512]),
            ("transform.2.bias", &[512]),
            ("gradprompt.real_text_offset", &[8, 512]),
        ])
    );
    // The projection's last layer starts at zero, so the step-0 prefix is the offset: the
    // real text's keys/values, not zeros.
    let abs_sum = |name: &str| {
        init[name]
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    assert_eq!(abs_sum("transform.2.weight"), 0.0);
    assert_eq!(abs_sum("transform.2.bias"), 0.0);
    assert!(abs_sum("gradprompt.real_text_offset") > 1.0);
}

#[test]
fn a_recipe_of_autoprompt_is_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    train("autoprompt", "country-continent", None, &run);
    let task = sample("country-continent");
    let out = Command::new(BIN)
        .args([
            "export",
            "--format",
            "peft-recipe",
            "--run",
            run.to_str().unwrap(),
            "--task",
            task.to_str().unwrap(),
            "--out",
            tmp.path().join("recipe").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("AutoPrompt") && msg.contains("PEFT"), "{msg}");
    assert!(!tmp.path().join("recipe").exists());
}

#[test]
fn a_recipe_with_virtual_tokens_away_from_the_start_is_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    train(
        "p-tuning",
        "country-continent",
        Some("[P*2] {country} [P*2] is in [ANSWER]"),
        &run,
    );
    let task = sample("country-continent");
    let out = Command::new(BIN)
        .args([
            "export",
            "--format",
            "peft-recipe",
            "--run",
            run.to_str().unwrap(),
            "--task",
            task.to_str().unwrap(),
            "--out",
            tmp.path().join("recipe").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("only at the start"), "{msg}");
}
