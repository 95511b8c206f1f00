//! Task folders: the task description and its train/dev/test examples.
//!
//! A task folder holds `task.json` and either
//! - three files `train.jsonl`, `dev.jsonl`, `test.jsonl`, or
//! - one file `data.jsonl` where every line also has `"split": "train" | "dev" | "test"`.
//!
//! `task.json`:
//! ```json
//! {"name": "country-continent", "description": "...", "kind": "classification",
//!  "fields": ["country"], "template": "{country} is a country in the continent of [ANSWER]",
//!  "verbalizer": {"africa": "Africa", "europe": "Europe"}, "metric": "accuracy", "notes": ""}
//! ```
//! `kind` is `classification` (each line has a `label`, which must be a key of `verbalizer`;
//! the verbalizer maps it to the answer text the model is scored on) or `generation` (each
//! line has a `target`, the exact answer text; metric `exact_match`). Every other key of a line
//! is an input field; each name in `fields` must be present. Numbers and booleans are accepted
//! as field values and read as text. Blank lines are skipped. Unknown keys in `task.json` are
//! ignored.
//!
//! A generation task may also say how its answers end and how long they may be:
//! - `"stop"`: a text that ends every answer (e.g. `"\n"`). Training appends it to each target
//!   and greedy decoding stops where it first appears. Without it the answer ends with the
//!   model's own end-of-sequence token ([`AnswerEnd::Eos`]), which is what a model that saw the
//!   target then EOS in training learns to produce;
//! - `"max_new_tokens"`: the decoding budget (default [`DEFAULT_MAX_NEW_TOKENS`]). It is fixed
//!   per task, never taken from the gold answer, so the metric cannot peek at the answer.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::template::Template;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Classification,
    Generation,
}

impl TaskKind {
    /// The name used in task.json.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Classification => "classification",
            TaskKind::Generation => "generation",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Accuracy,
    ExactMatch,
}

impl Metric {
    /// The name used in task.json, manifests and reports.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::ExactMatch => "exact_match",
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The contents of `task.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub kind: TaskKind,
    pub fields: Vec<String>,
    pub template: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unique_keys"
    )]
    pub verbalizer: Option<BTreeMap<String, String>>,
    pub metric: Metric,
    #[serde(default)]
    pub notes: String,
    /// Generation only: the text that ends every answer (see the module docs); None: the
    /// model's end-of-sequence token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    /// Generation only: the most tokens greedy decoding may produce (default
    /// [`DEFAULT_MAX_NEW_TOKENS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_new_tokens: Option<usize>,
}

/// The decoding budget of a generation task that names none: ample for the sample tasks'
/// answers (at most 6 tokens on SmolLM2 and on the built-in model) and for a few words more.
pub const DEFAULT_MAX_NEW_TOKENS: usize = 32;

/// The largest `max_new_tokens` a task may ask for (a typo like 320000 is refused, not run).
pub const MAX_MAX_NEW_TOKENS: usize = 4096;

/// How an answer ends: what follows it in training and where greedy decoding stops. Recorded
/// in a saved prompt's manifest (`artifact::Manifest::answer_end`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerEnd {
    /// The model's end-of-sequence token follows the answer (a generation task without
    /// `"stop"`). The id comes from the model (`Config::eos_token_id`), not from the task.
    Eos,
    /// This text follows the answer (a generation task's `"stop"`).
    Stop(String),
    /// Nothing follows the answer: a classification task's label words, which are ranked, not
    /// generated; and a generation prompt saved before gradprompt marked answer ends (trained
    /// without an end marker, then scored by its first line and clause within the gold
    /// answer's length + 4 tokens).
    #[default]
    Unmarked,
}

/// One example: its input fields and its answer (the label key for classification, the
/// target text for generation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub fields: BTreeMap<String, String>,
    pub answer: String,
}

/// A loaded task folder.
#[derive(Debug, Clone)]
pub struct Task {
    pub spec: TaskSpec,
    pub dir: PathBuf,
    pub train: Vec<Example>,
    pub dev: Vec<Example>,
    pub test: Vec<Example>,
    /// Where each example was read from, for errors found after loading.
    pub origins: Origins,
}

/// The file and line of every example, by split (empty for a task built in memory).
#[derive(Debug, Clone, Default)]
pub struct Origins {
    files: [PathBuf; 3],
    lines: [Vec<usize>; 3],
}

