//! The clock every part of a safety run stamps with: CLOCK_MONOTONIC, which is one clock for the
//! whole machine (network namespaces share it), so the writers' stamps (python's
//! `time.monotonic_ns()`), the role monitor's and the runner's compare directly.
use nix::time::{ClockId, clock_gettime};

/// CLOCK_MONOTONIC now, in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always readable");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}
