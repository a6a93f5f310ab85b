//! A stand-in controller for the agent suites: a real tonic gRPC server on 127.0.0.1 speaking
//! vigil.v1 over a real socket. It records every message agents send and lets a test send desired
//! state and commands to one agent. It repeats each agent's last desired state every 200 ms
//! (whole, or as a lease grant when a test asks), granting a lease on it for the newest verdict
//! it has from that agent when the test asked for leases; a test can also make it fall silent toward an
//! agent while the session stays up. Its Welcome carries the leadership a test sets (0 unless
//! told); started as a follower, it answers every Hello with a Welcome redirecting to a leader
//! and ends the session. (The real controller is the controller issue's.)

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};
use vigil_proto::v1::{
    self, AgentMessage, ControllerMessage,
    agent_link_server::{AgentLink, AgentLinkServer},
    agent_message::Msg as Up,
    controller_message::Msg as Down,
};
use vigil_tests::{Agent, Answer, RawClient, RedisServer, WAIT};

/// A client connecting to `addr` now is not served: its SYN is dropped, or `words` get no reply
/// within 1.5 s (a fenced server's clients get none).
pub fn assert_unserved(addr: SocketAddr, words: &[&str], what: &str) {
    if let Ok(mut late) = RawClient::connect_to(addr, Duration::from_millis(500)) {
        let answer = late.request(words, Duration::from_millis(1500));
        assert!(!matches!(answer, Answer::Reply(_)), "{what}: {answer:?}");
    }
}

/// Desired state for `p`: the primary at `epoch`, with `replica` (node "r") its one peer.
pub fn primary_at(epoch: u64, replica: &RedisServer) -> v1::DesiredState {
    v1::DesiredState {
        epoch,
        role: v1::Role::Primary as i32,
        peers: vec![v1::Peer {
            node_id: "r".into(),
            address: format!("127.0.0.1:{}", replica.port),
        }],
        peers_version: 1,
        ..Default::default()
    }
}

type Outbox = mpsc::Sender<Result<ControllerMessage, Status>>;

#[derive(Default)]
struct Shared {
    /// (node id, message), in arrival order.
    received: Vec<(String, Up)>,
    agents: HashMap<String, Outbox>,
    desired: HashMap<String, v1::DesiredState>,
    /// Lease granted with each desired state, by node (ms).
    leases: HashMap<String, u32>,
    /// Nodes the stub sends no desired state to.
    silent: HashSet<String>,
    /// Desired states sent with a lease, by node.
    grants: HashMap<String, u64>,
    /// Nodes whose repeats go as lease grants (the desired state itself only when it is set),
    /// as the controller renews a primary's lease.
    compact: HashSet<String>,
    /// The leadership its Welcome claims.
    leadership: u64,
}

impl Shared {
    /// The desired state to send `node` now, with its lease for the newest verdict received.
    fn desired_now(&mut self, node: &str) -> Option<v1::DesiredState> {
        if self.silent.contains(node) {
            return None;
        }
        let mut d = self.desired.get(node).cloned()?;
        if let Some(&lease_ms) = self.leases.get(node) {
            let newest = self.received.iter().rev().find_map(|(n, m)| match m {
                Up::Verdict(v) if n == node => Some(v.seq),
                _ => None,
            });
            if let Some(seq) = newest {
                d.lease_ms = lease_ms;
                d.lease_seq = seq;
                *self.grants.entry(node.to_string()).or_default() += 1;
            }
        }
        Some(d)
    }
}

struct Service {
    shared: Arc<Mutex<Shared>>,
    welcome_version: u32,
    /// A follower: the leader's URL its Welcome names.
    redirect: Option<String>,
}

#[tonic::async_trait]
impl AgentLink for Service {
    type SessionStream = Pin<Box<dyn Stream<Item = Result<ControllerMessage, Status>> + Send>>;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut up = request.into_inner();
        let node = match up.message().await? {
            Some(AgentMessage {
                msg: Some(Up::Hello(h)),
            }) => {
                let node = h.node_id.clone();
                lock(&self.shared)
                    .received
                    .push((node.clone(), Up::Hello(h)));
                node
            }
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be a Hello",
                ));
            }
        };
        let (tx, rx) = mpsc::channel(64);
        let welcome = v1::Welcome {
            protocol_version: self.welcome_version,
            controller_version: "stub".into(),
            leadership: lock(&self.shared).leadership,
            redirect: self.redirect.clone().unwrap_or_default(),
        };
        let _ = tx
            .send(Ok(ControllerMessage {
                msg: Some(Down::Welcome(welcome)),
            }))
            .await;
        if self.redirect.is_some() {
            // A follower: the session ends after its Welcome (with `tx`, the stream's sender).
            return Ok(Response::new(Box::pin(ReceiverStream::new(rx))));
        }
        lock(&self.shared).agents.insert(node.clone(), tx.clone());
        let shared = Arc::clone(&self.shared);
        let reader_node = node.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = up.next().await {
                if let Some(msg) = m.msg {
                    lock(&shared).received.push((reader_node.clone(), msg));
                }
            }
        });
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let repeat = {
                    let mut shared = lock(&shared);
                    let compact = shared.compact.contains(&node);
                    shared.desired_now(&node).map(|d| {
                        if compact {
                            Down::Lease(v1::LeaseGrant {
                                epoch: d.epoch,
                                lease_ms: d.lease_ms,
                                lease_seq: d.lease_seq,
                                leadership: d.leadership,
                            })
                        } else {
                            Down::Desired(d)
                        }
                    })
                };
                if let Some(m) = repeat
                    && tx
                        .send(Ok(ControllerMessage { msg: Some(m) }))
                        .await
                        .is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct StubController {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    runtime: Option<tokio::runtime::Runtime>,
    /// Messages already handed out by `wait_for`.
    cursor: usize,
}

