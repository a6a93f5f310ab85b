//! What the kernel half reports: one [`Line`] per event, the record `vigil-agent watch` prints
//! and the daemon logs.
use serde::Serialize;

use super::probes::monotonic_ns;

/// One output line. Fields that do not apply to an event are left out.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Line {
    pub event: &'static str,
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tid: Option<u32>,
    /// CLOCK_MONOTONIC ns when the kernel saw it, or when the classifier decided.
    pub kernel_ns: u64,
    /// CLOCK_MONOTONIC ns when the agent handled it.
    pub seen_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core_dumped: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runq_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drops: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasons: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ping_rtt_us: Option<u64>,
    /// `kernel_ns` is a kernel timestamp (not a userspace decision), so the lag means something.
    #[serde(skip)]
    pub from_kernel: bool,
}

impl Line {
    pub fn new(event: &'static str, pid: u32, kernel_ns: u64) -> Self {
        Self {
            event,
            pid,
            kernel_ns,
            seen_ns: monotonic_ns(),
            ..Self::default()
        }
    }
}

/// Splits a raw exit code as wait(2) encodes it into (exit status, signal, core dumped).
pub fn decode_exit(code: u64) -> (Option<i32>, Option<i32>, bool) {
    let code = code as i32;
    let signal = code & 0x7f;
    if signal == 0 {
        (Some((code >> 8) & 0xff), None, false)
    } else {
        (None, Some(signal), code & 0x80 != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_decode_as_wait_does() {
        assert_eq!(decode_exit(9), (None, Some(9), false)); // kill -9
        assert_eq!(decode_exit(0), (Some(0), None, false)); // exit(0)
        assert_eq!(decode_exit(1 << 8), (Some(1), None, false)); // exit(1)
        assert_eq!(decode_exit(11 | 0x80), (None, Some(11), true)); // SIGSEGV with a core
    }

    #[test]
    fn json_lines_carry_the_documented_fields_and_nothing_empty() {
        let mut line = Line {
            event: "exited",
            pid: 42,
            tid: Some(43),
            kernel_ns: 10,
            seen_ns: 20,
            ..Line::default()
        };
        line.signal = Some(9);
        let v: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&line).unwrap()).unwrap();
        assert_eq!(v["event"], "exited");
        assert_eq!(v["pid"], 42);
        assert_eq!(v["tid"], 43);
        assert_eq!(v["kernel_ns"], 10);
        assert_eq!(v["seen_ns"], 20);
        assert_eq!(v["signal"], 9);
        assert!(v.get("exit_code").is_none());
    }
}
