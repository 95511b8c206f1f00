//! The training-loss log a run reports: the first step's loss and the mean of the last few
//! (one step's loss is noisy on small batches, so the end of training is read as a mean).

/// How many of the last steps `last_mean` averages.
pub const LAST_STEPS: usize = 10;

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct LossLog {
    losses: Vec<f32>,
}

impl LossLog {
    pub fn push(&mut self, loss: f32) {
        self.losses.push(loss);
    }

    pub fn first(&self) -> Option<f32> {
        self.losses.first().copied()
    }

    /// The mean over the last `LAST_STEPS` steps (fewer if fewer ran); None before any step.
    pub fn last_mean(&self) -> Option<f32> {
        let n = self.losses.len().min(LAST_STEPS);
        (n > 0).then(|| self.losses[self.losses.len() - n..].iter().sum::<f32>() / n as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::LossLog;

    #[test]
    fn an_empty_log_reports_nothing() {
        let log = LossLog::default();
        assert_eq!((log.first(), log.last_mean()), (None, None));
    }

    #[test]
    fn the_last_loss_is_the_mean_of_the_last_ten_steps() {
        let mut log = LossLog::default();
        for l in 1..=20 {
            log.push(l as f32);
        }
        assert_eq!(log.first(), Some(1.0));
        assert_eq!(log.last_mean(), Some(15.5)); // mean of 11..=20
    }

    #[test]
    fn fewer_than_ten_steps_are_all_averaged() {
        let mut log = LossLog::default();
        log.push(2.0);
        log.push(4.0);
        assert_eq!(log.last_mean(), Some(3.0));
    }
}
