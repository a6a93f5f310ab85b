//! Accepting TCP connections without spinning: every listener of both daemons (the Sentinel
//! endpoint, gRPC, /metrics) takes its connections through [`Acceptor`].
//!
//! `accept(2)` fails at once, again and again, while the process is out of file descriptors
//! (EMFILE), the host is (ENFILE) or the kernel is short of memory (ENOBUFS, ENOMEM): the
//! pending connection stays in the backlog and the listener stays readable. A loop that simply
//! retries burns a core until the shortage ends. [`Acceptor`] pauses [`ACCEPT_BACKOFF`] after
//! such an error instead, and retries at once only after errors that concern one connection (a
//! client that reset before it was accepted).
use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use tokio::{
    net::{TcpListener, TcpStream},
    time::Sleep,
};

/// Pause after an accept that failed for want of descriptors or memory: long enough that a
/// flood costs next to no CPU, short enough that service resumes about as soon as it can.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// At most one warning per this long while accepts keep failing, so a flood cannot flood the log.
const WARN_EVERY: Duration = Duration::from_secs(5);

/// What a failed accept means for the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptError {
    /// The one connection failed (reset or aborted before it was accepted): go on at once.
    Connection,
    /// The process or host is short of descriptors or memory, or the error is unknown: pause.
    Resources,
}

impl AcceptError {
    pub fn of(e: &io::Error) -> Self {
        use nix::errno::Errno;
        match e.kind() {
            io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted => return Self::Connection,
            _ => {}
        }
        match e.raw_os_error().map(Errno::from_raw) {
            // accept(2): "Linux passes already-pending network errors on the new socket as an
            // error code from accept()"; each concerns that connection only.
            Some(
                Errno::EPROTO
                | Errno::ENOPROTOOPT
                | Errno::EHOSTDOWN
                | Errno::ENONET
                | Errno::EHOSTUNREACH
                | Errno::EOPNOTSUPP
                | Errno::ENETUNREACH
                | Errno::ETIMEDOUT,
            ) => Self::Connection,
            _ => Self::Resources,
        }
    }
}

/// A listener's accept loop, pausing while the process is out of descriptors or memory. Use
/// [`Acceptor::accept`] in a loop, or the acceptor itself as a stream of connections (for
/// tonic's `serve_with_incoming`); neither ever returns an error.
pub struct Acceptor {
    listener: TcpListener,
    /// The server it accepts for, as logs name it.
    what: &'static str,
    backoff: Option<Pin<Box<Sleep>>>,
    warned: Option<Instant>,
}

impl Acceptor {
    pub fn new(listener: TcpListener, what: &'static str) -> Self {
        Self {
            listener,
            what,
            backoff: None,
            warned: None,
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection, however many accepts fail first.
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<(TcpStream, SocketAddr)> {
        loop {
            if let Some(sleep) = self.backoff.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                self.backoff = None;
            }
            match ready!(self.listener.poll_accept(cx)) {
                Ok(accepted) => return Poll::Ready(accepted),
                Err(e) => match AcceptError::of(&e) {
                    AcceptError::Connection => {
                        tracing::debug!(server = self.what, error = %e, "a connection failed before it was accepted");
                    }
                    AcceptError::Resources => {
                        if self.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                            self.warned = Some(Instant::now());
                            tracing::warn!(
                                server = self.what, error = %e, backoff = ?ACCEPT_BACKOFF,
                                "accept failed: pausing before the next (out of file descriptors or memory?)"
                            );
                        }
                        self.backoff = Some(Box::pin(tokio::time::sleep(ACCEPT_BACKOFF)));
                    }
                },
            }
        }
    }
}

impl tokio_stream::Stream for Acceptor {
    type Item = io::Result<TcpStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_accept(cx).map(|(stream, _)| {
            // Every message on vigil's links is small and waited for (a verdict, a fence
            // command): sent at once, not held back by Nagle for the previous one's ACK.
            let _ = stream.set_nodelay(true);
            Some(Ok(stream))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;

    #[test]
    fn running_out_of_descriptors_or_memory_pauses_and_a_failed_connection_does_not() {
        for errno in [Errno::EMFILE, Errno::ENFILE, Errno::ENOBUFS, Errno::ENOMEM] {
            let e = io::Error::from_raw_os_error(errno as i32);
            assert_eq!(AcceptError::of(&e), AcceptError::Resources, "{errno}");
        }
        for errno in [
            Errno::ECONNABORTED,
            Errno::EINTR,
            Errno::EPROTO,
            Errno::ETIMEDOUT,
        ] {
            let e = io::Error::from_raw_os_error(errno as i32);
            assert_eq!(AcceptError::of(&e), AcceptError::Connection, "{errno}");
        }
    }

    #[tokio::test]
    async fn connections_are_accepted_as_they_come() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut acceptor = Acceptor::new(listener, "test");
        let client = TcpStream::connect(addr).await.unwrap();
        let (_, peer) = acceptor.accept().await;
        assert_eq!(peer, client.local_addr().unwrap());
    }
}
