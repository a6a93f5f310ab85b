//! The Linux capabilities the agent needs, in one table ([`NEEDED`]), and the check made once at
//! start: the effective set is read and every capability missing is named in one error, so the
//! agent runs as an ordinary user holding exactly these (root is not needed, and not advised).
//!
//! Each entry was found by running the agent as an unprivileged user without it:
//!
//! - `CAP_BPF`: without it no map can be created;
//! - `CAP_PERFMON`: without it the tracing programs cannot be loaded (and the kernel would not
//!   let them read kernel memory);
//! - `CAP_NET_ADMIN`: the fence (its `cgroup_skb` programs on the server's cgroup, and client
//!   connections destroyed with netlink sock_diag);
//! - `CAP_SYS_PTRACE`: reading `/proc/<pid>/fd` of a server that runs as another user finds the
//!   process behind the port (and `/proc/<pid>/syscall` tells a futex wait);
//! - `CAP_DAC_READ_SEARCH`: tracefs (`/sys/kernel/tracing`, mode 0700) holds the tracepoint
//!   layouts, and `/proc/<pid>/fd` of another user's process is mode 0500.
//!
//! Not needed: `CAP_SYS_ADMIN` (only to mount tracefs, bpffs or cgroup2 when the host has not:
//! [`conditional`]), `CAP_IPC_LOCK` or a raised `RLIMIT_MEMLOCK` (since Linux 5.11 BPF memory is
//! charged to the memory cgroup, not the memlock limit; the agent runs with a limit of 0),
//! `CAP_KILL` (only for `--fence-method kill`), `CAP_SYS_NICE` (only for `--rt-priority`; without
//! it the agent runs on the normal scheduler and says so).
use std::path::Path;

use caps::{CapSet, Capability};

use crate::error::{AgentError, Result};

/// Which command needs a capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every command that loads the kernel programs: `run` and `watch`.
    Kernel,
    /// `vigil-agent run` alone: the fence.
    Daemon,
}

/// One capability the agent needs, what for, and where.
#[derive(Clone, Copy, Debug)]
pub struct Need {
    pub capability: Capability,
    pub why: &'static str,
    pub scope: Scope,
}

/// Every capability `vigil-agent run` needs; `watch` needs those of [`Scope::Kernel`].
pub const NEEDED: &[Need] = &[
    Need {
        capability: Capability::CAP_BPF,
        why: "eBPF maps and programs",
        scope: Scope::Kernel,
    },
    Need {
        capability: Capability::CAP_PERFMON,
        why: "tracing programs on the scheduler and TCP tracepoints",
        scope: Scope::Kernel,
    },
    Need {
        capability: Capability::CAP_SYS_PTRACE,
        why: "/proc/<pid>/fd of a server that runs as another user",
        scope: Scope::Kernel,
    },
    Need {
        capability: Capability::CAP_DAC_READ_SEARCH,
        why: "tracefs and /proc/<pid>/fd of another user",
        scope: Scope::Kernel,
    },
    Need {
        capability: Capability::CAP_NET_ADMIN,
        why: "the fence: cgroup packet filter and sock_diag socket destroy",
        scope: Scope::Daemon,
    },
];

/// What a command is about to do that some capabilities are needed for.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plan {
    /// `vigil-agent run` (the fence), not only the kernel probes.
    pub daemon: bool,
    /// `--fence-method kill`: the server, another user's process, is killed.
    pub kills: bool,
}

/// The capabilities needed only in some cases: to mount a file system the host has not mounted
/// (`CAP_SYS_ADMIN`), to kill the server (`CAP_KILL`).
pub fn conditional(plan: Plan, mounts: &str) -> Vec<Need> {
    let mut needs = Vec::new();
    let missing_fs: Vec<&str> = [
        ("tracefs", true),
        ("bpf", plan.daemon),
        ("cgroup2", plan.daemon),
    ]
    .into_iter()
    .filter(|&(fstype, wanted)| {
        wanted && crate::fence::mounts::mount_point(mounts, fstype).is_none()
    })
    .map(|(fstype, _)| fstype)
    .collect();
    if !missing_fs.is_empty() {
        needs.push(Need {
            capability: Capability::CAP_SYS_ADMIN,
            why: match missing_fs.as_slice() {
                ["tracefs"] => "mounting tracefs, which the host has not mounted",
                _ => "mounting tracefs, bpffs or cgroup2, which the host has not mounted",
            },
            scope: Scope::Kernel,
        });
    }
    if plan.kills {
        needs.push(Need {
            capability: Capability::CAP_KILL,
            why: "--fence-method kill",
            scope: Scope::Daemon,
        });
    }
    needs
}

