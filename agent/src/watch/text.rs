//! The readable forms `vigil-agent watch` prints without `--json`: one line per event, and the
//! summary on exit.
use std::time::SystemTime;

use crate::kernel::event::Line;

/// The readable form of a line: time, event, then every field that applies.
pub fn line(line: &Line) -> String {
    let mut text = format!(
        "{} {:<20} pid={}",
        humantime::format_rfc3339_millis(SystemTime::now()),
        line.event.name(),
        line.pid
    );
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(line) {
        for (key, value) in fields {
            match (key.as_str(), value) {
                ("event" | "pid" | "kernel_ns" | "seen_ns", _) => {}
                (_, serde_json::Value::String(s)) => text.push_str(&format!(" {key}={s}")),
                (_, value) => text.push_str(&format!(" {key}={value}")),
            }
        }
    }
    if line.from_kernel {
        let lag_us = line.seen_ns.saturating_sub(line.kernel_ns) / 1_000;
        text.push_str(&format!(" (seen {lag_us}us after the kernel)"));
    }
    text
}

/// The readable form of the summary object `KernelWatcher::summary` builds.
pub fn summary(s: &serde_json::Value) -> String {
    format!(
        "summary: run-queue wait p50={}us p99={}us max={}us over {} waits; unread request age p50={}us \
         p99={}us max={}us over {} reads; {} stalls (longest {}us); local PING p50={}us p99={}us; \
         {} events dropped (kernel histograms are log2 buckets, shown at their upper bound)",
        s["runq_p50_us"],
        s["runq_p99_us"],
        s["runq_max_us"],
        s["runq_waits"],
        s["unread_p50_us"],
        s["unread_p99_us"],
        s["unread_max_us"],
        s["unread_reads"],
        s["stalls"],
        s["stall_max_us"],
        s["ping_rtt_p50_us"],
        s["ping_rtt_p99_us"],
        s["events_dropped"],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::event::KernelEvent;

    #[test]
    fn a_text_line_names_the_event_and_its_fields() {
        let mut exited = Line::new(KernelEvent::Exited, 42, 10);
        exited.tid = Some(43);
        exited.seen_ns = 20;
        exited.signal = Some(9);
        let text = line(&exited);
        assert!(text.contains("exited") && text.contains("signal=9"));
    }
}
