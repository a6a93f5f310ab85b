//! Where the fence lives in the file system: the bpffs it is pinned on and the cgroup v2
//! hierarchy its programs attach to, both found in /proc/mounts (never assumed: a hybrid host
//! mounts cgroup2 at /sys/fs/cgroup/unified, a unified one at /sys/fs/cgroup) and mounted when
//! absent, as tracefs is. Also the server's cgroup, from /proc/PID/cgroup.
use std::path::{Path, PathBuf};

use crate::error::{AgentError, Result};

/// Where bpffs is mounted when it is not mounted anywhere yet (the usual place).
const BPFFS_DEFAULT: &str = "/sys/fs/bpf";
/// Where a cgroup2 hierarchy is mounted when none is: a private place, so nothing the host
/// arranged under /sys/fs/cgroup changes.
const CGROUP2_FALLBACK: &str = "/run/vigil/cgroup2";

/// The mount point of the first file system of type `fstype` in the text of /proc/mounts.
pub fn mount_point(mounts: &str, fstype: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_device, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
        (kind == fstype).then(|| PathBuf::from(unescape(point)))
    })
}

/// /proc/mounts writes a space, tab, newline or backslash in a path as an octal escape (`\040`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match octal {
            Some(c) => {
                out.push(c);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn find_or_mount(fstype: &'static str, default: &str) -> Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts")
        .map_err(|e| AgentError::io("reading /proc/mounts", e))?;
    if let Some(point) = mount_point(&mounts, fstype) {
        return Ok(point);
    }
    let point = Path::new(default);
    tracing::info!(fstype, path = %point.display(), "not mounted; mounting it");
    let failed = |reason: String| AgentError::Mount {
        fstype,
        path: point.into(),
        reason,
    };
    std::fs::create_dir_all(point).map_err(|e| failed(e.to_string()))?;
    nix::mount::mount(
        Some(fstype),
        point,
        Some(fstype),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| failed(e.desc().to_string()))?;
    Ok(point.into())
}

/// Where bpffs is mounted (mounting it at /sys/fs/bpf when it is nowhere).
pub fn bpffs() -> Result<PathBuf> {
    find_or_mount("bpf", BPFFS_DEFAULT)
}

/// Where the cgroup v2 hierarchy is mounted (mounting it privately when it is nowhere).
pub fn cgroup2() -> Result<PathBuf> {
    find_or_mount("cgroup2", CGROUP2_FALLBACK)
}

/// Checks, at start, that the agent can pin a fence in `dir` (or create it): an agent that runs
/// as its own user without `CAP_DAC_OVERRIDE` needs to own it, or the place it goes in, since
/// bpffs is root's (mode 0700 or 1777) and an earlier agent that ran as root made its directories
/// root's. Its parents are created as far as the agent may.
pub fn ensure_writable(dir: &Path) -> Result<()> {
    use nix::unistd::{AccessFlags, faccessat};
    let place = dir.parent().unwrap_or(dir);
    let _ = std::fs::create_dir_all(place);
    // The place the fence's directory goes in (lifting a fence removes it), and the directory
    // itself when an earlier agent left it; else the deepest parent that exists.
    let mut check: Vec<&Path> = vec![dir, place];
    check.retain(|p| p.exists());
    if check.is_empty() {
        check.extend(dir.ancestors().find(|p| p.exists()));
    }
    for path in check {
        // With the effective ids and capabilities, as the kernel judges the pins to come.
        faccessat(
            nix::fcntl::AT_FDCWD,
            path,
            AccessFlags::W_OK | AccessFlags::X_OK,
            nix::fcntl::AtFlags::AT_EACCESS,
        )
        .map_err(|_| AgentError::PinDirNotWritable { path: path.into() })?;
    }
    Ok(())
}

/// The cgroup v2 path in the text of /proc/PID/cgroup: the `0::` line.
pub fn unified_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::trim)
}

/// The directory of process `pid`'s cgroup v2 under the hierarchy mounted at `root`.
pub fn cgroup_of(root: &Path, pid: u32) -> Result<PathBuf> {
    let path = format!("/proc/{pid}/cgroup");
    let text =
        std::fs::read_to_string(&path).map_err(|e| AgentError::io(format!("reading {path}"), e))?;
    let relative = unified_path(&text).ok_or(AgentError::NoCgroup2(pid))?;
    // "/" is the root cgroup itself.
    match relative.trim_start_matches('/') {
        "" => Ok(root.into()),
        below => Ok(root.join(below)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
bpf /sys/fs/bpf bpf rw,relatime 0 0
";

    #[test]
    fn mounts_are_found_by_type_not_by_place() {
        assert_eq!(
            mount_point(HYBRID, "cgroup2"),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            mount_point(HYBRID, "bpf"),
            Some(PathBuf::from("/sys/fs/bpf"))
        );
        // The v1 hierarchies are "cgroup", which is not "cgroup2".
        assert_eq!(
            mount_point("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n", "cgroup2"),
            None
        );
        assert_eq!(
            mount_point("none /mnt/my\\040bpf bpf rw 0 0\n", "bpf"),
            Some(PathBuf::from("/mnt/my bpf"))
        );
    }

    #[test]
    fn the_unified_line_names_the_cgroup_v2_path() {
        let hybrid = "4:memory:/x\n1:cpu:/\n0::/system.slice/redis.service\n";
        assert_eq!(unified_path(hybrid), Some("/system.slice/redis.service"));
        assert_eq!(unified_path("0::/\n"), Some("/"));
        assert_eq!(unified_path("1:name=systemd:/\n"), None);
    }
}
