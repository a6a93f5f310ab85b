//! `vigil-controller` configuration: flags, environment variables and a TOML file (flags win),
//! validated with errors that name the field. The file may also list data stores and their
//! nodes, so they are known before their agents connect.
//!
//! The same struct is the clap flag set and the TOML schema, so a setting has one name
//! everywhere: `--silence-ms`, `VIGIL_SILENCE_MS`, `silence_ms`. Each default is one constant,
//! shown in `--help` through that constant.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;
use vigil_proto::{
    DEFAULT_PRIORITY, HostPort,
    cli::with_default,
    limits::{MAX_NODE_ID_LEN, MAX_NODES_PER_DATASTORE, MAX_ZONE_LEN, field_problem, valid_name},
    tls::{Identity, TlsFiles, read_certs_pem, read_key_pem},
    v1,
};

use crate::{
    cluster::{election::DEFAULT_LEADER_LEASE_SECS, etcd_tls::EtcdTls},
    error::{ControllerError, Result},
    member::ControllerInfo,
    sentinel::{
        auth::{Credentials, DEFAULT_USER, MAX_PASSWORD},
        endpoint::{DEFAULT_IDLE_TIMEOUT_SECS, DEFAULT_MAX_CLIENTS, Options},
        tls::EndpointTls,
    },
    store::{
        NodeInfo, Settings,
        registry::Admission,
        settings::{
            DEFAULT_FENCE_DEADLINE_MS, DEFAULT_GRACE_MS, DEFAULT_HEARTBEAT_MS,
            DEFAULT_LEASE_MARGIN_MS, DEFAULT_LEASE_MS, DEFAULT_LINK_BOUND_MS,
            DEFAULT_MIN_FAILOVER_INTERVAL_MS, DEFAULT_SILENCE_MS,
        },
    },
};

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

#[derive(Clone, Debug, Default, Deserialize, clap::Args)]
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
          help = with_default("How often every agent is sent its desired state, which renews the primary's lease, in ms", DEFAULT_HEARTBEAT_MS))]
    pub heartbeat_ms: Option<u64>,
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
    /// Refuse agents of data stores not listed in the configuration file.
    #[arg(long, env = "VIGIL_REFUSE_UNKNOWN")]
    #[serde(default)]
    pub refuse_unknown: bool,
    #[arg(skip)]
    #[serde(default, rename = "datastore")]
    pub datastores: Vec<DatastoreConfig>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatastoreConfig {
    pub name: String,
    #[serde(default, rename = "node")]
    pub nodes: Vec<NodeConfig>,
}

#[derive(Clone, Debug, Default, Deserialize)]
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
}

/// What the Sentinel endpoint asks of its clients.
#[derive(Clone, Debug)]
pub struct SentinelConfig {
    pub options: Options,
    pub tls: Option<EndpointTls>,
}

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub endpoints: Vec<String>,
    pub prefix: String,
    pub lease_secs: u64,
    /// Set with --etcd-ca: TLS to etcd.
    pub tls: Option<EtcdTls>,
}

/// The host's name, for a controller not given one.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "vigil-controller".into())
}

fn cluster(s: &ControllerSettings) -> Result<Option<ClusterConfig>> {
    let Some(urls) = s.etcd.as_deref() else {
        if let Some(field) = [
            ("etcd_ca", s.etcd_ca.is_some()),
            ("etcd_cert", s.etcd_cert.is_some()),
            ("etcd_key", s.etcd_key.is_some()),
        ]
        .into_iter()
        .find_map(|(name, given)| given.then_some(name))
        {
            return Err(bad(
                field,
                "is set without etcd: there is no etcd to speak TLS to",
            ));
        }
        return Ok(None);
    };
    let endpoints: Vec<String> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect();
    if endpoints.is_empty() {
        return Err(bad("etcd", "names no URL"));
    }
    for u in &endpoints {
        let rest = u
            .strip_prefix("http://")
            .or_else(|| u.strip_prefix("https://"))
            .ok_or_else(|| bad("etcd", format!("{u:?} is not an http:// or https:// URL")))?;
        rest.parse::<HostPort>()
            .map_err(|e| bad("etcd", format!("{u:?}: {e}")))?;
    }
    let tls = etcd_tls(s)?;
    let scheme = if tls.is_some() { "https://" } else { "http://" };
    if let Some(u) = endpoints.iter().find(|u| !u.starts_with(scheme)) {
        return Err(bad(
            "etcd",
            match tls {
                Some(_) => format!("{u:?} must be an https:// URL: etcd_ca asks for TLS"),
                None => format!("{u:?} is https://: TLS to etcd needs etcd_ca"),
            },
        ));
    }
    let prefix = s.etcd_prefix.as_deref().unwrap_or(DEFAULT_ETCD_PREFIX);
    if !prefix.starts_with('/') || prefix.len() < 2 || prefix.contains(char::is_whitespace) {
        return Err(bad(
            "etcd_prefix",
            format!("{prefix:?} must start with '/', name something, and hold no spaces"),
        ));
    }
    let lease_secs = s.leader_lease_secs.unwrap_or(DEFAULT_LEADER_LEASE_SECS);
    if lease_secs == 0 || lease_secs > MAX_LEADER_LEASE_SECS {
        return Err(bad(
            "leader_lease_secs",
            format!("{lease_secs} is outside 1..={MAX_LEADER_LEASE_SECS}"),
        ));
    }
    Ok(Some(ClusterConfig {
        endpoints,
        prefix: prefix.to_string(),
        lease_secs,
        tls,
    }))
}

