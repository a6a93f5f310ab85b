//! `vigil-agent run`'s configuration: the settings (`settings`) with their defaults filled in,
//! checked with errors that name the field at fault.
use std::{net::SocketAddr, time::Duration};

use tonic::transport::ClientTlsConfig;
use vigil_proto::{
    DEFAULT_CONTROLLER_URL, DEFAULT_PRIORITY, HostPort, ProtoError, limits,
    tls::{Identity, TlsFiles},
};

use super::settings::{
    DEFAULT_FENCE_METHOD, DEFAULT_HEALTH_INTERVAL_MS, DEFAULT_HEARTBEAT_MS, DEFAULT_MAX_PAUSE_SECS,
    DEFAULT_PEER_INTERVAL_MS, DEFAULT_PEER_PROBES, DEFAULT_PING_INTERVAL_MS,
    DEFAULT_RUNQ_THRESHOLD_MS, DEFAULT_STALL_MS, RunSettings, derived_metrics_listen,
};
use crate::{
    error::{AgentError, Result},
    fence::Method,
    kernel::KernelOptions,
    server::{conn::ServerConn, credentials, tls},
    verdict::rules::{
        DEFAULT_CPU_PCT, DEFAULT_LONG_STALL_MS, DEFAULT_MEMORY_PCT, DEFAULT_PING_MISSES,
        DEFAULT_RUNQ_P99_MS, DEFAULT_STOPPED_MS, Thresholds,
    },
};

/// Validated settings.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub server: ServerConn,
    /// The controllers' gRPC URLs, in the order the agent tries them; never empty.
    pub controllers: Vec<String>,
    pub datastore: String,
    pub node_id: String,
    pub zone: String,
    pub priority: u32,
    pub advertise: HostPort,
    pub metrics_listen: Option<SocketAddr>,
    pub ping_interval: Duration,
    pub heartbeat: Duration,
    pub health_interval: Duration,
    pub tick: Duration,
    pub kernel: KernelOptions,
    pub thresholds: Thresholds,
    pub peer_probes: usize,
    pub peer_interval: Duration,
    pub fence_method: Method,
    /// Mutual TLS to the controllers, from --tls-ca, --tls-cert and --tls-key.
    pub tls: Option<ClientTlsConfig>,
    /// The longest write pause a command may ask for.
    pub max_pause: Duration,
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

/// A name the controller would refuse in this agent's Hello, refused here at start instead, so a
/// misconfigured agent says so once rather than being turned away on every reconnect.
fn within_bounds(field: &'static str, value: String, max: usize) -> Result<String> {
    match limits::field_problem(&value, max) {
        Some(problem) => Err(bad(field, problem)),
        None => Ok(value),
    }
}

fn host_port(field: &'static str, v: &str) -> Result<HostPort> {
    v.parse().map_err(|e: ProtoError| bad(field, e.to_string()))
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

/// `URL[,URL...]`: the controllers, each an http:// or https:// URL with a host. Spaces around
/// the commas are allowed; empty entries and repeats are not (a typo, most likely).
pub fn controller_urls(list: &str) -> Result<Vec<String>> {
    let mut urls: Vec<String> = Vec::new();
    for url in list.split(',').map(str::trim) {
        if url.is_empty() {
            return Err(bad(
                "controller",
                format!("{list:?} has an empty entry; write URL[,URL...]"),
            ));
        }
        let uri: tonic::transport::Uri = url
            .parse()
            .map_err(|e| bad("controller", format!("{url:?} is not a URL: {e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(bad(
                "controller",
                format!("{url:?} is not an http:// or https:// URL"),
            ));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("controller", format!("{url:?} names no host")));
        }
        // The URI parser leaves a port that is no u16 unset rather than refusing it.
        let authority = uri.authority().map_or("", |a| a.as_str());
        let after_host = authority.rsplit(']').next().unwrap_or_default();
        if after_host.contains(':') && uri.port_u16().is_none_or(|p| p == 0) {
            return Err(bad("controller", format!("{url:?} has no valid port")));
        }
        if urls.iter().any(|u| u == url) {
            return Err(bad("controller", format!("{url:?} is listed twice")));
        }
        urls.push(url.to_string());
    }
    Ok(urls)
}

