//! Mutual TLS end to end: a real controller, real agents and the real `vigil` CLI with
//! certificates from `vigil certs`, and the attacks the certificates must stop: a client with no
//! certificate, a node's certificate claiming another node, certificates from another CA, a
//! failover asked with a node's certificate, and a server that is no controller. Each is refused
//! and changes nothing: no failover, the same primary published, the agents still on their first
//! session. Needs root (the agents load eBPF).
use std::{path::Path, pin::Pin, process::Command, time::Duration};

use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use tokio_stream::{Stream, StreamExt};
use tonic::{
    Code, Request, Response, Status, Streaming,
    transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig},
};
use vigil_proto::{
    PROTOCOL_VERSION,
    tls::CONTROLLER_SERVER_NAME,
    v1::{
        self, AgentMessage, ControllerMessage,
        agent_link_client::AgentLinkClient,
        agent_link_server::{AgentLink, AgentLinkServer},
        agent_message::Msg as Up,
        controller_message::Msg as Down,
    },
};
use vigil_tests::{
    Agent, Certs, HaStore, RedisServer, VigilStore, WAIT, free_port, output_within, require_root,
    serial, wait_until, workspace_bin,
};

const DS: &str = "cache";
const CONTROLLER_ARGS: &[&str] = &["--grace-ms", "300", "--min-failover-interval-ms", "1000"];
/// What every agent logs when a session with a leader opens.
const CONNECTED: &str = "connected to the controller";
/// Long enough for a refused attempt's consequences (a session replaced, a failover started) to
/// show in the logs and the published primary.
const SETTLE: Duration = Duration::from_secs(2);

/// n0 primary, n1 and n2 replicas, everything over TLS, all healthy.
fn tls_store() -> Result<VigilStore> {
    VigilStore::start_tls(DS, 2, CONTROLLER_ARGS, &[])
}

/// A gRPC client's TLS: trusting `ca` for the controller, presenting `identity` (cert, key) if any.
fn client_tls(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<ClientTlsConfig> {
    let mut tls = ClientTlsConfig::new()
        .domain_name(CONTROLLER_SERVER_NAME)
        .ca_certificate(Certificate::from_pem(std::fs::read(ca)?));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(cert)?,
            std::fs::read(key)?,
        ));
    }
    Ok(tls)
}

/// Opens an agent session to `url` with `tls` (None: plain http) and says Hello as node `node`
/// at `advertise`: Ok with the Welcome if the controller took it, Err with what refused it.
fn hello_as(
    url: &str,
    tls: Option<ClientTlsConfig>,
    node: &str,
    advertise: &str,
) -> Result<std::result::Result<v1::Welcome, Status>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut endpoint = Endpoint::from_shared(url.to_string())?.connect_timeout(WAIT);
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls)?;
        }
        let channel = match endpoint.connect().await {
            Ok(c) => c,
            Err(e) => return Ok(Err(Status::unavailable(format!("connect: {e:?}")))),
        };
        let hello = AgentMessage {
            msg: Some(Up::Hello(v1::Hello {
                protocol_version: PROTOCOL_VERSION,
                datastore: DS.into(),
                node_id: node.into(),
                advertise: advertise.into(),
                priority: 1,
                ..Default::default()
            })),
        };
        let up = tokio_stream::iter(vec![hello]).chain(tokio_stream::pending());
        let answer = tokio::time::timeout(WAIT, async {
            let mut down = AgentLinkClient::new(channel)
                .session(up)
                .await?
                .into_inner();
            match down.message().await? {
                Some(ControllerMessage {
                    msg: Some(Down::Welcome(w)),
                }) => Ok(w),
                other => Err(Status::unknown(format!("no Welcome: {other:?}"))),
            }
        })
        .await
        .context("the controller neither welcomed nor refused the hello")?;
        Ok(answer)
    })
}

/// `vigil failover DS` at the store's controller over TLS, presenting `cert` and `key` and
/// trusting `ca`: Ok(stdout) or Err(stderr).
fn failover_with(
    store: &VigilStore,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<std::result::Result<String, String>> {
    let out = output_within(
        Command::new(workspace_bin("vigil")?)
            .args(["--controller", &store.controller.url(), "--tls-ca"])
            .arg(ca)
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .args(["failover", DS]),
        WAIT,
    )?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    Ok(if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    })
}

