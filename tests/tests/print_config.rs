//! `--print-config` on the real binaries: each value of the effective configuration names where
//! it came from (a flag, an environment variable, the `--config` file, or the default), no
//! password or password file's contents is ever printed, what is printed is a configuration file
//! the daemon takes back, and a bad configuration exits non-zero with the usual error.
use std::{path::Path, process::Command, time::Duration};

use anyhow::{Result, bail};
use vigil_tests::{output_within, workspace_bin};

/// Longest a `--print-config` may take: it only reads and checks the settings.
const LIMIT: Duration = Duration::from_secs(10);

const FILE_PASSWORD: &str = "pw-from-the-file-7f3a";
const ENV_PASSWORD: &str = "pw-from-the-environment-91c2";

/// `binary args...` with `env`, no other VIGIL_* variable: (exit code, stdout, stderr).
fn run(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Result<(i32, String, String)> {
    let mut cmd = Command::new(workspace_bin(binary)?);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("VIGIL_")) {
        cmd.env_remove(key);
    }
    cmd.args(args).envs(env.iter().copied());
    let out = output_within(&mut cmd, LIMIT)?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The printed line of `key`, which must exist.
fn line<'a>(text: &'a str, key: &str) -> Result<&'a str> {
    match text
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")) || l.starts_with(&format!("# {key} ")))
    {
        Some(l) => Ok(l),
        None => bail!("no line for {key} in:\n{text}"),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> Result<String> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path.display().to_string())
}

fn secret_file(dir: &Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let path = write(dir, "password", &format!("{FILE_PASSWORD}\n"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(path)
}

#[test]
fn the_agent_prints_each_value_with_its_source_and_no_password() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let password_file = secret_file(dir.path())?;
    let config = write(
        dir.path(),
        "agent.toml",
        &format!("ping_interval_ms = 50\npassword_file = \"{password_file}\"\n"),
    )?;
    let (code, out, err) = run(
        "vigil-agent",
        &[
            "run",
            "--print-config",
            "--config",
            &config,
            "--server",
            "127.0.0.1:6381",
            "--datastore",
            "cache",
        ],
        &[("VIGIL_NODE_ID", "n7")],
    )?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        line(&out, "server")?,
        "server = \"127.0.0.1:6381\"  # flag --server"
    );
    assert_eq!(
        line(&out, "node_id")?,
        "node_id = \"n7\"  # env VIGIL_NODE_ID"
    );
    assert_eq!(
        line(&out, "ping_interval_ms")?,
        format!("ping_interval_ms = 50  # file {config}")
    );
    assert_eq!(
        line(&out, "password_file")?,
        format!("password_file = \"{password_file}\"  # file {config}")
    );
    assert_eq!(line(&out, "heartbeat_ms")?, "heartbeat_ms = 100  # default");
    // The default that follows the server's port, worked out.
    assert_eq!(
        line(&out, "metrics_listen")?,
        "metrics_listen = \"127.0.0.1:9433\"  # default"
    );
    assert_eq!(line(&out, "zone")?, "# zone is not set");
    assert!(
        !out.contains(FILE_PASSWORD) && !err.contains(FILE_PASSWORD),
        "the password file's contents were printed:\n{out}\n{err}"
    );

    // A password in the environment is named, never shown.
    let (code, out, err) = run(
        "vigil-agent",
        &[
            "run",
            "--print-config",
            "--server",
            "127.0.0.1:6379",
            "--datastore",
            "cache",
            "--node-id",
            "n0",
        ],
        &[("VIGIL_SERVER_PASSWORD", ENV_PASSWORD)],
    )?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        line(&out, "password")?,
        "# password = \"<redacted>\"  # env VIGIL_SERVER_PASSWORD"
    );
    assert!(
        !out.contains(ENV_PASSWORD) && !err.contains(ENV_PASSWORD),
        "{out}\n{err}"
    );
    Ok(())
}

