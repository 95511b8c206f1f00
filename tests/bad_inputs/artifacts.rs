//! Saved prompts wrong in one way, given to `eval`, `play`, `inspect` and `export`: a missing or
//! broken manifest or tensor file, tensors that disagree with the manifest, values that are
//! not numbers, a prompt for another task or model. The prompt folder is never modified.

use crate::{edit_json, run_cases, sample_task, with_prompt, with_task, write, Case};
use candle_core::{Device, Tensor};
use std::path::Path;

const EVAL: &[&str] = &["eval", "--task", "task", "--prompt", "p"];

fn prompt_and_task(root: &Path) {
    with_prompt(root);
    with_task(root);
}

fn manifest(root: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    prompt_and_task(root);
    edit_json(root, "p/manifest.json", edit);
}

/// Replaces the prompt's `prompt_embeddings` with `f(old)`, under `name`.
fn tensors(root: &Path, name: &str, f: impl FnOnce(&Tensor) -> Tensor) {
    prompt_and_task(root);
    let st = root.join("p/prompt.safetensors");
    let mut map = candle_core::safetensors::load(&st, &Device::Cpu).unwrap();
    let old = map.remove("prompt_embeddings").unwrap();
    map.insert(name.to_string(), f(&old));
    candle_core::safetensors::save(&map, &st).unwrap();
}

/// The task folder as `other`, a copy of `name` from the sample tasks.
fn other_task(root: &Path, name: &str) {
    crate::copy_dir(&sample_task(name), &root.join("other"));
}

