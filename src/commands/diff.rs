//! `berth diff ENV SHA`: what a deploy would change, from a server-side dry
//! run, as a readable diff, or with `--output json` an `object` event per
//! object, then the report. Secret values never show: each key of a Secret
//! reads `(added)`, `(removed)`, `(changed)` or `(unchanged)`, and a Secret
//! whose data changes says which keys do, on its line (`secret_keys` in its
//! event) and in the report (`secrets_changing`).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::DynamicObject;
use kube::{Api, ResourceExt};
use serde::Serialize;
use serde_json::Value;
use similar::TextDiff;

use crate::cli::{EnvShaArgs, GlobalArgs};
use crate::cluster::apply;
use crate::error::{BerthError, exit_code_number};
use crate::output::{Mode, Output};
use crate::pipeline::{self, DeploySettings, hold::hold};
use crate::stdout;
use crate::style::{Painter, Tone};

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
    /// Added with the CRD of the same deploy that defines its kind (named
    /// here): the server cannot dry-run it before that CRD is installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    with_crd: Option<String>,
    /// Added: the object's YAML. Changed: unified diff lines (`@@` hunk
    /// headers, then lines starting with `-`, `+` or a space). Unchanged: none.
    lines: Vec<String>,
    /// A Secret whose data the deploy changes: the keys, by what happens
    /// to them (never a value).
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_keys: Option<SecretKeys>,
}

/// The keys of a Secret a deploy adds, removes or gives another value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SecretKeys {
    /// Keys the Secret gains.
    pub added: Vec<String>,
    /// Keys it loses.
    pub removed: Vec<String>,
    /// Keys whose value changes.
    pub changed: Vec<String>,
}

impl SecretKeys {
    /// The keys that change, from each key's [`KeyChange`]; `None` when the
    /// data stays as it is.
    pub fn of(keys: &BTreeMap<String, KeyChange>) -> Option<SecretKeys> {
        let mut changes = SecretKeys::default();
        for (key, change) in keys {
            match change {
                KeyChange::Added => changes.added.push(key.clone()),
                KeyChange::Removed => changes.removed.push(key.clone()),
                KeyChange::Changed => changes.changed.push(key.clone()),
                KeyChange::Unchanged => {}
            }
        }
        let unchanged = changes == SecretKeys::default();
        (!unchanged).then_some(changes)
    }

