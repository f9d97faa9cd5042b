//! A copy of everything each berth run of the suite printed, for the
//! canary check after it (`tests/support/canary`, run by `make test`).
//!
//! Each run gets a directory under `target/tmp/berth-runs/` holding its
//! `stdout`, `stderr`, its debug-level log (`debug.log`, through
//! `BERTH_LOG_FILE`), its GitHub step summary (`summary.md`, or a link to the
//! file a test chose) and the name of the test that ran it (`test`).
//!
//! What the test sees does not change: berth is started through a small
//! bash wrapper that `exec`s it, so the child is berth itself (its PID, its
//! signals, its exit status), with each of stdout and stderr passed through
//! `tee` unless it is a terminal (a terminal stays berth's own).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Tee stdout and stderr into `$1`, link a test-chosen step summary there,
/// then become berth (`$2`) with the remaining arguments.
const WRAPPER: &str = r#"
dir=$1 berth=$2
shift 2
summary=${GITHUB_STEP_SUMMARY:-}
if [[ ${GITHUB_ACTIONS:-} == true && -n $summary && $summary != "$dir/summary.md" ]]; then
  # berth appends to it: a hard link keeps what it wrote after the test deletes it
  [[ -e $summary ]] || : >>"$summary"
  ln "$summary" "$dir/summary-of-test.md" 2>/dev/null || ln -s "$summary" "$dir/summary-of-test.md"
fi
[[ -t 1 ]] || exec 1> >(exec tee "$dir/stdout")
[[ -t 2 ]] || exec 2> >(exec tee "$dir/stderr" >&2)
exec "$berth" "$@"
"#;

/// Where every run's directory goes; `make test` empties it first.
pub fn runs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("berth-runs")
}

/// A command that runs `berth` with its output captured in a fresh run
/// directory; add berth's arguments to it as to berth's own command.
pub fn captured(berth: &Path) -> Command {
    let dir = runs_dir().join(super::unique_name(&binary_name()));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let test = std::thread::current()
        .name()
        .unwrap_or("(unnamed thread)")
        .to_string();
    std::fs::write(dir.join("test"), test + "\n").expect("write the run's test name");
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(WRAPPER)
        .arg("berth-run")
        .arg(&dir)
        .arg(berth)
        .env("BERTH_LOG_FILE", dir.join("debug.log"))
        .env("GITHUB_STEP_SUMMARY", dir.join("summary.md"));
    command
}

/// The test binary's name without Cargo's hash, e.g. `deploy`.
fn binary_name() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let stem = exe.file_stem().and_then(|s| s.to_str()).unwrap_or("test");
    stem.rsplit_once('-')
        .map_or(stem, |(name, _)| name)
        .to_string()
}
