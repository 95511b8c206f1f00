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
        assert!(out.join(f).is_file(), "{f} missing in the fine-tuned folder");
    }
    assert!(
        !out.join("prompt.safetensors").exists(),
        "the weights are stored once, in model.safetensors"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "LlamaForCausalLM");
    let names = candle_core::safetensors::load(out.join("model.safetensors"), &candle_core::Device::Cpu)
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
