//! A failover's target chosen off the critical path, driven as in the other reconciler tests:
//! the old primary is fenced while the candidates answer, the target that gives way to one with
//! more data is persisted before anything is sent to it, and a failover resumed before its target
//! was settled asks the candidates again, keeping a target that may have been promoted.
use super::*;
use crate::{sentinel::topology::Channel, store::settings::PROBE_DEADLINE};

impl Store {
    /// n1, the target the failover was persisted with, is promoted (nothing persisted anew),
    /// then n2 re-pointed at it, at epoch 2.
    async fn promote_kept_target(&mut self) {
        let promote = self.command("n1").await;
        assert_eq!((action_name(&promote), promote.epoch), ("promote", 2));
        self.ack("n1", &promote, Role::Primary, 300).await;
        let repoint = self.command("n2").await;
        assert_eq!(
            (repoint.action.clone(), repoint.epoch),
            (
                Some(Action::ReplicateOf(v1::ReplicateOf {
                    address: address("n1")
                })),
                2
            )
        );
        self.ack("n2", &repoint, Role::Replica, 300).await;
        let state = self.wait_primary("n1").await;
        assert!(state.candidates.is_empty(), "{state:?}");
    }
}

/// A state persisted mid-failover from n0 to n1 at epoch 2, its target not settled.
fn unsettled() -> StoreState {
    StoreState {
        epoch: 2,
        primary: Some("n0".into()),
        in_flight: Some(InFlight {
            epoch: 2,
            from: Some("n0".into()),
            to: "n1".into(),
            cause: Cause::Down,
            started_unix_ms: 1,
        }),
        candidates: vec!["n1".into(), "n2".into()],
        ..StoreState::default()
    }
}

#[tokio::test(start_paused = true)]
async fn the_old_primary_is_fenced_while_the_candidates_answer() {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    let mut events = s.published.subscribe();
    s.verdict("n0", verdict(Health::Down, Role::Primary, 100))
        .await;
    let p1 = s.command("n1").await;
    let p2 = s.command("n2").await;
    assert_eq!((action_name(&p1), action_name(&p2)), ("probe", "probe"));
    // No probe is answered yet, and none has timed out: the fence does not wait for them.
    let fence = tokio::time::timeout(PROBE_DEADLINE / 2, s.command("n0"))
        .await
        .expect("the fence goes out before the candidates' answers are due");
    assert_eq!((action_name(&fence), fence.epoch), ("fence", 2));
    // Persisted first, with the best candidate by the verdicts as the target, not settled yet.
    let state = s.last_saved().await;
    assert_eq!(state.in_flight.as_ref().map(|f| f.to.as_str()), Some("n1"));
    assert_eq!(state.candidates, ["n1", "n2"]);
    s.ack_fenced("n0", &fence, 100).await;
    // Fenced, but the candidates have not answered: nobody is promoted on stale offsets.
    for id in ["n1", "n2"] {
        let sent = s.commands_after(id, PROBE_DEADLINE / 4).await;
        assert!(sent.is_empty(), "{id} was sent {sent:?}");
    }
    s.ack("n1", &p1, Role::Replica, 100).await;
    s.ack("n2", &p2, Role::Replica, 100).await;
    s.promote_and_repoint("n1", &["n2"], 2).await;
    let state = s.wait_primary("n1").await;
    assert!(state.candidates.is_empty(), "{state:?}");
    // +selected-slave names the target once it is settled, once.
    let mut selected = Vec::new();
    while let Ok(e) = events.try_recv() {
        if e.channel == Channel::SelectedSlave {
            selected.push(e.node);
        }
    }
    assert_eq!(selected, ["n1"]);
}

#[tokio::test(start_paused = true)]
async fn a_target_that_gives_way_is_persisted_before_anything_is_sent_to_it() {
    let mut s = Store::three_nodes(Flavour::Redis).await;
    s.verdict("n1", verdict(Health::Healthy, Role::Replica, 200))
        .await;
    s.verdict("n2", verdict(Health::Healthy, Role::Replica, 100))
        .await;
    s.verdict("n0", verdict(Health::Down, Role::Primary, 300))
        .await;
    let fence = s.command("n0").await;
    assert_eq!(action_name(&fence), "fence");
    s.ack_fenced("n0", &fence, 300).await;
    // n2 has more data now than its verdict said.
    s.answer_probes(&[("n1", 250), ("n2", 300)]).await;
    // `promote_and_repoint` checks that n2 is the persisted target when it is promoted.
    s.promote_and_repoint("n2", &["n1"], 2).await;
    s.wait_primary("n2").await;
    let targets: Vec<(u64, String, usize)> = s
        .saved()
        .await
        .iter()
        .filter_map(|st| {
            let f = st.in_flight.as_ref()?;
            Some((f.epoch, f.to.clone(), st.candidates.len()))
        })
        .collect();
    assert_eq!(
        targets,
        [(2, "n1".to_string(), 2), (2, "n2".to_string(), 2)],
        "the verdicts' choice, then the one with more data, at the same epoch"
    );
}

#[tokio::test(start_paused = true)]
async fn a_resumed_failover_asks_its_candidates_again_and_promotes_the_one_with_more_data() {
    let mut s = Store::start(settings(), unsettled());
    s.connect("n1", Flavour::Redis).await;
    s.connect("n2", Flavour::Redis).await;
    // The old primary's agent is not there to confirm its fence: its lease is waited out, then
    // the candidates are asked.
    s.answer_probes(&[("n1", 100), ("n2", 300)]).await;
    s.promote_and_repoint("n2", &["n1"], 2).await;
    let state = s.wait_primary("n2").await;
    assert_eq!((state.epoch, state.history.len()), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn a_resumed_failover_keeps_a_target_that_answers_as_a_primary() {
    let mut s = Store::start(settings(), unsettled());
    s.connect("n1", Flavour::Redis).await;
    s.connect("n2", Flavour::Redis).await;
    // n1 was promoted before the controller stopped: a primary now, behind n2's old offset.
    let p1 = s.command("n1").await;
    let p2 = s.command("n2").await;
    assert_eq!((action_name(&p1), action_name(&p2)), ("probe", "probe"));
    s.ack("n1", &p1, Role::Primary, 100).await;
    s.ack("n2", &p2, Role::Replica, 300).await;
    s.promote_kept_target().await;
}

#[tokio::test(start_paused = true)]
async fn a_resumed_failover_waits_for_its_candidates_agents() {
    let mut s = Store::start(
        Settings {
            grace: Duration::from_secs(5),
            ..settings()
        },
        unsettled(),
    );
    s.connect("n1", Flavour::Redis).await;
    assert!(
        s.commands_after("n1", Duration::from_secs(2))
            .await
            .is_empty(),
        "n2 could have more data: it is waited for"
    );
    s.connect("n2", Flavour::Redis).await;
    s.answer_probes(&[("n1", 300), ("n2", 100)]).await;
    s.promote_kept_target().await;
}
