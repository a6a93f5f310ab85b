//! What every vigil command line does the same way: settings that stay unset on the command line
//! (so a configuration file can still give them) show their default in `--help` from the
//! constant the code falls back to, so the two cannot drift apart.
use std::fmt::Display;

/// `text` with its default appended as clap shows one: `text [default: 100]`.
pub fn with_default(text: &str, default: impl Display) -> String {
    format!("{text} [default: {default}]")
}

/// Checks a command's flags against their defaults: each of `defaults` (flag id, default) must
/// show exactly that default in its help, and every other flag must be one of `without_default`.
/// Returns what is wrong, one line per flag.
pub fn check_defaults_shown(
    command: &clap::Command,
    defaults: &[(&str, String)],
    without_default: &[&str],
) -> Result<(), String> {
    let mut wrong = Vec::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let shown = help
            .split_once("[default: ")
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(default, _)| default);
        match defaults.iter().find(|(flag, _)| *flag == id) {
            Some((_, want)) if shown == Some(want.as_str()) => {}
            Some((_, want)) => wrong.push(format!("--{id} shows {shown:?}, not {want:?}")),
            None if without_default.contains(&id) => {}
            None => wrong.push(format!(
                "--{id} has no default constant and is not listed as having none"
            )),
        }
    }
    for (flag, _) in defaults {
        if command.get_arguments().all(|a| a.get_id() != *flag) {
            wrong.push(format!("--{flag} is listed but is no flag"));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use clap::{Arg, Command};

    use super::*;

    #[test]
    fn a_default_missing_wrong_or_unlisted_is_named() {
        let command = Command::new("x")
            .arg(Arg::new("shown").long("shown").help(with_default("A", 5)))
            .arg(Arg::new("stale").long("stale").help(with_default("B", 6)))
            .arg(Arg::new("bare").long("bare").help("C"))
            .arg(Arg::new("name").long("name").help("D"));
        let defaults = [("shown", "5".to_string()), ("stale", "7".to_string())];
        let e = check_defaults_shown(&command, &defaults, &["name"]).unwrap_err();
        assert!(e.contains("--stale shows Some(\"6\"), not \"7\""), "{e}");
        assert!(e.contains("--bare has no default constant"), "{e}");
        assert!(!e.contains("--shown") && !e.contains("--name"), "{e}");
        let fixed = [("shown", "5".to_string()), ("stale", "6".to_string())];
        assert_eq!(
            check_defaults_shown(&command, &fixed, &["name", "bare"]),
            Ok(())
        );
        let e = check_defaults_shown(
            &command,
            &[("gone", "1".into())],
            &["shown", "stale", "bare", "name"],
        );
        assert!(e.unwrap_err().contains("--gone is listed but is no flag"));
    }
}
