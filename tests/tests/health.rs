//! The health endpoints, against real processes: real redis-servers, real agents with their eBPF
//! probes, real controllers (alone, or two on a real etcd). `/healthz` and `/readyz` on both
//! daemons, the agent's `/primary` and `/replica` for load balancers, the controller's gRPC
//! health service, `vigil_build_info`, and the agents' default metrics ports on one host. Needs
//! root.
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use nix::sys::signal::Signal;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use vigil_tests::{
    Agent, Controller, EtcdCluster, RedisServer, WAIT, free_port, http_get, require_root, serial,
    wait_until,
};

const DS: &str = "health";

/// Waits (bounded) until `GET path` on `port` answers `code`; returns the body.
fn wait_code(port: u16, path: &str, code: u16) -> Result<String> {
    let mut last = None;
    wait_until(
        WAIT,
        &format!("GET {path} on {port} to answer {code}"),
        || {
            let got = http_get(port, path).ok();
            let hit = got
                .as_ref()
                .filter(|(c, _)| *c == code)
                .map(|(_, b)| b.clone());
            last = got;
            hit
        },
    )
    .map_err(|e| anyhow!("{e}; last answer: {last:?}"))
}

/// The value of `key` in a JSON body.
fn field(body: &str, key: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(body)
        .map_or(serde_json::Value::Null, |v| v[key].clone())
}

/// The agent of node `node`, watching `server`, reporting to `controller` (a URL), serving its
/// endpoints on 127.0.0.1:`metrics`.
fn agent(server: &RedisServer, controller: &str, node: &str, metrics: u16) -> Result<Agent> {
    let addr = format!("127.0.0.1:{}", server.port);
    let listen = format!("127.0.0.1:{metrics}");
    Agent::join_urls(
        None,
        controller,
        DS,
        node,
        &addr,
        &["--metrics-listen", &listen],
    )
}

/// Waits (bounded) until the gRPC health service at `url` answers SERVING for `service`: it
/// follows readiness at the prober's next round, a second at most after `/readyz` does.
fn wait_serving(url: &str, service: &str) -> Result<()> {
    let mut last = None;
    wait_until(WAIT, &format!("{service:?} SERVING at {url}"), || {
        let got = grpc_health(url, service);
        let serving = matches!(got, Ok(ServingStatus::Serving));
        last = Some(format!("{got:?}"));
        serving.then_some(())
    })
    .map_err(|e| anyhow!("{e}; last answer: {last:?}"))
}

/// The gRPC health service's answer for `service` at `url`.
fn grpc_health(url: &str, service: &str) -> Result<ServingStatus> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(2))
            .connect()
            .await?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await?
            .into_inner();
        Ok(answer.status())
    })
}

#[test]
fn an_agent_is_ready_only_while_linked_to_the_leading_controller() -> Result<()> {
    require_root();
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    // Started for its ports, then stopped: the agent starts with no controller running.
    let mut controller = Controller::start(dir.path(), &[])?;
    controller.kill();
    let server = RedisServer::start()?;
    let metrics = free_port()?;
    let _agent = agent(&server, &controller.url(), "n0", metrics)?;

    wait_until(WAIT, "the agent attached", || {
        let (_, body) = http_get(metrics, "/readyz").ok()?;
        (field(&body, "attached") == true).then_some(())
    })?;
    let (code, body) = http_get(metrics, "/readyz")?;
    assert_eq!(code, 503, "ready with no controller running: {body}");
    assert_eq!(
        field(&body, "controller"),
        serde_json::Value::Null,
        "{body}"
    );
    let (code, body) = http_get(metrics, "/healthz")?;
    assert_eq!(code, 200, "its loop turns all the same: {body}");
    // The alert rules read readiness from the metrics.
    let (_, page) = http_get(metrics, "/metrics")?;
    assert!(page.contains("\nvigil_agent_ready 0\n"), "{page}");

    controller.restart()?;
    let body = wait_code(metrics, "/readyz", 200)?;
    assert_eq!(
        field(&body, "controller"),
        controller.url().as_str(),
        "{body}"
    );
    let (_, page) = http_get(metrics, "/metrics")?;
    assert!(page.contains("\nvigil_agent_ready 1\n"), "{page}");

    controller.kill();
    let body = wait_code(metrics, "/readyz", 503)?;
    assert_eq!(field(&body, "attached"), true, "{body}");
    Ok(())
}

