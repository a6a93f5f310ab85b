//! The checker: from the writers' attempts, the role monitor's changes and the keys the final
//! primary holds, what a fault cost. Pure, so its definitions are tested on their own below.
//!
//! - A **promotion** is a node seen as primary whose last role seen before (gaps of no answer
//!   aside) was replica. It happened between the last poll that saw the replica (`lo`) and the
//!   first that saw the primary (`hi`). A restarted server that comes back as a lone primary was
//!   not promoted: it was a primary before it went away.
//! - A write is **acknowledged by a deposed primary** when the node that executed it had been
//!   succeeded: another node's promotion was seen (`hi`) before the write executed, and the
//!   executing node was not itself promoted (`lo`) after that. Using `hi` for the other node and
//!   `lo` for its own only ever leaves a write uncounted when the poll cannot order the two.
//! - **Lost**: acknowledged, and its key is missing (or holds another value) on the final primary.
//!   WAIT-acknowledged writes lost must be none. Plain writes lost outside a split brain are the
//!   replication lag at the fault, reported only.
//! - **Dual-primary milliseconds**: the milliseconds in which two nodes were both taking client
//!   writes. A node takes writes in each millisecond one of its accepted writes executed in, and
//!   in those between two of its accepted writes at most [`GAP_MS`] apart (the writers write
//!   every few milliseconds, so a shorter silence is pacing, not a pause).
use std::collections::{HashMap, HashSet};

use super::{
    attempt::{Attempt, Kind, Outcome},
    monitor::{Change, Seen},
};

/// The longest silence between two writes a node accepted that still counts as taking writes
/// throughout.
pub const GAP_MS: u64 = 25;

/// A node's promotion, as the role monitor saw it: somewhere in `lo_ns..=hi_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Promotion {
    pub node: usize,
    pub lo_ns: u64,
    pub hi_ns: u64,
}

/// What one fault cost, counted by [`check`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub acked_plain: usize,
    pub acked_wait: usize,
    /// WAIT-acknowledged writes missing from the final primary: must be 0.
    pub wait_acked_lost: usize,
    /// Writes acknowledged by a deposed primary after the promotion: must be 0.
    pub splitbrain_writes: usize,
    /// Of those, the ones missing from the final primary.
    pub splitbrain_lost: usize,
    /// Milliseconds in which two nodes both took client writes: must be 0.
    pub dual_primary_ms: u64,
    /// READONLY errors the clients saw.
    pub readonly_errors: usize,
    /// Plain writes acknowledged by the primary of the moment and missing at the end: the
    /// replication lag at the fault. Reported, not asserted.
    pub plain_lost: usize,
    /// Timeouts and other errors the clients saw.
    pub other_errors: usize,
    /// The longest stretch in which no writer had a write acknowledged, between the first
    /// acknowledgement and the last: how long the fault kept the store from taking writes
    /// (for a planned switchover, the window in which writes are refused).
    pub no_write_ms: u64,
    /// Acknowledged writes whose executing server is not one of the nodes (should stay 0).
    pub unplaced: usize,
}

/// Promotions in the monitor's changes, in the order they were seen.
pub fn promotions(changes: &[Change]) -> Vec<Promotion> {
    // Per node: the last role it was seen in (answers only), and when that replica was last seen.
    let mut known: HashMap<usize, (Seen, u64)> = HashMap::new();
    let mut found = Vec::new();
    for c in changes {
        if let Some(Seen::Replica) = c.from {
            known.insert(c.node, (Seen::Replica, c.last_before_ns));
        }
        match c.to {
            Seen::Unreachable => {}
            Seen::Primary => {
                if let Some((Seen::Replica, lo_ns)) = known.get(&c.node).copied() {
                    found.push(Promotion {
                        node: c.node,
                        lo_ns,
                        hi_ns: c.first_ns,
                    });
                }
                known.insert(c.node, (Seen::Primary, c.first_ns));
            }
            Seen::Replica => {
                known.insert(c.node, (Seen::Replica, c.first_ns));
            }
        }
    }
    found
}

