//! berth.yaml as commands read it, through the built binary on the local
//! environment: one environment's problems never block another's commands;
//! berth.yaml is found from any subdirectory of the deploy repo; an
//! `images:` entry that matches no container is refused before anything
//! changes.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use support::app::{Migration, TestApp};
use support::{assert_refused, code, local_env, stderr};

/// A `staging` environment whose overlay is mistyped, appended to berth.yaml.
const BROKEN_STAGING: &str =
    "  staging:\n    namespace: scope-staging\n    overlay: overlays/stagng\n";

/// The one warning every command touching only `test` prints.
fn assert_one_warning(args: &[&str], output: &Output) {
    let text = stderr(output);
    assert_eq!(code(output), 0, "berth {args:?}: {text}");
    let warnings: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("environment `staging` has a problem"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "berth {args:?}: one warning line in:\n{text}"
    );
    for part in [
        "warning: ",
        "berth.yaml: environment `staging`",
        "environments.staging.overlay: overlays/stagng is not a directory",
        "config validate` lists it",
    ] {
        assert!(
            warnings[0].contains(part),
            "berth {args:?}: {part:?} in {}",
            warnings[0]
        );
    }
}

#[test]
fn a_broken_staging_does_not_block_the_other_environment() {
    let app = TestApp::new("scope-broken", Migration::Deleted);
    app.ok(&["advanced-deploy", "test", "1a2b3c4"]);
    app.write_config(&format!("{}{BROKEN_STAGING}", app.base_config));
    for args in [
        &["advanced-deploy", "test", "2b3c4d5"][..],
        &["status", "test"],
        &["history", "test"],
        &["lock", "test", "status"],
        &["maintenance", "test", "status"],
        &["rollback", "test"],
    ] {
        assert_one_warning(args, &app.berth(args));
    }
    // The environment touched is checked, and `config validate` checks all.
    assert_refused(
        &app.berth(&["advanced-deploy", "staging", "1a2b3c4"]),
        &[
            "environments.staging.overlay",
            "overlays/stagng is not a directory",
        ],
    );
    assert_refused(
        &app.berth(&["config", "validate"]),
        &[
            "environments.staging.overlay",
            "overlays/stagng is not a directory",
        ],
    );
}

/// berth without `--config` or `BERTH_CONFIG`, run in `dir`.
fn berth_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .envs(local_env().vars())
        .env_remove("BERTH_CONFIG")
        .env_remove("GITHUB_ACTIONS")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn berth_yaml_is_found_from_a_subdirectory_of_the_repository() {
    let app = TestApp::new("scope-find", Migration::Deleted);
    let relative = app
        .base_config
        .replace(&app.overlay().display().to_string(), "overlay");
    app.write_config(&relative);
    std::fs::create_dir_all(app.dir.join(".git")).unwrap();
    let deep = app.dir.join("overlay/deeper");
    std::fs::create_dir_all(&deep).unwrap();
    let found = app.dir.join("berth.yaml").display().to_string();
    let out = berth_in(&deep, &["-v", "config", "validate"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{found} is valid")),
        "{out:?}"
    );
    assert!(
        stderr(&out).contains(&format!("configuration: {found}")),
        "{}",
        stderr(&out)
    );
    // Overlays stay relative to berth.yaml's directory.
    let out = berth_in(
        &deep,
        &[
            "advanced-deploy",
            "test",
            "1a2b3c4d5e6f708192a3b4c5d6e7f80912a3b4c5",
            "--dry-run",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // Errors name the file found.
    app.write_config(&relative.replace("app: wb", "app: Wb_"));
    assert_refused(
        &berth_in(&deep, &["config", "validate"]),
        &[&format!("{found}: app: \"Wb_\" is not a valid name")],
    );
}

#[test]
fn no_berth_yaml_up_to_the_repository_root_says_where_berth_looked() {
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(repo.path().join(".git")).unwrap();
    let sub = repo.path().join("src/app");
    std::fs::create_dir_all(&sub).unwrap();
    let out = berth_in(&sub, &["status", "test"]);
    assert_refused(
        &out,
        &[
            &format!("no berth.yaml found in {}", sub.display()),
            &format!("up to {} (the repository's root)", repo.path().display()),
            "--config",
        ],
    );
    // A berth.yaml above the repository's root is not used.
    let outer = tempfile::tempdir().unwrap();
    std::fs::write(outer.path().join("berth.yaml"), "app: outer\n").unwrap();
    let inner = outer.path().join("inner");
    std::fs::create_dir_all(inner.join(".git")).unwrap();
    assert_refused(
        &berth_in(&inner, &["status", "test"]),
        &["no berth.yaml found in"],
    );
}

#[tokio::test]
async fn an_images_typo_is_refused_before_anything_changes() {
    let app = TestApp::new("scope-typo", Migration::Deleted);
    app.write_config(
        &app.base_config
            .replace("workbench/frontend\n", "workbench/frontnd\n"),
    );
    let parts = [
        "images[0]: \"127.0.0.1:25000/workbench/frontnd\" matches no container",
        "the closest image is 127.0.0.1:25000/workbench/frontend:latest (Deployment/frontend",
    ];
    assert_refused(&app.berth(&["advanced-deploy", "test", "1a2b3c4"]), &parts);
    assert_refused(&app.berth(&["diff", "test", "1a2b3c4"]), &parts);
    assert_refused(&app.berth(&["config", "validate"]), &parts);
    // Nothing changed: the namespace a first deploy creates does not exist,
    // so neither does a Deployment or a release record.
    let namespaces: Api<Namespace> = Api::all(local_env().kube().await);
    assert!(namespaces.get_opt(&app.namespace).await.unwrap().is_none());
}
