//! `vigil-agent run` end to end: real redis-server primary and replica, the real agent binary
//! with its eBPF probes, and a stand-in controller speaking vigil.v1 over real gRPC. Needs root.
//! Every test asserts what the agent reports or does, and in what order; never how fast.
mod common;

use std::time::Duration;

use anyhow::Result;
use common::{StubController, assert_unserved, primary_at};
use nix::sys::signal::Signal;
use vigil_proto::{
    LINK_NEVER_UP, PROTOCOL_VERSION,
    v1::{self, command::Action},
};
use vigil_tests::{
    Agent, PinnedFence, RedisServer, WAIT, free_port, require_root, serial, wait_until,
};

const DS: &str = "store";

fn bit(name: &str) -> u64 {
    // Bit positions are part of the protocol (vigil_proto::Reason); spelled out here so
    // a change to them breaks this suite.
    1 << match name {
        "exited" => 0,
        "listener_closed" => 1,
        "not_running" => 2,
        "stopped" => 3,
        "busy" => 5,
        "blocked" => 6,
        "fenced" => 19,
        "auth_failed" => 20,
        other => panic!("unknown reason {other}"),
    }
}

fn health(v: &v1::Verdict) -> v1::Health {
    v1::Health::try_from(v.health).unwrap_or(v1::Health::Unspecified)
}

/// Tells agent "p" it is the primary and that `replica` (node "r") is its one peer.
fn desire_primary_with_peer(ctl: &StubController, replica: &RedisServer) -> Result<()> {
    desire_primary_at(ctl, replica, 0)
}

/// As [`desire_primary_with_peer`], from a controller of `leadership`.
fn desire_primary_at(ctl: &StubController, replica: &RedisServer, leadership: u64) -> Result<()> {
    ctl.wait_session("p")?;
    let desired = v1::DesiredState {
        leadership,
        ..primary_at(1, replica)
    };
    ctl.desire("p", desired)
}

/// The agent's /metrics page on 127.0.0.1:`port`, once it has one with `metric`.
fn scrape(port: u16, metric: &str) -> Result<String> {
    wait_until(WAIT, "a /metrics page", || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        body.contains(metric).then_some(body)
    })
}

/// The value of the unlabelled `metric` on a /metrics page.
fn metric_value(body: &str, metric: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        l.strip_prefix(metric)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

fn role_of(server: &RedisServer) -> Result<String> {
    let mut c = server.connect()?;
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut c)?;
    Ok(match role.first() {
        Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    })
}

fn replica_of(primary: &RedisServer) -> Result<RedisServer> {
    let port = free_port()?;
    let replica = RedisServer::start_with(
        port,
        &["--replicaof", "127.0.0.1", &primary.port.to_string()],
    )?;
    wait_until(WAIT, "the replica's link to come up", || {
        let mut c = replica.connect().ok()?;
        let info: String = redis::cmd("INFO").arg("replication").query(&mut c).ok()?;
        info.contains("master_link_status:up").then_some(())
    })?;
    Ok(replica)
}

