//! `vigil-agent run` configuration: flags, environment variables and a TOML file, in that order
//! of precedence over the defaults, validated with errors that name the field at fault.
//!
//! The same struct is the clap flag set and the TOML schema, so a setting has one name
//! everywhere: `--ping-interval-ms` on the command line, `VIGIL_PING_INTERVAL_MS` in the
//! environment, `ping_interval_ms` in the file.
use std::{net::SocketAddr, path::Path, time::Duration};

use serde::Deserialize;

use crate::{
    error::{AgentError, Result},
    kernel::KernelOptions,
    server::conn::ServerConn,
    verdict::rules::Thresholds,
};

/// Every setting of `vigil-agent run`; unset ones fall back to the file, then to the default.
#[derive(Clone, Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    /// The data store server this agent watches, as HOST:PORT (required).
    #[arg(long, env = "VIGIL_SERVER", value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// The controller's gRPC URL [default: http://127.0.0.1:7420].
    #[arg(long, env = "VIGIL_CONTROLLER", value_name = "URL")]
    pub controller: Option<String>,
    /// Name of the data store this server belongs to (required).
    #[arg(long, env = "VIGIL_DATASTORE", value_name = "NAME")]
    pub datastore: Option<String>,
    /// This node's id, unique within the data store (required).
    #[arg(long, env = "VIGIL_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,
    /// Failure zone (rack, availability zone) of this node [default: none].
    #[arg(long, env = "VIGIL_ZONE", value_name = "ZONE")]
    pub zone: Option<String>,
    /// Promotion priority: lower is preferred, 0 never promotes this node [default: 100].
    #[arg(long, env = "VIGIL_PRIORITY", value_name = "N")]
    pub priority: Option<u32>,
    /// HOST:PORT clients and peers use to reach the server [default: --server].
    #[arg(long, env = "VIGIL_ADVERTISE", value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// ACL user for the server [default: the default user].
    #[arg(long, env = "VIGIL_SERVER_USERNAME", value_name = "USER")]
    pub username: Option<String>,
    /// Password for the server (prefer the environment variable to the command line).
    #[arg(
        long,
        env = "VIGIL_SERVER_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub password: Option<String>,
    /// Address of the Prometheus /metrics endpoint, or "off" [default: 127.0.0.1:9431].
    #[arg(long, env = "VIGIL_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// How often to PING the local server, in ms [default: 100].
    #[arg(long, env = "VIGIL_PING_INTERVAL_MS", value_name = "MS")]
    pub ping_interval_ms: Option<u64>,
    /// Consecutive missed PINGs the kernel cannot explain before UNHEALTHY [default: 3].
    #[arg(long, env = "VIGIL_PING_MISSES", value_name = "N")]
    pub ping_misses: Option<u32>,
    /// Heartbeat verdict interval, in ms; changes are sent at once [default: 100].
    #[arg(long, env = "VIGIL_HEARTBEAT_MS", value_name = "MS")]
    pub heartbeat_ms: Option<u64>,
    /// How often to ask the server about role, replication and memory, in ms [default: 100].
    /// The controller promotes the replica with the highest offset it was told, so fresh
    /// offsets matter.
    #[arg(long, env = "VIGIL_HEALTH_INTERVAL_MS", value_name = "MS")]
    pub health_interval_ms: Option<u64>,
    /// Requests unread this long make a stall, in ms [default: 100].
    #[arg(long, env = "VIGIL_STALL_MS", value_name = "MS")]
    pub stall_ms: Option<u64>,
    /// Stopped this long makes the server UNHEALTHY, in ms [default: 100].
    #[arg(long, env = "VIGIL_STOPPED_MS", value_name = "MS")]
    pub stopped_ms: Option<u64>,
    /// A busy, blocked or starved stall this long makes the server UNHEALTHY, in ms [default: 5000].
    #[arg(long, env = "VIGIL_LONG_STALL_MS", value_name = "MS")]
    pub long_stall_ms: Option<u64>,
    /// A run-queue wait this long is logged one by one, in ms [default: 10].
    #[arg(long, env = "VIGIL_RUNQ_THRESHOLD_MS", value_name = "MS")]
    pub runq_threshold_ms: Option<u64>,
    /// Run-queue p99 above this makes the server DEGRADED, in ms [default: 10].
    #[arg(long, env = "VIGIL_RUNQ_P99_MS", value_name = "MS")]
    pub runq_p99_ms: Option<u64>,
    /// Used memory at this percentage of maxmemory makes the server DEGRADED [default: 95].
    #[arg(long, env = "VIGIL_MEMORY_PCT", value_name = "PCT")]
    pub memory_pct: Option<f64>,
    /// Server CPU at this percentage of one core makes it DEGRADED [default: 95].
    #[arg(long, env = "VIGIL_CPU_PCT", value_name = "PCT")]
    pub cpu_pct: Option<f64>,
    /// Peers PINGed each round [default: 3].
    #[arg(long, env = "VIGIL_PEER_PROBES", value_name = "N")]
    pub peer_probes: Option<usize>,
    /// Interval between peer probe rounds, in ms [default: 200].
    #[arg(long, env = "VIGIL_PEER_INTERVAL_MS", value_name = "MS")]
    pub peer_interval_ms: Option<u64>,
    /// A primary that has not heard from the controller this long, and cannot reach a quorum,
    /// pauses its writes, in ms [default: 2000].
    #[arg(long, env = "VIGIL_SELF_FENCE_AFTER_MS", value_name = "MS")]
    pub self_fence_after_ms: Option<u64>,
    /// Length of each write pause while fenced (renewed at half of it), in ms [default: 5000].
    #[arg(long, env = "VIGIL_FENCE_PAUSE_MS", value_name = "MS")]
    pub fence_pause_ms: Option<u64>,
}

