//! Pulling signed galleries from a URL (`gallery.url`) into the inbox.
//!
//! A background thread fetches the URL every `fetch_interval` with a conditional GET (ETag /
//! Last-Modified), a connect timeout, a total timeout and a size cap, backing off exponentially
//! (up to [`MAX_BACKOFF_FACTOR`] × the interval) while the server is unreachable. A complete
//! download that passes the same signature and encoder check the door applies
//! ([`InstallRules::verify`]) is written into the inbox atomically (temporary name, then rename);
//! the door's store then installs it under the usual rules (replay guard included), exactly as a
//! file dropped by hand. The transport adds no trust: plain `http://` on a LAN is acceptable
//! because the file is signed; `https://` (rustls, the web PKI roots or a pinned CA file) keeps
//! the member list private on the way.
//!
//! The thread never touches the gallery in use: while the server is down the door keeps deciding
//! with its last good gallery. It reports what happened through [`PullNotice`]s (an outage and a
//! recovery once each) and counters ([`PullCounts`]) for the metrics file.

use facegate_shared::install::InstallRules;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest back-off after failures, as a multiple of the fetch interval.
pub const MAX_BACKOFF_FACTOR: u32 = 4;

/// Connect timeout, at most (the total timeout may be shorter).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How the puller is set up (from `[gallery]`).
#[derive(Debug, Clone, PartialEq)]
pub struct PullSettings {
    /// `http://…` or `https://…`.
    pub url: String,
    /// Time between fetches while the server answers.
    pub interval: Duration,
    /// Whole request, connection to last byte.
    pub timeout: Duration,
    /// Larger bodies are refused (from `gallery.max_bytes`).
    pub max_bytes: u64,
    /// PEM file of the only CA trusted for `https://` (else the web PKI roots).
    pub ca_file: Option<PathBuf>,
}

/// Why the puller cannot start (a configuration problem).
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The CA file cannot be read or holds no usable certificate.
    #[error("gallery.ca_file {path}: {problem}")]
    CaFile { path: String, problem: String },
    /// The inbox folder does not exist.
    #[error("gallery.inbox {0}: its folder does not exist")]
    Inbox(String),
}

/// What the puller tells the door (each is logged).
#[derive(Debug, Clone, PartialEq)]
pub enum PullNotice {
    /// A new version was downloaded, checked and written into the inbox.
    Downloaded { bytes: u64, ms: f64 },
    /// The first failed fetch after a success (or at start): the server is unreachable, answers
    /// an error, is too slow, or sent a truncated body. Logged once per outage.
    Outage { error: String },
    /// A fetch succeeded after `failures` failed ones over `down`.
    Recovered { failures: u64, down: Duration },
    /// A complete download was refused (too large, not signed by a trusted key, other encoder);
    /// nothing was written. Logged once per server version.
    Refused { reason: String },
}

impl PullNotice {
    /// The event log's reason code and detail; `revision` is the gallery in use (0: none yet).
    pub fn describe(&self, revision: u64) -> (&'static str, String) {
        match self {
            PullNotice::Downloaded { bytes, ms } => {
                ("downloaded", format!("{bytes} bytes from gallery.url in {ms:.0} ms, written to the inbox"))
            }
            PullNotice::Outage { error } => {
                ("fetch_failed", format!("gallery.url: {error}; keeping revision {revision}, retrying with back-off"))
            }
            PullNotice::Recovered { failures, down } => (
                "fetch_recovered",
                format!("gallery.url answers again after {:.1} s ({failures} failed fetches)", down.as_secs_f64()),
            ),
            PullNotice::Refused { reason } => {
                ("fetch_refused", format!("download refused, keeping revision {revision}: {reason}"))
            }
        }
    }
}

/// Counters since the door started (for the metrics file).
#[derive(Debug, Default)]
pub struct PullCounts {
    /// Requests made.
    pub fetches: AtomicU64,
    /// 304 Not Modified answers.
    pub not_modified: AtomicU64,
    /// New versions written into the inbox.
    pub downloads: AtomicU64,
    /// Failed fetches (unreachable, HTTP error, timeout, truncated).
    pub failures: AtomicU64,
    /// Complete downloads refused.
    pub refused: AtomicU64,
    /// Body bytes received.
    pub bytes: AtomicU64,
}

/// The running puller; dropping it stops the thread after its current request.
pub struct Puller {
    notices: Receiver<PullNotice>,
    counts: Arc<PullCounts>,
    _stop: Sender<()>,
}