#[test]
fn verdicts_follow_stop_slow_commands_and_a_crash() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut primary = RedisServer::start()?;
    let mut ctl = StubController::start()?;
    let _agent = ctl.start_agent(&primary, DS, "p", &[])?;
    let hello = ctl.wait_for("p", "hello", |m| {
        matches!(m, v1::agent_message::Msg::Hello(_))
    })?;
    let v1::agent_message::Msg::Hello(hello) = hello else {
        unreachable!()
    };
    assert_eq!(
        (hello.datastore.as_str(), hello.flavour()),
        (DS, v1::Flavour::Redis)
    );
    ctl.wait_verdict("p", "a healthy primary", |v| {
        health(v) == v1::Health::Healthy && v.role() == v1::Role::Primary
    })?;

    // SIGSTOP: UNHEALTHY (stopped), then HEALTHY again after SIGCONT.
    primary.signal(Signal::SIGSTOP)?;
    let v = ctl.wait_verdict("p", "UNHEALTHY", |v| health(v) == v1::Health::Unhealthy)?;
    assert_ne!(v.reasons & bit("stopped"), 0, "{v:?}");
    primary.signal(Signal::SIGCONT)?;
    ctl.wait_verdict("p", "HEALTHY after SIGCONT", |v| {
        health(v) == v1::Health::Healthy
    })?;

    // A 500 ms Lua script and a 500 ms DEBUG SLEEP: DEGRADED, never UNHEALTHY.
    let script = "local t=redis.call('TIME') local s=t[1]*1000000+t[2] \
                  repeat t=redis.call('TIME') until t[1]*1000000+t[2]-s >= 500000 return 1";
    for (name, reason, cmd) in [
        ("lua", "busy", redis::cmd("EVAL").arg(script).arg(0).clone()),
        (
            "debug sleep",
            "blocked",
            redis::cmd("DEBUG").arg("SLEEP").arg("0.5").clone(),
        ),
    ] {
        ctl.skip_received();
        let before = ctl.verdicts("p").len();
        let mut c = primary.connect()?;
        let _: redis::Value = cmd.query(&mut c)?;
        let degraded = ctl.wait_verdict("p", "DEGRADED", |v| health(v) == v1::Health::Degraded)?;
        assert_ne!(degraded.reasons & bit(reason), 0, "{name}: {degraded:?}");
        ctl.wait_verdict("p", "HEALTHY after the command", |v| {
            health(v) == v1::Health::Healthy
        })?;
        let during = &ctl.verdicts("p")[before..];
        assert!(
            during
                .iter()
                .all(|v| health(v) != v1::Health::Unhealthy && health(v) != v1::Health::Down),
            "{name} made the primary look dead: {during:?}"
        );
    }

    // kill -9: DOWN, because it exited.
    primary.signal(Signal::SIGKILL)?;
    primary.wait_exit()?;
    let down = ctl.wait_verdict("p", "DOWN", |v| health(v) == v1::Health::Down)?;
    assert_ne!(down.reasons & bit("exited"), 0, "{down:?}");
    Ok(())
}

#[test]
fn a_shutdown_closes_the_listener_and_is_down() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut primary = RedisServer::start()?;
    let mut ctl = StubController::start()?;
    let _agent = ctl.start_agent(&primary, DS, "p", &[])?;
    ctl.wait_verdict("p", "a healthy primary", |v| {
        health(v) == v1::Health::Healthy && v.role() == v1::Role::Primary
    })?;
    let mut c = primary.connect()?;
    let _ = redis::cmd("SHUTDOWN").arg("NOSAVE").query::<()>(&mut c);
    primary.wait_exit()?;
    let down = ctl.wait_verdict("p", "DOWN", |v| health(v) == v1::Health::Down)?;
    assert_ne!(
        down.reasons & (bit("listener_closed") | bit("exited")),
        0,
        "{down:?}"
    );
    Ok(())
}

#[test]
fn a_stopped_peer_is_reported_unreachable() -> Result<()> {
    require_root();
    let _serial = serial();
    let primary = RedisServer::start()?;
    let replica = replica_of(&primary)?;
    let mut ctl = StubController::start()?;
    let _agent = ctl.start_agent(&primary, DS, "p", &["--peer-interval-ms", "50"])?;
    desire_primary_with_peer(&ctl, &replica)?;
    let v = ctl.wait_verdict("p", "the peer probed and reachable", |v| {
        v.peers_version == 1 && v.peers_probed & 1 == 1
    })?;
    assert_eq!(v.peers_unreachable & 1, 0, "{v:?}");
    replica.signal(Signal::SIGSTOP)?;
    ctl.wait_verdict("p", "the peer unreachable", |v| {
        v.peers_unreachable & 1 == 1
    })?;
    replica.signal(Signal::SIGCONT)?;
    ctl.wait_verdict("p", "the peer reachable again", |v| {
        v.peers_probed & 1 == 1 && v.peers_unreachable & 1 == 0
    })?;
    Ok(())
}

