//! The `Control` gRPC service: what the `vigil` CLI asks of the controller: status, failover,
//! and a stream of topology events.
use std::{sync::Arc, time::Duration};

use tokio::sync::{broadcast::error::RecvError, mpsc, oneshot};
use tonic::{Request, Response, Status};
use vigil_proto::v1::{self, control_server::Control};

use super::agent_link::Boxed;
use crate::{
    error::ControllerError,
    store::{Input, Registry},
};

/// The longest a CLI request waits for a reconciler (a switchover takes a few seconds).
const ASK_WITHIN: Duration = Duration::from_secs(60);
/// Events queued toward one `vigil watch`; a slower reader is told it lagged.
const WATCH_QUEUE: usize = 64;

pub struct ControlService {
    pub registry: Arc<Registry>,
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
            let tx = self.registry.get(&name).map_err(status_of)?;
            vec![(name, tx)]
        };
        let mut datastores = Vec::new();
        for (_, tx) in stores {
            datastores.push(ask(&tx, |reply| Input::Status { reply }).await?);
        }
        Ok(Response::new(v1::StatusReply {
            datastores,
            leading: true,
            ..Default::default()
        }))
    }

    async fn failover(
        &self,
        request: Request<v1::FailoverRequest>,
    ) -> Result<Response<v1::FailoverReply>, Status> {
        let r = request.into_inner();
        let tx = self.registry.get(&r.datastore).map_err(status_of)?;
        let to = (!r.to_node.is_empty()).then_some(r.to_node);
        let result = ask(&tx, |reply| Input::Failover { to, reply }).await?;
        result.map(Response::new).map_err(status_of)
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
