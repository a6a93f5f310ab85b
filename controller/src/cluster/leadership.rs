//! Whether this controller leads, and until when it may act on it. The election task writes it;
//! the registry starts and stops the data stores' reconcilers on its changes, and every command
//! and desired state a reconciler sends is first checked against it.
//!
//! A term is one leadership: its token is the revision at which etcd created the election key,
//! so every new leader's token is higher than any before it. The term is valid until the leader
//! lease's last renewal runs out, timed from when that renewal was *sent* (before etcd took it),
//! on this process's monotonic clock: a leader that was stopped (SIGSTOP, a long GC-like pause,
//! a VM freeze) and resumes finds its term over before it does anything, even before its
//! election task has run.
use std::sync::{
    Arc, RwLock,
    atomic::{AtomicU64, Ordering},
};

use tokio::{sync::watch, time::Instant};

use crate::member::ControllerInfo;

/// One leadership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    /// Agents refuse commands carrying a lower token than the highest they have seen. 0 is the
    /// single controller without etcd.
    pub token: u64,
    /// The election key in etcd: writes are conditioned on it still existing with this token as
    /// its create revision.
    pub key: Vec<u8>,
}

/// No renewal: the term is valid forever (the single controller without etcd).
const FOREVER: u64 = u64::MAX;

pub struct Leadership {
    /// This controller.
    pub me: ControllerInfo,
    term: watch::Sender<Option<Arc<Term>>>,
    /// The clock `valid_until_ms` counts from.
    base: Instant,
    /// Until when the current term may be acted on, in ms since `base`.
    valid_until_ms: AtomicU64,
    /// The controller that leads, as last observed (this one, another, or none).
    leader: RwLock<Option<ControllerInfo>>,
    /// Bumped whenever who leads changes, for those waiting to learn of a leader.
    leader_changes: watch::Sender<u64>,
}

impl Leadership {
    /// The single controller without etcd: it leads, always, with token 0.
    pub fn embedded(me: ControllerInfo) -> Arc<Self> {
        let l = Self::following(me);
        l.valid_until_ms.store(FOREVER, Ordering::Release);
        let me = l.me.clone();
        l.set_leader(Some(me));
        l.term.send_replace(Some(Arc::new(Term {
            token: 0,
            key: Vec::new(),
        })));
        l
    }

    /// A controller of several, not leading until its election says so.
    pub fn following(me: ControllerInfo) -> Arc<Self> {
        Arc::new(Self {
            me,
            term: watch::channel(None).0,
            base: Instant::now(),
            valid_until_ms: AtomicU64::new(0),
            leader: RwLock::new(None),
            leader_changes: watch::channel(0).0,
        })
    }

    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_millis() as u64
    }

    /// The current term, if this controller leads (its validity not checked).
    pub fn term(&self) -> Option<Arc<Term>> {
        self.term.borrow().clone()
    }

    /// Changes of term, for the registry and each reconciler.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Term>>> {
        self.term.subscribe()
    }

    /// This controller leads in the term `token`, and its leader lease has not run out: what
    /// must hold before anything is sent in that term's name.
    pub fn holds(&self, token: u64) -> bool {
        self.term().is_some_and(|t| t.token == token)
            && self.ms(Instant::now()) < self.valid_until_ms.load(Ordering::Acquire)
    }

    /// The term this controller leads in now, if its lease has not run out.
    pub fn held_term(&self) -> Option<Arc<Term>> {
        self.term().filter(|t| self.holds(t.token))
    }

    /// Elected: `term` is valid until `until`.
    pub(crate) fn lead(&self, term: Term, until: Instant) {
        self.renewed(until);
        self.term.send_replace(Some(Arc::new(term)));
        // After the term: whoever wakes on this change finds this controller leading.
        let me = self.me.clone();
        self.set_leader(Some(me));
    }

    /// The leader lease was renewed: valid until `until`.
    pub(crate) fn renewed(&self, until: Instant) {
        self.valid_until_ms.store(self.ms(until), Ordering::Release);
    }

    /// No longer leading (lease run out, etcd unreachable, shutting down).
    pub(crate) fn step_down(&self) {
        self.valid_until_ms.store(0, Ordering::Release);
        self.term.send_replace(None);
        if self.leader().is_some_and(|l| l.name == self.me.name) {
            // Nobody is known to lead until the election says who.
            self.set_leader(None);
        }
    }

    /// The controller that leads, as last observed.
    pub fn leader(&self) -> Option<ControllerInfo> {
        self.leader
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_leader(&self, leader: Option<ControllerInfo>) {
        *self.leader.write().unwrap_or_else(|p| p.into_inner()) = leader;
        self.leader_changes.send_modify(|n| *n += 1);
    }

    /// Wakes whenever who leads changes (as observed, or because this controller was elected).
    pub fn leader_changes(&self) -> watch::Receiver<u64> {
        self.leader_changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn me() -> ControllerInfo {
        ControllerInfo {
            name: "a".into(),
            grpc: "http://127.0.0.1:1".into(),
            sentinel: "127.0.0.1:2".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_term_holds_only_until_its_lease_runs_out_and_only_for_its_token() {
        let l = Leadership::following(me());
        assert!(l.held_term().is_none());
        let until = Instant::now() + Duration::from_millis(1_000);
        l.lead(
            Term {
                token: 7,
                key: b"k".to_vec(),
            },
            until,
        );
        assert!(l.holds(7));
        assert!(!l.holds(6), "another term's token");
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(l.holds(7));
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(!l.holds(7), "the lease ran out, and no renewal came");
        l.renewed(Instant::now() + Duration::from_millis(500));
        assert!(l.holds(7));
        l.step_down();
        assert!(!l.holds(7) && l.term().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_single_controller_leads_forever_with_token_zero() {
        let l = Leadership::embedded(me());
        tokio::time::advance(Duration::from_secs(86_400 * 365)).await;
        assert!(l.holds(0));
        assert_eq!(l.leader().map(|c| c.name), Some("a".into()));
    }
}