const SPLITS: [&str; 3] = ["train", "dev", "test"];

/// One of a task's three splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Dev,
    Test,
}

impl Split {
    /// The split's name, as in its file name (`train.jsonl`).
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }
}

impl Task {
    /// Where example `index` of `split` came from: `file:line` when the task was loaded from a
    /// folder, else its task, split and number.
    pub fn origin(&self, split: Split, index: usize) -> String {
        let s = split as usize;
        match self.origins.lines[s].get(index) {
            Some(line) => format!("{}:{line}", self.origins.files[s].display()),
            None => format!("{} {} example {}", self.spec.name, split.name(), index + 1),
        }
    }

    pub fn examples(&self, split: Split) -> &[Example] {
        match split {
            Split::Train => &self.train,
            Split::Dev => &self.dev,
            Split::Test => &self.test,
        }
    }

    /// Loads and validates a task folder (see the module docs for the layout).
    pub fn load(dir: &Path) -> Result<Task> {
        let spec_path = dir.join("task.json");
        let spec = load_spec(&spec_path)?;
        let split_files: Vec<PathBuf> = SPLITS
            .iter()
            .map(|s| dir.join(format!("{s}.jsonl")))
            .collect();
        let data_path = dir.join("data.jsonl");
        let any_split_file = split_files.iter().any(|p| p.exists());

        let mut origins = Origins::default();
        let [train, dev, test] = if any_split_file {
            if data_path.exists() {
                bail!(
                    "{} has both data.jsonl and train/dev/test.jsonl; keep one layout",
                    dir.display()
                );
            }
            let mut load = |s: usize| -> Result<Vec<Example>> {
                let path = &split_files[s];
                if !path.exists() {
                    bail!(
                        "{} is missing (a task needs train, dev and test)",
                        path.display()
                    );
                }
                let lines = read_lines(path)?;
                let examples = lines
                    .iter()
                    .map(|(n, v)| parse_example(&spec, path, *n, v))
                    .collect::<Result<Vec<_>>>()?;
                if examples.is_empty() {
                    bail!("{} has no examples", path.display());
                }
                origins.files[s] = path.clone();
                origins.lines[s] = lines.iter().map(|(n, _)| *n).collect();
                Ok(examples)
            };
            [load(0)?, load(1)?, load(2)?]
        } else if data_path.exists() {
            let (splits, lines) = load_single_file(&spec, &data_path)?;
            origins.files = [data_path.clone(), data_path.clone(), data_path.clone()];
            origins.lines = lines;
            splits
        } else {
            bail!(
                "{} has no data: expected train.jsonl, dev.jsonl and test.jsonl, or data.jsonl",
                dir.display()
            );
        };
        Ok(Task {
            spec,
            dir: dir.to_path_buf(),
            train,
            dev,
            test,
            origins,
        })
    }

    /// The label keys in a fixed (sorted) order; empty for generation tasks.
    pub fn labels(&self) -> Vec<String> {
        match (&self.spec.kind, &self.spec.verbalizer) {
            (TaskKind::Classification, Some(v)) => v.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Each label's answer as a method's initialisation sees it after the template: a space,
    /// then the verbalizer's word (empty for generation tasks).
    pub fn label_answers(&self) -> Vec<String> {
        self.labels()
            .iter()
            .map(|l| format!(" {}", self.answer_text(l)))
            .collect()
    }

    /// The text the model should produce for `label`: the verbalizer's word for a
    /// classification label, the label itself otherwise (generation targets are already text).
    pub fn answer_text<'a>(&'a self, label: &'a str) -> &'a str {
        match (&self.spec.kind, &self.spec.verbalizer) {
            (TaskKind::Classification, Some(v)) => {
                v.get(label).map(String::as_str).unwrap_or(label)
            }
            _ => label,
        }
    }

    /// How this task's answers end (see [`AnswerEnd`]).
    pub fn answer_end(&self) -> AnswerEnd {
        match (&self.spec.kind, &self.spec.stop) {
            (TaskKind::Classification, _) => AnswerEnd::Unmarked,
            (TaskKind::Generation, Some(stop)) => AnswerEnd::Stop(stop.clone()),
            (TaskKind::Generation, None) => AnswerEnd::Eos,
        }
    }

    /// The decoding budget for this task's answers (0 for classification, which decodes nothing).
    pub fn max_new_tokens(&self) -> usize {
        match self.spec.kind {
            TaskKind::Classification => 0,
            TaskKind::Generation => self.spec.max_new_tokens.unwrap_or(DEFAULT_MAX_NEW_TOKENS),
        }
    }

    /// The task's own template, parsed.
    pub fn template(&self) -> Result<Template> {
        Template::parse(&self.spec.template)
            .with_context(|| format!("template of task {:?}", self.spec.name))
    }
}

/// A JSON object whose keys must be unique: serde_json keeps the last of two equal keys
/// silently, which would drop a label the user wrote.
fn unique_keys<'de, D>(d: D) -> std::result::Result<Option<BTreeMap<String, String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Visit;
    impl<'de> serde::de::Visitor<'de> for Visit {
        type Value = Option<BTreeMap<String, String>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object mapping each label to its answer text")
        }
        fn visit_none<E>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, v)) = map.next_entry::<String, String>()? {
                if out.contains_key(&k) {
                    return Err(serde::de::Error::custom(format!(
                        "the verbalizer names label {k:?} twice"
                    )));
                }
                out.insert(k, v);
            }
            Ok(Some(out))
        }
    }
    d.deserialize_option(Visit)
}

