//! The safety matrix against vigil: a real primary and two replicas of redis-server, real agents,
//! the real controller, and four redis-py writers (two in Sentinel mode through vigil's endpoint,
//! two on a direct connection to the first primary; in each pair one plain, one `WAIT 1`) writing
//! through one fault and its healing. See `vigil_tests::safety` for the writers, the role monitor
//! and the checker's definitions.
//!
//! "Safe", which every test here asserts, is all of:
//! - no `WAIT`-acknowledged write is missing from the final primary;
//! - no write is acknowledged by a deposed primary after the promotion;
//! - no millisecond in which two nodes both took client writes;
//! - and, so that the first count means something, the store settles after healing: one
//!   primary, the others its linked replicas, the endpoint naming it.
//!
//! READONLY errors and plain writes lost to replication lag are printed, not asserted. Nothing is
//! asserted about time. Needs root (eBPF, network namespaces).
use anyhow::Result;
use vigil_tests::{
    require_root,
    safety::{Fault, Nodes, Plan, VigilSystem, run},
    serial,
};

fn assert_safe(fault: Fault) -> Result<()> {
    require_root();
    let _serial = serial();
    let mut nodes = Nodes::start(fault.topology())?;
    let mut vigil = VigilSystem::start(&nodes)?;
    let report = run(fault, &mut nodes, &mut vigil, Plan::default())?;
    // The agents and the controller stop before the servers they watch.
    drop(vigil);
    println!("{}", report.line());
    let t = &report.tally;
    let mut broken = Vec::new();
    if t.wait_acked_lost > 0 {
        broken.push(format!(
            "{} WAIT-acknowledged writes lost",
            t.wait_acked_lost
        ));
    }
    if t.splitbrain_writes > 0 {
        broken.push(format!(
            "{} writes acknowledged by a deposed primary after the promotion",
            t.splitbrain_writes
        ));
    }
    if t.dual_primary_ms > 0 {
        broken.push(format!(
            "{} ms with two nodes taking writes",
            t.dual_primary_ms
        ));
    }
    if !report.settled {
        broken.push("the store never settled after healing".into());
    }
    assert!(
        broken.is_empty(),
        "{}: {}\n{}",
        fault.name(),
        broken.join("; "),
        report.line()
    );
    Ok(())
}

#[test]
fn safe_under_kill_9_of_the_primary_and_its_restart() -> Result<()> {
    assert_safe(Fault::Kill)
}

#[test]
fn safe_under_sigstop_of_the_primary_then_sigcont() -> Result<()> {
    assert_safe(Fault::Stop)
}

#[test]
fn safe_under_a_deadlocked_primary_that_recovers() -> Result<()> {
    assert_safe(Fault::Deadlock)
}

#[test]
fn safe_under_a_partition_of_the_primary_then_healed() -> Result<()> {
    assert_safe(Fault::Partition)
}

#[test]
fn safe_when_the_primary_cannot_reach_its_replicas() -> Result<()> {
    assert_safe(Fault::PrimaryCannotSend)
}

#[test]
fn safe_when_the_replicas_cannot_reach_the_primary() -> Result<()> {
    assert_safe(Fault::PrimaryCannotReceive)
}

#[test]
fn safe_when_the_controller_is_killed_mid_failover() -> Result<()> {
    assert_safe(Fault::CoordinatorKilled)
}

#[test]
fn safe_through_a_planned_switchover() -> Result<()> {
    assert_safe(Fault::Switchover)
}
