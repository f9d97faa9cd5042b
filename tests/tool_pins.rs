//! The Go-built tools are pinned by committed wrapper modules
//! (`cluster-setup/local/tools/<tool>/go.mod`, `go.sum`): `pin-tools --check`
//! catches a wrapper that disagrees with `versions.env`, and `build-tools`
//! refuses a module that differs from `go.sum` or is not in the pinned graph,
//! instead of resolving whatever the module proxy serves today.
//!
//! Each test works on a copy of `cluster-setup/local` with its own cache, so
//! the real wrappers and the shared cache are never touched.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::repo_root;

/// A copy of the files pin-tools and build-tools read, in a temporary
/// directory laid out like the repository.
struct Copy {
    dir: tempfile::TempDir,
}

impl Copy {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let from = repo_root().join("cluster-setup/local");
        let to = dir.path().join("cluster-setup/local");
        fs::create_dir_all(&to).unwrap();
        for name in [
            "versions.env",
            "tools",
            "pin-tools",
            "build-tools",
            "patches",
        ] {
            let status = Command::new("cp")
                .arg("-r")
                .arg(from.join(name))
                .arg(&to)
                .status()
                .unwrap();
            assert!(status.success(), "copy {name}");
        }
        Copy { dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join("cluster-setup/local").join(relative)
    }

    /// Replace `from` with `to` in a copied file, which must contain it.
    fn edit(&self, relative: &str, from: &str, to: &str) {
        let path = self.path(relative);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{relative} contains {from:?}");
        fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }

    fn run(&self, script: &str, args: &[&str]) -> Output {
        Command::new(self.path(script))
            .args(args)
            .env("BERTH_CACHE", self.dir.path().join("cache"))
            .output()
            .unwrap()
    }

