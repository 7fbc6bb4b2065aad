//! PostgreSQL + pgvector as the index, for catalogues that outgrow one machine.
//!
//! The signed gallery file stays the authority; the database is a derived index of it.
//! [`sync`] loads a gallery into `facegate_embeddings` (one row per enrolment embedding: member
//! id, name, validity, the gallery revision, the embedding as `vector(D)`) with binary `COPY`
//! into a staging table, checks the row count, builds an HNSW index (L2 distance, which between
//! unit vectors is Facegate's distance), and swaps it in by renaming inside one transaction
//! together with the `facegate_gallery` row (revision, encoder fingerprint, SHA-256 of the file,
//! row and member counts, a checksum of the member ids). A statement running during the swap sees
//! the old table or the new one, never a mix; every row carries its revision so readers can tell.
//! A revision already loaded is a no-op; an older one, or other content under the loaded
//! revision, is refused (the door's replay rule).
//!
//! [`search`] answers exactly (index scans off: a sequential scan and sort, equal to the
//! in-process exact index) or with HNSW at a chosen `hnsw.ef_search`, with iterative index scans
//! when a filter (members admitted today) could starve the index's candidate list.

use facegate_shared::{Date, Embedding, Gallery};
use pgvector::Vector;
use sha2::{Digest, Sha256};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

/// The table searches read.
pub const TABLE: &str = "facegate_embeddings";
const STAGING: &str = "facegate_embeddings_staging";
const RETIRED: &str = "facegate_embeddings_retired";
/// Serialises concurrent `sync` runs (a PostgreSQL advisory lock key).
const SYNC_LOCK: i64 = 0x6661_6365_6761_7465; // "facegate"

/// What went wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The server said no, or the connection failed.
    #[error("PostgreSQL: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// The gallery is not loaded: older, or other content under the loaded revision.
    #[error("{0}")]
    Refused(String),
    /// Nothing has been loaded yet.
    #[error("the database holds no gallery yet: run `facegate gallery sync-db` first")]
    Empty,
    /// The loaded rows do not match what was sent.
    #[error("loaded {got} rows, expected {expected}; the load was rolled back")]
    Count { expected: u64, got: u64 },
}

/// The `facegate_gallery` row: what the index holds.
#[derive(Debug, Clone, PartialEq)]
pub struct DbGallery {
    /// Signed revision of the loaded file.
    pub revision: u64,
    /// SHA-256 (hex) of the encoder ONNX.
    pub encoder: String,
    /// Embedding dimension.
    pub dim: usize,
    /// The gallery's distance threshold.
    pub threshold: f32,
    /// SHA-256 (hex) of the loaded file's bytes.
    pub sha256: String,
    /// Rows (embeddings).
    pub rows: u64,
    /// Members.
    pub members: u64,
    /// Most embeddings of one member (a top-k member search reads k times this many rows).
    pub max_per_member: usize,
    /// SHA-256 (hex) of the sorted member ids, one per line.
    pub id_checksum: String,
    /// [`binding_digest`] of the gallery's encoder binding.
    pub binding: String,
}

/// How HNSW is built.
#[derive(Debug, Clone, Copy)]
pub struct HnswBuild {
    /// Graph degree.
    pub m: u32,
    /// Candidate list while building.
    pub ef_construction: u32,
}

impl Default for HnswBuild {
    fn default() -> Self {
        Self { m: 16, ef_construction: 64 }
    }
}

/// What [`sync`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Synced {
    /// That revision, with those bytes, was already loaded.
    AlreadyLoaded { revision: u64 },
    /// Loaded (replacing `replaced`, if any).
    Loaded { revision: u64, rows: u64, members: u64, replaced: Option<u64>, copy_ms: f64, index_ms: f64, total_ms: f64 },
}

/// The URL without its password, for messages (`postgres://user:secret@h/db` → `postgres://user@h/db`).
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user = url[s + 3..at].split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Connects (no TLS: loopback or a private network; put TLS in front for anything else).
pub async fn connect(url: &str) -> Result<Client, PgError> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("facegate: PostgreSQL connection closed: {e}");
        }
    });
    Ok(client)
}

