//! The reconciler of one data store: a tokio task that owns everything about that store (its
//! nodes, their verdicts, its persisted state, the failover under way) and takes its inputs from
//! one channel. No lock is shared on the verdict path: sessions, the CLI and the reconciler's own
//! failover tasks all talk to it through [`Input`]s.
use std::{
    collections::HashMap,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};
use vigil_proto::{
    HostPort,
    v1::{self, Health},
};

use super::{
    desired::DesiredInputs,
    nodes::{NodeInfo, Nodes, Outbox},
    settings::{Settings, TICK},
    state::{Cause, Failover, Persist, StoreState},
    timeline::{Clock, Stage},
};
use crate::{
    alerts::{Alert, Alerts, Severity},
    cluster::{Leadership, Term},
    error::ControllerError,
    hooks::{Event, Hooks},
    metrics::Metrics,
    sentinel::topology::Published,
};

/// Inputs a reconciler takes. Bounded by its channel.
pub const INBOX: usize = 4096;
/// Inputs handled in one wake-up at most, beyond the first, before the term and the timer are
/// looked at again.
const BATCH: usize = 64;

/// Where a request's answer goes.
pub type Reply<T> = oneshot::Sender<Result<T, ControllerError>>;

/// Messages into a reconciler.
pub enum Input {
    /// An agent said hello; `session` numbers this connection.
    Session {
        info: NodeInfo,
        outbox: Outbox,
        session: u64,
    },
    /// That connection closed.
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
    /// `vigil status`.
    Status {
        reply: oneshot::Sender<v1::DatastoreStatus>,
    },
    /// `vigil failover [--to node]`.
    Failover {
        to: Option<String>,
        reply: Reply<v1::FailoverReply>,
    },
    /// `vigil history`: the failovers the state keeps, oldest first.
    History {
        reply: oneshot::Sender<Vec<Failover>>,
    },
    /// `vigil pause` (true) or `vigil resume` (false).
    Pause {
        paused: bool,
        reply: Reply<v1::MaintenanceReply>,
    },
    /// From a failover task: send `action` to `node` and answer with its ack.
    Send {
        node: String,
        action: v1::command::Action,
        epoch: u64,
        reply: Reply<v1::CommandAck>,
    },
    /// A failover task settled its target on `to` (its candidates answered): persisted if it
    /// changed, announced; the reply, when asked for, is `to`'s address.
    Chosen {
        epoch: u64,
        to: String,
        reply: Option<Reply<HostPort>>,
    },
    /// A failover task's promotion succeeded: clients may be sent to `to` now, before the others
    /// are re-pointed (as Sentinel names the promoted replica once it has taken the role).
    Promoted {
        epoch: u64,
        to: String,
    },
    /// A failover task reached `stage` (the fence, the catch-up), for the timeline.
    Reached {
        epoch: u64,
        to: String,
        stage: Stage,
    },
    /// A failover task ended.
    Done(Finished),
    /// The health prober asks whether the reconciler answers; it replies at once.
    Ping {
        reply: oneshot::Sender<()>,
    },
}

/// The failover under way in this process.
pub(super) struct Active {
    pub epoch: u64,
    pub from: Option<String>,
    pub to: String,
    pub cause: Cause,
    pub started: Instant,
    pub started_unix_ms: u64,
    /// The promotion succeeded: the endpoint names `to`.
    pub promoted: bool,
    /// The stages it reached so far, for the history.
    pub clock: Clock,
}

/// How a failover's task ended: the nodes not re-pointed (each with why) after a promotion, or
/// why there was no promotion.
pub struct Finished {
    pub(super) epoch: u64,
    pub(super) to: String,
    pub(super) result: Result<Vec<String>, ControllerError>,
    pub(super) reply: Option<Reply<v1::FailoverReply>>,
}

