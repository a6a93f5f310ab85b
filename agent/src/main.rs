//! The `vigil-agent` binary: command-line parsing, logging, and the tokio runtime.
use std::time::Duration;

use anyhow::Context;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use vigil_agent::{
    capabilities::{self, Plan},
    daemon::{
        self,
        config::RunConfig,
        settings::{
            DEFAULT_PING_INTERVAL_MS, DEFAULT_RUNQ_THRESHOLD_MS, DEFAULT_STALL_MS, RunSettings,
        },
    },
    fence::Method,
    kernel::KernelOptions,
    server::{
        credentials::{self, PASSWORD_ENV, SecretString},
        tls,
    },
    verdict::rules::Thresholds,
    watch::{self, DEFAULT_HOST, DEFAULT_TICK_US, WatchOptions},
};
use vigil_proto::{
    print_config::{self, File, Secret, Source},
    telemetry::LogArgs,
};

/// Priority 10 puts the agent above ordinary tasks and the server, and leaves 11-99 to whatever
/// the host already runs in real time.
const DEFAULT_RT_PRIORITY: u8 = 10;

#[derive(Parser)]
#[command(
    name = "vigil-agent",
    version,
    about = "vigil's node agent: watches a Redis-protocol server (Dragonfly, Redis, Valkey) from the kernel with eBPF",
    long_about = "vigil's node agent. It watches one Redis-protocol server process from the kernel \
                  with eBPF (stopped, exited, starved, blocked, unread requests, connection trouble) \
                  and reports it. Needs a kernel with BTF and the capabilities CAP_BPF, CAP_PERFMON, \
                  CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH and, for `run`, CAP_NET_ADMIN (root has them)."
)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    /// SCHED_FIFO priority (1-99) for the agent, so a busy or dying server cannot delay what the
    /// agent hears from the kernel; 0 keeps the normal scheduler. Its work per wake-up is small
    /// and bounded, and the kernel's RT throttling still applies.
    #[arg(long, default_value_t = DEFAULT_RT_PRIORITY, env = "VIGIL_RT_PRIORITY", global = true,
          value_parser = clap::value_parser!(u8).range(0..=99))]
    rt_priority: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print what the kernel sees of one server process, one line per event (diagnostics).
    ///
    /// Finds the process by --pid, or as the owner of the TCP listener on --port, and follows it
    /// when it restarts on the same port. Events: stopped, continued, exited, starved, blocked,
    /// busy, deadlock_suspected, unread_stall_cleared, listener_closed, reset_received,
    /// reset_sent, retransmit, listen_overflow, target_changed. Ctrl-C prints a run-queue latency
    /// and unread request age summary.
    Watch(WatchArgs),
    /// Run the node agent: watch the local server and report to the controller (a daemon).
    ///
    /// Every setting is a flag, an environment variable (VIGIL_<NAME>) or a key in the TOML file
    /// named by --config, in that order of precedence. --server, --datastore and --node-id are
    /// required. Runs until SIGINT or SIGTERM.
    Run(Box<RunArgs>),
}

#[derive(Args)]
struct RunArgs {
    /// A TOML file with any of the settings below (keys are the flag names with underscores).
    #[arg(long, env = "VIGIL_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Print the effective configuration (flags over environment over the file over defaults,
    /// checked as at start) as TOML, each value with where it came from, and exit. The password
    /// is shown as "<redacted>".
    #[arg(long)]
    print_config: bool,
    #[command(flatten)]
    settings: RunSettings,
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("target").required(true).multiple(true).args(["pid", "port"]))]
struct WatchArgs {
    /// The server's process id.
    #[arg(long)]
    pid: Option<u32>,
    /// The server's TCP port: the process listening on it is watched (with --pid, which of its ports).
    #[arg(long)]
    port: Option<u16>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Requests unread this many milliseconds make a stall, named by what the reading thread does.
    #[arg(long, default_value_t = DEFAULT_STALL_MS, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    stall_ms: u64,
    /// A single run-queue wait this many milliseconds long is reported as `starved`.
    #[arg(long, default_value_t = DEFAULT_RUNQ_THRESHOLD_MS, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    runq_threshold_ms: u64,
    /// How often, in microseconds, the stall classifier looks at the clock.
    #[arg(long, default_value_t = DEFAULT_TICK_US, value_parser = clap::value_parser!(u64).range(100..=1_000_000))]
    tick_us: u64,
    /// Watch sockets as `run` does: no program on data arrivals, and the read probe attached one
    /// second in ten, not always. Cheaper on a busy host; the summary then has no per-request
    /// unread ages.
    #[arg(long)]
    sampled_reads: bool,
    /// Host the server answers on, for the agent's own PINGs and health questions.
    #[arg(long, default_value = DEFAULT_HOST)]
    host: String,
    /// ACL user for the server (default: the default user).
    #[arg(long, env = "VIGIL_SERVER_USERNAME")]
    username: Option<String>,
    /// Refused: a password on the command line is readable by every user of the host.
    #[arg(long = "password", hide = true, value_parser = credentials::parse_secret)]
    password_on_command_line: Option<SecretString>,
    /// A file holding the server's password (one trailing newline is dropped); the password
    /// itself may instead be in VIGIL_SERVER_PASSWORD.
    #[arg(long, env = "VIGIL_PASSWORD_FILE", value_name = "FILE")]
    password_file: Option<std::path::PathBuf>,
    /// Speak TLS to the server (needs --server-tls-ca).
    #[arg(long, env = "VIGIL_SERVER_TLS")]
    server_tls: bool,
    /// PEM file of the certificate authority that signed the server's certificate.
    #[arg(long, env = "VIGIL_SERVER_TLS_CA", value_name = "FILE")]
    server_tls_ca: Option<std::path::PathBuf>,
    /// PEM file of a client certificate, for a server that asks for one; with --server-tls-key.
    #[arg(long, env = "VIGIL_SERVER_TLS_CERT", value_name = "FILE")]
    server_tls_cert: Option<std::path::PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(long, env = "VIGIL_SERVER_TLS_KEY", value_name = "FILE")]
    server_tls_key: Option<std::path::PathBuf>,
    /// How often, in milliseconds, the agent PINGs the server.
    #[arg(long, default_value_t = DEFAULT_PING_INTERVAL_MS, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    ping_interval_ms: u64,
}

