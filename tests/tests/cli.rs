//! The `vigil` CLI end to end, run as an operator runs it against a real controller with real
//! agents beside real redis-servers on 127.0.0.1: the failover history and its timeline,
//! maintenance mode (pause, resume, and a pause that outlives a restart), the exit codes of
//! `vigil status`, `vigil watch --json` across a controller restart, and the completions and
//! manual pages. Needs root (the agents load eBPF programs).
use std::{
    io::{BufRead, BufReader, Read, Write},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use vigil_tests::{
    Controller, HaStore, VigilStore, WAIT, free_port, output_within, require_root, serial,
    wait_until, workspace_bin,
};

const DS: &str = "cache";
/// Longest one `vigil` call may take.
const CLI_LIMIT: Duration = Duration::from_secs(10);
/// How long a paused store is watched for a failover that must not come. The reconciler judges
/// the primary on every verdict (the agents send one at least every 100 ms) and on its own tick
/// (every 50 ms); unpaused, it starts the failover of a dead primary within one of those plus
/// the candidates' probe (100 ms at most). Two seconds are forty ticks and twenty heartbeats of
/// every agent: a failover the pause did not stop would have started many times over.
const PAUSED_WINDOW: Duration = Duration::from_secs(2);
/// The controllers here: past their start-up grace quickly, and no flap guard in the way of a
/// test's second failover.
const CONTROLLER_ARGS: &[&str] = &["--grace-ms", "300", "--min-failover-interval-ms", "1000"];

/// `vigil ARGS` against `ctl`: its exit code, stdout and stderr.
fn vigil(ctl: &Controller, args: &[&str]) -> Result<(i32, String, String)> {
    let out = output_within(ctl.vigil()?.args(args), CLI_LIMIT)?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `vigil ARGS` that must succeed: its stdout.
fn vigil_ok(ctl: &Controller, args: &[&str]) -> Result<String> {
    let (code, out, err) = vigil(ctl, args)?;
    if code != 0 {
        bail!("vigil {args:?} exited {code}: {err}");
    }
    Ok(out)
}

/// `vigil history cache --json`: the data store's failovers.
fn history(ctl: &Controller) -> Result<Vec<Value>> {
    let all: Value = serde_json::from_str(&vigil_ok(ctl, &["history", DS, "--json"])?)?;
    assert_eq!(all[0]["name"], DS, "{all}");
    all[0]["failovers"]
        .as_array()
        .cloned()
        .ok_or_else(|| anyhow!("no failovers array: {all}"))
}

/// The node id of the server on `port`.
fn node_of(store: &VigilStore, port: u16) -> Result<String> {
    let i = store
        .ports
        .iter()
        .position(|p| *p == port)
        .ok_or_else(|| anyhow!("{port} is not one of ours"))?;
    Ok(format!("n{i}"))
}

/// Waits until the Sentinel endpoint names a primary other than server 0.
fn wait_failed_over(store: &VigilStore) -> Result<u16> {
    store.controller.wait_primary_moved(DS, store.ports[0])
}

/// A log line of the controller whose event is `event`.
fn event_line(event: &str) -> String {
    format!("\"event\":\"{event}\"")
}

/// Asserts a finished failover's record: from n0 to `to`, cause down, at `epoch`, and a
/// timeline from the failure through its stages in order.
fn assert_kill_9_failover(f: &Value, epoch: u64, to: &str) {
    assert_eq!(f["cause"], "down", "{f}");
    assert_eq!(f["epoch"], epoch, "{f}");
    assert_eq!(f["from"], "n0", "{f}");
    assert_eq!(f["to"], to, "{f}");
    assert_eq!(f["outcome"], "ok", "{f}");
    assert_eq!(f["timeline_from"], "failure", "{f}");
    let stages: Vec<(&str, u64)> = f["timeline"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["stage"].as_str().unwrap_or("?"),
                        s["ms"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let names: Vec<&str> = stages.iter().map(|(n, _)| *n).collect();
    // The agent beside the killed server is alive: it confirms the fence.
    assert_eq!(names, ["decided", "fenced", "promoted", "done"], "{f}");
    assert!(
        stages.windows(2).all(|w| w[0].1 <= w[1].1),
        "the timeline runs backwards: {f}"
    );
    let done = stages.last().map_or(0, |s| s.1);
    assert!(
        done >= f["duration_ms"].as_u64().unwrap_or(u64::MAX),
        "done ({done} ms from the failure) comes before the failover's own duration ends: {f}"
    );
}

#[test]
fn history_after_a_kill_9_failover_shows_its_cause_epoch_and_timeline_in_order() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut s = VigilStore::start(DS, 2, CONTROLLER_ARGS, &[])?;
    assert!(
        history(&s.controller)?.is_empty(),
        "a new store has no history"
    );
    s.kill(0)?;
    let new = wait_failed_over(&s)?;
    s.controller.log.wait_for("failover_finished")?;
    let to = node_of(&s, new)?;
    let failovers = history(&s.controller)?;
    assert_eq!(failovers.len(), 1, "{failovers:?}");
    assert_kill_9_failover(&failovers[0], 2, &to);
    // The text says the same, one failover and its timeline.
    let text = vigil_ok(&s.controller, &["history", DS])?;
    assert!(text.starts_with("cache  1 failovers\n"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains(" down ") && l.contains(" n0 ") && l.contains(&format!(" {to} "))),
        "{text}"
    );
    assert!(text.contains("timeline from failure: decided +"), "{text}");
    Ok(())
}

#[test]
fn a_paused_store_keeps_its_dead_primary_until_resumed_then_fails_over() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut s = VigilStore::start(DS, 2, CONTROLLER_ARGS, &[])?;
    let out = vigil_ok(&s.controller, &["pause", DS])?;
    assert!(
        out.starts_with("cache: paused: no automatic failover"),
        "{out}"
    );
    // Idempotent: the second pause says so and changes nothing.
    let again = vigil_ok(&s.controller, &["pause", DS])?;
    assert!(again.contains("was already paused"), "{again}");
    assert!(s.controller.log.contains(&event_line("datastore_paused")));
    let st = s.controller.status(DS)?;
    assert_eq!(st["paused"], true, "{st}");
    let (code, table, _) = vigil(&s.controller, &["status", DS])?;
    assert!(table.contains("primary n0  PAUSED"), "{table}");
    assert_eq!(code, 1, "a paused store is degraded: {table}");

    s.kill(0)?;
    // The controller saw the failure: the primary is down, and the pause holds the failover.
    s.controller.log.wait_for(&event_line("primary_down"))?;
    let paused = s.controller.log.wait_for(&event_line("paused"))?;
    assert!(paused.contains("\"level\":\"WARN\""), "{paused}");
    let until = Instant::now() + PAUSED_WINDOW;
    while Instant::now() < until {
        assert_eq!(
            s.controller.controller_primary(DS)?,
            Some(s.ports[0]),
            "the primary moved while paused"
        );
        assert!(
            !s.controller.log.contains("failover_started"),
            "failed over while paused"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        history(&s.controller)?.is_empty(),
        "a failover was recorded while paused"
    );
    assert_eq!(s.controller.status(DS)?["epoch"], 1);
    // Its primary is dead and nothing will replace it: no primary.
    let (code, _, _) = vigil(&s.controller, &["status", DS])?;
    assert_eq!(code, 2, "a paused store with a dead primary has none");

    let out = vigil_ok(&s.controller, &["resume", DS])?;
    assert!(out.starts_with("cache: resumed"), "{out}");
    let new = wait_failed_over(&s)?;
    s.controller.log.wait_for("failover_finished")?;
    let to = node_of(&s, new)?;
    let failovers = history(&s.controller)?;
    assert_eq!(failovers.len(), 1, "{failovers:?}");
    assert_kill_9_failover(&failovers[0], 2, &to);
    assert_eq!(s.controller.status(DS)?["paused"], false);
    Ok(())
}

/// `vigil ARGS` against `store`'s controller over TLS, presenting the certificate `who` of its
/// installation: its exit code, stdout and stderr.
fn vigil_as(store: &VigilStore, who: &str, args: &[&str]) -> Result<(i32, String, String)> {
    let certs = store.certs.as_ref().ok_or_else(|| anyhow!("no TLS"))?;
    let out = output_within(
        Command::new(workspace_bin("vigil")?)
            .args(["--controller", &store.controller.url()])
            .args(certs.client_args(who))
            .args(args),
        CLI_LIMIT,
    )?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn over_tls_pause_and_resume_need_an_operator_and_any_certificate_reads_the_history() -> Result<()>
{
    require_root();
    let _serial = serial();
    let s = VigilStore::start_tls(DS, 1, CONTROLLER_ARGS, &[])?;
    for verb in ["pause", "resume"] {
        let (code, _, err) = vigil_as(&s, "n1", &[verb, DS])?;
        assert_eq!(code, 1, "a node's certificate may {verb}: {err}");
        assert!(err.contains("needs an operator's certificate"), "{err}");
    }
    assert_eq!(
        s.controller.status(DS)?["paused"],
        false,
        "a refused pause paused"
    );
    let (code, out, err) = vigil_as(&s, "n1", &["history", DS, "--json"])?;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out)?;
    assert_eq!(v[0]["name"], DS, "{v}");
    let (code, out, err) = vigil_as(&s, "cli", &["pause", DS])?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("paused"), "{out}");
    assert_eq!(s.controller.status(DS)?["paused"], true);
    let (code, _, err) = vigil_as(&s, "cli", &["resume", DS])?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(s.controller.status(DS)?["paused"], false);
    Ok(())
}

#[test]
fn a_pause_holds_across_a_change_of_leader_and_followers_show_it_and_the_history() -> Result<()> {
    require_root();
    let _serial = serial();
    // A grace after a change of leader long enough for every agent to find the new leader.
    let mut s = HaStore::start(
        DS,
        &["--grace-ms", "2000", "--min-failover-interval-ms", "1000"],
        &[],
    )?;
    s.wait_healthy()?;
    let old = s.leader()?;
    vigil_ok(s.controller(old)?, &["pause", DS])?;
    // The followers tell it from the view the leader shares through etcd, and read the
    // history the leader persisted there.
    for i in s.trio.live().into_iter().filter(|&i| i != old) {
        let follower = s.controller(i)?;
        wait_until(WAIT, "a follower to show the pause", || {
            let st = follower.status(DS).ok()?;
            (st["leading"] == false && st["paused"] == true).then_some(())
        })?;
        let (code, out, err) = vigil(follower, &["status", DS])?;
        assert!(out.contains("PAUSED"), "{out}");
        assert_eq!(code, 1, "paused is degraded on a follower too: {out}{err}");
        assert!(history(follower)?.is_empty());
    }
    s.trio.kill(old)?;
    let new = s.leader()?;
    assert_ne!(new, old);
    s.wait_healthy()?;
    assert_eq!(
        s.status()?["paused"],
        true,
        "the new leader forgot the pause"
    );
    s.kill_server(0)?;
    let leader = s.controller(new)?;
    leader.log.wait_for(&event_line("paused"))?;
    let until = Instant::now() + PAUSED_WINDOW;
    while Instant::now() < until {
        assert_eq!(leader.controller_primary(DS)?, Some(s.ports[0]));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        s.trio.events("failover_started").is_empty(),
        "failed over while paused"
    );
    vigil_ok(leader, &["resume", DS])?;
    let moved = wait_until(WAIT, "a replica published as primary", || {
        leader
            .controller_primary(DS)
            .ok()
            .flatten()
            .filter(|p| *p != s.ports[0])
    })?;
    let to = format!("n{}", s.index_of(moved)?);
    // The remaining follower reads the failover from etcd.
    let follower = s
        .trio
        .live()
        .into_iter()
        .find(|&i| i != new)
        .ok_or_else(|| anyhow!("no follower left"))?;
    let failovers = wait_until(WAIT, "the failover in a follower's history", || {
        let h = history(s.controller(follower).ok()?).ok()?;
        (!h.is_empty()).then_some(h)
    })?;
    assert_eq!(failovers.len(), 1, "{failovers:?}");
    assert_kill_9_failover(&failovers[0], 2, &to);
    Ok(())
}

/// The controller's /metrics page, once it serves one with `metric`.
fn metrics_with(port: u16, metric: &str) -> Result<String> {
    wait_until(WAIT, &format!("{metric} on /metrics"), || {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
        let mut body = String::new();
        c.read_to_string(&mut body).ok()?;
        body.contains(metric).then_some(body)
    })
}

#[test]
fn a_pause_survives_a_controller_restart_and_an_operators_failover_still_runs() -> Result<()> {
    require_root();
    let _serial = serial();
    let metrics = free_port()?;
    let listen = format!("127.0.0.1:{metrics}");
    let mut args = CONTROLLER_ARGS.to_vec();
    args.extend(["--metrics-listen", &listen]);
    let mut s = VigilStore::start(DS, 2, &args, &[])?;
    metrics_with(
        metrics,
        "vigil_controller_datastore_paused{datastore=\"cache\"} 0",
    )?;
    vigil_ok(&s.controller, &["pause", DS])?;
    metrics_with(
        metrics,
        "vigil_controller_datastore_paused{datastore=\"cache\"} 1",
    )?;

    s.controller.restart()?;
    s.wait_healthy()?;
    let st = s.controller.status(DS)?;
    assert_eq!(st["paused"], true, "the restart forgot the pause: {st}");
    metrics_with(
        metrics,
        "vigil_controller_datastore_paused{datastore=\"cache\"} 1",
    )?;
    // Past the restarted controller's grace, a dead primary is still not failed over.
    s.kill(0)?;
    s.controller.log.wait_for(&event_line("paused"))?;
    let until = Instant::now() + PAUSED_WINDOW;
    while Instant::now() < until {
        assert_eq!(s.controller.controller_primary(DS)?, Some(s.ports[0]));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !s.controller
            .all_lines()
            .iter()
            .any(|l| l.contains("failover_started")),
        "failed over while paused"
    );
    // An operator's failover still runs while paused, and leaves the store paused.
    let out = vigil_ok(&s.controller, &["failover", DS])?;
    assert!(out.contains("primary is now n"), "{out}");
    let new = wait_failed_over(&s)?;
    let failovers = history(&s.controller)?;
    assert_eq!(failovers.len(), 1, "{failovers:?}");
    let f = &failovers[0];
    assert_eq!(f["cause"], "manual", "{f}");
    assert_eq!(f["timeline_from"], "request", "{f}");
    assert_eq!(f["to"], node_of(&s, new)?, "{f}");
    let stages: Vec<&str> = f["timeline"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["stage"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(stages.first(), Some(&"decided"), "{f}");
    assert_eq!(stages.last(), Some(&"done"), "{f}");
    assert_eq!(s.controller.status(DS)?["paused"], true);
    vigil_ok(&s.controller, &["resume", DS])?;
    metrics_with(
        metrics,
        "vigil_controller_datastore_paused{datastore=\"cache\"} 0",
    )?;
    Ok(())
}

#[test]
fn status_exits_0_healthy_1_degraded_2_unreachable() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut s = VigilStore::start(DS, 2, CONTROLLER_ARGS, &[])?;
    let (code, out, _) = vigil(&s.controller, &["status"])?;
    assert_eq!(code, 0, "every node is healthy: {out}");
    let (code, json, _) = vigil(&s.controller, &["status", "--json"])?;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&json)?;
    assert_eq!(v[0]["condition"], "healthy", "{v}");
    // A replica's server stops: the store is degraded, its primary unaffected.
    s.kill(2)?;
    wait_until(WAIT, "n2 reported not healthy", || {
        let st = s.controller.status(DS).ok()?;
        st["nodes"]
            .as_array()?
            .iter()
            .any(|n| n["node"] == "n2" && n["health"] != "HEALTHY")
            .then_some(())
    })?;
    let (code, out, _) = vigil(&s.controller, &["status", DS])?;
    assert_eq!(code, 1, "a replica down is degraded: {out}");
    s.controller.kill();
    let (code, _, err) = vigil(&s.controller, &["status"])?;
    assert_eq!(code, 2, "no controller: {err}");
    assert!(err.contains("cannot reach the controller"), "{err}");
    Ok(())
}

/// Lines a child writes to a pipe, read on a thread.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn read(pipe: impl Read + Send + 'static) -> Self {
        let lines = Self::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                sink.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        lines
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits for a line after the first `skip` for which `check` holds; returns its index.
    fn wait(&self, skip: usize, what: &str, check: impl Fn(&str) -> bool) -> Result<usize> {
        wait_until(WAIT, what, || {
            self.all()
                .iter()
                .enumerate()
                .skip(skip)
                .find(|(_, l)| check(l))
                .map(|(i, _)| i)
        })
        .with_context(|| format!("saw {:?}", self.all()))
    }
}

/// `vigil watch --json` running, killed (by its pid) when dropped.
struct Watch {
    child: Child,
    out: Lines,
    err: Lines,
}

impl Watch {
    fn start(mut cmd: Command) -> Result<Self> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting vigil watch")?;
        let out = Lines::read(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?);
        let err = Lines::read(child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?);
        Ok(Self { child, out, err })
    }

    /// Waits for a JSON event after line `skip` with `kind` (and `node` when given).
    fn event(&self, skip: usize, kind: &str, node: Option<&str>) -> Result<usize> {
        self.out.wait(skip, &format!("a {kind} event"), |l| {
            let v: Value = serde_json::from_str(l).unwrap_or(Value::Null);
            v["kind"] == kind && node.is_none_or(|n| v["node"] == n)
        })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn watch_json_prints_events_and_reconnects_across_a_controller_restart() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut s = VigilStore::start(DS, 2, CONTROLLER_ARGS, &[])?;
    let mut cmd = s.controller.vigil()?;
    cmd.args(["watch", "--json", "--reconnect-for", "30"]);
    let w = Watch::start(cmd)?;
    w.err.wait(0, "the watch to connect", |l| {
        l.contains("watching the controller")
    })?;
    s.kill(2)?;
    let down = w.event(0, "+sdown", Some("n2"))?;
    // Every line is one JSON object with every field.
    for line in w.out.all() {
        let v: Value = serde_json::from_str(&line).with_context(|| format!("{line:?}"))?;
        for key in ["datastore", "epoch", "kind", "node", "detail"] {
            assert!(v.get(key).is_some(), "{key} missing: {line}");
        }
    }

    s.controller.restart()?;
    w.err.wait(0, "the loss said on stderr", |l| {
        l.contains("lost the controller")
    })?;
    w.err.wait(0, "the reconnection said on stderr", |l| {
        l.contains("reconnected") && l.contains("may have been missed")
    })?;
    let gap = w.event(down, "reconnected", None)?;
    // An event after the restart reaches the same watch.
    s.restart(2)?;
    w.event(gap, "-sdown", Some("n2"))?;
    Ok(())
}

#[test]
fn watch_gives_up_with_exit_2_after_its_reconnect_bound() -> Result<()> {
    let port = free_port()?;
    let mut cmd = Command::new(workspace_bin("vigil")?);
    cmd.args([
        "--controller",
        &format!("http://127.0.0.1:{port}"),
        "watch",
        "--reconnect-for",
        "1",
    ]);
    let out = output_within(&mut cmd, CLI_LIMIT)?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot reach the controller"), "{err}");
    assert!(err.contains("giving up: no connection"), "{err}");
    Ok(())
}

#[test]
fn completions_for_bash_name_the_subcommands() -> Result<()> {
    let out = output_within(
        Command::new(workspace_bin("vigil")?).args(["completions", "bash"]),
        CLI_LIMIT,
    )?;
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout)?;
    assert!(script.contains("complete -F _vigil"), "{script}");
    for sub in ["status", "history", "pause", "resume", "watch", "failover"] {
        assert!(script.contains(sub), "{sub} missing");
    }
    // Every shell clap_complete knows gets a script.
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = output_within(
            Command::new(workspace_bin("vigil")?).args(["completions", shell]),
            CLI_LIMIT,
        )?;
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
    Ok(())
}