macro_rules! merge_fields {
    ($a:expr, $b:expr, $($f:ident),* $(,)?) => {
        RunSettings { $($f: $a.$f.or($b.$f)),* }
    };
}

impl RunSettings {
    /// Flags and environment win over the file.
    pub fn over(self, file: RunSettings) -> RunSettings {
        merge_fields!(
            self,
            file,
            server,
            controller,
            datastore,
            node_id,
            zone,
            priority,
            advertise,
            username,
            password,
            metrics_listen,
            ping_interval_ms,
            ping_misses,
            heartbeat_ms,
            health_interval_ms,
            stall_ms,
            stopped_ms,
            long_stall_ms,
            runq_threshold_ms,
            runq_p99_ms,
            memory_pct,
            cpu_pct,
            peer_probes,
            peer_interval_ms,
            self_fence_after_ms,
            fence_pause_ms,
        )
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AgentError::io(format!("reading {}", path.display()), e))?;
        toml::from_str(&text).map_err(|e| AgentError::ConfigFile {
            path: path.into(),
            message: e.to_string(),
        })
    }
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub server: ServerConn,
    pub controller: String,
    pub datastore: String,
    pub node_id: String,
    pub zone: String,
    pub priority: u32,
    pub advertise: String,
    pub metrics_listen: Option<SocketAddr>,
    pub ping_interval: Duration,
    pub heartbeat: Duration,
    pub health_interval: Duration,
    pub tick: Duration,
    pub kernel: KernelOptions,
    pub thresholds: Thresholds,
    pub peer_probes: usize,
    pub peer_interval: Duration,
    pub self_fence_after: Duration,
    pub fence_pause: Duration,
}

fn bad(field: &'static str, message: impl Into<String>) -> AgentError {
    AgentError::Config {
        field,
        message: message.into(),
    }
}

fn required(field: &'static str, v: Option<String>) -> Result<String> {
    match v {
        Some(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => Err(bad(field, "is required")),
    }
}

fn host_port(field: &'static str, v: &str) -> Result<(String, u16)> {
    let (host, port) = v
        .rsplit_once(':')
        .ok_or_else(|| bad(field, format!("{v:?} is not HOST:PORT")))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad(field, format!("{v:?} has no valid port")))?;
    if host.is_empty() || port == 0 {
        return Err(bad(field, format!("{v:?} is not HOST:PORT")));
    }
    Ok((host.to_string(), port))
}

