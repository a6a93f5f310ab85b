use clap::{Args, Command};

use super::*;

#[test]
fn a_file_with_datastores_parses_and_errors_name_the_field() {
    let s: ControllerSettings = toml::from_str(
        "grace_ms = 100\n[[datastore]]\nname = \"cache\"\n[[datastore.node]]\nid = \"a\"\naddress = \"127.0.0.1:6379\"\nzone = \"z1\"\n",
    )
    .unwrap();
    let c = ControllerConfig::try_from(s).unwrap();
    assert_eq!(c.settings.grace, Duration::from_millis(100));
    assert_eq!(c.datastores[0].0, "cache");
    assert_eq!(c.datastores[0].1[0].priority, DEFAULT_PRIORITY);
    assert_eq!(
        c.datastores[0].1[0].address,
        HostPort::new("127.0.0.1", 6379)
    );
    assert_eq!(c.grpc_listen.port(), 7420);
    let bad_node: ControllerSettings = toml::from_str(
        "[[datastore]]\nname = \"cache\"\n[[datastore.node]]\nid = \"a\"\naddress = \"nowhere\"\n",
    )
    .unwrap();
    let e = ControllerConfig::try_from(bad_node)
        .unwrap_err()
        .to_string();
    assert!(e.contains("datastore[0].node[0].address"), "{e}");
    let e = ControllerConfig::try_from(ControllerSettings {
        grpc_listen: Some("7420".into()),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("grpc_listen"), "{e}");
    assert!(toml::from_str::<ControllerSettings>("grcp_listen = \"x\"").is_err());
}

#[test]
fn unset_settings_take_the_defaults_the_help_shows() {
    let c = ControllerConfig::try_from(ControllerSettings::default()).unwrap();
    assert_eq!(c.settings, Settings::default());
    assert_eq!(c.grpc_listen.to_string(), DEFAULT_GRPC_LISTEN);
    assert_eq!(c.sentinel_listen.to_string(), DEFAULT_SENTINEL_LISTEN);
    assert_eq!(
        c.metrics_listen.map(|a| a.to_string()).as_deref(),
        Some(DEFAULT_METRICS_LISTEN)
    );
    assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    assert_eq!(
        c.settings.silence,
        Duration::from_millis(DEFAULT_SILENCE_MS)
    );
    assert_eq!(c.hooks, HookConfig::default());
    assert_eq!(
        c.hooks.timeout,
        Duration::from_secs(DEFAULT_HOOK_TIMEOUT_SECS)
    );
}

/// A hook's command is checked at start: a missing or non-executable file is refused with an
/// error naming the setting and the file, and the timeout must be within its bounds.
#[test]
fn hook_commands_must_be_executable_files_and_their_timeout_bounded() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let runnable = dir.path().join("notify.sh");
    std::fs::write(&runnable, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&runnable, std::fs::Permissions::from_mode(0o750)).unwrap();
    let plain = dir.path().join("reconfig.sh");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file: ControllerSettings = toml::from_str(&format!(
        "notify_command = {:?}\nhook_timeout_secs = 3\n",
        runnable.display().to_string()
    ))
    .unwrap();
    let c = ControllerConfig::try_from(file).unwrap();
    assert_eq!(c.hooks.notify.as_deref(), Some(runnable.as_path()));
    assert_eq!(c.hooks.client_reconfig, None);
    assert_eq!(c.hooks.timeout, Duration::from_secs(3));
    let cases = [
        (
            ControllerSettings {
                client_reconfig_command: Some(plain.clone()),
                ..Default::default()
            },
            "client_reconfig_command",
            "reconfig.sh is not executable",
        ),
        (
            ControllerSettings {
                notify_command: Some(dir.path().join("missing.sh")),
                ..Default::default()
            },
            "notify_command",
            "missing.sh",
        ),
        (
            ControllerSettings {
                hook_timeout_secs: Some(0),
                ..Default::default()
            },
            "hook_timeout_secs",
            "outside",
        ),
    ];
    for (settings, field, says) in cases {
        let e = ControllerConfig::try_from(settings)
            .unwrap_err()
            .to_string();
        assert!(e.contains(field) && e.contains(says), "{field}: {e}");
    }
}

/// A self-signed certificate naming `uri`, and its key, written into `dir`.
fn cert_naming(dir: &std::path::Path, uri: &str) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .subject_alt_names
        .push(rcgen::SanType::URI(uri.try_into().unwrap()));
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

