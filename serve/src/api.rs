//! Routes, middleware and handlers. CPU-heavy work (image decoding, detection, encoding) runs on
//! the blocking pool, never on the async reactor.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use facegate_shared::{
    decide, verify as verify_pair, Date, Decision, DecisionPolicy, DenialReason, Embedding, MemberId,
    DEFAULT_AMBIGUITY_MARGIN,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use crate::auth::Tokens;
use crate::error::ApiError;
use crate::gallery::Loaded;
use crate::index::{Hit, Index, Info};
use crate::metrics::Metrics;
use crate::pg::SearchMode;
use crate::FaceEmbedder;

/// Most results one search returns.
pub const MAX_TOP_K: usize = 100;

/// Every route the service answers: (method, path as in docs/openapi.yaml, needs a token).
pub const ROUTES: &[(&str, &str, bool)] = &[
    ("post", "/v1/search", true),
    ("post", "/v1/verify", true),
    ("post", "/v1/identify", true),
    ("get", "/v1/members/{id}", true),
    ("get", "/healthz", false),
    ("get", "/metrics", true),
];

/// What every request can reach.
pub struct App {
    /// The index: the signed gallery in memory, or PostgreSQL.
    pub index: Index,
    /// Photo → embedding (the gallery's encoder).
    pub embedder: Arc<dyn FaceEmbedder>,
    /// Accepted bearer tokens; `None` only when the operator chose `--no-auth`.
    pub tokens: Option<Tokens>,
    /// Requests answered at once; more get 503.
    pub permits: Arc<Semaphore>,
    /// Photo decodings and embeddings running at once: held by the blocking job itself, so a
    /// request that timed out (408) still counts until its work has finished.
    pub cpu: Arc<Semaphore>,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// A request (body read included) that takes longer gets 408.
    pub request_timeout: Duration,
    /// One line per request on stderr (never the token or the body).
    pub access_log: bool,
}

/// The service's router over `app`, with request bodies capped at `max_body_bytes`.
pub fn router(app: Arc<App>, max_body_bytes: usize) -> Router {
    let guarded = Router::new()
        .route("/v1/search", post(search))
        .route("/v1/verify", post(verify))
        .route("/v1/identify", post(identify))
        .route("/v1/members/{id}", get(member))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(app.clone(), auth));
    Router::new()
        .merge(guarded)
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(app.clone(), limit))
        .layer(middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight(-1);
    }
}

/// Outermost: counts and logs every request by its route pattern (never the raw path's ids).
async fn observe(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_owned();
    let method = req.method().clone();
    let t = Instant::now();
    app.metrics.in_flight(1);
    let _guard = InFlight(&app.metrics);
    let r = next.run(req).await;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    app.metrics.request(&route, r.status().as_u16(), ms);
    if app.access_log {
        eprintln!("facegate serve: {method} {route} {} {ms:.1} ms", r.status().as_u16());
    }
    r
}

/// Concurrency limit (503 when saturated) and the whole-request timeout (408). Health and
/// metrics stay reachable when the service is saturated.
async fn limit(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if matches!(req.uri().path(), "/healthz" | "/metrics") {
        return next.run(req).await;
    }
    let Ok(_permit) = app.permits.clone().try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "saturated",
            "the service is answering as many requests as it is configured for; retry shortly",
        )
        .into_response();
    };
    match tokio::time::timeout(app.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!("the request took longer than {} ms", app.request_timeout.as_millis()),
        )
        .into_response(),
    }
}

/// Bearer-token check for the guarded routes.
async fn auth(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if let Some(tokens) = &app.tokens {
        let Some(h) = req.headers().get(header::AUTHORIZATION) else {
            return ApiError::new(StatusCode::UNAUTHORIZED, "missing_token", "send Authorization: Bearer <token>")
                .into_response();
        };
        let presented = h.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
        if !presented.is_some_and(|t| tokens.accepts(t)) {
            return ApiError::new(StatusCode::UNAUTHORIZED, "bad_token", "the bearer token is not accepted")
                .into_response();
        }
    }
    next.run(req).await
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such route (see docs/openapi.yaml)")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method")
}

fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is over the server's limit",
            )
        } else {
            ApiError::bad_request("bad_body", r.body_text())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request("bad_json", e.to_string()))
}

/// The face to match: a photo (base64 of its file bytes) or an embedding with the fingerprint of
/// the encoder that made it.
#[derive(Debug, Default, Deserialize)]
struct Probe {
    photo: Option<String>,
    embedding: Option<Vec<f32>>,
    encoder: Option<String>,
}

