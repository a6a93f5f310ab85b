//! The data stores this controller runs, each behind its reconciler's channel, while it leads.
//! Looked up when an agent's session starts or the CLI asks; never on the verdict path.
//!
//! Reconcilers run only in a leader's term: the registry starts them when this controller is
//! elected (each with its state as the backend has it) and forgets them when it steps down
//! (each reconciler also ends by itself when its term does). A single controller without etcd
//! is elected forever, at start.
use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::{Mutex, mpsc};
use vigil_proto::{DEFAULT_PRIORITY, limits::valid_name, v1};

use super::{
    actor::{self, Input},
    etcd_state::EtcdStates,
    nodes::NodeInfo,
    settings::Settings,
    state::{Persist, StateFile, StoreState},
};
use crate::{
    cluster::{Leadership, Term},
    error::{ControllerError, Result},
    hooks::Hooks,
    metrics::Metrics,
    sentinel::topology::Published,
};

/// Where the data stores' state is kept.
pub enum Backend {
    /// One file per data store in this folder: the single controller.
    Files(PathBuf),
    /// etcd, under the installation's prefix: several controllers.
    Etcd(Box<EtcdStates>),
}

/// A running reconciler: the term it runs in, and its inbox.
struct Running {
    term: u64,
    tx: mpsc::Sender<Input>,
}

impl Running {
    /// Runs in `term`, and has not stopped.
    fn serves(&self, term: u64) -> bool {
        self.term == term && !self.tx.is_closed()
    }
}

/// Which data stores an agent's hello may bring into being.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    /// Only data stores from the configuration; agents of others are refused.
    pub refuse_unknown: bool,
    /// At most this many data stores run: a hello naming one more is refused, so names sent
    /// over the network cannot grow the controller (or etcd) without bound.
    pub max_datastores: usize,
}

pub struct Registry {
    stores: Mutex<BTreeMap<String, Running>>,
    backend: Backend,
    settings: Settings,
    admission: Admission,
    /// The configured data stores and their nodes, known before their agents connect.
    configured: BTreeMap<String, Vec<NodeInfo>>,
    pub leadership: Arc<Leadership>,
    pub published: Arc<Published>,
    pub metrics: Arc<Metrics>,
    /// 1 + the token of the last term whose data stores were all loaded (0: none yet): the
    /// leader's readiness.
    loaded: AtomicU64,
    /// The notify and client-reconfig hooks every reconciler raises.
    hooks: Hooks,
}

impl Registry {
    pub fn new(
        backend: Backend,
        settings: Settings,
        admission: Admission,
        configured: Vec<(String, Vec<NodeInfo>)>,
        leadership: Arc<Leadership>,
        metrics: Arc<Metrics>,
        hooks: Hooks,
    ) -> Arc<Self> {
        Arc::new(Self {
            stores: Mutex::new(BTreeMap::new()),
            backend,
            settings,
            admission,
            configured: configured.into_iter().collect(),
            leadership,
            published: Published::new(),
            metrics,
            loaded: AtomicU64::new(0),
            hooks,
        })
    }

    /// Whether every data store of the term `token` was loaded (or failed to, which was logged).
    pub fn loaded(&self, token: u64) -> bool {
        self.loaded.load(Ordering::Acquire) == token.saturating_add(1)
    }

    /// One of several controllers (on etcd), rather than the only one.
    pub fn several(&self) -> bool {
        matches!(self.backend, Backend::Etcd(_))
    }

    /// The term this controller leads in now, or why it cannot act.
    fn term(&self) -> Result<Arc<Term>> {
        self.leadership
            .held_term()
            .ok_or_else(|| ControllerError::NotLeader {
                leader: self
                    .leadership
                    .leader()
                    .filter(|l| l.name != self.leadership.me.name),
            })
    }

