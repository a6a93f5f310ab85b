//! `--print-config`, the same on both daemons: the effective configuration (flags over
//! environment over the `--config` file over defaults, checked as at start) printed as TOML that
//! a `--config` file could hold, each key with a comment saying where its value came from: `flag
//! --name`, `env VIGIL_NAME`, `file PATH` or `default`. A setting with no value is a comment
//! saying so. Secrets are never printed: a password's line is commented out and shows
//! `"<redacted>"`; a password file shows its path, never what it holds.
//!
//! Each daemon hands over its settings' clap arguments (their order, flag and variable names),
//! the matches clap parsed (whose `value_source` tells a flag from an environment variable),
//! the file it read, and every setting's effective value; this module decides the sources and
//! writes the text.
use std::{fmt, path::Path};

use clap::{ArgMatches, Command, parser::ValueSource};

use crate::error::ProtoError;

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag: `--name`.
    Flag(String),
    /// An environment variable: `VIGIL_NAME`.
    Env(String),
    /// The `--config` file at this path.
    File(String),
    /// Nobody gave it: the default.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(flag) => write!(f, "flag {flag}"),
            Self::Env(var) => write!(f, "env {var}"),
            Self::File(path) => write!(f, "file {path}"),
            Self::Default => f.write_str("default"),
        }
    }
}

/// What was shown instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// A secret setting that is no flag (a password from the environment or the file), shown as
/// [`REDACTED`] with its source when it has a value.
pub struct Secret<'a> {
    pub key: &'a str,
    pub source: Option<Source>,
}

/// The configuration file a daemon read, and the keys it set.
pub struct File<'a> {
    pub path: &'a Path,
    /// Which `--config` gave it (flag or environment).
    pub named_by: Source,
    keys: toml::Table,
}

impl<'a> File<'a> {
    /// Reads the keys of the file at `path` (read and checked once already by the daemon).
    pub fn read(path: &'a Path, named_by: Source) -> Result<Self, ProtoError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ProtoError::Config(format!("reading {}: {e}", path.display())))?;
        let keys = toml::from_str(&text)
            .map_err(|e| ProtoError::Config(format!("{}: {e}", path.display())))?;
        Ok(Self {
            path,
            named_by,
            keys,
        })
    }
}

/// Where the value of argument `id` came from: a flag or its variable as clap saw it, else the
/// file when it sets the key, else the default.
pub fn source_of(command: &Command, matches: &ArgMatches, id: &str, file: Option<&File>) -> Source {
    let arg = command.get_arguments().find(|a| a.get_id() == id);
    match matches.value_source(id) {
        Some(ValueSource::CommandLine) => {
            let flag = arg
                .and_then(|a| a.get_long())
                .map_or_else(|| id.to_string(), |l| format!("--{l}"));
            return Source::Flag(flag);
        }
        Some(ValueSource::EnvVariable) => {
            let var = arg
                .and_then(|a| a.get_env())
                .map_or_else(|| id.to_string(), |v| v.to_string_lossy().into_owned());
            return Source::Env(var);
        }
        _ => {}
    }
    match file {
        Some(f) if f.keys.contains_key(id) => Source::File(f.path.display().to_string()),
        _ => Source::Default,
    }
}

