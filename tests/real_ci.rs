//! Real CI and real clusters: `update-staging-to-latest-passing-master`
//! against the fake GitHub API with checks that failed outside
//! `required_checks`, and `berth psql` fed a file or a pipe on the real node.

mod support;

use std::path::PathBuf;
use std::process::Output;

use serde_json::{Value, json};
use support::github::{FakeGitHub, TOKEN, commit, new_sha, push_app_images};
use support::*;

/// berth.yaml with a `staging` environment (never reached: the runs stop
/// after choosing) and `github:` as given, in a directory of its own.
struct Staging {
    dir: PathBuf,
    github: FakeGitHub,
    _cleanup: Cleanup,
}

impl Staging {
    fn new(prefix: &str, github: &str, commits: &[(&str, Value)]) -> Staging {
        let name = unique_name(prefix);
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(dir.join("overlay")).unwrap();
        std::fs::write(dir.join("overlay/kustomization.yaml"), "resources: []\n").unwrap();
        let registry = local_env().var("BERTH_LOCAL_REGISTRY");
        let images: Vec<String> = support::github::APP_IMAGES
            .iter()
            .map(|i| format!("{registry}/workbench/{i}"))
            .collect();
        std::fs::write(
            dir.join("berth.yaml"),
            format!(
                "app: wb\nimages: [{}]\ngithub: {github}\nenvironments:\n  staging:\n    \
                 context: berth-local\n    namespace: {name}\n    overlay: overlay\n",
                images.join(", ")
            ),
        )
        .unwrap();
        let branch: Vec<&str> = commits.iter().map(|(sha, _)| *sha).collect();
        let listed: serde_json::Map<String, Value> = commits
            .iter()
            .map(|(sha, c)| (sha.to_string(), c.clone()))
            .collect();
        let scenario = json!({
            "token": TOKEN,
            "repos": {"example/workbench": {"branches": {"master": branch}, "commits": listed}}
        });
        Staging {
            github: FakeGitHub::start(&scenario),
            _cleanup: Cleanup::Dir(dir.clone()),
            dir,
        }
    }

    /// `--dry-run --output json`: the choice, and why each newer commit was passed over.
    fn choose(&self) -> Output {
        let mut command = berth_command(
            &self.dir.join("berth.yaml"),
            &self.dir,
            &[
                "update-staging-to-latest-passing-master",
                "--dry-run",
                "--output",
                "json",
            ],
        );
        command.envs(self.github.vars(TOKEN));
        command.output().unwrap()
    }
}

/// The messages of a `--output json` run's `info` events, one a line.
fn infos(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["event"] == "info")
        .map(|event| format!("{}\n", event["message"].as_str().unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn a_failed_check_outside_required_checks_blocks_its_commit_unless_allowed() {
    let env = local_env();
    let (e2e_red, scan_red, lint_red) = (new_sha(), new_sha(), new_sha());
    // Every commit's required `ci` passed and its images are in the
    // registry: only the failed checks can pass the two newest over.
    for sha in [&e2e_red, &scan_red, &lint_red] {
        push_app_images(env, sha);
    }
    let commits = [
        (
            e2e_red.as_str(),
            commit(
                "e2e red",
                json!([
                    {"name": "ci", "conclusion": "success"},
                    {"name": "e2e", "conclusion": "failure"},
                    {"name": "lint", "conclusion": "failure"}
                ]),
                json!([]),
            ),
        ),
        (
            scan_red.as_str(),
            commit(
                "security scan errored",
                json!([{"name": "ci", "conclusion": "success"}]),
                json!([{"context": "security-scan", "state": "error"}]),
            ),
        ),
        (
            lint_red.as_str(),
            commit(
                "only lint red",
                json!([
                    {"name": "ci", "conclusion": "success"},
                    {"name": "lint", "conclusion": "failure"},
                    {"name": "docs", "conclusion": null, "status": "in_progress"}
                ]),
                json!([]),
            ),
        ),
    ];
    let staging = Staging::new(
        "ci-allow",
        "{ repo: example/workbench, required_checks: [ci], allow_failures: [lint] }",
        &commits,
    );
    let out = staging.choose();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(report(&out)["sha"], lint_red.as_str(), "{}", stderr(&out));
    let said = infos(&out);
    assert!(
        said.contains(&format!(
            "passed over {}: check 'e2e' failed (not a required check: add it to \
             github.allow_failures to deploy despite it)",
            &e2e_red[..7]
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "passed over {}: status 'security-scan' ended error",
            &scan_red[..7]
        )),
        "{said}"
    );
    assert!(!said.contains("'lint'"), "lint is allowed to fail: {said}");
}
