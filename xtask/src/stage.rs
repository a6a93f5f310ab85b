//! The quiet runner for every long step a command waits on (setup's installs, the builds): one
//! line naming the stage, finished with how long it took. The step's own output (apt-get, pip,
//! `cargo install`, and the eBPF crate's inner cargo build, which reaches the terminal as
//! `warning: vigil-agent@0.1.0: ...` lines) goes to a log file. Only when the step fails is the
//! tail of that log printed, with the command named and the whole log kept.
use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, Result, bail};

/// Lines of a failed step's output shown: enough for a compiler error or apt-get's complaint.
const TAIL_LINES: usize = 40;

/// Prints `line`, runs `cmd` in the workspace root with its output captured, and finishes the line
/// with the time taken; fails unless `cmd` exits 0.
pub fn run(line: &str, cmd: &mut Command) -> Result<()> {
    let shown = shown(cmd);
    print!("{line} ... ");
    std::io::stdout().flush()?;
    let log = tempfile::Builder::new()
        .prefix("vigil-xtask-")
        .suffix(".log")
        .tempfile()
        .context("making a log file for the step's output")?;
    // One open file for both streams, so they share the offset and interleave as written.
    let out = log.reopen()?;
    let err = out.try_clone()?;
    let start = Instant::now();
    let status = cmd
        .current_dir(crate::root())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status();
    let took = start.elapsed().as_secs_f64();
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            println!("failed");
            return Err(e).with_context(|| format!("starting `{shown}`"));
        }
    };
    if status.success() {
        println!("{took:.1} s");
        return Ok(());
    }
    println!("failed after {took:.1} s");
    let (_, path) = log.keep().context("keeping the failed step's log")?;
    let output = std::fs::read(&path).unwrap_or_default();
    let output = String::from_utf8_lossy(&output);
    let lines: Vec<&str> = output.lines().collect();
    for l in &lines[lines.len().saturating_sub(TAIL_LINES)..] {
        eprintln!("    {l}");
    }
    bail!(
        "`{shown}` failed ({status}); above are the last lines of its output, all of it is in {}",
        path.display()
    )
}

/// The command as a user would type it: the program's name (not the path cargo was found at) and
/// its arguments.
fn shown(cmd: &Command) -> String {
    let program = cmd.get_program();
    std::iter::once(Path::new(program).file_name().unwrap_or(program))
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    #[test]
    fn a_failed_step_names_its_command_and_keeps_its_log() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo first; echo last >&2; exit 3"]);
        let err = format!("{:#}", super::run("a step", &mut cmd).unwrap_err());
        assert!(
            err.starts_with("`sh -c echo first; echo last >&2; exit 3` failed"),
            "{err}"
        );
        let path = err.rsplit(' ').next().unwrap();
        let log = std::fs::read_to_string(path).unwrap();
        std::fs::remove_file(path).unwrap();
        assert_eq!(log, "first\nlast\n");
    }
}
