//! Bad model files give errors that name the file and the problem.

mod common;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use common::*;
use gradprompt::model::Model;

fn load_err(path: &std::path::Path) -> String {
    match Model::load(path.to_str().unwrap()) {
        Ok(_) => panic!("{} loaded but should not have", path.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn truncated_safetensors_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), &tiny_config(false), 1);
    let st = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_err(dir.path());
    assert!(err.contains("model.safetensors"), "{err}");
    assert!(err.contains("not a valid safetensors file"), "{err}");
}

#[test]
fn folder_without_config_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), &tiny_config(false), 1);
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let err = load_err(dir.path());
    assert!(err.contains("no config.json"), "{err}");
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
}

#[test]
fn missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(false);
    write_checkpoint(dir.path(), &cfg, 1);
    let mut tensors = random_tensors(&cfg, 1);
    tensors.remove("model.layers.2.mlp.up_proj.weight");
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("model.layers.2.mlp.up_proj.weight") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn gguf_of_another_architecture_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpt2.gguf");
    let t = QTensor::quantize(
        &Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
        GgmlDType::F32,
    )
    .unwrap();
    let arch = gguf_file::Value::String("gpt2".into());
    let mut f = std::fs::File::create(&path).unwrap();
    gguf_file::write(
        &mut f,
        &[("general.architecture", &arch)],
        &[("token_embd.weight", &t)],
    )
    .unwrap();
    drop(f);
    let err = load_err(&path);
    assert!(
        err.contains("gpt2.gguf") && err.contains("architecture \"gpt2\""),
        "{err}"
    );
}

#[test]
fn truncated_gguf_and_non_model_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.gguf");
    std::fs::write(&path, b"GGUF\x03\x00\x00\x00\x01").unwrap();
    let err = load_err(&path);
    assert!(
        err.contains("broken.gguf") && err.contains("not a readable GGUF file"),
        "{err}"
    );

    let txt = dir.path().join("notes.txt");
    std::fs::write(&txt, "hello").unwrap();
    let err = load_err(&txt);
    assert!(
        err.contains("notes.txt") && err.contains("not a model"),
        "{err}"
    );

    let whl = dir.path().join("fake.whl");
    std::fs::write(&whl, "not a zip").unwrap();
    let err = load_err(&whl);
    assert!(
        err.contains("fake.whl") && err.contains("not a readable zip"),
        "{err}"
    );
}

#[test]
fn a_config_with_fewer_layers_than_the_weights_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(false);
    write_checkpoint(dir.path(), &cfg, 1);
    let path = dir.path().join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json["num_hidden_layers"] = (cfg.num_hidden_layers - 1).into();
    std::fs::write(&path, json.to_string()).unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("model.safetensors") || err.contains(&dir.path().display().to_string()),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "the weights have {} layers",
            cfg.num_hidden_layers
        )),
        "{err}"
    );
}
