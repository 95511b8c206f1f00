//! Numbers out of range on the command line: refused before the model loads or a step runs,
//! naming the flag, instead of an abort on a huge allocation, a panic, or a silent rewrite to
//! a value the user did not give.

use crate::{run_cases, with_prompt, Case};
use std::path::Path;

fn nothing(_: &Path) {}

macro_rules! train_with {
    ($method:literal, $($arg:literal),+) => {
        &[
            "train", "--method", $method, "--task", concat!(env!("CARGO_MANIFEST_DIR"),
            "/sample_tasks/country-continent"), "--out", "out", $($arg),+
        ]
    };
}

#[test]
fn numbers_out_of_range_are_refused_naming_the_flag() {
    run_cases(&[
        Case {
            name: "a negative learning rate",
            setup: nothing,
            args: train_with!("prompt-tuning", "--lr=-1"),
            expect: &["--lr", "positive"],
        },
        Case {
            name: "a learning rate of zero",
            setup: nothing,
            args: train_with!("prompt-tuning", "--lr", "0"),
            expect: &["--lr"],
        },
        Case {
            name: "a learning rate that is not a number",
            setup: nothing,
            args: train_with!("prompt-tuning", "--lr", "NaN"),
            expect: &["--lr"],
        },
        Case {
            name: "an infinite learning rate",
            setup: nothing,
            args: train_with!("prompt-tuning", "--lr", "inf"),
            expect: &["--lr"],
        },
        Case {
            name: "zero steps",
            setup: nothing,
            args: train_with!("prompt-tuning", "--steps", "0"),
            expect: &["--steps", "zero-shot"],
        },
        Case {
            name: "negative steps",
            setup: nothing,
            args: train_with!("prompt-tuning", "--steps=-1"),
            expect: &["--steps"],
        },
        Case {
            name: "steps that are not a number",
            setup: nothing,
            args: train_with!("prompt-tuning", "--steps", "ten"),
            expect: &["--steps", "ten"],
        },
        Case {
            name: "a batch size of zero",
            setup: nothing,
            args: train_with!("prompt-tuning", "--batch-size", "0"),
            expect: &["--batch-size"],
        },
        Case {
            name: "a batch size of a million (was an abort on a 13.8 GB allocation)",
            setup: nothing,
            args: train_with!("prompt-tuning", "--batch-size", "1000000"),
            expect: &["--batch-size", "4096"],
        },
        Case {
            name: "the largest batch size (was a capacity-overflow panic)",
            setup: nothing,
            args: train_with!("prompt-tuning", "--batch-size", "18446744073709551615"),
            expect: &["--batch-size"],
        },
        Case {
            name: "gradient accumulation of zero",
            setup: nothing,
            args: train_with!("prompt-tuning", "--grad-accum", "0"),
            expect: &["--grad-accum"],
        },
        Case {
            name: "gradient accumulation of 2^63 (was a panic)",
            setup: nothing,
            args: train_with!(
                "prompt-tuning",
                "--batch-size",
                "2",
                "--grad-accum",
                "9223372036854775808"
            ),
            expect: &["--grad-accum"],
        },
        Case {
            name: "evaluating every 0 steps",
            setup: nothing,
            args: train_with!("prompt-tuning", "--eval-every", "0"),
            expect: &["--eval-every"],
        },
        Case {
            name: "no soft vectors for prompt tuning",
            setup: nothing,
            args: train_with!("prompt-tuning", "--num-virtual-tokens", "0"),
            expect: &["--num-virtual-tokens"],
        },
        Case {
            name: "more soft vectors than the context holds",
            setup: nothing,
            args: train_with!("prompt-tuning", "--num-virtual-tokens", "100000"),
            expect: &["train.jsonl:1", "context of 256"],
        },
        Case {
            name: "a prefix of length zero",
            setup: nothing,
            args: train_with!("prefix-tuning", "--prefix-len", "0"),
            expect: &["--prefix-len"],
        },
        Case {
            name: "a prefix longer than the context",
            setup: nothing,
            args: train_with!("prefix-tuning", "--prefix-len", "100000"),
            expect: &["100000", "context of 256"],
        },
        Case {
            name: "AutoPrompt with no trigger tokens",
            setup: nothing,
            args: train_with!("autoprompt", "--triggers", "0"),
            expect: &["--triggers", "at least 1"],
        },
        Case {
            name: "bench --seq-len 0 (was a panic inside candle)",
            setup: nothing,
            args: &["bench", "--seq-len", "0"],
            expect: &["--seq-len"],
        },
        Case {
            name: "bench --seq-len beyond the context",
            setup: nothing,
            args: &["bench", "--seq-len", "100000"],
            expect: &["--seq-len 100000", "context of 256"],
        },
        Case {
            name: "bench --batch-size 0",
            setup: nothing,
            args: &["bench", "--batch-size", "0"],
            expect: &["--batch-size"],
        },
        Case {
            name: "bench --repeats 0 (was silently 1)",
            setup: nothing,
            args: &["bench", "--repeats", "0"],
            expect: &["--repeats"],
        },
        Case {
            name: "bench --only naming no row",
            setup: nothing,
            args: &["bench", "--only", "speed"],
            expect: &["--only speed", "matmul"],
        },
        Case {
            name: "bench --task that is not there (was found only after timing every row)",
            setup: nothing,
            args: &["bench", "--task", "no-such-task", "--only", "matmul,eval"],
            expect: &["--task no-such-task", "task.json"],
        },
        Case {
            name: "inspect --k 0 (printed empty rows with exit 0)",
            setup: with_prompt,
            args: &["inspect", "--prompt", "p", "--k", "0"],
            expect: &["--k"],
        },
        Case {
            name: "generate --max-new-tokens that is not a number",
            setup: nothing,
            args: &["generate", "--prompt", "x", "--max-new-tokens=-5"],
            expect: &["--max-new-tokens"],
        },
    ]);
}

