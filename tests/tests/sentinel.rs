//! The Sentinel-compatible endpoint end to end, driven as clients and exporters drive it: real
//! redis-server processes, real agents, the real controller, and redis-py (through
//! `sentinel_client.py`) and redis-rs as the clients. What they are told is asserted: the events
//! and their frames, which nodes they may use, what INFO and CLIENT answer. Never how fast.
//! Needs root.
use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use vigil_tests::{VigilStore, WAIT, require_root, serial, wait_until};

const DS: &str = "cache";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sentinel_client.py");

/// The failover channels in the order Sentinel publishes them (sentinel.c, and a real
/// redis-sentinel watched through one kill -9). `+sdown`/`-sdown` are told apart by the
/// instance they name.
const FAILOVER_ORDER: [&str; 8] = [
    "+sdown master",
    "+odown",
    "+new-epoch",
    "+try-failover",
    "+selected-slave",
    "+promoted-slave",
    "+failover-end",
    "+switch-master",
];
/// What the controller announces around a kill -9: every failover event Sentinel sends, and
/// `+slave` for the other replica (and for the dead old primary, as `+sdown slave` too).
const REQUIRED: [&str; 10] = [
    "+sdown master",
    "+odown",
    "+new-epoch",
    "+try-failover",
    "+selected-slave",
    "+promoted-slave",
    "+failover-end",
    "+switch-master",
    "+slave",
    "+sdown slave",
];
/// Channels that speak of the new topology, so come after `+switch-master` when sent.
const AFTER_SWITCH: [&str; 3] = ["+slave", "+sdown slave", "+convert-to-slave"];

fn start(replicas: usize) -> Result<VigilStore> {
    VigilStore::start(
        DS,
        replicas,
        &["--grace-ms", "300", "--min-failover-interval-ms", "1000"],
        &[],
    )
}

/// Runs a subcommand of `sentinel_client.py` and parses the JSON object it prints.
fn py(args: &[&str]) -> Result<Value> {
    let out = Command::new("python3").arg(SCRIPT).args(args).output()?;
    if !out.status.success() {
        bail!(
            "sentinel_client.py {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).with_context(|| format!("parsing {text:?}"))
}

fn sentinel(store: &VigilStore) -> Result<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", store.controller.sentinel))?;
    Ok(client.get_connection_with_timeout(Duration::from_secs(2))?)
}

fn sentinel_cmd<T: redis::FromRedisValue>(store: &VigilStore, words: &[&str]) -> Result<T> {
    let mut cmd = redis::cmd(words[0]);
    for w in &words[1..] {
        cmd.arg(*w);
    }
    Ok(cmd.query(&mut sentinel(store)?)?)
}

/// SENTINEL REPLICAS as redis-rs reads it: each replica's fields by name.
fn replicas(store: &VigilStore) -> Result<Vec<HashMap<String, String>>> {
    sentinel_cmd(store, &["SENTINEL", "REPLICAS", DS])
}

/// Waits until the primary published is not `old`, and returns its index.
fn new_primary(store: &VigilStore, old: usize) -> Result<usize> {
    wait_until(WAIT, "a new primary", || {
        store.primary().ok().filter(|p| *p != old)
    })
}

/// `+sdown master ...` or `+sdown slave ...` for the sdown channels; the channel otherwise.
fn kind(channel: &str, data: &str) -> String {
    match channel {
        "+sdown" | "-sdown" => {
            let instance = data.split(' ').next().unwrap_or_default();
            format!("{channel} {instance}")
        }
        _ => channel.to_string(),
    }
}

#[test]
fn a_resp3_subscriber_gets_push_frames_with_the_failover_events_in_sentinels_order() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut store = start(2)?;
    let old = store.primary()?;
    let old_port = store.ports[old];
    let port = store.controller.sentinel.to_string();
    let mut sub = Command::new("python3")
        .arg(SCRIPT)
        .args(["events", &port, "60"])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = sub.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first: Value = serde_json::from_str(&rx.recv_timeout(WAIT)?)?;
    assert_eq!(first["type"], "psubscribe", "{first}");
    assert_eq!(first["channel"], "*");
    assert_eq!(
        first["push"], true,
        "the confirmation is not a push frame: {first}"
    );

    store.kill(old)?;
    let new = new_primary(&store, old)?;
    let new_port = store.ports[new];
    // The subscriber stops 1.5 s after +switch-master: read until it closes, bounded.
    let deadline = Instant::now() + 4 * WAIT;
    let mut messages = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => messages.push(serde_json::from_str::<Value>(&line)?),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = sub.kill();
                bail!("the subscriber did not finish; it had {messages:?}");
            }
        }
    }
    let _ = sub.wait();

    let mut seen = Vec::new();
    for m in &messages {
        assert_eq!(m["type"], "pmessage", "{m}");
        assert_eq!(m["pattern"], "*", "{m}");
        assert_eq!(m["push"], true, "not a push frame over RESP3: {m}");
        let (channel, data) = (
            m["channel"].as_str().unwrap_or_default(),
            m["data"].as_str().unwrap_or_default(),
        );
        seen.push((kind(channel, data), data.to_string()));
    }
    let at = |k: &str| seen.iter().position(|(s, _)| s == k);
    for k in REQUIRED {
        assert!(at(k).is_some(), "no {k} in {seen:?}");
    }
    // Sentinel's order, for every failover event that was sent, each once.
    let order: Vec<&str> = seen
        .iter()
        .filter_map(|(k, _)| FAILOVER_ORDER.iter().find(|f| **f == k.as_str()).copied())
        .collect();
    let mut sorted = order.clone();
    sorted.sort_by_key(|k| FAILOVER_ORDER.iter().position(|f| f == k));
    sorted.dedup();
    assert_eq!(
        order, sorted,
        "not in Sentinel's order, or repeated: {seen:?}"
    );
    let switch = at("+switch-master").unwrap_or_default();
    for (i, (k, data)) in seen.iter().enumerate() {
        if AFTER_SWITCH.contains(&k.as_str()) {
            assert!(i > switch, "{k} {data} before +switch-master: {seen:?}");
            assert!(
                data.starts_with("slave 127.0.0.1:")
                    && data.ends_with(&format!(" @ {DS} 127.0.0.1 {new_port}")),
                "{k} {data}"
            );
        }
    }
    // The texts, as Sentinel writes them.
    let text = |k: &str| seen.iter().find(|(s, _)| s == k).map(|(_, d)| d.as_str());
    let master = format!("master {DS} 127.0.0.1 {old_port}");
    assert_eq!(text("+sdown master"), Some(master.as_str()));
    assert_eq!(
        text("+odown"),
        Some(format!("{master} #quorum 1/1").as_str())
    );
    assert_eq!(
        text("+switch-master"),
        Some(format!("{DS} 127.0.0.1 {old_port} 127.0.0.1 {new_port}").as_str())
    );
    if let Some(end) = text("+failover-end") {
        assert_eq!(end, master);
    }
    if let Some(epoch) = text("+new-epoch") {
        assert!(epoch.parse::<u64>().is_ok(), "+new-epoch {epoch}");
    }
    Ok(())
}

