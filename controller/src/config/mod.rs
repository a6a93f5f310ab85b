//! `vigil-controller` configuration: flags, environment variables and a TOML file (flags win),
//! validated with errors that name the field. The file may also list data stores and their
//! nodes, so they are known before their agents connect.
//!
//! The same struct is the clap flag set and the TOML schema, so a setting has one name
//! everywhere: `--silence-ms`, `VIGIL_SILENCE_MS`, `silence_ms`. Each default is one constant,
//! shown in `--help` through that constant.
mod cluster;
mod effective;
mod hooks;
mod sentinel;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};
use vigil_proto::{
    DEFAULT_PRIORITY, HostPort,
    cli::with_default,
    limits::{MAX_NODE_ID_LEN, MAX_NODES_PER_DATASTORE, MAX_ZONE_LEN, field_problem, valid_name},
    tls::{Identity, TlsFiles},
    v1,
};

use crate::{
    cluster::election::DEFAULT_LEADER_LEASE_SECS,
    error::{ControllerError, Result},
    hooks::{DEFAULT_HOOK_TIMEOUT_SECS, HookConfig},
    member::ControllerInfo,
    sentinel::{
        auth::DEFAULT_USER,
        endpoint::{DEFAULT_IDLE_TIMEOUT_SECS, DEFAULT_MAX_CLIENTS},
    },
    store::{
        NodeInfo, Settings,
        registry::Admission,
        settings::{
            DEFAULT_DESIRED_REFRESH_MS, DEFAULT_FENCE_DEADLINE_MS, DEFAULT_GRACE_MS,
            DEFAULT_HEARTBEAT_MS, DEFAULT_LEASE_MARGIN_MS, DEFAULT_LEASE_MS, DEFAULT_LINK_BOUND_MS,
            DEFAULT_MIN_FAILOVER_INTERVAL_MS, DEFAULT_QUIET_HEARTBEAT_MS, DEFAULT_SILENCE_MS,
        },
    },
};

pub use cluster::ClusterConfig;
pub use sentinel::SentinelConfig;

/// Where agents and the `vigil` CLI connect (gRPC); loopback until an operator opens it.
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:7420";
/// Sentinel's own port, so clients need no other change than the address.
pub const DEFAULT_SENTINEL_LISTEN: &str = "127.0.0.1:26379";
/// Prometheus' `/metrics`; "off" turns it off.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9420";
/// The persisted state: one file per data store.
pub const DEFAULT_DATA_DIR: &str = "./vigil-data";
/// Longest duration setting accepted, in ms (an hour).
const MAX_MS: u64 = 3_600_000;
/// Data stores one controller runs at most (configured ones come on top): agents' hellos cannot
/// grow it past this. Ten times the fleet the controller bench measures.
pub const DEFAULT_MAX_DATASTORES: usize = 10_000;
/// Where in etcd one installation keeps its keys; several installations may share an etcd.
pub const DEFAULT_ETCD_PREFIX: &str = "/vigil";
/// Longest leader lease accepted, in seconds: longer only delays a handover.
const MAX_LEADER_LEASE_SECS: u64 = 60;
/// The ACL user a Sentinel client authenticates as: Redis' default user, whom `AUTH <password>`
/// names.
pub const DEFAULT_SENTINEL_USER: &str = DEFAULT_USER;
/// Clients the Sentinel endpoint serves at once: Redis' default `maxclients`.
pub const DEFAULT_SENTINEL_MAX_CLIENTS: usize = DEFAULT_MAX_CLIENTS;
/// Seconds before a silent Sentinel client without subscriptions is closed (0: never); see
/// [`DEFAULT_IDLE_TIMEOUT_SECS`] for why five minutes.
pub const DEFAULT_SENTINEL_IDLE_TIMEOUT_SECS: u64 = DEFAULT_IDLE_TIMEOUT_SECS;
/// Longest idle timeout accepted (a day); 0 turns it off.
const MAX_IDLE_TIMEOUT_SECS: u64 = 86_400;

