//! A throw-away copy of the kwok-backed app for one test: berth.yaml with one
//! environment `test` in a namespace of the test's own, rendered from an
//! overlay that wraps the fixture's staging overlay (tests/fixtures/kwok-app). Dropping it deletes the
//! namespace and the directory, also when the test fails.

use std::path::PathBuf;
use std::process::{Command, Output};

use super::{
    Cleanup, berth_command, code, example_config, kwok_app, relative, repo_root, stderr,
    unique_name,
};

/// What the wrapping overlay does to the fixture's migration Job.
#[derive(Clone, Copy)]
pub enum Migration {
    /// Kept as it is: deploys run it.
    Kept,
    /// Deleted: deploys have no migration step, so the rollout itself is tested.
    Deleted,
    /// Suspended: it never starts, so a deploy stays in its migration step,
    /// holding the lock, until stopped.
    Held,
}

/// The kwok-backed app in a namespace and directory of its own.
pub struct TestApp {
    /// The directory holding berth.yaml and `overlay/`.
    pub dir: PathBuf,
    /// The environment's namespace (berth creates it on the first deploy).
    pub namespace: String,
    /// berth.yaml as first written; [`TestApp::configure`] appends to it.
    pub base_config: String,
    /// Deleted last: the namespace, then the directory.
    _cleanup: [Cleanup; 2],
}

impl TestApp {
    /// The kwok-backed app with the migration as `migration` says.
    pub fn new(prefix: &str, migration: Migration) -> TestApp {
        TestApp::with_resources(prefix, migration, &[])
    }

    /// The kwok-backed app plus `resources` (file name, YAML) in its overlay.
    pub fn with_resources(
        prefix: &str,
        migration: Migration,
        resources: &[(&str, &str)],
    ) -> TestApp {
        let namespace = unique_name(prefix);
        let dir = std::env::temp_dir().join(&namespace);
        let cleanup = [
            Cleanup::Namespace(namespace.clone()),
            Cleanup::Dir(dir.clone()),
        ];
        let overlay = dir.join("overlay");
        std::fs::create_dir_all(&overlay).unwrap();
        let staging = kwok_app().join("overlays/staging");
        let mut listed = vec![relative(&overlay, &staging).display().to_string()];
        for (name, yaml) in resources {
            std::fs::write(overlay.join(name), yaml).unwrap();
            listed.push((*name).to_owned());
        }
        let mut kustomization = format!("resources: [{}]\n", listed.join(", "));
        let patch = match migration {
            Migration::Kept => None,
            Migration::Deleted => Some("$patch: delete"),
            Migration::Held => Some("spec: {suspend: true}"),
        };
        if let Some(patch) = patch {
            kustomization.push_str(&format!(
                "patches:\n  - patch: |-\n      {patch}\n      apiVersion: batch/v1\n      kind: Job\n      metadata: {{name: migrate}}\n"
            ));
        }
        std::fs::write(overlay.join("kustomization.yaml"), kustomization).unwrap();
        let base_config = example_config(&namespace, &overlay);
        std::fs::write(dir.join("berth.yaml"), &base_config).unwrap();
        TestApp {
            dir,
            namespace,
            base_config,
            _cleanup: cleanup,
        }
    }

    /// The overlay berth.yaml points at.
    pub fn overlay(&self) -> PathBuf {
        self.dir.join("overlay")
    }

    /// Give every Deployment a node selector no node matches: its new pods
    /// stay Pending, unschedulable, and the rollout waits (for 5 minutes,
    /// `unschedulable_after`'s default).
    pub fn strand_pods(&self) {
        let path = self.overlay().join("kustomization.yaml");
        let mut text = std::fs::read_to_string(&path).unwrap();
        if !text.contains("patches:") {
            text.push_str("patches:\n");
        }
        text.push_str(
            "  - target: {kind: Deployment}\n    patch: |-\n      apiVersion: apps/v1\n      kind: Deployment\n      metadata: {name: any}\n      spec: {template: {spec: {nodeSelector: {berth.dev/nowhere: \"true\"}}}}\n",
        );
        std::fs::write(path, text).unwrap();
    }

    /// Rewrite berth.yaml with `keys` added to the environment (indented by 4).
    pub fn configure(&self, keys: &str) {
        self.write_config(&format!("{}{keys}", self.base_config));
    }

    /// Rewrite berth.yaml so that the deploy pushes `dir/build` to `bucket`
    /// under `static/`, with `extra` keys of `assets:` (indented by 6).
    pub fn configure_assets(&self, bucket: &str, extra: &str) {
        self.configure(&format!(
            "    assets:\n      from: {{ dir: {} }}\n      bucket: {bucket}\n      prefix: static/\n{extra}",
            self.dir.join("build").display()
        ));
    }

    /// Rewrite berth.yaml as `text`.
    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config(), text).unwrap();
    }

    /// berth.yaml's path.
    pub fn config(&self) -> PathBuf {
        self.dir.join("berth.yaml")
    }

    /// `berth --config berth.yaml ARGS`, run from the repository root.
    pub fn command(&self, args: &[&str]) -> Command {
        berth_command(&self.config(), &repo_root(), args)
    }

    /// Run berth to its end.
    pub fn berth(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Run berth and require exit 0.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.berth(args);
        assert_eq!(code(&out), 0, "berth {args:?}: {}", stderr(&out));
        out
    }

    /// The `plan` event of `advanced-deploy test SHA --dry-run --output json`.
    pub fn plan(&self, sha: &str) -> serde_json::Value {
        let out = self.ok(&[
            "advanced-deploy",
            "test",
            sha,
            "--dry-run",
            "--output",
            "json",
        ]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .find(|event| event["event"] == "plan")
            .expect("a plan event")
    }

    /// Wait (90 s at most) until release `number`'s record says `step`;
    /// panics if `deploy`, the berth deploying it, ends first.
    pub async fn until_release_step(
        &self,
        deploy: &mut std::process::Child,
        number: u64,
        step: &str,
    ) {
        super::poll(
            std::time::Duration::from_secs(90),
            &format!("release {number}'s {step} step"),
            async || {
                if let Some(ended) = deploy.try_wait().unwrap() {
                    panic!("the deploy ended ({ended}) before its {step} step");
                }
                let newest = self.history().into_iter().next()?;
                (newest["number"] == number && newest["step"] == step).then_some(())
            },
        )
        .await;
    }

    /// The releases `berth history test --output json` lists, newest first.
    pub fn history(&self) -> Vec<serde_json::Value> {
        let out = self.ok(&["history", "test", "--output", "json"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .filter(|event| event["event"] == "release")
            .collect()
    }
}
