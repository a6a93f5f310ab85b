//! INFO, as Sentinel answers it: the Server, Clients, Stats, CPU and Sentinel sections, in that
//! order, as one bulk string. Exporters read `redis_mode:sentinel` from Server, then the Sentinel
//! section's counters and one `masterN:name=..,status=..,address=..,slaves=..,sentinels=..` line
//! per data store.
use std::{
    fmt::Write,
    time::{SystemTime, UNIX_EPOCH},
};

use super::{
    endpoint::{Endpoint, REDIS_VERSION, Stats},
    instances::master_status,
    resp::{Reply, text},
    topology::StoreView,
};

/// The sections Sentinel has, in the order it writes them.
const SECTIONS: [&str; 5] = ["server", "clients", "stats", "cpu", "sentinel"];

/// The answer to `INFO [section ...]`. No section, `default`, `all` or `everything` is every
/// section; sections Sentinel does not have are left out, as Sentinel does.
pub fn answer(args: &[Vec<u8>], endpoint: &Endpoint) -> Reply {
    let asked: Vec<String> = args[1..].iter().map(|a| text(a).to_lowercase()).collect();
    let every = asked.is_empty()
        || asked
            .iter()
            .any(|a| matches!(a.as_str(), "default" | "all" | "everything"));
    let mut out = String::new();
    for section in SECTIONS {
        if !every && !asked.iter().any(|a| a == section) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let body = match section {
            "server" => server(endpoint),
            "clients" => clients(endpoint),
            "stats" => stats(endpoint),
            "cpu" => cpu(),
            _ => sentinel(
                &endpoint.published.all(),
                endpoint.published.others().len() + 1,
            ),
        };
        out.push_str(&body);
    }
    Reply::Bulk(out.into_bytes())
}

/// `# Title\r\n` and one `key:value\r\n` line per field.
fn section(title: &str, fields: &[(&str, String)]) -> String {
    let mut s = format!("# {title}\r\n");
    for (k, v) in fields {
        let _ = write!(s, "{k}:{v}\r\n");
    }
    s
}