#[test]
fn promote_and_replicate_of_change_real_roles() -> Result<()> {
    require_root();
    let _serial = serial();
    let primary = RedisServer::start()?;
    let replica = replica_of(&primary)?;
    let mut ctl = StubController::start()?;
    let _agent = ctl.start_agent(&replica, DS, "r", &[])?;
    ctl.wait_session("r")?;
    assert_eq!(role_of(&replica)?, "slave");
    ctl.command("r", 1, 2, Some(Action::Promote(v1::Promote {})))?;
    let ack = ctl.wait_ack("r", 1)?;
    assert!(ack.ok, "{ack:?}");
    assert_eq!(ack.role(), v1::Role::Primary);
    assert_eq!(role_of(&replica)?, "master");
    // A server the controller has not described as part of this data store is refused.
    let stranger = RedisServer::start()?;
    let foreign = format!("127.0.0.1:{}", stranger.port);
    ctl.command(
        "r",
        3,
        2,
        Some(Action::ReplicateOf(v1::ReplicateOf { address: foreign })),
    )?;
    let ack = ctl.wait_ack("r", 3)?;
    assert!(
        !ack.ok && ack.error.contains("is not a server of this data store"),
        "{ack:?}"
    );
    assert_eq!(role_of(&replica)?, "master");
    let address = format!("127.0.0.1:{}", primary.port);
    ctl.add_peer("r", &address)?;
    ctl.command(
        "r",
        2,
        2,
        Some(Action::ReplicateOf(v1::ReplicateOf {
            address: address.clone(),
        })),
    )?;
    let ack = ctl.wait_ack("r", 2)?;
    assert!(ack.ok, "{ack:?}");
    assert_eq!(ack.role(), v1::Role::Replica);
    assert_eq!(role_of(&replica)?, "slave");
    let mut c = replica.connect()?;
    let info: String = redis::cmd("INFO").arg("replication").query(&mut c)?;
    assert!(
        info.contains(&format!("master_port:{}", primary.port)),
        "{info}"
    );
    Ok(())
}

#[test]
fn stale_and_malformed_commands_are_refused() -> Result<()> {
    require_root();
    let _serial = serial();
    let primary = RedisServer::start()?;
    let replica = replica_of(&primary)?;
    let mut ctl = StubController::start()?;
    let _agent = ctl.start_agent(&replica, DS, "r", &[])?;
    ctl.wait_session("r")?;
    ctl.command("r", 1, 5, Some(Action::Unfence(v1::Unfence {})))?;
    assert!(ctl.wait_ack("r", 1)?.ok);
    ctl.command("r", 2, 3, Some(Action::Promote(v1::Promote {})))?;
    let stale = ctl.wait_ack("r", 2)?;
    assert!(!stale.ok);
    assert!(stale.error.contains("stale epoch 3"), "{stale:?}");
    assert_eq!(
        role_of(&replica)?,
        "slave",
        "a stale promote must not happen"
    );
    ctl.command("r", 3, 6, None)?;
    let malformed = ctl.wait_ack("r", 3)?;
    assert!(
        !malformed.ok && malformed.error.contains("no action"),
        "{malformed:?}"
    );
    ctl.command(
        "r",
        4,
        6,
        Some(Action::ReplicateOf(v1::ReplicateOf {
            address: "nowhere".into(),
        })),
    )?;
    let bad = ctl.wait_ack("r", 4)?;
    assert!(!bad.ok && bad.error.contains("not host:port"), "{bad:?}");
    assert_eq!(role_of(&replica)?, "slave");
    Ok(())
}

/// A primary and its replica (peer "r"), the primary's agent "p" probing the peer every 50 ms and
/// holding a 600 ms lease from the stub, and the fence it may pin (taken down at the end).
struct Leased {
    primary: RedisServer,
    replica: RedisServer,
    pin: PinnedFence,
    ctl: StubController,
    agent: Agent,
}

fn leased_primary() -> Result<Leased> {
    let primary = RedisServer::start()?;
    let replica = replica_of(&primary)?;
    let pin = PinnedFence::of_port(primary.port)?;
    let mut ctl = StubController::start()?;
    let agent = ctl.start_agent(&primary, DS, "p", &["--peer-interval-ms", "50"])?;
    ctl.grant_leases("p", 600);
    desire_primary_with_peer(&ctl, &replica)?;
    ctl.wait_verdict("p", "the peer probed", |v| v.peers_probed & 1 == 1)?;
    ctl.wait_lease("p")?;
    Ok(Leased {
        primary,
        replica,
        pin,
        ctl,
        agent,
    })
}