    async fn start(
        &self,
        name: &str,
        known_nodes: Vec<NodeInfo>,
        term: Arc<Term>,
    ) -> Result<mpsc::Sender<Input>> {
        if !valid_name(name) {
            return Err(ControllerError::BadName(name.to_string()));
        }
        let (state, persist, place): (StoreState, Box<dyn Persist>, String) = match &self.backend {
            Backend::Files(dir) => {
                let file = StateFile::new(dir, name)?;
                let place = file.path().display().to_string();
                (file.load()?, Box::new(file), place)
            }
            Backend::Etcd(states) => (
                states.load(name).await?,
                Box::new(states.persist(name, Arc::clone(&term))),
                states.keys.state(name),
            ),
        };
        tracing::info!(datastore = name, epoch = state.epoch, primary = ?state.primary, state = %place, leadership = term.token, "data store loaded");
        Ok(actor::spawn(
            name.to_string(),
            self.settings.clone(),
            persist,
            state,
            known_nodes,
            Arc::clone(&self.published),
            Arc::clone(&self.metrics),
            self.hooks.clone(),
            Arc::clone(&self.leadership),
            term,
        ))
    }

    /// The nodes of `name` known before their agents connect: the configured ones, and those of
    /// the view this controller serves (a follower's, from etcd). A new leader so keeps naming
    /// the primary to clients while the agents reconnect to it; each agent's hello then says
    /// all the rest (zone, priority, flavour).
    fn known_nodes(&self, name: &str) -> Vec<NodeInfo> {
        let mut nodes = self.configured.get(name).cloned().unwrap_or_default();
        if let Some(view) = self.published.get(name) {
            for m in view.primary.iter().chain(view.replicas.iter()) {
                if !nodes.iter().any(|n| n.id == m.node) {
                    nodes.push(NodeInfo {
                        id: m.node.clone(),
                        address: m.address.clone(),
                        zone: String::new(),
                        priority: DEFAULT_PRIORITY,
                        flavour: v1::Flavour::Unspecified,
                    });
                }
            }
        }
        nodes
    }