impl Puller {
    /// Starts the thread; the first fetch is immediate.
    pub fn spawn(settings: PullSettings, inbox: PathBuf, rules: InstallRules) -> Result<Self, PullError> {
        let agent = agent(&settings)?;
        match inbox.parent() {
            Some(d) if d.as_os_str().is_empty() || d.is_dir() => {}
            _ => return Err(PullError::Inbox(inbox.display().to_string())),
        }
        let (tx, notices) = mpsc::channel();
        let (stop, stopped) = mpsc::channel();
        let counts = Arc::new(PullCounts::default());
        let c = counts.clone();
        std::thread::Builder::new()
            .name("gallery-pull".into())
            .spawn(move || pull_loop(&agent, &settings, &inbox, &rules, &c, &tx, &stopped))
            .map_err(|e| PullError::Inbox(format!("cannot start the puller thread: {e}")))?;
        Ok(Self { notices, counts, _stop: stop })
    }

    /// Notices since the last call.
    pub fn notices(&self) -> Vec<PullNotice> {
        self.notices.try_iter().collect()
    }

    /// The counters.
    pub fn counts(&self) -> &PullCounts {
        &self.counts
    }
}

fn agent(s: &PullSettings) -> Result<ureq::Agent, PullError> {
    let mut b = ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_TIMEOUT.min(s.timeout))
        .timeout(s.timeout)
        .user_agent(concat!("facegate-door/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &s.ca_file {
        b = b.tls_config(Arc::new(pinned_tls(ca)?));
    }
    Ok(b.build())
}

