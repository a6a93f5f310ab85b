//! The controller's Prometheus metrics end to end, scraped over HTTP from the real controller
//! while real agents watch real redis-servers on 127.0.0.1: one kill -9 of the primary is one
//! failover, with its data store and cause; the epoch and primary series move to the new primary
//! and the old primary's disappears; health is a state label with exactly one state at 1 per
//! node; every node has a verdict age; connected agents stay exact when a session is replaced
//! and when an agent restarts; and only the leading controller of several says it leads. Each
//! wait is bounded, and what is asserted is the outcome, never how fast. Needs root.
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use vigil_proto::{
    PROTOCOL_VERSION,
    v1::{
        self, AgentMessage, ControllerMessage, agent_link_client::AgentLinkClient,
        agent_message::Msg as Up, controller_message::Msg as Down,
    },
};
use vigil_tests::{
    Agent, Controller, EtcdCluster, MetricsPage, VigilStore, WAIT, free_port, require_root, serial,
    wait_until,
};

const DS: &str = "cache";
const NODES: usize = 3;
const STATES: [&str; 5] = ["healthy", "degraded", "unhealthy", "down", "unknown"];

fn node(i: usize) -> String {
    format!("n{i}")
}

/// A primary and two replicas, an agent each, and a controller serving /metrics on `port`.
fn start(port: u16) -> Result<VigilStore> {
    let listen = format!("127.0.0.1:{port}");
    VigilStore::start(
        DS,
        NODES - 1,
        &[
            "--grace-ms",
            "300",
            "--min-failover-interval-ms",
            "1000",
            "--metrics-listen",
            &listen,
        ],
        &[],
    )
}

/// Scrapes `port` until `ready` holds of a page (bounded); the error shows the last page.
fn scrape_until(
    port: u16,
    what: &str,
    ready: impl Fn(&MetricsPage) -> bool,
) -> Result<MetricsPage> {
    let mut last = None;
    let found = wait_until(WAIT, what, || {
        let page = MetricsPage::scrape(port).ok()?;
        if ready(&page) {
            return Some(page);
        }
        last = Some(page);
        None
    });
    found.map_err(|e| {
        anyhow!(
            "{e}; the last page:\n{}",
            last.map(|p| p.text).unwrap_or_default()
        )
    })
}

fn value(page: &MetricsPage, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    page.value(name, labels)
}

