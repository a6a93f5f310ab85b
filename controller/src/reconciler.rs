//! One reconciler per data store: a tokio task holding that store's nodes, verdicts and persisted
//! state. It pushes desired state to the agents, judges the primary on every verdict and tick,
//! promotes the best replica when the primary fails, re-points the other replicas, publishes the
//! new primary, and demotes an old primary that comes back. No lock is shared on this path:
//! sessions talk to it through its channel.
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::{
    sync::{mpsc, oneshot},
    time::{Instant, MissedTickBehavior, timeout},
};
use vigil_proto::{
    Reason,
    v1::{self, Health, Role, command::Action, controller_message::Msg as Down},
};

use crate::{
    decision::{self, NodeView, Policy, PrimaryState},
    metrics::Metrics,
    state::{Failover, InFlight, StateFile, StoreState},
    topology::{Event, Member, Published, StoreView},
};

pub type Outbox = mpsc::Sender<Result<v1::ControllerMessage, tonic::Status>>;

/// Messages into a reconciler.
pub enum Input {
    Session {
        hello: v1::Hello,
        outbox: Outbox,
        session: u64,
    },
    Closed {
        node: String,
        session: u64,
    },
    Verdict {
        node: String,
        verdict: v1::Verdict,
        received: Instant,
    },
    Ack {
        node: String,
        ack: v1::CommandAck,
    },
    Status {
        reply: oneshot::Sender<v1::DatastoreStatus>,
    },
    Failover {
        to: Option<String>,
        reply: oneshot::Sender<Result<v1::FailoverReply, String>>,
    },
    /// From a running failover: send `action` to `node` and answer with its ack.
    Send {
        node: String,
        action: Action,
        epoch: u64,
        reply: oneshot::Sender<Result<v1::CommandAck, String>>,
    },
    Done(Outcome),
    /// The candidates were probed: promote `to`.
    Chosen {
        from: String,
        to: String,
        cause: String,
    },
}

#[derive(Clone, Debug)]
pub struct Settings {
    /// An agent not heard from this long is silent.
    pub silence: Duration,
    /// A replica whose link was last up longer ago than this is not promoted.
    pub link_bound: Duration,
    /// After start-up, silence is not evidence for this long.
    pub grace: Duration,
    /// The flap guard: at least this long between automatic failovers of one store.
    pub min_failover_interval: Duration,
    /// Each failover step's deadline, and how often a step is tried.
    pub step_deadline: Duration,
    pub step_attempts: u32,
    /// How often desired state is re-sent to every agent (also the controller's heartbeat).
    pub desired_every: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            silence: Duration::from_millis(500),
            link_bound: Duration::from_secs(10),
            grace: Duration::from_secs(5),
            min_failover_interval: Duration::from_secs(30),
            step_deadline: Duration::from_secs(5),
            step_attempts: 3,
            desired_every: Duration::from_millis(200),
        }
    }
}

#[derive(Clone, Debug)]
struct NodeInfo {
    id: String,
    address: String,
    zone: String,
    priority: u32,
    flavour: v1::Flavour,
}

struct Node {
    info: NodeInfo,
    session: Option<(u64, Outbox)>,
    verdict: Option<v1::Verdict>,
    heard: Option<Instant>,
    link_up_at: Option<Instant>,
    last_corrected: Option<Instant>,
}

/// How a failover ended, reported by its task.
#[derive(Debug)]
pub struct Outcome {
    epoch: u64,
    to: String,
    result: Result<Vec<String>, String>,
    reply: Option<oneshot::Sender<Result<v1::FailoverReply, String>>>,
}

struct Active {
    epoch: u64,
    from: Option<String>,
    to: String,
    cause: String,
    started: Instant,
    started_unix_ms: u64,
}

