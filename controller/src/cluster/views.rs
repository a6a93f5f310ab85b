//! The view clients are served (each data store's primary and replicas), shared through etcd so
//! that every controller's Sentinel endpoint and `vigil status` name the same primary: the
//! leader mirrors what its reconcilers publish, and the followers watch it.
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use etcd_client::{Client, EventType, GetOptions, Txn, TxnOp, WatchOptions};
use serde::{Deserialize, Serialize};
use vigil_proto::HostPort;

use super::{
    etcd::{Keys, bounded, etcd_error},
    leadership::{Leadership, Term},
};
use crate::{
    error::{ControllerError, Result},
    sentinel::topology::{Channel, Event, Member, Published, StoreView},
};

/// A view that could not be written is tried again this often.
const MIRROR_RETRY: Duration = Duration::from_secs(1);
/// A follower's watch of the views that failed is started again after this long.
const FOLLOW_RETRY: Duration = Duration::from_millis(500);

/// A view as etcd keeps it.
#[derive(Debug, Serialize, Deserialize)]
struct ViewRecord {
    name: String,
    epoch: u64,
    primary: Option<MemberRecord>,
    replicas: Vec<MemberRecord>,
    primary_down: bool,
    /// Absent in views written before maintenance mode.
    #[serde(default)]
    paused: bool,
    #[serde(default)]
    failing_over: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct MemberRecord {
    node: String,
    address: String,
    down: bool,
    disconnected: bool,
}

impl From<&Member> for MemberRecord {
    fn from(m: &Member) -> Self {
        Self {
            node: m.node.clone(),
            address: m.address.to_string(),
            down: m.down,
            disconnected: m.disconnected,
        }
    }
}

impl TryFrom<MemberRecord> for Member {
    type Error = ControllerError;

    fn try_from(m: MemberRecord) -> Result<Self> {
        Ok(Self {
            node: m.node,
            address: m.address.parse::<HostPort>()?,
            down: m.down,
            disconnected: m.disconnected,
        })
    }
}

impl From<&StoreView> for ViewRecord {
    fn from(v: &StoreView) -> Self {
        Self {
            name: v.name.clone(),
            epoch: v.epoch,
            primary: v.primary.as_ref().map(MemberRecord::from),
            replicas: v.replicas.iter().map(MemberRecord::from).collect(),
            primary_down: v.primary_down,
            paused: v.paused,
            failing_over: v.failing_over,
        }
    }
}

impl TryFrom<ViewRecord> for StoreView {
    type Error = ControllerError;

