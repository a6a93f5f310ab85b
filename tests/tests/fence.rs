//! The kernel fence end to end: a real redis-server, the real agent with its eBPF fence on the
//! server's cgroup, clients on real sockets, and the stand-in controller sending Fence, Unfence,
//! ReplicateOf and lease grants. Needs root.
//!
//! Every test asserts what a client gets back (never an acknowledgement from a fenced primary)
//! and what the agent reports, never how fast. Each takes its fence down at the end
//! ([`PinnedFence`] on drop), since a fence outlives its agent by design.
mod common;

use std::{net::SocketAddr, time::Duration};

use anyhow::Result;
use common::{StubController, assert_unserved, primary_at};
use nix::sys::signal::Signal;
use vigil_proto::v1::{self, command::Action};
use vigil_tests::{
    Agent, Answer, PinnedFence, RawClient, RedisServer, WAIT, free_port, require_root, serial,
    wait_until,
};

const DS: &str = "fenced";
/// How long a test waits to see that something does not happen.
const QUIET: Duration = Duration::from_millis(1500);
const FENCED_BIT: u64 = 1 << 19;
const STOPPED_BIT: u64 = 1 << 3;

/// The agent of node "p" beside `primary` (with `extra` flags), its session open and its server
/// seen as a primary; and the fence it may pin, taken down when the test ends.
fn watched(primary: &RedisServer, extra: &[&str]) -> Result<(PinnedFence, StubController, Agent)> {
    let pin = PinnedFence::of_port(primary.port)?;
    let mut ctl = StubController::start()?;
    let agent = ctl.start_agent(primary, DS, "p", extra)?;
    ctl.wait_session("p")?;
    ctl.wait_verdict("p", "a primary", |v| v.role() == v1::Role::Primary)?;
    Ok((pin, ctl, agent))
}

/// Fences "p" and checks the ack says so.
fn fence_up(
    ctl: &mut StubController,
    id: u64,
    epoch: u64,
    keep_replicas: bool,
) -> Result<v1::CommandAck> {
    let fence = v1::Fence { keep_replicas };
    ctl.command("p", id, epoch, Some(Action::Fence(fence)))?;
    let ack = ctl.wait_ack("p", id)?;
    assert!(ack.ok && ack.fenced, "{ack:?}");
    Ok(ack)
}

fn unfence(ctl: &mut StubController, id: u64, epoch: u64) -> Result<v1::CommandAck> {
    ctl.command("p", id, epoch, Some(Action::Unfence(v1::Unfence {})))?;
    ctl.wait_ack("p", id)
}

