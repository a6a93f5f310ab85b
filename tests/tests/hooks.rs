//! The controller's hooks end to end, as Redis Sentinel's notification and client-reconfig
//! scripts: the real controller runs shell scripts this test writes into a temporary folder
//! (each appends its arguments to a file), while real agents watch real redis-servers on
//! 127.0.0.1 and the primary is killed with kill -9. Asserted: what each hook was told, and in
//! which order; that a hook past its timeout is killed and logged while the failover went on
//! without it (the new primary took a write while the hook still ran); and that a hook file that
//! cannot be run is refused at start with a message naming it. Never how fast. Needs root.
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Result, bail};
use vigil_tests::{
    Controller, MetricsPage, VigilStore, WAIT, free_port, require_root, serial, wait_until,
};

const DS: &str = "cache";

/// An executable `/bin/sh` script `name` in `dir` with `body`.
fn script(dir: &Path, name: &str, body: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// A script that appends its arguments to `log`, one run a line, tab-separated.
fn recorder(dir: &Path, name: &str, log: &Path) -> Result<PathBuf> {
    script(
        dir,
        name,
        &format!(
            "{{ printf '%s\\t' \"$@\"; printf '\\n'; }} >> {}",
            log.display()
        ),
    )
}

/// Each run recorded in `log`: its arguments.
fn runs(log: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            l.strip_suffix('\t')
                .unwrap_or(l)
                .split('\t')
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// Where the first run whose first argument is `event` is in `runs`.
fn position(runs: &[Vec<String>], event: &str) -> Option<usize> {
    runs.iter()
        .position(|r| r.first().is_some_and(|e| e == event))
}

fn start(args: &[&str], metrics: u16) -> Result<VigilStore> {
    let listen = format!("127.0.0.1:{metrics}");
    let mut all = vec![
        "--grace-ms",
        "300",
        "--min-failover-interval-ms",
        "1000",
        "--metrics-listen",
        &listen,
    ];
    all.extend_from_slice(args);
    VigilStore::start(DS, 2, &all, &[])
}

/// The count of `hook` runs that ended with `outcome`, once the page has it.
fn hook_runs(port: u16, hook: &str, outcome: &str, want: f64) -> Result<()> {
    let labels = [("hook", hook), ("outcome", outcome)];
    wait_until(WAIT, &format!("{hook} {outcome} counted {want}"), || {
        let page = MetricsPage::scrape(port).ok()?;
        (page.value("vigil_controller_hook_runs_total", &labels) == Some(want)).then_some(())
    })
}

#[test]
fn a_kill_9_runs_the_hooks_with_sentinels_arguments() -> Result<()> {
    require_root();
    let _serial = serial();
    let dir = tempfile::Builder::new().prefix("vigil-hooks-").tempdir()?;
    let (notified, reconfigured) = (
        dir.path().join("notify.log"),
        dir.path().join("reconfig.log"),
    );
    let notify = recorder(dir.path(), "notify.sh", &notified)?;
    let reconfig = recorder(dir.path(), "reconfig.sh", &reconfigured)?;
    let metrics = free_port()?;
    let mut store = start(
        &[
            "--notify-command",
            &notify.display().to_string(),
            "--client-reconfig-command",
            &reconfig.display().to_string(),
        ],
        metrics,
    )?;
    let old = store.primary()?;
    store.kill(old)?;
    store.controller.log.wait_for("failover_finished")?;
    let new = wait_until(WAIT, "a replica promoted", || {
        store.primary().ok().filter(|p| *p != old)
    })?;

    let reconfigs = wait_until(WAIT, "the client-reconfig hook", || {
        Some(runs(&reconfigured)).filter(|r| !r.is_empty())
    })?;
    let (old_port, new_port) = (store.ports[old].to_string(), store.ports[new].to_string());
    assert_eq!(
        reconfigs,
        [[
            DS,
            "leader",
            "start",
            "127.0.0.1",
            &old_port,
            "127.0.0.1",
            &new_port
        ]],
        "once, as Sentinel: <master-name> <role> <state> <from-ip> <from-port> <to-ip> <to-port>"
    );
    let notes = wait_until(WAIT, "the notify hook on the failover's end", || {
        let r = runs(&notified);
        position(&r, "failover_finished").map(|_| r)
    })?;
    let at = |event: &str| position(&notes, event);
    let (down, started, finished) = (
        at("primary_down"),
        at("failover_started"),
        at("failover_finished"),
    );
    assert!(
        down.is_some() && down < started && started < finished,
        "primary_down, failover_started, failover_finished in that order: {notes:?}"
    );
    for run in &notes {
        assert_eq!(run.len(), 2, "<event> <description>: {run:?}");
        assert!(run[1].starts_with("cache "), "{run:?}");
    }
    let down = &notes[down.unwrap_or_default()][1];
    assert!(down.contains(&format!("n{old}")), "{down}");
    hook_runs(metrics, "client_reconfig", "ok", 1.0)?;
    Ok(())
}

/// Whether process `pid` runs (is not gone, and not a zombie).
fn runs_now(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn a_hook_past_its_timeout_is_killed_and_the_failover_does_not_wait_for_it() -> Result<()> {
    require_root();
    let _serial = serial();
    let dir = tempfile::Builder::new().prefix("vigil-hooks-").tempdir()?;
    let (pidfile, notified) = (dir.path().join("slow.pid"), dir.path().join("notify.log"));
    // It hangs on primary_down, the first event of the failover, and records the others.
    let notify = script(
        dir.path(),
        "notify.sh",
        &format!(
            "if [ \"$1\" = primary_down ]; then echo $$ > {p}; exec sleep 600; fi\n\
             echo \"$1\" >> {n}",
            p = pidfile.display(),
            n = notified.display()
        ),
    )?;
    let metrics = free_port()?;
    let mut store = start(
        &[
            "--notify-command",
            &notify.display().to_string(),
            "--hook-timeout-secs",
            "6",
        ],
        metrics,
    )?;
    let old = store.primary()?;
    store.kill(old)?;
    let hook: u32 = wait_until(WAIT, "the slow hook to start", || {
        std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
    })?;
    let new = wait_until(WAIT, "a replica promoted", || {
        store.primary().ok().filter(|p| *p != old)
    })?;
    wait_until(WAIT, "the new primary to take a write", || {
        let mut c = store.server(new).ok()?.connect().ok()?;
        redis::cmd("SET")
            .arg("during-the-hook")
            .arg("1")
            .query::<()>(&mut c)
            .ok()
    })?;
    // The order that matters: the write was taken while the hook raised before the promotion
    // still ran.
    if !runs_now(hook) {
        bail!("the slow hook had ended before the new primary took a write");
    }
    assert!(
        !store.controller.log.contains("hook ran past its timeout"),
        "the hook was killed before the write"
    );
    store
        .controller
        .log
        .wait_for("hook ran past its timeout and was killed")?;
    wait_until(WAIT, "the slow hook to be gone", || {
        (!runs_now(hook)).then_some(())
    })?;
    hook_runs(metrics, "notify", "timeout", 1.0)?;
    // The runs queued behind it run after it, in order.
    wait_until(WAIT, "the queued notify runs", || {
        let r = runs(&notified);
        let started = position(&r, "failover_started")?;
        (position(&r, "failover_finished")? > started).then_some(())
    })?;
    Ok(())
}

#[test]
fn a_hook_file_that_cannot_be_run_is_refused_at_start_naming_it() -> Result<()> {
    require_root();
    let _serial = serial();
    let dir = tempfile::Builder::new().prefix("vigil-hooks-").tempdir()?;
    let plain = dir.path().join("reconfig.sh");
    std::fs::write(&plain, "#!/bin/sh\ntrue\n")?;
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644))?;
    let missing = dir.path().join("notify.sh");
    let data = tempfile::Builder::new().prefix("vigil-ctl-").tempdir()?;
    for (flag, file, setting, says) in [
        (
            "--client-reconfig-command",
            &plain,
            "client_reconfig_command",
            "is not executable",
        ),
        (
            "--notify-command",
            &missing,
            "notify_command",
            "No such file",
        ),
    ] {
        let path = file.display().to_string();
        let e = match Controller::start(data.path(), &[flag, &path]) {
            Ok(_) => bail!("the controller started with {flag} {path}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            e.contains(setting) && e.contains(&path) && e.contains(says),
            "{flag}: {e}"
        );
    }
    Ok(())
}
