//! Repeating a run over seeds, and what its numbers are worth: the seed list a user types
//! (`--seeds 0,1,2`, the workbench's "seeds"), the mean and sample standard deviation over the
//! seeds' scores, and a 95% confidence interval for one run's test score (a proportion of its
//! test examples answered right).
//!
//! Plain arithmetic on numbers: depends on no other module of the crate.

/// The z value of a two-sided 95% interval (the normal distribution's 97.5% quantile).
pub const Z95: f64 = 1.959_963_984_540_054;

/// Reads a seed list such as `0,1,2` (spaces allowed around the commas). Refused, with the
/// reason: an empty list, an empty item (`0,,2`), an item that is not a whole number from 0 up,
/// and a seed listed twice (the repeats would be the same run twice, and count twice in the
/// mean).
pub fn parse_seeds(text: &str) -> Result<Vec<u64>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("the seed list is empty; give seeds separated by commas, e.g. 0,1,2".into());
    }
    let mut seeds = Vec::new();
    for (i, item) in text.split(',').enumerate() {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!(
                "seed list {text:?}: item {} is empty; give seeds separated by single commas, \
                 e.g. 0,1,2",
                i + 1
            ));
        }
        let seed: u64 = item.parse().map_err(|_| {
            format!(
                "seed list {text:?}: item {} ({item:?}) is not a whole number from 0 up",
                i + 1
            )
        })?;
        if seeds.contains(&seed) {
            return Err(format!(
                "seed list {text:?}: seed {seed} is listed twice; each seed runs once"
            ));
        }
        seeds.push(seed);
    }
    Ok(seeds)
}

