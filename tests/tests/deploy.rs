//! The files operators deploy with (`deploy/`), checked as operators' own tools check them:
//! `systemd-analyze verify` on the units, `kubernetes-validate` against the Kubernetes OpenAPI
//! schemas, `promtool` on the alert rules and their tests and on the dashboard's queries. And
//! checked against the binaries they run: every setting they name is one the daemons take, the
//! capabilities they grant are the agent's, and every metric they read is one the daemons serve.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use yaml_rust2::{Yaml, YamlLoader};

use vigil_tests::{AGENT_CAPABILITIES, output_within, workspace_bin};

/// Longest any one checking tool may take.
const TOOL_WITHIN: Duration = Duration::from_secs(120);
/// The Kubernetes version the manifests are validated against: the oldest one still supported
/// upstream that has every field they use (`appArmorProfile` came in 1.30).
const KUBERNETES_VERSION: &str = "1.33.0";

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn yaml_docs(path: &Path) -> Result<Vec<Yaml>> {
    YamlLoader::load_from_str(&read(path)?).with_context(|| format!("parsing {}", path.display()))
}

/// Runs `cmd` (bounded) and fails with its output unless it succeeds.
fn succeeds(cmd: &mut Command) -> Result<String> {
    let out = output_within(cmd, TOOL_WITHIN)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("{cmd:?} failed ({}):\n{stdout}\n{stderr}", out.status);
    }
    Ok(stdout + &stderr)
}

/// The files of `dir` whose names end with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    out.retain(|p| p.to_string_lossy().ends_with(suffix));
    out.sort();
    Ok(out)
}

/// The values of `key=` lines in a unit file, split on whitespace.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .flat_map(|v| v.split_whitespace().map(str::to_string))
        .collect()
}

#[test]
fn the_systemd_units_pass_systemd_analyze_verify() -> Result<()> {
    // verify loads a unit the way systemd would, in a root of our own: the units where an
    // operator installs them, the binaries they start where the units name them, and the
    // distribution's own units they are ordered against.
    let root = tempfile::tempdir()?;
    let r = root.path();
    for dir in [
        "etc/systemd/system",
        "usr/local/bin",
        "usr/bin",
        "usr/lib/systemd",
    ] {
        std::fs::create_dir_all(r.join(dir))?;
    }
    succeeds(
        Command::new("cp")
            .args(["-r", "/usr/lib/systemd/system"])
            .arg(r.join("usr/lib/systemd")),
    )?;
    for bin in ["vigil-agent", "vigil-controller"] {
        std::fs::copy(workspace_bin(bin)?, r.join("usr/local/bin").join(bin))?;
    }
    std::fs::copy("/usr/bin/install", r.join("usr/bin/install"))?;
    let units = files(&deploy().join("systemd"), ".service")?;
    assert_eq!(units.len(), 2, "{units:?}");
    let mut names = Vec::new();
    for unit in &units {
        let name = unit.file_name().context("a unit's name")?;
        std::fs::copy(unit, r.join("etc/systemd/system").join(name))?;
        names.push(name.to_owned());
        // Both daemons say READY=1 and WATCHDOG=1 (tests/tests/sd_notify.rs checks they do).
        let text = read(unit)?;
        assert_eq!(unit_values(&text, "Type"), ["notify"], "{}", unit.display());
        assert!(
            !unit_values(&text, "WatchdogSec").is_empty(),
            "{}",
            unit.display()
        );
    }
    let out = succeeds(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(format!("--root={}", r.display()))
            .args(&names),
    )?;
    // An unknown or misspelt key is only a warning to verify: none is allowed here.
    assert_eq!(out.trim(), "", "systemd-analyze verify said something");
    Ok(())
}

#[test]
fn the_agents_deploy_files_grant_exactly_its_capabilities() -> Result<()> {
    // What the agent checks for at start, and CAP_SYS_NICE for its real-time priority.
    let mut wanted: BTreeSet<String> = AGENT_CAPABILITIES
        .iter()
        .map(|c| c.to_uppercase())
        .collect();
    wanted.insert("SYS_NICE".into());
    let unit = read(&deploy().join("systemd/vigil-agent.service"))?;
    for key in ["AmbientCapabilities", "CapabilityBoundingSet"] {
        let granted: BTreeSet<String> = unit_values(&unit, key)
            .iter()
            .map(|c| c.trim_start_matches("CAP_").to_string())
            .collect();
        assert_eq!(granted, wanted, "{key} in vigil-agent.service");
    }
    let docs = yaml_docs(&deploy().join("kubernetes/agent-daemonset.yaml"))?;
    let container = &docs[0]["spec"]["template"]["spec"]["containers"][0];
    let caps = &container["securityContext"]["capabilities"];
    let added: BTreeSet<String> = caps["add"]
        .as_vec()
        .context("capabilities.add")?
        .iter()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect();
    assert_eq!(added, wanted, "the DaemonSet's capabilities");
    assert_eq!(caps["drop"][0].as_str(), Some("ALL"));
    Ok(())
}