fn of_node(n: &str) -> [(&'static str, &str); 2] {
    [("datastore", DS), ("node", n)]
}

/// The health states at 1 for node `n`, and how many state series it has.
fn health_states(page: &MetricsPage, n: &str) -> (Vec<String>, usize) {
    let series = page.matching("vigil_controller_node_health", &of_node(n));
    let at_one = series
        .iter()
        .filter(|s| s.value == 1.0)
        .filter_map(|s| s.labels.get("state").cloned())
        .collect();
    (at_one, series.len())
}

/// Every failover of [`DS`] counted, whatever its cause.
fn failovers(page: &MetricsPage) -> f64 {
    page.matching("vigil_controller_failovers_total", &[("datastore", DS)])
        .iter()
        .map(|s| s.value)
        .sum()
}

/// The nodes `vigil_controller_datastore_primary` names for [`DS`].
fn primaries(page: &MetricsPage) -> Vec<String> {
    page.matching("vigil_controller_datastore_primary", &[("datastore", DS)])
        .iter()
        .filter_map(|s| s.labels.get("node").cloned())
        .collect()
}

#[test]
fn one_kill_9_of_the_primary_is_one_failover_and_the_store_series_follow_it() -> Result<()> {
    require_root();
    let _serial = serial();
    let port = free_port()?;
    let mut store = start(port)?;
    let old = store.primary()?;
    let old_node = node(old);
    let before = scrape_until(port, "every node's series", |p| {
        (0..NODES).all(|i| {
            value(
                p,
                "vigil_controller_verdict_age_seconds",
                &of_node(&node(i)),
            )
            .is_some()
                && health_states(p, &node(i)).0 == ["healthy"]
        })
    })?;
    assert_eq!(value(&before, "vigil_controller_leading", &[]), Some(1.0));
    assert_eq!(
        value(&before, "vigil_controller_connected_agents", &[]),
        Some(NODES as f64)
    );
    assert_eq!(
        value(
            &before,
            "vigil_controller_datastore_epoch",
            &[("datastore", DS)]
        ),
        Some(1.0)
    );
    assert_eq!(primaries(&before), [old_node.as_str()]);
    assert_eq!(failovers(&before), 0.0, "{}", before.text);
    for i in 0..NODES {
        let n = node(i);
        assert_eq!(
            health_states(&before, &n),
            (vec!["healthy".into()], STATES.len())
        );
        assert_eq!(
            value(&before, "vigil_controller_node_connected", &of_node(&n)),
            Some(1.0)
        );
    }
    // The verdict age is refreshed while the controller runs, not set once.
    let replica = node((old + 1) % NODES);
    let age = value(
        &before,
        "vigil_controller_verdict_age_seconds",
        &of_node(&replica),
    );
    scrape_until(port, "a refreshed verdict age", |p| {
        value(
            p,
            "vigil_controller_verdict_age_seconds",
            &of_node(&replica),
        ) != age
    })?;

    store.kill(old)?;
    store.controller.log.wait_for("failover_finished")?;
    let new = wait_until(WAIT, "a replica promoted", || {
        store.primary().ok().filter(|p| *p != old)
    })?;
    let new_node = node(new);
    let after = scrape_until(port, "the new primary's series", |p| {
        primaries(p) == [new_node.as_str()]
            && health_states(p, &old_node).0 == ["down"]
            && value(p, "vigil_controller_datastore_epoch", &[("datastore", DS)]) == Some(2.0)
    })?;
    assert_eq!(
        value(
            &after,
            "vigil_controller_failovers_total",
            &[("datastore", DS), ("cause", "down")]
        ),
        Some(1.0),
        "{}",
        after.text
    );
    assert_eq!(failovers(&after), 1.0, "{}", after.text);
    assert_eq!(
        value(
            &after,
            "vigil_controller_datastore_primary",
            &of_node(&old_node)
        ),
        None,
        "the former primary's series is left"
    );
    for i in 0..NODES {
        let (at_one, series) = health_states(&after, &node(i));
        assert_eq!(
            (at_one.len(), series),
            (1, STATES.len()),
            "n{i}: {}",
            after.text
        );
        assert!(
            value(
                &after,
                "vigil_controller_verdict_age_seconds",
                &of_node(&node(i))
            )
            .is_some()
        );
    }
    // The old primary stays down past the flap guard: still that one failover.
    std::thread::sleep(Duration::from_millis(1_500));
    let later = MetricsPage::scrape(port)?;
    assert_eq!(failovers(&later), 1.0, "{}", later.text);
    assert_eq!(primaries(&later), [new_node]);
    Ok(())
}

/// A hello as node `n` of [`DS`] would send it, advertising `address`.
fn hello(n: &str, address: &str) -> v1::Hello {
    v1::Hello {
        protocol_version: PROTOCOL_VERSION,
        datastore: DS.into(),
        node_id: n.into(),
        advertise: address.into(),
        zone: String::new(),
        priority: 100,
        flavour: v1::Flavour::Redis as i32,
        agent_version: "test".into(),
    }
}

/// A session opened with `hello` and held open: it ends when this is dropped.
struct HeldSession {
    _up: mpsc::Sender<AgentMessage>,
    _down: tonic::Streaming<ControllerMessage>,
}

async fn hold_session(url: String, hello: v1::Hello) -> Result<HeldSession> {
    let channel = Channel::from_shared(url)?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await?;
    let mut client = AgentLinkClient::new(channel);
    let (tx, rx) = mpsc::channel(1);
    tx.send(AgentMessage {
        msg: Some(Up::Hello(hello)),
    })
    .await?;
    let mut down = tokio::time::timeout(WAIT, client.session(ReceiverStream::new(rx)))
        .await
        .context("no answer to the hello")??
        .into_inner();
    match tokio::time::timeout(WAIT, down.message())
        .await
        .context("no Welcome")??
    {
        Some(ControllerMessage {
            msg: Some(Down::Welcome(w)),
        }) if w.redirect.is_empty() => {}
        other => bail!("a Welcome was expected, not {other:?}"),
    }
    Ok(HeldSession {
        _up: tx,
        _down: down,
    })
}

/// How often the controller logged that node `n`'s agent connected.
fn connects(store: &VigilStore, n: &str) -> usize {
    store
        .controller
        .log
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "agent connected" && v["fields"]["node"] == n)
        .count()
}

