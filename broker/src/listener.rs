//! Accepting connections within bounds, so descriptors never run out.
//!
//! Each port admits at most a set number of connections at once (a semaphore permit travels
//! with each); at the bound, new connections wait in the kernel's backlog instead of taking a
//! descriptor. A connection that sends nothing within [`FIRST_BYTE_DEADLINE`] of being accepted
//! is closed, and so is one that then sends nothing for its port's idle timeout, so idle sockets
//! cannot hold the slots forever. An accept error — `EMFILE` when
//! descriptors run out anyway, a connection reset before it was accepted — is logged at most
//! once a minute and followed by a growing pause, never by an immediate retry: the loop that
//! used to spin at 100% CPU on `EMFILE` now waits.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::StreamExt;
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

/// A port's TLS configuration, reloaded when its files change; `None` serves plaintext.
pub type PortTls = Option<Arc<crate::tls::Reloading<rustls::ServerConfig>>>;

/// TLS handshakes in progress at once on one port, beyond which accepted connections wait.
const HANDSHAKES_IN_FLIGHT: usize = 64;

/// The connections `listener` accepts, at most `bound` open at once, with Nagle's algorithm
/// off (serving from our own listener bypasses tonic's `tcp_nodelay`; without it a response
/// spanning several segments waits for the peer's delayed ACK, about 40 ms). With `tls`, each
/// connection's handshake runs in its own task (a slow client must not hold up the others) and
/// must finish within [`FIRST_BYTE_DEADLINE`].
pub fn bounded(
    listener: TcpListener,
    bound: usize,
    port: &'static str,
    tls: PortTls,
    idle: Duration,
) -> futures::stream::BoxStream<'static, io::Result<Connection>> {
    bounded_with(listener, bound, port, (tls, false), idle)
}

/// [`bounded`], where a TLS port may also take plaintext (`plaintext_too`): a connection whose
/// first byte is not a TLS handshake record's (0x16) is served as plaintext HTTP/2.
pub fn bounded_with(
    listener: TcpListener,
    bound: usize,
    port: &'static str,
    (tls, plaintext_too): (PortTls, bool),
    idle: Duration,
) -> futures::stream::BoxStream<'static, io::Result<Connection>> {
    let state = Acceptor {
        listener,
        permits: Arc::new(Semaphore::new(bound)),
        port,
        failures: 0,
        reported_at: None,
        idle,
    };
    match tls {
        None => Box::pin(futures::stream::unfold(state, |mut state| async move {
            let (stream, permit) = state.next().await;
            let connection = Connection::new(Transport::Plain(stream), permit, state.idle);
            Some((Ok(connection), state))
        })),
        Some(tls) => {
            let (sender, receiver) = tokio::sync::mpsc::channel(HANDSHAKES_IN_FLIGHT);
            tokio::spawn(accept_tls(state, (tls, plaintext_too), sender));
            Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver).map(Ok))
        }
    }
}

/// Accepts connections and hands each to a handshake task, until the server stops listening.
async fn accept_tls(
    mut state: Acceptor,
    (tls, plaintext_too): (Arc<crate::tls::Reloading<rustls::ServerConfig>>, bool),
    ready: tokio::sync::mpsc::Sender<Connection>,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES_IN_FLIGHT));
    loop {
        let (stream, permit) = tokio::select! {
            _ = ready.closed() => return,
            accepted = state.next() => accepted,
        };
        let Ok(handshake_slot) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
        let (ready, port, idle) = (ready.clone(), state.port, state.idle);
        tokio::spawn(async move {
            let _slot = handshake_slot;
            if plaintext_too && !starts_with_tls(&stream).await {
                let _ = ready
                    .send(Connection::new(Transport::Plain(stream), permit, idle))
                    .await;
                return;
            }
            match tokio::time::timeout(FIRST_BYTE_DEADLINE, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    let transport = Transport::Tls(Box::new(tls_stream));
                    let _ = ready.send(Connection::new(transport, permit, idle)).await;
                }
                Ok(Err(e)) => handshake_failed(port, &e.to_string()),
                Err(_) => handshake_failed(port, "no handshake within the deadline"),
            }
        });
    }
}

/// Whether the connection's first byte (waited for up to [`FIRST_BYTE_DEADLINE`], not
/// consumed) opens a TLS handshake record. Silence counts as TLS: the handshake's own deadline
/// then closes it.
async fn starts_with_tls(stream: &TcpStream) -> bool {
    const TLS_HANDSHAKE_RECORD: u8 = 0x16;
    let mut first = [0u8; 1];
    match tokio::time::timeout(FIRST_BYTE_DEADLINE, stream.peek(&mut first)).await {
        Ok(Ok(1)) => first[0] == TLS_HANDSHAKE_RECORD,
        _ => true,
    }
}

