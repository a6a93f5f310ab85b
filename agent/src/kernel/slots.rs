//! The kernel's `UNREAD` slot array, mapped into the agent's memory: a tick scans every slot with
//! plain loads instead of two syscalls per socket.
use std::{num::NonZeroUsize, os::fd::AsFd, ptr::NonNull};

use aya::maps::MapData;
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use vigil_agent_ebpf::{SockSlot, UNREAD_SLOTS};

use crate::error::{AgentError, Result};

const BYTES: usize = UNREAD_SLOTS as usize * size_of::<SockSlot>();

pub struct UnreadSlots {
    base: NonNull<SockSlot>,
    // The mapping keeps the map alive by itself; holding the fd too keeps ownership obvious.
    _map: MapData,
}

// SAFETY: the mapping is plain shared memory; every access is a volatile read or write of a Pod.
unsafe impl Send for UnreadSlots {}

impl UnreadSlots {
    pub fn map(map: MapData) -> Result<Self> {
        let len = NonZeroUsize::new(BYTES).ok_or(AgentError::MissingFromObject("UNREAD"))?;
        // SAFETY: a BPF_F_MMAPABLE array of UNREAD_SLOTS SockSlots (the kernel rounds the
        // mapping up to a page); nothing else in this process maps it.
        let base = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                map.fd().as_fd(),
                0,
            )
        }
        .map_err(|e| AgentError::io("mapping the UNREAD slots", e.into()))?;
        Ok(Self {
            base: base.cast(),
            _map: map,
        })
    }

    /// Indexes of the slots that hold a socket. Each tick runs this over every slot, so an empty
    /// slot costs one load.
    pub fn tracked(&self) -> impl Iterator<Item = u32> + '_ {
        (0..UNREAD_SLOTS).filter(|&i| {
            // SAFETY: i < UNREAD_SLOTS, inside the mapping; a u64 field of a Pod slot.
            unsafe {
                std::ptr::addr_of!((*self.base.as_ptr().add(i as usize)).sk).read_volatile() != 0
            }
        })
    }

    /// The slots with unread bytes, as the last scan left them. The kernel writes slots
    /// concurrently, so a slot read mid-update may mix two sockets; callers only trust
    /// `first_unread_ns` and treat the rest as a hint.
    pub fn pending(&self) -> impl Iterator<Item = SockSlot> + '_ {
        (0..UNREAD_SLOTS).filter_map(|i| {
            // SAFETY: as in `tracked`; SockSlot is Pod, any bytes are valid.
            unsafe {
                let slot = self.base.as_ptr().add(i as usize);
                if std::ptr::addr_of!((*slot).first_unread_ns).read_volatile() == 0 {
                    return None;
                }
                Some(slot.read_volatile())
            }
        })
    }

    /// Empties every slot (the programs must be quiet, i.e. pointed at no target).
    pub fn clear(&mut self) {
        for i in 0..UNREAD_SLOTS as usize {
            // SAFETY: as in `tracked`.
            unsafe {
                self.base
                    .as_ptr()
                    .add(i)
                    .write_volatile(SockSlot::default())
            };
        }
    }
}

impl Drop for UnreadSlots {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`; nothing refers to it after this.
        let _ = unsafe { munmap(self.base.cast(), BYTES) };
    }
}