fn server(e: &Endpoint) -> String {
    let uptime = e.started.elapsed().as_secs();
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    let kernel = |f: &str| {
        std::fs::read_to_string(format!("/proc/sys/kernel/{f}"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let os = format!(
        "{} {} {}",
        kernel("ostype"),
        kernel("osrelease"),
        std::env::consts::ARCH
    );
    let executable = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    section(
        "Server",
        &[
            ("redis_version", REDIS_VERSION.into()),
            ("redis_git_sha1", "00000000".into()),
            ("redis_git_dirty", "0".into()),
            ("redis_build_id", "0".into()),
            ("redis_mode", "sentinel".into()),
            ("os", os.trim().into()),
            ("arch_bits", usize::BITS.to_string()),
            ("multiplexing_api", "epoll".into()),
            ("process_id", std::process::id().to_string()),
            ("process_supervised", "no".into()),
            ("run_id", e.run_id.clone()),
            ("tcp_port", e.listen.port().to_string()),
            ("server_time_usec", now_us.to_string()),
            ("uptime_in_seconds", uptime.to_string()),
            ("uptime_in_days", (uptime / 86_400).to_string()),
            ("hz", "10".into()),
            ("configured_hz", "10".into()),
            ("executable", executable),
            ("config_file", String::new()),
            ("vigil_version", env!("CARGO_PKG_VERSION").into()),
        ],
    )
}

fn clients(e: &Endpoint) -> String {
    let all = e.clients.all();
    let pubsub = all.iter().filter(|c| c.sub + c.psub > 0).count();
    section(
        "Clients",
        &[
            ("connected_clients", all.len().to_string()),
            ("cluster_connections", "0".into()),
            ("maxclients", e.options.max_clients.to_string()),
            ("client_recent_max_input_buffer", "0".into()),
            ("client_recent_max_output_buffer", "0".into()),
            ("blocked_clients", "0".into()),
            ("tracking_clients", "0".into()),
            ("pubsub_clients", pubsub.to_string()),
            ("clients_in_timeout_table", "0".into()),
        ],
    )
}

fn stats(e: &Endpoint) -> String {
    let s = &e.stats;
    let all = e.clients.all();
    let channels: usize = all.iter().map(|c| c.sub).sum();
    let patterns: usize = all.iter().map(|c| c.psub).sum();
    section(
        "Stats",
        &[
            (
                "total_connections_received",
                Stats::read(&s.connections).to_string(),
            ),
            (
                "total_commands_processed",
                Stats::read(&s.commands).to_string(),
            ),
            ("instantaneous_ops_per_sec", "0".into()),
            ("rejected_connections", Stats::read(&s.rejected).to_string()),
            ("pubsub_channels", channels.to_string()),
            ("pubsub_patterns", patterns.to_string()),
            ("total_error_replies", Stats::read(&s.errors).to_string()),
        ],
    )
}

/// CPU seconds of the controller process, from /proc/self/stat (utime and stime, in the kernel's
/// USER_HZ ticks, which the /proc interface fixes at 100 on the architectures vigil runs on).
fn cpu() -> String {
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, r)| r.split_whitespace().collect());
    let seconds = |i: usize| {
        let ticks: f64 = rest.get(i).and_then(|t| t.parse().ok()).unwrap_or(0.0);
        format!("{:.6}", ticks / USER_HZ)
    };
    section(
        "CPU",
        &[
            // Fields 14 (utime) and 15 (stime) of stat(5), counted from the state (field 3).
            ("used_cpu_sys", seconds(12)),
            ("used_cpu_user", seconds(11)),
            ("used_cpu_sys_children", "0.000000".into()),
            ("used_cpu_user_children", "0.000000".into()),
        ],
    )
}

/// Sentinel's own section: its counters, then one line per data store with a primary, each
/// naming how many `sentinels` (controllers' endpoints, this one included) there are.
pub fn sentinel(stores: &[StoreView], sentinels: usize) -> String {
    let masters: Vec<String> = stores
        .iter()
        .filter_map(|v| {
            let p = v.primary.as_ref()?;
            Some(format!(
                "name={},status={},address={}:{},slaves={},sentinels={sentinels}",
                v.name,
                master_status(v, p),
                p.address.host,
                p.address.port,
                v.replicas.len()
            ))
        })
        .collect();
    let mut fields = vec![
        ("sentinel_masters", masters.len().to_string()),
        ("sentinel_tilt", "0".into()),
        ("sentinel_tilt_since_seconds", "-1".into()),
        ("sentinel_running_scripts", "0".into()),
        ("sentinel_scripts_queue_length", "0".into()),
        ("sentinel_simulate_failure_flags", "0".into()),
    ];
    let keys: Vec<String> = (0..masters.len()).map(|i| format!("master{i}")).collect();
    for (k, m) in keys.iter().zip(masters) {
        fields.push((k.as_str(), m));
    }
    section("Sentinel", &fields)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::sentinel::{instances::tests::member, topology::Published};

    fn endpoint(stores: Vec<StoreView>) -> Endpoint {
        let p = Published::new();
        stores.into_iter().for_each(|v| p.set(v));
        Endpoint::new(
            Arc::clone(&p),
            "127.0.0.1:26379".parse().unwrap(),
            Default::default(),
        )
    }

    fn store(name: &str, primary_down: bool, down: bool) -> StoreView {
        StoreView {
            name: name.into(),
            epoch: 1,
            primary: Some(member("a", 7000, down, false)),
            replicas: vec![
                member("b", 7001, false, false),
                member("c", 7002, true, false),
            ],
            primary_down,
            ..StoreView::default()
        }
    }

    fn info(e: &Endpoint, words: &[&str]) -> String {
        let args: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        match answer(&args, e) {
            Reply::Bulk(b) => String::from_utf8(b).unwrap(),
            other => panic!("INFO is a bulk string, got {other:?}"),
        }
    }

    #[test]
    fn the_sentinel_section_has_sentinels_counters_and_a_line_per_master() {
        let e = endpoint(vec![
            store("cache", false, false),
            store("queue", true, true),
            StoreView {
                name: "new".into(),
                ..StoreView::default()
            },
        ]);
        assert_eq!(
            info(&e, &["INFO", "sentinel"]),
            "# Sentinel\r\n\
             sentinel_masters:2\r\n\
             sentinel_tilt:0\r\n\
             sentinel_tilt_since_seconds:-1\r\n\
             sentinel_running_scripts:0\r\n\
             sentinel_scripts_queue_length:0\r\n\
             sentinel_simulate_failure_flags:0\r\n\
             master0:name=cache,status=ok,address=127.0.0.1:7000,slaves=2,sentinels=1\r\n\
             master1:name=queue,status=odown,address=127.0.0.1:7000,slaves=2,sentinels=1\r\n"
        );
        assert!(sentinel(&[store("x", false, true)], 1).contains("status=sdown"));
    }

    #[test]
    fn every_section_by_default_in_sentinels_order_and_only_those_asked_for_otherwise() {
        let e = endpoint(vec![store("cache", false, false)]);
        let titles = |t: &str| -> Vec<String> {
            t.lines()
                .filter_map(|l| l.strip_prefix("# ").map(str::to_string))
                .collect()
        };
        let all = ["Server", "Clients", "Stats", "CPU", "Sentinel"];
        for words in [&["INFO"][..], &["info", "ALL"], &["INFO", "everything"]] {
            assert_eq!(titles(&info(&e, words)), all);
        }
        assert_eq!(
            titles(&info(&e, &["INFO", "Sentinel", "server"])),
            ["Server", "Sentinel"]
        );
        assert_eq!(info(&e, &["INFO", "keyspace"]), "");
        // Sections are parted by an empty line; every line is `key:value` or a title.
        let text = info(&e, &["INFO"]);
        assert!(text.contains("\r\n\r\n# Clients\r\n"));
        for line in text
            .split("\r\n")
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            assert!(line.split_once(':').is_some(), "{line:?}");
        }
    }

    #[test]
    fn the_server_section_says_sentinel_mode_a_version_and_the_port() {
        let e = endpoint(vec![]);
        let text = info(&e, &["INFO", "server"]);
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}:")).map(str::to_string))
        };
        assert_eq!(field("redis_mode").as_deref(), Some("sentinel"));
        assert_eq!(field("redis_version").as_deref(), Some(REDIS_VERSION));
        assert_eq!(field("tcp_port").as_deref(), Some("26379"));
        assert_eq!(field("run_id").map(|r| r.len()), Some(40));
        assert_ne!(field("run_id"), Some(e.myid.clone()));
        assert!(field("uptime_in_seconds").is_some_and(|u| u.parse::<u64>().is_ok()));
        let cpu = info(&e, &["INFO", "cpu"]);
        assert!(cpu.contains("used_cpu_sys:") && cpu.contains("used_cpu_user:"));
    }
}