/// Nothing moved: no failover started, n0 still published at its own port, every node connected
/// with its own address, and every agent still on the one session it opened.
fn assert_unchanged(store: &VigilStore) -> Result<()> {
    std::thread::sleep(SETTLE);
    assert_eq!(store.failovers_started(), 0, "a failover started");
    assert_eq!(
        store.controller.sentinel_primary(DS)?,
        Some(store.ports[0]),
        "the published primary moved"
    );
    let st = store.controller.status(DS)?;
    assert_eq!(st["primary"], "n0", "{st}");
    assert_eq!(st["epoch"], 1, "{st}");
    let nodes = st["nodes"].as_array().context("no nodes")?;
    assert_eq!(nodes.len(), 3, "{st}");
    for (i, port) in store.ports.iter().enumerate() {
        let n = nodes
            .iter()
            .find(|n| n["node"] == format!("n{i}"))
            .with_context(|| format!("n{i} missing: {st}"))?;
        assert_eq!(n["address"], format!("127.0.0.1:{port}"), "{st}");
        assert_eq!(n["connected"], true, "{st}");
    }
    for (i, agent) in store.agents.iter().enumerate() {
        let sessions = agent
            .log
            .lines()
            .iter()
            .filter(|l| l.contains(CONNECTED))
            .count();
        assert_eq!(sessions, 1, "agent n{i} lost its session");
    }
    Ok(())
}

#[test]
fn clients_without_a_certificate_of_the_ca_or_claiming_another_node_are_refused() -> Result<()> {
    require_root();
    let _serial = serial();
    let store = tls_store()?;
    let certs = store.certs.as_ref().context("no certificates")?;
    let url = store.controller.url();
    let ca = certs.cert("ca");
    // Some other address, where an attacker would have clients sent.
    let rogue = format!("127.0.0.1:{}", free_port()?);

    let plain = hello_as(&url.replacen("https", "http", 1), None, "n0", &rogue)?;
    assert!(plain.is_err(), "plain http was welcomed: {plain:?}");

    let anonymous = hello_as(&url, Some(client_tls(&ca, None)?), "n0", &rogue)?;
    assert!(
        anonymous.is_err(),
        "no certificate was welcomed: {anonymous:?}"
    );

    let n1 = Some((certs.cert("n1"), certs.key("n1")));
    let n1 = n1.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
    let impostor = hello_as(&url, Some(client_tls(&ca, n1)?), "n0", &rogue)?;
    let refusal = impostor.expect_err("n1's certificate was welcomed as n0");
    assert_eq!(refusal.code(), Code::PermissionDenied, "{refusal:?}");
    assert!(
        refusal.message().contains("vigil://node/cache/n1")
            && refusal.message().contains("vigil://node/cache/n0"),
        "{refusal:?}"
    );
    let warned = store.controller.log.wait_for("refused an agent session")?;
    assert!(warned.contains("vigil://node/cache/n1"), "{warned}");
    // The same certificate may still speak as n1 (a data store it names): the refusal above was
    // the claim, not the certificate.

    // Another CA's certificates, one naming n0 exactly, one naming an operator.
    let other = Certs::make(DS, &["n0"])?;
    let foreign = Some((other.cert("n0"), other.key("n0")));
    let foreign = foreign.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
    let outsider = hello_as(&url, Some(client_tls(&ca, foreign)?), "n0", &rogue)?;
    assert!(
        outsider.is_err(),
        "another CA's n0 was welcomed: {outsider:?}"
    );
    let foreign_operator = failover_with(&store, &ca, &other.cert("cli"), &other.key("cli"))?;
    assert!(
        foreign_operator.is_err(),
        "another CA's operator failed over: {foreign_operator:?}"
    );

    assert_unchanged(&store)
}

