//! The agent's link to the controller: one gRPC bidirectional stream (`AgentLink.Session`).
//! Hello, verdicts and acks go up; Welcome, desired state and commands come down.
//!
//! It runs as its own task and never blocks detection: the daemon publishes the latest verdict
//! into a watch channel and moves on; while the controller is away, only the newest verdict is
//! kept. The link reconnects with jittered exponential backoff.
use std::time::Duration;

use rand::Rng;
use tokio::{
    sync::{mpsc, watch},
    time::{Instant, timeout},
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use vigil_proto::{
    PROTOCOL_VERSION,
    v1::{
        self, agent_link_client::AgentLinkClient, agent_message::Msg as Up,
        controller_message::Msg as Down,
    },
};

use crate::error::{AgentError, Result};

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
const CONNECT_LIMIT: Duration = Duration::from_secs(1);
const WELCOME_LIMIT: Duration = Duration::from_secs(2);
/// Messages queued toward the controller; past this, verdicts are dropped (a newer one follows).
const OUTBOUND: usize = 64;

/// The daemon's side of the link.
pub struct Link {
    /// The newest verdict; the link sends it when it changes.
    pub verdicts: watch::Sender<Option<v1::Verdict>>,
    /// Command outcomes, sent in order.
    pub acks: mpsc::Sender<v1::CommandAck>,
    /// Desired state and commands from the controller.
    pub inbound: mpsc::Receiver<Down>,
    /// When the controller was last heard from (None: never).
    pub last_heard: watch::Receiver<Option<Instant>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    url: String,
    hello: v1::Hello,
    verdicts: watch::Receiver<Option<v1::Verdict>>,
    acks: mpsc::Receiver<v1::CommandAck>,
    inbound: mpsc::Sender<Down>,
    last_heard: watch::Sender<Option<Instant>>,
}

/// Starts the link task.
pub fn spawn(url: String, hello: v1::Hello) -> Link {
    let (verdicts, verdicts_rx) = watch::channel(None);
    let (acks, acks_rx) = mpsc::channel(64);
    let (inbound_tx, inbound) = mpsc::channel(64);
    let (heard_tx, last_heard) = watch::channel(None);
    let shared = Shared {
        url,
        hello,
        verdicts: verdicts_rx,
        acks: acks_rx,
        inbound: inbound_tx,
        last_heard: heard_tx,
    };
    let task = tokio::spawn(run(shared));
    Link {
        verdicts,
        acks,
        inbound,
        last_heard,
        task,
    }
}

async fn run(mut shared: Shared) {
    let mut backoff = BACKOFF_MIN;
    let mut last_error = String::new();
    loop {
        let started = Instant::now();
        let result = session(&mut shared).await;
        if shared.inbound.is_closed() {
            return; // the daemon is gone
        }
        let error = match result {
            Ok(()) => AgentError::LinkClosed.to_string(),
            Err(e) => e.to_string(),
        };
        // A session that lasted resets the backoff; a failing one is logged once, not per try.
        if started.elapsed() > Duration::from_secs(5) {
            backoff = BACKOFF_MIN;
        }
        if error != last_error {
            tracing::warn!(controller = %shared.url, error = %error, "controller link down; retrying with backoff");
            last_error = error;
        }
        let jitter = rand::rng().random_range(0.5..1.5);
        tokio::time::sleep(backoff.mul_f64(jitter)).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn session(shared: &mut Shared) -> Result<()> {
    let endpoint = Endpoint::from_shared(shared.url.clone())
        .map_err(|error| AgentError::ControllerUrl {
            url: shared.url.clone(),
            error,
        })?
        .connect_timeout(CONNECT_LIMIT)
        .tcp_nodelay(true)
        // A dead path with no RST is noticed by HTTP/2 pings, not only by silence.
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(1))
        .keep_alive_while_idle(true);
    let channel = endpoint
        .connect()
        .await
        .map_err(AgentError::ControllerConnect)?;
    let mut client = AgentLinkClient::new(channel);
    let (tx, rx) = mpsc::channel(OUTBOUND);
    let hello = v1::AgentMessage {
        msg: Some(Up::Hello(shared.hello.clone())),
    };
    tx.try_send(hello).map_err(|_| AgentError::LinkClosed)?;
    let response = client
        .session(ReceiverStream::new(rx))
        .await
        .map_err(|s| AgentError::ControllerRefused(s.message().to_string()))?;
    let mut down = response.into_inner();
    match timeout(WELCOME_LIMIT, down.message()).await {
        Err(_) => return Err(AgentError::NoWelcome(WELCOME_LIMIT)),
        Ok(Err(s)) => return Err(AgentError::ControllerRefused(s.message().to_string())),
        Ok(Ok(None)) => return Err(AgentError::LinkClosed),
        Ok(Ok(Some(v1::ControllerMessage {
            msg: Some(Down::Welcome(w)),
        }))) => {
            if w.protocol_version != PROTOCOL_VERSION {
                return Err(AgentError::ProtocolVersion {
                    ours: PROTOCOL_VERSION,
                    theirs: w.protocol_version,
                });
            }
            tracing::info!(controller = %shared.url, version = %w.controller_version, "connected to the controller");
        }
        Ok(Ok(Some(_))) => {
            return Err(AgentError::LinkBroken(
                "the first message was not a Welcome".into(),
            ));
        }
    }
    shared.last_heard.send_replace(Some(Instant::now()));
    // Whatever is newest goes first.
    shared.verdicts.mark_changed();
    loop {
        tokio::select! {
            changed = shared.verdicts.changed() => {
                if changed.is_err() {
                    return Ok(()); // the daemon is gone
                }
                let verdict = *shared.verdicts.borrow_and_update();
                if let Some(v) = verdict {
                    // Full queue: the controller is slow; this verdict is superseded by the next.
                    let _ = tx.try_send(v1::AgentMessage { msg: Some(Up::Verdict(v)) });
                }
            }
            Some(ack) = shared.acks.recv() => {
                tx.send(v1::AgentMessage { msg: Some(Up::Ack(ack)) }).await.map_err(|_| AgentError::LinkClosed)?;
            }
            msg = down.message() => match msg {
                Ok(Some(v1::ControllerMessage { msg: Some(m) })) => {
                    shared.last_heard.send_replace(Some(Instant::now()));
                    if shared.inbound.send(m).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(Some(v1::ControllerMessage { msg: None })) => {
                    tracing::warn!("the controller sent an empty message; ignoring it");
                }
                Ok(None) => return Err(AgentError::LinkClosed),
                Err(s) => return Err(AgentError::LinkBroken(s.message().to_string())),
            },
        }
    }
}
