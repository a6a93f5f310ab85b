//! The election: this controller's lease in etcd, kept alive; its member key; its candidacy in
//! etcd's election, and what it observes of the leader. One session holds one lease; a session
//! that fails (etcd unreachable, the lease ran out, another controller leads while this one
//! thought it did) steps down first, then a new session begins after a bounded backoff.
use std::{collections::VecDeque, sync::Arc, time::Duration};

use etcd_client::{Client, EventType, KeyValue, PutOptions, WatchOptions};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use super::{
    etcd::{Keys, bounded, etcd_error},
    leadership::{Leadership, Term},
};
use crate::{
    alerts::{Alert, Alerts},
    error::{ControllerError, Result},
    member::ControllerInfo,
    metrics::Metrics,
    sentinel::topology::{OtherSentinel, Published},
};

/// The leader lease's time to live, in whole seconds (etcd's unit); etcd raises it to its own
/// minimum (1.5 × its election timeout) when that is longer.
pub const DEFAULT_LEADER_LEASE_SECS: u64 = 1;
/// Renewals of the lease sent and not answered, at most: more means etcd does not answer.
const UNANSWERED: usize = 4;
/// A failed session is followed by a new one after this long, doubling up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A renewal (or reopening the renewals' stream) that takes longer is given up, to try again.
const RENEW_WITHIN: Duration = Duration::from_millis(200);
/// Leaders observed and not yet taken in by the session, at most.
const LEADERS_QUEUE: usize = 16;
/// The other controllers listed for `SENTINEL sentinels`, at most.
const MAX_MEMBERS: i64 = 64;

#[derive(Clone)]
pub struct Election {
    pub client: Client,
    pub keys: Keys,
    pub leadership: Arc<Leadership>,
    pub lease_secs: u64,
    pub published: Arc<Published>,
    pub metrics: Arc<Metrics>,
}

