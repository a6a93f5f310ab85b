//! What `vigil-agent run` logs on a real host: a real redis-server, the real agent binary with
//! its eBPF probes, and a stand-in controller over real gRPC. Needs root.
#[allow(dead_code)] // the suites share the stub controller; this one needs only part of it
mod common;

use anyhow::Result;
use common::StubController;
use nix::sys::signal::Signal;
use vigil_proto::v1;
use vigil_tests::{RedisServer, WAIT, require_root, serial, wait_until};

/// The JSON log line's `fields`, when it is a line of `message` about kernel `event`.
fn fields_of(line: &str, message: &str, event: &str) -> Option<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = v.get("fields")?;
    (fields.get("message")?.as_str()? == message && fields.get("event")?.as_str()? == event)
        .then(|| fields.clone())
}

/// A server that is down answers each of the agent's PINGs with a reset: the first is logged in
/// full, and the rest are counted into one summary line when the interval ends, not logged one
/// line each.
#[test]
fn repeated_kernel_events_are_summarised() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut server = RedisServer::start()?;
    let mut ctl = StubController::start()?;
    let agent = ctl.start_agent(&server, "store", "p", &[])?;
    ctl.wait_verdict("p", "a healthy server", |v| {
        v.health() == v1::Health::Healthy
    })?;
    server.signal(Signal::SIGKILL)?;
    server.wait_exit()?;
    ctl.wait_verdict("p", "DOWN", |v| v.health() == v1::Health::Down)?;
    // The interval is 10 s, within WAIT.
    let summary = wait_until(WAIT, "a summary of the resets", || {
        agent
            .log
            .lines()
            .iter()
            .find_map(|l| fields_of(l, "kernel event repeated", "reset_sent"))
    })?;
    let repeats = summary["repeats"].as_u64().unwrap_or(0);
    // Ten PINGs a second for ten seconds, each refused with a reset; a handful is enough to
    // show they were counted rather than logged.
    assert!(repeats >= 5, "too few repeats counted: {summary}");
    let lines = agent.log.lines();
    let summary_at = lines
        .iter()
        .position(|l| fields_of(l, "kernel event repeated", "reset_sent").is_some())
        .unwrap_or(lines.len());
    let full = lines[..summary_at]
        .iter()
        .filter(|l| fields_of(l, "kernel", "reset_sent").is_some())
        .count();
    assert_eq!(
        full, 1,
        "{full} resets logged in full before the summary of {repeats} repeats"
    );
    Ok(())
}
