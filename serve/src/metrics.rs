//! The service's own counters, rendered with the shared Prometheus writer.

use facegate_shared::prometheus::{Exposition, Kind, DEFAULT_BOUNDS_S};
use facegate_shared::LatencyHistogram;
use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::index::Info;

/// Requests by route and status, latency by route, reloads by outcome.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, LatencyHistogram>,
    reloads: BTreeMap<&'static str, u64>,
    in_flight: i64,
}

impl Metrics {
    /// Counts one finished request.
    pub fn request(&self, route: &str, status: u16, ms: f64) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *m.requests.entry((route.to_owned(), status)).or_default() += 1;
        m.latency.entry(route.to_owned()).or_default().record(ms);
    }

    /// A request started (+1) or finished (−1).
    pub fn in_flight(&self, delta: i64) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).in_flight += delta;
    }

    /// Counts one reload outcome (`installed`, `refused`).
    pub fn reload(&self, outcome: &'static str) {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()).reloads.entry(outcome).or_default() += 1;
    }

    /// The Prometheus text for these counters and the installed gallery.
    pub fn render(&self, g: &Info) -> String {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut e = Exposition::new();
        e.family("facegate_serve_requests_total", Kind::Counter, "HTTP requests by route and status.");
        for ((route, status), n) in &m.requests {
            e.sample("facegate_serve_requests_total", &[("route", route), ("status", &status.to_string())], *n as f64);
        }
        e.family("facegate_serve_request_duration_seconds", Kind::Histogram, "Request latency by route.");
        for (route, h) in &m.latency {
            e.histogram("facegate_serve_request_duration_seconds", &[("route", route)], h, &DEFAULT_BOUNDS_S);
        }
        e.gauge("facegate_serve_in_flight_requests", "Requests being answered now.", m.in_flight as f64);
        e.family("facegate_serve_gallery_reloads_total", Kind::Counter, "Gallery file changes by outcome.");
        for outcome in ["installed", "refused"] {
            let n = m.reloads.get(outcome).copied().unwrap_or(0);
            e.sample("facegate_serve_gallery_reloads_total", &[("outcome", outcome)], n as f64);
        }
        e.gauge("facegate_gallery_revision", "Signed revision of the installed gallery.", g.revision as f64);
        e.gauge("facegate_gallery_members", "Members in the installed gallery.", g.members as f64);
        e.gauge("facegate_gallery_embeddings", "Embeddings in the installed gallery.", g.embeddings as f64);
        e.gauge(
            "facegate_gallery_installed_timestamp_seconds",
            "When the gallery was installed.",
            g.installed_at as f64,
        );
        e.finish()
    }
}