#[test]
fn the_kubernetes_manifests_are_valid_and_all_in_the_kustomization() -> Result<()> {
    let dir = deploy().join("kubernetes");
    let kustomization = &yaml_docs(&dir.join("kustomization.yaml"))?[0];
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_vec()
        .context("resources")?
        .iter()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    let present: BTreeSet<String> = files(&dir, ".yaml")?
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .filter(|n| n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present, "kustomization.yaml lists every manifest");
    let mut kinds = BTreeSet::new();
    for name in &present {
        let path = dir.join(name);
        for doc in yaml_docs(&path)? {
            kinds.insert(doc["kind"].as_str().unwrap_or_default().to_string());
        }
        // --strict refuses a field the schema does not have: a misspelt one is caught.
        let out = succeeds(
            Command::new("kubernetes-validate")
                .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
                .arg(&path),
        )?;
        assert!(
            out.contains("passed") && !out.contains("ERROR") && !out.contains("WARN"),
            "{name}: {out}"
        );
    }
    for kind in [
        "DaemonSet",
        "StatefulSet",
        "Service",
        "ConfigMap",
        "Namespace",
    ] {
        assert!(kinds.contains(kind), "no {kind} among {kinds:?}");
    }
    Ok(())
}

/// Every `VIGIL_*` name in `text`.
fn vigil_variables(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("VIGIL_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        out.insert(name);
    }
    out
}

#[test]
fn every_setting_the_deploy_files_name_is_one_the_daemons_take() -> Result<()> {
    let help = |bin: &str, args: &[&str]| -> Result<String> {
        succeeds(Command::new(workspace_bin(bin)?).args(args))
    };
    let agent = help("vigil-agent", &["run", "--help"])?;
    let controller = help("vigil-controller", &["--help"])?;
    let checks = [
        ("systemd/vigil-agent.service", &agent),
        ("kubernetes/agent-daemonset.yaml", &agent),
        ("systemd/vigil-controller.service", &controller),
        ("kubernetes/controller-statefulset.yaml", &controller),
    ];
    for (file, help) in checks {
        let names = vigil_variables(&read(&deploy().join(file))?);
        assert!(!names.is_empty(), "{file} names no setting");
        for name in names {
            assert!(
                vigil_variables(help).contains(&name),
                "{file} sets {name}, which the daemon does not take"
            );
        }
    }
    Ok(())
}

#[test]
fn the_alert_rules_pass_promtool_and_each_has_a_test() -> Result<()> {
    let dir = deploy().join("prometheus");
    succeeds(
        Command::new("promtool")
            .args(["check", "rules"])
            .arg(dir.join("alerts.yaml")),
    )?;
    succeeds(
        Command::new("promtool")
            .args(["check", "config"])
            .arg(dir.join("prometheus.yml")),
    )?;
    let out = succeeds(
        Command::new("promtool")
            .args(["test", "rules", "alerts_test.yaml"])
            .current_dir(&dir),
    )?;
    assert!(out.contains("SUCCESS"), "{out}");
    // Every rule is made to fire in some test case.
    let rules = &yaml_docs(&dir.join("alerts.yaml"))?[0]["groups"][0]["rules"];
    let alerts: BTreeSet<&str> = rules
        .as_vec()
        .context("rules")?
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    let tests = yaml_docs(&dir.join("alerts_test.yaml"))?;
    let mut fired = BTreeSet::new();
    for case in tests[0]["tests"].as_vec().context("tests")? {
        for t in case["alert_rule_test"]
            .as_vec()
            .context("alert_rule_test")?
        {
            if t["exp_alerts"].as_vec().is_some_and(|e| !e.is_empty()) {
                fired.extend(t["alertname"].as_str());
            }
        }
    }
    let untested: Vec<&&str> = alerts.iter().filter(|a| !fired.contains(**a)).collect();
    assert!(untested.is_empty(), "rules no test fires: {untested:?}");
    assert!(alerts.len() >= 10, "{alerts:?}");
    Ok(())
}

/// Every query of the Grafana dashboard, with Grafana's variables given plain values.
fn dashboard_queries() -> Result<Vec<String>> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(&deploy().join("grafana/vigil.json"))?)?;
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().context("panels")? {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().context("a target without expr")?;
            out.push(
                expr.replace("$__rate_interval", "5m")
                    .replace("$datastore", ".*"),
            );
        }
    }
    Ok(out)
}

