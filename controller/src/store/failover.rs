//! Failover, in its order: judge the primary (on its verdicts and on every tick), ask the ranked
//! candidates for their offsets now, fence the old primary while the epoch is bumped and
//! persisted ([`epoch`](super::epoch)), then the [`steps`] (the fence confirmed while the
//! candidates answer, settle the target on the one with the most data
//! ([`choice`]), promote it, re-point the others), then finish: publish the new primary,
//! persist, record the history. A failover persisted as in flight (the controller stopped
//! mid-way) is resumed, its old primary fenced again first.
use tokio::time::Instant;
use vigil_proto::v1;

use super::{
    actor::{Active, Finished, Reconciler, Reply},
    choice::Choice,
    decision::{self, Policy, PrimaryState},
    settings::REPLICATION_BROKEN_AFTER,
    state::{Cause, Failover, Outcome},
    steps::{self, Fencing, Handover, Plan},
    timeline::{Clock, Origin, Stage},
};
use crate::{alerts::Alert, hooks::Event, sentinel::topology::Channel};

impl Reconciler {
    pub(super) fn policy(&self) -> Policy {
        Policy {
            silence: self.settings.silence,
            quiet_heartbeat_ms: self.settings.quiet_heartbeat_ms(),
            link_bound: self.settings.link_bound,
            in_grace: self.started.elapsed() < self.settings.grace,
        }
    }

    /// The primary's agent is connected and heard from within the silence bound, and says it
    /// serves (neither DOWN nor UNHEALTHY): what [`decision::assess_primary`] finds healthy, read
    /// from the node itself, without the views.
    fn primary_serves(&self) -> bool {
        self.state
            .primary
            .as_deref()
            .and_then(|p| self.nodes.get(p))
            .is_some_and(|n| {
                n.session.is_some()
                    && n.heard
                        .is_some_and(|t| t.elapsed() <= self.settings.silence)
                    && !n.is_down()
            })
    }

    /// Nothing is wrong with the primary, nor was at the last judgement: judging it again would
    /// change nothing, so a verdict from it or a timer is done with in O(1).
    pub(super) fn steady(&self) -> bool {
        !self.primary_down
            && self.failing_since.is_none()
            && !self.abort_announced
            && self.primary_serves()
    }

    /// When the primary turns silent if it sends nothing more.
    pub(super) fn primary_silent_at(&self) -> Option<Instant> {
        let heard = self.nodes.get(self.state.primary.as_deref()?)?.heard?;
        // Silent is past the bound, not at it.
        Some(heard + self.settings.silence + std::time::Duration::from_millis(1))
    }

    /// Raises `replication_broken` when replicas heard from have had no link for too long,
    /// though the primary serves.
    pub(super) fn check_replication(&mut self) {
        let Some(primary) = self.state.primary.as_deref() else {
            return;
        };
        // Usually none is: nothing is built.
        if !self
            .nodes
            .any_unlinked(primary, self.settings.silence, REPLICATION_BROKEN_AFTER)
        {
            return;
        }
        let primary = primary.to_string();
        let (_, replicas) = self.nodes.views(&primary);
        self.alert_unlinked(&primary, &replicas);
    }

    fn alert_unlinked(&mut self, primary: &str, replicas: &[decision::NodeView]) {
        let unlinked = decision::unlinked_replicas(replicas, &self.policy());
        if !unlinked.is_empty() {
            self.alert(Alert::ReplicationBroken, &format!(
                "primary {primary} serves its clients, but its replicas {} have had no replication link for over {:?}: not failing over, acknowledged writes there are not replicated",
                unlinked.join(", "), REPLICATION_BROKEN_AFTER
            ));
        }
    }

