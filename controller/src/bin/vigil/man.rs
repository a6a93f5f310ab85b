//! `vigil man --out DIR`: the manual pages, made by clap_mangen from the same definition as the
//! parser: vigil.1 and one page per subcommand (vigil-status.1, vigil-history.1, ...).
use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

pub fn run(out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("making {}", out.display()))?;
    let mut command = super::Cli::command().disable_help_subcommand(true);
    // Built, so each subcommand is named as a page names it ("vigil-status").
    command.build();
    write(command, out)
}

fn write(command: clap::Command, out: &Path) -> anyhow::Result<()> {
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write(sub.clone(), out)?;
    }
    let page = clap_mangen::Man::new(command)
        .generate_to(out)
        .with_context(|| format!("writing a manual page into {}", out.display()))?;
    println!("{}", page.display());
    Ok(())
}
