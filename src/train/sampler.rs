//! Batch sampling: training examples are drawn in epochs, each a fresh shuffle of the whole
//! training split, so every example is seen once per epoch and a batch may span two epochs.

use crate::methods::RunRng;
use rand::seq::SliceRandom;

/// Hands out training-example indices epoch by epoch. Its state is saved whole in a checkpoint.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EpochSampler {
    len: usize,
    /// What is left of the current epoch, taken from the end.
    order: Vec<usize>,
}

impl EpochSampler {
    pub fn new(len: usize) -> EpochSampler {
        EpochSampler {
            len,
            order: Vec::new(),
        }
    }

    /// The next `n` indices. The rng is the run's own (shared with the method), so a seed fixes
    /// the whole run; it is only drawn from when an epoch starts.
    pub fn next(&mut self, n: usize, rng: &mut RunRng) -> Vec<usize> {
        let mut out = Vec::with_capacity(n);
        if self.len == 0 {
            return out;
        }
        while out.len() < n {
            if self.order.is_empty() {
                self.order = (0..self.len).collect();
                self.order.shuffle(rng);
            }
            out.extend(self.order.pop());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::EpochSampler;
    use crate::methods::RunRng;
    use rand::SeedableRng;

    #[test]
    fn every_example_is_drawn_once_per_epoch() {
        let mut rng = RunRng::seed_from_u64(3);
        let mut s = EpochSampler::new(10);
        let mut drawn = s.next(4, &mut rng);
        drawn.extend(s.next(6, &mut rng));
        drawn.sort();
        assert_eq!(drawn, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_batch_larger_than_the_split_spans_epochs() {
        let mut rng = RunRng::seed_from_u64(3);
        let mut s = EpochSampler::new(3);
        let drawn = s.next(7, &mut rng);
        assert_eq!(drawn.len(), 7);
        for i in 0..3 {
            assert!(drawn[..6].iter().filter(|&&d| d == i).count() == 2);
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_batches() {
        let draw = || {
            let mut rng = RunRng::seed_from_u64(7);
            let mut s = EpochSampler::new(20);
            (0..5).map(|_| s.next(8, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(), draw());
    }

    #[test]
    fn an_empty_split_gives_empty_batches_instead_of_looping() {
        let mut rng = RunRng::seed_from_u64(0);
        assert!(EpochSampler::new(0).next(8, &mut rng).is_empty());
    }
}
