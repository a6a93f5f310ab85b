//! Finding the server process through procfs: by pid, or as the owner of the TCP listener on a
//! port (as `ss -ltnp` does: the listener's inode from netlink sock_diag, then the process whose
//! file descriptors hold it), and reading its threads.
use std::collections::HashSet;

use procfs::{
    net::{TcpNetEntry, TcpState},
    process::{FDTarget, Process},
};

use crate::error::{AgentError, Result};

/// One thread of the target as procfs sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadInfo {
    pub tid: u32,
    /// The one-letter state from /proc/PID/task/TID/stat (R, S, D, T, t, Z, ...).
    pub state: char,
}

/// Whether thread `tid` of `pid` is asleep inside a futex wait, from the syscall number
/// /proc/PID/task/TID/syscall shows for a blocked thread ("running" otherwise).
pub fn in_futex_wait(pid: u32, tid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<i64>().ok())
        .is_some_and(is_futex_syscall)
}

fn is_futex_syscall(nr: i64) -> bool {
    nr == nix::libc::SYS_futex || nr == nix::libc::SYS_futex_waitv
}

pub fn process_exists(pid: u32) -> bool {
    Process::new(pid as i32).is_ok_and(|p| p.stat().is_ok_and(|s| s.state != 'Z' && s.state != 'X'))
}

fn listeners() -> Result<Vec<TcpNetEntry>> {
    let mut all = procfs::net::tcp()?;
    // A host without IPv6 has no /proc/net/tcp6; that is not an error.
    all.extend(procfs::net::tcp6().unwrap_or_default());
    all.retain(|e| e.state == TcpState::Listen);
    Ok(all)
}

fn socket_inodes(pid: u32) -> Result<HashSet<u64>> {
    let process = Process::new(pid as i32).map_err(|_| AgentError::NoSuchProcess(pid))?;
    let mut inodes = HashSet::new();
    for fd in process.fd()?.flatten() {
        if let FDTarget::Socket(inode) = fd.target {
            inodes.insert(inode);
        }
    }
    Ok(inodes)
}

/// TCP ports `pid` listens on, lowest first.
pub fn listening_ports(pid: u32) -> Result<Vec<u16>> {
    let inodes = socket_inodes(pid)?;
    let mut ports: Vec<u16> = listeners()?
        .into_iter()
        .filter(|e| inodes.contains(&e.inode))
        .map(|e| e.local_address.port())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

/// The process that owns a listening socket on `port`, if any. With nothing listening (a server
/// that exited), this answers at once: only a listener's inode sends it through every process's
/// file descriptors.
pub fn listener_owner(port: u16) -> Result<Option<u32>> {
    let wanted: HashSet<u64> = match crate::fence::sockets::listener_inodes(port) {
        Ok(inodes) => inodes.into_iter().collect(),
        Err(e) => {
            tracing::debug!(error = %e, "sock_diag named no listeners; reading /proc/net/tcp");
            listeners()?
                .into_iter()
                .filter(|e| e.local_address.port() == port)
                .map(|e| e.inode)
                .collect()
        }
    };
    if wanted.is_empty() {
        return Ok(None);
    }
    for process in procfs::process::all_processes()?.flatten() {
        // Processes come and go while we look; one that vanished is simply not the owner.
        let Ok(fds) = process.fd() else { continue };
        for fd in fds.flatten() {
            if let FDTarget::Socket(inode) = fd.target
                && wanted.contains(&inode)
            {
                return Ok(Some(process.pid as u32));
            }
        }
    }
    Ok(None)
}

/// The threads of `pid` and their scheduler states.
pub fn threads(pid: u32) -> Result<Vec<ThreadInfo>> {
    let process = Process::new(pid as i32).map_err(|_| AgentError::NoSuchProcess(pid))?;
    let mut out = Vec::new();
    for task in process.tasks()?.flatten() {
        if let Ok(stat) = task.stat() {
            out.push(ThreadInfo {
                tid: task.tid as u32,
                state: stat.state,
            });
        }
    }
    Ok(out)
}

/// Resolves what `vigil-agent watch` was asked to watch into a (pid, port) pair.
pub fn resolve(pid: Option<u32>, port: Option<u16>) -> Result<(u32, u16)> {
    match (pid, port) {
        (Some(pid), port) => {
            if !process_exists(pid) {
                return Err(AgentError::NoSuchProcess(pid));
            }
            let ports = listening_ports(pid)?;
            match port {
                Some(port) if ports.contains(&port) => Ok((pid, port)),
                Some(port) => Err(AgentError::NotListeningOn { pid, port }),
                None => ports
                    .first()
                    .map(|&p| (pid, p))
                    .ok_or(AgentError::NoListeningPort(pid)),
            }
        }
        (None, Some(port)) => listener_owner(port)?
            .map(|pid| (pid, port))
            .ok_or(AgentError::NobodyListening(port)),
        (None, None) => Err(AgentError::NobodyListening(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        sync::{Arc, Mutex, mpsc},
        thread,
        time::{Duration, Instant},
    };

    /// Polls until `tid` shows the wanted answer, for at most 5 s (a thread takes a moment to block).
    fn settles_to(tid: u32, want: bool) -> bool {
        let pid = std::process::id();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if in_futex_wait(pid, tid) == want {
                return true;
            }
            thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn a_thread_blocked_on_a_held_mutex_is_in_a_futex_wait_and_a_sleeper_is_not() {
        let lock = Arc::new(Mutex::new(()));
        let held = lock.lock().expect("lock");
        let (waiter_tx, waiter_rx) = mpsc::channel();
        let (sleeper_tx, sleeper_rx) = mpsc::channel();
        let waiter = {
            let lock = Arc::clone(&lock);
            thread::spawn(move || {
                waiter_tx
                    .send(nix::unistd::gettid().as_raw() as u32)
                    .expect("send");
                drop(lock.lock());
            })
        };
        let sleeper = thread::spawn(move || {
            sleeper_tx
                .send(nix::unistd::gettid().as_raw() as u32)
                .expect("send");
            thread::sleep(Duration::from_secs(1));
        });
        let waiter_tid = waiter_rx.recv().expect("waiter tid");
        let sleeper_tid = sleeper_rx.recv().expect("sleeper tid");
        assert!(
            settles_to(waiter_tid, true),
            "the mutex waiter was never seen in a futex"
        );
        assert!(settles_to(sleeper_tid, false));
        assert!(!in_futex_wait(std::process::id(), sleeper_tid));
        drop(held);
        waiter.join().expect("waiter");
        sleeper.join().expect("sleeper");
    }
}