#[test]
fn primary_and_replica_endpoints_answer_200_only_on_a_server_with_that_role() -> Result<()> {
    require_root();
    let _serial = serial();
    let dir = tempfile::tempdir()?;
    let controller = Controller::start(dir.path(), &[])?;
    let primary = RedisServer::start()?;
    let port = free_port()?;
    let primary_port = primary.port.to_string();
    let replica = RedisServer::start_with(port, &["--replicaof", "127.0.0.1", &primary_port])?;
    let (on_primary, on_replica) = (free_port()?, free_port()?);
    let _p = agent(&primary, &controller.url(), "p", on_primary)?;
    let _r = agent(&replica, &controller.url(), "r", on_replica)?;
    controller.wait_store_healthy(DS, 2, None)?;

    let body = wait_code(on_primary, "/primary", 200)?;
    assert_eq!(field(&body, "role"), "primary", "{body}");
    let body = wait_code(on_replica, "/replica", 200)?;
    assert_eq!(field(&body, "role"), "replica", "{body}");
    assert_eq!(http_get(on_primary, "/replica")?.0, 503);
    assert_eq!(http_get(on_replica, "/primary")?.0, 503);
    for port in [on_primary, on_replica] {
        assert_eq!(http_get(port, "/healthz")?.0, 200);
        assert_eq!(http_get(port, "/readyz")?.0, 200);
        let (_, metrics) = http_get(port, "/metrics")?;
        assert!(
            metrics.contains("vigil_build_info{component=\"agent\",version=\""),
            "{metrics}"
        );
    }
    Ok(())
}

#[test]
fn a_stopped_primary_is_no_primary_for_load_balancers_until_it_continues() -> Result<()> {
    require_root();
    let _serial = serial();
    // No controller: what the agent answers is its own view of its server.
    let nobody = format!("http://127.0.0.1:{}", free_port()?);
    let server = RedisServer::start()?;
    let metrics = free_port()?;
    let _agent = agent(&server, &nobody, "p", metrics)?;
    let body = wait_code(metrics, "/primary", 200)?;
    assert_eq!(field(&body, "health"), "HEALTHY", "{body}");

    server.signal(Signal::SIGSTOP)?;
    let stopped = wait_code(metrics, "/primary", 503);
    // Continued before any assertion, so a failure leaves no stopped server behind.
    let seen_while_stopped = http_get(metrics, "/primary");
    server.signal(Signal::SIGCONT)?;
    let body = stopped?;
    assert_eq!(field(&body, "health"), "UNHEALTHY", "{body}");
    assert_eq!(field(&body, "role"), "primary", "{body}");
    assert_eq!(seen_while_stopped?.0, 503);

    let body = wait_code(metrics, "/primary", 200)?;
    assert_eq!(field(&body, "health"), "HEALTHY", "{body}");
    assert_eq!(http_get(metrics, "/replica")?.0, 503);
    Ok(())
}

