//! What every vigil command line does the same way.
use std::fmt::Display;

/// `text` with its default appended as clap shows one (`text [default: 100]`), for settings
/// that stay unset on the command line so a configuration file can still give them; the default
/// shown is the constant the code falls back to, so the two cannot drift apart.
pub fn with_default(text: &str, default: impl Display) -> String {
    format!("{text} [default: {default}]")
}
