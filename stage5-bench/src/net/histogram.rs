//! A latency histogram: constant memory however many requests, every value kept within
//! 1% (log-linear buckets, as HdrHistogram's: 64 buckets per power of two).

use std::time::Duration;

/// Bits of each value kept exactly: 2^7 = 128 values at the bottom, then 64 buckets per
/// doubling, so a bucket is at most 1/64 of its values wide.
const EXACT_BITS: u32 = 7;
const HALF: u64 = 1 << (EXACT_BITS - 1);

/// Counts of latencies in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        // Enough buckets for any u64 value.
        let buckets = bucket(u64::MAX) + 1;
        Histogram {
            counts: vec![0; buckets],
            total: 0,
        }
    }

    /// Counts one latency.
    pub fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.counts[bucket(ns)] += 1;
        self.total += 1;
    }

    /// How many latencies it holds.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The latency below which `quantile` (0.5 for the median, 0.99) of them fall, as the
    /// middle of its bucket; `None` when empty.
    pub fn quantile(&self, quantile: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let rank = ((quantile.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let (low, high) = bounds(index);
                return Some(Duration::from_nanos(low + (high - low) / 2));
            }
        }
        None
    }
}

/// The bucket of `value`: the value itself below 128, then 64 per power of two.
fn bucket(value: u64) -> usize {
    let top = 63 - value.max(1).leading_zeros(); // the highest set bit
    let shift = top.saturating_sub(EXACT_BITS - 1);
    // For shift > 0, value >> shift is in [64, 128).
    (u64::from(shift) * HALF + (value >> shift)) as usize
}

/// The smallest and largest value of bucket `index`.
fn bounds(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < 2 * HALF {
        return (index, index);
    }
    let shift = index / HALF - 1;
    let low = (index - shift * HALF) << shift;
    (low, low + ((1u64 << shift) - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_that_holds_it() {
        for value in (0..5000).chain([1 << 20, 123_456_789, u64::MAX / 3, u64::MAX]) {
            let (low, high) = bounds(bucket(value));
            assert!(low <= value && value <= high, "{value}: [{low}, {high}]");
            // Within 1/64 of the value, i.e. better than 2%, and exact below 128.
            assert!((high - low) as f64 <= value as f64 / 64.0, "{value}");
        }
        assert!(bucket(u64::MAX) < 4096);
    }

    #[test]
    fn quantiles_of_a_known_spread() {
        let mut histogram = Histogram::new();
        assert_eq!(histogram.quantile(0.5), None);
        for us in 1..=1000 {
            histogram.record(Duration::from_micros(us));
        }
        assert_eq!(histogram.count(), 1000);
        let near = |q: f64, us: f64| {
            let got = histogram.quantile(q).unwrap().as_nanos() as f64 / 1e3;
            assert!((got - us).abs() <= us / 64.0, "p{q}: {got} µs, not {us}");
        };
        near(0.5, 500.0);
        near(0.99, 990.0);
        near(1.0, 1000.0);
        near(0.0, 1.0);
    }
}
