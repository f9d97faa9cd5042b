//! Gives `berth --version` the commit it was built from, the commit's date
//! and the target: BERTH_COMMIT and BERTH_COMMIT_DATE from the environment
//! when set (a build from a source tarball has no .git), else from git, else
//! `unknown`. Nothing here reads the clock, so two builds of one commit get the
//! same strings; the script reruns when HEAD moves.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=BERTH_COMMIT");
    println!("cargo::rerun-if-env-changed=BERTH_COMMIT_DATE");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let git = Git::of(&manifest_dir);
    if let Some(git) = &git {
        git.watch_head();
    }
    let commit = given("BERTH_COMMIT")
        .or_else(|| git.as_ref()?.output(&["rev-parse", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // The committer date as a UTC calendar date: the clock of the build
    // machine never enters it.
    let date = given("BERTH_COMMIT_DATE")
        .or_else(|| {
            git.as_ref()?.output(&[
                "show",
                "-s",
                "--format=%cd",
                "--date=format-local:%Y-%m-%d",
                "HEAD",
            ])
        })
        .unwrap_or_else(|| "unknown".into());
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo::rustc-env=BERTH_COMMIT={commit}");
    println!("cargo::rustc-env=BERTH_COMMIT_DATE={date}");
    println!("cargo::rustc-env=BERTH_TARGET={target}");
}

/// A non-empty environment variable's value.
fn given(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// The git repository whose top level is this package (not one that merely
/// contains an unpacked source tarball).
struct Git {
    dir: PathBuf,
}

impl Git {
    fn of(dir: &Path) -> Option<Git> {
        let git = Git {
            dir: dir.to_path_buf(),
        };
        let top = git.output(&["rev-parse", "--show-toplevel"])?;
        let same = Path::new(&top).canonicalize().ok()? == dir.canonicalize().ok()?;
        same.then_some(git)
    }

    /// Rerun when HEAD moves: a commit, checkout or reset rewrites HEAD or
    /// the branch it names and appends to HEAD's reflog. Only existing files
    /// are named, since cargo reruns on every build for a missing one.
    fn watch_head(&self) {
        let mut paths = vec!["HEAD".to_string(), "logs/HEAD".into(), "packed-refs".into()];
        if let Some(branch) = self.output(&["symbolic-ref", "-q", "HEAD"]) {
            paths.push(branch);
        }
        for path in paths {
            let Some(file) =
                self.output(&["rev-parse", "--path-format=absolute", "--git-path", &path])
            else {
                continue;
            };
            if Path::new(&file).exists() {
                println!("cargo::rerun-if-changed={file}");
            }
        }
    }

    /// git's trimmed standard output, when it succeeds.
    fn output(&self, args: &[&str]) -> Option<String> {
        let output = Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(args)
            .env("TZ", "UTC")
            .output()
            .ok()?;
        let text = String::from_utf8(output.stdout).ok()?;
        (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
    }
}