#[test]
fn man_writes_a_page_per_subcommand_that_man_can_read() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out_dir = dir.path().join("man1");
    let out = output_within(
        Command::new(workspace_bin("vigil")?)
            .args(["man", "--out"])
            .arg(&out_dir),
        CLI_LIMIT,
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "vigil.1",
        "vigil-status.1",
        "vigil-history.1",
        "vigil-pause.1",
        "vigil-resume.1",
        "vigil-watch.1",
        "vigil-completions.1",
        "vigil-man.1",
    ] {
        let text = std::fs::read_to_string(out_dir.join(page))
            .with_context(|| format!("{page} was not written"))?;
        let name = page.trim_end_matches(".1");
        assert!(text.contains(&format!(".TH {name} 1")), "{page}: {text}");
    }
    let status = std::fs::read_to_string(out_dir.join("vigil-status.1"))?;
    assert!(
        status.contains("Exit codes"),
        "the exit codes are not in the page"
    );
    // Formatted by man itself where it is installed.
    if Command::new("man").arg("--version").output().is_ok() {
        let out = output_within(
            Command::new("man")
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "100")
                .arg("-l")
                .arg(out_dir.join("vigil-status.1")),
            CLI_LIMIT,
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("vigil-status"), "{text}");
        assert!(text.contains("Exit codes"), "{text}");
    }
    Ok(())
}
