//! Batches that mix tasks: which task's example fills each row of a multi-task batch.
//!
//! Proportional mixing draws from one epoch over every task's train split together, so each
//! task fills batches in proportion to its size and every example is seen once per epoch (the
//! "examples-proportional" mixing of T5). Uniform mixing draws each row's task with equal
//! chance and then the next example of that task's own epoch, so a small task is seen as often
//! as a large one. Both draw from the run's seeded random stream.

use super::sampler::EpochSampler;
use crate::methods::RunRng;
use crate::run::Mix;
use rand::Rng;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MixSampler {
    mix: Mix,
    /// Proportional: one epoch over all tasks' examples, numbered task after task.
    all: EpochSampler,
    /// Uniform: each task's own epochs.
    each: Vec<EpochSampler>,
    sizes: Vec<usize>,
}

impl MixSampler {
    /// `sizes`: each task's train split size.
    pub fn new(mix: Mix, sizes: &[usize]) -> MixSampler {
        MixSampler {
            mix,
            all: EpochSampler::new(sizes.iter().sum()),
            each: sizes.iter().map(|&n| EpochSampler::new(n)).collect(),
            sizes: sizes.to_vec(),
        }
    }

    /// The next `n` rows as (task, example index within the task's train split).
    pub fn next(&mut self, n: usize, rng: &mut RunRng) -> Vec<(usize, usize)> {
        match self.mix {
            Mix::Proportional => self
                .all
                .next(n, rng, None)
                .into_iter()
                .map(|i| self.locate(i))
                .collect(),
            Mix::Uniform => {
                let nonempty: Vec<usize> = (0..self.sizes.len())
                    .filter(|&k| self.sizes[k] > 0)
                    .collect();
                if nonempty.is_empty() {
                    return Vec::new();
                }
                (0..n)
                    .map(|_| {
                        let k = nonempty[rng.random_range(0..nonempty.len())];
                        (k, self.each[k].next(1, rng, None)[0])
                    })
                    .collect()
            }
        }
    }

    /// The task and in-task index of a position in the concatenation of all tasks.
    fn locate(&self, mut i: usize) -> (usize, usize) {
        for (k, &n) in self.sizes.iter().enumerate() {
            if i < n {
                return (k, i);
            }
            i -= n;
        }
        unreachable!("an index beyond every task's examples")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn counts(mix: Mix, sizes: &[usize], rows: usize) -> Vec<usize> {
        let mut rng = RunRng::seed_from_u64(1);
        let mut s = MixSampler::new(mix, sizes);
        let mut c = vec![0; sizes.len()];
        for (k, i) in s.next(rows, &mut rng) {
            assert!(i < sizes[k]);
            c[k] += 1;
        }
        c
    }

    #[test]
    fn proportional_mixing_sees_every_example_once_per_epoch_of_all_tasks() {
        assert_eq!(counts(Mix::Proportional, &[30, 10], 40), vec![30, 10]);
        assert_eq!(counts(Mix::Proportional, &[30, 10], 80), vec![60, 20]);
    }

    #[test]
    fn uniform_mixing_draws_each_task_about_equally_whatever_its_size() {
        let c = counts(Mix::Uniform, &[300, 10], 2000);
        assert!(
            c[0].abs_diff(1000) < 100 && c[1].abs_diff(1000) < 100,
            "{c:?}"
        );
    }

    #[test]
    fn uniform_mixing_skips_a_task_without_examples() {
        assert_eq!(counts(Mix::Uniform, &[0, 5], 10), vec![0, 10]);
    }

    #[test]
    fn the_same_seed_mixes_the_same_batches() {
        let draw = || {
            let mut rng = RunRng::seed_from_u64(9);
            let mut s = MixSampler::new(Mix::Uniform, &[7, 3, 5]);
            (0..4).map(|_| s.next(6, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(), draw());
    }
}
