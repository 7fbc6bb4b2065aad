//! `facegate gallery sync-db` and `facegate search --backend postgres://…`: PostgreSQL + pgvector
//! as a derived index of the signed gallery (see `facegate_serve::pg`).

use anyhow::{Context, Result};
use facegate_serve::pg::{self, HnswBuild, SearchMode};
use facegate_shared::{gallery_file, keys, Date, Fingerprint};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::*;

/// Flags of `facegate gallery sync-db`.
#[derive(Debug, Clone, clap::Args)]
pub struct SyncDbArgs {
    /// The signed gallery (the authority; the database is an index derived from it).
    pub gallery: PathBuf,
    /// PostgreSQL URL, e.g. postgres://facegate@127.0.0.1:5432/facegate (pgvector installed).
    #[arg(long)]
    pub db: String,
    /// Public key the gallery must be signed with.
    #[arg(long, default_value = DEFAULT_PUBLIC_KEY)]
    pub trust: PathBuf,
    /// HNSW graph degree.
    #[arg(long, default_value_t = 16)]
    pub hnsw_m: u32,
    /// HNSW candidate list while building.
    #[arg(long, default_value_t = 64)]
    pub ef_construction: u32,
    /// Allow a gallery of another encoder than the loaded one (restart the services after).
    #[arg(long)]
    pub replace_encoder: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `facegate gallery sync-db G --db URL`.
pub fn sync_db(a: &SyncDbArgs) -> Result<ExitCode> {
    let key = keys::read_verifying_key(&a.trust)?;
    let bytes = gallery_file::read_capped(&a.gallery).with_context(|| format!("gallery {}", a.gallery.display()))?;
    let g = gallery_file::decode_trusted(&bytes, &[key]).with_context(|| format!("gallery {}", a.gallery.display()))?;
    let sha: [u8; 32] = Sha256::digest(&bytes).into();
    let hnsw = HnswBuild { m: a.hnsw_m, ef_construction: a.ef_construction };
    let r = pg::block_on(async {
        let mut c = pg::connect(&a.db).await?;
        pg::sync(&mut c, &g, sha, hnsw, a.replace_encoder).await
    })
    .with_context(|| format!("loading {} into {}", a.gallery.display(), pg::redact_url(&a.db)))?;
    let v = match r {
        pg::Synced::AlreadyLoaded { revision } => {
            serde_json::json!({"status": "already_loaded", "revision": revision})
        }
        pg::Synced::Loaded { revision, rows, members, replaced, copy_ms, index_ms, total_ms } => serde_json::json!({
            "status": "loaded", "revision": revision, "rows": rows, "members": members, "replaced": replaced,
            "id_checksum": pg::id_checksum(&g), "copy_ms": copy_ms, "index_ms": index_ms, "total_ms": total_ms,
        }),
    };
    if a.json {
        println!("{v}");
    } else if v["status"] == "already_loaded" {
        println!("revision {} is already loaded: nothing to do", v["revision"]);
    } else {
        println!(
            "loaded revision {} ({} members, {} embeddings{}) in {:.0} ms (COPY {:.0} ms, HNSW index {:.0} ms)",
            v["revision"],
            v["members"],
            v["rows"],
            v["replaced"].as_u64().map(|r| format!(", replacing revision {r}")).unwrap_or_default(),
            v["total_ms"].as_f64().unwrap_or(0.0),
            v["copy_ms"].as_f64().unwrap_or(0.0),
            v["index_ms"].as_f64().unwrap_or(0.0),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The encoder whose ONNX has the fingerprint `hex` (what a database was loaded for): --model if
/// given (checked), else the one in models/ with a card.
pub fn model_for_fingerprint(model: &ModelArgs, hex: &str) -> Result<PathBuf> {
    let fp = Fingerprint::from_hex(hex)?;
    let path = match &model.model {
        Some(m) => m.clone(),
        None => {
            model_cards(&models_dir()).into_iter().find(|(_, c)| c.binding().onnx == fp).map(|(p, _)| p).with_context(
                || {
                    format!(
                        "the database was loaded for encoder {} (not in {}); pass --model",
                        fp.short(),
                        models_dir().display()
                    )
                },
            )?
        }
    };
    let bytes = std::fs::read(&path).with_context(|| format!("encoder {}", path.display()))?;
    anyhow::ensure!(
        Fingerprint::of_bytes(&bytes) == fp,
        "{} is not the encoder the database was loaded for ({})",
        path.display(),
        fp.short()
    );
    Ok(path)
}

/// Refuses an encoder whose card preprocessing differs from the one the database was loaded with
/// (same ONNX, edited card: embeddings would silently stop matching).
pub fn check_binding(ours: &facegate_shared::EncoderBinding, meta: &pg::DbGallery) -> Result<()> {
    anyhow::ensure!(
        pg::binding_digest(ours) == meta.binding,
        "the encoder's card (preprocessing) is not the one the database's gallery was enrolled with \
         (binding {} vs {}); use the enrolment encoder and card",
        &pg::binding_digest(ours)[..12],
        meta.binding.get(..12).unwrap_or("none")
    );
    Ok(())
}

/// `facegate search PHOTO --backend URL`: the K closest members from PostgreSQL.
#[allow(clippy::too_many_arguments)]
pub fn search_db(
    photo: &Path,
    url: &str,
    model: &ModelArgs,
    top: usize,
    mode: &str,
    active_only: bool,
    json: bool,
) -> Result<ExitCode> {
    let mode = SearchMode::parse(mode).with_context(|| format!("--mode {mode:?}: give exact or hnsw:EF (1..=1000)"))?;
    // one runtime for the connection's whole life (its I/O task runs on it)
    let (revision, hits) = pg::block_on(async {
        let mut c = pg::connect(url).await.with_context(|| pg::redact_url(url))?;
        let meta = pg::loaded(&c).await?.ok_or(pg::PgError::Empty)?;
        let m =
            ModelArgs { model: Some(model_for_fingerprint(model, &meta.encoder)?), detector: model.detector.clone() };
        let p = m.pipeline()?;
        check_binding(&p.encoder.card().binding(), &meta)?;
        let e = embed_photo(&p, photo)?;
        Ok::<_, anyhow::Error>(pg::search(&mut c, &meta, &e, top, active_only, Date::today(), mode).await?)
    })?;
    if json {
        let v: Vec<_> = hits
            .iter()
            .map(
                |h| serde_json::json!({"member": h.member, "name": h.name, "distance": h.distance, "active": h.active}),
            )
            .collect();
        println!("{}", serde_json::json!({"revision": revision, "results": v}));
    } else {
        for (i, h) in hits.iter().enumerate() {
            println!("{:>3}. #{:<12} {:<28} {:.4}", i + 1, h.member, h.name, h.distance);
        }
    }
    Ok(if hits.is_empty() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

#[cfg(test)]
mod tests {
    use facegate_serve::pg;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(pg::redact_url("postgres://u:secret@h:5/db"), "postgres://u@h:5/db");
        assert_eq!(pg::redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(pg::redact_url("host=h"), "host=h");
    }
}