impl Election {
    /// Runs sessions until `shutdown` turns true; then resigns (revokes its lease) so that
    /// another controller leads at once.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut alerts = Alerts::default();
        let mut backoff = BACKOFF_MIN;
        loop {
            let mut lease = None;
            let result = self.session(&mut shutdown, &mut lease).await;
            let was_leading = self.leadership.term().is_some();
            self.leadership.step_down();
            if let Some(id) = lease {
                // Best effort: a lease not revoked runs out by itself within its TTL.
                let mut c = self.client.clone();
                let _ = bounded("revoking the lease", c.lease_revoke(id)).await;
            }
            let e = match result {
                Ok(()) => return,
                Err(e) => e,
            };
            if was_leading {
                tracing::warn!(event = "leadership_lost", error = %e, "this controller no longer leads: it sends nothing more to agents");
            }
            if matches!(e, ControllerError::Etcd { .. }) && alerts.due(Alert::EtcdUnavailable) {
                self.metrics.alert(Alert::EtcdUnavailable.name());
                tracing::error!(event = Alert::EtcdUnavailable.name(), error = %e,
                    "etcd is unreachable or has no quorum: no controller can lead, so nothing is failed over until it is back");
            } else {
                tracing::info!(error = %e, "election session ended; starting a new one");
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One lease, from its grant until it is lost or `shutdown`.
    async fn session(
        &self,
        shutdown: &mut watch::Receiver<bool>,
        lease: &mut Option<i64>,
    ) -> Result<()> {
        let me = &self.leadership.me;
        let mut c = self.client.clone();
        let asked = Instant::now();
        let grant = bounded(
            "granting the leader lease",
            c.lease_grant(self.lease_secs as i64, None),
        )
        .await?;
        *lease = Some(grant.id());
        let ttl = |secs: i64| Duration::from_secs(secs.max(1) as u64);
        let mut lease_until = asked + ttl(grant.ttl());
        bounded(
            "announcing this controller",
            c.put(
                self.keys.controller(&me.name),
                me.to_json(),
                Some(PutOptions::new().with_lease(grant.id())),
            ),
        )
        .await?;
        // The renewals' stream, reopened (on whichever etcd member answers) when it breaks: one
        // etcd member lost is no reason to give up a lease the others still renew.
        let mut keepalive =
            Some(bounded("keeping the lease alive", c.lease_keep_alive(grant.id())).await?);
        let (seen_tx, mut seen) = mpsc::channel(LEADERS_QUEUE);
        let observer = tokio::spawn(observe(self.client.clone(), self.keys.election(), seen_tx));
        let mut campaign = Box::pin(campaign_with(
            self.client.clone(),
            self.keys.election(),
            me.to_json(),
            grant.id(),
        ));
        let mut renew =
            tokio::time::interval((ttl(grant.ttl()) / 4).max(Duration::from_millis(50)));
        let mut sent: VecDeque<Instant> = VecDeque::new();
        let mut term: Option<Term> = None;
        // The election key of the leader last observed.
        let mut observed: Option<Vec<u8>> = None;
        let members = tokio::spawn(watch_members(
            self.client.clone(),
            self.keys.clone(),
            me.name.clone(),
            Arc::clone(&self.published),
        ));
        let result = loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    tracing::info!("resigning: the controller stops");
                    break Ok(());
                }
                _ = renew.tick() => {
                    if keepalive.is_none() {
                        sent.clear();
                        let mut c = self.client.clone();
                        keepalive = tokio::time::timeout(RENEW_WITHIN, c.lease_keep_alive(grant.id()))
                            .await
                            .ok()
                            .and_then(|r| r.ok());
                    }
                    let Some((keeper, _)) = keepalive.as_mut() else { continue };
                    if sent.len() >= UNANSWERED {
                        // This stream's member does not answer: try another.
                        keepalive = None;
                        continue;
                    }
                    sent.push_back(Instant::now());
                    if tokio::time::timeout(RENEW_WITHIN, keeper.keep_alive()).await.map_or(true, |r| r.is_err()) {
                        keepalive = None;
                    }
                }
                renewal = async {
                    match keepalive.as_mut() {
                        Some((_, renewals)) => renewals.message().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let at = sent.pop_front().unwrap_or(asked);
                    match renewal {
                        Ok(Some(r)) if r.ttl() > 0 => {
                            lease_until = at + ttl(r.ttl());
                            if term.is_some() {
                                self.leadership.renewed(lease_until);
                            }
                        }
                        Ok(Some(_)) => break Err(etcd_error("keeping the lease alive", "the lease expired in etcd")),
                        Ok(None) | Err(_) => keepalive = None,
                    }
                }
                _ = tokio::time::sleep_until(lease_until) => {
                    // A timer this late means this process did not run (stopped, frozen): its
                    // lease ran out by its own fault, not etcd's.
                    let late = Instant::now().saturating_duration_since(lease_until);
                    if late > RENEW_WITHIN {
                        break Err(ControllerError::Paused(late));
                    }
                    break Err(etcd_error("keeping the lease alive", "the lease ran out before etcd renewed it"));
                }
                won = &mut campaign, if term.is_none() => {
                    let won = match won {
                        Ok(w) => w,
                        Err(e) => {
                            // Campaigning again with the same lease finds the same candidacy.
                            tracing::debug!(error = %e, "campaign interrupted; campaigning again");
                            tokio::time::sleep(BACKOFF_MIN).await;
                            campaign = Box::pin(campaign_with(
                                self.client.clone(),
                                self.keys.election(),
                                me.to_json(),
                                grant.id(),
                            ));
                            continue;
                        }
                    };
                    let Some(key) = won.leader() else {
                        break Err(etcd_error("campaigning", "elected without a leader key"));
                    };
                    let t = Term { token: key.rev() as u64, key: key.key().to_vec() };
                    tracing::info!(event = "leading", name = %me.name, leadership = t.token, "this controller leads");
                    self.leadership.lead(t.clone(), lease_until);
                    term = Some(t);
                }
                kv = seen.recv() => {
                    let Some(kv) = kv else {
                        break Err(etcd_error("observing the election", "the observer stopped"));
                    };
                    let kv = match kv {
                        Seen::Leader(kv) => kv,
                        Seen::Gone(key) => {
                            match &term {
                                Some(t) if t.key == key => break Err(ControllerError::Deposed),
                                // An earlier leader's key, gone as this one was elected.
                                Some(_) => {}
                                // Nobody leads until the next one is elected.
                                None if observed.as_ref() == Some(&key) => self.leadership.set_leader(None),
                                None => {}
                            }
                            continue;
                        }
                    };
                    observed = Some(kv.key().to_vec());
                    if let Some(t) = &term && kv.key() != t.key.as_slice() {
                        break Err(ControllerError::Deposed);
                    }
                    let leader = ControllerInfo::from_json(kv.value());
                    let other = leader.as_ref().filter(|l| l.name != me.name);
                    if term.is_none() && other.is_some() && leader != self.leadership.leader() {
                        tracing::info!(event = "following", leader = ?leader.as_ref().map(|l| &l.name), "another controller leads");
                    }
                    self.leadership.set_leader(leader);
                }
            }
        };
        members.abort();
        observer.abort();
        result
    }
}

