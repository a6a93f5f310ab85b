//! `cargo xtask bench safety`: the safety matrix (every fault of `vigil_tests::safety::Fault`)
//! run `--runs` times against vigil and against Redis Sentinel (3 sentinels, quorum 2, down-after
//! 100 ms) in the same run, each fault on fresh nodes. For each fault and system it prints what
//! the checker counted, summed over the runs (times are medians: from the fault to the promotion
//! the role monitor saw, to every endpoint naming the new primary, and the longest stretch with no
//! write acknowledged to any writer), and ends with one summary
//! line. `--fault` narrows the matrix; the summary line then covers only what ran.
use anyhow::{Result, bail};
use vigil_tests::safety::{self as matrix, Fault, Nodes, Plan, Report, VigilSystem};

use super::sentinel_system::SentinelSystem;

/// Sentinel's down-after, as in the failover bench's fast setting.
const DOWN_AFTER_MS: u64 = 100;

/// The systems, in the order each fault runs them.
const SYSTEMS: [&str; 2] = ["vigil", "sentinel100"];

/// One system's results under one fault, summed over the runs that completed.
#[derive(Default)]
struct Row {
    reports: Vec<Report>,
    errors: Vec<String>,
}

impl Row {
    fn sum(&self, count: impl Fn(&Report) -> u64) -> u64 {
        self.reports.iter().map(count).sum()
    }

    /// The median of `ms` over the runs that have it.
    fn p50(&self, ms: impl Fn(&Report) -> Option<f64>) -> Option<f64> {
        let mut all: Vec<f64> = self.reports.iter().filter_map(ms).collect();
        all.sort_by(f64::total_cmp);
        all.get(all.len() / 2).copied()
    }
}

pub fn run(runs: u32, only: &[String]) -> Result<()> {
    if let Some(unknown) = only
        .iter()
        .find(|name| !Fault::ALL.iter().any(|f| f.name() == name.as_str()))
    {
        bail!("no fault is called {unknown:?}");
    }
    let faults: Vec<Fault> = Fault::ALL
        .into_iter()
        .filter(|f| only.is_empty() || only.iter().any(|name| name == f.name()))
        .collect();
    vigil_tests::use_bin_dir(crate::root().join("target/release"));
    vigil_tests::quiet();
    let mut rows: Vec<(Fault, &str, Row)> = Vec::new();
    for fault in faults {
        for system in SYSTEMS {
            rows.push((fault, system, Row::default()));
        }
    }
    for round in 1..=runs {
        for (fault, system, row) in &mut rows {
            println!("==> run {round}/{runs}: {system}, {}", fault.name());
            match one(*fault, system) {
                Ok(report) => {
                    println!("    {}", report.line());
                    row.reports.push(report);
                }
                Err(e) => {
                    println!("    failed: {e:#}");
                    row.errors.push(format!("{e:#}"));
                }
            }
        }
    }
    print_table(&rows);
    let total = |system: &str, count: &dyn Fn(&Report) -> u64| -> u64 {
        rows.iter()
            .filter(|(_, s, _)| *s == system)
            .map(|(_, _, row)| row.sum(count))
            .sum()
    };
    let done = |system: &str| -> usize {
        rows.iter()
            .filter(|(_, s, _)| *s == system)
            .map(|(_, _, row)| row.reports.len())
            .sum()
    };
    let failed: usize = rows.iter().map(|(_, _, row)| row.errors.len()).sum();
    if failed > 0 {
        println!(
            "{failed} runs failed before they could be counted (above, and in the table's last column)"
        );
    }
    println!(
        "safety: faults={} wait_acked_lost={} splitbrain_writes={} dual_primary_ms={} readonly_errors={}; sentinel100 wait_acked_lost={} splitbrain_writes={}",
        done("vigil"),
        total("vigil", &|r| r.tally.wait_acked_lost as u64),
        total("vigil", &|r| r.tally.splitbrain_writes as u64),
        total("vigil", &|r| r.tally.dual_primary_ms),
        total("vigil", &|r| r.tally.readonly_errors as u64),
        total("sentinel100", &|r| r.tally.wait_acked_lost as u64),
        total("sentinel100", &|r| r.tally.splitbrain_writes as u64),
    );
    Ok(())
}

/// One fault against one system, on nodes of its own.
fn one(fault: Fault, system: &str) -> Result<Report> {
    let mut nodes = Nodes::start(fault.topology())?;
    if system == "vigil" {
        let mut vigil = VigilSystem::start(&nodes)?;
        matrix::run(fault, &mut nodes, &mut vigil, Plan::default())
    } else {
        let mut sentinel = SentinelSystem::start(&nodes, DOWN_AFTER_MS)?;
        // Sentinel's leader election and failover take seconds after +odown.
        let plan = Plan {
            promotion_limit: std::time::Duration::from_secs(30),
            ..Plan::default()
        };
        matrix::run(fault, &mut nodes, &mut sentinel, plan)
    }
}

fn print_table(rows: &[(Fault, &str, Row)]) {
    println!();
    println!(
        "{:<19} {:<12} {:>5} {:>18} {:>12} {:>13} {:>10} {:>16} {:>8} {:>18} {:>10} {:>9} {:>7}",
        "fault",
        "system",
        "runs",
        "promoted/named ms",
        "no write ms",
        "acked (wait)",
        "wait lost",
        "splitbrain(lost)",
        "dual ms",
        "readonly(endpoint)",
        "plain lost",
        "unsettled",
        "failed"
    );
    for (fault, system, row) in rows {
        let ms = |v: Option<f64>| v.map_or("none".to_string(), |ms| format!("{ms:.0}"));
        let promoted = format!(
            "{}/{}",
            ms(row.p50(|r| r.promotion_ms)),
            ms(row.p50(|r| r.published_ms))
        );
        let acked = format!(
            "{} ({})",
            row.sum(|r| (r.tally.acked_plain + r.tally.acked_wait) as u64),
            row.sum(|r| r.tally.acked_wait as u64)
        );
        let splitbrain = format!(
            "{} ({})",
            row.sum(|r| r.tally.splitbrain_writes as u64),
            row.sum(|r| r.tally.splitbrain_lost as u64)
        );
        println!(
            "{:<19} {:<12} {:>5} {:>18} {:>12} {:>13} {:>10} {:>16} {:>8} {:>18} {:>10} {:>9} {:>7}",
            fault.name(),
            system,
            row.reports.len(),
            promoted,
            ms(row.p50(|r| Some(r.tally.no_write_ms as f64))),
            acked,
            row.sum(|r| r.tally.wait_acked_lost as u64),
            splitbrain,
            row.sum(|r| r.tally.dual_primary_ms),
            format!(
                "{} ({})",
                row.sum(|r| r.tally.readonly_errors as u64),
                row.sum(|r| r.readonly_via_endpoint as u64)
            ),
            row.sum(|r| r.tally.plain_lost as u64),
            row.reports.iter().filter(|r| !r.settled).count(),
            row.errors.len()
        );
    }
    println!();
}
