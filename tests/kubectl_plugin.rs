//! `kubectl berth`: the berth binary on PATH as `kubectl-berth` (a symlink,
//! as krew installs it), run by the local kubectl against the local cluster.
//! Help, usage errors and berth's own hints then name `kubectl berth`.

mod support;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use support::app::{Migration, TestApp};
use support::*;

/// A directory holding only `kubectl-berth` → the berth binary under test.
struct PluginDir {
    dir: PathBuf,
    _cleanup: Cleanup,
}

impl PluginDir {
    fn new() -> PluginDir {
        let dir = std::env::temp_dir().join(unique_name("kubectl-plugin"));
        std::fs::create_dir_all(&dir).unwrap();
        symlink(env!("CARGO_BIN_EXE_berth"), dir.join("kubectl-berth")).unwrap();
        PluginDir {
            _cleanup: Cleanup::Dir(dir.clone()),
            dir,
        }
    }

    /// `kubectl ARGS` with the plugin directory first on PATH, the local
    /// environment's variables, and (through kubectl) berth's output captured.
    fn kubectl(&self, config: &Path, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        capture::captured(Path::new("kubectl"))
            .envs(local_env().vars())
            .env("PATH", path)
            .env("BERTH_CONFIG", config)
            .env_remove("GITHUB_ACTIONS")
            .args(args)
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The kwok app deployed to an environment named `staging` in a namespace
/// of the test's own.
fn staging_app() -> TestApp {
    let app = TestApp::new("kubectl-plugin", Migration::Deleted);
    app.write_config(&app.base_config.replace("\n  test:\n", "\n  staging:\n"));
    app.ok(&["advanced-deploy", "staging", "1a2b3c4"]);
    app
}

#[test]
fn kubectl_finds_the_plugin_and_runs_status() {
    let app = staging_app();
    let plugin = PluginDir::new();

    let list = plugin.kubectl(&app.config(), &["plugin", "list"]);
    let listed = plugin.dir.join("kubectl-berth");
    assert!(
        stdout(&list).contains(&listed.display().to_string()),
        "kubectl plugin list: {}{}",
        stdout(&list),
        stderr(&list)
    );

    let status = plugin.kubectl(&app.config(), &["berth", "status", "staging"]);
    assert_eq!(
        code(&status),
        0,
        "kubectl berth status: {}",
        stderr(&status)
    );
    let text = stdout(&status);
    assert!(
        text.contains(&format!("staging (namespace {})", app.namespace)),
        "{text}"
    );
    assert!(text.contains("Deployment/frontend"), "{text}");
    assert!(text.contains("1a2b3c4"), "{text}");
}

#[test]
fn help_usage_errors_and_hints_say_kubectl_berth() {
    let app = staging_app();
    let plugin = PluginDir::new();

    let help = plugin.kubectl(&app.config(), &["berth", "--help"]);
    assert_eq!(code(&help), 0, "{}", stderr(&help));
    assert!(
        stdout(&help).contains("Usage: kubectl berth [OPTIONS] <COMMAND>"),
        "{}",
        stdout(&help)
    );

    let usage = plugin.kubectl(&app.config(), &["berth", "statu", "staging"]);
    assert_eq!(code(&usage), 2, "{}", stderr(&usage));
    assert!(
        stderr(&usage).contains("Usage: kubectl berth [OPTIONS] <COMMAND>"),
        "{}",
        stderr(&usage)
    );

    // A berth error whose fix names a berth command.
    let hint = plugin.kubectl(
        &app.config(),
        &["berth", "rollback", "staging", "--to", "99"],
    );
    assert_eq!(code(&hint), 2, "{}", stderr(&hint));
    assert!(
        stderr(&hint).contains("`kubectl berth history staging` lists the releases kept"),
        "{}",
        stderr(&hint)
    );

    // The same binary under its own name still says `berth`.
    let own = app.berth(&["rollback", "staging", "--to", "99"]);
    assert_eq!(code(&own), 2, "{}", stderr(&own));
    assert!(
        stderr(&own).contains("`berth history staging`"),
        "{}",
        stderr(&own)
    );
}
