//! The `vigil-controller` binary. A skeleton laid down with the workspace: it takes the documented
//! flags and says plainly that the daemon is not built yet, rather than pretending to run.
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "vigil-controller",
    version,
    about = "vigil's controller (not implemented yet)"
)]
struct Cli {
    /// Address agents and the vigil CLI connect to (gRPC).
    #[arg(long, default_value = "127.0.0.1:7420", env = "VIGIL_GRPC_LISTEN")]
    grpc_listen: String,
    /// Address of the Redis-Sentinel-compatible endpoint.
    #[arg(long, default_value = "127.0.0.1:26379", env = "VIGIL_SENTINEL_LISTEN")]
    sentinel_listen: String,
    /// Address of the Prometheus /metrics endpoint.
    #[arg(long, default_value = "127.0.0.1:9420", env = "VIGIL_METRICS_LISTEN")]
    metrics_listen: String,
    /// Folder for the persisted state (epochs, primaries, failover history).
    #[arg(long, default_value = "./vigil-data", env = "VIGIL_DATA_DIR")]
    data_dir: std::path::PathBuf,
}

fn main() -> std::process::ExitCode {
    let _cli = Cli::parse();
    // The generated protocol is linked in so the skeleton proves the proto builds.
    let _ = vigil_proto::v1::Health::Healthy;
    eprintln!("vigil-controller: error: the controller daemon is not implemented yet");
    std::process::ExitCode::FAILURE
}
