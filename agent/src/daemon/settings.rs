//! Every setting of `vigil-agent run`: its flag, environment variable and TOML key, its default
//! (one `DEFAULT_*` constant beside it, which the help shows through [`with_default`]), and how
//! flags and environment merge over the file. `config` validates the result.
//!
//! The same struct is the clap flag set and the TOML schema, so a setting has one name
//! everywhere: `--ping-interval-ms` on the command line, `VIGIL_PING_INTERVAL_MS` in the
//! environment, `ping_interval_ms` in the file.
use std::{
    fmt,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use vigil_proto::{DEFAULT_CONTROLLER_URL, DEFAULT_PRIORITY, cli::with_default};

use crate::{
    daemon::config::RunConfig,
    error::{AgentError, Result},
    server::credentials::{self, SecretString},
    verdict::rules::{
        DEFAULT_CPU_PCT, DEFAULT_LONG_STALL_MS, DEFAULT_MEMORY_PCT, DEFAULT_PING_MISSES,
        DEFAULT_RUNQ_P99_MS, DEFAULT_STOPPED_MS,
    },
};

/// Loopback only: the metrics and health endpoints are for a scraper and probes on the node, not
/// for the network at large.
pub const DEFAULT_METRICS_HOST: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// The metrics port of the agent of a server on [`METRICS_SERVER_PORT_BASE`]. Several servers on
/// one host is common on bare metal, so the default port follows the server's: the agent of a
/// server on port P listens on `METRICS_PORT_BASE + (P - METRICS_SERVER_PORT_BASE)` (9431 for
/// 6379, 9432 for 6380, ...), and agents started with their defaults never collide.
pub const METRICS_PORT_BASE: u16 = 9431;
/// The server port the metrics port [`METRICS_PORT_BASE`] goes with: Redis' own default.
pub const METRICS_SERVER_PORT_BASE: u16 = 6379;
/// With the default 3 misses, a server that stops answering is UNHEALTHY within 300 ms.
pub const DEFAULT_PING_INTERVAL_MS: u64 = 100;
/// Several heartbeats fit in the controller's 500 ms silence timeout, so one lost verdict is
/// not silence.
pub const DEFAULT_HEARTBEAT_MS: u64 = 100;
/// Two rounds of ROLE and INFO a second keep offsets fresh for the controller's choice of a
/// replica at a cost the server does not notice.
pub const DEFAULT_HEALTH_INTERVAL_MS: u64 = 500;
/// Far above any healthy request's wait, and ten times faster than Sentinel's usual timeouts.
pub const DEFAULT_STALL_MS: u64 = 100;
/// A single run-queue wait this long is worth its own line; shorter ones only feed the p99.
pub const DEFAULT_RUNQ_THRESHOLD_MS: u64 = 10;
/// A few random peers a round let the controller see a partition from several sides without
/// every agent probing every node.
pub const DEFAULT_PEER_PROBES: usize = 3;
/// Peers are a second opinion: probed half as often as the local server.
pub const DEFAULT_PEER_INTERVAL_MS: u64 = 200;
/// The kernel fence keeps a deposed primary running (its data, its replicas in sync for a
/// planned switchover) and needs no supervisor; `kill` is for operators who would rather
/// restart it.
pub const DEFAULT_FENCE_METHOD: &str = "kernel";
/// Six times the 5 s the controller gives a Dragonfly takeover (`REPLTAKEOVER`), during which the
/// primary holds its writes: a longer pause is an outage no controller of ours asks for.
pub const DEFAULT_MAX_PAUSE_SECS: u64 = 30;

/// Every setting of `vigil-agent run`; unset ones fall back to the file, then to the default.
#[derive(Clone, Debug, Default, Deserialize, Serialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct RunSettings {
    /// The data store server this agent watches, as HOST:PORT (required).
    #[arg(long, env = "VIGIL_SERVER", value_name = "HOST:PORT")]
    pub server: Option<String>,
    #[arg(long, env = "VIGIL_CONTROLLER", value_name = "URL[,URL...]",
          help = with_default("The controllers' gRPC URLs, comma-separated. The agent talks to one at a time, the one that leads: it tries them in turn, and one that does not lead redirects it to the leader (even one not in this list). While none leads it keeps trying, waiting up to a second between tries", DEFAULT_CONTROLLER_URL))]
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
    #[arg(long, env = "VIGIL_PRIORITY", value_name = "N",
          help = with_default("Promotion priority: lower is preferred, 0 never promotes this node", DEFAULT_PRIORITY))]
    pub priority: Option<u32>,
    /// HOST:PORT clients and peers use to reach the server [default: --server].
    #[arg(long, env = "VIGIL_ADVERTISE", value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// ACL user for the server [default: the default user].
    #[arg(long, env = "VIGIL_SERVER_USERNAME", value_name = "USER")]
    pub username: Option<String>,
    /// Refused: a password on the command line is readable by every user of the host.
    #[arg(long = "password", hide = true, value_name = "PASSWORD", value_parser = credentials::parse_secret)]
    #[serde(skip)]
    pub password_on_command_line: Option<SecretString>,
    /// The server's password: only from the TOML file or VIGIL_SERVER_PASSWORD, never a flag.
    /// Never written out (`--print-config` shows it redacted).
    #[arg(skip)]
    #[serde(skip_serializing)]
    pub password: Option<SecretString>,
    /// A file holding the server's password (read once at start; one trailing newline is
    /// dropped). Keep it readable by the agent's user alone. [default: no password, or
    /// VIGIL_SERVER_PASSWORD]
    #[arg(long, env = "VIGIL_PASSWORD_FILE", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Speak TLS to the data store's servers (the local one and its peers): PINGs, INFO, ROLE and
    /// the controller's commands all go over it. Needs --server-tls-ca [default: off]
    #[arg(long, env = "VIGIL_SERVER_TLS", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub server_tls: Option<bool>,
    /// PEM file of the certificate authority that signed the servers' certificates (with
    /// --server-tls). Each server's certificate must name the host it is reached at.
    #[arg(long, env = "VIGIL_SERVER_TLS_CA", value_name = "FILE")]
    pub server_tls_ca: Option<PathBuf>,
    /// PEM file of the agent's client certificate, for servers that ask for one
    /// (tls-auth-clients); with --server-tls-key.
    #[arg(long, env = "VIGIL_SERVER_TLS_CERT", value_name = "FILE")]
    pub server_tls_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(long, env = "VIGIL_SERVER_TLS_KEY", value_name = "FILE")]
    pub server_tls_key: Option<PathBuf>,
    #[arg(long, env = "VIGIL_METRICS_LISTEN", value_name = "ADDR",
          help = with_default("Address of the HTTP server of Prometheus' /metrics and the health endpoints (/healthz, /readyz, /primary, /replica), or \"off\". The default port follows the server's, so agents of several servers on one host need no setting; a server port below 6379 has no default and needs this", DefaultMetricsListen))]
    pub metrics_listen: Option<String>,
    #[arg(long, env = "VIGIL_PING_INTERVAL_MS", value_name = "MS",
          help = with_default("How often to PING the local server, in ms", DEFAULT_PING_INTERVAL_MS))]
    pub ping_interval_ms: Option<u64>,
    #[arg(long, env = "VIGIL_PING_MISSES", value_name = "N",
          help = with_default("Consecutive missed PINGs the kernel cannot explain before UNHEALTHY", DEFAULT_PING_MISSES))]
    pub ping_misses: Option<u32>,
    #[arg(long, env = "VIGIL_HEARTBEAT_MS", value_name = "MS",
          help = with_default("Heartbeat verdict interval, in ms; changes are sent at once", DEFAULT_HEARTBEAT_MS))]
    pub heartbeat_ms: Option<u64>,
    #[arg(long, env = "VIGIL_HEALTH_INTERVAL_MS", value_name = "MS",
          help = with_default("How often to ask the server about role, replication and memory, in ms. The controller promotes the replica with the highest offset it was told, so fresh offsets matter", DEFAULT_HEALTH_INTERVAL_MS))]
    pub health_interval_ms: Option<u64>,
    #[arg(long, env = "VIGIL_STALL_MS", value_name = "MS",
          help = with_default("Requests unread this long make a stall, in ms", DEFAULT_STALL_MS))]
    pub stall_ms: Option<u64>,
    #[arg(long, env = "VIGIL_STOPPED_MS", value_name = "MS",
          help = with_default("Stopped this long makes the server UNHEALTHY, in ms", DEFAULT_STOPPED_MS))]
    pub stopped_ms: Option<u64>,
    #[arg(long, env = "VIGIL_LONG_STALL_MS", value_name = "MS",
          help = with_default("A busy, blocked or starved stall this long makes the server UNHEALTHY, in ms", DEFAULT_LONG_STALL_MS))]
    pub long_stall_ms: Option<u64>,
    #[arg(long, env = "VIGIL_RUNQ_THRESHOLD_MS", value_name = "MS",
          help = with_default("A run-queue wait this long is logged one by one, in ms", DEFAULT_RUNQ_THRESHOLD_MS))]
    pub runq_threshold_ms: Option<u64>,
    #[arg(long, env = "VIGIL_RUNQ_P99_MS", value_name = "MS",
          help = with_default("Run-queue p99 above this makes the server DEGRADED, in ms", DEFAULT_RUNQ_P99_MS))]
    pub runq_p99_ms: Option<u64>,
    #[arg(long, env = "VIGIL_MEMORY_PCT", value_name = "PCT",
          help = with_default("Used memory at this percentage of maxmemory makes the server DEGRADED", DEFAULT_MEMORY_PCT))]
    pub memory_pct: Option<f64>,
    #[arg(long, env = "VIGIL_CPU_PCT", value_name = "PCT",
          help = with_default("Server CPU at this percentage of one core makes it DEGRADED", DEFAULT_CPU_PCT))]
    pub cpu_pct: Option<f64>,
    #[arg(long, env = "VIGIL_PEER_PROBES", value_name = "N",
          help = with_default("Peers PINGed each round", DEFAULT_PEER_PROBES))]
    pub peer_probes: Option<usize>,
    #[arg(long, env = "VIGIL_PEER_INTERVAL_MS", value_name = "MS",
          help = with_default("Interval between peer probe rounds, in ms", DEFAULT_PEER_INTERVAL_MS))]
    pub peer_interval_ms: Option<u64>,
    #[arg(long, env = "VIGIL_FENCE_METHOD", value_name = "kernel|kill",
          help = with_default("How a fence holds a deposed primary off its clients. kernel: eBPF on the server's cgroup drops client traffic on its port and its client connections are destroyed; the server keeps running and keeps its replicas in sync when the controller asks. kill: the same, and the server is killed (SIGKILL); the filter then holds the server a supervisor restarts until it is demoted", DEFAULT_FENCE_METHOD))]
    pub fence_method: Option<String>,
    /// The CA (PEM) that signed the controllers' certificates. With --tls-cert and --tls-key,
    /// the agent speaks mutual TLS to https:// controllers and accepts only a certificate for
    /// vigil-controller from this CA.
    #[arg(long, env = "VIGIL_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// This node's certificate (PEM): it must name vigil://node/<datastore>/<node-id>.
    #[arg(long, env = "VIGIL_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "VIGIL_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    #[arg(long, env = "VIGIL_MAX_PAUSE_SECS", value_name = "SECS",
          help = with_default("The longest write pause a controller command may ask for, in seconds (a Dragonfly switchover's REPLTAKEOVER timeout, during which the primary holds writes); a longer one is refused", DEFAULT_MAX_PAUSE_SECS))]
    pub max_pause_secs: Option<u64>,
}

