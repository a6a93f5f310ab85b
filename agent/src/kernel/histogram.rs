//! The kernel's log2 histograms (run-queue waits, unread ages), loaded into hdrhistograms for
//! percentiles, and the histogram the agent keeps of its own stall ages.
use hdrhistogram::Histogram;

/// An empty histogram of microseconds, from 1 us to 1 h.
pub fn new_histogram() -> Histogram<u64> {
    // 1 us .. 1 h at 3 significant digits: the bounds are valid constants.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Loads log2 ns buckets into an hdrhistogram in us, each bucket at its upper bound.
pub fn log2_histogram(buckets: &[u64]) -> Histogram<u64> {
    let mut h = new_histogram();
    for (i, &count) in buckets.iter().enumerate() {
        if count > 0 {
            let upper_ns = (1u128 << (i + 1)) - 1;
            let us = ((upper_ns / 1_000) as u64).clamp(1, h.high());
            let _ = h.record_n(us, count);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log2_buckets_load_at_their_upper_bound() {
        let mut buckets = vec![0u64; 64];
        buckets[10] = 3; // [1024, 2048) ns
        buckets[20] = 1; // [~1.05, ~2.1) ms
        let h = log2_histogram(&buckets);
        assert_eq!(h.len(), 4);
        assert_eq!(h.value_at_quantile(0.5), 2);
        assert!(h.max() >= 2_097 && h.max() <= 2_100, "{}", h.max());
    }
}
