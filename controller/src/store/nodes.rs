//! The nodes of one data store as its reconciler knows them: who each is (from its agent's hello
//! or the configuration), its agent's session, its last verdict, and when its replication link
//! was last seen up; and the [`NodeView`] of each that the decisions take.
use std::{collections::BTreeMap, sync::atomic::AtomicU64, time::Duration};

use prometheus_client::metrics::gauge::Gauge;

use tokio::{sync::mpsc, time::Instant};
use vigil_proto::{
    HostPort, LINK_NEVER_UP, heartbeat,
    limits::{
        MAX_ADDRESS_LEN, MAX_DATASTORE_NAME_LEN, MAX_NODE_ID_LEN, MAX_NODES_PER_DATASTORE,
        MAX_VERSION_LEN, MAX_ZONE_LEN,
    },
    v1::{self, Health, Role},
};

use vigil_proto::limits::{field_problem, valid_name};

use super::decision::NodeView;
use crate::error::ControllerError;

/// Peers an agent's verdict can report on: its peer bitmasks are 64 bits wide.
pub const MAX_PEER_BITS: usize = 64;

/// Where a session's messages to its agent go. Boxed: a channel allocates its slots 32 at a
/// time, and a controller holds one per agent of its fleet (16 bytes a slot instead of 104).
pub type Outbox = mpsc::Sender<Result<Box<v1::ControllerMessage>, tonic::Status>>;

/// Who a node is: what its agent said at hello, or what the configuration lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    /// Where clients and peers reach the node's server.
    pub address: HostPort,
    pub zone: String,
    /// Lower is preferred; 0 never promotes.
    pub priority: u32,
    /// As of the hello, then as of the last verdict that named one.
    pub flavour: v1::Flavour,
}

fn check_field(field: &'static str, value: &str, max: usize) -> Result<(), ControllerError> {
    match field_problem(value, max) {
        Some(problem) => Err(ControllerError::HelloField { field, problem }),
        None => Ok(()),
    }
}

/// A hello checked field by field against the protocol's bounds ([`vigil_proto::limits`]): the
/// data store it joins, and who the node is. Nothing longer than a bound is kept.
impl TryFrom<&v1::Hello> for NodeInfo {
    type Error = ControllerError;

    fn try_from(h: &v1::Hello) -> Result<Self, ControllerError> {
        check_field("datastore", &h.datastore, MAX_DATASTORE_NAME_LEN)?;
        if !valid_name(&h.datastore) {
            return Err(ControllerError::HelloField {
                field: "datastore",
                problem: "must be letters, digits, '-', '_' and '.', not empty".into(),
            });
        }
        check_field("node_id", &h.node_id, MAX_NODE_ID_LEN)?;
        if h.node_id.is_empty() {
            return Err(ControllerError::HelloField {
                field: "node_id",
                problem: "is empty".into(),
            });
        }
        check_field("advertise", &h.advertise, MAX_ADDRESS_LEN)?;
        check_field("zone", &h.zone, MAX_ZONE_LEN)?;
        check_field("agent_version", &h.agent_version, MAX_VERSION_LEN)?;
        let address = h.advertise.parse().map_err(|e: vigil_proto::ProtoError| {
            ControllerError::HelloField {
                field: "advertise",
                problem: e.to_string(),
            }
        })?;
        Ok(Self {
            id: h.node_id.clone(),
            address,
            zone: h.zone.clone(),
            priority: h.priority,
            flavour: h.flavour(),
        })
    }
}

/// An agent's session: its number (a reconnect replaces it) and its outbox.
pub struct Session {
    pub id: u64,
    pub outbox: Outbox,
}

pub struct Node {
    pub info: NodeInfo,
    pub session: Option<Session>,
    pub verdict: Option<v1::Verdict>,
    /// When the last verdict arrived.
    pub heard: Option<Instant>,
    /// When this process got the node's first verdict.
    pub first_heard: Option<Instant>,
    /// When this node last reported, as a replica, its replication link up.
    pub link_up_at: Option<Instant>,
    /// When the reconciler last corrected this node's role.
    pub last_corrected: Option<Instant>,
    /// The `seq` of the last verdict of the agent's current session (0: none yet).
    pub last_seq: u64,
    /// When this process last sent this node a lease (only a primary gets one).
    pub lease_granted_at: Option<Instant>,
    /// The generation of desired state this session was last sent, and when (None: none yet).
    pub desired_sent: Option<(u64, Instant)>,
    /// Its `verdict_age_seconds` series, kept so the heartbeat sets it without a lookup.
    pub age_series: Option<Gauge<f64, AtomicU64>>,
}