/// Sends `p` a ReplicateOf `to` (its demotion when it is a primary or fenced), and its ack.
fn replicate_of(
    ctl: &mut StubController,
    id: u64,
    epoch: u64,
    to: &RedisServer,
) -> Result<v1::CommandAck> {
    let address = format!("127.0.0.1:{}", to.port);
    ctl.add_peer("p", &address)?;
    let action = Action::ReplicateOf(v1::ReplicateOf { address });
    ctl.command("p", id, epoch, Some(action))?;
    ctl.wait_ack("p", id)
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn health(v: &v1::Verdict) -> v1::Health {
    v1::Health::try_from(v.health).unwrap_or(v1::Health::Unspecified)
}

fn not_acknowledged(answer: &Answer) -> bool {
    !matches!(answer, Answer::Reply(r) if r.contains("+OK"))
}

#[test]
fn a_client_connected_before_the_fence_is_reset_and_never_answered() -> Result<()> {
    require_root();
    let _serial = serial();
    let primary = RedisServer::start()?;
    let (pin, mut ctl, _agent) = watched(&primary, &[])?;
    let mut client = RawClient::connect(primary.port, Duration::from_secs(2))?;
    assert_eq!(
        client.request(&["PING"], WAIT),
        Answer::Reply("+PONG\r\n".into())
    );

    let ack = fence_up(&mut ctl, 1, 1, false)?;
    assert_eq!(ack.role(), v1::Role::Primary, "{ack:?}");
    assert!(pin.is_up());
    // The connection was destroyed under the client: its write meets the reset, never a reply.
    let answer = client.request(&["SET", "after-fence", "1"], QUIET);
    assert_eq!(
        answer,
        Answer::Reset,
        "the fenced primary answered {answer:?}"
    );
    ctl.wait_verdict("p", "the fenced reason", |v| v.reasons & FENCED_BIT != 0)?;

    // Unfenced (the failover did not happen): clients are served again, and the write the
    // fence held back never happened.
    let ack = unfence(&mut ctl, 2, 1)?;
    assert!(ack.ok && !ack.fenced, "{ack:?}");
    assert!(!pin.is_up());
    let mut c = primary.connect()?;
    let held: Option<String> = redis::cmd("GET").arg("after-fence").query(&mut c)?;
    assert_eq!(held, None);
    ctl.wait_verdict("p", "no fenced reason", |v| v.reasons & FENCED_BIT == 0)?;
    Ok(())
}

#[test]
fn a_stopped_primary_never_acknowledges_the_write_queued_while_it_was_stopped() -> Result<()> {
    require_root();
    let _serial = serial();
    let primary = RedisServer::start()?;
    let (pin, mut ctl, _agent) = watched(&primary, &[])?;
    let mut client = RawClient::connect(primary.port, Duration::from_secs(2))?;
    assert_eq!(
        client.request(&["PING"], WAIT),
        Answer::Reply("+PONG\r\n".into())
    );

    primary.signal(Signal::SIGSTOP)?;
    ctl.wait_verdict("p", "the server stopped", |v| v.reasons & STOPPED_BIT != 0)?;
    // The write waits in the stopped server's socket, acknowledged by TCP, not yet by Redis.
    client.send(&["SET", "queued", "1"])?;
    assert_eq!(client.answer(Duration::from_millis(200)), Answer::Nothing);

    let ack = fence_up(&mut ctl, 1, 1, false)?;
    // A stopped server cannot say its offset; the fence itself is what the ack vouches for.
    assert_eq!(ack.repl_offset, 0, "{ack:?}");
    assert!(pin.is_up());
    primary.signal(Signal::SIGCONT)?;
    // The server runs again and may well run the queued SET; its +OK never reaches the client.
    let answer = client.answer(QUIET);
    assert!(
        not_acknowledged(&answer),
        "a fenced primary acknowledged a write: {answer:?}"
    );
    assert_ne!(
        answer,
        Answer::Nothing,
        "the client was left hanging instead of reset"
    );
    // Whether the server ran the write after all is not the point (nobody was told it did);
    // the suite says which it was.
    assert!(unfence(&mut ctl, 2, 1)?.ok);
    let ran: Option<String> = redis::cmd("GET")
        .arg("queued")
        .query(&mut primary.connect()?)?;
    println!(
        "fence: the stopped primary's client got {answer:?}; the server ran the write: {}",
        ran.is_some()
    );
    Ok(())
}

#[test]
fn a_fenced_primary_serves_no_new_client_and_its_agent_demotes_it() -> Result<()> {
    require_root();
    let _serial = serial();
    let primary = RedisServer::start()?;
    let new_primary = RedisServer::start()?;
    let (pin, mut ctl, agent) = watched(&primary, &[])?;
    fence_up(&mut ctl, 1, 1, false)?;

    // A new client gets nowhere: its SYN is dropped, or its request is never answered.
    assert_unserved(
        local(primary.port),
        &["PING"],
        "a fenced primary served a new client",
    );
    // The agent's own connections still reach the server: well past the fence going up, its
    // PINGs are answered (no missed-PING reason) and it still knows the server's role.
    ctl.skip_received();
    let v = ctl.wait_verdict("p", "a verdict", |_| true)?;
    assert_eq!(v.reasons, FENCED_BIT, "{v:?}");
    assert_eq!(v.role(), v1::Role::Primary, "{v:?}");

    // The demotion, one step: REPLICAOF, the clients disconnected, then the fence lifted.
    let ack = replicate_of(&mut ctl, 2, 2, &new_primary)?;
    assert!(ack.ok && !ack.fenced, "{ack:?}");
    assert_eq!(ack.role(), v1::Role::Replica, "{ack:?}");
    assert!(!pin.is_up());
    let lines = agent.log.lines();
    let at = |needle: &str| lines.iter().position(|l| l.contains(needle));
    let (killed, lifted) = (at("clients were disconnected"), at("fence lifted"));
    assert!(
        killed.is_some() && killed < lifted,
        "the clients must be disconnected before the fence lifts: {killed:?}, {lifted:?}"
    );
    // Clients come back to a replica.
    assert_eq!(primary.role()?, "slave");
    Ok(())
}

#[test]
fn a_primary_fenced_for_a_switchover_keeps_feeding_its_replica() -> Result<()> {
    require_root();
    let _serial = serial();
    let primary = RedisServer::start_with(free_port()?, &["--repl-ping-replica-period", "1"])?;
    let replica = RedisServer::start_with(
        free_port()?,
        &["--replicaof", "127.0.0.1", &primary.port.to_string()],
    )?;
    let link_up = |r: &RedisServer| -> Option<String> {
        let mut c = r.connect().ok()?;
        let info: String = redis::cmd("INFO").arg("replication").query(&mut c).ok()?;
        info.contains("master_link_status:up").then_some(info)
    };
    wait_until(WAIT, "the replica's link", || link_up(&replica))?;
    let (pin, mut ctl, _agent) = watched(&primary, &[])?;

    // Writes right before the fence: some still on their way to the replica when it goes up.
    let mut c = primary.connect()?;
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("k:{i}"))
            .arg(i)
            .query(&mut c)?;
    }
    drop(c);
    let ack = fence_up(&mut ctl, 1, 1, true)?;
    assert!(
        ack.repl_offset > 0,
        "the primary's offset once fenced: {ack:?}"
    );

    // Everything the primary had reaches the replica over its link, which stays up.
    let offset = |info: &str| -> Option<u64> {
        info.lines()
            .find_map(|l| l.strip_prefix("slave_repl_offset:"))
            .and_then(|v| v.trim().parse().ok())
    };
    wait_until(WAIT, "the replica at the fenced primary's offset", || {
        link_up(&replica).filter(|info| offset(info).is_some_and(|o| o >= ack.repl_offset))
    })?;
    let mut r = replica.connect()?;
    let last: Option<i64> = redis::cmd("GET").arg("k:199").query(&mut r)?;
    assert_eq!(last, Some(199));
    // Past a few of the primary's replication pings, the link is still up.
    std::thread::sleep(QUIET);
    assert!(
        link_up(&replica).is_some(),
        "the fence cut the replica's link"
    );
    assert!(pin.is_up());
    Ok(())
}

