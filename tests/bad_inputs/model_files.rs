//! Model files wrong in one way: a copy of the built-in model with a broken config, tokenizer
//! or weights, a GGUF that is not one, a wheel that is not a zip. `info --model` must name the
//! file and the problem; `model_errors.rs` has the same for a tiny random checkpoint.

use crate::{builtin_model, copy_dir, edit_json, run_cases, write, Case};
use std::path::Path;

const INFO: &[&str] = &["info", "--model", "m"];

fn model(root: &Path) {
    copy_dir(&builtin_model(), &root.join("m"));
}

fn config(root: &Path, key: &str, value: serde_json::Value) {
    model(root);
    edit_json(root, "m/config.json", |j| j[key] = value);
}

#[test]
fn bad_model_files_are_refused_naming_the_file_and_the_problem() {
    run_cases(&[
        Case {
            name: "a folder without config.json",
            setup: |r| {
                model(r);
                std::fs::remove_file(r.join("m/config.json")).unwrap();
            },
            args: INFO,
            expect: &["m: no config.json"],
        },
        Case {
            name: "config.json that is not JSON",
            setup: |r| {
                model(r);
                write(r, "m/config.json", "{\"hidden_size\": 128,");
            },
            args: INFO,
            expect: &["m/config.json", "not a usable config"],
        },
        Case {
            name: "a hidden size the weights do not have",
            setup: |r| config(r, "hidden_size", 96.into()),
            args: INFO,
            expect: &["m: the weights do not fit the config", "[2048, 128]"],
        },
        Case {
            name: "an intermediate size the weights do not have",
            setup: |r| config(r, "intermediate_size", 100.into()),
            args: INFO,
            expect: &["m: the weights do not fit the config", "mlp"],
        },
        Case {
            name: "fewer layers than the weights (loaded silently before)",
            setup: |r| config(r, "num_hidden_layers", 3.into()),
            args: INFO,
            expect: &["m", "the weights have 4 layers"],
        },
        Case {
            name: "more layers than the weights",
            setup: |r| config(r, "num_hidden_layers", 5.into()),
            args: INFO,
            expect: &["model.layers.4.", "missing"],
        },
        Case {
            name: "attention heads not a multiple of the key/value heads",
            setup: |r| config(r, "num_attention_heads", 3.into()),
            args: INFO,
            expect: &["m/config.json", "num_attention_heads 3"],
        },
        Case {
            name: "a tensor missing from the weights",
            setup: |r| {
                model(r);
                let st = r.join("m/model.safetensors");
                let mut map =
                    candle_core::safetensors::load(&st, &candle_core::Device::Cpu).unwrap();
                map.remove("model.layers.1.self_attn.k_proj.weight");
                candle_core::safetensors::save(&map, &st).unwrap();
            },
            args: INFO,
            expect: &["model.layers.1.self_attn.k_proj.weight", "missing"],
        },
        Case {
            name: "truncated weights",
            setup: |r| {
                model(r);
                let st = r.join("m/model.safetensors");
                let bytes = std::fs::read(&st).unwrap();
                std::fs::write(&st, &bytes[..bytes.len() / 3]).unwrap();
            },
            args: INFO,
            expect: &["m/model.safetensors", "not a valid safetensors file"],
        },
        Case {
            name: "no tokenizer.json",
            setup: |r| {
                model(r);
                std::fs::remove_file(r.join("m/tokenizer.json")).unwrap();
            },
            args: INFO,
            expect: &["m: no tokenizer.json"],
        },
        Case {
            name: "tokenizer.json that is not a tokenizer",
            setup: |r| {
                model(r);
                write(r, "m/tokenizer.json", "{\"model\": 1}");
            },
            args: INFO,
            expect: &["m/tokenizer.json", "not a valid tokenizer"],
        },
        Case {
            name: "a .gguf that is not a GGUF",
            setup: |r| write(r, "m.gguf", [0x8f_u8, 0x62, 0xe7, 0x22].repeat(64)),
            args: &["info", "--model", "m.gguf"],
            expect: &["m.gguf: not a GGUF file"],
        },
        Case {
            name: "a GGUF cut off after its header",
            setup: |r| write(r, "m.gguf", b"GGUF\x03\x00\x00\x00\x01"),
            args: &["info", "--model", "m.gguf"],
            expect: &["m.gguf: not a readable GGUF file"],
        },
        Case {
            name: "a GGUF whose counts are garbage",
            setup: |r| {
                let mut bytes = b"GGUF\x03\x00\x00\x00".to_vec();
                bytes.extend([0xff_u8; 64]);
                write(r, "m.gguf", bytes)
            },
            args: &["info", "--model", "m.gguf"],
            expect: &["m.gguf: not a readable GGUF file"],
        },
        Case {
            name: "a .whl that is not a zip",
            setup: |r| write(r, "m.whl", "not a zip"),
            args: &["info", "--model", "m.whl"],
            expect: &["m.whl", "not a readable zip"],
        },
        Case {
            name: "a text file given as the model",
            setup: |r| write(r, "notes.txt", "hello"),
            args: &["info", "--model", "notes.txt"],
            expect: &["notes.txt", "not a model"],
        },
        Case {
            name: "a model path that does not exist",
            setup: |_| {},
            args: &["info", "--model", "nothing-here"],
            expect: &["nothing-here: no such file or folder"],
        },
    ]);
}
