//! The HTTP listener every role serves on, with what an anonymous client may hold of it bounded:
//! a cap on open connections (past it, new ones wait in the kernel's accept queue), a deadline
//! for a request's headers counted from when the connection opens or its last response ended
//! (a half-sent request and an idle keep-alive connection are both closed by it: slowloris), and
//! a cap on the bytes of a request's head. The edge layer refuses a long URL (414) or large
//! headers (431) below that cap with a problem body; past it hyper answers 431 on its own.
//!
//! HTTP/1.1 only: a browser speaks HTTP/2 only over TLS, which a load balancer in front ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// The most bytes of a request line and headers hyper buffers; the edge layer's own limits
/// (`movies_web::MAX_URI_BYTES`, `movies_web::MAX_HEADER_BYTES`) are below it.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long a graceful stop waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(30);

/// What one listener lets its clients hold.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Connections open at once; further ones wait to be accepted.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers, counted from when it opens
    /// or its last response was written: it also closes idle keep-alive connections.
    pub header_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self { max_connections: 4096, header_timeout: Duration::from_secs(20) }
    }
}

/// Serves `router` on `listener` (with each connection's peer address, for rate limits) until
/// `shutdown` turns true, then finishes the requests in flight (for at most `DRAIN`).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).max_buf_size(MAX_HEAD_BYTES);
    loop {
        let accepted = tokio::select! {
            accepted = accept(&listener, &slots) => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, peer, slot) = accepted;
        let service = router.clone().map_request(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        });
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away or sends a bad request ends its connection; nothing to tell.
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .context("requests in flight did not finish in time")
}

/// The next connection, once a slot is free for it. A failed accept (out of file descriptors,
/// a connection reset before it was taken) is logged and retried after a pause, never fatal.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> (tokio::net::TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit) {
    // The semaphore is never closed.
    let slot = slots.clone().acquire_owned().await.expect("connection slots stay open");
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => return (stream, peer, slot),
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