#[test]
fn the_dashboards_queries_are_valid_promql() -> Result<()> {
    let queries = dashboard_queries()?;
    assert!(queries.len() >= 10, "{queries:?}");
    // promtool parses PromQL in rule files; YAML reads this JSON as it is.
    let rules: Vec<serde_json::Value> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| serde_json::json!({"record": format!("vigil:dashboard:{i}"), "expr": q}))
        .collect();
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(
        file.path(),
        serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string(),
    )?;
    let out = succeeds(
        Command::new("promtool")
            .args(["check", "rules"])
            .arg(file.path()),
    )?;
    assert!(
        out.contains(&format!("{} rules found", queries.len())),
        "{out}"
    );
    Ok(())
}

#[test]
fn the_containerfile_builds_the_workspaces_binaries_with_its_toolchain() -> Result<()> {
    let text = read(&deploy().join("Containerfile"))?;
    let manifest = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"))?;
    let rust = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .context("the workspace's rust-version")?
        .trim_matches('"');
    assert!(
        text.contains(&format!("rust:{rust}-")),
        "the build stage is not on Rust {rust}"
    );
    // The steps are the ones a host runs, so CI runs them too.
    assert!(text.contains("cargo xtask setup --build-only"));
    for bin in ["vigil-agent", "vigil-controller", "vigil"] {
        assert!(
            text.contains(&format!("target/release/{bin}")),
            "the image lacks {bin}"
        );
        workspace_bin(bin)?;
    }
    Ok(())
}

/// Writes `text` with every `/etc/vigil/tls/` path pointed at `certs`, a folder `vigil certs`
/// filled, and returns the file: the settings are checked with real certificates in place.
fn with_certs(text: &str, certs: &Path, dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    let tls = format!("{}/", certs.display());
    std::fs::write(&path, text.replace("/etc/vigil/tls/", &tls))?;
    Ok(path)
}

/// Runs `bin args --print-config` with `env`, and checks every key of the file is taken from it.
fn prints_config(bin: &str, args: &[&str], file: &Path, env: &[(&str, &str)]) -> Result<()> {
    let mut cmd = Command::new(workspace_bin(bin)?);
    cmd.args(args)
        .arg("--config")
        .arg(file)
        .arg("--print-config");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let printed = succeeds(&mut cmd)?;
    let text = read(file)?;
    let source = format!("# file {}", file.display());
    // The top-level settings: tables ([[datastore]]) come after them.
    for line in text.lines().take_while(|l| !l.starts_with('[')) {
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        let key = key.trim();
        if key.starts_with('#')
            || line.starts_with(' ')
            || !key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            continue;
        }
        assert!(
            printed
                .lines()
                .any(|l| l.starts_with(&format!("{key} = ")) && l.ends_with(&source)),
            "{bin}: {key} is not taken from {}:\n{printed}",
            file.display()
        );
    }
    Ok(())
}

#[test]
fn the_example_settings_are_accepted_by_the_daemons() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let certs = dir.path().join("tls");
    succeeds(
        Command::new(workspace_bin("vigil")?)
            .args(["certs", "--datastore", "cache", "--nodes", "node-1"])
            .arg("--out")
            .arg(&certs),
    )?;
    // The controller's example also speaks TLS to etcd, with files of etcd's own CA.
    for (from, to) in [
        ("ca.pem", "etcd-ca.pem"),
        ("controller.pem", "etcd-client.pem"),
        ("controller-key.pem", "etcd-client-key.pem"),
    ] {
        std::fs::copy(certs.join(from), certs.join(to))?;
    }
    // The settings files the systemd units read.
    let agent = read(&deploy().join("config/agent.toml"))?;
    let file = with_certs(&agent, &certs, dir.path(), "agent.toml")?;
    prints_config("vigil-agent", &["run"], &file, &[])?;
    let controller = read(&deploy().join("config/controller.toml"))?;
    let file = with_certs(&controller, &certs, dir.path(), "controller.toml")?;
    prints_config("vigil-controller", &[], &file, &[])?;

    // The ConfigMaps of the manifests, with what the pods' environment adds.
    let configmap = |name: &str, key: &str| -> Result<String> {
        let docs = yaml_docs(&deploy().join("kubernetes").join(name))?;
        docs[0]["data"][key]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("{name} has no {key}"))
    };
    let file = with_certs(
        &configmap("agent-config.yaml", "agent.toml")?,
        &certs,
        dir.path(),
        "k8s-agent.toml",
    )?;
    prints_config(
        "vigil-agent",
        &["run"],
        &file,
        &[
            ("VIGIL_NODE_ID", "node-1"),
            ("VIGIL_ADVERTISE", "10.0.0.1:6379"),
            ("VIGIL_METRICS_LISTEN", "10.0.0.1:9431"),
            (
                "VIGIL_TLS_CERT",
                &certs.join("node-1.pem").to_string_lossy(),
            ),
            (
                "VIGIL_TLS_KEY",
                &certs.join("node-1-key.pem").to_string_lossy(),
            ),
        ],
    )?;
    let file = with_certs(
        &configmap("controller-config.yaml", "controller.toml")?,
        &certs,
        dir.path(),
        "k8s-controller.toml",
    )?;
    prints_config(
        "vigil-controller",
        &[],
        &file,
        &[
            ("VIGIL_NAME", "vigil-controller-0"),
            (
                "VIGIL_ADVERTISE_GRPC",
                "https://vigil-controller-0.vigil-controller:7420",
            ),
            (
                "VIGIL_ADVERTISE_SENTINEL",
                "vigil-controller-0.vigil-controller:26379",
            ),
        ],
    )?;
    Ok(())
}

