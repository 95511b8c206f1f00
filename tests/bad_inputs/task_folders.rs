//! Task folders: task.json and the JSONL splits, each wrong in one way, given to `train`. The
//! run must stop before training, naming the file (and line, where there is one), and write
//! no `out` folder.

use crate::{edit_json, run_cases, with_task, write, Case};
use std::path::Path;

const TRAIN: &[&str] = &[
    "train",
    "--method",
    "prompt-tuning",
    "--steps",
    "1",
    "--task",
    "task",
    "--out",
    "out",
];

/// Replaces line `n` (1-based) of `root/rel`.
fn set_line(root: &Path, rel: &str, n: usize, text: &str) {
    let path = root.join(rel);
    let old = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = old.lines().collect();
    lines[n - 1] = text;
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

fn spec(root: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    with_task(root);
    edit_json(root, "task/task.json", |j| edit(j.as_object_mut().unwrap()));
}

#[test]
fn bad_task_folders_are_refused_naming_the_file_and_line() {
    run_cases(&[
        Case {
            name: "task.json missing",
            setup: |r| {
                with_task(r);
                std::fs::remove_file(r.join("task/task.json")).unwrap();
            },
            args: TRAIN,
            expect: &["task/task.json"],
        },
        Case {
            name: "the task is a file, not a folder",
            setup: |r| write(r, "task", "{}"),
            args: TRAIN,
            expect: &["task/task.json"],
        },
        Case {
            name: "task.json is not JSON",
            setup: |r| {
                with_task(r);
                write(r, "task/task.json", "{\"name\": \"x\",\n\"kind\": ");
            },
            args: TRAIN,
            expect: &["task/task.json:2"],
        },
        Case {
            name: "task.json with a BOM and a syntax error on line 3",
            setup: |r| {
                with_task(r);
                write(
                    r,
                    "task/task.json",
                    "\u{feff}{\n\"name\": \"x\",\n\"kind\": classification}",
                );
            },
            args: TRAIN,
            expect: &["task/task.json:3"],
        },
        Case {
            name: "task.json without \"kind\"",
            setup: |r| {
                spec(r, |j| {
                    j.remove("kind");
                })
            },
            args: TRAIN,
            expect: &["task/task.json", "`kind`"],
        },
        Case {
            name: "an unknown kind",
            setup: |r| {
                spec(r, |j| {
                    j.insert("kind".into(), "regression".into());
                })
            },
            args: TRAIN,
            expect: &["task/task.json:", "regression"],
        },
        Case {
            name: "\"fields\" is not a list",
            setup: |r| {
                spec(r, |j| {
                    j.insert("fields".into(), "country".into());
                })
            },
            args: TRAIN,
            expect: &["task/task.json:", "expected a sequence"],
        },
        Case {
            name: "the template uses a field not in \"fields\"",
            setup: |r| {
                spec(r, |j| {
                    j.insert("template".into(), "{city} is in [ANSWER]".into());
                })
            },
            args: TRAIN,
            expect: &["task/task.json", "{city}", "\"fields\""],
        },
        Case {
            name: "the task's own template does not parse",
            setup: |r| {
                spec(r, |j| {
                    j.insert("template".into(), "{country} is in [ANS]".into());
                })
            },
            args: TRAIN,
            expect: &["task/task.json", "unknown slot [ANS]"],
        },
        Case {
            name: "a classification task without a verbalizer",
            setup: |r| {
                spec(r, |j| {
                    j.remove("verbalizer");
                })
            },
            args: TRAIN,
            expect: &["task/task.json", "\"verbalizer\""],
        },
        Case {
            name: "an empty verbalizer",
            setup: |r| {
                spec(r, |j| {
                    j.insert("verbalizer".into(), serde_json::json!({}));
                })
            },
            args: TRAIN,
            expect: &["task/task.json", "verbalizer is empty"],
        },
        Case {
            name: "a label named twice in the verbalizer",
            setup: |r| {
                with_task(r);
                let text = std::fs::read_to_string(r.join("task/task.json")).unwrap();
                let text = text.replace(
                    "\"asia\": \"Asia\",",
                    "\"asia\": \"Asia\",\n    \"asia\": \"Eurasia\",",
                );
                write(r, "task/task.json", text);
            },
            args: TRAIN,
            expect: &["task/task.json", "\"asia\" twice"],
        },
        Case {
            name: "two labels with one answer text",
            setup: |r| {
                spec(r, |j| {
                    j["verbalizer"]["oceania"] = "Asia".into();
                })
            },
            args: TRAIN,
            expect: &["task/task.json", "same answer \"Asia\""],
        },
        Case {
            name: "a label with an empty answer text",
            setup: |r| {
                spec(r, |j| {
                    j["verbalizer"]["oceania"] = " ".into();
                })
            },
            args: TRAIN,
            expect: &["task/task.json", "\"oceania\" an empty answer"],
        },
        Case {
            name: "a metric that does not fit the kind",
            setup: |r| {
                spec(r, |j| {
                    j.insert("metric".into(), "exact_match".into());
                })
            },
            args: TRAIN,
            expect: &["task/task.json", "does not fit"],
        },
        Case {
            name: "an unknown metric",
            setup: |r| {
                spec(r, |j| {
                    j.insert("metric".into(), "f1".into());
                })
            },
            args: TRAIN,
            expect: &["task/task.json:", "f1"],
        },
        Case {
            name: "a JSONL line that is not JSON",
            setup: |r| {
                with_task(r);
                set_line(r, "task/dev.jsonl", 3, "{\"country\": \"Peru\", ");
            },
            args: TRAIN,
            expect: &["task/dev.jsonl:3", "invalid JSON"],
        },
        Case {
            name: "a JSONL line that is not an object",
            setup: |r| {
                with_task(r);
                set_line(r, "task/train.jsonl", 5, "[\"Peru\", \"south_america\"]");
            },
            args: TRAIN,
            expect: &["task/train.jsonl:5", "JSON object"],
        },
        Case {
            name: "a line without an input field",
            setup: |r| {
                with_task(r);
                set_line(r, "task/test.jsonl", 2, "{\"label\": \"asia\"}");
            },
            args: TRAIN,
            expect: &["task/test.jsonl:2", "missing field \"country\""],
        },
        Case {
            name: "a line without its label",
            setup: |r| {
                with_task(r);
                set_line(r, "task/train.jsonl", 7, "{\"country\": \"Peru\"}");
            },
            args: TRAIN,
            expect: &["task/train.jsonl:7", "missing field \"label\""],
        },
        Case {
            name: "an empty label",
            setup: |r| {
                with_task(r);
                set_line(
                    r,
                    "task/train.jsonl",
                    2,
                    "{\"country\": \"Peru\", \"label\": \"\"}",
                );
            },
            args: TRAIN,
            expect: &["task/train.jsonl:2", "\"label\" is empty"],
        },
        Case {
            name: "a label not in the verbalizer",
            setup: |r| {
                with_task(r);
                set_line(
                    r,
                    "task/dev.jsonl",
                    4,
                    "{\"country\": \"Mars\", \"label\": \"space\"}",
                );
            },
            args: TRAIN,
            expect: &["task/dev.jsonl:4", "\"space\"", "allowed labels"],
        },
        Case {
            name: "a field value that is not text",
            setup: |r| {
                with_task(r);
                set_line(
                    r,
                    "task/train.jsonl",
                    9,
                    "{\"country\": {\"name\": \"Peru\"}, \"label\": \"asia\"}",
                );
            },
            args: TRAIN,
            expect: &[
                "task/train.jsonl:9",
                "\"country\"",
                "string, number or boolean",
            ],
        },
        Case {
            name: "an empty split",
            setup: |r| {
                with_task(r);
                write(r, "task/dev.jsonl", "\n\n");
            },
            args: TRAIN,
            expect: &["task/dev.jsonl has no examples"],
        },
        Case {
            name: "a split file missing",
            setup: |r| {
                with_task(r);
                std::fs::remove_file(r.join("task/test.jsonl")).unwrap();
            },
            args: TRAIN,
            expect: &["task/test.jsonl is missing"],
        },
        Case {
            name: "no data files at all",
            setup: |r| {
                with_task(r);
                for s in ["train", "dev", "test"] {
                    std::fs::remove_file(r.join(format!("task/{s}.jsonl"))).unwrap();
                }
            },
            args: TRAIN,
            expect: &["task has no data"],
        },
        Case {
            name: "both data.jsonl and the split files",
            setup: |r| {
                with_task(r);
                write(r, "task/data.jsonl", "");
            },
            args: TRAIN,
            expect: &["task has both data.jsonl", "keep one layout"],
        },
        Case {
            name: "data.jsonl with an unknown split",
            setup: |r| {
                spec(r, |_| {});
                for s in ["train", "dev", "test"] {
                    std::fs::remove_file(r.join(format!("task/{s}.jsonl"))).unwrap();
                }
                write(
                    r,
                    "task/data.jsonl",
                    "{\"country\": \"Peru\", \"label\": \"south_america\", \"split\": \"train\"}\n\
                     {\"country\": \"Chad\", \"label\": \"africa\", \"split\": \"val\"}\n",
                );
            },
            args: TRAIN,
            expect: &["task/data.jsonl:2", "\"val\""],
        },
        Case {
            name: "a line that is not UTF-8",
            setup: |r| {
                with_task(r);
                let mut bytes = std::fs::read(r.join("task/train.jsonl")).unwrap();
                let third_line = bytes
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b == b'\n')
                    .nth(2)
                    .unwrap()
                    .0;
                // Latin-1 "é" on line 4, as a Windows editor would save "Réunion".
                bytes.splice(third_line + 3..third_line + 3, [0xE9]);
                write(r, "task/train.jsonl", bytes);
            },
            args: TRAIN,
            expect: &["task/train.jsonl:4", "UTF-8"],
        },
        Case {
            name: "a BOM on a JSONL file with a bad line 2",
            setup: |r| {
                with_task(r);
                let text = std::fs::read_to_string(r.join("task/dev.jsonl")).unwrap();
                write(r, "task/dev.jsonl", format!("\u{feff}{text}"));
                set_line(r, "task/dev.jsonl", 2, "{\"country\": \"Chad\"}");
            },
            args: TRAIN,
            expect: &["task/dev.jsonl:2", "missing field \"label\""],
        },
    ]);
}

/// The byte-order mark Windows editors write is not an error (issue 12): the same folder
/// loads with one on every file.
#[test]
fn a_task_folder_saved_with_byte_order_marks_loads() {
    let dir = tempfile::tempdir().unwrap();
    with_task(dir.path());
    for f in ["task.json", "train.jsonl", "dev.jsonl", "test.jsonl"] {
        let path = dir.path().join("task").join(f);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("\u{feff}{text}")).unwrap();
    }
    let task = gradprompt::task::Task::load(&dir.path().join("task")).unwrap();
    assert_eq!(task.train.len(), 100);
}