    fn cached_tools(&self) -> Vec<String> {
        match fs::read_dir(self.dir.path().join("cache/bin")) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The `h1:` hash go.sum records for `module version` (the zip, not go.mod).
fn zip_hash(go_sum: &Path, module_version: &str) -> String {
    let prefix = format!("{module_version} h1:");
    fs::read_to_string(go_sum)
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix(&prefix).map(str::to_string))
        .unwrap_or_else(|| panic!("{} has a line for {module_version}", go_sum.display()))
}

/// The same base64 hash with its first character changed.
fn tampered(hash: &str) -> String {
    let first = if hash.starts_with('A') { 'B' } else { 'A' };
    format!("{first}{}", &hash[1..])
}

#[test]
fn the_committed_wrappers_agree_with_versions_env() {
    let copy = Copy::new();
    let output = copy.run("pin-tools", &["--check"]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn a_version_bump_without_re_pinning_fails_the_check_naming_the_fix() {
    let copy = Copy::new();
    let versions = fs::read_to_string(copy.path("versions.env")).unwrap();
    let helm = versions
        .lines()
        .find_map(|l| l.strip_prefix("HELM_VERSION="))
        .unwrap()
        .to_string();
    copy.edit(
        "versions.env",
        &format!("HELM_VERSION={helm}"),
        "HELM_VERSION=v3.99.0",
    );
    let output = copy.run("pin-tools", &["--check"]);
    assert!(!output.status.success(), "the check fails");
    let why = stderr(&output);
    assert!(
        why.contains("tools/helm: go.mod does not require helm.sh/helm/v3 v3.99.0")
            && why.contains("run: cluster-setup/local/pin-tools helm"),
        "names the tool, the version and the fix: {why}"
    );
    assert!(
        !why.contains("tools/kubernetes"),
        "only the tool that disagrees: {why}"
    );
}

#[test]
fn a_staging_module_at_another_kubernetes_version_fails_the_check() {
    let copy = Copy::new();
    copy.edit(
        "tools/kubernetes/go.mod",
        "k8s.io/client-go => k8s.io/client-go v0.",
        "k8s.io/client-go => k8s.io/client-go v0.99.",
    );
    let output = copy.run("pin-tools", &["--check"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("tools/kubernetes: a k8s.io staging replace is not at"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_module_that_differs_from_go_sum_stops_the_build_and_caches_nothing() {
    let copy = Copy::new();
    let go_sum = copy.path("tools/actionlint/go.sum");
    let hash = zip_hash(&go_sum, "github.com/fatih/color v1.19.0");
    copy.edit("tools/actionlint/go.sum", &hash, &tampered(&hash));

    let output = copy.run("build-tools", &["actionlint"]);
    assert!(!output.status.success(), "the build fails");
    let why = stderr(&output);
    assert!(
        why.contains("verifying github.com/fatih/color@v1.19.0: checksum mismatch"),
        "Go's own verification names the module: {why}"
    );
    assert!(why.contains("nothing was cached"), "{why}");
    assert_eq!(copy.cached_tools(), Vec::<String>::new());
}

#[test]
fn the_source_a_patch_applies_to_is_checked_against_go_sum_too() {
    let copy = Copy::new();
    let go_sum = copy.path("tools/kwok/go.sum");
    let version = fs::read_to_string(copy.path("tools/kwok/go.mod"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("sigs.k8s.io/kwok ")
                .map(str::to_string)
        })
        .unwrap();
    let version = version.split_whitespace().next().unwrap().to_string();
    let module_version = format!("sigs.k8s.io/kwok {version}");
    let hash = zip_hash(&go_sum, &module_version);
    copy.edit("tools/kwok/go.sum", &hash, &tampered(&hash));

    let output = copy.run("build-tools", &["kwok"]);
    assert!(!output.status.success());
    let why = stderr(&output);
    assert!(
        why.contains(&format!(
            "verifying sigs.k8s.io/kwok@{version}: checksum mismatch"
        )),
        "{why}"
    );
    assert_eq!(copy.cached_tools(), Vec::<String>::new());
}

#[test]
fn a_module_outside_the_pinned_graph_is_an_error_not_a_lookup_of_latest() {
    let copy = Copy::new();
    // drop one requirement: a build that resolved modules itself would fetch
    // golang.org/x/sync@latest; a pinned build must refuse
    let gomod = fs::read_to_string(copy.path("tools/actionlint/go.mod")).unwrap();
    let line = gomod
        .lines()
        .find(|l| l.trim_start().starts_with("golang.org/x/sync "))
        .unwrap()
        .to_string();
    copy.edit("tools/actionlint/go.mod", &format!("{line}\n"), "");

    let output = copy.run("build-tools", &["actionlint"]);
    assert!(!output.status.success());
    let why = stderr(&output);
    assert!(
        why.contains("updates to go.mod needed, disabled by -mod=readonly"),
        "Go refuses to change the pinned graph: {why}"
    );
    assert_eq!(copy.cached_tools(), Vec::<String>::new());
}

#[test]
fn a_changed_pin_gets_its_own_cache_entry() {
    let copy = Copy::new();
    let before = String::from_utf8(copy.run("build-tools", &["--print"]).stdout).unwrap();
    let go_sum = copy.path("tools/crane/go.sum");
    fs::write(
        &go_sum,
        fs::read_to_string(&go_sum).unwrap() + "example.com/m v1.0.0/go.mod h1:x=\n",
    )
    .unwrap();
    let after = String::from_utf8(copy.run("build-tools", &["--print"]).stdout).unwrap();
    let line = |text: &str, tool: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{tool}=")))
            .unwrap()
            .to_string()
    };
    assert_ne!(line(&before, "crane"), line(&after, "crane"));
    assert_eq!(line(&before, "helm"), line(&after, "helm"));
    assert!(
        line(&after, "crane").contains("/bin/crane-v"),
        "keyed by name and version first: {after}"
    );
}

/// The value of `NAME=` in the copy's versions.env.
fn pinned(copy: &Copy, name: &str) -> String {
    let prefix = format!("{name}=");
    fs::read_to_string(copy.path("versions.env"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .unwrap_or_else(|| panic!("versions.env sets {name}"))
}

/// helm built as its release Makefile builds it: `helm version` says the
/// pinned tag, and without a cluster helm assumes the Kubernetes version of
/// the client-go it links (v0.X.Y is v1.X), not its source default v1.20.
#[test]
fn helm_reports_its_pinned_version_and_the_kubernetes_version_it_links() {
    let copy = Copy::new();
    let output = copy.run("build-tools", &["helm"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let dirs = String::from_utf8(copy.run("build-tools", &["--print"]).stdout).unwrap();
    let helm = Path::new(dirs.lines().find_map(|l| l.strip_prefix("helm=")).unwrap()).join("helm");

    let version = Command::new(&helm)
        .args(["version", "--template", "{{.Version}} {{.GitTreeState}}"])
        .output()
        .unwrap();
    assert!(version.status.success(), "{}", stderr(&version));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        format!("{} clean", pinned(&copy, "HELM_VERSION"))
    );

    let gomod = fs::read_to_string(copy.path("tools/helm/go.mod")).unwrap();
    let client_go = gomod
        .lines()
        .find_map(|l| l.trim().strip_prefix("k8s.io/client-go v0."))
        .unwrap();
    let minor = client_go.split('.').next().unwrap();
    let chart = copy.dir.path().join("chart");
    fs::create_dir_all(chart.join("templates")).unwrap();
    fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: kube\nversion: 0.1.0\nkubeVersion: \">=1.23.0-0\"\n",
    )
    .unwrap();
    fs::write(
        chart.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kube}\ndata: {kube: \"{{ .Capabilities.KubeVersion }}\"}\n",
    )
    .unwrap();
    let rendered = Command::new(&helm)
        .args(["template", "demo"])
        .arg(&chart)
        .output()
        .unwrap();
    assert!(rendered.status.success(), "{}", stderr(&rendered));
    let rendered = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        rendered.contains(&format!("kube: \"v1.{minor}.0\"")),
        "{rendered}"
    );
}

/// A binary cached before its link flags changed (helm built by a plain
/// `go build`) is not reused: the flags are part of the cache key.
#[test]
fn changed_link_flags_get_their_own_cache_entry() {
    let copy = Copy::new();
    let before = String::from_utf8(copy.run("build-tools", &["--print"]).stdout).unwrap();
    copy.edit(
        "tools/tools.sh",
        "internal/version.gitTreeState=clean\"",
        "internal/version.gitTreeState=dirty\"",
    );
    let after = String::from_utf8(copy.run("build-tools", &["--print"]).stdout).unwrap();
    let line = |text: &str, tool: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{tool}=")))
            .unwrap()
            .to_string()
    };
    assert_ne!(line(&before, "helm"), line(&after, "helm"));
    assert_eq!(line(&before, "crane"), line(&after, "crane"));
}
