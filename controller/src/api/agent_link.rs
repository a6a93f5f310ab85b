//! The `AgentLink` gRPC service: one bidirectional session per agent. The first message up must
//! be a Hello; the session is then handed to its data store's reconciler, and every verdict and
//! acknowledgement after it goes there as an input.
//!
//! With TLS, the Hello must name the data store and node the client's certificate names, so a
//! session speaks for its certified node only: verdicts and acks carry no identity of their own
//! and go to the reconciler as that node's, and a data store comes into being only from the
//! configuration or from a certificate that names it.
use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};
use vigil_proto::{
    PROTOCOL_VERSION,
    limits::{MAX_ACK_ERROR_LEN, truncate},
    v1::{
        self, AgentMessage, ControllerMessage, agent_link_server::AgentLink,
        agent_message::Msg as Up, controller_message::Msg as Down,
    },
};

use super::peer::Peer;
use crate::{
    error::ControllerError,
    store::{Input, NodeInfo, Registry},
};

/// An agent has this long to say hello.
const HELLO_WITHIN: Duration = Duration::from_secs(5);
/// How long a follower holds an agent's hello while nobody is known to lead: about an election,
/// and shorter than the agent waits for its Welcome.
const HOLD_FOR_LEADER: Duration = Duration::from_millis(1_500);
/// Messages queued toward one agent; past this the reconciler drops (desired state is re-sent).
const OUTBOX: usize = 256;

pub type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct AgentLinkService {
    pub registry: Arc<Registry>,
    /// Numbers sessions, so a reconnect's session replaces the old one and the old one's close
    /// is not mistaken for the new one's.
    pub sessions: AtomicU64,
    /// The gRPC port serves mutual TLS: each agent is its certificate's node, and no other.
    pub tls: bool,
}

impl AgentLinkService {
    pub fn new(registry: Arc<Registry>, tls: bool) -> Self {
        Self {
            registry,
            sessions: AtomicU64::new(1),
            tls,
        }
    }
}

impl AgentLinkService {
    /// The reconciler of `datastore` if this controller leads, or who leads. While nobody is
    /// known to lead (an election under way), the hello is held for up to [`HOLD_FOR_LEADER`]
    /// and answered as soon as someone is elected: the agent then goes straight to the new
    /// leader instead of polling the controllers until one knows it.
    async fn reconciler_or_leader(
        &self,
        datastore: &str,
    ) -> Result<mpsc::Sender<Input>, ControllerError> {
        let leadership = &self.registry.leadership;
        let mut changes = leadership.leader_changes();
        let deadline = tokio::time::Instant::now() + HOLD_FOR_LEADER;
        loop {
            changes.borrow_and_update();
            match self.registry.get_or_start(datastore).await {
                Err(ControllerError::NotLeader { leader: None })
                    if tokio::time::timeout_at(deadline, changes.changed())
                        .await
                        .is_ok_and(|r| r.is_ok()) => {}
                other => return other,
            }
        }
    }
}

/// The session's stream of messages to its agent, from its outbox.
fn unboxed(rx: mpsc::Receiver<Result<Box<ControllerMessage>, Status>>) -> Boxed<ControllerMessage> {
    Box::pin(ReceiverStream::new(rx).map(|m| m.map(|m| *m)))
}

/// The gRPC status an agent gets for a refused hello.
fn refused(e: ControllerError) -> Status {
    match e {
        ControllerError::UnknownDatastore(_) => Status::permission_denied(e.to_string()),
        ControllerError::TooManyDatastores(_) | ControllerError::TooManyNodes { .. } => {
            Status::resource_exhausted(e.to_string())
        }
        _ => Status::invalid_argument(e.to_string()),
    }
}

#[tonic::async_trait]
impl AgentLink for AgentLinkService {
    type SessionStream = Boxed<ControllerMessage>;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let peer = Peer::of(&request, self.tls)?;
        let mut up = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_WITHIN, up.message()).await {
            Ok(Ok(Some(AgentMessage {
                msg: Some(Up::Hello(h)),
            }))) => h,
            Ok(Err(s)) => return Err(s),
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of a session must be a Hello",
                ));
            }
        };
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "this controller speaks vigil protocol v{PROTOCOL_VERSION}, the agent v{}: upgrade one of them",
                hello.protocol_version
            )));
        }
        // Before anything else is done for it: a data store is never created for a claim.
        peer.may_be_node(&hello.datastore, &hello.node_id)?;
        let info = NodeInfo::try_from(&hello).map_err(refused)?;
        let (outbox, rx) = mpsc::channel(OUTBOX);
        let reconciler = match self.reconciler_or_leader(&hello.datastore).await {
            Ok(r) => r,
            // A follower that has known of no leader for a while (etcd down) has nowhere to send
            // the agent: it is unavailable, and the agent tries another.
            Err(e @ ControllerError::NotLeader { leader: None }) => {
                return Err(Status::unavailable(e.to_string()));
            }
            // A follower sends the agent to the leader: the Welcome names it, and the session
            // ends there (the agent connects to the leader itself; nothing is relayed).
            Err(ControllerError::NotLeader { leader }) => {
                let welcome = v1::Welcome {
                    protocol_version: PROTOCOL_VERSION,
                    controller_version: env!("CARGO_PKG_VERSION").into(),
                    leadership: 0,
                    redirect: leader.map(|l| l.grpc).unwrap_or_default(),
                };
                let _ = outbox
                    .send(Ok(Box::new(ControllerMessage {
                        msg: Some(Down::Welcome(welcome)),
                    })))
                    .await;
                return Ok(Response::new(unboxed(rx)));
            }
            Err(e) => return Err(refused(e)),
        };
        let session = self.sessions.fetch_add(1, Ordering::Relaxed);
        let welcome = v1::Welcome {
            protocol_version: PROTOCOL_VERSION,
            controller_version: env!("CARGO_PKG_VERSION").into(),
            leadership: self.registry.leadership.term().map_or(0, |t| t.token),
            redirect: String::new(),
        };
        let _ = outbox
            .send(Ok(Box::new(ControllerMessage {
                msg: Some(Down::Welcome(welcome)),
            })))
            .await;
        let node = info.id.clone();
        reconciler
            .send(Input::Session {
                info,
                outbox,
                session,
            })
            .await
            .map_err(|_| Status::unavailable(ControllerError::ReconcilerStopped.to_string()))?;
        tokio::spawn(async move {
            while let Some(Ok(m)) = up.next().await {
                let input = match m.msg {
                    Some(Up::Verdict(verdict)) => Input::Verdict {
                        node: node.clone(),
                        verdict,
                        received: tokio::time::Instant::now(),
                    },
                    Some(Up::Ack(mut ack)) => {
                        // Kept until its command's waiter reads it: at its bound at most.
                        truncate(&mut ack.error, MAX_ACK_ERROR_LEN);
                        Input::Ack {
                            node: node.clone(),
                            ack,
                        }
                    }
                    // A second hello, or an empty message: nothing to do.
                    _ => continue,
                };
                if reconciler.send(input).await.is_err() {
                    return;
                }
            }
            let _ = reconciler.send(Input::Closed { node, session }).await;
        });
        Ok(Response::new(unboxed(rx)))
    }
}
