//! `vigil`: the operator's CLI for the controller, one file per subcommand: [`status`],
//! [`failover`], [`history`], [`pause`] (pause and resume), [`watch`], [`certs`], which makes an
//! installation's certificates, and [`completions`] and [`man`], which write the shell
//! completions and the manual pages.
mod certs;
mod completions;
mod failover;
mod history;
mod man;
mod pause;
mod status;
mod watch;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tonic::transport::{Channel, Endpoint};
use vigil_proto::{DEFAULT_CONTROLLER_URL, tls::TlsFiles, v1::control_client::ControlClient};

#[derive(Parser)]
#[command(
    name = "vigil",
    version,
    propagate_version = true,
    about = "Ask vigil's controller about data stores, or fail one over"
)]
pub struct Cli {
    #[command(flatten)]
    reach: Reach,
    #[command(subcommand)]
    command: Command,
}

/// How the CLI reaches the controller (every subcommand that asks one takes these).
#[derive(clap::Args)]
struct Reach {
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
    /// The operator's certificate (PEM), naming vigil://operator/NAME: failover, pause and
    /// resume need one; any certificate of the CA may read status, history and events.
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
}

#[derive(Subcommand)]
enum Command {
    /// Nodes, roles, health and reasons, offsets and lag, zones, verdict ages and epochs; the
    /// exit code says whether every data store is healthy.
    #[command(after_help = status::EXIT_CODES)]
    Status {
        /// One data store (default: all).
        datastore: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Move the primary role: a planned, zero-loss switchover of a live primary (REPLTAKEOVER on
    /// Dragonfly, FAILOVER on Redis), or a forced promotion when the primary is already dead.
    /// Works on a paused data store too.
    Failover {
        datastore: String,
        /// The replica to promote (default: the best one).
        #[arg(long)]
        to: Option<String>,
    },
    /// Each failover, oldest first: its epoch, cause, old and new primary, outcome, when it was
    /// decided, and its timeline in milliseconds.
    #[command(after_help = history::STAGES)]
    History {
        /// One data store (default: all).
        datastore: Option<String>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Maintenance mode: no automatic failover of the data store until `vigil resume` (`vigil
    /// failover` still works). Persisted; pausing a paused store changes nothing.
    Pause { datastore: String },
    /// End maintenance mode: automatic failover is back on.
    Resume { datastore: String },
    /// Stream topology events (+switch-master, +sdown, -sdown, +odown) as they happen; reconnects
    /// when the controller goes away.
    #[command(after_help = watch::AFTER_HELP)]
    Watch(watch::WatchArgs),
    /// Make a CA and the certificates of one installation: the controllers', the operator's
    /// (this CLI's) and one per node of a data store. Asks no controller.
    Certs(certs::CertsArgs),
    /// Print the shell completion script for SHELL on stdout. Asks no controller.
    #[command(after_help = completions::AFTER_HELP)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (vigil.1, vigil-status.1, ...) into a folder. Asks no controller.
    Man {
        /// The folder to write into (made if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

impl Command {
    /// The exit code of an error: 2 for status ("unreachable") and watch (gave up), 1 otherwise.
    fn error_code(&self) -> u8 {
        match self {
            Command::Status { .. } | Command::Watch(_) => 2,
            _ => 1,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let error_code = ExitCode::from(cli.command.error_code());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vigil: error: {e}");
            return error_code;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vigil: error: {e:#}");
            error_code
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    let command = match cli.command {
        // These ask no controller.
        Command::Certs(args) => return done(certs::run(args)),
        Command::Completions { shell } => return done(completions::run(shell)),
        Command::Man { out } => return done(man::run(&out)),
        other => other,
    };
    let endpoint = cli.reach.endpoint()?;
    if let Command::Watch(args) = command {
        return watch::run(endpoint, &cli.reach.controller, args).await;
    }
    let client = ControlClient::new(cli.reach.connect(&endpoint).await?);
    match command {
        Command::Status { datastore, json } => status::run(client, datastore, json).await,
        Command::Failover { datastore, to } => done(failover::run(client, datastore, to).await),
        Command::History { datastore, json } => done(history::run(client, datastore, json).await),
        Command::Pause { datastore } => done(pause::run(client, datastore, true).await),
        Command::Resume { datastore } => done(pause::run(client, datastore, false).await),
        // Handled above.
        Command::Watch(_)
        | Command::Certs(_)
        | Command::Completions { .. }
        | Command::Man { .. } => Ok(ExitCode::SUCCESS),
    }
}

impl Reach {
    /// The controller's endpoint, with TLS when the URL is https:// (which then needs every
    /// --tls-* file, and they need https://).
    fn endpoint(&self) -> anyhow::Result<Endpoint> {
        let tls = TlsFiles::from_parts(
            self.tls_ca.clone(),
            self.tls_cert.clone(),
            self.tls_key.clone(),
            ["--tls-ca", "--tls-cert", "--tls-key"],
        )?;
        let https = self.controller.starts_with("https://");
        let mut endpoint = Endpoint::from_shared(self.controller.clone())
            .with_context(|| format!("{:?} is not a URL", self.controller))?
            .connect_timeout(Duration::from_secs(2));
        match (&tls, https) {
            (Some(files), true) => {
                endpoint = endpoint
                    .tls_config(files.client_config()?)
                    .context("configuring TLS")?;
            }
            (Some(_), false) => anyhow::bail!(
                "--controller {} is not https://: with --tls-* the CLI speaks only TLS",
                self.controller
            ),
            (None, true) => anyhow::bail!(
                "--controller {} is https://, which needs --tls-ca, --tls-cert and --tls-key",
                self.controller
            ),
            (None, false) => {}
        }
        Ok(endpoint)
    }

    async fn connect(&self, endpoint: &Endpoint) -> anyhow::Result<Channel> {
        endpoint
            .connect()
            .await
            .with_context(|| format!("cannot reach the controller at {}", self.controller))
    }
}

/// The controller's client, as each subcommand takes it.
pub type Client = ControlClient<Channel>;

/// An error from the controller, as its message (the code adds nothing for an operator).
fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", s.message())
}