/// A text file as UTF-8, without a leading byte-order mark (editors on Windows write one).
/// Invalid UTF-8 is reported with its line.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_string()),
        Err(e) => {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            bail!(
                "{}:{line}: not valid UTF-8 (byte {}); save the file as UTF-8",
                path.display(),
                e.valid_up_to() + 1
            )
        }
    }
}

fn load_spec(path: &Path) -> Result<TaskSpec> {
    let text = read_text(path)?;
    let spec: TaskSpec = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), e.line()))?;
    if spec.kind == TaskKind::Classification {
        match &spec.verbalizer {
            None => bail!(
                "{}: a classification task needs a \"verbalizer\" mapping each label to its answer text",
                path.display()
            ),
            Some(v) if v.is_empty() => bail!("{}: the verbalizer is empty", path.display()),
            Some(v) => {
                if let Some((label, _)) = v.iter().find(|(_, text)| text.trim().is_empty()) {
                    bail!("{}: the verbalizer gives label {label:?} an empty answer", path.display());
                }
                // Two labels with one answer text could never be told apart by the model.
                let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
                for (label, text) in v {
                    if let Some(other) = seen.insert(text.trim(), label) {
                        bail!(
                            "{}: the verbalizer gives labels {other:?} and {label:?} the same answer {:?}; give each label its own answer text",
                            path.display(),
                            text.trim()
                        );
                    }
                }
            }
        }
    }
    let fits = match spec.kind {
        TaskKind::Classification => Metric::Accuracy,
        TaskKind::Generation => Metric::ExactMatch,
    };
    if spec.metric != fits {
        bail!(
            "{}: \"metric\": {:?} does not fit \"kind\": {:?}; a {} task is scored by {:?}",
            path.display(),
            spec.metric.name(),
            spec.kind.name(),
            spec.kind.name(),
            fits.name()
        );
    }
    if spec.kind == TaskKind::Classification {
        for key in ["stop", "max_new_tokens"] {
            let given = match key {
                "stop" => spec.stop.is_some(),
                _ => spec.max_new_tokens.is_some(),
            };
            if given {
                bail!(
                    "{}: \"{key}\" is for generation tasks; a classification task ranks its labels and generates nothing",
                    path.display()
                );
            }
        }
    }
    if spec.stop.as_deref() == Some("") {
        bail!(
            "{}: \"stop\" is empty; give the text that ends every answer (e.g. \"\\n\"), or leave the key out to end answers with the model's end-of-sequence token",
            path.display()
        );
    }
    if let Some(n) = spec.max_new_tokens {
        if !(1..=MAX_MAX_NEW_TOKENS).contains(&n) {
            bail!(
                "{}: \"max_new_tokens\" is {n}; it must be between 1 and {MAX_MAX_NEW_TOKENS}",
                path.display()
            );
        }
    }
    let template =
        Template::parse(&spec.template).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if let Some(f) = template
        .fields()
        .into_iter()
        .find(|f| !spec.fields.contains(f))
    {
        bail!(
            "{}: the template uses {{{f}}}, which is not in \"fields\" ({})",
            path.display(),
            spec.fields.join(", ")
        );
    }
    Ok(spec)
}

