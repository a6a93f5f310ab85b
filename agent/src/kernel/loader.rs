//! The agent's one eBPF loader. Making an aya loader parses the kernel's whole BTF (here about
//! 17 ms and 20 MB of passing allocations), which none of vigil's programs use: they have no CO-RE
//! relocations (offsets come from BTF read lazily and from tracefs, see [`super::btf`]). The
//! loader is made once, that BTF dropped, and every object is loaded through it: the kernel
//! probes at start, and the fence ahead of each time it may go up.
use std::sync::{LazyLock, Mutex};

use aya::{Ebpf, EbpfError, EbpfLoader};

static LOADER: LazyLock<Mutex<EbpfLoader<'static>>> = LazyLock::new(|| {
    let mut loader = EbpfLoader::new();
    loader.btf(None);
    Mutex::new(loader)
});

/// Loads `object` (its maps created, its programs not loaded yet).
pub fn load(object: &[u8]) -> Result<Ebpf, EbpfError> {
    LOADER
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .load(object)
}
