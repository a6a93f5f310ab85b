//! The `Control` gRPC service: what the `vigil` CLI asks of the controller: status, failover,
//! the failover history, pause and resume, and a stream of topology events. With TLS, what
//! changes state (a failover, a pause, a resume) needs an operator's certificate; status, history
//! and events are read by any client the CA certified.
use std::{sync::Arc, time::Duration};

use tokio::sync::{broadcast::error::RecvError, mpsc, oneshot};
use tonic::{Request, Response, Status};
use vigil_proto::v1::{self, control_server::Control};

use super::{agent_link::Boxed, peer::Peer};
use crate::{
    error::ControllerError,
    sentinel::topology::{Member, StoreView},
    store::{Input, Registry, state::Failover},
};

/// The longest a CLI request waits for a reconciler (a switchover takes a few seconds).
const ASK_WITHIN: Duration = Duration::from_secs(60);
/// Events queued toward one `vigil watch`; a slower reader is told it lagged.
const WATCH_QUEUE: usize = 64;

pub struct ControlService {
    pub registry: Arc<Registry>,
    /// The gRPC port serves mutual TLS: callers are who their certificates name.
    pub tls: bool,
}

fn status_of(e: ControllerError) -> Status {
    match e {
        ControllerError::NoSuchDatastore(_) => Status::not_found(e.to_string()),
        ControllerError::ReconcilerStopped => Status::unavailable(e.to_string()),
        _ => Status::failed_precondition(e.to_string()),
    }
}

/// Sends the input `make` builds to a reconciler and waits (bounded) for its answer.
async fn ask<T>(
    tx: &mpsc::Sender<Input>,
    make: impl FnOnce(oneshot::Sender<T>) -> Input,
) -> Result<T, Status> {
    let (reply, rx) = oneshot::channel();
    tx.send(make(reply))
        .await
        .map_err(|_| status_of(ControllerError::ReconcilerStopped))?;
    tokio::time::timeout(ASK_WITHIN, rx)
        .await
        .map_err(|_| Status::deadline_exceeded("the reconciler did not answer within 60 s"))?
        .map_err(|_| Status::internal("the reconciler dropped the request"))
}

/// A data store's status as a follower knows it: the view the leader published, without what
/// only the leader hears (verdicts, offsets, reasons).
fn follower_status(v: &StoreView) -> v1::DatastoreStatus {
    let node = |m: &Member, role: v1::Role| v1::NodeStatus {
        node_id: m.node.clone(),
        address: m.address.to_string(),
        role: role as i32,
        health: if m.down {
            v1::Health::Down as i32
        } else {
            v1::Health::Unspecified as i32
        },
        verdict_age_ms: u64::MAX,
        connected: !m.disconnected,
        ..Default::default()
    };
    let mut nodes: Vec<_> = v
        .primary
        .iter()
        .map(|p| node(p, v1::Role::Primary))
        .collect();
    nodes.extend(v.replicas.iter().map(|r| node(r, v1::Role::Replica)));
    v1::DatastoreStatus {
        name: v.name.clone(),
        epoch: v.epoch,
        primary: v
            .primary
            .as_ref()
            .map(|p| p.node.clone())
            .unwrap_or_default(),
        nodes,
        paused: v.paused,
        failover_in_flight: v.failing_over,
    }
}

/// A failover of the history as the CLI is told it.
fn failover_record(f: &Failover) -> v1::FailoverRecord {
    let (timeline_from, timeline) = match &f.timeline {
        Some(t) => (
            t.from.name().to_string(),
            t.stages
                .iter()
                .map(|m| v1::FailoverStage {
                    stage: m.stage.name().to_string(),
                    ms: m.ms,
                })
                .collect(),
        ),
        None => (String::new(), Vec::new()),
    };
    v1::FailoverRecord {
        epoch: f.epoch,
        from_node: f.from.clone().unwrap_or_default(),
        to_node: f.to.clone(),
        cause: f.cause.name().to_string(),
        started_unix_ms: f.started_unix_ms,
        duration_ms: f.duration_ms,
        outcome: f.outcome.to_string(),
        timeline_from,
        timeline,
    }
}

fn datastore_history(name: String, failovers: &[Failover]) -> v1::DatastoreHistory {
    v1::DatastoreHistory {
        name,
        failovers: failovers.iter().map(failover_record).collect(),
    }
}