/// The default of `metrics_listen` as the help shows it: it follows the server's port.
pub struct DefaultMetricsListen;

impl fmt::Display for DefaultMetricsListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{DEFAULT_METRICS_HOST}:{METRICS_PORT_BASE} + (server port - {METRICS_SERVER_PORT_BASE})"
        )
    }
}

/// The default metrics address of the agent of a server on `server_port` (see
/// [`METRICS_PORT_BASE`]), or why there is none: a port below [`METRICS_SERVER_PORT_BASE`], or
/// one whose metrics port would pass 65535.
pub fn derived_metrics_listen(server_port: u16) -> std::result::Result<SocketAddr, String> {
    let give = "give --metrics-listen (IP:PORT, or \"off\")";
    let offset = server_port.checked_sub(METRICS_SERVER_PORT_BASE).ok_or_else(|| {
        format!(
            "the server's port {server_port} is below {METRICS_SERVER_PORT_BASE}, so no metrics \
             port follows from it: {give}"
        )
    })?;
    let port = METRICS_PORT_BASE.checked_add(offset).ok_or_else(|| {
        format!(
            "the server's port {server_port} would put the metrics port past 65535 \
             ({METRICS_PORT_BASE} + {server_port} - {METRICS_SERVER_PORT_BASE}): {give}"
        )
    })?;
    Ok(SocketAddr::from((DEFAULT_METRICS_HOST, port)))
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
            password_on_command_line,
            password,
            password_file,
            server_tls,
            server_tls_ca,
            server_tls_cert,
            server_tls_key,
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
            fence_method,
            tls_ca,
            tls_cert,
            tls_key,
            max_pause_secs,
        )
    }

    /// The password in VIGIL_SERVER_PASSWORD, unless one was given already. (It is no flag, so
    /// clap does not read it.)
    pub fn with_environment_password(mut self) -> Self {
        if self.password.is_none() {
            self.password = credentials::from_environment();
        }
        self
    }

    /// Every setting's default as settings: what a run given nothing would use. `advertise` and
    /// `metrics_listen` follow from the server in `config`.
    pub fn defaults(config: &RunConfig) -> Self {
        RunSettings {
            controller: Some(DEFAULT_CONTROLLER_URL.to_string()),
            priority: Some(DEFAULT_PRIORITY),
            advertise: Some(config.server.address.to_string()),
            server_tls: Some(false),
            metrics_listen: derived_metrics_listen(config.server.address.port)
                .ok()
                .map(|a| a.to_string()),
            ping_interval_ms: Some(DEFAULT_PING_INTERVAL_MS),
            ping_misses: Some(DEFAULT_PING_MISSES),
            heartbeat_ms: Some(DEFAULT_HEARTBEAT_MS),
            health_interval_ms: Some(DEFAULT_HEALTH_INTERVAL_MS),
            stall_ms: Some(DEFAULT_STALL_MS),
            stopped_ms: Some(DEFAULT_STOPPED_MS),
            long_stall_ms: Some(DEFAULT_LONG_STALL_MS),
            runq_threshold_ms: Some(DEFAULT_RUNQ_THRESHOLD_MS),
            runq_p99_ms: Some(DEFAULT_RUNQ_P99_MS),
            memory_pct: Some(DEFAULT_MEMORY_PCT),
            cpu_pct: Some(DEFAULT_CPU_PCT),
            peer_probes: Some(DEFAULT_PEER_PROBES),
            peer_interval_ms: Some(DEFAULT_PEER_INTERVAL_MS),
            fence_method: Some(DEFAULT_FENCE_METHOD.to_string()),
            max_pause_secs: Some(DEFAULT_MAX_PAUSE_SECS),
            ..RunSettings::default()
        }
    }

    /// The effective settings as TOML values, defaults filled in (the password left out), for
    /// `--print-config`.
    pub fn effective(self, config: &RunConfig) -> Result<toml::Table> {
        toml::Table::try_from(self.over(Self::defaults(config))).map_err(|e| AgentError::Config {
            field: "print_config",
            message: e.to_string(),
        })
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use vigil_proto::HostPort;

    use super::*;

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
        assert_eq!(c.server.address, HostPort::new("10.0.0.1", 7000));
        assert_eq!(c.ping_interval, Duration::from_millis(50));
        let typo = toml::from_str::<RunSettings>("servr = \"x:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(typo.contains("servr"), "{typo}");
    }

    #[test]
    fn the_default_metrics_port_follows_the_server_port() {
        let on = |port: u16| RunSettings {
            server: Some(format!("127.0.0.1:{port}")),
            datastore: Some("d".into()),
            node_id: Some("n".into()),
            ..RunSettings::default()
        };
        for (server, metrics) in [
            (6379, 9431),
            (6380, 9432),
            (6381, 9433),
            (7000, 10052),
            (62483, 65535),
        ] {
            let want: SocketAddr = ([127, 0, 0, 1], metrics).into();
            assert_eq!(derived_metrics_listen(server), Ok(want), "{server}");
            assert_eq!(
                RunConfig::try_from(on(server)).unwrap().metrics_listen,
                Some(want)
            );
        }
        assert_eq!(
            derived_metrics_listen(METRICS_SERVER_PORT_BASE).map(|a| a.port()),
            Ok(METRICS_PORT_BASE)
        );
        // No derived default: a clear start-up error that asks for the flag.
        for (server, says) in [
            (6378, "is below 6379"),
            (1, "is below 6379"),
            (62484, "past 65535"),
        ] {
            let e = RunConfig::try_from(on(server)).unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains(says) && text.contains("--metrics-listen"),
                "{server}: {text}"
            );
            assert!(
                matches!(
                    e,
                    AgentError::Config {
                        field: "metrics_listen",
                        ..
                    }
                ),
                "{e}"
            );
        }
        // An explicit address always wins, and "off" needs none.
        let given = RunSettings {
            metrics_listen: Some("127.0.0.1:5000".into()),
            ..on(1000)
        };
        assert_eq!(
            RunConfig::try_from(given).unwrap().metrics_listen,
            Some("127.0.0.1:5000".parse().unwrap())
        );
        let off = RunSettings {
            metrics_listen: Some("off".into()),
            ..on(65000)
        };
        assert_eq!(RunConfig::try_from(off).unwrap().metrics_listen, None);
    }

    #[test]
    fn every_setting_with_a_default_is_in_the_defaults_print_config_shows() {
        use clap::Args;
        let config = RunConfig::try_from(RunSettings {
            server: Some("127.0.0.1:6380".into()),
            datastore: Some("d".into()),
            node_id: Some("n".into()),
            ..RunSettings::default()
        })
        .unwrap();
        let defaults = toml::Table::try_from(RunSettings::defaults(&config)).unwrap();
        // Required, or meaningful only when given.
        let without = [
            "server",
            "datastore",
            "node_id",
            "zone",
            "username",
            "password_on_command_line",
            "password_file",
            "server_tls_ca",
            "server_tls_cert",
            "server_tls_key",
            "tls_ca",
            "tls_cert",
            "tls_key",
        ];
        for arg in RunSettings::augment_args(clap::Command::new("run")).get_arguments() {
            let id = arg.get_id().as_str();
            assert_eq!(
                defaults.contains_key(id),
                !without.contains(&id),
                "{id}: a default must be listed in RunSettings::defaults, or the setting here"
            );
        }
        assert_eq!(defaults["metrics_listen"].as_str(), Some("127.0.0.1:9432"));
        assert_eq!(defaults["advertise"].as_str(), Some("127.0.0.1:6380"));
        // The password is never written out.
        let with_password = RunSettings {
            password: Some("hunter2".into()),
            ..RunSettings::default()
        };
        let table = with_password.effective(&config).unwrap();
        assert!(!table.to_string().contains("hunter2"));
        assert!(!table.contains_key("password"));
    }

    #[test]
    fn the_run_help_shows_every_default_through_its_constant() {
        use clap::Args;
        let command = RunSettings::augment_args(clap::Command::new("run"));
        // Settings with no default value: required, or meaningful only when given.
        let without_default = [
            "server",
            "datastore",
            "node_id",
            "zone",
            "advertise",
            "username",
            "password_on_command_line",
            "password_file",
            "server_tls",
            "server_tls_ca",
            "server_tls_cert",
            "server_tls_key",
            "tls_ca",
            "tls_cert",
            "tls_key",
        ];
        let defaults: Vec<(&str, String)> = vec![
            ("controller", DEFAULT_CONTROLLER_URL.to_string()),
            ("priority", DEFAULT_PRIORITY.to_string()),
            ("metrics_listen", DefaultMetricsListen.to_string()),
            ("ping_interval_ms", DEFAULT_PING_INTERVAL_MS.to_string()),
            ("ping_misses", DEFAULT_PING_MISSES.to_string()),
            ("heartbeat_ms", DEFAULT_HEARTBEAT_MS.to_string()),
            ("health_interval_ms", DEFAULT_HEALTH_INTERVAL_MS.to_string()),
            ("stall_ms", DEFAULT_STALL_MS.to_string()),
            ("stopped_ms", DEFAULT_STOPPED_MS.to_string()),
            ("long_stall_ms", DEFAULT_LONG_STALL_MS.to_string()),
            ("runq_threshold_ms", DEFAULT_RUNQ_THRESHOLD_MS.to_string()),
            ("runq_p99_ms", DEFAULT_RUNQ_P99_MS.to_string()),
            ("memory_pct", DEFAULT_MEMORY_PCT.to_string()),
            ("cpu_pct", DEFAULT_CPU_PCT.to_string()),
            ("peer_probes", DEFAULT_PEER_PROBES.to_string()),
            ("peer_interval_ms", DEFAULT_PEER_INTERVAL_MS.to_string()),
            ("fence_method", DEFAULT_FENCE_METHOD.to_string()),
            ("max_pause_secs", DEFAULT_MAX_PAUSE_SECS.to_string()),
        ];
        let checked = vigil_proto::cli::check_defaults_shown(&command, &defaults, &without_default);
        assert_eq!(checked, Ok(()));
    }
}