    /// Judges the primary; starts choosing a replica when it failed. `received` is when the
    /// verdict that triggered this evaluation arrived (for the decision latency).
    pub(super) fn evaluate(&mut self, received: Option<Instant>) {
        if self.active.is_some() || self.state.in_flight.is_some() {
            return;
        }
        // A leader whose term ran out decides nothing, not even a new epoch: a newer leader
        // may already be deciding for this data store.
        if !self.leadership.holds(self.term.token) {
            return;
        }
        // The usual case, on every verdict of a well primary: nothing to do. Its replicas'
        // links are looked at on the heartbeat instead.
        if self.steady() {
            return;
        }
        let Some(primary) = self.state.primary.clone() else {
            return;
        };
        let (Some(p), replicas) = self.nodes.views(&primary) else {
            return;
        };
        let policy = self.policy();
        match decision::assess_primary(&p, &replicas, &policy) {
            PrimaryState::Healthy | PrimaryState::Waiting => {
                self.failing_since = None;
                self.abort_announced = false;
                if std::mem::replace(&mut self.primary_down, false) {
                    self.publish();
                    let words = self.master_words(&primary);
                    self.announce(Channel::SdownEnded, &primary, words.clone());
                    self.announce(Channel::OdownEnded, &primary, words);
                }
                self.alert_unlinked(&primary, &replicas);
            }
            PrimaryState::Partitioned => {
                self.alert(Alert::ControllerPartitioned, &format!(
                    "the controller cannot hear primary {primary}'s agent, but its replicas still reach it: not failing over"
                ));
            }
            PrimaryState::Failed(cause) => {
                // The decision latency runs from here to the promote (see `on_chosen`).
                self.failing_since
                    .get_or_insert(received.unwrap_or_else(Instant::now));
                if !std::mem::replace(&mut self.primary_down, true) {
                    self.alert(
                        Alert::PrimaryDown,
                        &format!("primary {primary} failed ({cause})"),
                    );
                    self.publish();
                    let words = self.master_words(&primary);
                    self.announce(Channel::Sdown, &primary, words.clone());
                    self.announce(Channel::Odown, &primary, format!("{words} #quorum 1/1"));
                }
                if self.state.paused {
                    self.alert(Alert::Paused, &format!(
                        "primary {primary} failed ({cause}), but the data store is paused: not failing over (`vigil resume {}` lets it, `vigil failover {}` does it now)",
                        self.name, self.name
                    ));
                    return;
                }
                if let Some(last) = self.last_failover
                    && last.elapsed() < self.settings.min_failover_interval
                {
                    self.alert(Alert::FlapGuard, &format!(
                        "primary {primary} failed, but the last failover was {:?} ago (minimum {:?}): holding",
                        last.elapsed(), self.settings.min_failover_interval
                    ));
                    return;
                }
                let zone_down = {
                    let mut all = replicas.clone();
                    all.push(p.clone());
                    decision::zone_looks_down(&p.zone, &all, &policy)
                };
                let ranked: Vec<String> =
                    decision::ranked_replicas(&replicas, &p.zone, zone_down, &policy)
                        .into_iter()
                        .map(|n| n.id.clone())
                        .collect();
                if ranked.is_empty() && policy.in_grace {
                    // Just started (or elected): the replicas' agents may not have reconnected
                    // yet; they have the grace period to, before this is worth an alert.
                    return;
                }
                if ranked.is_empty() {
                    self.alert(Alert::NoPromotableReplica, &format!(
                        "primary {primary} failed and no replica is healthy, linked recently and willing (priority > 0)"
                    ));
                    if !std::mem::replace(&mut self.abort_announced, true) {
                        let words = self.master_words(&primary);
                        self.announce(Channel::FailoverAbortNoGoodSlave, &primary, words);
                    }
                    return;
                }
                tracing::info!(datastore = %self.name, primary = %primary, cause = %cause, candidates = %ranked.join(","),
                    "the primary failed: choosing the replica to promote");
                // Asked first, so that they answer while the epoch is persisted and the old
                // primary fenced: the best by the verdicts is the target until they have.
                let answers = self.ask_offsets(&ranked);
                let to = ranked[0].clone();
                let failing_since = self.failing_since;
                let since = failing_since.unwrap_or_else(Instant::now);
                self.start_failover(
                    Some(primary),
                    to,
                    cause,
                    Clock::new(Origin::Failure, since),
                    None,
                    Some(Choice { ranked, answers }),
                );
                // Observed once the failover began (its epoch persisted), as it is counted: a
                // failover that could not begin is no decision.
                if self.active.is_some()
                    && let Some(since) = failing_since
                {
                    self.metrics
                        .decision_latency
                        .observe(since.elapsed().as_secs_f64());
                }
            }
        }
    }