#[test]
fn failover_needs_an_operator_certificate() -> Result<()> {
    require_root();
    let _serial = serial();
    let store = tls_store()?;
    let certs = store.certs.as_ref().context("no certificates")?;
    let ca = certs.cert("ca");
    let as_node = failover_with(&store, &ca, &certs.cert("n1"), &certs.key("n1"))?;
    let refusal = as_node.expect_err("a node's certificate failed over");
    assert!(
        refusal.contains("needs an operator's certificate")
            && refusal.contains("vigil://node/cache/n1"),
        "{refusal}"
    );
    // Status is read with any certificate of the CA.
    let status = output_within(
        Command::new(workspace_bin("vigil")?)
            .args(["--controller", &store.controller.url()])
            .args(certs.client_args("n2"))
            .args(["status", DS]),
        WAIT,
    )?;
    assert!(status.status.success(), "{status:?}");
    assert_unchanged(&store)?;

    let done = failover_with(&store, &ca, &certs.cert("cli"), &certs.key("cli"))?;
    let said = done.map_err(anyhow::Error::msg)?;
    assert!(said.contains("primary is now n"), "{said}");
    let moved = store.controller.wait_primary_moved(DS, store.ports[0])?;
    assert!(store.ports[1..].contains(&moved), "{moved} is no replica");
    Ok(())
}

#[test]
fn kill_9_of_the_primary_fails_over_with_every_link_on_tls() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut store = tls_store()?;
    assert_eq!(store.controller.sentinel_primary(DS)?, Some(store.ports[0]));
    if let Some(Some(p)) = store.servers.get_mut(0) {
        p.signal(Signal::SIGKILL)?;
        p.wait_exit()?;
    }
    let new = store.controller.wait_primary_moved(DS, store.ports[0])?;
    assert!(store.ports[1..].contains(&new), "{new} is no replica");
    store.controller.log.wait_for("failover_finished")?;
    let st = store.controller.status(DS)?;
    assert_eq!(st["epoch"], 2, "{st}");
    Ok(())
}

/// A gRPC server that welcomes every agent as a leader would (or, with `redirect`, as a follower
/// naming a leader): what an attacker holding some certificate of the CA would run to take
/// agents over.
struct Impostor {
    redirect: String,
}

#[tonic::async_trait]
impl AgentLink for Impostor {
    type SessionStream = Pin<Box<dyn Stream<Item = Result<ControllerMessage, Status>> + Send>>;

    async fn session(
        &self,
        _request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let welcome = ControllerMessage {
            msg: Some(Down::Welcome(v1::Welcome {
                protocol_version: PROTOCOL_VERSION,
                controller_version: "impostor".into(),
                leadership: 1,
                redirect: self.redirect.clone(),
            })),
        };
        let stream = tokio_stream::iter(vec![Ok(welcome)]).chain(tokio_stream::pending());
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Serves [`Impostor`] over TLS with `cert_pem` and `key_pem` on a free port of 127.0.0.1 until
/// the returned runtime is dropped.
fn serve_impostor(cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Result<(tokio::runtime::Runtime, u16)> {
    serve_redirecting(cert_pem, key_pem, "")
}

/// As [`serve_impostor`], answering every hello with a redirect to `redirect` when not empty.
fn serve_redirecting(
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    redirect: &str,
) -> Result<(tokio::runtime::Runtime, u16)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let port = listener.local_addr()?.port();
    let server = Server::builder()
        .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem)))?
        .add_service(AgentLinkServer::new(Impostor {
            redirect: redirect.to_string(),
        }))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    rt.spawn(server);
    Ok((rt, port))
}

/// A certificate for node n1 signed by the installation's CA (with its key, as one who holds
/// the CA would), made to serve: server use allowed, valid for localhost and 127.0.0.1. All it
/// lacks is the controller's name.
fn node_certificate_made_to_serve(certs: &Certs) -> Result<(Vec<u8>, Vec<u8>)> {
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(certs.key("ca"))?)?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, "vigil CA");
    let issuer = Issuer::new(ca, ca_key);
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".into()])?;
    params
        .subject_alt_names
        .push(SanType::URI("vigil://node/cache/n1".try_into()?));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem().into_bytes(), key.serialize_pem().into_bytes()))
}

