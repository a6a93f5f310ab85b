//! Controller high availability end to end: three real controllers on a real three-member etcd,
//! a primary and two replicas of real redis-server with a real agent beside each, all on
//! 127.0.0.1. Controllers are killed, paused and restarted, etcd members killed, primaries killed;
//! each test asserts the order of what followed and the outcome (who leads, who is primary, at
//! which epoch, what ROLE the servers report), never how fast. One test runs the single
//! controller without etcd through the same crash. Needs root (the agents load eBPF programs).
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use vigil_tests::{
    Controller, EtcdCluster, EtcdTls, HaStore, Leadership, VigilStore, WAIT, require_root, serial,
    wait_until,
};

const DS: &str = "cache";

/// The controllers' flags: a grace after a start or a leader change long enough for every agent
/// to find the new leader (so silence is not mistaken for a fault), and a flap guard
/// longer than any test's single failover.
const CONTROLLER_ARGS: &[&str] = &["--grace-ms", "2000", "--min-failover-interval-ms", "1000"];

/// How long a test watches for something that must not happen (a failover, an epoch change):
/// three leader leases (1 s each), so a controller that wrongly thought it led would have had
/// time to act, plus the grace after a leader change.
const WATCH_ROUNDS: u32 = 70;
const WATCH_EVERY: Duration = Duration::from_millis(50);

fn start() -> Result<HaStore> {
    HaStore::start(DS, CONTROLLER_ARGS, &[])
}

/// Node name of server `i` (the harness names them n0, n1, n2).
fn node(i: usize) -> String {
    format!("n{i}")
}

/// The fields of a JSON log line.
fn fields(line: &str) -> Result<Value> {
    let v: Value = serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
    Ok(v["fields"].clone())
}

/// The servers report the topology with `primary` as primary: it says master, every other
/// running server says slave of it.
fn assert_roles(s: &HaStore, primary: usize) -> Result<()> {
    let (role, _) = s.role(primary)?;
    if role != "master" {
        bail!("n{primary} says {role}, not master");
    }
    for i in (0..s.ports.len()).filter(|&i| i != primary) {
        if s.server(i).is_err() {
            continue;
        }
        let got = s.role(i)?;
        if got != ("slave".to_string(), Some(s.ports[primary])) {
            bail!("n{i} says {got:?}, not a replica of n{primary}");
        }
    }
    Ok(())
}

/// Waits until the servers report `primary` as primary (a demoted or re-pointed replica takes a
/// moment to say so).
fn wait_roles(s: &HaStore, primary: usize) -> Result<()> {
    wait_until(WAIT, "every server to follow the primary", || {
        assert_roles(s, primary).ok()
    })
}

/// Watches for [`WATCH_ROUNDS`]: the leading controller keeps (`primary`, `epoch`), the servers
/// keep their roles, and no controller starts a failover or a switchover.
fn assert_unchanged(s: &HaStore, primary: usize, epoch: u64) -> Result<()> {
    for _ in 0..WATCH_ROUNDS {
        let (p, e) = s.primary_and_epoch()?;
        assert_eq!((p.as_str(), e), (node(primary).as_str(), epoch));
        assert_roles(s, primary)?;
        std::thread::sleep(WATCH_EVERY);
    }
    assert_no_failover(s);
    Ok(())
}

fn assert_no_failover(s: &HaStore) {
    for event in ["failover_started", "switchover_started"] {
        let seen = s.trio.events(event);
        assert!(seen.is_empty(), "a controller logged {event}: {seen:?}");
    }
}

/// Waits until the leading controller names a primary other than `old` at `epoch`, with every
/// server but the dead `old` following it; returns the new primary's index.
fn wait_failed_over(s: &HaStore, old: usize, epoch: u64) -> Result<usize> {
    let new = wait_until(WAIT * 2, "the leader to publish a new primary", || {
        let (p, e) = s.primary_and_epoch().ok()?;
        (p != node(old) && !p.is_empty() && e == epoch).then_some(p)
    })?;
    let new: usize = new
        .strip_prefix('n')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("{new} is not one of ours"))?;
    wait_roles(s, new)?;
    Ok(new)
}

