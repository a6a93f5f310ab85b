//! `vigil completions SHELL`: the completion script for a shell, made by clap_complete from the
//! same definition as the parser, so it never names a flag the CLI does not take.
use std::io::Write;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

pub const AFTER_HELP: &str = "\
Install, for example:
  vigil completions bash > /etc/bash_completion.d/vigil
  vigil completions zsh > \"${fpath[1]}/_vigil\"
  vigil completions fish > ~/.config/fish/completions/vigil.fish";

pub fn run(shell: Shell) -> anyhow::Result<()> {
    let mut command = super::Cli::command();
    // Made in memory, where writing cannot fail, then written out.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "vigil", &mut script);
    let mut out = std::io::stdout().lock();
    match out.write_all(&script).and_then(|()| out.flush()) {
        // The reader went away (`| head`): nothing more to say.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing the completion script to stdout"),
    }
}
