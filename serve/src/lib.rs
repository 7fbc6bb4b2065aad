//! `facegate serve`: face matching as an HTTP/JSON service (axum + tokio).
//!
//! The index is the in-process exact index over a signed gallery file, installed and hot-reloaded
//! under the same rules as a door unit's ([`facegate_shared::install`]): trusted signature,
//! encoder binding, replay guard. Safe by default: loopback address, bearer tokens from a file
//! (kept as digests, compared in constant time, never logged), a request body cap, the face
//! pipeline's decoder limits, a concurrency limit answering 503, a whole-request timeout, JSON
//! errors with stable codes (see `docs/openapi.yaml`), graceful shutdown on SIGINT/SIGTERM.

pub mod api;
pub mod auth;
pub mod error;
pub mod gallery;
pub mod index;
pub mod metrics;
pub mod pg;

use facegate_face::{decode_image, Encoder, FaceDetector, FaceError, FacePipeline};
use facegate_shared::Embedding;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use api::{App, ROUTES};
pub use auth::Tokens;
pub use error::ApiError;
pub use gallery::{Reload, ServedGallery};

/// Photo bytes → the embedding of its one face. The real one is the face pipeline; tests of the
/// service logic may use a fake.
pub trait FaceEmbedder: Send + Sync + 'static {
    /// Embeds the single face in an encoded image (JPEG, PNG, …), under the pipeline's decoder
    /// limits.
    fn embed_photo(&self, bytes: &[u8]) -> Result<Embedding, FaceError>;
}

impl<D, E> FaceEmbedder for FacePipeline<D, E>
where
    D: FaceDetector + Send + Sync + 'static,
    E: Encoder + Send + Sync + 'static,
{
    fn embed_photo(&self, bytes: &[u8]) -> Result<Embedding, FaceError> {
        Ok(self.embed_one(&decode_image(bytes)?)?.embedding)
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The tokens file is unreadable or holds an unacceptable token.
    #[error("tokens file {path}: {why}")]
    Tokens { path: String, why: String },
    /// The gallery could not be installed.
    #[error("gallery {0}")]
    Gallery(String),
    /// Binding the address or running the server failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How the service runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on (default loopback).
    pub listen: SocketAddr,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Requests answered at once; more get 503.
    pub max_concurrent: usize,
    /// Longest a request may take, body read included.
    pub request_timeout: Duration,
    /// How often the gallery file is looked at.
    pub reload_interval: Duration,
    /// One stderr line per request.
    pub access_log: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 8 << 20,
            max_concurrent: 2 * std::thread::available_parallelism().map_or(2, |n| n.get()),
            request_timeout: Duration::from_secs(30),
            reload_interval: Duration::from_secs(1),
            access_log: true,
        }
    }
}

/// Where the service's index lives.
pub enum IndexSpec {
    /// The signed gallery file, in memory.
    Memory(Box<ServedGallery>),
    /// PostgreSQL + pgvector at this URL, loaded by `facegate gallery sync-db`.
    Postgres {
        /// Connection URL.
        url: String,
        /// Search mode when a request names none.
        default_mode: pg::SearchMode,
        /// [`pg::binding_digest`] of the encoder the service runs.
        binding: String,
    },
}

/// Runs the service until SIGINT or SIGTERM, then finishes the requests in flight and returns.
/// Prints `listening on http://ADDR` on stderr once the socket is bound (port 0 picks a free one).
pub fn serve(
    opts: &ServeOptions,
    index: IndexSpec,
    embedder: Arc<dyn FaceEmbedder>,
    tokens: Option<Tokens>,
) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(opts.max_concurrent.max(1) * 2)
        .build()?;
    rt.block_on(async {
        let index = match index {
            IndexSpec::Memory(g) => index::Index::Memory(*g),
            IndexSpec::Postgres { url, default_mode, binding } => index::Index::Postgres(
                index::PgIndex::connect(&url, opts.max_concurrent.max(1), default_mode, binding).await?,
            ),
        };
        let app = Arc::new(App {
            index,
            embedder,
            tokens,
            permits: Arc::new(tokio::sync::Semaphore::new(opts.max_concurrent.max(1))),
            cpu: Arc::new(tokio::sync::Semaphore::new(opts.max_concurrent.max(1))),
            metrics: metrics::Metrics::default(),
            request_timeout: opts.request_timeout,
            access_log: opts.access_log,
        });
        let listener = tokio::net::TcpListener::bind(opts.listen).await?;
        let i = app.index.info();
        let source = match &app.index {
            index::Index::Memory(_) => "the gallery file in memory".to_owned(),
            index::Index::Postgres(p) => format!("PostgreSQL {}", p.url()),
        };
        eprintln!(
            "facegate serve: {source}: revision {} ({} members), encoder {}, auth {}",
            i.revision,
            i.members,
            &i.encoder[..12],
            if app.tokens.is_some() { "bearer tokens" } else { "OFF (--no-auth)" },
        );
        eprintln!("facegate serve: listening on http://{}", listener.local_addr()?);
        let reloader = tokio::spawn(reload_loop(app.clone(), opts.reload_interval));
        let served = axum::serve(listener, api::router(app.clone(), opts.max_body_bytes))
            .with_graceful_shutdown(shutdown_signal())
            .await;
        reloader.abort();
        eprintln!("facegate serve: stopped");
        served.map_err(ServeError::from)
    })
}

async fn reload_loop(app: Arc<App>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match app.index.check().await {
            Reload::Unchanged | Reload::Current => {}
            Reload::Installed { revision, members } => {
                app.metrics.reload("installed");
                eprintln!("facegate serve: installed gallery revision {revision} ({members} members)");
            }
            Reload::Refused(why) => {
                app.metrics.reload("refused");
                eprintln!("facegate serve: gallery file refused, still serving the installed revision: {why}");
            }
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    eprintln!("facegate serve: shutting down (finishing requests in flight)");
}