    /// `password changed, token added, old removed`: for people.
    pub fn describe(&self) -> String {
        let groups = [
            (&self.changed, "changed"),
            (&self.added, "added"),
            (&self.removed, "removed"),
        ];
        groups
            .into_iter()
            .filter(|(keys, _)| !keys.is_empty())
            .map(|(keys, what)| format!("{} {what}", keys.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A Secret whose data a deploy changes, in the report.
#[derive(Debug, Serialize)]
struct SecretChange {
    /// `Secret/name`.
    object: String,
    #[serde(flatten)]
    keys: SecretKeys,
}

impl ObjectDiff {
    fn print(&self, json: bool) -> anyhow::Result<()> {
        if json {
            let mut event = serde_json::to_value(self)?;
            event["event"] = serde_json::json!("object");
            return stdout::line(event);
        }
        let painter = Painter::stdout();
        let (head, prefix) = match (self.change, &self.with_crd) {
            (Change::Added, Some(crd)) => (
                format!("+ {} (new, created with its CRD {crd})", self.object),
                "  + ",
            ),
            (Change::Added, None) => (format!("+ {} (new)", self.object), "  + "),
            (Change::Changed, _) => match &self.secret_keys {
                Some(keys) => (
                    format!("~ {} (its data changes: {})", self.object, keys.describe()),
                    "  ",
                ),
                None => (format!("~ {}", self.object), "  "),
            },
            (Change::Unchanged, _) => return Ok(()),
        };
        let added = self.change == Change::Added;
        stdout::line(if added {
            painter.paint(Tone::Added, &head)
        } else {
            head
        })?;
        for line in &self.lines {
            let line = if added {
                painter.paint(Tone::Added, &format!("{prefix}{line}"))
            } else {
                format!("{prefix}{}", painter.diff_line(line))
            };
            stdout::line(line)?;
        }
        Ok(())
    }
}

/// The report's fields: what was compared, how many objects change how,
/// and whether anything would (then the exit code is 1).
#[derive(Debug, Default, Serialize)]
struct DiffReport {
    environment: String,
    sha: String,
    added: u64,
    changed: u64,
    unchanged: u64,
    /// The Secrets that exist and whose data would change.
    secrets_changing: Vec<SecretChange>,
    differs: bool,
    exit_code: u8,
}

/// The error of a diff that could not be made: one every other command
/// exits 1 with exits [`BerthError::DiffFailed`]'s code here, since 1
/// means "differences"; bad input (2), a held lock (3), a timeout (4) and
/// the like keep theirs.
pub fn failure(error: anyhow::Error) -> anyhow::Error {
    if exit_code_number(&error) == 1 {
        error.context(BerthError::DiffFailed)
    } else {
        error
    }
}

/// Print what deploying SHA to ENV would change; changes nothing. Whether
/// anything would change (an object added or changed).
pub async fn run(global: &GlobalArgs, args: &EnvShaArgs, out: Arc<Output>) -> anyhow::Result<bool> {
    let json = out.mode() == Mode::Json;
    let config = super::load_config(global, &[&args.env], &out)?;
    let sha = crate::commit::expand(&config, &args.sha, &out).await?;
    // a plan that only shows what would happen
    let settings = DeploySettings {
        dry_run: true,
        ..DeploySettings::new(config.path.clone(), &args.env, &sha)
    };
    let (client, plan) = pipeline::plan(&settings, None, &out).await?;
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
        let objects = hold(&client, ns, &plan.objects).await?;
        apply::apply_all(&client, ns, &objects, true, false, &out).await?
    } else {
        apply::in_order(&plan.objects)
            .into_iter()
            .map(|o| (o.clone(), o.object.clone()))
            .collect()
    };
    for (object, after) in &answers {
        let live = if exists && object.with_crd.is_none() {
            let api = if object.namespaced {
                Api::<DynamicObject>::namespaced_with(client.clone(), ns, &object.resource)
            } else {
                Api::<DynamicObject>::all_with(client.clone(), &object.resource)
            };
            api.get_opt(&object.object.name_any()).await?
        } else {
            None
        };
        let (before_text, after_text) = sides(live.as_ref(), after, &object.resource.kind);
        let secret = (object.resource.kind == "Secret")
            .then(|| SecretKeys::of(&secret_keys(live.as_ref(), after)))
            .flatten();
        let (change, lines) = match before_text {
            None => {
                report.added += 1;
                (
                    Change::Added,
                    after_text.lines().map(str::to_owned).collect(),
                )
            }
            Some(before_text) => {
                if before_text == after_text {
                    report.unchanged += 1;
                    (Change::Unchanged, Vec::new())
                } else {
                    report.changed += 1;
                    if let Some(keys) = &secret {
                        report.secrets_changing.push(SecretChange {
                            object: object.describe(),
                            keys: keys.clone(),
                        });
                    }
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
        ObjectDiff {
            object: object.describe(),
            change,
            lines,
            with_crd: object.with_crd.clone(),
            secret_keys: secret,
        }
        .print(json)?;
    }
    if !json {
        stdout::line(format!(
            "{} to create, {} to change, {} unchanged ({} at {})",
            report.added,
            report.changed,
            report.unchanged,
            args.env,
            crate::config::short_sha(&plan.sha)
        ))?;
    }
    report.differs = report.added + report.changed > 0;
    report.exit_code = u8::from(report.differs);
    out.json_report(&report);
    Ok(report.differs)
}

/// What a deploy would do to one key of a Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChange {
    /// The key is new.
    Added,
    /// The key goes away.
    Removed,
    /// The key stays with another value.
    Changed,
    /// The key keeps its value.
    Unchanged,
}

impl KeyChange {
    /// How the diff shows the key in place of its value.
    pub fn label(self) -> &'static str {
        match self {
            KeyChange::Added => "(added)",
            KeyChange::Removed => "(removed)",
            KeyChange::Changed => "(changed)",
            KeyChange::Unchanged => "(unchanged)",
        }
    }
}

/// Annotations that hold a copy of the whole object, Secret values included.
const EMBEDDING_ANNOTATIONS: [&str; 2] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    "kapp.k14s.io/original",
];

/// The two sides of an object's diff as YAML, live (`None` when it does not
/// exist) and after the deploy. Server-managed fields and annotations that
/// embed the object are left out; a Secret's values are replaced by what the
/// deploy does to each key ([`secret_keys`]), so no value ever shows.
pub fn sides(
    live: Option<&DynamicObject>,
    after: &DynamicObject,
    kind: &str,
) -> (Option<String>, String) {
    if kind != "Secret" {
        return (live.map(|l| comparable(l, None)), comparable(after, None));
    }
    let keys = secret_keys(live, after);
    let values: Vec<Vec<u8>> = live
        .into_iter()
        .chain([after])
        .flat_map(|o| secret_values(o).into_values())
        .filter(|v| !v.is_empty())
        .collect();
    // a changed key shows on the live side as its old value, so the line differs
    let shown = |live_side: bool| -> serde_json::Map<String, Value> {
        keys.iter()
            .filter_map(|(key, change)| {
                let label = match (change, live_side) {
                    (KeyChange::Added, true) | (KeyChange::Removed, false) => return None,
                    (KeyChange::Changed, true) => "(old value)",
                    (change, _) => change.label(),
                };
                Some((key.clone(), Value::String(label.into())))
            })
            .collect()
    };
    let before = live.map(|l| {
        comparable(
            l,
            Some(Masked {
                data: shown(true),
                values: &values,
            }),
        )
    });
    let after = comparable(
        after,
        Some(Masked {
            data: shown(false),
            values: &values,
        }),
    );
    (before, after)
}

/// Each key of a Secret, live versus after the deploy, compared by value
/// (`data`, with `stringData` merged over it as the API server does).
pub fn secret_keys(
    live: Option<&DynamicObject>,
    after: &DynamicObject,
) -> BTreeMap<String, KeyChange> {
    let before = live.map(secret_values).unwrap_or_default();
    let after = secret_values(after);
    let mut keys: BTreeMap<String, KeyChange> = before
        .iter()
        .map(|(key, old)| {
            let change = match after.get(key) {
                None => KeyChange::Removed,
                Some(new) if new == old => KeyChange::Unchanged,
                Some(_) => KeyChange::Changed,
            };
            (key.clone(), change)
        })
        .collect();
    for key in after.keys() {
        keys.entry(key.clone()).or_insert(KeyChange::Added);
    }
    keys
}

/// A Secret's values by key, decoded: `data` (base64), then `stringData`.
fn secret_values(object: &DynamicObject) -> BTreeMap<String, Vec<u8>> {
    let mut values = BTreeMap::new();
    if let Some(data) = object.data.get("data").and_then(Value::as_object) {
        for (key, value) in data {
            let text = value.as_str().unwrap_or_default();
            // undecodable data cannot be applied; compare it as written
            let bytes = BASE64
                .decode(text)
                .unwrap_or_else(|_| text.as_bytes().to_vec());
            values.insert(key.clone(), bytes);
        }
    }
    if let Some(data) = object.data.get("stringData").and_then(Value::as_object) {
        for (key, value) in data {
            let text = value.as_str().unwrap_or_default();
            values.insert(key.clone(), text.as_bytes().to_vec());
        }
    }
    values
}

/// How a Secret is shown: `data` as key statuses, and the values (decoded)
/// that must not appear anywhere else in it.
struct Masked<'a> {
    data: serde_json::Map<String, Value>,
    values: &'a [Vec<u8>],
}

impl Masked<'_> {
    /// Whether `text` holds one of the values, as written or in base64.
    fn reveals(&self, text: &str) -> bool {
        self.values.iter().any(|value| {
            String::from_utf8(value.clone()).is_ok_and(|plain| text.contains(&plain))
                || text.contains(&BASE64.encode(value))
        })
    }
}

/// YAML of an object without the fields the server manages or annotations
/// that embed the object; a Secret (`masked`) shows key statuses, not values.
fn comparable(object: &DynamicObject, masked: Option<Masked>) -> String {
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
                annotations.retain(|key, value| {
                    !EMBEDDING_ANNOTATIONS.contains(&key.as_str()) && !embeds_an_object(value)
                });
                if let Some(masked) = &masked {
                    for value in annotations.values_mut() {
                        if masked.reveals(value.as_str().unwrap_or_default()) {
                            *value = Value::String("(hidden)".into());
                        }
                    }
                }
                if annotations.is_empty() {
                    meta.remove("annotations");
                }
            }
        }
        if let Some(masked) = masked {
            map.remove("stringData");
            map.remove("data");
            if !masked.data.is_empty() {
                map.insert("data".into(), Value::Object(masked.data));
            }
        }
    }
    serde_norway::to_string(&value).unwrap_or_default()
}

