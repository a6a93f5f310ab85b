//! Hooks: commands an operator gives the controller to run when something happens, as Redis
//! Sentinel's `notification-script` and `client-reconfig-script`.
//!
//! - The notify command runs on each alert a data store raises (as it is logged, so at most once
//!   a minute per kind) and when a failover or switchover starts and ends, with Sentinel's two
//!   arguments: `<event> <description>`, the description starting with the data store's name.
//! - The client-reconfig command runs when a failover or switchover has promoted a new primary,
//!   with Sentinel's seven arguments:
//!   `<datastore> leader start <from-ip> <from-port> <to-ip> <to-port>`. Like Sentinel, which
//!   calls it once per failover with state `start` once the replica is promoted, vigil runs it
//!   once, when the endpoint starts naming the new primary.
//!
//! Only the leading controller runs them. A hook is never on a failover's path: raising one only
//! queues it (at most [`QUEUE`] waiting per hook; past that it is dropped with a warning), and a
//! task per hook runs them one at a time, in order, each killed (with whatever it started in its
//! process group) once it has run for the timeout. Each run's outcome is logged, with its exit
//! status and the start of its stderr, and counted in `vigil_controller_hook_runs_total`.
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::Arc,
    time::Duration,
};

use nix::{sys::signal::Signal, unistd::Pid};
use tokio::{
    io::{AsyncRead, AsyncReadExt},
    process::Command,
    sync::mpsc,
};
use vigil_proto::HostPort;

use crate::{alerts::Alert, cluster::Leadership, metrics::Metrics};

/// How long a hook may run before it is killed, in seconds: Sentinel allows its scripts 60 s;
/// a hook that notifies or reconfigures clients should take far less, and one that hangs
/// holds up the hooks queued behind it.
pub const DEFAULT_HOOK_TIMEOUT_SECS: u64 = 10;
/// The longest timeout accepted, in seconds.
pub const MAX_HOOK_TIMEOUT_SECS: u64 = 600;
/// Runs of one hook that may wait while another runs; one more is dropped with a warning.
pub const QUEUE: usize = 16;
/// Bytes of a hook's stderr kept for its log line; the rest is read and dropped.
const STDERR_KEPT: usize = 512;
/// Bytes of an event's description passed to the notify command: one line, bounded.
const MAX_DESCRIPTION: usize = 1024;
/// How long a killed hook may take to be reaped before it is left to tokio's reaper.
const REAP_WITHIN: Duration = Duration::from_secs(1);

/// Which hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    Notify,
    ClientReconfig,
}

impl Hook {
    /// Its name in logs and in the `hook` label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Notify => "notify",
            Self::ClientReconfig => "client_reconfig",
        }
    }

    /// The setting that names its command.
    pub fn setting(self) -> &'static str {
        match self {
            Self::Notify => "notify_command",
            Self::ClientReconfig => "client_reconfig_command",
        }
    }
}

/// How one run of a hook ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It exited 0.
    Ok,
    /// It could not start, exited non-zero or was killed by a signal.
    Failed,
    /// It ran past the timeout and was killed.
    Timeout,
    /// Its queue was full: it never ran.
    Dropped,
}

impl Outcome {
    /// Its name in logs and in the `outcome` label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Timeout => "timeout",
            Self::Dropped => "dropped",
        }
    }
}

/// What the notify command is told of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An alert, as logged.
    Alert(Alert),
    /// A failover began: its epoch is bumped.
    FailoverStarted,
    /// An operator's planned switchover began.
    SwitchoverStarted,
    /// A failover or switchover promoted its target (a failed one is `Alert(FailoverFailed)`).
    FailoverFinished,
}

impl Event {
    /// The first argument: the alert's name, or the failover's log event.
    pub fn name(self) -> &'static str {
        match self {
            Self::Alert(a) => a.name(),
            Self::FailoverStarted => "failover_started",
            Self::SwitchoverStarted => "switchover_started",
            Self::FailoverFinished => "failover_finished",
        }
    }
}

/// The hooks' settings, checked at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookConfig {
    pub notify: Option<PathBuf>,
    pub client_reconfig: Option<PathBuf>,
    pub timeout: Duration,
}

impl Default for HookConfig {
    fn default() -> Self {
        Self {
            notify: None,
            client_reconfig: None,
            timeout: Duration::from_secs(DEFAULT_HOOK_TIMEOUT_SECS),
        }
    }
}

/// Why a hook's file cannot be run, or None when it can: it must be a file with an execute bit.
pub fn unrunnable(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Err(e) => Some(format!("{}: {e}", path.display())),
        Ok(m) if !m.is_file() => Some(format!("{} is not a file", path.display())),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Some(format!(
            "{} is not executable (chmod +x it)",
            path.display()
        )),
        Ok(_) => None,
    }
}

/// Queues hooks to run; cloned into every reconciler. Without a command for a hook, raising it
/// does nothing.
#[derive(Clone)]
pub struct Hooks {
    notify: Option<mpsc::Sender<Vec<String>>>,
    client_reconfig: Option<mpsc::Sender<Vec<String>>>,
    leadership: Option<Arc<Leadership>>,
    metrics: Arc<Metrics>,
}

impl Hooks {
    /// No hooks.
    pub fn none(metrics: Arc<Metrics>) -> Self {
        Self {
            notify: None,
            client_reconfig: None,
            leadership: None,
            metrics,
        }
    }

