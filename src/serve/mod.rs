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
        axum::serve(listener, api::router(state))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| Error::invalid(format!("server: {e}")))
    })?;
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
    eprintln!("shutting down: finishing the requests in flight");
}
