//! The forward pass against candle-transformers' Llama, and the prompt hooks against their
//! definitions: soft vectors equal to token embeddings are tokens, a prefix of real keys/values
//! is the text they came from.

mod common;

use candle_core::{DType, Device, IndexOp, Tensor, Var};
use candle_nn::VarBuilder;
use common::*;
use gradprompt::model::{ForwardInput, KvPrefix, LogitRows, Model};

fn forward_all(model: &Model, ids: &[u32]) -> Tensor {
    let dev = Device::Cpu;
    let embeds = model
        .llm
        .embed(&Tensor::new(ids, &dev).unwrap().unsqueeze(0).unwrap())
        .unwrap();
    model
        .llm
        .forward(&ForwardInput {
            embeds: &embeds,
            attention_mask: None,
            prefix: None,
            logits: LogitRows::All,
            keep_kv: false,
        })
        .unwrap()
        .logits
}

/// candle-transformers' Llama gives logits at the last position only; feeding one token at a
/// time through its key/value cache gives them at every position.
fn reference_logits(dir: &std::path::Path, ids: &[u32]) -> Tensor {
    use candle_transformers::models::llama as reference;
    let dev = Device::Cpu;
    let cfg: reference::LlamaConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let cfg = cfg.into_config(false);
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &dev)
            .unwrap()
    };
    let llama = reference::Llama::load(vb, &cfg).unwrap();
    let mut cache = reference::Cache::new(true, DType::F32, &cfg, &dev).unwrap();
    let rows: Vec<Tensor> = ids
        .iter()
        .enumerate()
        .map(|(pos, &id)| {
            let x = Tensor::new(&[id], &dev).unwrap().unsqueeze(0).unwrap();
            llama
                .forward(&x, pos, &mut cache)
                .unwrap()
                .squeeze(0)
                .unwrap()
        })
        .collect();
    Tensor::stack(&rows, 0).unwrap()
}

#[test]
fn matches_candle_transformers_llama() {
    for tied in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(dir.path(), &tiny_config(tied), 7);
        let model = Model::load(dir.path().to_str().unwrap()).unwrap();
        let ids: Vec<u32> = vec![3, 17, 42, 8, 8, 29, 1, 11, 49, 0, 23];
        let ours = forward_all(&model, &ids);
        let theirs = reference_logits(dir.path(), &ids);
        assert_eq!(ours.dims(), theirs.dims());
        let diff = max_abs_diff(&ours, &theirs);
        assert!(diff < 1e-4, "tied={tied}: max abs diff {diff}");
        // Not trivially equal: the logits vary.
        let spread = ours
            .max_keepdim(1)
            .unwrap()
            .sub(&ours.min_keepdim(1).unwrap())
            .unwrap();
        assert!(
            spread
                .min(0)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.1
        );
    }
}

#[test]
fn soft_vectors_equal_to_token_embeddings_give_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), &tiny_config(false), 11);
    let model = Model::load(dir.path().to_str().unwrap()).unwrap();
    let ids: Vec<u32> = vec![5, 9, 14, 2, 33, 47];
    let hard = forward_all(&model, &ids);

    // The soft path: the same vectors, copied out and made trainable, so the forward takes its
    // differentiable route (unfused norm, softmax and RoPE).
    let emb = model.llm.embedding_matrix();
    let rows: Vec<Tensor> = ids.iter().map(|&i| emb.get(i as usize).unwrap()).collect();
    let values: Vec<f32> = Tensor::stack(&rows, 0)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let soft = Var::from_vec(values, (1, ids.len(), 64), &Device::Cpu).unwrap();
    let out = model
        .llm
        .forward(&ForwardInput {
            embeds: soft.as_tensor(),
            attention_mask: None,
            prefix: None,
            logits: LogitRows::All,
            keep_kv: false,
        })
        .unwrap()
        .logits;
    let diff = max_abs_diff(&hard, &out);
    assert!(diff < 1e-4, "max abs diff {diff}");

    // And the gradient reaches the soft vectors through every layer.
    let loss = out.i((.., 7)).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let g = grads
        .get(soft.as_tensor())
        .expect("soft vectors got no gradient");
    let norm = g
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(norm > 0.0 && norm.is_finite());
}

