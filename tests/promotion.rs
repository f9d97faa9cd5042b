//! The path to production against the local cluster, the local registry and
//! the fake GitHub API: `update-staging-to-latest-passing-master` picks the
//! right commit, `update-production-to-staging` / `promote` copy what staging
//! runs healthy (and refuse when it does not), and `rollback` re-applies an
//! earlier release from its record.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::github::{FakeGitHub, TOKEN, commit, new_sha, push_app_images};
use support::*;

/// The kwok-backed app with `staging` and `production`, each in a namespace of
/// this test's own, deploying the fixture's overlays (copied, so a test
/// may change it), and GitHub checks read from `github`. Dropping it
/// deletes both namespaces and the directory.
struct App {
    dir: PathBuf,
    staging: String,
    production: String,
    github: FakeGitHub,
    _cleanup: [Cleanup; 3],
}

impl App {
    fn new(prefix: &str, scenario: &Value) -> App {
        let name = unique_name(prefix);
        let dir = std::env::temp_dir().join(&name);
        let cleanup = [
            Cleanup::Namespace(format!("{name}-staging")),
            Cleanup::Namespace(format!("{name}-production")),
            Cleanup::Dir(dir.clone()),
        ];
        std::fs::create_dir_all(&dir).unwrap();
        let overlay = dir.join("overlay");
        copy_dir(&kwok_app().join("overlays"), &overlay);
        let registry = local_env().var("BERTH_LOCAL_REGISTRY");
        let config = format!(
            r#"app: wb
images: [{images}]
github: {{ repo: example/workbench, branch: master }}
environments:
  staging:
    context: berth-local
    namespace: {name}-staging
    overlay: overlay/staging
    rollout: {{ timeout: 90s }}
  production:
    context: berth-local
    namespace: {name}-production
    overlay: overlay/production
    rollout: {{ timeout: 90s }}
"#,
            images = support::github::APP_IMAGES
                .iter()
                .map(|i| format!("{registry}/workbench/{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        std::fs::write(dir.join("berth.yaml"), config).unwrap();
        App {
            staging: format!("{name}-staging"),
            production: format!("{name}-production"),
            dir,
            github: FakeGitHub::start(scenario),
            _cleanup: cleanup,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = berth_command(&self.dir.join("berth.yaml"), &self.dir, args);
        command.envs(self.github.vars(TOKEN));
        command
    }

    fn berth(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A scenario of one repository whose master lists `commits` (sha, commit), newest first.
fn scenario(commits: &[(&str, Value)]) -> Value {
    let branch: Vec<&str> = commits.iter().map(|(sha, _)| *sha).collect();
    let commits: serde_json::Map<String, Value> = commits
        .iter()
        .map(|(sha, c)| (sha.to_string(), c.clone()))
        .collect();
    json!({
        "token": TOKEN,
        "repos": {"example/workbench": {"branches": {"master": branch}, "commits": commits}}
    })
}

fn green(message: &str) -> Value {
    commit(
        message,
        json!([{"name": "ci", "conclusion": "success"}]),
        json!([]),
    )
}

/// The frontend Deployment's image in `namespace`.
async fn frontend_image(namespace: &str) -> String {
    let client = local_env().kube().await;
    let deployments: Api<Deployment> = Api::namespaced(client, namespace);
    let frontend = deployments.get("frontend").await.unwrap();
    frontend.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap()
}

/// `history --output json`: (release, sha, status, rolled_back_to, promoted_from) newest first.
fn history(app: &App, env: &str) -> Vec<Value> {
    let output = app.berth(&["history", env, "--output", "json"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|event| event["event"] == "release")
        .collect()
}

#[tokio::test]
async fn staging_gets_the_newest_green_commit_with_images_then_production_then_rollback() {
    let env = local_env();
    let (pending, failing, legacy, unbuilt, chosen, older) = (
        new_sha(),
        new_sha(),
        new_sha(),
        new_sha(),
        new_sha(),
        new_sha(),
    );
    for sha in [&chosen, &older] {
        push_app_images(env, sha);
    }
    let app = App::new(
        "flow",
        &scenario(&[
            (
                &pending,
                commit(
                    "Newest, CI still running",
                    json!([{"name": "ci", "status": "in_progress"}]),
                    json!([]),
                ),
            ),
            (
                &failing,
                commit(
                    "Broke the tests",
                    json!([{"name": "ci", "conclusion": "failure"}]),
                    json!([]),
                ),
            ),
            (
                &legacy,
                commit(
                    "Legacy CI failed",
                    json!([{"name": "ci", "conclusion": "success"}]),
                    json!([{"context": "legacy", "state": "failure"}]),
                ),
            ),
            (&unbuilt, green("Green, but its images were never pushed")),
            (&chosen, green("The one to deploy")),
            (&older, green("Older and green")),
        ]),
    );

    let output = app.berth(&["update-staging-to-latest-passing-master"]);
    let err = stderr(&output);
    assert_eq!(code(&output), 0, "{err}");
    let short = |sha: &str| sha[..12].to_string();
    for expected in [
        format!("passed over {}: check 'ci' is pending", short(&pending)),
        format!("passed over {}: check 'ci' failed", short(&failing)),
        format!("passed over {}: status 'legacy' failed", short(&legacy)),
        format!(
            "passed over {}: image {}/workbench/frontend:{unbuilt} is not in the registry",
            short(&unbuilt),
            env.var("BERTH_LOCAL_REGISTRY")
        ),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
    let staged = frontend_image(&app.staging).await;
    let registry = env.var("BERTH_LOCAL_REGISTRY");
    let digest = images::digest(env, &format!("{registry}/workbench/frontend:{chosen}"));
    assert_eq!(
        staged,
        format!("{registry}/workbench/frontend:{chosen}@{digest}"),
        "staging runs the chosen commit, pinned by digest"
    );

    let status = app.berth(&["status", "staging"]);
    let shown = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        shown.contains(&chosen[..12]),
        "status shows the SHA, not the digest:\n{shown}"
    );
    assert!(!shown.contains(&digest[7..19]), "{shown}");

    // Run again: staging already runs it, nothing is deployed.
    let again = app.berth(&["update-staging-to-latest-passing-master"]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert!(stderr(&again).contains("staging already runs"));
    assert_eq!(history(&app, "staging").len(), 1);
    let forced = app.berth(&["update-staging-to-latest-passing-master", "--force"]);
    assert_eq!(code(&forced), 0, "{}", stderr(&forced));
    assert_eq!(history(&app, "staging").len(), 2, "--force redeploys");

    // Production gets exactly staging's images.
    let promoted = app.berth(&["update-production-to-staging"]);
    assert_eq!(code(&promoted), 0, "{}", stderr(&promoted));
    assert_eq!(frontend_image(&app.production).await, staged);

    // A newer green commit reaches staging, then production.
    let newer = new_sha();
    push_app_images(env, &newer);
    let mut next = scenario(&[
        (&newer, green("Newer and green")),
        (&pending, green("Now green, but no images")),
    ]);
    next["repos"]["example/workbench"]["commits"][&pending]["check_runs"] =
        json!([{"name": "ci", "conclusion": "success"}]);
    app.github.set(&next);
    let output = app.berth(&["update-staging-to-latest-passing-master"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let output = app.berth(&["promote", "staging", "production"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(frontend_image(&app.production).await.contains(&newer));

    // Rollback brings production's previous release back, as a new release.
    let output = app.berth(&["rollback", "production"]);
    let err = stderr(&output);
    assert_eq!(code(&output), 0, "{err}");
    assert!(err.contains("database schema was NOT rolled back"), "{err}");
    assert!(err.contains("-migrate-"), "names the migration Job: {err}");
    assert_eq!(frontend_image(&app.production).await, staged);

    let production = history(&app, "production");
    let summary: Vec<(u64, &str, &str)> = production
        .iter()
        .map(|r| {
            (
                r["number"].as_u64().unwrap(),
                r["sha"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (3, chosen.as_str(), "succeeded"),
            (2, newer.as_str(), "succeeded"),
            (1, chosen.as_str(), "succeeded"),
        ],
        "newest first"
    );
    assert_eq!(production[0]["rolled_back_to"], 1);
    assert_eq!(production[1]["promoted_from"]["environment"], "staging");
    assert_eq!(
        production[1]["promoted_from"]["release"], 3,
        "staging: 1, 2 (--force), 3"
    );
}

#[tokio::test]
async fn the_commit_list_and_check_runs_are_read_past_the_first_page() {
    let env = local_env();
    let chosen = new_sha();
    push_app_images(env, &chosen);
    // 120 newer commits whose CI failed, then one with 130 green check runs.
    let failed: Vec<String> = (0..120).map(|_| new_sha()).collect();
    let mut commits: Vec<(&str, Value)> = failed
        .iter()
        .map(|sha| {
            (
                sha.as_str(),
                commit(
                    "red",
                    json!([{"name": "ci", "conclusion": "failure"}]),
                    json!([]),
                ),
            )
        })
        .collect();
    let runs: Vec<Value> = (0..130)
        .map(|i| json!({"name": format!("shard-{i}"), "conclusion": "success"}))
        .collect();
    commits.push((&chosen, commit("green", json!(runs), json!([]))));
    let app = App::new("pages", &scenario(&commits));
    let config = app.dir.join("berth.yaml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "branch: master }",
        "branch: master, required_checks: [shard-0, shard-129], depth: 200 }",
    );
    std::fs::write(&config, text).unwrap();

    let output = app.berth(&[
        "update-staging-to-latest-passing-master",
        "--dry-run",
        "--output",
        "json",
    ]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(report(&output)["sha"], chosen);
    let requests = app.github.requests().await;
    let pages = |suffix: &str| -> Vec<String> {
        requests
            .iter()
            .filter(|r| r["path"].as_str().unwrap().ends_with(suffix))
            .map(|r| r["query"]["page"].as_str().unwrap_or("1").to_string())
            .collect()
    };
    assert!(
        pages("/commits").contains(&"2".to_string()),
        "the commit list's second page was read: {requests:?}"
    );
    let chosen_runs = format!("/commits/{chosen}/check-runs");
    assert_eq!(pages(&chosen_runs), ["1", "2"], "both pages of check runs");
}

#[tokio::test]
async fn no_qualifying_commit_is_refused_and_bad_credentials_are_input_errors() {
    let red = new_sha();
    let app = App::new(
        "none",
        &scenario(&[(
            &red,
            commit(
                "red",
                json!([{"name": "ci", "conclusion": "timed_out"}]),
                json!([]),
            ),
        )]),
    );
    let output = app.berth(&["update-staging-to-latest-passing-master"]);
    assert_eq!(code(&output), 5, "{}", stderr(&output));
    assert!(stderr(&output).contains(&format!("{}: check 'ci' ended timed_out", &red[..12])));

    let bad = app
        .command(&["update-staging-to-latest-passing-master"])
        .env("GITHUB_TOKEN", "wrong-token")
        .output()
        .unwrap();
    assert_eq!(code(&bad), 2, "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("refused the token (Bad credentials)"),
        "{}",
        stderr(&bad)
    );
    // Nothing was deployed by either.
    let client = local_env().kube().await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    assert!(namespaces.get_opt(&app.staging).await.unwrap().is_none());
}

#[tokio::test]
async fn rate_limited_requests_are_waited_out_and_retried() {
    let env = local_env();
    let sha = new_sha();
    push_app_images(env, &sha);
    for mode in ["retry-after", "reset"] {
        let mut scenario = scenario(&[(&sha, green("green"))]);
        scenario["rate_limit"] = json!({"requests": 1, "mode": mode});
        let app = App::new("ratelimit", &scenario);
        let output = app.berth(&["update-staging-to-latest-passing-master", "--dry-run"]);
        let err = stderr(&output);
        assert_eq!(code(&output), 0, "{mode}: {err}");
        assert!(err.contains("GitHub rate limit reached"), "{mode}: {err}");
        let requests = app.github.requests().await;
        let first = &requests[0];
        assert!(
            [403, 429].contains(&first["status"].as_u64().unwrap()),
            "{requests:?}"
        );
        assert_eq!(requests[1]["path"], first["path"], "the same request again");
        assert_eq!(requests[1]["status"], 200);
    }
}

#[tokio::test]
async fn promotion_is_refused_when_staging_failed_drifted_or_is_too_young() {
    let env = local_env();
    let good = new_sha();
    push_app_images(env, &good);
    let app = App::new("refuse", &scenario(&[]));
    let deployed = app.berth(&["advanced-deploy", "staging", &good]);
    assert_eq!(code(&deployed), 0, "{}", stderr(&deployed));

    // A deploy (here: someone holding the lock) is running on staging.
    let held = app.berth(&["lock", "staging", "acquire"]);
    assert_eq!(code(&held), 0, "{}", stderr(&held));
    let busy = app.berth(&["update-production-to-staging"]);
    assert_eq!(code(&busy), 5, "{}", stderr(&busy));
    assert!(stderr(&busy).contains("mid-deploy"), "{}", stderr(&busy));
    let released = app.berth(&["lock", "staging", "release"]);
    assert_eq!(code(&released), 0, "{}", stderr(&released));

    let young = app.berth(&["promote", "staging", "production", "--min-age", "1h"]);
    assert_eq!(code(&young), 5, "{}", stderr(&young));
    assert!(stderr(&young).contains("less than --min-age 1h"));

    // Someone redeploys staging's frontend by hand: it drifted.
    let client = env.kube().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &app.staging);
    let hotfix = format!(
        "{}/workbench/frontend:hotfix1",
        env.var("BERTH_LOCAL_REGISTRY")
    );
    deployments
        .patch(
            "frontend",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "frontend", "image": hotfix}
            ]}}}})),
        )
        .await
        .unwrap();
    let drifted = app.berth(&["update-production-to-staging"]);
    let err = stderr(&drifted);
    assert_eq!(code(&drifted), 5, "{err}");
    assert!(err.contains("drifted"), "{err}");
    assert!(err.contains("hotfix1"), "{err}");

    // A failed deploy of staging.
    let bad = format!("badbad{}", &new_sha()[6..]);
    let failed = app.berth(&["advanced-deploy", "staging", &bad, "--timeout", "60s"]);
    assert_eq!(code(&failed), 1, "{}", stderr(&failed));
    let refused = app.berth(&["update-production-to-staging"]);
    let err = stderr(&refused);
    assert_eq!(code(&refused), 5, "{err}");
    assert!(err.contains("failed"), "{err}");

    // Production was never touched.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    assert!(namespaces.get_opt(&app.production).await.unwrap().is_none());
    let production: Api<Deployment> = Api::namespaced(client, &app.production);
    assert!(
        production
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn rollback_re_applies_the_recorded_release_after_the_overlay_changed() {
    let env = local_env();
    let (first, second) = (new_sha(), new_sha());
    let app = App::new("rollback", &scenario(&[]));
    for sha in [&first, &second] {
        let output = app.berth(&["advanced-deploy", "staging", sha]);
        assert_eq!(code(&output), 0, "{}", stderr(&output));
    }
    // The repo moved on: the staging overlay no longer renders at all.
    std::fs::write(
        app.dir.join("overlay/staging/kustomization.yaml"),
        "resources: [does-not-exist.yaml]\n",
    )
    .unwrap();

    let output = app.berth(&["rollback", "staging", "--output", "json"]);
    let err = stderr(&output);
    assert_eq!(code(&output), 0, "{err}");
    assert_eq!(report(&output)["release"], 3);
    let registry = env.var("BERTH_LOCAL_REGISTRY");
    assert_eq!(
        frontend_image(&app.staging).await,
        format!("{registry}/workbench/frontend:{first}")
    );
    let releases = history(&app, "staging");
    assert_eq!(releases[0]["sha"], first.as_str());
    assert_eq!(releases[0]["rolled_back_to"], 1);

    // `--to` a release that does not exist is bad input, and changes nothing.
    let output = app.berth(&["rollback", "staging", "--to", "99"]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert!(stderr(&output).contains("no release 99"));
    assert_eq!(history(&app, "staging").len(), 3);
}
