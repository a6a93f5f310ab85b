//! Attacks and bad input on the controller's gRPC port, against a real three-node data store run
//! by vigil (real redis-server processes, real agents, the real controller): junk bytes, a Hello
//! of megabytes, Hellos with fields past their bounds, and floods of forged node ids and data
//! store names, sent over real sockets with the generated vigil.v1 client. After each, no real
//! agent has lost its session, and a kill -9 of the primary still fails over to a replica that
//! takes a write. Each attack is bounded in count and time. Needs root.
use std::{
    io::Write,
    net::{Shutdown, TcpStream},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, transport::Channel};
use vigil_proto::{
    PROTOCOL_VERSION,
    limits::{MAX_DATASTORE_NAME_LEN, MAX_NODES_PER_DATASTORE},
    v1::{
        self, AgentMessage, ControllerMessage, agent_link_client::AgentLinkClient,
        agent_message::Msg as Up, controller_message::Msg as Down,
    },
};
use vigil_tests::{VigilStore, WAIT, free_port, require_root, serial, wait_until};

const DS: &str = "cache";
/// The real nodes: a primary and two replicas.
const REAL: usize = 3;
/// Data stores the controller may run in the flood test: the flood of new names goes past it.
const MAX_DATASTORES: usize = 50;
/// Forged hellos per flood: bounded, and well past both bounds.
const FLOOD: usize = 300;
/// How long one forged session may take to be answered.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

fn start() -> Result<VigilStore> {
    let max = MAX_DATASTORES.to_string();
    VigilStore::start(
        DS,
        REAL - 1,
        &[
            "--grace-ms",
            "300",
            "--min-failover-interval-ms",
            "1000",
            "--max-datastores",
            &max,
        ],
        &[],
    )
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// A hello as a real agent sends it, but from nobody: its address is a free port.
fn forged(datastore: &str, node_id: &str) -> Result<v1::Hello> {
    Ok(v1::Hello {
        protocol_version: PROTOCOL_VERSION,
        datastore: datastore.into(),
        node_id: node_id.into(),
        advertise: format!("127.0.0.1:{}", free_port()?),
        zone: String::new(),
        priority: 100,
        flavour: v1::Flavour::Redis as i32,
        agent_version: "forged".into(),
    })
}

/// How the controller answered one forged session.
#[derive(Debug)]
enum Answer {
    /// Refused before any message, with this code.
    Refused(Code),
    /// Welcomed, then sent this (desired state), or ended with this code.
    Welcomed(Result<ControllerMessage, Code>),
}

/// Opens a session on `channel`, says `hello`, and reads the answer: the refusal, or the Welcome
/// and what follows it. The session is dropped after.
async fn session(channel: &Channel, hello: v1::Hello) -> Result<Answer> {
    let mut client = AgentLinkClient::new(channel.clone());
    let (tx, rx) = mpsc::channel(1);
    tx.send(AgentMessage {
        msg: Some(Up::Hello(hello)),
    })
    .await?;
    let call = tokio::time::timeout(ANSWER_WITHIN, client.session(ReceiverStream::new(rx)));
    let mut down = match call.await.context("no answer to a hello")? {
        Ok(r) => r.into_inner(),
        Err(s) => return Ok(Answer::Refused(s.code())),
    };
    match tokio::time::timeout(ANSWER_WITHIN, down.message())
        .await
        .context("no Welcome")?
    {
        Ok(Some(ControllerMessage {
            msg: Some(Down::Welcome(_)),
        })) => {}
        Err(s) => return Ok(Answer::Refused(s.code())),
        other => bail!("a Welcome was expected, not {other:?}"),
    }
    let after = match tokio::time::timeout(ANSWER_WITHIN, down.message())
        .await
        .context("nothing after the Welcome")?
    {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(Code::Ok),
        Err(s) => Err(s.code()),
    };
    drop(tx);
    Ok(Answer::Welcomed(after))
}

async fn channel(store: &VigilStore) -> Result<Channel> {
    Ok(Channel::from_shared(store.controller.url())?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await?)
}

/// How often the controller logged `message` about real node `node` of [`DS`].
fn said_of(store: &VigilStore, message: &str, node: &str) -> usize {
    store
        .controller
        .log
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            let f = &v["fields"];
            f["message"] == message && f["datastore"] == DS && f["node"] == node
        })
        .count()
}

/// No real agent lost its session: each connected once, none disconnected, all still connected
/// and healthy now, and nothing was failed over.
fn real_sessions_held(store: &VigilStore) -> Result<()> {
    // Forged nodes may be listed too (disconnected): the real ones are looked at.
    wait_until(WAIT, "the real nodes connected and healthy", || {
        let st = store.controller.status(DS).ok()?;
        let real: Vec<_> = st["nodes"]
            .as_array()?
            .iter()
            .filter(|n| (0..REAL).any(|i| n["node"] == format!("n{i}")))
            .collect();
        let ok = real.len() == REAL
            && real
                .iter()
                .all(|n| n["health"] == "HEALTHY" && n["connected"] == true);
        ok.then_some(())
    })?;
    for i in 0..REAL {
        let node = format!("n{i}");
        assert_eq!(
            said_of(store, "agent disconnected", &node),
            0,
            "{node} lost its session"
        );
        assert_eq!(
            said_of(store, "agent connected", &node),
            1,
            "{node} connected again"
        );
    }
    assert_eq!(store.failovers_started(), 0, "an attack caused a failover");
    Ok(())
}

