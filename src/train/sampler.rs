//! Batch sampling: training examples are drawn in epochs, each a fresh shuffle of the whole
//! training split, so every example is seen once per epoch and a batch may span two epochs.
//! Optionally grouped by length (`--group-by-length`), as Hugging Face's Trainer does it: a
//! batch is padded to its longest row, so rows of like length waste less of the forward.

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
    /// the whole run; it is only drawn from when an epoch starts. With `lengths` (each
    /// example's token count) an epoch's order is grouped by length (`group_by_length`).
    pub fn next(&mut self, n: usize, rng: &mut RunRng, lengths: Option<&[usize]>) -> Vec<usize> {
        let mut out = Vec::with_capacity(n);
        if self.len == 0 {
            return out;
        }
        while out.len() < n {
            if self.order.is_empty() {
                self.order = (0..self.len).collect();
                self.order.shuffle(rng);
                if let Some(lengths) = lengths {
                    group_by_length(&mut self.order, lengths, n);
                }
            }
            out.extend(self.order.pop());
        }
        out
    }
}

/// Hugging Face's `get_length_grouped_indices`: the shuffled order is cut into "megabatches" of
/// up to 50 batches (fewer for a small split: a quarter of the split's batches, at least one),
/// and each megabatch is sorted by length, so the batches drawn from it hold rows of like length
/// while the megabatches stay in random order. The order is consumed from its end, so each
/// megabatch is sorted ascending to be drawn longest first, as the Trainer draws it.
pub fn group_by_length(order: &mut [usize], lengths: &[usize], batch: usize) {
    let batch = batch.max(1);
    let mult = (order.len() / (batch * 4)).clamp(1, 50);
    for mega in order.rchunks_mut(mult * batch) {
        mega.sort_by_key(|&i| lengths[i]);
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
        let mut drawn = s.next(4, &mut rng, None);
        drawn.extend(s.next(6, &mut rng, None));
        drawn.sort();
        assert_eq!(drawn, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_batch_larger_than_the_split_spans_epochs() {
        let mut rng = RunRng::seed_from_u64(3);
        let mut s = EpochSampler::new(3);
        let drawn = s.next(7, &mut rng, None);
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
            (0..5)
                .map(|_| s.next(8, &mut rng, None))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(), draw());
    }

    /// The padded tokens of batches of 8 drawn for an epoch: each batch pads to its longest row.
    fn padding(lengths: &[usize], group: bool) -> usize {
        let mut rng = RunRng::seed_from_u64(5);
        let mut s = EpochSampler::new(lengths.len());
        let lens = group.then_some(lengths);
        (0..lengths.len() / 8)
            .map(|_| {
                let b: Vec<usize> = s
                    .next(8, &mut rng, lens)
                    .iter()
                    .map(|&i| lengths[i])
                    .collect();
                b.iter().map(|l| b.iter().max().unwrap() - l).sum::<usize>()
            })
            .sum()
    }

    #[test]
    fn grouping_by_length_keeps_every_example_once_per_epoch_and_cuts_padding() {
        let lengths: Vec<usize> = (0..400).map(|i| 10 + (i * 37) % 90).collect();
        let mut rng = RunRng::seed_from_u64(1);
        let mut s = EpochSampler::new(400);
        let mut drawn: Vec<usize> = (0..50)
            .flat_map(|_| s.next(8, &mut rng, Some(&lengths)))
            .collect();
        drawn.sort();
        assert_eq!(drawn, (0..400).collect::<Vec<_>>());
        let (plain, grouped) = (padding(&lengths, false), padding(&lengths, true));
        assert!(
            grouped * 5 < plain,
            "padding {grouped} grouped, {plain} not"
        );
    }

    #[test]
    fn grouped_batches_come_from_megabatches_in_random_order_longest_first() {
        let lengths: Vec<usize> = (0..400).map(|i| i % 100).collect();
        let mut rng = RunRng::seed_from_u64(2);
        let mut s = EpochSampler::new(400);
        // 400 rows, batch 8: megabatches of 400 / 32 = 12 batches (96 rows); the first batch
        // of a megabatch holds its longest rows.
        let maxima: Vec<usize> = (0..12)
            .map(|_| {
                *s.next(8, &mut rng, Some(&lengths))
                    .iter()
                    .map(|&i| lengths[i])
                    .collect::<Vec<_>>()
                    .iter()
                    .max()
                    .unwrap()
            })
            .collect();
        assert!(maxima.windows(2).all(|w| w[0] >= w[1]), "{maxima:?}");
        let next = s.next(8, &mut rng, Some(&lengths));
        assert!(
            next.iter().any(|&i| lengths[i] > maxima[11]),
            "a new megabatch starts long"
        );
    }

    #[test]
    fn an_empty_split_gives_empty_batches_instead_of_looping() {
        let mut rng = RunRng::seed_from_u64(0);
        assert!(EpochSampler::new(0).next(8, &mut rng, None).is_empty());
    }
}
