//! The controller's gRPC services: `AgentLink` (one bidirectional session per agent) and
//! `Control` (what the `vigil` CLI asks: status, failover, watch).
use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};
use vigil_proto::{
    PROTOCOL_VERSION,
    v1::{
        self, AgentMessage, ControllerMessage, agent_link_server::AgentLink,
        agent_message::Msg as Up, control_server::Control, controller_message::Msg as Down,
    },
};

use crate::{reconciler::Input, registry::Registry, state::valid_name};

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub struct AgentLinkService {
    pub registry: Arc<Registry>,
    pub sessions: AtomicU64,
}

fn check_hello(h: &v1::Hello) -> Result<(), Status> {
    if h.protocol_version != PROTOCOL_VERSION {
        return Err(Status::failed_precondition(format!(
            "this controller speaks vigil protocol v{PROTOCOL_VERSION}, the agent v{}: upgrade one of them",
            h.protocol_version
        )));
    }
    if !valid_name(&h.datastore) {
        return Err(Status::invalid_argument(format!(
            "data store name {:?} is not allowed",
            h.datastore
        )));
    }
    if h.node_id.is_empty() || h.node_id.len() > 128 {
        return Err(Status::invalid_argument(
            "node id must be 1 to 128 characters",
        ));
    }
    let port_ok = h
        .advertise
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok {
        return Err(Status::invalid_argument(format!(
            "advertised address {:?} is not host:port",
            h.advertise
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl AgentLink for AgentLinkService {
    type SessionStream = Boxed<ControllerMessage>;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut up = request.into_inner();
        let hello = match tokio::time::timeout(Duration::from_secs(5), up.message()).await {
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
        check_hello(&hello)?;
        let reconciler = self
            .registry
            .get_or_start(&hello.datastore)
            .map_err(Status::permission_denied)?;
        let session = self.sessions.fetch_add(1, Ordering::Relaxed);
        let (outbox, rx) = mpsc::channel(256);
        let welcome = v1::Welcome {
            protocol_version: PROTOCOL_VERSION,
            controller_version: env!("CARGO_PKG_VERSION").into(),
        };
        let _ = outbox
            .send(Ok(ControllerMessage {
                msg: Some(Down::Welcome(welcome)),
            }))
            .await;
        let node = hello.node_id.clone();
        reconciler
            .send(Input::Session {
                hello,
                outbox,
                session,
            })
            .await
            .map_err(|_| Status::unavailable("the data store's reconciler stopped"))?;
        tokio::spawn(async move {
            while let Some(Ok(m)) = up.next().await {
                let input = match m.msg {
                    Some(Up::Verdict(verdict)) => Input::Verdict {
                        node: node.clone(),
                        verdict,
                        received: tokio::time::Instant::now(),
                    },
                    Some(Up::Ack(ack)) => Input::Ack {
                        node: node.clone(),
                        ack,
                    },
                    // A second hello, or an empty message: nothing to do.
                    _ => continue,
                };
                if reconciler.send(input).await.is_err() {
                    return;
                }
            }
            let _ = reconciler.send(Input::Closed { node, session }).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

pub struct ControlService {
    pub registry: Arc<Registry>,
}

async fn ask<T>(
    tx: &mpsc::Sender<Input>,
    make: impl FnOnce(oneshot::Sender<T>) -> Input,
) -> Result<T, Status> {
    let (reply, rx) = oneshot::channel();
    tx.send(make(reply))
        .await
        .map_err(|_| Status::unavailable("the data store's reconciler stopped"))?;
    tokio::time::timeout(Duration::from_secs(60), rx)
        .await
        .map_err(|_| Status::deadline_exceeded("the reconciler did not answer within 60 s"))?
        .map_err(|_| Status::internal("the reconciler dropped the request"))
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn status(
        &self,
        request: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusReply>, Status> {
        let name = request.into_inner().datastore;
        let stores = if name.is_empty() {
            self.registry.all()
        } else {
            let tx = self
                .registry
                .get(&name)
                .ok_or_else(|| Status::not_found(format!("no data store {name:?}")))?;
            vec![(name, tx)]
        };
        let mut datastores = Vec::new();
        for (_, tx) in stores {
            datastores.push(ask(&tx, |reply| Input::Status { reply }).await?);
        }
        Ok(Response::new(v1::StatusReply { datastores }))
    }

    async fn failover(
        &self,
        request: Request<v1::FailoverRequest>,
    ) -> Result<Response<v1::FailoverReply>, Status> {
        let r = request.into_inner();
        let tx = self
            .registry
            .get(&r.datastore)
            .ok_or_else(|| Status::not_found(format!("no data store {:?}", r.datastore)))?;
        let to = (!r.to_node.is_empty()).then_some(r.to_node);
        let result = ask(&tx, |reply| Input::Failover { to, reply }).await?;
        result
            .map(Response::new)
            .map_err(Status::failed_precondition)
    }

    type WatchStream = Boxed<v1::TopologyEvent>;

    async fn watch(
        &self,
        request: Request<v1::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let name = request.into_inner().datastore;
        let mut events = self.registry.published.subscribe();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let e = match events.recv().await {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let lost = v1::TopologyEvent {
                            kind: "lagged".into(),
                            detail: format!("{n} events were dropped"),
                            ..Default::default()
                        };
                        if tx.send(Ok(lost)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Err(_) => return,
                };
                if !name.is_empty() && e.datastore != name {
                    continue;
                }
                let te = v1::TopologyEvent {
                    datastore: e.datastore,
                    epoch: e.epoch,
                    kind: e.channel.into(),
                    node_id: e.node,
                    detail: e.message,
                };
                if tx.send(Ok(te)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
