//! gradprompt against adapters made by real PEFT (issue 14): `tests/fixtures/peft_golden` holds
//! a tiny random Llama model, four adapters PEFT 0.21 saved with `save_pretrained` (prompt
//! tuning, prefix tuning with and without projection, P-Tuning) and the logits PEFT computed
//! with each on two fixed token sequences (`benches/peer/make_peft_golden.py` made them; its
//! README says how). Importing an adapter must give PEFT's logits; exporting the imported prompt
//! must give back PEFT's tensor value for value, so a layer, key/value or head order that is
//! wrong on either side fails here even where a round trip through gradprompt alone would pass.

use candle_core::{DType, Device, Tensor};
use gradprompt::artifact::Artifact;
use gradprompt::methods::prefix_tuning::kv_from_flat;
use gradprompt::methods::tensor_names::PROMPT_EMBEDDINGS;
use gradprompt::model::{ForwardInput, LogitRows, Model};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const ADAPTERS: [&str; 4] = [
    "prompt-tuning",
    "prefix-tuning",
    "prefix-tuning-projection",
    "p-tuning",
];

/// Largest allowed |gradprompt - PEFT| over every logit. Both sides compute in f32 from the same
/// f16-stored weights, so only summation order differs: measured at 2e-6 to 5.3e-6 on logits
/// of size up to ~5.6. 1e-4 leaves room for other BLAS kernels and is still 1000x below the
/// smallest difference any adapter makes to the base model's logits (the script requires > 0.1),
/// so a misread adapter cannot pass.
const LOGIT_TOLERANCE: f32 = 1e-4;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft_golden")
}

fn golden() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture().join("golden.safetensors"), &Device::Cpu).unwrap()
}

fn model() -> Model {
    Model::load(fixture().join("model").to_str().unwrap()).unwrap()
}

fn sequences(g: &HashMap<String, Tensor>) -> Vec<Vec<u32>> {
    (0..2)
        .map(|i| {
            g[&format!("input_ids.{i}")]
                .to_vec1::<i64>()
                .unwrap()
                .into_iter()
                .map(|x| x as u32)
                .collect()
        })
        .collect()
}

/// The adapter as gradprompt imports it (PEFT's two files only, no gradprompt.json; the template
/// is needed only to know where the text goes).
fn import(name: &str) -> Artifact {
    Artifact::load_for(&fixture().join(name), None, Some("{x} [ANSWER]"))
        .unwrap_or_else(|e| panic!("{name}: {e:#}"))
}

/// gradprompt's logits at the text positions of `ids`, with the imported prompt in front as
/// PEFT puts it: soft vectors before the text, or the key/value prefix at every layer.
fn logits(model: &Model, art: Option<&Artifact>, ids: &[u32]) -> Tensor {
    let llm = &model.llm;
    let text = llm
        .embed(
            &Tensor::new(ids, llm.device())
                .unwrap()
                .unsqueeze(0)
                .unwrap(),
        )
        .unwrap();
    let prompt = match art {
        Some(a) => a.prompt_for(model).unwrap().1,
        None => Default::default(),
    };
    let embeds = match &prompt.soft {
        Some(soft) => Tensor::cat(&[&soft.unsqueeze(0).unwrap(), &text], 1).unwrap(),
        None => text,
    };
    let out = llm
        .forward(&ForwardInput {
            embeds: &embeds,
            attention_mask: None,
            prefix: prompt.prefix.as_ref(),
            logits: LogitRows::All,
            keep_kv: false,
        })
        .unwrap()
        .logits;
    let rows = out.dim(0).unwrap();
    out.narrow(0, rows - ids.len(), ids.len()).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn the_tiny_model_gives_the_logits_transformers_gives() {
    // Without this, an adapter mismatch below could be the forward's, not the import's.
    let (g, model) = (golden(), model());
    for (i, ids) in sequences(&g).iter().enumerate() {
        let d = max_abs_diff(&logits(&model, None, ids), &g[&format!("logits.base.{i}")]);
        assert!(
            d < LOGIT_TOLERANCE,
            "sequence {i}: base logits differ by {d}"
        );
    }
}

#[test]
fn every_imported_peft_adapter_gives_the_logits_peft_gives() {
    let (g, model) = (golden(), model());
    for name in ADAPTERS {
        let art = import(name);
        for (i, ids) in sequences(&g).iter().enumerate() {
            let want = &g[&format!("logits.{name}.{i}")];
            let d = max_abs_diff(&logits(&model, Some(&art), ids), want);
            assert!(
                d < LOGIT_TOLERANCE,
                "{name}, sequence {i}: logits differ from PEFT's by {d} (tolerance {LOGIT_TOLERANCE})"
            );
        }
    }
}

#[test]
fn an_imported_prefix_holds_the_keys_and_values_peft_hands_each_layer() {
    // Exact: the import only reorders PEFT's numbers. A swapped layer, key/value or head order
    // puts another of them at each place.
    let (g, model) = (golden(), model());
    for name in ["prefix-tuning", "prefix-tuning-projection"] {
        let art = import(name);
        let kv = kv_from_flat(&model.llm, art.tensor(PROMPT_EMBEDDINGS).unwrap()).unwrap();
        assert_eq!(kv.layers.len(), model.config().num_hidden_layers);
        for (layer, (k, v)) in kv.layers.iter().enumerate() {
            for (what, ours) in [("past_key", k), ("past_value", v)] {
                let want = &g[&format!("{what}.{name}.{layer}")];
                assert_eq!(
                    ours.dims()[1..],
                    *want.dims(),
                    "{name} {what} layer {layer}"
                );
                assert_eq!(
                    values(ours),
                    values(want),
                    "{name}: layer {layer}'s {what} differs from PEFT's"
                );
            }
        }
    }
}

/// `adapter_config.json` as JSON.
fn config(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("adapter_config.json")).unwrap())
        .unwrap()
}

fn assert_exports_as_peft_saved_it(name: &str, art: &Artifact) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join(name);
    gradprompt::peft::export(art, &out).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let read = |dir: &Path| {
        candle_core::safetensors::load(dir.join("adapter_model.safetensors"), &Device::Cpu).unwrap()
    };
    let (ours, theirs) = (read(&out), read(&fixture().join(name)));
    let keys = |m: &HashMap<String, Tensor>| {
        let mut k: Vec<_> = m.keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&ours), keys(&theirs), "{name}: tensor names");
    for (key, want) in &theirs {
        let got = &ours[key];
        assert_eq!(got.dims(), want.dims(), "{name}: shape of {key}");
        assert_eq!(got.dtype(), want.dtype(), "{name}: dtype of {key}");
        assert_eq!(values(got), values(want), "{name}: values of {key}");
    }
    // The fields PEFT reads to lay the tensor out. (prefix_projection and the encoder's
    // settings may differ: an inference-mode adapter stores the projection's output.)
    let (ours, theirs) = (config(&out), config(&fixture().join(name)));
    for field in [
        "peft_type",
        "task_type",
        "num_virtual_tokens",
        "token_dim",
        "num_layers",
        "num_attention_heads",
        "num_transformer_submodules",
    ] {
        assert_eq!(
            ours[field], theirs[field],
            "{name}: adapter_config.json {field}"
        );
    }
}

#[test]
fn exporting_an_imported_peft_adapter_gives_back_peft_s_own_tensor_and_layout() {
    for name in ADAPTERS {
        assert_exports_as_peft_saved_it(name, &import(name));
    }
}