    /// Starts a runner task for each configured hook. Runs only while `leadership` says this
    /// controller leads.
    pub fn start(config: &HookConfig, leadership: Arc<Leadership>, metrics: Arc<Metrics>) -> Self {
        let runner = |hook: Hook, path: &Option<PathBuf>| {
            path.as_ref().map(|path| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(run_queue(
                    hook,
                    path.clone(),
                    config.timeout,
                    rx,
                    Arc::clone(&metrics),
                ));
                tx
            })
        };
        Self {
            notify: runner(Hook::Notify, &config.notify),
            client_reconfig: runner(Hook::ClientReconfig, &config.client_reconfig),
            leadership: Some(leadership),
            metrics,
        }
    }

    /// Tells the notify command of `event` in `datastore`.
    pub fn notify(&self, datastore: &str, event: Event, description: &str) {
        self.enqueue(
            Hook::Notify,
            self.notify.as_ref(),
            vec![
                event.name().to_string(),
                description_line(datastore, description),
            ],
        );
    }

    /// Tells the client-reconfig command that `datastore`'s primary moved from `from` to `to`.
    pub fn client_reconfig(&self, datastore: &str, from: &HostPort, to: &HostPort) {
        let args = [
            datastore,
            "leader",
            "start",
            &from.host,
            &from.port.to_string(),
            &to.host,
            &to.port.to_string(),
        ];
        self.enqueue(
            Hook::ClientReconfig,
            self.client_reconfig.as_ref(),
            args.iter().map(|a| a.to_string()).collect(),
        );
    }

    /// Queues a run, never waiting: a full queue drops it.
    fn enqueue(&self, hook: Hook, queue: Option<&mpsc::Sender<Vec<String>>>, args: Vec<String>) {
        let Some(queue) = queue else {
            return;
        };
        let leading = self
            .leadership
            .as_ref()
            .and_then(|l| l.held_term())
            .is_some();
        if !leading {
            return;
        }
        if let Err(e) = queue.try_send(args) {
            let args = match e {
                mpsc::error::TrySendError::Full(a) | mpsc::error::TrySendError::Closed(a) => a,
            };
            tracing::warn!(hook = hook.name(), args = ?args, waiting = QUEUE,
                "hook dropped: its queue is full (runs are slow or hanging)");
            self.metrics.hook_run(hook.name(), Outcome::Dropped.name());
        }
    }
}

/// The notify command's second argument: the data store's name, then the description, on one
/// line of at most [`MAX_DESCRIPTION`] bytes.
fn description_line(datastore: &str, description: &str) -> String {
    let mut line = format!("{datastore} {description}").replace(['\n', '\r'], " ");
    if line.len() > MAX_DESCRIPTION {
        let mut end = MAX_DESCRIPTION;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}

/// Runs `hook`'s queued runs one at a time, in order, until every sender is gone.
async fn run_queue(
    hook: Hook,
    path: PathBuf,
    timeout: Duration,
    mut rx: mpsc::Receiver<Vec<String>>,
    metrics: Arc<Metrics>,
) {
    while let Some(args) = rx.recv().await {
        let outcome = run(hook, &path, &args, timeout).await;
        metrics.hook_run(hook.name(), outcome.name());
    }
}

/// Runs `path` with `args` for at most `timeout`, and logs how it ended.
pub async fn run(hook: Hook, path: &Path, args: &[String], timeout: Duration) -> Outcome {
    let name = hook.name();
    let mut child = match Command::new(path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills whatever it started too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(hook = name, command = %path.display(), error = %e, "hook could not start");
            return Outcome::Failed;
        }
    };
    let pid = child.id();
    let mut stderr = child.stderr.take();
    let ran = tokio::time::timeout(timeout, async {
        let kept = match stderr.as_mut() {
            Some(s) => read_kept(s).await,
            None => String::new(),
        };
        (child.wait().await, kept)
    })
    .await;
    match ran {
        Ok((Ok(status), stderr)) => log_exit(hook, path, args, status, &stderr),
        Ok((Err(e), _)) => {
            tracing::warn!(hook = name, command = %path.display(), error = %e, "hook could not be waited for");
            Outcome::Failed
        }
        Err(_) => {
            // Not reaped yet (`wait` did not return), so its pid is still its process group's.
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = tokio::time::timeout(REAP_WITHIN, child.wait()).await;
            tracing::warn!(hook = name, command = %path.display(), args = ?args, timeout_secs = timeout.as_secs_f64(),
                "hook ran past its timeout and was killed");
            Outcome::Timeout
        }
    }
}

/// The first [`STDERR_KEPT`] bytes of `stderr` (lossy UTF-8, marked when cut); the rest is
/// read to its end and dropped, so a chatty hook never blocks on a full pipe.
async fn read_kept(stderr: &mut (impl AsyncRead + Unpin)) -> String {
    let mut kept = Vec::new();
    let _ = (&mut *stderr)
        .take(STDERR_KEPT as u64)
        .read_to_end(&mut kept)
        .await;
    let more = tokio::io::copy(stderr, &mut tokio::io::sink())
        .await
        .unwrap_or(0);
    let mut text = String::from_utf8_lossy(&kept).trim_end().to_string();
    if more > 0 {
        text.push_str(" [...]");
    }
    text
}

fn log_exit(hook: Hook, path: &Path, args: &[String], status: ExitStatus, stderr: &str) -> Outcome {
    let name = hook.name();
    if status.success() {
        tracing::info!(hook = name, command = %path.display(), args = ?args, stderr, "hook ran");
        Outcome::Ok
    } else {
        tracing::warn!(hook = name, command = %path.display(), args = ?args, status = %status, stderr,
            "hook failed");
        Outcome::Failed
    }
}

#[cfg(test)]
mod tests;