impl Node {
    fn new(info: NodeInfo) -> Self {
        Self {
            info,
            session: None,
            verdict: None,
            heard: None,
            first_heard: None,
            link_up_at: None,
            last_corrected: None,
            last_seq: 0,
            lease_granted_at: None,
            desired_sent: None,
            age_series: None,
        }
    }

    pub fn health(&self) -> Health {
        self.verdict
            .as_ref()
            .map_or(Health::Unspecified, |v| v.health())
    }

    /// Its agent says DOWN or UNHEALTHY.
    pub fn is_down(&self) -> bool {
        matches!(self.health(), Health::Down | Health::Unhealthy)
    }

    /// Takes a verdict that arrived at `received`.
    pub fn take_verdict(&mut self, verdict: v1::Verdict, received: Instant) {
        if verdict.role() == Role::Replica {
            // The agent's own account of when the link was last up counts as much as this
            // process having seen it: a controller that started (or was elected) after the
            // primary died knows a replica was linked until then only from this.
            let last_up = if verdict.link_up {
                Some(received)
            } else if verdict.link_down_ms == 0 || verdict.link_down_ms == LINK_NEVER_UP {
                // 0 on a link that is down: the agent does not say (an older agent).
                None
            } else {
                received.checked_sub(Duration::from_millis(u64::from(verdict.link_down_ms)))
            };
            if last_up > self.link_up_at {
                self.link_up_at = last_up;
            }
        }
        if verdict.flavour() != v1::Flavour::Unspecified {
            self.info.flavour = verdict.flavour();
        }
        self.last_seq = verdict.seq;
        self.verdict = Some(verdict);
        self.heard = Some(received);
        self.first_heard.get_or_insert(received);
    }
}

/// Every node of one data store, by id, and the version of the peer list agents are sent.
#[derive(Default)]
pub struct Nodes {
    by_id: BTreeMap<String, Node>,
    /// Bumped whenever a node joins or moves, so a verdict's peer bits are read against the list
    /// they were about.
    pub peers_version: u32,
}