/// The TLS client configuration, when the three files are given: the certificate must name this
/// very node, and every controller URL must then be https:// (and none without TLS), so that a
/// typo cannot send the agent's hello in clear text.
fn tls(
    s: &mut RunSettings,
    datastore: &str,
    node: &str,
    controllers: &[String],
) -> Result<Option<ClientTlsConfig>> {
    let files = TlsFiles::from_parts(
        s.tls_ca.take(),
        s.tls_cert.take(),
        s.tls_key.take(),
        ["tls_ca", "tls_cert", "tls_key"],
    )
    .map_err(|e| bad("tls", e.to_string()))?;
    let https = |u: &String| u.starts_with("https://");
    let Some(files) = files else {
        if let Some(url) = controllers.iter().find(|u| https(u)) {
            return Err(bad(
                "controller",
                format!("{url:?} is https://, which needs --tls-ca, --tls-cert and --tls-key"),
            ));
        }
        return Ok(None);
    };
    if let Some(url) = controllers.iter().find(|u| !https(u)) {
        return Err(bad(
            "controller",
            format!("{url:?} is not https://: with TLS configured, every controller URL must be"),
        ));
    }
    let me = Identity::Node {
        datastore: datastore.to_string(),
        node: node.to_string(),
    };
    files
        .expect_identity(&me)
        .map_err(|e| bad("tls_cert", e.to_string()))?;
    files
        .client_config()
        .map(Some)
        .map_err(|e| bad("tls", e.to_string()))
}

impl TryFrom<RunSettings> for RunConfig {
    type Error = AgentError;

