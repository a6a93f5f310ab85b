//! What the reconciler exports to Prometheus, driven as in the other reconciler tests: failovers
//! counted once, health as a state label, connected agents exact through replaced sessions, the
//! epoch and primary series following the persisted state, and nothing left behind when the
//! reconciler stops.
use super::*;
use crate::metrics::{DatastoreLabel, FailoverLabels, HealthLabels, node};

impl Store {
    fn failovers(&self, cause: &'static str) -> u64 {
        self.metrics
            .failovers
            .get_or_create(&FailoverLabels {
                datastore: "cache".into(),
                cause,
            })
            .get()
    }

    /// The node's health states that are 1 now.
    fn health_states(&self, id: &str) -> Vec<&'static str> {
        vigil_proto::health_state::STATES
            .into_iter()
            .map(vigil_proto::health_state::name)
            .filter(|&state| {
                self.metrics
                    .node_health
                    .get_or_create(&HealthLabels {
                        datastore: "cache".into(),
                        node: id.into(),
                        state,
                    })
                    .get()
                    == 1
            })
            .collect()
    }

    fn connected(&self, id: &str) -> i64 {
        self.metrics
            .node_connected
            .get_or_create(&node("cache", id))
            .get()
    }

    fn page(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.metrics.registry())
            .expect("the registry encodes");
        text
    }
}

