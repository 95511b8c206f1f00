//! Finite-difference gradient checks on a tiny random model: the analytic gradient of the
//! training loss (the hand-written block backward, the frozen-linear op, attention over a
//! key/value prefix, the encoders) against central differences of the same loss, for soft
//! inputs (Prompt Tuning), a key/value prefix with and without Prefix Tuning's MLP, P-Tuning's
//! two encoders and fine-tuning's weights.
//!
//! The model computes in f32 only (its frozen-linear and block ops are f32 kernels), so each
//! check compares along directions where the loss changes enough to measure: the gradient's own
//! direction (the derivative there is the gradient's norm), a random direction, and single
//! coordinates among the larger ones. `a_wrong_gradient_fails_the_check` shows that a gradient
//! 10% off, or missing on part of a tensor, is caught.

mod common;

use candle_core::{Tensor, Var};
use common::*;
use gradprompt::methods::prefix_tuning::kv_from_flat;
use gradprompt::methods::step::loss_and_grads;
use gradprompt::methods::{Batch, Encoder, MethodKind, MethodSettings, Prompt, Row};
use gradprompt::model::{Llm, Model};
use gradprompt::run::{RunSpec, TrainConfig};
use gradprompt::task::Task;
use rand::{Rng, SeedableRng};
use std::sync::OnceLock;

/// The step of the central differences. The loss is near ln(50) ~ 3.9 in f32 (resolution
/// ~4e-7): a step of 1e-2 leaves rounding noise near 2e-5 on a difference quotient, while the
/// curvature error (order step squared) stays small. Measured when written: every probe of a
/// correct gradient within 0.3% of the gradient's norm along its direction (fine-tuning, the
/// most curved) and within 1.2e-3 elsewhere; the tolerances below are about 3x that, and a
/// gradient 10% off misses them by 5x or more.
const H: f64 = 1e-2;

struct Fixture {
    model: Model,
    task: Task,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let model = tiny_model(&dir.path().join("m"), 3);
        write_synthetic_task(&dir.path().join("t"));
        let task = Task::load(&dir.path().join("t")).unwrap();
        Fixture {
            model,
            task,
            _dir: dir,
        }
    })
}

fn settings(encoder: Encoder) -> MethodSettings {
    MethodSettings {
        num_virtual_tokens: 3,
        prefix_len: 3,
        prefix_hidden: 16,
        encoder,
        encoder_hidden: 8,
        ..Default::default()
    }
}