/// Whether a write node `node` executed at `exec_ns` came from a deposed primary.
pub fn deposed(promotions: &[Promotion], node: usize, exec_ns: u64) -> bool {
    let succeeded = promotions
        .iter()
        .filter(|p| p.node != node && p.hi_ns < exec_ns)
        .map(|p| p.hi_ns)
        .max();
    let own = promotions
        .iter()
        .filter(|p| p.node == node && p.lo_ns <= exec_ns)
        .map(|p| p.lo_ns)
        .max();
    match (succeeded, own) {
        (Some(other), Some(own)) => other > own,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Counts what the attempts cost. `node_of` names the node a server port belongs to; `kept` holds
/// the keys the final primary has with their own value.
pub fn check(
    attempts: &[Attempt],
    changes: &[Change],
    node_of: impl Fn(u16) -> Option<usize>,
    kept: &HashSet<String>,
) -> Tally {
    let promotions = promotions(changes);
    let mut t = Tally::default();
    for a in attempts {
        match &a.outcome {
            Outcome::ReadOnly => t.readonly_errors += 1,
            Outcome::Timeout | Outcome::Error(_) => t.other_errors += 1,
            Outcome::Ack | Outcome::Unreplicated => {}
        }
        if !a.acknowledged() {
            continue;
        }
        let lost = !kept.contains(&a.key);
        match a.kind {
            Kind::Plain => t.acked_plain += 1,
            Kind::Wait => t.acked_wait += 1,
        }
        if a.kind == Kind::Wait && lost {
            t.wait_acked_lost += 1;
        }
        let placed = a.server_port.and_then(&node_of).zip(a.exec_ns);
        let Some((node, exec_ns)) = placed else {
            t.unplaced += 1;
            continue;
        };
        if deposed(&promotions, node, exec_ns) {
            t.splitbrain_writes += 1;
            if lost {
                t.splitbrain_lost += 1;
            }
        } else if a.kind == Kind::Plain && lost {
            t.plain_lost += 1;
        }
    }
    t.dual_primary_ms = dual_primary_ms(attempts, &node_of);
    t.no_write_ms = no_write_ms(attempts);
    t
}

/// The longest stretch between two acknowledgements, any writer's, in whole milliseconds.
pub fn no_write_ms(attempts: &[Attempt]) -> u64 {
    let mut acked: Vec<u64> = attempts
        .iter()
        .filter(|a| a.acknowledged())
        .map(|a| a.reply_ns)
        .collect();
    acked.sort_unstable();
    acked
        .windows(2)
        .map(|pair| (pair[1] - pair[0]) / 1_000_000)
        .max()
        .unwrap_or(0)
}

/// Milliseconds in which two nodes both took client writes (see the module's definition).
pub fn dual_primary_ms(attempts: &[Attempt], node_of: impl Fn(u16) -> Option<usize>) -> u64 {
    let mut by_node: HashMap<usize, Vec<u64>> = HashMap::new();
    for a in attempts.iter().filter(|a| a.accepted()) {
        if let (Some(node), Some(exec_ns)) = (a.server_port.and_then(&node_of), a.exec_ns) {
            by_node.entry(node).or_default().push(exec_ns / 1_000_000);
        }
    }
    // For each millisecond, the nodes taking writes in it.
    let mut taking: HashMap<u64, HashSet<usize>> = HashMap::new();
    for (node, mut ms) in by_node {
        ms.sort_unstable();
        for pair in ms.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let end = if b - a <= GAP_MS { b } else { a };
            for m in a..=end {
                taking.entry(m).or_default().insert(node);
            }
        }
        if let Some(last) = ms.last() {
            taking.entry(*last).or_default().insert(node);
        }
    }
    taking.values().filter(|nodes| nodes.len() >= 2).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn change(node: usize, from: Option<Seen>, to: Seen, last_ms: u64, first_ms: u64) -> Change {
        Change {
            node,
            from,
            to,
            last_before_ns: last_ms * MS,
            first_ns: first_ms * MS,
        }
    }

    fn write(key: &str, kind: Kind, outcome: Outcome, port: u16, exec_ms: u64) -> Attempt {
        Attempt {
            key: key.into(),
            kind,
            outcome,
            server_port: Some(port),
            exec_ns: Some(exec_ms * MS),
            reply_ns: exec_ms * MS,
        }
    }

    /// Node 0 (port 7000) primary from the start; node 1 (port 7001) promoted between 100 and
    /// 101 ms; node 0 stopped at 50 ms and back at 300 ms, still a primary.
    fn failover() -> Vec<Change> {
        vec![
            change(0, None, Seen::Primary, 0, 0),
            change(1, None, Seen::Replica, 0, 0),
            change(0, Some(Seen::Primary), Seen::Unreachable, 50, 70),
            change(1, Some(Seen::Replica), Seen::Primary, 100, 101),
            change(0, Some(Seen::Unreachable), Seen::Primary, 280, 300),
        ]
    }

    fn node_of(port: u16) -> Option<usize> {
        port.checked_sub(7000).map(usize::from)
    }

    #[test]
    fn the_longest_stretch_without_an_acknowledgement_counts_every_writer() {
        let ack = |key: &str, ms: u64| write(key, Kind::Plain, Outcome::Ack, 7000, ms);
        let refused = write("r", Kind::Plain, Outcome::ReadOnly, 7000, 60);
        // Writer a acks at 0, 10 and 90; writer b at 40: the longest stretch is 40 -> 90.
        let attempts = [
            ack("a:1", 0),
            ack("a:2", 10),
            refused,
            ack("b:1", 40),
            ack("a:3", 90),
        ];
        assert_eq!(no_write_ms(&attempts), 50);
        assert_eq!(
            no_write_ms(&attempts[..1]),
            0,
            "one acknowledgement: no stretch"
        );
    }

    #[test]
    fn a_replica_seen_as_primary_is_a_promotion_and_a_returning_primary_is_not() {
        assert_eq!(
            promotions(&failover()),
            vec![Promotion {
                node: 1,
                lo_ns: 100 * MS,
                hi_ns: 101 * MS
            }]
        );
        // A replica that went unanswered and came back as a primary was promoted in the gap.
        let gap = [
            change(2, None, Seen::Replica, 0, 0),
            change(2, Some(Seen::Replica), Seen::Unreachable, 10, 12),
            change(2, Some(Seen::Unreachable), Seen::Primary, 40, 41),
        ];
        assert_eq!(
            promotions(&gap),
            vec![Promotion {
                node: 2,
                lo_ns: 10 * MS,
                hi_ns: 41 * MS
            }]
        );
    }

    #[test]
    fn only_writes_after_a_successor_was_seen_are_from_a_deposed_primary() {
        let p = promotions(&failover());
        assert!(!deposed(&p, 0, 40 * MS), "before the promotion");
        assert!(
            !deposed(&p, 0, 100 * MS + MS / 2),
            "while the poll cannot order them"
        );
        assert!(deposed(&p, 0, 310 * MS), "the old primary after it");
        assert!(!deposed(&p, 1, 100 * MS + MS / 2), "the new primary itself");
        // Promoted again later, the old primary is the primary again.
        let mut back = p.clone();
        back.push(Promotion {
            node: 0,
            lo_ns: 500 * MS,
            hi_ns: 501 * MS,
        });
        assert!(!deposed(&back, 0, 600 * MS));
        assert!(deposed(&back, 1, 600 * MS));
    }

    #[test]
    fn the_tally_tells_lag_from_split_brain_and_wait_from_plain() {
        let attempts = vec![
            write("a", Kind::Plain, Outcome::Ack, 7000, 10),
            write("b", Kind::Plain, Outcome::Ack, 7000, 45),
            write("c", Kind::Wait, Outcome::Ack, 7000, 20),
            write("d", Kind::Wait, Outcome::Ack, 7001, 150),
            write("e", Kind::Plain, Outcome::Ack, 7000, 305),
            write("f", Kind::Wait, Outcome::Unreplicated, 7000, 306),
            write("g", Kind::Plain, Outcome::ReadOnly, 7000, 400),
            write("h", Kind::Plain, Outcome::Timeout, 7000, 60),
        ];
        let kept: HashSet<String> = ["a", "d"].iter().map(|s| s.to_string()).collect();
        let t = check(&attempts, &failover(), node_of, &kept);
        assert_eq!(t.acked_plain, 3);
        assert_eq!(t.acked_wait, 2);
        assert_eq!(t.wait_acked_lost, 1, "c");
        assert_eq!(t.plain_lost, 1, "b, lost to lag");
        assert_eq!(t.splitbrain_writes, 1, "e");
        assert_eq!(t.splitbrain_lost, 1);
        assert_eq!(t.readonly_errors, 1);
        assert_eq!(t.other_errors, 1);
        assert_eq!(t.unplaced, 0);
    }

    #[test]
    fn dual_primary_time_is_the_overlap_of_two_nodes_taking_writes() {
        // Node 0 takes writes every 5 ms from 0 to 100; node 1 from 80 to 200.
        let mut attempts = Vec::new();
        for ms in (0..=100).step_by(5) {
            attempts.push(write(
                &format!("o{ms}"),
                Kind::Plain,
                Outcome::Ack,
                7000,
                ms,
            ));
        }
        for ms in (80..=200).step_by(5) {
            attempts.push(write(
                &format!("n{ms}"),
                Kind::Plain,
                Outcome::Ack,
                7001,
                ms,
            ));
        }
        assert_eq!(dual_primary_ms(&attempts, node_of), 21, "80..=100");
        // One write, 40 ms after the old primary's last: a single millisecond, not the silence.
        let mut late = attempts.clone();
        late.push(write("late", Kind::Plain, Outcome::Ack, 7000, 140));
        assert_eq!(dual_primary_ms(&late, node_of), 22);
        // Failed writes take nothing; a WAIT write no replica confirmed still did.
        let mut failed = attempts[..21].to_vec();
        failed.push(write("x", Kind::Plain, Outcome::ReadOnly, 7001, 50));
        failed.push(write("y", Kind::Wait, Outcome::Unreplicated, 7001, 60));
        assert_eq!(dual_primary_ms(&failed, node_of), 1);
    }

    #[test]
    fn no_overlap_no_dual_primary_time() {
        let attempts = vec![
            write("a", Kind::Plain, Outcome::Ack, 7000, 10),
            write("b", Kind::Plain, Outcome::Ack, 7000, 20),
            write("c", Kind::Plain, Outcome::Ack, 7001, 21),
            write("d", Kind::Plain, Outcome::Ack, 7001, 30),
        ];
        assert_eq!(dual_primary_ms(&attempts, node_of), 0);
    }
}
