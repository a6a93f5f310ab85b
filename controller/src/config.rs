//! `vigil-controller` configuration: flags, environment variables and a TOML file (flags win),
//! validated with errors that name the field. The file may also list data stores and their
//! nodes, so they are known before their agents connect.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;
use vigil_proto::v1;

use crate::{
    error::{ControllerError, Result},
    reconciler::Settings,
    state::valid_name,
};

#[derive(Clone, Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ControllerSettings {
    /// Address agents and the vigil CLI connect to (gRPC) [default: 127.0.0.1:7420].
    #[arg(long, env = "VIGIL_GRPC_LISTEN", value_name = "ADDR")]
    pub grpc_listen: Option<String>,
    /// Address of the Redis-Sentinel-compatible endpoint [default: 127.0.0.1:26379].
    #[arg(long, env = "VIGIL_SENTINEL_LISTEN", value_name = "ADDR")]
    pub sentinel_listen: Option<String>,
    /// Address of the Prometheus /metrics endpoint, or "off" [default: 127.0.0.1:9420].
    #[arg(long, env = "VIGIL_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Folder for the persisted state: one file per data store [default: ./vigil-data].
    #[arg(long, env = "VIGIL_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// An agent not heard from this long is silent, in ms [default: 500].
    #[arg(long, env = "VIGIL_SILENCE_MS", value_name = "MS")]
    pub silence_ms: Option<u64>,
    /// After start-up, agents have this long to reconnect before silence counts, in ms [default: 5000].
    #[arg(long, env = "VIGIL_GRACE_MS", value_name = "MS")]
    pub grace_ms: Option<u64>,
    /// The flap guard: minimum time between automatic failovers of one data store, in ms [default: 30000].
    #[arg(long, env = "VIGIL_MIN_FAILOVER_INTERVAL_MS", value_name = "MS")]
    pub min_failover_interval_ms: Option<u64>,
    /// A replica whose replication link was last up longer ago is never promoted, in ms [default: 10000].
    #[arg(long, env = "VIGIL_LINK_BOUND_MS", value_name = "MS")]
    pub link_bound_ms: Option<u64>,
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
    100
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
    pub refuse_unknown: bool,
    /// Data store name and its nodes as if they had said hello.
    pub datastores: Vec<(String, Vec<v1::Hello>)>,
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
    if v == 0 || v > 3_600_000 {
        return Err(bad(field, format!("{v} ms is outside 1..=3600000 ms")));
    }
    Ok(Duration::from_millis(v))
}

impl TryFrom<ControllerSettings> for ControllerConfig {
    type Error = ControllerError;

    fn try_from(s: ControllerSettings) -> Result<Self> {
        let metrics_listen =
            match s.metrics_listen.as_deref().unwrap_or("127.0.0.1:9420") {
                "off" | "" => None,
                a => Some(a.parse().map_err(|_| {
                    bad("metrics_listen", format!("{a:?} is not IP:PORT or \"off\""))
                })?),
            };
        let mut datastores = Vec::new();
        for (i, d) in s.datastores.into_iter().enumerate() {
            if !valid_name(&d.name) {
                return Err(bad(
                    format!("datastore[{i}].name"),
                    format!(
                        "{:?} is not allowed (letters, digits, '-', '_', '.')",
                        d.name
                    ),
                ));
            }
            let mut hellos = Vec::new();
            for (j, n) in d.nodes.into_iter().enumerate() {
                let field = format!("datastore[{i}].node[{j}]");
                if n.id.is_empty() {
                    return Err(bad(format!("{field}.id"), "is required"));
                }
                let ok = n
                    .address
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
                if !ok {
                    return Err(bad(
                        format!("{field}.address"),
                        format!("{:?} is not HOST:PORT", n.address),
                    ));
                }
                hellos.push(v1::Hello {
                    protocol_version: vigil_proto::PROTOCOL_VERSION,
                    datastore: d.name.clone(),
                    node_id: n.id,
                    advertise: n.address,
                    zone: n.zone,
                    priority: n.priority,
                    flavour: 0,
                    agent_version: String::new(),
                });
            }
            datastores.push((d.name, hellos));
        }
        Ok(Self {
            grpc_listen: addr("grpc_listen", s.grpc_listen, "127.0.0.1:7420")?,
            sentinel_listen: addr("sentinel_listen", s.sentinel_listen, "127.0.0.1:26379")?,
            metrics_listen,
            data_dir: s.data_dir.unwrap_or_else(|| PathBuf::from("./vigil-data")),
            settings: Settings {
                silence: ms("silence_ms", s.silence_ms, 500)?,
                grace: ms("grace_ms", s.grace_ms, 5_000)?,
                min_failover_interval: ms(
                    "min_failover_interval_ms",
                    s.min_failover_interval_ms,
                    30_000,
                )?,
                link_bound: ms("link_bound_ms", s.link_bound_ms, 10_000)?,
                ..Settings::default()
            },
            refuse_unknown: s.refuse_unknown,
            datastores,
        })
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(c.datastores[0].1[0].priority, 100);
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
}