#[derive(Clone, Debug, Default, Deserialize, Serialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ControllerSettings {
    #[arg(long, env = "VIGIL_GRPC_LISTEN", value_name = "ADDR",
          help = with_default("Address agents and the vigil CLI connect to (gRPC)", DEFAULT_GRPC_LISTEN))]
    pub grpc_listen: Option<String>,
    #[arg(long, env = "VIGIL_SENTINEL_LISTEN", value_name = "ADDR",
          help = with_default("Address of the Redis-Sentinel-compatible endpoint", DEFAULT_SENTINEL_LISTEN))]
    pub sentinel_listen: Option<String>,
    #[arg(long, env = "VIGIL_METRICS_LISTEN", value_name = "ADDR",
          help = with_default("Address of the Prometheus /metrics endpoint, or \"off\"", DEFAULT_METRICS_LISTEN))]
    pub metrics_listen: Option<String>,
    #[arg(long, env = "VIGIL_DATA_DIR", value_name = "DIR",
          help = with_default("Folder for the persisted state: one file per data store", DEFAULT_DATA_DIR))]
    pub data_dir: Option<PathBuf>,
    #[arg(long, env = "VIGIL_SILENCE_MS", value_name = "MS",
          help = with_default("An agent not heard from this long is silent, in ms", DEFAULT_SILENCE_MS))]
    pub silence_ms: Option<u64>,
    #[arg(long, env = "VIGIL_GRACE_MS", value_name = "MS",
          help = with_default("After start-up, agents have this long to reconnect before silence counts, in ms", DEFAULT_GRACE_MS))]
    pub grace_ms: Option<u64>,
    #[arg(long, env = "VIGIL_MIN_FAILOVER_INTERVAL_MS", value_name = "MS",
          help = with_default("The flap guard: minimum time between automatic failovers of one data store, in ms", DEFAULT_MIN_FAILOVER_INTERVAL_MS))]
    pub min_failover_interval_ms: Option<u64>,
    #[arg(long, env = "VIGIL_LINK_BOUND_MS", value_name = "MS",
          help = with_default("A replica whose replication link was last up longer ago is never promoted, in ms", DEFAULT_LINK_BOUND_MS))]
    pub link_bound_ms: Option<u64>,
    #[arg(long, env = "VIGIL_HEARTBEAT_MS", value_name = "MS",
          help = with_default("How often the primary's lease is renewed, in ms", DEFAULT_HEARTBEAT_MS))]
    pub heartbeat_ms: Option<u64>,
    #[arg(long, env = "VIGIL_DESIRED_REFRESH_MS", value_name = "MS",
          help = with_default("Desired state goes to an agent as soon as it changes, and again this often, in ms", DEFAULT_DESIRED_REFRESH_MS))]
    pub desired_refresh_ms: Option<u64>,
    #[arg(long, env = "VIGIL_QUIET_HEARTBEAT_MS", value_name = "MS",
          help = with_default("How often a replica with nothing to report (healthy, linked, reaching its peers) sends its unchanged verdict, in ms; it is silent after five such beats. Any change is sent at once, and the primary beats at its agent's own pace. 0: every agent at its own pace", DEFAULT_QUIET_HEARTBEAT_MS))]
    pub quiet_heartbeat_ms: Option<u64>,
    #[arg(long, env = "VIGIL_LEASE_MS", value_name = "MS",
          help = with_default("The lease on the primary role each heartbeat grants: a primary whose lease ran out fences itself when it cannot reach most of its data store, or when the controller is failing it over, in ms", DEFAULT_LEASE_MS))]
    pub lease_ms: Option<u64>,
    #[arg(long, env = "VIGIL_LEASE_MARGIN_MS", value_name = "MS",
          help = with_default("Waited beyond the lease before promoting past a primary whose agent did not confirm its fence, in ms", DEFAULT_LEASE_MARGIN_MS))]
    pub lease_margin_ms: Option<u64>,
    #[arg(long, env = "VIGIL_FENCE_DEADLINE_MS", value_name = "MS",
          help = with_default("How long the old primary's agent has to confirm its fence before the lease is waited out instead, in ms", DEFAULT_FENCE_DEADLINE_MS))]
    pub fence_deadline_ms: Option<u64>,
    /// etcd's client URLs. With them, any number of controllers run and one leads, elected on
    /// etcd, which also keeps the state (no --data-dir). Without them, this is the only
    /// controller and it keeps its state in --data-dir.
    #[arg(long, env = "VIGIL_ETCD", value_name = "URL[,URL...]")]
    pub etcd: Option<String>,
    #[arg(long, env = "VIGIL_ETCD_PREFIX", value_name = "PREFIX",
          help = with_default("Where in etcd this installation keeps its election, state and views", DEFAULT_ETCD_PREFIX))]
    pub etcd_prefix: Option<String>,
    /// The CA (PEM) that signed etcd's certificates: with it, the controller speaks TLS to etcd,
    /// whose URLs must then be https://.
    #[arg(long, env = "VIGIL_ETCD_CA", value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,
    /// This controller's client certificate for etcd (PEM), for etcd's --client-cert-auth; with
    /// --etcd-key and --etcd-ca.
    #[arg(long, env = "VIGIL_ETCD_CERT", value_name = "FILE")]
    pub etcd_cert: Option<PathBuf>,
    /// The private key of --etcd-cert (PEM).
    #[arg(long, env = "VIGIL_ETCD_KEY", value_name = "FILE")]
    pub etcd_key: Option<PathBuf>,
    /// This controller's name among several (unique per installation); the host name by default.
    #[arg(long, env = "VIGIL_NAME", value_name = "NAME")]
    pub name: Option<String>,
    #[arg(long, env = "VIGIL_LEADER_LEASE_SECS", value_name = "SECS",
          help = with_default("The leader's lease in etcd, in whole seconds: a leader that dies is replaced about this long after (etcd raises it to 1.5 × its election timeout if that is longer)", DEFAULT_LEADER_LEASE_SECS))]
    pub leader_lease_secs: Option<u64>,
    /// The gRPC URL other controllers send agents to while this one leads; http://<grpc-listen>
    /// (https:// with TLS) by default, which must then not be 0.0.0.0 or [::].
    #[arg(long, env = "VIGIL_ADVERTISE_GRPC", value_name = "URL")]
    pub advertise_grpc: Option<String>,
    /// The HOST:PORT of this controller's Sentinel endpoint that other controllers list in
    /// SENTINEL SENTINELS; --sentinel-listen by default.
    #[arg(long, env = "VIGIL_ADVERTISE_SENTINEL", value_name = "HOST:PORT")]
    pub advertise_sentinel: Option<String>,
    #[arg(long, env = "VIGIL_MAX_DATASTORES", value_name = "N",
          help = with_default("Data stores the agents' hellos may bring into being, at most (beyond those configured); one more is refused", DEFAULT_MAX_DATASTORES))]
    pub max_datastores: Option<usize>,
    /// A file holding the password Sentinel clients must AUTH with (one line; a final newline is
    /// not part of it), as Redis' `requirepass`. Without it, clients need no password. Never
    /// given on the command line, where other users could read it.
    #[arg(long, env = "VIGIL_SENTINEL_PASSWORD_FILE", value_name = "FILE")]
    pub sentinel_password_file: Option<PathBuf>,
    #[arg(long, env = "VIGIL_SENTINEL_USER", value_name = "NAME",
          help = with_default("The user Sentinel clients AUTH as with the password (`AUTH <password>` names the default user)", DEFAULT_SENTINEL_USER))]
    pub sentinel_user: Option<String>,
    /// The Sentinel endpoint's TLS certificate chain (PEM); with --sentinel-tls-key, the endpoint
    /// speaks only TLS.
    #[arg(long, env = "VIGIL_SENTINEL_TLS_CERT", value_name = "FILE")]
    pub sentinel_tls_cert: Option<PathBuf>,
    /// The private key of --sentinel-tls-cert (PEM).
    #[arg(long, env = "VIGIL_SENTINEL_TLS_KEY", value_name = "FILE")]
    pub sentinel_tls_key: Option<PathBuf>,
    /// A CA (PEM): Sentinel clients must then present a certificate it signed.
    #[arg(long, env = "VIGIL_SENTINEL_TLS_CLIENT_CA", value_name = "FILE")]
    pub sentinel_tls_client_ca: Option<PathBuf>,
    #[arg(long, env = "VIGIL_SENTINEL_MAX_CLIENTS", value_name = "N",
          help = with_default("Sentinel clients served at once; one more is told `-ERR max number of clients reached` and closed", DEFAULT_SENTINEL_MAX_CLIENTS))]
    pub sentinel_max_clients: Option<usize>,
    #[arg(long, env = "VIGIL_SENTINEL_IDLE_TIMEOUT_SECS", value_name = "SECS",
          help = with_default("A Sentinel client without subscriptions that sends nothing this long is closed, in seconds; 0: never", DEFAULT_SENTINEL_IDLE_TIMEOUT_SECS))]
    pub sentinel_idle_timeout_secs: Option<u64>,
    /// This controller's certificate (PEM), naming vigil://controller and the DNS name
    /// vigil-controller. With --tls-key and --tls-client-ca, every gRPC client must present a
    /// certificate from that CA.
    #[arg(long, env = "VIGIL_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "VIGIL_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// The CA (PEM) that signs the agents' and operators' certificates.
    #[arg(long, env = "VIGIL_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// A command run on each alert and when a failover or switchover starts and ends, as
    /// Sentinel's notification-script: `<event> <description>` (the description starts with the
    /// data store's name). Run by the leading controller only, off the failover's path.
    #[arg(long, env = "VIGIL_NOTIFY_COMMAND", value_name = "FILE")]
    pub notify_command: Option<PathBuf>,
    /// A command run when a failover or switchover has promoted a new primary, as Sentinel's
    /// client-reconfig-script: `<datastore> leader start <from-ip> <from-port> <to-ip> <to-port>`.
    #[arg(long, env = "VIGIL_CLIENT_RECONFIG_COMMAND", value_name = "FILE")]
    pub client_reconfig_command: Option<PathBuf>,
    #[arg(long, env = "VIGIL_HOOK_TIMEOUT_SECS", value_name = "SECS",
          help = with_default("A hook (notify or client-reconfig command) still running after this long is killed, with what it started, in seconds", DEFAULT_HOOK_TIMEOUT_SECS))]
    pub hook_timeout_secs: Option<u64>,
    /// Refuse agents of data stores not listed in the configuration file.
    #[arg(long, env = "VIGIL_REFUSE_UNKNOWN")]
    #[serde(default)]
    pub refuse_unknown: bool,
    #[arg(skip)]
    #[serde(default, rename = "datastore", skip_serializing_if = "Vec::is_empty")]
    pub datastores: Vec<DatastoreConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatastoreConfig {
    pub name: String,
    #[serde(default, rename = "node")]
    pub nodes: Vec<NodeConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub id: String,
    pub address: String,
    #[serde(default)]
    pub zone: String,
    #[serde(default = "default_priority")]
    pub priority: u32,
}