/// Starts the old primary `old` again: it is demoted to a replica of `new`, and every node ends
/// healthy at the leader with the epoch unchanged.
fn old_primary_rejoins(s: &mut HaStore, old: usize, new: usize, epoch: u64) -> Result<()> {
    s.restart_server(old)?;
    wait_roles(s, new)?;
    s.wait_healthy()?;
    assert_eq!(s.primary_and_epoch()?, (node(new), epoch));
    Ok(())
}

/// Clients may list every controller as a sentinel: each serves the primary, each names the
/// others in `SENTINEL sentinels`, and `vigil status` works on a follower too, saying who leads.
#[test]
fn every_controller_serves_the_primary_and_names_the_others() -> Result<()> {
    require_root();
    let _serial = serial();
    let s = start()?;
    let leader = s.leader()?;
    let leader_name = s
        .controller(leader)?
        .name()
        .ok_or_else(|| anyhow!("the leader has no name"))?
        .to_string();
    for i in 0..3 {
        let c = s.controller(i)?;
        wait_until(WAIT, "the controller to serve the primary", || {
            (s.sentinel_primary(i).ok().flatten() == Some(s.ports[0])).then_some(())
        })
        .with_context(|| format!("controller c{i}"))?;
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", c.sentinel))?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
        let mut want: Vec<u16> = (0..3)
            .filter(|&j| j != i)
            .map(|j| s.controller(j).map(|c| c.sentinel))
            .collect::<Result<_>>()?;
        want.sort_unstable();
        // Each learns of the others through etcd, as they announce themselves.
        wait_until(WAIT, "the controller to name the other two", || {
            let others: Vec<Vec<String>> = redis::cmd("SENTINEL")
                .arg("sentinels")
                .arg(DS)
                .query(&mut conn)
                .ok()?;
            let mut ports: Vec<u16> = others
                .iter()
                .filter_map(|fields| {
                    let port = fields.chunks(2).find(|kv| kv[0] == "port")?;
                    port.get(1)?.parse().ok()
                })
                .collect();
            ports.sort_unstable();
            (ports == want).then_some(())
        })
        .with_context(|| format!("c{i}"))?;
        let st = c.status(DS)?;
        assert_eq!(st["primary"], node(0), "c{i}: {st}");
        assert_eq!(st["leading"], i == leader, "c{i}: {st}");
        assert_eq!(st["leader"], leader_name.as_str(), "c{i}: {st}");
    }
    Ok(())
}

#[test]
fn kill_9_of_the_leading_controller_hands_over_without_a_failover() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut s = start()?;
    let (primary, epoch) = s.primary_and_epoch()?;
    assert_eq!(primary, "n0");
    let old = s.leader()?;
    // What each surviving controller and each agent has logged so far.
    let survivors: Vec<usize> = s.trio.live().into_iter().filter(|&i| i != old).collect();
    let logged = |s: &HaStore| -> Result<Vec<usize>> {
        let mut n: Vec<usize> = survivors
            .iter()
            .map(|&i| s.controller(i).map(|c| c.log.lines().len()))
            .collect::<Result<_>>()?;
        n.extend(s.agents.iter().map(|a| a.log.lines().len()));
        Ok(n)
    };
    let before = logged(&s)?;
    s.trio.kill(old)?;
    let new = s.leader()?;
    assert_ne!(new, old);
    s.wait_healthy()?;
    assert_unchanged(&s, 0, epoch)?;
    // Clients asking any surviving controller find the same primary.
    for i in s.trio.live() {
        assert_eq!(s.sentinel_primary(i)?, Some(s.ports[0]), "controller c{i}");
    }
    // A change of leader is no fault: info lines only, from the controllers and the agents.
    let mut since: Vec<(String, Vec<String>)> = Vec::new();
    for (k, &i) in survivors.iter().enumerate() {
        let lines = s.controller(i)?.log.lines();
        since.push((format!("c{i}"), lines[before[k]..].to_vec()));
    }
    for (k, a) in s.agents.iter().enumerate() {
        let lines = a.log.lines();
        since.push((
            format!("n{k}'s agent"),
            lines[before[survivors.len() + k]..].to_vec(),
        ));
    }
    for (who, lines) in since {
        let loud: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains("\"level\":\"WARN\"") || l.contains("\"level\":\"ERROR\""))
            .collect();
        assert!(
            loud.is_empty(),
            "{who} raised more than info on a change of leader: {loud:#?}"
        );
    }
    Ok(())
}

