//! AutoPrompt (Shin et al. 2020): discrete trigger tokens shared by all inputs, found by
//! gradient-guided search. Each update picks a trigger slot, takes the gradient of the loss with
//! respect to that slot's embedding, ranks the vocabulary by the first-order (HotFlip) estimate
//! of the loss change `-grad . e_w`, evaluates the top-k candidates together in batched forwards,
//! and keeps the best if it lowers the loss. The result is readable text.
//!
//! As in the paper, candidates are judged on rows of their own: each step draws
//! `candidate_rows` training rows (32 by default) that are not in the batch whose gradient
//! proposed them, so a swap is accepted for lowering the loss on other examples, not for
//! fitting the gradient batch, and not on 4 rows' noise.
//!
//! Candidates are compared by the gold answers' loss, or (`Judge::Accuracy`, classification
//! only) by how many candidate rows rank the right label first, as the authors' code does for
//! a task with a label map.

use super::cached_score::{continuation_logprobs, Continuation};
use super::input::Row;
use super::score::score;
use super::step::loss_and_grads;
use super::tensor_names::TRIGGER_IDS;
use super::{Batch, Judge, Method, MethodKind, Prompt, RunRng, Snapshot, StepContext};
use crate::model::Llm;
use crate::task::{Piece, TaskKind};
use anyhow::{bail, Result};
use candle_core::{Tensor, Var};
use rand::Rng;
use std::collections::HashSet;

/// The rows candidates are judged on: `wanted` training rows outside `batch`, drawn afresh with
/// `rng`. When every training row is in the batch (a split no larger than a batch), the batch
/// itself: there are no other rows to judge on.
pub fn candidate_rows(train: &[Row], batch: &[Row], wanted: usize, rng: &mut RunRng) -> Vec<Row> {
    let same = |a: &Row, b: &Row| a.pieces == b.pieces && a.answer == b.answer;
    let pool: Vec<&Row> = train
        .iter()
        .filter(|r| !batch.iter().any(|b| same(r, b)))
        .collect();
    if pool.is_empty() {
        return batch.to_vec();
    }
    let take = wanted.min(pool.len());
    rand::seq::index::sample(rng, pool.len(), take)
        .into_iter()
        .map(|i| pool[i].clone())
        .collect()
}

/// Rows per forward when evaluating candidates (bounds memory on large vocabularies/batches).
const EVAL_ROWS: usize = 64;

pub struct AutoPrompt {
    triggers: Vec<u32>,
    top_k: usize,
    /// Rows each step's candidates are judged on (`candidate_rows`).
    candidate_rows: usize,
    judge: Judge,
    /// The training split (`Method::use_train_split`); empty until given, and then candidates
    /// are judged on the second half of the batch.
    train: Vec<Row>,
    /// Each training row's answer candidates (the label answers of a classification task), in
    /// the order of `train`, for `Judge::Accuracy`.
    train_labels: Vec<Vec<Vec<u32>>>,
    /// Never proposed as triggers: control and added tokens, and byte fragments that do not
    /// decode to text on their own (they would make the learned prompt unreadable).
    excluded: HashSet<u32>,
}

impl AutoPrompt {
    pub fn new(
        llm: &Llm,
        n: usize,
        top_k: usize,
        candidate_rows: usize,
        judge: Judge,
        tok: &tokenizers::Tokenizer,
    ) -> Result<Self> {
        if n == 0 {
            bail!("AutoPrompt needs at least one trigger slot ([T]) in the template");
        }
        // Start every slot from " the", a neutral token (the paper starts from [MASK], which a
        // causal model does not have).
        let start = crate::task::tokenize(tok, " the")
            .ok()
            .and_then(|ids| ids.first().copied())
            .unwrap_or(0)
            .min(llm.cfg.vocab_size as u32 - 1);
        let mut excluded: HashSet<u32> = tok.get_added_tokens_decoder().keys().copied().collect();
        for id in 0..llm.cfg.vocab_size as u32 {
            match tok.decode(&[id], false) {
                Ok(text) if !text.contains('\u{FFFD}') && !text.trim().is_empty() => {}
                _ => {
                    excluded.insert(id);
                }
            }
        }
        Ok(Self {
            triggers: vec![start; n],
            top_k: top_k.max(1),
            candidate_rows: candidate_rows.max(1),
            judge,
            train: Vec::new(),
            train_labels: Vec::new(),
            excluded,
        })
    }
}

