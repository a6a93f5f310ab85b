//! `cargo xtask`: the developer commands. `setup` installs what a fresh machine lacks, `test` runs
//! the whole suite, `demo` shows vigil at work, `bench` measures it.
mod bench;
mod demo;
mod demo_ha;
mod kill_path;
mod setup;
mod stage;

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "vigil's developer commands")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing (nightly rust-src, bpf-linker, redis, protoc, etcd, promtool,
    /// kubernetes-validate) and mount tracefs/bpffs.
    Setup {
        /// Only what building the binaries needs (protoc, nightly with rust-src, bpf-linker),
        /// without root and with no kernel checks: for a container image's build stage.
        #[arg(long)]
        build_only: bool,
    },
    /// Set up, build, and run the whole test suite (needs root: it loads eBPF programs).
    Test {
        /// Passed to `cargo test` after `--` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Set up, build, and show vigil watching a real redis-server through injected faults.
    Demo {
        /// Three controllers on a three-member etcd: kill -9 of the leading controller, then of
        /// the primary.
        #[arg(long)]
        ha: bool,
    },
    /// Benchmarks; each prints percentiles and ends with one summary line.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Setup { build_only } => setup::run(build_only),
        Cmd::Test { args } => test(&args),
        Cmd::Demo { ha: false } => demo::run(),
        Cmd::Demo { ha: true } => demo_ha::run(),
        Cmd::Bench { which } => bench::run(which),
    }
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn test(args: &[String]) -> Result<()> {
    setup::run(false)?;
    stage::run(
        "==> building the workspace",
        cargo().args(["build", "--bins"]),
    )?;
    stage::run("==> building the tests", cargo().args(["test", "--no-run"]))?;
    println!("==> running the tests");
    let bin_dir = root().join("target/debug");
    let mut child = cargo()
        .args(["test", "--no-fail-fast", "--"])
        .args(args)
        .env("VIGIL_BIN_DIR", bin_dir)
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    // Echo every line, and add up the per-binary results into one closing line.
    let (mut passed, mut failed) = (0u64, 0u64);
    let stdout = child.stdout.take().context("cargo test has no stdout")?;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        println!("{line}");
        if let Some((p, f)) = parse_test_result(&line) {
            passed += p;
            failed += f;
        }
    }
    let status = child.wait()?;
    println!("tests: {passed} passed, {failed} failed");
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    Ok(())
}

/// (passed, failed) from a libtest line such as `test result: ok. 12 passed; 0 failed; ...`.
fn parse_test_result(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("test result: ")?;
    let count = |word: &str| {
        rest.split(';').find_map(|part| {
            let (n, w) = part.trim().rsplit_once(' ')?;
            if w != word {
                return None;
            }
            n.rsplit(' ').next()?.parse::<u64>().ok()
        })
    };
    Some((count("passed")?, count("failed")?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn libtest_result_lines_are_added_up() {
        let ok = "test result: ok. 12 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 16.58s";
        assert_eq!(super::parse_test_result(ok), Some((12, 0)));
        let bad = "test result: FAILED. 10 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(super::parse_test_result(bad), Some((10, 1)));
        assert_eq!(super::parse_test_result("running 3 tests"), None);
    }
}
