//! Best-checkpoint and patience tracking: the run keeps the state with the best dev score
//! (the first evaluation, before any step, counts), and stops early after `patience`
//! evaluations in a row without a strictly better score.
//!
//! A tie keeps the earlier checkpoint, on purpose. The dev metric is all an evaluation
//! measures (no dev loss is computed, and a generation task's exact match of greedy text has
//! none to offer), so there is no second number to break a tie by. Among equal scores the
//! earlier state is fewer updates from its start, with less chance to have fitted the training
//! rows' noise (early stopping's own preference); and a tie with step 0 keeps the untrained
//! prompt, so a run never reports a gain from training that its dev score did not show. A
//! tie-break on dev loss would need the evaluation (`train/eval.rs`) to return one.

/// The best dev score so far and the snapshot taken at it.
pub struct BestCheckpoint<S> {
    pub score: f64,
    pub step: usize,
    pub snapshot: S,
    patience: usize,
    evals_without_gain: usize,
}

/// What one evaluation meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Strictly better than every earlier score: the snapshot was replaced.
    pub improved: bool,
    /// Patience ran out: the loop should stop.
    pub stop: bool,
}

impl<S> BestCheckpoint<S> {
    /// Starts from the evaluation before training (`step` 0). `patience` 0 never stops early.
    pub fn new(score: f64, snapshot: S, patience: usize) -> Self {
        BestCheckpoint {
            score,
            step: 0,
            snapshot,
            patience,
            evals_without_gain: 0,
        }
    }

    /// The tracker as a checkpoint left it (`evals_without_gain` counts towards patience).
    pub fn resumed(
        score: f64,
        step: usize,
        snapshot: S,
        patience: usize,
        evals_without_gain: usize,
    ) -> Self {
        BestCheckpoint {
            score,
            step,
            snapshot,
            patience,
            evals_without_gain,
        }
    }

    /// Evaluations since the last improvement (a checkpoint saves it).
    pub fn evals_without_gain(&self) -> usize {
        self.evals_without_gain
    }

    /// Records the score of an evaluation after `step`; `snapshot` is only taken when the score
    /// is a new best (snapshots of fine-tuning copy the whole model).
    pub fn record<E>(
        &mut self,
        step: usize,
        score: f64,
        snapshot: impl FnOnce() -> Result<S, E>,
    ) -> Result<Verdict, E> {
        let improved = score > self.score;
        if improved {
            self.score = score;
            self.step = step;
            self.snapshot = snapshot()?;
            self.evals_without_gain = 0;
        } else {
            self.evals_without_gain += 1;
        }
        Ok(Verdict {
            improved,
            stop: self.patience > 0 && self.evals_without_gain >= self.patience,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{BestCheckpoint, Verdict};

    fn record(
        b: &mut BestCheckpoint<&'static str>,
        step: usize,
        score: f64,
        s: &'static str,
    ) -> Verdict {
        b.record(step, score, || Ok::<_, ()>(s)).unwrap()
    }

    #[test]
    fn only_a_strictly_better_score_replaces_the_checkpoint() {
        let mut b = BestCheckpoint::new(0.5, "init", 0);
        assert!(record(&mut b, 10, 0.7, "s10").improved);
        assert!(!record(&mut b, 20, 0.7, "s20").improved);
        assert!(!record(&mut b, 30, 0.6, "s30").improved);
        assert_eq!((b.score, b.step, b.snapshot), (0.7, 10, "s10"));
    }

    #[test]
    fn a_tie_keeps_the_earlier_checkpoint_and_counts_against_patience() {
        let mut b = BestCheckpoint::new(0.5, "init", 1);
        let v = record(&mut b, 10, 0.5, "s10");
        assert_eq!((b.step, b.snapshot), (0, "init"));
        assert!(!v.improved && v.stop);
    }

    #[test]
    fn a_run_that_never_improves_keeps_the_untrained_state() {
        let mut b = BestCheckpoint::new(0.9, "init", 0);
        record(&mut b, 10, 0.1, "s10");
        assert_eq!((b.step, b.snapshot), (0, "init"));
    }

    #[test]
    fn patience_stops_after_that_many_evaluations_without_gain_in_a_row() {
        let mut b = BestCheckpoint::new(0.5, "init", 2);
        assert!(!record(&mut b, 10, 0.4, "a").stop);
        // A gain resets the count.
        assert!(!record(&mut b, 20, 0.6, "b").stop);
        assert!(!record(&mut b, 30, 0.6, "c").stop);
        assert!(record(&mut b, 40, 0.5, "d").stop);
    }

    #[test]
    fn zero_patience_never_stops() {
        let mut b = BestCheckpoint::new(1.0, "init", 0);
        for step in 1..50 {
            assert!(!record(&mut b, step, 0.0, "x").stop);
        }
    }

    #[test]
    fn no_snapshot_is_taken_without_a_gain() {
        let mut b = BestCheckpoint::new(0.5, "init", 0);
        let v = b.record(10, 0.4, || -> Result<&str, ()> {
            panic!("no snapshot needed")
        });
        assert_eq!(
            v,
            Ok(Verdict {
                improved: false,
                stop: false
            })
        );
    }
}
