//! The bad-input corpus of issue 12: every kind of input a user gets wrong (task folders,
//! templates, numbers, model files, saved prompts, output folders, a save cut short by a kill),
//! each refused with an error that names the file, line, field or flag, without a panic, and
//! without touching anything already saved.
//!
//! Most cases drive the real binary on the built-in model, from a case folder of their own:
//! a case is a name, the files it lays out, the command line, and the words its error must
//! hold. Every case asserts the same three things (see [`refused`]): exit code 1 (an error) or
//! 2 (a usage error), never 101 (a panic) or a signal; no "panicked" on stderr; every file in
//! the case folder byte-identical afterwards. A few cases are cheaper through the library
//! (`engine.rs`). Runs in seconds, built-in model only.

#[path = "../common/mod.rs"]
mod common;

mod artifacts;
mod engine;
mod kill_between_writes;
mod model_files;
mod numbers;
mod overwrites;
mod task_folders;
mod templates;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The crate root: the sample tasks and the built-in model live under it.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn sample_task(name: &str) -> PathBuf {
    repo().join("sample_tasks").join(name)
}

pub fn builtin_model() -> PathBuf {
    repo().join(gradprompt::model::BUILTIN_DIR)
}

/// The binary, run from `root`.
pub fn gradprompt(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradprompt"))
        .args(args)
        .current_dir(root)
        .output()
        .unwrap()
}

/// One bad input: the files `setup` lays out in an empty case folder, the command line run
/// there (paths relative to it), and the words its error must contain.
pub struct Case {
    pub name: &'static str,
    pub setup: fn(&Path),
    pub args: &'static [&'static str],
    pub expect: &'static [&'static str],
}

/// Every file under `dir` with its bytes, except the lock files `atomic::claim_output` leaves
/// beside an output folder (empty, and meant to stay).
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                out.insert(path.strip_prefix(root).unwrap().join(""), Vec::new());
                walk(root, &path, out);
            } else if !(name.starts_with('.') && name.ends_with(".lock")) {
                out.insert(
                    path.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// What is wrong with how a command ended, if anything: it must have failed with exit code 1
/// or 2, without a panic, naming every word of `expect`.
pub fn refused(output: &Output, expect: &[&str]) -> Option<String> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let code = output.status.code();
    if !matches!(code, Some(1) | Some(2)) {
        return Some(format!(
            "exit {code:?} (expected 1 or 2; 101 is a panic, none a signal); stderr: {stderr}"
        ));
    }
    if stderr.contains("panicked") {
        return Some(format!("panicked: {stderr}"));
    }
    let missing: Vec<&&str> = expect.iter().filter(|w| !stderr.contains(**w)).collect();
    if !missing.is_empty() {
        return Some(format!("the error lacks {missing:?}: {stderr}"));
    }
    None
}

/// Runs every case in a folder of its own and fails with the list of cases that went wrong.
pub fn run_cases(cases: &[Case]) {
    let mut wrong = Vec::new();
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        (case.setup)(dir.path());
        let before = snapshot(dir.path());
        let output = gradprompt(dir.path(), case.args);
        if let Some(why) = refused(&output, case.expect) {
            wrong.push(format!("{}: {why}", case.name));
        }
        let after = snapshot(dir.path());
        if after != before {
            let changed: Vec<_> = before
                .keys()
                .chain(after.keys())
                .filter(|k| before.get(*k) != after.get(*k))
                .collect();
            wrong.push(format!("{}: files changed: {changed:?}", case.name));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} problem(s) in {} case(s):\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

/// Copies a folder tree (a sample task, the built-in model, a saved prompt) into a case.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// A prompt-tuning prompt for the sample task country-continent, trained for one step on the
/// built-in model (8 soft vectors), once per test process.
pub fn saved_prompt() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bad_inputs-fixture");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let task = sample_task("country-continent");
        let out = gradprompt(
            &root,
            &[
                "train",
                "--method",
                "prompt-tuning",
                "--task",
                task.to_str().unwrap(),
                "--steps",
                "1",
                "--out",
                "prompt",
            ],
        );
        assert!(
            out.status.success(),
            "training the fixture prompt failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        root.join("prompt")
    })
}

/// The saved prompt, copied into the case as `p`.
pub fn with_prompt(root: &Path) {
    copy_dir(saved_prompt(), &root.join("p"));
}

/// The sample task country-continent, copied into the case as `task`.
pub fn with_task(root: &Path) {
    copy_dir(&sample_task("country-continent"), &root.join("task"));
}

/// Edits `root/rel` as JSON.
pub fn edit_json(root: &Path, rel: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = root.join(rel);
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
}

pub fn write(root: &Path, rel: &str, contents: impl AsRef<[u8]>) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}
