//! What `berth -V` and `berth version` say about the build: the version,
//! then the commit, its date, the target and whether the C runtime is
//! linked in (build.rs supplies the commit, date and target; `-V` prints
//! the first line only; `--version` is `berth version`). The date is
//! the commit's, never the build machine's clock, so two builds of one
//! commit are byte for byte the same (docs/install.md).

/// `--version`'s text after `berth `, one `key: value` per line after the first.
macro_rules! long_version {
    ($linkage:literal) => {
        concat!(
            env!("CARGO_PKG_VERSION"),
            "\ncommit: ",
            env!("BERTH_COMMIT"),
            "\ncommit-date: ",
            env!("BERTH_COMMIT_DATE"),
            "\ntarget: ",
            env!("BERTH_TARGET"),
            "\nlinkage: ",
            $linkage
        )
    };
}

/// The long version, with `linkage: static` when glibc is linked into the
/// binary (`+crt-static`).
#[cfg(target_feature = "crt-static")]
pub const LONG: &str = long_version!("static");
/// The long version, with `linkage: dynamic` for an ordinary build.
#[cfg(not(target_feature = "crt-static"))]
pub const LONG: &str = long_version!("dynamic");

/// berth's version, as Cargo.toml says it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit berth was built from (`unknown` without git).
pub const COMMIT: &str = env!("BERTH_COMMIT");
/// The commit's date, UTC, `YYYY-MM-DD` (`unknown` without git).
pub const COMMIT_DATE: &str = env!("BERTH_COMMIT_DATE");
/// The target triple berth was built for.
pub const TARGET: &str = env!("BERTH_TARGET");
/// `static` when glibc is linked into the binary, else `dynamic`.
pub const LINKAGE: &str = if cfg!(target_feature = "crt-static") {
    "static"
} else {
    "dynamic"
};
