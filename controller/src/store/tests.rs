//! The reconciler driven in-process: local channels stand in for the agents' sessions, a
//! recording [`Persist`] for the state file, and tokio's paused clock for time. Each test sends
//! hellos, verdicts and acknowledgements as agents would, and asserts the commands the
//! reconciler sends and the state it persists.
use std::{
    collections::{BTreeMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};
use vigil_proto::{
    HostPort,
    v1::{self, Flavour, Health, Role, command::Action, controller_message::Msg as Down},
};

use super::{
    Input, NodeInfo, Settings,
    actor::{self, INBOX},
    state::{Cause, InFlight, Outcome, Persist, StoreState},
    timeline::{Origin, Stage},
};
use crate::{
    alerts::Alert,
    cluster::{Leadership, Term},
    error::{ControllerError, Result},
    hooks::Hooks,
    member::ControllerInfo,
    metrics::Metrics,
    sentinel::topology::Published,
};

/// The longest any wait here may take, in paused (virtual) time.
const WAIT: Duration = Duration::from_secs(60);

/// Keeps every state the reconciler saves; refuses to save while `broken`.
#[derive(Clone, Default)]
struct Saved {
    states: Arc<Mutex<Vec<StoreState>>>,
    broken: Arc<Mutex<bool>>,
}

impl Persist for Saved {
    fn save(&mut self, state: &StoreState) -> Result<()> {
        if *self.broken.lock().unwrap() {
            return Err(ControllerError::io(
                "saving",
                std::io::Error::other("disk full"),
            ));
        }
        self.states.lock().unwrap().push(state.clone());
        Ok(())
    }
}

/// One data store's reconciler, and the agents' ends of their sessions.
struct Store {
    tx: mpsc::Sender<Input>,
    saved: Saved,
    published: Arc<Published>,
    /// Each connected agent's end of its session: a task stamping what the reconciler sends it
    /// with the (paused) time it was sent, into `inbox`.
    agents: BTreeMap<String, tokio::task::JoinHandle<()>>,
    inbox: mpsc::UnboundedReceiver<(String, tokio::time::Instant, v1::ControllerMessage)>,
    inbox_tx: mpsc::UnboundedSender<(String, tokio::time::Instant, v1::ControllerMessage)>,
    /// The last desired state each agent was sent.
    desired: BTreeMap<String, v1::DesiredState>,
    /// Commands each agent got that the test has not taken yet.
    held: BTreeMap<String, VecDeque<v1::Command>>,
    /// Each agent's current session, and the last number given.
    sessions: BTreeMap<String, u64>,
    last_session: u64,
    /// The next verdict's `seq` (one counter for every agent: each agent's seqs rise).
    seq: AtomicU64,
    /// When each agent was last sent a desired state that granted a lease.
    granted: BTreeMap<String, tokio::time::Instant>,
    metrics: Arc<Metrics>,
}

fn me() -> ControllerInfo {
    ControllerInfo {
        name: "c1".into(),
        grpc: "http://127.0.0.1:7420".into(),
        sentinel: "127.0.0.1:26379".into(),
    }
}

fn settings() -> Settings {
    Settings {
        // Most tests are about what happens after the controller's start-up grace.
        grace: Duration::ZERO,
        ..Settings::default()
    }
}

fn info(id: &str, flavour: Flavour) -> NodeInfo {
    let port = 7000 + id.trim_start_matches('n').parse::<u16>().unwrap();
    NodeInfo {
        id: id.into(),
        address: HostPort::new("127.0.0.1", port),
        zone: String::new(),
        priority: 100,
        flavour,
    }
}

fn address(id: &str) -> String {
    info(id, Flavour::Redis).address.to_string()
}

fn verdict(health: Health, role: Role, offset: u64) -> v1::Verdict {
    v1::Verdict {
        health: health as i32,
        role: role as i32,
        repl_offset: offset,
        link_up: role == Role::Replica,
        flavour: Flavour::Redis as i32,
        ..Default::default()
    }
}

fn action_name(c: &v1::Command) -> &'static str {
    match c.action {
        Some(Action::Promote(_)) => "promote",
        Some(Action::Switchover(_)) => "switchover",
        Some(Action::ReplicateOf(_)) => "replicate_of",
        Some(Action::Fence(_)) => "fence",
        Some(Action::Unfence(_)) => "unfence",
        Some(Action::Probe(_)) => "probe",
        None => "none",
    }
}

impl Store {
    fn start(settings: Settings, state: StoreState) -> Self {
        Self::start_leading(settings, state, Leadership::embedded(me()))
    }

    /// Starts the reconciler in the current term of `leadership`.
    fn start_leading(settings: Settings, state: StoreState, leadership: Arc<Leadership>) -> Self {
        let saved = Saved::default();
        let published = Published::new();
        let metrics = Metrics::new();
        let term = leadership.term().expect("a term to run in");
        let tx = actor::spawn(
            "cache".into(),
            settings,
            Box::new(saved.clone()),
            state,
            Vec::new(),
            Arc::clone(&published),
            Arc::clone(&metrics),
            Hooks::none(Arc::clone(&metrics)),
            leadership,
            term,
        );
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        Self {
            tx,
            saved,
            published,
            agents: BTreeMap::new(),
            inbox,
            inbox_tx,
            desired: BTreeMap::new(),
            held: BTreeMap::new(),
            sessions: BTreeMap::new(),
            last_session: 0,
            seq: AtomicU64::new(1),
            granted: BTreeMap::new(),
            metrics,
        }
    }

    /// A primary `n0` and replicas `n1`, `n2`, each connected and healthy, the primary adopted.
    async fn three_nodes(flavour: Flavour) -> Self {
        let mut s = Self::start(settings(), StoreState::default());
        for id in ["n0", "n1", "n2"] {
            s.connect(id, flavour).await;
        }
        s.healthy().await;
        assert_eq!(s.last_saved().await.primary.as_deref(), Some("n0"));
        s
    }

    async fn send(&self, input: Input) {
        self.tx.send(input).await.expect("the reconciler runs");
    }

    async fn connect(&mut self, id: &str, flavour: Flavour) {
        self.connect_as(info(id, flavour)).await;
    }

