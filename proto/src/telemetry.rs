//! Logs and metrics, which both daemons set up the same way: tracing to stderr as readable text
//! or JSON lines, and Prometheus' `GET /metrics` over HTTP/1.
use std::{io::IsTerminal, sync::Arc, time::Duration};

use axum::{Router, extract::State, http::header, routing::get};
use prometheus_client::{encoding::text::encode, registry::Registry};

use hyper_util::{rt::TokioIo, rt::TokioTimer, service::TowerToHyperService};

use crate::{accept::Acceptor, error::ProtoError};

/// A /metrics client must send its request's headers within this: a client that trickles them
/// (or sends none) is closed rather than holding a connection and a descriptor for ever. A
/// scraper sends them at once.
pub const METRICS_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The log filter when none is given.
pub const DEFAULT_LOG_FILTER: &str = "info";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable lines, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The logging flags both daemons take.
#[derive(Clone, Debug, clap::Args)]
pub struct LogArgs {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "VIGIL_LOG_FORMAT", global = true)]
    pub log_format: LogFormat,
    /// Log filter, in tracing's EnvFilter syntax (e.g. `info`, `vigil_agent=debug`).
    #[arg(long, default_value = DEFAULT_LOG_FILTER, env = "VIGIL_LOG", global = true)]
    pub log: String,
}

impl LogArgs {
    /// Installs the global subscriber: stderr, in the chosen format, through the filter.
    pub fn init(&self) -> Result<(), ProtoError> {
        let filter = tracing_subscriber::EnvFilter::try_new(&self.log)
            .map_err(|e| ProtoError::LogFilter(self.log.clone(), e.to_string()))?;
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal());
        match self.log_format {
            LogFormat::Text => builder.init(),
            LogFormat::Json => builder.json().init(),
        }
        Ok(())
    }
}

async fn render(
    State(registry): State<Arc<Registry>>,
) -> ([(header::HeaderName, &'static str); 1], String) {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &registry);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

/// Serves `registry` as `GET /metrics` on `listener`, one request per connection; never
/// returns (the `Result` is for the daemons' uniform handling of their servers).
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    registry: Registry,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics");
    }
    let app = Router::new()
        .route("/metrics", get(render))
        .with_state(Arc::new(registry));
    let mut http = hyper::server::conn::http1::Builder::new();
    // Scrapes come seconds apart: a connection per scrape costs nothing, and a kept-alive one
    // would be an idle descriptor held between them.
    http.timer(TokioTimer::new())
        .header_read_timeout(METRICS_HEADER_TIMEOUT)
        .keep_alive(false);
    let mut acceptor = Acceptor::new(listener, "/metrics");
    loop {
        let (stream, peer) = acceptor.accept().await;
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "/metrics connection closed");
            }
        });
    }
}