#[test]
fn a_fence_outlives_its_agent_and_the_next_agent_lifts_it_on_demotion() -> Result<()> {
    require_root();
    let _serial = serial();
    let primary = RedisServer::start()?;
    let new_primary = RedisServer::start()?;
    let (pin, mut ctl, agent) = watched(&primary, &[])?;
    fence_up(&mut ctl, 1, 4, false)?;

    agent.kill_leaving_its_fence()?;
    assert!(pin.is_up(), "the fence went down with its agent");
    assert_unserved(
        local(primary.port),
        &["PING"],
        "served while the agent was dead",
    );

    // The next agent finds the fence, keeps it, reports it, and gets through it itself.
    ctl.skip_received();
    let agent = ctl.start_agent(&primary, DS, "p", &[])?;
    agent
        .log
        .wait_for("a fence from before this agent started is up")?;
    ctl.wait_session("p")?;
    let v = ctl.wait_verdict("p", "fenced, its server answering the new agent", |v| {
        v.reasons & FENCED_BIT != 0 && v.ping_rtt_us > 0
    })?;
    assert_eq!(v.epoch, 4, "the fence's epoch is the agent's newest: {v:?}");
    assert!(pin.is_up());
    // An older epoch than the fence's is refused: the fence carried it over.
    let stale = replicate_of(&mut ctl, 2, 3, &new_primary)?;
    assert!(!stale.ok && stale.fenced, "{stale:?}");
    let ack = replicate_of(&mut ctl, 3, 5, &new_primary)?;
    assert!(ack.ok && !ack.fenced, "{ack:?}");
    assert!(!pin.is_up());
    assert_eq!(primary.role()?, "slave");
    Ok(())
}

