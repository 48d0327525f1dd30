//! Progress bars for long work (indicatif, on stderr; hidden when stderr is not a terminal).
//! The one home of their look.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` items (sequences, questions, windows).
pub fn items(len: u64, what: &str) -> ProgressBar {
    styled(
        ProgressBar::new(len),
        "{msg:>24} [{bar:30}] {pos}/{len} {eta}",
        what,
    )
}

/// A bar over `len` bytes.
pub fn bytes(len: u64, what: &str) -> ProgressBar {
    styled(
        ProgressBar::new(len),
        "{msg:>24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        what,
    )
}

/// A spinner with the elapsed time, for one step of unknown length.
pub fn spinner(what: &str) -> ProgressBar {
    let pb = styled(
        ProgressBar::new_spinner(),
        "{spinner} {msg} {elapsed}",
        what,
    );
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

fn styled(pb: ProgressBar, template: &str, what: &str) -> ProgressBar {
    pb.set_style(
        ProgressStyle::with_template(template)
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_message(what.to_string());
    pb
}