impl StubController {
    pub fn start() -> Result<Self> {
        Self::start_speaking(vigil_proto::PROTOCOL_VERSION)
    }

    /// A controller whose Welcome claims protocol `version`.
    pub fn start_speaking(version: u32) -> Result<Self> {
        Self::start_as(version, None)
    }

    // Only the agent suite follows leaders; the fence suite shares this module.
    #[allow(dead_code)]
    /// A controller that does not lead: its Welcome names `leader` (a URL) and it ends the
    /// session.
    pub fn start_redirecting(leader: &str) -> Result<Self> {
        Self::start_as(vigil_proto::PROTOCOL_VERSION, Some(leader.to_string()))
    }

    fn start_as(version: u32, redirect: Option<String>) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        let service = Service {
            shared: Arc::clone(&shared),
            welcome_version: version,
            redirect,
        };
        runtime.spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(AgentLinkServer::new(service))
                .serve_with_incoming(incoming)
                .await;
        });
        Ok(Self {
            addr,
            shared,
            runtime: Some(runtime),
            cursor: 0,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and drops every session: the agents lose their controller.
    pub fn stop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    /// Waits (bounded) for the next message from `node` matching `pred`, after the last one returned.
    pub fn wait_for(&mut self, node: &str, what: &str, pred: impl Fn(&Up) -> bool) -> Result<Up> {
        let deadline = Instant::now() + WAIT;
        loop {
            {
                let shared = lock(&self.shared);
                for (i, (n, m)) in shared.received.iter().enumerate().skip(self.cursor) {
                    if n == node && pred(m) {
                        self.cursor = i + 1;
                        return Ok(m.clone());
                    }
                }
            }
            if Instant::now() >= deadline {
                bail!("no {what} from {node} within {WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn wait_verdict(
        &mut self,
        node: &str,
        what: &str,
        pred: impl Fn(&v1::Verdict) -> bool,
    ) -> Result<v1::Verdict> {
        match self.wait_for(node, what, |m| matches!(m, Up::Verdict(v) if pred(v)))? {
            Up::Verdict(v) => Ok(v),
            _ => unreachable!("wait_for returned a message its predicate rejected"),
        }
    }

    pub fn wait_ack(&mut self, node: &str, id: u64) -> Result<v1::CommandAck> {
        match self.wait_for(
            node,
            "an ack",
            |m| matches!(m, Up::Ack(a) if a.command_id == id),
        )? {
            Up::Ack(a) => Ok(a),
            _ => unreachable!("wait_for returned a message its predicate rejected"),
        }
    }

    /// Every verdict from `node` received so far.
    pub fn verdicts(&self, node: &str) -> Vec<v1::Verdict> {
        lock(&self.shared)
            .received
            .iter()
            .filter_map(|(n, m)| match m {
                Up::Verdict(v) if n == node => Some(*v),
                _ => None,
            })
            .collect()
    }

    // Only the agent suite follows leaders; the fence suite shares this module.
    #[allow(dead_code)]
    /// Every message from `node` received so far, in order.
    pub fn received(&self, node: &str) -> Vec<Up> {
        lock(&self.shared)
            .received
            .iter()
            .filter(|(n, _)| n == node)
            .map(|(_, m)| m.clone())
            .collect()
    }

    // Only the agent suite follows leaders; the fence suite shares this module.
    #[allow(dead_code)]
    /// The leadership the Welcome of every session from now on claims.
    pub fn lead_at(&self, leadership: u64) {
        lock(&self.shared).leadership = leadership;
    }

    /// Moves the cursor past everything received so far.
    pub fn skip_received(&mut self) {
        self.cursor = lock(&self.shared).received.len();
    }

    fn send(&self, node: &str, msg: Down) -> Result<()> {
        let tx = lock(&self.shared)
            .agents
            .get(node)
            .cloned()
            .context("that agent has no session")?;
        let rt = self.runtime.as_ref().context("the stub is stopped")?;
        rt.block_on(tx.send(Ok(ControllerMessage { msg: Some(msg) })))
            .context("the session is gone")
    }

    /// Sends desired state now, and keeps repeating it (speaking to `node` again if it was
    /// silent).
    pub fn desire(&self, node: &str, d: v1::DesiredState) -> Result<()> {
        let now = {
            let mut shared = lock(&self.shared);
            shared.desired.insert(node.to_string(), d);
            shared.silent.remove(node);
            shared.desired_now(node)
        };
        match now {
            Some(d) => self.send(node, Down::Desired(d)),
            None => Ok(()),
        }
    }

    /// Makes `d` the desired state repeated to `node` without sending it now: its lease grants
    /// then name a desired state the agent has not been sent.
    #[allow(dead_code)] // the agent suite's; the fence suite shares this stub
    pub fn set_desired_quietly(&self, node: &str, d: v1::DesiredState) {
        lock(&self.shared).desired.insert(node.to_string(), d);
    }

    /// Adds `address` to the peers of `node`'s desired state (made if there is none yet, at the
    /// stub's leadership) and sends it now, as a controller describes a data store to its agents
    /// before it names one of its servers in a command: an agent replicates only from a server
    /// of its own data store.
    pub fn add_peer(&self, node: &str, address: &str) -> Result<()> {
        let mut d = {
            let shared = lock(&self.shared);
            shared
                .desired
                .get(node)
                .cloned()
                .unwrap_or_else(|| v1::DesiredState {
                    leadership: shared.leadership,
                    ..Default::default()
                })
        };
        if !d.peers.iter().any(|p| p.address == address) {
            d.peers.push(v1::Peer {
                node_id: format!("peer-{}", d.peers.len()),
                address: address.to_string(),
            });
            d.peers_version += 1;
        }
        self.desire(node, d)
    }

    /// Starts `vigil-agent run` for node `node` of `datastore`, beside `server` and reporting
    /// to this stub, with `extra` flags.
    pub fn start_agent(
        &self,
        server: &RedisServer,
        datastore: &str,
        node: &str,
        extra: &[&str],
    ) -> Result<Agent> {
        let addr = format!("127.0.0.1:{}", server.port);
        let url = self.url();
        let mut args = vec![
            "--server",
            &addr,
            "--controller",
            &url,
            "--datastore",
            datastore,
            "--node-id",
            node,
        ];
        args.extend_from_slice(extra);
        Agent::run(&args)
    }

    /// Grants `node` a lease of `lease_ms` with every desired state from now on (0: none, as a
    /// controller failing the node over sends).
    pub fn grant_leases(&self, node: &str, lease_ms: u32) {
        lock(&self.shared).leases.insert(node.to_string(), lease_ms);
    }

    /// Repeats `node`'s desired state every 200 ms as a lease grant only, as the controller
    /// renews a primary's lease; [`StubController::desire`] still sends the whole of it.
    #[allow(dead_code)] // the agent suite's; the fence suite shares this stub
    pub fn grant_compactly(&self, node: &str) {
        lock(&self.shared).compact.insert(node.to_string());
    }

    /// Waits until `node` holds a lease: two more grants sent from now (the first is surely
    /// taken in by the time the second goes, 200 ms later).
    pub fn wait_lease(&self, node: &str) -> Result<()> {
        let granted = |s: &Shared| s.grants.get(node).copied().unwrap_or(0);
        let from = granted(&lock(&self.shared));
        vigil_tests::wait_until(WAIT, "a lease granted", || {
            (granted(&lock(&self.shared)) >= from + 2).then_some(())
        })
    }

    /// Stops sending `node` desired state (and so lease grants) while its session stays up, until
    /// the next [`StubController::desire`].
    pub fn fall_silent(&self, node: &str) {
        lock(&self.shared).silent.insert(node.to_string());
    }

    /// Sends a command at leadership 0, as a single controller without etcd does.
    pub fn command(
        &self,
        node: &str,
        id: u64,
        epoch: u64,
        action: Option<v1::command::Action>,
    ) -> Result<()> {
        self.command_at(node, id, epoch, 0, action)
    }

    /// Sends a command claiming `leadership`.
    pub fn command_at(
        &self,
        node: &str,
        id: u64,
        epoch: u64,
        leadership: u64,
        action: Option<v1::command::Action>,
    ) -> Result<()> {
        self.send(
            node,
            Down::Command(v1::Command {
                id,
                epoch,
                action,
                leadership,
            }),
        )
    }

    /// Waits until `node` has a session.
    pub fn wait_session(&self, node: &str) -> Result<()> {
        vigil_tests::wait_until(WAIT, "the agent's session", || {
            lock(&self.shared).agents.contains_key(node).then_some(())
        })
    }
}

impl Drop for StubController {
    fn drop(&mut self) {
        self.stop();
    }
}