#[test]
fn an_agent_talks_only_to_a_server_with_a_controller_certificate() -> Result<()> {
    require_root();
    let _serial = serial();
    let certs = Certs::make(DS, &["n0", "n1"])?;
    let server = RedisServer::start()?;
    let address = format!("127.0.0.1:{}", server.port);
    let agent_at = |port: u16| {
        let url = format!("https://127.0.0.1:{port}");
        let tls = certs.client_args("n0");
        let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
        Agent::join_urls(None, &url, DS, "n0", &address, &tls)
    };

    // The control: the same agent takes a server with the controller's certificate.
    let (real_rt, real_port) = serve_impostor(
        std::fs::read(certs.cert("controller"))?,
        std::fs::read(certs.key("controller"))?,
    )?;
    let trusting = agent_at(real_port)?;
    trusting.log.wait_for(CONNECTED)?;
    drop(trusting);
    drop(real_rt);

    let (cert, key) = node_certificate_made_to_serve(&certs)?;
    let (_rt, port) = serve_impostor(cert, key)?;
    let agent = agent_at(port)?;
    // Failures are warned of once the agent has been without a controller for a while.
    let warned = agent.log.wait_for("controller link down")?;
    assert!(
        warned.contains("not valid for name") && warned.contains(CONTROLLER_SERVER_NAME),
        "{warned}"
    );
    assert!(
        !agent.log.contains(CONNECTED),
        "the agent took a node for its controller"
    );
    Ok(())
}

#[test]
fn an_agent_on_tls_refuses_a_redirect_to_plain_http() -> Result<()> {
    require_root();
    let _serial = serial();
    let certs = Certs::make(DS, &["n0"])?;
    let server = RedisServer::start()?;
    // A controller that would take the agent, on plain http: the redirect's target.
    let dir = tempfile::Builder::new().prefix("vigil-ctl-").tempdir()?;
    let plain = vigil_tests::Controller::start(dir.path(), CONTROLLER_ARGS)?;
    let (_rt, port) = serve_redirecting(
        std::fs::read(certs.cert("controller"))?,
        std::fs::read(certs.key("controller"))?,
        &plain.url(),
    )?;
    let tls = certs.client_args("n0");
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    let url = format!("https://127.0.0.1:{port}");
    let address = format!("127.0.0.1:{}", server.port);
    let agent = Agent::join_urls(None, &url, DS, "n0", &address, &tls)?;
    let refused = agent.log.wait_for("is plain http")?;
    assert!(refused.contains(&plain.url()), "{refused}");
    std::thread::sleep(SETTLE);
    assert!(
        !agent.log.contains(CONNECTED),
        "the agent followed a plain http redirect"
    );
    assert!(
        plain.status(DS).is_err(),
        "the plain controller heard of the data store"
    );
    Ok(())
}

#[test]
fn agents_follow_a_new_leader_over_tls_when_the_leader_is_killed() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut s = HaStore::start_tls(DS, CONTROLLER_ARGS, &[])?;
    let old = s.leader()?;
    s.trio.kill(old)?;
    let new = s.leader()?;
    assert_ne!(new, old);
    s.wait_healthy()?;
    let new_url = s.controller(new)?.url();
    assert!(new_url.starts_with("https://"), "{new_url}");
    for (i, a) in s.agents.iter().enumerate() {
        wait_until(WAIT, "the agent on the new leader", || {
            a.log
                .lines()
                .iter()
                .any(|l| l.contains("controller leader changed") && l.contains(&new_url))
                .then_some(())
        })
        .with_context(|| format!("n{i}"))?;
    }
    assert_eq!(s.primary_and_epoch()?, ("n0".to_string(), 1));
    Ok(())
}

#[test]
fn an_agent_whose_certificate_names_another_node_refuses_to_start() -> Result<()> {
    let certs = Certs::make(DS, &["n0", "n1"])?;
    let out = output_within(
        Command::new(workspace_bin("vigil-agent")?)
            .args([
                "run",
                "--server",
                "127.0.0.1:1",
                "--datastore",
                DS,
                "--node-id",
                "n0",
            ])
            .args(["--controller", "https://127.0.0.1:1"])
            .args(certs.client_args("n1")),
        WAIT,
    )?;
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("names vigil://node/cache/n1, not vigil://node/cache/n0"),
        "{said}"
    );
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    Ok(())
}