    /// Connects an agent that says it is `info`.
    async fn connect_as(&mut self, info: NodeInfo) {
        let id = info.id.as_str();
        self.last_session += 1;
        self.sessions.insert(id.to_string(), self.last_session);
        let (outbox, mut rx) =
            mpsc::channel::<Result<Box<v1::ControllerMessage>, tonic::Status>>(INBOX);
        let (node, inbox) = (id.to_string(), self.inbox_tx.clone());
        let agent = tokio::spawn(async move {
            while let Some(Ok(msg)) = rx.recv().await {
                let _ = inbox.send((node.clone(), tokio::time::Instant::now(), *msg));
            }
        });
        if let Some(old) = self.agents.insert(id.to_string(), agent) {
            old.abort();
        }
        let session = self.last_session;
        self.send(Input::Session {
            info,
            outbox,
            session,
        })
        .await;
    }

    async fn disconnect(&mut self, id: &str) {
        if let Some(agent) = self.agents.remove(id) {
            agent.abort();
        }
        let session = self.sessions.remove(id).expect("a connected agent");
        self.send(Input::Closed {
            node: id.to_string(),
            session,
        })
        .await;
    }

    async fn verdict(&self, id: &str, mut v: v1::Verdict) {
        v.seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.send(Input::Verdict {
            node: id.to_string(),
            verdict: v,
            received: tokio::time::Instant::now(),
        })
        .await;
    }

    /// Fresh verdicts: `n0` a healthy primary, every other connected node a linked replica.
    async fn healthy(&self) {
        let primary = self.last_saved_primary();
        for id in self.agents.keys() {
            let role = if Some(id.as_str()) == primary.as_deref() || primary.is_none() && id == "n0"
            {
                Role::Primary
            } else {
                Role::Replica
            };
            self.verdict(id, verdict(Health::Healthy, role, 100)).await;
        }
    }

    fn last_saved_primary(&self) -> Option<String> {
        self.saved
            .states
            .lock()
            .unwrap()
            .last()
            .and_then(|s| s.primary.clone())
    }

    /// Files a message `id`'s agent got: desired state is noted, a command kept for the test.
    fn file(&mut self, id: String, at: tokio::time::Instant, msg: v1::ControllerMessage) {
        match msg.msg {
            Some(Down::Command(c)) => self.held.entry(id).or_default().push_back(c),
            Some(Down::Desired(d)) => {
                if d.lease_ms > 0 {
                    self.granted.insert(id.clone(), at);
                }
                self.desired.insert(id, d);
            }
            // A grant renews the desired state the agent has, as an agent takes it.
            Some(Down::Lease(g)) => {
                let d = self
                    .desired
                    .get_mut(&id)
                    .expect("a lease grant comes after desired state");
                assert_eq!(
                    (g.epoch, g.leadership),
                    (d.epoch, d.leadership),
                    "a lease grant for desired state {id} was not sent"
                );
                d.lease_ms = g.lease_ms;
                d.lease_seq = g.lease_seq;
                if g.lease_ms > 0 {
                    self.granted.insert(id, at);
                }
            }
            _ => {}
        }
    }

    /// How often `alert` was raised.
    fn alerts(&self, alert: Alert) -> u64 {
        self.metrics
            .alerts
            .get_or_create(&crate::metrics::EventLabel {
                event: alert.name(),
            })
            .get()
    }

    /// Takes in everything `id`'s agent has been sent so far, once the reconciler has taken
    /// every input sent before.
    async fn take_in(&mut self) {
        self.status().await;
        // The stamping tasks run as soon as the reconciler sends: let them.
        tokio::task::yield_now().await;
        while let Ok((id, at, msg)) = self.inbox.try_recv() {
            self.file(id, at, msg);
        }
    }

    /// The next command `id`'s agent gets, passing over desired state (and noting it).
    async fn command(&mut self, id: &str) -> v1::Command {
        self.command_of(&[id]).await.1
    }