    /// Elected: starts a reconciler for every configured data store and every one the backend
    /// has a state for. One that cannot be loaded now is started when its agents connect.
    pub async fn lead(&self, term: Arc<Term>) {
        let mut names: Vec<String> = self.configured.keys().cloned().collect();
        if let Backend::Etcd(states) = &self.backend {
            match states.names(self.admission.max_datastores).await {
                Ok(known) => names.extend(known),
                Err(e) => {
                    tracing::error!(error = %e, "could not list the data stores in etcd; each starts when its agents connect")
                }
            }
        }
        names.sort();
        names.dedup();
        let mut stores = self.stores.lock().await;
        // Those an agent's hello already started in this term stay; any other is over.
        stores.retain(|_, r| r.serves(term.token));
        for name in names {
            if stores.contains_key(&name) {
                continue;
            }
            let nodes = self.known_nodes(&name);
            match self.start(&name, nodes, Arc::clone(&term)).await {
                Ok(tx) => {
                    stores.insert(
                        name,
                        Running {
                            term: term.token,
                            tx,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(datastore = %name, error = %e, "could not start the data store")
                }
            }
        }
        self.loaded
            .store(term.token.saturating_add(1), Ordering::Release);
    }

    /// Follows this controller's terms: reconcilers for each new one, none between them.
    pub async fn follow_terms(self: Arc<Self>) {
        let mut terms = self.leadership.subscribe();
        loop {
            let term = terms.borrow_and_update().clone();
            self.metrics.leading.set(i64::from(term.is_some()));
            match term {
                Some(term) => self.lead(term).await,
                None => self.stores.lock().await.clear(),
            }
            if terms.changed().await.is_err() {
                return;
            }
        }
    }

    /// The reconciler of `name`, started on first sight unless unknown stores are refused.
    pub async fn get_or_start(&self, name: &str) -> Result<mpsc::Sender<Input>> {
        if !valid_name(name) {
            return Err(ControllerError::BadName(name.to_string()));
        }
        let term = self.term()?;
        let mut stores = self.stores.lock().await;
        if let Some(r) = stores.get(name).filter(|r| r.serves(term.token)) {
            return Ok(r.tx.clone());
        }
        if !self.configured.contains_key(name) {
            if self.admission.refuse_unknown {
                return Err(ControllerError::UnknownDatastore(name.to_string()));
            }
            if stores.len() >= self.admission.max_datastores {
                return Err(ControllerError::TooManyDatastores(
                    self.admission.max_datastores,
                ));
            }
        }
        let nodes = self.known_nodes(name);
        let token = term.token;
        let tx = self.start(name, nodes, term).await?;
        stores.insert(
            name.to_string(),
            Running {
                term: token,
                tx: tx.clone(),
            },
        );
        Ok(tx)
    }

    /// The reconciler of `name`, while this controller leads.
    pub async fn get(&self, name: &str) -> Result<mpsc::Sender<Input>> {
        let term = self.term()?;
        self.stores
            .lock()
            .await
            .get(name)
            .filter(|r| r.serves(term.token))
            .map(|r| r.tx.clone())
            .ok_or_else(|| ControllerError::NoSuchDatastore(name.to_string()))
    }

    /// The state of `name` as the backend keeps it, read without a reconciler: how a controller
    /// that does not lead answers `vigil history` (from etcd; a lone controller always leads).
    pub async fn stored_state(&self, name: &str) -> Result<StoreState> {
        if !valid_name(name) {
            return Err(ControllerError::BadName(name.to_string()));
        }
        match &self.backend {
            Backend::Files(dir) => StateFile::new(dir, name)?.load(),
            Backend::Etcd(states) => states.load(name).await,
        }
    }

    /// Every reconciler, while this controller leads.
    pub async fn all(&self) -> Result<Vec<(String, mpsc::Sender<Input>)>> {
        let term = self.term()?;
        Ok(self
            .stores
            .lock()
            .await
            .iter()
            .filter(|(_, r)| r.serves(term.token))
            .map(|(k, r)| (k.clone(), r.tx.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::ControllerInfo;

    fn registry(dir: &std::path::Path, leadership: Arc<Leadership>) -> Arc<Registry> {
        Registry::new(
            Backend::Files(dir.to_path_buf()),
            Settings::default(),
            Admission {
                refuse_unknown: false,
                max_datastores: 2,
            },
            Vec::new(),
            leadership,
            Metrics::new(),
            Hooks::none(Metrics::new()),
        )
    }

    fn me() -> ControllerInfo {
        ControllerInfo {
            name: "c1".into(),
            grpc: "http://127.0.0.1:1".into(),
            sentinel: "127.0.0.1:2".into(),
        }
    }

    /// An agent's hello can start a data store before the registry hears of the term it was
    /// elected in; the term's start keeps that reconciler rather than starting a second one,
    /// which would hold the state without the agents' sessions.
    #[tokio::test]
    async fn a_store_an_agent_started_in_this_term_is_not_started_twice() {
        let dir = tempfile::tempdir().unwrap();
        let leadership = Leadership::embedded(me());
        let r = registry(dir.path(), Arc::clone(&leadership));
        let first = r.get_or_start("cache").await.unwrap();
        r.lead(leadership.term().unwrap()).await;
        let now = r.get("cache").await.unwrap();
        assert!(now.same_channel(&first), "the term's start replaced it");
        assert_eq!(r.all().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_controller_that_does_not_lead_runs_no_store_and_says_who_leads() {
        let dir = tempfile::tempdir().unwrap();
        let leadership = Leadership::following(me());
        let r = registry(dir.path(), Arc::clone(&leadership));
        let e = r.get_or_start("cache").await.unwrap_err();
        assert!(
            matches!(e, ControllerError::NotLeader { leader: None }),
            "{e}"
        );
        let other = ControllerInfo {
            name: "c2".into(),
            ..me()
        };
        leadership.set_leader(Some(other.clone()));
        let e = r.get_or_start("cache").await.unwrap_err();
        assert!(
            matches!(e, ControllerError::NotLeader { leader: Some(ref l) } if *l == other),
            "{e}"
        );
        assert!(r.all().await.is_err());
    }

    #[tokio::test]
    async fn agents_cannot_bring_more_data_stores_into_being_than_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let leadership = Leadership::embedded(me());
        let r = registry(dir.path(), leadership);
        r.get_or_start("a").await.unwrap();
        r.get_or_start("b").await.unwrap();
        let e = r.get_or_start("c").await.unwrap_err();
        assert!(matches!(e, ControllerError::TooManyDatastores(2)), "{e}");
        assert!(!dir.path().join("c.json").exists());
        // Those that run are still found.
        r.get_or_start("a").await.unwrap();
        assert_eq!(r.all().await.unwrap().len(), 2);
    }
}
