//! The hooks with real commands: small shell scripts written into a temporary folder, run by
//! the real runner. Every wait is bounded.
use std::{os::unix::fs::PermissionsExt, time::Instant};

use super::*;
use crate::{cluster::Term, member::ControllerInfo};

/// The longest any wait here may take.
const WAIT: Duration = Duration::from_secs(15);

fn me() -> ControllerInfo {
    ControllerInfo {
        name: "c1".into(),
        grpc: "http://127.0.0.1:7420".into(),
        sentinel: "127.0.0.1:26379".into(),
    }
}

/// An executable `/bin/sh` script named `name` in `dir`, with `body`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Waits (bounded) until `probe` holds.
async fn until(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !probe() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn runs(metrics: &Metrics, hook: Hook, outcome: Outcome) -> u64 {
    metrics
        .hook_runs
        .get_or_create(&crate::metrics::HookLabels {
            hook: hook.name(),
            outcome: outcome.name(),
        })
        .get()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_hook_gets_its_arguments_and_its_exit_status_is_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("argv");
    let ok = script(
        dir.path(),
        "ok.sh",
        &format!("printf '%s|' \"$@\" >> {}", out.display()),
    );
    let args: Vec<String> = ["failover_started", "cache epoch 2 from n0 to n1"]
        .map(String::from)
        .into();
    assert_eq!(run(Hook::Notify, &ok, &args, WAIT).await, Outcome::Ok);
    assert_eq!(
        lines(&out),
        ["failover_started|cache epoch 2 from n0 to n1|"]
    );
    let failing = script(
        dir.path(),
        "fail.sh",
        "echo 'no route to pager' >&2; exit 3",
    );
    assert_eq!(
        run(Hook::Notify, &failing, &args, WAIT).await,
        Outcome::Failed
    );
    let missing = dir.path().join("missing.sh");
    assert_eq!(
        run(Hook::Notify, &missing, &args, WAIT).await,
        Outcome::Failed
    );
}

#[tokio::test]
async fn a_long_stderr_is_cut_and_never_blocks_the_hook() {
    let mut pipe: &[u8] = &[b'x'; 200_000];
    let kept = read_kept(&mut pipe).await;
    assert_eq!(kept.len(), STDERR_KEPT + " [...]".len());
    assert!(kept.ends_with(" [...]"));
    let mut short: &[u8] = b"oops\n";
    assert_eq!(read_kept(&mut short).await, "oops");
}

/// A hook past its timeout is killed, and so is what it started (its process group): a
/// background `sleep` left holding its stderr would otherwise outlive it.
#[tokio::test]
async fn a_hook_past_its_timeout_is_killed_with_what_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let slow = script(
        dir.path(),
        "slow.sh",
        &format!("sleep 60 & echo $! > {}; wait", pidfile.display()),
    );
    let outcome = run(Hook::Notify, &slow, &[], Duration::from_millis(300)).await;
    assert_eq!(outcome, Outcome::Timeout);
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Gone, or a zombie waiting for whoever inherited it: not sleeping on.
    until("the hook's child to be killed", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true)
    })
    .await;
}

/// At most [`QUEUE`] runs wait while one runs; more are dropped and counted, never waited for.
#[tokio::test]
async fn runs_past_the_queue_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let out = dir.path().join("argv");
    // The first run blocks (until its timeout), the others return at once.
    let notify = script(
        dir.path(),
        "notify.sh",
        &format!(
            "if [ ! -e {s} ]; then touch {s}; exec sleep 60; fi; echo \"$1\" >> {o}",
            s = started.display(),
            o = out.display()
        ),
    );
    let metrics = Metrics::new();
    let config = HookConfig {
        notify: Some(notify),
        timeout: Duration::from_millis(500),
        ..HookConfig::default()
    };
    let hooks = Hooks::start(&config, Leadership::embedded(me()), Arc::clone(&metrics));
    hooks.notify("cache", Event::FailoverStarted, "first");
    until("the first run to start", || started.exists()).await;
    for _ in 0..QUEUE + 2 {
        hooks.notify("cache", Event::Alert(Alert::ReplicaDown), "again");
    }
    assert_eq!(runs(&metrics, Hook::Notify, Outcome::Dropped), 2);
    until("the queued runs to run", || {
        runs(&metrics, Hook::Notify, Outcome::Ok) == QUEUE as u64
    })
    .await;
    assert_eq!(runs(&metrics, Hook::Notify, Outcome::Timeout), 1);
    assert_eq!(lines(&out), vec!["replica_down".to_string(); QUEUE]);
}

/// A controller that does not lead runs no hook: what it raised before it led never runs, and
/// what it raises once it leads does.
#[tokio::test]
async fn only_the_leading_controller_runs_hooks() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("argv");
    let notify = script(
        dir.path(),
        "notify.sh",
        &format!("echo \"$1\" >> {}", out.display()),
    );
    let metrics = Metrics::new();
    let leadership = Leadership::following(me());
    let config = HookConfig {
        notify: Some(notify),
        ..HookConfig::default()
    };
    let hooks = Hooks::start(&config, Arc::clone(&leadership), Arc::clone(&metrics));
    hooks.notify("cache", Event::Alert(Alert::PrimaryDown), "while following");
    leadership.lead(
        Term {
            token: 7,
            key: b"k".to_vec(),
        },
        tokio::time::Instant::now() + WAIT,
    );
    hooks.notify("cache", Event::FailoverStarted, "while leading");
    until("the leader's run", || !lines(&out).is_empty()).await;
    assert_eq!(lines(&out), ["failover_started"]);
}

#[test]
fn the_description_is_one_bounded_line_naming_the_data_store() {
    assert_eq!(
        description_line("cache", "primary n0 failed\n(down)"),
        "cache primary n0 failed (down)"
    );
    let long = description_line("cache", &"é".repeat(MAX_DESCRIPTION));
    assert!(long.len() <= MAX_DESCRIPTION && long.starts_with("cache "));
}

#[test]
fn a_hook_file_must_be_an_executable_file() {
    let dir = tempfile::tempdir().unwrap();
    let ok = script(dir.path(), "ok.sh", "true");
    assert_eq!(unrunnable(&ok), None);
    std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(0o644)).unwrap();
    let why = unrunnable(&ok).unwrap();
    assert!(
        why.contains("ok.sh") && why.contains("not executable"),
        "{why}"
    );
    let why = unrunnable(&dir.path().join("nope.sh")).unwrap();
    assert!(why.contains("nope.sh"), "{why}");
    let why = unrunnable(dir.path()).unwrap();
    assert!(why.contains("is not a file"), "{why}");
}