async fn embed_photo(app: &Arc<App>, b64: &str, field: &str) -> Result<Embedding, ApiError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| ApiError::bad_request("bad_base64", format!("{field}: {e}")))?;
    let embedder = app.embedder.clone();
    let slot = app.cpu.clone().acquire_owned().await.map_err(|e| ApiError::internal("cpu slots", e))?;
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        embedder.embed_photo(&bytes)
    })
    .await
    .map_err(|e| ApiError::internal("photo embedding", e))?
    .map_err(ApiError::from)
}

async fn probe_embedding(app: &Arc<App>, info: &Info, p: Probe) -> Result<Embedding, ApiError> {
    match (p.photo, p.embedding) {
        (Some(photo), None) => embed_photo(app, &photo, "photo").await,
        (None, Some(v)) => {
            let Some(fp) = p.encoder else {
                return Err(ApiError::bad_request(
                    "missing_encoder",
                    "an embedding needs \"encoder\": the SHA-256 fingerprint of the ONNX that made it",
                ));
            };
            let ours = &info.encoder;
            if !fp.eq_ignore_ascii_case(ours) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "wrong_encoder",
                    format!("the embedding comes from encoder {fp}; this gallery was enrolled with {ours}"),
                ));
            }
            let dim = info.dim;
            if v.len() != dim {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "bad_embedding",
                    format!("the embedding has {} components; this gallery's have {dim}", v.len()),
                ));
            }
            Embedding::new(v)
                .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_embedding", e.to_string()))
        }
        _ => Err(ApiError::bad_request("bad_query", "give exactly one of \"photo\" and \"embedding\"")),
    }
}

