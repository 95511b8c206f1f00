//! The command line never loses a run: Ctrl-C or SIGTERM saves the best checkpoint so far and
//! exits non-zero, and an output folder that already holds a prompt is not overwritten unless
//! asked. Drives the real binary on the built-in model.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn train(out: &Path, extra: &[&str]) -> Command {
    let task = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_tasks/country-capital");
    let mut c = Command::new(env!("CARGO_BIN_EXE_gradprompt"));
    c.args(["train", "--method", "prompt-tuning", "--eval-every", "20"])
        .arg("--task")
        .arg(&task)
        .arg("--out")
        .arg(out)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn wait(mut child: Child, limit: Duration) -> std::process::Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            panic!("the process did not end within {limit:?} of the signal");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

fn signal_stops_and_saves(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("prompt");
    let child = train(&out, &["--steps", "1000000"]).spawn().unwrap();
    // Long enough to load the built-in model and start stepping.
    std::thread::sleep(Duration::from_secs(6));
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = wait(child, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "an interrupted run must exit non-zero"
    );
    assert!(
        stderr.contains("interrupted") && stderr.contains("saved to"),
        "{stderr}"
    );
    let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let steps = json["result"]["steps"].as_u64().unwrap();
    assert!(
        steps < 1_000_000,
        "the run was stopped, not finished: {steps}"
    );
    assert_eq!(json["result"]["stopped_early"], true);
}

#[test]
fn ctrl_c_stops_training_saves_the_best_checkpoint_and_exits_non_zero() {
    signal_stops_and_saves("-INT");
}

#[test]
fn sigterm_stops_training_like_ctrl_c() {
    signal_stops_and_saves("-TERM");
}

#[test]
fn an_out_folder_holding_a_prompt_is_refused_before_training_unless_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("prompt");
    let first = train(&out, &["--steps", "2"]).output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let before = std::fs::read(out.join("prompt.safetensors")).unwrap();

    let second = train(&out, &["--steps", "2", "--seed", "9"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        stderr.contains("--overwrite") && stderr.contains("prompt"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(out.join("prompt.safetensors")).unwrap(),
        before
    );

    let third = train(&out, &["--steps", "2", "--seed", "9", "--overwrite"])
        .output()
        .unwrap();
    assert!(
        third.status.success(),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
}

#[test]
fn eval_refuses_a_prompt_trained_for_another_task_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("prompt");
    let trained = train(&out, &["--steps", "1"]).output().unwrap();
    assert!(
        trained.status.success(),
        "{}",
        String::from_utf8_lossy(&trained.stderr)
    );
    let other = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_tasks/country-continent");
    let eval = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_gradprompt"))
            .args(["eval", "--task"])
            .arg(&other)
            .arg("--prompt")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = eval(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("generation task") && stderr.contains("--allow-other-task"),
        "{stderr}"
    );
    let allowed = eval(&["--allow-other-task"]);
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
}
