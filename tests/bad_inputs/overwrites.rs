//! Output folders: `--out` already holding files, naming a file, or held by another process.
//! Refused before any work, and what was there is byte-identical afterwards.

use crate::{gradprompt, refused, run_cases, snapshot, with_prompt, write, Case};
use std::path::Path;

macro_rules! train_into {
    ($out:literal) => {
        &[
            "train",
            "--method",
            "prompt-tuning",
            "--steps",
            "1",
            "--task",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/sample_tasks/country-continent"
            ),
            "--out",
            $out,
        ]
    };
}

#[test]
fn an_out_that_holds_something_is_refused_and_left_as_it_was() {
    run_cases(&[
        Case {
            name: "train --out holding a saved prompt",
            setup: with_prompt,
            args: train_into!("p"),
            expect: &["p already holds 3 file(s)", "--overwrite"],
        },
        Case {
            name: "train --out holding an unrelated manifest.json",
            setup: |r| write(r, "notes/manifest.json", "{\"mine\": true}"),
            args: train_into!("notes"),
            expect: &["notes already holds 1 file(s)", "--overwrite"],
        },
        Case {
            name: "train --out naming a file",
            setup: |r| write(r, "results.txt", "keep me"),
            args: train_into!("results.txt"),
            expect: &["results.txt exists and is not a folder"],
        },
        Case {
            name: "export --out holding a saved prompt",
            setup: |r| {
                with_prompt(r);
                crate::copy_dir(crate::saved_prompt(), &r.join("q"));
            },
            args: &["export", "--prompt", "p", "--out", "q"],
            expect: &["q already holds 3 file(s)", "--overwrite"],
        },
        Case {
            name: "export --out naming the prompt itself",
            setup: with_prompt,
            args: &[
                "export", "--prompt", "p", "--format", "native", "--out", "p",
            ],
            expect: &["p already holds 3 file(s)", "--overwrite"],
        },
        Case {
            name: "export --out naming a file",
            setup: |r| {
                with_prompt(r);
                write(r, "adapter", "keep me");
            },
            args: &["export", "--prompt", "p", "--out", "adapter"],
            expect: &["adapter exists and is not a folder"],
        },
    ]);
}

/// Another process writing the folder holds its lock (here this test process, through the
/// same function `train` and `export` use).
#[test]
fn an_out_another_process_is_writing_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    with_prompt(dir.path());
    let _held = gradprompt::atomic::claim_output(&dir.path().join("out"), false).unwrap();
    let before = snapshot(dir.path());
    for args in [
        &train_into!("out")[..],
        &["export", "--prompt", "p", "--out", "out"],
    ] {
        let output = gradprompt(dir.path(), args);
        if let Some(why) = refused(&output, &["another gradprompt process is writing", "out"]) {
            panic!("{args:?}: {why}");
        }
    }
    assert_eq!(snapshot(dir.path()), before);
    assert!(!Path::new(&dir.path().join("out")).exists());
}
