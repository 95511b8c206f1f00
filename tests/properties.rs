//! Property tests (issue 12) for the two parsers that read what users type and write: the
//! template language (`task::template`) and the JSONL task files (`task::dataset`). Kept to 64
//! cases a property so the file runs in about a second; `PROPTEST_CASES=5000 cargo test --test
//! properties` searches harder.

use gradprompt::task::{Example, Segment, SlotRules, SoftPlacement, Task, Template};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        // Failures are reported with the shrunk input; no regression files are written into
        // the source tree.
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    }
}

// ---------------------------------------------------------------------------------------------
// Templates

/// Text that is mostly template syntax: brackets, braces, slot names, counts.
fn template_like() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("[".to_string()),
            Just("]".to_string()),
            Just("{".to_string()),
            Just("}".to_string()),
            Just("[P]".to_string()),
            Just("[T*".to_string()),
            Just("[ANSWER]".to_string()),
            Just("{country}".to_string()),
            "[PTA*0-9]{1,4}",
            "[ a-zé中\n]{1,4}",
            "[0-9]{1,25}",
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

fn field_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.é中-]{1,10}"
}

fn body_segment() -> impl Strategy<Value = Segment> {
    prop_oneof![
        any::<String>()
            .prop_filter("text is not empty", |t| !t.is_empty())
            .prop_map(Segment::Text),
        "[ {}\\[\\]a-z]{1,6}".prop_map(Segment::Text),
        field_name().prop_map(Segment::Field),
        (1..=gradprompt::task::template::MAX_REPEAT).prop_map(Segment::Soft),
        (1..=gradprompt::task::template::MAX_REPEAT).prop_map(Segment::Trigger),
    ]
}

/// A valid template in the form `parse` produces: adjacent texts merged, `[ANSWER]` last.
fn valid_template() -> impl Strategy<Value = Template> {
    proptest::collection::vec(body_segment(), 0..8).prop_map(|body| {
        let mut segments: Vec<Segment> = Vec::new();
        for s in body {
            match (segments.last_mut(), s) {
                (Some(Segment::Text(prev)), Segment::Text(t)) => prev.push_str(&t),
                (_, s) => segments.push(s),
            }
        }
        segments.push(Segment::Answer);
        Template { segments }
    })
}

