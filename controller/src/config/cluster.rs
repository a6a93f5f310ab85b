//! The settings of several controllers on etcd: the endpoints, the prefix, the lease, and TLS to etcd.

use super::{ControllerSettings, DEFAULT_ETCD_PREFIX, MAX_LEADER_LEASE_SECS, bad};
use vigil_proto::{
    HostPort,
    tls::{read_certs_pem, read_key_pem},
};

use crate::{
    cluster::{election::DEFAULT_LEADER_LEASE_SECS, etcd_tls::EtcdTls},
    error::Result,
};

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub lease_secs: u64,
    /// Set with --etcd-ca: TLS to etcd.
    pub tls: Option<EtcdTls>,
}

/// The host's name, for a controller not given one.
pub(super) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "vigil-controller".into())
}

pub(super) fn from_settings(s: &ControllerSettings) -> Result<Option<ClusterConfig>> {
    let Some(urls) = s.etcd.as_deref() else {
        if let Some(field) = [
            ("etcd_ca", s.etcd_ca.is_some()),
            ("etcd_cert", s.etcd_cert.is_some()),
            ("etcd_key", s.etcd_key.is_some()),
        ]
        .into_iter()
        .find_map(|(name, given)| given.then_some(name))
        {
            return Err(bad(
                field,
                "is set without etcd: there is no etcd to speak TLS to",
            ));
        }
        return Ok(None);
    };
    let endpoints: Vec<String> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect();
    if endpoints.is_empty() {
        return Err(bad("etcd", "names no URL"));
    }
    for u in &endpoints {
        let rest = u
            .strip_prefix("http://")
            .or_else(|| u.strip_prefix("https://"))
            .ok_or_else(|| bad("etcd", format!("{u:?} is not an http:// or https:// URL")))?;
        rest.parse::<HostPort>()
            .map_err(|e| bad("etcd", format!("{u:?}: {e}")))?;
    }
    let tls = etcd_tls(s)?;
    let scheme = if tls.is_some() { "https://" } else { "http://" };
    if let Some(u) = endpoints.iter().find(|u| !u.starts_with(scheme)) {
        return Err(bad(
            "etcd",
            match tls {
                Some(_) => format!("{u:?} must be an https:// URL: etcd_ca asks for TLS"),
                None => format!("{u:?} is https://: TLS to etcd needs etcd_ca"),
            },
        ));
    }
    let prefix = s.etcd_prefix.as_deref().unwrap_or(DEFAULT_ETCD_PREFIX);
    if !prefix.starts_with('/') || prefix.len() < 2 || prefix.contains(char::is_whitespace) {
        return Err(bad(
            "etcd_prefix",
            format!("{prefix:?} must start with '/', name something, and hold no spaces"),
        ));
    }
    let lease_secs = s.leader_lease_secs.unwrap_or(DEFAULT_LEADER_LEASE_SECS);
    if lease_secs == 0 || lease_secs > MAX_LEADER_LEASE_SECS {
        return Err(bad(
            "leader_lease_secs",
            format!("{lease_secs} is outside 1..={MAX_LEADER_LEASE_SECS}"),
        ));
    }
    Ok(Some(ClusterConfig {
        endpoints,
        prefix: prefix.to_string(),
        lease_secs,
        tls,
    }))
}

/// TLS to etcd: the CA alone (etcd proves who it is), or with a client certificate and its key
/// (both proving who this controller is too). Each file is read now, so a wrong one is named.
fn etcd_tls(s: &ControllerSettings) -> Result<Option<EtcdTls>> {
    let identity = match (&s.etcd_cert, &s.etcd_key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        (None, None) => None,
        (Some(_), None) => return Err(bad("etcd_key", "is required with etcd_cert")),
        (None, Some(_)) => return Err(bad("etcd_cert", "is required with etcd_key")),
    };
    let Some(ca) = s.etcd_ca.clone() else {
        return match identity {
            Some(_) => Err(bad(
                "etcd_ca",
                "is required with etcd_cert and etcd_key: it verifies etcd's certificate",
            )),
            None => Ok(None),
        };
    };
    read_certs_pem(&ca).map_err(|e| bad("etcd_ca", e.to_string()))?;
    if let Some((cert, key)) = &identity {
        read_certs_pem(cert).map_err(|e| bad("etcd_cert", e.to_string()))?;
        read_key_pem(key).map_err(|e| bad("etcd_key", e.to_string()))?;
    }
    let tls = EtcdTls { ca, identity };
    tls.options().map_err(|e| bad("etcd_ca", e.to_string()))?;
    Ok(Some(tls))
}
