//! The reconciler's decisions, pure so every case is unit-tested: has the primary failed, and
//! which replica is the best to promote.
//!
//! The primary has failed when its own agent says DOWN or UNHEALTHY, or when its agent is silent
//! past the silence bound AND most replicas' agents report the primary unreachable (by peer PING
//! or by their replication link). A controller that alone lost the primary's agent raises an
//! alert and does not fail over (the Orchestrator rule).
use std::time::Duration;

use vigil_proto::{
    heartbeat,
    v1::{Health, Role},
};

use super::state::Cause;

/// What the reconciler knows of one node when it decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    pub id: String,
    pub zone: String,
    /// Lower is preferred; 0 never promotes.
    pub priority: u32,
    /// The agent has a session now.
    pub connected: bool,
    /// Age of the node's last verdict; None before the first.
    pub verdict_age: Option<Duration>,
    /// Time since this process got the node's first verdict; None before it.
    pub heard_for: Option<Duration>,
    pub health: Health,
    pub role: Role,
    pub offset: u64,
    /// Time since this node last reported its replication link up; None if never.
    pub link_up_age: Option<Duration>,
    /// This node's agent reports the current primary unreachable.
    pub sees_primary_down: bool,
    /// A replica whose last verdict had nothing to report: its agent beats at the slow pace.
    pub quiet: bool,
}

impl NodeView {
    /// Heard from within the silence bound for the pace its agent beats at.
    pub fn fresh(&self, p: &Policy) -> bool {
        let silence = heartbeat::silence(p.silence, p.quiet_heartbeat_ms, self.quiet);
        self.connected && self.verdict_age.is_some_and(|a| a <= silence)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// An agent not heard from this long is silent...
    pub silence: Duration,
    /// ...unless it is a quiet replica, told to beat this slowly (0: none).
    pub quiet_heartbeat_ms: u32,
    /// A replica whose link to the primary was last up longer ago than this is stale.
    pub link_bound: Duration,
    /// After a controller restart: agents are still reconnecting, so silence proves nothing.
    pub in_grace: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrimaryState {
    Healthy,
    /// Down, Unhealthy or Unreachable.
    Failed(Cause),
    /// The controller cannot hear the primary's agent, but the replicas still reach the primary.
    Partitioned,
    /// Silent during the grace period after a controller restart: wait.
    Waiting,
}

/// Has the primary failed?
pub fn assess_primary(primary: &NodeView, replicas: &[NodeView], p: &Policy) -> PrimaryState {
    if primary.fresh(p) {
        return match primary.health {
            Health::Down => PrimaryState::Failed(Cause::Down),
            Health::Unhealthy => PrimaryState::Failed(Cause::Unhealthy),
            _ => PrimaryState::Healthy,
        };
    }
    if p.in_grace {
        return PrimaryState::Waiting;
    }
    let reporting = replicas
        .iter()
        .filter(|r| r.fresh(p) && r.sees_primary_down)
        .count();
    if !replicas.is_empty() && reporting * 2 > replicas.len() {
        PrimaryState::Failed(Cause::Unreachable)
    } else {
        PrimaryState::Partitioned
    }
}

/// A node that may be promoted: heard from, not failing, a replica with a recent link, priority > 0.
pub fn promotable(n: &NodeView, p: &Policy) -> bool {
    n.fresh(p)
        && matches!(n.health, Health::Healthy | Health::Degraded)
        && n.role == Role::Replica
        && n.priority > 0
        && n.link_up_age.is_some_and(|a| a <= p.link_bound)
}

/// The zone looks down when no node in it is fresh and healthy.
pub fn zone_looks_down(zone: &str, nodes: &[NodeView], p: &Policy) -> bool {
    !zone.is_empty()
        && !nodes.iter().any(|n| {
            n.zone == zone && n.fresh(p) && matches!(n.health, Health::Healthy | Health::Degraded)
        })
}

/// The replicas that may be promoted, best first: highest offset, then lowest priority number,
/// then outside the failed primary's zone when that zone looks down, then node id.
pub fn ranked_replicas<'a>(
    replicas: &'a [NodeView],
    failed_zone: &str,
    zone_down: bool,
    p: &Policy,
) -> Vec<&'a NodeView> {
    let mut ranked: Vec<&NodeView> = replicas.iter().filter(|n| promotable(n, p)).collect();
    ranked.sort_by(|a, b| {
        b.offset
            .cmp(&a.offset)
            .then(a.priority.cmp(&b.priority))
            .then((zone_down && a.zone == failed_zone).cmp(&(zone_down && b.zone == failed_zone)))
            .then(a.id.cmp(&b.id))
    });
    ranked
}

