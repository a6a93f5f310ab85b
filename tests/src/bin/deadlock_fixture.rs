//! A tiny RESP server for tests, standing in for a server that deadlocks (redis-server cannot be
//! made to). One worker thread accepts and serves every connection; `DEADLOCK` makes a helper
//! thread take a mutex and keep it, after which the worker blocks on that mutex in a futex wait
//! until the process gets SIGUSR1 (for ever without it), leaving later requests unread meanwhile.
//! `TID` answers the worker's thread id.
//!
//! Alone, it answers `PING` with `+PONG` and nothing else. Given a backend port, it is a proxy in
//! front of that redis-server instead: every other command, replication included, goes through
//! the worker to the backend, so the fixture can stand in for a data store's primary.
//!
//! Usage: `vigil-deadlock-fixture PORT [BACKEND_PORT]` (127.0.0.1 only); `kill -USR1` ends a
//! deadlock.
use std::{
    io::{ErrorKind, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use nix::sys::signal::{SigSet, Signal};

fn main() {
    // SIGUSR1 ends a deadlock. It is blocked here, before any thread starts (threads inherit the
    // mask), and only ever taken by the thread holding the mutex, which waits for it: no handler
    // runs anywhere.
    if let Err(e) = usr1().thread_block() {
        eprintln!("vigil-deadlock-fixture: cannot block SIGUSR1: {e}");
        std::process::exit(1);
    }
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        Some(Ok(port)) => port,
        _ => {
            eprintln!("usage: vigil-deadlock-fixture PORT [BACKEND_PORT]");
            std::process::exit(2);
        }
    };
    let backend: Option<u16> = match std::env::args().nth(2).map(|p| p.parse()) {
        None => None,
        Some(Ok(port)) => Some(port),
        Some(Err(_)) => {
            eprintln!("usage: vigil-deadlock-fixture PORT [BACKEND_PORT]");
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
    if let Err(e) = serve(listener, backend) {
        eprintln!("vigil-deadlock-fixture: {e}");
        std::process::exit(1);
    }
}

/// One client connection: its unparsed bytes, and its backend connection when proxying.
struct Conn {
    client: TcpStream,
    buf: Vec<u8>,
    backend: Option<TcpStream>,
}

fn serve(listener: TcpListener, backend: Option<u16>) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let lock = Arc::new(Mutex::new(()));
    let mut conns: Vec<Conn> = Vec::new();
    loop {
        let mut idle = true;
        match listener.accept() {
            Ok((client, _)) => {
                client.set_nonblocking(true)?;
                let backend = match backend {
                    Some(port) => {
                        let b = TcpStream::connect(("127.0.0.1", port))?;
                        b.set_nonblocking(true)?;
                        Some(b)
                    }
                    None => None,
                };
                conns.push(Conn {
                    client,
                    buf: Vec::new(),
                    backend,
                });
                idle = false;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        let mut closed = Vec::new();
        for (i, conn) in conns.iter_mut().enumerate() {
            match pump(conn, &lock) {
                Ok(busy) => idle &= !busy,
                // A peer that went away closes this connection only.
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

/// Moves what is ready on one connection; true when anything moved. An error means the
/// connection is finished.
fn pump(conn: &mut Conn, lock: &Arc<Mutex<()>>) -> std::io::Result<bool> {
    let mut busy = false;
    let mut chunk = [0u8; 16384];
    match conn.client.read(&mut chunk) {
        Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
        Ok(n) => {
            busy = true;
            conn.buf.extend_from_slice(&chunk[..n]);
            while let Some((command, used)) = parse_command(&conn.buf) {
                let raw: Vec<u8> = conn.buf.drain(..used).collect();
                match (command.to_ascii_uppercase().as_str(), &mut conn.backend) {
                    ("TID", _) => send(
                        &mut conn.client,
                        format!(":{}\r\n", nix::unistd::gettid()).as_bytes(),
                    )?,
                    ("DEADLOCK", _) => {
                        send(&mut conn.client, b"+OK\r\n")?;
                        deadlock(lock);
                    }
                    (_, Some(backend)) => send(backend, &raw)?,
                    ("PING", None) => send(&mut conn.client, b"+PONG\r\n")?,
                    (other, None) => send(
                        &mut conn.client,
                        format!("-ERR unknown command '{other}'\r\n").as_bytes(),
                    )?,
                }
            }
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    if let Some(backend) = &mut conn.backend {
        match backend.read(&mut chunk) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                busy = true;
                send(&mut conn.client, &chunk[..n])?;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(busy)
}

/// Writes all of `bytes` to a non-blocking socket, waiting out a full send buffer (for at most
/// 5 s: a peer that reads nothing for that long is gone as far as a test fixture cares).
fn send(stream: &mut TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    let mut waits = 0;
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock && waits < 5000 => {
                waits += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn usr1() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGUSR1);
    set
}

/// Blocks the calling thread on a mutex another thread holds, in a futex wait, until SIGUSR1.
fn deadlock(lock: &Arc<Mutex<()>>) {
    let (held_tx, held_rx) = mpsc::channel();
    let holder = Arc::clone(lock);
    std::thread::spawn(move || {
        let _guard = holder.lock();
        let _ = held_tx.send(());
        // Asleep in sigwait until SIGUSR1 (for ever without it); the guard goes with the thread.
        while usr1().wait() != Ok(Signal::SIGUSR1) {}
    });
    let _ = held_rx.recv();
    // Poisoning cannot happen (the holder never panics); either way the lock is taken and let go.
    drop(lock.lock());
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