/// Refuses `--judge accuracy` where there is no label to rank: another method, or a generation
/// task (one answer per example).
pub fn check_judge(judge: Judge, method: MethodKind, kind: TaskKind) -> Result<()> {
    if judge == Judge::Loss {
        return Ok(());
    }
    if method != MethodKind::Autoprompt {
        bail!(
            "--judge is how AutoPrompt compares its candidate triggers; method {} has none (use --method autoprompt, or leave out --judge)",
            method.id()
        );
    }
    if kind != TaskKind::Classification {
        bail!("--judge accuracy ranks a classification task's label answers; this task is a generation task (use --judge loss)");
    }
    Ok(())
}

/// A candidate row for `Judge::Accuracy`: the row's pieces, its label answers and which is gold.
pub struct Labelled<'a> {
    pub pieces: &'a [Piece],
    pub labels: &'a [Vec<u32>],
    pub gold: usize,
}

/// Each trigger list's accuracy on `rows`: the share of rows whose gold label has the highest
/// total log-probability (a tie is not right), the way classification is evaluated. Every
/// (list, row) runs once and its labels are scored from its key/value cache.
pub fn trigger_accuracies(
    llm: &Llm,
    rows: &[Labelled],
    trigger_sets: &[Vec<u32>],
) -> Result<Vec<f32>> {
    if rows.is_empty() {
        return Ok(vec![0.0; trigger_sets.len()]);
    }
    let owned_heads: Vec<Vec<Piece>> = trigger_sets
        .iter()
        .flat_map(|t| rows.iter().map(move |r| with_triggers(r.pieces, t)))
        .collect();
    let heads: Vec<&[Piece]> = owned_heads.iter().map(Vec::as_slice).collect();
    let mut conts = Vec::new();
    for h in 0..heads.len() {
        for answer in rows[h % rows.len()].labels {
            conts.push(Continuation {
                head: h,
                tail: Vec::new(),
                answer,
            });
        }
    }
    let lp = continuation_logprobs(llm, &Prompt::default(), &heads, &conts, EVAL_ROWS)?;
    let mut right = vec![0usize; trigger_sets.len()];
    let mut at = 0;
    for h in 0..heads.len() {
        let r = &rows[h % rows.len()];
        let scores = &lp[at..at + r.labels.len()];
        at += r.labels.len();
        let gold = scores[r.gold];
        if scores
            .iter()
            .enumerate()
            .all(|(i, &x)| i == r.gold || x < gold)
        {
            right[h / rows.len()] += 1;
        }
    }
    Ok(right
        .iter()
        .map(|&n| n as f32 / rows.len() as f32)
        .collect())
}