/// The effective configuration as TOML with sources. `settings` is the command holding exactly
/// the settings' arguments (in the order `--help` lists them; hidden ones are skipped),
/// `matches` what clap parsed, `effective` every setting's value with defaults filled in (a key
/// missing from it has no value), `secrets` the secret settings that are no flags. Keys of
/// `effective` that are no arguments (tables the file lists) follow, from the file.
pub fn render(
    header: &str,
    settings: &Command,
    matches: &ArgMatches,
    effective: &toml::Table,
    file: Option<&File>,
    secrets: &[Secret],
) -> String {
    let mut out = String::new();
    out.push_str(&format!("# {header}\n"));
    out.push_str(
        "# The effective configuration: flags over environment over the file over defaults.\n",
    );
    match file {
        Some(f) => out.push_str(&format!("# File: {} ({}).\n", f.path.display(), f.named_by)),
        None => out.push_str("# File: none.\n"),
    }
    let mut listed = Vec::new();
    for arg in settings.get_arguments().filter(|a| !a.is_hide_set()) {
        let id = arg.get_id().as_str();
        listed.push(id);
        let source = source_of(settings, matches, id, file);
        match effective.get(id) {
            Some(value) => out.push_str(&format!("{id} = {value}  # {source}\n")),
            // Unset, so nothing gave it: no source to name.
            None => out.push_str(&format!("# {id} is not set\n")),
        }
    }
    for secret in secrets {
        listed.push(secret.key);
        match &secret.source {
            Some(source) => {
                out.push_str(&format!("# {} = \"{REDACTED}\"  # {source}\n", secret.key))
            }
            None => out.push_str(&format!("# {} is not set\n", secret.key)),
        }
    }
    let rest: toml::Table = effective
        .iter()
        .filter(|(k, _)| !listed.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !rest.is_empty() {
        let from = file.map_or(Source::Default, |f| {
            Source::File(f.path.display().to_string())
        });
        out.push_str(&format!("\n# From {from}:\n"));
        // A table of plain TOML values always serializes.
        out.push_str(&toml::to_string(&rest).unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::{Arg, ArgAction};

    use super::*;

    fn command() -> Command {
        Command::new("d")
            .arg(Arg::new("a").long("a").env("VIGIL_TEST_PRINT_A"))
            .arg(Arg::new("b").long("b").env("VIGIL_TEST_PRINT_B"))
            .arg(Arg::new("c").long("c"))
            .arg(Arg::new("d").long("d"))
            .arg(Arg::new("e").long("e"))
            .arg(Arg::new("hidden").long("hidden").hide(true))
            .arg(
                Arg::new("flag")
                    .long("flag")
                    .action(ArgAction::SetTrue)
                    .env("VIGIL_TEST_PRINT_FLAG"),
            )
    }

    #[test]
    fn each_value_names_its_source_and_secrets_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "c = 3\nb = 20\n[[table]]\nx = 1\n").unwrap();
        let matches = command().try_get_matches_from(["d", "--a", "1"]).unwrap();
        let file = File::read(&path, Source::Flag("--config".into())).unwrap();
        let effective: toml::Table = toml::from_str(
            "a = \"1\"\nb = 20\nc = 3\nd = \"dflt\"\nflag = false\n[[table]]\nx = 1\n",
        )
        .unwrap();
        let text = render(
            "d --print-config",
            &command(),
            &matches,
            &effective,
            Some(&file),
            &[
                Secret {
                    key: "password",
                    source: Some(Source::Env("VIGIL_PW".into())),
                },
                Secret {
                    key: "other_secret",
                    source: None,
                },
            ],
        );
        let p = path.display();
        for line in [
            "a = \"1\"  # flag --a".to_string(),
            format!("b = 20  # file {p}"),
            format!("c = 3  # file {p}"),
            "d = \"dflt\"  # default".to_string(),
            "# e is not set".to_string(),
            "flag = false  # default".to_string(),
            "# password = \"<redacted>\"  # env VIGIL_PW".to_string(),
            "# other_secret is not set".to_string(),
            format!("# File: {p} (flag --config)."),
            "[[table]]".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing:\n{text}");
        }
        assert!(!text.contains("hidden"), "{text}");
        // What is printed is a configuration file again (the secret's line a comment).
        let back: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(back.get("b"), Some(&toml::Value::Integer(20)));
        assert!(back.get("password").is_none());
    }

    #[test]
    fn a_flag_wins_over_the_file_and_the_file_over_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "c = 3\n").unwrap();
        let file = File::read(&path, Source::Env("VIGIL_CONFIG".into())).unwrap();
        let cmd = command();
        let m = cmd.clone().try_get_matches_from(["d", "--c", "4"]).unwrap();
        assert_eq!(
            source_of(&cmd, &m, "c", Some(&file)),
            Source::Flag("--c".into())
        );
        let m = cmd.clone().try_get_matches_from(["d"]).unwrap();
        assert_eq!(
            source_of(&cmd, &m, "c", Some(&file)),
            Source::File(path.display().to_string())
        );
        assert_eq!(source_of(&cmd, &m, "c", None), Source::Default);
        assert_eq!(source_of(&cmd, &m, "flag", Some(&file)), Source::Default);
    }
}
