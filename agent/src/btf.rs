//! Kernel struct offsets from BTF (/sys/kernel/btf/vmlinux).
//!
//! Rust eBPF programs get no CO-RE relocations, so the kernel struct field the programs read
//! directly has its offset resolved here at start-up and passed in through `CONFIG`.
use std::path::Path;

use btf_rs::{Btf, Type};

use crate::error::{AgentError, Result};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The kernel struct offsets the programs need, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `struct task_struct.exit_code`.
    pub task_exit_code: u32,
}

pub fn kernel_offsets() -> Result<KernelOffsets> {
    let path = Path::new(VMLINUX_BTF);
    if !path.exists() {
        return Err(AgentError::NoBtf(path.into()));
    }
    let btf =
        Btf::from_file(path).map_err(|e| AgentError::Btf(format!("parsing {VMLINUX_BTF}: {e}")))?;
    Ok(KernelOffsets {
        task_exit_code: member_offset(&btf, "task_struct", "exit_code")?,
    })
}

/// Byte offset of `member` in `struct name`, looking through anonymous structs and unions.
pub fn member_offset(btf: &Btf, name: &str, member: &str) -> Result<u32> {
    let missing = || AgentError::Btf(format!("no member {name}.{member}"));
    let types = btf.resolve_types_by_name(name).map_err(|_| missing())?;
    for ty in types {
        if let Type::Struct(s) = ty
            && let Some(bits) = find_member(btf, &s, member)
        {
            return Ok(bits / 8);
        }
    }
    Err(missing())
}

/// Bit offset of `member` inside `s`, descending into anonymous members (bounded by BTF depth).
fn find_member(btf: &Btf, s: &btf_rs::Struct, member: &str) -> Option<u32> {
    for m in &s.members {
        let m_name = btf.resolve_name(m).unwrap_or_default();
        if m_name == member {
            return Some(m.bit_offset());
        }
        if m_name.is_empty()
            && let Ok(Type::Struct(inner) | Type::Union(inner)) = btf.resolve_chained_type(m)
            && let Some(off) = find_member(btf, &inner, member)
        {
            return Some(m.bit_offset() + off);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reads this machine's kernel BTF: a parser test against the real thing, not a fixture.
    #[test]
    fn resolves_offsets_from_this_kernels_btf() {
        if !Path::new(VMLINUX_BTF).exists() {
            panic!("{VMLINUX_BTF} is missing: vigil needs a kernel with BTF");
        }
        let offsets = kernel_offsets().expect("offsets");
        // exit_code is deep inside task_struct.
        assert!(offsets.task_exit_code > 256, "{offsets:?}");
        let btf = Btf::from_file(VMLINUX_BTF).expect("btf");
        // skc_num sits inside anonymous unions of sock_common, after the addresses and the hash.
        let num = member_offset(&btf, "sock_common", "skc_num").expect("skc_num");
        assert!((8..64).contains(&num), "skc_num at {num}");
        assert!(member_offset(&btf, "task_struct", "no_such_member_here").is_err());
    }
}