#[test]
fn a_client_of_a_demoted_primary_is_disconnected_and_finds_a_replica() -> Result<()> {
    demoted_clients_are_disconnected(&[])
}

/// Dragonfly's CLIENT KILL has no TYPE filter; a redis-server without CLIENT at all refuses
/// CLIENT KILL TYPE as Dragonfly does, and the agent disconnects the clients in the kernel.
#[test]
fn a_demoted_server_without_client_kill_type_loses_its_clients_all_the_same() -> Result<()> {
    demoted_clients_are_disconnected(&["--rename-command", "CLIENT", ""])
}

fn demoted_clients_are_disconnected(server_args: &[&str]) -> Result<()> {
    require_root();
    let _serial = serial();
    let primary = RedisServer::start_with(free_port()?, server_args)?;
    let new_primary = RedisServer::start()?;
    // A demotion puts up no fence; one taken down at the end would be one left by mistake.
    let (_pin, mut ctl, agent) = watched(&primary, &[])?;
    let mut client = RawClient::connect(primary.port, Duration::from_secs(2))?;
    assert_eq!(
        client.request(&["PING"], WAIT),
        Answer::Reply("+PONG\r\n".into())
    );
    let mut subscriber = RawClient::connect(primary.port, Duration::from_secs(2))?;
    let subscribed = subscriber.request(&["SUBSCRIBE", "news"], WAIT);
    assert!(
        matches!(&subscribed, Answer::Reply(r) if r.contains("subscribe")),
        "{subscribed:?}"
    );

    let ack = replicate_of(&mut ctl, 1, 2, &new_primary)?;
    assert!(ack.ok && !ack.fenced, "{ack:?}");
    assert_eq!(ack.role(), v1::Role::Replica);
    // Both were disconnected by the demotion itself, not left to meet READONLY.
    for (name, c) in [
        ("the client", &mut client),
        ("the subscriber", &mut subscriber),
    ] {
        let answer = c.answer(WAIT);
        assert!(
            matches!(answer, Answer::Closed | Answer::Reset),
            "{name} stayed connected to the demoted primary: {answer:?}"
        );
    }
    let in_kernel = agent.log.contains("destroyed in the kernel");
    assert_eq!(
        in_kernel,
        !server_args.is_empty(),
        "disconnected in the kernel: {in_kernel}, with server arguments {server_args:?}"
    );
    // Connecting again, they find a replica.
    let mut again = RawClient::connect(primary.port, Duration::from_secs(2))?;
    let answer = again.request(&["SET", "k", "v"], WAIT);
    assert!(
        matches!(&answer, Answer::Reply(r) if r.starts_with("-READONLY")),
        "{answer:?}"
    );
    Ok(())
}

fn self_fences(agent: &Agent) -> usize {
    agent
        .log
        .lines()
        .iter()
        .filter(|l| l.contains("SELF-FENCING"))
        .count()
}

