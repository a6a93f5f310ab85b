//! The kernel probes and `vigil-agent watch`, end to end: real eBPF programs in this kernel,
//! a real redis-server (or the deadlock fixture), and the real agent binary. Needs root.
//! Every test asserts which events appear and in what order, never how fast.
use std::{
    io::{Read, Write},
    net::TcpStream,
    os::unix::process::CommandExt,
    process::Command,
    time::Duration,
};

use anyhow::Result;
use nix::sys::signal::Signal;
use serde_json::Value;
use vigil_tests::{Fixture, RedisServer, WAIT, Watch, free_port, require_root, serial, wait_until};

fn watch_pid(server: &RedisServer) -> Result<Watch> {
    Watch::start(&["--pid", &server.pid().to_string()])
}

fn pid_of(v: &Value) -> u64 {
    v["pid"].as_u64().unwrap_or(0)
}

/// Sends a raw RESP PING without waiting for the answer: a client waiting on the server.
fn waiting_client(port: u16) -> Result<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.write_all(b"*1\r\n$4\r\nPING\r\n")?;
    Ok(stream)
}

#[test]
fn sigstop_is_stopped_and_sigcont_is_continued() -> Result<()> {
    require_root();
    let _serial = serial();
    let server = RedisServer::start()?;
    let mut watch = watch_pid(&server)?;
    server.signal(Signal::SIGSTOP)?;
    let stopped = watch.wait_event("stopped")?;
    assert_eq!(pid_of(&stopped), u64::from(server.pid()));
    assert_eq!(stopped["source"], "sched_switch");
    assert!(
        stopped["seen_ns"].as_u64() >= stopped["kernel_ns"].as_u64(),
        "seen before the kernel saw it: {stopped}"
    );
    server.signal(Signal::SIGCONT)?;
    let continued = watch.wait_event("continued")?;
    assert_eq!(pid_of(&continued), u64::from(server.pid()));
    server.ping()?;
    let events = watch.events();
    let stop_at = events.iter().position(|e| *e == "stopped");
    let cont_at = events.iter().position(|e| *e == "continued");
    assert!(
        stop_at < cont_at,
        "continued came before stopped: {events:?}"
    );
    Ok(())
}

#[test]
fn stopped_server_with_a_waiting_client_is_a_stopped_stall() -> Result<()> {
    require_root();
    let _serial = serial();
    let server = RedisServer::start()?;
    let mut watch = watch_pid(&server)?;
    server.signal(Signal::SIGSTOP)?;
    watch.wait_event("stopped")?;
    let _client = waiting_client(server.port)?;
    let stall = watch.wait_for("stopped stall", |v| {
        v["event"] == "stopped" && v["source"] == "unread_stall"
    })?;
    assert!(
        stall["age_ms"].as_u64() >= Some(100),
        "a stall younger than the threshold: {stall}"
    );
    server.signal(Signal::SIGCONT)?;
    watch.wait_event("unread_stall_cleared")?;
    Ok(())
}

/// As `run` watches: no program on data arrivals, and the read probe attached only in short
/// windows, so no program sees the server read. A request answered long ago must not count as
/// unread (the scan sees its socket read up), while a request a stopped server cannot read still
/// makes the stall.
#[test]
fn with_sampled_reads_an_answered_request_is_no_stall_and_a_stopped_server_is() -> Result<()> {
    require_root();
    let _serial = serial();
    let server = RedisServer::start()?;
    let mut watch = Watch::start(&["--pid", &server.pid().to_string(), "--sampled-reads"])?;
    // The read probe's first window (1 s from the start) is over, the next is 10 s away: the
    // read of the request below is seen by nobody.
    std::thread::sleep(Duration::from_millis(2500));
    let mut answered = TcpStream::connect(("127.0.0.1", server.port))?;
    answered.write_all(b"*1\r\n$4\r\nPING\r\n")?;
    let mut reply = [0u8; 7];
    answered.read_exact(&mut reply)?;
    assert_eq!(&reply, b"+PONG\r\n");
    // Five stall thresholds with the answered client connected and quiet.
    watch.drain_for(Duration::from_millis(500));
    server.signal(Signal::SIGSTOP)?;
    watch.wait_event("stopped")?;
    let _client = waiting_client(server.port)?;
    let stall = watch.wait_for("a stall", |v| v["source"] == "unread_stall")?;
    server.signal(Signal::SIGCONT)?;
    assert_eq!(
        stall["event"], "stopped",
        "the first stall is the stopped server's, not the answered request's: {stall}"
    );
    assert!(
        stall["age_ms"].as_u64() >= Some(100),
        "a stall younger than the threshold: {stall}"
    );
    drop(answered);
    Ok(())
}