pub struct Reconciler {
    pub(super) name: String,
    pub(super) settings: Settings,
    pub(super) nodes: Nodes,
    pub(super) state: StoreState,
    pub(super) persist: Box<dyn Persist>,
    pub(super) started: Instant,
    pub(super) published: Arc<Published>,
    pub(super) metrics: Arc<Metrics>,
    /// The primary whose `datastore_primary` series is set, so a new one's replaces it.
    pub(super) exported_primary: Option<String>,
    pub(super) hooks: Hooks,
    /// The reconciler's own inbox, for the tasks it spawns.
    pub(super) me: mpsc::Sender<Input>,
    /// Commands sent and not yet acknowledged, by command id. Pruned of abandoned waiters on
    /// every send, so bounded by the failover steps in progress.
    pub(super) pending: HashMap<u64, Reply<v1::CommandAck>>,
    pub(super) next_command: u64,
    /// The failover under way in this process.
    pub(super) active: Option<Active>,
    pub(super) last_failover: Option<Instant>,
    /// When the primary was first seen failing in this episode (for the decision latency).
    pub(super) failing_since: Option<Instant>,
    pub(super) alerts: Alerts,
    /// The primary is judged failed now (Sentinel's subjective down).
    pub(super) primary_down: bool,
    /// `-failover-abort-no-good-slave` was announced in this episode of the primary's failure.
    pub(super) abort_announced: bool,
    /// Whether this controller leads, checked before anything is sent.
    pub(super) leadership: Arc<Leadership>,
    /// The term this reconciler runs in: its token goes with every command and desired state,
    /// and the reconciler ends when the term does.
    pub(super) term: Arc<Term>,
    /// What desired state follows from, as last sent, and its generation.
    pub(super) desired_inputs: DesiredInputs,
    pub(super) desired_generation: u64,
    /// When the next heartbeat is due, and when the primary was last judged on a timer.
    pub(super) next_beat: Instant,
    pub(super) judged_at: Instant,
}

pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Starts a reconciler for `name` with its persisted `state` and the nodes known in advance, in
/// this controller's `term`; returns its input channel.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    name: String,
    settings: Settings,
    persist: Box<dyn Persist>,
    state: StoreState,
    known_nodes: Vec<NodeInfo>,
    published: Arc<Published>,
    metrics: Arc<Metrics>,
    hooks: Hooks,
    leadership: Arc<Leadership>,
    term: Arc<Term>,
) -> mpsc::Sender<Input> {
    let (me, rx) = mpsc::channel(INBOX);
    let mut r = Reconciler {
        name,
        settings,
        nodes: Nodes::default(),
        state,
        persist,
        started: Instant::now(),
        published,
        metrics,
        exported_primary: None,
        hooks,
        me: me.clone(),
        pending: HashMap::new(),
        next_command: 1,
        active: None,
        last_failover: None,
        failing_since: None,
        alerts: Alerts::default(),
        primary_down: false,
        abort_announced: false,
        leadership,
        term,
        desired_inputs: DesiredInputs::default(),
        desired_generation: 0,
        next_beat: Instant::now(),
        judged_at: Instant::now(),
    };
    for info in known_nodes {
        // Configured nodes are bounded by the configuration's check, and a view's by the
        // leader that wrote it: a refusal here is another controller's larger bound.
        if let Err(e) = r.nodes.register(info) {
            tracing::warn!(datastore = %r.name, error = %e, "known node not taken");
        }
    }
    r.metrics.paused(&r.name, r.state.paused);
    for id in r.nodes.ids() {
        r.export_health(id, Health::Unspecified);
    }
    r.export_state();
    r.publish();
    tokio::spawn(r.run(rx));
    me
}