/// Method sizes: every count at least 1, and a prefix that leaves room for text.
#[test]
fn method_sizes_out_of_range_are_refused_naming_the_flag() {
    run_cases(&[
        Case {
            name: "AutoPrompt --top-k 0 (was silently 1)",
            setup: nothing,
            args: train_with!("autoprompt", "--top-k", "0", "--steps", "1"),
            expect: &["--top-k"],
        },
        Case {
            name: "AutoPrompt --candidate-rows 0",
            setup: nothing,
            args: train_with!("autoprompt", "--candidate-rows", "0"),
            expect: &["--candidate-rows"],
        },
        Case {
            name: "AutoPrompt --candidate-rows beyond a batch's bound",
            setup: nothing,
            args: train_with!("autoprompt", "--candidate-rows", "100000"),
            expect: &["--candidate-rows", "4096"],
        },
        Case {
            name: "prefix tuning --prefix-len beyond the context",
            setup: nothing,
            args: train_with!("prefix-tuning", "--prefix-len", "100000"),
            expect: &["--prefix-len", "context"],
        },
    ]);
}

/// The optimiser's settings: a clipping norm and a weight decay that mean something.
#[test]
fn optimiser_settings_out_of_range_are_refused_naming_the_flag() {
    run_cases(&[
        Case {
            name: "a negative --max-grad-norm",
            setup: nothing,
            args: train_with!("prompt-tuning", "--max-grad-norm=-1"),
            expect: &["--max-grad-norm", "0 turns clipping off"],
        },
        Case {
            name: "a --max-grad-norm that is not a number",
            setup: nothing,
            args: train_with!("fine-tuning", "--max-grad-norm", "NaN"),
            expect: &["--max-grad-norm"],
        },
        Case {
            name: "an infinite --max-grad-norm",
            setup: nothing,
            args: train_with!("prefix-tuning", "--max-grad-norm", "inf"),
            expect: &["--max-grad-norm"],
        },
        Case {
            name: "a negative --weight-decay",
            setup: nothing,
            args: train_with!("fine-tuning", "--weight-decay=-0.01"),
            expect: &["--weight-decay", "between 0 and 1"],
        },
        Case {
            name: "a --weight-decay above 1",
            setup: nothing,
            args: train_with!("p-tuning", "--weight-decay", "5"),
            expect: &["--weight-decay"],
        },
    ]);
}

/// AutoPrompt's accuracy judge ranks a classification task's labels: refused, naming the flag
/// and the fix, where there are none to rank or no AutoPrompt to judge.
#[test]
fn the_accuracy_judge_is_refused_where_there_are_no_labels_to_rank() {
    run_cases(&[
        Case {
            name: "AutoPrompt --judge accuracy on a generation task",
            setup: nothing,
            args: &[
                "train",
                "--method",
                "autoprompt",
                "--task",
                concat!(env!("CARGO_MANIFEST_DIR"), "/sample_tasks/country-capital"),
                "--out",
                "out",
                "--judge",
                "accuracy",
            ],
            expect: &["--judge accuracy", "generation task", "--judge loss"],
        },
        Case {
            name: "--judge accuracy with another method",
            setup: nothing,
            args: train_with!("prompt-tuning", "--judge", "accuracy"),
            expect: &["--judge", "--method autoprompt"],
        },
        Case {
            name: "--judge with a value that is not a judge",
            setup: nothing,
            args: train_with!("autoprompt", "--judge", "vibes"),
            expect: &["--judge", "vibes"],
        },
    ]);
}
