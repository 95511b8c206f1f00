//! Speed measurements behind `gradprompt bench`: the same rows as the PyTorch + PEFT peer in
//! `benches/peer/` (docs/benchmarks.md puts them side by side).
//!
//! Every row is timed as the median of `repeats` runs after one warm-up. A training step is the
//! method's own `train_step` (forward, backward and optimiser update) on a batch of 8 rows of 20
//! virtual tokens (a prefix of 20 for prefix tuning) and 44 text tokens whose last 4 are the
//! answer; fine-tuning sees 64 text tokens. Token ids are a fixed hash of the position, shared
//! with the peer, so both sides see the same sequences.

use crate::methods::RunRng;
use crate::methods::{self, Batch, MethodKind, MethodSettings, Row, StepContext};
use crate::model::{ForwardInput, LogitRows, Model};
use crate::run::{RunSpec, TrainConfig};
use crate::task::{Piece, Task, Template};
use crate::train::{self, eval};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// Virtual tokens (prompt tuning, P-Tuning) and prefix positions (prefix tuning), as in the peer.
const VIRTUAL: usize = 20;
/// Answer tokens at the end of each row: the loss is taken on them only.
const ANSWER: usize = 4;
/// AutoPrompt trigger slots (at the start of the row, as `template_for` puts them) and
/// candidates scored per iteration.
const TRIGGERS: usize = 4;
const TOP_K: usize = 10;
/// The matmul that estimates the hardware's reachable f32 peak.
const MATMUL_N: usize = 2048;

/// The rows `--only` may pick, in the order they run (fine-tuning and the optimiser comparison
/// last: they allocate the most, and an allocator keeps freed memory for a while).
pub const ROWS: [&str; 11] = [
    "matmul",
    "forward",
    "prompt-tuning",
    "prefix-tuning",
    "p-tuning",
    "autoprompt",
    "eval",
    "run",
    "serve",
    "fine-tuning",
    "adamw",
];

pub struct BenchOptions<'a> {
    pub batch: usize,
    pub seq_len: usize,
    pub repeats: usize,
    /// A classification task for `eval_s` and `run_s`.
    pub task: &'a Path,
    /// Rows to run (empty: all).
    pub only: Vec<String>,
}

/// The sample task the peer also uses, found from the crate root as the built-in model is: a
/// path relative to the working folder made `bench` run elsewhere time every row for minutes,
/// then fail on the missing task.
static SAMPLE_TASK: std::sync::LazyLock<std::path::PathBuf> = std::sync::LazyLock::new(|| {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_tasks/country-continent")
});