/// A failover whose epoch cannot be persisted does not begin, however often the primary is
/// judged failed and a replica chosen: nothing is counted until one begins, and then once.
#[tokio::test(start_paused = true)]
async fn a_failover_is_counted_once_when_its_epoch_is_persisted() {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    *s.saved.broken.lock().unwrap() = true;
    // The primary says DOWN, the replicas are healthy: each try's probes go unanswered and run
    // out, the ranking picks, the epoch cannot be saved, and the next tick tries again.
    let verdicts = async |s: &Store| {
        s.verdict("n0", verdict(Health::Down, Role::Primary, 100))
            .await;
        for id in ["n1", "n2"] {
            s.verdict(id, verdict(Health::Healthy, Role::Replica, 100))
                .await;
        }
    };
    for _ in 0..10 {
        verdicts(&s).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.take_in().await;
    assert!(s.alerts(Alert::FailoverFailed) > 0, "no failover was tried");
    assert_eq!(s.status().await.epoch, 1, "no failover began");
    assert_eq!(s.failovers("down"), 0, "{}", s.page());
    // Each try fenced the old primary with its epoch, and lifted the fence when the epoch could
    // not be saved; nothing was promoted.
    let sent: Vec<&str> = s
        .commands_after("n0", Duration::ZERO)
        .await
        .iter()
        .map(action_name)
        .filter(|a| *a != "probe")
        .collect();
    assert!(!sent.is_empty(), "no fence was sent");
    assert!(
        sent.chunks(2).all(|pair| pair == ["fence", "unfence"]),
        "{sent:?}"
    );
    for id in ["n1", "n2"] {
        let promoted = s
            .commands_after(id, Duration::ZERO)
            .await
            .iter()
            .any(|c| action_name(c) == "promote");
        assert!(
            !promoted,
            "{id} was promoted at an epoch that was not saved"
        );
    }
    *s.saved.broken.lock().unwrap() = false;
    verdicts(&s).await;
    loop {
        let c = s.command("n0").await;
        if action_name(&c) == "fence" {
            assert_eq!(s.failovers("down"), 1, "{}", s.page());
            s.take_in().await;
            // Probes of the earlier tries are of no interest.
            s.held.clear();
            s.ack_fenced("n0", &c, 100).await;
            break;
        }
    }
    s.promote_and_repoint("n1", &["n2"], 2).await;
    s.wait_primary("n1").await;
    // The old primary keeps saying DOWN: the failover is over, and nothing more is counted.
    for _ in 0..10 {
        s.verdict("n0", verdict(Health::Down, Role::Primary, 100))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.status().await;
    assert_eq!(s.failovers("down"), 1, "{}", s.page());
    let all: u64 = ["down", "unhealthy", "unreachable", "manual", "switchover"]
        .into_iter()
        .map(|c| s.failovers(c))
        .sum();
    assert_eq!(all, 1, "{}", s.page());
}

/// The epoch and the primary series follow the persisted state, and a former primary has no
/// series left.
#[tokio::test(start_paused = true)]
async fn the_epoch_and_primary_series_follow_the_failover() {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    let epoch = |s: &Store| {
        s.metrics
            .datastore_epoch
            .get_or_create(&DatastoreLabel {
                datastore: "cache".into(),
            })
            .get()
    };
    assert_eq!(epoch(&s), 1);
    assert!(
        s.page()
            .contains("vigil_controller_datastore_primary{datastore=\"cache\",node=\"n0\"} 1")
    );
    s.n0_fails_over_to_n1().await;
    assert_eq!(epoch(&s), 2);
    let page = s.page();
    assert!(
        page.contains("vigil_controller_datastore_primary{datastore=\"cache\",node=\"n1\"} 1"),
        "{page}"
    );
    assert_eq!(
        page.matches("vigil_controller_datastore_primary{").count(),
        1,
        "the former primary's series is left: {page}"
    );
}

#[tokio::test(start_paused = true)]
async fn health_is_a_state_label_unknown_until_the_first_verdict() {
    let mut s = Store::start(settings(), StoreState::default());
    s.connect("n0", Flavour::Redis).await;
    s.status().await;
    assert_eq!(s.health_states("n0"), ["unknown"]);
    s.verdict("n0", verdict(Health::Healthy, Role::Primary, 1))
        .await;
    s.status().await;
    assert_eq!(s.health_states("n0"), ["healthy"]);
    s.verdict("n0", verdict(Health::Down, Role::Primary, 1))
        .await;
    s.status().await;
    assert_eq!(s.health_states("n0"), ["down"]);
}

/// A reconnect seen before the old session's close replaces the session: still one agent, and
/// the old session's late close changes nothing.
#[tokio::test(start_paused = true)]
async fn connected_agents_stays_exact_when_a_session_is_replaced() {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    assert_eq!(s.metrics.connected_agents.get(), 3);
    let old = s.sessions["n1"];
    s.connect("n1", Flavour::Redis).await;
    s.status().await;
    assert_eq!(s.metrics.connected_agents.get(), 3, "{}", s.page());
    s.send(Input::Closed {
        node: "n1".into(),
        session: old,
    })
    .await;
    s.status().await;
    assert_eq!(s.metrics.connected_agents.get(), 3);
    assert_eq!(s.connected("n1"), 1);
    s.disconnect("n1").await;
    s.status().await;
    assert_eq!(s.metrics.connected_agents.get(), 2);
    assert_eq!(s.connected("n1"), 0);
    s.connect("n1", Flavour::Redis).await;
    s.status().await;
    assert_eq!(s.metrics.connected_agents.get(), 3);
}

/// The verdict age is refreshed on the heartbeat: a silent agent's keeps growing.
#[tokio::test(start_paused = true)]
async fn a_silent_agents_verdict_age_keeps_growing() {
    let s = Store::three_nodes(Flavour::Redis).await;
    let age = |s: &Store| {
        s.metrics
            .verdict_age
            .get_or_create(&node("cache", "n2"))
            .get()
    };
    tokio::time::sleep(settings().heartbeat * 2).await;
    s.status().await;
    let first = age(&s);
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.status().await;
    assert!(age(&s) >= first + 1.5, "{first} then {}", age(&s));
}

/// A reconciler whose term ends leaves no series of its store behind, and its agents (whose
/// sessions end with it) are no longer counted.
#[tokio::test(start_paused = true)]
async fn a_reconciler_that_stops_takes_its_series_with_it() {
    let leadership = Leadership::following(me());
    let term = Term {
        token: 3,
        key: b"/vigil/election/1".to_vec(),
    };
    leadership.lead(term, tokio::time::Instant::now() + WAIT);
    let mut s = Store::start_leading(settings(), StoreState::default(), Arc::clone(&leadership));
    for id in ["n0", "n1", "n2"] {
        s.connect(id, Flavour::Redis).await;
    }
    s.healthy().await;
    tokio::time::sleep(settings().heartbeat * 2).await;
    s.status().await;
    assert!(s.page().contains("datastore=\"cache\""), "{}", s.page());
    leadership.step_down();
    tokio::time::timeout(WAIT, s.tx.closed())
        .await
        .expect("the reconciler stops when its term is over");
    let page = s.page();
    assert!(!page.contains("datastore=\"cache\""), "{page}");
    assert_eq!(s.metrics.connected_agents.get(), 0);
}
