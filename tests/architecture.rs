//! The shape of the house, checked: modules depend on each other one way only, and the engine
//! never names the GUI toolkit. Reads the sources; builds nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The library's top-level modules, lowest first. A module may use only modules before it.
const LAYERS: [&str; 18] = [
    "atomic",
    "runtime",
    // Arithmetic on scores and seed lists, used by the front ends.
    "stats",
    "task",
    "predictions",
    "model",
    "pretrain",
    "methods",
    "run",
    "artifact",
    "train",
    "runs",
    "playground",
    "serve",
    "peft",
    "bench",
    "gui",
    // The binary's command line (src/main.rs and src/cli/) sits on top of everything.
    "cli",
];

/// Crates only the workbench may name.
const GUI_CRATES: [&str; 4] = ["egui", "eframe", "egui_plot", "rfd"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    match first.trim_end_matches(".rs") {
        "main" => "cli".to_string(),
        m => m.to_string(),
    }
}

/// The top-level modules a file names as `crate::x` (the binary's `gradprompt::x`).
fn uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for prefix in ["crate::", "gradprompt::"] {
        for (i, _) in text.match_indices(prefix) {
            let rest = &text[i + prefix.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if LAYERS.contains(&name.as_str()) {
                found.insert(name);
            }
        }
    }
    found
}

fn sources() -> Vec<(PathBuf, String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "lib.rs"))
        .map(|f| {
            let module = module_of(&src, &f);
            let text = std::fs::read_to_string(&f).unwrap();
            (f, module, text)
        })
        .collect()
}

#[test]
fn dependencies_run_one_way_from_task_and_model_up_to_the_front_ends() {
    let mut wrong = Vec::new();
    for (file, module, text) in sources() {
        let Some(level) = LAYERS.iter().position(|l| *l == module) else {
            wrong.push(format!(
                "{}: module `{module}` is not in LAYERS; place it in tests/architecture.rs",
                file.display()
            ));
            continue;
        };
        for used in uses(&text) {
            let at = LAYERS.iter().position(|l| *l == used).unwrap();
            if at > level {
                wrong.push(format!(
                    "{}: `{module}` uses `{used}`, which sits above it",
                    file.display()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_engine_never_names_the_gui_toolkit() {
    let mut wrong = Vec::new();
    for (file, module, text) in sources() {
        if module == "gui" || module == "cli" {
            continue;
        }
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            if GUI_CRATES.iter().any(|c| code.contains(&format!("{c}::"))) {
                wrong.push(format!("{}: {}", file.display(), line.trim()));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
