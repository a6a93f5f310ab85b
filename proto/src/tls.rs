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
use std::{fmt, path::Path, str::FromStr};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::ProtoError;

/// The DNS name every controller certificate carries and every client checks.
pub const CONTROLLER_SERVER_NAME: &str = "vigil-controller";

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

/// The certificates of a PEM file, read at start so a wrong path is an error naming it.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ProtoError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ProtoError::Pem(path.display().to_string(), e.to_string()))?;
    if certs.is_empty() {
        return Err(ProtoError::Pem(
            path.display().to_string(),
            "no CERTIFICATE block in it".into(),
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ProtoError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| ProtoError::Pem(path.display().to_string(), e.to_string()))
}

/// A PEM file of certificates, checked, as bytes for the APIs (tonic's) that take PEM.
pub fn read_certs_pem(path: &Path) -> Result<Vec<u8>, ProtoError> {
    read_certs(path)?;
    read_bytes(path)
}

/// A PEM file of a private key, checked, as bytes for the APIs (tonic's) that take PEM.
pub fn read_key_pem(path: &Path) -> Result<Vec<u8>, ProtoError> {
    read_key(path)?;
    read_bytes(path)
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, ProtoError> {
    std::fs::read(path).map_err(|e| ProtoError::Pem(path.display().to_string(), e.to_string()))
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
