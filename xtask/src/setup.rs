//! `cargo xtask setup`: makes a fresh machine of this kind ready, and is quick when it already is.
//!
//! Installs what is missing: Debian's redis-server, redis-sentinel, redis-tools,
//! protobuf-compiler, iproute2, util-linux, iptables, etcd-server and etcd-client, systemd (for
//! `systemd-analyze`) and prometheus (for `promtool`); redis-py and kubernetes-validate from PyPI;
//! the nightly toolchain's rust-src; bpf-linker built against nightly's own LLVM (into
//! ~/.cargo/bin, so a plain `cargo build` finds it in a new shell). Mounts tracefs and bpffs when
//! they are not mounted. Says what it did, and fails with a clear message when it cannot (not
//! root, no BTF, no way to the package registries).
//!
//! `--build-only` installs only what building the binaries needs (protoc, nightly with rust-src,
//! bpf-linker), and checks nothing of the kernel: for a container image's build stage.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

const BPF_LINKER_VERSION: &str = "0.13.0";
/// What building needs: the protocol's code is generated with protoc.
const BUILD_PACKAGES: &[(&str, &str)] = &[("protoc", "protobuf-compiler")];
/// What the suites, demos and benches need besides.
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("redis-server", "redis-server"),
    ("redis-sentinel", "redis-sentinel"),
    ("redis-cli", "redis-tools"),
    // The partition scenarios make network namespaces and veth pairs with `ip`, and one-way cuts
    // with `tc` (both iproute2).
    ("ip", "iproute2"),
    // The starvation scenario pins the primary and a hog with `taskset` and `chrt`.
    ("taskset", "util-linux"),
    // `bench failover --netns` delays its links through netfilter's queue where the kernel has
    // no netem: the rules are `iptables`'.
    ("iptables", "iptables"),
    // Controller high availability: the suites, bench and demo run a real three-member etcd
    // (`etcd`, from etcd-server) and read and write it with `etcdctl` (etcd-client).
    ("etcd", "etcd-server"),
    ("etcdctl", "etcd-client"),
    // The deploy files are checked as operators would: the systemd units with
    // `systemd-analyze verify`, the alert rules with `promtool check rules` and `promtool test
    // rules`.
    ("systemd-analyze", "systemd"),
    ("promtool", "prometheus"),
];
/// Python modules from PyPI: (module to import, package).
const PYTHON_PACKAGES: &[(&str, &str)] = &[
    // The client the Sentinel-compatibility tests drive.
    ("redis.sentinel", "redis"),
    // The Kubernetes manifests are validated offline against the OpenAPI schemas it carries.
    ("kubernetes_validate", "kubernetes-validate"),
];

pub fn run(build_only: bool) -> Result<()> {
    if build_only {
        debian_packages(BUILD_PACKAGES)?;
        nightly()?;
        return bpf_linker();
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("setup installs packages, loads eBPF programs and mounts tracefs: run it as root");
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!(
            "this kernel has no BTF (/sys/kernel/btf/vmlinux); vigil needs CONFIG_DEBUG_INFO_BTF=y"
        );
    }
    debian_packages(BUILD_PACKAGES)?;
    debian_packages(DEBIAN_PACKAGES)?;
    python_packages()?;
    nightly()?;
    bpf_linker()?;
    mount_if_missing(
        "tracefs",
        "/sys/kernel/tracing",
        "/sys/kernel/tracing/events",
    )?;
    mount_if_missing("bpf", "/sys/fs/bpf", "")?;
    Ok(())
}

fn say(what: &str) {
    println!("setup: {what}");
}

/// Runs one install step quietly, on a `setup:` line like [`say`]'s.
fn stage(what: &str, cmd: &mut Command) -> Result<()> {
    crate::stage::run(&format!("setup: {what}"), cmd)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| in_dirs(std::env::split_paths(&paths), program))
}

