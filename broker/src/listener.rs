//! Accepting connections within bounds, so descriptors never run out.
//!
//! Each port admits at most a set number of connections at once (a semaphore permit travels
//! with each); at the bound, new connections wait in the kernel's backlog instead of taking a
//! descriptor. A connection that sends nothing within [`FIRST_BYTE_DEADLINE`] of being accepted
//! is closed, so idle sockets cannot hold the slots forever. An accept error — `EMFILE` when
//! descriptors run out anyway, a connection reset before it was accepted — is logged at most
//! once a minute and followed by a growing pause, never by an immediate retry: the loop that
//! used to spin at 100% CPU on `EMFILE` now waits.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A connection must send its first byte within this long.
pub const FIRST_BYTE_DEADLINE: Duration = Duration::from_secs(10);
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_secs(1);
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// The open-file limit this process may use: the soft limit raised to the hard one (as the Go
/// runtime and many servers do), so the bounds below come from what the host really allows.
pub fn raise_open_file_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit on RLIMIT_NOFILE with a struct we own.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        limit.rlim_cur
    }
}

/// How many client connections a node with `open_files` descriptors admits when not told:
/// half of what is left after 256 for its own files (log segments, queue files, sled) and the
/// peer port's connections, at most `configured`.
pub fn client_connection_bound(open_files: u64, configured: usize) -> usize {
    let spare = open_files.saturating_sub(256 + PEER_CONNECTIONS as u64) / 2;
    configured.min(spare.max(16) as usize)
}

/// Connections the peer port admits at once (each other node opens a few).
pub const PEER_CONNECTIONS: usize = 128;

/// The connections `listener` accepts, at most `bound` open at once, with Nagle's algorithm
/// off (serving from our own listener bypasses tonic's `tcp_nodelay`; without it a response
/// spanning several segments waits for the peer's delayed ACK, about 40 ms).
pub fn bounded(
    listener: TcpListener,
    bound: usize,
    port: &'static str,
) -> impl futures::Stream<Item = io::Result<Connection>> {
    let state = Acceptor {
        listener,
        permits: Arc::new(Semaphore::new(bound)),
        port,
        failures: 0,
        reported_at: None,
    };
    futures::stream::unfold(state, |mut state| async move {
        let connection = state.next().await;
        Some((Ok(connection), state))
    })
}

struct Acceptor {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    port: &'static str,
    /// Consecutive accept errors.
    failures: u32,
    reported_at: Option<Instant>,
}

impl Acceptor {
    /// The next connection, waiting for a free slot first and pausing after errors.
    async fn next(&mut self) -> Connection {
        loop {
            let Ok(permit) = self.permits.clone().acquire_owned().await else {
                // The semaphore is never closed; wait politely if it ever were.
                tokio::time::sleep(MAX_PAUSE).await;
                continue;
            };
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    self.failures = 0;
                    let _ = stream.set_nodelay(true);
                    return Connection::new(stream, permit);
                }
                Err(e) => {
                    drop(permit);
                    self.pause_after(e).await;
                }
            }
        }
    }

    async fn pause_after(&mut self, error: io::Error) {
        self.failures = self.failures.saturating_add(1);
        metrics::counter!("txmq_accept_errors_total", "port" => self.port).increment(1);
        let now = Instant::now();
        if self.reported_at.is_none_or(|at| now - at >= REPORT_EVERY) {
            self.reported_at = Some(now);
            tracing::warn!(port = self.port, %error, "accepting a connection failed; pausing before the next attempt (reported once a minute)");
        }
        let pause = FIRST_PAUSE
            .saturating_mul(1 << self.failures.min(8))
            .min(MAX_PAUSE);
        tokio::time::sleep(pause).await;
    }
}

/// An accepted connection holding its slot until dropped.
pub struct Connection {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// Until the first byte arrived: when the connection is given up.
    first_byte: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Connection {
    fn new(stream: TcpStream, permit: OwnedSemaphorePermit) -> Self {
        Self {
            stream,
            _permit: permit,
            first_byte: Some(Box::pin(tokio::time::sleep(FIRST_BYTE_DEADLINE))),
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        let Some(deadline) = self.first_byte.as_mut() else {
            return polled;
        };
        match &polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => self.first_byte = None,
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection sent nothing within the first-byte deadline",
                )));
            }
            _ => {}
        }
        polled
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = <TcpStream as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn the_client_bound_leaves_room_for_files_and_peers() {
        assert_eq!(client_connection_bound(1024, 10_000), 320);
        assert_eq!(client_connection_bound(1_048_576, 10_000), 10_000);
        assert_eq!(client_connection_bound(100, 10_000), 16);
    }

    #[tokio::test]
    async fn at_the_bound_the_next_connection_waits_for_a_slot() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut incoming = Box::pin(bounded(listener, 1, "test"));
        let mut first_client = TcpStream::connect(addr).await.expect("connect");
        let first = incoming.next().await.expect("stream").expect("accepted");
        let _second_client = TcpStream::connect(addr).await.expect("connect");
        let waited = tokio::time::timeout(Duration::from_millis(300), incoming.next()).await;
        assert!(
            waited.is_err(),
            "a second connection was admitted past the bound"
        );
        first_client.write_all(b"x").await.expect("write");
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(2), incoming.next()).await;
        assert!(
            matches!(second, Ok(Some(Ok(_)))),
            "the freed slot was not reused"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_is_closed_after_the_deadline() {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut incoming = Box::pin(bounded(listener, 4, "test"));
        let _client = TcpStream::connect(addr).await.expect("connect");
        let mut accepted = incoming.next().await.expect("stream").expect("accepted");
        let mut buf = [0u8; 8];
        let read = accepted.read(&mut buf).await;
        assert!(
            matches!(&read, Err(e) if e.kind() == io::ErrorKind::TimedOut),
            "{read:?}"
        );
    }
}
