//! The harness's etcd cluster on its own: three real etcd members on 127.0.0.1 keep a quorum
//! with one of them killed, lose it with two, and get it back when the killed members start again
//! on their data. The controller suites rely on exactly this.
use anyhow::Result;
use vigil_tests::{EtcdCluster, serial};

#[test]
fn three_etcd_members_survive_one_killed_and_lose_quorum_with_two() -> Result<()> {
    let _serial = serial();
    let mut etcd = EtcdCluster::start(3)?;
    assert_eq!(etcd.client_urls().split(',').count(), 3);
    etcd.put("/vigil-test/a", "1")?;
    assert_eq!(etcd.get("/vigil-test/a")?.as_deref(), Some("1"));

    // One member gone, raft's leader: the other two elect one and are a quorum, writes and
    // reads go on.
    let leader = etcd.raft_leader()?;
    etcd.kill(leader)?;
    assert!(!etcd.is_running(leader));
    etcd.wait_healthy()?;
    let next = etcd.raft_leader()?;
    assert_ne!(next, leader);
    etcd.put("/vigil-test/b", "2")?;
    assert_eq!(etcd.get("/vigil-test/b")?.as_deref(), Some("2"));

    // Two gone: the last member cannot commit; a write fails within etcdctl's timeout.
    etcd.kill(next)?;
    assert!(
        etcd.put("/vigil-test/c", "3").is_err(),
        "a write committed with one member of three"
    );

    // Back on their ports and data: the quorum returns with what was written before.
    etcd.restart(leader)?;
    etcd.restart(next)?;
    etcd.wait_healthy()?;
    assert_eq!(etcd.get("/vigil-test/b")?.as_deref(), Some("2"));
    etcd.put("/vigil-test/c", "3")?;
    assert_eq!(etcd.get("/vigil-test/c")?.as_deref(), Some("3"));
    Ok(())
}

#[test]
fn dropping_the_cluster_stops_its_members_and_removes_their_data() -> Result<()> {
    let _serial = serial();
    let etcd = EtcdCluster::start(3)?;
    let pids: Vec<u32> = (0..etcd.len()).filter_map(|i| etcd.pid(i)).collect();
    assert_eq!(pids.len(), 3);
    let dir = etcd.data_dir().to_path_buf();
    assert!(dir.exists());
    drop(etcd);
    for pid in pids {
        // Reaped by the harness: no such process (or a recycled pid that is not etcd).
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        assert_ne!(comm.trim(), "etcd", "etcd {pid} still runs");
    }
    assert!(!dir.exists(), "{} was left behind", dir.display());
    Ok(())
}
