//! The data stores this controller runs, each behind its reconciler's channel, while it leads.
//! Looked up when an agent's session starts or the CLI asks; never on the verdict path.
//!
//! Reconcilers run only in a leader's term: the registry starts them when this controller is
//! elected (each with its state as the backend has it) and forgets them when it steps down
//! (each reconciler also ends by itself when its term does). A single controller without etcd
//! is elected forever, at start.
use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use tokio::sync::{Mutex, mpsc};
use vigil_proto::{DEFAULT_PRIORITY, v1};

use super::{
    actor::{self, Input},
    nodes::NodeInfo,
    settings::Settings,
    state::{Persist, StateFile, StoreState, valid_name},
};
use crate::{
    cluster::{Leadership, Term, state_store::EtcdStates},
    error::{ControllerError, Result},
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

pub struct Registry {
    stores: Mutex<BTreeMap<String, mpsc::Sender<Input>>>,
    backend: Backend,
    settings: Settings,
    /// Only data stores from the configuration; agents of others are refused.
    refuse_unknown: bool,
    /// The configured data stores and their nodes, known before their agents connect.
    configured: BTreeMap<String, Vec<NodeInfo>>,
    pub leadership: Arc<Leadership>,
    pub published: Arc<Published>,
    pub metrics: Arc<Metrics>,
}

impl Registry {
    pub fn new(
        backend: Backend,
        settings: Settings,
        refuse_unknown: bool,
        configured: Vec<(String, Vec<NodeInfo>)>,
        leadership: Arc<Leadership>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            stores: Mutex::new(BTreeMap::new()),
            backend,
            settings,
            refuse_unknown,
            configured: configured.into_iter().collect(),
            leadership,
            published: Published::new(),
            metrics,
        })
    }

    /// One of several controllers (on etcd), rather than the only one.
    pub fn several(&self) -> bool {
        matches!(self.backend, Backend::Etcd(_))
    }

    /// The term this controller leads in now, or why it cannot act.
    fn term(&self) -> Result<Arc<Term>> {
        self.leadership
            .term()
            .filter(|t| self.leadership.holds(t.token))
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
            match states.names().await {
                Ok(known) => names.extend(known),
                Err(e) => {
                    tracing::error!(error = %e, "could not list the data stores in etcd; each starts when its agents connect")
                }
            }
        }
        names.sort();
        names.dedup();
        let mut stores = self.stores.lock().await;
        stores.clear();
        for name in names {
            let nodes = self.known_nodes(&name);
            match self.start(&name, nodes, Arc::clone(&term)).await {
                Ok(tx) => {
                    stores.insert(name, tx);
                }
                Err(e) => {
                    tracing::error!(datastore = %name, error = %e, "could not start the data store")
                }
            }
        }
    }

    /// Follows this controller's terms: reconcilers for each new one, none between them.
    pub async fn follow_terms(self: Arc<Self>) {
        let mut terms = self.leadership.subscribe();
        loop {
            let term = terms.borrow_and_update().clone();
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
        if let Some(tx) = stores.get(name).filter(|tx| !tx.is_closed()) {
            return Ok(tx.clone());
        }
        if self.refuse_unknown && !self.configured.contains_key(name) {
            return Err(ControllerError::UnknownDatastore(name.to_string()));
        }
        let nodes = self.known_nodes(name);
        let tx = self.start(name, nodes, term).await?;
        stores.insert(name.to_string(), tx.clone());
        Ok(tx)
    }

    /// The reconciler of `name`, while this controller leads.
    pub async fn get(&self, name: &str) -> Result<mpsc::Sender<Input>> {
        self.term()?;
        self.stores
            .lock()
            .await
            .get(name)
            .cloned()
            .ok_or_else(|| ControllerError::NoSuchDatastore(name.to_string()))
    }

    /// Every reconciler, while this controller leads.
    pub async fn all(&self) -> Result<Vec<(String, mpsc::Sender<Input>)>> {
        self.term()?;
        Ok(self
            .stores
            .lock()
            .await
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
