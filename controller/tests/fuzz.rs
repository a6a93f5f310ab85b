//! Properties of everything the controller parses from outside, over generated input: the
//! Sentinel endpoint's RESP parser, an agent's Hello, and the settings file. Each never panics,
//! and either gives a value within the bounds or an error. A few hundred cases each, so that
//! `cargo test fuzz` runs them all in seconds.
use std::io::Write;

use proptest::prelude::*;
use vigil_controller::{
    config::{ControllerConfig, ControllerSettings, DatastoreConfig, NodeConfig},
    error::ControllerError,
    sentinel::resp::{MAX_ARGS, MAX_BULK, parse_command},
    store::{NodeInfo, nodes::Nodes},
};
use vigil_proto::{
    limits::{
        MAX_ADDRESS_LEN, MAX_DATASTORE_NAME_LEN, MAX_NODE_ID_LEN, MAX_NODES_PER_DATASTORE,
        MAX_ZONE_LEN,
    },
    v1,
};

const CASES: u32 = 300;

/// RESP's encoding of a command as an array of bulk strings, as clients send it.
fn encode(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Text of every kind a field may hold: sane, any Unicode, control characters, past its bound.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.-]{1,12}",
        "[a-z0-9.-]{1,12}:[0-9]{1,5}",
        "\\[[0-9a-f:]{2,20}\\]:[0-9]{1,5}",
        any::<String>(),
        "[\\x00-\\x1f]{1,4}",
        (0usize..2_000).prop_map(|n| "x".repeat(n)),
        Just(String::new()),
    ]
}

fn hello() -> impl Strategy<Value = v1::Hello> {
    (
        any::<u32>(),
        text(),
        text(),
        text(),
        text(),
        any::<u32>(),
        any::<i32>(),
        text(),
    )
        .prop_map(
            |(
                protocol_version,
                datastore,
                node_id,
                advertise,
                zone,
                priority,
                flavour,
                agent_version,
            )| v1::Hello {
                protocol_version,
                datastore,
                node_id,
                advertise,
                zone,
                priority,
                flavour,
                agent_version,
            },
        )
}

/// A TOML value of any type, written as TOML writes it (strings escaped).
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        (0u64..10_000).prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        text().prop_map(|s| toml::Value::String(s).to_string()),
        Just("[1, 2]".to_string()),
        Just("{}".to_string()),
    ]
}

const CONTROLLER_KEYS: &[&str] = &[
    "grpc_listen",
    "sentinel_listen",
    "metrics_listen",
    "data_dir",
    "silence_ms",
    "grace_ms",
    "min_failover_interval_ms",
    "link_bound_ms",
    "heartbeat_ms",
    "desired_refresh_ms",
    "lease_ms",
    "lease_margin_ms",
    "fence_deadline_ms",
    "etcd",
    "etcd_prefix",
    "name",
    "leader_lease_secs",
    "advertise_grpc",
    "advertise_sentinel",
    "max_datastores",
    "refuse_unknown",
    "no_such_key",
];

/// A settings file: known keys (and one unknown) with values of any type, data store tables with
/// nodes, or text that is hardly TOML at all.
fn controller_file() -> impl Strategy<Value = String> {
    let line = (prop::sample::select(CONTROLLER_KEYS), toml_value())
        .prop_map(|(k, v)| format!("{k} = {v}\n"));
    let node = (toml_value(), toml_value(), toml_value(), toml_value()).prop_map(
        |(id, address, zone, priority)| {
            format!(
                "[[datastore.node]]\nid = {id}\naddress = {address}\nzone = {zone}\npriority = {priority}\n"
            )
        },
    );
    let datastore = (toml_value(), prop::collection::vec(node, 0..4))
        .prop_map(|(name, nodes)| format!("[[datastore]]\nname = {name}\n{}", nodes.concat()));
    prop_oneof![
        (
            prop::collection::vec(line, 0..8),
            prop::collection::vec(datastore, 0..3)
        )
            .prop_map(|(lines, stores)| lines.concat() + &stores.concat()),
        any::<String>(),
        "[\\[\\]=\"a-z_0-9 \n.#{}]{0,200}",
    ]
}

fn opt<T: std::fmt::Debug>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Option<T>> {
    prop::option::weighted(0.3, s)
}

