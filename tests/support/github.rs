//! The fake GitHub API (`cluster-setup/local/fake-github`, the project's one
//! fake) started for one test with a scenario of its own, and the app's
//! images pushed at a commit SHA, as CI would.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{LocalEnv, repo_root};

/// The token the fake accepts.
pub const TOKEN: &str = "test-token";

/// A fake GitHub API on a free loopback port; stopped (by PID) when dropped.
pub struct FakeGitHub {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    scenario: PathBuf,
    _dir: tempfile::TempDir,
}

impl FakeGitHub {
    /// Serve `scenario` (see the script's documentation).
    pub fn start(scenario: &serde_json::Value) -> FakeGitHub {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("scenario.json");
        std::fs::write(&path, scenario.to_string()).expect("write the scenario");
        let mut child = Command::new(repo_root().join("cluster-setup/local/fake-github"))
            .arg("--scenario")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start cluster-setup/local/fake-github");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("read the fake's first line");
        let url = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("fake-github said {first:?}"))
            .to_string();
        FakeGitHub {
            child,
            url,
            scenario: path,
            _dir: dir,
        }
    }

    /// Replace the scenario (atomically, as the fake asks).
    pub fn set(&self, scenario: &serde_json::Value) {
        let next = self.scenario.with_extension("next");
        std::fs::write(&next, scenario.to_string()).expect("write the scenario");
        std::fs::rename(&next, &self.scenario).expect("replace the scenario");
    }

    /// Every API request so far: `{method, path, query, status}`.
    pub async fn requests(&self) -> Vec<serde_json::Value> {
        reqwest::get(format!("{}/_fake/requests", self.url))
            .await
            .expect("GET /_fake/requests")
            .json()
            .await
            .expect("the request log is JSON")
    }

    /// The variables berth reads to reach this fake with `token`.
    pub fn vars(&self, token: &str) -> [(&'static str, String); 2] {
        [
            ("GITHUB_API_URL", self.url.clone()),
            ("GITHUB_TOKEN", token.to_string()),
        ]
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh 40-hex commit SHA, unique to this test process, whose first 7
/// characters differ from every other's.
pub fn new_sha() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = u64::from(COUNTER.fetch_add(1, Ordering::Relaxed));
    let mixed = ((u64::from(std::process::id()) << 32) | n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!("{mixed:016x}{:024x}", nanos & ((1 << 96) - 1))
}

/// A commit of the scenario: its checks and statuses.
pub fn commit(
    message: &str,
    runs: serde_json::Value,
    statuses: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({"message": message, "check_runs": runs, "statuses": statuses})
}

/// The kwok-backed app's image repositories in the local registry.
pub const APP_IMAGES: [&str; 5] = ["frontend", "renderer", "fetcher", "cron", "migrate"];

/// Push every image of the kwok-backed app tagged `sha`, as CI would; each
/// image differs (its one file holds the SHA), so digests differ per SHA.
pub fn push_app_images(env: &LocalEnv, sha: &str) {
    let registry = env.var("BERTH_LOCAL_REGISTRY");
    let first = format!("{registry}/workbench/{}:{sha}", APP_IMAGES[0]);
    super::images::push_as(
        env,
        &first,
        &[super::images::Layer::new().file("app/sha", sha)],
    );
    for name in &APP_IMAGES[1..] {
        let to = format!("{registry}/workbench/{name}:{sha}");
        super::images::copy(env, &first, &to);
    }
}