/// Whether an annotation's value is a serialised Kubernetes object.
fn embeds_an_object(value: &Value) -> bool {
    value
        .as_str()
        .and_then(|text| serde_json::from_str::<Value>(text.trim()).ok())
        .is_some_and(|parsed| parsed.get("kind").is_some() || parsed.get("apiVersion").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(extra: Value) -> DynamicObject {
        let mut object = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "resourceVersion": "7", "managedFields": []},
        });
        for (key, value) in extra.as_object().unwrap() {
            object[key] = value.clone();
        }
        serde_json::from_value(object).unwrap()
    }

    fn b64(text: &str) -> String {
        BASE64.encode(text)
    }

    #[test]
    fn secret_values_never_reach_the_diff() {
        let object = secret(serde_json::json!({
            "data": {"password": b64("s3cr3t")}, "stringData": {"token": "t0ps3cret"}
        }));
        let (_, text) = sides(None, &object, "Secret");
        for value in ["s3cr3t", &b64("s3cr3t"), "t0ps3cret", &b64("t0ps3cret")] {
            assert!(!text.contains(value), "{value} in {text}");
        }
        assert!(text.contains("password: (added)"), "{text}");
        assert!(text.contains("token: (added)"), "{text}");
        assert!(
            !text.contains("resourceVersion") && !text.contains("managedFields"),
            "{text}"
        );
    }

    #[test]
    fn each_secret_key_says_what_the_deploy_does_to_it() {
        let live = secret(serde_json::json!({"data": {
            "same": b64("one"), "changed": b64("two"), "gone": b64("three")
        }}));
        // stringData counts as its base64 equivalent
        let after = secret(serde_json::json!({
            "data": {"changed": b64("TWO"), "new": b64("four")},
            "stringData": {"same": "one"}
        }));
        let keys = secret_keys(Some(&live), &after);
        assert_eq!(
            keys.into_iter().collect::<Vec<_>>(),
            [
                ("changed".to_string(), KeyChange::Changed),
                ("gone".to_string(), KeyChange::Removed),
                ("new".to_string(), KeyChange::Added),
                ("same".to_string(), KeyChange::Unchanged),
            ]
        );
        let (before, after) = sides(Some(&live), &after, "Secret");
        let before = before.unwrap();
        assert_ne!(before, after, "a changed Secret does not look unchanged");
        assert!(after.contains("changed: (changed)"), "{after}");
        assert!(after.contains("same: (unchanged)"), "{after}");
        assert!(before.contains("gone: (removed)"), "{before}");
        for value in ["one", "two", "TWO", "three", "four"] {
            assert!(!before.contains(&b64(value)), "{before}");
            assert!(!after.contains(&b64(value)), "{after}");
        }
    }

    #[test]
    fn the_keys_that_change_are_named_by_what_happens_to_them() {
        let live = secret(serde_json::json!({"data": {
            "password": b64("old"), "user": b64("app"), "legacy": b64("x")
        }}));
        let after = secret(serde_json::json!({"data": {
            "password": b64("new"), "user": b64("app"), "token": b64("t")
        }}));
        let keys = SecretKeys::of(&secret_keys(Some(&live), &after)).unwrap();
        assert_eq!(
            keys,
            SecretKeys {
                added: vec!["token".into()],
                removed: vec!["legacy".into()],
                changed: vec!["password".into()],
            }
        );
        assert_eq!(
            keys.describe(),
            "password changed; token added; legacy removed"
        );
        let json = serde_json::to_value(&keys).unwrap();
        assert_eq!(json["changed"], serde_json::json!(["password"]));
        assert_eq!(SecretKeys::of(&secret_keys(Some(&live), &live)), None);
    }

    #[test]
    fn an_unchanged_secret_compares_equal() {
        let live = secret(serde_json::json!({"data": {"k": b64("v1")}}));
        let after = secret(serde_json::json!({"stringData": {"k": "v1"}}));
        let (before, after) = sides(Some(&live), &after, "Secret");
        assert_eq!(before.unwrap(), after);
    }

    #[test]
    fn annotations_that_embed_the_object_are_left_out() {
        let applied = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db"}, "stringData": {"password": "hunter22"}
        })
        .to_string();
        let live = secret(serde_json::json!({
            "metadata": {"name": "db", "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": applied,
                "example.com/copy": applied,
                "example.com/note": "password is hunter22",
                "example.com/team": "payments",
            }},
            "data": {"password": b64("hunter22")}
        }));
        let (before, _) = sides(Some(&live), &live, "Secret");
        let before = before.unwrap();
        assert!(!before.contains("hunter22"), "{before}");
        assert!(!before.contains("last-applied-configuration"), "{before}");
        assert!(!before.contains("example.com/copy"), "{before}");
        assert!(before.contains("example.com/note: (hidden)"), "{before}");
        assert!(before.contains("example.com/team: payments"), "{before}");
        // other kinds lose the embedded copy too
        let config_map: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": applied
            }}
        }))
        .unwrap();
        let (_, text) = sides(None, &config_map, "ConfigMap");
        assert!(!text.contains("hunter22"), "{text}");
    }
}
