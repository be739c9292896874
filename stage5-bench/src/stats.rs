//! Medians and spreads: what every figure of this crate prints.
//!
//! Two cores shared with whatever else the machine runs make single runs lie, mostly
//! upwards (a run that lost its core for a moment). So every figure is the median of
//! several runs, printed with its spread, `(max - min) / median`, for the reader to judge
//! how far to trust it.

/// The median and range of a few runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// The middle run (the mean of the two middle ones for an even count).
    pub median: f64,
    /// The fastest (smallest) run.
    pub min: f64,
    /// The slowest (largest) run.
    pub max: f64,
    /// How many runs.
    pub runs: usize,
}

impl Summary {
    /// The summary of `values`; `None` when there are none or one is not a number.
    pub fn of(values: &[f64]) -> Option<Summary> {
        if values.is_empty() || values.iter().any(|v| v.is_nan()) {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Summary {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            runs: n,
        })
    }

    /// `(max - min) / median`, as a fraction; zero for a single run.
    pub fn spread(&self) -> f64 {
        if self.median > 0.0 {
            (self.max - self.min) / self.median
        } else {
            0.0
        }
    }

    /// The spread as a short percentage, e.g. `3.2%` or `140%`.
    pub fn spread_text(&self) -> String {
        percent(self.spread())
    }
}

/// `0.4%`, `3.2%`, `12%`, `140%`: two significant figures at most.
pub fn percent(fraction: f64) -> String {
    let p = fraction * 100.0;
    if p < 10.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_range_of_odd_and_even_counts() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.runs), (2.0, 1.0, 3.0, 3));
        assert_eq!(s.spread(), 1.0);
        assert_eq!(s.spread_text(), "100%");
        let s = Summary::of(&[10.0, 10.2, 10.1, 10.3]).unwrap();
        assert!((s.median - 10.15).abs() < 1e-9, "{s:?}");
        assert_eq!(s.spread_text(), "3.0%");
        let one = Summary::of(&[5.0]).unwrap();
        assert_eq!((one.median, one.spread()), (5.0, 0.0));
    }

    #[test]
    fn nothing_or_not_a_number_has_no_summary() {
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(Summary::of(&[1.0, f64::NAN]), None);
    }
}