/// TLS to etcd: the CA alone (etcd proves who it is), or with a client certificate and its key
/// (both proving who this controller is too). Each file is read now, so a wrong one is named.
fn etcd_tls(s: &ControllerSettings) -> Result<Option<EtcdTls>> {
    let identity = match (&s.etcd_cert, &s.etcd_key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        (None, None) => None,
        (Some(_), None) => return Err(bad("etcd_key", "is required with etcd_cert")),
        (None, Some(_)) => return Err(bad("etcd_cert", "is required with etcd_key")),
    };
    let Some(ca) = s.etcd_ca.clone() else {
        return match identity {
            Some(_) => Err(bad(
                "etcd_ca",
                "is required with etcd_cert and etcd_key: it verifies etcd's certificate",
            )),
            None => Ok(None),
        };
    };
    read_certs_pem(&ca).map_err(|e| bad("etcd_ca", e.to_string()))?;
    if let Some((cert, key)) = &identity {
        read_certs_pem(cert).map_err(|e| bad("etcd_cert", e.to_string()))?;
        read_key_pem(key).map_err(|e| bad("etcd_key", e.to_string()))?;
    }
    let tls = EtcdTls { ca, identity };
    tls.options().map_err(|e| bad("etcd_ca", e.to_string()))?;
    Ok(Some(tls))
}

/// The password in `path`: its first line, without the line end. The file should be readable by
/// the controller's user only; a file others may read is used, with a warning.
fn password(path: &std::path::Path) -> Result<Vec<u8>> {
    use std::os::unix::fs::PermissionsExt;
    let field = "sentinel_password_file";
    let mut bytes =
        std::fs::read(path).map_err(|e| bad(field, format!("reading {}: {e}", path.display())))?;
    if let Some(end) = bytes.iter().position(|b| *b == b'\n') {
        bytes.truncate(end);
    }
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(bad(field, format!("{} holds no password", path.display())));
    }
    if bytes.len() > MAX_PASSWORD {
        return Err(bad(
            field,
            format!(
                "the password in {} is longer than {MAX_PASSWORD} bytes, more than a client may \
                 send before it authenticates",
                path.display()
            ),
        ));
    }
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o004 != 0
    {
        tracing::warn!(path = %path.display(), "the Sentinel password file is readable by every user: chmod 600 it");
    }
    Ok(bytes)
}

