//! The etcd connection and where vigil keeps its keys under the prefix:
//!
//! | key                         | value                                  | lease            |
//! |-----------------------------|----------------------------------------|------------------|
//! | `<prefix>/election/...`     | the election (etcd's election API)     | each candidate's |
//! | `<prefix>/controllers/NAME` | a controller's [`ControllerInfo`]      | its own          |
//! | `<prefix>/state/STORE`      | a data store's persisted state (JSON)  | none             |
//! | `<prefix>/view/STORE`       | the view clients are served (JSON)     | none             |
//!
//! The state and the view are written only by the leader, each write a transaction conditioned
//! on its election key (see [`Keys::held`]).
//!
//! With [`EtcdTls`], the connection is TLS (see [`etcd_tls`]).
//!
//! [`ControllerInfo`]: crate::member::ControllerInfo
use std::{future::Future, time::Duration};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions};

use super::{
    etcd_tls::{self, EtcdTls},
    leadership::Term,
};
use crate::error::{ControllerError, Result};

/// Each etcd request but the campaign (which waits for the leadership) gets this long.
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a connection attempt to one etcd member may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The keys of one vigil installation: everything under one prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    pub fn election(&self) -> String {
        format!("{}/election", self.prefix)
    }

    pub fn controllers(&self) -> String {
        format!("{}/controllers/", self.prefix)
    }

    pub fn controller(&self, name: &str) -> String {
        format!("{}{name}", self.controllers())
    }

    pub fn states(&self) -> String {
        format!("{}/state/", self.prefix)
    }

    pub fn state(&self, datastore: &str) -> String {
        format!("{}{datastore}", self.states())
    }

    pub fn views(&self) -> String {
        format!("{}/view/", self.prefix)
    }

    pub fn view(&self, datastore: &str) -> String {
        format!("{}{datastore}", self.views())
    }

    /// The condition of every write a leader makes: its election key still exists, created at
    /// its term's revision. Once its lease ran out (or it resigned), etcd deleted that key, and
    /// a deposed leader's write fails instead of overwriting the new leader's.
    pub fn held(term: &Term) -> Compare {
        Compare::create_revision(term.key.clone(), CompareOp::Equal, term.token as i64)
    }
}

/// A client for the etcd members at `endpoints`. It connects lazily: an unreachable etcd is an
/// error of the requests, retried by their callers, not of the start. With TLS, an etcd that
/// refuses the handshake (no or a wrong client certificate, or its own from another CA) stops
/// the start ([`etcd_tls::check`]): retrying would not change its mind.
pub async fn connect(endpoints: &[String], tls: Option<&EtcdTls>) -> Result<Client> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(1))
        .with_keep_alive_while_idle(true);
    if let Some(tls) = tls {
        options = options.with_tls(tls.options()?);
    }
    if let Some(tls) = tls {
        etcd_tls::check(tls, endpoints).await?;
    }
    Client::connect(endpoints, Some(options))
        .await
        .map_err(|e| etcd_error("connecting", e))
}

pub fn etcd_error(what: &str, e: impl std::fmt::Display) -> ControllerError {
    ControllerError::Etcd {
        what: what.to_string(),
        message: e.to_string(),
    }
}

/// `op`, bounded by [`OP_TIMEOUT`]; `what` names it in the error.
pub async fn bounded<T>(
    what: &str,
    op: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
) -> Result<T> {
    match tokio::time::timeout(OP_TIMEOUT, op).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(etcd_error(what, e)),
        Err(_) => Err(etcd_error(what, format!("no answer within {OP_TIMEOUT:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_under_the_prefix_and_a_trailing_slash_changes_nothing() {
        for prefix in ["/vigil", "/vigil/"] {
            let k = Keys::new(prefix);
            assert_eq!(k.election(), "/vigil/election");
            assert_eq!(k.controller("c1"), "/vigil/controllers/c1");
            assert_eq!(k.state("cache"), "/vigil/state/cache");
            assert_eq!(k.view("cache"), "/vigil/view/cache");
            assert!(k.view("cache").starts_with(&k.views()));
            assert!(k.state("cache").starts_with(&k.states()));
        }
    }
}
