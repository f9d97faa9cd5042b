//! `berth diff ENV SHA`: what a deploy would change, from a server-side dry
//! run, as a readable diff. Secret values are masked.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::DynamicObject;
use kube::{Api, ResourceExt};
use serde_json::Value;
use similar::TextDiff;

use crate::cli::{EnvShaArgs, GlobalArgs};
use crate::cluster::apply;
use crate::output::Output;
use crate::pipeline::{self, DeploySettings, hold::hold};
use crate::stdout;

/// Print what deploying SHA to ENV would change; changes nothing.
pub async fn run(global: &GlobalArgs, args: &EnvShaArgs, out: Arc<Output>) -> anyhow::Result<()> {
    let settings = DeploySettings::new(&global.config, &args.env, &args.sha);
    let (client, plan) = pipeline::plan(&settings, None, &out).await?;
    let ns = &plan.env.namespace;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let exists = namespaces.get_opt(ns).await?.is_some();
    let (mut added, mut changed, mut same) = (0, 0, 0);
    // Without the namespace a dry run cannot place objects: all are new.
    let answers: Vec<(apply::Resolved, DynamicObject)> = if exists {
        let objects = hold(&client, ns, &plan.objects).await?;
        apply::apply_all(&client, ns, &objects, true).await?
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
        match live {
            None => {
                added += 1;
                stdout::line(format!("+ {} (new)", object.describe()))?;
                for line in after_text.lines() {
                    stdout::line(format!("  + {line}"))?;
                }
            }
            Some(live) => {
                let before_text = comparable(&live, &object.resource.kind);
                if before_text == after_text {
                    same += 1;
                    continue;
                }
                changed += 1;
                stdout::line(format!("~ {}", object.describe()))?;
                let diff = TextDiff::from_lines(&before_text, &after_text);
                for hunk in diff.unified_diff().context_radius(2).iter_hunks() {
                    for line in hunk.to_string().lines() {
                        stdout::line(format!("  {line}"))?;
                    }
                }
            }
        }
    }
    stdout::line(format!(
        "{added} to create, {changed} to change, {same} unchanged ({} at {})",
        args.env, plan.sha
    ))?;
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
