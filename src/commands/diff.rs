//! `berth diff ENV SHA`: what a deploy would change, from a server-side dry
//! run, as a readable diff, or with `--output json` an `object` event per
//! object, then the report. Secret values are masked.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::DynamicObject;
use kube::{Api, ResourceExt};
use serde::Serialize;
use serde_json::Value;
use similar::TextDiff;

use super::deploy;
use crate::cli::{EnvShaArgs, GlobalArgs};
use crate::cluster::apply;
use crate::output::{Mode, Output};
use crate::stdout;

/// How one object would change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Change {
    /// It does not exist yet.
    Added,
    /// It exists and differs.
    Changed,
    /// It exists as it would be.
    Unchanged,
}

/// One object of the diff: a line and its lines for people, an `object`
/// event with `--output json`.
#[derive(Debug, Serialize)]
struct ObjectDiff {
    /// `Kind/name` (and namespace), as the plan describes it.
    object: String,
    change: Change,
    /// Added: the object's YAML. Changed: unified diff lines (`@@` hunk
    /// headers, then lines starting with `-`, `+` or a space). Unchanged: none.
    lines: Vec<String>,
}

impl ObjectDiff {
    fn print(&self, json: bool) -> anyhow::Result<()> {
        if json {
            let mut event = serde_json::to_value(self)?;
            event["event"] = serde_json::json!("object");
            return stdout::line(event);
        }
        let (head, prefix) = match self.change {
            Change::Added => (format!("+ {} (new)", self.object), "  + "),
            Change::Changed => (format!("~ {}", self.object), "  "),
            Change::Unchanged => return Ok(()),
        };
        stdout::line(head)?;
        for line in &self.lines {
            stdout::line(format!("{prefix}{line}"))?;
        }
        Ok(())
    }
}

/// The report's fields: what was compared, and how many objects change how.
#[derive(Debug, Default, Serialize)]
struct DiffReport {
    environment: String,
    sha: String,
    added: u64,
    changed: u64,
    unchanged: u64,
}

/// Print what deploying SHA to ENV would change; changes nothing.
pub async fn run(global: &GlobalArgs, args: &EnvShaArgs, out: Arc<Output>) -> anyhow::Result<()> {
    let json = out.mode() == Mode::Json;
    let (client, plan) = deploy::plan(global, &args.env, &args.sha, false, None, &out).await?;
    let ns = &plan.env.namespace;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let exists = namespaces.get_opt(ns).await?.is_some();
    let mut report = DiffReport {
        environment: args.env.clone(),
        sha: plan.sha.clone(),
        ..DiffReport::default()
    };
    // Without the namespace a dry run cannot place objects: all are new.
    let answers: Vec<(apply::Resolved, DynamicObject)> = if exists {
        apply::apply_all(&client, ns, &plan.objects, true).await?
    } else {
        plan.objects
            .iter()
            .map(|o| (o.clone(), o.object.clone()))
            .collect()
    };
    for (object, after) in &answers {
        let live = if exists {
            let api = if object.namespaced {
                Api::<DynamicObject>::namespaced_with(client.clone(), ns, &object.resource)
            } else {
                Api::<DynamicObject>::all_with(client.clone(), &object.resource)
            };
            api.get_opt(&object.object.name_any()).await?
        } else {
            None
        };
        let after_text = comparable(after, &object.resource.kind);
        let (change, lines) = match live {
            None => {
                report.added += 1;
                (
                    Change::Added,
                    after_text.lines().map(str::to_owned).collect(),
                )
            }
            Some(live) => {
                let before_text = comparable(&live, &object.resource.kind);
                if before_text == after_text {
                    report.unchanged += 1;
                    (Change::Unchanged, Vec::new())
                } else {
                    report.changed += 1;
                    let diff = TextDiff::from_lines(&before_text, &after_text);
                    let lines = diff
                        .unified_diff()
                        .context_radius(2)
                        .iter_hunks()
                        .flat_map(|hunk| {
                            hunk.to_string()
                                .lines()
                                .map(str::to_owned)
                                .collect::<Vec<_>>()
                        })
                        .collect();
                    (Change::Changed, lines)
                }
            }
        };
        let object = object.describe();
        ObjectDiff {
            object,
            change,
            lines,
        }
        .print(json)?;
    }
    if !json {
        stdout::line(format!(
            "{} to create, {} to change, {} unchanged ({} at {})",
            report.added, report.changed, report.unchanged, args.env, plan.sha
        ))?;
    }
    out.json_report(&report);
    Ok(())
}

/// YAML of an object without the fields the server manages, Secret values masked.
fn comparable(object: &DynamicObject, kind: &str) -> String {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in [
                "managedFields",
                "resourceVersion",
                "generation",
                "uid",
                "creationTimestamp",
            ] {
                meta.remove(field);
            }
            if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                annotations.remove("deployment.kubernetes.io/revision");
                if annotations.is_empty() {
                    meta.remove("annotations");
                }
            }
        }
        if kind == "Secret" {
            for field in ["data", "stringData"] {
                if let Some(data) = map.get_mut(field).and_then(Value::as_object_mut) {
                    for (_, v) in data.iter_mut() {
                        *v = Value::String("(hidden)".into());
                    }
                }
            }
        }
    }
    serde_norway::to_string(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_never_reach_the_diff() {
        let secret: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "resourceVersion": "7", "managedFields": []},
            "data": {"password": "c2VjcmV0"}, "stringData": {"token": "t0ps3cret"}
        }))
        .unwrap();
        let text = comparable(&secret, "Secret");
        assert!(
            !text.contains("c2VjcmV0") && !text.contains("t0ps3cret"),
            "{text}"
        );
        assert!(text.contains("password: (hidden)"), "{text}");
        assert!(
            !text.contains("resourceVersion") && !text.contains("managedFields"),
            "{text}"
        );
    }
}