#[test]
fn the_next_leader_finishes_a_failover_its_predecessor_died_in() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut s = start()?;
    let (_, epoch) = s.primary_and_epoch()?;
    let leader = s.leader()?;
    s.kill_server(0)?;
    // Killed the moment it says it started: it has persisted the failover, and may have sent
    // some of its commands.
    let started = s.controller(leader)?.log.wait_for("\"failover_started\"")?;
    s.trio.kill(leader)?;
    let failover_epoch = fields(&started)?["epoch"]
        .as_u64()
        .ok_or_else(|| anyhow!("failover_started has no epoch: {started}"))?;
    assert!(failover_epoch > epoch, "{started}");
    let next = s.leader()?;
    assert_ne!(next, leader);
    let new = wait_failed_over(&s, 0, failover_epoch)?;
    assert_ne!(new, 0);
    // The new leader finished that failover, and started no other.
    for line in s.trio.events("failover_started") {
        assert_eq!(
            fields(&line)?["epoch"].as_u64(),
            Some(failover_epoch),
            "{line}"
        );
    }
    old_primary_rejoins(&mut s, 0, new, failover_epoch)
}

#[test]
fn a_primary_killed_while_no_controller_leads_is_failed_over_by_the_next_leader() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut s = start()?;
    let (_, epoch) = s.primary_and_epoch()?;
    for i in 0..s.trio.controllers.len() {
        s.trio.kill(i)?;
    }
    s.kill_server(0)?;
    for i in 0..s.trio.controllers.len() {
        s.trio.restart(i)?;
    }
    s.leader()?;
    let new = wait_failed_over(&s, 0, epoch + 1)?;
    assert_ne!(new, 0);
    old_primary_rejoins(&mut s, 0, new, epoch + 1)
}

#[test]
fn a_single_controller_restarted_after_the_primary_died_fails_it_over() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut s = VigilStore::start(DS, 2, CONTROLLER_ARGS, &[])?;
    assert_eq!(s.primary()?, 0);
    let epoch = s.controller.status(DS)?["epoch"]
        .as_u64()
        .ok_or_else(|| anyhow!("no epoch"))?;
    // The primary dies while no controller runs: the only evidence is what the agents say after
    // the restart, and what the controller kept on disk.
    s.controller.kill();
    s.kill(0)?;
    // The replicas see their link down, and their agents have polled that (several health
    // polls), before any controller hears from them: all the restarted one can learn of their
    // links is what the agents say about the past.
    for i in [1, 2] {
        wait_until(WAIT, "the replica's link to go down", || {
            let mut c = s.server(i).ok()?.connect().ok()?;
            let info: String = redis::cmd("INFO").arg("replication").query(&mut c).ok()?;
            info.contains("master_link_status:down").then_some(())
        })?;
    }
    std::thread::sleep(Duration::from_millis(3 * 500));
    s.controller.restart()?;
    let new = wait_until(WAIT * 2, "the restarted controller to fail over", || {
        let st = s.controller.status(DS).ok()?;
        let p = st["primary"].as_str()?;
        (p != "n0" && !p.is_empty() && st["epoch"].as_u64() == Some(epoch + 1))
            .then(|| p.to_string())
    })?;
    s.controller.log.wait_for("failover_finished")?;
    let i: usize = new
        .strip_prefix('n')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("{new} is not one of ours"))?;
    assert_eq!(s.server(i)?.role()?, "master");
    assert_eq!(s.controller.sentinel_primary(DS)?, Some(s.ports[i]));
    Ok(())
}