/// A connection the server accepted before the agent started takes no slot when accepted: the
/// read probe's first window gives it one when the server reads it. Its later request, left
/// unread by a stopped server, must make the stall.
#[test]
fn a_connection_accepted_before_the_agent_started_is_watched_once_read() -> Result<()> {
    require_root();
    let _serial = serial();
    let server = RedisServer::start()?;
    let mut early = TcpStream::connect(("127.0.0.1", server.port))?;
    let mut ping = || -> Result<()> {
        early.write_all(b"*1\r\n$4\r\nPING\r\n")?;
        let mut reply = [0u8; 7];
        early.read_exact(&mut reply)?;
        assert_eq!(&reply, b"+PONG\r\n");
        Ok(())
    };
    ping()?;
    // The agent's own PINGs (one at start, then one a minute) open the only other connection,
    // and leave nothing unread on it.
    let mut watch = Watch::start(&[
        "--pid",
        &server.pid().to_string(),
        "--sampled-reads",
        "--ping-interval-ms",
        "60000",
    ])?;
    // The first read window opens as the agent starts and lasts 1 s: a ping every 100 ms for
    // 1.5 s lands some reads inside it, however late the window opened, and the last ones after.
    for _ in 0..15 {
        ping()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    watch.drain_for(Duration::from_millis(1000));
    server.signal(Signal::SIGSTOP)?;
    watch.wait_event("stopped")?;
    early.write_all(b"*1\r\n$4\r\nPING\r\n")?;
    let stall = watch.wait_for("a stall", |v| v["source"] == "unread_stall");
    server.signal(Signal::SIGCONT)?;
    let stall = stall?;
    assert_eq!(stall["event"], "stopped", "{stall}");
    assert_eq!(
        stall["peer_port"].as_u64(),
        Some(u64::from(early.local_addr()?.port())),
        "the oldest unread request is the early connection's: {stall}"
    );
    assert!(
        stall["age_ms"].as_u64() >= Some(100),
        "a stall younger than the threshold: {stall}"
    );
    Ok(())
}

#[test]
fn kill_9_is_exited_with_signal_9() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut server = RedisServer::start()?;
    let mut watch = watch_pid(&server)?;
    server.signal(Signal::SIGKILL)?;
    server.wait_exit()?;
    let exited = watch.wait_event("exited")?;
    assert_eq!(pid_of(&exited), u64::from(server.pid()));
    assert_eq!(exited["signal"], 9, "{exited}");
    assert!(
        exited.get("exit_code").is_none(),
        "a killed process has no exit status: {exited}"
    );
    assert!(exited["threads"].as_u64() >= Some(1), "{exited}");
    // Exactly one exit line for the whole process, however many threads it had.
    watch.drain_for(Duration::from_millis(200));
    assert_eq!(
        watch.events().iter().filter(|e| **e == "exited").count(),
        1,
        "{:?}",
        watch.seen
    );
    Ok(())
}

