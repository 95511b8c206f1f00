//! AutoPrompt's automatic label-token search (Shin et al. 2020, section 2.2): instead of a
//! hand-written verbalizer, find for each class the k vocabulary tokens that best stand for it.
//! A logistic (softmax) classifier is trained on the model's final hidden state at the position
//! that predicts the answer (the paper's [MASK]; here the last prompt position of a causal
//! model, with the current trigger tokens in place), then every token w is scored for class c by
//! the classifier's weight u_c dotted with w's output embedding, and each class takes its top k.
//! A class's probability is then the sum of its tokens' probabilities, as in the paper.
//!
//! Excluded: special and added tokens, tokens that do not decode to text of their own (byte
//! fragments; the same rule as AutoPrompt's trigger candidates), tokens that do not tokenize
//! back to themselves when written out (so the found tokens can be saved as text), and tokens
//! shared between classes: a token is a candidate only for the class that scores it highest.
//!
//! Depends on the model, the task encoding and the method input only; knows nothing of runs.

use super::input::{embed_rows, Row};
use super::{MethodKind, Prompt};
use crate::model::Llm;
use crate::task::{Encoded, Piece, TaskKind};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use std::collections::HashSet;

/// Rows per forward when collecting hidden states.
const ROWS_PER_FORWARD: usize = 64;
/// Full-batch gradient steps of the classifier, its step size and L2 penalty (on standardised
/// features): enough to converge on a few hundred rows of width up to ~1000.
const CLASSIFIER_STEPS: usize = 300;
const CLASSIFIER_LR: f64 = 0.5;
const CLASSIFIER_L2: f64 = 1e-3;

/// Refuses `--search-labels` where it has no meaning (it replaces a classification task's
/// verbalizer, and only AutoPrompt searches for one) or no support yet (more than one token
/// per class, see [`use_as_verbalizer`]).
pub fn check(k: usize, method: MethodKind, kind: TaskKind) -> Result<()> {
    if k == 0 {
        return Ok(());
    }
    if method != MethodKind::Autoprompt {
        bail!(
            "--search-labels is AutoPrompt's label-token search; method {} uses the task's verbalizer (use --method autoprompt, or leave out --search-labels)",
            method.id()
        );
    }
    if kind != TaskKind::Classification {
        bail!("--search-labels finds label tokens for a classification task's classes; this task is a generation task (leave out --search-labels)");
    }
    if k > 1 {
        bail!("--search-labels {k}: scoring a class by several label tokens is not supported yet (one answer per class); use --search-labels 1");
    }
    Ok(())
}

/// For each class (in the order of each example's candidates, i.e. the task's labels), `k`
/// distinct token ids, best first, no token in two classes. `triggers` fill the template's
/// trigger slots while the hidden states are taken. Fails, naming the class, where fewer than
/// `k` tokens qualify.
pub fn search(
    llm: &Llm,
    tok: &tokenizers::Tokenizer,
    train: &[Encoded],
    triggers: &[u32],
    k: usize,
) -> Result<Vec<Vec<u32>>> {
    if k == 0 {
        bail!("--search-labels needs k of at least 1");
    }
    let classes = train.first().map(|e| e.candidates.len()).unwrap_or(0);
    if classes < 2 || train.iter().any(|e| e.candidates.len() != classes) {
        bail!("the label search needs a classification training split with at least two classes");
    }
    let labels: Vec<usize> = train.iter().map(|e| e.gold).collect();
    let hidden = final_hidden_states(llm, train, triggers)?;
    let weights = train_classifier(&hidden, &labels, classes);
    // Scores [classes, vocab]: u_c . e_w for every token.
    let d = llm.cfg.hidden_size;
    let flat: Vec<f32> = weights.iter().flatten().map(|&x| x as f32).collect();
    let u = Tensor::from_vec(flat, (classes, d), llm.device())?;
    let scores: Vec<Vec<f32>> = u.matmul(&output_matrix(llm)?.t()?)?.to_vec2()?;
    let special: HashSet<u32> = tok.get_added_tokens_decoder().keys().copied().collect();
    let vocab = llm.cfg.vocab_size;
    let best_class = |w: usize| {
        (0..classes)
            .max_by(|&a, &b| scores[a][w].total_cmp(&scores[b][w]).then(b.cmp(&a)))
            .unwrap_or(0)
    };
    let mut found = Vec::with_capacity(classes);
    for (c, row) in scores.iter().enumerate() {
        let mut order: Vec<usize> = (0..vocab).filter(|&w| best_class(w) == c).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        let mut tokens = Vec::with_capacity(k);
        for w in order {
            let w = w as u32;
            if !special.contains(&w) && stands_alone(tok, w) {
                tokens.push(w);
                if tokens.len() == k {
                    break;
                }
            }
        }
        if tokens.len() < k {
            bail!(
                "the label search found only {} usable tokens for class {} (asked for {k}); ask for fewer with --search-labels",
                tokens.len(),
                c + 1
            );
        }
        found.push(tokens);
    }
    Ok(found)
}