#[test]
fn after_a_failover_the_dead_old_primary_is_flagged_and_clients_leave_it_out() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut store = start(2)?;
    let old = store.primary()?;
    let old_port = store.ports[old].to_string();
    store.kill(old)?;
    let new = new_primary(&store, old)?;
    let new_port = store.ports[new];
    let live = store.ports[3 - old - new];

    let dead = wait_until(WAIT, "the old primary listed as a down replica", || {
        replicas(&store)
            .ok()?
            .into_iter()
            .find(|r| r.get("port") == Some(&old_port))
            .filter(|r| r.get("flags").is_some_and(|f| f.contains("s_down")))
    })?;
    assert_eq!(dead["flags"], "s_down,slave");
    assert_eq!(dead["master-link-status"], "err");
    assert_eq!(dead["master-port"], new_port.to_string());
    let all = replicas(&store)?;
    assert_eq!(all.len(), 2, "{all:?}");
    let healthy = all
        .iter()
        .find(|r| r["port"] == live.to_string())
        .ok_or_else(|| anyhow!("{live} not listed: {all:?}"))?;
    assert_eq!(healthy["flags"], "slave");
    assert_eq!(healthy["master-link-status"], "ok");

    // redis-py, over either protocol, skips it and finds the new primary.
    for proto in ["2", "3"] {
        let seen = py(&[
            "replicas",
            &store.controller.sentinel.to_string(),
            DS,
            proto,
        ])?;
        assert_eq!(
            seen["discovered"],
            serde_json::json!([live]),
            "RESP{proto}: {seen}"
        );
        assert_eq!(seen["master"], new_port, "RESP{proto}: {seen}");
        let listed = seen["replicas"]
            .as_array()
            .ok_or_else(|| anyhow!("{seen}"))?;
        let old_seen = listed
            .iter()
            .find(|r| r["port"] == store.ports[old])
            .ok_or_else(|| anyhow!("RESP{proto}: old primary not listed: {seen}"))?;
        assert_eq!(old_seen["is_sdown"], true, "RESP{proto}: {seen}");
        assert_eq!(old_seen["flags"], serde_json::json!(["s_down", "slave"]));
    }
    // INFO names the new primary, status ok.
    let info = py(&["info", &store.controller.sentinel.to_string(), "2"])?;
    assert_eq!(
        info["sentinel"]["master0"]["address"],
        format!("127.0.0.1:{new_port}")
    );
    assert_eq!(info["sentinel"]["master0"]["status"], "ok");
    assert_eq!(info["sentinel"]["master0"]["slaves"], 2);
    Ok(())
}

