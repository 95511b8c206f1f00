//! A run killed at any moment loses nothing: it checkpoints its whole state into `--out` as it
//! goes, and `train --resume DIR` ends with the same prompt and the same numbers as a run that
//! was never interrupted. Drives the real binary (a real SIGKILL of a child process) on the
//! built-in model.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gradprompt");

fn sample(name: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("sample_tasks")
        .join(name);
    dir.to_str().unwrap().to_string()
}

fn train_args(method: &str, out: &Path) -> Vec<String> {
    let task = sample("country-capital");
    [
        "train",
        "--method",
        method,
        "--steps",
        "40",
        "--eval-every",
        "5",
        "--seed",
        "3",
        "--json",
        "--task",
        &task,
        "--out",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

fn json_of(output: &std::process::Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The step of the checkpoint in `out`, if one is there.
fn checkpoint_step(out: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(out.join("checkpoint/state.json")).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["step"].as_u64()
}

fn tensors(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let t =
        candle_core::safetensors::load(dir.join("prompt.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let mut out: Vec<(String, Vec<f32>)> = t
        .into_iter()
        .map(|(n, t)| {
            let t = t.to_dtype(candle_core::DType::F32).unwrap();
            (n, t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn killed_and_resumed_equals_uninterrupted(method: &str) {
    let dir = tempfile::tempdir().unwrap();
    let args = |out: &Path| train_args(method, out);
    let (uninterrupted, resumed, whole, killed) = kill_and_resume(dir.path(), &args);
    for key in [
        "steps",
        "dev_metric",
        "test_metric",
        "best_step",
        "train_loss_first",
        "train_loss_last",
        "template",
        "trainable_params",
        "artifact_bytes",
    ] {
        assert_eq!(resumed[key], uninterrupted[key], "{method}: {key} differs");
    }
    same_tensors(&whole, &killed, method);
}

/// Each task's prompt folder of the resumed run equals the uninterrupted run's.
#[test]
fn a_multi_task_run_killed_with_sigkill_and_resumed_ends_as_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let args = |out: &Path| {
        let mut a = train_args("prefix-tuning", out);
        let more = [
            "--task",
            &sample("country-continent"),
            "--shared-tokens",
            "2",
            "--mix",
            "uniform",
        ];
        a.extend(more.map(String::from));
        a
    };
    let (uninterrupted, resumed, whole, killed) = kill_and_resume(dir.path(), &args);
    for key in [
        "steps",
        "dev_metric",
        "test_metric",
        "best_step",
        "train_loss_last",
    ] {
        assert_eq!(
            resumed[key], uninterrupted[key],
            "multi-task: {key} differs"
        );
    }
    // Each task's scores and its own best; only the folder it was written to differs.
    let without_folder = |v: &serde_json::Value| {
        let mut tasks = v["tasks"].as_array().unwrap().clone();
        for t in &mut tasks {
            t.as_object_mut().unwrap().remove("artifact");
        }
        tasks
    };
    assert_eq!(without_folder(&resumed), without_folder(&uninterrupted));
    for task in ["country-capital", "country-continent"] {
        same_tensors(&whole.join(task), &killed.join(task), task);
    }
}

/// A run written to `whole` without interruption, and the same run written to `killed`,
/// SIGKILLed after a checkpoint of step 10 or later and resumed: both results (JSON).
fn kill_and_resume(
    dir: &Path,
    args: &dyn Fn(&Path) -> Vec<String>,
) -> (serde_json::Value, serde_json::Value, PathBuf, PathBuf) {
    let (whole, killed) = (dir.join("whole"), dir.join("killed"));
    let uninterrupted = json_of(&Command::new(BIN).args(args(&whole)).output().unwrap());
    assert!(
        !whole.join("checkpoint").exists(),
        "a completed run keeps no checkpoint"
    );

    let mut child = Command::new(BIN)
        .args(args(&killed))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let step = loop {
        if let Some(s) = checkpoint_step(&killed).filter(|&s| s >= 10) {
            break s;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before a checkpoint at step 10 was seen"
        );
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no checkpoint in 5 minutes"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before it could be killed"
    );
    child.kill().unwrap(); // SIGKILL: nothing of the process runs after it
    child.wait().unwrap();
    assert!(step < 40, "killed mid-run, after step {step}");
    assert!(
        !killed.join("manifest.json").exists(),
        "nothing but the checkpoint was written before the kill"
    );

    let resumed = json_of(
        &Command::new(BIN)
            .args(["train", "--resume", killed.to_str().unwrap(), "--json"])
            .output()
            .unwrap(),
    );
    assert!(
        !killed.join("checkpoint").exists(),
        "a resumed run that completes removes its checkpoint"
    );
    (uninterrupted, resumed, whole, killed)
}

fn same_tensors(whole: &Path, killed: &Path, what: &str) {
    let (a, b) = (tensors(whole), tensors(killed));
    assert_eq!(a.len(), b.len());
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        let d = va
            .iter()
            .zip(vb)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(d <= 1e-6, "{what}: tensor {na} differs by {d}");
    }
}

#[test]
fn a_p_tuning_run_killed_with_sigkill_and_resumed_ends_as_an_uninterrupted_run() {
    killed_and_resumed_equals_uninterrupted("p-tuning");
}

#[test]
fn a_prefix_tuning_run_killed_with_sigkill_and_resumed_ends_as_an_uninterrupted_run() {
    killed_and_resumed_equals_uninterrupted("prefix-tuning");
}

#[test]
fn an_autoprompt_run_killed_with_sigkill_and_resumed_ends_as_an_uninterrupted_run() {
    // Its state is discrete and its search draws from the run's random stream.
    killed_and_resumed_equals_uninterrupted("autoprompt");
}

#[test]
fn resume_without_a_checkpoint_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["train", "--resume", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no checkpoint to resume from")
            && stderr.contains(dir.path().to_str().unwrap()),
        "{stderr}"
    );
}

#[test]
fn resume_takes_every_setting_from_the_checkpoint() {
    let output = Command::new(BIN)
        .args(["train", "--resume", "x", "--steps", "5"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "clap refuses the combination"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("--steps"));
}