#[test]
fn the_leading_controller_and_the_primary_killed_together_clients_find_the_new_primary()
-> Result<()> {
    require_root();
    let _serial = serial();
    let mut s = start()?;
    let (_, epoch) = s.primary_and_epoch()?;
    let leader = s.leader()?;
    s.trio.kill(leader)?;
    s.kill_server(0)?;
    let survivors = s.trio.live();
    assert_eq!(survivors.len(), 2);
    // What a Sentinel-mode client does: ask a surviving controller, then write there.
    let port = wait_until(WAIT * 2, "a surviving controller to name a replica", || {
        survivors.iter().find_map(|&i| {
            s.sentinel_primary(i)
                .ok()
                .flatten()
                .filter(|p| *p != s.ports[0])
        })
    })?;
    let new = s.index_of(port)?;
    assert_ne!(new, 0);
    for &i in &survivors {
        wait_until(WAIT, "every surviving controller to name it", || {
            (s.sentinel_primary(i).ok().flatten() == Some(port)).then_some(())
        })
        .with_context(|| format!("controller c{i}"))?;
    }
    let mut c = s.server(new)?.connect()?;
    let _: () = redis::cmd("SET").arg("after").arg("1").query(&mut c)?;
    wait_roles(&s, new)?;
    assert_eq!(s.primary_and_epoch()?, (node(new), epoch + 1));
    Ok(())
}

#[test]
fn one_etcd_member_killed_changes_nothing() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut s = start()?;
    let (_, epoch) = s.primary_and_epoch()?;
    // The raft leader, the member whose loss matters most: the other two elect a new one.
    let member = s.trio.etcd.raft_leader()?;
    s.trio.etcd.kill(member)?;
    s.trio.etcd.wait_healthy()?;
    // A leader change is allowed; a failover, an epoch change or a role change is not.
    assert_unchanged(&s, 0, epoch)?;
    s.leader()?;
    Ok(())
}

#[test]
fn with_etcd_quorum_lost_nothing_is_promoted_and_the_replicas_stay_replicas() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut s = start()?;
    s.leader()?;
    s.trio.etcd.kill(0)?;
    s.trio.etcd.kill(1)?;
    let alert = wait_until(WAIT, "an etcd_unavailable alert", || {
        s.trio.events("etcd_unavailable").into_iter().next()
    })?;
    let v: Value = serde_json::from_str(&alert)?;
    assert_eq!(v["level"], "ERROR", "{alert}");
    // The leader cannot renew its lease: it steps down, and no controller leads.
    wait_until(WAIT, "every controller to stop leading", || {
        s.trio
            .live()
            .iter()
            .all(|&i| s.trio.controllers[i].leadership() != Some(Leadership::Leading))
            .then_some(())
    })?;
    s.kill_server(0)?;
    for _ in 0..WATCH_ROUNDS {
        for i in [1, 2] {
            assert_eq!(
                s.role(i)?,
                ("slave".to_string(), Some(s.ports[0])),
                "n{i} left its dead primary with no controller leading"
            );
        }
        assert!(
            s.trio.current_leader().is_none(),
            "a controller leads without etcd"
        );
        std::thread::sleep(WATCH_EVERY);
    }
    assert_no_failover(&s);
    Ok(())
}

#[test]
fn a_leader_paused_past_its_lease_steps_down_on_resume_and_acts_on_nothing() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut s = start()?;
    let (_, epoch) = s.primary_and_epoch()?;
    let old = s.leader()?;
    s.trio.pause(old)?;
    let new = s.leader()?;
    assert_ne!(new, old);
    s.trio.resume(old)?;
    // At once, before it may have heard from etcd: its lease ran out while it was stopped.
    let first = s.controller(old)?.failover(DS);
    assert!(
        first.is_err(),
        "a deposed leader took a failover: {first:?}"
    );
    s.controller(old)?.log.wait_for("leadership_lost")?;
    assert!(!s.controller(old)?.leading());
    let again = s.controller(old)?.failover(DS);
    assert!(again.is_err(), "a follower took a failover: {again:?}");
    s.wait_healthy()?;
    assert_unchanged(&s, 0, epoch)?;
    assert_eq!(s.trio.current_leader(), Some(new));
    Ok(())
}

