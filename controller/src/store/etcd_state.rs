//! The data stores' persisted state in etcd, for a controller of several: loaded by each new
//! leader, and saved by it (each save a transaction conditioned on its leadership, so a deposed
//! leader persists nothing, and above all bumps no epoch).
use std::sync::Arc;

use etcd_client::{Client, GetOptions, Txn, TxnOp};

use vigil_proto::limits::valid_name;

use super::state::{Persist, StoreState};
use crate::{
    cluster::{
        Term,
        etcd::{Keys, bounded, etcd_error},
    },
    error::{ControllerError, Result},
};

#[derive(Clone)]
pub struct EtcdStates {
    pub client: Client,
    pub keys: Keys,
}

impl EtcdStates {
    /// The state of `datastore`, or the default when none was saved yet.
    pub async fn load(&self, datastore: &str) -> Result<StoreState> {
        let key = self.keys.state(datastore);
        let mut c = self.client.clone();
        let got = bounded("reading a data store's state", c.get(key.clone(), None)).await?;
        match got.kvs().first() {
            None => Ok(StoreState::default()),
            Some(kv) => serde_json::from_slice(kv.value())
                .map_err(|e| etcd_error(&format!("reading {key}"), format!("unreadable: {e}"))),
        }
    }

    /// The data stores that have a state in etcd, at most `limit`.
    pub async fn names(&self, limit: usize) -> Result<Vec<String>> {
        let prefix = self.keys.states();
        let mut c = self.client.clone();
        let options = GetOptions::new()
            .with_prefix()
            .with_keys_only()
            .with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        let got = bounded(
            "listing the data stores",
            c.get(prefix.clone(), Some(options)),
        )
        .await?;
        Ok(got
            .kvs()
            .iter()
            .filter_map(|kv| kv.key_str().ok()?.strip_prefix(&prefix).map(str::to_string))
            .filter(|name| valid_name(name))
            .collect())
    }

    /// Where a reconciler of `datastore` saves in `term`.
    pub fn persist(&self, datastore: &str, term: Arc<Term>) -> EtcdState {
        EtcdState {
            client: self.client.clone(),
            key: self.keys.state(datastore),
            term,
        }
    }
}

/// One data store's state in etcd, saved in one leader's term.
pub struct EtcdState {
    client: Client,
    key: String,
    term: Arc<Term>,
}

impl EtcdState {
    async fn save_async(&self, state: &StoreState) -> Result<()> {
        let text = serde_json::to_vec(state).map_err(|e| etcd_error("encoding the state", e))?;
        let txn = Txn::new()
            .when([Keys::held(&self.term)])
            .and_then([TxnOp::put(self.key.clone(), text, None)]);
        let mut c = self.client.clone();
        let done = bounded("saving the state", c.txn(txn)).await?;
        if done.succeeded() {
            Ok(())
        } else {
            Err(ControllerError::Deposed)
        }
    }
}

impl Persist for EtcdState {
    /// Blocks this reconciler until etcd has the state (a few ms), as a file's fsync would:
    /// nothing that depends on the state may be sent before it is durable. The runtime moves
    /// its other tasks off this thread meanwhile.
    fn save(&mut self, state: &StoreState) -> Result<()> {
        let handle =
            tokio::runtime::Handle::try_current().map_err(|e| etcd_error("saving the state", e))?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Err(etcd_error(
                "saving the state",
                "needs the multi-threaded runtime",
            ));
        }
        tokio::task::block_in_place(|| handle.block_on(self.save_async(state)))
    }
}
