//! A throw-away helm chart app for one test: a directory of its own for
//! berth.yaml (and whatever else the test writes there), one environment
//! `test` in a namespace of the test's own, and berth run with the local
//! environment's helm. Dropping it deletes the namespace and the directory,
//! also when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{Cleanup, berth_command, code, local_env, report, stderr, unique_name};

/// A chart app in a namespace and directory of its own.
pub struct ChartApp {
    /// The directory holding berth.yaml; berth runs in it.
    pub dir: PathBuf,
    /// The environment's namespace (berth creates it on the first deploy).
    pub namespace: String,
    /// Deleted last: the namespace, then the directory.
    _cleanup: [Cleanup; 2],
}

impl ChartApp {
    /// An empty directory and a fresh namespace, both named after `prefix`;
    /// no berth.yaml yet (see [`ChartApp::configure`]).
    pub fn new(prefix: &str) -> ChartApp {
        let namespace = unique_name(prefix);
        let dir = std::env::temp_dir().join(&namespace);
        let cleanup = [
            Cleanup::Namespace(namespace.clone()),
            Cleanup::Dir(dir.clone()),
        ];
        std::fs::create_dir_all(&dir).unwrap();
        ChartApp {
            dir,
            namespace,
            _cleanup: cleanup,
        }
    }

    /// Write berth.yaml: `head` (the `app:` and `images:` lines), then the
    /// environment `test` in this app's namespace with the lines of
    /// `environment` (indented by 4: context, chart, rollout...).
    pub fn configure(&self, head: &str, environment: &str) {
        self.write_config("berth.yaml", head, environment);
    }

    /// Write the config file `name` as [`ChartApp::configure`] does; its path.
    pub fn write_config(&self, name: &str, head: &str, environment: &str) -> PathBuf {
        let config = format!(
            "{head}environments:\n  test:\n    namespace: {}\n{environment}",
            self.namespace
        );
        let path = self.dir.join(name);
        std::fs::write(&path, config).unwrap();
        path
    }

    /// berth with `args` on the config file `config`, using the local helm.
    pub fn command_with(&self, config: &Path, args: &[&str]) -> Command {
        let mut command = berth_command(config, &self.dir, args);
        command.env("BERTH_HELM", local_env().var("BERTH_LOCAL_HELM"));
        command
    }

    /// berth with `args` on this app's berth.yaml, using the local helm.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_with(&self.dir.join("berth.yaml"), args)
    }

    /// Run berth with `args`; what it printed and its exit code.
    pub fn berth(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Deploy `sha` with `flags` and `--output json`, asserting the exit code.
    pub fn deploy_with(&self, sha: &str, flags: &[&str], expected_code: i32) -> Output {
        let mut args = vec!["deploy", "test", sha, "--output", "json"];
        args.extend(flags);
        let out = self.berth(&args);
        assert_eq!(code(&out), expected_code, "{}", stderr(&out));
        out
    }

    /// Deploy `sha` and return the JSON report, asserting the exit code.
    pub fn deploy(&self, sha: &str, expected_code: i32) -> serde_json::Value {
        report(&self.deploy_with(sha, &[], expected_code))
    }
}

/// Copy the directory `from` to `to` (which must not exist).
pub fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-r")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}