    fn try_from(mut s: RunSettings) -> Result<Self> {
        let server = host_port("server", &required("server", s.server.take())?)?;
        let controllers =
            controller_urls(s.controller.as_deref().unwrap_or(DEFAULT_CONTROLLER_URL))?;
        let datastore = required("datastore", s.datastore.take())?;
        if !limits::valid_name(&datastore) {
            return Err(bad(
                "datastore",
                format!(
                    "{datastore:?} must be 1 to {} of A-Z a-z 0-9 - _ . (not starting with .)",
                    limits::MAX_DATASTORE_NAME_LEN
                ),
            ));
        }
        let node_id = within_bounds(
            "node_id",
            required("node_id", s.node_id.take())?,
            limits::MAX_NODE_ID_LEN,
        )?;
        let zone = within_bounds(
            "zone",
            s.zone.take().unwrap_or_default(),
            limits::MAX_ZONE_LEN,
        )?;
        let tls = tls(&mut s, &datastore, &node_id, &controllers)?;
        let advertise = match &s.advertise {
            Some(address) => host_port("advertise", address)?,
            None => server.clone(),
        };
        let metrics_listen = match s.metrics_listen.as_deref() {
            None => {
                Some(derived_metrics_listen(server.port).map_err(|e| bad("metrics_listen", e))?)
            }
            Some("off" | "") => None,
            Some(addr) => Some(addr.parse().map_err(|_| {
                bad(
                    "metrics_listen",
                    format!("{addr:?} is not IP:PORT or \"off\""),
                )
            })?),
        };
        let ping_misses = s.ping_misses.unwrap_or(DEFAULT_PING_MISSES);
        if ping_misses == 0 {
            return Err(bad("ping_misses", "must be at least 1"));
        }
        let peer_probes = s.peer_probes.unwrap_or(DEFAULT_PEER_PROBES);
        if peer_probes > 64 {
            return Err(bad("peer_probes", "at most 64 peers are probed per round"));
        }
        let stall = millis("stall_ms", s.stall_ms, DEFAULT_STALL_MS, 1..=600_000)?;
        let fence_method = s
            .fence_method
            .as_deref()
            .unwrap_or(DEFAULT_FENCE_METHOD)
            .parse()
            .map_err(|message: String| bad("fence_method", message))?;
        Ok(Self {
            server: ServerConn {
                address: server,
                username: s.username,
                password: credentials::resolve(
                    s.password,
                    s.password_file.as_deref(),
                    s.password_on_command_line.is_some(),
                )?,
                // The daemon gives it the fence's gate.
                gate: None,
                tls: tls::from_settings(
                    s.server_tls.unwrap_or(false),
                    s.server_tls_ca.as_deref(),
                    s.server_tls_cert.as_deref(),
                    s.server_tls_key.as_deref(),
                )?,
            },
            controllers,
            datastore,
            node_id,
            zone,
            priority: s.priority.unwrap_or(DEFAULT_PRIORITY),
            advertise,
            metrics_listen,
            ping_interval: millis(
                "ping_interval_ms",
                s.ping_interval_ms,
                DEFAULT_PING_INTERVAL_MS,
                10..=60_000,
            )?,
            heartbeat: millis(
                "heartbeat_ms",
                s.heartbeat_ms,
                DEFAULT_HEARTBEAT_MS,
                10..=60_000,
            )?,
            health_interval: millis(
                "health_interval_ms",
                s.health_interval_ms,
                DEFAULT_HEALTH_INTERVAL_MS,
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
                runq_threshold: millis(
                    "runq_threshold_ms",
                    s.runq_threshold_ms,
                    DEFAULT_RUNQ_THRESHOLD_MS,
                    1..=600_000,
                )?,
                // The daemon reports no per-request histogram; see KernelOptions.
                every_read: false,
            },
            thresholds: Thresholds {
                stopped: millis("stopped_ms", s.stopped_ms, DEFAULT_STOPPED_MS, 1..=600_000)?,
                long_stall: millis(
                    "long_stall_ms",
                    s.long_stall_ms,
                    DEFAULT_LONG_STALL_MS,
                    1..=3_600_000,
                )?,
                ping_misses,
                runq_p99: millis(
                    "runq_p99_ms",
                    s.runq_p99_ms,
                    DEFAULT_RUNQ_P99_MS,
                    1..=600_000,
                )?,
                memory_pct: percent("memory_pct", s.memory_pct, DEFAULT_MEMORY_PCT)?,
                cpu_pct: percent("cpu_pct", s.cpu_pct, DEFAULT_CPU_PCT)?,
                ..Thresholds::default()
            },
            peer_probes,
            peer_interval: millis(
                "peer_interval_ms",
                s.peer_interval_ms,
                DEFAULT_PEER_INTERVAL_MS,
                10..=600_000,
            )?,
            fence_method,
            tls,
            max_pause: {
                let secs = s.max_pause_secs.unwrap_or(DEFAULT_MAX_PAUSE_SECS);
                if !(1..=3600).contains(&secs) {
                    return Err(bad(
                        "max_pause_secs",
                        format!("{secs} s is outside 1..=3600 s"),
                    ));
                }
                Duration::from_secs(secs)
            },
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
        assert_eq!(c.controllers, [DEFAULT_CONTROLLER_URL]);
        assert_eq!(c.advertise, HostPort::new("127.0.0.1", 6379));
        assert_eq!(c.priority, DEFAULT_PRIORITY);
        let ms = Duration::from_millis;
        assert_eq!(c.ping_interval, ms(DEFAULT_PING_INTERVAL_MS));
        assert_eq!(c.heartbeat, ms(DEFAULT_HEARTBEAT_MS));
        assert_eq!(c.health_interval, ms(DEFAULT_HEALTH_INTERVAL_MS));
        assert_eq!(c.kernel.stall, ms(DEFAULT_STALL_MS));
        assert_eq!(c.kernel.runq_threshold, ms(DEFAULT_RUNQ_THRESHOLD_MS));
        assert_eq!(c.peer_probes, DEFAULT_PEER_PROBES);
        assert_eq!(c.peer_interval, ms(DEFAULT_PEER_INTERVAL_MS));
        assert_eq!(c.fence_method, Method::Kernel);
        assert_eq!(c.max_pause, Duration::from_secs(DEFAULT_MAX_PAUSE_SECS));
        assert_eq!(DEFAULT_FENCE_METHOD, Method::Kernel.as_str());
        assert_eq!(c.thresholds, Thresholds::default());
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9431".parse().unwrap()));
        // A quarter of the default 100 ms stall threshold, capped at 25 ms.
        assert_eq!(c.tick, Duration::from_millis(25));
    }

    #[test]
    fn tls_takes_all_three_files_and_https_controllers_only() {
        let base = || RunSettings {
            server: Some("127.0.0.1:6379".into()),
            datastore: Some("cache".into()),
            node_id: Some("n0".into()),
            ..RunSettings::default()
        };
        let files = |s: RunSettings| RunSettings {
            tls_ca: Some("ca.pem".into()),
            tls_cert: Some("n0.pem".into()),
            tls_key: Some("n0-key.pem".into()),
            ..s
        };
        let error = |s: RunSettings| RunConfig::try_from(s).unwrap_err().to_string();
        let e = error(RunSettings {
            tls_cert: Some("n0.pem".into()),
            ..base()
        });
        assert!(
            e.contains("tls_cert given without tls_ca and tls_key"),
            "{e}"
        );
        // The default controller URL is plain http: with TLS, it must be named.
        let e = error(files(base()));
        assert!(
            e.contains("controller") && e.contains("is not https://"),
            "{e}"
        );
        let e = error(RunSettings {
            controller: Some("https://10.0.0.1:7420".into()),
            ..base()
        });
        assert!(
            e.contains("needs --tls-ca, --tls-cert and --tls-key"),
            "{e}"
        );
        // With https URLs the files are read, and a missing one is named.
        let e = error(files(RunSettings {
            controller: Some("https://10.0.0.1:7420".into()),
            ..base()
        }));
        assert!(e.contains("tls_cert") && e.contains("n0.pem"), "{e}");
        assert!(RunConfig::try_from(base()).unwrap().tls.is_none());
    }

    #[test]
    fn controllers_are_a_comma_separated_list_of_urls() {
        assert_eq!(
            controller_urls("http://10.0.0.1:7420, http://10.0.0.2:7420 ,https://c.example:7420")
                .unwrap(),
            [
                "http://10.0.0.1:7420",
                "http://10.0.0.2:7420",
                "https://c.example:7420"
            ]
        );
        assert_eq!(
            controller_urls("http://[::1]:7420").unwrap(),
            ["http://[::1]:7420"]
        );
        for (list, says) in [
            ("127.0.0.1:7420", "not an http:// or https:// URL"),
            ("http://a:1,", "empty entry"),
            ("http://a:1,,http://b:1", "empty entry"),
            ("", "empty entry"),
            ("ftp://a:1", "not an http:// or https:// URL"),
            ("http://", "not a URL"),
            ("http://a:99999", "no valid port"),
            ("http://a:0", "no valid port"),
            ("http://a b:1", "not a URL"),
            ("http://a:1,http://a:1", "listed twice"),
        ] {
            let e = controller_urls(list).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(says), "{list:?}: {text}");
            assert_eq!(field_of(e), "controller", "{list:?}");
        }
        let listed = RunSettings {
            controller: Some("http://a:1,http://b:2".into()),
            ..minimal()
        };
        assert_eq!(
            RunConfig::try_from(listed).unwrap().controllers,
            ["http://a:1", "http://b:2"]
        );
    }

    #[test]
    fn the_password_shows_in_no_debug_output() {
        let with_password = RunSettings {
            password: Some("hunter2".into()),
            ..minimal()
        };
        assert!(!format!("{with_password:?}").contains("hunter2"));
        let c = RunConfig::try_from(with_password).unwrap();
        assert!(c.server.password.is_some());
        assert!(!format!("{c:?}").contains("hunter2"), "{c:?}");
        let on_command_line = RunSettings {
            password_on_command_line: Some("hunter2".into()),
            ..minimal()
        };
        let e = RunConfig::try_from(on_command_line)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("configuration: password: "), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn an_ipv6_server_is_written_in_brackets() {
        let v6 = RunSettings {
            server: Some("[::1]:6380".into()),
            ..minimal()
        };
        let c = RunConfig::try_from(v6).unwrap();
        assert_eq!(c.server.address, HostPort::new("::1", 6380));
        // The advertised address defaults to the server's, written back the same way.
        assert_eq!(c.advertise.to_string(), "[::1]:6380");
        let bare = RunSettings {
            server: Some("::1:6380".into()),
            ..minimal()
        };
        assert_eq!(field_of(RunConfig::try_from(bare).unwrap_err()), "server");
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
                    datastore: Some("a/b".into()),
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
                    node_id: Some("n".repeat(limits::MAX_NODE_ID_LEN + 1)),
                    ..minimal()
                },
                "node_id",
            ),
            (
                RunSettings {
                    zone: Some("z".repeat(limits::MAX_ZONE_LEN + 1)),
                    ..minimal()
                },
                "zone",
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
            (
                RunSettings {
                    fence_method: Some("pause".into()),
                    ..minimal()
                },
                "fence_method",
            ),
            (
                RunSettings {
                    max_pause_secs: Some(0),
                    ..minimal()
                },
                "max_pause_secs",
            ),
        ];
        for (settings, field) in cases {
            assert_eq!(field_of(RunConfig::try_from(settings).unwrap_err()), field);
        }
    }
}
