//! The `vigil-controller` binary: flags, logging, listeners, and the tokio runtime.
use std::{io::IsTerminal, path::PathBuf, sync::Arc, sync::atomic::AtomicU64};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use tokio::signal::unix::{SignalKind, signal};
use vigil_controller::{
    config::{ControllerConfig, ControllerSettings},
    grpc::{AgentLinkService, ControlService},
    metrics::{self, Metrics},
    registry::Registry,
    sentinel,
};
use vigil_proto::v1::{agent_link_server::AgentLinkServer, control_server::ControlServer};

#[derive(Parser)]
#[command(
    name = "vigil-controller",
    version,
    about = "vigil's controller: fails Redis-protocol data stores over to their best replica, and tells clients through a Sentinel-compatible endpoint"
)]
struct Cli {
    /// A TOML file with any of the settings below, and [[datastore]] tables listing known nodes.
    #[arg(long, env = "VIGIL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "VIGIL_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log filter, in tracing's EnvFilter syntax.
    #[arg(long, default_value = "info", env = "VIGIL_LOG")]
    log: String,
    #[command(flatten)]
    settings: ControllerSettings,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("vigil-controller: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .map_err(|e| anyhow::anyhow!("--log {:?}: {e}", cli.log))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    let file = match &cli.config {
        Some(path) => ControllerSettings::from_file(path)?,
        None => ControllerSettings::default(),
    };
    let config = ControllerConfig::try_from(cli.settings.over(file))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(config))
}

async fn serve(config: ControllerConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data folder {}", config.data_dir.display()))?;
    let metrics = Metrics::new();
    let registry = Registry::new(
        config.data_dir.clone(),
        config.settings.clone(),
        config.refuse_unknown,
        Arc::clone(&metrics),
    );
    for (name, nodes) in config.datastores.clone() {
        registry.configure(&name, nodes)?;
    }
    // Bind everything first: a port in use is a start-up error, not a log line later.
    let grpc = tokio::net::TcpListener::bind(config.grpc_listen)
        .await
        .with_context(|| format!("listening for gRPC on {}", config.grpc_listen))?;
    let sentinel_listener = tokio::net::TcpListener::bind(config.sentinel_listen)
        .await
        .with_context(|| {
            format!(
                "listening for Sentinel clients on {}",
                config.sentinel_listen
            )
        })?;
    if let Some(addr) = config.metrics_listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for /metrics on {addr}"))?;
        tokio::spawn(metrics::serve(l, Arc::clone(&metrics)));
    }
    tokio::spawn(sentinel::serve(
        sentinel_listener,
        Arc::clone(&registry.published),
    ));
    tracing::info!(
        grpc = %config.grpc_listen, sentinel = %config.sentinel_listen, metrics = ?config.metrics_listen,
        data_dir = %config.data_dir.display(), "vigil-controller running"
    );
    let agents = AgentLinkServer::new(AgentLinkService {
        registry: Arc::clone(&registry),
        sessions: AtomicU64::new(1),
    });
    let control = ControlServer::new(ControlService {
        registry: Arc::clone(&registry),
    });
    let mut terminate = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("vigil-controller stopping");
    };
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(1)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(1)))
        .add_service(agents)
        .add_service(control)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(grpc),
            shutdown,
        )
        .await?;
    Ok(())
}
