//! `vigil`: the operator's CLI for the controller, one file per subcommand: [`status`],
//! [`failover`], [`watch`], and [`certs`], which makes an installation's certificates.
mod certs;
mod failover;
mod status;
mod watch;

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tonic::transport::Channel;
use vigil_proto::{DEFAULT_CONTROLLER_URL, tls::TlsFiles, v1::control_client::ControlClient};

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    about = "Ask vigil's controller about data stores, or fail one over"
)]
struct Cli {
    /// The controller's gRPC URL.
    #[arg(
        long,
        global = true, help_heading = "Reaching the controller",
        default_value = DEFAULT_CONTROLLER_URL,
        env = "VIGIL_CONTROLLER"
    )]
    controller: String,
    /// The CA (PEM) that signed the controller's certificate. With --tls-cert and --tls-key, the
    /// CLI speaks mutual TLS to an https:// controller, which it accepts only with a certificate
    /// for vigil-controller from this CA.
    #[arg(
        long,
        global = true,
        help_heading = "Reaching the controller",
        env = "VIGIL_TLS_CA",
        value_name = "FILE"
    )]
    tls_ca: Option<PathBuf>,
    /// The operator's certificate (PEM), naming vigil://operator/NAME: failover needs one.
    #[arg(
        long,
        global = true,
        help_heading = "Reaching the controller",
        env = "VIGIL_TLS_CERT",
        value_name = "FILE"
    )]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(
        long,
        global = true,
        help_heading = "Reaching the controller",
        env = "VIGIL_TLS_KEY",
        value_name = "FILE"
    )]
    tls_key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Nodes, roles, health and reasons, offsets and lag, zones, verdict ages and epochs.
    Status {
        /// One data store (default: all).
        datastore: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Move the primary role: a planned, zero-loss switchover of a live primary (REPLTAKEOVER on
    /// Dragonfly, FAILOVER on Redis), or a forced promotion when the primary is already dead.
    Failover {
        datastore: String,
        /// The replica to promote (default: the best one).
        #[arg(long)]
        to: Option<String>,
    },
    /// Stream topology events (+switch-master, +sdown, -sdown, +odown) as they happen.
    Watch {
        /// One data store (default: all).
        datastore: Option<String>,
    },
    /// Make a CA and the certificates of one installation: the controllers', the operator's
    /// (this CLI's) and one per node of a data store. Asks no controller.
    Certs(certs::CertsArgs),
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vigil: error: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("vigil: error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Certs(args) = cli.command {
        return certs::run(args);
    }
    let tls = TlsFiles::from_parts(
        cli.tls_ca.clone(),
        cli.tls_cert.clone(),
        cli.tls_key.clone(),
        ["--tls-ca", "--tls-cert", "--tls-key"],
    )?;
    let https = cli.controller.starts_with("https://");
    let mut endpoint = tonic::transport::Endpoint::from_shared(cli.controller.clone())
        .with_context(|| format!("{:?} is not a URL", cli.controller))?
        .connect_timeout(Duration::from_secs(2));
    match (&tls, https) {
        (Some(files), true) => {
            endpoint = endpoint
                .tls_config(files.client_config()?)
                .context("configuring TLS")?;
        }
        (Some(_), false) => anyhow::bail!(
            "--controller {} is not https://: with --tls-* the CLI speaks only TLS",
            cli.controller
        ),
        (None, true) => anyhow::bail!(
            "--controller {} is https://, which needs --tls-ca, --tls-cert and --tls-key",
            cli.controller
        ),
        (None, false) => {}
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot reach the controller at {}", cli.controller))?;
    let client = ControlClient::new(channel);
    match cli.command {
        Command::Status { datastore, json } => status::run(client, datastore, json).await,
        Command::Failover { datastore, to } => failover::run(client, datastore, to).await,
        Command::Watch { datastore } => watch::run(client, datastore).await,
        // Made above, without a controller.
        Command::Certs(_) => Ok(()),
    }
}

/// The controller's client, as each subcommand takes it.
pub type Client = ControlClient<Channel>;

/// An error from the controller, as its message (the code adds nothing for an operator).
fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", s.message())
}
