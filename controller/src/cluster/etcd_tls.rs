//! TLS to etcd: the PEM files ([`EtcdTls`]), the etcd client's settings made from them, and the
//! check at start that etcd takes this controller's certificate ([`check`]).
//!
//! The client is etcd-client's tonic channel, on the same rustls and ring as the gRPC port. Over
//! TLS 1.3 a server that refuses the client's certificate says so only after the client's side of
//! the handshake is done, and the first request may then fail on the closed socket ("broken
//! pipe") before the server's alert is read. So the check shakes hands once itself over TLS 1.2,
//! where the refusal is part of the handshake, and names it.
use std::{path::PathBuf, sync::Arc};

use etcd_client::{Certificate, Identity, TlsOptions};
use tokio::net::TcpStream;
use tokio_rustls::{
    TlsConnector,
    rustls::{
        self, AlertDescription, ClientConfig, RootCertStore, crypto::ring, pki_types::ServerName,
    },
};
use vigil_proto::{
    HostPort,
    tls::{read_certs, read_certs_pem, read_key, read_key_pem},
};

use super::etcd::{CONNECT_TIMEOUT, OP_TIMEOUT, etcd_error};
use crate::error::Result;

/// The PEM files of TLS to etcd: the CA that signed etcd's certificates and, for etcd's
/// `--client-cert-auth`, this controller's client certificate and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca: PathBuf,
    /// The certificate chain and its private key.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl EtcdTls {
    /// The etcd client's TLS settings, the files read (and checked) now.
    pub fn options(&self) -> Result<TlsOptions> {
        let ca = read_certs_pem(&self.ca)?;
        let mut options = TlsOptions::new().ca_certificate(Certificate::from_pem(ca));
        if let Some((cert, key)) = &self.identity {
            options = options.identity(Identity::from_pem(
                read_certs_pem(cert)?,
                read_key_pem(key)?,
            ));
        }
        Ok(options)
    }

    /// The check's own client: the same CA and certificate, TLS 1.2 only.
    fn check_config(&self) -> Result<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for cert in read_certs(&self.ca)? {
            roots
                .add(cert)
                .map_err(|e| etcd_error("reading etcd_ca", e))?;
        }
        let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS12])
            .map_err(|e| etcd_error("setting up TLS", e))?
            .with_root_certificates(roots);
        let mut config = match &self.identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
                .map_err(|e| etcd_error("reading etcd_cert and etcd_key", e))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// Shakes hands with the first etcd member that answers: an error if it refuses this
/// controller's certificate (or presents one the CA did not sign), since retrying would not
/// change its mind. Members that do not answer, and any other outcome, are left to the client's
/// own retries: an unreachable etcd is no error of the start.
pub async fn check(tls: &EtcdTls, endpoints: &[String]) -> Result<()> {
    let connector = TlsConnector::from(Arc::new(tls.check_config()?));
    for url in endpoints {
        let Some(at) = url
            .strip_prefix("https://")
            .and_then(|rest| rest.trim_end_matches('/').parse::<HostPort>().ok())
        else {
            continue;
        };
        let Ok(name) = ServerName::try_from(at.host.clone()) else {
            continue;
        };
        let tcp = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((at.host.as_str(), at.port)),
        )
        .await
        {
            Ok(Ok(tcp)) => tcp,
            _ => continue,
        };
        match tokio::time::timeout(OP_TIMEOUT, connector.connect(name, tcp)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => {
                if let Some(why) = refusal(&e) {
                    return Err(etcd_error(
                        "connecting",
                        format!("the TLS handshake with etcd at {url} failed: {why}"),
                    ));
                }
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// Why a handshake failed, when it is about a certificate: etcd refused this controller's, or
/// etcd's was not from the CA.
fn refusal(e: &std::io::Error) -> Option<String> {
    let tls = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    match tls {
        rustls::Error::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::CertificateRequired
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::AccessDenied,
        ) => Some(format!(
            "{tls} (etcd refused this controller's certificate, or wants one: etcd_cert and \
             etcd_key)"
        )),
        rustls::Error::InvalidCertificate(_) => Some(format!(
            "{tls} (etcd's certificate is not one etcd_ca verifies)"
        )),
        _ => None,
    }
}