fn default_priority() -> u32 {
    DEFAULT_PRIORITY
}

impl ControllerSettings {
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ControllerError::io(format!("reading {}", path.display()), e))?;
        toml::from_str(&text).map_err(|e| ControllerError::ConfigFile {
            path: path.into(),
            message: e.to_string(),
        })
    }

    /// Flags and environment win over the file.
    pub fn over(self, file: Self) -> Self {
        Self {
            grpc_listen: self.grpc_listen.or(file.grpc_listen),
            sentinel_listen: self.sentinel_listen.or(file.sentinel_listen),
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            data_dir: self.data_dir.or(file.data_dir),
            silence_ms: self.silence_ms.or(file.silence_ms),
            grace_ms: self.grace_ms.or(file.grace_ms),
            min_failover_interval_ms: self
                .min_failover_interval_ms
                .or(file.min_failover_interval_ms),
            link_bound_ms: self.link_bound_ms.or(file.link_bound_ms),
            heartbeat_ms: self.heartbeat_ms.or(file.heartbeat_ms),
            desired_refresh_ms: self.desired_refresh_ms.or(file.desired_refresh_ms),
            quiet_heartbeat_ms: self.quiet_heartbeat_ms.or(file.quiet_heartbeat_ms),
            lease_ms: self.lease_ms.or(file.lease_ms),
            lease_margin_ms: self.lease_margin_ms.or(file.lease_margin_ms),
            fence_deadline_ms: self.fence_deadline_ms.or(file.fence_deadline_ms),
            etcd: self.etcd.or(file.etcd),
            etcd_prefix: self.etcd_prefix.or(file.etcd_prefix),
            etcd_ca: self.etcd_ca.or(file.etcd_ca),
            etcd_cert: self.etcd_cert.or(file.etcd_cert),
            etcd_key: self.etcd_key.or(file.etcd_key),
            name: self.name.or(file.name),
            leader_lease_secs: self.leader_lease_secs.or(file.leader_lease_secs),
            advertise_grpc: self.advertise_grpc.or(file.advertise_grpc),
            advertise_sentinel: self.advertise_sentinel.or(file.advertise_sentinel),
            max_datastores: self.max_datastores.or(file.max_datastores),
            sentinel_password_file: self.sentinel_password_file.or(file.sentinel_password_file),
            sentinel_user: self.sentinel_user.or(file.sentinel_user),
            sentinel_tls_cert: self.sentinel_tls_cert.or(file.sentinel_tls_cert),
            sentinel_tls_key: self.sentinel_tls_key.or(file.sentinel_tls_key),
            sentinel_tls_client_ca: self.sentinel_tls_client_ca.or(file.sentinel_tls_client_ca),
            sentinel_max_clients: self.sentinel_max_clients.or(file.sentinel_max_clients),
            sentinel_idle_timeout_secs: self
                .sentinel_idle_timeout_secs
                .or(file.sentinel_idle_timeout_secs),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            tls_client_ca: self.tls_client_ca.or(file.tls_client_ca),
            notify_command: self.notify_command.or(file.notify_command),
            client_reconfig_command: self
                .client_reconfig_command
                .or(file.client_reconfig_command),
            hook_timeout_secs: self.hook_timeout_secs.or(file.hook_timeout_secs),
            refuse_unknown: self.refuse_unknown || file.refuse_unknown,
            datastores: if self.datastores.is_empty() {
                file.datastores
            } else {
                self.datastores
            },
        }
    }
}