#[test]
fn a_self_fence_lifts_for_primary_at_its_epoch_and_never_at_a_newer_one() -> Result<()> {
    require_root();
    let _serial = serial();
    let primary = RedisServer::start()?;
    let replica = RedisServer::start_with(
        free_port()?,
        &["--replicaof", "127.0.0.1", &primary.port.to_string()],
    )?;
    let pin = PinnedFence::of_port(primary.port)?;
    let mut ctl = StubController::start()?;
    let agent = ctl.start_agent(&primary, DS, "p", &["--peer-interval-ms", "50"])?;
    ctl.wait_session("p")?;
    ctl.grant_leases("p", 600);
    ctl.desire("p", primary_at(3, &replica))?;
    ctl.wait_verdict("p", "the peer probed", |v| v.peers_probed & 1 == 1)?;
    ctl.wait_lease("p")?;
    // Cut off: its one peer stopped, then the controller silent until the lease runs out.
    replica.signal(Signal::SIGSTOP)?;
    ctl.wait_verdict("p", "the peer unreachable", |v| {
        v.peers_unreachable & 1 == 1
    })?;
    ctl.fall_silent("p");
    agent.log.wait_for("SELF-FENCING")?;
    wait_until(WAIT, "the self-fence up", || pin.is_up().then_some(()))?;
    ctl.wait_verdict("p", "fenced at epoch 3", |v| {
        v.reasons & FENCED_BIT != 0 && v.epoch == 3
    })?;

    // The controller is back, and says primary at a newer epoch: the store moved on meanwhile,
    // so that lifts nothing.
    ctl.desire("p", primary_at(4, &replica))?;
    ctl.skip_received();
    ctl.wait_verdict("p", "epoch 4 seen", |v| v.epoch == 4)?;
    let before = ctl.verdicts("p").len();
    std::thread::sleep(QUIET);
    assert!(
        pin.is_up(),
        "primary at a newer epoch lifted the self-fence"
    );
    let since = &ctl.verdicts("p")[before..];
    assert!(
        !since.is_empty() && since.iter().all(|v| v.reasons & FENCED_BIT != 0),
        "a verdict without the fence while it stayed up: {since:?}"
    );
    // The controller's Unfence does.
    let ack = unfence(&mut ctl, 1, 4)?;
    assert!(ack.ok && !ack.fenced, "{ack:?}");
    assert!(!pin.is_up());

    // Cut off again, now at epoch 4; primary at that same epoch lifts it.
    ctl.fall_silent("p");
    wait_until(WAIT, "a second self-fence", || {
        (self_fences(&agent) >= 2 && pin.is_up()).then_some(())
    })?;
    ctl.desire("p", primary_at(4, &replica))?;
    agent.log.wait_for("lifting the self-fence")?;
    wait_until(WAIT, "the self-fence down", || (!pin.is_up()).then_some(()))?;
    ctl.skip_received();
    ctl.wait_verdict("p", "no longer fenced", |v| v.reasons & FENCED_BIT == 0)?;
    replica.signal(Signal::SIGCONT)?;
    Ok(())
}

#[test]
fn ipv6_clients_are_fenced_as_ipv4_ones_are() -> Result<()> {
    require_root();
    let _serial = serial();
    let port = free_port()?;
    // Listening on both loopbacks: the agent speaks IPv4, the clients IPv6.
    let primary = RedisServer::start_with(port, &["--bind", "127.0.0.1", "::1"])?;
    let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    let (pin, mut ctl, _agent) = watched(&primary, &[])?;
    let mut before = RawClient::connect_to(v6, Duration::from_secs(2))?;
    assert_eq!(
        before.request(&["PING"], WAIT),
        Answer::Reply("+PONG\r\n".into())
    );

    fence_up(&mut ctl, 1, 1, false)?;
    let answer = before.request(&["SET", "k", "v"], QUIET);
    assert_eq!(
        answer,
        Answer::Reset,
        "an IPv6 client of the fenced primary got {answer:?}"
    );
    assert_unserved(v6, &["PING"], "a new IPv6 client was served");
    assert!(pin.is_up());
    Ok(())
}

#[test]
fn the_kill_method_kills_the_server_and_holds_the_restarted_one_until_demoted() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut primary = RedisServer::start()?;
    let port = primary.port;
    let new_primary = RedisServer::start()?;
    let (pin, mut ctl, _agent) = watched(&primary, &["--fence-method", "kill"])?;
    fence_up(&mut ctl, 1, 1, false)?;
    primary.wait_exit()?;
    ctl.wait_verdict("p", "the killed server down", |v| {
        health(v) == v1::Health::Down
    })?;

    // A supervisor restarts it on its port, as the primary it was configured to be: the
    // filter, still up, keeps its clients off it.
    drop(primary);
    let restarted = RedisServer::spawn_on(port, &[])?;
    // Its agent follows the new process once it listens.
    ctl.wait_verdict("p", "the restarted server, still fenced", |v| {
        health(v) != v1::Health::Down && v.reasons & FENCED_BIT != 0
    })?;
    assert!(pin.is_up());
    assert_unserved(
        local(port),
        &["SET", "k", "v"],
        "the restarted server was served to a client",
    );
    // The agent's own connections reach the restarted server, and demote it.
    let ack = replicate_of(&mut ctl, 2, 2, &new_primary)?;
    assert!(ack.ok && !ack.fenced, "{ack:?}");
    assert!(!pin.is_up());
    assert_eq!(restarted.role()?, "slave");
    Ok(())
}
