//! `facegate serve`: the matching service (facegate-serve) over a signed gallery.

use anyhow::{bail, Context, Result};
use facegate_serve::pg::{self, SearchMode};
use facegate_serve::{IndexSpec, ServeOptions, ServedGallery, Tokens};
use facegate_shared::install::InstallRules;
use facegate_shared::{gallery_file, keys};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::*;

/// Flags of `facegate serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The signed gallery to answer from. Replacing the file (write a temporary, then rename)
    /// installs a newer revision without a restart, under the door's rules: trusted signature,
    /// the same encoder, a higher revision.
    #[arg(long, required_unless_present = "backend", conflicts_with = "backend")]
    pub gallery: Option<PathBuf>,
    /// File keeping the highest gallery revision served, so that an older (replayed) gallery is
    /// refused after a restart too. Without it the floor lives in memory only.
    #[arg(long, conflicts_with = "backend")]
    pub state: Option<PathBuf>,
    /// Answer from PostgreSQL + pgvector instead (postgres://…), loaded by `facegate gallery
    /// sync-db`; a newer revision loaded there is picked up at the next check.
    #[arg(long)]
    pub backend: Option<String>,
    /// With --backend: the search mode when a request names none: exact, or hnsw:EF.
    #[arg(long, default_value = "exact")]
    pub pg_mode: String,
    /// Public key the gallery must be signed with.
    #[arg(long, default_value = DEFAULT_PUBLIC_KEY)]
    pub trust: PathBuf,
    /// Address to listen on. Loopback by default; anything else exposes the service to the network.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// File of accepted bearer tokens, one per line (at least 16 characters; `#` comments).
    /// Required unless --no-auth.
    #[arg(long)]
    pub tokens: Option<PathBuf>,
    /// Answer without authentication (only allowed on a loopback address).
    #[arg(long, conflicts_with = "tokens")]
    pub no_auth: bool,
    /// Largest request body in bytes (photos travel as base64 inside JSON).
    #[arg(long, default_value_t = 8 << 20)]
    pub max_body_bytes: usize,
    /// Requests answered at once; more get 503 "saturated". Default: twice the CPU count.
    #[arg(long)]
    pub max_concurrent: Option<usize>,
    /// Longest a request may take, body upload included, in milliseconds (408 after).
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// How often the gallery file is checked for a new revision, in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    pub reload_ms: u64,
    /// No per-request log line.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Runs the service until SIGINT/SIGTERM.
pub fn serve(a: &ServeArgs) -> Result<ExitCode> {
    let tokens = match (&a.tokens, a.no_auth) {
        (Some(p), _) => Some(Tokens::read(p)?),
        (None, true) if a.listen.ip().is_loopback() => None,
        (None, true) => bail!("--no-auth is only allowed on a loopback address, not {}", a.listen),
        (None, false) => bail!("give --tokens FILE (bearer tokens, one per line), or --no-auth on loopback"),
    };
    if a.max_body_bytes < 1024 || a.timeout_ms == 0 || a.reload_ms == 0 || a.max_concurrent == Some(0) {
        bail!("--max-body-bytes must be at least 1024, and --timeout-ms, --reload-ms and --max-concurrent above 0");
    }
    let (index, pipeline) = match (&a.gallery, &a.backend) {
        (Some(path), _) => {
            let key = keys::read_verifying_key(&a.trust)?;
            // the encoder the gallery was enrolled with (or --model), checked against it by the rules
            let g = gallery_file::load_trusted(path, &[key]).with_context(|| format!("gallery {}", path.display()))?;
            let pipeline = a.model.pipeline_for(Some(&g.encoder))?;
            let rules = InstallRules::new(vec![key], pipeline.encoder.card().binding());
            if a.state.is_none() {
                eprintln!(
                    "facegate serve: no --state: the replay floor is kept in memory only (after a restart \
                     the gallery file present is trusted as the newest)"
                );
            }
            (IndexSpec::Memory(Box::new(ServedGallery::open(path, rules, a.state.as_deref())?)), pipeline)
        }
        (None, Some(url)) => {
            let default_mode = SearchMode::parse(&a.pg_mode)
                .with_context(|| format!("--pg-mode {:?}: give exact or hnsw:EF (1..=1000)", a.pg_mode))?;
            let meta = pg::block_on(async { pg::loaded(&pg::connect(url).await?).await })
                .with_context(|| pg::redact_url(url))?
                .ok_or(pg::PgError::Empty)?;
            let model = super::db::model_for_fingerprint(&a.model, &meta.encoder)?;
            let pipeline = ModelArgs { model: Some(model), detector: a.model.detector.clone() }.pipeline()?;
            super::db::check_binding(&pipeline.encoder.card().binding(), &meta)?;
            let binding = pg::binding_digest(&pipeline.encoder.card().binding());
            (IndexSpec::Postgres { url: url.clone(), default_mode, binding }, pipeline)
        }
        (None, None) => bail!("give --gallery FILE or --backend postgres://…"),
    };
    let defaults = ServeOptions::default();
    let opts = ServeOptions {
        listen: a.listen,
        max_body_bytes: a.max_body_bytes,
        max_concurrent: a.max_concurrent.unwrap_or(defaults.max_concurrent),
        request_timeout: Duration::from_millis(a.timeout_ms),
        reload_interval: Duration::from_millis(a.reload_ms),
        access_log: !a.quiet,
    };
    facegate_serve::serve(&opts, index, Arc::new(pipeline), tokens)?;
    Ok(ExitCode::SUCCESS)
}