impl Nodes {
    /// Adds a node, or updates what is known of it. A node new to a data store that already has
    /// [`MAX_NODES_PER_DATASTORE`] is refused: node ids come from the network.
    pub fn register(&mut self, info: NodeInfo) -> Result<(), ControllerError> {
        if !self.by_id.contains_key(&info.id) && self.by_id.len() >= MAX_NODES_PER_DATASTORE {
            return Err(ControllerError::TooManyNodes {
                node: info.id,
                max: MAX_NODES_PER_DATASTORE,
            });
        }
        match self.by_id.get_mut(&info.id) {
            Some(n) => {
                if n.info.address != info.address {
                    self.peers_version += 1;
                }
                n.info = info;
            }
            None => {
                self.by_id.insert(info.id.clone(), Node::new(info));
                self.peers_version += 1;
            }
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Node> {
        self.by_id.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Node> {
        self.by_id.get_mut(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Node> {
        self.by_id.values()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Node> {
        self.by_id.values_mut()
    }

    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.by_id.keys()
    }

    pub fn address(&self, id: &str) -> Option<HostPort> {
        self.get(id).map(|n| n.info.address.clone())
    }

    /// The outbox of `id`'s agent, while it has a session.
    pub fn outbox(&self, id: &str) -> Option<&Outbox> {
        self.get(id)
            .and_then(|n| n.session.as_ref())
            .map(|s| &s.outbox)
    }

    /// The peers of `id`, in the order its peer bits refer to: every other node, by id.
    pub fn peers_of<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.by_id.values().filter(move |n| n.info.id != id)
    }

    /// Whether a replica other than `primary`, heard from within `silence`, has had no
    /// replication link (or, never seen linked, has been heard from) for over `bound`: what
    /// [`super::decision::unlinked_replicas`] looks for, asked without building the views.
    pub fn any_unlinked(&self, primary: &str, silence: Duration, bound: Duration) -> bool {
        let now = Instant::now();
        self.iter()
            .filter(|n| n.info.id != primary && n.session.is_some())
            .filter(|n| n.heard.is_some_and(|t| now.duration_since(t) <= silence))
            .filter(|n| {
                n.verdict
                    .as_ref()
                    .is_some_and(|v| v.role() == Role::Replica)
            })
            .any(|n| {
                n.link_up_at
                    .or(n.first_heard)
                    .is_some_and(|t| now.duration_since(t) > bound)
            })
    }

    /// The decisions' view of `primary` and of every other node, as of now.
    pub fn views(&self, primary: &str) -> (Option<NodeView>, Vec<NodeView>) {
        let now = Instant::now();
        let view = |n: &Node| {
            let v = n.verdict.as_ref();
            let sees_down = v.is_some_and(|v| {
                let primary_bit = self
                    .peers_of(&n.info.id)
                    .position(|p| p.info.id == primary)
                    .filter(|&i| i < MAX_PEER_BITS);
                let by_probe = v.peers_version == self.peers_version
                    && primary_bit.is_some_and(|i| {
                        v.peers_probed >> i & 1 == 1 && v.peers_unreachable >> i & 1 == 1
                    });
                by_probe || (v.role() == Role::Replica && !v.link_up)
            });
            NodeView {
                id: n.info.id.clone(),
                zone: n.info.zone.clone(),
                priority: n.info.priority,
                connected: n.session.is_some(),
                verdict_age: n.heard.map(|t| now.duration_since(t)),
                heard_for: n.first_heard.map(|t| now.duration_since(t)),
                health: n.health(),
                role: v.map_or(Role::Unspecified, |v| v.role()),
                offset: v.map_or(0, |v| v.repl_offset),
                link_up_age: n.link_up_at.map(|t| now.duration_since(t)),
                sees_primary_down: sees_down,
                // The primary is never told to beat slowly, whatever its verdict says.
                quiet: n.info.id != primary && v.is_some_and(heartbeat::quiet),
            }
        };
        let p = self.get(primary).map(view);
        let others = self
            .iter()
            .filter(|n| n.info.id != primary)
            .map(view)
            .collect();
        (p, others)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(id: &str, advertise: &str) -> v1::Hello {
        v1::Hello {
            datastore: "cache".into(),
            node_id: id.into(),
            advertise: advertise.into(),
            priority: 100,
            flavour: v1::Flavour::Redis as i32,
            ..Default::default()
        }
    }

    #[test]
    fn a_hello_becomes_a_node_only_when_every_field_is_sane() {
        let n = NodeInfo::try_from(&hello("a", "10.0.0.1:6379")).unwrap();
        assert_eq!(n.address, HostPort::new("10.0.0.1", 6379));
        assert_eq!(n.flavour, v1::Flavour::Redis);
        let longest = v1::Hello {
            datastore: "d".repeat(MAX_DATASTORE_NAME_LEN),
            zone: "z".repeat(MAX_ZONE_LEN),
            agent_version: "v".repeat(MAX_VERSION_LEN),
            ..hello(
                &"n".repeat(MAX_NODE_ID_LEN),
                &format!(
                    "[{}]:65535",
                    "a".repeat(vigil_proto::host_port::MAX_HOST_LEN)
                ),
            )
        };
        assert!(
            NodeInfo::try_from(&longest).is_ok(),
            "every field at its bound"
        );
        let megabytes = "x".repeat(3 << 20);
        for (field, bad) in [
            ("node_id", hello("", "10.0.0.1:6379")),
            (
                "node_id",
                hello(&"n".repeat(MAX_NODE_ID_LEN + 1), "10.0.0.1:6379"),
            ),
            ("node_id", hello("a\nb", "10.0.0.1:6379")),
            ("advertise", hello("a", "10.0.0.1")),
            ("advertise", hello("a", ":6379")),
            ("advertise", hello("a", "h:0")),
            ("advertise", hello("a", &megabytes)),
            (
                "zone",
                v1::Hello {
                    zone: "z".repeat(MAX_ZONE_LEN + 1),
                    ..hello("a", "h:1")
                },
            ),
            (
                "datastore",
                v1::Hello {
                    datastore: megabytes.clone(),
                    ..hello("a", "h:1")
                },
            ),
            (
                "datastore",
                v1::Hello {
                    datastore: String::new(),
                    ..hello("a", "h:1")
                },
            ),
            (
                "agent_version",
                v1::Hello {
                    agent_version: "v".repeat(MAX_VERSION_LEN + 1),
                    ..hello("a", "h:1")
                },
            ),
        ] {
            let e = NodeInfo::try_from(&bad).unwrap_err();
            assert!(
                matches!(&e, ControllerError::HelloField { field: f, .. } if *f == field),
                "{field}: {e}"
            );
            // The refusal names the field and never echoes megabytes back.
            assert!(
                e.to_string().contains(field) && e.to_string().len() < 300,
                "{e}"
            );
        }
    }

    #[test]
    fn a_data_store_takes_no_node_past_its_bound_but_still_updates_its_own() {
        let mut nodes = Nodes::default();
        let info = |i: usize| NodeInfo::try_from(&hello(&format!("n{i}"), "h:1")).unwrap();
        for i in 0..MAX_NODES_PER_DATASTORE {
            nodes.register(info(i)).unwrap();
        }
        let e = nodes.register(info(MAX_NODES_PER_DATASTORE)).unwrap_err();
        assert!(matches!(e, ControllerError::TooManyNodes { .. }), "{e}");
        assert_eq!(nodes.len(), MAX_NODES_PER_DATASTORE);
        // A known node still moves.
        let moved = NodeInfo::try_from(&hello("n0", "h:2")).unwrap();
        nodes.register(moved.clone()).unwrap();
        assert_eq!(nodes.get("n0").map(|n| &n.info), Some(&moved));
    }

    #[test]
    fn the_peer_list_version_moves_when_a_node_joins_or_moves_only() {
        let mut nodes = Nodes::default();
        let info = |id: &str, port| NodeInfo::try_from(&hello(id, &format!("h:{port}"))).unwrap();
        nodes.register(info("a", 1)).unwrap();
        nodes.register(info("b", 2)).unwrap();
        assert_eq!(nodes.peers_version, 2);
        nodes.register(info("b", 2)).unwrap();
        assert_eq!(nodes.peers_version, 2);
        nodes.register(info("b", 3)).unwrap();
        assert_eq!(nodes.peers_version, 3);
        let peers: Vec<&str> = nodes.peers_of("b").map(|n| n.info.id.as_str()).collect();
        assert_eq!(peers, ["a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_replica_was_linked_when_its_agent_says_even_if_this_process_never_saw_it() {
        let mut nodes = Nodes::default();
        nodes
            .register(NodeInfo::try_from(&hello("b", "h:2")).unwrap())
            .unwrap();
        tokio::time::advance(Duration::from_secs(60)).await;
        let now = Instant::now();
        let down_for = |ms| v1::Verdict {
            role: Role::Replica as i32,
            link_up: false,
            link_down_ms: ms,
            ..Default::default()
        };
        let b = nodes.get_mut("b").unwrap();
        b.take_verdict(down_for(LINK_NEVER_UP), now);
        assert_eq!(b.link_up_at, None, "never up: no evidence");
        b.take_verdict(down_for(0), now);
        assert_eq!(
            b.link_up_at, None,
            "down, and how long not said: no evidence"
        );
        b.take_verdict(down_for(300), now);
        assert_eq!(b.link_up_at, Some(now - Duration::from_millis(300)));
        // A later verdict of the same outage moves nothing back.
        b.take_verdict(down_for(400), now + Duration::from_millis(50));
        assert_eq!(b.link_up_at, Some(now - Duration::from_millis(300)));
        // A primary's link fields mean nothing.
        let primary = v1::Verdict {
            role: Role::Primary as i32,
            link_down_ms: 1,
            ..Default::default()
        };
        b.take_verdict(primary, now + Duration::from_millis(60));
        assert_eq!(b.link_up_at, Some(now - Duration::from_millis(300)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_replica_sees_the_primary_down_by_its_probe_bit_or_its_link() {
        let mut nodes = Nodes::default();
        for (id, port) in [("a", 1), ("b", 2), ("c", 3)] {
            nodes
                .register(NodeInfo::try_from(&hello(id, &format!("h:{port}"))).unwrap())
                .unwrap();
        }
        let replica = |link_up, probed, unreachable, peers_version| v1::Verdict {
            role: Role::Replica as i32,
            link_up,
            peers_probed: probed,
            peers_unreachable: unreachable,
            peers_version,
            ..Default::default()
        };
        let now = Instant::now();
        let version = nodes.peers_version;
        // c's peers are a (bit 0) and b (bit 1): a is the primary.
        nodes
            .get_mut("c")
            .unwrap()
            .take_verdict(replica(true, 0b01, 0b01, version), now);
        // b's peers are a (bit 0) and c: it probed a, but about an old list.
        nodes
            .get_mut("b")
            .unwrap()
            .take_verdict(replica(true, 0b01, 0b01, version - 1), now);
        let (_, others) = nodes.views("a");
        let sees = |id: &str| {
            others
                .iter()
                .find(|v| v.id == id)
                .unwrap()
                .sees_primary_down
        };
        assert!(sees("c"));
        assert!(!sees("b"), "bits about another peer list mean nothing");
        // A replica whose link is down sees its primary down too.
        nodes
            .get_mut("b")
            .unwrap()
            .take_verdict(replica(false, 0, 0, version), now);
        let (_, others) = nodes.views("a");
        assert!(
            others
                .iter()
                .find(|v| v.id == "b")
                .unwrap()
                .sees_primary_down
        );
    }
}