    fn try_from(v: ViewRecord) -> Result<Self> {
        Ok(Self {
            name: v.name,
            epoch: v.epoch,
            primary: v.primary.map(Member::try_from).transpose()?,
            replicas: v
                .replicas
                .into_iter()
                .map(Member::try_from)
                .collect::<Result<_>>()?,
            primary_down: v.primary_down,
            paused: v.paused,
            failing_over: v.failing_over,
        })
    }
}

fn encode(v: &StoreView) -> Vec<u8> {
    // Strings, numbers and booleans always serialize.
    serde_json::to_vec(&ViewRecord::from(v)).unwrap_or_default()
}

fn decode(bytes: &[u8]) -> Result<StoreView> {
    let record: ViewRecord =
        serde_json::from_slice(bytes).map_err(|e| etcd_error("reading a view", e))?;
    StoreView::try_from(record)
}

/// While this controller leads in `term`: writes every view its reconcilers publish that etcd
/// does not have yet. Ends when the term is over (a write refused, or the term changed).
pub async fn mirror(
    client: Client,
    keys: Keys,
    published: Arc<Published>,
    leadership: Arc<Leadership>,
    term: Arc<Term>,
) {
    let mut changes = published.changes();
    let mut written: BTreeMap<String, StoreView> = BTreeMap::new();
    loop {
        if !leadership.holds(term.token) {
            return;
        }
        for view in published.all() {
            if written.get(&view.name) == Some(&view) {
                continue;
            }
            let txn = Txn::new().when([Keys::held(&term)]).and_then([TxnOp::put(
                keys.view(&view.name),
                encode(&view),
                None,
            )]);
            let mut c = client.clone();
            match bounded("writing a view", c.txn(txn)).await {
                Ok(done) if done.succeeded() => {
                    written.insert(view.name.clone(), view);
                }
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(error = %e, datastore = %view.name, "view not mirrored yet");
                    break;
                }
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(MIRROR_RETRY) => {}
        }
    }
}

/// Installs `view` as a follower's, announcing `+switch-master` when its primary moved, as the
/// leader's endpoint did.
fn install(published: &Published, view: StoreView) {
    let before = published.get(&view.name);
    let old = before.as_ref().and_then(|b| b.primary.clone());
    let moved = view
        .primary
        .as_ref()
        .filter(|new| old.as_ref().is_some_and(|o| o.node != new.node))
        .cloned();
    let (name, epoch) = (view.name.clone(), view.epoch);
    published.set(view);
    if let (Some(old), Some(new)) = (old, moved) {
        published.emit(Event {
            datastore: name.clone(),
            epoch,
            channel: Channel::SwitchMaster,
            node: new.node.clone(),
            message: format!(
                "{name} {} {} {} {}",
                old.address.host, old.address.port, new.address.host, new.address.port
            ),
        });
    }
}

/// While this controller follows: reads every view, then applies each change as etcd reports
/// it. Returns on an error (its caller tries again).
pub async fn follow(client: Client, keys: Keys, published: Arc<Published>) -> Result<()> {
    let prefix = keys.views();
    let mut c = client.clone();
    let got = bounded(
        "reading the views",
        c.get(prefix.clone(), Some(GetOptions::new().with_prefix())),
    )
    .await?;
    for kv in got.kvs() {
        match decode(kv.value()) {
            Ok(view) => install(&published, view),
            Err(e) => tracing::warn!(error = %e, "a view in etcd is unreadable; skipped"),
        }
    }
    published.mark_synced();
    let from = got.header().map_or(0, |h| h.revision()) + 1;
    let options = WatchOptions::new().with_prefix().with_start_revision(from);
    let mut stream = bounded("watching the views", c.watch(prefix, Some(options))).await?;
    while let Some(change) = stream
        .message()
        .await
        .map_err(|e| etcd_error("watching the views", e))?
    {
        for event in change.events() {
            if event.event_type() != EventType::Put {
                continue;
            }
            if let Some(kv) = event.kv() {
                match decode(kv.value()) {
                    Ok(view) => install(&published, view),
                    Err(e) => tracing::warn!(error = %e, "a view in etcd is unreadable; skipped"),
                }
            }
        }
    }
    Err(etcd_error("watching the views", "the watch ended"))
}

/// The views clients are served, shared through etcd for as long as the controller runs: while
/// it leads, it mirrors its own; while it follows, it watches the leader's.
pub async fn share(
    client: Client,
    keys: Keys,
    published: Arc<Published>,
    leadership: Arc<Leadership>,
) {
    let mut terms = leadership.subscribe();
    loop {
        let term = terms.borrow_and_update().clone();
        let work = async {
            match term {
                Some(term) => {
                    mirror(
                        client.clone(),
                        keys.clone(),
                        Arc::clone(&published),
                        Arc::clone(&leadership),
                        term,
                    )
                    .await;
                    std::future::pending::<()>().await
                }
                None => loop {
                    if let Err(e) =
                        follow(client.clone(), keys.clone(), Arc::clone(&published)).await
                    {
                        tracing::debug!(error = %e, "watching the leader's views; again shortly");
                    }
                    tokio::time::sleep(FOLLOW_RETRY).await;
                },
            }
        };
        tokio::select! {
            _ = work => {}
            changed = terms.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(node: &str, port: u16) -> Member {
        Member {
            node: node.into(),
            address: HostPort::new("127.0.0.1", port),
            down: false,
            disconnected: port == 7002,
        }
    }

    #[test]
    fn a_view_round_trips_through_etcd_text() {
        let v = StoreView {
            name: "cache".into(),
            epoch: 4,
            primary: Some(member("a", 7000)),
            replicas: vec![member("b", 7001), member("c", 7002)],
            primary_down: true,
            paused: true,
            failing_over: true,
        };
        assert_eq!(decode(&encode(&v)).unwrap(), v);
        assert!(decode(b"{}").is_err());
        // A view written before maintenance mode: not paused, no failover.
        let old =
            br#"{"name":"cache","epoch":1,"primary":null,"replicas":[],"primary_down":false}"#;
        let v = decode(old).unwrap();
        assert!(!v.paused && !v.failing_over);
    }

    #[tokio::test]
    async fn a_follower_announces_a_moved_primary_after_installing_the_view() {
        let published = Published::new();
        let mut events = published.subscribe();
        let first = StoreView {
            name: "cache".into(),
            epoch: 1,
            primary: Some(member("a", 7000)),
            replicas: vec![member("b", 7001)],
            ..StoreView::default()
        };
        install(&published, first.clone());
        assert!(events.try_recv().is_err(), "a first view moves nothing");
        let moved = StoreView {
            epoch: 2,
            primary: Some(member("b", 7001)),
            replicas: vec![member("a", 7000)],
            ..first
        };
        install(&published, moved.clone());
        let e = events.try_recv().unwrap();
        assert_eq!(e.channel, Channel::SwitchMaster);
        assert_eq!(e.message, "cache 127.0.0.1 7000 127.0.0.1 7001");
        assert_eq!(published.get("cache"), Some(moved));
    }
}
