//! Resident memory of this process, read from Linux's `/proc/self/status`.
//!
//! Used by the door's start/stop log lines, its bench and soak run, and the host's index bench.
//! Elsewhere (no `/proc`, or a field missing) the readings are `None`, never an error.

/// Current resident memory of this process in bytes (`VmRSS`), or `None` where `/proc` is missing.
pub fn rss_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|kib| kib * 1024)
}

/// Peak resident memory of this process in bytes (`VmHWM`, the high-water mark), or `None` where
/// `/proc` is missing.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|kib| kib * 1024)
}

/// A `kB` field of `/proc/self/status` (e.g. `VmRSS:    1234 kB`).
fn status_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
