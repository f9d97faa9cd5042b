//! Which version of a rendering binary ran, for its errors: asked only when
//! a render fails, once per binary per run, within [`VERSION_TIMEOUT`].

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;
use tokio::sync::Mutex;

/// What kind of binary renders, which decides how to ask its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renderer {
    /// kubectl (`kubectl kustomize`): `kubectl version --client -o json`.
    Kubectl,
    /// A standalone kustomize (`kustomize build`): `kustomize version`.
    Kustomize,
    /// helm (`helm template`): `helm version --short`.
    Helm,
}

/// How long asking a binary its version may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// The versions already asked in this run, by binary.
static ASKED: LazyLock<Mutex<HashMap<OsString, String>>> = LazyLock::new(Default::default);

/// `program` and its version, e.g. `kubectl v1.32.4 (kustomize v5.5.0)`,
/// `kustomize v4.5.7` or `helm v3.17.0`; when the version cannot be read,
/// the binary and why (never an error: this only decorates another one).
pub(crate) async fn describe(renderer: Renderer, program: &OsStr) -> String {
    let mut asked = ASKED.lock().await;
    if let Some(known) = asked.get(program) {
        return known.clone();
    }
    let name = Path::new(program)
        .file_name()
        .unwrap_or(program)
        .to_string_lossy()
        .into_owned();
    let args: &[&str] = match renderer {
        Renderer::Kubectl => &["version", "--client", "-o", "json"],
        Renderer::Kustomize => &["version"],
        Renderer::Helm => &["version", "--short"],
    };
    let shown = format!("{name} {}", args.join(" "));
    let running = Command::new(program).args(args).kill_on_drop(true).output();
    let read = match tokio::time::timeout(VERSION_TIMEOUT, running).await {
        Err(_) => Err(format!(
            "`{shown}` did not answer within {}",
            crate::duration::display(VERSION_TIMEOUT)
        )),
        Ok(Err(error)) => Err(format!("`{shown}` could not run: {error}")),
        Ok(Ok(output)) if !output.status.success() => {
            Err(format!("`{shown}` failed ({})", output.status))
        }
        Ok(Ok(output)) => {
            let stdout = String::from_utf8_lossy(&output.stdout);
            parse(renderer, &stdout).ok_or_else(|| format!("`{shown}` printed no version"))
        }
    };
    let described = match read {
        Ok(version) => format!("{name} {version}"),
        Err(why) => format!("{name} (version unknown: {why})"),
    };
    asked.insert(program.to_owned(), described.clone());
    described
}

/// The version in what `renderer`'s version command printed: for kubectl
/// `v1.32.4 (kustomize v5.5.0)`, for the others their first version number.
fn parse(renderer: Renderer, stdout: &str) -> Option<String> {
    match renderer {
        Renderer::Kubectl => {
            let json: Value = serde_json::from_str(stdout).ok()?;
            let kubectl = json.pointer("/clientVersion/gitVersion")?.as_str()?;
            Some(match json.get("kustomizeVersion").and_then(Value::as_str) {
                Some(kustomize) => format!("{kubectl} (kustomize {kustomize})"),
                None => kubectl.to_owned(),
            })
        }
        Renderer::Kustomize | Renderer::Helm => first_version(stdout),
    }
}

/// The first version number in `text`, with a leading `v`: `v5.5.0` from
/// `v5.5.0`, `v4.5.7` from `{Version:kustomize/v4.5.7 GitCommit:...}`,
/// `v3.2.0` from `Version: {KustomizeVersion:3.2.0 ...}`.
fn first_version(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, ':' | '/' | '{' | '}' | ',' | '"'))
        .map(|word| word.strip_prefix('v').unwrap_or(word))
        .find(|word| {
            let mut parts = word.split('.');
            let numeric = |part: Option<&str>| {
                part.is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
            };
            numeric(parts.next()) && numeric(parts.next())
        })
        .map(|word| format!("v{word}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_names_its_embedded_kustomize() {
        let json = r#"{"clientVersion":{"major":"1","minor":"32","gitVersion":"v1.32.4"},
                       "kustomizeVersion":"v5.5.0"}"#;
        assert_eq!(
            parse(Renderer::Kubectl, json).as_deref(),
            Some("v1.32.4 (kustomize v5.5.0)")
        );
        let old = r#"{"clientVersion":{"gitVersion":"v1.20.0"}}"#;
        assert_eq!(parse(Renderer::Kubectl, old).as_deref(), Some("v1.20.0"));
        assert_eq!(parse(Renderer::Kubectl, "not json"), None);
    }

    #[test]
    fn kustomize_and_helm_versions_in_each_format() {
        for (printed, version) in [
            ("v5.5.0\n", "v5.5.0"),
            (
                "{Version:kustomize/v4.5.7 GitCommit:$Format:%H$ BuildDate:1970-01-01T00:00:00Z GoOs:linux GoArch:amd64}\n",
                "v4.5.7",
            ),
            (
                "Version: {KustomizeVersion:3.2.0 GitCommit:a3103f1e BuildDate:2019-09-18T16:26:36Z}",
                "v3.2.0",
            ),
            ("v3.17.0+g301108e\n", "v3.17.0+g301108e"),
            ("v3.22\n", "v3.22"),
        ] {
            assert_eq!(
                parse(Renderer::Kustomize, printed).as_deref(),
                Some(version),
                "{printed}"
            );
        }
        assert_eq!(parse(Renderer::Helm, "{unknown  1970-01-01  }"), None);
    }

    #[tokio::test]
    async fn an_unreadable_version_is_said_not_fatal() {
        let described = describe(Renderer::Kustomize, OsStr::new("/nonexistent/kustomize")).await;
        assert!(
            described.starts_with("kustomize (version unknown: `kustomize version` could not run:"),
            "{described}"
        );
        let described = describe(Renderer::Helm, OsStr::new("false")).await;
        assert_eq!(
            described,
            "false (version unknown: `false version --short` failed (exit status: 1))"
        );
    }
}
