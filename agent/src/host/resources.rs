//! The resource monitor: the server's CPU and RSS and the host's available memory, from procfs.
use std::time::Instant;

use procfs::{Current, Meminfo, process::Process};

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ResourceSample {
    /// Percent of one core since the previous sample.
    pub cpu_pct: f64,
    pub rss_bytes: u64,
    pub host_memory_available_pct: f64,
}

#[derive(Default)]
pub struct ResourceSampler {
    last: Option<(u32, Instant, u64)>,
}

impl ResourceSampler {
    /// Samples `pid`. The first sample of a process has no CPU figure yet (0).
    pub fn sample(&mut self, pid: u32) -> Option<ResourceSample> {
        let process = Process::new(pid as i32).ok()?;
        let stat = process.stat().ok()?;
        let ticks = stat.utime + stat.stime;
        let now = Instant::now();
        let cpu_pct = match self.last.replace((pid, now, ticks)) {
            Some((last_pid, at, before)) if last_pid == pid => {
                let secs = now.duration_since(at).as_secs_f64();
                let used = ticks.saturating_sub(before) as f64 / procfs::ticks_per_second() as f64;
                if secs > 0.0 { used / secs * 100.0 } else { 0.0 }
            }
            _ => 0.0,
        };
        let rss_bytes = stat.rss * procfs::page_size();
        let host_memory_available_pct = Meminfo::current()
            .ok()
            .and_then(|m| Some(m.mem_available? as f64 * 100.0 / m.mem_total as f64))
            .unwrap_or(100.0);
        Some(ResourceSample {
            cpu_pct,
            rss_bytes,
            host_memory_available_pct,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let mut s = ResourceSampler::default();
        let me = std::process::id();
        let first = s.sample(me).expect("our own process");
        assert!(first.rss_bytes > 0);
        assert!(first.host_memory_available_pct > 0.0 && first.host_memory_available_pct <= 100.0);
        // Burn some CPU so the second sample has something to measure.
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_add(i ^ (x >> 3));
        }
        std::hint::black_box(x);
        let second = s.sample(me).expect("our own process");
        assert!(second.cpu_pct > 0.0, "{second:?}");
        assert!(s.sample(u32::MAX).is_none());
    }
}