#[test]
fn a_primary_fences_itself_when_its_lease_runs_out_without_a_quorum() -> Result<()> {
    require_root();
    let _serial = serial();
    let Leased {
        primary,
        replica,
        pin,
        mut ctl,
        agent,
    } = leased_primary()?;
    let mut c = primary.connect()?;
    let _: () = redis::cmd("SET").arg("before").arg("1").query(&mut c)?;

    // The controller falls silent, but the primary still reaches its peer: with it, both of the
    // store's two nodes, a majority. It keeps serving past its lease.
    ctl.fall_silent("p");
    std::thread::sleep(Duration::from_millis(3 * 600));
    assert!(
        !agent.log.contains("SELF-FENCING"),
        "fenced with its peer reachable"
    );
    let _: () = redis::cmd("SET").arg("still").arg("1").query(&mut c)?;

    // Its peer gone while its lease is renewed: it keeps serving.
    desire_primary_with_peer(&ctl, &replica)?;
    ctl.wait_lease("p")?;
    replica.signal(Signal::SIGSTOP)?;
    ctl.wait_verdict("p", "the peer unreachable", |v| {
        v.peers_unreachable & 1 == 1
    })?;
    std::thread::sleep(Duration::from_millis(2 * 600));
    assert!(
        !agent.log.contains("SELF-FENCING"),
        "fenced while holding a lease"
    );
    let _: () = redis::cmd("SET").arg("leased").arg("1").query(&mut c)?;

    // No lease and no quorum: fenced in the kernel. A write gets no acknowledgement.
    ctl.fall_silent("p");
    agent.log.wait_for("SELF-FENCING")?;
    wait_until(WAIT, "the fence up", || pin.is_up().then_some(()))?;
    assert_unserved(
        ([127, 0, 0, 1], primary.port).into(),
        &["SET", "during", "1"],
        "a self-fenced primary answered a write",
    );
    replica.signal(Signal::SIGCONT)?;
    Ok(())
}

/// A controller renews a primary's lease on its heartbeat with a lease grant, not its whole
/// desired state: the grants keep a primary without a quorum serving, and once they stop it
/// fences itself. A grant for an epoch the agent has not been sent desired state for renews
/// nothing.
#[test]
fn lease_grants_alone_renew_the_lease_of_the_desired_state_the_agent_has() -> Result<()> {
    require_root();
    let _serial = serial();
    let Leased {
        primary,
        replica,
        pin,
        mut ctl,
        agent,
    } = leased_primary()?;
    ctl.grant_compactly("p");
    replica.signal(Signal::SIGSTOP)?;
    ctl.wait_verdict("p", "the peer unreachable", |v| {
        v.peers_unreachable & 1 == 1
    })?;
    std::thread::sleep(Duration::from_millis(3 * 600));
    assert!(
        !agent.log.contains("SELF-FENCING"),
        "fenced while lease grants renewed its lease"
    );
    let mut c = primary.connect()?;
    let _: () = redis::cmd("SET").arg("granted").arg("1").query(&mut c)?;

    // Grants for an epoch whose desired state never came renew nothing: the lease runs out.
    ctl.set_desired_quietly("p", primary_at(2, &replica));
    agent.log.wait_for("SELF-FENCING")?;
    wait_until(WAIT, "the fence up", || pin.is_up().then_some(()))?;
    replica.signal(Signal::SIGCONT)?;
    Ok(())
}

