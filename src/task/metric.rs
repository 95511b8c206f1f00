//! Scoring answers.
//!
//! Exact match compares answers after normalisation, so that formatting a model adds around
//! a correct answer is not counted as wrong. [`normalize_answer`] does, in order:
//! 1. trim surrounding whitespace;
//! 2. keep only the first line, and in it only the text before the first sentence break
//!    (`.` `!` `?` `;` `,` followed by a space): the instruct model often runs on after the
//!    answer (`Paris. It is also...`). Answers containing such a break (e.g. "Washington, D.C.")
//!    would be cut too; the sample tasks avoid them;
//! 3. case-fold (`Paris` = `paris`);
//! 4. strip, repeatedly, trailing `.` `,` `!` `?` and surrounding quotes
//!    (`"` `'` `` ` `` `“` `”` `‘` `’`), so `"Paris."` = `Paris`;
//! 5. collapse runs of internal whitespace to one space (`New  York` = `New York`).
//!
//! Nothing else is changed: articles, inner punctuation and accents still count
//! (`Bogotá` ≠ `Bogota`).

const QUOTES: &[char] = &[
    '"', '\'', '`', '\u{201C}', '\u{201D}', '\u{2018}', '\u{2019}',
];
const TRAILING_PUNCTUATION: &[char] = &['.', ',', '!', '?', ';'];

/// Normalises an answer for exact-match comparison (see the module docs).
pub fn normalize_answer(text: &str) -> String {
    let first_line = text.trim().lines().next().unwrap_or("");
    let first_clause = first_line
        .char_indices()
        .find(|&(i, c)| {
            matches!(c, '.' | '!' | '?' | ';' | ',') && first_line[i + 1..].starts_with(' ')
        })
        .map(|(i, _)| &first_line[..i])
        .unwrap_or(first_line);
    let folded = first_clause.to_lowercase();
    let mut s = folded.as_str();
    loop {
        let stripped = s
            .trim()
            .trim_end_matches(TRAILING_PUNCTUATION)
            .trim_start_matches(QUOTES)
            .trim_end_matches(QUOTES);
        if stripped == s {
            break;
        }
        s = stripped;
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether a predicted answer equals the gold answer after [`normalize_answer`].
pub fn exact_match(pred: &str, gold: &str) -> bool {
    normalize_answer(pred) == normalize_answer(gold)
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
    fn normalizes() {
        assert_eq!(
            normalize_answer("  Paris.\nThe capital of Italy is Rome."),
            "paris"
        );
        assert_eq!(normalize_answer("\"Paris.\""), "paris");
        assert_eq!(normalize_answer("\u{201C}Paris\u{201D}!"), "paris");
        assert_eq!(normalize_answer("'New   York',"), "new york");
        assert_eq!(normalize_answer("Bogotá?!"), "bogotá");
        assert_eq!(normalize_answer("\n\n  Lima"), "lima");
        assert_eq!(
            normalize_answer("Paris. It is also the largest city"),
            "paris"
        );
        assert_eq!(normalize_answer("hot; the opposite"), "hot");
        assert_eq!(normalize_answer(""), "");
        assert_eq!(normalize_answer("..."), "");
    }

    #[test]
    fn exact_match_uses_normalization() {
        assert!(exact_match(" Paris.\n", "Paris"));
        assert!(exact_match("north  america", "North America"));
        assert!(!exact_match("Bogota", "Bogotá"));
        assert!(exact_match("Paris, which is in France", "Paris"));
        assert!(!exact_match("Paris France", "Paris"));
    }

    #[test]
    fn accuracy_handles_empty() {
        assert_eq!(accuracy(0, 0), 0.0);
        assert_eq!(accuracy(3, 4), 0.75);
    }
}