#[test]
fn bad_saved_prompts_are_refused_naming_the_file() {
    run_cases(&[
        Case {
            name: "manifest.json missing",
            setup: |r| {
                prompt_and_task(r);
                std::fs::remove_file(r.join("p/manifest.json")).unwrap();
            },
            args: EVAL,
            expect: &["p/manifest.json", "cannot read"],
        },
        Case {
            name: "manifest.json that is not JSON",
            setup: |r| {
                prompt_and_task(r);
                write(r, "p/manifest.json", "{\"format\": ");
            },
            args: EVAL,
            expect: &["p/manifest.json", "not a gradprompt manifest"],
        },
        Case {
            name: "manifest.json without its template",
            setup: |r| {
                manifest(r, |j| {
                    j.as_object_mut().unwrap().remove("template");
                })
            },
            args: EVAL,
            expect: &["p/manifest.json", "`template`"],
        },
        Case {
            name: "a manifest of another format",
            setup: |r| manifest(r, |j| j["format"] = "gradprompt-prompt/9".into()),
            args: EVAL,
            expect: &["p/manifest.json", "gradprompt-prompt/9"],
        },
        Case {
            name: "a manifest template that does not parse",
            setup: |r| {
                manifest(r, |j| {
                    j["template"] = "[P*8] {country is in [ANSWER]".into();
                })
            },
            args: EVAL,
            expect: &["manifest.json", "template", "never closed"],
        },
        Case {
            name: "prompt.safetensors missing",
            setup: |r| {
                prompt_and_task(r);
                std::fs::remove_file(r.join("p/prompt.safetensors")).unwrap();
            },
            args: EVAL,
            expect: &["p/prompt.safetensors"],
        },
        Case {
            name: "prompt.safetensors truncated",
            setup: |r| {
                prompt_and_task(r);
                let st = r.join("p/prompt.safetensors");
                let bytes = std::fs::read(&st).unwrap();
                std::fs::write(&st, &bytes[..bytes.len() - 100]).unwrap();
            },
            args: EVAL,
            expect: &["p/prompt.safetensors", "not a valid safetensors file"],
        },
        Case {
            name: "the tensor the method needs is not in the file",
            setup: |r| tensors(r, "something_else", |t| t.clone()),
            args: EVAL,
            expect: &["p", "\"prompt_embeddings\""],
        },
        Case {
            name: "fewer soft slots in the manifest than vectors stored",
            setup: |r| {
                manifest(r, |j| {
                    let t = j["template"]
                        .as_str()
                        .unwrap()
                        .replacen("[P*8]", "[P*3]", 1);
                    j["template"] = t.into();
                })
            },
            args: EVAL,
            expect: &["p", "8 rows", "3 soft slots"],
        },
        Case {
            name: "more vectors stored than soft slots",
            setup: |r| tensors(r, "prompt_embeddings", |t| Tensor::cat(&[t, t], 0).unwrap()),
            args: EVAL,
            expect: &["p", "16 rows", "8 soft slots"],
        },
        Case {
            name: "vectors of the wrong width",
            setup: |r| tensors(r, "prompt_embeddings", |t| t.narrow(1, 0, 64).unwrap()),
            args: EVAL,
            expect: &["\"prompt_embeddings\"", "[8, 64]", "128"],
        },
        Case {
            name: "NaN in the vectors",
            setup: |r| tensors(r, "prompt_embeddings", |t| (t * f64::NAN).unwrap()),
            args: EVAL,
            expect: &["p", "\"prompt_embeddings\"", "NaN"],
        },
        Case {
            name: "infinities in the vectors",
            setup: |r| tensors(r, "prompt_embeddings", |t| (t * f64::INFINITY).unwrap()),
            args: &["inspect", "--prompt", "p"],
            expect: &["p", "\"prompt_embeddings\"", "infinite"],
        },
        Case {
            name: "eval on a task of another kind",
            setup: |r| {
                with_prompt(r);
                other_task(r, "country-capital");
            },
            args: &["eval", "--task", "other", "--prompt", "p"],
            expect: &["p:", "generation task", "--allow-other-task"],
        },
        Case {
            name: "eval on another task of the same kind",
            setup: |r| {
                with_prompt(r);
                other_task(r, "animal-class");
            },
            args: &["eval", "--task", "other", "--prompt", "p"],
            expect: &["p:", "\"animal-class\"", "--allow-other-task"],
        },
        Case {
            name: "eval on the task with its verbalizer changed",
            setup: |r| {
                prompt_and_task(r);
                edit_json(r, "task/task.json", |j| {
                    j["verbalizer"]["asia"] = "Eurasia".into();
                });
            },
            args: EVAL,
            expect: &["p:", "verbalizer", "--allow-other-task"],
        },
        Case {
            name: "play on a task of another kind",
            setup: |r| {
                with_prompt(r);
                other_task(r, "country-capital");
            },
            args: &[
                "play",
                "--task",
                "other",
                "--prompt",
                "p",
                "--input",
                "country=Peru",
            ],
            expect: &["p:", "generation task", "--allow-other-task"],
        },
        Case {
            name: "export for another task",
            setup: |r| {
                with_prompt(r);
                other_task(r, "animal-class");
            },
            args: &[
                "export", "--prompt", "p", "--task", "other", "--out", "peft",
            ],
            expect: &["p:", "\"animal-class\"", "--allow-other-task"],
        },
        Case {
            name: "a prompt on another model",
            setup: |r| {
                prompt_and_task(r);
                crate::copy_dir(&crate::builtin_model(), &r.join("m"));
                edit_json(r, "m/config.json", |j| j["rms_norm_eps"] = 1e-6.into());
            },
            args: &["eval", "--task", "task", "--prompt", "p", "--model", "m"],
            expect: &["trained on model builtin", "fingerprint"],
        },
        Case {
            name: "play with an input that is not FIELD=VALUE",
            setup: prompt_and_task,
            args: &["play", "--task", "task", "--prompt", "p", "--input", "Peru"],
            expect: &["--input \"Peru\"", "FIELD=VALUE"],
        },
        Case {
            name: "play without the task's input field",
            setup: prompt_and_task,
            args: &[
                "play",
                "--task",
                "task",
                "--prompt",
                "p",
                "--input",
                "city=Lima",
            ],
            expect: &["{country}"],
        },
    ]);
}
