//! What `berth --version` says: the version, then the commit, its date, the
//! target and whether the C runtime is linked in (build.rs supplies the
//! commit, date and target; `-V` prints the first line only).

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