#[test]
fn frozen_linear_gradient_equals_plain_matmul_gradient() {
    // The frozen model skips weight gradients through a custom op; a trainable copy computes
    // them (in the block op, handed over by `Llm::backward`). Both must give the same gradient
    // for the input.
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), &tiny_config(true), 3);
    let model = Model::load(dir.path().to_str().unwrap()).unwrap();
    let (trainable, vars) = model.llm.trainable_copy().unwrap();
    assert_eq!(vars.len(), model.llm.named_tensors().len());
    let x = Var::from_tensor(&Tensor::randn(0f32, 0.5, (2, 5, 64), &Device::Cpu).unwrap()).unwrap();
    let grad_of = |llm: &gradprompt::model::Llm| {
        let out = llm
            .forward(&ForwardInput {
                embeds: x.as_tensor(),
                attention_mask: None,
                prefix: None,
                logits: LogitRows::Rows(vec![2, 4, 9]),
                keep_kv: false,
            })
            .unwrap();
        let loss = candle_nn::loss::cross_entropy(
            &out.logits,
            &Tensor::new(&[1u32, 7, 30], &Device::Cpu).unwrap(),
        )
        .unwrap();
        (llm.backward(&loss).unwrap(), loss)
    };
    // The composed path is where frozen linears are plain ops in candle's graph (the block op
    // has its own backward; the next test compares the two).
    let (g_frozen, l1) = grad_of(&model.llm.with_composed_backward());
    let (g_train, l2) = grad_of(&trainable);
    assert!(max_abs_diff(&l1, &l2) < 1e-6);
    let a = g_frozen.get(x.as_tensor()).unwrap();
    let b = g_train.get(x.as_tensor()).unwrap();
    assert!(
        max_abs_diff(a, b) < 1e-5,
        "input gradients differ by {}",
        max_abs_diff(a, b)
    );
    // The frozen model computes no weight gradients; the trainable copy does.
    assert!(g_frozen.get(model.llm.embedding_matrix()).is_none());
    assert!(vars
        .iter()
        .all(|(_, v)| g_train.get(v.as_tensor()).is_some()));
}

#[test]
fn a_prefix_of_real_keys_and_values_is_the_text_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), &tiny_config(false), 5);
    let model = Model::load(dir.path().to_str().unwrap()).unwrap();
    let llm = &model.llm;
    let dev = Device::Cpu;
    let context: Vec<u32> = vec![4, 8, 15, 16, 23, 42];
    let text: Vec<u32> = vec![7, 31, 12];
    let whole: Vec<u32> = context.iter().chain(&text).copied().collect();
    let expected = forward_all(&model, &whole)
        .narrow(0, context.len(), text.len())
        .unwrap();

    let ctx_emb = llm
        .embed(
            &Tensor::new(context.as_slice(), &dev)
                .unwrap()
                .unsqueeze(0)
                .unwrap(),
        )
        .unwrap();
    let kv = llm
        .forward(&ForwardInput {
            embeds: &ctx_emb,
            attention_mask: None,
            prefix: None,
            logits: LogitRows::Last,
            keep_kv: true,
        })
        .unwrap()
        .kv
        .unwrap();
    assert_eq!(kv.len(), context.len());
    assert_eq!(kv.layers.len(), 3);

    // The prefix has batch 1 and is shared by a batch of 2 identical rows.
    let text_emb = llm
        .embed(&Tensor::new(&[[7u32, 31, 12], [7, 31, 12]], &dev).unwrap())
        .unwrap();
    let out = llm
        .forward(&ForwardInput {
            embeds: &text_emb,
            attention_mask: None,
            prefix: Some(&kv),
            logits: LogitRows::All,
            keep_kv: false,
        })
        .unwrap()
        .logits;
    for row in 0..2 {
        let got = out.narrow(0, row * text.len(), text.len()).unwrap();
        let diff = max_abs_diff(&expected, &got);
        assert!(diff < 1e-4, "row {row}: max abs diff {diff}");
    }

    // Trainable prefix tensors receive gradients.
    let vars: Vec<(Var, Var)> = kv
        .layers
        .iter()
        .map(|(k, v)| (Var::from_tensor(k).unwrap(), Var::from_tensor(v).unwrap()))
        .collect();
    let prefix = KvPrefix::new(
        vars.iter()
            .map(|(k, v)| (k.as_tensor().clone(), v.as_tensor().clone()))
            .collect(),
    );
    let out = llm
        .forward(&ForwardInput {
            embeds: &text_emb,
            attention_mask: None,
            prefix: Some(&prefix),
            logits: LogitRows::Last,
            keep_kv: false,
        })
        .unwrap();
    let grads = out.logits.sum_all().unwrap().backward().unwrap();
    for (k, v) in &vars {
        assert!(grads.get(k.as_tensor()).is_some() && grads.get(v.as_tensor()).is_some());
    }
}