fn rules() -> impl Strategy<Value = SlotRules> {
    (
        prop_oneof![
            Just(SoftPlacement::None),
            Just(SoftPlacement::StartOnly),
            Just(SoftPlacement::Anywhere)
        ],
        any::<bool>(),
        0..3usize,
        0..3usize,
    )
        .prop_map(|(soft, triggers, min_soft, min_triggers)| SlotRules {
            soft,
            triggers,
            min_soft,
            min_triggers,
            method: "a method",
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_parses_or_fails_at_a_position_within_it(
        text in prop_oneof![any::<String>(), template_like()]
    ) {
        match Template::parse(&text) {
            Ok(t) => {
                // What parsed prints back as a template that parses to the same thing.
                prop_assert_eq!(Template::parse(&t.to_string()), Ok(t));
            }
            Err(e) => {
                let len = text.chars().count();
                prop_assert!(e.position <= len, "position {} in {} characters: {}", e.position, len, e);
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn a_valid_template_round_trips_through_its_text(t in valid_template()) {
        let text = t.to_string();
        prop_assert_eq!(Template::parse(&text), Ok(t), "{:?}", text);
    }

    #[test]
    fn a_check_error_points_within_the_canonical_text(
        t in valid_template(),
        rules in rules(),
        known in proptest::collection::vec(field_name(), 0..3),
    ) {
        if let Err(e) = t.check(&rules, &known) {
            let len = t.to_string().chars().count();
            prop_assert!(e.position <= len, "position {} in {} characters: {}", e.position, len, e);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JSONL task files

/// Labels with quotes, backslashes and non-ASCII text, each with its own answer.
const LABELS: [&str; 4] = ["asia", "north \"america\"", "日本", "back\\slash"];

fn write_task(dir: &Path, train: &[u8]) {
    let verbalizer: BTreeMap<&str, String> =
        LABELS.iter().map(|l| (*l, format!("answer {l}"))).collect();
    let spec = serde_json::json!({
        "name": "props", "kind": "classification", "fields": ["country"],
        "template": "{country} is in [ANSWER]", "verbalizer": verbalizer, "metric": "accuracy",
    });
    std::fs::write(dir.join("task.json"), spec.to_string()).unwrap();
    let one = "{\"country\": \"Peru\", \"label\": \"asia\"}\n";
    std::fs::write(dir.join("dev.jsonl"), one).unwrap();
    std::fs::write(dir.join("test.jsonl"), one).unwrap();
    std::fs::write(dir.join("train.jsonl"), train).unwrap();
}

/// The line numbers a message cites as `train.jsonl:N`.
fn cited_lines(message: &str) -> Vec<usize> {
    message
        .match_indices("train.jsonl:")
        .filter_map(|(i, m)| {
            let digits: String = message[i + m.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .collect()
}

/// Lines that look like examples, broken in small ways, joined with LF or CRLF.
fn jsonl_like() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        Just("{\"country\": \"Peru\", \"label\": \"asia\"}".to_string()),
        Just("{\"country\": \"Peru\", \"label\": \"mars\"}".to_string()),
        Just("{\"label\": \"asia\"}".to_string()),
        Just("[1, 2]".to_string()),
        Just("   ".to_string()),
        Just(String::new()),
        "\\{\"country\": \"[a-z\\\\\"]{0,4}\", \"label\": \"asia\"\\}",
        "[{}\\[\\]\":, a-z0-9]{0,12}",
    ];
    (
        proptest::collection::vec(line, 0..8),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of((any::<proptest::sample::Index>(), any::<u8>())),
    )
        .prop_map(|(lines, crlf, bom, stray)| {
            let mut bytes = if bom {
                b"\xEF\xBB\xBF".to_vec()
            } else {
                Vec::new()
            };
            bytes.extend(lines.join(if crlf { "\r\n" } else { "\n" }).into_bytes());
            if let Some((at, byte)) = stray {
                let i = at.index(bytes.len() + 1);
                bytes.insert(i, byte);
            }
            bytes
        })
}

/// A string written as JSON with every non-ASCII character as a `\uXXXX` escape (surrogate
/// pairs beyond the first plane), as some tools write it.
fn ascii_json_string(s: &str) -> String {
    let plain = serde_json::to_string(s).unwrap();
    let mut out = String::new();
    for c in plain.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// One example as a JSONL line, in one of several spellings.
fn example_line(country: &str, label: &str, extra: Option<i64>, style: u8) -> String {
    let extra = extra.map(|n| format!(", \"n\": {n}")).unwrap_or_default();
    match style % 3 {
        0 => format!(
            "{{\"country\": {}, \"label\": {}{extra}}}",
            serde_json::to_string(country).unwrap(),
            serde_json::to_string(label).unwrap()
        ),
        1 => format!(
            "{{ \"label\":{}{extra} ,\t\"country\" :{} }}",
            ascii_json_string(label),
            ascii_json_string(country)
        ),
        _ => format!(
            "  {{\"country\":{},\"label\":{}{extra}}}\t",
            ascii_json_string(country),
            serde_json::to_string(label).unwrap()
        ),
    }
}

type Row = (String, usize, Option<i64>, u8, u8);

fn rows() -> impl Strategy<Value = Vec<Row>> {
    proptest::collection::vec(
        (
            any::<String>(),
            0..LABELS.len(),
            proptest::option::of(any::<i64>()),
            any::<u8>(),
            0..3u8,
        ),
        1..8,
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_load_or_fail_naming_a_line_that_exists(
        bytes in prop_oneof![proptest::collection::vec(any::<u8>(), 0..300), jsonl_like()]
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_task(dir.path(), &bytes);
        if let Err(e) = Task::load(dir.path()) {
            let message = format!("{e:#}");
            prop_assert!(message.contains("train.jsonl"), "{}", message);
            let lines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
            for n in cited_lines(&message) {
                prop_assert!((1..=lines).contains(&n), "line {} of {}: {}", n, lines, message);
            }
        }
    }

    #[test]
    fn generated_example_files_load_as_the_same_examples(
        rows in rows(),
        crlf in any::<bool>(),
        bom in any::<bool>(),
        trailing_newline in any::<bool>(),
    ) {
        let newline = if crlf { "\r\n" } else { "\n" };
        let mut text = String::new();
        if bom {
            text.push('\u{feff}');
        }
        let mut expected = Vec::new();
        for (i, (country, label, extra, style, blanks)) in rows.iter().enumerate() {
            for _ in 0..*blanks {
                text.push_str(if i % 2 == 0 { "" } else { " \t" });
                text.push_str(newline);
            }
            text.push_str(&example_line(country, LABELS[*label], *extra, *style));
            if i + 1 < rows.len() || trailing_newline {
                text.push_str(newline);
            }
            let mut fields = BTreeMap::from([("country".to_string(), country.clone())]);
            if let Some(n) = extra {
                fields.insert("n".to_string(), n.to_string());
            }
            expected.push(Example { fields, answer: LABELS[*label].to_string() });
        }
        let dir = tempfile::tempdir().unwrap();
        write_task(dir.path(), text.as_bytes());
        let task = Task::load(dir.path()).map_err(|e| TestCaseError::fail(format!("{e:#}\n{text:?}")))?;
        prop_assert_eq!(task.train, expected);
    }
}