/// Whether token `w` decodes to text of its own that tokenizes back to exactly `w`.
fn stands_alone(tok: &tokenizers::Tokenizer, w: u32) -> bool {
    match tok.decode(&[w], false) {
        Ok(text) if !text.contains('\u{FFFD}') && !text.trim().is_empty() => {
            crate::task::tokenize(tok, &text).is_ok_and(|ids| ids == [w])
        }
        _ => false,
    }
}

/// The output embedding `[vocab, hidden]`: the head, or the input embedding when tied.
fn output_matrix(llm: &Llm) -> Result<Tensor> {
    if llm.cfg.tie_word_embeddings {
        return Ok(llm.embedding_matrix().to_dtype(DType::F32)?);
    }
    let head = llm
        .named_tensors()
        .into_iter()
        .find(|(n, _)| n == "lm_head.weight")
        .map(|(_, t)| t)
        .context("the model has no lm_head.weight")?;
    Ok(head.to_dtype(DType::F32)?)
}

/// `[rows][hidden]`: the final hidden state (after the last norm, what the output embedding
/// multiplies) at each example's last prompt position (`Llm::final_hidden`).
fn final_hidden_states(llm: &Llm, train: &[Encoded], triggers: &[u32]) -> Result<Vec<Vec<f64>>> {
    let prompt = Prompt {
        triggers: triggers.to_vec(),
        ..Default::default()
    };
    let mut out = Vec::with_capacity(train.len());
    for chunk in train.chunks(ROWS_PER_FORWARD) {
        let rows: Vec<Row> = chunk.iter().map(Row::gold).collect();
        if rows.iter().any(|r| {
            r.pieces
                .iter()
                .any(|p| matches!(p, Piece::Trigger(j) if *j >= triggers.len()))
        }) {
            bail!(
                "the template has more trigger slots than the {} triggers given",
                triggers.len()
            );
        }
        let (embeds, mask, _) = embed_rows(llm, &prompt, &rows)?;
        let t = embeds.dim(1)?;
        let at: Vec<u32> = rows
            .iter()
            .enumerate()
            .map(|(r, row)| (r * t + row.pieces.len() - 1) as u32)
            .collect();
        let hidden = llm.final_hidden(&embeds, Some(&mask), &at)?;
        out.extend(hidden.to_dtype(DType::F64)?.to_vec2::<f64>()?);
    }
    Ok(out)
}

/// Softmax regression of `labels` on `features`, by full-batch gradient descent on centred
/// features divided by one common scale (the root of the mean variance); returns the weights
/// `[classes][hidden]` in the original feature space (the bias is dropped: it scores every
/// token of the vocabulary alike). One scale for all dimensions, not one each: per-dimension
/// standardising multiplies the weights of near-constant dimensions by 1/std when mapped back,
/// and those then decide the token ranking (measured on the built-in model: the found tokens
/// were noise such as " battery" for Africa).
fn train_classifier(features: &[Vec<f64>], labels: &[usize], classes: usize) -> Vec<Vec<f64>> {
    let n = features.len();
    let d = features.first().map(Vec::len).unwrap_or(0);
    let mean: Vec<f64> = (0..d)
        .map(|j| features.iter().map(|x| x[j]).sum::<f64>() / n as f64)
        .collect();
    let var = features
        .iter()
        .map(|x| (0..d).map(|j| (x[j] - mean[j]).powi(2)).sum::<f64>())
        .sum::<f64>()
        / (n * d.max(1)) as f64;
    let scale = var.sqrt().max(1e-8);
    let z: Vec<Vec<f64>> = features
        .iter()
        .map(|x| (0..d).map(|j| (x[j] - mean[j]) / scale).collect())
        .collect();
    let mut u = vec![vec![0.0; d]; classes];
    let mut bias = vec![0.0; classes];
    for _ in 0..CLASSIFIER_STEPS {
        let mut gu = vec![vec![0.0; d]; classes];
        let mut gb = vec![0.0; classes];
        for (x, &y) in z.iter().zip(labels) {
            let logits: Vec<f64> = (0..classes)
                .map(|c| bias[c] + u[c].iter().zip(x).map(|(a, b)| a * b).sum::<f64>())
                .collect();
            let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let exp: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
            let sum: f64 = exp.iter().sum();
            for c in 0..classes {
                let err = exp[c] / sum - f64::from(u8::from(c == y));
                gb[c] += err;
                for (g, xj) in gu[c].iter_mut().zip(x) {
                    *g += err * xj;
                }
            }
        }
        for c in 0..classes {
            bias[c] -= CLASSIFIER_LR * gb[c] / n as f64;
            for j in 0..d {
                u[c][j] -= CLASSIFIER_LR * (gu[c][j] / n as f64 + CLASSIFIER_L2 * u[c][j]);
            }
        }
    }
    // u . (x - mean) / scale = (u / scale) . x + a constant per class, like the bias.
    u.into_iter()
        .map(|uc| uc.iter().map(|a| a / scale).collect())
        .collect()
}