/// Whether `program` is a file in one of `dirs`.
fn in_dirs(mut dirs: impl Iterator<Item = PathBuf>, program: &str) -> bool {
    dirs.any(|dir| dir.join(program).is_file())
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The Debian packages whose program `installed` says is not there, each once (two programs may
/// come from one package).
fn missing_packages(
    packages: &[(&str, &'static str)],
    installed: impl Fn(&str) -> bool,
) -> Vec<&'static str> {
    let mut missing: Vec<&str> = Vec::new();
    for &(bin, pkg) in packages {
        if !installed(bin) && !missing.contains(&pkg) {
            missing.push(pkg);
        }
    }
    missing
}

fn debian_packages(packages: &[(&str, &'static str)]) -> Result<()> {
    let missing = missing_packages(packages, on_path);
    if missing.is_empty() {
        let programs: Vec<&str> = packages.iter().map(|&(bin, _)| bin).collect();
        let verb = if programs.len() == 1 { "is" } else { "are" };
        say(&format!("{} {verb} installed", programs.join(", ")));
        return Ok(());
    }
    let apt_failed = "apt-get failed: are Debian's package mirrors reachable from this machine?";
    stage(
        "updating Debian's package lists",
        Command::new("apt-get").args(["update", "-q"]),
    )
    .context(apt_failed)?;
    stage(
        &format!("installing Debian packages: {}", missing.join(" ")),
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context(apt_failed)?;
    Ok(())
}

/// The Python packages the suites drive, from PyPI.
fn python_packages() -> Result<()> {
    for &(module, package) in PYTHON_PACKAGES {
        let have = Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if have {
            say(&format!("{package} (Python) is installed"));
            continue;
        }
        stage(
            &format!("installing {package} (pip)"),
            Command::new("python3").args(["-m", "pip", "install", "--quiet", package]),
        )
        .with_context(|| {
            format!("pip install {package} failed: is PyPI reachable from this machine?")
        })?;
    }
    Ok(())
}

fn nightly() -> Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is not working; vigil builds its eBPF programs with rustup's nightly")?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        stage(
            "installing the nightly toolchain with rust-src (the eBPF programs build with it)",
            Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ]),
        )
        .context("installing nightly failed: is the Rust distribution server reachable?")?;
        return Ok(());
    }
    let components = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .unwrap_or_default();
    if components.lines().any(|l| l.starts_with("rust-src")) {
        say("nightly with rust-src is installed");
    } else {
        stage(
            "adding rust-src to nightly",
            Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]),
        )
        .context("adding rust-src failed: is the Rust distribution server reachable?")?;
    }
    Ok(())
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

fn bpf_linker() -> Result<()> {
    let bin = cargo_home().join("bin/bpf-linker");
    let wanted = format!("bpf-linker {BPF_LINKER_VERSION}");
    // `--version` also proves the binary still finds nightly's libLLVM it was built against.
    if output(Command::new(&bin).arg("--version")).is_some_and(|v| v.trim() == wanted) {
        say(&format!("{wanted} is installed"));
        return Ok(());
    }
    let verbose = output(Command::new("rustc").args(["+nightly", "--version", "--verbose"]))
        .context("rustc +nightly does not run")?;
    let llvm_major = verbose
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("rustc +nightly does not say its LLVM version")?
        .to_string();
    let sysroot = PathBuf::from(
        output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
            .context("no nightly sysroot")?
            .trim(),
    );
    let libllvm = std::fs::read_dir(sysroot.join("lib"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so.") && n.contains("-rust-"))
        })
        .with_context(|| format!("no libLLVM.so.*-rust-* in {}/lib", sysroot.display()))?;
    // bpf-linker links nightly's libLLVM through this folder and finds it there at run time
    // (its RUNPATH), so it lives outside any checkout.
    let prefix = cargo_home().join(format!("vigil-llvm-{llvm_major}"));
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib)?;
    let soname = libllvm.file_name().context("libLLVM has no file name")?;
    for link in [lib.join("libLLVM.so"), lib.join(soname)] {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&libllvm, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    stage(
        &format!("installing {wanted} against nightly's LLVM {llvm_major} (about a minute)"),
        crate::cargo()
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
                "--force",
            ])
            .args([
                "--no-default-features",
                "--features",
                &format!("llvm-{llvm_major}"),
            ])
            .env("LLVM_PREFIX", &prefix),
    )
    .context("installing bpf-linker failed: is crates.io reachable?")?;
    Ok(())
}

fn mount_if_missing(fstype: &str, target: &str, probe: &str) -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mounted = if probe.is_empty() {
        mounts
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(target))
    } else {
        Path::new(probe).exists()
    };
    if mounted {
        say(&format!("{fstype} is mounted at {target}"));
        return Ok(());
    }
    say(&format!("mounting {fstype} at {target}"));
    std::fs::create_dir_all(target).ok();
    nix::mount::mount(
        Some(fstype),
        target,
        Some(fstype),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("mounting {fstype} at {target}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_machine_gets_every_package_once() {
        let empty = tempfile::tempdir().expect("a temporary directory");
        let missing = missing_packages(DEBIAN_PACKAGES, |bin| {
            in_dirs(std::iter::once(empty.path().into()), bin)
        });
        assert!(missing.contains(&"etcd-server"), "{missing:?}");
        assert!(missing.contains(&"prometheus"), "{missing:?}");
        assert!(missing.contains(&"etcd-client"), "{missing:?}");
        assert!(missing.contains(&"redis-server"), "{missing:?}");
        let distinct: std::collections::HashSet<&str> =
            DEBIAN_PACKAGES.iter().map(|&(_, pkg)| pkg).collect();
        assert_eq!(missing.len(), distinct.len(), "{missing:?}");
    }

    #[test]
    fn etcd_is_found_where_debian_installs_it() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("etcd"), "").expect("a stand-in etcd");
        let found = |bin: &str| in_dirs(std::iter::once(dir.path().into()), bin);
        let missing = missing_packages(DEBIAN_PACKAGES, found);
        assert!(!missing.contains(&"etcd-server"), "{missing:?}");
        assert!(missing.contains(&"etcd-client"), "{missing:?}");
    }
}