    /// Step 1 (bump and persist the epoch), then fence, promote and re-point in a task; with
    /// `choice`, `to` is the best candidate by the verdicts, and the task settles the target.
    pub(super) fn start_failover(
        &mut self,
        from: Option<String>,
        to: String,
        cause: Cause,
        clock: Clock,
        reply: Option<Reply<v1::FailoverReply>>,
        choice: Option<Choice>,
    ) {
        let candidates = choice.as_ref().map_or_else(Vec::new, |c| c.ranked.clone());
        // The old primary is fenced while the epoch is persisted (the plan's fence: every
        // failover from here fences without keeping its replicas' links).
        let begun = self.begin_fencing(from.clone(), &to, cause, clock, candidates, true);
        let (epoch, fence_sent) = match begun {
            Ok(begun) => begun,
            Err(e) => {
                self.alert(Alert::FailoverFailed, &e.to_string());
                if let Some(r) = reply {
                    let _ = r.send(Err(e));
                }
                return;
            }
        };
        tracing::warn!(event = "failover_started", datastore = %self.name, epoch, from = ?from, to = %to, cause = %cause, "failing over");
        let target = match &choice {
            Some(c) => format!("the one of {} with the most data", c.ranked.join(", ")),
            None => to.clone(),
        };
        self.hooks.notify(
            &self.name,
            Event::FailoverStarted,
            &format!(
                "epoch {epoch}: failing over from {} to {target} ({cause})",
                from.as_deref().unwrap_or("none")
            ),
        );
        match self.failover_plan(epoch, from, to) {
            Some(plan) => {
                let start = steps::Start {
                    reply,
                    choice,
                    fence_sent,
                };
                steps::spawn(self.me.clone(), &self.settings, plan, start)
            }
            None => {
                tracing::error!(datastore = %self.name, epoch, "the target of the failover is unknown")
            }
        }
    }

    /// The steps of a failover from `from` (the old primary, if any) to `to`: fence the old
    /// primary (its lease waited out if its agent does not confirm), promote `to`, re-point every
    /// node but the two (the old primary is demoted when its agent reports it).
    pub(super) fn failover_plan(
        &self,
        epoch: u64,
        from: Option<String>,
        to: String,
    ) -> Option<Plan> {
        let to_address = self.nodes.address(&to)?;
        let fencing = match &from {
            Some(node) => Fencing::Fence {
                node: node.clone(),
                keep_replicas: false,
                lease_over: self.lease_over(node),
            },
            None => Fencing::None,
        };
        let repoint = self
            .nodes
            .ids()
            .filter(|id| **id != to && Some(*id) != from.as_ref())
            .cloned()
            .collect();
        Some(Plan {
            epoch,
            from,
            to,
            to_address,
            fencing,
            handover: Handover::Promote,
            repoint,
        })
    }

    /// When `node`'s lease is surely over: the last lease this process granted it, or, when it
    /// granted none, this process's start (a lease from a controller before it ended earlier),
    /// plus the lease and the margin.
    pub(super) fn lease_over(&self, node: &str) -> Instant {
        let granted = self
            .nodes
            .get(node)
            .and_then(|n| n.lease_granted_at)
            .unwrap_or(self.started)
            .max(self.started);
        self.settings.lease_over(granted)
    }

    /// The failover's promotion succeeded: the endpoint names the new primary from now on, so
    /// the clients the demotion disconnects look up the new primary, not the old one.
    pub(super) fn on_promoted(&mut self, epoch: u64, to: &str) {
        if let Some(active) = self.active.as_mut()
            && active.epoch == epoch
            && active.to == to
        {
            active.promoted = true;
            active.clock.mark(Stage::Promoted, Instant::now());
            let from = active.from.clone();
            self.publish();
            // Sentinel-mode clients that listen (Jedis, Lettuce) move now, not once the others
            // are re-pointed.
            self.announce_promoted(from.as_deref(), to);
            tracing::info!(event = "failover_promoted", datastore = %self.name, epoch, to = %to,
                "promoted: the Sentinel endpoint names the new primary");
            // As Sentinel runs its client-reconfig-script once the replica is promoted.
            if let (Some(from), Some(to)) = (
                from.and_then(|f| self.nodes.address(&f)),
                self.nodes.address(to),
            ) {
                self.hooks.client_reconfig(&self.name, &from, &to);
            }
        }
    }

    /// The failover's task reached `stage`: noted on its timeline.
    pub(super) fn on_reached(&mut self, epoch: u64, to: &str, stage: Stage) {
        if let Some(active) = self.active.as_mut()
            && active.epoch == epoch
            && active.to == to
        {
            active.clock.mark(stage, Instant::now());
        }
    }

