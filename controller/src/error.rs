//! The controller library's one error type.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(
        "data store name {0:?} is not allowed: use letters, digits, '-', '_' and '.', at most 64"
    )]
    BadName(String),
    #[error("state file {path}: {message}")]
    State { path: PathBuf, message: String },
    #[error("configuration: {field}: {message}")]
    Config { field: String, message: String },
    #[error("configuration file {path}: {message}")]
    ConfigFile { path: PathBuf, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ControllerError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = ControllerError> = std::result::Result<T, E>;
