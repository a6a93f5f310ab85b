//! [`run`]: one fault against one system, start to verdict. Writers write through the fault and
//! its healing; the store settles; the final primary is read; the checker counts.
use std::{
    collections::HashSet,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow};

use super::{
    CoordinatorKill, Fault, Nodes, Promotion, System,
    attempt::{Attempt, Kind, Outcome},
    checker::{Tally, check, promotions},
    clock::monotonic_ns,
    monitor::RoleMonitor,
    nodes::Role,
    writer::{Mode, Writer},
};
use crate::wait_until;

/// Bounds and pauses of a run.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Writes before the fault.
    pub warmup: Duration,
    /// The longest wait for a promotion; without one the fault is healed all the same.
    pub promotion_limit: Duration,
    /// Writes after healing, before the writers stop.
    pub after_heal: Duration,
    /// The longest wait for the store to settle.
    pub settle_limit: Duration,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            warmup: Duration::from_secs(1),
            promotion_limit: Duration::from_secs(10),
            after_heal: Duration::from_secs(2),
            settle_limit: Duration::from_secs(30),
        }
    }
}

/// What one fault cost one system.
#[derive(Clone, Debug)]
pub struct Report {
    pub fault: Fault,
    pub system: String,
    pub tally: Tally,
    /// From the fault to the first promotion the monitor saw, if any.
    pub promotion_ms: Option<f64>,
    /// From the fault to every endpoint naming the promoted node, if they came to.
    pub published_ms: Option<f64>,
    /// Whether, after healing, one node was primary, the others its linked replicas, and every
    /// endpoint named it. If not, the counts are against the primary the endpoint named.
    pub settled: bool,
    /// Of the READONLY errors, those the writers in Sentinel mode saw (the rest went to the
    /// writers on a fixed address, which keep reconnecting to a node that is now a replica).
    pub readonly_via_endpoint: usize,
    /// For [`Fault::CoordinatorKilled`]: where the kill fell: `before-promotion` (the new primary
    /// was still seen as a replica after it), `around-promotion` (the poll cannot tell),
    /// `after-promotion`, or `after-finish` (the coordinator had announced the failover finished).
    pub kill_point: Option<&'static str>,
}

impl Report {
    /// One line with every count.
    pub fn line(&self) -> String {
        let t = &self.tally;
        let ms = |v: Option<f64>| v.map_or("none".to_string(), |ms| format!("{ms:.1}ms"));
        let (promoted, published) = (ms(self.promotion_ms), ms(self.published_ms));
        let mut line = format!(
            "{} {}: wait_acked_lost={} splitbrain_writes={} (lost {}) dual_primary_ms={} \
             readonly_errors={} (via endpoint {}) plain_lost={} acked={}+{}wait other_errors={} no_write_ms={} promoted={promoted} published={published} settled={}",
            self.system,
            self.fault.name(),
            t.wait_acked_lost,
            t.splitbrain_writes,
            t.splitbrain_lost,
            t.dual_primary_ms,
            t.readonly_errors,
            self.readonly_via_endpoint,
            t.plain_lost,
            t.acked_plain,
            t.acked_wait,
            t.other_errors,
            t.no_write_ms,
            self.settled,
        );
        if let Some(point) = self.kill_point {
            line += &format!(" killed={point}");
        }
        if t.unplaced > 0 {
            line += &format!(" unplaced={}", t.unplaced);
        }
        line
    }
}

/// Runs `fault` against `system` over `nodes` (which must have been started for the fault's
/// topology, with `system` watching them).
pub fn run(fault: Fault, nodes: &mut Nodes, system: &mut dyn System, plan: Plan) -> Result<Report> {
    system.wait_ready(nodes)?;
    let dir = tempfile::Builder::new()
        .prefix("vigil-safety-writes-")
        .tempdir()?;
    let monitor = RoleMonitor::start(nodes);
    let writers = start_writers(nodes, system, dir.path())?;
    std::thread::sleep(plan.warmup);

    let fault_ns = monotonic_ns();
    let injected = fault.inject(nodes, system)?;
    let (promoted, published) = wait_failover(nodes, system, &monitor, fault_ns, plan);
    std::thread::sleep(fault.hold());
    fault.heal(nodes)?;
    std::thread::sleep(plan.after_heal);

    let mut attempts: Vec<Attempt> = Vec::new();
    let mut readonly_via_endpoint = 0;
    for w in writers {
        let via_endpoint = w.via_endpoint;
        let theirs = w.finish()?;
        if via_endpoint {
            readonly_via_endpoint += theirs
                .iter()
                .filter(|a| a.outcome == Outcome::ReadOnly)
                .count();
        }
        attempts.extend(theirs);
    }
    let (settled, primary) = settle(nodes, system, plan.settle_limit)?;
    let kept = kept_keys(nodes, primary, &attempts)?;
    let changes = monitor.changes();
    drop(monitor);
    keep_for_reading(dir, &changes);
    let since_fault = |ns: u64| ns.saturating_sub(fault_ns) as f64 / 1e6;
    Ok(Report {
        fault,
        system: system.label(),
        tally: check(&attempts, &changes, |port| nodes.node_of_port(port), &kept),
        promotion_ms: promoted.map(|p| since_fault(p.hi_ns)),
        published_ms: published.map(since_fault),
        settled,
        readonly_via_endpoint,
        kill_point: injected
            .coordinator_kill
            .map(|kill| kill_point(kill, promoted)),
    })
}