    /// Step 4: publish the new primary (or report the failure), persist, record history.
    pub(super) fn finish(&mut self, finished: Finished) {
        let Some(active) = self.active.take() else {
            return;
        };
        if active.epoch != finished.epoch || active.to != finished.to {
            self.active = Some(active);
            return;
        }
        let duration = active.started.elapsed();
        let mut clock = active.clock.clone();
        clock.mark(Stage::Done, Instant::now());
        let mut record = Failover {
            epoch: active.epoch,
            from: active.from.clone(),
            to: finished.to.clone(),
            cause: active.cause,
            started_unix_ms: active.started_unix_ms,
            duration_ms: duration.as_millis() as u64,
            outcome: Outcome::Ok,
            timeline: Some(clock.timeline().clone()),
        };
        self.state.in_flight = None;
        self.state.candidates.clear();
        self.last_failover = Some(Instant::now());
        match finished.result {
            Ok(failed) => {
                let old = self.state.primary.replace(finished.to.clone());
                if !failed.is_empty() {
                    record.outcome = Outcome::NotRepointed(failed.clone());
                }
                self.state.record(record);
                let _ = self.save("the finished failover");
                self.primary_down = false;
                self.failing_since = None;
                self.abort_announced = false;
                self.publish();
                if !active.promoted {
                    self.announce_promoted(old.as_deref(), &finished.to);
                }
                self.announce_topology(old.as_deref(), &finished.to);
                // Every agent is sent its new desired state once this input is handled (see
                // `desired_follow`).
                tracing::warn!(
                    event = "failover_finished", datastore = %self.name, epoch = active.epoch, from = ?active.from,
                    to = %finished.to, duration_ms = duration.as_millis() as u64, not_repointed = failed.len(), "failover finished"
                );
                self.hooks.notify(
                    &self.name,
                    Event::FailoverFinished,
                    &format!(
                        "epoch {}: {} is the primary (was {}), after {} ms",
                        active.epoch,
                        finished.to,
                        active.from.as_deref().unwrap_or("none"),
                        duration.as_millis()
                    ),
                );
                if !failed.is_empty() {
                    self.alert(
                        Alert::ReplicationBroken,
                        &format!("not re-pointed after the failover: {}", failed.join("; ")),
                    );
                }
                if let Some(r) = finished.reply {
                    let _ = r.send(Ok(v1::FailoverReply {
                        epoch: active.epoch,
                        new_primary: finished.to,
                    }));
                }
            }
            Err(e) => {
                // The epoch stays bumped (it was persisted); the failover is reported, not hidden.
                record.outcome = Outcome::Failed(e.to_string());
                self.state.record(record);
                let _ = self.save("the failed failover");
                self.publish();
                tracing::error!(event = "failover_failed", datastore = %self.name, epoch = active.epoch, error = %e, "failover failed");
                self.hooks.notify(
                    &self.name,
                    Event::Alert(Alert::FailoverFailed),
                    &format!(
                        "epoch {}: the failover to {} failed: {e}",
                        active.epoch, finished.to
                    ),
                );
                if let Some(r) = finished.reply {
                    let _ = r.send(Err(e));
                }
            }
        }
    }

    /// Sentinel's announcements of a failover from `old` to `new`, in its order, once `new` is
    /// promoted: `+promoted-slave`, `+failover-end`, `+switch-master`.
    fn announce_promoted(&self, old: Option<&str>, new: &str) {
        if let Some(old) = old {
            self.announce(Channel::PromotedSlave, new, self.replica_words(new, old));
            self.announce(Channel::FailoverEnd, old, self.master_words(old));
        }
        self.announce(Channel::SwitchMaster, new, self.switch_words(old, new));
    }

    /// Then, once the failover finished: `+slave` for every other node (the old primary among
    /// them), and `+sdown` for the old primary while it is down.
    fn announce_topology(&self, old: Option<&str>, new: &str) {
        for id in self.nodes.ids().filter(|id| id.as_str() != new) {
            self.announce(Channel::Slave, id, self.replica_words(id, new));
        }
        if let Some(old) = old
            && self.nodes.get(old).is_some_and(|n| n.is_down())
        {
            self.announce(Channel::Sdown, old, self.replica_words(old, new));
        }
    }

    /// A failover persisted as in flight (the controller restarted mid-way): once the target's
    /// agent is back, do its steps again (promote and re-point are idempotent).
    pub(super) fn resume_in_flight(&mut self) {
        if self.active.is_some() {
            return;
        }
        let Some(f) = self.state.in_flight.clone() else {
            return;
        };
        if self.nodes.outbox(&f.to).is_none() || !self.candidates_back() {
            if self.started.elapsed() > self.settings.grace {
                self.alert(
                    Alert::FailoverStuck,
                    &format!(
                        "the failover to {} (epoch {}) waits for its agent to reconnect",
                        f.to, f.epoch
                    ),
                );
            }
            return;
        }
        let Some(plan) = self.failover_plan(f.epoch, f.from.clone(), f.to.clone()) else {
            return;
        };
        let choice = self.resumed_choice(&f.to);
        self.active = Some(Active {
            epoch: f.epoch,
            from: f.from.clone(),
            to: f.to.clone(),
            cause: f.cause,
            started: Instant::now(),
            started_unix_ms: f.started_unix_ms,
            promoted: false,
            clock: Clock::new(Origin::Resumed, Instant::now()),
        });
        let start = steps::Start {
            choice,
            ..Default::default()
        };
        steps::spawn(self.me.clone(), &self.settings, plan, start);
    }
}
