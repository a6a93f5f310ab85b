//! The data stores this controller runs, each behind its reconciler's channel. Looked up when an
//! agent's session starts or the CLI asks; never on the verdict path.
use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use tokio::sync::mpsc;
use vigil_proto::v1;

use crate::{
    error::{ControllerError, Result},
    metrics::Metrics,
    reconciler::{self, Input, Settings},
    state::StateFile,
    topology::Published,
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

    fn start(&self, name: &str, static_nodes: Vec<v1::Hello>) -> Result<mpsc::Sender<Input>> {
        let file = StateFile::new(&self.data_dir, name)?;
        let state = file.load()?;
        tracing::info!(datastore = name, epoch = state.epoch, primary = ?state.primary, state = %file.path().display(), "data store loaded");
        Ok(reconciler::spawn(
            name.to_string(),
            self.settings.clone(),
            file,
            state,
            static_nodes,
            Arc::clone(&self.published),
            Arc::clone(&self.metrics),
        ))
    }

    /// Starts the configured data stores (their state is loaded, their nodes known in advance).
    pub fn configure(&self, name: &str, nodes: Vec<v1::Hello>) -> Result<()> {
        let tx = self.start(name, nodes)?;
        self.stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), tx);
        Ok(())
    }

    /// The reconciler of `name`, started on first sight unless unknown stores are refused.
    pub fn get_or_start(&self, name: &str) -> Result<mpsc::Sender<Input>, String> {
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = stores.get(name) {
            return Ok(tx.clone());
        }
        if self.refuse_unknown {
            return Err(format!(
                "data store {name:?} is not in this controller's configuration"
            ));
        }
        let tx = self
            .start(name, Vec::new())
            .map_err(|e: ControllerError| e.to_string())?;
        stores.insert(name.to_string(), tx.clone());
        Ok(tx)
    }

    pub fn get(&self, name: &str) -> Option<mpsc::Sender<Input>> {
        self.stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn all(&self) -> Vec<(String, mpsc::Sender<Input>)> {
        self.stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
