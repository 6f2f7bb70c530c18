//! `captag serve` (docs/ARCHITECTURE.md, "Serving"): a page and a JSON API over one checkpoint.
//!
//! Why this shape: tch models are not `Sync`, so inference runs on one model thread
//! ([`worker`]) behind a bounded queue — a full queue is a 503, never unbounded memory; the
//! async side (axum on tokio) only moves bytes, checks uploads ([`upload`]) and talks to SQLite
//! ([`db`]) on blocking threads. Every error is JSON `{"error": "..."}` with its status.
pub mod api;
pub mod db;
pub mod upload;
pub mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{Error, Result};

/// Everything `serve` needs (the CLI flags, checked).
#[derive(Clone, Debug)]
pub struct Config {
    pub addr: SocketAddr,
    pub db: PathBuf,
    pub keep_images: Option<PathBuf>,
    pub max_upload_bytes: usize,
    pub max_pixels: u64,
    pub queue: usize,
    pub timeout: Duration,
    pub beam: usize,
    /// `NAME@fingerprint` of the checkpoint, stored with each rating.
    pub run_id: String,
}

/// Shared by the handlers.
pub struct State {
    pub config: Config,
    pub queue: worker::Queue,
    pub db: Mutex<db::Ratings>,
    /// Jobs submitted and not yet answered (for /healthz).
    pub in_flight: std::sync::atomic::AtomicUsize,
}

/// Serve until SIGINT/SIGTERM, then stop accepting, finish the requests in flight and close
/// the database. `ready` gets the bound address (port 0 picks a free one; tests use that).
pub fn run(
    config: Config,
    load: impl FnOnce() -> Result<worker::Models> + Send + 'static,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    if let Some(dir) = &config.keep_images {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let ratings = db::Ratings::open(&config.db)?;
    let (queue, model_thread) = worker::spawn(config.queue, load)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::invalid(format!("cannot start the server runtime: {e}")))?;
    let addr = config.addr;
    let grace = config.timeout + Duration::from_secs(2);
    // Longer than any request may wait for its captions (it gets 503 at `timeout`).
    let idle = config.timeout + Duration::from_secs(5);
    let state = Arc::new(State {
        config,
        queue,
        db: Mutex::new(ratings),
        in_flight: Default::default(),
    });
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::invalid(format!("--addr {addr}: cannot listen: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Error::invalid(format!("--addr {addr}: {e}")))?;
        ready(bound);
        let stopping = Arc::new(tokio::sync::Notify::new());
        let signalled = stopping.clone();
        let listener = IdleTimeoutListener {
            inner: listener,
            idle,
        };
        let server = axum::serve(listener, api::router(state)).with_graceful_shutdown(async move {
            shutdown_signal().await;
            signalled.notify_one();
        });
        // Graceful, but bounded: a client holding a connection open (partial headers, an
        // idle keep-alive) must not keep the process up after SIGTERM. Requests in flight get
        // the request timeout and a little more to finish.
        tokio::select! {
            r = server => r.map_err(|e| Error::invalid(format!("server: {e}"))),
            _ = async {
                stopping.notified().await;
                tokio::time::sleep(grace).await;
            } => {
                crate::fsio::errln!(
                    "shutting down: connections still open after {} s are closed",
                    grace.as_secs()
                );
                Ok(())
            }
        }
    })?;
    // Tasks still blocked (a decode of a closed connection) are not waited for.
    rt.shutdown_timeout(Duration::from_secs(1));
    // The router (and with it the last queue sender) is gone: the model thread ends.
    let _ = model_thread.join();
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // No signal handling: serve until killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    crate::fsio::errln!("shutting down: finishing the requests in flight");
}

/// The server's listener, whose connections time out when the client sends nothing for
/// `idle` while the server waits to read (partial request headers, a stalled body, an idle
/// keep-alive): such a connection used to stay open for as long as the client liked, and kept
/// a graceful shutdown from ever finishing. axum has no header-read timeout of its own.
struct IdleTimeoutListener {
    inner: tokio::net::TcpListener,
    idle: Duration,
}

impl axum::serve::Listener for IdleTimeoutListener {
    type Io = IdleTimeout;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let io = IdleTimeout {
            io,
            idle: self.idle,
            deadline: None,
        };
        (io, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A TCP stream whose pending reads fail with `TimedOut` after `idle` without a byte; any
/// byte read or written starts the wait again.
struct IdleTimeout {
    io: tokio::net::TcpStream,
    idle: Duration,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl tokio::io::AsyncRead for IdleTimeout {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let idle = this.idle;
                let sleep = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "client sent nothing",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl tokio::io::AsyncWrite for IdleTimeout {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        if r.is_ready() {
            self.deadline = None;
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
