//! Accepting connections without being taken down by them. axum's `serve`
//! builds hyper without a timer, so a connection that never sends a whole
//! request head stays open forever, and so does one idle between
//! keep-alive requests; hyper-util's protocol detection (HTTP/1 or /2)
//! waits for the first bytes with no limit at all. Here every connection
//! must send its first byte within [`HEAD_TIMEOUT`] and each request head
//! within it too (hyper's header read timeout, which also bounds the idle
//! time between keep-alive requests); an accept that fails for want of
//! descriptors is logged once a minute, not in a loop, and retried after a
//! pause while the timeouts free descriptors; the descriptor limit is
//! raised to the hard limit at start.

use std::future::Future;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// How long a connection may take to send its first byte, and each request
/// head (or wait idle before the next one).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

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
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10));
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

/// Serves `app` on `listener` over plain HTTP/1 and HTTP/2 (prior
/// knowledge) until `shutdown`, then lets requests in flight finish.
///
/// # Errors
///
/// Never, today: accept errors are logged and retried. The `Result` keeps
/// the signature of the TLS path's.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
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
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // The protocol is detected from the first bytes, with no limit
            // of its own: a connection that sends nothing is closed here.
            let mut first = [0u8; 1];
            match tokio::time::timeout(HEAD_TIMEOUT, tcp.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
            let _ = watcher.watch(connection.into_owned()).await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
    Ok(())
}
