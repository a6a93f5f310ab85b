//! The agent over TLS to its data store: a real redis-server that listens only on a TLS port and
//! asks for client certificates, certificates made for the test, and the real agent binary; its
//! PINGs, INFO and the controller's commands all reach the server. Needs root.
#[allow(dead_code)] // the suites share the stub controller; this one needs only part of it
mod common;

use std::path::Path;

use anyhow::Result;
use common::StubController;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use vigil_proto::v1::{self, command::Action};
use vigil_tests::{RedisServer, free_port, require_root, serial};

/// A certificate authority, a server certificate for 127.0.0.1 and a client certificate, as PEM
/// files in `dir`: (ca, server cert, server key, client cert, client key).
fn certificates(dir: &Path) -> Result<[String; 5]> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "vigil test authority");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    let leaf = |name: &str, usage: ExtendedKeyUsagePurpose| -> Result<(String, String)> {
        let mut params = CertificateParams::new(vec![name.to_string()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (server_cert, server_key) = leaf("127.0.0.1", ExtendedKeyUsagePurpose::ServerAuth)?;
    let (client_cert, client_key) = leaf("vigil-agent", ExtendedKeyUsagePurpose::ClientAuth)?;
    let files = [
        ("ca.pem", ca.pem()),
        ("server.pem", server_cert),
        ("server.key", server_key),
        ("client.pem", client_cert),
        ("client.key", client_key),
    ];
    let mut paths = Vec::new();
    for (name, pem) in files {
        let path = dir.join(name);
        std::fs::write(&path, pem)?;
        paths.push(path.display().to_string());
    }
    paths.try_into().map_err(|_| anyhow::anyhow!("five files"))
}

fn health(v: &v1::Verdict) -> v1::Health {
    v1::Health::try_from(v.health).unwrap_or(v1::Health::Unspecified)
}

#[test]
fn the_agent_watches_and_commands_a_server_that_speaks_only_tls() -> Result<()> {
    require_root();
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let [ca, server_cert, server_key, client_cert, client_key] = certificates(dir.path())?;
    let port = free_port()?;
    let tls_port = port.to_string();
    // No plain port at all (`--port 0` after the harness's own): nothing but TLS gets an answer.
    let server = RedisServer::spawn_on(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &server_cert,
            "--tls-key-file",
            &server_key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "yes",
        ],
    )?;
    let mut ctl = StubController::start()?;
    let _agent = ctl.start_agent(
        &server,
        "store",
        "p",
        &[
            "--server-tls",
            "--server-tls-ca",
            &ca,
            "--server-tls-cert",
            &client_cert,
            "--server-tls-key",
            &client_key,
        ],
    )?;
    // Answered PINGs and a role from INFO: both over TLS.
    ctl.wait_verdict("p", "a healthy primary over TLS", |v| {
        health(v) == v1::Health::Healthy && v.role() == v1::Role::Primary
    })?;
    // The command runner's own connection too.
    ctl.command("p", 1, 1, Some(Action::Probe(v1::Probe {})))?;
    let ack = ctl.wait_ack("p", 1)?;
    assert!(ack.ok, "{ack:?}");
    assert_eq!(ack.role(), v1::Role::Primary, "{ack:?}");
    Ok(())
}
