//! `vigil watch`: topology events (+switch-master, +sdown, -sdown, +odown) as they happen, one
//! line each, as text or JSON. The watch outlives the controller's restarts: when the stream
//! ends or the controller goes away it connects again, backing off from 100 ms to 5 s, and says
//! on stderr when it lost the controller and when it is back. A `reconnected` line on stdout marks
//! where events may have been missed. It gives up (exit code 2) after `--reconnect-for` seconds
//! without a connection.
use std::{
    io::Write,
    process::ExitCode,
    time::{Duration, Instant},
};

use tokio_stream::StreamExt;
use tonic::{Code, transport::Endpoint};
use vigil_proto::v1;

use super::Client;

/// How long the watch tries to reconnect before it gives up.
pub const DEFAULT_RECONNECT_FOR_SECS: u64 = 60;
/// The first wait between two connection attempts...
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// ...doubled after each failed one, up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// HTTP/2 pings this often on an idle stream, so that a controller that is gone without closing
/// the connection (a host powered off, a stopped process) is noticed...
const KEEPALIVE_EVERY: Duration = Duration::from_secs(5);
/// ...when a ping is not answered within this.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

pub const AFTER_HELP: &str = "\
When the stream ends or the controller goes away, the watch says so on stderr and connects
again, waiting 100 ms, then twice as long after each failed attempt, up to 5 s. Once back, it
says so on stderr and prints a `reconnected` event: events in between may have been missed, so
look at `vigil status`. It exits with code 2 after --reconnect-for seconds without a connection
(at start too), or when the controller refuses the watch (a certificate it does not take).

Each --json line is one object: {\"datastore\", \"epoch\", \"kind\", \"node\", \"detail\"}.";

#[derive(clap::Args)]
pub struct WatchArgs {
    /// One data store (default: all).
    datastore: Option<String>,
    /// One JSON object per event, one per line.
    #[arg(long)]
    json: bool,
    #[arg(long, value_name = "SECS", env = "VIGIL_WATCH_RECONNECT_FOR",
          help = vigil_proto::cli::with_default(
              "Give up (exit code 2) after this long without a connection to the controller",
              DEFAULT_RECONNECT_FOR_SECS))]
    reconnect_for: Option<u64>,
}

/// The waits between connection attempts: from [`FIRST_BACKOFF`], doubling, capped at
/// [`MAX_BACKOFF`]; back to the first after a connection.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next: FIRST_BACKOFF,
        }
    }

    fn next(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        wait
    }

    fn reset(&mut self) {
        self.next = FIRST_BACKOFF;
    }
}

/// Why a watch stopped.
enum Ended {
    /// The controller went away or ended the stream: connect again.
    Lost(String),
    /// The controller refused the watch: trying again would change nothing.
    Refused(tonic::Status),
    /// Nobody reads stdout any more (`| head`): the watch is over.
    NoReader,
}

/// Prints one line on stdout, flushed at once (a pipe's reader sees each event as it happens).
fn emit(line: &str) -> Result<(), Ended> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|_| Ended::NoReader)
}

/// Whether a refusal of the watch may pass by itself (the controller restarting, a follower that
/// lost its leader) rather than be the answer to this request (a certificate it does not take).
fn transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::ResourceExhausted
    )
}

fn event_line(e: &v1::TopologyEvent, json: bool) -> String {
    if json {
        serde_json::json!({
            "datastore": e.datastore,
            "epoch": e.epoch,
            "kind": e.kind,
            "node": e.node_id,
            "detail": e.detail,
        })
        .to_string()
    } else {
        format!(
            "{} {} epoch={} node={} {}",
            e.datastore, e.kind, e.epoch, e.node_id, e.detail
        )
    }
}

/// The event that marks a gap: the watch was disconnected for `gap`.
fn reconnected(datastore: &str, gap: Duration) -> v1::TopologyEvent {
    v1::TopologyEvent {
        datastore: datastore.to_string(),
        kind: "reconnected".into(),
        detail: format!(
            "disconnected for {} ms: events in between may have been missed",
            gap.as_millis()
        ),
        ..Default::default()
    }
}