#[test]
fn shutdown_nosave_closes_the_listener_and_exits_cleanly() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut server = RedisServer::start()?;
    let mut watch = watch_pid(&server)?;
    let mut conn = server.connect()?;
    // SHUTDOWN closes the connection instead of answering; that error is expected.
    let _ = redis::cmd("SHUTDOWN").arg("NOSAVE").query::<()>(&mut conn);
    server.wait_exit()?;
    let closed = watch.wait_event("listener_closed")?;
    assert_eq!(closed["port"], server.port);
    let exited = watch.wait_event("exited")?;
    assert_eq!(exited["exit_code"], 0, "{exited}");
    assert!(exited.get("signal").is_none(), "{exited}");
    Ok(())
}

#[test]
fn debug_sleep_with_a_waiting_client_is_blocked_not_deadlock() -> Result<()> {
    require_root();
    let _serial = serial();
    let server = RedisServer::start()?;
    let mut watch = watch_pid(&server)?;
    let mut sleeper = TcpStream::connect(("127.0.0.1", server.port))?;
    sleeper.write_all(b"*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n$3\r\n0.3\r\n")?;
    // Make sure the server is inside the sleep (nanosleep 35 / clock_nanosleep 230) before the
    // second client asks, so its request is the one left unread.
    wait_until(WAIT, "redis-server to sleep", || {
        server
            .main_thread_syscall()
            .filter(|s| s == "35" || s == "230")
    })?;
    let _client = waiting_client(server.port)?;
    let blocked = watch.wait_event("blocked")?;
    assert_eq!(pid_of(&blocked), u64::from(server.pid()));
    assert_eq!(
        blocked["tid"].as_u64(),
        Some(u64::from(server.pid())),
        "the main thread reads: {blocked}"
    );
    watch.wait_event("unread_stall_cleared")?;
    let events = watch.events();
    assert!(
        !events.contains(&"deadlock_suspected"),
        "a sleep is not a deadlock: {events:?}"
    );
    Ok(())
}

#[test]
fn lua_busy_loop_with_a_waiting_client_is_busy() -> Result<()> {
    require_root();
    let _serial = serial();
    let server = RedisServer::start()?;
    let mut watch = watch_pid(&server)?;
    let script = "local t=redis.call('TIME') local s=t[1]*1000000+t[2] \
                  repeat t=redis.call('TIME') until t[1]*1000000+t[2]-s >= 300000 return 1";
    let mut busy = TcpStream::connect(("127.0.0.1", server.port))?;
    let eval = format!(
        "*3\r\n$4\r\nEVAL\r\n${}\r\n{script}\r\n$1\r\n0\r\n",
        script.len()
    );
    busy.write_all(eval.as_bytes())?;
    // On CPU in user space (TIME reads the clock through the vDSO, without a syscall).
    wait_until(WAIT, "redis-server to run the script", || {
        server.main_thread_syscall().filter(|s| s == "running")
    })?;
    let _client = waiting_client(server.port)?;
    let stall = watch.wait_for("a stall", |v| {
        v["source"] == "unread_stall" && v["event"] != "unread_stall_cleared"
    })?;
    assert_eq!(stall["event"], "busy", "a script on CPU is busy: {stall}");
    assert_eq!(stall["tid"].as_u64(), Some(u64::from(server.pid())));
    watch.wait_event("unread_stall_cleared")?;
    let events = watch.events();
    assert!(
        !events.contains(&"deadlock_suspected") && !events.contains(&"blocked"),
        "{events:?}"
    );
    Ok(())
}

#[test]
fn a_client_resetting_while_the_server_is_stopped_is_reset_received() -> Result<()> {
    require_root();
    let _serial = serial();
    let server = RedisServer::start()?;
    let mut watch = watch_pid(&server)?;
    server.signal(Signal::SIGSTOP)?;
    watch.wait_event("stopped")?;
    // The kernel completes the handshake for a stopped server; the client then gives up hard.
    let client = waiting_client(server.port)?;
    let linger = nix::sys::socket::sockopt::Linger;
    nix::sys::socket::setsockopt(
        &client,
        linger,
        &nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )?;
    drop(client);
    let reset = watch.wait_event("reset_received")?;
    assert_eq!(reset["port"], server.port, "{reset}");
    assert!(
        reset["peer_port"]
            .as_u64()
            .is_some_and(|p| p != u64::from(server.port)),
        "{reset}"
    );
    server.signal(Signal::SIGCONT)?;
    server.ping()?;
    Ok(())
}