/// etcd's CA, its members' certificate (for 127.0.0.1 and localhost) and a client certificate,
/// written into `dir`.
fn etcd_certs(dir: &Path) -> Result<EtcdTls> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "vigil test etcd CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let write = |name: &str, text: String| -> Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let issue = |name: &str, usages: Vec<ExtendedKeyUsagePurpose>| -> Result<(PathBuf, PathBuf)> {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = usages;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;
        Ok((
            write(&format!("{name}.pem"), cert.pem())?,
            write(&format!("{name}-key.pem"), key.serialize_pem())?,
        ))
    };
    // etcd 3.4's gateway dials its own client port with the members' certificate, so that one is
    // a client certificate too.
    let (server_cert, server_key) = issue(
        "etcd-server",
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    )?;
    let (client_cert, client_key) =
        issue("etcd-client", vec![ExtendedKeyUsagePurpose::ClientAuth])?;
    Ok(EtcdTls {
        ca: write("etcd-ca.pem", ca.pem())?,
        server_cert,
        server_key,
        client_cert,
        client_key,
    })
}

/// Three controllers whose etcd serves only TLS and asks each for a client certificate elect one
/// leader, keep the state there, and fail over a kill -9 of the primary.
#[test]
fn on_an_etcd_with_client_certificates_a_leader_is_elected_and_fails_over_a_killed_primary()
-> Result<()> {
    require_root();
    let _serial = serial();
    let mut s = HaStore::start_on_tls_etcd(DS, etcd_certs, CONTROLLER_ARGS, &[])?;
    assert!(
        s.trio
            .etcd
            .client_urls()
            .split(',')
            .all(|u| u.starts_with("https://")),
        "{}",
        s.trio.etcd.client_urls()
    );
    let (primary, epoch) = s.primary_and_epoch()?;
    assert_eq!(primary, "n0");
    s.kill_server(0)?;
    let new = wait_failed_over(&s, 0, epoch + 1)?;
    assert_ne!(new, 0);
    // The leader wrote the new epoch to etcd, through TLS.
    let stored = s
        .trio
        .etcd
        .get(&format!("/vigil/state/{DS}"))?
        .ok_or_else(|| anyhow!("no state of {DS} in etcd"))?;
    let stored: Value = serde_json::from_str(&stored)?;
    assert_eq!(stored["epoch"], epoch + 1, "{stored}");
    old_primary_rejoins(&mut s, 0, new, epoch + 1)
}

/// A controller given etcd's CA but no client certificate, against an etcd that asks for one,
/// stops at start saying that etcd refused the handshake; so does one given another CA; with the
/// certificate it starts and leads.
#[test]
fn without_a_client_certificate_a_controller_stops_at_start_naming_etcd() -> Result<()> {
    let _serial = serial();
    let etcd = EtcdCluster::start_tls(1, etcd_certs)?;
    let tls = etcd.tls().ok_or_else(|| anyhow!("etcd without TLS"))?;
    let ca_only = tls.ca_only_args();
    let ca_only: Vec<&str> = ca_only.iter().map(String::as_str).collect();
    let e = match Controller::start_ha(&etcd.client_urls(), "c0", &ca_only) {
        Ok(_) => bail!("a controller without a client certificate started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        e.contains("etcd") && e.contains("TLS handshake"),
        "the error does not say etcd refused the handshake: {e}"
    );
    // A CA that did not sign etcd's certificate: the controller says so, naming the setting.
    let other = tempfile::tempdir()?;
    let other = etcd_certs(other.path())?;
    let e = match Controller::start_ha(
        &etcd.client_urls(),
        "c0",
        &["--etcd-ca", &other.ca.display().to_string()],
    ) {
        Ok(_) => bail!("a controller trusting another CA started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        e.contains("etcd") && e.contains("etcd_ca"),
        "the error does not say etcd's certificate is not from etcd_ca: {e}"
    );
    let full = tls.controller_args();
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    let c = Controller::start_ha(&etcd.client_urls(), "c0", &full)?;
    wait_until(WAIT, "the controller with a certificate to lead", || {
        c.leading().then_some(())
    })?;
    Ok(())
}