    /// The next command any of `ids` gets, and whose it is.
    async fn command_of(&mut self, ids: &[&str]) -> (String, v1::Command) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            for id in ids {
                if let Some(c) = self.held.get_mut(*id).and_then(|h| h.pop_front()) {
                    return (id.to_string(), c);
                }
            }
            let (id, at, msg) = tokio::time::timeout_at(deadline, self.inbox.recv())
                .await
                .unwrap_or_else(|_| panic!("{ids:?} got no command within {WAIT:?}"))
                .expect("the store's inbox is open");
            self.file(id, at, msg);
        }
    }

    /// Every command `id`'s agent has been sent and the test has not taken yet, after `for_`.
    async fn commands_after(&mut self, id: &str, for_: Duration) -> Vec<v1::Command> {
        tokio::time::sleep(for_).await;
        self.take_in().await;
        self.held.remove(id).map(Vec::from).unwrap_or_default()
    }

    async fn ack(&self, id: &str, c: &v1::Command, role: Role, offset: u64) {
        self.send(Input::Ack {
            node: id.to_string(),
            ack: v1::CommandAck {
                command_id: c.id,
                ok: true,
                role: role as i32,
                repl_offset: offset,
                epoch: c.epoch,
                ..Default::default()
            },
        })
        .await;
    }

    /// Answers the probes the candidates get, each with its offset now.
    async fn answer_probes(&mut self, offsets: &[(&str, u64)]) {
        for &(id, offset) in offsets {
            let probe = self.command(id).await;
            assert_eq!(action_name(&probe), "probe", "{id}: {probe:?}");
            self.ack(id, &probe, Role::Replica, offset).await;
        }
    }

    /// Expects `id`'s agent to be asked to fence its server at `epoch` (with `keep_replicas`) as
    /// the first step of the failover, the epoch already persisted, and confirms it with the
    /// server's `offset` once fenced.
    async fn confirm_fence(&mut self, id: &str, epoch: u64, keep_replicas: bool, offset: u64) {
        let c = self.command(id).await;
        assert_eq!(
            c.action,
            Some(Action::Fence(v1::Fence { keep_replicas })),
            "{id}: {c:?}"
        );
        assert_eq!(c.epoch, epoch);
        assert_eq!(self.last_saved().await.epoch, epoch);
        self.ack_fenced(id, &c, offset).await;
    }

    async fn ack_fenced(&self, id: &str, c: &v1::Command, offset: u64) {
        self.send(Input::Ack {
            node: id.to_string(),
            ack: v1::CommandAck {
                command_id: c.id,
                ok: true,
                role: Role::Primary as i32,
                repl_offset: offset,
                epoch: c.epoch,
                fenced: true,
                ..Default::default()
            },
        })
        .await;
    }

    async fn refuse(&self, id: &str, c: &v1::Command, why: &str) {
        self.send(Input::Ack {
            node: id.to_string(),
            ack: v1::CommandAck {
                command_id: c.id,
                ok: false,
                error: why.into(),
                epoch: c.epoch,
                ..Default::default()
            },
        })
        .await;
    }

    /// Acknowledges the promotion of `to` and the re-pointing of `others` at it; returns when the
    /// promotion was sent.
    async fn promote_and_repoint(
        &mut self,
        to: &str,
        others: &[&str],
        epoch: u64,
    ) -> tokio::time::Instant {
        let promote = self.command(to).await;
        let promoted_at = tokio::time::Instant::now();
        assert_eq!(action_name(&promote), "promote", "{promote:?}");
        assert_eq!(promote.epoch, epoch);
        // The epoch was persisted, with the failover in flight, before the promote was sent.
        let before = self.last_saved().await;
        assert_eq!(before.epoch, epoch);
        assert_eq!(before.in_flight.as_ref().map(|f| f.to.as_str()), Some(to));
        self.ack(to, &promote, Role::Primary, 100).await;
        for id in others {
            let c = self.command(id).await;
            assert_eq!(
                c.action,
                Some(Action::ReplicateOf(v1::ReplicateOf {
                    address: address(to)
                })),
                "{id}"
            );
            // Named as soon as it is promoted, before the others (the old primary among them,
            // whose clients a demotion disconnects) are re-pointed.
            assert_eq!(
                self.published_primary().as_deref(),
                Some(to),
                "not named while {id} is re-pointed"
            );
            assert_eq!(c.epoch, epoch);
            self.ack(id, &c, Role::Replica, 100).await;
        }
        promoted_at
    }

    /// `n0` says DOWN and `n1` is promoted, as in `fails_over_on`.
    async fn n0_fails_over_to_n1(&mut self) {
        self.verdict("n0", verdict(Health::Down, Role::Primary, 100))
            .await;
        self.answer_probes(&[("n1", 100), ("n2", 100)]).await;
        self.confirm_fence("n0", 2, false, 100).await;
        self.promote_and_repoint("n1", &["n2"], 2).await;
        self.wait_primary("n1").await;
    }

    /// Every state saved so far, once the reconciler has taken every input sent before.
    async fn saved(&self) -> Vec<StoreState> {
        // A status request goes through the same inbox: answered, everything before it was taken.
        self.status().await;
        self.saved.states.lock().unwrap().clone()
    }

    async fn last_saved(&self) -> StoreState {
        self.saved()
            .await
            .last()
            .cloned()
            .expect("something was saved")
    }

    /// Waits until the persisted primary is `id` (the failover finished).
    async fn wait_primary(&self, id: &str) -> StoreState {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Some(s) = self.saved().await.pop()
                    && s.primary.as_deref() == Some(id)
                    && s.in_flight.is_none()
                {
                    return s;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{id} never became the persisted primary"))
    }

    async fn status(&self) -> v1::DatastoreStatus {
        let (reply, rx) = oneshot::channel();
        self.send(Input::Status { reply }).await;
        rx.await.expect("a status")
    }

    async fn failover(
        &self,
        to: Option<&str>,
    ) -> oneshot::Receiver<Result<v1::FailoverReply, ControllerError>> {
        let (reply, rx) = oneshot::channel();
        self.send(Input::Failover {
            to: to.map(str::to_string),
            reply,
        })
        .await;
        rx
    }

    /// `vigil pause` (`paused`) or `vigil resume`.
    async fn pause(&self, paused: bool) -> v1::MaintenanceReply {
        let (reply, rx) = oneshot::channel();
        self.send(Input::Pause { paused, reply }).await;
        rx.await.expect("an answer").expect("paused or resumed")
    }

    fn published_primary(&self) -> Option<String> {
        self.published
            .get("cache")
            .and_then(|v| v.primary)
            .map(|m| m.node)
    }
}

/// A primary failing with `health` is failed over: the candidates are probed, the epoch is
/// persisted with the failover in flight, the old primary fenced, and only once its agent has
/// confirmed the fence is the best replica promoted and the other re-pointed (the failed primary
/// is not waited for); then the new primary is persisted and published.
async fn fails_over_on(health: Health, cause: Cause) {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    s.verdict("n0", verdict(health, Role::Primary, 100)).await;
    s.answer_probes(&[("n1", 100), ("n2", 100)]).await;
    let fence = s.command("n0").await;
    assert_eq!(
        (fence.action.clone(), fence.epoch),
        (
            Some(Action::Fence(v1::Fence {
                keep_replicas: false
            })),
            2
        )
    );
    assert!(
        s.commands_after("n1", Duration::from_millis(100))
            .await
            .is_empty(),
        "nothing is promoted before the old primary's fence is confirmed"
    );
    s.ack_fenced("n0", &fence, 100).await;
    s.promote_and_repoint("n1", &["n2"], 2).await;
    let state = s.wait_primary("n1").await;
    assert_eq!(state.epoch, 2);
    let f = &state.history[0];
    assert_eq!(
        (f.from.as_deref(), f.to.as_str(), f.cause, &f.outcome),
        (Some("n0"), "n1", cause, &Outcome::Ok)
    );
    // Its timeline runs from the failing verdict through each stage; the fence was confirmed
    // 100 ms (of the paused clock) after the failover was decided.
    let t = f.timeline.as_ref().expect("a timeline");
    assert_eq!(t.from, Origin::Failure);
    let stages: Vec<Stage> = t.stages.iter().map(|m| m.stage).collect();
    assert_eq!(
        stages,
        [Stage::Decided, Stage::Fenced, Stage::Promoted, Stage::Done]
    );
    assert!(t.stages[1].ms >= t.stages[0].ms + 100, "{t:?}");
    assert!(t.stages.windows(2).all(|w| w[0].ms <= w[1].ms), "{t:?}");
    assert!(
        s.commands_after("n0", Duration::ZERO).await.is_empty(),
        "the failed primary is sent nothing more: it is demoted when its agent reports it"
    );
    assert_eq!(s.published_primary().as_deref(), Some("n1"));
    // Every agent is then told the new epoch and roles.
    tokio::time::sleep(settings().heartbeat).await;
    s.take_in().await;
    let d = &s.desired["n2"];
    assert_eq!(
        (d.epoch, d.role(), d.primary_address.as_str()),
        (2, Role::Replica, address("n1").as_str())
    );
}

