//! The command that renders a source (`kubectl kustomize`, a standalone
//! `kustomize build`, `helm template`), and its errors: each names the command,
//! the binary and version that ran it, and the fix.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

use super::incompatible;
use super::target::{self, Target};
use super::version::{self, Renderer};
use crate::config::{Chart, Config, Kustomize, Source};
use crate::error::input_error;

/// How long `kubectl kustomize`, `kustomize build` or `helm template` may run.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// A rendering command, and how to talk about it in errors.
pub(super) struct Tool {
    /// The binary to run.
    pub(super) program: OsString,
    /// Its arguments.
    pub(super) args: Vec<OsString>,
    /// The command line as shown to the user, e.g. `kubectl kustomize overlays/staging`.
    pub(super) shown: String,
    /// The environment variable that overrides the binary.
    pub(super) override_var: &'static str,
    /// The fix when the tool fails, naming the key and path to correct.
    pub(super) fix: String,
    /// What kind of binary it is, to ask its version when it fails.
    pub(super) renderer: Renderer,
    /// The rendered directory as shown (relative to berth.yaml's).
    pub(super) subject: String,
}

impl Tool {
    /// The command that renders `source` (berth.yaml's `key`): paths are
    /// shown relative to berth.yaml's directory. A chart is read from
    /// `chart_path`, where [`super::chart_source::prepare`] made it ready,
    /// and renders for `target` when given ([`Target`]); kustomize has no
    /// use for either.
    pub(super) fn for_source(
        config: &Config,
        source: &Source,
        chart_path: Option<&Path>,
        key: &str,
        namespace: &str,
        target: Option<&Target>,
    ) -> Tool {
        let relative = |path: &Path| {
            path.strip_prefix(&config.dir)
                .unwrap_or(path)
                .display()
                .to_string()
        };
        match source {
            Source::Kustomize { overlay, kustomize } => {
                let shown_path = relative(overlay);
                let (program, override_var, args, shown, renderer) =
                    match (kustomize, std::env::var_os("BERTH_KUSTOMIZE")) {
                        (_, Some(binary)) => {
                            let shown = format!("{} build {shown_path}", binary.to_string_lossy());
                            (
                                binary,
                                "BERTH_KUSTOMIZE",
                                vec!["build".into(), overlay.into()],
                                shown,
                                Renderer::Kustomize,
                            )
                        }
                        (Kustomize::Standalone(binary), None) => (
                            binary.clone().into_os_string(),
                            "BERTH_KUSTOMIZE",
                            vec!["build".into(), overlay.into()],
                            format!("{} build {shown_path}", relative(binary)),
                            Renderer::Kustomize,
                        ),
                        (Kustomize::Kubectl, None) => {
                            let (program, var) = program("BERTH_KUBECTL", "kubectl");
                            (
                                program,
                                var,
                                vec!["kustomize".into(), overlay.into()],
                                format!("kubectl kustomize {shown_path}"),
                                Renderer::Kubectl,
                            )
                        }
                    };
                Tool {
                    program,
                    args,
                    fix: format!(
                        "fix the overlay {shown_path} ({key} in berth.yaml); `{shown}` shows the same error"
                    ),
                    shown,
                    override_var,
                    renderer,
                    subject: shown_path,
                }
            }
            Source::Helm {
                chart,
                values,
                set,
                release,
            } => {
                let (program, override_var) = program("BERTH_HELM", "helm");
                let from = chart_path.unwrap_or(Path::new(""));
                let described = chart.describe(&config.dir);
                let mut args: Vec<OsString> = vec!["template".into(), release.into(), from.into()];
                let mut shown = match chart {
                    Chart::Dir(dir) => format!("helm template {release} {}", relative(dir)),
                    Chart::Oci {
                        reference, version, ..
                    } => format!("helm template {release} {reference} --version {version}"),
                    Chart::Repo { url, name, version } => {
                        format!("helm template {release} {name} --repo {url} --version {version}")
                    }
                };
                for file in values {
                    args.extend(["-f".into(), file.into()]);
                    shown.push_str(&format!(" -f {}", relative(file)));
                }
                for (key, value) in set {
                    let assignment = format!("{key}={value}");
                    shown.push_str(&format!(" --set-json {}", shell_quote(&assignment)));
                    args.extend(["--set-json".into(), assignment.into()]);
                }
                args.extend([
                    "--namespace".into(),
                    namespace.into(),
                    "--skip-tests".into(),
                    "--include-crds".into(),
                ]);
                shown.push_str(&format!(
                    " --namespace {namespace} --skip-tests --include-crds"
                ));
                if let Some(target) = target {
                    args.extend(target.helm_args());
                    shown.push_str(&target.shown());
                }
                Tool {
                    program,
                    args,
                    fix: format!(
                        "fix the chart {described} or its values ({key} in berth.yaml); `{shown}` \
                         shows the same error"
                    ),
                    shown,
                    override_var,
                    renderer: Renderer::Helm,
                    subject: described,
                }
            }
        }
    }