#[test]
fn a_primary_whose_lease_the_controller_withholds_fences_itself_though_it_reaches_its_peer()
-> Result<()> {
    require_root();
    let _serial = serial();
    let Leased {
        primary,
        replica,
        pin,
        mut ctl,
        agent,
    } = leased_primary()?;

    // The controller still talks to it, names it the primary, and grants nothing: a failover
    // from it is under way. With its peer reachable it fences itself all the same.
    ctl.grant_leases("p", 0);
    agent.log.wait_for("SELF-FENCING")?;
    assert!(
        agent.log.contains("the controller withholds it"),
        "the self-fence does not say the lease was withheld"
    );
    wait_until(WAIT, "the fence up", || pin.is_up().then_some(()))?;
    ctl.skip_received();
    let v = ctl.wait_verdict("p", "fenced", |v| v.reasons & bit("fenced") != 0)?;
    assert_eq!(
        v.peers_unreachable & 1,
        0,
        "its peer was unreachable: {v:?}"
    );
    assert_unserved(
        ([127, 0, 0, 1], primary.port).into(),
        &["SET", "during", "1"],
        "a primary whose lease was withheld answered a write",
    );

    // Named the primary at the fence's epoch while still granted nothing: it stays fenced.
    desire_primary_with_peer(&ctl, &replica)?;
    std::thread::sleep(Duration::from_millis(600));
    assert!(pin.is_up(), "lifted with no lease granted");
    // A lease granted again at that epoch lifts it: the failover did not happen.
    ctl.grant_leases("p", 600);
    desire_primary_with_peer(&ctl, &replica)?;
    agent.log.wait_for("lifting the self-fence")?;
    wait_until(WAIT, "the self-fence down", || (!pin.is_up()).then_some(()))?;
    let mut c = primary.connect()?;
    let _: () = redis::cmd("SET").arg("after").arg("1").query(&mut c)?;
    Ok(())
}

#[test]
fn a_controller_on_another_protocol_version_is_named_in_the_log() -> Result<()> {
    require_root();
    let _serial = serial();
    let primary = RedisServer::start()?;
    let mut ctl = StubController::start_speaking(99)?;
    let agent = ctl.start_agent(&primary, DS, "p", &[])?;
    agent.log.wait_for(&format!(
        "speaks vigil protocol v99, this agent v{PROTOCOL_VERSION}"
    ))?;
    ctl.wait_for("p", "hello", |m| {
        matches!(m, v1::agent_message::Msg::Hello(_))
    })?;
    assert!(
        ctl.verdicts("p").is_empty(),
        "verdicts went to a controller of another version"
    );
    Ok(())
}

#[test]
fn a_wrong_password_is_a_clear_error_and_a_degraded_verdict() -> Result<()> {
    require_root();
    let _serial = serial();
    let primary = RedisServer::start_with(free_port()?, &["--requirepass", "sesame"])?;
    let mut ctl = StubController::start()?;
    // The password comes from a file; the command line shows only its path.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("password");
    std::fs::write(&file, "wrong\n")?;
    let file = file.display().to_string();
    let agent = ctl.start_agent(&primary, DS, "p", &["--password-file", &file])?;
    agent.log.wait_for("refused the agent's credentials")?;
    assert!(
        agent.log.lines().iter().all(|l| !l.contains("wrong")),
        "a log line shows the password"
    );
    let v = ctl.wait_verdict("p", "auth_failed", |v| v.reasons & bit("auth_failed") != 0)?;
    assert_eq!(health(&v), v1::Health::Degraded, "{v:?}");
    Ok(())
}

#[test]
fn nothing_listening_is_down() -> Result<()> {
    require_root();
    let _serial = serial();
    let port = free_port()?;
    let mut ctl = StubController::start()?;
    let addr = format!("127.0.0.1:{port}");
    let url = ctl.url();
    let agent = Agent::run(&[
        "--server",
        &addr,
        "--controller",
        &url,
        "--datastore",
        DS,
        "--node-id",
        "x",
    ])?;
    agent.log.wait_for("no server is listening")?;
    let v = ctl.wait_verdict("x", "DOWN", |v| health(v) == v1::Health::Down)?;
    assert_ne!(v.reasons & bit("not_running"), 0);
    // The server starts later: the agent picks it up.
    let _server = RedisServer::start_on(port)?;
    ctl.wait_verdict("x", "HEALTHY once the server runs", |v| {
        health(v) == v1::Health::Healthy
    })?;
    Ok(())
}

