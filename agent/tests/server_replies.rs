//! The INFO/ROLE parsers against a real redis-server primary and replica (the Dragonfly shapes
//! are unit-tested from its source and docs in `src/server/info.rs`).
use std::time::Duration;

use vigil_agent::server::{
    conn::ServerConn,
    info::{Flavour, Role, SyncState},
    poller,
};
use vigil_proto::HostPort;
use vigil_tests::{RedisServer, WAIT, free_port};

fn conn(server: &RedisServer) -> ServerConn {
    ServerConn::new(HostPort::new("127.0.0.1", server.port))
}

#[test]
fn redis_primary_and_replica_parse_from_real_replies() -> anyhow::Result<()> {
    let primary = RedisServer::start()?;
    let replica = RedisServer::start_with(
        free_port()?,
        &["--replicaof", "127.0.0.1", &primary.port.to_string()],
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut p = conn(&primary)
            .connect(Duration::from_secs(2))
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        assert_eq!(poller::flavour(&mut p).await, Some(Flavour::Redis));
        let mut r = conn(&replica)
            .connect(Duration::from_secs(2))
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        // The replica needs a moment to sync; poll (bounded) until the link is up.
        let deadline = tokio::time::Instant::now() + WAIT;
        let replica_view = loop {
            let (view, _) = poller::ask(&mut r).await.map_err(|e| anyhow::anyhow!(e))?;
            if view.link_up || tokio::time::Instant::now() >= deadline {
                break view;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(replica_view.role, Role::Replica);
        assert!(replica_view.link_up, "{replica_view:?}");
        assert_eq!(replica_view.sync, SyncState::Online);
        assert_eq!(
            replica_view.primary,
            Some(HostPort::new("127.0.0.1", primary.port))
        );
        // A write after the replica attached moves the primary's replication offset.
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query_async(&mut p)
            .await?;
        let (primary_view, memory) = poller::ask(&mut p).await.map_err(|e| anyhow::anyhow!(e))?;
        assert_eq!(primary_view.role, Role::Primary);
        assert_eq!(primary_view.replicas, 1);
        assert!(primary_view.offset > 0, "{primary_view:?}");
        assert!(memory.used > 0 && memory.max == 0, "{memory:?}");
        anyhow::Ok(())
    })
}