fn sentinel(s: &ControllerSettings) -> Result<SentinelConfig> {
    let user = s.sentinel_user.as_deref().unwrap_or(DEFAULT_SENTINEL_USER);
    if user.is_empty() || user.len() > 128 || !user.bytes().all(|c| (b'!'..=b'~').contains(&c)) {
        return Err(bad(
            "sentinel_user",
            format!("{user:?} must be 1 to 128 printable characters without spaces"),
        ));
    }
    let credentials = match &s.sentinel_password_file {
        Some(path) => Some(Credentials::new(user, &password(path)?)),
        None if s.sentinel_user.is_some() => {
            return Err(bad(
                "sentinel_user",
                "is set without sentinel_password_file: a user needs a password",
            ));
        }
        None => None,
    };
    let tls = match (&s.sentinel_tls_cert, &s.sentinel_tls_key) {
        (Some(cert), Some(key)) => Some(EndpointTls {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: s.sentinel_tls_client_ca.clone(),
        }),
        (None, None) if s.sentinel_tls_client_ca.is_some() => {
            return Err(bad(
                "sentinel_tls_client_ca",
                "needs sentinel_tls_cert and sentinel_tls_key",
            ));
        }
        (None, None) => None,
        (Some(_), None) => {
            return Err(bad(
                "sentinel_tls_key",
                "is required with sentinel_tls_cert",
            ));
        }
        (None, Some(_)) => {
            return Err(bad(
                "sentinel_tls_cert",
                "is required with sentinel_tls_key",
            ));
        }
    };
    let max_clients = match s
        .sentinel_max_clients
        .unwrap_or(DEFAULT_SENTINEL_MAX_CLIENTS)
    {
        0 => return Err(bad("sentinel_max_clients", "must be at least 1")),
        n => n,
    };
    let idle_timeout = match s
        .sentinel_idle_timeout_secs
        .unwrap_or(DEFAULT_SENTINEL_IDLE_TIMEOUT_SECS)
    {
        0 => None,
        n if n > MAX_IDLE_TIMEOUT_SECS => {
            return Err(bad(
                "sentinel_idle_timeout_secs",
                format!("{n} s is more than {MAX_IDLE_TIMEOUT_SECS} s (0 turns it off)"),
            ));
        }
        n => Some(Duration::from_secs(n)),
    };
    Ok(SentinelConfig {
        options: Options {
            credentials,
            idle_timeout,
            max_clients,
        },
        tls,
    })
}

