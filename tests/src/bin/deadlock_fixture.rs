//! A tiny RESP server for tests, standing in for a server that deadlocks (redis-server cannot be
//! made to). One worker thread accepts and serves every connection; `DEADLOCK` makes a helper
//! thread take a mutex and keep it, after which the worker blocks on that mutex in a futex wait
//! forever, leaving later requests unread. `PING` answers `+PONG`, `TID` the worker's thread id.
//!
//! Usage: vigil-deadlock-fixture PORT   (listens on 127.0.0.1 only)
use std::{
    io::{ErrorKind, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

fn main() {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        Some(Ok(port)) => port,
        _ => {
            eprintln!("usage: vigil-deadlock-fixture PORT");
            std::process::exit(2);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("vigil-deadlock-fixture: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = serve(listener) {
        eprintln!("vigil-deadlock-fixture: {e}");
        std::process::exit(1);
    }
}

fn serve(listener: TcpListener) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let lock = Arc::new(Mutex::new(()));
    let mut conns: Vec<(TcpStream, Vec<u8>)> = Vec::new();
    loop {
        let mut idle = true;
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(true)?;
                conns.push((stream, Vec::new()));
                idle = false;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        let mut closed = Vec::new();
        for (i, (stream, buf)) in conns.iter_mut().enumerate() {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) => closed.push(i),
                Ok(n) => {
                    idle = false;
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some((command, used)) = parse_command(buf) {
                        buf.drain(..used);
                        match command.to_ascii_uppercase().as_str() {
                            "PING" => stream.write_all(b"+PONG\r\n")?,
                            "TID" => stream
                                .write_all(format!(":{}\r\n", nix::unistd::gettid()).as_bytes())?,
                            "DEADLOCK" => {
                                stream.write_all(b"+OK\r\n")?;
                                deadlock(&lock);
                            }
                            other => stream.write_all(
                                format!("-ERR unknown command '{other}'\r\n").as_bytes(),
                            )?,
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => closed.push(i),
            }
        }
        for i in closed.into_iter().rev() {
            conns.swap_remove(i);
        }
        if idle {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Blocks the calling thread forever on a mutex another thread holds.
fn deadlock(lock: &Arc<Mutex<()>>) {
    let (held_tx, held_rx) = mpsc::channel();
    let holder = Arc::clone(lock);
    std::thread::spawn(move || {
        let _guard = holder.lock();
        let _ = held_tx.send(());
        loop {
            std::thread::park();
        }
    });
    let _ = held_rx.recv();
    let _never = lock.lock();
    unreachable!("the holder never releases the lock");
}

/// The first word of one complete command in `buf` (RESP array or inline), and the bytes it used.
fn parse_command(buf: &[u8]) -> Option<(String, usize)> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&buf[..line_end]).ok()?;
    let Some(count) = line.strip_prefix('*') else {
        let word = line.split_whitespace().next().unwrap_or("").to_string();
        return Some((word, line_end + 2));
    };
    let count: usize = count.parse().ok()?;
    let mut at = line_end + 2;
    let mut first = None;
    for _ in 0..count {
        let rest = &buf[at..];
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let len: usize = std::str::from_utf8(rest.get(1..end)?).ok()?.parse().ok()?;
        let start = at + end + 2;
        let word = buf.get(start..start + len)?;
        first.get_or_insert_with(|| String::from_utf8_lossy(word).into_owned());
        at = start + len + 2;
        if at > buf.len() {
            return None;
        }
    }
    Some((first.unwrap_or_default(), at))
}
