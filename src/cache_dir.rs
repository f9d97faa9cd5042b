//! Where berth keeps its caches: `$BERTH_CACHE`, else `~/.cache/berth`.
//! Everything in it can be deleted at any time; berth rebuilds what it needs.

use std::path::PathBuf;

/// The cache directory, or `None` when neither `BERTH_CACHE` nor `HOME` is set.
pub fn base() -> Option<PathBuf> {
    std::env::var_os("BERTH_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/berth")))
}
