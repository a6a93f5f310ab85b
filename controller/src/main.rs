//! The `vigil-controller` binary: flags, logging, listeners, and the tokio runtime.
use std::{path::PathBuf, sync::Arc};

use anyhow::{Context, bail};
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::watch,
    task::JoinHandle,
};
use vigil_controller::{
    api::{AgentLinkService, ControlService},
    cluster::{
        Leadership,
        election::Election,
        etcd::{self, Keys},
        views,
    },
    config::{ControllerConfig, ControllerSettings},
    health::{self, Supervision},
    hooks::Hooks,
    metrics::Metrics,
    sentinel,
    store::{Registry, data_dir::DataDir, etcd_state::EtcdStates, registry::Backend},
};
use vigil_proto::{
    accept::Acceptor,
    limits::MAX_AGENT_MESSAGE_BYTES,
    notify::Notifier,
    print_config::{self, File},
    telemetry::{Component, LogArgs, serve_http},
    v1::{agent_link_server::AgentLinkServer, control_server::ControlServer},
};

/// HTTP/2 streams one gRPC client may hold open at once.
const GRPC_STREAMS_PER_CONNECTION: u32 = 16;

/// How long a stopping controller waits for its resignation to reach etcd.
const RESIGN_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

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
    /// Print the effective configuration (flags over environment over the file over defaults,
    /// checked as at start) as TOML, each value with where it came from, and exit.
    #[arg(long)]
    print_config: bool,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    settings: ControllerSettings,
}

