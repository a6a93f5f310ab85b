//! The network of `bench failover --netns`: one network namespace per node (its server and
//! agent), one for the controller and the Sentinels (and the bench's client), each joined by a
//! veth pair to a bridge in a namespace of its own, on a private /24 (10.213.S.0/24, the first S
//! no address of the host is in). Every node's link delays each packet by 0.2 ms ± 0.05 ms, both
//! ways: with netem (iproute2's `tc`) where the kernel has it, else with the [`delay_line`] on
//! netfilter's queue. Nothing of it is in the host's namespace, so the bench's traffic stays
//! within the namespaces it made. Everything is deleted by name on drop, on error too.
//!
//! Processes are started in a namespace by moving the calling thread there for the spawn
//! ([`Lab::enter`]): a child starts where its parent thread is.
use std::{fs::File, marker::PhantomData, os::fd::AsRawFd, process::Command, time::Duration};

use anyhow::{Context, Result, bail};

use super::delay_line::DelayLine;

/// Each node's link delays every packet this much, each way...
pub const DELAY: Duration = Duration::from_micros(200);
/// ...give or take this much.
pub const JITTER: Duration = Duration::from_micros(50);

/// Where the lab's /24s are taken from: 10.213.S.0/24.
const PREFIX: &str = "10.213";

/// How the links' delay is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delay {
    Netem,
    /// netfilter's queue and the bench's own delay line (the kernel has no netem).
    Queue,
}

impl Delay {
    pub fn name(self) -> &'static str {
        match self {
            Self::Netem => "netem",
            Self::Queue => "nfqueue",
        }
    }
}

/// One namespace of the lab and its end of the link.
pub struct Member {
    pub netns: String,
    pub ip: String,
    /// Its end of the veth pair (inside `netns`), and the bridge's end (inside the switch's).
    dev: String,
    port: String,
}

pub struct Lab {
    switch: String,
    bridge: String,
    pub controller: Member,
    pub nodes: Vec<Member>,
    pub delay: Delay,
    /// The namespace the bench started in, to come back to.
    home: File,
    delay_line: Option<DelayLine>,
    /// Every namespace made so far, deleted on drop.
    made: Vec<String>,
}

impl Lab {
    /// Makes the lab for `nodes` nodes.
    pub fn create(nodes: usize) -> Result<Self> {
        let subnet = free_subnet()?;
        let tag = format!("vkb{}", std::process::id() % 10_000);
        let member = |name: &str, host: usize| Member {
            netns: format!("{tag}-{name}"),
            ip: format!("{PREFIX}.{subnet}.{host}"),
            dev: format!("{tag}{name}e"),
            port: format!("{tag}{name}p"),
        };
        let mut lab = Self {
            switch: format!("{tag}-sw"),
            bridge: format!("{tag}br"),
            controller: member("c", 2),
            nodes: (0..nodes)
                .map(|i| member(&format!("n{i}"), 10 + i))
                .collect(),
            delay: Delay::Netem,
            home: File::open("/proc/thread-self/ns/net").context("opening this thread's netns")?,
            delay_line: None,
            made: Vec::new(),
        };
        // From here on, a failure deletes what was made (on drop).
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<()> {
        let sw = self.switch.clone();
        self.add_netns(&sw)?;
        ip(&["-n", &sw, "link", "add", &self.bridge, "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", &self.bridge, "up"])?;
        let names: Vec<(String, String, String, String)> = std::iter::once(&self.controller)
            .chain(&self.nodes)
            .map(|m| (m.netns.clone(), m.ip.clone(), m.dev.clone(), m.port.clone()))
            .collect();
        for (netns, addr, dev, port) in &names {
            self.add_netns(netns)?;
            let cidr = format!("{addr}/24");
            let steps: [&[&str]; 5] = [
                &[
                    "-n", &sw, "link", "add", port, "type", "veth", "peer", "name", dev, "netns",
                    netns,
                ],
                &["-n", &sw, "link", "set", port, "master", &self.bridge, "up"],
                &["-n", netns, "addr", "add", &cidr, "dev", dev],
                &["-n", netns, "link", "set", dev, "up"],
                &["-n", netns, "link", "set", "lo", "up"],
            ];
            for step in steps {
                ip(step)?;
            }
        }
        self.delay = self.delay_links()?;
        Ok(())
    }

    fn add_netns(&mut self, name: &str) -> Result<()> {
        ip(&["netns", "add", name])?;
        self.made.push(name.to_string());
        Ok(())
    }

    /// Delays every node's link both ways: netem on both ends of its veth pair, or, where the
    /// kernel has no netem, the delay line on the node's side.
    fn delay_links(&mut self) -> Result<Delay> {
        let (delay, jitter) = (us(DELAY), us(JITTER));
        let netem = |netns: &str, dev: &str| {
            tc(&[
                "-n", netns, "qdisc", "add", "dev", dev, "root", "netem", "delay", &delay, &jitter,
            ])
        };
        let first = &self.nodes[0];
        match netem(&first.netns, &first.dev) {
            Ok(()) => {
                for n in &self.nodes {
                    if n.netns != first.netns {
                        netem(&n.netns, &n.dev)?;
                    }
                    netem(&self.switch, &n.port)?;
                }
                Ok(Delay::Netem)
            }
            Err(e) if format!("{e:#}").contains("qdisc kind is unknown") => {
                let mut namespaces = Vec::new();
                for n in &self.nodes {
                    // Each packet out of and into the node goes through the queue; with no one
                    // reading it (before the delay line binds, after it stops) packets pass.
                    for (chain, way) in [("POSTROUTING", "-o"), ("PREROUTING", "-i")] {
                        let queue = if chain == "POSTROUTING" { "0" } else { "1" };
                        run(Command::new("ip").args([
                            "netns",
                            "exec",
                            &n.netns,
                            "iptables",
                            "-t",
                            "mangle",
                            "-A",
                            chain,
                            way,
                            &n.dev,
                            "-j",
                            "NFQUEUE",
                            "--queue-num",
                            queue,
                            "--queue-bypass",
                        ]))
                        .context("adding the delay line's iptables rule")?;
                    }
                    namespaces.push(n.netns.clone());
                }
                self.delay_line = Some(DelayLine::start(&namespaces, &[0, 1], DELAY, JITTER)?);
                Ok(Delay::Queue)
            }
            Err(e) => Err(e),
        }
    }

    /// Moves the calling thread into `netns` until the guard drops, when it goes back where it
    /// was: what it starts meanwhile starts there.
    pub fn enter(&self, netns: &str) -> Result<Entered<'_>> {
        let back = File::open("/proc/thread-self/ns/net").context("opening this thread's netns")?;
        enter_path(&format!("/var/run/netns/{netns}"))?;
        Ok(Entered {
            back,
            _lab: PhantomData,
        })
    }