/// The best replica to promote, by what the verdicts said.
pub fn best_replica<'a>(
    replicas: &'a [NodeView],
    failed_zone: &str,
    zone_down: bool,
    p: &Policy,
) -> Option<&'a NodeView> {
    ranked_replicas(replicas, failed_zone, zone_down, p)
        .into_iter()
        .next()
}

/// The replicas, heard from now, whose replication link has been down (or never up) for longer
/// than the settings' bound: a primary that cannot reach them is not failed over (its clients
/// still reach it), but its writes are not replicated, which an operator must hear of.
pub fn unlinked_replicas<'a>(replicas: &'a [NodeView], p: &Policy) -> Vec<&'a str> {
    replicas
        .iter()
        .filter(|r| r.fresh(p) && r.role == Role::Replica)
        .filter(|r| {
            // A replica never seen linked counts from when it was first heard: one that just
            // started (its first sync under way) is not broken yet.
            r.link_up_age
                .or(r.heard_for)
                .is_some_and(|a| a > super::settings::REPLICATION_BROKEN_AFTER)
        })
        .map(|r| r.id.as_str())
        .collect()
}

/// The candidate to promote once the candidates were asked for their offsets just now: the
/// highest fresh offset wins, ties keep the ranking's order; with no answer, the ranking decides.
/// (Verdict offsets can be up to one health poll old, and a replica whose link looked up may not
/// have been fed: promoting it would lose acknowledged writes.)
pub fn pick_freshest(ranked: &[String], fresh: &[(String, u64)]) -> Option<String> {
    let offset = |id: &String| fresh.iter().find(|(n, _)| n == id).map(|(_, o)| *o);
    let best = ranked
        .iter()
        .filter_map(|id| offset(id).map(|o| (id, o)))
        .fold(None, |best: Option<(&String, u64)>, (id, o)| match best {
            Some((_, b)) if b >= o => best,
            _ => Some((id, o)),
        });
    best.map(|(id, _)| id.clone())
        .or_else(|| ranked.first().cloned())
}