fn me(
    s: &ControllerSettings,
    grpc: SocketAddr,
    sentinel: SocketAddr,
    cluster: bool,
    tls: bool,
) -> Result<ControllerInfo> {
    let name = s.name.clone().unwrap_or_else(host_name);
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
                    "is required with --etcd when grpc_listen is {grpc}: other controllers                      send agents to it"
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
        let grpc_listen = addr("grpc_listen", s.grpc_listen.clone(), DEFAULT_GRPC_LISTEN)?;
        let sentinel_listen = addr(
            "sentinel_listen",
            s.sentinel_listen.clone(),
            DEFAULT_SENTINEL_LISTEN,
        )?;
        let cluster = cluster(&s)?;
        let tls = tls(&mut s)?;
        let me = me(
            &s,
            grpc_listen,
            sentinel_listen,
            cluster.is_some(),
            tls.is_some(),
        )?;
        let sentinel = sentinel(&s)?;
        Ok(Self {
            sentinel,
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
mod tests {
    use clap::{Args, Command};

    use super::*;

    #[test]
    fn a_file_with_datastores_parses_and_errors_name_the_field() {
        let s: ControllerSettings = toml::from_str(
            "grace_ms = 100\n[[datastore]]\nname = \"cache\"\n[[datastore.node]]\nid = \"a\"\naddress = \"127.0.0.1:6379\"\nzone = \"z1\"\n",
        )
        .unwrap();
        let c = ControllerConfig::try_from(s).unwrap();
        assert_eq!(c.settings.grace, Duration::from_millis(100));
        assert_eq!(c.datastores[0].0, "cache");
        assert_eq!(c.datastores[0].1[0].priority, DEFAULT_PRIORITY);
        assert_eq!(
            c.datastores[0].1[0].address,
            HostPort::new("127.0.0.1", 6379)
        );
        assert_eq!(c.grpc_listen.port(), 7420);
        let bad_node: ControllerSettings =
            toml::from_str("[[datastore]]\nname = \"cache\"\n[[datastore.node]]\nid = \"a\"\naddress = \"nowhere\"\n").unwrap();
        let e = ControllerConfig::try_from(bad_node)
            .unwrap_err()
            .to_string();
        assert!(e.contains("datastore[0].node[0].address"), "{e}");
        let e = ControllerConfig::try_from(ControllerSettings {
            grpc_listen: Some("7420".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("grpc_listen"), "{e}");
        assert!(toml::from_str::<ControllerSettings>("grcp_listen = \"x\"").is_err());
    }

    #[test]
    fn unset_settings_take_the_defaults_the_help_shows() {
        let c = ControllerConfig::try_from(ControllerSettings::default()).unwrap();
        assert_eq!(c.settings, Settings::default());
        assert_eq!(c.grpc_listen.to_string(), DEFAULT_GRPC_LISTEN);
        assert_eq!(c.sentinel_listen.to_string(), DEFAULT_SENTINEL_LISTEN);
        assert_eq!(
            c.metrics_listen.map(|a| a.to_string()).as_deref(),
            Some(DEFAULT_METRICS_LISTEN)
        );
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(
            c.settings.silence,
            Duration::from_millis(DEFAULT_SILENCE_MS)
        );
    }

    /// A self-signed certificate naming `uri`, and its key, written into `dir`.
    fn cert_naming(dir: &std::path::Path, uri: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .subject_alt_names
            .push(rcgen::SanType::URI(uri.try_into().unwrap()));
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn tls_takes_all_three_files_and_a_controller_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let e = ControllerConfig::try_from(ControllerSettings {
            tls_cert: Some("c.pem".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("tls_cert given without tls_client_ca and tls_key"),
            "{e}"
        );
        let with = |uri: &str| {
            let (cert, key) = cert_naming(dir.path(), uri);
            ControllerSettings {
                tls_client_ca: Some(cert.clone()),
                tls_cert: Some(cert),
                tls_key: Some(key),
                ..Default::default()
            }
        };
        let e = ControllerConfig::try_from(with("vigil://node/cache/n0"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tls_cert")
                && e.contains("names vigil://node/cache/n0, not vigil://controller"),
            "{e}"
        );
        let c = ControllerConfig::try_from(with("vigil://controller")).unwrap();
        assert!(c.tls.is_some());
        assert_eq!(c.me.grpc, format!("https://{DEFAULT_GRPC_LISTEN}"));
        let e = ControllerConfig::try_from(ControllerSettings {
            advertise_grpc: Some("http://c1.example:7420".into()),
            ..with("vigil://controller")
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("advertise_grpc") && e.contains("https://"),
            "{e}"
        );
    }

    #[test]
    fn etcd_settings_parse_and_each_mistake_names_its_field() {
        let with = |f: fn(&mut ControllerSettings)| {
            let mut s = ControllerSettings {
                etcd: Some("http://10.0.0.1:2379, http://10.0.0.2:2379".into()),
                name: Some("c1".into()),
                ..Default::default()
            };
            f(&mut s);
            ControllerConfig::try_from(s)
        };
        let c = with(|_| {}).unwrap();
        let cluster = c.cluster.unwrap();
        assert_eq!(
            cluster.endpoints,
            ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!(cluster.prefix, DEFAULT_ETCD_PREFIX);
        assert_eq!(cluster.lease_secs, DEFAULT_LEADER_LEASE_SECS);
        assert_eq!(c.me.name, "c1");
        assert_eq!(c.me.grpc, format!("http://{DEFAULT_GRPC_LISTEN}"));
        assert_eq!(c.me.sentinel, DEFAULT_SENTINEL_LISTEN);
        type Change = fn(&mut ControllerSettings);
        let cases: [(Change, &str); 7] = [
            (|s| s.etcd = Some("10.0.0.1:2379".into()), "etcd"),
            (|s| s.etcd = Some(" , ".into()), "etcd"),
            (|s| s.etcd_prefix = Some("vigil".into()), "etcd_prefix"),
            (|s| s.leader_lease_secs = Some(0), "leader_lease_secs"),
            (|s| s.name = Some("a/b".into()), "name"),
            (
                |s| s.grpc_listen = Some("0.0.0.0:7420".into()),
                "advertise_grpc",
            ),
            (
                |s| s.advertise_sentinel = Some("nowhere".into()),
                "advertise_sentinel",
            ),
        ];
        for (f, field) in cases {
            let e = with(f).unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
        let open = with(|s| {
            s.grpc_listen = Some("0.0.0.0:7420".into());
            s.advertise_grpc = Some("http://c1.example:7420".into());
        })
        .unwrap();
        assert_eq!(open.me.grpc, "http://c1.example:7420");
        // Without etcd, nothing of it is needed, and 0.0.0.0 is fine.
        let single = ControllerConfig::try_from(ControllerSettings {
            grpc_listen: Some("0.0.0.0:7420".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(single.cluster.is_none());
    }

    #[test]
    fn a_lease_that_runs_out_between_heartbeats_is_refused_naming_both() {
        let e = ControllerConfig::try_from(ControllerSettings {
            heartbeat_ms: Some(300),
            lease_ms: Some(500),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("lease_ms") && e.contains("heartbeat_ms"), "{e}");
        let ok = ControllerConfig::try_from(ControllerSettings {
            heartbeat_ms: Some(300),
            lease_ms: Some(600),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(ok.settings.lease, Duration::from_millis(600));
        assert_eq!(ok.settings.heartbeat, Duration::from_millis(300));
    }

    #[test]
    fn sentinel_security_settings_parse_and_each_mistake_names_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret\n").unwrap();
        let c = ControllerConfig::try_from(ControllerSettings::default()).unwrap();
        assert!(c.sentinel.options.credentials.is_none() && c.sentinel.tls.is_none());
        assert_eq!(c.sentinel.options.max_clients, DEFAULT_SENTINEL_MAX_CLIENTS);
        assert_eq!(
            c.sentinel.options.idle_timeout,
            Some(Duration::from_secs(DEFAULT_SENTINEL_IDLE_TIMEOUT_SECS))
        );
        let s: ControllerSettings = toml::from_str(&format!(
            "sentinel_password_file = {:?}\nsentinel_user = \"app\"\nsentinel_idle_timeout_secs = 0\nsentinel_max_clients = 5\n",
            file.display().to_string()
        ))
        .unwrap();
        let c = ControllerConfig::try_from(s).unwrap();
        let creds = c.sentinel.options.credentials.unwrap();
        assert_eq!(creds.user(), "app");
        assert!(
            creds.check(b"app", b"s3cret"),
            "the final newline is not the password's"
        );
        assert_eq!(c.sentinel.options.idle_timeout, None);
        assert_eq!(c.sentinel.options.max_clients, 5);
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        type Change = Box<dyn Fn(&mut ControllerSettings)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|s| s.sentinel_user = Some("app".into())),
                "sentinel_user",
            ),
            (
                Box::new(|s| s.sentinel_password_file = Some("/nonexistent/pw".into())),
                "sentinel_password_file",
            ),
            (
                Box::new(move |s| s.sentinel_password_file = Some(empty.clone())),
                "sentinel_password_file",
            ),
            (
                Box::new(|s| s.sentinel_max_clients = Some(0)),
                "sentinel_max_clients",
            ),
            (
                Box::new(|s| s.sentinel_idle_timeout_secs = Some(MAX_IDLE_TIMEOUT_SECS + 1)),
                "sentinel_idle_timeout_secs",
            ),
            (
                Box::new(|s| s.sentinel_tls_cert = Some("c.pem".into())),
                "sentinel_tls_key",
            ),
            (
                Box::new(|s| s.sentinel_tls_client_ca = Some("ca.pem".into())),
                "sentinel_tls_client_ca",
            ),
        ];
        for (change, field) in cases {
            let mut s = ControllerSettings::default();
            change(&mut s);
            let e = ControllerConfig::try_from(s).unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
    }

    #[test]
    fn etcd_tls_takes_a_ca_alone_or_with_a_key_pair_and_https_urls_only() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = cert_naming(dir.path(), "vigil://controller");
        let https = || Some("https://127.0.0.1:2379".to_string());
        let server_only = ControllerConfig::try_from(ControllerSettings {
            etcd: https(),
            etcd_ca: Some(cert.clone()),
            ..Default::default()
        })
        .unwrap();
        let tls = server_only.cluster.and_then(|c| c.tls).unwrap();
        assert_eq!((tls.ca, tls.identity), (cert.clone(), None));
        let mutual = ControllerConfig::try_from(ControllerSettings {
            etcd: https(),
            etcd_ca: Some(cert.clone()),
            etcd_cert: Some(cert.clone()),
            etcd_key: Some(key.clone()),
            ..Default::default()
        })
        .unwrap();
        let tls = mutual.cluster.and_then(|c| c.tls).unwrap();
        assert_eq!(tls.identity, Some((cert.clone(), key.clone())));

        let mutual = || ControllerSettings {
            etcd: https(),
            etcd_ca: Some(cert.clone()),
            etcd_cert: Some(cert.clone()),
            etcd_key: Some(key.clone()),
            ..Default::default()
        };
        let missing = dir.path().join("missing.pem");
        let cases: Vec<(ControllerSettings, &str, &str)> = vec![
            (
                ControllerSettings {
                    etcd: None,
                    ..mutual()
                },
                "etcd_ca",
                "without etcd",
            ),
            (
                ControllerSettings {
                    etcd_key: None,
                    ..mutual()
                },
                "etcd_key",
                "required with etcd_cert",
            ),
            (
                ControllerSettings {
                    etcd_cert: None,
                    ..mutual()
                },
                "etcd_cert",
                "required with etcd_key",
            ),
            (
                ControllerSettings {
                    etcd_ca: None,
                    ..mutual()
                },
                "etcd_ca",
                "required with etcd_cert",
            ),
            (
                ControllerSettings {
                    etcd: Some("http://127.0.0.1:2379".into()),
                    ..mutual()
                },
                "etcd",
                "must be an https:// URL",
            ),
            (
                ControllerSettings {
                    etcd: https(),
                    ..Default::default()
                },
                "etcd",
                "needs etcd_ca",
            ),
            (
                ControllerSettings {
                    etcd_ca: Some(missing.clone()),
                    ..mutual()
                },
                "etcd_ca",
                "missing.pem",
            ),
            (
                ControllerSettings {
                    etcd_key: Some(cert.clone()),
                    ..mutual()
                },
                "etcd_key",
                "cert.pem",
            ),
        ];
        for (settings, field, says) in cases {
            let e = ControllerConfig::try_from(settings)
                .unwrap_err()
                .to_string();
            assert!(e.contains(field) && e.contains(says), "{field}: {e}");
        }
    }

    /// Every setting's help names its default, and the default named is the constant the code
    /// falls back to; a new setting without one must be listed here on purpose.
    #[test]
    fn the_help_shows_each_default_from_its_constant() {
        let command = ControllerSettings::augment_args(Command::new("vigil-controller"));
        let defaults: [(&str, String); 18] = [
            ("grpc_listen", DEFAULT_GRPC_LISTEN.into()),
            ("sentinel_listen", DEFAULT_SENTINEL_LISTEN.into()),
            ("metrics_listen", DEFAULT_METRICS_LISTEN.into()),
            ("data_dir", DEFAULT_DATA_DIR.into()),
            ("silence_ms", DEFAULT_SILENCE_MS.to_string()),
            ("grace_ms", DEFAULT_GRACE_MS.to_string()),
            (
                "min_failover_interval_ms",
                DEFAULT_MIN_FAILOVER_INTERVAL_MS.to_string(),
            ),
            ("link_bound_ms", DEFAULT_LINK_BOUND_MS.to_string()),
            ("heartbeat_ms", DEFAULT_HEARTBEAT_MS.to_string()),
            ("lease_ms", DEFAULT_LEASE_MS.to_string()),
            ("lease_margin_ms", DEFAULT_LEASE_MARGIN_MS.to_string()),
            ("fence_deadline_ms", DEFAULT_FENCE_DEADLINE_MS.to_string()),
            ("etcd_prefix", DEFAULT_ETCD_PREFIX.into()),
            ("leader_lease_secs", DEFAULT_LEADER_LEASE_SECS.to_string()),
            ("max_datastores", DEFAULT_MAX_DATASTORES.to_string()),
            ("sentinel_user", DEFAULT_SENTINEL_USER.into()),
            (
                "sentinel_max_clients",
                DEFAULT_SENTINEL_MAX_CLIENTS.to_string(),
            ),
            (
                "sentinel_idle_timeout_secs",
                DEFAULT_SENTINEL_IDLE_TIMEOUT_SECS.to_string(),
            ),
        ];
        // A switch needs no default; etcd is off unless given; the others default to what the
        // host and the listen addresses are, which their help says.
        let checked = vigil_proto::cli::check_defaults_shown(
            &command,
            &defaults,
            &[
                "refuse_unknown",
                "etcd",
                "name",
                "advertise_grpc",
                "advertise_sentinel",
                // Off unless given: no password, no TLS.
                "sentinel_password_file",
                "sentinel_tls_cert",
                "sentinel_tls_key",
                "sentinel_tls_client_ca",
                "tls_cert",
                "tls_key",
                "tls_client_ca",
                "etcd_ca",
                "etcd_cert",
                "etcd_key",
            ],
        );
        assert_eq!(checked, Ok(()));
    }
}
