//! TLS to the data store's servers (the local one and its peers), optional: the certificate
//! authority that signed the servers' certificates, and a client certificate when the servers
//! ask for one (`tls-auth-clients`). When it is set, every connection the agent opens to a server
//! (its PINGs, INFO and ROLE, the controller's commands, peer probes) goes over TLS.
use std::{fmt, io, path::Path, sync::Arc};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{
    TlsConnector,
    client::TlsStream,
    rustls::{ClientConfig, RootCertStore, crypto::ring},
};

use crate::error::{AgentError, Result};

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: AgentError) -> &'static str {
        match e {
            AgentError::Config { field, .. } => field,
            other => panic!("not a config error: {other}"),
        }
    }

    #[test]
    fn tls_settings_that_do_not_fit_together_name_their_field() {
        let p = Path::new("/nonexistent.pem");
        assert!(from_settings(false, None, None, None).unwrap().is_none());
        for (on, ca, cert, key, field) in [
            (false, Some(p), None, None, "server_tls"),
            (true, None, None, None, "server_tls_ca"),
            (true, Some(p), Some(p), None, "server_tls_key"),
            (true, Some(p), None, Some(p), "server_tls_cert"),
            (true, Some(p), None, None, "server_tls_ca"),
        ] {
            let e = from_settings(on, ca, cert, key).unwrap_err();
            assert_eq!(field_of(e), field);
        }
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = from_settings(true, Some(&empty), None, None).unwrap_err();
        assert!(e.to_string().contains("holds no certificate"), "{e}");
    }
}

/// The TLS settings of every connection to a server of the data store.
#[derive(Clone)]
pub struct ServerTls {
    connector: TlsConnector,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerTls")
    }
}

fn bad(field: &'static str, message: String) -> AgentError {
    AgentError::Config { field, message }
}

/// The TLS settings from their flags: None when `on` is not set. A certificate authority is
/// needed when it is, and a client certificate and its key go together; any of them without
/// `on` is an error rather than a silently plain connection.
pub fn from_settings(
    on: bool,
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<ServerTls>> {
    if !on {
        return match (ca, cert, key) {
            (None, None, None) => Ok(None),
            _ => Err(bad(
                "server_tls",
                "a TLS file is given but TLS is off: add --server-tls".into(),
            )),
        };
    }
    let ca = ca.ok_or_else(|| {
        bad(
            "server_tls_ca",
            "TLS needs the certificate authority that signed the servers' certificates".into(),
        )
    })?;
    let client = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(bad(
                "server_tls_key",
                "a client certificate needs its key".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(bad(
                "server_tls_cert",
                "a client key needs its certificate".into(),
            ));
        }
    };
    ServerTls::from_files(ca, client).map(Some)
}

impl ServerTls {
    /// Servers whose certificates `ca` (PEM, one or more certificates) signed; with a client
    /// certificate (`cert`, PEM chain) and its key (`key`, PEM) when both are given.
    pub fn from_files(ca: &Path, client: Option<(&Path, &Path)>) -> Result<Self> {
        let mut roots = RootCertStore::empty();
        let authorities = CertificateDer::pem_file_iter(ca)
            .map_err(|e| bad("server_tls_ca", format!("{}: {e}", ca.display())))?;
        for cert in authorities {
            let cert = cert.map_err(|e| bad("server_tls_ca", format!("{}: {e}", ca.display())))?;
            roots
                .add(cert)
                .map_err(|e| bad("server_tls_ca", format!("{}: {e}", ca.display())))?;
        }
        if roots.is_empty() {
            return Err(bad(
                "server_tls_ca",
                format!("{} holds no certificate", ca.display()),
            ));
        }
        let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("server_tls", e.to_string()))?
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect())
                    .map_err(|e| bad("server_tls_cert", format!("{}: {e}", cert.display())))?;
                if chain.is_empty() {
                    return Err(bad(
                        "server_tls_cert",
                        format!("{} holds no certificate", cert.display()),
                    ));
                }
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| bad("server_tls_key", format!("{}: {e}", key.display())))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| bad("server_tls_key", e.to_string()))?
            }
        };
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// `stream` to the server at `host`, over TLS: its certificate must name `host` (a DNS name
    /// or an IP address).
    pub async fn connect<S>(&self, host: &str, stream: S) -> io::Result<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.connector.connect(name, stream).await
    }
}