/// Mean answer-token loss of `rows` with each trigger list (one value per list). The part of
/// each row before the first slot whose token differs between the lists is the same for every
/// list: it runs once (with the lists' common trigger tokens in it), and every list's tokens
/// from there on are scored from its key/value cache (`cached_score`), batched across lists.
/// A search step changes one slot, so with the triggers in front of the template the slots
/// before it are shared too. Rows that open with a differing slot have nothing to share and
/// take the full path. Equal to [`trigger_losses_full`] within f32 rounding.
pub fn trigger_losses(llm: &Llm, rows: &[Row], trigger_sets: &[Vec<u32>]) -> Result<Vec<f32>> {
    let Some(first_set) = trigger_sets.first() else {
        return Ok(Vec::new());
    };
    // Slots whose token is not the same in every list.
    let differs: Vec<bool> = (0..first_set.len())
        .map(|j| trigger_sets.iter().any(|t| t[j] != first_set[j]))
        .collect();
    // Where each row stops being the same for every list: its first differing slot (or, when
    // no slot differs, its first trigger slot).
    let shared_len = |r: &Row| {
        let ps = r.pieces.iter();
        let first_differing = ps
            .clone()
            .position(|p| matches!(*p, Piece::Trigger(j) if differs[j]));
        let first_trigger = ps.clone().position(|p| matches!(p, Piece::Trigger(_)));
        first_differing.or(first_trigger).unwrap_or(r.pieces.len())
    };
    let (cached, uncached): (Vec<&Row>, Vec<&Row>) = rows.iter().partition(|r| shared_len(r) > 0);
    // nll[set][row], rows in the order cached ++ uncached.
    let mut nll = vec![Vec::with_capacity(rows.len()); trigger_sets.len()];
    if !cached.is_empty() {
        let owned_heads: Vec<Vec<Piece>> = cached
            .iter()
            .map(|r| with_triggers(&r.pieces[..shared_len(r)], first_set))
            .collect();
        let heads: Vec<&[Piece]> = owned_heads.iter().map(Vec::as_slice).collect();
        let mut conts = Vec::with_capacity(cached.len() * trigger_sets.len());
        for triggers in trigger_sets {
            for (h, r) in cached.iter().enumerate() {
                conts.push(Continuation {
                    head: h,
                    tail: with_triggers(&r.pieces[heads[h].len()..], triggers),
                    answer: &r.answer,
                });
            }
        }
        let lp = continuation_logprobs(llm, &Prompt::default(), &heads, &conts, EVAL_ROWS)?;
        for (s, c) in lp.chunks(cached.len()).enumerate() {
            nll[s].extend(c.iter().map(|x| -x));
        }
    }
    if !uncached.is_empty() {
        let owned: Vec<Row> = uncached.into_iter().cloned().collect();
        for (s, c) in full_row_nll(llm, &owned, trigger_sets)?
            .chunks(owned.len())
            .enumerate()
        {
            nll[s].extend_from_slice(c);
        }
    }
    let tokens: usize = rows.iter().map(|r| r.answer.len()).sum();
    Ok(nll
        .iter()
        .map(|c| c.iter().sum::<f32>() / tokens as f32)
        .collect())
}

/// The reference for [`trigger_losses`]: every (list, row) pair as one full forward row.
pub fn trigger_losses_full(llm: &Llm, rows: &[Row], trigger_sets: &[Vec<u32>]) -> Result<Vec<f32>> {
    let tokens: usize = rows.iter().map(|r| r.answer.len()).sum();
    Ok(full_row_nll(llm, rows, trigger_sets)?
        .chunks(rows.len())
        .map(|c| c.iter().sum::<f32>() / tokens as f32)
        .collect())
}

/// Each (list, row) pair's summed answer-token negative log-likelihood, list-major, from full
/// forwards batched across lists.
fn full_row_nll(llm: &Llm, rows: &[Row], trigger_sets: &[Vec<u32>]) -> Result<Vec<f32>> {
    let mut all = Vec::with_capacity(rows.len() * trigger_sets.len());
    for triggers in trigger_sets {
        for r in rows {
            all.push(Row {
                pieces: with_triggers(&r.pieces, triggers),
                answer: r.answer.clone(),
                prompt: 0,
            });
        }
    }
    // Forwards of rows of like length: a forward pads every row to its longest, and candidate
    // rows are the same few rows once per list, so in list order each forward would pad to
    // nearly the longest row of the set.
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.sort_by_key(|&i| all[i].pieces.len() + all[i].answer.len());
    let mut row_nll = vec![0f32; all.len()];
    for chunk in order.chunks(EVAL_ROWS) {
        let rows: Vec<Row> = chunk.iter().map(|&i| all[i].clone()).collect();
        let s = score(llm, &Prompt::default(), &rows)?;
        for (&i, lp) in chunk.iter().zip(s.row_logprob.to_vec1::<f32>()?) {
            row_nll[i] = -lp;
        }
    }
    Ok(row_nll)
}

/// The pieces with each trigger slot replaced by its token from `triggers`.
fn with_triggers(pieces: &[Piece], triggers: &[u32]) -> Vec<Piece> {
    pieces
        .iter()
        .map(|p| match *p {
            Piece::Trigger(j) => Piece::Token(triggers[j]),
            other => other,
        })
        .collect()
}