/// A seed list as [`parse_seeds`] reads it: `0,1,2`.
pub fn format_seeds(seeds: &[u64]) -> String {
    seeds
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The arithmetic mean; None for no values.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The sample standard deviation (divided by n - 1: the seeds are a sample of the seeds one
/// could have drawn); None for fewer than two values, where it is not defined.
pub fn sample_std(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let m = mean(values)?;
    let ss: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
    Some((ss / (values.len() - 1) as f64).sqrt())
}

/// Mean, sample standard deviation and count of several seeds' scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub mean: f64,
    /// None with a single value.
    pub std: Option<f64>,
    pub n: usize,
}

impl Summary {
    /// None for no values.
    pub fn of(values: &[f64]) -> Option<Summary> {
        Some(Summary {
            mean: mean(values)?,
            std: sample_std(values),
            n: values.len(),
        })
    }

    /// "0.850 ± 0.050 (n=3)"; with one value "0.850 (n=1, no std)".
    pub fn line(&self) -> String {
        match self.std {
            Some(s) => format!("{:.3} ± {:.3} (n={})", self.mean, s, self.n),
            None => format!("{:.3} (n={}, no std)", self.mean, self.n),
        }
    }
}

/// A 95% confidence interval for a proportion `p` measured on `n` examples, by Wilson's score
/// method: (low, high), within 0..=1. None for no examples, or `p` outside 0..=1 (or NaN).
///
/// Wilson and not the normal approximation (p ± z·sqrt(p(1-p)/n)): the test sets here are
/// often under 100 examples and the scores near 1.0, where the normal interval is badly off:
/// at 20 of 20 right it is [1.00, 1.00], claiming certainty, and near 1.0 it runs past 1.0.
/// Wilson's interval stays within 0..1 and keeps its coverage close to 95% for small n and
/// extreme p (20 of 20: [0.84, 1.00]).
pub fn wilson_interval(p: f64, n: usize) -> Option<(f64, f64)> {
    if n == 0 || !(0.0..=1.0).contains(&p) {
        return None;
    }
    let n = n as f64;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// A test score with its Wilson interval: "0.857 [0.71, 0.94], n=35"; without a usable
/// interval just the score and why.
pub fn score_with_interval(p: f64, n: Option<usize>) -> String {
    match n.and_then(|n| Some((n, wilson_interval(p, n)?))) {
        Some((n, (lo, hi))) => format!("{p:.3} [{lo:.2}, {hi:.2}], n={n}"),
        None => format!("{p:.3} (n unknown)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn mean_and_sample_std_match_values_worked_by_hand() {
        // 0.8, 0.9, 1.0: mean 0.9; squares 0.01 + 0 + 0.01 = 0.02, / (3 - 1), sqrt: 0.1.
        assert!(close(mean(&[0.8, 0.9, 1.0]).unwrap(), 0.9));
        assert!(close(sample_std(&[0.8, 0.9, 1.0]).unwrap(), 0.1));
        // 0.5, 0.75: mean 0.625; 2 * 0.125^2 / 1 = 0.03125, sqrt: 0.1767767.
        assert!((sample_std(&[0.5, 0.75]).unwrap() - 0.176_776_695).abs() < 1e-8);
        assert_eq!(sample_std(&[0.7]), None);
        assert_eq!(mean(&[]), None);
        let s = Summary::of(&[0.8, 0.9, 1.0]).unwrap();
        assert_eq!(s.line(), "0.900 ± 0.100 (n=3)");
        assert_eq!(Summary::of(&[0.5]).unwrap().line(), "0.500 (n=1, no std)");
    }

    #[test]
    fn wilson_intervals_match_values_worked_by_hand() {
        // 30 of 35: centre (0.857143 + 1.96²/70) / (1 + 1.96²/35) = 0.82182, half 0.11558.
        let (lo, hi) = wilson_interval(30.0 / 35.0, 35).unwrap();
        assert!((lo - 0.706_244).abs() < 1e-5 && (hi - 0.937_398).abs() < 1e-5);
        assert_eq!(
            score_with_interval(30.0 / 35.0, Some(35)),
            "0.857 [0.71, 0.94], n=35"
        );
        // 5 of 10: symmetric about 0.5.
        let (lo, hi) = wilson_interval(0.5, 10).unwrap();
        assert!((lo - 0.236_593).abs() < 1e-5 && (hi - 0.763_407).abs() < 1e-5);
        assert!(close(lo + hi, 1.0));
        // 90 of 100.
        let (lo, hi) = wilson_interval(0.9, 100).unwrap();
        assert!((lo - 0.825_634).abs() < 1e-5 && (hi - 0.944_771).abs() < 1e-5);
    }

    #[test]
    fn a_perfect_score_on_few_examples_is_not_certain() {
        // The normal approximation gives [1, 1] here; Wilson gives (n / (n + z²), 1).
        let (lo, hi) = wilson_interval(1.0, 20).unwrap();
        assert!((lo - 20.0 / (20.0 + Z95 * Z95)).abs() < 1e-9, "{lo}");
        assert!((lo - 0.838_875).abs() < 1e-5);
        assert!(close(hi, 1.0));
        let (lo, hi) = wilson_interval(0.0, 10).unwrap();
        assert!(close(lo, 0.0) && (hi - 0.277_533).abs() < 1e-5);
        assert_eq!(wilson_interval(0.5, 0), None);
        assert_eq!(wilson_interval(f64::NAN, 10), None);
        assert_eq!(score_with_interval(0.5, None), "0.500 (n unknown)");
    }

    #[test]
    fn seed_lists_are_read_and_bad_ones_are_refused_with_the_reason() {
        assert_eq!(parse_seeds("0,1,2"), Ok(vec![0, 1, 2]));
        assert_eq!(parse_seeds(" 7 , 3 "), Ok(vec![7, 3]));
        assert_eq!(parse_seeds("42"), Ok(vec![42]));
        assert_eq!(format_seeds(&[0, 1, 2]), "0,1,2");
        let e = parse_seeds("0,,x").unwrap_err();
        assert!(e.contains("item 2 is empty"), "{e}");
        let e = parse_seeds("0,x").unwrap_err();
        assert!(e.contains("item 2 (\"x\")"), "{e}");
        let e = parse_seeds("0,-1").unwrap_err();
        assert!(e.contains("whole number"), "{e}");
        let e = parse_seeds("1,2,1").unwrap_err();
        assert!(e.contains("seed 1 is listed twice"), "{e}");
        assert!(parse_seeds("  ").unwrap_err().contains("empty"));
    }
}
