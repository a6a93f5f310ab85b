//! Logs and metrics, which both daemons set up the same way: tracing to stderr as readable text
//! or JSON lines, and one HTTP/1 server per daemon with Prometheus' `GET /metrics` (the daemon's
//! registry, and `vigil_build_info`) beside the routes the daemon adds (its health endpoints).
use std::{io::IsTerminal, sync::Arc, time::Duration};

use axum::{Router, extract::State, http::header, routing::get};
use prometheus_client::{
    encoding::{
        EncodeLabelSet,
        text::{encode_eof, encode_registry},
    },
    metrics::{family::Family, gauge::Gauge},
    registry::Registry,
};

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

/// Which daemon serves: the `component` label of `vigil_build_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Agent,
    Controller,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Controller => "controller",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    component: &'static str,
    version: &'static str,
}

/// A registry holding `vigil_build_info{component,version} 1`, the series dashboards join on to
/// show which version runs where. It has no prefix, so it sits beside the daemon's own registry
/// (`vigil_agent_*`, `vigil_controller_*`) on the same page.
pub fn build_info(component: Component) -> Registry {
    let info = Family::<BuildLabels, Gauge>::default();
    info.get_or_create(&BuildLabels {
        component: component.as_str(),
        version: env!("CARGO_PKG_VERSION"),
    })
    .set(1);
    let mut r = Registry::default();
    r.register(
        "vigil_build_info",
        "1, labelled with the component and its version",
        info,
    );
    r
}

/// The registries one `/metrics` page shows, in order.
struct Page(Vec<Registry>);

async fn render(
    State(page): State<Arc<Page>>,
) -> ([(header::HeaderName, &'static str); 1], String) {
    let mut text = String::new();
    // Writing into a String cannot fail.
    for registry in &page.0 {
        let _ = encode_registry(&mut text, registry);
    }
    let _ = encode_eof(&mut text);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

/// Serves `GET /metrics` on `listener` (`registry`, then `vigil_build_info` for `component`),
/// and the daemon's own `routes` beside it, one request per connection; never returns (the
/// `Result` is for the daemons' uniform handling of their servers).
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    component: Component,
    registry: Registry,
    routes: Router,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics and the health endpoints over HTTP");
    }
    let page = Page(vec![registry, build_info(component)]);
    let app = Router::new()
        .route("/metrics", get(render))
        .with_state(Arc::new(page))
        .merge(routes);
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
                tracing::debug!(%peer, error = %e, "HTTP connection closed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_names_the_component_and_version_with_no_prefix() {
        let mut daemon = Registry::with_prefix("vigil_agent");
        daemon.register("up", "1", Gauge::<i64>::default());
        let page = Page(vec![daemon, build_info(Component::Controller)]);
        let mut text = String::new();
        for r in &page.0 {
            encode_registry(&mut text, r).unwrap();
        }
        encode_eof(&mut text).unwrap();
        let want = format!(
            "vigil_build_info{{component=\"controller\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&want), "{text}");
        assert!(text.contains("vigil_agent_up 0"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    }
}