impl AutoPrompt {
    /// The label answers of each candidate row, found among the training rows it was drawn
    /// from (`candidate_rows` returns copies).
    fn labelled<'a>(&'a self, rows: &'a [Row]) -> Result<Vec<Labelled<'a>>> {
        rows.iter()
            .map(|r| {
                let i = self
                    .train
                    .iter()
                    .position(|t| t.pieces == r.pieces && t.answer == r.answer);
                let labels = i.map(|i| self.train_labels[i].as_slice());
                let gold = labels.and_then(|ls| ls.iter().position(|a| *a == r.answer));
                match (labels, gold) {
                    (Some(labels), Some(gold)) => Ok(Labelled {
                        pieces: &r.pieces,
                        labels,
                        gold,
                    }),
                    _ => bail!(
                        "internal error: --judge accuracy needs the training split's label answers"
                    ),
                }
            })
            .collect()
    }
}

impl Method for AutoPrompt {
    fn prompt(&self, _llm: &Llm) -> Result<Prompt> {
        Ok(Prompt {
            triggers: self.triggers.clone(),
            ..Default::default()
        })
    }

    fn train_step(&mut self, ctx: &mut StepContext, batch: &Batch) -> Result<f32> {
        let llm = ctx.llm;
        let emb = llm.embedding_matrix();
        let ids = Tensor::new(self.triggers.as_slice(), llm.device())?;
        let trig = Var::from_tensor(&emb.index_select(&ids, 0)?.copy()?)?;
        let triggers = self.triggers.clone();
        let prompt_fn = || -> Result<Prompt> {
            Ok(Prompt {
                triggers: triggers.clone(),
                trigger_embeds: Some(trig.as_tensor().clone()),
                ..Default::default()
            })
        };
        // As in the paper, candidates are judged on other examples than the ones whose gradient
        // proposed them, so the "lowers the loss" test does not overfit the gradient batch.
        let (grad_rows, eval_rows): (&[Row], Vec<Row>) = if !self.train.is_empty() {
            let eval = candidate_rows(&self.train, &batch.rows, self.candidate_rows, ctx.rng);
            (&batch.rows, eval)
        } else if batch.rows.len() >= 2 {
            // No training split given (a method built outside a run): half the batch each.
            let (g, e) = batch.rows.split_at(batch.rows.len().div_ceil(2));
            (g, e.to_vec())
        } else {
            (&batch.rows, batch.rows.clone())
        };
        let grad_batch = Batch {
            rows: grad_rows.to_vec(),
            micro_batch: batch.micro_batch,
        };
        // Fails if the trigger embeddings received no gradient.
        let (loss, grads) =
            loss_and_grads(llm, &prompt_fn, &grad_batch, std::slice::from_ref(&trig))?;
        let g = &grads[0];
        let slot = ctx.rng.random_range(0..self.triggers.len());
        // First-order estimate of the loss change when slot's token becomes w: (e_w - e_cur) . g;
        // the e_cur term is the same for every w, so rank by -e_w . g.
        let g_slot = g.get(slot)?.unsqueeze(1)?;
        let scores: Vec<f32> = emb.matmul(&g_slot)?.squeeze(1)?.neg()?.to_vec1()?;
        let mut order: Vec<u32> = (0..scores.len() as u32)
            .filter(|w| !self.excluded.contains(w) && *w != self.triggers[slot])
            .collect();
        order.sort_by(|&a, &b| {
            scores[b as usize]
                .total_cmp(&scores[a as usize])
                .then(a.cmp(&b))
        });
        order.truncate(self.top_k);

        let mut sets = vec![self.triggers.clone()];
        for &w in &order {
            let mut t = self.triggers.clone();
            t[slot] = w;
            sets.push(t);
        }
        // Lower is better: the loss, or the accuracy negated.
        let costs: Vec<f32> = match self.judge {
            Judge::Loss => trigger_losses(llm, &eval_rows, &sets)?,
            Judge::Accuracy => {
                let labelled = self.labelled(&eval_rows)?;
                let acc = trigger_accuracies(llm, &labelled, &sets)?;
                acc.iter().map(|a| -a).collect()
            }
        };
        // `min_by` keeps the first of equal bests, as the authors' code does (`argmax`).
        let (best, best_cost) = costs
            .iter()
            .enumerate()
            .skip(1)
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, l)| (i, *l))
            .unwrap_or((0, costs[0]));
        if best > 0 && best_cost < costs[0] {
            self.triggers = sets.swap_remove(best);
        }
        Ok(loss)
    }

    fn export(&self, llm: &Llm) -> Result<Vec<(String, Tensor)>> {
        Ok(vec![(
            TRIGGER_IDS.into(),
            Tensor::new(self.triggers.as_slice(), llm.device())?,
        )])
    }

    /// None: the state is the trigger tokens, which the search swaps (the gradient is taken on a
    /// throwaway copy of their embeddings in each step).
    fn vars(&self) -> &[Var] {
        &[]
    }

    fn trainable_params(&self) -> usize {
        // No continuous weights: the search chooses this many tokens.
        self.triggers.len()
    }

    fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot::Triggers(self.triggers.clone()))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        let Snapshot::Triggers(triggers) = snapshot else {
            bail!("internal error: AutoPrompt restores trigger ids, not variables");
        };
        self.triggers = triggers.clone();
        Ok(())
    }

    fn use_train_split(&mut self, train: &[crate::task::Encoded]) {
        self.train = train.iter().map(Row::gold).collect();
        self.train_labels = train.iter().map(|e| e.candidates.clone()).collect();
    }

    fn readable(&self, tok: &tokenizers::Tokenizer) -> Option<String> {
        tok.decode(&self.triggers, false).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::candidate_rows;
    use crate::methods::{Row, RunRng};
    use crate::task::Piece;
    use rand::SeedableRng;

    fn row(i: u32) -> Row {
        Row {
            pieces: vec![Piece::Token(i)],
            answer: vec![i],
            prompt: 0,
        }
    }

    fn ids(rows: &[Row]) -> Vec<u32> {
        rows.iter().map(|r| r.answer[0]).collect()
    }

    #[test]
    fn candidates_are_judged_on_rows_apart_from_the_gradient_batch() {
        let train: Vec<Row> = (0..40).map(row).collect();
        let batch: Vec<Row> = (0..8).map(row).collect();
        let mut rng = RunRng::seed_from_u64(0);
        let mut got = ids(&candidate_rows(&train, &batch, 16, &mut rng));
        assert_eq!(got.len(), 16);
        assert!(got.iter().all(|&i| i >= 8), "{got:?}");
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 16, "a row drawn twice");
        // Fewer rows left than wanted: all of them.
        let mut all = ids(&candidate_rows(&train, &batch, 100, &mut rng));
        all.sort();
        assert_eq!(all, (8..40).collect::<Vec<_>>());
    }

    #[test]
    fn judging_by_accuracy_is_refused_outside_autoprompt_classification() {
        use super::check_judge;
        use crate::methods::{Judge, MethodKind};
        use crate::task::TaskKind;
        let (ap, class, gen) = (
            MethodKind::Autoprompt,
            TaskKind::Classification,
            TaskKind::Generation,
        );
        assert!(check_judge(Judge::Accuracy, ap, class).is_ok());
        assert!(check_judge(Judge::Loss, ap, gen).is_ok());
        assert!(check_judge(Judge::Loss, MethodKind::PromptTuning, class).is_ok());
        let e = check_judge(Judge::Accuracy, ap, gen)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--judge loss"), "{e}");
        let e = check_judge(Judge::Accuracy, MethodKind::PromptTuning, class)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--method autoprompt"), "{e}");
    }

    #[test]
    fn a_split_no_larger_than_the_batch_is_judged_on_the_batch() {
        let train: Vec<Row> = (0..4).map(row).collect();
        let mut rng = RunRng::seed_from_u64(0);
        assert_eq!(
            ids(&candidate_rows(&train, &train, 32, &mut rng)),
            vec![0, 1, 2, 3]
        );
    }
}
