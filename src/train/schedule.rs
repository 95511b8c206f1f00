//! The learning-rate schedule: a linear warm-up over the first `warmup` fraction of the steps,
//! then a linear decay to zero at the last step (the schedule PEFT's examples use through
//! transformers' `get_linear_schedule_with_warmup`).

/// The learning rate for `step` (counted from 0) of `total`.
pub fn lr_at(step: usize, total: usize, peak: f64, warmup: f64) -> f64 {
    let warm = ((total as f64) * warmup).round().max(1.0);
    let s = step as f64 + 1.0;
    if s <= warm {
        peak * s / warm
    } else {
        peak * ((total as f64 - s + 1.0) / (total as f64 - warm + 1.0)).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::lr_at;

    #[test]
    fn the_rate_climbs_linearly_to_the_peak_over_the_warmup() {
        // 100 steps, 10% warm-up: steps 0..9 climb by peak/10 each.
        assert!((lr_at(0, 100, 1.0, 0.1) - 0.1).abs() < 1e-12);
        assert!((lr_at(4, 100, 1.0, 0.1) - 0.5).abs() < 1e-12);
        assert!((lr_at(9, 100, 1.0, 0.1) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn the_rate_decays_linearly_after_the_warmup_and_never_goes_negative() {
        let rates: Vec<f64> = (0..100).map(|s| lr_at(s, 100, 1.0, 0.1)).collect();
        for w in rates[9..].windows(2) {
            assert!(w[1] < w[0], "decay must be strictly decreasing: {w:?}");
        }
        // The last step still learns a little; nothing is below zero.
        assert!(rates[99] > 0.0 && rates[99] < 0.02, "{}", rates[99]);
        assert!(lr_at(150, 100, 1.0, 0.1) >= 0.0);
    }

    #[test]
    fn no_warmup_still_starts_at_the_peak_after_one_step() {
        // A warm-up of 0 rounds to one step, so the first step runs at the peak rate.
        assert_eq!(lr_at(0, 10, 0.5, 0.0), 0.5);
        assert!(lr_at(1, 10, 0.5, 0.0) < 0.5);
    }
}
