//! Builds the kernel programs in ../agent-ebpf for the bpf target and leaves the object in
//! OUT_DIR, where `src/kernel/probes.rs` embeds it. Needs the nightly toolchain with rust-src and
//! bpf-linker on PATH: `cargo xtask setup` installs both.
fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = std::path::Path::new(&manifest_dir).join("../agent-ebpf");
    let ebpf_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non UTF-8 path"))?;
    // aya-build passes every line the inner cargo prints on to this build as a warning, so its
    // progress lines would reach every build of the workspace; quiet, it prints only what the
    // compiler has to say. SAFETY: the build script runs on one thread, which has not started
    // any other.
    unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };
    let package = aya_build::Package {
        name: "vigil-agent-ebpf",
        root_dir: ebpf_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}
