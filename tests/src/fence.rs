//! The fence seen from outside the agent: [`PinnedFence`], the bpffs directory an agent pins a
//! server port's fence in (the fence outlives the agent by design, so a test takes it down when
//! it ends), and [`RawClient`], a client on a plain TCP socket that tells exactly what came back
//! to a request: a reply, the connection closed or reset, or nothing at all.
use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context, Result};

/// The fence pinned for one server port; removed (so lifted) on drop if still there.
pub struct PinnedFence {
    pub dir: PathBuf,
}

impl PinnedFence {
    /// Where the agent pins the fence of `port`: `<bpffs>/vigil/fence/<port>`.
    pub fn of_port(port: u16) -> Result<Self> {
        let mounts = std::fs::read_to_string("/proc/mounts")?;
        let bpffs = mounts
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&"bpf")).then(|| f[1].to_string())
            })
            .unwrap_or_else(|| "/sys/fs/bpf".into());
        Ok(Self {
            dir: PathBuf::from(bpffs)
                .join("vigil")
                .join("fence")
                .join(port.to_string()),
        })
    }

    /// Whether a fence is up: a program's link is pinned.
    pub fn is_up(&self) -> bool {
        self.dir.join("ingress").exists() || self.dir.join("egress").exists()
    }
}

impl Drop for PinnedFence {
    fn drop(&mut self) {
        // Removing the link pins detaches the programs; the maps go with the directory.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What came back to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Bytes of a reply.
    Reply(String),
    /// The server closed the connection (FIN).
    Closed,
    /// The connection was reset (RST), or found reset when writing.
    Reset,
    /// Nothing within the wait.
    Nothing,
}

/// A RESP client on a plain socket.
pub struct RawClient {
    stream: TcpStream,
}

impl RawClient {
    /// Connects to 127.0.0.1:`port` within `limit`.
    pub fn connect(port: u16, limit: Duration) -> Result<Self> {
        Self::connect_to(SocketAddr::from(([127, 0, 0, 1], port)), limit)
    }

    /// Connects to `addr` within `limit`.
    pub fn connect_to(addr: SocketAddr, limit: Duration) -> Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, limit)
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Self { stream })
    }

    /// Sends one command (its words, as RESP) and waits up to `wait` for what comes back.
    pub fn request(&mut self, words: &[&str], wait: Duration) -> Answer {
        if let Err(e) = self.send(words) {
            return classify(&e);
        }
        self.answer(wait)
    }

    /// Sends one command without waiting.
    pub fn send(&mut self, words: &[&str]) -> std::io::Result<()> {
        let mut resp = format!("*{}\r\n", words.len());
        for w in words {
            resp.push_str(&format!("${}\r\n{w}\r\n", w.len()));
        }
        self.stream.write_all(resp.as_bytes())
    }

    /// Waits up to `wait` for what comes back.
    pub fn answer(&mut self, wait: Duration) -> Answer {
        if self.stream.set_read_timeout(Some(wait)).is_err() {
            return Answer::Reset;
        }
        let mut buf = [0u8; 4096];
        match self.stream.read(&mut buf) {
            Ok(0) => Answer::Closed,
            Ok(n) => Answer::Reply(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) => classify(&e),
        }
    }
}

fn classify(e: &std::io::Error) -> Answer {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Answer::Nothing,
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted => {
            Answer::Reset
        }
        _ => Answer::Reset,
    }
}