/// Campaigns for the leadership with `lease`, until elected. Owns its client, so a campaign
/// that failed can be replaced by a new one.
async fn campaign_with(
    client: Client,
    election: String,
    value: Vec<u8>,
    lease: i64,
) -> std::result::Result<etcd_client::CampaignResponse, etcd_client::Error> {
    let mut c = client;
    c.campaign(election, value, lease).await
}

/// What the observer saw of the election.
enum Seen {
    /// A leader, by its election key and value.
    Leader(KeyValue),
    /// This leader's key was deleted.
    Gone(Vec<u8>),
}

/// Sends each leader etcd's election proclaims (its key and value), in order, and when that
/// leader's key is deleted (its lease ran out or was revoked), so that no controller keeps
/// naming a dead leader while the next is elected. etcd answers an observer only once there is
/// a leader, so this waits unbounded; a broken stream is opened again (on whichever member
/// answers) after a pause. The session aborts it.
async fn observe(client: Client, election: String, seen: mpsc::Sender<Seen>) {
    let mut c = client;
    loop {
        if let Ok(mut leaders) = c.observe(election.clone()).await {
            let mut gone: Option<(Vec<u8>, etcd_client::WatchStream)> = None;
            loop {
                tokio::select! {
                    leader = leaders.message() => {
                        let Ok(Some(r)) = leader else { break };
                        let Some(kv) = r.kv() else { continue };
                        let from = WatchOptions::new().with_start_revision(kv.mod_revision() + 1);
                        gone = c.watch(kv.key(), Some(from)).await.ok().map(|w| (kv.key().to_vec(), w));
                        if seen.send(Seen::Leader(kv.clone())).await.is_err() {
                            return;
                        }
                    }
                    change = async {
                        match gone.as_mut() {
                            Some((_, w)) => w.message().await,
                            None => std::future::pending().await,
                        }
                    } => match change {
                        Ok(Some(r)) if r.events().iter().any(|e| e.event_type() == EventType::Delete) => {
                            if let Some((key, _)) = gone.take()
                                && seen.send(Seen::Gone(key)).await.is_err()
                            {
                                return;
                            }
                        }
                        Ok(Some(_)) => {}
                        _ => gone = None,
                    },
                }
            }
        }
        tokio::time::sleep(BACKOFF_MIN).await;
    }
}

/// Keeps the published list of the other controllers' Sentinel endpoints as etcd has it, for as
/// long as the session runs (it aborts this).
async fn watch_members(client: Client, keys: Keys, me: String, published: Arc<Published>) {
    loop {
        // Any error: read and watch again after a pause.
        members_until_changed(&client, &keys, &me, &published).await;
        tokio::time::sleep(BACKOFF_MIN).await;
    }
}

/// Publishes the other controllers' Sentinel endpoints, then waits for a change to the list.
async fn members_until_changed(client: &Client, keys: &Keys, me: &str, published: &Published) {
    use etcd_client::GetOptions;
    let prefix = keys.controllers();
    let mut c = client.clone();
    let options = GetOptions::new().with_prefix().with_limit(MAX_MEMBERS);
    let Ok(got) = bounded(
        "listing the controllers",
        c.get(prefix.clone(), Some(options)),
    )
    .await
    else {
        return;
    };
    let others = got
        .kvs()
        .iter()
        .filter_map(|kv| ControllerInfo::from_json(kv.value()))
        .filter(|m| m.name != me)
        .filter_map(|m| {
            // One whose address is not HOST:PORT is left out of the list clients get.
            Some(OtherSentinel {
                address: m.sentinel.parse().ok()?,
                name: m.name,
            })
        })
        .collect();
    published.set_others(others);
    let from = got.header().map_or(0, |h| h.revision()) + 1;
    let options = WatchOptions::new().with_prefix().with_start_revision(from);
    let Ok(mut stream) = bounded("watching the controllers", c.watch(prefix, Some(options))).await
    else {
        return;
    };
    // A change, not the watch's own creation notice (which has no events), ends the wait.
    while let Ok(Some(r)) = stream.message().await {
        if !r.events().is_empty() {
            return;
        }
    }
}