/// Settings as flags, the environment or a file could give them: any value in any field.
fn controller_settings() -> impl Strategy<Value = ControllerSettings> {
    let ms = || opt(prop_oneof![0u64..5_000, any::<u64>()]);
    let node = (text(), text(), text(), any::<u32>()).prop_map(|(id, address, zone, priority)| {
        NodeConfig {
            id,
            address,
            zone,
            priority,
        }
    });
    let datastore = (text(), prop::collection::vec(node, 0..70))
        .prop_map(|(name, nodes)| DatastoreConfig { name, nodes });
    (
        (
            opt(text()),
            opt(text()),
            opt(text()),
            opt(text()),
            opt(text()),
            opt(text()),
        ),
        (ms(), ms(), ms(), ms(), ms(), ms(), ms(), ms(), ms()),
        (opt(text()), opt(text()), opt(any::<usize>()), any::<bool>()),
        (opt(text()), opt(any::<usize>()), opt(any::<u64>())),
        prop::collection::vec(datastore, 0..3),
    )
        .prop_map(|(strings, millis, rest, sentinel, datastores)| {
            let (grpc_listen, sentinel_listen, metrics_listen, etcd, etcd_prefix, name) = strings;
            let (
                silence_ms,
                grace_ms,
                min_failover_interval_ms,
                link_bound_ms,
                heartbeat_ms,
                lease_ms,
                lease_margin_ms,
                fence_deadline_ms,
                leader_lease_secs,
            ) = millis;
            let (advertise_grpc, advertise_sentinel, max_datastores, refuse_unknown) = rest;
            let (sentinel_user, sentinel_max_clients, sentinel_idle_timeout_secs) = sentinel;
            ControllerSettings {
                grpc_listen,
                sentinel_listen,
                metrics_listen,
                data_dir: None,
                silence_ms,
                grace_ms,
                min_failover_interval_ms,
                link_bound_ms,
                heartbeat_ms,
                lease_ms,
                lease_margin_ms,
                fence_deadline_ms,
                etcd,
                etcd_prefix,
                name,
                leader_lease_secs,
                advertise_grpc,
                advertise_sentinel,
                max_datastores,
                refuse_unknown,
                sentinel_user,
                sentinel_max_clients,
                sentinel_idle_timeout_secs,
                datastores,
                // Files: a path that does not exist is an error naming it, tested in config.rs.
                ..ControllerSettings::default()
            }
        })
}

