//! Templates given with `train --template`: syntax errors name the character where the
//! problem is, and a slot the method does not accept names the method. Nothing is trained or
//! written.

use crate::{run_cases, with_task, Case};

macro_rules! train_with {
    ($method:literal, $template:literal) => {
        &[
            "train",
            "--method",
            $method,
            "--steps",
            "1",
            "--task",
            "task",
            "--out",
            "out",
            "--template",
            $template,
        ]
    };
}

#[test]
fn bad_templates_are_refused_naming_the_position_and_the_problem() {
    run_cases(&[
        Case {
            name: "an unclosed bracket",
            setup: with_task,
            args: train_with!("p-tuning", "[P*3 {country} is in [ANSWER]"),
            expect: &["--template", "character 0", "'[' is never closed"],
        },
        Case {
            name: "an unclosed brace",
            setup: with_task,
            args: train_with!("p-tuning", "Q: {country is in [ANSWER]"),
            expect: &["--template", "character 3", "'{' is never closed"],
        },
        Case {
            name: "an unmatched closing bracket",
            setup: with_task,
            args: train_with!("p-tuning", "{country} ] is in [ANSWER]"),
            expect: &["character 10", "unmatched ']'"],
        },
        Case {
            name: "an unknown field",
            setup: with_task,
            args: train_with!("p-tuning", "[P*3] {city} is in [ANSWER]"),
            expect: &["character 6", "unknown field {city}", "country"],
        },
        Case {
            name: "an unknown slot",
            setup: with_task,
            args: train_with!("p-tuning", "[P*3] {country} is in [X] [ANSWER]"),
            expect: &["character 22", "unknown slot [X]"],
        },
        Case {
            name: "a repeat count that is not a number",
            setup: with_task,
            args: train_with!("p-tuning", "[P*x] {country} is in [ANSWER]"),
            expect: &["character 0", "whole number"],
        },
        Case {
            name: "a repeat count of zero",
            setup: with_task,
            args: train_with!("p-tuning", "{country} [P*0] is in [ANSWER]"),
            expect: &["character 10", "at least 1"],
        },
        Case {
            name: "a huge repeat count",
            setup: with_task,
            args: train_with!("p-tuning", "[P*99999] {country} is in [ANSWER]"),
            expect: &["character 0", "at most 1024"],
        },
        Case {
            name: "no [ANSWER]",
            setup: with_task,
            args: train_with!("p-tuning", "[P*3] {country} is in"),
            expect: &["no [ANSWER]"],
        },
        Case {
            name: "text after [ANSWER]",
            setup: with_task,
            args: train_with!("p-tuning", "[P*3] {country} is in [ANSWER]."),
            expect: &["character 30", "nothing may follow [ANSWER]"],
        },
        Case {
            name: "prompt tuning with a soft slot after the text",
            setup: with_task,
            args: train_with!("prompt-tuning", "{country} [P*3] is in [ANSWER]"),
            expect: &["character 10", "prompt tuning", "only at the start"],
        },
        Case {
            name: "AutoPrompt with a soft slot",
            setup: with_task,
            args: train_with!("autoprompt", "[T*3] [P] {country} is in [ANSWER]"),
            expect: &["character 6", "AutoPrompt does not use soft slots [P]"],
        },
        Case {
            name: "prefix tuning with a trigger slot",
            setup: with_task,
            args: train_with!("prefix-tuning", "[T] {country} is in [ANSWER]"),
            expect: &[
                "character 0",
                "prefix tuning does not use trigger slots [T]",
            ],
        },
        Case {
            name: "P-Tuning with a trigger slot",
            setup: with_task,
            args: train_with!("p-tuning", "[P*3] {country} [T] is in [ANSWER]"),
            expect: &["does not use trigger slots [T]"],
        },
    ]);
}
