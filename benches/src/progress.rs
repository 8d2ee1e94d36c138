//! The progress bar a load shows while it runs: drawn on stderr so stdout
//! stays the report, hidden when stderr is not a terminal (indicatif's own
//! check) or with `--no-progress`, and cleared when the load ends so it
//! leaves nothing behind. Counting is up to the caller.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar for `total` steps labelled `what`, or a hidden one.
pub fn bar(total: u64, what: &str, shown: bool) -> ProgressBar {
    let target = if shown {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} [{elapsed_precise}, eta {eta}]")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}