/// Non-blank lines parsed as JSON, with their 1-based line numbers.
fn read_lines(path: &Path) -> Result<Vec<(usize, Value)>> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("{}:{}: invalid JSON: {e}", path.display(), i + 1))?;
        out.push((i + 1, value));
    }
    Ok(out)
}

/// The three splits of a `data.jsonl`, with each example's line.
type SplitsWithLines = ([Vec<Example>; 3], [Vec<usize>; 3]);

fn load_single_file(spec: &TaskSpec, path: &Path) -> Result<SplitsWithLines> {
    let mut splits: [Vec<Example>; 3] = Default::default();
    let mut lines: [Vec<usize>; 3] = Default::default();
    for (line, value) in read_lines(path)? {
        let split = match value.get("split") {
            Some(Value::String(s)) => s.as_str(),
            Some(other) => bail!(
                "{}:{line}: \"split\" must be \"train\", \"dev\" or \"test\", found {other}",
                path.display()
            ),
            None => bail!("{}:{line}: missing field \"split\"", path.display()),
        };
        let Some(index) = SPLITS.iter().position(|s| *s == split) else {
            bail!(
                "{}:{line}: \"split\" must be \"train\", \"dev\" or \"test\", found {split:?}",
                path.display()
            );
        };
        splits[index].push(parse_example(spec, path, line, &value)?);
        lines[index].push(line);
    }
    for (name, examples) in SPLITS.iter().zip(&splits) {
        if examples.is_empty() {
            bail!(
                "{} has no examples with \"split\": {name:?}",
                path.display()
            );
        }
    }
    Ok((splits, lines))
}

fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_example(spec: &TaskSpec, path: &Path, line: usize, value: &Value) -> Result<Example> {
    let at = format!("{}:{line}", path.display());
    let Value::Object(map) = value else {
        bail!("{at}: each line must be a JSON object, found {value}");
    };
    let answer_key = match spec.kind {
        TaskKind::Classification => "label",
        TaskKind::Generation => "target",
    };
    let mut fields = BTreeMap::new();
    let mut answer = None;
    for (key, v) in map {
        if key == "split" {
            continue;
        }
        let Some(text) = value_text(v) else {
            bail!("{at}: field {key:?} must be a string, number or boolean, found {v}");
        };
        if key == answer_key {
            answer = Some(text);
        } else if key != "label" && key != "target" {
            fields.insert(key.clone(), text);
        }
    }
    let Some(answer) = answer else {
        bail!("{at}: missing field {answer_key:?}");
    };
    if answer.trim().is_empty() {
        bail!("{at}: {answer_key:?} is empty");
    }
    if let Some(missing) = spec.fields.iter().find(|f| !fields.contains_key(*f)) {
        bail!("{at}: missing field {missing:?}");
    }
    if let Some(verbalizer) = spec.verbalizer.as_ref().filter(|_| answer_key == "label") {
        if !verbalizer.contains_key(&answer) {
            let allowed: Vec<&str> = verbalizer.keys().map(String::as_str).collect();
            bail!(
                "{at}: label {answer:?} is not in the verbalizer; allowed labels: {}",
                allowed.join(", ")
            );
        }
    }
    Ok(Example { fields, answer })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const CLS_SPEC: &str = r#"{"name": "cc", "description": "d", "kind": "classification",
        "fields": ["country"], "template": "{country} is in [ANSWER]",
        "verbalizer": {"europe": "Europe", "africa": "Africa"}, "metric": "accuracy",
        "extra_key": 1}"#;
    const GEN_SPEC: &str = r#"{"name": "cap", "description": "d", "kind": "generation",
        "fields": ["country"], "template": "The capital of {country} is [ANSWER]",
        "metric": "exact_match", "notes": "free text"}"#;

    fn folder(spec: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("task.json"), spec).unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    const OK_TRAIN: &str = "{\"country\": \"France\", \"label\": \"europe\"}\n\n{\"country\": \"Mali\", \"label\": \"africa\"}\n";
    const OK_ONE: &str = "{\"country\": \"Spain\", \"label\": \"europe\"}\n";

    fn load_err(spec: &str, files: &[(&str, &str)]) -> String {
        let dir = folder(spec, files);
        format!("{:#}", Task::load(dir.path()).unwrap_err())
    }

    #[test]
    fn loads_classification_task() {
        let dir = folder(
            CLS_SPEC,
            &[
                ("train.jsonl", OK_TRAIN),
                ("dev.jsonl", OK_ONE),
                ("test.jsonl", OK_ONE),
            ],
        );
        let task = Task::load(dir.path()).unwrap();
        assert_eq!(task.spec.kind, TaskKind::Classification);
        assert_eq!(task.spec.metric, Metric::Accuracy);
        assert_eq!(task.spec.notes, "");
        assert_eq!(task.train.len(), 2);
        assert_eq!(task.train[1].fields["country"], "Mali");
        assert_eq!(task.train[1].answer, "africa");
        assert_eq!(
            task.labels(),
            vec!["africa".to_string(), "europe".to_string()]
        );
        assert_eq!(task.answer_text("europe"), "Europe");
        assert_eq!(
            task.template().unwrap().fields(),
            vec!["country".to_string()]
        );
    }

    #[test]
    fn loads_generation_task_with_numbers_and_bools() {
        let line = "{\"country\": 42, \"flag\": true, \"target\": 7}\n";
        let dir = folder(
            GEN_SPEC,
            &[
                ("train.jsonl", line),
                ("dev.jsonl", line),
                ("test.jsonl", line),
            ],
        );
        let task = Task::load(dir.path()).unwrap();
        assert_eq!(task.spec.metric, Metric::ExactMatch);
        assert_eq!(task.spec.notes, "free text");
        let ex = &task.test[0];
        assert_eq!(ex.fields["country"], "42");
        assert_eq!(ex.fields["flag"], "true");
        assert_eq!(ex.answer, "7");
        assert!(task.labels().is_empty());
        assert_eq!(task.answer_text("Paris"), "Paris");
    }

    #[test]
    fn a_generation_task_ends_answers_with_eos_unless_it_declares_a_stop() {
        let line = "{\"country\": \"France\", \"target\": \"Paris\"}\n";
        let files = [
            ("train.jsonl", line),
            ("dev.jsonl", line),
            ("test.jsonl", line),
        ];
        let dir = folder(GEN_SPEC, &files);
        let task = Task::load(dir.path()).unwrap();
        assert_eq!(task.answer_end(), AnswerEnd::Eos);
        assert_eq!(task.max_new_tokens(), DEFAULT_MAX_NEW_TOKENS);
        let spec = GEN_SPEC.replace(
            "\"notes\"",
            "\"stop\": \"\\n\", \"max_new_tokens\": 8, \"notes\"",
        );
        let dir = folder(&spec, &files);
        let task = Task::load(dir.path()).unwrap();
        assert_eq!(task.answer_end(), AnswerEnd::Stop("\n".into()));
        assert_eq!(task.max_new_tokens(), 8);
        let cls = folder(
            CLS_SPEC,
            &[
                ("train.jsonl", OK_TRAIN),
                ("dev.jsonl", OK_ONE),
                ("test.jsonl", OK_ONE),
            ],
        );
        assert_eq!(
            Task::load(cls.path()).unwrap().answer_end(),
            AnswerEnd::Unmarked
        );
    }

    #[test]
    fn a_stop_or_budget_that_cannot_work_is_refused_naming_the_key() {
        let e = load_err(
            &GEN_SPEC.replace("\"notes\"", "\"stop\": \"\", \"notes\""),
            &[],
        );
        assert!(e.contains("\"stop\" is empty"), "{e}");
        let e = load_err(
            &GEN_SPEC.replace("\"notes\"", "\"max_new_tokens\": 0, \"notes\""),
            &[],
        );
        assert!(e.contains("\"max_new_tokens\" is 0"), "{e}");
        let e = load_err(
            &CLS_SPEC.replace("\"extra_key\"", "\"stop\": \".\", \"extra_key\""),
            &[],
        );
        assert!(e.contains("\"stop\" is for generation tasks"), "{e}");
    }

    #[test]
    fn loads_single_data_file() {
        let data = "{\"country\": \"France\", \"label\": \"europe\", \"split\": \"train\"}\n\
                    {\"country\": \"Mali\", \"label\": \"africa\", \"split\": \"dev\"}\n\
                    {\"country\": \"Chad\", \"label\": \"africa\", \"split\": \"test\"}\n\
                    {\"country\": \"Peru\", \"label\": \"europe\", \"split\": \"train\"}\n";
        let dir = folder(CLS_SPEC, &[("data.jsonl", data)]);
        let task = Task::load(dir.path()).unwrap();
        assert_eq!(
            (task.train.len(), task.dev.len(), task.test.len()),
            (2, 1, 1)
        );
        assert!(!task.train[0].fields.contains_key("split"));
        assert_eq!(task.test[0].fields["country"], "Chad");

        let e = load_err(
            CLS_SPEC,
            &[(
                "data.jsonl",
                "{\"country\": \"F\", \"label\": \"europe\", \"split\": \"val\"}\n",
            )],
        );
        assert!(e.contains("data.jsonl:1") && e.contains("\"val\""), "{e}");
        let e = load_err(
            CLS_SPEC,
            &[(
                "data.jsonl",
                "{\"country\": \"F\", \"label\": \"europe\", \"split\": \"train\"}\n",
            )],
        );
        assert!(e.contains("data.jsonl") && e.contains("\"dev\""), "{e}");
        let e = load_err(CLS_SPEC, &[("data.jsonl", OK_ONE)]);
        assert!(e.contains("data.jsonl:1") && e.contains("\"split\""), "{e}");
    }

    #[test]
    fn malformed_json_names_file_and_line() {
        let bad = "{\"country\": \"France\", \"label\": \"europe\"}\n\n{\"country\": \n";
        let e = load_err(
            CLS_SPEC,
            &[
                ("train.jsonl", bad),
                ("dev.jsonl", OK_ONE),
                ("test.jsonl", OK_ONE),
            ],
        );
        assert!(e.contains("train.jsonl:3: invalid JSON"), "{e}");
        let e = load_err(
            CLS_SPEC,
            &[
                ("train.jsonl", "[1, 2]\n"),
                ("dev.jsonl", OK_ONE),
                ("test.jsonl", OK_ONE),
            ],
        );
        assert!(
            e.contains("train.jsonl:1") && e.contains("JSON object"),
            "{e}"
        );
    }

    #[test]
    fn missing_field_names_file_line_and_field() {
        let e = load_err(
            CLS_SPEC,
            &[
                ("train.jsonl", OK_TRAIN),
                ("dev.jsonl", "{\"label\": \"europe\"}\n"),
                ("test.jsonl", OK_ONE),
            ],
        );
        assert!(
            e.contains("dev.jsonl:1") && e.contains("missing field \"country\""),
            "{e}"
        );
        let e = load_err(
            CLS_SPEC,
            &[
                ("train.jsonl", OK_TRAIN),
                ("dev.jsonl", OK_ONE),
                ("test.jsonl", "\n{\"country\": \"X\"}\n"),
            ],
        );
        assert!(
            e.contains("test.jsonl:2") && e.contains("missing field \"label\""),
            "{e}"
        );
        let e = load_err(
            GEN_SPEC,
            &[
                ("train.jsonl", OK_ONE),
                ("dev.jsonl", OK_ONE),
                ("test.jsonl", OK_ONE),
            ],
        );
        assert!(
            e.contains("train.jsonl:1") && e.contains("missing field \"target\""),
            "{e}"
        );
        let e = load_err(
            CLS_SPEC,
            &[
                ("train.jsonl", "{\"country\": null, \"label\": \"europe\"}"),
                ("dev.jsonl", OK_ONE),
                ("test.jsonl", OK_ONE),
            ],
        );
        assert!(
            e.contains("train.jsonl:1") && e.contains("\"country\""),
            "{e}"
        );
    }

    #[test]
    fn unknown_label_lists_allowed_labels() {
        let e = load_err(
            CLS_SPEC,
            &[
                ("train.jsonl", OK_TRAIN),
                ("dev.jsonl", OK_ONE),
                (
                    "test.jsonl",
                    "{\"country\": \"Japan\", \"label\": \"asia\"}\n",
                ),
            ],
        );
        assert!(e.contains("test.jsonl:1"), "{e}");
        assert!(
            e.contains("\"asia\"") && e.contains("africa, europe"),
            "{e}"
        );
    }

    #[test]
    fn spec_errors_name_task_json() {
        let no_verbalizer = CLS_SPEC.replace("\"verbalizer\"", "\"other\"");
        let e = load_err(&no_verbalizer, &[]);
        assert!(e.contains("task.json") && e.contains("verbalizer"), "{e}");
        let e = load_err("{\"name\": \"x\",", &[]);
        assert!(e.contains("task.json:1"), "{e}");
        let e = load_err(&CLS_SPEC.replace("\"kind\": \"classification\",", ""), &[]);
        assert!(e.contains("task.json") && e.contains("kind"), "{e}");
        let e = load_err(&CLS_SPEC.replace("[ANSWER]", "[ANS]"), &[]);
        assert!(
            e.contains("task.json") && e.contains("unknown slot [ANS]"),
            "{e}"
        );
        let e = load_err(&CLS_SPEC.replace("{country} is", "{city} is"), &[]);
        assert!(e.contains("task.json") && e.contains("{city}"), "{e}");
    }

    #[test]
    fn empty_or_missing_split_is_an_error() {
        let e = load_err(
            CLS_SPEC,
            &[
                ("train.jsonl", OK_TRAIN),
                ("dev.jsonl", "\n\n"),
                ("test.jsonl", OK_ONE),
            ],
        );
        assert!(e.contains("dev.jsonl has no examples"), "{e}");
        let e = load_err(
            CLS_SPEC,
            &[("train.jsonl", OK_TRAIN), ("dev.jsonl", OK_ONE)],
        );
        assert!(e.contains("test.jsonl is missing"), "{e}");
        let e = load_err(CLS_SPEC, &[]);
        assert!(e.contains("has no data"), "{e}");
    }

    #[test]
    fn a_byte_order_mark_at_the_start_of_a_file_is_accepted() {
        let bom = |t: &str| format!("\u{feff}{t}");
        let (spec, train, one) = (bom(CLS_SPEC), bom(OK_TRAIN), bom(OK_ONE));
        let dir = folder(
            &spec,
            &[
                ("train.jsonl", &train),
                ("dev.jsonl", &one),
                ("test.jsonl", &one),
            ],
        );
        let task = Task::load(dir.path()).unwrap();
        assert_eq!((task.train.len(), task.spec.name.as_str()), (2, "cc"));
    }

    #[test]
    fn invalid_utf8_names_the_file_and_line() {
        let dir = folder(CLS_SPEC, &[("dev.jsonl", OK_ONE), ("test.jsonl", OK_ONE)]);
        let mut bytes = OK_TRAIN.as_bytes().to_vec();
        bytes.extend_from_slice(b"{\"country\": \"\xff\", \"label\": \"europe\"}\n");
        fs::write(dir.path().join("train.jsonl"), bytes).unwrap();
        let e = format!("{:#}", Task::load(dir.path()).unwrap_err());
        assert!(e.contains("train.jsonl:4") && e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn a_label_named_twice_in_the_verbalizer_is_refused() {
        let spec = CLS_SPEC.replace(
            r#""africa": "Africa"}"#,
            r#""africa": "Africa", "europe": "Asia"}"#,
        );
        let e = load_err(&spec, &[]);
        assert!(
            e.contains("task.json") && e.contains("\"europe\" twice"),
            "{e}"
        );
    }

    #[test]
    fn two_labels_with_one_answer_text_are_refused() {
        let spec = CLS_SPEC.replace(r#""Africa"}"#, r#""Europe "}"#);
        let e = load_err(&spec, &[]);
        assert!(e.contains("task.json") && e.contains("same answer"), "{e}");
    }

    #[test]
    fn a_metric_that_does_not_fit_the_kind_is_refused() {
        let e = load_err(&CLS_SPEC.replace("\"accuracy\"", "\"exact_match\""), &[]);
        assert!(e.contains("task.json") && e.contains("\"accuracy\""), "{e}");
        let e = load_err(&GEN_SPEC.replace("\"exact_match\"", "\"accuracy\""), &[]);
        assert!(
            e.contains("does not fit") && e.contains("\"exact_match\""),
            "{e}"
        );
    }

    #[test]
    fn loads_the_sample_tasks() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_tasks");
        let Ok(entries) = fs::read_dir(&root) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.path().join("task.json").exists() {
                let task = Task::load(&entry.path()).unwrap();
                assert!(!task.train.is_empty(), "{}", entry.path().display());
            }
        }
    }
}
