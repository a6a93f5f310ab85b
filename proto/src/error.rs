//! The protocol crate's one error type.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    #[error("{address:?} is not HOST:PORT: {reason}")]
    Address {
        address: String,
        reason: &'static str,
    },
    #[error("{0:?} is not a valid log filter: {1}")]
    LogFilter(String, String),
    #[error("{0}")]
    Certificate(String),
    #[error("{0}")]
    TlsSettings(String),
    #[error("reading {0}: {1}")]
    Pem(String, String),
    #[error("printing the configuration: {0}")]
    Config(String),
}
