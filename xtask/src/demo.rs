//! `cargo xtask demo`: a real redis-server, the real agent, and a few faults, shown as they happen.
//!
//! The agent prints what the kernel sees while the demo stops the server (SIGSTOP) with a client
//! waiting, makes it sleep inside a command (DEBUG SLEEP), runs a 300 ms Lua script, kills it with
//! kill -9, and starts it again on the same port. Everything started is stopped at the end, and on
//! Ctrl-C.
use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Child, Command},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::{Context, Result};
use nix::sys::signal::{SigHandler, Signal, signal};
use vigil_tests::{RedisServer, free_port, wait_until};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: nix::libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Sleeps in small steps; false when Ctrl-C arrived meanwhile.
fn pause(d: Duration) -> bool {
    let steps = (d.as_millis() / 10).max(1);
    for _ in 0..steps {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    !INTERRUPTED.load(Ordering::SeqCst)
}

fn step(text: &str) {
    println!("\n\x1b[1m==> {text}\x1b[0m");
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        // SIGINT makes the agent print its summary before it exits.
        let _ = vigil_tests::signal(self.0.id(), Signal::SIGINT);
        let child = &mut self.0;
        if wait_until(Duration::from_secs(5), "the agent to exit", || {
            child.try_wait().ok().flatten()
        })
        .is_err()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A client that sends PING and waits for the answer on a thread, as a real client would.
fn waiting_client(port: u16) -> Result<std::thread::JoinHandle<()>> {
    let mut c = TcpStream::connect(("127.0.0.1", port))?;
    c.write_all(b"*1\r\n$4\r\nPING\r\n")?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(std::thread::spawn(move || {
        let mut reply = [0u8; 16];
        let _ = c.read(&mut reply);
    }))
}

/// Sends one raw RESP command and reads its answer on a thread.
fn send(port: u16, resp: String) -> Result<std::thread::JoinHandle<()>> {
    let mut c = TcpStream::connect(("127.0.0.1", port))?;
    c.write_all(resp.as_bytes())?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(std::thread::spawn(move || {
        let mut reply = [0u8; 64];
        let _ = c.read(&mut reply);
    }))
}

pub fn run() -> Result<()> {
    crate::setup::run()?;
    step("building vigil (release)");
    crate::run_cmd(crate::cargo().args(["build", "--release", "--bins"]))?;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { signal(Signal::SIGINT, SigHandler::Handler(on_interrupt)) }
        .context("installing the Ctrl-C handler")?;

    let port = free_port()?;
    step(&format!("starting redis-server on 127.0.0.1:{port}"));
    let mut server = RedisServer::start_on(port)?;
    println!("redis-server pid {}", server.pid());

    step("starting `vigil-agent watch --port {port}`: every line below is the agent's");
    let agent_bin = crate::root().join("target/release/vigil-agent");
    let agent = Agent(
        Command::new(&agent_bin)
            .args(["watch", "--port", &port.to_string()])
            .spawn()
            .with_context(|| format!("starting {}", agent_bin.display()))?,
    );
    if !pause(Duration::from_millis(1500)) {
        return Ok(());
    }

    step("fault 1: SIGSTOP the server for 400 ms while a client waits -> stopped, then continued");
    server.signal(Signal::SIGSTOP)?;
    let client = waiting_client(port)?;
    let resumed = pause(Duration::from_millis(400));
    server.signal(Signal::SIGCONT)?;
    let _ = client.join();
    if !resumed || !pause(Duration::from_millis(800)) {
        return Ok(());
    }

    step(
        "fault 2: DEBUG SLEEP 0.4 while a client waits -> blocked (a slow command, not a dead server)",
    );
    let sleeper = send(
        port,
        "*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n$3\r\n0.4\r\n".to_string(),
    )?;
    std::thread::sleep(Duration::from_millis(30));
    let client = waiting_client(port)?;
    let _ = (sleeper.join(), client.join());
    if !pause(Duration::from_millis(800)) {
        return Ok(());
    }

    step(
        "fault 3: a 400 ms Lua busy loop while a client waits -> busy (on CPU, degraded, not dead)",
    );
    let script = "local t=redis.call('TIME') local s=t[1]*1000000+t[2] \
                  repeat t=redis.call('TIME') until t[1]*1000000+t[2]-s >= 400000 return 1";
    let mut busy = TcpStream::connect(("127.0.0.1", port))?;
    busy.write_all(
        format!(
            "*3\r\n$4\r\nEVAL\r\n${}\r\n{script}\r\n$1\r\n0\r\n",
            script.len()
        )
        .as_bytes(),
    )?;
    std::thread::sleep(Duration::from_millis(30));
    let client = waiting_client(port)?;
    if !pause(Duration::from_millis(1200)) {
        return Ok(());
    }
    drop((client, busy));

    step("fault 4: kill -9 the server -> exited (signal 9), listener_closed");
    server.signal(Signal::SIGKILL)?;
    server.wait_exit()?;
    if !pause(Duration::from_millis(800)) {
        return Ok(());
    }

    step(&format!(
        "restarting redis-server on port {port} -> the agent follows it (target_changed)"
    ));
    let restarted = RedisServer::start_on(port)?;
    println!("new redis-server pid {}", restarted.pid());
    if !pause(Duration::from_millis(1200)) {
        return Ok(());
    }

    step("stopping the agent: it prints its run-queue and unread-age summary");
    drop(agent);
    drop(restarted);
    println!("\nDone. The controller and automatic failover arrive with the controller issue.");
    Ok(())
}