#[test]
fn tls_takes_all_three_files_and_a_controller_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let e = ControllerConfig::try_from(ControllerSettings {
        tls_cert: Some("c.pem".into()),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("tls_cert given without tls_client_ca and tls_key"),
        "{e}"
    );
    let with = |uri: &str| {
        let (cert, key) = cert_naming(dir.path(), uri);
        ControllerSettings {
            tls_client_ca: Some(cert.clone()),
            tls_cert: Some(cert),
            tls_key: Some(key),
            ..Default::default()
        }
    };
    let e = ControllerConfig::try_from(with("vigil://node/cache/n0"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tls_cert") && e.contains("names vigil://node/cache/n0, not vigil://controller"),
        "{e}"
    );
    let c = ControllerConfig::try_from(with("vigil://controller")).unwrap();
    assert!(c.tls.is_some());
    assert_eq!(c.me.grpc, format!("https://{DEFAULT_GRPC_LISTEN}"));
    let e = ControllerConfig::try_from(ControllerSettings {
        advertise_grpc: Some("http://c1.example:7420".into()),
        ..with("vigil://controller")
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("advertise_grpc") && e.contains("https://"),
        "{e}"
    );
}

#[test]
fn etcd_settings_parse_and_each_mistake_names_its_field() {
    let with = |f: fn(&mut ControllerSettings)| {
        let mut s = ControllerSettings {
            etcd: Some("http://10.0.0.1:2379, http://10.0.0.2:2379".into()),
            name: Some("c1".into()),
            ..Default::default()
        };
        f(&mut s);
        ControllerConfig::try_from(s)
    };
    let c = with(|_| {}).unwrap();
    let cluster = c.cluster.unwrap();
    assert_eq!(
        cluster.endpoints,
        ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
    );
    assert_eq!(cluster.prefix, DEFAULT_ETCD_PREFIX);
    assert_eq!(cluster.lease_secs, DEFAULT_LEADER_LEASE_SECS);
    assert_eq!(c.me.name, "c1");
    assert_eq!(c.me.grpc, format!("http://{DEFAULT_GRPC_LISTEN}"));
    assert_eq!(c.me.sentinel, DEFAULT_SENTINEL_LISTEN);
    type Change = fn(&mut ControllerSettings);
    let cases: [(Change, &str); 7] = [
        (|s| s.etcd = Some("10.0.0.1:2379".into()), "etcd"),
        (|s| s.etcd = Some(" , ".into()), "etcd"),
        (|s| s.etcd_prefix = Some("vigil".into()), "etcd_prefix"),
        (|s| s.leader_lease_secs = Some(0), "leader_lease_secs"),
        (|s| s.name = Some("a/b".into()), "name"),
        (
            |s| s.grpc_listen = Some("0.0.0.0:7420".into()),
            "advertise_grpc",
        ),
        (
            |s| s.advertise_sentinel = Some("nowhere".into()),
            "advertise_sentinel",
        ),
    ];
    for (f, field) in cases {
        let e = with(f).unwrap_err().to_string();
        assert!(e.contains(field), "{field}: {e}");
    }
    let open = with(|s| {
        s.grpc_listen = Some("0.0.0.0:7420".into());
        s.advertise_grpc = Some("http://c1.example:7420".into());
    })
    .unwrap();
    assert_eq!(open.me.grpc, "http://c1.example:7420");
    // Without etcd, nothing of it is needed, and 0.0.0.0 is fine.
    let single = ControllerConfig::try_from(ControllerSettings {
        grpc_listen: Some("0.0.0.0:7420".into()),
        ..Default::default()
    })
    .unwrap();
    assert!(single.cluster.is_none());
}

#[test]
fn a_lease_that_runs_out_between_heartbeats_is_refused_naming_both() {
    let e = ControllerConfig::try_from(ControllerSettings {
        heartbeat_ms: Some(300),
        lease_ms: Some(500),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("lease_ms") && e.contains("heartbeat_ms"), "{e}");
    let ok = ControllerConfig::try_from(ControllerSettings {
        heartbeat_ms: Some(300),
        lease_ms: Some(600),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(ok.settings.lease, Duration::from_millis(600));
    assert_eq!(ok.settings.heartbeat, Duration::from_millis(300));
}

#[test]
fn a_desired_state_refresh_shorter_than_the_heartbeat_is_refused_naming_both() {
    let e = ControllerConfig::try_from(ControllerSettings {
        heartbeat_ms: Some(300),
        desired_refresh_ms: Some(200),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("desired_refresh_ms") && e.contains("heartbeat_ms"),
        "{e}"
    );
    let ok = ControllerConfig::try_from(ControllerSettings {
        desired_refresh_ms: Some(60_000),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(ok.settings.desired_refresh, Duration::from_secs(60));
    assert_eq!(
        ControllerConfig::try_from(ControllerSettings::default())
            .unwrap()
            .settings
            .desired_refresh,
        Duration::from_millis(DEFAULT_DESIRED_REFRESH_MS)
    );
}

#[test]
fn sentinel_security_settings_parse_and_each_mistake_names_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "s3cret\n").unwrap();
    let c = ControllerConfig::try_from(ControllerSettings::default()).unwrap();
    assert!(c.sentinel.options.credentials.is_none() && c.sentinel.tls.is_none());
    assert_eq!(c.sentinel.options.max_clients, DEFAULT_SENTINEL_MAX_CLIENTS);
    assert_eq!(
        c.sentinel.options.idle_timeout,
        Some(Duration::from_secs(DEFAULT_SENTINEL_IDLE_TIMEOUT_SECS))
    );
    let s: ControllerSettings = toml::from_str(&format!(
        "sentinel_password_file = {:?}\nsentinel_user = \"app\"\nsentinel_idle_timeout_secs = 0\nsentinel_max_clients = 5\n",
        file.display().to_string()
    ))
    .unwrap();
    let c = ControllerConfig::try_from(s).unwrap();
    let creds = c.sentinel.options.credentials.unwrap();
    assert_eq!(creds.user(), "app");
    assert!(
        creds.check(b"app", b"s3cret"),
        "the final newline is not the password's"
    );
    assert_eq!(c.sentinel.options.idle_timeout, None);
    assert_eq!(c.sentinel.options.max_clients, 5);
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    type Change = Box<dyn Fn(&mut ControllerSettings)>;
    let cases: Vec<(Change, &str)> = vec![
        (
            Box::new(|s| s.sentinel_user = Some("app".into())),
            "sentinel_user",
        ),
        (
            Box::new(|s| s.sentinel_password_file = Some("/nonexistent/pw".into())),
            "sentinel_password_file",
        ),
        (
            Box::new(move |s| s.sentinel_password_file = Some(empty.clone())),
            "sentinel_password_file",
        ),
        (
            Box::new(|s| s.sentinel_max_clients = Some(0)),
            "sentinel_max_clients",
        ),
        (
            Box::new(|s| s.sentinel_idle_timeout_secs = Some(MAX_IDLE_TIMEOUT_SECS + 1)),
            "sentinel_idle_timeout_secs",
        ),
        (
            Box::new(|s| s.sentinel_tls_cert = Some("c.pem".into())),
            "sentinel_tls_key",
        ),
        (
            Box::new(|s| s.sentinel_tls_client_ca = Some("ca.pem".into())),
            "sentinel_tls_client_ca",
        ),
    ];
    for (change, field) in cases {
        let mut s = ControllerSettings::default();
        change(&mut s);
        let e = ControllerConfig::try_from(s).unwrap_err().to_string();
        assert!(e.contains(field), "{field}: {e}");
    }
}

#[test]
fn etcd_tls_takes_a_ca_alone_or_with_a_key_pair_and_https_urls_only() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_naming(dir.path(), "vigil://controller");
    let https = || Some("https://127.0.0.1:2379".to_string());
    let server_only = ControllerConfig::try_from(ControllerSettings {
        etcd: https(),
        etcd_ca: Some(cert.clone()),
        ..Default::default()
    })
    .unwrap();
    let tls = server_only.cluster.and_then(|c| c.tls).unwrap();
    assert_eq!((tls.ca, tls.identity), (cert.clone(), None));
    let mutual = ControllerConfig::try_from(ControllerSettings {
        etcd: https(),
        etcd_ca: Some(cert.clone()),
        etcd_cert: Some(cert.clone()),
        etcd_key: Some(key.clone()),
        ..Default::default()
    })
    .unwrap();
    let tls = mutual.cluster.and_then(|c| c.tls).unwrap();
    assert_eq!(tls.identity, Some((cert.clone(), key.clone())));

    let mutual = || ControllerSettings {
        etcd: https(),
        etcd_ca: Some(cert.clone()),
        etcd_cert: Some(cert.clone()),
        etcd_key: Some(key.clone()),
        ..Default::default()
    };
    let missing = dir.path().join("missing.pem");
    let cases: Vec<(ControllerSettings, &str, &str)> = vec![
        (
            ControllerSettings {
                etcd: None,
                ..mutual()
            },
            "etcd_ca",
            "without etcd",
        ),
        (
            ControllerSettings {
                etcd_key: None,
                ..mutual()
            },
            "etcd_key",
            "required with etcd_cert",
        ),
        (
            ControllerSettings {
                etcd_cert: None,
                ..mutual()
            },
            "etcd_cert",
            "required with etcd_key",
        ),
        (
            ControllerSettings {
                etcd_ca: None,
                ..mutual()
            },
            "etcd_ca",
            "required with etcd_cert",
        ),
        (
            ControllerSettings {
                etcd: Some("http://127.0.0.1:2379".into()),
                ..mutual()
            },
            "etcd",
            "must be an https:// URL",
        ),
        (
            ControllerSettings {
                etcd: https(),
                ..Default::default()
            },
            "etcd",
            "needs etcd_ca",
        ),
        (
            ControllerSettings {
                etcd_ca: Some(missing.clone()),
                ..mutual()
            },
            "etcd_ca",
            "missing.pem",
        ),
        (
            ControllerSettings {
                etcd_key: Some(cert.clone()),
                ..mutual()
            },
            "etcd_key",
            "cert.pem",
        ),
    ];
    for (settings, field, says) in cases {
        let e = ControllerConfig::try_from(settings)
            .unwrap_err()
            .to_string();
        assert!(e.contains(field) && e.contains(says), "{field}: {e}");
    }
}

/// Every setting's help names its default, and the default named is the constant the code
/// falls back to; a new setting without one must be listed here on purpose.
#[test]
fn the_help_shows_each_default_from_its_constant() {
    let command = ControllerSettings::augment_args(Command::new("vigil-controller"));
    let defaults: [(&str, String); 21] = [
        ("grpc_listen", DEFAULT_GRPC_LISTEN.into()),
        ("sentinel_listen", DEFAULT_SENTINEL_LISTEN.into()),
        ("metrics_listen", DEFAULT_METRICS_LISTEN.into()),
        ("data_dir", DEFAULT_DATA_DIR.into()),
        ("silence_ms", DEFAULT_SILENCE_MS.to_string()),
        ("grace_ms", DEFAULT_GRACE_MS.to_string()),
        (
            "min_failover_interval_ms",
            DEFAULT_MIN_FAILOVER_INTERVAL_MS.to_string(),
        ),
        ("link_bound_ms", DEFAULT_LINK_BOUND_MS.to_string()),
        ("heartbeat_ms", DEFAULT_HEARTBEAT_MS.to_string()),
        ("desired_refresh_ms", DEFAULT_DESIRED_REFRESH_MS.to_string()),
        ("quiet_heartbeat_ms", DEFAULT_QUIET_HEARTBEAT_MS.to_string()),
        ("lease_ms", DEFAULT_LEASE_MS.to_string()),
        ("lease_margin_ms", DEFAULT_LEASE_MARGIN_MS.to_string()),
        ("fence_deadline_ms", DEFAULT_FENCE_DEADLINE_MS.to_string()),
        ("etcd_prefix", DEFAULT_ETCD_PREFIX.into()),
        ("leader_lease_secs", DEFAULT_LEADER_LEASE_SECS.to_string()),
        ("max_datastores", DEFAULT_MAX_DATASTORES.to_string()),
        ("sentinel_user", DEFAULT_SENTINEL_USER.into()),
        (
            "sentinel_max_clients",
            DEFAULT_SENTINEL_MAX_CLIENTS.to_string(),
        ),
        (
            "sentinel_idle_timeout_secs",
            DEFAULT_SENTINEL_IDLE_TIMEOUT_SECS.to_string(),
        ),
        ("hook_timeout_secs", DEFAULT_HOOK_TIMEOUT_SECS.to_string()),
    ];
    // A switch needs no default; etcd is off unless given; the others default to what the
    // host and the listen addresses are, which their help says.
    let checked = vigil_proto::cli::check_defaults_shown(
        &command,
        &defaults,
        &[
            "refuse_unknown",
            "etcd",
            "name",
            "advertise_grpc",
            "advertise_sentinel",
            // Off unless given: no password, no TLS.
            "sentinel_password_file",
            "sentinel_tls_cert",
            "sentinel_tls_key",
            "sentinel_tls_client_ca",
            "tls_cert",
            "tls_key",
            "tls_client_ca",
            "etcd_ca",
            "etcd_cert",
            "etcd_key",
            // Off unless given: no hooks.
            "notify_command",
            "client_reconfig_command",
        ],
    );
    assert_eq!(checked, Ok(()));
}