/// The four writers: in Sentinel mode through the endpoints (on the host), and direct to the
/// first primary from its own side of any cut, as clients beside it would be; one plain and one
/// `WAIT 1` of each. Returns once each has had a write acknowledged.
fn start_writers(nodes: &Nodes, system: &dyn System, dir: &Path) -> Result<Vec<Writer>> {
    let sentinel = Mode::Sentinel {
        endpoints: system.endpoints(),
        service: system.service(),
    };
    let direct = Mode::Direct {
        address: nodes.local_address(0),
    };
    let near = nodes.netns_of(0);
    let writers = vec![
        Writer::start("s-plain", &sentinel, Kind::Plain, None, dir)?,
        Writer::start("s-wait", &sentinel, Kind::Wait, None, dir)?,
        Writer::start("d-plain", &direct, Kind::Plain, near, dir)?,
        Writer::start("d-wait", &direct, Kind::Wait, near, dir)?,
    ];
    for w in &writers {
        w.wait_first_ack(Duration::from_secs(15))?;
    }
    Ok(writers)
}

/// Waits (within the plan's limit) for the failover a fault sets off: the first promotion after
/// `fault_ns`, then every endpoint naming the promoted node (its CLOCK_MONOTONIC ns).
fn wait_failover(
    nodes: &Nodes,
    system: &dyn System,
    monitor: &RoleMonitor,
    fault_ns: u64,
    plan: Plan,
) -> (Option<Promotion>, Option<u64>) {
    let limit = Instant::now() + plan.promotion_limit;
    let promoted = wait_until(plan.promotion_limit, "a promotion", || {
        promotions(&monitor.changes())
            .into_iter()
            .find(|p| p.hi_ns >= fault_ns)
    })
    .ok();
    let published = promoted.and_then(|p| {
        let left = limit.saturating_duration_since(Instant::now());
        wait_until(left, "the endpoints to name the new primary", || {
            system
                .endpoints()
                .iter()
                .all(|e| named_node(nodes, e, &system.service()) == Some(p.node))
                .then(monotonic_ns)
        })
        .ok()
    });
    (promoted, published)
}

/// Where the coordinator's kill fell in the failover (see [`Report::kill_point`]).
fn kill_point(kill: CoordinatorKill, promoted: Option<Promotion>) -> &'static str {
    match promoted {
        _ if kill.finished_before => "after-finish",
        Some(p) if p.hi_ns < kill.killed_ns => "after-promotion",
        Some(p) if p.lo_ns < kill.killed_ns => "around-promotion",
        _ => "before-promotion",
    }
}

/// With `VIGIL_SAFETY_KEEP` set, keeps the writers' lines and writes the monitor's changes beside
/// them (`roles.txt`), and says where: what to read when a count needs explaining.
fn keep_for_reading(dir: tempfile::TempDir, changes: &[super::Change]) {
    if std::env::var_os("VIGIL_SAFETY_KEEP").is_none() {
        return;
    }
    let path = dir.keep();
    let lines: String = changes.iter().map(|c| format!("{c:?}\n")).collect();
    let _ = std::fs::write(path.join("roles.txt"), lines);
    eprintln!(
        "safety: the writers' lines and the roles seen are in {}",
        path.display()
    );
}

/// Waits until one node is primary, the others its linked replicas, and every endpoint names it.
/// Returns whether it came to that, and the primary to read: that one, or else the one the first
/// endpoint names.
fn settle(nodes: &Nodes, system: &dyn System, limit: Duration) -> Result<(bool, usize)> {
    let named = || -> Option<Vec<usize>> {
        system
            .endpoints()
            .iter()
            .map(|e| named_node(nodes, e, &system.service()))
            .collect()
    };
    let settled = wait_until(limit, "the store to settle", || {
        let roles: Vec<Role> = (0..nodes.ports.len())
            .map(|i| nodes.role(i).ok())
            .collect::<Option<_>>()?;
        let primary = roles.iter().position(|r| *r == Role::Primary)?;
        let followed = roles
            .iter()
            .enumerate()
            .all(|(i, r)| i == primary || r.follows(nodes.ports[primary]));
        let named = named()?;
        (followed && named.iter().all(|n| *n == primary)).then_some(primary)
    });
    match settled {
        Ok(primary) => Ok((true, primary)),
        Err(e) => {
            eprintln!("{}: {e:#}", system.label());
            let primary = named().and_then(|n| n.first().copied()).ok_or_else(|| {
                anyhow!("the store never settled and no endpoint names a primary")
            })?;
            Ok((false, primary))
        }
    }
}

/// The node a Sentinel-protocol endpoint names the primary of `service`.
fn named_node(nodes: &Nodes, endpoint: &str, service: &str) -> Option<usize> {
    let client = redis::Client::open(format!("redis://{endpoint}/")).ok()?;
    let mut c = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    c.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(service)
        .query(&mut c)
        .ok()?;
    addr.and_then(|(_, port)| nodes.node_of_port(port))
}

/// The acknowledged keys that node `primary` holds with their own value.
fn kept_keys(nodes: &Nodes, primary: usize, attempts: &[Attempt]) -> Result<HashSet<String>> {
    let mut c = nodes
        .connect(primary, Duration::from_secs(5))
        .context("reading the final primary")?;
    let keys: Vec<&str> = attempts
        .iter()
        .filter(|a| a.acknowledged())
        .map(|a| a.key.as_str())
        .collect();
    let mut kept = HashSet::new();
    for batch in keys.chunks(500) {
        let values: Vec<Option<String>> = redis::cmd("MGET").arg(batch).query(&mut c)?;
        for (key, value) in batch.iter().zip(values) {
            if value.as_deref() == Some(*key) {
                kept.insert(key.to_string());
            }
        }
    }
    Ok(kept)
}