#[test]
fn connections_dropped_at_a_full_accept_queue_are_listen_overflow() -> Result<()> {
    require_root();
    let _serial = serial();
    let server = RedisServer::start_with(free_port()?, &["--tcp-backlog", "1"])?;
    let mut watch = watch_pid(&server)?;
    server.signal(Signal::SIGSTOP)?;
    watch.wait_event("stopped")?;
    // A stopped server accepts nothing: the second connection onwards finds the queue full.
    let mut clients = Vec::new();
    for _ in 0..6 {
        let c = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_NONBLOCK,
            None,
        )?;
        let addr = nix::sys::socket::SockaddrIn::new(127, 0, 0, 1, server.port);
        // EINPROGRESS is the expected answer of a non-blocking connect.
        let _ = nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&c), &addr);
        clients.push(c);
    }
    let overflow = watch.wait_event("listen_overflow")?;
    assert_eq!(overflow["port"], server.port, "{overflow}");
    assert!(overflow["drops"].as_u64() >= Some(1), "{overflow}");
    server.signal(Signal::SIGCONT)?;
    server.ping()?;
    Ok(())
}

#[test]
fn a_restart_on_the_same_port_is_followed() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut first = RedisServer::start()?;
    let port = first.port;
    let mut watch = Watch::start(&["--port", &port.to_string()])?;
    first.signal(Signal::SIGKILL)?;
    first.wait_exit()?;
    watch.wait_event("exited")?;
    let second = RedisServer::start_on(port)?;
    let changed = watch.wait_event("target_changed")?;
    assert_eq!(pid_of(&changed), u64::from(second.pid()), "{changed}");
    assert_eq!(
        changed["old_pid"].as_u64(),
        Some(u64::from(first.pid())),
        "{changed}"
    );
    assert_eq!(changed["port"], port);
    // The probes now watch the new process.
    second.signal(Signal::SIGSTOP)?;
    let stopped = watch.wait_event("stopped")?;
    assert_eq!(pid_of(&stopped), u64::from(second.pid()));
    second.signal(Signal::SIGCONT)?;
    Ok(())
}

#[test]
fn a_request_thread_blocked_on_a_mutex_is_deadlock_suspected() -> Result<()> {
    require_root();
    let _serial = serial();
    let port = free_port()?;
    let fixture = Fixture::spawn("vigil-deadlock-fixture", &[&port.to_string()])?;
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let mut conn = wait_until(WAIT, "the fixture to listen", || {
        client.get_connection().ok()
    })?;
    let worker_tid: u64 = redis::cmd("TID").query(&mut conn)?;
    let mut watch = Watch::start(&["--port", &port.to_string()])?;
    let _: String = redis::cmd("DEADLOCK").query(&mut conn)?;
    let _waiting = waiting_client(port)?;
    let stall = watch.wait_for("a stall", |v| v["source"] == "unread_stall")?;
    assert_eq!(stall["event"], "deadlock_suspected", "{stall}");
    assert_eq!(pid_of(&stall), u64::from(fixture.pid()));
    assert_eq!(
        stall["tid"].as_u64(),
        Some(worker_tid),
        "the worker thread owns the request: {stall}"
    );
    Ok(())
}