/// A method built as a run builds it, and a batch of 4 training rows in micro-batches of 2 (so
/// the accumulation over micro-batches is part of what is checked).
fn prepared(method: MethodKind, encoder: Encoder) -> (Box<dyn gradprompt::methods::Method>, Batch) {
    let f = fixture();
    let spec = RunSpec {
        method,
        settings: settings(encoder),
        template: None,
        config: TrainConfig {
            seed: 5,
            ..Default::default()
        },
        out: None,
    };
    let p = gradprompt::train::prepare(&f.model, &f.task, &spec).unwrap();
    let rows: Vec<Row> = p.train_set[..4].iter().map(Row::gold).collect();
    (
        p.method,
        Batch {
            rows,
            micro_batch: 2,
        },
    )
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Moves every variable to a random point near where it starts, so no check sits on a
/// special point (a zero layer, a zero bias) where some gradients vanish.
fn jitter(vars: &[Var], seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for v in vars {
        let noise: Vec<f32> = (0..v.elem_count())
            .map(|_| rng.random_range(-0.05f32..0.05))
            .collect();
        let t = Tensor::from_vec(noise, v.dims(), v.device()).unwrap();
        v.set(&(v.as_tensor() + t).unwrap()).unwrap();
    }
}

/// Adds `t * dir` to the variables (`dir` one flat vector per variable).
fn shift(vars: &[Var], dir: &[Vec<f64>], t: f64) {
    for (v, d) in vars.iter().zip(dir) {
        let delta: Vec<f32> = d.iter().map(|x| (x * t) as f32).collect();
        let delta = Tensor::from_vec(delta, v.dims(), v.device()).unwrap();
        v.set(&(v.as_tensor() + delta).unwrap()).unwrap();
    }
}

/// What one gradient check compares: the analytic directional derivative and the central
/// difference along the same direction.
struct Probe {
    what: String,
    analytic: f64,
    numeric: f64,
    /// The largest difference allowed.
    tolerance: f64,
}

/// Analytic gradient against central differences of the loss on `batch`, along the gradient's
/// direction, a random direction in each block of the variables, and four random coordinates
/// among those whose gradient is at least a fifth of the largest. Returns the probes that
/// disagree.
fn check(
    llm: &Llm,
    prompt_fn: &dyn Fn() -> anyhow::Result<Prompt>,
    vars: &[Var],
    batch: &Batch,
    seed: u64,
) -> Result<(), String> {
    let loss = || -> f64 {
        let (l, _) = loss_and_grads(llm, prompt_fn, batch, vars).unwrap();
        f64::from(l)
    };
    let (_, grads) = loss_and_grads(llm, prompt_fn, batch, vars).unwrap();
    let g: Vec<Vec<f64>> = grads
        .iter()
        .map(|t| flat(t).into_iter().map(f64::from).collect())
        .collect();
    let norm = g.iter().flatten().map(|x| x * x).sum::<f64>().sqrt();
    let max = g.iter().flatten().fold(0f64, |m, x| m.max(x.abs()));
    assert!(norm > 0.0, "the gradient is zero: nothing to check");
    let along = |dir: &[Vec<f64>]| -> f64 {
        shift(vars, dir, H);
        let plus = loss();
        shift(vars, dir, -2.0 * H);
        let minus = loss();
        shift(vars, dir, H);
        (plus - minus) / (2.0 * H)
    };
    let dot = |dir: &[Vec<f64>]| -> f64 {
        g.iter()
            .flatten()
            .zip(dir.iter().flatten())
            .map(|(a, b)| a * b)
            .sum()
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut probes = Vec::new();

    // Along the gradient (unit length): the derivative is the gradient's norm.
    let unit: Vec<Vec<f64>> = g
        .iter()
        .map(|v| v.iter().map(|x| x / norm).collect())
        .collect();
    probes.push(Probe {
        what: "the gradient's direction".into(),
        analytic: norm,
        numeric: along(&unit),
        tolerance: 0.01 * norm,
    });

    // A random unit direction inside each block (a soft vector or prefix position: each row
    // of a variable of at most 16 rows; otherwise a whole variable): a block whose gradient is
    // missing, or wrong in sign or direction, disagrees here even when the rest is right.
    let floor = 1e-4 * norm + 2e-4;
    let blocks: Vec<(usize, std::ops::Range<usize>)> = vars
        .iter()
        .enumerate()
        .flat_map(|(i, v)| {
            let n = v.elem_count();
            let rows = if v.rank() == 2 && v.dims()[0] <= 16 {
                v.dims()[0]
            } else {
                1
            };
            let per = n / rows;
            (0..rows).map(move |r| (i, r * per..(r + 1) * per))
        })
        .collect();
    for (i, range) in blocks {
        let mut dir: Vec<Vec<f64>> = g.iter().map(|v| vec![0.0; v.len()]).collect();
        for x in &mut dir[i][range.clone()] {
            *x = rng.random_range(-1.0..1.0);
        }
        let n = dir[i].iter().map(|x| x * x).sum::<f64>().sqrt();
        dir[i].iter_mut().for_each(|x| *x /= n);
        let block_norm = g[i][range.clone()]
            .iter()
            .map(|x| x * x)
            .sum::<f64>()
            .sqrt();
        probes.push(Probe {
            what: format!("variable {i}, elements {range:?}, a random direction"),
            analytic: dot(&dir),
            numeric: along(&dir),
            tolerance: 0.01 * block_norm + floor,
        });
    }

    // Single coordinates with a gradient large enough to measure.
    let big: Vec<(usize, usize)> = g
        .iter()
        .enumerate()
        .flat_map(|(i, v)| {
            v.iter()
                .enumerate()
                .filter(|(_, x)| x.abs() >= 0.2 * max)
                .map(move |(j, _)| (i, j))
        })
        .collect();
    for _ in 0..4 {
        let (i, j) = big[rng.random_range(0..big.len())];
        let mut e: Vec<Vec<f64>> = g.iter().map(|v| vec![0.0; v.len()]).collect();
        e[i][j] = 1.0;
        probes.push(Probe {
            what: format!("variable {i}, element {j}"),
            analytic: g[i][j],
            numeric: along(&e),
            tolerance: 0.01 * g[i][j].abs() + 1e-3 * max,
        });
    }

    let report: Vec<String> = probes
        .iter()
        .map(|p| {
            format!(
                "{}: analytic {:.6}, central difference {:.6}, off by {:.2e} (allowed {:.2e})",
                p.what,
                p.analytic,
                p.numeric,
                (p.analytic - p.numeric).abs(),
                p.tolerance
            )
        })
        .collect();
    eprintln!("{}", report.join("\n"));
    let wrong: Vec<&String> = probes
        .iter()
        .zip(&report)
        .filter(|(p, _)| (p.analytic - p.numeric).abs() > p.tolerance)
        .map(|(_, r)| r)
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("{wrong:#?}"))
    }
}