/// The target of a failover whose candidates were just asked for their offsets. `ranked` is best
/// first by the verdicts, the target the failover was persisted with first; `answers` holds each
/// answer's node, role and offset. A fresh failover takes the highest offset among the replicas
/// that answered ([`pick_freshest`]). A resumed one may have promoted its persisted target before
/// the controller stopped, so it keeps that target when it answers as a primary or does not
/// answer (nothing shows it was not promoted); only a target that answers as a replica gives way
/// to a candidate with more data.
pub fn settle_target(
    ranked: &[String],
    answers: &[(String, Role, u64)],
    resumed: bool,
) -> Option<String> {
    let persisted = ranked.first()?;
    if resumed {
        let answer = answers.iter().find(|(n, _, _)| n == persisted);
        if answer.is_none_or(|(_, role, _)| *role != Role::Replica) {
            return Some(persisted.clone());
        }
    }
    let replicas: Vec<(String, u64)> = answers
        .iter()
        .filter(|(_, role, _)| *role == Role::Replica)
        .map(|(n, _, offset)| (n.clone(), *offset))
        .collect();
    pick_freshest(ranked, &replicas)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SILENCE: Duration = Duration::from_millis(500);

    fn policy(in_grace: bool) -> Policy {
        Policy {
            silence: SILENCE,
            quiet_heartbeat_ms: 1_000,
            link_bound: Duration::from_secs(10),
            in_grace,
        }
    }

    fn node(id: &str, role: Role) -> NodeView {
        NodeView {
            id: id.into(),
            zone: "z1".into(),
            priority: 100,
            connected: true,
            verdict_age: Some(Duration::from_millis(50)),
            heard_for: Some(Duration::from_secs(10)),
            health: Health::Healthy,
            role,
            offset: 100,
            link_up_age: Some(Duration::from_millis(100)),
            sees_primary_down: false,
            quiet: false,
        }
    }

    /// How the primary's agent is heard.
    #[derive(Clone, Copy, Debug)]
    enum Heard {
        Fresh(Health),
        Silent,
        Disconnected,
    }

    fn primary(h: Heard) -> NodeView {
        let mut n = node("p", Role::Primary);
        match h {
            Heard::Fresh(health) => n.health = health,
            Heard::Silent => n.verdict_age = Some(SILENCE + Duration::from_millis(1)),
            Heard::Disconnected => n.connected = false,
        }
        n
    }

    fn replicas(total: usize, reporting: usize, fresh: bool) -> Vec<NodeView> {
        (0..total)
            .map(|i| {
                let mut r = node(&format!("r{i}"), Role::Replica);
                r.sees_primary_down = i < reporting;
                if !fresh {
                    r.verdict_age = None;
                }
                r
            })
            .collect()
    }

    /// The whole table: every way of hearing the primary, every replica count and report count,
    /// fresh or silent replicas, in and out of the grace period.
    #[test]
    fn decision_table() {
        let heard = [
            Heard::Fresh(Health::Healthy),
            Heard::Fresh(Health::Degraded),
            Heard::Fresh(Health::Unhealthy),
            Heard::Fresh(Health::Down),
            Heard::Fresh(Health::Unspecified),
            Heard::Silent,
            Heard::Disconnected,
        ];
        for h in heard {
            for total in 0..=4usize {
                for reporting in 0..=total {
                    for fresh in [true, false] {
                        for grace in [false, true] {
                            let got = assess_primary(
                                &primary(h),
                                &replicas(total, reporting, fresh),
                                &policy(grace),
                            );
                            let majority = fresh && total > 0 && reporting * 2 > total;
                            let want = match h {
                                Heard::Fresh(Health::Down) => PrimaryState::Failed(Cause::Down),
                                Heard::Fresh(Health::Unhealthy) => {
                                    PrimaryState::Failed(Cause::Unhealthy)
                                }
                                Heard::Fresh(_) => PrimaryState::Healthy,
                                _ if grace => PrimaryState::Waiting,
                                _ if majority => PrimaryState::Failed(Cause::Unreachable),
                                _ => PrimaryState::Partitioned,
                            };
                            assert_eq!(
                                got, want,
                                "{h:?} total={total} reporting={reporting} fresh={fresh} grace={grace}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_controller_alone_losing_the_primary_is_no_failover() {
        let r = replicas(2, 0, true);
        assert_eq!(
            assess_primary(&primary(Heard::Disconnected), &r, &policy(false)),
            PrimaryState::Partitioned
        );
        // Exactly half is not most.
        let r = replicas(2, 1, true);
        assert_eq!(
            assess_primary(&primary(Heard::Silent), &r, &policy(false)),
            PrimaryState::Partitioned
        );
    }

    #[test]
    fn a_quiet_replica_is_fresh_for_five_slow_beats_and_any_other_for_the_silence_bound() {
        let p = policy(false);
        let mut quiet = node("q", Role::Replica);
        quiet.quiet = true;
        let mut loud = node("l", Role::Replica);
        let two_seconds = Some(Duration::from_secs(2));
        quiet.verdict_age = two_seconds;
        loud.verdict_age = two_seconds;
        assert!(promotable(&quiet, &p));
        assert!(!promotable(&loud, &p));
        quiet.verdict_age = Some(Duration::from_millis(5_001));
        assert!(!promotable(&quiet, &p));
    }

    #[test]
    fn the_best_replica_has_the_highest_offset_then_priority_then_zone_then_id() {
        let p = policy(false);
        let mut a = node("a", Role::Replica);
        let mut b = node("b", Role::Replica);
        b.offset = 200;
        assert_eq!(
            best_replica(&[a.clone(), b.clone()], "z1", false, &p).map(|n| n.id.as_str()),
            Some("b")
        );
        b.offset = 100;
        b.priority = 50;
        assert_eq!(
            best_replica(&[a.clone(), b.clone()], "z1", false, &p).map(|n| n.id.as_str()),
            Some("b")
        );
        b.priority = 100;
        a.zone = "z1".into();
        b.zone = "z2".into();
        // Same offset and priority: the zone decides only when the failed zone looks down.
        assert_eq!(
            best_replica(&[a.clone(), b.clone()], "z1", true, &p).map(|n| n.id.as_str()),
            Some("b")
        );
        assert_eq!(
            best_replica(&[a.clone(), b.clone()], "z1", false, &p).map(|n| n.id.as_str()),
            Some("a")
        );
    }

    #[test]
    fn stale_unhealthy_or_unwilling_replicas_are_never_promoted() {
        let p = policy(false);
        let good = node("good", Role::Replica);
        let mut bad = vec![];
        let mut n = node("unhealthy", Role::Replica);
        n.health = Health::Unhealthy;
        n.offset = 999;
        bad.push(n);
        let mut n = node("down", Role::Replica);
        n.health = Health::Down;
        n.offset = 999;
        bad.push(n);
        let mut n = node("stale-link", Role::Replica);
        n.link_up_age = Some(Duration::from_secs(60));
        n.offset = 999;
        bad.push(n);
        let mut n = node("never-linked", Role::Replica);
        n.link_up_age = None;
        n.offset = 999;
        bad.push(n);
        let mut n = node("priority-0", Role::Replica);
        n.priority = 0;
        n.offset = 999;
        bad.push(n);
        let mut n = node("silent", Role::Replica);
        n.verdict_age = Some(Duration::from_secs(5));
        n.offset = 999;
        bad.push(n);
        let mut n = node("primary-role", Role::Primary);
        n.offset = 999;
        bad.push(n);
        for b in &bad {
            assert!(!promotable(b, &p), "{} was promotable", b.id);
        }
        let mut all = bad.clone();
        all.push(good);
        assert_eq!(
            best_replica(&all, "z1", false, &p).map(|n| n.id.as_str()),
            Some("good")
        );
        assert_eq!(best_replica(&bad, "z1", false, &p), None);
    }

    #[test]
    fn fresh_offsets_decide_and_the_ranking_breaks_ties() {
        let ranked: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let fresh = |v: &[(&str, u64)]| {
            v.iter()
                .map(|(n, o)| (n.to_string(), *o))
                .collect::<Vec<_>>()
        };
        // The verdicts ranked a first, but b has more data now.
        assert_eq!(
            pick_freshest(&ranked, &fresh(&[("a", 0), ("b", 7003), ("c", 10)])),
            Some("b".into())
        );
        assert_eq!(
            pick_freshest(&ranked, &fresh(&[("a", 5), ("b", 5)])),
            Some("a".into())
        );
        // Only some answered: the best answer wins over silent candidates.
        assert_eq!(
            pick_freshest(&ranked, &fresh(&[("c", 1)])),
            Some("c".into())
        );
        // Nobody answered: the ranking decides.
        assert_eq!(pick_freshest(&ranked, &[]), Some("a".into()));
        assert_eq!(pick_freshest(&[], &[]), None);
    }

    #[test]
    fn a_fresh_failover_settles_on_the_replica_with_the_most_data_now() {
        let ranked: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let answer = |n: &str, role, offset| (n.to_string(), role, offset);
        // The verdicts put a first; asked now, b has more.
        let answers = [
            answer("a", Role::Replica, 5),
            answer("b", Role::Replica, 9),
            answer("c", Role::Replica, 1),
        ];
        assert_eq!(settle_target(&ranked, &answers, false), Some("b".into()));
        // Equal offsets keep the verdicts' order: the persisted target.
        let tie = [answer("a", Role::Replica, 5), answer("b", Role::Replica, 5)];
        assert_eq!(settle_target(&ranked, &tie, false), Some("a".into()));
        // A candidate that answers as a primary is no replica to compare.
        let primary = [
            answer("a", Role::Replica, 5),
            answer("b", Role::Primary, 99),
        ];
        assert_eq!(settle_target(&ranked, &primary, false), Some("a".into()));
        // A silent target loses to one that answered; nobody answering keeps the ranking.
        let silent = [answer("c", Role::Replica, 1)];
        assert_eq!(settle_target(&ranked, &silent, false), Some("c".into()));
        assert_eq!(settle_target(&ranked, &[], false), Some("a".into()));
        assert_eq!(settle_target(&[], &[], false), None);
    }

    #[test]
    fn a_resumed_failover_keeps_a_target_that_may_have_been_promoted() {
        let ranked: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let answer = |n: &str, role, offset| (n.to_string(), role, offset);
        // Promoted before the restart: a primary now, with less than b's stale offset or not.
        let promoted = [answer("a", Role::Primary, 5), answer("b", Role::Replica, 9)];
        assert_eq!(settle_target(&ranked, &promoted, true), Some("a".into()));
        // Silent: nothing shows it was not promoted.
        let silent = [answer("b", Role::Replica, 9)];
        assert_eq!(settle_target(&ranked, &silent, true), Some("a".into()));
        // Still a replica: it was not promoted, and b has more data.
        let replica = [answer("a", Role::Replica, 5), answer("b", Role::Replica, 9)];
        assert_eq!(settle_target(&ranked, &replica, true), Some("b".into()));
        let tie = [answer("a", Role::Replica, 9), answer("b", Role::Replica, 9)];
        assert_eq!(settle_target(&ranked, &tie, true), Some("a".into()));
    }

    #[test]
    fn replicas_without_a_link_for_long_are_named() {
        let p = policy(false);
        let linked = node("linked", Role::Replica);
        let mut long = node("long", Role::Replica);
        long.link_up_age = Some(Duration::from_secs(60));
        let mut never = node("never", Role::Replica);
        never.link_up_age = None;
        never.heard_for = Some(Duration::from_secs(60));
        let mut starting = node("starting", Role::Replica);
        starting.link_up_age = None;
        starting.heard_for = Some(Duration::from_millis(500));
        let mut silent = node("silent", Role::Replica);
        silent.link_up_age = None;
        silent.verdict_age = None;
        let mut brief = node("brief", Role::Replica);
        brief.link_up_age = Some(Duration::from_millis(500));
        let all = [linked, long, never, starting, silent, brief];
        assert_eq!(unlinked_replicas(&all, &p), vec!["long", "never"]);
    }

    #[test]
    fn a_zone_looks_down_when_none_of_its_nodes_is_healthy() {
        let p = policy(false);
        let mut x = node("x", Role::Primary);
        x.health = Health::Down;
        let mut y = node("y", Role::Replica);
        y.connected = false;
        let mut z = node("z", Role::Replica);
        z.zone = "z2".into();
        let nodes = [x, y, z];
        assert!(zone_looks_down("z1", &nodes, &p));
        assert!(!zone_looks_down("z2", &nodes, &p));
        assert!(!zone_looks_down("", &nodes, &p));
    }
}
