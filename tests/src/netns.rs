//! [`NetNs`]: a network namespace a test made, joined to the host by a veth pair it can cut,
//! made and deleted with `ip` (iproute2).
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A network namespace this test made, joined to the host by a veth pair: the host side is
/// `host_ip`, the namespace side `ns_ip`. Deleted on drop (which also deletes the veth pair).
pub struct NetNs {
    pub name: String,
    pub host_ip: String,
    pub ns_ip: String,
    inner_veth: String,
}

impl NetNs {
    /// Creates `vigil-<pid>` with the veth pair up and addressed (10.201.0.0/30, a private range
    /// that only this test's namespace uses).
    pub fn create() -> Result<Self> {
        let id = std::process::id();
        let ns = Self {
            name: format!("vigil-{id}"),
            host_ip: "10.201.0.1".into(),
            ns_ip: "10.201.0.2".into(),
            inner_veth: format!("vgn{}", id % 100_000),
        };
        let outer = format!("vgh{}", id % 100_000);
        ip(&["netns", "add", &ns.name])?;
        // From here on, a failure still deletes the namespace (and the veth with it) on drop.
        let steps: [&[&str]; 6] = [
            &[
                "link",
                "add",
                &outer,
                "type",
                "veth",
                "peer",
                "name",
                &ns.inner_veth,
                "netns",
                &ns.name,
            ],
            &["addr", "add", "10.201.0.1/30", "dev", &outer],
            &["link", "set", &outer, "up"],
            &[
                "-n",
                &ns.name,
                "addr",
                "add",
                "10.201.0.2/30",
                "dev",
                &ns.inner_veth,
            ],
            &["-n", &ns.name, "link", "set", &ns.inner_veth, "up"],
            &["-n", &ns.name, "link", "set", "lo", "up"],
        ];
        for step in steps {
            ip(step)?;
        }
        Ok(ns)
    }

    /// `program` to run inside `netns`, or on the host when `None`.
    pub fn command(netns: Option<&NetNs>, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match netns {
            Some(ns) => {
                // `ip netns exec` execs the program, so the child's pid is the program's own.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// Cuts the namespace off: its side of the veth goes down, so nothing crosses either way.
    pub fn cut(&self) -> Result<()> {
        ip(&["-n", &self.name, "link", "set", &self.inner_veth, "down"])
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