/// Checks a method's own prompt against its own variables.
fn check_method(method: MethodKind, encoder: Encoder) {
    let (m, batch) = prepared(method, encoder);
    jitter(m.vars(), 11);
    let frozen = &fixture().model.llm;
    let llm = m.model(frozen);
    let prompt_fn = || m.prompt(llm);
    if let Err(e) = check(llm, &prompt_fn, m.vars(), &batch, 1) {
        panic!("{method:?} ({encoder:?}): the gradient disagrees with central differences:\n{e}");
    }
}

#[test]
fn prompt_tuning_soft_inputs_have_the_gradient_of_the_loss() {
    check_method(MethodKind::PromptTuning, Encoder::Lstm);
}

#[test]
fn prefix_tuning_through_its_mlp_has_the_gradient_of_the_loss() {
    check_method(MethodKind::PrefixTuning, Encoder::Lstm);
}

#[test]
fn p_tuning_lstm_encoder_has_the_gradient_of_the_loss() {
    check_method(MethodKind::PTuning, Encoder::Lstm);
}

#[test]
fn p_tuning_mlp_encoder_has_the_gradient_of_the_loss() {
    check_method(MethodKind::PTuning, Encoder::Mlp);
}

#[test]
fn fine_tuning_weights_have_the_gradient_of_the_loss() {
    check_method(MethodKind::FineTuning, Encoder::Lstm);
}

/// A key/value prefix trained directly (PEFT's `prefix_projection=False`): the gradient reaches
/// every layer's keys and values through attention, on the block op's hand-written backward and
/// on candle's composed one.
#[test]
fn a_prefix_without_projection_has_the_gradient_of_the_loss() {
    let (_, batch) = prepared(MethodKind::PrefixTuning, Encoder::Lstm);
    let frozen = &fixture().model.llm;
    let c = &frozen.cfg;
    let width = c.num_hidden_layers * 2 * c.num_key_value_heads * c.head_dim;
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let values: Vec<f32> = (0..3 * width)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let flat_prefix =
        Var::from_tensor(&Tensor::from_vec(values, (3, width), frozen.device()).unwrap()).unwrap();
    for llm in [frozen.clone(), frozen.with_composed_backward()] {
        let prompt_fn = || {
            Ok(Prompt::with_prefix(kv_from_flat(
                &llm,
                flat_prefix.as_tensor(),
            )?))
        };
        if let Err(e) = check(
            &llm,
            &prompt_fn,
            std::slice::from_ref(&flat_prefix),
            &batch,
            3,
        ) {
            panic!("the prefix's gradient disagrees with central differences:\n{e}");
        }
    }
}

/// The check can fail: the same soft prompt with a gradient 10% too small (the forward value
/// unchanged), and with the gradient cut from one of its vectors, is refused.
#[test]
fn a_wrong_gradient_fails_the_check() {
    let (m, batch) = prepared(MethodKind::PromptTuning, Encoder::Lstm);
    let llm = &fixture().model.llm;
    let soft = m.vars()[0].clone();
    let scaled = || {
        let x = soft.as_tensor();
        // Value x, gradient 0.9 times the true one.
        let wrong = (x.detach() + ((x - x.detach())? * 0.9)?)?;
        Ok(Prompt::with_soft(wrong))
    };
    assert!(
        check(llm, &scaled, std::slice::from_ref(&soft), &batch, 1).is_err(),
        "a gradient scaled by 0.9 passed the check"
    );
    let cut = || {
        let x = soft.as_tensor();
        let first = x.narrow(0, 0, 1)?.detach();
        let rest = x.narrow(0, 1, x.dim(0)? - 1)?;
        Ok(Prompt::with_soft(Tensor::cat(&[first, rest], 0)?))
    };
    assert!(
        check(llm, &cut, std::slice::from_ref(&soft), &batch, 1).is_err(),
        "a gradient missing from the first soft vector passed the check"
    );
}
