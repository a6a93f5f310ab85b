//! Who is at the other end of a TLS link: the identity a vigil certificate carries, and the PEM
//! files every daemon and the CLI read.
//!
//! A vigil certificate names its holder in a subject alternative name of URI type:
//! - `vigil://controller` for a controller,
//! - `vigil://operator/NAME` for a person or tool running the `vigil` CLI,
//! - `vigil://node/DATASTORE/NODE` for the agent of one node of one data store.
//!
//! A controller's certificate also carries [`CONTROLLER_SERVER_NAME`] as a DNS name, and agents and
//! the CLI verify the controller against that name whatever address they dialled. So a node's or
//! an operator's certificate, signed by the same CA, can never pass for a controller's.
use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tonic::transport::{Certificate, ClientTlsConfig, ServerTlsConfig};

use crate::ProtoError;

/// The DNS name every controller certificate carries and every client checks.
pub const CONTROLLER_SERVER_NAME: &str = "vigil-controller";

/// A client has this long to finish its TLS handshake, so connections that stall in it (a flood,
/// a half-open peer) are closed instead of held.
pub const HANDSHAKE_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// The URI scheme of vigil identities.
const SCHEME: &str = "vigil://";

/// Who a certificate says its holder is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    Controller,
    Operator(String),
    Node { datastore: String, node: String },
}

impl Identity {
    /// The SAN URI that names this identity.
    pub fn uri(&self) -> String {
        match self {
            Identity::Controller => format!("{SCHEME}controller"),
            Identity::Operator(name) => format!("{SCHEME}operator/{name}"),
            Identity::Node { datastore, node } => format!("{SCHEME}node/{datastore}/{node}"),
        }
    }

    /// The one vigil identity in a DER certificate's SAN URIs. A certificate with none, or with
    /// two (which a CA should never sign), names nobody.
    pub fn from_der(cert: &[u8]) -> Result<Identity, ProtoError> {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert)
            .map_err(|e| ProtoError::Certificate(format!("not an X.509 certificate: {e}")))?;
        let san = parsed
            .subject_alternative_name()
            .map_err(|e| ProtoError::Certificate(format!("unreadable SAN: {e}")))?;
        let mut found = san
            .into_iter()
            .flat_map(|ext| ext.value.general_names.iter())
            .filter_map(|name| match name {
                x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with(SCHEME) => {
                    Some(uri.parse::<Identity>())
                }
                _ => None,
            });
        match (found.next(), found.next()) {
            (Some(identity), None) => identity,
            (None, _) => Err(ProtoError::Certificate(format!(
                "the certificate has no {SCHEME} identity URI"
            ))),
            (Some(_), Some(_)) => Err(ProtoError::Certificate(format!(
                "the certificate has more than one {SCHEME} identity URI"
            ))),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri())
    }
}

/// A name part of an identity: what a data store name or node id may be, and nothing a URI or a
/// path would read differently.
fn name_part(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= 128
        && part.bytes().any(|b| b != b'.')
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl FromStr for Identity {
    type Err = ProtoError;

    fn from_str(uri: &str) -> Result<Identity, ProtoError> {
        let bad =
            |why: &str| ProtoError::Certificate(format!("{uri:?} is not a vigil identity: {why}"));
        let rest = uri
            .strip_prefix(SCHEME)
            .ok_or_else(|| bad("it does not start with vigil://"))?;
        let parts: Vec<&str> = rest.split('/').collect();
        if !parts[1..].iter().all(|p| name_part(p)) {
            return Err(bad("names are 1 to 128 of A-Z a-z 0-9 - _ ."));
        }
        match parts.as_slice() {
            ["controller"] => Ok(Identity::Controller),
            ["operator", name] => Ok(Identity::Operator((*name).into())),
            ["node", datastore, node] => Ok(Identity::Node {
                datastore: (*datastore).into(),
                node: (*node).into(),
            }),
            _ => Err(bad(
                "expected controller, operator/NAME or node/DATASTORE/NODE",
            )),
        }
    }
}

/// The three files one end of a TLS link needs: the CA that signs its peers' certificates, and
/// its own certificate and key. A daemon or the CLI is given all three or none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files, if all three are given; None if none is. `names` are the settings' names in
    /// the order (ca, cert, key), for the error that says which is missing.
    pub fn from_parts(
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        names: [&str; 3],
    ) -> Result<Option<TlsFiles>, ProtoError> {
        match (ca, cert, key) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => Ok(Some(TlsFiles { ca, cert, key })),
            (ca, cert, key) => {
                let given = [ca.is_some(), cert.is_some(), key.is_some()];
                let pick = |want: bool| -> Vec<&str> {
                    names
                        .iter()
                        .zip(given)
                        .filter(|(_, g)| *g == want)
                        .map(|(n, _)| *n)
                        .collect()
                };
                Err(ProtoError::TlsSettings(format!(
                    "{} given without {}: TLS needs all three of {}, or none",
                    pick(true).join(" and "),
                    pick(false).join(" and "),
                    names.join(", ")
                )))
            }
        }
    }

    /// The identity this end's certificate names (its first certificate: the leaf).
    pub fn identity(&self) -> Result<Identity, ProtoError> {
        let certs = read_certs(&self.cert)?;
        Identity::from_der(&certs[0])
            .map_err(|e| ProtoError::Pem(self.cert.display().to_string(), e.to_string()))
    }

    /// Checks that this end's certificate names `want`: a daemon given another's certificate
    /// refuses to start rather than be refused, or taken for someone else, by its peers.
    pub fn expect_identity(&self, want: &Identity) -> Result<(), ProtoError> {
        let found = self.identity()?;
        if found != *want {
            return Err(ProtoError::Certificate(format!(
                "{} names {found}, not {want}",
                self.cert.display()
            )));
        }
        Ok(())
    }

    /// A controller's server side: its certificate, and every client must present one signed by
    /// the CA (the handshake fails otherwise).
    pub fn server_config(&self) -> Result<ServerTlsConfig, ProtoError> {
        Ok(ServerTlsConfig::new()
            .identity(self.tonic_identity()?)
            .client_ca_root(Certificate::from_pem(read_certs_pem(&self.ca)?))
            .client_auth_optional(false)
            .timeout(HANDSHAKE_WITHIN))
    }

    /// An agent's or the CLI's side: the controller must present a certificate from the CA for
    /// [`CONTROLLER_SERVER_NAME`], whatever address was dialled, and this end presents its own.
    pub fn client_config(&self) -> Result<ClientTlsConfig, ProtoError> {
        Ok(ClientTlsConfig::new()
            .domain_name(CONTROLLER_SERVER_NAME)
            .ca_certificate(Certificate::from_pem(read_certs_pem(&self.ca)?))
            .identity(self.tonic_identity()?))
    }

    fn tonic_identity(&self) -> Result<tonic::transport::Identity, ProtoError> {
        Ok(tonic::transport::Identity::from_pem(
            read_certs_pem(&self.cert)?,
            read_key_pem(&self.key)?,
        ))
    }
}

