//! TLS on the Sentinel endpoint, as Redis' `tls-port`: the endpoint's certificate and key, and
//! optionally a CA whose certificates clients must present (`tls-auth-clients yes`).
use std::{path::PathBuf, sync::Arc};

use tokio_rustls::{
    TlsAcceptor,
    rustls::{RootCertStore, ServerConfig, crypto::ring, server::WebPkiClientVerifier},
};
use vigil_proto::tls::{read_certs, read_key};

use crate::error::{ControllerError, Result};

/// The PEM files of the endpoint's TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// With it, a client must present a certificate this CA signed.
    pub client_ca: Option<PathBuf>,
}

fn tls(message: impl std::fmt::Display) -> ControllerError {
    ControllerError::Config {
        field: "sentinel_tls".into(),
        message: message.to_string(),
    }
}

/// Reads the files and makes the acceptor; an error names the file or what is wrong with it.
pub fn acceptor(files: &EndpointTls) -> Result<TlsAcceptor> {
    let certs = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(tls)?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| tls(format!("{}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| tls(format!("{}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        tls(format!(
            "{} and {} are not a certificate and its key: {e}",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