    /// Runs `f` in node `i`'s namespace.
    pub fn on_node<T>(&self, i: usize, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let _in = self.enter(&self.nodes[i].netns)?;
        f()
    }
}

/// The calling thread is in one of the lab's namespaces until this drops.
pub struct Entered<'a> {
    /// The namespace it was in before.
    back: File,
    _lab: PhantomData<&'a Lab>,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        // SAFETY: setns on a file descriptor this guard holds open; it only changes the calling
        // thread's network namespace.
        let _ = unsafe { nix::libc::setns(self.back.as_raw_fd(), nix::libc::CLONE_NEWNET) };
    }
}

/// Moves the calling thread into the network namespace at `path`.
pub fn enter_path(path: &str) -> Result<()> {
    let ns = File::open(path).with_context(|| format!("opening {path}"))?;
    // SAFETY: setns on a file descriptor just opened; it only changes the calling thread's
    // network namespace.
    if unsafe { nix::libc::setns(ns.as_raw_fd(), nix::libc::CLONE_NEWNET) } != 0 {
        bail!(
            "entering the network namespace {path}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

impl Drop for Lab {
    fn drop(&mut self) {
        // SAFETY: as in `Entered`: back to the namespace the lab was made from.
        let _ = unsafe { nix::libc::setns(self.home.as_raw_fd(), nix::libc::CLONE_NEWNET) };
        // The delay line stops before its queues go.
        self.delay_line = None;
        // The veths and the bridge by name first, then every namespace (which would take them
        // along anyway).
        for m in std::iter::once(&self.controller).chain(&self.nodes) {
            let _ = ip(&["-n", &self.switch, "link", "del", &m.port]);
        }
        let _ = ip(&["-n", &self.switch, "link", "del", &self.bridge]);
        for netns in self.made.iter().rev() {
            let _ = ip(&["netns", "del", netns]);
        }
    }
}

/// The first S with no address of the host in 10.213.S.0/24.
fn free_subnet() -> Result<u8> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .context("running ip (iproute2)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    (0..=255u8)
        .find(|s| !text.contains(&format!(" {PREFIX}.{s}.")))
        .context("every 10.213.S.0/24 has an address of this host in it")
}

fn us(d: Duration) -> String {
    format!("{}us", d.as_micros())
}

fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args))
}

fn tc(args: &[&str]) -> Result<()> {
    run(Command::new("tc").args(args))
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