    /// Run the tool and return what it printed, or an input error with its
    /// stderr and the binary and version that ran. It is killed if it runs
    /// longer than `timeout` (or if the caller stops waiting, e.g. on Ctrl-C).
    pub(super) async fn run(&self, timeout: Duration) -> anyhow::Result<String> {
        let running = Command::new(&self.program)
            .args(&self.args)
            .kill_on_drop(true)
            .output();
        let output = match tokio::time::timeout(timeout, running).await {
            Err(_) => {
                return Err(input_error(format!(
                    "`{}` did not finish within {} and was stopped (rendered by {}); {}, or see \
                     whether it waits on the network (a chart dependency, a remote kustomize base)",
                    self.shown,
                    crate::duration::display(timeout),
                    self.version().await,
                    self.fix
                )));
            }
            Ok(Err(error)) => {
                let config = match self.renderer {
                    Renderer::Kustomize => ", name it in berth.yaml's render.kustomize",
                    Renderer::Kubectl | Renderer::Helm => "",
                };
                return Err(input_error(format!(
                    "cannot run {} for `{}`: {error}; install it{config}, or set {} to its path",
                    self.program.to_string_lossy(),
                    self.shown,
                    self.override_var
                )));
            }
            Ok(Ok(output)) => output,
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let version = self.version().await;
            let fix = match (self.renderer, incompatible::known(&stderr)) {
                (Renderer::Kubectl | Renderer::Kustomize, Some(known)) => {
                    known.explain(&self.subject)
                }
                (Renderer::Helm, _) => {
                    target::old_helm(&stderr).unwrap_or_else(|| self.fix.clone())
                }
                _ => self.fix.clone(),
            };
            return Err(input_error(format!(
                "`{}` failed ({}):\n{}\nrendered by {version}\n{fix}",
                self.shown,
                output.status,
                stderr.trim_end(),
            )));
        }
        match String::from_utf8(output.stdout) {
            Ok(text) => Ok(text),
            Err(_) => Err(input_error(format!(
                "`{}` printed something that is not UTF-8 text (rendered by {}); {}",
                self.shown,
                self.version().await,
                self.fix
            ))),
        }
    }

    /// The binary and its version, e.g. `kubectl v1.32.4 (kustomize v5.5.0)`,
    /// asked once per run; says so when it cannot be read.
    pub(super) async fn version(&self) -> String {
        version::describe(self.renderer, &self.program).await
    }
}

/// `text` as one shell word, for commands shown to be copied: bare when
/// it has nothing a shell reads, else in single quotes.
fn shell_quote(text: &str) -> String {
    if text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-./=:,@".contains(&b))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The binary named by environment variable `var`, else `default` from PATH.
pub(super) fn program(var: &'static str, default: &str) -> (OsString, &'static str) {
    (std::env::var_os(var).unwrap_or_else(|| default.into()), var)
}
