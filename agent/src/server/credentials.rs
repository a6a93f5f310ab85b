//! The server's password: where it may come from (a file, the environment, the TOML file; never
//! the command line, which every user of the host can read in /proc/PID/cmdline), and the
//! [`SecretString`] it is kept in, whose Debug output is redacted so no log line or error shows
//! it.
use std::path::Path;

pub use secrecy::SecretString;

use crate::error::{AgentError, Result};

/// The environment variable that may hold the password itself.
pub const PASSWORD_ENV: &str = "VIGIL_SERVER_PASSWORD";

/// What an operator who put the password on the command line is told.
pub const ON_COMMAND_LINE: &str = "a password on the command line is refused: every user of \
     the host can read it in /proc/PID/cmdline; use --password-file FILE or VIGIL_SERVER_PASSWORD";

/// Parses a flag value straight into a secret, so even a refused one is never shown.
pub fn parse_secret(value: &str) -> std::result::Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}

/// The password in [`PASSWORD_ENV`], if set.
pub fn from_environment() -> Option<SecretString> {
    std::env::var(PASSWORD_ENV).ok().map(SecretString::from)
}

/// The password in the file at `path` ([`vigil_proto::secret::read_password_file`]); `field`
/// names the setting in the error of a file that cannot be read or holds nothing.
pub fn read_file(field: &'static str, path: &Path) -> Result<SecretString> {
    vigil_proto::secret::read_password_file(path)
        .map(SecretString::from)
        .map_err(|message| AgentError::Config { field, message })
}

/// The password from the file at `file` or the one given (`given`: the environment or the TOML
/// file), at most one of the two.
pub fn resolve(
    given: Option<SecretString>,
    file: Option<&Path>,
    on_command_line: bool,
) -> Result<Option<SecretString>> {
    if on_command_line {
        return Err(AgentError::Config {
            field: "password",
            message: ON_COMMAND_LINE.into(),
        });
    }
    match (given, file) {
        (Some(_), Some(_)) => Err(AgentError::Config {
            field: "password_file",
            message: "give the password or a file holding it, not both".into(),
        }),
        (given, None) => Ok(given),
        (None, Some(path)) => read_file("password_file", path).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn field_of(e: AgentError) -> (&'static str, String) {
        match e {
            AgentError::Config { field, message } => (field, message),
            other => panic!("not a config error: {other}"),
        }
    }

    #[test]
    fn a_password_file_that_cannot_be_read_names_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let (field, message) =
            field_of(read_file("password_file", &dir.path().join("missing")).unwrap_err());
        assert_eq!(field, "password_file");
        assert!(message.contains("cannot read"), "{message}");
    }

    #[test]
    fn the_command_line_and_two_sources_at_once_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        std::fs::write(&path, "fromfile\n").unwrap();
        let (field, message) = field_of(resolve(None, None, true).unwrap_err());
        assert_eq!(field, "password");
        assert!(message.contains("/proc/PID/cmdline"), "{message}");
        let both = resolve(Some("x".into()), Some(&path), false).unwrap_err();
        assert_eq!(field_of(both).0, "password_file");
        let from_file = resolve(None, Some(&path), false).unwrap().unwrap();
        assert_eq!(from_file.expose_secret(), "fromfile");
        assert!(resolve(None, None, false).unwrap().is_none());
    }

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let secret = SecretString::from("hunter2");
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