impl Reconciler {
    async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        if let Some(f) = &self.state.in_flight {
            tracing::warn!(event = "failover_resumed", datastore = %self.name, epoch = f.epoch, to = %f.to,
                "a failover was in flight when the controller stopped; resuming it");
        }
        // One timer per data store, set to whatever is due next (see `next_wake`).
        let wake = tokio::time::sleep_until(Instant::now());
        tokio::pin!(wake);
        // Made once, not on every input: a reconciler wakes on every verdict of its store.
        let mut terms = self.leadership.subscribe();
        let token = self.term.token;
        let term_over = async move {
            loop {
                let changed = terms.changed().await;
                let same = terms
                    .borrow_and_update()
                    .as_ref()
                    .is_some_and(|t| t.token == token);
                if changed.is_err() || !same {
                    return;
                }
            }
        };
        tokio::pin!(term_over);
        loop {
            tokio::select! {
                () = &mut term_over => {
                    // Its sessions close with it, and their agents look for the new leader.
                    tracing::info!(datastore = %self.name, leadership = self.term.token, "term over: this data store's reconciler stops here");
                    break;
                }
                input = rx.recv() => match input {
                    Some(i) => {
                        self.handle(i);
                        // What else is waiting, in the same wake-up.
                        for _ in 0..BATCH {
                            match rx.try_recv() {
                                Ok(i) => self.handle(i),
                                Err(_) => break,
                            }
                        }
                    }
                    None => break,
                },
                () = &mut wake => self.on_wake(),
            }
            self.desired_follow();
            let next = self.next_wake();
            if next != wake.deadline() {
                wake.as_mut().reset(next);
            }
        }
        self.unexport();
    }

    /// The timer: the heartbeat when it is due, and the primary judged again.
    fn on_wake(&mut self) {
        let now = Instant::now();
        if now >= self.next_beat {
            // A late heartbeat is not made up for: the next one comes a heartbeat after it.
            self.next_beat = now + self.settings.heartbeat;
            self.beat();
            if self.steady() {
                self.check_replication();
            }
        }
        self.judged_at = now;
        self.resume_in_flight();
        self.evaluate(None);
    }

    /// When the timer should fire next: the heartbeat, or sooner when the primary must be judged
    /// without a verdict. That is every [`TICK`] while something is wrong with it or a failover
    /// waits to be resumed, and, while it serves, only the moment it would turn silent: a
    /// data store whose primary is well costs a wake-up per heartbeat and nothing per verdict.
    fn next_wake(&self) -> Instant {
        let judge = if self.state.in_flight.is_some() && self.active.is_none() {
            Some(self.judged_at + TICK)
        } else if self.state.primary.is_none() || self.active.is_some() {
            // Nothing to judge, or a failover's task reports back as an input.
            None
        } else if self.steady() {
            self.primary_silent_at()
        } else {
            Some(self.judged_at + TICK)
        };
        judge.map_or(self.next_beat, |j| j.min(self.next_beat))
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Session {
                info,
                outbox,
                session,
            } => self.on_session(info, outbox, session),
            Input::Closed { node, session } => self.on_closed(&node, session),
            Input::Verdict {
                node,
                verdict,
                received,
            } => self.on_verdict(&node, verdict, received),
            Input::Ack { node, ack } => self.on_ack(&node, ack),
            Input::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Input::Failover { to, reply } => self.manual_failover(to, reply),
            Input::History { reply } => {
                let _ = reply.send(self.state.history.clone());
            }
            Input::Pause { paused, reply } => {
                let _ = reply.send(self.set_paused(paused));
            }
            Input::Send {
                node,
                action,
                epoch,
                reply,
            } => self.send_command(&node, action, epoch, reply),
            Input::Chosen { epoch, to, reply } => self.on_chosen(epoch, to, reply),
            Input::Promoted { epoch, to } => self.on_promoted(epoch, &to),
            Input::Reached { epoch, to, stage } => self.on_reached(epoch, &to, stage),
            Input::Done(finished) => self.finish(finished),
            Input::Ping { reply } => {
                let _ = reply.send(());
            }
        }
    }

    /// Saves the state through its persistence; a failure is logged here and returned.
    pub(super) fn save(&mut self, what: &str) -> Result<(), ControllerError> {
        self.persist.save(&self.state).inspect_err(|e| {
            tracing::error!(datastore = %self.name, error = %e, "could not persist {what}");
        })?;
        self.export_state();
        Ok(())
    }

    /// Logs an alert with its stable event name, at most once a minute per kind while the
    /// condition lasts, counts it, and runs the notify hook on it.
    pub(super) fn alert(&mut self, alert: Alert, message: &str) {
        if !self.alerts.due(alert) {
            return;
        }
        self.metrics.alert(alert.name());
        let event = alert.name();
        match alert.severity() {
            Severity::Error => tracing::error!(event, datastore = %self.name, "{message}"),
            Severity::Warning => tracing::warn!(event, datastore = %self.name, "{message}"),
        }
        self.hooks.notify(&self.name, Event::Alert(alert), message);
    }
}