/// A TLS client configuration trusting only the certificates in `ca` (PEM).
fn pinned_tls(ca: &Path) -> Result<rustls::ClientConfig, PullError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let bad = |problem: String| PullError::CaFile { path: ca.display().to_string(), problem };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(e.to_string()))? {
        roots.add(cert.map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("holds no PEM certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Validators of the last version fetched completely.
#[derive(Debug, Default, Clone)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

enum Fetched {
    NotModified,
    /// A complete body, and its validators.
    Body(Vec<u8>, Validators),
    /// A complete body over the cap (not kept), and its validators.
    TooLarge(u64, Validators),
}

/// One conditional GET. `Err`: a failure that counts towards an outage.
fn fetch(agent: &ureq::Agent, s: &PullSettings, v: &Validators, counts: &PullCounts) -> Result<Fetched, String> {
    let mut req = agent.get(&s.url);
    if let Some(e) = &v.etag {
        req = req.set("If-None-Match", e);
    }
    if let Some(m) = &v.last_modified {
        req = req.set("If-Modified-Since", m);
    }
    counts.fetches.fetch_add(1, Ordering::Relaxed);
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) => return Err(format!("HTTP {code} {}", r.status_text())),
        Err(e) => return Err(redact(&e.to_string())),
    };
    if resp.status() == 304 {
        counts.not_modified.fetch_add(1, Ordering::Relaxed);
        return Ok(Fetched::NotModified);
    }
    if resp.status() != 200 {
        return Err(format!("HTTP {} {}", resp.status(), resp.status_text()));
    }
    let validators = Validators {
        etag: resp.header("ETag").map(str::to_owned),
        last_modified: resp.header("Last-Modified").map(str::to_owned),
    };
    let declared: Option<u64> = resp.header("Content-Length").and_then(|l| l.trim().parse().ok());
    if let Some(n) = declared.filter(|&n| n > s.max_bytes) {
        // Refused unread: the declared size is enough.
        return Ok(Fetched::TooLarge(n, validators));
    }
    let mut body = Vec::new();
    let read = resp.into_reader().take(s.max_bytes + 1).read_to_end(&mut body);
    counts.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    if let Err(e) = read {
        return Err(format!("truncated download: broken off after {} bytes: {e}", body.len()));
    }
    if body.len() as u64 > s.max_bytes {
        return Ok(Fetched::TooLarge(body.len() as u64, validators));
    }
    if let Some(n) = declared.filter(|&n| n != body.len() as u64) {
        return Err(format!("truncated download: {} of {n} bytes", body.len()));
    }
    Ok(Fetched::Body(body, validators))
}

/// `user:password@` and query strings (presigned bucket URLs carry tokens there) in URLs inside
/// an error text are not logged.
fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let host_end = tail.find(|c: char| c == '/' || c == '?' || c.is_whitespace()).unwrap_or(tail.len());
        let tail = match tail[..host_end].rfind('@') {
            Some(at) => {
                out.push_str("***@");
                &tail[at + 1..]
            }
            None => tail,
        };
        let url_end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        match tail[..url_end].find('?') {
            Some(q) => {
                out.push_str(&tail[..q]);
                out.push_str("?***");
                rest = &tail[url_end..];
            }
            None => {
                out.push_str(&tail[..url_end]);
                rest = &tail[url_end..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Writes `bytes` into the inbox under a temporary name in its folder, then renames it.
fn write_inbox(inbox: &Path, bytes: &[u8]) -> std::io::Result<()> {
    facegate_shared::gallery_file::write_atomic(inbox, bytes)
}

/// What one successful fetch led to.
enum Outcome {
    /// 304, or the very bytes written last time (a server without validators).
    Nothing,
    /// Written into the inbox.
    Written(PullNotice),
    /// Refused; `version` identifies what was refused (logged once per version).
    Refused { version: String, reason: String },
}

fn pull_loop(
    agent: &ureq::Agent,
    s: &PullSettings,
    inbox: &Path,
    rules: &InstallRules,
    counts: &PullCounts,
    tx: &Sender<PullNotice>,
    stopped: &Receiver<()>,
) {
    use sha2::{Digest, Sha256};
    let mut have = Validators::default();
    let mut last_written: Option<[u8; 32]> = None;
    let mut failures: u64 = 0;
    let mut down_since: Option<Instant> = None;
    let mut refused_version: Option<String> = None;
    loop {
        let t = Instant::now();
        let outcome = fetch(agent, s, &have, counts).and_then(|f| match f {
            Fetched::NotModified => Ok(Outcome::Nothing),
            Fetched::TooLarge(n, v) => {
                counts.refused.fetch_add(1, Ordering::Relaxed);
                Ok(Outcome::Refused {
                    version: format!("{n} bytes, {:?}/{:?}", v.etag, v.last_modified),
                    reason: format!("{n} bytes is over gallery.max_bytes ({})", s.max_bytes),
                })
            }
            Fetched::Body(bytes, v) => {
                let digest: [u8; 32] = Sha256::digest(&bytes).into();
                if last_written == Some(digest) {
                    have = v;
                    return Ok(Outcome::Nothing);
                }
                match rules.verify(&bytes) {
                    // Validators are not kept for a refused body: it may have been damaged on the
                    // way (a body without Content-Length), so the next poll downloads it again.
                    Err(e) => {
                        counts.refused.fetch_add(1, Ordering::Relaxed);
                        Ok(Outcome::Refused { version: hex::encode(digest), reason: e.to_string() })
                    }
                    Ok(_) => {
                        write_inbox(inbox, &bytes)
                            .map_err(|e| format!("writing the inbox {}: {e}", inbox.display()))?;
                        counts.downloads.fetch_add(1, Ordering::Relaxed);
                        last_written = Some(digest);
                        // With validators the server answers 304 until it has a new version.
                        have = v;
                        let ms = t.elapsed().as_secs_f64() * 1e3;
                        Ok(Outcome::Written(PullNotice::Downloaded { bytes: bytes.len() as u64, ms }))
                    }
                }
            }
        });
        let notice = match outcome {
            Ok(done) => {
                let mut notes = Vec::new();
                if let Some(since) = down_since.take() {
                    notes.push(PullNotice::Recovered { failures, down: since.elapsed() });
                }
                failures = 0;
                match done {
                    Outcome::Nothing => {}
                    Outcome::Written(n) => {
                        refused_version = None;
                        notes.push(n);
                    }
                    Outcome::Refused { version, reason } => {
                        if refused_version.as_ref() != Some(&version) {
                            notes.push(PullNotice::Refused { reason });
                        }
                        refused_version = Some(version);
                    }
                }
                notes
            }
            Err(error) => {
                counts.failures.fetch_add(1, Ordering::Relaxed);
                failures += 1;
                if down_since.is_none() {
                    down_since = Some(t);
                    vec![PullNotice::Outage { error }]
                } else {
                    Vec::new()
                }
            }
        };
        for n in notice {
            if tx.send(n).is_err() {
                return;
            }
        }
        let factor = if failures == 0 { 1 } else { 1u32 << (failures - 1).min(8) };
        let wait = s.interval * factor.min(MAX_BACKOFF_FACTOR);
        match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted_from_errors() {
        assert_eq!(
            redact("https://u:secret@host/g.fgg: Connection refused"),
            "https://***@host/g.fgg: Connection refused"
        );
        assert_eq!(redact("http://host:80/g.fgg: timed out"), "http://host:80/g.fgg: timed out");
        assert_eq!(
            redact("https://bucket.s3/g.fgg?X-Amz-Signature=abc&X-Amz-Credential=k failed"),
            "https://bucket.s3/g.fgg?*** failed"
        );
    }

    #[test]
    fn a_ca_file_without_certificates_is_a_config_error() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ca.pem");
        std::fs::write(&p, "not a certificate\n").unwrap();
        let e = pinned_tls(&p).unwrap_err();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        let e = pinned_tls(&d.path().join("missing.pem")).unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
    }
}
