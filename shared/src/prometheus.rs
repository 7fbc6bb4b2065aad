//! Prometheus text exposition format (version 0.0.4), written by hand: one copy for the door's
//! metrics file, the door's health endpoint and the matching service's `/metrics`.
//!
//! Histograms are rendered from a [`LatencyHistogram`] at fixed `le` bounds in **seconds**
//! ([`DEFAULT_BOUNDS_S`]) so that every scrape has the same series (Prometheus requires it for
//! `rate()` and `histogram_quantile()`). A bound falls inside one of the histogram's log buckets
//! (1.09 % wide); samples in that straddling bucket are counted in the next bound up, so a
//! cumulative count may be low by the samples within 1.09 % below a bound.

use crate::LatencyHistogram;
use std::fmt::Write;

/// `le` bounds in seconds: 1 ms to 10 s in 1–2.5–5 steps.
pub const DEFAULT_BOUNDS_S: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A metric's kind, as in its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets on restart).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Cumulative buckets plus `_sum` and `_count`.
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Label pairs of one sample.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// A text exposition being written. Each metric family is announced once
/// ([`Exposition::family`]) and followed by its samples.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    /// `# HELP` and `# TYPE` lines for the family `name`.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        debug_assert!(valid_name(name), "{name}");
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
        self
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: Labels<'_>, value: f64) -> &mut Self {
        self.out.push_str(name);
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", number(value));
        self
    }

    /// A one-sample counter family.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> &mut Self {
        self.family(name, Kind::Counter, help).sample(name, &[], value as f64)
    }

    /// A one-sample gauge family.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) -> &mut Self {
        self.family(name, Kind::Gauge, help).sample(name, &[], value)
    }

    /// The `_bucket`, `_sum` and `_count` series of `h` (milliseconds) in seconds, at `bounds_s`
    /// (increasing) plus `+Inf`. Announce the family first with [`Kind::Histogram`].
    pub fn histogram(&mut self, name: &str, labels: Labels<'_>, h: &LatencyHistogram, bounds_s: &[f64]) -> &mut Self {
        let buckets: Vec<(f64, u64)> = h.cumulative_buckets().collect();
        for &b in bounds_s {
            let ms = b * 1e3;
            // samples in buckets whose exclusive upper edge is at or below the bound are <= it
            let n = buckets.iter().take_while(|(edge, _)| *edge <= ms).last().map_or(0, |(_, c)| *c);
            let _ = write!(self.out, "{name}_bucket");
            write_labels(&mut self.out, labels, Some(&number(b)));
            let _ = writeln!(self.out, " {n}");
        }
        let _ = write!(self.out, "{name}_bucket");
        write_labels(&mut self.out, labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", h.count());
        self.sample(&format!("{name}_sum"), labels, h.sum() / 1e3);
        self.sample(&format!("{name}_count"), labels, h.count() as f64)
    }

    /// The text, ending in a newline.
    pub fn finish(self) -> String {
        self.out
    }
}

/// Whether `name` is a valid metric or label name.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn write_labels(out: &mut String, labels: Labels<'_>, le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        debug_assert!(valid_name(k), "{k}");
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{k}=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

/// A sample value: integers without a fraction, `+Inf`/`-Inf`/`NaN` as Prometheus spells them.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// One parsed sample: name, labels, value. For tests and `status` readers.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (with `_bucket`/`_sum`/`_count` for histogram series).
    pub name: String,
    /// Labels in written order.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

/// Parses the sample lines of an exposition this module wrote (comments skipped). Returns the
/// first malformed line as the error.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let bad = || format!("malformed sample line: {line:?}");
        let (head, value) = line.rsplit_once(' ').ok_or_else(bad)?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| bad())?,
        };
        let (name, labels) = match head.split_once('{') {
            None => (head, Vec::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').ok_or_else(bad)?;
                (name, parse_labels(body).ok_or_else(bad)?)
            }
        };
        if !valid_name(name) {
            return Err(bad());
        }
        out.push(Sample { name: name.to_owned(), labels, value });
    }
    Ok(out)
}

fn parse_labels(body: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (k, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.push((k.to_owned(), value));
        rest = after[end + 1..].strip_prefix(',').unwrap_or(&after[end + 1..]);
    }
    Some(labels)
}

/// The value of the sample `name` whose labels include every pair in `labels`.
pub fn value_of(samples: &[Sample], name: &str, labels: Labels<'_>) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v)))
        .map(|s| s.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_parses_families() {
        let mut h = LatencyHistogram::new();
        for ms in [0.5, 3.0, 3.0, 40.0, 20_000.0] {
            h.record(ms);
        }
        let mut e = Exposition::new();
        e.counter("facegate_frames_total", "Frames read.", 12);
        e.family("facegate_requests_total", Kind::Counter, "Requests.");
        e.sample("facegate_requests_total", &[("route", "/v1/search"), ("status", "200")], 3.0);
        e.sample("facegate_requests_total", &[("route", "a\"b\\c\nd"), ("status", "401")], 1.0);
        e.family("facegate_latency_seconds", Kind::Histogram, "Latency.");
        e.histogram("facegate_latency_seconds", &[("route", "x")], &h, &DEFAULT_BOUNDS_S);
        e.gauge("facegate_gallery_revision", "Revision.", 7.0);
        let text = e.finish();
        assert!(text.contains("# TYPE facegate_latency_seconds histogram\n"), "{text}");
        assert!(text.contains("facegate_requests_total{route=\"a\\\"b\\\\c\\nd\",status=\"401\"} 1\n"), "{text}");
        let s = parse(&text).unwrap();
        assert_eq!(value_of(&s, "facegate_frames_total", &[]), Some(12.0));
        assert_eq!(value_of(&s, "facegate_requests_total", &[("route", "a\"b\\c\nd")]), Some(1.0));
        assert_eq!(value_of(&s, "facegate_requests_total", &[("status", "200")]), Some(3.0));
        let le = |b: &str| value_of(&s, "facegate_latency_seconds_bucket", &[("le", b)]).unwrap();
        // 0.5 ms ≤ 1 ms; 3 ms twice ≤ 5 ms; 40 ms ≤ 50 ms; 20 s only in +Inf
        assert_eq!(
            [le("0.001"), le("0.0025"), le("0.005"), le("0.025"), le("0.05"), le("10"), le("+Inf")],
            [1.0, 1.0, 3.0, 3.0, 4.0, 4.0, 5.0]
        );
        assert_eq!(value_of(&s, "facegate_latency_seconds_count", &[]), Some(5.0));
        let sum = value_of(&s, "facegate_latency_seconds_sum", &[]).unwrap();
        assert!((sum - 20.0465).abs() < 1e-9, "{sum}");
        assert_eq!(value_of(&s, "facegate_gallery_revision", &[]), Some(7.0));
        // every bucket line is cumulative (non-decreasing)
        let buckets: Vec<f64> =
            s.iter().filter(|x| x.name == "facegate_latency_seconds_bucket").map(|x| x.value).collect();
        assert_eq!(buckets.len(), DEFAULT_BOUNDS_S.len() + 1);
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    }

    #[test]
    fn rejects_malformed_lines() {
        assert!(parse("x 1\n").is_ok());
        for bad in ["x", "x{a=\"1\" 2", "1x 2", "x abc", "x{a=1} 2"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