#[derive(Clone, Debug)]
pub struct ControllerConfig {
    pub grpc_listen: SocketAddr,
    pub sentinel_listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub settings: Settings,
    /// Which data stores agents' hellos may bring into being.
    pub admission: Admission,
    /// Each configured data store's name and its nodes, known before their agents connect.
    pub datastores: Vec<(String, Vec<NodeInfo>)>,
    /// Who this controller is to agents, clients and the other controllers.
    pub me: ControllerInfo,
    /// Set with --etcd: several controllers, one leading.
    pub cluster: Option<ClusterConfig>,
    pub sentinel: SentinelConfig,
    /// Set with --tls-cert, --tls-key and --tls-client-ca: mutual TLS on the gRPC port.
    pub tls: Option<TlsFiles>,
    /// The notify and client-reconfig commands, checked to be executable files.
    pub hooks: HookConfig,
}

fn me(
    s: &ControllerSettings,
    grpc: SocketAddr,
    sentinel: SocketAddr,
    cluster: bool,
    tls: bool,
) -> Result<ControllerInfo> {
    let name = s.name.clone().unwrap_or_else(cluster::host_name);
    if !valid_name(&name) {
        return Err(bad(
            "name",
            format!("{name:?} is not allowed (letters, digits, '-', '_', '.', at most 64)"),
        ));
    }
    let grpc = match &s.advertise_grpc {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => url.clone(),
        Some(url) => {
            return Err(bad(
                "advertise_grpc",
                format!("{url:?} is not an http:// or https:// URL"),
            ));
        }
        None if cluster && grpc.ip().is_unspecified() => {
            return Err(bad(
                "advertise_grpc",
                format!(
                    "is required with --etcd when grpc_listen is {grpc}: other controllers send agents to it"
                ),
            ));
        }
        None if tls => format!("https://{grpc}"),
        None => format!("http://{grpc}"),
    };
    if tls && !grpc.starts_with("https://") {
        return Err(bad(
            "advertise_grpc",
            format!("{grpc:?} must be an https:// URL: this controller serves gRPC over TLS"),
        ));
    }
    let sentinel = match &s.advertise_sentinel {
        Some(a) => a
            .parse::<HostPort>()
            .map_err(|e| bad("advertise_sentinel", e.to_string()))?
            .to_string(),
        None => sentinel.to_string(),
    };
    Ok(ControllerInfo {
        name,
        grpc,
        sentinel,
    })
}