/// SHA-256 (hex) of an encoder binding: the ONNX fingerprint and every preprocessing field of its
/// card (what `facegate_gallery.binding` holds; a service refuses a database whose encoder or
/// card preprocessing differs from the one it runs).
pub fn binding_digest(b: &facegate_shared::EncoderBinding) -> String {
    hex::encode(Sha256::digest(format!("{b:?}").as_bytes()))
}

/// SHA-256 of the sorted member ids, one per line (what `facegate_gallery.id_checksum` holds).
pub fn id_checksum(gallery: &Gallery) -> String {
    let mut ids: Vec<&str> = gallery.members().iter().map(|m| m.id.as_str()).collect();
    ids.sort_unstable();
    let mut h = Sha256::new();
    for id in ids {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

async fn ensure_schema(c: &Client) -> Result<(), PgError> {
    c.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS vector;
         CREATE TABLE IF NOT EXISTS facegate_gallery (
             singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
             revision bigint NOT NULL, encoder text NOT NULL, dim int NOT NULL, threshold real NOT NULL,
             sha256 text NOT NULL, rows bigint NOT NULL, members bigint NOT NULL, max_per_member int NOT NULL,
             id_checksum text NOT NULL, loaded_at timestamptz NOT NULL DEFAULT now());
         ALTER TABLE facegate_gallery ADD COLUMN IF NOT EXISTS binding text NOT NULL DEFAULT '';",
    )
    .await?;
    Ok(())
}

/// The loaded gallery's row, if any.
pub async fn loaded(c: &Client) -> Result<Option<DbGallery>, PgError> {
    let exists: bool = c.query_one("SELECT to_regclass('facegate_gallery') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        return Ok(None);
    }
    let row = c
        .query_opt(
            "SELECT revision, encoder, dim, threshold, sha256, rows, members, max_per_member, id_checksum, binding \
             FROM facegate_gallery",
            &[],
        )
        .await?;
    Ok(row.map(|r| DbGallery {
        revision: r.get::<_, i64>(0) as u64,
        encoder: r.get(1),
        dim: r.get::<_, i32>(2) as usize,
        threshold: r.get(3),
        sha256: r.get(4),
        rows: r.get::<_, i64>(5) as u64,
        members: r.get::<_, i64>(6) as u64,
        max_per_member: r.get::<_, i32>(7) as usize,
        id_checksum: r.get(8),
        binding: r.get(9),
    }))
}

/// Loads `gallery` (whose file bytes hash to `sha256`) as the index; see the module docs. A
/// gallery of another encoder (or card preprocessing) than the loaded one is refused unless
/// `replace_encoder`: services running the old encoder would compare across encoders.
pub async fn sync(
    c: &mut Client,
    gallery: &Gallery,
    sha256: [u8; 32],
    hnsw: HnswBuild,
    replace_encoder: bool,
) -> Result<Synced, PgError> {
    let t0 = std::time::Instant::now();
    ensure_schema(c).await?;
    c.execute("SELECT pg_advisory_lock($1)", &[&SYNC_LOCK]).await?;
    let r = sync_locked(c, gallery, hex::encode(sha256), hnsw, replace_encoder, t0).await;
    if r.is_err() {
        // before unlocking: another sync may take the lock and build its own staging table
        let _ = c.batch_execute(&format!("DROP TABLE IF EXISTS {STAGING}")).await;
    }
    let _ = c.execute("SELECT pg_advisory_unlock($1)", &[&SYNC_LOCK]).await;
    r
}

async fn sync_locked(
    c: &mut Client,
    g: &Gallery,
    sha: String,
    hnsw: HnswBuild,
    replace_encoder: bool,
    t0: std::time::Instant,
) -> Result<Synced, PgError> {
    let before = loaded(c).await?;
    let binding = binding_digest(&g.encoder);
    if let Some(b) = &before {
        if b.binding != binding && !replace_encoder {
            return Err(PgError::Refused(format!(
                "the database holds galleries of encoder {} (or other card preprocessing); this gallery was \
                 enrolled with {}: services running the old encoder would compare across encoders. Give \
                 --replace-encoder to switch, and restart the services with the new encoder",
                &b.encoder[..12],
                g.encoder.onnx.short()
            )));
        }
        if g.revision < b.revision {
            return Err(PgError::Refused(format!(
                "gallery revision {} is older than the loaded revision {} (replayed file?)",
                g.revision, b.revision
            )));
        }
        if g.revision == b.revision {
            return if b.sha256 == sha {
                Ok(Synced::AlreadyLoaded { revision: b.revision })
            } else {
                Err(PgError::Refused(format!(
                    "gallery revision {} has other content than the loaded revision (sha256 {} vs {}): a new \
                     gallery must carry a higher revision",
                    g.revision,
                    &sha[..16],
                    &b.sha256[..16]
                )))
            };
        }
    }
    let dim = g.dim.get();
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {STAGING};
         CREATE TABLE {STAGING} (member_id text NOT NULL, name text NOT NULL, active boolean NOT NULL,
             valid_from int, valid_until int, revision bigint NOT NULL, embedding vector({dim}) NOT NULL);"
    ))
    .await?;
    let vector_type = c.prepare("SELECT $1::vector").await?.params()[0].clone();
    let sink = c
        .copy_in(&format!(
            "COPY {STAGING} (member_id, name, active, valid_from, valid_until, revision, embedding) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    let types = [Type::TEXT, Type::TEXT, Type::BOOL, Type::INT4, Type::INT4, Type::INT8, vector_type];
    let writer = BinaryCopyInWriter::new(sink, &types);
    tokio::pin!(writer);
    let revision = g.revision as i64;
    let mut rows = 0u64;
    for m in g.members() {
        let (from, until) = (m.validity.from.map(|d| d.0), m.validity.until.map(|d| d.0));
        for e in &m.embeddings {
            let v = Vector::from(e.as_slice().to_vec());
            let row: [&(dyn ToSql + Sync); 7] =
                [&m.id.as_str(), &m.name, &m.validity.active, &from, &until, &revision, &v];
            writer.as_mut().write(&row).await?;
            rows += 1;
        }
    }
    writer.finish().await?;
    let copy_ms = t0.elapsed().as_secs_f64() * 1e3;
    let got: i64 = c.query_one(&format!("SELECT count(*) FROM {STAGING}"), &[]).await?.get(0);
    if got as u64 != rows {
        return Err(PgError::Count { expected: rows, got: got as u64 });
    }
    let t1 = std::time::Instant::now();
    c.batch_execute(&format!(
        "CREATE INDEX facegate_hnsw_r{rev} ON {STAGING} USING hnsw (embedding vector_l2_ops) \
             WITH (m = {m}, ef_construction = {efc});
         CREATE INDEX facegate_member_r{rev} ON {STAGING} (member_id);
         ANALYZE {STAGING};",
        rev = g.revision,
        m = hnsw.m,
        efc = hnsw.ef_construction
    ))
    .await?;
    let index_ms = t1.elapsed().as_secs_f64() * 1e3;
    let tx = c.transaction().await?;
    tx.batch_execute(&format!(
        "DROP TABLE IF EXISTS {RETIRED};
         ALTER TABLE IF EXISTS {TABLE} RENAME TO {RETIRED};
         ALTER TABLE {STAGING} RENAME TO {TABLE};"
    ))
    .await?;
    tx.execute(
        "INSERT INTO facegate_gallery (singleton, revision, encoder, dim, threshold, sha256, rows, members, max_per_member, id_checksum, binding, loaded_at)
         VALUES (true, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now())
         ON CONFLICT (singleton) DO UPDATE SET revision = $1, encoder = $2, dim = $3, threshold = $4, sha256 = $5,
             rows = $6, members = $7, max_per_member = $8, id_checksum = $9, binding = $10, loaded_at = now()",
        &[
            &revision,
            &g.encoder.onnx.to_string(),
            &(dim as i32),
            &g.threshold.get(),
            &sha,
            &(rows as i64),
            &(g.members().len() as i64),
            &(g.max_embeddings_per_member() as i32),
            &id_checksum(g),
            &binding,
        ],
    )
    .await?;
    tx.batch_execute(&format!("DROP TABLE IF EXISTS {RETIRED};")).await?;
    tx.commit().await?;
    Ok(Synced::Loaded {
        revision: g.revision,
        rows,
        members: g.members().len() as u64,
        replaced: before.map(|b| b.revision),
        copy_ms,
        index_ms,
        total_ms: t0.elapsed().as_secs_f64() * 1e3,
    })
}

/// Exact or approximate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// Sequential scan and sort: the exact answer.
    Exact,
    /// The HNSW index with this candidate list size (raised to the rows asked for).
    Hnsw { ef_search: u32 },
}

