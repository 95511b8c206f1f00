//! Scoring answers.
//!
//! A generated answer is the text greedy decoding produced before its end: the model's
//! end-of-sequence token (which ends decoding and is never text) or the task's `"stop"` text
//! ([`text_before_stop`]). Exact match compares that text with the gold answer, both
//! whitespace-trimmed, and nothing else: the model is trained to produce the answer and then
//! its end, so it is asked to do exactly that.
//!
//! Gone on purpose (they made up for targets that never taught where an answer ends): keeping
//! only the first line, cutting at the first sentence break (which also cut right answers such
//! as "Washington, D.C."), case-folding and stripping quotes and trailing punctuation, and a
//! decoding budget of the gold answer's length + 4 tokens (which peeked at the answer).

use super::dataset::AnswerEnd;

/// The part of a decoded continuation that is the answer: everything before the first
/// occurrence of the task's stop text (all of it when the answer ends with EOS, which decoding
/// never turns into text).
pub fn text_before_stop<'a>(text: &'a str, end: &AnswerEnd) -> &'a str {
    match end {
        AnswerEnd::Stop(stop) if !stop.is_empty() => {
            text.find(stop.as_str()).map_or(text, |i| &text[..i])
        }
        _ => text,
    }
}

/// Whether a predicted answer (the text before its stop) is the gold answer, both
/// whitespace-trimmed.
pub fn exact_match(pred: &str, gold: &str) -> bool {
    pred.trim() == gold.trim()
}

/// `correct / total`, or 0.0 when there is nothing to score.
pub fn accuracy(correct: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        correct as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_the_text_before_the_declared_stop() {
        let stop = AnswerEnd::Stop("\n".into());
        assert_eq!(text_before_stop(" Paris\nThe capital", &stop), " Paris");
        assert_eq!(text_before_stop(" Paris", &stop), " Paris");
        // With EOS as the end, decoding stopped at it and all the text is the answer.
        assert_eq!(
            text_before_stop(" Paris\nThe capital", &AnswerEnd::Eos),
            " Paris\nThe capital"
        );
    }

    #[test]
    fn exact_match_trims_whitespace_and_nothing_else() {
        assert!(exact_match(" Paris\n", "Paris"));
        assert!(exact_match("Washington, D.C.", "Washington, D.C."));
        // The old heuristics passed these; an answer that runs on, or is cased or punctuated
        // otherwise, is not the answer.
        assert!(!exact_match("Paris. It is also the largest city", "Paris"));
        assert!(!exact_match("paris", "Paris"));
        assert!(!exact_match("\"Paris.\"", "Paris"));
        assert!(!exact_match("Bogota", "Bogotá"));
    }

    #[test]
    fn accuracy_handles_empty() {
        assert_eq!(accuracy(0, 0), 0.0);
        assert_eq!(accuracy(3, 4), 0.75);
    }
}
