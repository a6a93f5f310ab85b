//! Logs and metrics, which both daemons set up the same way: tracing to stderr as readable text
//! or JSON lines, and Prometheus' `GET /metrics` over HTTP.
use std::{io::IsTerminal, sync::Arc};

use axum::{Router, extract::State, http::header, routing::get};
use prometheus_client::{encoding::text::encode, registry::Registry};

use crate::error::ProtoError;

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

/// Serves `registry` as `GET /metrics` on `listener`; returns only if serving fails.
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
    axum::serve(listener, app).await
}
