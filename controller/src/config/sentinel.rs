//! The Sentinel endpoint's settings: its password file, user, TLS and client bounds.

use std::time::Duration;

use super::{
    ControllerSettings, DEFAULT_SENTINEL_IDLE_TIMEOUT_SECS, DEFAULT_SENTINEL_MAX_CLIENTS,
    DEFAULT_SENTINEL_USER, MAX_IDLE_TIMEOUT_SECS, bad,
};
use crate::{
    error::Result,
    sentinel::{
        auth::{Credentials, MAX_PASSWORD},
        endpoint::Options,
        tls::EndpointTls,
    },
};

/// What the Sentinel endpoint asks of its clients.
#[derive(Clone, Debug)]
pub struct SentinelConfig {
    pub options: Options,
    pub tls: Option<EndpointTls>,
}

/// The Sentinel password in the file at `path` ([`vigil_proto::secret::read_password_file`]),
/// no longer than a client may send before it authenticates.
fn password(path: &std::path::Path) -> Result<Vec<u8>> {
    let field = "sentinel_password_file";
    let password = vigil_proto::secret::read_password_file(path).map_err(|e| bad(field, e))?;
    if password.len() > MAX_PASSWORD {
        return Err(bad(
            field,
            format!(
                "the password in {} is longer than {MAX_PASSWORD} bytes, more than a client may \
                 send before it authenticates",
                path.display()
            ),
        ));
    }
    Ok(password.into_bytes())
}

pub(super) fn from_settings(s: &ControllerSettings) -> Result<SentinelConfig> {
    let user = s.sentinel_user.as_deref().unwrap_or(DEFAULT_SENTINEL_USER);
    if user.is_empty() || user.len() > 128 || !user.bytes().all(|c| (b'!'..=b'~').contains(&c)) {
        return Err(bad(
            "sentinel_user",
            format!("{user:?} must be 1 to 128 printable characters without spaces"),
        ));
    }
    let credentials = match &s.sentinel_password_file {
        Some(path) => Some(Credentials::new(user, &password(path)?)),
        None if s.sentinel_user.is_some() => {
            return Err(bad(
                "sentinel_user",
                "is set without sentinel_password_file: a user needs a password",
            ));
        }
        None => None,
    };
    let tls = match (&s.sentinel_tls_cert, &s.sentinel_tls_key) {
        (Some(cert), Some(key)) => Some(EndpointTls {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: s.sentinel_tls_client_ca.clone(),
        }),
        (None, None) if s.sentinel_tls_client_ca.is_some() => {
            return Err(bad(
                "sentinel_tls_client_ca",
                "needs sentinel_tls_cert and sentinel_tls_key",
            ));
        }
        (None, None) => None,
        (Some(_), None) => {
            return Err(bad(
                "sentinel_tls_key",
                "is required with sentinel_tls_cert",
            ));
        }
        (None, Some(_)) => {
            return Err(bad(
                "sentinel_tls_cert",
                "is required with sentinel_tls_key",
            ));
        }
    };
    let max_clients = match s
        .sentinel_max_clients
        .unwrap_or(DEFAULT_SENTINEL_MAX_CLIENTS)
    {
        0 => return Err(bad("sentinel_max_clients", "must be at least 1")),
        n => n,
    };
    let idle_timeout = match s
        .sentinel_idle_timeout_secs
        .unwrap_or(DEFAULT_SENTINEL_IDLE_TIMEOUT_SECS)
    {
        0 => None,
        n if n > MAX_IDLE_TIMEOUT_SECS => {
            return Err(bad(
                "sentinel_idle_timeout_secs",
                format!("{n} s is more than {MAX_IDLE_TIMEOUT_SECS} s (0 turns it off)"),
            ));
        }
        n => Some(Duration::from_secs(n)),
    };
    Ok(SentinelConfig {
        options: Options {
            credentials,
            idle_timeout,
            max_clients,
        },
        tls,
    })
}