#[test]
fn padding_does_not_change_the_logits_of_real_tokens() {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), &tiny_config(false), 9);
    let model = Model::load(dir.path().to_str().unwrap()).unwrap();
    let dev = Device::Cpu;
    let a: Vec<u32> = vec![3, 4, 5, 6, 7];
    let b: Vec<u32> = vec![9, 10];
    // Left padding: without the mask the short row would attend to the pads. RoPE scores
    // depend only on relative positions, so the shift itself changes nothing.
    let batch = Tensor::new(&[[3u32, 4, 5, 6, 7], [0, 0, 0, 9, 10]], &dev).unwrap();
    let mask = Tensor::new(&[[1f32, 1., 1., 1., 1.], [0., 0., 0., 1., 1.]], &dev).unwrap();
    let embeds = model.llm.embed(&batch).unwrap();
    let out = model
        .llm
        .forward(&ForwardInput {
            embeds: &embeds,
            attention_mask: Some(&mask),
            prefix: None,
            logits: LogitRows::Rows(vec![4, 9]),
            keep_kv: false,
        })
        .unwrap()
        .logits;
    let ref_a = forward_all(&model, &a).get(4).unwrap();
    let ref_b = forward_all(&model, &b).get(1).unwrap();
    assert!(max_abs_diff(&out.get(0).unwrap(), &ref_a) < 1e-4);
    assert!(max_abs_diff(&out.get(1).unwrap(), &ref_b) < 1e-4);
    assert!(out
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .all(|x| x.is_finite()));
}

#[test]
fn block_op_gradients_equal_the_composed_ops_gradients() {
    // Frozen blocks on a training path run as one op with a hand-written backward; the composed
    // candle ops are the reference. Soft inputs with right padding, and a trainable key/value
    // prefix (prefix tuning), must get the same loss and gradients from both.
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), &tiny_config(true), 5);
    let model = Model::load(dir.path().to_str().unwrap()).unwrap();
    let cfg = model.config().clone();
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 0.5, (3, 6, 64), &dev).unwrap()).unwrap();
    let mask = Tensor::new(
        &[
            [1f32, 1., 1., 1., 1., 1.],
            [1., 1., 1., 1., 0., 0.],
            [1., 1., 1., 0., 0., 0.],
        ],
        &dev,
    )
    .unwrap();
    let kv_shape = (1, cfg.num_key_value_heads, 3, cfg.head_dim);
    let prefix_vars: Vec<(Var, Var)> = (0..cfg.num_hidden_layers)
        .map(|_| {
            let k = Tensor::randn(0f32, 0.5, kv_shape, &dev).unwrap();
            let v = Tensor::randn(0f32, 0.5, kv_shape, &dev).unwrap();
            (Var::from_tensor(&k).unwrap(), Var::from_tensor(&v).unwrap())
        })
        .collect();
    let prefix = gradprompt::model::KvPrefix::new(
        prefix_vars
            .iter()
            .map(|(k, v)| (k.as_tensor().clone(), v.as_tensor().clone()))
            .collect(),
    );
    for with_prefix in [false, true] {
        let run = |llm: &gradprompt::model::Llm| {
            let out = llm
                .forward(&ForwardInput {
                    embeds: x.as_tensor(),
                    attention_mask: Some(&mask),
                    prefix: with_prefix.then_some(&prefix),
                    logits: LogitRows::Rows(vec![1, 5, 8, 9, 13]),
                    keep_kv: false,
                })
                .unwrap();
            let targets = Tensor::new(&[1u32, 7, 30, 4, 11], &dev).unwrap();
            let loss = candle_nn::loss::cross_entropy(&out.logits, &targets).unwrap();
            (loss.backward().unwrap(), loss)
        };
        let (g_op, l_op) = run(&model.llm);
        let (g_ref, l_ref) = run(&model.llm.with_composed_backward());
        assert!(max_abs_diff(&l_op, &l_ref) < 1e-5, "losses differ");
        let mut pairs = vec![(x.as_tensor().clone(), "input")];
        if with_prefix {
            for (k, v) in &prefix_vars {
                pairs.push((k.as_tensor().clone(), "prefix key"));
                pairs.push((v.as_tensor().clone(), "prefix value"));
            }
        }
        for (t, what) in pairs {
            let a = g_op
                .get(&t)
                .unwrap_or_else(|| panic!("no {what} gradient (block op)"));
            let b = g_ref.get(&t).unwrap();
            let scale = max_abs_diff(b, &b.zeros_like().unwrap()).max(1e-6);
            let diff = max_abs_diff(a, b);
            assert!(
                diff < 1e-4 * scale.max(1.0),
                "{what} gradients differ by {diff} (largest {scale}), prefix: {with_prefix}"
            );
        }
    }
}

