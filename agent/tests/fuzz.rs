//! Properties of what the agent parses from outside, over generated input: the controller's
//! commands, the list of controllers, and the settings file. Each never panics, and either gives
//! a value within the protocol's bounds or a one-line error. A few hundred cases each, so that
//! `cargo test fuzz` runs them all in seconds.
use std::io::Write;

use proptest::prelude::*;
use vigil_agent::{
    daemon::{
        config::{RunConfig, controller_urls},
        settings::RunSettings,
    },
    error::AgentError,
    server::{
        commands::{Action, Command},
        info::Role,
    },
};
use vigil_proto::{limits::MAX_ADDRESS_LEN, v1};

const CASES: u32 = 300;

/// Text of every kind a field may hold: sane, any Unicode, control characters, very long.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.-]{1,12}:[0-9]{1,6}",
        "\\[[0-9a-f:]{2,20}\\]:[0-9]{1,5}",
        "[a-z0-9.:/\\[\\]-]{0,30}",
        any::<String>(),
        (0usize..3_000).prop_map(|n| format!("{}:1", "h".repeat(n))),
        Just(String::new()),
    ]
}

fn action() -> impl Strategy<Value = Option<v1::command::Action>> {
    use v1::command::Action as A;
    prop::option::weighted(
        0.9,
        prop_oneof![
            Just(A::Promote(v1::Promote {})),
            (text(), any::<u32>(), any::<i32>()).prop_map(|(target, timeout_secs, method)| {
                A::Switchover(v1::Switchover {
                    target,
                    timeout_secs,
                    method,
                })
            }),
            text().prop_map(|address| A::ReplicateOf(v1::ReplicateOf { address })),
            any::<bool>().prop_map(|keep_replicas| A::Fence(v1::Fence { keep_replicas })),
            Just(A::Unfence(v1::Unfence {})),
            Just(A::Probe(v1::Probe {})),
        ],
    )
}

fn one_line(e: &AgentError) -> bool {
    let s = e.to_string();
    !s.is_empty() && !s.contains('\n')
}

const AGENT_KEYS: &[&str] = &[
    "server",
    "controller",
    "datastore",
    "node_id",
    "zone",
    "priority",
    "advertise",
    "username",
    "password",
    "metrics_listen",
    "ping_interval_ms",
    "ping_misses",
    "heartbeat_ms",
    "health_interval_ms",
    "stall_ms",
    "stopped_ms",
    "long_stall_ms",
    "runq_threshold_ms",
    "runq_p99_ms",
    "memory_pct",
    "cpu_pct",
    "peer_probes",
    "peer_interval_ms",
    "fence_method",
    "no_such_key",
];

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
        Just("\"127.0.0.1:6379\"".to_string()),
        Just("[1, 2]".to_string()),
    ]
}

/// A settings file: known keys (and one unknown) with values of any type, the usual required
/// ones often present, or text that is hardly TOML.
fn agent_file() -> impl Strategy<Value = String> {
    let line =
        (prop::sample::select(AGENT_KEYS), toml_value()).prop_map(|(k, v)| format!("{k} = {v}\n"));
    prop_oneof![
        (any::<bool>(), prop::collection::vec(line, 0..8)).prop_map(|(base, lines)| {
            let base = if base {
                "server = \"127.0.0.1:6379\"\ndatastore = \"cache\"\nnode_id = \"n0\"\n"
            } else {
                ""
            };
            // A key given twice is a TOML error: the generated lines may repeat a base key.
            format!("{base}{}", lines.concat())
        }),
        any::<String>(),
        "[\\[\\]=\"a-z_0-9 \n.#{}]{0,200}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Any command from a controller converts, with addresses within their bound, or is an
    /// error that does not echo what was sent at length.
    #[test]
    fn fuzz_command_converts_or_is_refused(
        id in any::<u64>(),
        epoch in any::<u64>(),
        leadership in any::<u64>(),
        action in action(),
    ) {
        let c = v1::Command { id, epoch, leadership, action };
        match Command::try_from(c) {
            Ok(cmd) => {
                prop_assert_eq!((cmd.id, cmd.epoch), (id, epoch));
                match cmd.action {
                    Action::Switchover { target, timeout_secs, .. } => {
                        prop_assert!(target.to_string().len() <= MAX_ADDRESS_LEN);
                        prop_assert!(timeout_secs >= 1);
                    }
                    Action::ReplicateOf(a) => {
                        prop_assert!(a.to_string().len() <= MAX_ADDRESS_LEN);
                    }
                    _ => {}
                }
            }
            Err(e) => {
                prop_assert!(one_line(&e), "{}", e);
                prop_assert!(e.to_string().len() < 600, "{}", e);
            }
        }
    }

    /// Any role number: a role, or refused.
    #[test]
    fn fuzz_role_converts_or_is_refused(n in any::<i32>()) {
        if let Ok(r) = v1::Role::try_from(n) {
            let ours = Role::try_from(r);
            prop_assert_eq!(ours.is_ok(), r != v1::Role::Unspecified);
        }
    }

    /// Any list of controllers: http(s) URLs, none twice, or a one-line error.
    #[test]
    fn fuzz_controller_urls(list in prop_oneof![
        any::<String>(),
        "(https?://)?[a-z0-9.\\[\\]:]{0,20}(:[0-9]{0,6})?(,(https?://)?[a-z0-9.]{0,10}(:[0-9]{0,6})?){0,3}",
    ]) {
        match controller_urls(&list) {
            Ok(urls) => {
                prop_assert!(!urls.is_empty());
                for (i, u) in urls.iter().enumerate() {
                    prop_assert!(u.starts_with("http://") || u.starts_with("https://"), "{}", u);
                    prop_assert!(!urls[..i].contains(u));
                }
            }
            Err(e) => prop_assert!(one_line(&e), "{}", e),
        }
    }

    /// Any settings file: read or refused naming the file; read settings become a configuration
    /// or a one-line error naming the field.
    #[test]
    fn fuzz_agent_settings_file(text in agent_file()) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        let settings = match RunSettings::from_file(file.path()) {
            Ok(s) => s,
            Err(e) => {
                let named = e.to_string().contains(&file.path().display().to_string());
                prop_assert!(named, "{}", e);
                return Ok(());
            }
        };
        match RunConfig::try_from(RunSettings::default().over(settings)) {
            Ok(c) => {
                prop_assert!(!c.controllers.is_empty());
                prop_assert!(!c.node_id.is_empty() && !c.datastore.is_empty());
            }
            Err(e) => prop_assert!(one_line(&e), "{}", e),
        }
    }
}