impl ControlService {
    /// `vigil pause` (`paused`) or `vigil resume`: an operator's, sent to the store's reconciler.
    async fn set_paused(
        &self,
        request: Request<v1::MaintenanceRequest>,
        paused: bool,
    ) -> Result<Response<v1::MaintenanceReply>, Status> {
        Peer::of(&request, self.tls)?.may_operate(if paused { "pause" } else { "resume" })?;
        let name = request.into_inner().datastore;
        let tx = self.registry.get(&name).await.map_err(status_of)?;
        let result = ask(&tx, |reply| Input::Pause { paused, reply }).await?;
        result.map(Response::new).map_err(status_of)
    }
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn status(
        &self,
        request: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusReply>, Status> {
        let name = request.into_inner().datastore;
        let leadership = &self.registry.leadership;
        // Named only among several controllers: a single one has no one else to tell apart.
        let leader = match leadership.leader() {
            Some(l) if self.registry.several() => l.name,
            _ => String::new(),
        };
        let stores = match self.registry.all().await {
            Ok(stores) => stores,
            // A follower answers from the views the leader mirrors to etcd.
            Err(ControllerError::NotLeader { .. }) => {
                let views = self.registry.published.all().into_iter();
                let datastores: Vec<_> = views
                    .filter(|v| name.is_empty() || v.name == name)
                    .map(|v| follower_status(&v))
                    .collect();
                if !name.is_empty() && datastores.is_empty() {
                    return Err(status_of(ControllerError::NoSuchDatastore(name)));
                }
                return Ok(Response::new(v1::StatusReply {
                    datastores,
                    leader,
                    leading: false,
                }));
            }
            Err(e) => return Err(status_of(e)),
        };
        let stores: Vec<_> = stores
            .into_iter()
            .filter(|(n, _)| name.is_empty() || *n == name)
            .collect();
        if !name.is_empty() && stores.is_empty() {
            return Err(status_of(ControllerError::NoSuchDatastore(name)));
        }
        let mut datastores = Vec::new();
        for (_, tx) in stores {
            datastores.push(ask(&tx, |reply| Input::Status { reply }).await?);
        }
        Ok(Response::new(v1::StatusReply {
            datastores,
            leader,
            leading: true,
        }))
    }

    async fn failover(
        &self,
        request: Request<v1::FailoverRequest>,
    ) -> Result<Response<v1::FailoverReply>, Status> {
        Peer::of(&request, self.tls)?.may_operate("failover")?;
        let r = request.into_inner();
        let tx = self.registry.get(&r.datastore).await.map_err(status_of)?;
        let to = (!r.to_node.is_empty()).then_some(r.to_node);
        let result = ask(&tx, |reply| Input::Failover { to, reply }).await?;
        result.map(Response::new).map_err(status_of)
    }

    async fn history(
        &self,
        request: Request<v1::HistoryRequest>,
    ) -> Result<Response<v1::HistoryReply>, Status> {
        let name = request.into_inner().datastore;
        let mut datastores = Vec::new();
        match self.registry.all().await {
            Ok(stores) => {
                let stores: Vec<_> = stores
                    .into_iter()
                    .filter(|(n, _)| name.is_empty() || *n == name)
                    .collect();
                if !name.is_empty() && stores.is_empty() {
                    return Err(status_of(ControllerError::NoSuchDatastore(name)));
                }
                for (n, tx) in stores {
                    let history = ask(&tx, |reply| Input::History { reply }).await?;
                    datastores.push(datastore_history(n, &history));
                }
            }
            // A follower reads the history the leader persisted, for the stores it publishes.
            Err(ControllerError::NotLeader { .. }) => {
                let mut names: Vec<String> = self
                    .registry
                    .published
                    .all()
                    .into_iter()
                    .map(|v| v.name)
                    .filter(|n| name.is_empty() || *n == name)
                    .collect();
                names.sort();
                if !name.is_empty() && names.is_empty() {
                    return Err(status_of(ControllerError::NoSuchDatastore(name)));
                }
                for n in names {
                    let state = self.registry.stored_state(&n).await.map_err(status_of)?;
                    datastores.push(datastore_history(n, &state.history));
                }
            }
            Err(e) => return Err(status_of(e)),
        }
        Ok(Response::new(v1::HistoryReply { datastores }))
    }

    async fn pause(
        &self,
        request: Request<v1::MaintenanceRequest>,
    ) -> Result<Response<v1::MaintenanceReply>, Status> {
        self.set_paused(request, true).await
    }

    async fn resume(
        &self,
        request: Request<v1::MaintenanceRequest>,
    ) -> Result<Response<v1::MaintenanceReply>, Status> {
        self.set_paused(request, false).await
    }

    type WatchStream = Boxed<v1::TopologyEvent>;

    async fn watch(
        &self,
        request: Request<v1::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let name = request.into_inner().datastore;
        let mut events = self.registry.published.subscribe();
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        tokio::spawn(async move {
            loop {
                let e = match events.recv().await {
                    Ok(e) => e,
                    Err(RecvError::Lagged(n)) => {
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
                    Err(RecvError::Closed) => return,
                };
                if !name.is_empty() && e.datastore != name {
                    continue;
                }
                let te = v1::TopologyEvent {
                    datastore: e.datastore,
                    epoch: e.epoch,
                    kind: e.channel.name().into(),
                    node_id: e.node,
                    detail: e.message,
                };
                if tx.send(Ok(te)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