/// The certificates of a PEM file, read at start so a wrong path is an error naming it.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ProtoError> {
    certs_in(path, &read_bytes(path)?)
}

/// The private key of a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ProtoError> {
    key_in(path, &read_bytes(path)?)
}

/// A PEM file of certificates, checked, as bytes for the APIs (tonic's) that take PEM.
pub fn read_certs_pem(path: &Path) -> Result<Vec<u8>, ProtoError> {
    let pem = read_bytes(path)?;
    certs_in(path, &pem)?;
    Ok(pem)
}

/// A PEM file of a private key, checked, as bytes for the APIs (tonic's) that take PEM.
pub fn read_key_pem(path: &Path) -> Result<Vec<u8>, ProtoError> {
    let pem = read_bytes(path)?;
    key_in(path, &pem)?;
    Ok(pem)
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, ProtoError> {
    std::fs::read(path).map_err(|e| pem_error(path, e))
}

/// The certificates in `pem`, the contents of `path`: at least one.
fn certs_in(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ProtoError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no CERTIFICATE block in it"));
    }
    Ok(certs)
}

/// The private key in `pem`, the contents of `path`.
fn key_in(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, ProtoError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| pem_error(path, e))
}

fn pem_error(path: &Path, e: impl std::fmt::Display) -> ProtoError {
    ProtoError::Pem(path.display().to_string(), e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_through_their_uri() {
        for id in [
            Identity::Controller,
            Identity::Operator("alice".into()),
            Identity::Node {
                datastore: "cache".into(),
                node: "n0".into(),
            },
        ] {
            assert_eq!(id.uri().parse::<Identity>(), Ok(id));
        }
    }

    #[test]
    fn tls_files_come_all_three_or_none_and_the_error_names_the_missing() {
        let names = ["tls_ca", "tls_cert", "tls_key"];
        assert_eq!(TlsFiles::from_parts(None, None, None, names), Ok(None));
        let some = |s: &str| Some(PathBuf::from(s));
        let all = TlsFiles::from_parts(some("a"), some("b"), some("c"), names).unwrap();
        assert_eq!(all.map(|f| f.key), some("c"));
        let e = TlsFiles::from_parts(None, some("b"), None, names)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tls_cert given without tls_ca and tls_key"),
            "{e}"
        );
    }

    #[test]
    fn uris_that_a_path_or_uri_would_read_differently_name_nobody() {
        for uri in [
            "vigil://node/cache",
            "vigil://node/cache/n0/extra",
            "vigil://node/cache/../n0",
            "vigil://node/ca%2fche/n0",
            "vigil://node//n0",
            "vigil://node/cache/..",
            "vigil://operator/",
            "vigil://controllers",
            "https://node/cache/n0",
        ] {
            assert!(uri.parse::<Identity>().is_err(), "{uri} was accepted");
        }
    }
}