#[tokio::test(start_paused = true)]
async fn a_down_primary_is_failed_over() {
    fails_over_on(Health::Down, Cause::Down).await;
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_primary_is_failed_over() {
    fails_over_on(Health::Unhealthy, Cause::Unhealthy).await;
}

#[tokio::test(start_paused = true)]
async fn a_degraded_primary_is_not_failed_over() {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    s.verdict("n0", verdict(Health::Degraded, Role::Primary, 100))
        .await;
    assert!(
        s.commands_after("n1", Duration::from_millis(40))
            .await
            .is_empty()
    );
    assert_eq!(s.last_saved().await.epoch, 1);
}

/// The replicas' verdicts when they cannot reach `n0`: its bit (0: it sorts first among each
/// replica's peers) probed and unreachable, about the peer list they were sent.
async fn replicas_report_n0_unreachable(s: &mut Store) {
    s.take_in().await;
    for id in ["n1", "n2"] {
        let peers_version = s.desired[id].peers_version;
        assert_eq!(s.desired[id].peers[0].node_id, "n0");
        let mut v = verdict(Health::Healthy, Role::Replica, 100);
        v.peers_version = peers_version;
        v.peers_probed = 0b01;
        v.peers_unreachable = 0b01;
        s.verdict(id, v).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_primary_its_replicas_cannot_reach_either_is_failed_over_once_silent() {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    // n0's agent stays connected but says nothing more (cut off with its server): silent, but
    // not for long enough yet.
    tokio::time::sleep(settings().silence / 2).await;
    replicas_report_n0_unreachable(&mut s).await;
    assert!(
        s.commands_after("n1", Duration::from_millis(60))
            .await
            .is_empty()
    );
    tokio::time::sleep(settings().silence).await;
    replicas_report_n0_unreachable(&mut s).await;
    s.answer_probes(&[("n1", 100), ("n2", 100)]).await;
    // Its agent is asked to fence it and says nothing: its lease is waited out instead.
    let fence = s.command("n0").await;
    assert_eq!(action_name(&fence), "fence");
    let last_grant = s.granted["n0"];
    let promoted_at = s.promote_and_repoint("n1", &["n2"], 2).await;
    assert!(
        promoted_at >= last_grant + settings().lease + settings().lease_margin,
        "promoted {:?} after the last lease granted to the unreachable primary",
        promoted_at - last_grant
    );
    let state = s.wait_primary("n1").await;
    assert_eq!(state.history[0].cause, Cause::Unreachable);
}

#[tokio::test(start_paused = true)]
async fn the_controller_alone_losing_the_primary_is_no_failover() {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    s.disconnect("n0").await;
    for _ in 0..10 {
        tokio::time::sleep(settings().silence).await;
        // The replicas still reach the primary.
        s.verdict("n1", verdict(Health::Healthy, Role::Replica, 100))
            .await;
        s.verdict("n2", verdict(Health::Healthy, Role::Replica, 100))
            .await;
    }
    assert!(
        s.commands_after("n1", Duration::from_millis(60))
            .await
            .is_empty()
    );
    assert!(s.commands_after("n2", Duration::ZERO).await.is_empty());
    assert_eq!(
        s.saved().await.len(),
        1,
        "only the adoption of n0 was saved"
    );
    assert_eq!(s.published_primary().as_deref(), Some("n0"));
}

#[tokio::test(start_paused = true)]
async fn silence_is_no_evidence_during_the_grace_period() {
    // A restarted controller: the primary is known from its state, its agent has not come back.
    let state = StoreState {
        epoch: 1,
        primary: Some("n0".into()),
        ..StoreState::default()
    };
    let grace = Duration::from_secs(5);
    let mut s = Store::start(
        Settings {
            grace,
            ..settings()
        },
        state,
    );
    s.connect("n0", Flavour::Redis).await;
    s.disconnect("n0").await;
    s.connect("n1", Flavour::Redis).await;
    s.connect("n2", Flavour::Redis).await;
    // Every agent has the whole peer list, so their reports count.
    tokio::time::sleep(settings().heartbeat).await;
    for _ in 0..4 {
        replicas_report_n0_unreachable(&mut s).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(s.commands_after("n1", Duration::ZERO).await.is_empty());
    assert!(
        s.saved().await.is_empty(),
        "nothing changed during the grace period"
    );
    // Past the grace period the same evidence fails the primary over.
    tokio::time::sleep(Duration::from_secs(1)).await;
    replicas_report_n0_unreachable(&mut s).await;
    s.answer_probes(&[("n1", 100), ("n2", 100)]).await;
    s.promote_and_repoint("n1", &["n2"], 2).await;
    s.wait_primary("n1").await;
}

#[tokio::test(start_paused = true)]
async fn a_failover_in_flight_when_the_controller_stopped_is_finished() {
    let state = StoreState {
        epoch: 2,
        primary: Some("n0".into()),
        in_flight: Some(InFlight {
            epoch: 2,
            from: Some("n0".into()),
            to: "n1".into(),
            cause: Cause::Down,
            started_unix_ms: 1,
        }),
        ..StoreState::default()
    };
    let started = tokio::time::Instant::now();
    let mut s = Store::start(settings(), state);
    s.connect("n2", Flavour::Redis).await;
    assert!(
        s.commands_after("n2", Duration::from_secs(1))
            .await
            .is_empty(),
        "nothing happens until the target's agent is back"
    );
    s.connect("n1", Flavour::Redis).await;
    let promote = s.command("n1").await;
    assert_eq!((action_name(&promote), promote.epoch), ("promote", 2));
    // The old primary's agent is not there to confirm a fence, and a lease the controller
    // before this one granted may still run: it is waited out from this controller's start.
    assert!(tokio::time::Instant::now() >= started + settings().lease + settings().lease_margin);
    s.ack("n1", &promote, Role::Primary, 100).await;
    let repoint = s.command("n2").await;
    assert_eq!(repoint.epoch, 2);
    s.ack("n2", &repoint, Role::Replica, 100).await;
    let state = s.wait_primary("n1").await;
    assert_eq!(state.epoch, 2, "a resumed failover keeps its epoch");
    assert_eq!(state.history.len(), 1);
    assert_eq!(state.history[0].epoch, 2);
}

#[tokio::test(start_paused = true)]
async fn a_second_failure_within_the_flap_guard_waits_for_an_operator() {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    s.n0_fails_over_to_n1().await;
    // The new primary fails too, a second later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.verdict("n2", verdict(Health::Healthy, Role::Replica, 100))
        .await;
    s.verdict("n1", verdict(Health::Down, Role::Primary, 100))
        .await;
    assert!(
        s.commands_after("n2", Duration::from_millis(60))
            .await
            .is_empty()
    );
    assert_eq!(s.last_saved().await.epoch, 2);
    // Once the guard's interval has passed, the same failure is failed over.
    tokio::time::sleep(settings().min_failover_interval).await;
    s.verdict("n2", verdict(Health::Healthy, Role::Replica, 100))
        .await;
    s.verdict("n1", verdict(Health::Down, Role::Primary, 100))
        .await;
    s.answer_probes(&[("n2", 100)]).await;
}

#[tokio::test(start_paused = true)]
async fn a_returning_old_primary_is_pointed_at_the_new_one() {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    s.n0_fails_over_to_n1().await;
    // n0 restarts as a lone primary.
    s.disconnect("n0").await;
    s.connect("n0", Flavour::Redis).await;
    s.verdict("n0", verdict(Health::Healthy, Role::Primary, 0))
        .await;
    let c = s.command("n0").await;
    assert_eq!(
        c.action,
        Some(Action::ReplicateOf(v1::ReplicateOf {
            address: address("n1")
        }))
    );
    assert_eq!(c.epoch, 2);
    assert_eq!(s.last_saved().await.primary.as_deref(), Some("n1"));
}

#[tokio::test(start_paused = true)]
async fn the_probe_before_promotion_picks_the_replica_with_the_most_data_now() {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    // By the verdicts n1 is ahead; asked now, n2 has more.
    s.verdict("n1", verdict(Health::Healthy, Role::Replica, 200))
        .await;
    s.verdict("n2", verdict(Health::Healthy, Role::Replica, 100))
        .await;
    s.verdict("n0", verdict(Health::Down, Role::Primary, 300))
        .await;
    s.answer_probes(&[("n1", 250), ("n2", 300)]).await;
    s.confirm_fence("n0", 2, false, 300).await;
    s.promote_and_repoint("n2", &["n1"], 2).await;
    s.wait_primary("n2").await;
}

#[tokio::test(start_paused = true)]
async fn no_command_is_sent_when_the_new_epoch_cannot_be_persisted() {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    *s.saved.broken.lock().unwrap() = true;
    s.verdict("n0", verdict(Health::Down, Role::Primary, 100))
        .await;
    s.answer_probes(&[("n1", 100), ("n2", 100)]).await;
    for id in ["n1", "n2"] {
        let sent = s.commands_after(id, Duration::from_millis(10)).await;
        assert!(
            sent.iter().all(|c| action_name(c) == "probe"),
            "{id}: {sent:?}"
        );
    }
    assert_eq!(s.status().await.epoch, 1, "the epoch is not bumped");
}

/// Dragonfly hands over by itself: the target replica runs REPLTAKEOVER.
#[tokio::test(start_paused = true)]
async fn a_planned_switchover_of_dragonfly_runs_repltakeover_on_the_target() {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    // The servers turn out to be Dragonfly: the verdicts say so now.
    for (id, role) in [
        ("n0", Role::Primary),
        ("n1", Role::Replica),
        ("n2", Role::Replica),
    ] {
        let mut v = verdict(Health::Healthy, role, 100);
        v.flavour = Flavour::Dragonfly as i32;
        s.verdict(id, v).await;
    }
    let _reply = s.failover(Some("n1")).await;
    let c = s.command("n1").await;
    assert_eq!(
        c.action,
        Some(Action::Switchover(v1::Switchover {
            target: address("n1"),
            timeout_secs: super::settings::CATCH_UP_WITHIN.as_secs() as u32,
            method: v1::SwitchoverMethod::Repltakeover as i32,
        }))
    );
    assert!(s.commands_after("n0", Duration::ZERO).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_switchover_is_refused_while_the_primarys_flavour_is_unknown() {
    let mut s = Store::start(settings(), StoreState::default());
    for id in ["n0", "n1"] {
        s.connect(id, Flavour::Unspecified).await;
    }
    for (id, role) in [("n0", Role::Primary), ("n1", Role::Replica)] {
        let mut v = verdict(Health::Healthy, role, 100);
        v.flavour = Flavour::Unspecified as i32;
        s.verdict(id, v).await;
    }
    let reply = s.failover(Some("n1")).await;
    let e = reply.await.unwrap().unwrap_err();
    assert!(
        matches!(e, ControllerError::FlavourUnknown(ref n) if n == "n0"),
        "{e}"
    );
    assert!(
        s.commands_after("n0", Duration::from_millis(10))
            .await
            .is_empty()
    );
    assert_eq!(s.last_saved().await.epoch, 1);
}

#[tokio::test(start_paused = true)]
async fn a_dead_primary_can_be_replaced_by_hand() {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    s.disconnect("n0").await;
    tokio::time::sleep(settings().silence * 2).await;
    s.healthy().await;
    let reply = s.failover(Some("n2")).await;
    s.promote_and_repoint("n2", &["n1"], 2).await;
    let answer = reply.await.unwrap().unwrap();
    assert_eq!(answer.new_primary, "n2");
    assert_eq!(s.wait_primary("n2").await.history[0].cause, Cause::Manual);
}

#[tokio::test(start_paused = true)]
async fn an_operator_cannot_promote_what_is_not_a_linked_replica() {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    // n1's link has been down for longer than the bound.
    let mut unlinked = verdict(Health::Healthy, Role::Replica, 100);
    unlinked.link_up = false;
    s.verdict("n1", unlinked).await;
    tokio::time::sleep(settings().link_bound + Duration::from_secs(1)).await;
    s.verdict("n0", verdict(Health::Healthy, Role::Primary, 100))
        .await;
    s.verdict("n2", verdict(Health::Healthy, Role::Replica, 100))
        .await;
    s.verdict("n1", unlinked).await;
    let e = s.failover(Some("n1")).await.await.unwrap().unwrap_err();
    assert!(matches!(e, ControllerError::NotPromotable(_)), "{e}");
    let e = s.failover(Some("n9")).await.await.unwrap().unwrap_err();
    assert!(matches!(e, ControllerError::NotAReplica { .. }), "{e}");
    assert!(
        s.commands_after("n0", Duration::from_millis(10))
            .await
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_refuses_to_fence_stops_the_failover() {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    s.verdict("n0", verdict(Health::Unhealthy, Role::Primary, 100))
        .await;
    s.answer_probes(&[("n1", 100), ("n2", 100)]).await;
    let fence = s.command("n0").await;
    s.refuse("n0", &fence, "cannot attach to the cgroup").await;
    let state = tokio::time::timeout(WAIT, async {
        loop {
            let state = s.last_saved().await;
            if !state.history.is_empty() {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the failover ends");
    assert!(
        matches!(&state.history[0].outcome, Outcome::Failed(why) if why.contains("not fenced")),
        "{:?}",
        state.history[0]
    );
    assert_eq!(state.primary.as_deref(), Some("n0"));
    assert!(state.in_flight.is_none());
    for id in ["n1", "n2"] {
        let sent = s.commands_after(id, Duration::from_millis(10)).await;
        assert!(sent.is_empty(), "{id} was sent {sent:?}");
    }
    assert!(
        s.commands_after("n0", Duration::ZERO).await.is_empty(),
        "no fence is up, so none is lifted"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failover_whose_promotion_fails_lifts_the_fence_it_put_up() {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    s.verdict("n0", verdict(Health::Down, Role::Primary, 100))
        .await;
    s.answer_probes(&[("n1", 100), ("n2", 100)]).await;
    s.confirm_fence("n0", 2, false, 100).await;
    for _ in 0..settings().step_attempts {
        let promote = s.command("n1").await;
        assert_eq!(action_name(&promote), "promote");
        s.refuse("n1", &promote, "READONLY").await;
    }
    let unfence = s.command("n0").await;
    assert_eq!(
        (unfence.action, unfence.epoch),
        (Some(Action::Unfence(v1::Unfence {})), 2)
    );
}

#[tokio::test(start_paused = true)]
async fn only_the_primary_holds_a_lease_and_not_once_it_is_failed_over() {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    let seq = s.seq.load(Ordering::Relaxed);
    s.verdict("n0", verdict(Health::Healthy, Role::Primary, 100))
        .await;
    tokio::time::sleep(settings().heartbeat).await;
    s.take_in().await;
    let (p, r) = (&s.desired["n0"], &s.desired["n1"]);
    assert_eq!(
        (p.lease_ms, p.lease_seq),
        (settings().lease.as_millis() as u32, seq),
        "the primary's lease answers its last verdict"
    );
    assert_eq!((r.lease_ms, r.lease_seq), (0, 0));
    // n0 fails; while its failover waits for the fence, n0 is granted nothing more.
    s.verdict("n0", verdict(Health::Down, Role::Primary, 100))
        .await;
    s.answer_probes(&[("n1", 100), ("n2", 100)]).await;
    let fence = s.command("n0").await;
    assert_eq!(action_name(&fence), "fence");
    tokio::time::sleep(settings().heartbeat * 2).await;
    s.take_in().await;
    assert_eq!(s.desired["n0"].lease_ms, 0);
}

/// A primary is granted its first lease by the verdict it is adopted on, before any tick: one
/// cut off right after would otherwise never have held a lease, and never fence itself.
#[tokio::test(start_paused = true)]
async fn an_adopted_primary_is_granted_its_lease_at_once() {
    let mut s = Store::start(settings(), StoreState::default());
    s.connect("n0", Flavour::Redis).await;
    s.verdict("n0", verdict(Health::Healthy, Role::Primary, 100))
        .await;
    s.take_in().await;
    let seq = s.seq.load(Ordering::Relaxed) - 1;
    let d = &s.desired["n0"];
    assert_eq!(
        (d.role(), d.lease_ms, d.lease_seq),
        (Role::Primary, settings().lease.as_millis() as u32, seq),
        "the adopting verdict earns the lease, with no heartbeat tick in between"
    );
}

/// A live Redis primary hands over with no write lost: fenced with its replicas' links kept,
/// the target asked until it has the fenced primary's offset, promoted, and then everyone
/// else, the old primary included, pointed at it (which demotes it).
#[tokio::test(start_paused = true)]
async fn a_planned_switchover_fences_waits_for_the_target_then_promotes() {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    let reply = s.failover(Some("n2")).await;
    s.confirm_fence("n0", 2, true, 500).await;
    assert_eq!(
        s.last_saved().await.in_flight.map(|f| (f.to, f.cause)),
        Some(("n2".to_string(), Cause::Switchover))
    );
    for offset in [400, 500] {
        let probe = s.command("n2").await;
        assert_eq!(action_name(&probe), "probe");
        s.ack("n2", &probe, Role::Replica, offset).await;
    }
    s.promote_and_repoint("n2", &["n0", "n1"], 2).await;
    let answer = reply.await.unwrap().unwrap();
    assert_eq!((answer.epoch, answer.new_primary.as_str()), (2, "n2"));
    let state = s.wait_primary("n2").await;
    assert_eq!(state.history[0].cause, Cause::Switchover);
}

#[tokio::test(start_paused = true)]
async fn a_switchover_whose_target_does_not_catch_up_lifts_the_fence() {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    let reply = s.failover(Some("n2")).await;
    s.confirm_fence("n0", 2, true, 500).await;
    let unfence = loop {
        match s.command_of(&["n0", "n2"]).await {
            (n, c) if n == "n2" => {
                assert_eq!(action_name(&c), "probe", "n2 is never promoted");
                s.ack("n2", &c, Role::Replica, 400).await;
            }
            (_, c) => break c,
        }
    };
    assert_eq!(unfence.action, Some(Action::Unfence(v1::Unfence {})));
    let e = reply.await.unwrap().unwrap_err();
    assert!(
        matches!(
            e,
            ControllerError::NotCaughtUp {
                offset: 400,
                wanted: 500,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(s.last_saved().await.primary.as_deref(), Some("n0"));
}

#[tokio::test(start_paused = true)]
async fn a_primary_whose_replicas_lost_their_link_is_an_alert_not_a_failover() {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    let mut unlinked = verdict(Health::Degraded, Role::Replica, 100);
    unlinked.link_up = false;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.verdict("n0", verdict(Health::Healthy, Role::Primary, 100))
            .await;
        for id in ["n1", "n2"] {
            s.verdict(id, unlinked).await;
        }
    }
    assert_eq!(s.alerts(Alert::ReplicationBroken), 1, "once a minute");
    assert!(s.commands_after("n1", Duration::ZERO).await.is_empty());
    assert_eq!(s.last_saved().await.epoch, 1);
}

/// A leader's term whose lease ran out unrenewed (its process was paused, or etcd went away):
/// the reconciler sends no command and grants no lease in its name, even as its primary fails,
/// and it stops when the term is over.
#[tokio::test(start_paused = true)]
async fn a_term_that_ran_out_sends_nothing_and_its_reconciler_stops_with_it() {
    let leadership = Leadership::following(me());
    let term = Term {
        token: 9,
        key: b"/vigil/election/1".to_vec(),
    };
    let lease = Duration::from_secs(1);
    leadership.lead(term, tokio::time::Instant::now() + lease);
    let mut s = Store::start_leading(settings(), StoreState::default(), Arc::clone(&leadership));
    for id in ["n0", "n1", "n2"] {
        s.connect(id, Flavour::Redis).await;
    }
    s.healthy().await;
    tokio::time::sleep(settings().heartbeat).await;
    s.take_in().await;
    assert_eq!(
        s.desired["n0"].leadership, 9,
        "desired state names its term"
    );
    assert!(s.desired["n0"].lease_ms > 0);
    // No renewal comes: the term runs out. Then the primary fails.
    tokio::time::sleep(lease).await;
    s.take_in().await;
    s.desired.clear();
    s.verdict("n0", verdict(Health::Down, Role::Primary, 100))
        .await;
    for id in ["n0", "n1", "n2"] {
        assert!(
            s.commands_after(id, Duration::from_secs(2))
                .await
                .is_empty(),
            "{id} was sent a command after the term ran out"
        );
    }
    assert!(
        s.desired.is_empty(),
        "desired state went out: {:?}",
        s.desired
    );
    assert_eq!(s.last_saved().await.epoch, 1, "no failover began");
    leadership.step_down();
    tokio::time::timeout(WAIT, s.tx.closed())
        .await
        .expect("the reconciler stops when its term is over");
}

/// A controller that started after the primary died never saw its replicas linked; their agents
/// say how long ago the link went down, and that is evidence enough to promote the one within
/// the bound, and not the one never linked.
#[tokio::test(start_paused = true)]
async fn a_controller_started_after_the_primary_died_promotes_on_the_agents_link_history() {
    let state = StoreState {
        epoch: 3,
        primary: Some("n0".into()),
        ..Default::default()
    };
    let mut s = Store::start(settings(), state);
    for id in ["n0", "n1", "n2"] {
        s.connect(id, Flavour::Redis).await;
    }
    let down_since = |ms| v1::Verdict {
        link_up: false,
        link_down_ms: ms,
        ..verdict(Health::Healthy, Role::Replica, 100)
    };
    s.verdict("n1", down_since(vigil_proto::LINK_NEVER_UP))
        .await;
    s.verdict("n2", down_since(800)).await;
    s.verdict("n0", verdict(Health::Down, Role::Primary, 100))
        .await;
    s.answer_probes(&[("n2", 100)]).await;
    let fence = s.command("n0").await;
    assert_eq!((action_name(&fence), fence.epoch), ("fence", 4));
    s.ack_fenced("n0", &fence, 100).await;
    s.promote_and_repoint("n2", &["n1"], 4).await;
    assert_eq!(s.wait_primary("n2").await.epoch, 4);
}

/// After a restart or a change of leader, the primary's agent has no lease (it ran out while it
/// had no controller). Desired state without one would tell it the lease is withheld, and it
/// would fence itself: it is sent none until its first verdict, then one with a lease.
#[tokio::test(start_paused = true)]
async fn a_reconnecting_primary_gets_its_lease_with_its_first_desired_state() {
    let state = StoreState {
        epoch: 1,
        primary: Some("n0".into()),
        ..Default::default()
    };
    let mut s = Store::start(settings(), state);
    s.connect("n0", Flavour::Redis).await;
    s.connect("n1", Flavour::Redis).await;
    tokio::time::sleep(settings().heartbeat * 3).await;
    s.take_in().await;
    assert!(
        !s.desired.contains_key("n0"),
        "the primary was sent desired state without a lease: {:?}",
        s.desired.get("n0")
    );
    assert!(s.desired.contains_key("n1"), "a replica needs no lease");
    s.verdict("n0", verdict(Health::Healthy, Role::Primary, 100))
        .await;
    s.take_in().await;
    let d = &s.desired["n0"];
    assert_eq!(d.role(), Role::Primary);
    assert!(d.lease_ms > 0, "{d:?}");
}

/// The largest desired state the bounds allow: a data store of the most nodes, every id and
/// address at its bound, sent to a replica (which is also told its primary's address). It must
/// stay far below what an agent decodes, or one forged node could cut every agent off.
#[tokio::test(start_paused = true)]
async fn the_largest_desired_state_is_far_below_the_agents_decoder_limit() {
    use prost::Message;
    use vigil_proto::limits::{
        MAX_ADDRESS_LEN, MAX_CONTROLLER_MESSAGE_BYTES, MAX_NODE_ID_LEN, MAX_NODES_PER_DATASTORE,
        MAX_ZONE_LEN,
    };
    let longest = |i: usize| {
        let id = format!("{i:0>width$}", width = MAX_NODE_ID_LEN);
        // An IPv6-looking host of the longest length, in brackets, and a five-digit port.
        let host = format!("{i}:{}", "f".repeat(vigil_proto::host_port::MAX_HOST_LEN));
        let address = format!("[{}]:65535", &host[..vigil_proto::host_port::MAX_HOST_LEN]);
        assert_eq!(address.len(), MAX_ADDRESS_LEN);
        NodeInfo {
            id,
            address: address.parse().expect("an address at its bound parses"),
            zone: "z".repeat(MAX_ZONE_LEN),
            priority: 100,
            flavour: Flavour::Redis,
        }
    };
    let mut s = Store::start(settings(), StoreState::default());
    for i in 0..MAX_NODES_PER_DATASTORE {
        s.connect_as(longest(i)).await;
    }
    let first = longest(0).id;
    s.verdict(&first, verdict(Health::Healthy, Role::Primary, 100))
        .await;
    for i in 1..MAX_NODES_PER_DATASTORE {
        s.verdict(&longest(i).id, verdict(Health::Healthy, Role::Replica, 100))
            .await;
    }
    tokio::time::sleep(Settings::default().heartbeat * 2).await;
    s.take_in().await;
    let replica = s
        .desired
        .get(&longest(1).id)
        .expect("a replica's desired state");
    assert_eq!(replica.peers.len(), MAX_NODES_PER_DATASTORE - 1);
    assert_eq!(replica.primary_address.len(), MAX_ADDRESS_LEN);
    let largest = s
        .desired
        .values()
        .map(|d| {
            v1::ControllerMessage {
                msg: Some(Down::Desired(d.clone())),
            }
            .encoded_len()
        })
        .max()
        .expect("desired states");
    eprintln!(
        "largest desired state: {largest} bytes; the agent decodes up to {MAX_CONTROLLER_MESSAGE_BYTES}"
    );
    assert!(
        largest < MAX_CONTROLLER_MESSAGE_BYTES / 4,
        "{largest} bytes is not below a quarter of {MAX_CONTROLLER_MESSAGE_BYTES}"
    );

    // One more node is refused: its session ends with the reason, and the data store stays.
    let (outbox, mut rx) = mpsc::channel(INBOX);
    s.send(Input::Session {
        info: longest(MAX_NODES_PER_DATASTORE),
        outbox,
        session: 1_000,
    })
    .await;
    let refused = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an answer")
        .expect("a message");
    assert_eq!(
        refused.expect_err("a refusal").code(),
        tonic::Code::ResourceExhausted
    );
    assert_eq!(s.status().await.nodes.len(), MAX_NODES_PER_DATASTORE);
    assert_eq!(s.alerts(Alert::TooManyNodes), 1);
}

/// Paused, a DOWN primary is judged failed (primary_down) but not failed over: no candidate is
/// probed, no fence sent, no epoch bumped, and the `paused` alert says why; resumed, the same
/// failure is failed over.
#[tokio::test(start_paused = true)]
async fn a_paused_store_does_not_fail_over_until_resumed() {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    let r = s.pause(true).await;
    assert!(r.paused && r.changed, "{r:?}");
    assert!(s.last_saved().await.paused, "the pause was not persisted");
    let again = s.pause(true).await;
    assert!(again.paused && !again.changed, "{again:?}");
    assert!(s.status().await.paused);
    assert_eq!(s.published.get("cache").map(|v| v.paused), Some(true));
    // A second of a dead primary's verdicts, twenty decision ticks.
    for _ in 0..10 {
        s.verdict("n0", verdict(Health::Down, Role::Primary, 100))
            .await;
        for id in ["n1", "n2"] {
            s.verdict(id, verdict(Health::Healthy, Role::Replica, 100))
                .await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in ["n0", "n1", "n2"] {
        let sent = s.commands_after(id, Duration::ZERO).await;
        assert!(sent.is_empty(), "{id} was sent {sent:?} while paused");
    }
    assert_eq!(s.alerts(Alert::PrimaryDown), 1);
    assert_eq!(s.alerts(Alert::Paused), 1, "raised once, not on every tick");
    let state = s.last_saved().await;
    assert_eq!((state.epoch, state.history.len()), (1, 0));

    let r = s.pause(false).await;
    assert!(!r.paused && r.changed, "{r:?}");
    s.verdict("n0", verdict(Health::Down, Role::Primary, 100))
        .await;
    s.answer_probes(&[("n1", 100), ("n2", 100)]).await;
    s.confirm_fence("n0", 2, false, 100).await;
    s.promote_and_repoint("n1", &["n2"], 2).await;
    let state = s.wait_primary("n1").await;
    assert!(!state.paused);
    assert_eq!(state.history[0].cause, Cause::Down);
}

/// A pause is persisted state: a reconciler started on it is paused.
#[tokio::test(start_paused = true)]
async fn a_reconciler_started_on_a_paused_state_is_paused() {
    let state = StoreState {
        epoch: 1,
        primary: Some("n0".into()),
        paused: true,
        ..StoreState::default()
    };
    let s = Store::start(settings(), state);
    assert!(s.status().await.paused);
    let r = s.pause(false).await;
    assert!(r.changed && !r.paused);
}
mod choice;
mod metrics;