impl SearchMode {
    /// `exact` or `hnsw:EF`.
    pub fn parse(s: &str) -> Option<Self> {
        if s == "exact" {
            return Some(Self::Exact);
        }
        let ef = s.strip_prefix("hnsw:")?.parse().ok()?;
        (1..=1000).contains(&ef).then_some(Self::Hnsw { ef_search: ef })
    }
}

/// One member found.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Member id.
    pub member: String,
    /// Display name.
    pub name: String,
    /// Distance of the member's closest embedding.
    pub distance: f32,
    /// Admitted on the day searched.
    pub active: bool,
}

/// The `k` closest members to `q` (one hit per member, best first), the revision every row came
/// from, and the gallery's row. `active_only` keeps members admitted on `today`.
pub async fn search(
    c: &mut Client,
    meta: &DbGallery,
    q: &Embedding,
    k: usize,
    active_only: bool,
    today: Date,
    mode: SearchMode,
) -> Result<(u64, Vec<Hit>), PgError> {
    let limit = (k * meta.max_per_member.max(1)) as i64;
    let tx = c.transaction().await?;
    match mode {
        SearchMode::Exact => {
            tx.batch_execute("SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off;").await?;
        }
        SearchMode::Hnsw { ef_search } => {
            let ef = ef_search.max(limit.min(1000) as u32);
            let iterative = if active_only { "relaxed_order" } else { "off" };
            tx.batch_execute(&format!("SET LOCAL hnsw.ef_search = {ef}; SET LOCAL hnsw.iterative_scan = {iterative};"))
                .await?;
        }
    }
    let filter = if active_only {
        "WHERE active AND (valid_from IS NULL OR valid_from <= $3) AND (valid_until IS NULL OR valid_until >= $3)"
    } else {
        "WHERE $3::int IS NOT NULL"
    };
    let sql = format!(
        "SELECT member_id, name, active, valid_from, valid_until, (embedding <-> $1)::real, revision FROM {TABLE} {filter} \
         ORDER BY embedding <-> $1 LIMIT $2"
    );
    let v = Vector::from(q.as_slice().to_vec());
    let rows = tx.query(&sql, &[&v, &limit, &today.0]).await?;
    tx.commit().await?;
    let mut out: Vec<Hit> = Vec::with_capacity(k);
    let mut revision = None;
    for r in &rows {
        let rev = r.get::<_, i64>(6) as u64;
        debug_assert!(revision.is_none_or(|x| x == rev), "one statement, one table");
        revision = Some(rev);
        let member: String = r.get(0);
        if out.iter().any(|h| h.member == member) {
            continue;
        }
        let (from, until): (Option<i32>, Option<i32>) = (r.get(3), r.get(4));
        let active = r.get::<_, bool>(2) && from.is_none_or(|f| today.0 >= f) && until.is_none_or(|u| today.0 <= u);
        out.push(Hit { member, name: r.get(1), distance: r.get(5), active });
    }
    // relaxed order: re-sort by distance
    out.sort_by(|a, b| a.distance.total_cmp(&b.distance));
    out.truncate(k);
    Ok((revision.unwrap_or(meta.revision), out))
}

/// Runs `f` to completion on a small runtime of its own (for the command line, which is not async).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime builds")
        .block_on(f)
}
