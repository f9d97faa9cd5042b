//! Real CI and real clusters: `update-staging-to-latest-passing-master`
//! against the fake GitHub API with checks that failed outside
//! `required_checks`, and `berth psql` fed a pipe on the real node.

mod support;

use std::path::PathBuf;
use std::process::Output;

use std::time::Duration;

use serde_json::{Value, json};
use support::github::{FakeGitHub, TOKEN, commit, new_sha, push_app_images};
use support::real_app::{RealApp, Release};
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
            &e2e_red[..12]
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "passed over {}: status 'security-scan' ended error",
            &scan_red[..12]
        )),
        "{said}"
    );
    assert!(!said.contains("'lint'"), "lint is allowed to fail: {said}");
}

/// `berth psql test -- -At` on `app` with `input` on its standard input (a
/// pipe, closed once written); its output once it ends by itself, or a
/// failure naming the input after a minute.
async fn psql_with_input(app: &RealApp, input: &str) -> Output {
    let child = spawn_with_input(
        &mut berth_command(
            &app.dir.join("berth.yaml"),
            &repo_root(),
            &["psql", "test", "--", "-At"],
        ),
        input,
    );
    let waiting = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap());
    tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .unwrap_or_else(|_| panic!("berth psql did not end at the end of its input {input:?}"))
        .unwrap()
}

#[tokio::test]
async fn psql_on_the_real_node_ends_at_the_end_of_its_input_with_the_last_statements_code() {
    let client = local_env().kube().await;
    let app = RealApp::new(&client, "real-psql").await;
    app.deploy(Release::GoodA);

    let out = psql_with_input(&app, "select 1;\nselect 2;\n").await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n2\n");

    // a failed statement ends the script there, with psql's exit code 3
    let out = psql_with_input(&app, "select 1;\nselect nonsense;\nselect 3;\n").await;
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1\n",
        "stopped at the error"
    );
    assert!(stderr(&out).contains("nonsense"), "{}", stderr(&out));
}