/// Puts the found tokens in place of the verbalizer's answers in every encoded example: class
/// c's candidate becomes its one found token. Scoring ranks candidates by their sequence
/// log-probability, one candidate per class (`task::Encoded`), so several tokens per class
/// (scored by [`class_logprob`]) need a candidate list per class there first; until then more
/// than one token per class is refused here, naming why.
pub fn use_as_verbalizer(found: &[Vec<u32>], splits: &mut [&mut Vec<Encoded>]) -> Result<()> {
    if let Some(many) = found.iter().find(|t| t.len() != 1) {
        bail!(
            "--search-labels {}: scoring a class by several label tokens is not supported yet (one answer per class); use --search-labels 1",
            many.len()
        );
    }
    for set in splits.iter_mut() {
        for e in set.iter_mut() {
            if e.candidates.len() != found.len() {
                bail!(
                    "an example has {} answer candidates but the search found tokens for {} classes",
                    e.candidates.len(),
                    found.len()
                );
            }
            e.candidates = found.to_vec();
        }
    }
    Ok(())
}

/// The found tokens as text, by label (`labels` in the candidates' order): what a run's result
/// and a saved prompt's manifest record, and what the CLI and the workbench show.
pub fn as_text(
    tok: &tokenizers::Tokenizer,
    labels: &[String],
    found: &[Vec<u32>],
) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
    labels
        .iter()
        .zip(found)
        .map(|(label, tokens)| {
            let words = tokens
                .iter()
                .map(|&t| {
                    tok.decode(&[t], false)
                        .map_err(|e| anyhow::anyhow!("cannot decode token {t}: {e}"))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((label.clone(), words))
        })
        .collect()
}

/// A class's log-probability from its label tokens' log-probabilities: the log of the sum of
/// their probabilities (the paper's verbalizer over several tokens per class).
pub fn class_logprob(token_logprobs: &[f32]) -> f32 {
    let max = token_logprobs
        .iter()
        .cloned()
        .fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return max;
    }
    max + token_logprobs
        .iter()
        .map(|l| (l - max).exp())
        .sum::<f32>()
        .ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_class_probability_is_the_sum_of_its_tokens_probabilities() {
        let lp = [0.2f32.ln(), 0.1f32.ln(), 0.05f32.ln()];
        assert!((class_logprob(&lp).exp() - 0.35).abs() < 1e-6);
        assert_eq!(class_logprob(&[]), f32::NEG_INFINITY);
    }

    #[test]
    fn the_classifier_weights_point_towards_each_class() {
        // Two separable classes along the first feature.
        let x: Vec<Vec<f64>> = (0..20)
            .map(|i| vec![if i % 2 == 0 { 1.0 } else { -1.0 }, (i as f64) * 0.01])
            .collect();
        let y: Vec<usize> = (0..20).map(|i| i % 2).collect();
        let u = train_classifier(&x, &y, 2);
        assert!(u[0][0] > 0.0 && u[1][0] < 0.0, "{u:?}");
    }

    fn example(gold: usize) -> Encoded {
        Encoded {
            prompt: vec![Piece::Token(5)],
            candidates: vec![vec![10, 11], vec![12]],
            gold,
            answer_text: String::new(),
            end: crate::task::AnswerEnd::Unmarked,
            max_new_tokens: 0,
        }
    }

    #[test]
    fn the_found_tokens_replace_every_split_s_answers_and_keep_the_gold_class() {
        let (mut train, mut dev) = (vec![example(0), example(1)], vec![example(1)]);
        use_as_verbalizer(&[vec![7], vec![8]], &mut [&mut train, &mut dev]).unwrap();
        for e in train.iter().chain(&dev) {
            assert_eq!(e.candidates, vec![vec![7], vec![8]]);
        }
        assert_eq!((train[0].gold, train[1].gold, dev[0].gold), (0, 1, 1));
        let e = use_as_verbalizer(&[vec![7, 9], vec![8, 6]], &mut [&mut train]).unwrap_err();
        assert!(e.to_string().contains("--search-labels 1"), "{e}");
    }

    #[test]
    fn search_labels_is_refused_outside_autoprompt_classification() {
        assert!(check(0, MethodKind::PromptTuning, TaskKind::Generation).is_ok());
        assert!(check(1, MethodKind::Autoprompt, TaskKind::Classification).is_ok());
        let e = check(2, MethodKind::Autoprompt, TaskKind::Classification).unwrap_err();
        assert!(e.to_string().contains("--search-labels 1"), "{e}");
        let e = check(2, MethodKind::PromptTuning, TaskKind::Classification).unwrap_err();
        assert!(e.to_string().contains("--method autoprompt"), "{e}");
        let e = check(2, MethodKind::Autoprompt, TaskKind::Generation).unwrap_err();
        assert!(e.to_string().contains("generation"), "{e}");
    }
}