#[test]
fn metrics_are_served_for_prometheus() -> Result<()> {
    require_root();
    let _serial = serial();
    let primary = RedisServer::start()?;
    let mut ctl = StubController::start()?;
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let _agent = ctl.start_agent(&primary, DS, "p", &["--metrics-listen", &listen])?;
    ctl.wait_verdict("p", "a healthy primary", |v| {
        health(v) == v1::Health::Healthy && v.role() == v1::Role::Primary
    })?;
    let body = scrape(port, "vigil_agent_ping_rtt_seconds_count")?;
    assert!(
        body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
        "{body}"
    );
    for metric in [
        "vigil_agent_health{state=\"healthy\"} 1",
        "vigil_agent_health{state=\"down\"} 0",
        "vigil_agent_health{state=\"unknown\"} 0",
        "vigil_agent_runq_p99_seconds",
        "vigil_agent_reason{reason=\"stopped\"} 0",
        "vigil_agent_verdicts_sent_total",
        "vigil_agent_stall_age_seconds",
        "vigil_agent_fenced 0",
        "vigil_agent_stale_leadership_total 0",
    ] {
        assert!(body.contains(metric), "{metric} missing from {body}");
    }
    Ok(())
}

#[test]
fn an_agent_given_several_controllers_reaches_one_past_a_dead_one() -> Result<()> {
    require_root();
    let _serial = serial();
    let primary = RedisServer::start()?;
    let mut ctl = StubController::start()?;
    // Nothing listens on it: the first of the list refuses every connection.
    let dead = format!("http://127.0.0.1:{}", free_port()?);
    let controllers = format!("{dead},{}", ctl.url());
    let addr = format!("127.0.0.1:{}", primary.port);
    let _agent = Agent::join_urls(None, &controllers, DS, "p", &addr, &[])?;
    ctl.wait_session("p")?;
    ctl.wait_verdict("p", "a healthy primary", |v| {
        health(v) == v1::Health::Healthy && v.role() == v1::Role::Primary
    })?;
    Ok(())
}

#[test]
fn a_controller_that_does_not_lead_redirects_the_agent_to_the_leader() -> Result<()> {
    require_root();
    let _serial = serial();
    let primary = RedisServer::start()?;
    let mut leader = StubController::start()?;
    leader.lead_at(7);
    let follower = StubController::start_redirecting(&leader.url())?;
    // Only the follower is in the agent's list: it finds the leader through the redirect.
    let _agent = follower.start_agent(&primary, DS, "p", &[])?;
    leader.wait_session("p")?;
    leader.wait_verdict("p", "a healthy primary", |v| {
        health(v) == v1::Health::Healthy && v.role() == v1::Role::Primary
    })?;
    let at_follower = follower.received("p");
    assert!(
        !at_follower.is_empty()
            && at_follower
                .iter()
                .all(|m| matches!(m, v1::agent_message::Msg::Hello(_))),
        "the follower got more than Hellos: {at_follower:?}"
    );
    Ok(())
}

#[test]
fn a_command_from_a_lower_leadership_is_refused_and_not_carried_out() -> Result<()> {
    require_root();
    let _serial = serial();
    let primary = RedisServer::start()?;
    let replica = replica_of(&primary)?;
    let mut ctl = StubController::start()?;
    let _agent = ctl.start_agent(&replica, DS, "r", &[])?;
    ctl.wait_session("r")?;
    // Desired state from leadership 5, then, behind it on the same stream, a promotion from a
    // deposed leader (4) at a newer epoch.
    ctl.desire(
        "r",
        v1::DesiredState {
            epoch: 1,
            role: v1::Role::Replica as i32,
            primary_address: format!("127.0.0.1:{}", primary.port),
            leadership: 5,
            ..Default::default()
        },
    )?;
    ctl.command_at("r", 1, 9, 4, Some(Action::Promote(v1::Promote {})))?;
    let stale = ctl.wait_ack("r", 1)?;
    assert!(!stale.ok, "{stale:?}");
    assert!(stale.error.contains("stale leadership 4 < 5"), "{stale:?}");
    assert_eq!(
        role_of(&replica)?,
        "slave",
        "a deposed leader's promote must not happen"
    );
    // The leader's own promotion, at epoch 1: accepted, so the refused command moved no epoch.
    ctl.command_at("r", 2, 1, 5, Some(Action::Promote(v1::Promote {})))?;
    let ack = ctl.wait_ack("r", 2)?;
    assert!(ack.ok, "{ack:?}");
    assert_eq!(ack.role(), v1::Role::Primary);
    assert_eq!(role_of(&replica)?, "master");
    Ok(())
}

