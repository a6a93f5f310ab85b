//! [`RoleMonitor`]: asks every node for its ROLE every millisecond from the host, on its own
//! connections with short timeouts, and keeps each node's changes of role on CLOCK_MONOTONIC.
//! This dates promotions the same way whatever system made them (vigil or Redis Sentinel).
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use super::{Nodes, clock::monotonic_ns, nodes::Role};

/// What one poll of a node found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    Primary,
    Replica,
    /// No answer within the timeout (stopped, deadlocked, cut off, dead).
    Unreachable,
}

/// A change in what the monitor saw of one node: `to` was first seen at `first_ns`, and what it
/// saw before was last seen at `last_before_ns`. The change happened somewhere in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub node: usize,
    pub from: Option<Seen>,
    pub to: Seen,
    pub last_before_ns: u64,
    pub first_ns: u64,
}

/// Polls every node's ROLE from threads of its own until dropped.
pub struct RoleMonitor {
    changes: Arc<Mutex<Vec<Change>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// A poll that takes longer than this counts as no answer.
const TIMEOUT: Duration = Duration::from_millis(50);
/// After no answer, wait this long before asking again, so a stopped server's accept queue does
/// not fill with the monitor's connections.
const BACKOFF: Duration = Duration::from_millis(20);
const INTERVAL: Duration = Duration::from_millis(1);

impl RoleMonitor {
    pub fn start(nodes: &Nodes) -> Self {
        let changes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..nodes.ports.len())
            .map(|node| {
                let url = format!("redis://{}/", nodes.address(node));
                let changes = Arc::clone(&changes);
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || poll(node, &url, &changes, &stop))
            })
            .collect();
        Self {
            changes,
            stop,
            threads,
        }
    }

    /// Every change so far, in the order seen.
    pub fn changes(&self) -> Vec<Change> {
        self.changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for RoleMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn poll(node: usize, url: &str, changes: &Mutex<Vec<Change>>, stop: &AtomicBool) {
    let mut conn: Option<redis::Connection> = None;
    let mut last: Option<(Seen, u64)> = None;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            conn = connect(url);
        }
        let seen = match conn.as_mut().map(Role::query) {
            Some(Ok(Role::Primary)) => Seen::Primary,
            Some(Ok(Role::Replica { .. })) => Seen::Replica,
            _ => Seen::Unreachable,
        };
        let now = monotonic_ns();
        match last {
            Some((before, _)) if before == seen => last = Some((seen, now)),
            _ => {
                changes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Change {
                        node,
                        from: last.map(|(s, _)| s),
                        to: seen,
                        last_before_ns: last.map_or(now, |(_, t)| t),
                        first_ns: now,
                    });
                last = Some((seen, now));
            }
        }
        if seen == Seen::Unreachable {
            conn = None;
            std::thread::sleep(BACKOFF);
        } else {
            std::thread::sleep(INTERVAL);
        }
    }
}

fn connect(url: &str) -> Option<redis::Connection> {
    let c = redis::Client::open(url)
        .ok()?
        .get_connection_with_timeout(TIMEOUT)
        .ok()?;
    c.set_read_timeout(Some(TIMEOUT)).ok()?;
    c.set_write_timeout(Some(TIMEOUT)).ok()?;
    Some(c)
}