/// The TLS files, all three or none, the certificate checked to name a controller.
fn tls(s: &mut ControllerSettings) -> Result<Option<TlsFiles>> {
    let files = TlsFiles::from_parts(
        s.tls_client_ca.take(),
        s.tls_cert.take(),
        s.tls_key.take(),
        ["tls_client_ca", "tls_cert", "tls_key"],
    )
    .map_err(|e| bad("tls", e.to_string()))?;
    if let Some(f) = &files {
        f.expect_identity(&Identity::Controller)
            .map_err(|e| bad("tls_cert", e.to_string()))?;
        f.server_config().map_err(|e| bad("tls", e.to_string()))?;
    }
    Ok(files)
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> ControllerError {
    ControllerError::Config {
        field: field.into(),
        message: message.into(),
    }
}

fn addr(field: &str, v: Option<String>, default: &str) -> Result<SocketAddr> {
    let v = v.unwrap_or_else(|| default.to_string());
    v.parse()
        .map_err(|_| bad(field, format!("{v:?} is not IP:PORT")))
}

fn ms(field: &str, v: Option<u64>, default: u64) -> Result<Duration> {
    let v = v.unwrap_or(default);
    if v == 0 || v > MAX_MS {
        return Err(bad(field, format!("{v} ms is outside 1..={MAX_MS} ms")));
    }
    Ok(Duration::from_millis(v))
}

fn node(field: &str, n: NodeConfig) -> Result<NodeInfo> {
    if n.id.is_empty() {
        return Err(bad(format!("{field}.id"), "is required"));
    }
    for (key, value, max) in [
        ("id", &n.id, MAX_NODE_ID_LEN),
        ("zone", &n.zone, MAX_ZONE_LEN),
    ] {
        if let Some(problem) = field_problem(value, max) {
            return Err(bad(format!("{field}.{key}"), problem));
        }
    }
    let address: HostPort = n
        .address
        .parse()
        .map_err(|e: vigil_proto::ProtoError| bad(format!("{field}.address"), e.to_string()))?;
    Ok(NodeInfo {
        id: n.id,
        address,
        zone: n.zone,
        priority: n.priority,
        flavour: v1::Flavour::Unspecified,
    })
}

impl TryFrom<ControllerSettings> for ControllerConfig {
    type Error = ControllerError;

    fn try_from(mut s: ControllerSettings) -> Result<Self> {
        let metrics_listen =
            match s
                .metrics_listen
                .as_deref()
                .unwrap_or(DEFAULT_METRICS_LISTEN)
            {
                "off" | "" => None,
                a => Some(a.parse().map_err(|_| {
                    bad("metrics_listen", format!("{a:?} is not IP:PORT or \"off\""))
                })?),
            };
        let mut datastores = Vec::new();
        for (i, d) in std::mem::take(&mut s.datastores).into_iter().enumerate() {
            if !valid_name(&d.name) {
                return Err(bad(
                    format!("datastore[{i}].name"),
                    format!(
                        "{:?} is not allowed (letters, digits, '-', '_', '.')",
                        d.name
                    ),
                ));
            }
            if d.nodes.len() > MAX_NODES_PER_DATASTORE {
                return Err(bad(
                    format!("datastore[{i}].node"),
                    format!(
                        "{} nodes, more than the {MAX_NODES_PER_DATASTORE} a data store may have",
                        d.nodes.len()
                    ),
                ));
            }
            let nodes = d
                .nodes
                .into_iter()
                .enumerate()
                .map(|(j, n)| node(&format!("datastore[{i}].node[{j}]"), n))
                .collect::<Result<Vec<_>>>()?;
            datastores.push((d.name, nodes));
        }
        let heartbeat = ms("heartbeat_ms", s.heartbeat_ms, DEFAULT_HEARTBEAT_MS)?;
        let lease = ms("lease_ms", s.lease_ms, DEFAULT_LEASE_MS)?;
        if lease < heartbeat * 2 {
            return Err(bad(
                "lease_ms",
                format!(
                    "{} ms must be at least twice heartbeat_ms ({} ms): each heartbeat renews \
                     the primary's lease, and a lease that runs out between heartbeats makes \
                     healthy primaries fence themselves",
                    lease.as_millis(),
                    heartbeat.as_millis()
                ),
            ));
        }
        let desired_refresh = ms(
            "desired_refresh_ms",
            s.desired_refresh_ms,
            DEFAULT_DESIRED_REFRESH_MS,
        )?;
        if desired_refresh < heartbeat {
            return Err(bad(
                "desired_refresh_ms",
                format!(
                    "{} ms must be at least heartbeat_ms ({} ms): desired state is looked at on \
                     the heartbeat",
                    desired_refresh.as_millis(),
                    heartbeat.as_millis()
                ),
            ));
        }
        let quiet_heartbeat = match s.quiet_heartbeat_ms.unwrap_or(DEFAULT_QUIET_HEARTBEAT_MS) {
            0 => Duration::ZERO,
            v => ms("quiet_heartbeat_ms", Some(v), DEFAULT_QUIET_HEARTBEAT_MS)?,
        };
        let grpc_listen = addr("grpc_listen", s.grpc_listen.clone(), DEFAULT_GRPC_LISTEN)?;
        let sentinel_listen = addr(
            "sentinel_listen",
            s.sentinel_listen.clone(),
            DEFAULT_SENTINEL_LISTEN,
        )?;
        let cluster = cluster::from_settings(&s)?;
        let tls = tls(&mut s)?;
        let me = me(
            &s,
            grpc_listen,
            sentinel_listen,
            cluster.is_some(),
            tls.is_some(),
        )?;
        let sentinel = sentinel::from_settings(&s)?;
        let hooks = hooks::from_settings(&s)?;
        Ok(Self {
            sentinel,
            hooks,
            grpc_listen,
            sentinel_listen,
            me,
            cluster,
            tls,
            metrics_listen,
            data_dir: s
                .data_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            settings: Settings {
                silence: ms("silence_ms", s.silence_ms, DEFAULT_SILENCE_MS)?,
                grace: ms("grace_ms", s.grace_ms, DEFAULT_GRACE_MS)?,
                min_failover_interval: ms(
                    "min_failover_interval_ms",
                    s.min_failover_interval_ms,
                    DEFAULT_MIN_FAILOVER_INTERVAL_MS,
                )?,
                link_bound: ms("link_bound_ms", s.link_bound_ms, DEFAULT_LINK_BOUND_MS)?,
                heartbeat,
                desired_refresh,
                quiet_heartbeat,
                lease,
                lease_margin: ms(
                    "lease_margin_ms",
                    s.lease_margin_ms,
                    DEFAULT_LEASE_MARGIN_MS,
                )?,
                fence_deadline: ms(
                    "fence_deadline_ms",
                    s.fence_deadline_ms,
                    DEFAULT_FENCE_DEADLINE_MS,
                )?,
                ..Settings::default()
            },
            admission: Admission {
                refuse_unknown: s.refuse_unknown,
                max_datastores: match s.max_datastores.unwrap_or(DEFAULT_MAX_DATASTORES) {
                    0 => return Err(bad("max_datastores", "must be at least 1")),
                    n => n,
                },
            },
            datastores,
        })
    }
}

#[cfg(test)]
mod tests;
