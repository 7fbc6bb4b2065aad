//! Progress bars (hidden automatically when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `n` items.
pub fn bar(n: u64, what: &str) -> ProgressBar {
    let b = ProgressBar::new(n);
    b.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_prefix(what.to_owned());
    b
}

/// A bar over one training epoch.
pub fn epoch_bar(steps: u64, epoch: usize) -> ProgressBar {
    bar(steps, &format!("epoch {epoch:>3}"))
}