/// The needs of `plan` that `has` says are missing, in table order.
pub fn missing(plan: Plan, mounts: &str, has: impl Fn(Capability) -> bool) -> Vec<Need> {
    NEEDED
        .iter()
        .copied()
        .filter(|n| plan.daemon || n.scope == Scope::Kernel)
        .chain(conditional(plan, mounts))
        .filter(|n| !has(n.capability))
        .collect()
}

/// Checks the effective capability set against what `plan` needs: one error naming every
/// capability missing.
pub fn check(plan: Plan) -> Result<()> {
    let effective = caps::read(None, CapSet::Effective).map_err(|e| {
        AgentError::io(
            "reading the agent's capabilities",
            std::io::Error::other(e.to_string()),
        )
    })?;
    let mounts = std::fs::read_to_string(Path::new("/proc/mounts"))
        .map_err(|e| AgentError::io("reading /proc/mounts", e))?;
    let missing = missing(plan, &mounts, |c| effective.contains(&c));
    if missing.is_empty() {
        return Ok(());
    }
    Err(AgentError::MissingCapabilities(missing))
}

/// `CAP_BPF, CAP_PERFMON (CAP_BPF: eBPF maps and programs; CAP_PERFMON: ...)`.
pub fn describe(missing: &[Need]) -> String {
    let names: Vec<String> = missing.iter().map(|n| n.capability.to_string()).collect();
    let whys: Vec<String> = missing
        .iter()
        .map(|n| format!("{}: {}", n.capability, n.why))
        .collect();
    format!("{} ({})", names.join(", "), whys.join("; "))
}

/// The whole set `vigil-agent run` needs, as `setpriv`/systemd write it (`cap_bpf,cap_perfmon`).
pub fn needed_for_run() -> Vec<Capability> {
    NEEDED.iter().map(|n| n.capability).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_MOUNTED: &str = "tracefs /sys/kernel/tracing tracefs rw 0 0\n\
                               bpf /sys/fs/bpf bpf rw 0 0\n\
                               cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n";

    fn names(needs: &[Need]) -> Vec<String> {
        needs.iter().map(|n| n.capability.to_string()).collect()
    }

    #[test]
    fn the_daemon_needs_the_whole_table_and_watch_the_kernel_part() {
        let daemon = Plan {
            daemon: true,
            kills: false,
        };
        assert_eq!(
            names(&missing(daemon, ALL_MOUNTED, |_| false)),
            [
                "CAP_BPF",
                "CAP_PERFMON",
                "CAP_SYS_PTRACE",
                "CAP_DAC_READ_SEARCH",
                "CAP_NET_ADMIN"
            ]
        );
        assert_eq!(
            names(&missing(Plan::default(), ALL_MOUNTED, |_| false)),
            [
                "CAP_BPF",
                "CAP_PERFMON",
                "CAP_SYS_PTRACE",
                "CAP_DAC_READ_SEARCH"
            ]
        );
        assert!(missing(daemon, ALL_MOUNTED, |_| true).is_empty());
        let one = missing(daemon, ALL_MOUNTED, |c| c != Capability::CAP_PERFMON);
        assert_eq!(names(&one), ["CAP_PERFMON"]);
    }

    #[test]
    fn mounting_and_killing_are_needed_only_when_they_happen() {
        let has_table = |c| needed_for_run().contains(&c);
        let daemon = Plan {
            daemon: true,
            kills: false,
        };
        assert!(missing(daemon, ALL_MOUNTED, has_table).is_empty());
        let no_bpffs = "tracefs /sys/kernel/tracing tracefs rw 0 0\n\
                        cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n";
        assert_eq!(
            names(&missing(daemon, no_bpffs, has_table)),
            ["CAP_SYS_ADMIN"]
        );
        // watch uses no bpffs.
        assert!(missing(Plan::default(), no_bpffs, has_table).is_empty());
        let killing = Plan {
            daemon: true,
            kills: true,
        };
        assert_eq!(
            names(&missing(killing, ALL_MOUNTED, has_table)),
            ["CAP_KILL"]
        );
    }

    #[test]
    fn the_error_names_every_missing_capability_on_one_line() {
        let daemon = Plan {
            daemon: true,
            kills: false,
        };
        let two = missing(daemon, ALL_MOUNTED, |c| {
            c != Capability::CAP_BPF && c != Capability::CAP_NET_ADMIN
        });
        let text = AgentError::MissingCapabilities(two).to_string();
        assert!(
            text.starts_with("missing capabilities CAP_BPF, CAP_NET_ADMIN ("),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");
    }
}