#[test]
fn fine_tuning_weight_gradients_from_the_block_op_equal_the_composed_ops_gradients() {
    // Full fine-tuning runs each block as the block op too, which computes every weight's
    // gradient by hand (`G^T X`, bias row sums, RMSNorm weight sums) and hands them over outside
    // candle's graph. Every weight (q/k/v biases included), the embeddings and the final norm
    // must get the gradients candle's composed ops give, with padded rows in the batch.
    let mut cfg = tiny_config(true);
    cfg.attention_bias = true;
    let mut tensors = random_tensors(&cfg, 9);
    let dev = Device::Cpu;
    for i in 0..cfg.num_hidden_layers {
        for (p, width) in [
            ("q_proj", cfg.num_attention_heads * cfg.head_dim),
            ("k_proj", cfg.kv_dim()),
            ("v_proj", cfg.kv_dim()),
        ] {
            let b = Tensor::randn(0f32, 0.3, width, &dev).unwrap();
            tensors.insert(format!("model.layers.{i}.self_attn.{p}.bias"), b);
        }
    }
    let frozen = gradprompt::model::Llm::from_tensors(cfg.clone(), tensors, &dev).unwrap();
    let ids = Tensor::new(&[[3u32, 9, 4, 17, 22, 5], [8, 1, 30, 2, 0, 0]], &dev).unwrap();
    let mask = Tensor::new(
        &[[1f32, 1., 1., 1., 1., 1.], [1., 1., 1., 1., 0., 0.]],
        &dev,
    )
    .unwrap();
    let run = |llm: &gradprompt::model::Llm| {
        let out = llm
            .forward(&ForwardInput {
                embeds: &llm.embed(&ids).unwrap(),
                attention_mask: Some(&mask),
                prefix: None,
                logits: LogitRows::Rows(vec![2, 5, 8, 9]),
                keep_kv: false,
            })
            .unwrap();
        let targets = Tensor::new(&[1u32, 7, 30, 4], &dev).unwrap();
        let loss = candle_nn::loss::cross_entropy(&out.logits, &targets).unwrap();
        (llm.backward(&loss).unwrap(), loss)
    };
    let (op_model, op_vars) = frozen.trainable_copy().unwrap();
    let (ref_model, ref_vars) = frozen.with_composed_backward().trainable_copy().unwrap();
    let (g_op, l_op) = run(&op_model);
    let (g_ref, l_ref) = run(&ref_model);
    assert!(max_abs_diff(&l_op, &l_ref) < 1e-5, "losses differ");
    assert!(op_vars.iter().any(|(n, _)| n.ends_with("q_proj.bias")));
    for ((name, a), (_, b)) in op_vars.iter().zip(&ref_vars) {
        let a = g_op
            .get(a.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name} (block op)"));
        let b = g_ref
            .get(b.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name} (composed)"));
        let scale = max_abs_diff(b, &b.zeros_like().unwrap()).max(1e-6);
        let diff = max_abs_diff(a, b);
        assert!(
            diff < 1e-4 * scale.max(1.0),
            "{name}: gradients differ by {diff} (largest {scale})"
        );
    }
}
