//! What the service searches: the in-process exact index over the signed gallery file (default),
//! or PostgreSQL + pgvector loaded by `facegate gallery sync-db`. Both answer the same questions,
//! and identification applies the same rules ([`facegate_shared::decide`]) to either.

use facegate_shared::{Date, Embedding, MemberId, Threshold};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;
use tokio::sync::Mutex;

use crate::error::ApiError;
use crate::gallery::{now, Reload, ServedGallery};
use crate::pg::{self, DbGallery, SearchMode};
use crate::ServeError;

/// The installed index at a glance.
#[derive(Debug, Clone)]
pub struct Info {
    /// Signed revision.
    pub revision: u64,
    /// Members.
    pub members: u64,
    /// Embeddings.
    pub embeddings: u64,
    /// SHA-256 (hex) of the encoder ONNX.
    pub encoder: String,
    /// Embedding dimension.
    pub dim: usize,
    /// The gallery's threshold.
    pub threshold: Threshold,
    /// When this revision was installed (Unix seconds; for PostgreSQL, when the service saw it).
    pub installed_at: u64,
    /// `memory` or `postgres`.
    pub backend: &'static str,
}

/// One member found.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Member id.
    pub member: String,
    /// Display name.
    pub name: String,
    /// Closest distance.
    pub distance: f32,
    /// Admitted today.
    pub active: bool,
}

/// A member's record (no embeddings).
#[derive(Debug, Clone)]
pub struct MemberRecord {
    /// Display name.
    pub name: String,
    /// Suspension flag.
    pub active: bool,
    /// First valid day.
    pub valid_from: Option<Date>,
    /// Last valid day.
    pub valid_until: Option<Date>,
    /// Admitted today.
    pub admitted_today: bool,
    /// Enrolment embeddings.
    pub embeddings: u64,
}

/// PostgreSQL connections and the last seen `facegate_gallery` row.
pub struct PgIndex {
    url: String,
    clients: Vec<Mutex<tokio_postgres::Client>>,
    next: AtomicUsize,
    meta: RwLock<(DbGallery, Threshold, u64)>,
    /// [`pg::binding_digest`] of the encoder this service runs.
    binding: String,
    /// The last row refused, so that a refusal is logged once.
    refused: std::sync::Mutex<Option<DbGallery>>,
    /// Search mode when a request names none.
    pub default_mode: SearchMode,
}

impl PgIndex {
    /// Opens `connections` connections and reads what is loaded (an empty database is an error).
    pub async fn connect(
        url: &str,
        connections: usize,
        default_mode: SearchMode,
        binding: String,
    ) -> Result<Self, ServeError> {
        let mut clients = Vec::with_capacity(connections.max(1));
        for _ in 0..connections.max(1) {
            clients.push(Mutex::new(pg::connect(url).await.map_err(|e| ServeError::Gallery(e.to_string()))?));
        }
        let meta = pg::loaded(&*clients[0].lock().await)
            .await
            .map_err(|e| ServeError::Gallery(e.to_string()))?
            .ok_or_else(|| ServeError::Gallery(pg::PgError::Empty.to_string()))?;
        let t = Threshold::new(meta.threshold)
            .map_err(|e| ServeError::Gallery(format!("the database's threshold: {e}")))?;
        if meta.binding != binding {
            return Err(ServeError::Gallery(
                "the database's gallery was enrolled with another encoder or card preprocessing".into(),
            ));
        }
        Ok(Self {
            url: url.to_owned(),
            clients,
            next: AtomicUsize::new(0),
            meta: RwLock::new((meta, t, now())),
            binding,
            refused: std::sync::Mutex::new(None),
            default_mode,
        })
    }

    fn client(&self) -> &Mutex<tokio_postgres::Client> {
        &self.clients[self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len()]
    }

    /// The loaded gallery's row as last seen.
    pub fn meta(&self) -> DbGallery {
        self.meta.read().unwrap_or_else(|p| p.into_inner()).0.clone()
    }