/// The metric names `expr` reads (PromQL): `vigil_*` and Prometheus' own `up`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut rest = expr;
    while let Some(at) = rest.find("vigil_") {
        let before = rest[..at].chars().last();
        let name: String = rest[at..].chars().take_while(|&c| ident(c)).collect();
        rest = &rest[at + name.len()..];
        // Part of a longer identifier, or a recording rule's name: not a metric read.
        if before.is_some_and(ident) || name.contains(':') {
            continue;
        }
        out.insert(name);
    }
    out
}

/// The metric families a `/metrics` page declares (`# TYPE name kind`).
fn families(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Whether sample name `name` belongs to one of `families` (a counter's `_total`, a histogram's
/// `_bucket`, `_sum` and `_count`).
fn served(name: &str, families: &BTreeSet<String>) -> bool {
    ["", "_total", "_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|suffix| name.strip_suffix(suffix))
        .any(|family| families.contains(family))
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_read_is_served() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    vigil_tests::require_root();
    let _serial = vigil_tests::serial();
    // A series appears once there is something to count: a hook that runs, a failover, an
    // alert, a kernel event. So this controller has a notification hook, and its primary is
    // killed.
    let dir = tempfile::tempdir()?;
    let hook = dir.path().join("notify.sh");
    std::fs::write(&hook, "#!/bin/sh\nexit 0\n")?;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
    let hook = hook.to_string_lossy().into_owned();
    let controller_port = vigil_tests::free_port()?;
    let listen = format!("127.0.0.1:{controller_port}");
    let mut store = vigil_tests::VigilStore::start(
        "cache",
        1,
        &[
            "--metrics-listen",
            &listen,
            "--notify-command",
            &hook,
            "--grace-ms",
            "300",
        ],
        &[],
    )?;
    // One more agent, of its own server, serving its /metrics.
    let server = vigil_tests::RedisServer::start()?;
    let agent_port = vigil_tests::free_port()?;
    let agent_listen = format!("127.0.0.1:{agent_port}");
    let _agent = vigil_tests::Agent::join(
        None,
        &store.controller,
        "other",
        "a0",
        &format!("127.0.0.1:{}", server.port),
        &["--metrics-listen", &agent_listen],
    )?;
    let page = |port: u16, wanted: &str| -> Result<String> {
        vigil_tests::wait_until(vigil_tests::WAIT, wanted, || {
            let (code, body) = vigil_tests::http_get(port, "/metrics").ok()?;
            (code == 200 && body.contains(wanted)).then_some(body)
        })
    };
    // The sample, not the HELP line ("1 while the agent is ready ...").
    page(agent_port, "\nvigil_agent_ready 1\n")?;
    store.wait_healthy()?;
    let primary = store.primary()?;
    store.kill(primary)?;
    // A stopped server is a kernel event its agent counts.
    server.signal(nix::sys::signal::Signal::SIGSTOP)?;
    let mut all = families(&page(
        controller_port,
        "vigil_controller_hook_runs_total{hook=\"notify\",outcome=\"ok\"}",
    )?);
    all.extend(families(&page(
        controller_port,
        "vigil_controller_failovers_total{",
    )?));
    all.extend(families(&page(
        agent_port,
        "vigil_agent_kernel_events_total{event=\"stopped\"}",
    )?));
    server.signal(nix::sys::signal::Signal::SIGCONT)?;
    all.insert("up".into());

    let mut read = BTreeSet::new();
    let rules = &yaml_docs(&deploy().join("prometheus/alerts.yaml"))?[0]["groups"][0]["rules"];
    for rule in rules.as_vec().context("rules")? {
        read.extend(metric_names(
            rule["expr"].as_str().context("a rule's expr")?,
        ));
    }
    for query in dashboard_queries()? {
        read.extend(metric_names(&query));
    }
    assert!(read.len() >= 15, "{read:?}");
    let missing: Vec<&String> = read.iter().filter(|n| !served(n, &all)).collect();
    assert!(
        missing.is_empty(),
        "read by the rules or the dashboard, served by neither daemon: {missing:?}\nserved: {all:?}"
    );
    Ok(())
}