fn millis(
    field: &'static str,
    v: Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration> {
    let ms = v.unwrap_or(default);
    if !range.contains(&ms) {
        return Err(bad(
            field,
            format!("{ms} ms is outside {}..={} ms", range.start(), range.end()),
        ));
    }
    Ok(Duration::from_millis(ms))
}

fn percent(field: &'static str, v: Option<f64>, default: f64) -> Result<f64> {
    let p = v.unwrap_or(default);
    if !(0.0..=100_000.0).contains(&p) || p.is_nan() {
        return Err(bad(field, format!("{p} is not a percentage")));
    }
    Ok(p)
}

impl TryFrom<RunSettings> for RunConfig {
    type Error = AgentError;

    fn try_from(s: RunSettings) -> Result<Self> {
        let server = required("server", s.server)?;
        let (host, port) = host_port("server", &server)?;
        let controller = s
            .controller
            .unwrap_or_else(|| "http://127.0.0.1:7420".into());
        if !(controller.starts_with("http://") || controller.starts_with("https://")) {
            return Err(bad(
                "controller",
                format!("{controller:?} is not an http:// or https:// URL"),
            ));
        }
        let advertise = s.advertise.unwrap_or_else(|| server.clone());
        host_port("advertise", &advertise)?;
        let metrics_listen = match s.metrics_listen.as_deref().unwrap_or("127.0.0.1:9431") {
            "off" | "" => None,
            addr => Some(addr.parse().map_err(|_| {
                bad(
                    "metrics_listen",
                    format!("{addr:?} is not IP:PORT or \"off\""),
                )
            })?),
        };
        let ping_misses = s.ping_misses.unwrap_or(3);
        if ping_misses == 0 {
            return Err(bad("ping_misses", "must be at least 1"));
        }
        let peer_probes = s.peer_probes.unwrap_or(3);
        if peer_probes > 64 {
            return Err(bad("peer_probes", "at most 64 peers are probed per round"));
        }
        let stall = millis("stall_ms", s.stall_ms, 100, 1..=600_000)?;
        Ok(Self {
            server: ServerConn {
                host,
                port,
                username: s.username,
                password: s.password,
            },
            controller,
            datastore: required("datastore", s.datastore)?,
            node_id: required("node_id", s.node_id)?,
            zone: s.zone.unwrap_or_default(),
            priority: s.priority.unwrap_or(100),
            advertise,
            metrics_listen,
            ping_interval: millis("ping_interval_ms", s.ping_interval_ms, 100, 10..=60_000)?,
            heartbeat: millis("heartbeat_ms", s.heartbeat_ms, 100, 10..=60_000)?,
            health_interval: millis(
                "health_interval_ms",
                s.health_interval_ms,
                500,
                10..=600_000,
            )?,
            // The tick only discovers new unread requests and notices old ones read; the timerfd
            // deadline fires the decision at the exact threshold crossing. A quarter of the
            // threshold finds every request well before its deadline, and 25 ms at most keeps a
            // cleared stall from lingering. Each tick wakes the agent, a real-time task that
            // preempts the server; ticks were half its CPU at 10 ms.
            tick: (stall / 4).clamp(Duration::from_millis(1), Duration::from_millis(25)),
            kernel: KernelOptions {
                stall,
                runq_threshold: millis("runq_threshold_ms", s.runq_threshold_ms, 10, 1..=600_000)?,
                // The daemon reports no per-request histogram; see KernelOptions.
                every_read: false,
            },
            thresholds: Thresholds {
                stopped: millis("stopped_ms", s.stopped_ms, 100, 1..=600_000)?,
                long_stall: millis("long_stall_ms", s.long_stall_ms, 5_000, 1..=3_600_000)?,
                ping_misses,
                runq_p99: millis("runq_p99_ms", s.runq_p99_ms, 10, 1..=600_000)?,
                memory_pct: percent("memory_pct", s.memory_pct, 95.0)?,
                cpu_pct: percent("cpu_pct", s.cpu_pct, 95.0)?,
                ..Thresholds::default()
            },
            peer_probes,
            peer_interval: millis("peer_interval_ms", s.peer_interval_ms, 200, 10..=600_000)?,
            self_fence_after: millis(
                "self_fence_after_ms",
                s.self_fence_after_ms,
                2_000,
                100..=3_600_000,
            )?,
            fence_pause: millis("fence_pause_ms", s.fence_pause_ms, 5_000, 100..=3_600_000)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> RunSettings {
        RunSettings {
            server: Some("127.0.0.1:6379".into()),
            datastore: Some("cache".into()),
            node_id: Some("a".into()),
            ..RunSettings::default()
        }
    }

    fn field_of(e: AgentError) -> &'static str {
        match e {
            AgentError::Config { field, .. } => field,
            other => panic!("not a config error: {other}"),
        }
    }

    #[test]
    fn defaults_fill_everything_else() {
        let c = RunConfig::try_from(minimal()).unwrap();
        assert_eq!(c.controller, "http://127.0.0.1:7420");
        assert_eq!(c.advertise, "127.0.0.1:6379");
        assert_eq!(c.priority, 100);
        assert_eq!(c.ping_interval, Duration::from_millis(100));
        assert_eq!(c.thresholds, Thresholds::default());
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9431".parse().unwrap()));
        assert_eq!(c.tick, Duration::from_millis(25));
    }

    #[test]
    fn the_tick_is_a_quarter_of_a_short_stall_threshold() {
        let short = RunSettings {
            stall_ms: Some(20),
            ..minimal()
        };
        assert_eq!(
            RunConfig::try_from(short).unwrap().tick,
            Duration::from_millis(5)
        );
        let tiny = RunSettings {
            stall_ms: Some(2),
            ..minimal()
        };
        assert_eq!(
            RunConfig::try_from(tiny).unwrap().tick,
            Duration::from_millis(1)
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(RunSettings, &str)> = vec![
            (
                RunSettings {
                    server: None,
                    ..minimal()
                },
                "server",
            ),
            (
                RunSettings {
                    server: Some("localhost".into()),
                    ..minimal()
                },
                "server",
            ),
            (
                RunSettings {
                    server: Some("h:0".into()),
                    ..minimal()
                },
                "server",
            ),
            (
                RunSettings {
                    datastore: Some(" ".into()),
                    ..minimal()
                },
                "datastore",
            ),
            (
                RunSettings {
                    node_id: None,
                    ..minimal()
                },
                "node_id",
            ),
            (
                RunSettings {
                    controller: Some("127.0.0.1:7420".into()),
                    ..minimal()
                },
                "controller",
            ),
            (
                RunSettings {
                    advertise: Some("nope".into()),
                    ..minimal()
                },
                "advertise",
            ),
            (
                RunSettings {
                    metrics_listen: Some("everywhere".into()),
                    ..minimal()
                },
                "metrics_listen",
            ),
            (
                RunSettings {
                    ping_interval_ms: Some(0),
                    ..minimal()
                },
                "ping_interval_ms",
            ),
            (
                RunSettings {
                    ping_misses: Some(0),
                    ..minimal()
                },
                "ping_misses",
            ),
            (
                RunSettings {
                    cpu_pct: Some(f64::NAN),
                    ..minimal()
                },
                "cpu_pct",
            ),
            (
                RunSettings {
                    peer_probes: Some(65),
                    ..minimal()
                },
                "peer_probes",
            ),
        ];
        for (settings, field) in cases {
            assert_eq!(field_of(RunConfig::try_from(settings).unwrap_err()), field);
        }
    }

    #[test]
    fn flags_win_over_the_file_and_unknown_keys_are_rejected() {
        let file: RunSettings = toml::from_str(
            "server = \"10.0.0.1:7000\"\ndatastore = \"from-file\"\nnode_id = \"f\"\nping_interval_ms = 50\n",
        )
        .unwrap();
        let flags = RunSettings {
            datastore: Some("from-flags".into()),
            ..RunSettings::default()
        };
        let c = RunConfig::try_from(flags.over(file)).unwrap();
        assert_eq!(c.datastore, "from-flags");
        assert_eq!(c.server.port, 7000);
        assert_eq!(c.ping_interval, Duration::from_millis(50));
        let typo = toml::from_str::<RunSettings>("servr = \"x:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(typo.contains("servr"), "{typo}");
    }
}