fn main() {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Err(e) = run(cli, &matches) {
        eprintln!("vigil-controller: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli, matches: &ArgMatches) -> anyhow::Result<()> {
    cli.log.init()?;
    let file = match &cli.config {
        Some(path) => ControllerSettings::from_file(path)?,
        None => ControllerSettings::default(),
    };
    let settings = cli.settings.over(file);
    let config = ControllerConfig::try_from(settings.clone())?;
    if cli.print_config {
        print!(
            "{}",
            print_controller_config(settings, &config, cli.config.as_deref(), matches)?
        );
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(config))
}

/// `vigil-controller --print-config`: `settings` as merged, with their defaults and sources.
fn print_controller_config(
    settings: ControllerSettings,
    config: &ControllerConfig,
    path: Option<&std::path::Path>,
    matches: &ArgMatches,
) -> anyhow::Result<String> {
    let file = match path {
        Some(p) => Some(File::read(
            p,
            print_config::source_of(&Cli::command(), matches, "config", None),
        )?),
        None => None,
    };
    let effective = settings.effective(config)?;
    Ok(print_config::render(
        "vigil-controller --print-config",
        &ControllerSettings::augment_args(clap::Command::new("vigil-controller")),
        matches,
        &effective,
        file.as_ref(),
        &[],
    ))
}

/// Waits for a server task that should run forever, and says which stopped and why.
async fn stopped(name: &str, task: &mut Option<JoinHandle<std::io::Result<()>>>) -> String {
    let Some(handle) = task.as_mut() else {
        return std::future::pending().await;
    };
    match handle.await {
        Ok(Ok(())) => format!("the {name} stopped"),
        Ok(Err(e)) => format!("the {name} failed: {e}"),
        Err(e) => format!("the {name} task ended: {e}"),
    }
}

async fn serve(config: ControllerConfig) -> anyhow::Result<()> {
    let notifier = Arc::new(Notifier::from_env());
    let metrics = Metrics::new();
    // Held until the process ends: a second controller on this folder stops here.
    let _data_dir = match &config.cluster {
        None => Some(DataDir::open(&config.data_dir)?),
        Some(_) => None,
    };
    let (leadership, backend, etcd) = match &config.cluster {
        None => (
            Leadership::embedded(config.me.clone()),
            Backend::Files(config.data_dir.clone()),
            None,
        ),
        Some(cluster) => {
            let client = etcd::connect(&cluster.endpoints, cluster.tls.as_ref()).await?;
            let keys = Keys::new(&cluster.prefix);
            let states = EtcdStates {
                client: client.clone(),
                keys: keys.clone(),
            };
            (
                Leadership::following(config.me.clone()),
                Backend::Etcd(Box::new(states)),
                Some((client, keys, cluster.lease_secs)),
            )
        }
    };
    // Started before any reconciler, which raises them; each runs while this controller leads.
    let hooks = Hooks::start(&config.hooks, Arc::clone(&leadership), Arc::clone(&metrics));
    let registry = Registry::new(
        backend,
        config.settings.clone(),
        config.admission,
        config.datastores.clone(),
        Arc::clone(&leadership),
        Arc::clone(&metrics),
        hooks,
    );
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
    let (reporter, grpc_health) = tonic_health::server::health_reporter();
    let supervision = Supervision::new(Arc::clone(&registry), reporter).await;
    let mut metrics_task = match config.metrics_listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for /metrics on {addr}"))?;
            Some(tokio::spawn(serve_http(
                l,
                Component::Controller,
                metrics.registry(),
                health::routes(Arc::clone(&supervision)),
            )))
        }
        None => None,
    };
    let published = Arc::clone(&registry.published);
    let sentinel_tls = match &config.sentinel.tls {
        Some(files) => Some(sentinel::tls::acceptor(files)?),
        None => None,
    };
    let sentinel_options = config.sentinel.options.clone();
    let mut sentinel_task = Some(tokio::spawn(async move {
        sentinel::serve(sentinel_listener, published, sentinel_options, sentinel_tls).await;
        Ok(())
    }));
    // Reconcilers run in this controller's terms: at once for a single controller, and from
    // each election it wins with etcd.
    tokio::spawn(Arc::clone(&registry).follow_terms());
    let (stop_election, stopping) = watch::channel(false);
    let mut election = None;
    if let Some((client, keys, lease_secs)) = etcd {
        let published = Arc::clone(&registry.published);
        tokio::spawn(views::share(
            client.clone(),
            keys.clone(),
            Arc::clone(&published),
            Arc::clone(&leadership),
        ));
        election = Some(tokio::spawn(
            Election {
                client,
                keys,
                leadership: Arc::clone(&leadership),
                lease_secs,
                published,
                metrics: Arc::clone(&metrics),
            }
            .run(stopping),
        ));
    }
    match &config.cluster {
        None => tracing::info!(
            grpc = %config.grpc_listen, sentinel = %config.sentinel_listen, metrics = ?config.metrics_listen,
            data_dir = %config.data_dir.display(), "vigil-controller running"
        ),
        Some(c) => tracing::info!(
            grpc = %config.grpc_listen, sentinel = %config.sentinel_listen, metrics = ?config.metrics_listen,
            name = %config.me.name, etcd = %c.endpoints.join(","), prefix = %c.prefix,
            "vigil-controller running; campaigning to lead"
        ),
    }
    // Every listener is bound by now: READY=1 follows once the state is loaded too.
    tokio::spawn(Arc::clone(&supervision).run(Arc::clone(&notifier)));
    let tls = config.tls.is_some();
    // A message past the bound is refused at its length prefix, before its body is held.
    let agents = AgentLinkServer::new(AgentLinkService::new(Arc::clone(&registry), tls))
        .max_decoding_message_size(MAX_AGENT_MESSAGE_BYTES);
    let control = ControlServer::new(ControlService {
        registry: Arc::clone(&registry),
        tls,
    })
    .max_decoding_message_size(MAX_AGENT_MESSAGE_BYTES);
    let mut terminate = signal(SignalKind::terminate())?;
    let stopping = Arc::clone(&notifier);
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("vigil-controller stopping");
        stopping.stopping("stopping on a signal");
    };
    let mut builder = tonic::transport::Server::builder();
    match &config.tls {
        Some(files) => {
            builder = builder
                .tls_config(files.server_config()?)
                .context("configuring TLS on the gRPC port")?;
            tracing::info!(
                cert = %files.cert.display(), client_ca = %files.ca.display(),
                "gRPC requires client certificates from the client CA"
            );
        }
        None if !config.grpc_listen.ip().is_loopback() => tracing::warn!(
            grpc = %config.grpc_listen,
            "gRPC listens WITHOUT TLS on a non-loopback address: anyone who can reach this port \
             can impersonate agents and move the primary. Give --tls-cert, --tls-key and \
             --tls-client-ca"
        ),
        None => {}
    }
    let grpc_server = builder
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(1)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(1)))
        // An agent holds one stream and the CLI one or two: a client opening hundreds (each
        // waiting out HELLO_WITHIN) gets RST_STREAM instead of holding the controller's memory.
        .max_concurrent_streams(Some(GRPC_STREAMS_PER_CONNECTION))
        .add_service(agents)
        .add_service(control)
        // The standard health service, behind the same TLS as the rest of the port.
        .add_service(grpc_health)
        // Accepted through vigil's acceptor: tonic retries a failed accept at once, which spins
        // while the process is out of file descriptors.
        .serve_with_incoming_shutdown(Acceptor::new(grpc, "gRPC"), shutdown);
    // Every server runs until shutdown; one that stops early is an outage of that endpoint, so
    // the controller says which and exits for its supervisor to restart it.
    let why = tokio::select! {
        r = grpc_server => {
            // Resign, so that another controller leads at once rather than after the lease.
            let _ = stop_election.send(true);
            if let Some(e) = election {
                let _ = tokio::time::timeout(RESIGN_WITHIN, e).await;
            }
            return r.context("the gRPC server failed");
        }
        why = stopped("Sentinel endpoint", &mut sentinel_task) => why,
        why = stopped("/metrics server", &mut metrics_task) => why,
    };
    tracing::error!("{why}");
    bail!(why)
}