/// Connects, asks for the events, and prints them until the stream ends.
async fn watch_once(
    endpoint: &Endpoint,
    datastore: &str,
    json: bool,
    on_connect: impl FnOnce() -> Result<(), Ended>,
) -> Result<Ended, Ended> {
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| Ended::Lost(format!("{e}")))?;
    let mut events = Client::new(channel)
        .watch(v1::WatchRequest {
            datastore: datastore.to_string(),
        })
        .await
        .map_err(|s| {
            if transient(s.code()) {
                Ended::Lost(s.message().to_string())
            } else {
                Ended::Refused(s)
            }
        })?
        .into_inner();
    on_connect()?;
    while let Some(e) = events.next().await {
        match e {
            Ok(e) => emit(&event_line(&e, json))?,
            Err(s) => return Ok(Ended::Lost(s.message().to_string())),
        }
    }
    Ok(Ended::Lost("the controller ended the stream".into()))
}

pub async fn run(endpoint: Endpoint, url: &str, args: WatchArgs) -> anyhow::Result<ExitCode> {
    let endpoint = endpoint
        .http2_keep_alive_interval(KEEPALIVE_EVERY)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let bound = Duration::from_secs(args.reconnect_for.unwrap_or(DEFAULT_RECONNECT_FOR_SECS));
    let datastore = args.datastore.unwrap_or_default();
    let mut backoff = Backoff::new();
    // Since when the watch has had no connection (from the start, at first).
    let mut down_since = Instant::now();
    let mut ever_connected = false;
    let mut said_unreachable = false;
    loop {
        let on_connect = || {
            if !ever_connected {
                eprintln!("vigil watch: watching the controller at {url}");
            } else {
                let gap = down_since.elapsed();
                eprintln!(
                    "vigil watch: reconnected to {url} after {} ms; events in between may have been missed",
                    gap.as_millis()
                );
                emit(&event_line(&reconnected(&datastore, gap), args.json))?;
            }
            Ok(())
        };
        match watch_once(&endpoint, &datastore, args.json, on_connect).await {
            Ok(Ended::Lost(why)) => {
                // It was connected: the gap starts now.
                ever_connected = true;
                down_since = Instant::now();
                backoff.reset();
                eprintln!("vigil watch: lost the controller at {url} ({why}); reconnecting");
            }
            Ok(Ended::NoReader) | Err(Ended::NoReader) => return Ok(ExitCode::SUCCESS),
            Ok(Ended::Refused(s)) | Err(Ended::Refused(s)) => {
                anyhow::bail!("the controller refused the watch: {}", s.message());
            }
            Err(Ended::Lost(why)) => {
                if down_since.elapsed() >= bound {
                    eprintln!(
                        "vigil watch: giving up: no connection to {url} for {} s ({why})",
                        bound.as_secs()
                    );
                    return Ok(ExitCode::from(2));
                }
                if !ever_connected && !std::mem::replace(&mut said_unreachable, true) {
                    eprintln!(
                        "vigil watch: cannot reach the controller at {url} ({why}); trying for {} s",
                        bound.as_secs()
                    );
                }
            }
        }
        tokio::time::sleep(backoff.next()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_100_ms_to_a_cap_of_5_s_and_starts_over_after_a_connection() {
        let mut b = Backoff::new();
        let waits: Vec<u64> = (0..9).map(|_| b.next().as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next(), FIRST_BACKOFF);
    }

    #[test]
    fn a_json_event_is_one_line_of_one_object() {
        let e = v1::TopologyEvent {
            datastore: "cache".into(),
            epoch: 2,
            kind: "+switch-master".into(),
            node_id: "n1".into(),
            detail: "cache 127.0.0.1 7000 127.0.0.1 7001".into(),
        };
        let line = event_line(&e, true);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["kind"], "+switch-master");
        assert_eq!(v["node"], "n1");
        assert_eq!(v["epoch"], 2);
        assert_eq!(
            event_line(&e, false),
            "cache +switch-master epoch=2 node=n1 cache 127.0.0.1 7000 127.0.0.1 7001"
        );
        let gap = event_line(&reconnected("", Duration::from_millis(1500)), true);
        let v: serde_json::Value = serde_json::from_str(&gap).unwrap();
        assert_eq!(v["kind"], "reconnected");
        assert!(
            v["detail"]
                .as_str()
                .unwrap()
                .contains("may have been missed")
        );
    }

    #[test]
    fn only_a_passing_trouble_is_retried() {
        assert!(transient(Code::Unavailable));
        assert!(!transient(Code::PermissionDenied));
        assert!(!transient(Code::Unauthenticated));
    }
}
