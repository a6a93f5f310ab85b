//! [`NetNs`]: a network namespace a test made, joined to the host by a veth pair it can cut (by
//! taking the link down, or silently, one way or both, by dropping packets with `tc`), made and
//! deleted with `ip` and `tc` (iproute2).
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{WAIT, wait_until};

/// A network namespace this test made, joined to the host by a veth pair: the host side is
/// `host_ip`, the namespace side `ns_ip`. Deleted on drop (which also deletes the veth pair).
pub struct NetNs {
    pub name: String,
    pub host_ip: String,
    pub ns_ip: String,
    inner_veth: String,
    outer_veth: String,
}

impl NetNs {
    /// Creates `vigil-<pid>-<n>` with the veth pair up and addressed on 10.201.`n`.0/30, the
    /// first such subnet, counting on from one chosen by this process's pid, that no interface on
    /// the host has: a namespace left by a run that was killed before it could delete it, or one
    /// another test process made, keeps its subnet and never takes this one's packets.
    pub fn create() -> Result<Self> {
        let id = std::process::id();
        let in_use = host_ipv4_addresses()?;
        let start = id % 250;
        let subnet = (0..250)
            .map(|i| 1 + ((start + i) % 250) as u8)
            .find(|n| {
                !in_use
                    .iter()
                    .any(|a| a.starts_with(&format!("10.201.{n}.")))
            })
            .context("every subnet 10.201.1-250.0/30 is taken on this host")?;
        let tag = format!("{}s{subnet}", id % 100_000);
        let ns = Self {
            name: format!("vigil-{id}-{subnet}"),
            host_ip: format!("10.201.{subnet}.1"),
            ns_ip: format!("10.201.{subnet}.2"),
            inner_veth: format!("vgn{tag}"),
            outer_veth: format!("vgh{tag}"),
        };
        let outer = ns.outer_veth.clone();
        let host_cidr = format!("{}/30", ns.host_ip);
        let ns_cidr = format!("{}/30", ns.ns_ip);
        // The kernel tears a deleted namespace down in the background: a veth of the same name,
        // left by the namespace this process made last, can outlive `ip netns del` for a moment.
        wait_until(
            WAIT,
            &format!("{outer} from an earlier namespace to go"),
            || ip(&["link", "show", "dev", &outer]).is_err().then_some(()),
        )?;
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
            &["addr", "add", &host_cidr, "dev", &outer],
            &["link", "set", &outer, "up"],
            &[
                "-n",
                &ns.name,
                "addr",
                "add",
                &ns_cidr,
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

    /// Silently drops every packet the namespace sends to the host (a one-way cut: what the host
    /// sends still arrives), until [`NetNs::pass_all`]. The link stays up, so nothing in the
    /// namespace gets an error: its packets are lost, as behind a firewall that drops them.
    pub fn drop_sent(&self) -> Result<()> {
        drop_egress(Some(&self.name), &self.inner_veth)
    }

    /// Silently drops every packet the host sends into the namespace (the other one-way cut).
    pub fn drop_received(&self) -> Result<()> {
        drop_egress(None, &self.outer_veth)
    }

    /// Undoes [`NetNs::drop_sent`] and [`NetNs::drop_received`]: packets pass both ways again.
    pub fn pass_all(&self) -> Result<()> {
        restore_egress(Some(&self.name), &self.inner_veth)?;
        restore_egress(None, &self.outer_veth)
    }
}

/// Makes `dev` (in namespace `netns`, or on the host) drop everything it would send: a token
/// bucket whose burst (1 byte) is smaller than any packet drops each one. This kernel has no netem
/// and no tc actions; a token bucket filter is built in.
fn drop_egress(netns: Option<&str>, dev: &str) -> Result<()> {
    tc(
        netns,
        &[
            "qdisc", "replace", "dev", dev, "root", "tbf", "rate", "1kbit", "burst", "1",
            "latency", "1ms",
        ],
    )
}

/// Gives `dev` its default queue back; a device that drops nothing is left alone.
fn restore_egress(netns: Option<&str>, dev: &str) -> Result<()> {
    let shown = tc_output(netns, &["qdisc", "show", "dev", dev])?;
    if shown.contains("tbf") {
        tc(netns, &["qdisc", "del", "dev", dev, "root"])?;
    }
    Ok(())
}

fn tc_command(netns: Option<&str>, args: &[&str]) -> Command {
    let mut c = Command::new("tc");
    if let Some(ns) = netns {
        c.args(["-n", ns]);
    }
    c.args(args);
    c
}

fn tc(netns: Option<&str>, args: &[&str]) -> Result<()> {
    tc_output(netns, args).map(drop)
}

fn tc_output(netns: Option<&str>, args: &[&str]) -> Result<String> {
    let out = tc_command(netns, args)
        .output()
        .context("running tc (iproute2)")?;
    if !out.status.success() {
        bail!(
            "tc {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Every IPv4 address on the host's interfaces, as `ip -o -4 addr` prints them (`A.B.C.D/len`).
fn host_ipv4_addresses() -> Result<Vec<String>> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip -o -4 addr show: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet")?;
            words.next().map(str::to_string)
        })
        .collect())
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