#[test]
fn watch_prints_verdicts_unhealthy_for_sigstop_and_never_for_a_500ms_script() -> Result<()> {
    require_root();
    let _serial = serial();
    let server = RedisServer::start()?;
    let mut watch = Watch::start(&["--port", &server.port.to_string()])?;
    watch.wait_for("a healthy verdict", |v| {
        v["event"] == "verdict" && v["health"] == "HEALTHY"
    })?;
    let script = "local t=redis.call('TIME') local s=t[1]*1000000+t[2] \
                  repeat t=redis.call('TIME') until t[1]*1000000+t[2]-s >= 500000 return 1";
    let mut c = server.connect()?;
    let _: i64 = redis::cmd("EVAL").arg(script).arg(0).query(&mut c)?;
    let degraded = watch.wait_for("DEGRADED", |v| {
        v["event"] == "verdict" && v["health"] == "DEGRADED"
    })?;
    assert!(
        degraded["reasons"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x == "busy")),
        "{degraded}"
    );
    let after = degraded["seen_ns"].as_u64();
    watch.wait_for("HEALTHY again", |v| {
        v["event"] == "verdict" && v["health"] == "HEALTHY" && v["seen_ns"].as_u64() > after
    })?;
    let dead = |v: &&Value| {
        v["event"] == "verdict" && (v["health"] == "UNHEALTHY" || v["health"] == "DOWN")
    };
    assert!(
        watch.seen.iter().find(dead).is_none(),
        "a 500 ms script looked like a dead server: {:#?}",
        watch.seen
    );
    server.signal(Signal::SIGSTOP)?;
    let v = watch.wait_for("UNHEALTHY", |v| {
        v["event"] == "verdict" && v["health"] == "UNHEALTHY"
    })?;
    assert!(
        v["reasons"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x == "stopped")),
        "{v}"
    );
    server.signal(Signal::SIGCONT)?;
    Ok(())
}

#[test]
fn ctrl_c_prints_a_latency_summary() -> Result<()> {
    require_root();
    let _serial = serial();
    let server = RedisServer::start()?;
    let watch = watch_pid(&server)?;
    for _ in 0..20 {
        server.ping()?;
    }
    let summary = watch.finish()?;
    assert!(
        summary["runq_waits"].as_u64() > Some(0),
        "the server's threads ran: {summary}"
    );
    assert!(
        summary["unread_reads"].as_u64() >= Some(20),
        "20 pings were read: {summary}"
    );
    assert!(
        summary["unread_p99_us"].as_u64().is_some() && summary["runq_p99_us"].as_u64().is_some()
    );
    Ok(())
}

fn agent_error(args: &[&str], uid: Option<u32>) -> Result<(bool, String)> {
    // Another user may be unable to reach target/ (a checkout under /root): it runs a copy that
    // anyone can.
    let public = uid
        .map(|_| vigil_tests::PublicBin::copy_of("vigil-agent"))
        .transpose()?;
    let mut cmd = match &public {
        Some(copy) => Command::new(copy.path()),
        None => Command::new(vigil_tests::workspace_bin("vigil-agent")?),
    };
    cmd.args(args);
    if let Some(uid) = uid {
        cmd.uid(uid);
    }
    let out = cmd.output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn bad_input_gets_one_clear_error_and_no_panic() -> Result<()> {
    require_root();
    let free = free_port()?.to_string();
    let cases: [(&[&str], Option<u32>, String); 4] = [
        // A pid above pid_max cannot exist.
        (
            &["watch", "--pid", "2000000000"],
            None,
            "no such process: 2000000000".to_string(),
        ),
        (
            &["watch", "--port", &free],
            None,
            format!("nobody is listening on TCP port {free}"),
        ),
        (
            &["watch", "--port", &free],
            Some(65534),
            // An ordinary user holds none of the capabilities `watch` needs: each is named.
            "missing capabilities CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH"
                .to_string(),
        ),
        (&["watch"], None, "--pid".to_string()),
    ];
    for (args, uid, expected) in cases {
        let (ok, err) = agent_error(args, uid)?;
        assert!(!ok, "{args:?} succeeded");
        assert!(
            err.contains(&expected),
            "{args:?}: expected {expected:?} in {err:?}"
        );
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
    Ok(())
}