/// Moves the agent (all threads created from here on) to SCHED_FIFO at `priority`.
fn set_realtime(priority: u8) {
    let param = nix::libc::sched_param {
        sched_priority: i32::from(priority),
    };
    // SAFETY: sched_setscheduler only reads `param`, which lives for the call.
    let rc = unsafe { nix::libc::sched_setscheduler(0, nix::libc::SCHED_FIFO, &param) };
    if rc != 0 {
        // Not fatal: detection still works, with more latency under CPU contention.
        tracing::warn!(priority, error = %std::io::Error::last_os_error(), "could not switch to SCHED_FIFO (it needs CAP_SYS_NICE; --rt-priority 0 asks for none); running with the normal scheduler");
    }
}

fn main() {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Err(e) = run(cli, &matches) {
        eprintln!("vigil-agent: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli, matches: &ArgMatches) -> anyhow::Result<()> {
    cli.log.init()?;
    // Settings first, so that what is checked next is what this run will do.
    let (command, plan) = match cli.command {
        Command::Watch(args) => {
            let password = credentials::resolve(
                credentials::from_environment(),
                args.password_file.as_deref(),
                args.password_on_command_line.is_some(),
            )?;
            let tls = tls::from_settings(
                args.server_tls,
                args.server_tls_ca.as_deref(),
                args.server_tls_cert.as_deref(),
                args.server_tls_key.as_deref(),
            )?;
            let opts = WatchOptions {
                pid: args.pid,
                port: args.port,
                host: args.host,
                username: args.username,
                password,
                tls,
                json: args.json,
                kernel: KernelOptions {
                    stall: Duration::from_millis(args.stall_ms),
                    runq_threshold: Duration::from_millis(args.runq_threshold_ms),
                    every_read: !args.sampled_reads,
                },
                tick: Duration::from_micros(args.tick_us),
                ping_interval: Duration::from_millis(args.ping_interval_ms),
                thresholds: Thresholds::default(),
            };
            (Validated::Watch(Box::new(opts)), Plan::default())
        }
        Command::Run(args) => {
            let file = match &args.config {
                Some(path) => RunSettings::from_file(path)?,
                None => RunSettings::default(),
            };
            let file_password = file.password.is_some();
            let given = args.settings.with_environment_password();
            // Flags cannot give a password: one here came from the environment.
            let env_password = given.password.is_some();
            let settings = given.over(file);
            let config = RunConfig::try_from(settings.clone())?;
            if args.print_config {
                let password = if env_password {
                    Some(Source::Env(PASSWORD_ENV.to_string()))
                } else {
                    file_password.then(|| Source::File(path_text(args.config.as_deref())))
                };
                let matches = matches
                    .subcommand_matches("run")
                    .context("`run` was parsed without its matches")?;
                let text =
                    print_run_config(settings, &config, args.config.as_deref(), matches, password)?;
                print!("{text}");
                return Ok(());
            }
            let plan = Plan {
                daemon: true,
                kills: config.fence_method == Method::Kill,
            };
            (Validated::Run(Box::new(config)), plan)
        }
    };
    // Once, before anything that needs them: one line naming every capability missing.
    capabilities::check(plan)?;
    if cli.rt_priority > 0 {
        set_realtime(cli.rt_priority);
    }
    // One thread: the agent's work is small and latency-bound; a second core is the server's.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match command {
        Validated::Watch(opts) => runtime.block_on(watch::run(*opts))?,
        Validated::Run(config) => runtime.block_on(daemon::run(*config))?,
    }
    Ok(())
}

fn path_text(path: Option<&std::path::Path>) -> String {
    path.map_or_else(String::new, |p| p.display().to_string())
}

/// `vigil-agent run --print-config`: `settings` as merged, with their defaults and sources.
fn print_run_config(
    settings: RunSettings,
    config: &RunConfig,
    path: Option<&std::path::Path>,
    matches: &ArgMatches,
    password: Option<Source>,
) -> anyhow::Result<String> {
    let cli = Cli::command();
    let run = cli
        .find_subcommand("run")
        .context("the command line has no `run`")?;
    let file = match path {
        Some(p) => Some(File::read(
            p,
            print_config::source_of(run, matches, "config", None),
        )?),
        None => None,
    };
    let effective = settings.effective(config)?;
    Ok(print_config::render(
        "vigil-agent run --print-config",
        &RunSettings::augment_args(clap::Command::new("run")),
        matches,
        &effective,
        file.as_ref(),
        &[Secret {
            key: "password",
            source: password,
        }],
    ))
}

/// The command, its settings checked.
enum Validated {
    Watch(Box<WatchOptions>),
    Run(Box<RunConfig>),
}
