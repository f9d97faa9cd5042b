//! Abbreviated SHAs are expanded to the full SHA before a deploy or an
//! `assets push` does anything (from the deploy repository's git, the
//! registry's tags, or GitHub), an
//! ambiguous one is refused naming its candidates; and a deploy
//! interrupted while it waits is recorded `interrupted after apply`, which
//! `status` shows without drift.

mod support;

use std::process::Command;

use support::app::{Migration, TestApp};
use support::github::{FakeGitHub, TOKEN, new_sha, push_app_images};
use support::*;

/// The variable the harness sets so that the suite's made-up SHAs are taken as given.
const AS_GIVEN: &str = "BERTH_SHA_AS_GIVEN";

/// `berth ARGS` for `app` with abbreviations looked up, as outside the suite.
fn looked_up(app: &TestApp, args: &[&str]) -> Command {
    let mut command = app.command(args);
    command.env_remove(AS_GIVEN);
    command
}

/// The releases as `history --output json` lists them, newest first.
fn history(app: &TestApp) -> Vec<serde_json::Value> {
    app.history()
}

#[tokio::test]
async fn a_7_character_prefix_deploys_and_records_the_full_sha_from_the_registry() {
    let env = local_env();
    let app = TestApp::new("sha-registry", Migration::Deleted);
    let sha = new_sha();
    push_app_images(env, &sha);
    let out = looked_up(&app, &["deploy", "test", &sha[..7], "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(report(&out)["sha"], sha.as_str());
    let releases = history(&app);
    assert_eq!(releases[0]["sha"], sha.as_str());
    let images = releases[0]["images"].as_array().unwrap();
    assert!(
        images
            .iter()
            .all(|i| i["image"].as_str().unwrap().ends_with(&format!(":{sha}"))),
        "{images:?}"
    );
    // The human summary shows 12 characters.
    let diff = looked_up(&app, &["diff", "test", &sha[..9]])
        .output()
        .unwrap();
    assert_eq!(code(&diff), 0, "{}", stderr(&diff));
    let said = String::from_utf8_lossy(&diff.stdout);
    assert!(said.contains(&format!("at {})", &sha[..12])), "{said}");
}

#[tokio::test]
async fn an_ambiguous_prefix_is_refused_with_exit_2_naming_both_commits() {
    let env = local_env();
    let app = TestApp::new("sha-ambiguous", Migration::Deleted);
    let first = new_sha();
    let second = format!("{}{}", &first[..10], &new_sha()[10..]);
    assert_ne!(first, second);
    push_app_images(env, &first);
    let registry = env.var("BERTH_LOCAL_REGISTRY");
    support::images::copy(
        env,
        &format!("{registry}/workbench/frontend:{first}"),
        &format!("{registry}/workbench/frontend:{second}"),
    );
    for args in [
        &["deploy", "test", &first[..10]][..],
        &["diff", "test", &first[..8]],
    ] {
        let out = looked_up(&app, args).output().unwrap();
        let said = stderr(&out);
        assert_eq!(code(&out), 2, "{args:?}: {said}");
        assert!(said.contains(&first) && said.contains(&second), "{said}");
        assert!(said.contains("ambiguous"), "{said}");
    }
    // Nothing changed: berth did not even create the namespace.
    let client = env.kube().await;
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
    assert!(namespaces.get_opt(&app.namespace).await.unwrap().is_none());
    // More characters choose one.
    let out = looked_up(&app, &["deploy", "test", &first[..11], "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[tokio::test]
async fn a_prefix_no_place_knows_is_refused_saying_where_berth_looked() {
    let app = TestApp::new("sha-unknown", Migration::Deleted);
    let unknown = new_sha();
    let out = looked_up(&app, &["deploy", "test", &unknown[..7]])
        .output()
        .unwrap();
    let said = stderr(&out);
    assert_eq!(code(&out), 2, "{said}");
    for part in [
        "no commit starting with",
        &unknown[..7],
        "the registry's tags of 127.0.0.1:25000/workbench/frontend has none",
        "not the git repository at",
        "not GitHub (berth.yaml has no `github.repo`)",
    ] {
        assert!(said.contains(part), "expected {part:?} in {said}");
    }
}

#[tokio::test]
async fn a_prefix_is_expanded_by_github_when_the_registry_has_no_such_tag() {
    let app = TestApp::new("sha-github", Migration::Deleted);
    let sha = new_sha();
    let github = FakeGitHub::start(&serde_json::json!({
        "token": TOKEN,
        "repos": {"example/workbench": {"branches": {"master": [sha]}}},
    }));
    app.write_config(&format!(
        "github:\n  repo: example/workbench\n{}",
        app.base_config
    ));
    let out = looked_up(&app, &["deploy", "test", &sha[..7], "--output", "json"])
        .envs(github.vars(TOKEN))
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(history(&app)[0]["sha"], sha.as_str());
    let asked = github.requests().await;
    assert!(
        asked
            .iter()
            .any(|r| r["path"] == format!("/repos/example/workbench/commits/{}", &sha[..7])),
        "{asked:?}"
    );
}

/// `git ARGS` in `dir`, which must succeed; its trimmed stdout.
/// `assets push` expands a prefix as deploy does: the manifest is kept
/// under the full SHA, never the prefix.
#[tokio::test]
async fn assets_push_expands_a_prefix_and_keeps_the_manifest_under_the_full_sha() {
    let env = local_env();
    let app = TestApp::new("sha-assets", Migration::Deleted);
    let (bucket, _cleanup) = support::backups::bucket("sha-assets").await;
    let build = app.dir.join("build");
    std::fs::create_dir_all(&build).unwrap();
    std::fs::write(build.join("site.css"), "body { color: teal }").unwrap();
    app.configure_assets(&bucket, "");
    let sha = new_sha();
    push_app_images(env, &sha);
    let out = looked_up(&app, &["assets", "push", "test", &sha[..7]])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let keys = support::backups::keys(&bucket).await;
    assert!(
        keys.contains(&format!("static/.berth/manifests/{sha}.json")),
        "the manifest under the full SHA: {keys:?}"
    );
    assert!(
        !keys.contains(&format!("static/.berth/manifests/{}.json", &sha[..7])),
        "never under the prefix: {keys:?}"
    );
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Ada", "-c", "user.email=ada@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn a_prefix_is_expanded_by_the_deploy_repository_when_it_is_the_apps() {
    let app = TestApp::new("sha-git", Migration::Deleted);
    app.write_config(&format!(
        "github:\n  repo: example/workbench\n{}",
        app.base_config
    ));
    git(&app.dir, &["init", "--quiet"]);
    git(
        &app.dir,
        &[
            "remote",
            "add",
            "origin",
            "git@github.com:example/workbench.git",
        ],
    );
    git(&app.dir, &["add", "-A"]);
    git(&app.dir, &["commit", "--quiet", "-m", "the app"]);
    let sha = git(&app.dir, &["rev-parse", "HEAD"]);
    let out = looked_up(&app, &["deploy", "test", &sha[..7]])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("is commit {sha} (from the git repository at")),
        "{}",
        stderr(&out)
    );
    assert_eq!(history(&app)[0]["sha"], sha.as_str());
}

#[tokio::test]
async fn ctrl_c_while_waiting_is_recorded_interrupted_after_apply_and_status_shows_no_drift() {
    let app = TestApp::new("sha-wait-int", Migration::Deleted);
    app.ok(&["deploy", "test", "1a2b3c4"]);
    app.strand_pods();
    let mut deploy = spawn_captured(&mut app.command(&["deploy", "test", "2b3c4d5"]));
    app.until_release_step(&mut deploy, 2, "wait").await;
    let out = interrupt(deploy);
    let said = stderr(&out);
    assert_eq!(code(&out), 130, "{said}");
    for part in [
        "release 2 was interrupted after apply",
        "run `berth deploy test 2b3c4d5` again to finish",
        "or `berth rollback test` to go back",
    ] {
        assert!(said.contains(part), "expected {part:?} in {said}");
    }

    let releases = history(&app);
    assert_eq!(
        (
            &releases[0]["status"],
            &releases[0]["applied"],
            &releases[0]["step"]
        ),
        (&"interrupted".into(), &true.into(), &"wait".into())
    );
    let table = app.ok(&["history", "test"]);
    let table = String::from_utf8_lossy(&table.stdout);
    let row = table.lines().nth(1).unwrap();
    assert!(
        row.trim_start().starts_with("2 ") && row.contains("interrupted after apply"),
        "{table}"
    );

    let status = app.ok(&["status", "test"]);
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        shown.contains("last release: 2 2b3c4d5 interrupted after apply at step wait"),
        "{shown}"
    );
    assert!(!shown.contains("drift"), "{shown}");
    let json = app.ok(&["status", "test", "--output", "json"]);
    let event: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&json.stdout)
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(event["drift"], serde_json::json!([]), "{event}");
    assert_eq!(event["last_release"]["status"], "interrupted");
    assert_eq!(event["last_release"]["applied"], true);
}