#[test]
fn a_dead_primary_that_cannot_be_replaced_is_never_named_and_shows_odown() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut store = start(1)?;
    let primary = store.primary()?;
    let replica = 1 - primary;
    let port = store.ports[primary];
    // The only replica first, so there is nothing to promote.
    store.kill(replica)?;
    wait_until(WAIT, "the replica flagged down", || {
        replicas(&store)
            .ok()?
            .iter()
            .any(|r| r.get("flags").is_some_and(|f| f.contains("s_down")))
            .then_some(())
    })?;
    store.kill(primary)?;
    wait_until(WAIT, "no primary named", || {
        store
            .controller
            .sentinel_primary(DS)
            .ok()?
            .is_none()
            .then_some(())
    })?;
    let master: HashMap<String, String> = sentinel_cmd(&store, &["SENTINEL", "MASTER", DS])?;
    assert_eq!(master["flags"], "s_down,o_down,master");
    assert_eq!(
        master["port"],
        port.to_string(),
        "MASTER still says which node"
    );
    let seen = py(&["replicas", &store.controller.sentinel.to_string(), DS, "3"])?;
    assert_eq!(
        seen["master"],
        Value::Null,
        "redis-py found a master: {seen}"
    );
    assert_eq!(seen["discovered"], serde_json::json!([]), "{seen}");
    let info = py(&["info", &store.controller.sentinel.to_string(), "3"])?;
    assert_eq!(info["sentinel"]["master0"]["status"], "odown", "{info}");
    // And it stays so: nothing can be promoted.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(store.controller.sentinel_primary(DS)?, None);
    Ok(())
}

#[test]
fn info_myid_ckquorum_and_client_answer_as_sentinel_does() -> Result<()> {
    require_root();
    let _serial = serial();
    let mut store = start(1)?;
    let primary = store.ports[store.primary()?];
    let port = store.controller.sentinel.to_string();
    for proto in ["2", "3"] {
        let info = py(&["info", &port, proto])?;
        let s = &info["sentinel"];
        assert_eq!(s["sentinel_masters"], 1, "RESP{proto}: {info}");
        assert_eq!(s["sentinel_tilt"], 0);
        assert_eq!(s["sentinel_running_scripts"], 0);
        assert_eq!(s["sentinel_scripts_queue_length"], 0);
        assert_eq!(s["sentinel_simulate_failure_flags"], 0);
        assert_eq!(
            s["master0"],
            serde_json::json!({"name": DS, "status": "ok", "address": format!("127.0.0.1:{primary}"), "slaves": 1, "sentinels": 1}),
            "RESP{proto}"
        );
        assert_eq!(info["server"]["redis_mode"], "sentinel");
        assert!(info["server"]["redis_version"].is_string(), "{info}");
        assert_eq!(info["server"]["tcp_port"], store.controller.sentinel);

        let c = py(&["client", &port, proto])?;
        assert_eq!(c["before"], Value::Null, "RESP{proto}: {c}");
        assert_eq!(c["after"], "vigil-test");
        assert!(c["id"].is_u64() && c["other"].is_u64(), "{c}");
        assert_ne!(c["id"], c["other"], "two connections, one id: {c}");
    }

    let ok: String = sentinel_cmd(&store, &["SENTINEL", "CKQUORUM", DS])?;
    assert_eq!(
        ok,
        "OK 1 usable Sentinels. Quorum and failover authorization can be reached"
    );
    let err = sentinel_cmd::<String>(&store, &["SENTINEL", "CKQUORUM", "nope"])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("No such master with that name"), "{err:?}");

    let id: String = sentinel_cmd(&store, &["SENTINEL", "MYID"])?;
    assert_eq!(id.len(), 40);
    assert!(id.bytes().all(|c| c.is_ascii_hexdigit()), "{id}");
    store.controller.restart()?;
    let again: String = sentinel_cmd(&store, &["SENTINEL", "MYID"])?;
    assert_eq!(again, id, "a restarted controller has a new Sentinel id");
    Ok(())
}
