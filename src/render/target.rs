//! The cluster a chart is rendered for. `helm template` alone renders for
//! helm's made-up default cluster (Kubernetes v1.20.0, and no `lookup`);
//! berth tells it the target cluster's version (`--kube-version`) and every
//! API version and kind it serves (`--api-versions`), so `.Capabilities`
//! is the cluster's, and lets `lookup` read the cluster
//! (`--dry-run=server` with the environment's `--kube-context`): helm
//! stays a client-only dry run, reading and never writing.

use std::ffi::OsString;

/// What a chart is rendered for: the target cluster, as discovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The server's Kubernetes version, e.g. `v1.36.3` (`.Capabilities.KubeVersion`).
    pub kube_version: String,
    /// Every `group/version` and `group/version/Kind` the server serves
    /// (`.Capabilities.APIVersions`), e.g. `apps/v1`, `apps/v1/Deployment`,
    /// `v1/Secret`; sorted, each once.
    pub api_versions: Vec<String>,
    /// The kubeconfig context `lookup` reads through, as berth connects:
    /// `None` is the kubeconfig's current context (or the pod's service
    /// account), which helm infers as berth does.
    pub context: Option<String>,
}

impl Target {
    /// `helm template`'s arguments that render for this cluster.
    pub(super) fn helm_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--kube-version".into(),
            self.kube_version.clone().into(),
            "--api-versions".into(),
            self.api_versions.join(",").into(),
            "--dry-run=server".into(),
        ];
        if let Some(context) = &self.context {
            args.extend(["--kube-context".into(), context.into()]);
        }
        args
    }

    /// The same arguments as shown in messages: the API versions are
    /// counted, not listed.
    pub(super) fn shown(&self) -> String {
        let context = self
            .context
            .as_ref()
            .map(|c| format!(" --kube-context {c}"))
            .unwrap_or_default();
        format!(
            " --kube-version {} --api-versions <the {} the cluster serves> --dry-run=server{context}",
            self.kube_version,
            self.api_versions.len()
        )
    }
}

/// The fix when helm refused `--dry-run=server` (`stderr` is what it
/// printed): helm before 3.13 takes `--dry-run` as a plain switch.
pub(super) fn old_helm(stderr: &str) -> Option<String> {
    stderr.contains("\"--dry-run\" flag").then(|| {
        "this helm does not know `--dry-run=server`, which berth renders charts with so that \
         `lookup` reads the cluster: install helm 3.13 or later (or point BERTH_HELM at one)"
            .to_owned()
    })
}

/// The version to give helm's `--kube-version` from what the server says
/// (`/version`): its `gitVersion` (`v1.36.3`, `v1.30.2-gke.1587003`,
/// `v1.29.0+k3s1`), which is what `helm upgrade` itself reads; when that is
/// not a `vMAJOR.MINOR.PATCH` version, `vMAJOR.MINOR.0` from the major and
/// minor numbers (`30+` read as 30).
pub fn kube_version(git_version: &str, major: &str, minor: &str) -> Option<String> {
    let digits = |text: &str| -> Option<u64> {
        let end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        text[..end].parse().ok()
    };
    let core = git_version.strip_prefix('v').unwrap_or(git_version);
    let core = core.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    let semantic = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if semantic {
        return Some(format!("v{}", git_version.trim_start_matches('v')));
    }
    Some(format!("v{}.{}.0", digits(major)?, digits(minor)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(context: Option<&str>) -> Target {
        Target {
            kube_version: "v1.36.3".into(),
            api_versions: vec!["apps/v1".into(), "apps/v1/Deployment".into(), "v1".into()],
            context: context.map(str::to_owned),
        }
    }

    #[test]
    fn helm_is_told_the_cluster_and_reads_it_for_lookup() {
        let args: Vec<String> = target(Some("prod"))
            .helm_args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--kube-version",
                "v1.36.3",
                "--api-versions",
                "apps/v1,apps/v1/Deployment,v1",
                "--dry-run=server",
                "--kube-context",
                "prod"
            ]
        );
        assert_eq!(
            target(None).shown(),
            " --kube-version v1.36.3 --api-versions <the 3 the cluster serves> --dry-run=server"
        );
        assert!(!target(None).helm_args().contains(&"--kube-context".into()));
    }

    #[test]
    fn a_helm_without_dry_run_server_is_told_to_upgrade() {
        let printed = "Error: invalid argument \"server\" for \"--dry-run\" flag: \
                       strconv.ParseBool: parsing \"server\": invalid syntax";
        assert!(old_helm(printed).is_some_and(|fix| fix.contains("helm 3.13 or later")));
        assert_eq!(
            old_helm("Error: chart requires kubeVersion: >=1.23.0-0"),
            None
        );
    }

    #[test]
    fn the_servers_own_version_is_given_as_helm_reads_it() {
        for (git, major, minor, expected) in [
            ("v1.36.3", "1", "36", "v1.36.3"),
            ("v1.30.2-gke.1587003", "1", "30+", "v1.30.2-gke.1587003"),
            ("v1.29.0+k3s1", "1", "29", "v1.29.0+k3s1"),
            ("1.28.4", "1", "28", "v1.28.4"),
            ("v1.31", "1", "31+", "v1.31.0"),
            ("", "1", "27", "v1.27.0"),
        ] {
            assert_eq!(
                kube_version(git, major, minor).as_deref(),
                Some(expected),
                "{git}"
            );
        }
        assert_eq!(kube_version("custom", "", ""), None);
    }
}
