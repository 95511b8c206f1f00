//! A save cut short by a kill. `atomic::write_folder` writes a prompt into `.NAME.writing-*`
//! beside its target, moves the old folder aside to `.NAME.old-*`, then renames the new one into
//! place: a kill leaves one of those beside the target. Neither may be read as the prompt, and
//! the previous version must survive. Also a real SIGKILL of a run overwriting a prompt.

use crate::{gradprompt, refused, sample_task, saved_prompt, snapshot, with_prompt, write};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn eval(root: &Path) -> std::process::Output {
    let task = sample_task("country-continent");
    gradprompt(
        root,
        &["eval", "--task", task.to_str().unwrap(), "--prompt", "p"],
    )
}

/// A torn copy: the manifest of another task, no tensors.
fn torn(root: &Path, rel: &str) {
    let manifest = std::fs::read_to_string(saved_prompt().join("manifest.json")).unwrap();
    write(
        root,
        &format!("{rel}/manifest.json"),
        manifest.replace("country-continent", "country-capital"),
    );
}

#[test]
fn a_leftover_writing_folder_is_not_read_as_the_prompt_and_a_resave_replaces_the_prompt_whole() {
    let dir = tempfile::tempdir().unwrap();
    with_prompt(dir.path());
    let clean = eval(dir.path());
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    // A kill while the fresh folder was being filled.
    torn(dir.path(), ".p.writing-Ab12Cd");
    let before = snapshot(dir.path());
    let with_leftover = eval(dir.path());
    assert!(
        with_leftover.status.success(),
        "{}",
        String::from_utf8_lossy(&with_leftover.stderr)
    );
    assert_eq!(
        with_leftover.stdout, clean.stdout,
        "the same prompt was read"
    );
    assert_eq!(snapshot(dir.path()), before, "eval touched nothing");

    // The next save goes through, into the target, and leaves the leftover alone.
    let task = sample_task("country-continent");
    let resave = gradprompt(
        dir.path(),
        &[
            "train",
            "--method",
            "prompt-tuning",
            "--steps",
            "1",
            "--seed",
            "7",
            "--task",
            task.to_str().unwrap(),
            "--out",
            "p",
            "--overwrite",
        ],
    );
    assert!(
        resave.status.success(),
        "{}",
        String::from_utf8_lossy(&resave.stderr)
    );
    let art = gradprompt::artifact::Artifact::load(&dir.path().join("p")).unwrap();
    assert_eq!(art.manifest.task, "country-continent");
    assert_eq!(art.manifest.config.seed, 7);
    let leftover = Path::new(".p.writing-Ab12Cd/manifest.json");
    assert_eq!(
        snapshot(dir.path()).get(leftover),
        before.get(leftover),
        "the leftover is neither read nor removed"
    );
}

#[test]
fn a_kill_between_the_two_renames_keeps_the_previous_prompt_and_the_error_names_it() {
    let dir = tempfile::tempdir().unwrap();
    with_prompt(dir.path());
    // The old folder stepped aside, the new one never arrived.
    std::fs::rename(dir.path().join("p"), dir.path().join(".p.old-Zy98Xw")).unwrap();
    torn(dir.path(), ".p.writing-Ab12Cd");
    let before = snapshot(dir.path());
    let output = eval(dir.path());
    if let Some(why) = refused(
        &output,
        &[
            "p/manifest.json",
            "cut short",
            ".p.old-Zy98Xw",
            "rename it back",
        ],
    ) {
        panic!("{why}");
    }
    assert_eq!(
        snapshot(dir.path()),
        before,
        "the previous version survives"
    );
    // Renamed back as the error says, it is the prompt it was.
    std::fs::rename(dir.path().join(".p.old-Zy98Xw"), dir.path().join("p")).unwrap();
    assert!(eval(dir.path()).status.success());
}

#[test]
fn a_run_killed_while_overwriting_a_prompt_leaves_the_previous_prompt_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    with_prompt(dir.path());
    let before = snapshot(dir.path());
    let task = sample_task("country-continent");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gradprompt"))
        .args([
            "train",
            "--method",
            "prompt-tuning",
            "--steps",
            "1000000",
            "--task",
        ])
        .arg(&task)
        .args(["--out", "p", "--overwrite"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Long enough to load the built-in model and train a few steps.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before the kill"
    );
    child.kill().unwrap(); // SIGKILL: no handler runs
    child.wait().unwrap();
    // The run may have written its checkpoint into p/checkpoint/ (to resume from); nothing
    // else of the folder changed.
    let is_checkpoint = |p: &Path| {
        p.starts_with("p/checkpoint")
            || p.strip_prefix("p")
                .is_ok_and(|r| r.to_string_lossy().starts_with(".checkpoint."))
    };
    let after: BTreeMap<_, _> = snapshot(dir.path())
        .into_iter()
        .filter(|(p, _)| !is_checkpoint(p))
        .collect();
    assert_eq!(after, before);
    assert!(eval(dir.path()).status.success());
}

/// The same for a single file (`atomic::write_file`, as a run record is saved): a temporary
/// file a kill left beside it is neither read nor in the way of the next save.
#[test]
fn a_leftover_temporary_file_is_not_read_and_the_next_save_replaces_the_file_whole() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("run.json");
    gradprompt::atomic::write_file(&target, b"{\"version\": 1}").unwrap();
    write(dir.path(), ".run.json.writing-Ab12Cd", "{\"vers");
    assert_eq!(std::fs::read(&target).unwrap(), b"{\"version\": 1}");
    gradprompt::atomic::write_file(&target, b"{\"version\": 2}").unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"{\"version\": 2}");
    assert_eq!(
        std::fs::read(dir.path().join(".run.json.writing-Ab12Cd")).unwrap(),
        b"{\"vers"
    );
}

/// A leftover beside an output folder is not in it: `--out` is still free to write.
#[test]
fn a_leftover_beside_an_empty_out_does_not_count_as_its_contents() {
    let dir = tempfile::tempdir().unwrap();
    torn(dir.path(), ".p.writing-Ab12Cd");
    std::fs::create_dir(dir.path().join("p")).unwrap();
    let task = sample_task("country-continent");
    let output = gradprompt(
        dir.path(),
        &[
            "train",
            "--method",
            "zero-shot",
            "--task",
            task.to_str().unwrap(),
            "--out",
            "p",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    gradprompt::artifact::Artifact::load(&dir.path().join("p")).unwrap();
}
