//! The agent's clock for kernel times: CLOCK_MONOTONIC, the clock `bpf_ktime_get_ns` reads, so
//! a kernel stamp and an agent reading compare directly.

/// CLOCK_MONOTONIC in ns.
pub fn monotonic_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64,
        // CLOCK_MONOTONIC always exists on Linux; 0 would only make ages look huge, never panic.
        Err(_) => 0,
    }
}