    /// Looks for a newer revision loaded by `sync-db` (the encoder must stay the service's). A
    /// refusal is reported once per database row.
    pub async fn check(&self) -> Reload {
        self.look(true).await
    }

    /// `remember`: whether a refusal is recorded (and so not reported again). A search that finds
    /// rows of an unaccepted revision looks without recording, leaving the report to the reload
    /// loop.
    async fn look(&self, remember: bool) -> Reload {
        let row = match pg::loaded(&*self.client().lock().await).await {
            Ok(Some(r)) => r,
            Ok(None) => return Reload::Refused("the database holds no gallery any more".into()),
            Err(e) => return Reload::Refused(e.to_string()),
        };
        let mut m = self.meta.write().unwrap_or_else(|p| p.into_inner());
        if row == m.0 {
            return Reload::Unchanged;
        }
        let why = if row.binding != self.binding {
            Some(format!(
                "the database now holds revision {} of encoder {} (or other card preprocessing); this service runs \
                 another: searches answer 503 until it is restarted with that encoder",
                row.revision,
                &row.encoder[..row.encoder.len().min(12)]
            ))
        } else if row.revision < m.0.revision {
            Some(format!("the database went back to revision {} from {}", row.revision, m.0.revision))
        } else {
            Threshold::new(row.threshold)
                .err()
                .map(|_| format!("the database's threshold {} is not a valid distance", row.threshold))
        };
        if let Some(why) = why {
            let mut last = self.refused.lock().unwrap_or_else(|p| p.into_inner());
            if last.as_ref() == Some(&row) {
                return Reload::Unchanged; // refused once already
            }
            if remember {
                *last = Some(row);
            }
            return Reload::Refused(why);
        }
        let t = Threshold::new(row.threshold).expect("checked above");
        let (revision, members) = (row.revision, row.members as usize);
        *m = (row, t, now());
        Reload::Installed { revision, members }
    }

    /// The redacted URL.
    pub fn url(&self) -> String {
        pg::redact_url(&self.url)
    }
}

fn db_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "backend_unavailable",
        format!("the index database: {e}"),
    )
}

/// The service's index.
pub enum Index {
    /// The in-process exact index over the signed gallery file.
    Memory(ServedGallery),
    /// PostgreSQL + pgvector.
    Postgres(PgIndex),
}

impl Index {
    /// What is installed.
    pub fn info(&self) -> Info {
        match self {
            Index::Memory(g) => {
                let l = g.snapshot();
                let gal = l.matcher.gallery();
                Info {
                    revision: l.floor.revision,
                    members: gal.members().len() as u64,
                    embeddings: gal.embedding_count() as u64,
                    encoder: gal.encoder.onnx.to_string(),
                    dim: gal.dim.get(),
                    threshold: gal.threshold,
                    installed_at: l.installed_at,
                    backend: "memory",
                }
            }
            Index::Postgres(p) => {
                let (m, threshold, at) = p.meta.read().unwrap_or_else(|e| e.into_inner()).clone();
                Info {
                    revision: m.revision,
                    members: m.members,
                    embeddings: m.rows,
                    encoder: m.encoder,
                    dim: m.dim,
                    threshold,
                    installed_at: at,
                    backend: "postgres",
                }
            }
        }
    }

    /// Looks for a newer revision (file or database).
    pub async fn check(&self) -> Reload {
        match self {
            // reading and verifying the file is blocking work: tell the runtime
            Index::Memory(g) => tokio::task::block_in_place(|| g.check()),
            Index::Postgres(p) => p.check().await,
        }
    }