#[test]
fn a_controller_is_healthy_ready_and_serving_on_grpc_health() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let metrics = free_port()?;
    let listen = format!("127.0.0.1:{metrics}");
    let controller = Controller::start(dir.path(), &["--metrics-listen", &listen])?;
    wait_code(metrics, "/healthz", 200)?;
    let body = wait_code(metrics, "/readyz", 200)?;
    assert_eq!(field(&body, "state"), "leading", "{body}");
    let (_, page) = http_get(metrics, "/metrics")?;
    assert!(
        page.contains("vigil_build_info{component=\"controller\",version=\""),
        "{page}"
    );
    for service in ["", "vigil.v1.AgentLink", "vigil.v1.Control"] {
        wait_serving(&controller.url(), service)?;
    }
    // A service it does not serve is named as unknown, not as serving.
    let unknown = grpc_health(&controller.url(), "vigil.v1.Nothing");
    let code = unknown
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<tonic::Status>())
        .map(tonic::Status::code);
    assert_eq!(code, Some(tonic::Code::NotFound), "{unknown:?}");
    Ok(())
}

#[test]
fn a_follower_controller_is_ready_once_it_knows_the_leader() -> Result<()> {
    let etcd = EtcdCluster::start(1)?;
    let urls = etcd.client_urls();
    let (m0, m1) = (free_port()?, free_port()?);
    let l0 = format!("127.0.0.1:{m0}");
    let l1 = format!("127.0.0.1:{m1}");
    let c0 = Controller::start_ha(&urls, "c0", &["--metrics-listen", &l0])?;
    wait_until(WAIT, "c0 to lead", || c0.leading().then_some(()))?;
    let body = wait_code(m0, "/readyz", 200)?;
    assert_eq!(field(&body, "state"), "leading", "{body}");

    let c1 = Controller::start_ha(&urls, "c1", &["--metrics-listen", &l1])?;
    let body = wait_code(m1, "/readyz", 200)?;
    assert_eq!(field(&body, "state"), "following", "{body}");
    assert_eq!(field(&body, "leader"), "c0", "{body}");
    wait_serving(&c1.url(), "")?;
    wait_serving(&c1.url(), "vigil.v1.AgentLink")?;
    assert_eq!(http_get(m1, "/healthz")?.0, 200);
    drop(c1);
    drop(c0);
    Ok(())
}

/// A port `p` such that `p`, `p + 1` and `p + 2` and the metrics ports derived from them
/// (9431 + p - 6379, ...) are all free now. Searched below the ephemeral range, where the other
/// tests' free ports come from.
fn adjacent_free_ports(count: u16) -> Result<u16> {
    let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    let start = 20_000 + (std::process::id() % 4_000) as u16;
    (start..start + 4_000)
        .step_by(usize::from(count))
        .find(|&p| (0..count).all(|i| free(p + i) && free(p + i + 9431 - 6379)))
        .context("no free run of ports")
}

#[test]
fn agents_of_servers_on_adjacent_ports_start_with_their_defaults_on_their_own_ports() -> Result<()>
{
    require_root();
    let _serial = serial();
    let nobody = format!("http://127.0.0.1:{}", free_port()?);
    let first = adjacent_free_ports(3)?;
    let mut servers = Vec::new();
    let mut agents = Vec::new();
    for i in 0..3 {
        let server = RedisServer::start_on(first + i)?;
        let addr = format!("127.0.0.1:{}", server.port);
        let node = format!("n{i}");
        agents.push(Agent::run_with_default_metrics(&[
            "--server",
            &addr,
            "--controller",
            &nobody,
            "--datastore",
            DS,
            "--node-id",
            &node,
        ])?);
        servers.push(server);
    }
    for (i, agent) in agents.iter().enumerate() {
        let metrics = first + i as u16 + 9431 - 6379;
        let line = agent.log.wait_for("vigil-agent running")?;
        assert!(
            line.contains(&format!("127.0.0.1:{metrics}")),
            "the running line names another address: {line}"
        );
        wait_code(metrics, "/healthz", 200)?;
        let (code, page) = http_get(metrics, "/metrics")?;
        assert_eq!(code, 200);
        assert!(page.contains("vigil_agent_verdicts_sent_total"), "{page}");
        assert!(
            !agent.log.contains("Address already in use"),
            "{:?}",
            agent.log.lines()
        );
    }
    Ok(())
}
