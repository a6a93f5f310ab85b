//! The reconciler driven in-process: local channels stand in for the agents' sessions, a
//! recording [`Persist`] for the state file, and tokio's paused clock for time. Each test sends
//! hellos, verdicts and acknowledgements as agents would, and asserts the commands the
//! reconciler sends and the state it persists.
use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
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
};
use crate::{
    error::{ControllerError, Result},
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
    agents: BTreeMap<String, mpsc::Receiver<Result<v1::ControllerMessage, tonic::Status>>>,
    /// The last desired state each agent was sent.
    desired: BTreeMap<String, v1::DesiredState>,
    /// Commands each agent got that the test has not taken yet.
    held: BTreeMap<String, VecDeque<v1::Command>>,
    /// Each agent's current session, and the last number given.
    sessions: BTreeMap<String, u64>,
    last_session: u64,
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
        let saved = Saved::default();
        let published = Published::new();
        let tx = actor::spawn(
            "cache".into(),
            settings,
            Box::new(saved.clone()),
            state,
            Vec::new(),
            Arc::clone(&published),
            Metrics::new(),
        );
        Self {
            tx,
            saved,
            published,
            agents: BTreeMap::new(),
            desired: BTreeMap::new(),
            held: BTreeMap::new(),
            sessions: BTreeMap::new(),
            last_session: 0,
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
        self.last_session += 1;
        self.sessions.insert(id.to_string(), self.last_session);
        let (outbox, rx) = mpsc::channel(INBOX);
        self.agents.insert(id.to_string(), rx);
        self.send(Input::Session {
            info: info(id, flavour),
            outbox,
            session: self.last_session,
        })
        .await;
    }

    async fn disconnect(&mut self, id: &str) {
        self.agents.remove(id);
        let session = self.sessions.remove(id).expect("a connected agent");
        self.send(Input::Closed {
            node: id.to_string(),
            session,
        })
        .await;
    }

    async fn verdict(&self, id: &str, v: v1::Verdict) {
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
    fn file(&mut self, id: &str, msg: v1::ControllerMessage) {
        match msg.msg {
            Some(Down::Command(c)) => self.held.entry(id.to_string()).or_default().push_back(c),
            Some(Down::Desired(d)) => {
                self.desired.insert(id.to_string(), d);
            }
            _ => {}
        }
    }

    /// Takes in everything `id`'s agent has been sent so far, once the reconciler has taken
    /// every input sent before.
    async fn take_in(&mut self, id: &str) {
        self.status().await;
        let rx = self.agents.get_mut(id).expect("a connected agent");
        let mut got = Vec::new();
        while let Ok(Ok(msg)) = rx.try_recv() {
            got.push(msg);
        }
        for msg in got {
            self.file(id, msg);
        }
    }

    /// The next command `id`'s agent gets, passing over desired state (and noting it).
    async fn command(&mut self, id: &str) -> v1::Command {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(c) = self.held.get_mut(id).and_then(|h| h.pop_front()) {
                return c;
            }
            let rx = self.agents.get_mut(id).expect("a connected agent");
            let msg = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .unwrap_or_else(|_| panic!("{id} got no command within {WAIT:?}"))
                .expect("the session is open")
                .expect("not an error");
            self.file(id, msg);
        }
    }

    /// Every command `id`'s agent has been sent and the test has not taken yet, after `for_`.
    async fn commands_after(&mut self, id: &str, for_: Duration) -> Vec<v1::Command> {
        tokio::time::sleep(for_).await;
        self.take_in(id).await;
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

    /// Acknowledges the promotion of `to` and the re-pointing of `others` at it.
    async fn promote_and_repoint(&mut self, to: &str, others: &[&str], epoch: u64) {
        let promote = self.command(to).await;
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
            assert_eq!(c.epoch, epoch);
            self.ack(id, &c, Role::Replica, 100).await;
        }
    }

    /// `n0` says DOWN and `n1` is promoted, as in `fails_over_on`.
    async fn n0_fails_over_to_n1(&mut self) {
        self.verdict("n0", verdict(Health::Down, Role::Primary, 100))
            .await;
        self.answer_probes(&[("n1", 100), ("n2", 100)]).await;
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

    fn published_primary(&self) -> Option<String> {
        self.published
            .get("cache")
            .and_then(|v| v.primary)
            .map(|m| m.node)
    }
}

/// A primary failing with `health` is failed over: the candidates are probed, the epoch is
/// persisted with the failover in flight, the best replica promoted, the other re-pointed (the
/// failed primary is not waited for), and the new primary persisted and published.
async fn fails_over_on(health: Health, cause: Cause) {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    s.verdict("n0", verdict(health, Role::Primary, 100)).await;
    s.answer_probes(&[("n1", 100), ("n2", 100)]).await;
    s.promote_and_repoint("n1", &["n2"], 2).await;
    let state = s.wait_primary("n1").await;
    assert_eq!(state.epoch, 2);
    let f = &state.history[0];
    assert_eq!(
        (f.from.as_deref(), f.to.as_str(), f.cause, &f.outcome),
        (Some("n0"), "n1", cause, &Outcome::Ok)
    );
    assert!(
        s.commands_after("n0", Duration::ZERO).await.is_empty(),
        "the failed primary is sent nothing"
    );
    assert_eq!(s.published_primary().as_deref(), Some("n1"));
    // Every agent is then told the new epoch and roles.
    tokio::time::sleep(settings().desired_every).await;
    s.take_in("n2").await;
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
    for id in ["n1", "n2"] {
        s.take_in(id).await;
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
    s.promote_and_repoint("n1", &["n2"], 2).await;
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
    tokio::time::sleep(settings().desired_every).await;
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
        history: Vec::new(),
    };
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

/// Dragonfly has no FAILOVER: the target replica runs REPLTAKEOVER.
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
            timeout_secs: super::settings::SWITCHOVER_TIMEOUT_SECS,
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