/// A failed handshake: plaintext to a TLS port, an untrusted client certificate, a scanner.
/// Counted, and logged at debug level only: anyone can cause these, so they must not flood
/// the log.
fn handshake_failed(port: &'static str, reason: &str) {
    metrics::counter!("txmq_tls_handshake_failures_total", "port" => port).increment(1);
    tracing::debug!(port, reason, "TLS handshake failed");
}

struct Acceptor {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    port: &'static str,
    /// Consecutive accept errors.
    failures: u32,
    reported_at: Option<Instant>,
    /// A connection silent for this long (after its first byte) is closed.
    idle: Duration,
}

impl Acceptor {
    /// The next connection and its slot, waiting for a free slot first and pausing after
    /// errors.
    async fn next(&mut self) -> (TcpStream, OwnedSemaphorePermit) {
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
                    return (stream, permit);
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

/// What a connection speaks over its socket.
enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// An accepted connection holding its slot until dropped.
pub struct Connection {
    stream: Transport,
    _permit: OwnedSemaphorePermit,
    /// When the connection is given up if it stays silent: the first-byte deadline, then
    /// moved (lazily, when it fires) to the last read plus `idle`.
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// When data last arrived; `None` before the first byte.
    last_read: Option<tokio::time::Instant>,
    idle: Duration,
}

impl Connection {
    fn new(stream: Transport, permit: OwnedSemaphorePermit, idle: Duration) -> Self {
        Self {
            stream,
            _permit: permit,
            deadline: Box::pin(tokio::time::sleep(FIRST_BYTE_DEADLINE)),
            last_read: None,
            idle,
        }
    }

    /// `Ready` with an error once the connection has been silent past its deadline. Reads only
    /// stamp `last_read` (cheap); the timer is moved here, when it fires early.
    fn poll_silence(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        while self.deadline.as_mut().poll(cx).is_ready() {
            let Some(last) = self.last_read else {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection sent nothing within the first-byte deadline",
                ));
            };
            let due = last + self.idle;
            if tokio::time::Instant::now() >= due {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection was idle past --idle-connection-timeout",
                ));
            }
            self.deadline.as_mut().reset(due);
        }
        Poll::Pending
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = on_transport!(self, s => Pin::new(s).poll_read(cx, buf));
        match &polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                self.last_read = Some(tokio::time::Instant::now());
            }
            Poll::Pending => {
                if let Poll::Ready(silent) = self.poll_silence(cx) {
                    return Poll::Ready(Err(silent));
                }
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
        on_transport!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_transport!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_transport!(self, s => Pin::new(s).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        on_transport!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = <TcpStream as tonic::transport::server::Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match &self.stream {
            Transport::Plain(stream) => stream.connect_info(),
            Transport::Tls(stream) => stream.get_ref().0.connect_info(),
        }
    }
}

/// Forwards each I/O call to the socket, whichever transport it is.
macro_rules! on_transport {
    ($self:expr, $stream:ident => $call:expr) => {
        match &mut $self.stream {
            Transport::Plain($stream) => $call,
            Transport::Tls($stream) => $call,
        }
    };
}
use on_transport;

#[cfg(test)]
mod tests {
    use super::*;
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
        let mut incoming = Box::pin(bounded(listener, 1, "test", None, Duration::from_secs(60)));
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
        let mut incoming = Box::pin(bounded(listener, 4, "test", None, Duration::from_secs(60)));
        let _client = TcpStream::connect(addr).await.expect("connect");
        let mut accepted = incoming.next().await.expect("stream").expect("accepted");
        let mut buf = [0u8; 8];
        let read = accepted.read(&mut buf).await;
        assert!(
            matches!(&read, Err(e) if e.kind() == io::ErrorKind::TimedOut),
            "{read:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_silent_past_the_idle_timeout_is_closed_and_a_talking_one_is_not() {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let idle = Duration::from_secs(60);
        let mut incoming = Box::pin(bounded(listener, 4, "test", None, idle));
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let mut accepted = incoming.next().await.expect("stream").expect("accepted");
        let mut buf = [0u8; 8];
        for _ in 0..3 {
            // Talking every 40 s (past the first-byte deadline, within the idle timeout).
            client.write_all(b"x").await.expect("write");
            let read = accepted.read(&mut buf).await.expect("read");
            assert_eq!(read, 1);
            tokio::time::advance(Duration::from_secs(40)).await;
        }
        let started = tokio::time::Instant::now();
        let read = accepted.read(&mut buf).await;
        assert!(
            matches!(&read, Err(e) if e.kind() == io::ErrorKind::TimedOut),
            "{read:?}"
        );
        assert!(
            started.elapsed() <= idle,
            "closed only after {:?}",
            started.elapsed()
        );
    }
}