#[test]
fn what_the_agent_prints_is_a_configuration_it_takes_back() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (code, first, err) = run(
        "vigil-agent",
        &[
            "run",
            "--print-config",
            "--server",
            "127.0.0.1:6390",
            "--datastore",
            "cache",
            "--node-id",
            "n0",
            "--zone",
            "z1",
        ],
        &[],
    )?;
    assert_eq!(code, 0, "{err}");
    let printed = write(dir.path(), "printed.toml", &first)?;
    let (code, again, err) = run(
        "vigil-agent",
        &["run", "--print-config", "--config", &printed],
        &[],
    )?;
    assert_eq!(code, 0, "{err}");
    for key in [
        "server",
        "datastore",
        "node_id",
        "zone",
        "metrics_listen",
        "stall_ms",
    ] {
        let value = |text: &str| -> Result<String> {
            let l = line(text, key)?;
            Ok(l.split("  # ").next().unwrap_or(l).to_string())
        };
        assert_eq!(value(&again)?, value(&first)?, "{key}");
        assert!(
            line(&again, key)?.ends_with(&format!("# file {printed}")),
            "{key} should now come from the file: {}",
            line(&again, key)?
        );
    }
    Ok(())
}

#[test]
fn a_bad_agent_configuration_is_refused_with_the_usual_error() -> Result<()> {
    let (code, out, err) = run(
        "vigil-agent",
        &[
            "run",
            "--print-config",
            "--server",
            "127.0.0.1:6379",
            "--datastore",
            "cache",
            "--node-id",
            "n0",
            "--ping-interval-ms",
            "0",
        ],
        &[],
    )?;
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("ping_interval_ms"), "{err}");
    assert!(!out.contains("server ="), "printed a configuration: {out}");
    Ok(())
}

#[test]
fn the_controller_prints_each_value_with_its_source_and_no_password() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let password_file = secret_file(dir.path())?;
    let config = write(
        dir.path(),
        "controller.toml",
        &format!(
            "grace_ms = 150\nsentinel_password_file = \"{password_file}\"\n\
             [[datastore]]\nname = \"cache\"\n[[datastore.node]]\nid = \"a\"\naddress = \"127.0.0.1:6379\"\n"
        ),
    )?;
    let (code, out, err) = run(
        "vigil-controller",
        &[
            "--print-config",
            "--grpc-listen",
            "127.0.0.1:7500",
            "--data-dir",
            &dir.path().display().to_string(),
        ],
        &[("VIGIL_SILENCE_MS", "700"), ("VIGIL_CONFIG", &config)],
    )?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        line(&out, "grpc_listen")?,
        "grpc_listen = \"127.0.0.1:7500\"  # flag --grpc-listen"
    );
    assert_eq!(
        line(&out, "silence_ms")?,
        "silence_ms = 700  # env VIGIL_SILENCE_MS"
    );
    assert_eq!(
        line(&out, "grace_ms")?,
        format!("grace_ms = 150  # file {config}")
    );
    assert_eq!(line(&out, "lease_ms")?, "lease_ms = 1000  # default");
    // The default that follows the gRPC address, worked out.
    assert_eq!(
        line(&out, "advertise_grpc")?,
        "advertise_grpc = \"http://127.0.0.1:7500\"  # default"
    );
    assert!(
        out.contains(&format!("# File: {config} (env VIGIL_CONFIG).")),
        "{out}"
    );
    assert!(
        out.contains("[[datastore]]") && out.contains("name = \"cache\""),
        "{out}"
    );
    assert!(
        !out.contains(FILE_PASSWORD) && !err.contains(FILE_PASSWORD),
        "the password file's contents were printed:\n{out}\n{err}"
    );
    Ok(())
}

#[test]
fn a_bad_controller_configuration_is_refused_with_the_usual_error() -> Result<()> {
    let (code, out, err) = run(
        "vigil-controller",
        &[
            "--print-config",
            "--lease-ms",
            "100",
            "--heartbeat-ms",
            "200",
        ],
        &[],
    )?;
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("lease_ms"), "{err}");
    assert!(out.is_empty(), "printed a configuration: {out}");
    Ok(())
}
