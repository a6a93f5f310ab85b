//! The data stores this controller runs, each behind its reconciler's channel. Looked up when an
//! agent's session starts or the CLI asks; never on the verdict path.
use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use tokio::sync::mpsc;

use super::{
    actor::{self, Input},
    nodes::NodeInfo,
    settings::Settings,
    state::{StateFile, valid_name},
};
use crate::{
    error::{ControllerError, Result},
    metrics::Metrics,
    sentinel::topology::Published,
};

pub struct Registry {
    stores: Mutex<BTreeMap<String, mpsc::Sender<Input>>>,
    data_dir: PathBuf,
    settings: Settings,
    /// Only data stores from the configuration; agents of others are refused.
    refuse_unknown: bool,
    pub published: Arc<Published>,
    pub metrics: Arc<Metrics>,
}

impl Registry {
    pub fn new(
        data_dir: PathBuf,
        settings: Settings,
        refuse_unknown: bool,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            stores: Mutex::new(BTreeMap::new()),
            data_dir,
            settings,
            refuse_unknown,
            published: Published::new(),
            metrics,
        })
    }

    fn stores(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, mpsc::Sender<Input>>> {
        self.stores.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start(&self, name: &str, known_nodes: Vec<NodeInfo>) -> Result<mpsc::Sender<Input>> {
        let file = StateFile::new(&self.data_dir, name)?;
        let state = file.load()?;
        tracing::info!(datastore = name, epoch = state.epoch, primary = ?state.primary, state = %file.path().display(), "data store loaded");
        Ok(actor::spawn(
            name.to_string(),
            self.settings.clone(),
            Box::new(file),
            state,
            known_nodes,
            Arc::clone(&self.published),
            Arc::clone(&self.metrics),
        ))
    }

    /// Starts a configured data store (its state is loaded, its nodes known in advance).
    pub fn configure(&self, name: &str, nodes: Vec<NodeInfo>) -> Result<()> {
        let tx = self.start(name, nodes)?;
        self.stores().insert(name.to_string(), tx);
        Ok(())
    }

    /// The reconciler of `name`, started on first sight unless unknown stores are refused.
    pub fn get_or_start(&self, name: &str) -> Result<mpsc::Sender<Input>> {
        if !valid_name(name) {
            return Err(ControllerError::BadName(name.to_string()));
        }
        let mut stores = self.stores();
        if let Some(tx) = stores.get(name) {
            return Ok(tx.clone());
        }
        if self.refuse_unknown {
            return Err(ControllerError::UnknownDatastore(name.to_string()));
        }
        let tx = self.start(name, Vec::new())?;
        stores.insert(name.to_string(), tx.clone());
        Ok(tx)
    }

    pub fn get(&self, name: &str) -> Result<mpsc::Sender<Input>> {
        self.stores()
            .get(name)
            .cloned()
            .ok_or_else(|| ControllerError::NoSuchDatastore(name.to_string()))
    }

    pub fn all(&self) -> Vec<(String, mpsc::Sender<Input>)> {
        self.stores()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