fn connected(page: &MetricsPage) -> Option<f64> {
    value(page, "vigil_controller_connected_agents", &[])
}

fn all_connected(page: &MetricsPage) -> bool {
    connected(page) == Some(NODES as f64)
        && (0..NODES).all(|i| {
            value(page, "vigil_controller_node_connected", &of_node(&node(i))) == Some(1.0)
        })
}

/// A session replaced before the old one's close arrives (a second hello for a connected node:
/// the controller replaces its session, which ends the agent's, and the agent's own reconnect
/// then replaces that one) leaves one session per node; so does an agent killed and restarted.
#[test]
fn connected_agents_stays_exact_when_sessions_are_replaced() -> Result<()> {
    require_root();
    let _serial = serial();
    let port = free_port()?;
    let mut store = start(port)?;
    scrape_until(port, "every agent connected", all_connected)?;

    let replaced = node(1);
    let address = format!("127.0.0.1:{}", store.ports[1]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let held = runtime.block_on(hold_session(
        store.controller.url(),
        hello(&replaced, &address),
    ))?;
    // Connected at start, by the second hello, and by the agent's reconnect.
    wait_until(WAIT, "n1's agent to reconnect", || {
        (connects(&store, &replaced) >= 3).then_some(())
    })?;
    runtime.block_on(async move { drop(held) });
    store.wait_healthy()?;
    let page = scrape_until(port, "one session per node", all_connected)?;
    assert_eq!(connected(&page), Some(NODES as f64), "{}", page.text);

    // An agent killed and started again.
    let agent = store.agents.remove(2);
    agent.kill_leaving_its_fence()?;
    scrape_until(port, "the killed agent's session closed", |p| {
        connected(p) == Some((NODES - 1) as f64)
            && value(p, "vigil_controller_node_connected", &of_node(&node(2))) == Some(0.0)
    })?;
    let server = format!("127.0.0.1:{}", store.ports[2]);
    store.agents.push(Agent::join(
        None,
        &store.controller,
        DS,
        &node(2),
        &server,
        &[],
    )?);
    store.wait_healthy()?;
    scrape_until(port, "the restarted agent counted once", all_connected)?;
    Ok(())
}

/// Of three controllers on etcd, the one that leads says so, and the others do not; when it
/// dies, the next leader says so.
#[test]
fn only_the_leading_controller_says_it_leads() -> Result<()> {
    require_root();
    let _serial = serial();
    let etcd = EtcdCluster::start(3)?;
    let urls = etcd.client_urls();
    let ports = [free_port()?, free_port()?, free_port()?];
    let mut controllers = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let listen = format!("127.0.0.1:{port}");
        controllers.push(Controller::start_ha(
            &urls,
            &format!("c{i}"),
            &["--metrics-listen", &listen],
        )?);
    }
    let leading = |controllers: &[Controller]| -> Option<usize> {
        let live: Vec<usize> = (0..controllers.len())
            .filter(|&i| controllers[i].is_live())
            .collect();
        let says: Vec<Option<f64>> = live
            .iter()
            .map(|&i| {
                MetricsPage::scrape(ports[i])
                    .ok()
                    .and_then(|p| p.value("vigil_controller_leading", &[]))
            })
            .collect();
        let mut leaders = live.iter().zip(&says).filter(|(_, v)| **v == Some(1.0));
        let (&leader, _) = leaders.next()?;
        let rest_follow = leaders.next().is_none() && says.iter().all(|v| v.is_some());
        (rest_follow && controllers[leader].leading()).then_some(leader)
    };
    let first = wait_until(WAIT, "one controller to say it leads", || {
        leading(&controllers)
    })?;
    for (i, port) in ports.iter().enumerate().filter(|(i, _)| *i != first) {
        let page = MetricsPage::scrape(*port)?;
        assert_eq!(
            page.value("vigil_controller_leading", &[]),
            Some(0.0),
            "c{i}"
        );
    }
    controllers[first].kill();
    let next = wait_until(WAIT, "another controller to say it leads", || {
        leading(&controllers)
    })?;
    assert_ne!(next, first);
    Ok(())
}
