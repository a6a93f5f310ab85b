//! What the kernel half reports: one [`Line`] per event, the record `vigil-agent watch` prints
//! and the daemon logs, named by its [`KernelEvent`].
use serde::{Serialize, Serializer};
use tracing::Level;

use super::clock::monotonic_ns;

/// Every kind of line. Each has one name, the `event` field of a JSON line (tests, benches and
/// log readers match on these, so they never change), and one severity, the level the daemon
/// logs it at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelEvent {
    /// A thread switched out stopped (SIGSTOP, a debugger), or a stall's reader is stopped.
    Stopped,
    /// The stopped process runs again.
    Continued,
    /// The process exited, with its exit code or signal.
    Exited,
    /// A thread waited for a CPU past the threshold, or a stall's reader is runnable.
    Starved,
    /// A stall's reader sleeps in something other than a futex wait (DEBUG SLEEP, disk).
    Blocked,
    /// A stall's reader is on CPU: a long command.
    Busy,
    /// A stall's reader waits on a futex: a lock nobody releases.
    DeadlockSuspected,
    /// The requests of a stall were read.
    UnreadStallCleared,
    /// The listener on the server port closed.
    ListenerClosed,
    /// A client reset a connection to the server port.
    ResetReceived,
    /// The kernel reset a connection from the server port.
    ResetSent,
    /// The kernel retransmitted a segment from the server port.
    Retransmit,
    /// Connections were dropped at the server's full accept queue.
    ListenOverflow,
    /// Another process took the server port: the server restarted.
    TargetChanged,
    /// The verdict the agent would report changed (`vigil-agent watch` only).
    Verdict,
}

impl KernelEvent {
    /// The `event` field of a line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Continued => "continued",
            Self::Exited => "exited",
            Self::Starved => "starved",
            Self::Blocked => "blocked",
            Self::Busy => "busy",
            Self::DeadlockSuspected => "deadlock_suspected",
            Self::UnreadStallCleared => "unread_stall_cleared",
            Self::ListenerClosed => "listener_closed",
            Self::ResetReceived => "reset_received",
            Self::ResetSent => "reset_sent",
            Self::Retransmit => "retransmit",
            Self::ListenOverflow => "listen_overflow",
            Self::TargetChanged => "target_changed",
            Self::Verdict => "verdict",
        }
    }

    /// How much an operator needs to hear of it: WARN for what takes the server out of service
    /// or drops clients, INFO for the rest.
    pub fn severity(self) -> Level {
        match self {
            Self::Stopped
            | Self::Exited
            | Self::DeadlockSuspected
            | Self::ListenerClosed
            | Self::ListenOverflow => Level::WARN,
            Self::Continued
            | Self::Starved
            | Self::Blocked
            | Self::Busy
            | Self::UnreadStallCleared
            | Self::ResetReceived
            | Self::ResetSent
            | Self::Retransmit
            | Self::TargetChanged
            | Self::Verdict => Level::INFO,
        }
    }
}

impl Serialize for KernelEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// One output line. Fields that do not apply to an event are left out.
#[derive(Clone, Debug, Serialize)]
pub struct Line {
    pub event: KernelEvent,
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
    pub fn new(event: KernelEvent, pid: u32, kernel_ns: u64) -> Self {
        Self {
            event,
            pid,
            tid: None,
            kernel_ns,
            seen_ns: monotonic_ns(),
            source: None,
            age_ms: None,
            age_us: None,
            exit_code: None,
            signal: None,
            core_dumped: None,
            threads: None,
            port: None,
            peer_port: None,
            runq_us: None,
            old_pid: None,
            drops: None,
            queued: None,
            health: None,
            reasons: None,
            ping_rtt_us: None,
            from_kernel: false,
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
        let mut line = Line::new(KernelEvent::Exited, 42, 10);
        line.tid = Some(43);
        line.seen_ns = 20;
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

    #[test]
    fn events_keep_their_names_and_severities() {
        let all = [
            (KernelEvent::Stopped, "stopped", Level::WARN),
            (KernelEvent::Continued, "continued", Level::INFO),
            (KernelEvent::Exited, "exited", Level::WARN),
            (KernelEvent::Starved, "starved", Level::INFO),
            (KernelEvent::Blocked, "blocked", Level::INFO),
            (KernelEvent::Busy, "busy", Level::INFO),
            (
                KernelEvent::DeadlockSuspected,
                "deadlock_suspected",
                Level::WARN,
            ),
            (
                KernelEvent::UnreadStallCleared,
                "unread_stall_cleared",
                Level::INFO,
            ),
            (KernelEvent::ListenerClosed, "listener_closed", Level::WARN),
            (KernelEvent::ResetReceived, "reset_received", Level::INFO),
            (KernelEvent::ResetSent, "reset_sent", Level::INFO),
            (KernelEvent::Retransmit, "retransmit", Level::INFO),
            (KernelEvent::ListenOverflow, "listen_overflow", Level::WARN),
            (KernelEvent::TargetChanged, "target_changed", Level::INFO),
            (KernelEvent::Verdict, "verdict", Level::INFO),
        ];
        for (event, name, severity) in all {
            assert_eq!(event.name(), name);
            assert_eq!(event.severity(), severity, "{name}");
            // A JSON line carries the name as a plain string.
            assert_eq!(
                serde_json::to_string(&event).unwrap(),
                format!("\"{name}\"")
            );
        }
    }
}