/// A one-line error that says something: what an operator is shown.
fn clear(e: &ControllerError) -> bool {
    let s = e.to_string();
    !s.is_empty() && !s.contains('\n')
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Any bytes: no panic, and a command within the bounds or an error or "need more".
    #[test]
    fn fuzz_resp_any_bytes(buf in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        // Frames that look like RESP, with any lengths in them.
        ("[*$]", any::<i64>(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(
            |(m, n, rest)| [format!("{m}{n}\r\n").into_bytes(), rest].concat(),
        ),
    ]) {
        if let Ok(Some((args, used))) = parse_command(&buf) {
            prop_assert!(args.len() <= MAX_ARGS);
            prop_assert!(args.iter().all(|a| a.len() <= MAX_BULK));
            prop_assert!(used > 0 && used <= buf.len());
        }
    }

    /// A command encoded as clients do parses back to itself, taking all its bytes; any part of
    /// it is "need more".
    #[test]
    fn fuzz_resp_valid_round_trips(
        args in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..MAX_ARGS),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = encode(&args);
        prop_assert_eq!(parse_command(&bytes).unwrap(), Some((args.clone(), bytes.len())));
        let part = &bytes[..cut.index(bytes.len())];
        prop_assert_eq!(parse_command(part).unwrap(), None);
        // Followed by the next command: only the first is taken.
        let two = [bytes.clone(), encode(&args)].concat();
        prop_assert_eq!(parse_command(&two).unwrap(), Some((args, bytes.len())));
    }

    /// Inline commands (telnet, redis-cli) are words separated by spaces.
    #[test]
    fn fuzz_resp_inline_round_trips(words in prop::collection::vec("[A-Za-z0-9_-]{1,20}", 1..MAX_ARGS)) {
        let line = format!("{}\r\n", words.join(" "));
        let expected: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        prop_assert_eq!(parse_command(line.as_bytes()).unwrap(), Some((expected, line.len())));
    }

    /// Any hello converts within the bounds or is refused, with an error that names the field
    /// and never echoes what was sent at length.
    #[test]
    fn fuzz_hello_converts_within_bounds_or_is_refused(h in hello()) {
        match NodeInfo::try_from(&h) {
            Ok(n) => {
                prop_assert!(!n.id.is_empty() && n.id.len() <= MAX_NODE_ID_LEN);
                prop_assert!(n.zone.len() <= MAX_ZONE_LEN);
                prop_assert!(n.address.to_string().len() <= MAX_ADDRESS_LEN);
                prop_assert!(!h.datastore.is_empty() && h.datastore.len() <= MAX_DATASTORE_NAME_LEN);
            }
            Err(e) => {
                prop_assert!(clear(&e), "{}", e);
                prop_assert!(e.to_string().len() < 300, "{}", e);
            }
        }
    }

    /// However many hellos a data store is sent, it holds at most its bound of nodes.
    #[test]
    fn fuzz_hellos_never_grow_a_store_past_its_bound(ids in prop::collection::vec("[a-z]{1,3}", 0..200)) {
        let mut nodes = Nodes::default();
        for id in &ids {
            let h = v1::Hello {
                datastore: "cache".into(),
                node_id: id.clone(),
                advertise: "127.0.0.1:6379".into(),
                ..Default::default()
            };
            let info = NodeInfo::try_from(&h).unwrap();
            let known = nodes.get(id).is_some();
            match nodes.register(info) {
                Ok(()) => prop_assert!(nodes.get(id).is_some()),
                Err(e) => {
                    prop_assert!(!known && nodes.len() == MAX_NODES_PER_DATASTORE, "{}", e);
                    let too_many = matches!(e, ControllerError::TooManyNodes { .. });
                    prop_assert!(too_many, "{}", e);
                }
            }
            prop_assert!(nodes.len() <= MAX_NODES_PER_DATASTORE);
        }
    }

    /// Any settings file: read or refused with an error naming the file; read settings become a
    /// configuration within the bounds, or a one-line error.
    #[test]
    fn fuzz_controller_settings_file(text in controller_file()) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        let settings = match ControllerSettings::from_file(file.path()) {
            Ok(s) => s,
            Err(e) => {
                let named = matches!(e, ControllerError::ConfigFile { .. });
                prop_assert!(named, "{}", e);
                prop_assert!(e.to_string().contains(&file.path().display().to_string()));
                return Ok(());
            }
        };
        match ControllerConfig::try_from(ControllerSettings::default().over(settings)) {
            Ok(c) => {
                for (name, nodes) in &c.datastores {
                    prop_assert!(!name.is_empty() && name.len() <= MAX_DATASTORE_NAME_LEN);
                    prop_assert!(nodes.len() <= MAX_NODES_PER_DATASTORE);
                    for n in nodes {
                        prop_assert!(!n.id.is_empty() && n.id.len() <= MAX_NODE_ID_LEN);
                        prop_assert!(n.zone.len() <= MAX_ZONE_LEN);
                    }
                }
                prop_assert!(c.settings.lease >= c.settings.heartbeat * 2);
            }
            Err(e) => prop_assert!(clear(&e), "{}", e),
        }
    }

    /// Any values in any setting: a configuration within the bounds, or a one-line error.
    #[test]
    fn fuzz_controller_settings_values(s in controller_settings()) {
        match ControllerConfig::try_from(s) {
            Ok(c) => {
                for (name, nodes) in &c.datastores {
                    prop_assert!(!name.is_empty() && name.len() <= MAX_DATASTORE_NAME_LEN);
                    prop_assert!(nodes.len() <= MAX_NODES_PER_DATASTORE);
                    for n in nodes {
                        prop_assert!(!n.id.is_empty() && n.id.len() <= MAX_NODE_ID_LEN);
                        prop_assert!(n.zone.len() <= MAX_ZONE_LEN);
                    }
                }
            }
            Err(e) => prop_assert!(clear(&e), "{}", e),
        }
    }
}