pub struct Reconciler {
    name: String,
    settings: Settings,
    nodes: BTreeMap<String, Node>,
    state: StoreState,
    file: StateFile,
    started: Instant,
    published: Arc<Published>,
    metrics: Arc<Metrics>,
    me: mpsc::Sender<Input>,
    pending: HashMap<u64, oneshot::Sender<Result<v1::CommandAck, String>>>,
    next_command: u64,
    active: Option<Active>,
    last_failover: Option<Instant>,
    peers_version: u32,
    /// When the primary was first seen failing in this episode (for the decision latency).
    failing_since: Option<Instant>,
    /// The last alert raised per kind, so a lasting condition is logged once, not every tick.
    alerted: HashMap<&'static str, Instant>,
    primary_down: bool,
    /// Candidates are being asked for their offsets before a failover.
    choosing: bool,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Starts a reconciler for `name` with its persisted state; returns its input channel.
pub fn spawn(
    name: String,
    settings: Settings,
    file: StateFile,
    state: StoreState,
    static_nodes: Vec<v1::Hello>,
    published: Arc<Published>,
    metrics: Arc<Metrics>,
) -> mpsc::Sender<Input> {
    let (me, rx) = mpsc::channel(4096);
    let mut r = Reconciler {
        name,
        settings,
        nodes: BTreeMap::new(),
        state,
        file,
        started: Instant::now(),
        published,
        metrics,
        me: me.clone(),
        pending: HashMap::new(),
        next_command: 1,
        active: None,
        last_failover: None,
        peers_version: 0,
        failing_since: None,
        alerted: HashMap::new(),
        primary_down: false,
        choosing: false,
    };
    for hello in static_nodes {
        r.register(&hello);
    }
    r.publish();
    tokio::spawn(r.run(rx));
    me
}

impl Reconciler {
    async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        if let Some(f) = self.state.in_flight.clone() {
            tracing::warn!(event = "failover_resumed", datastore = %self.name, epoch = f.epoch, to = %f.to,
                "a failover was in flight when the controller stopped; resuming it");
        }
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut desired = tokio::time::interval(self.settings.desired_every);
        desired.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                input = rx.recv() => match input {
                    Some(i) => self.handle(i),
                    None => return,
                },
                _ = tick.tick() => {
                    self.resume_in_flight();
                    self.evaluate(None);
                }
                _ = desired.tick() => self.push_desired(),
            }
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Session {
                hello,
                outbox,
                session,
            } => {
                self.register(&hello);
                if let Some(n) = self.nodes.get_mut(&hello.node_id) {
                    n.session = Some((session, outbox));
                }
                self.metrics.connected_agents.inc();
                // The node's address may be new to this controller (after a restart): republish.
                self.publish();
                tracing::info!(datastore = %self.name, node = %hello.node_id, address = %hello.advertise, "agent connected");
                self.push_desired_to(&hello.node_id);
            }
            Input::Closed { node, session } => {
                if let Some(n) = self.nodes.get_mut(&node)
                    && n.session.as_ref().is_some_and(|(s, _)| *s == session)
                {
                    n.session = None;
                    self.metrics.connected_agents.dec();
                    tracing::info!(datastore = %self.name, node = %node, "agent disconnected");
                }
            }
            Input::Verdict {
                node,
                verdict,
                received,
            } => self.on_verdict(node, verdict, received),
            Input::Ack { ack, .. } => {
                if let Some(reply) = self.pending.remove(&ack.command_id) {
                    let _ = reply.send(Ok(ack));
                }
            }
            Input::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Input::Failover { to, reply } => self.manual_failover(to, reply),
            Input::Send {
                node,
                action,
                epoch,
                reply,
            } => self.send_command(&node, action, epoch, reply),
            Input::Done(outcome) => self.finish(outcome),
            Input::Chosen { from, to, cause } => {
                self.choosing = false;
                if self.active.is_none()
                    && self.state.in_flight.is_none()
                    && self.state.primary.as_deref() == Some(from.as_str())
                {
                    if let Some(since) = self.failing_since {
                        self.metrics
                            .decision_latency
                            .observe(since.elapsed().as_secs_f64());
                    }
                    self.start_failover(Some(from), to, cause, None);
                }
            }
        }
    }

    fn register(&mut self, hello: &v1::Hello) {
        let info = NodeInfo {
            id: hello.node_id.clone(),
            address: hello.advertise.clone(),
            zone: hello.zone.clone(),
            priority: hello.priority,
            flavour: hello.flavour(),
        };
        match self.nodes.get_mut(&hello.node_id) {
            Some(n) => {
                if n.info.address != info.address {
                    self.peers_version += 1;
                }
                n.info = info;
            }
            None => {
                self.nodes.insert(
                    hello.node_id.clone(),
                    Node {
                        info,
                        session: None,
                        verdict: None,
                        heard: None,
                        link_up_at: None,
                        last_corrected: None,
                    },
                );
                self.peers_version += 1;
            }
        }
    }

    fn on_verdict(&mut self, node: String, verdict: v1::Verdict, received: Instant) {
        let Some(n) = self.nodes.get_mut(&node) else {
            return;
        };
        if verdict.link_up && verdict.role() == Role::Replica {
            n.link_up_at = Some(received);
        }
        let role = verdict.role();
        let reasons = Reason::from_bits_truncate(verdict.reasons);
        n.verdict = Some(verdict);
        n.heard = Some(received);
        self.metrics.node_health(
            &self.name,
            &node,
            n.verdict
                .as_ref()
                .map_or(Health::Unspecified, |v| v.health()),
        );
        if self.state.primary.is_none() && role == Role::Primary && self.active.is_none() {
            self.adopt_primary(&node);
        }
        let is_primary = self.state.primary.as_deref() == Some(node.as_str());
        if !is_primary
            && matches!(
                self.nodes
                    .get(&node)
                    .and_then(|n| n.verdict.as_ref())
                    .map(|v| v.health()),
                Some(Health::Down)
            )
        {
            self.alert(
                "replica_down",
                &format!("replica {node} is down; the primary is unaffected"),
            );
        }
        if reasons.contains(Reason::FENCED) {
            self.alert(
                "fenced_primary",
                &format!("node {node} reports its writes fenced"),
            );
        }
        self.correct_role(&node, role, reasons);
        if self.state.primary.as_deref() == Some(node.as_str()) {
            self.evaluate(Some(received));
        }
    }

    /// A new data store: the first node that says it is primary becomes the primary.
    fn adopt_primary(&mut self, node: &str) {
        self.state.primary = Some(node.to_string());
        self.state.epoch = self.state.epoch.max(1);
        if let Err(e) = self.file.save(&self.state) {
            tracing::error!(datastore = %self.name, error = %e, "could not persist the adopted primary");
        }
        tracing::info!(datastore = %self.name, node, epoch = self.state.epoch, "adopted the primary");
        self.publish();
    }

    /// Demotes a node that claims to be primary but is not, and re-points a replica that
    /// follows the wrong primary. At most once every two seconds per node.
    fn correct_role(&mut self, node: &str, role: Role, reasons: Reason) {
        if self.active.is_some() {
            return;
        }
        let Some(primary) = self.state.primary.clone() else {
            return;
        };
        if node == primary {
            return;
        }
        let wrong = role == Role::Primary
            || (role == Role::Replica && reasons.contains(Reason::WRONG_PRIMARY));
        let Some(address) = self.nodes.get(&primary).map(|p| p.info.address.clone()) else {
            return;
        };
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        if !wrong
            || n.last_corrected
                .is_some_and(|t| t.elapsed() < Duration::from_secs(2))
        {
            return;
        }
        n.last_corrected = Some(Instant::now());
        self.alert(
            "role_discrepancy",
            &format!(
                "node {node} reports {} but the primary is {primary}: pointing it at {address}",
                role.as_str_name()
            ),
        );
        let (reply, _ignored) = oneshot::channel();
        self.send_command(
            node,
            Action::ReplicateOf(v1::ReplicateOf { address }),
            self.state.epoch,
            reply,
        );
    }

    fn views(&self, primary: &str) -> (Option<NodeView>, Vec<NodeView>) {
        let now = Instant::now();
        let primary_index = |n: &Node| -> Option<usize> {
            // The primary's place in this node's peer list (every other node, by id).
            self.nodes
                .keys()
                .filter(|id| **id != n.info.id)
                .position(|id| id == primary)
        };
        let view = |n: &Node| {
            let v = n.verdict.as_ref();
            let sees_down = v.is_some_and(|v| {
                let by_probe = v.peers_version == self.peers_version
                    && primary_index(n).is_some_and(|i| {
                        i < 64 && v.peers_probed >> i & 1 == 1 && v.peers_unreachable >> i & 1 == 1
                    });
                by_probe || (v.role() == Role::Replica && !v.link_up)
            });
            NodeView {
                id: n.info.id.clone(),
                zone: n.info.zone.clone(),
                priority: n.info.priority,
                connected: n.session.is_some(),
                verdict_age: n.heard.map(|t| now.duration_since(t)),
                health: v.map_or(Health::Unspecified, |v| v.health()),
                role: v.map_or(Role::Unspecified, |v| v.role()),
                offset: v.map_or(0, |v| v.repl_offset),
                link_up_age: n.link_up_at.map(|t| now.duration_since(t)),
                sees_primary_down: sees_down,
            }
        };
        let p = self.nodes.get(primary).map(view);
        let others = self
            .nodes
            .values()
            .filter(|n| n.info.id != primary)
            .map(view)
            .collect();
        (p, others)
    }

    fn policy(&self) -> Policy {
        Policy {
            silence: self.settings.silence,
            link_bound: self.settings.link_bound,
            in_grace: self.started.elapsed() < self.settings.grace,
        }
    }

    /// Judges the primary; starts a failover when it failed. `received` is when the verdict that
    /// triggered this evaluation arrived (for the decision latency).
    fn evaluate(&mut self, received: Option<Instant>) {
        if self.active.is_some() || self.state.in_flight.is_some() {
            return;
        }
        let Some(primary) = self.state.primary.clone() else {
            return;
        };
        let (Some(p), replicas) = self.views(&primary) else {
            return;
        };
        let policy = self.policy();
        match decision::assess_primary(&p, &replicas, &policy) {
            PrimaryState::Healthy | PrimaryState::Waiting => {
                self.failing_since = None;
                if std::mem::replace(&mut self.primary_down, false) {
                    self.announce(
                        "-sdown",
                        &primary,
                        format!("master {} {}", self.name, self.address_words(&primary)),
                    );
                    self.publish();
                }
            }
            PrimaryState::Partitioned => {
                self.alert("controller_partitioned", &format!(
                    "the controller cannot hear primary {primary}'s agent, but its replicas still reach it: not failing over"
                ));
            }
            PrimaryState::Failed(cause) => {
                // The decision latency runs from here to the promote (see Input::Chosen).
                self.failing_since
                    .get_or_insert(received.unwrap_or_else(Instant::now));
                if !std::mem::replace(&mut self.primary_down, true) {
                    let words = self.address_words(&primary);
                    self.alert(
                        "primary_down",
                        &format!("primary {primary} failed ({})", cause.as_str()),
                    );
                    self.announce("+sdown", &primary, format!("master {} {words}", self.name));
                    self.announce(
                        "+odown",
                        &primary,
                        format!("master {} {words} #quorum 1/1", self.name),
                    );
                    self.publish();
                }
                if let Some(last) = self.last_failover
                    && last.elapsed() < self.settings.min_failover_interval
                {
                    self.alert("flap_guard", &format!(
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
                if ranked.is_empty() {
                    self.alert("no_promotable_replica", &format!(
                        "primary {primary} failed and no replica is healthy, linked recently and willing (priority > 0)"
                    ));
                    return;
                }
                self.metrics.failover(cause.as_str());
                self.choosing = true;
                self.spawn_choice(primary, ranked, cause.as_str().to_string());
            }
        }
    }

    /// Asks the ranked candidates for their offsets now (each bounded by 100 ms), then reports
    /// the pick. A few milliseconds spent here keep a replica that was never fed from winning.
    fn spawn_choice(&self, from: String, ranked: Vec<String>, cause: String) {
        let me = self.me.clone();
        let epoch = self.state.epoch;
        tokio::spawn(async move {
            let mut asks = Vec::new();
            for node in ranked.clone() {
                let me = me.clone();
                asks.push(tokio::spawn(async move {
                    let ack = step(
                        &me,
                        &node,
                        Action::Probe(v1::Probe {}),
                        epoch,
                        Duration::from_millis(100),
                        1,
                    )
                    .await;
                    ack.ok()
                        .filter(|a| a.role() == Role::Replica)
                        .map(|a| (node, a.repl_offset))
                }));
            }
            let mut fresh = Vec::new();
            for a in asks {
                if let Ok(Some(answer)) = a.await {
                    fresh.push(answer);
                }
            }
            if let Some(to) = decision::pick_freshest(&ranked, &fresh) {
                let _ = me.send(Input::Chosen { from, to, cause }).await;
            }
        });
    }

    /// Step 1 (bump and persist the epoch), then the rest in a task.
    fn start_failover(
        &mut self,
        from: Option<String>,
        to: String,
        cause: String,
        reply: Option<oneshot::Sender<Result<v1::FailoverReply, String>>>,
    ) {
        let epoch = self.state.epoch + 1;
        let started_unix_ms = unix_ms();
        self.state.epoch = epoch;
        self.state.in_flight = Some(InFlight {
            epoch,
            from: from.clone(),
            to: to.clone(),
            cause: cause.clone(),
            started_unix_ms,
        });
        if let Err(e) = self.file.save(&self.state) {
            // Without a durable epoch a restart could reuse it: refuse to go on.
            self.state.epoch -= 1;
            self.state.in_flight = None;
            self.alert(
                "failover_failed",
                &format!("could not persist epoch {epoch}: {e}"),
            );
            if let Some(r) = reply {
                let _ = r.send(Err(format!("could not persist the new epoch: {e}")));
            }
            return;
        }
        tracing::warn!(event = "failover_started", datastore = %self.name, epoch, from = ?from, to = %to, cause = %cause, "failing over");
        self.active = Some(Active {
            epoch,
            from: from.clone(),
            to: to.clone(),
            cause,
            started: Instant::now(),
            started_unix_ms,
        });
        self.spawn_steps(epoch, from, to, reply, None);
    }

    /// Steps 2 and 3 (promote, re-point) in a task; the reconciler finishes (4, publish) on Done.
    fn spawn_steps(
        &self,
        epoch: u64,
        from: Option<String>,
        to: String,
        reply: Option<oneshot::Sender<Result<v1::FailoverReply, String>>>,
        switchover: Option<(String, Action)>,
    ) {
        let Some(to_address) = self.nodes.get(&to).map(|n| n.info.address.clone()) else {
            return;
        };
        // The failed primary is not waited for: it is demoted when its agent comes back (it may be
        // stopped or gone, and clients must not wait on it). A planned switchover re-points it too.
        let others: Vec<String> = self
            .nodes
            .keys()
            .filter(|id| **id != to && (switchover.is_some() || Some(*id) != from.as_ref()))
            .cloned()
            .collect();
        let me = self.me.clone();
        let deadline = self.settings.step_deadline;
        let attempts = self.settings.step_attempts;
        tokio::spawn(async move {
            let first = match switchover {
                Some((node, action)) => step(&me, &node, action, epoch, deadline, attempts).await,
                None => {
                    step(
                        &me,
                        &to,
                        Action::Promote(v1::Promote {}),
                        epoch,
                        deadline,
                        attempts,
                    )
                    .await
                }
            };
            let result = match first {
                Err(e) => Err(format!("promoting {to}: {e}")),
                Ok(_) => {
                    // Re-point every other node at once; the old primary only if it still answers.
                    let mut waits = Vec::new();
                    for node in others {
                        let action = Action::ReplicateOf(v1::ReplicateOf {
                            address: to_address.clone(),
                        });
                        let attempts = if Some(&node) == from.as_ref() {
                            1
                        } else {
                            attempts
                        };
                        let me = me.clone();
                        waits.push(tokio::spawn(async move {
                            (
                                node.clone(),
                                step(&me, &node, action, epoch, deadline, attempts).await,
                            )
                        }));
                    }
                    let mut failed = Vec::new();
                    for w in waits {
                        if let Ok((node, Err(e))) = w.await {
                            failed.push(format!("{node}: {e}"));
                        }
                    }
                    Ok(failed)
                }
            };
            let _ = me
                .send(Input::Done(Outcome {
                    epoch,
                    to,
                    result,
                    reply,
                }))
                .await;
        });
    }

    /// A failover persisted as in flight (the controller restarted mid-way): once the target's
    /// agent is back, do its steps again (promote and re-point are idempotent).
    fn resume_in_flight(&mut self) {
        if self.active.is_some() {
            return;
        }
        let Some(f) = self.state.in_flight.clone() else {
            return;
        };
        if self.nodes.get(&f.to).is_none_or(|n| n.session.is_none()) {
            if self.started.elapsed() > self.settings.grace {
                self.alert(
                    "failover_stuck",
                    &format!(
                        "the failover to {} (epoch {}) waits for its agent to reconnect",
                        f.to, f.epoch
                    ),
                );
            }
            return;
        }
        self.active = Some(Active {
            epoch: f.epoch,
            from: f.from.clone(),
            to: f.to.clone(),
            cause: f.cause.clone(),
            started: Instant::now(),
            started_unix_ms: f.started_unix_ms,
        });
        self.spawn_steps(f.epoch, f.from, f.to, None, None);
    }

    /// Step 4: publish the new primary (or report the failure), persist, record history.
    fn finish(&mut self, outcome: Outcome) {
        let Some(active) = self.active.take() else {
            return;
        };
        if active.epoch != outcome.epoch || active.to != outcome.to {
            self.active = Some(active);
            return;
        }
        let duration = active.started.elapsed();
        let (result, reply) = (outcome.result, outcome.reply);
        match result {
            Ok(failed) => {
                let old = self.state.primary.replace(outcome.to.clone());
                self.state.in_flight = None;
                self.state.record(Failover {
                    epoch: active.epoch,
                    from: active.from.clone(),
                    to: outcome.to.clone(),
                    cause: active.cause.clone(),
                    started_unix_ms: active.started_unix_ms,
                    duration_ms: duration.as_millis() as u64,
                    outcome: if failed.is_empty() {
                        "ok".into()
                    } else {
                        format!("promoted; not re-pointed: {}", failed.join("; "))
                    },
                });
                if let Err(e) = self.file.save(&self.state) {
                    tracing::error!(datastore = %self.name, error = %e, "could not persist the finished failover");
                }
                self.last_failover = Some(Instant::now());
                self.primary_down = false;
                self.failing_since = None;
                let old_words = old
                    .as_deref()
                    .map_or("0.0.0.0 0".to_string(), |o| self.address_words(o));
                let new_words = self.address_words(&outcome.to);
                self.announce(
                    "+switch-master",
                    &outcome.to,
                    format!("{} {old_words} {new_words}", self.name),
                );
                self.publish();
                self.push_desired();
                tracing::warn!(
                    event = "failover_finished", datastore = %self.name, epoch = active.epoch, from = ?active.from,
                    to = %outcome.to, duration_ms = duration.as_millis() as u64, not_repointed = failed.len(), "failover finished"
                );
                if !failed.is_empty() {
                    self.alert(
                        "replication_broken",
                        &format!("not re-pointed after the failover: {}", failed.join("; ")),
                    );
                }
                if let Some(r) = reply {
                    let _ = r.send(Ok(v1::FailoverReply {
                        epoch: active.epoch,
                        new_primary: outcome.to,
                    }));
                }
            }
            Err(e) => {
                // The epoch stays bumped (it was persisted); the failover is reported, not hidden.
                self.state.in_flight = None;
                self.state.record(Failover {
                    epoch: active.epoch,
                    from: active.from,
                    to: outcome.to,
                    cause: active.cause,
                    started_unix_ms: active.started_unix_ms,
                    duration_ms: duration.as_millis() as u64,
                    outcome: format!("failed: {e}"),
                });
                if let Err(e) = self.file.save(&self.state) {
                    tracing::error!(datastore = %self.name, error = %e, "could not persist the failed failover");
                }
                self.last_failover = Some(Instant::now());
                tracing::error!(event = "failover_failed", datastore = %self.name, epoch = active.epoch, error = %e, "failover failed");
                if let Some(r) = reply {
                    let _ = r.send(Err(e));
                }
            }
        }
    }

    fn manual_failover(
        &mut self,
        to: Option<String>,
        reply: oneshot::Sender<Result<v1::FailoverReply, String>>,
    ) {
        if self.active.is_some() || self.state.in_flight.is_some() {
            let _ = reply.send(Err("a failover is already in progress".into()));
            return;
        }
        let Some(primary) = self.state.primary.clone() else {
            let _ = reply.send(Err(format!(
                "data store {} has no known primary",
                self.name
            )));
            return;
        };
        let (Some(p), replicas) = self.views(&primary) else {
            let _ = reply.send(Err(format!("primary {primary} is unknown")));
            return;
        };
        let policy = Policy {
            in_grace: false,
            ..self.policy()
        };
        let target = match to {
            Some(id) => match replicas.iter().find(|r| r.id == id) {
                Some(r) if decision::promotable(r, &policy) => r.clone(),
                Some(_) => {
                    let _ = reply.send(Err(format!("{id} cannot be promoted now (not a healthy, linked replica with priority > 0)")));
                    return;
                }
                None => {
                    let _ = reply.send(Err(format!("{id} is not a replica of {}", self.name)));
                    return;
                }
            },
            None => match decision::best_replica(&replicas, &p.zone, false, &policy) {
                Some(b) => b.clone(),
                None => {
                    let _ = reply.send(Err("no replica can be promoted now".into()));
                    return;
                }
            },
        };
        let live =
            p.fresh(policy.silence) && matches!(p.health, Health::Healthy | Health::Degraded);
        if !live {
            // The primary is gone: a forced promotion.
            self.start_failover(Some(primary), target.id, "manual".into(), Some(reply));
            return;
        }
        // A planned switchover of a live primary: zero loss, the server hands over itself.
        let Some(target_address) = self.nodes.get(&target.id).map(|n| n.info.address.clone())
        else {
            return;
        };
        let dragonfly = self
            .nodes
            .get(&target.id)
            .is_some_and(|n| n.info.flavour == v1::Flavour::Dragonfly);
        let actor = if dragonfly {
            target.id.clone()
        } else {
            primary.clone()
        };
        let action = Action::Switchover(v1::Switchover {
            target: target_address,
            timeout_secs: 5,
            method: if dragonfly {
                v1::SwitchoverMethod::Repltakeover
            } else {
                v1::SwitchoverMethod::FailoverTo
            } as i32,
        });
        let epoch = self.state.epoch + 1;
        self.state.epoch = epoch;
        self.state.in_flight = Some(InFlight {
            epoch,
            from: Some(primary.clone()),
            to: target.id.clone(),
            cause: "switchover".into(),
            started_unix_ms: unix_ms(),
        });
        if let Err(e) = self.file.save(&self.state) {
            self.state.epoch -= 1;
            self.state.in_flight = None;
            let _ = reply.send(Err(format!("could not persist the new epoch: {e}")));
            return;
        }
        tracing::warn!(event = "switchover_started", datastore = %self.name, epoch, from = %primary, to = %target.id, "planned switchover");
        self.active = Some(Active {
            epoch,
            from: Some(primary.clone()),
            to: target.id.clone(),
            cause: "switchover".into(),
            started: Instant::now(),
            started_unix_ms: unix_ms(),
        });
        self.spawn_steps(
            epoch,
            Some(primary),
            target.id,
            Some(reply),
            Some((actor, action)),
        );
    }

    fn send_command(
        &mut self,
        node: &str,
        action: Action,
        epoch: u64,
        reply: oneshot::Sender<Result<v1::CommandAck, String>>,
    ) {
        let Some(outbox) = self
            .nodes
            .get(node)
            .and_then(|n| n.session.as_ref())
            .map(|(_, o)| o.clone())
        else {
            let _ = reply.send(Err(format!("{node}'s agent is not connected")));
            return;
        };
        let id = self.next_command;
        self.next_command += 1;
        let msg = v1::ControllerMessage {
            msg: Some(Down::Command(v1::Command {
                id,
                epoch,
                action: Some(action),
            })),
        };
        if outbox.try_send(Ok(msg)).is_err() {
            let _ = reply.send(Err(format!("{node}'s session is not taking messages")));
            return;
        }
        // Bounded: an ack that never comes is dropped when its waiter gives up (see `step`).
        self.pending.retain(|_, r| !r.is_closed());
        self.pending.insert(id, reply);
    }

    fn push_desired(&mut self) {
        for n in self.nodes.values() {
            if let Some(t) = n.heard {
                self.metrics
                    .verdict_age(&self.name, &n.info.id, t.elapsed().as_secs_f64());
            }
        }
        let ids: Vec<String> = self.nodes.keys().cloned().collect();
        for id in ids {
            self.push_desired_to(&id);
        }
    }

    fn push_desired_to(&self, id: &str) {
        let Some(node) = self.nodes.get(id) else {
            return;
        };
        let Some((_, outbox)) = &node.session else {
            return;
        };
        let primary = self.state.primary.as_deref();
        let role = match primary {
            Some(p) if p == id => Role::Primary,
            Some(_) => Role::Replica,
            None => Role::Unspecified,
        };
        let primary_address = match (role, primary) {
            (Role::Replica, Some(p)) => self
                .nodes
                .get(p)
                .map(|n| n.info.address.clone())
                .unwrap_or_default(),
            _ => String::new(),
        };
        let peers = self
            .nodes
            .values()
            .filter(|n| n.info.id != id)
            .map(|n| v1::Peer {
                node_id: n.info.id.clone(),
                address: n.info.address.clone(),
            })
            .collect();
        let d = v1::DesiredState {
            epoch: self.state.epoch,
            role: role as i32,
            primary_address,
            peers,
            peers_version: self.peers_version,
            thresholds: None,
        };
        // A full outbox means the agent is slow; the next push carries the same state.
        let _ = outbox.try_send(Ok(v1::ControllerMessage {
            msg: Some(Down::Desired(d)),
        }));
    }

    fn address_words(&self, node: &str) -> String {
        let address = self.nodes.get(node).map_or("", |n| n.info.address.as_str());
        let m = Member {
            node: node.to_string(),
            address: address.to_string(),
        };
        let (h, p) = m.host_port();
        format!("{h} {p}")
    }

    fn announce(&self, channel: &'static str, node: &str, message: String) {
        self.published.emit(Event {
            datastore: self.name.clone(),
            epoch: self.state.epoch,
            channel,
            node: node.to_string(),
            message,
        });
    }

    fn publish(&self) {
        let member = |id: &str| {
            self.nodes.get(id).map(|n| Member {
                node: id.to_string(),
                address: n.info.address.clone(),
            })
        };
        let primary = self.state.primary.as_deref().and_then(member);
        let replicas = self
            .nodes
            .keys()
            .filter(|id| Some(id.as_str()) != self.state.primary.as_deref())
            .filter_map(|id| member(id))
            .collect();
        self.published.set(StoreView {
            name: self.name.clone(),
            epoch: self.state.epoch,
            primary,
            replicas,
            primary_down: self.primary_down,
        });
    }

    /// Logs an alert with a stable event name, once per minute while the condition lasts.
    fn alert(&mut self, event: &'static str, message: &str) {
        if self
            .alerted
            .get(event)
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        self.alerted.insert(event, Instant::now());
        self.metrics.alert(event);
        match event {
            "primary_down" | "no_promotable_replica" | "failover_failed" | "failover_stuck" => {
                tracing::error!(event, datastore = %self.name, "{message}")
            }
            _ => tracing::warn!(event, datastore = %self.name, "{message}"),
        }
    }

    fn status(&self) -> v1::DatastoreStatus {
        let now = Instant::now();
        let nodes = self
            .nodes
            .values()
            .map(|n| {
                let v = n.verdict.as_ref();
                v1::NodeStatus {
                    node_id: n.info.id.clone(),
                    address: n.info.address.clone(),
                    zone: n.info.zone.clone(),
                    role: v.map_or(0, |v| v.role),
                    health: v.map_or(0, |v| v.health),
                    reasons: v.map_or(0, |v| v.reasons),
                    repl_offset: v.map_or(0, |v| v.repl_offset),
                    verdict_age_ms: n
                        .heard
                        .map_or(u64::MAX, |t| now.duration_since(t).as_millis() as u64),
                    connected: n.session.is_some(),
                }
            })
            .collect();
        v1::DatastoreStatus {
            name: self.name.clone(),
            epoch: self.state.epoch,
            primary: self.state.primary.clone().unwrap_or_default(),
            nodes,
        }
    }
}

/// Sends `action` to `node` through the reconciler and waits for its ack, up to `attempts` times,
/// each bounded by `deadline`.
async fn step(
    me: &mpsc::Sender<Input>,
    node: &str,
    action: Action,
    epoch: u64,
    deadline: Duration,
    attempts: u32,
) -> Result<v1::CommandAck, String> {
    let mut last = String::from("not tried");
    for attempt in 1..=attempts.max(1) {
        let (reply, ack) = oneshot::channel();
        if me
            .send(Input::Send {
                node: node.to_string(),
                action: action.clone(),
                epoch,
                reply,
            })
            .await
            .is_err()
        {
            return Err("the reconciler stopped".into());
        }
        match timeout(deadline, ack).await {
            Ok(Ok(Ok(a))) if a.ok => return Ok(a),
            Ok(Ok(Ok(a))) => last = a.error,
            Ok(Ok(Err(e))) => last = e,
            Ok(Err(_)) => last = "no answer".into(),
            Err(_) => last = format!("no answer within {deadline:?}"),
        }
        if attempt < attempts {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Err(last)
}