/// The peer's sizes (a batch of 8 rows of 64 tokens, the median of 5 runs) on the sample task
/// it also uses; `gradprompt bench` takes its defaults from here.
impl Default for BenchOptions<'static> {
    fn default() -> Self {
        Self {
            batch: 8,
            seq_len: 64,
            repeats: 5,
            task: SAMPLE_TASK.as_path(),
            only: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct BenchResult {
    pub model: String,
    pub threads: usize,
    pub batch: usize,
    pub seq_len: usize,
    pub repeats: usize,
    pub forward_s: Option<f64>,
    pub step_s: BTreeMap<String, f64>,
    pub autoprompt_iteration_s: Option<f64>,
    /// Scoring the task's dev split with an untrained 20-token prompt (every label ranked).
    pub eval_s: Option<f64>,
    pub eval_accuracy: Option<f64>,
    /// The same scoring done the way PEFT users do it: each (example, label) row run in full.
    pub eval_full_sequence_s: Option<f64>,
    /// A whole 20-step prompt-tuning run: dev scored before and after, then the test split.
    pub run_s: Option<f64>,
    pub run_dev_accuracy: Option<f64>,
    pub run_test_accuracy: Option<f64>,
    pub matmul_gflops: Option<f64>,
    /// Serving the dev rows of the four classification sample tasks, arriving interleaved, each
    /// task with its own (untrained) 20-token prompt over one frozen model: rows per second
    /// when a batch mixes tasks, and when each batch is split by task (one forward per task);
    /// the bytes of the frozen model (f32) and of all the prompts.
    pub serve_tasks: Option<usize>,
    pub serve_rows: Option<usize>,
    pub serve_mixed_rows_per_s: Option<f64>,
    pub serve_one_task_at_a_time_rows_per_s: Option<f64>,
    pub serve_model_bytes: Option<u64>,
    pub serve_prompt_bytes: Option<u64>,
    /// One AdamW update of every weight of the model (the fine-tuning baseline's optimiser):
    /// the fused update and candle's own, on the same parameters and gradients.
    pub adamw_fused_s: Option<f64>,
    pub adamw_candle_s: Option<f64>,
    /// The process's peak resident memory, and each row's peak (the high-water mark is reset
    /// before each row, so a row's figure includes what earlier rows left resident).
    pub peak_rss_bytes: u64,
    pub peak_rss_bytes_by_row: BTreeMap<String, u64>,
    /// (max - min) / median of each row's repeats: how steady the timings are.
    pub spread: BTreeMap<String, f64>,
}

/// The tasks the serving row mixes: every classification sample task.
const SERVE_TASKS: [&str; 4] = [
    "country-continent",
    "animal-class",
    "headline-topic",
    "review-sentiment",
];

/// The `serve` row: the same interleaved rows served in mixed batches and one task at a time.
fn serve_row(
    timer: &mut Timer,
    res: &mut BenchResult,
    model: &Model,
    settings: &MethodSettings,
    batch: usize,
) -> Result<()> {
    use crate::serve::{self, Input, Served};
    let llm = &model.llm;
    let root = SAMPLE_TASK.parent().context("the sample tasks folder")?;
    let mut served = Vec::new();
    let mut per_task: Vec<Vec<Input>> = Vec::new();
    for (k, name) in SERVE_TASKS.iter().enumerate() {
        let task = crate::task::Task::load(&root.join(name))?;
        let template = methods::template_for(MethodKind::PromptTuning, settings, &task.template()?);
        let labels = task.label_answers();
        let mut rng = RunRng::seed_from_u64(k as u64);
        let method = methods::build(
            MethodKind::PromptTuning,
            settings,
            llm,
            &template,
            &labels,
            &model.tokenizer,
            &mut rng,
        )?;
        per_task.push(
            task.dev
                .iter()
                .map(|e| Input {
                    task: k,
                    fields: e.fields.clone(),
                })
                .collect(),
        );
        served.push(Served {
            prompt: method.prompt(llm)?.detached(),
            task,
            template,
            dir: root.join(name),
            label_token_ids: None,
        });
    }
    // Requests arrive interleaved, as a server shared by the tasks would see them.
    let longest = per_task.iter().map(Vec::len).max().unwrap_or(0);
    let inputs: Vec<Input> = (0..longest)
        .flat_map(|i| per_task.iter().filter_map(move |t| t.get(i).cloned()))
        .collect();
    let n = inputs.len() as f64;
    let mixed = timer.measure("serve-mixed", &mut || {
        serve::predict(model, &served, &inputs, batch)?;
        Ok(())
    })?;
    let split = timer.measure("serve-one-task-at-a-time", &mut || {
        serve::predict_one_task_at_a_time(model, &served, &inputs, batch)?;
        Ok(())
    })?;
    let prompt_bytes: usize = served
        .iter()
        .filter_map(|s| s.prompt.soft.as_ref())
        .map(|t| t.elem_count() * 4)
        .sum();
    res.serve_tasks = Some(served.len());
    res.serve_rows = Some(inputs.len());
    res.serve_mixed_rows_per_s = Some(n / mixed);
    res.serve_one_task_at_a_time_rows_per_s = Some(n / split);
    res.serve_model_bytes = Some(llm.parameter_count() as u64 * 4);
    res.serve_prompt_bytes = Some(prompt_bytes as u64);
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Times rows: the median of `repeats` runs after a warm-up, each row's spread and peak memory.
struct Timer {
    repeats: usize,
    spread: BTreeMap<String, f64>,
    peaks: BTreeMap<String, u64>,
}

impl Timer {
    fn measure(&mut self, name: &str, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
        reset_peak_rss();
        f().with_context(|| format!("bench row {name}"))?;
        let mut times = Vec::with_capacity(self.repeats);
        for _ in 0..self.repeats {
            let t = Instant::now();
            f().with_context(|| format!("bench row {name}"))?;
            times.push(t.elapsed().as_secs_f64());
        }
        let m = median(times.clone());
        let (lo, hi) = times
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &t| (lo.min(t), hi.max(t)));
        self.spread.insert(name.to_string(), (hi - lo) / m);
        self.peaks.insert(name.to_string(), peak_rss());
        eprintln!("{name}: median {m:.3} s over {times:.3?}");
        Ok(m)
    }
}

/// One training step of `kind` on `rows`, timed (the method is built once, outside the timing).
fn step_row(
    timer: &mut Timer,
    model: &Model,
    kind: MethodKind,
    settings: &MethodSettings,
    template: &str,
    rows: Vec<Row>,
) -> Result<f64> {
    let llm = &model.llm;
    let template = Template::parse(template).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut rng = RunRng::seed_from_u64(0);
    let labels = vec![" yes".to_string(), " no".to_string()];
    let mut method = methods::build(
        kind,
        settings,
        llm,
        &template,
        &labels,
        &model.tokenizer,
        &mut rng,
    )?;
    let batch = Batch {
        micro_batch: rows.len(),
        rows,
    };
    // The peer's learning rate; it does not change the work done.
    let lr = 1e-3;
    timer.measure(kind.id(), &mut || {
        let mut ctx = StepContext {
            llm,
            lr,
            rng: &mut rng,
        };
        method.train_step(&mut ctx, &batch)?;
        Ok(())
    })
}

/// `VmHWM` (peak resident bytes) from /proc/self/status; 0 where there is no /proc.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Resets the peak to the current resident size (Linux: "5" to clear_refs).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The ids shared with the peer: a fixed hash of the flat position, away from control tokens.
pub fn bench_ids(rows: usize, len: usize, vocab: usize) -> Vec<Vec<u32>> {
    let vocab = vocab as u32;
    (0..rows)
        .map(|r| {
            (0..len)
                .map(|t| {
                    let i = (r * len + t) as u32;
                    100 + (i.wrapping_mul(2654435761) % (vocab - 100))
                })
                .collect()
        })
        .collect()
}

/// Rows of `lead` pieces followed by text whose last `ANSWER` tokens are the answer.
fn rows(lead: &[Piece], text: &[Vec<u32>]) -> Vec<Row> {
    text.iter()
        .map(|ids| {
            let (prompt, answer) = ids.split_at(ids.len() - ANSWER);
            let mut pieces = lead.to_vec();
            pieces.extend(prompt.iter().map(|&id| Piece::Token(id)));
            Row {
                pieces,
                answer: answer.to_vec(),
                prompt: 0,
            }
        })
        .collect()
}

pub fn run(model: &Model, opts: &BenchOptions) -> Result<BenchResult> {
    let (batch, seq_len, repeats) = (opts.batch, opts.seq_len, opts.repeats);
    if batch == 0 {
        bail!("--batch-size must be at least 1");
    }
    if repeats == 0 {
        bail!("--repeats must be at least 1 (a row is the median of its timed runs)");
    }
    if seq_len < VIRTUAL + ANSWER + 1 {
        bail!(
            "--seq-len must be at least {} (20 virtual tokens, a prompt token and 4 answer tokens)",
            VIRTUAL + ANSWER + 1
        );
    }
    if seq_len > model.config().max_position_embeddings {
        bail!(
            "--seq-len {seq_len} exceeds the model's context of {}",
            model.config().max_position_embeddings
        );
    }
    for r in &opts.only {
        if !ROWS.contains(&r.as_str()) {
            bail!("--only {r}: not a bench row (rows: {})", ROWS.join(", "));
        }
    }
    let wanted = |row: &str| opts.only.is_empty() || opts.only.iter().any(|r| r == row);
    // Loaded before any row is timed, so a bad --task fails in a second, not after the rows.
    let task = if wanted("eval") || wanted("run") {
        let task =
            Task::load(opts.task).with_context(|| format!("--task {}", opts.task.display()))?;
        if task.spec.kind != crate::task::TaskKind::Classification {
            bail!(
                "--task {}: the bench scores a classification task",
                opts.task.display()
            );
        }
        Some(task)
    } else {
        None
    };
    let dev = Device::Cpu;
    let llm = &model.llm;
    let vocab = model.config().vocab_size;
    let mut res = BenchResult {
        model: model.spec.clone(),
        threads: candle_core::utils::get_num_threads(),
        batch,
        seq_len,
        repeats,
        ..Default::default()
    };
    let mut timer = Timer {
        repeats,
        spread: BTreeMap::new(),
        peaks: BTreeMap::new(),
    };

    if wanted("matmul") {
        let a = Tensor::ones((MATMUL_N, MATMUL_N), candle_core::DType::F32, &dev)?;
        let s = timer.measure("matmul", &mut || {
            a.matmul(&a)?;
            Ok(())
        })?;
        res.matmul_gflops = Some(2.0 * (MATMUL_N as f64).powi(3) / s / 1e9);
    }

    if wanted("forward") {
        let ids: Vec<u32> = bench_ids(batch, seq_len, vocab).concat();
        let embeds = llm.embed(&Tensor::from_vec(ids, (batch, seq_len), &dev)?)?;
        res.forward_s = Some(timer.measure("forward", &mut || {
            llm.forward(&ForwardInput {
                embeds: &embeds,
                attention_mask: None,
                prefix: None,
                logits: LogitRows::All,
                keep_kv: false,
            })?;
            Ok(())
        })?);
    }

    let text = bench_ids(batch, seq_len - VIRTUAL, vocab);
    let soft: Vec<Piece> = (0..VIRTUAL).map(Piece::Soft).collect();
    let settings = MethodSettings {
        num_virtual_tokens: VIRTUAL,
        prefix_len: VIRTUAL,
        num_triggers: TRIGGERS,
        top_k: TOP_K,
        ..Default::default()
    };
    let soft_template = "[P*20]{text}[ANSWER]";
    for kind in [
        MethodKind::PromptTuning,
        MethodKind::PrefixTuning,
        MethodKind::PTuning,
    ] {
        if wanted(kind.id()) {
            let (template, lead) = match kind {
                MethodKind::PrefixTuning => ("{text}[ANSWER]", &[][..]),
                _ => (soft_template, &soft[..]),
            };
            let s = step_row(
                &mut timer,
                model,
                kind,
                &settings,
                template,
                rows(lead, &text),
            )?;
            res.step_s.insert(kind.id().to_string(), s);
        }
    }
    if wanted("autoprompt") {
        // One iteration: the gradient on half the batch, then the current triggers and the
        // top-10 candidates scored on the other half.
        let lead: Vec<Piece> = (0..TRIGGERS).map(Piece::Trigger).collect();
        res.autoprompt_iteration_s = Some(step_row(
            &mut timer,
            model,
            MethodKind::Autoprompt,
            &settings,
            "[T*4]{text}[ANSWER]",
            rows(&lead, &text),
        )?);
    }

    if let Some(task) = &task {
        let spec = RunSpec {
            method: MethodKind::PromptTuning,
            settings: settings.clone(),
            template: None,
            config: TrainConfig {
                steps: 20,
                eval_every: 20,
                batch_size: batch,
                ..Default::default()
            },
            out: None,
        };
        if wanted("eval") {
            let template = train::resolve_template(task, &spec)?;
            let dev_set = train::encode_split(task, &template, crate::task::Split::Dev, model)?;
            let labels = task.label_answers();
            let mut rng = RunRng::seed_from_u64(0);
            let method = methods::build(
                MethodKind::PromptTuning,
                &settings,
                llm,
                &template,
                &labels,
                &model.tokenizer,
                &mut rng,
            )?;
            let prompt = method.prompt(llm)?.detached();
            let mut acc = 0.0;
            res.eval_s = Some(timer.measure("eval", &mut || {
                acc = eval::evaluate(llm, &prompt, task.spec.kind, &dev_set, &model.tokenizer)?
                    .metric;
                Ok(())
            })?);
            res.eval_accuracy = Some(acc);
            res.eval_full_sequence_s = Some(timer.measure("eval-full-sequence", &mut || {
                eval::candidate_logprobs_full(llm, &prompt, &dev_set)?;
                Ok(())
            })?);
        }
        if wanted("run") {
            let (events, _drain) = crossbeam_channel::unbounded();
            let (_keep, commands) = crossbeam_channel::unbounded();
            let mut out = None;
            res.run_s = Some(timer.measure("run", &mut || {
                out = Some(train::train(model, task, &spec, &events, &commands)?);
                Ok(())
            })?);
            if let Some(r) = out {
                res.run_dev_accuracy = Some(r.dev_metric);
                res.run_test_accuracy = Some(r.test_metric);
            }
        }
    }

    if wanted("serve") {
        serve_row(&mut timer, &mut res, model, &settings, batch)?;
    }

    if wanted("fine-tuning") {
        let ft_text = bench_ids(batch, seq_len, vocab);
        let s = step_row(
            &mut timer,
            model,
            MethodKind::FineTuning,
            &settings,
            "{text}[ANSWER]",
            rows(&[], &ft_text),
        )?;
        res.step_s.insert("fine-tuning".to_string(), s);
    }
    if wanted("adamw") {
        let (_copy, vars) = llm.trainable_copy()?;
        let vars: Vec<candle_core::Var> = vars.into_iter().map(|(_, v)| v).collect();
        let grads: Vec<Tensor> = vars
            .iter()
            .map(|v| Ok((v.as_tensor() * 1e-3)?))
            .collect::<Result<_>>()?;
        let mut fused = methods::optim::AdamW::new(vars.clone(), 0.01)?;
        res.adamw_fused_s = Some(timer.measure("adamw-fused", &mut || fused.step(&grads))?);
        drop(fused);
        // A gradient store holding exactly `grads`: the gradient of sum(v * g) is g.
        let mut total = Tensor::zeros((), candle_core::DType::F32, &dev)?;
        for (v, g) in vars.iter().zip(&grads) {
            total = (total + (v.as_tensor() * g)?.sum_all()?)?;
        }
        let store = total.backward()?;
        use candle_nn::Optimizer;
        let mut candle_opt = candle_nn::AdamW::new(
            vars.clone(),
            candle_nn::ParamsAdamW {
                weight_decay: 0.01,
                ..Default::default()
            },
        )?;
        res.adamw_candle_s =
            Some(timer.measure("adamw-candle", &mut || Ok(candle_opt.step(&store)?))?);
    }

    // Resetting the high-water mark per row loses the process-wide one: take the largest.
    res.peak_rss_bytes = timer.peaks.values().copied().fold(peak_rss(), u64::max);
    res.peak_rss_bytes_by_row = timer.peaks;
    res.spread = timer.spread;
    Ok(res)
}