    /// The `k` closest members, best first; the revision they came from.
    pub async fn search(
        &self,
        q: Embedding,
        k: usize,
        active_only: bool,
        mode: Option<SearchMode>,
    ) -> Result<(u64, Threshold, Vec<Hit>), ApiError> {
        let today = Date::today();
        match self {
            Index::Memory(g) => {
                let l = g.snapshot();
                tokio::task::spawn_blocking(move || {
                    let hits = crate::api::search_in(&l, &q, k, active_only)?;
                    Ok((l.floor.revision, l.matcher.gallery().threshold, hits))
                })
                .await
                .map_err(|e| ApiError::internal("search", e))?
            }
            Index::Postgres(p) => {
                let mode = mode.unwrap_or(p.default_mode);
                // the rows must come from the revision this service accepted (a sync may have
                // swapped the table since the last check): look again once, then refuse
                for attempt in 0..2 {
                    let (meta, threshold, _) = p.meta.read().unwrap_or_else(|e| e.into_inner()).clone();
                    let (rev, hits) = {
                        let mut c = p.client().lock().await;
                        pg::search(&mut c, &meta, &q, k, active_only, today, mode).await.map_err(db_error)?
                    };
                    if rev == meta.revision {
                        let hits = hits
                            .into_iter()
                            .map(|h| Hit { member: h.member, name: h.name, distance: h.distance, active: h.active })
                            .collect();
                        return Ok((rev, threshold, hits));
                    }
                    if attempt == 0 {
                        p.look(false).await;
                    }
                }
                Err(ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "index_changed",
                    "the database holds a gallery revision this service has not accepted (see its log)",
                ))
            }
        }
    }

    /// One member's record.
    pub async fn member(&self, id: &MemberId) -> Result<Option<MemberRecord>, ApiError> {
        let today = Date::today();
        match self {
            Index::Memory(g) => Ok(g.snapshot().matcher.gallery().member(id).map(|m| MemberRecord {
                name: m.name.clone(),
                active: m.validity.active,
                valid_from: m.validity.from,
                valid_until: m.validity.until,
                admitted_today: m.validity.admits(today),
                embeddings: m.embeddings.len() as u64,
            })),
            Index::Postgres(p) => {
                let revision = p.meta().revision as i64;
                let c = p.client().lock().await;
                // only rows of the accepted revision (a newer, unaccepted table answers nothing)
                let row = c
                    .query_opt(
                        &format!(
                            "SELECT name, active, valid_from, valid_until, count(*) FROM {} WHERE member_id = $1 \
                             AND revision = $2 GROUP BY name, active, valid_from, valid_until",
                            pg::TABLE
                        ),
                        &[&id.as_str(), &revision],
                    )
                    .await
                    .map_err(db_error)?;
                Ok(row.map(|r| {
                    let (from, until): (Option<i32>, Option<i32>) = (r.get(2), r.get(3));
                    let validity =
                        facegate_shared::Validity { from: from.map(Date), until: until.map(Date), active: r.get(1) };
                    MemberRecord {
                        name: r.get(0),
                        active: validity.active,
                        valid_from: validity.from,
                        valid_until: validity.until,
                        admitted_today: validity.admits(today),
                        embeddings: r.get::<_, i64>(4) as u64,
                    }
                }))
            }
        }
    }

    /// The distance from `q` to member `id`'s closest embedding.
    pub async fn member_distance(&self, id: &MemberId, q: &Embedding) -> Result<Option<f32>, ApiError> {
        match self {
            Index::Memory(g) => Ok(g
                .snapshot()
                .matcher
                .gallery()
                .member(id)
                .map(|m| m.embeddings.iter().filter_map(|x| x.distance(q).ok()).fold(f32::INFINITY, f32::min))),
            Index::Postgres(p) => {
                let revision = p.meta().revision as i64;
                let c = p.client().lock().await;
                let v = pgvector::Vector::from(q.as_slice().to_vec());
                let row = c
                    .query_one(
                        &format!(
                            "SELECT min((embedding <-> $1)::real) FROM {} WHERE member_id = $2 AND revision = $3",
                            pg::TABLE
                        ),
                        &[&v, &id.as_str(), &revision],
                    )
                    .await
                    .map_err(db_error)?;
                Ok(row.get::<_, Option<f32>>(0))
            }
        }
    }
}
