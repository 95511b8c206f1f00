//! Run colours: a palette of clearly different colours, a preferred colour chosen for each run
//! when it is created (kept in its record, so it survives a relaunch), and the colours of the
//! runs on screen, where no two are alike. Used by the plots, the runs table and the
//! comparison; knows nothing of the views.
//!
//! Why both a stored preference and an assignment at draw time: a colour hashed from the id
//! alone gave AutoPrompt, fine-tuning and prefix-tuning runs the same blue (issue 13), and
//! any fixed colour per run collides once more runs exist than colours. A new run prefers a
//! colour none of the latest runs has; the runs on screen then keep their preferred colour
//! unless an older run on screen has it already, and only then take the next free one.

use crate::runs::RunRecord;
use egui::Color32;
use std::collections::HashMap;

/// Colours told apart on the dark and the light theme alike: matplotlib's tab10 without its
/// grey (too near the purple, and read as "disabled"), then four more of different hue or
/// lightness.
pub const PALETTE: [(u8, u8, u8); 14] = [
    (31, 119, 180),  // blue
    (255, 127, 14),  // orange
    (44, 160, 44),   // green
    (214, 39, 40),   // red
    (148, 103, 189), // purple
    (140, 86, 75),   // brown
    (227, 119, 194), // pink
    (188, 189, 34),  // olive
    (23, 190, 207),  // cyan
    (120, 230, 80),  // lime
    (255, 0, 255),   // magenta
    (150, 0, 90),    // wine
    (255, 215, 0),   // gold
    (174, 199, 232), // light blue
];

pub fn color(i: usize) -> Color32 {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    Color32::from_rgb(r, g, b)
}

/// A run's preferred colour: the one in its record, or (records written before colours were
/// stored) one derived from its id, stable across launches.
pub fn preferred(r: &RunRecord) -> usize {
    match r.colour {
        Some(c) => c as usize % PALETTE.len(),
        None => {
            let h = r.id.bytes().fold(0xcbf29ce484222325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100000001b3)
            });
            (h % PALETTE.len() as u64) as usize
        }
    }
}

/// The colour for a new run: the first one that none of the latest runs prefers (the most
/// recent ones first, so with more runs than colours the one least recently used).
pub fn pick(existing: &[RunRecord]) -> u8 {
    let mut last_seen = vec![None; PALETTE.len()];
    for (age, r) in existing.iter().rev().enumerate() {
        let c = preferred(r);
        if last_seen[c].is_none() {
            last_seen[c] = Some(age);
        }
    }
    let best = (0..PALETTE.len())
        .max_by_key(|&c| (last_seen[c].unwrap_or(usize::MAX), usize::MAX - c))
        .unwrap_or(0);
    best as u8
}

/// The colour of every run in `shown` (palette indices), no two alike while there are no more
/// runs than colours: the oldest keep their preferred colour, a later run whose preferred
/// colour is taken gets the next free one.
pub fn assign(shown: &[&RunRecord]) -> HashMap<String, usize> {
    assign_groups(&[shown])
}

/// [`assign`] over groups in order of importance: every run of the first group gets its
/// colour before any of the next (the plotted runs before those only listed beside them).
fn assign_groups(groups: &[&[&RunRecord]]) -> HashMap<String, usize> {
    let mut taken = vec![false; PALETTE.len()];
    let mut out = HashMap::new();
    for group in groups {
        let mut order: Vec<&RunRecord> = group.to_vec();
        order.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        for r in order {
            if out.contains_key(&r.id) {
                continue;
            }
            let want = preferred(r);
            let free = (0..PALETTE.len())
                .map(|k| (want + k) % PALETTE.len())
                .find(|&c| !taken[c]);
            // More runs than colours: they repeat, the preferred one kept.
            let c = free.unwrap_or(want);
            taken[c] = true;
            out.insert(r.id.clone(), c);
        }
    }
    out
}

/// The colours of the runs a view shows, by run id (a run not among them gets its preferred
/// colour).
pub struct RunColors {
    by_id: HashMap<String, usize>,
}

impl RunColors {
    /// `drawn` (on a plot or a chart) never share a colour; `listed` (beside it) take the
    /// colours left.
    pub fn of(drawn: &[&RunRecord], listed: &[&RunRecord]) -> RunColors {
        RunColors {
            by_id: assign_groups(&[drawn, listed]),
        }
    }

    pub fn index(&self, r: &RunRecord) -> usize {
        self.by_id
            .get(&r.id)
            .copied()
            .unwrap_or_else(|| preferred(r))
    }

    pub fn get(&self, r: &RunRecord) -> Color32 {
        color(self.index(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::MethodKind;
    use crate::run::RunSpec;
    use std::path::Path;

    fn run(n: usize, method: MethodKind) -> RunRecord {
        let spec = RunSpec {
            method,
            settings: Default::default(),
            template: None,
            config: Default::default(),
            out: None,
        };
        let mut r = RunRecord::new(
            format!("{}-{n:03}-{}", 1000 + n, method.id()),
            "m",
            "t",
            Path::new("t"),
            spec,
        );
        r.created_ms = n as u64;
        r
    }

    #[test]
    fn the_palette_has_at_least_twelve_clearly_different_colours() {
        assert!(PALETTE.len() >= 12);
        for (i, a) in PALETTE.iter().enumerate() {
            for b in &PALETTE[i + 1..] {
                let d = (a.0 as i32 - b.0 as i32).pow(2)
                    + (a.1 as i32 - b.1 as i32).pow(2)
                    + (a.2 as i32 - b.2 as i32).pow(2);
                // At least ~70 apart in RGB: no two that only a careful eye tells apart.
                assert!(d >= 70 * 70, "{a:?} and {b:?} are too close");
            }
        }
    }

    #[test]
    fn new_runs_take_colours_nobody_recent_has_and_shown_runs_never_share_one() {
        let mut runs: Vec<RunRecord> = Vec::new();
        for n in 0..PALETTE.len() {
            let mut r = run(n, MethodKind::ALL[n % MethodKind::ALL.len()]);
            r.colour = Some(pick(&runs));
            runs.push(r);
        }
        let mut prefs: Vec<usize> = runs.iter().map(preferred).collect();
        prefs.sort();
        prefs.dedup();
        assert_eq!(prefs.len(), PALETTE.len(), "every colour once");

        // Old records without a stored colour: their hashed colours may collide, but not on
        // screen.
        let old: Vec<RunRecord> = (0..12)
            .map(|n| run(n, MethodKind::ALL[n % MethodKind::ALL.len()]))
            .collect();
        let shown: Vec<&RunRecord> = old.iter().collect();
        let colours = assign(&shown);
        let mut seen: Vec<usize> = colours.values().copied().collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), shown.len());
        // The same runs get the same colours, however they are ordered.
        let reversed: Vec<&RunRecord> = old.iter().rev().collect();
        assert_eq!(assign(&reversed), colours);
    }
}