fn similarity(distance: f32) -> f32 {
    1.0 - distance * distance / 2.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchReq {
    photo: Option<String>,
    embedding: Option<Vec<f32>>,
    encoder: Option<String>,
    top_k: Option<usize>,
    #[serde(default)]
    active_only: bool,
    mode: Option<String>,
}

fn search_mode(app: &App, mode: Option<&str>) -> Result<Option<SearchMode>, ApiError> {
    let Some(m) = mode else { return Ok(None) };
    let parsed = SearchMode::parse(m).ok_or_else(|| {
        ApiError::bad_request("bad_mode", format!("mode {m:?}: give \"exact\" or \"hnsw:EF\" (1..=1000)"))
    })?;
    if matches!(app.index, Index::Memory(_)) && parsed != SearchMode::Exact {
        return Err(ApiError::bad_request("bad_mode", "the in-memory index is exact; hnsw needs --backend postgres"));
    }
    Ok(Some(parsed))
}

fn hit_json(h: &Hit) -> Value {
    json!({"member": h.member, "name": h.name, "distance": h.distance, "similarity": similarity(h.distance), "active": h.active})
}

async fn search(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let r: SearchReq = parse(body)?;
    let k = r.top_k.unwrap_or(5);
    if k == 0 || k > MAX_TOP_K {
        return Err(ApiError::bad_request("bad_top_k", format!("top_k must be 1..={MAX_TOP_K}")));
    }
    let mode = search_mode(&app, r.mode.as_deref())?;
    let info = app.index.info();
    let q = probe_embedding(&app, &info, Probe { photo: r.photo, embedding: r.embedding, encoder: r.encoder }).await?;
    let (revision, threshold, hits) = app.index.search(q, k, r.active_only, mode).await?;
    Ok(Json(json!({
        "revision": revision,
        "threshold": threshold.get(),
        "results": hits.iter().map(hit_json).collect::<Vec<_>>(),
    })))
}

/// The in-memory search: `k` members, optionally only those admitted today.
pub(crate) fn search_in(g: &Loaded, q: &Embedding, k: usize, active_only: bool) -> Result<Vec<Hit>, ApiError> {
    let gal = g.matcher.gallery();
    let today = Date::today();
    let members = gal.members().len();
    let mut want = k;
    loop {
        let ranked = g.matcher.rank(q, want).map_err(|e| ApiError::internal("index", e))?;
        let exhausted = ranked.len() < want || want >= members;
        let hits: Vec<Hit> = ranked
            .iter()
            .filter_map(|r| {
                let m = &gal.members()[r.index];
                let active = m.validity.admits(today);
                (!active_only || active).then(|| Hit {
                    member: r.member.as_str().to_owned(),
                    name: m.name.clone(),
                    distance: r.distance,
                    active,
                })
            })
            .take(k)
            .collect();
        if hits.len() == k || exhausted {
            return Ok(hits);
        }
        want = want.saturating_mul(4).min(members);
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentifyReq {
    photo: Option<String>,
    embedding: Option<Vec<f32>>,
    encoder: Option<String>,
}

async fn identify(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let r: IdentifyReq = parse(body)?;
    let info = app.index.info();
    let q = probe_embedding(&app, &info, Probe { photo: r.photo, embedding: r.embedding, encoder: r.encoder }).await?;
    // the threshold of the very gallery revision searched
    let (revision, threshold, hits) = app.index.search(q, 2, false, None).await?;
    let policy =
        DecisionPolicy::new(threshold, DEFAULT_AMBIGUITY_MARGIN).map_err(|e| ApiError::internal("policy", e))?;
    let top: Vec<(MemberId, f32, bool)> = hits
        .iter()
        .map(|h| Ok((MemberId::new(&h.member).map_err(|e| ApiError::internal("index", e))?, h.distance, h.active)))
        .collect::<Result<_, ApiError>>()?;
    let name =
        |id: &MemberId| hits.iter().find(|h| h.member == id.as_str()).map(|h| h.name.clone()).unwrap_or_default();
    let mut v = match decide(&top, &policy) {
        Decision::Granted { member, distance } => json!({
            "decision": "granted", "member": member.as_str(), "name": name(&member), "distance": distance,
        }),
        Decision::Denied(reason) => {
            let detail = match &reason {
                DenialReason::Unknown { nearest } => json!({"nearest_distance": nearest}),
                DenialReason::Expired { member, distance } => {
                    json!({"member": member.as_str(), "name": name(member), "distance": distance})
                }
                DenialReason::Ambiguous { first, first_distance, second, second_distance } => json!({
                    "first": first.as_str(), "first_distance": first_distance,
                    "second": second.as_str(), "second_distance": second_distance,
                }),
            };
            json!({"decision": "denied", "reason": reason.code(), "detail": detail})
        }
    };
    v["revision"] = json!(revision);
    v["threshold"] = json!(threshold.get());
    Ok(Json(v))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyReq {
    photo_a: Option<String>,
    photo_b: Option<String>,
    photo: Option<String>,
    member: Option<String>,
}

async fn verify(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let r: VerifyReq = parse(body)?;
    let info = app.index.info();
    let threshold = info.threshold;
    match (r.photo_a, r.photo_b, r.photo, r.member) {
        (Some(a), Some(b), None, None) => {
            let (ea, eb) = (embed_photo(&app, &a, "photo_a").await?, embed_photo(&app, &b, "photo_b").await?);
            let v = verify_pair(&ea, &eb, threshold).map_err(|e| ApiError::internal("verify", e))?;
            Ok(Json(json!({"distance": v.distance, "similarity": v.similarity, "threshold": threshold.get(),
                           "same_person": v.accepted})))
        }
        (None, None, Some(photo), Some(id)) => {
            let id = member_id(&id)?;
            if app.index.member(&id).await?.is_none() {
                return Err(unknown_member(&id));
            }
            let e = embed_photo(&app, &photo, "photo").await?;
            let d = app.index.member_distance(&id, &e).await?.ok_or_else(|| unknown_member(&id))?;
            Ok(Json(json!({"member": id.as_str(), "distance": d, "similarity": similarity(d),
                           "threshold": threshold.get(), "same_person": threshold.accepts(d),
                           "revision": info.revision})))
        }
        _ => Err(ApiError::bad_request(
            "bad_query",
            "give either \"photo_a\" and \"photo_b\", or \"photo\" and \"member\"",
        )),
    }
}

fn member_id(s: &str) -> Result<MemberId, ApiError> {
    MemberId::new(s).map_err(|e| ApiError::bad_request("bad_member_id", e.to_string()))
}

fn unknown_member(id: &MemberId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_member",
        format!("no member {id:?} in the installed gallery", id = id.as_str()),
    )
}

async fn member(State(app): State<Arc<App>>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = member_id(&id)?;
    let revision = app.index.info().revision;
    let m = app.index.member(&id).await?.ok_or_else(|| unknown_member(&id))?;
    Ok(Json(json!({
        "member": id.as_str(), "name": m.name, "active": m.active,
        "valid_from": m.valid_from.map(|d| d.to_string()), "valid_until": m.valid_until.map(|d| d.to_string()),
        "admitted_today": m.admitted_today, "embeddings": m.embeddings, "revision": revision,
    })))
}

async fn healthz(State(app): State<Arc<App>>) -> Json<Value> {
    let i = app.index.info();
    Json(json!({
        "status": "ok", "backend": i.backend, "revision": i.revision, "members": i.members,
        "embeddings": i.embeddings, "encoder": i.encoder, "installed_at": i.installed_at,
    }))
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let text = app.metrics.render(&app.index.info());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}
