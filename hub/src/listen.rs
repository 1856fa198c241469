//! Accepting connections, plain or TLS, without being taken down by them.
//! axum's `serve` builds hyper without a timer, so a connection that never
//! sends a whole request head stays open forever, and so does one idle
//! between keep-alive requests; hyper-util's protocol detection (HTTP/1 or
//! /2) waits for the first bytes with no limit at all, after a TLS
//! handshake too. Here a TLS handshake must finish within
//! [`HEAD_TIMEOUT`]; every connection must send its first byte within it,
//! each HTTP/1 request head too (hyper's header read timeout, which also
//! bounds the idle time between keep-alive requests), and nothing may go
//! [`SILENT_TIMEOUT`] without a byte from the peer (an HTTP/2 peer answers
//! the hub's pings); an accept that fails for want of descriptors is logged
//! once a minute, not in a loop, and retried after a pause while the
//! timeouts free descriptors; the descriptor limit is raised to the hard
//! limit at start.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// How long a connection may take to send its first byte, and each request
/// head (or wait idle before the next one).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest a connection may send nothing at all once it has started:
/// longer than any request may take (a long-poll's client is silent while
/// it waits).
pub const SILENT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long requests in flight get to finish once the hub is asked to stop:
/// as long as the longest long-poll.
const DRAIN: Duration = Duration::from_secs(35);

/// The connection builder: HTTP/1 with a header read timeout, HTTP/2 with
/// keep-alive pings (a peer that stops answering is dropped).
pub fn builder() -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT);
    // A ping every 10 s unanswered for 5 s closes an HTTP/2 connection: a
    // peer gone silent after its preface is gone within 15 s.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(10)))
        .keep_alive_timeout(Duration::from_secs(5));
    builder
}

/// Raises the soft limit of open descriptors to the hard limit: idle
/// sockets then take longer to exhaust it. Returns the limit in force.
pub fn raise_descriptor_limit() -> Option<libc::rlim_t> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct given,
    // which lives on this stack frame for both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Some(limit.rlim_cur)
}

/// Serves `app` on `listener` — over TLS with `tls`, else plain — with
/// HTTP/1 and HTTP/2 until `shutdown`, then lets requests in flight finish.
///
/// # Errors
///
/// Never, today: accept errors are logged and retried. The `Result` keeps
/// room for a listener that fails for good.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let builder = builder();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut last_logged: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(error) => {
                // Out of descriptors (or a connection reset before it was
                // accepted): say so once a minute, and give the timeouts
                // time to close idle connections.
                if last_logged.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                    tracing::error!(%error, "cannot accept connections (descriptors exhausted?); retrying");
                    last_logged = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let (builder, tls) = (builder.clone(), tls.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let Some(tls) = tls else {
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(Watched::new(tcp)), service);
                let _ = watcher.watch(connection.into_owned()).await;
                return;
            };
            let Ok(Ok(stream)) = tokio::time::timeout(HEAD_TIMEOUT, tls.accept(tcp)).await else {
                return;
            };
            let connection =
                builder.serve_connection_with_upgrades(TokioIo::new(Watched::new(stream)), service);
            let _ = watcher.watch(connection.into_owned()).await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
    Ok(())
}

/// A connection's reads under a deadline: its first byte within
/// [`HEAD_TIMEOUT`], then never [`SILENT_TIMEOUT`] without one. A read
/// past the deadline fails, and hyper closes the connection.
struct Watched<T> {
    io: T,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<T> Watched<T> {
    fn new(io: T) -> Watched<T> {
        Watched {
            io,
            deadline: Box::pin(tokio::time::sleep(HEAD_TIMEOUT)),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let next = tokio::time::Instant::now() + SILENT_TIMEOUT;
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the peer sent nothing in time",
                ))),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