#[test]
fn desired_state_from_a_lower_leadership_renews_no_lease() -> Result<()> {
    require_root();
    let _serial = serial();
    let primary = RedisServer::start()?;
    let replica = replica_of(&primary)?;
    let pin = PinnedFence::of_port(primary.port)?;
    let mut ctl = StubController::start()?;
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let agent = ctl.start_agent(
        &primary,
        DS,
        "p",
        &["--peer-interval-ms", "50", "--metrics-listen", &listen],
    )?;
    // Longer than the suites' usual 600 ms, so that a loaded host does not let it lapse between
    // the leader's grants.
    const LEASE_MS: u32 = 1000;
    ctl.grant_leases("p", LEASE_MS);
    desire_primary_at(&ctl, &replica, 5)?;
    ctl.wait_verdict("p", "the peer probed", |v| v.peers_probed & 1 == 1)?;
    ctl.wait_lease("p")?;

    // Without its peer, only the lease keeps it serving: granted at leadership 5, it does.
    replica.signal(Signal::SIGSTOP)?;
    ctl.wait_verdict("p", "the peer unreachable", |v| {
        v.peers_unreachable & 1 == 1
    })?;
    std::thread::sleep(Duration::from_millis(2 * u64::from(LEASE_MS)));
    assert!(
        !agent.log.contains("SELF-FENCING"),
        "fenced while holding a lease from the leader"
    );

    // The same grants from a deposed leader (4): they renew nothing, the lease runs out, and
    // with no quorum the primary fences itself.
    desire_primary_at(&ctl, &replica, 4)?;
    ctl.wait_lease("p")?;
    agent.log.wait_for("SELF-FENCING")?;
    wait_until(WAIT, "the fence up", || pin.is_up().then_some(()))?;
    // Named the primary at the fence's epoch with a lease, by the deposed leader: that lifts
    // nothing either.
    ctl.wait_lease("p")?;
    assert!(
        pin.is_up() && !agent.log.contains("lifting the self-fence"),
        "a deposed leader's grant lifted the self-fence"
    );
    assert!(
        agent
            .log
            .contains("ignoring desired state from a controller that no longer leads"),
        "the stale desired state was not said"
    );
    let body = scrape(port, "vigil_agent_stale_leadership_total")?;
    let stale = metric_value(&body, "vigil_agent_stale_leadership_total");
    assert!(stale.is_some_and(|n| n >= 1.0), "{body}");
    replica.signal(Signal::SIGCONT)?;
    Ok(())
}

#[test]
fn a_replica_says_how_long_its_link_has_been_down() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut primary = RedisServer::start()?;
    let replica = replica_of(&primary)?;
    let mut ctl = StubController::start()?;
    let _agent = ctl.start_agent(&replica, DS, "r", &[])?;
    ctl.wait_verdict("r", "a linked replica", |v| {
        v.role() == v1::Role::Replica && v.link_up && v.link_down_ms == 0
    })?;
    primary.signal(Signal::SIGKILL)?;
    primary.wait_exit()?;
    let first = ctl.wait_verdict("r", "the link down for a while", |v| {
        v.role() == v1::Role::Replica && !v.link_up && v.link_down_ms > 0
    })?;
    assert!(first.link_down_ms < LINK_NEVER_UP, "{first:?}");
    let later = ctl.wait_verdict("r", "the link down for longer", |v| {
        v.link_down_ms > first.link_down_ms
    })?;
    assert!(later.link_down_ms < LINK_NEVER_UP, "{later:?}");
    // Seen up since the agent started: no verdict says the link never was.
    let replicas = ctl.verdicts("r");
    assert!(
        replicas.iter().all(|v| v.link_down_ms < LINK_NEVER_UP),
        "{replicas:?}"
    );
    Ok(())
}
