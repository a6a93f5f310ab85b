//! The agent library's one error type. Messages are written for an operator at 3 a.m.: what is
//! wrong and what to do about it.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "vigil-agent must run as root to load its eBPF programs (it needs CAP_BPF, CAP_PERFMON \
         and CAP_SYS_ADMIN); run it with sudo, or as a privileged DaemonSet"
    )]
    NotRoot,
    #[error(
        "this kernel has no BTF ({0} is missing); vigil needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf(PathBuf),
    #[error("kernel BTF: {0}")]
    Btf(String),
    #[error("tracefs is not mounted at {path} and mounting it failed: {reason}")]
    Tracefs { path: PathBuf, reason: String },
    #[error("tracepoint {event}: {reason}")]
    Tracepoint { event: String, reason: String },
    #[error("no such process: {0}")]
    NoSuchProcess(u32),
    #[error("nobody is listening on TCP port {0}")]
    NobodyListening(u16),
    #[error("process {0} is not listening on any TCP port; name the port with --port")]
    NoListeningPort(u32),
    #[error("process {pid} is not listening on TCP port {port}")]
    NotListeningOn { pid: u32, port: u16 },
    #[error("reading /proc: {0}")]
    Procfs(#[from] procfs::ProcError),
    #[error("loading the eBPF programs: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("eBPF program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("the eBPF object has no {0}; the build is broken")]
    MissingFromObject(&'static str),
    #[error("configuration: {field}: {message}")]
    Config {
        field: &'static str,
        message: String,
    },
    #[error("configuration file {path}: {message}")]
    ConfigFile { path: PathBuf, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl AgentError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;