/// kill -9 of the primary: a former replica is promoted and takes a write.
fn kill_9_still_fails_over(mut store: VigilStore) -> Result<()> {
    let old = store.primary()?;
    store.kill(old)?;
    let new = wait_until(WAIT, "a replica promoted", || {
        store.primary().ok().filter(|p| *p != old)
    })?;
    wait_until(WAIT, "the new primary to take a write", || {
        let mut c = store.server(new).ok()?.connect().ok()?;
        redis::cmd("SET")
            .arg("after-the-attack")
            .arg("1")
            .query::<()>(&mut c)
            .ok()
    })?;
    Ok(())
}

#[test]
fn junk_bytes_on_the_grpc_port_cut_off_no_agent() -> Result<()> {
    require_root();
    let _serial = serial();
    let store = start()?;
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n";
    let junk: Vec<Vec<u8>> = vec![
        // Raw garbage, text and binary.
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect(),
        vec![0xff; 64 * 1024],
        // Half the HTTP/2 preface, then close.
        preface[..10].to_vec(),
        // The whole preface, then a frame header promising 16 MB.
        [
            &preface[..],
            &[0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01],
        ]
        .concat(),
    ];
    for round in 0..20 {
        for bytes in &junk {
            let mut s = TcpStream::connect(("127.0.0.1", store.controller.grpc))?;
            s.set_write_timeout(Some(Duration::from_secs(2)))?;
            // The controller may close first: what matters is that it lives on.
            let _ = s.write_all(bytes);
            let _ = s.shutdown(Shutdown::Both);
        }
        assert!(
            store.controller.is_live(),
            "round {round}: the controller died"
        );
    }
    // A connection opened and left idle holds nothing either.
    let idle = TcpStream::connect(("127.0.0.1", store.controller.grpc))?;
    real_sessions_held(&store)?;
    drop(idle);
    kill_9_still_fails_over(store)
}

#[test]
fn hellos_of_megabytes_or_past_a_bound_are_refused_and_cut_off_no_agent() -> Result<()> {
    require_root();
    let _serial = serial();
    let store = start()?;
    runtime()?.block_on(async {
        let channel = channel(&store).await?;
        // 10 MB in one field: refused at the message's length, before it is held.
        let mut huge = forged(DS, "huge")?;
        huge.node_id = "n".repeat(10 << 20);
        let answer = session(&channel, huge).await?;
        assert!(
            matches!(answer, Answer::Refused(Code::OutOfRange)),
            "{answer:?}"
        );
        // Two nodes that say their address is 3 MB long: the same.
        for id in ["wide-1", "wide-2"] {
            let mut wide = forged(DS, id)?;
            wide.advertise = format!("{}:6379", "h".repeat(3 << 20));
            let answer = session(&channel, wide).await?;
            assert!(
                matches!(answer, Answer::Refused(Code::OutOfRange)),
                "{answer:?}"
            );
        }
        // Fields that fit in a message but are past their bound: refused one by one.
        let long = "x".repeat(8 * 1024);
        for field in ["datastore", "node_id", "advertise", "zone", "agent_version"] {
            let mut h = forged(DS, "long")?;
            match field {
                "datastore" => h.datastore = long.clone(),
                "node_id" => h.node_id = long.clone(),
                "advertise" => h.advertise = format!("{long}:6379"),
                "zone" => h.zone = long.clone(),
                _ => h.agent_version = long.clone(),
            }
            let answer = session(&channel, h).await?;
            assert!(
                matches!(answer, Answer::Refused(Code::InvalidArgument)),
                "{field}: {answer:?}"
            );
        }
        anyhow::Ok(())
    })?;
    let st = store.controller.status(DS)?;
    assert_eq!(st["nodes"].as_array().map(Vec::len), Some(REAL), "{st}");
    real_sessions_held(&store)?;
    kill_9_still_fails_over(store)
}

#[test]
fn floods_of_forged_node_ids_and_data_store_names_stop_at_their_bounds() -> Result<()> {
    require_root();
    let _serial = serial();
    let store = start()?;
    let (admitted, refused) = runtime()?.block_on(async {
        let channel = channel(&store).await?;
        let (mut admitted, mut refused) = (0, 0);
        for i in 0..FLOOD {
            match session(&channel, forged(DS, &format!("forged-{i}"))?).await? {
                Answer::Welcomed(Ok(_)) => admitted += 1,
                Answer::Welcomed(Err(Code::ResourceExhausted)) => refused += 1,
                other => bail!("forged node {i}: {other:?}"),
            }
        }
        let (mut stores, mut stores_refused) = (0, 0);
        for i in 0..FLOOD {
            let name = format!("forged-{i:0>width$}", width = MAX_DATASTORE_NAME_LEN - 7);
            match session(&channel, forged(&name, "n0")?).await? {
                Answer::Welcomed(_) => stores += 1,
                Answer::Refused(Code::ResourceExhausted) => stores_refused += 1,
                other => bail!("forged data store {i}: {other:?}"),
            }
        }
        // The real data store counts toward the bound.
        assert_eq!(stores, MAX_DATASTORES - 1);
        assert_eq!(stores_refused, FLOOD - stores);
        anyhow::Ok((admitted, refused))
    })?;
    assert_eq!(admitted, MAX_NODES_PER_DATASTORE - REAL);
    assert_eq!(refused, FLOOD - admitted);
    let st = store.controller.status(DS)?;
    assert_eq!(
        st["nodes"].as_array().map(Vec::len),
        Some(MAX_NODES_PER_DATASTORE),
        "{st}"
    );
    store.controller.log.wait_for("too_many_nodes")?;
    real_sessions_held(&store)?;
    kill_9_still_fails_over(store)
}
