//! `gradprompt train --seeds`: the same configuration once per seed, each a complete run with its
//! own result folder, then a summary of the seeds' test scores (mean, sample std, n). Bad lists,
//! `--seed` beside `--seeds` and a seed folder already written are refused before any training.
//! Drives the real binary on the built-in model with a few steps.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn train(extra: &[&str]) -> Output {
    let task = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_tasks/country-continent");
    Command::new(env!("CARGO_BIN_EXE_gradprompt"))
        .args(["train", "--method", "prompt-tuning", "--steps", "3"])
        .args(["--eval-every", "3", "--batch-size", "4"])
        .arg("--task")
        .arg(&task)
        .args(extra)
        .output()
        .unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn three_seeds_give_three_result_folders_and_a_summary_of_their_test_scores() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pt");
    let o = train(&["--seeds", "0,1,2", "--out", out.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Each seed is a complete run of its own, with its seed.
    let mut tests = Vec::new();
    for seed in 0..3u64 {
        let manifest = json(&out.join(format!("seed-{seed}")).join("manifest.json"));
        assert_eq!(manifest["config"]["seed"].as_u64(), Some(seed));
        assert_eq!(manifest["result"]["steps"].as_u64(), Some(3));
        tests.push(manifest["result"]["test_metric"].as_f64().unwrap());
    }
    let mean = tests.iter().sum::<f64>() / 3.0;
    let std = (tests.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / 2.0).sqrt();

    let summary = json(&out.join("seeds.json"));
    assert!(
        (summary["mean"].as_f64().unwrap() - mean).abs() < 1e-12,
        "{summary}"
    );
    assert!(
        (summary["std"].as_f64().unwrap() - std).abs() < 1e-12,
        "{summary}"
    );
    assert_eq!(summary["n"].as_u64(), Some(3));
    let seeds: Vec<u64> = summary["seeds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(seeds, [0, 1, 2]);
    // Each seed's score comes with its interval on the test split.
    let first = &summary["seeds"][0];
    let n = first["test_examples"].as_u64().unwrap() as usize;
    let (lo, hi) = gradprompt::stats::wilson_interval(tests[0], n).unwrap();
    assert_eq!(first["test_ci95"][0].as_f64(), Some(lo));
    assert_eq!(first["test_ci95"][1].as_f64(), Some(hi));

    // And the same summary on stdout.
    assert!(
        stdout.contains(&format!("mean {mean:.4}, sample std {std:.4}, n=3")),
        "{stdout}"
    );
    for (seed, t) in tests.iter().enumerate() {
        let line = format!(
            "seed {seed}: {}",
            gradprompt::stats::score_with_interval(*t, Some(n))
        );
        assert!(stdout.contains(&line), "{line:?} not in {stdout}");
    }
}

fn refused(extra: &[&str]) -> String {
    let o = train(extra);
    assert!(
        !o.status.success(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_seed_lists_and_seed_beside_seeds_are_refused_before_any_training() {
    let dir = tempfile::tempdir().unwrap();
    let out: PathBuf = dir.path().join("x");
    let o = out.to_str().unwrap();
    let e = refused(&["--seeds", "0,,x", "--out", o]);
    assert!(
        e.contains("--seeds") && e.contains("item 2 is empty"),
        "{e}"
    );
    let e = refused(&["--seeds", "0,1,0", "--out", o]);
    assert!(e.contains("seed 0 is listed twice"), "{e}");
    let e = refused(&["--seeds", "0,1", "--seed", "3", "--out", o]);
    assert!(e.contains("--seeds") && e.contains("--seed "), "{e}");
    assert!(
        !out.exists(),
        "nothing may be written for a refused command"
    );
}

#[test]
fn a_seed_folder_already_written_is_refused_before_the_first_seed_trains() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pt");
    std::fs::create_dir_all(out.join("seed-1")).unwrap();
    std::fs::write(out.join("seed-1/manifest.json"), "{}").unwrap();
    // The folder holds a seed-1 already: refused as any --out that holds files is, before
    // seed 0 trains.
    let e = refused(&["--seeds", "0,1", "--out", out.to_str().unwrap()]);
    assert!(
        e.contains("already holds") && e.contains("--overwrite"),
        "{e}"
    );
    // Seed 0 never started.
    assert!(!out.join("seed-0/manifest.json").exists());
}
