//! helm chart hooks: objects a chart annotates `helm.sh/hook` are not
//! applied with the release's other objects but run around it, as
//! `helm upgrade` runs them: `pre-install`/`pre-upgrade` before anything
//! changes, `post-install`/`post-upgrade` once the rollout is healthy,
//! `pre-rollback`/`post-rollback` around `berth rollback`, each event's
//! hooks one at a time in weight order, with their delete policies.
//!
//! This module finds and orders them (pure); [`run`] runs them.

pub mod run;

use std::collections::BTreeSet;

use kube::ResourceExt;
use kube::api::DynamicObject;

use crate::cluster::apply::Resolved;
use crate::error::input_error;

/// The annotation that makes an object a hook: its events, comma-separated.
pub const HOOK_ANNOTATION: &str = "helm.sh/hook";
/// The hook's weight: a string integer, lower runs first (default 0).
pub const WEIGHT_ANNOTATION: &str = "helm.sh/hook-weight";
/// When the hook's object is deleted, comma-separated
/// (default `before-hook-creation`).
pub const DELETE_POLICY_ANNOTATION: &str = "helm.sh/hook-delete-policy";

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    /// Before the first release's objects are applied.
    PreInstall,
    /// After the first release became healthy.
    PostInstall,
    /// Before a later release's objects are applied.
    PreUpgrade,
    /// After a later release became healthy.
    PostUpgrade,
    /// Before `berth rollback` re-applies a release.
    PreRollback,
    /// After a rollback became healthy.
    PostRollback,
    /// helm's `pre-delete`: berth never uninstalls, so never run.
    PreDelete,
    /// helm's `post-delete`: never run either.
    PostDelete,
    /// `helm test`'s: never applied on a deploy.
    Test,
}

impl Event {
    /// The event as charts spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::PreInstall => "pre-install",
            Event::PostInstall => "post-install",
            Event::PreUpgrade => "pre-upgrade",
            Event::PostUpgrade => "post-upgrade",
            Event::PreRollback => "pre-rollback",
            Event::PostRollback => "post-rollback",
            Event::PreDelete => "pre-delete",
            Event::PostDelete => "post-delete",
            Event::Test => "test",
        }
    }

    /// The event spelt `text` (`test-success` is helm 2's name of `test`).
    fn parse(text: &str) -> Option<Event> {
        Some(match text {
            "pre-install" => Event::PreInstall,
            "post-install" => Event::PostInstall,
            "pre-upgrade" => Event::PreUpgrade,
            "post-upgrade" => Event::PostUpgrade,
            "pre-rollback" => Event::PreRollback,
            "post-rollback" => Event::PostRollback,
            "pre-delete" => Event::PreDelete,
            "post-delete" => Event::PostDelete,
            "test" | "test-success" => Event::Test,
            _ => return None,
        })
    }
}

/// The events a deploy or a rollback runs: one before its changes, one
/// after its rollout is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Around {
    /// Run before anything changes.
    pub pre: Event,
    /// Run once the rollout is healthy.
    pub post: Event,
}

impl Around {
    /// A deploy's: install when the environment has no earlier successful
    /// release, upgrade otherwise.
    pub fn deploy(first: bool) -> Around {
        if first {
            Around {
                pre: Event::PreInstall,
                post: Event::PostInstall,
            }
        } else {
            Around {
                pre: Event::PreUpgrade,
                post: Event::PostUpgrade,
            }
        }
    }

    /// A rollback's (helm runs the target release's rollback hooks).
    pub fn rollback() -> Around {
        Around {
            pre: Event::PreRollback,
            post: Event::PostRollback,
        }
    }
}

/// When a hook's object is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletePolicy {
    /// The object of the same name left by an earlier run is deleted
    /// before the hook is created (the default).
    BeforeHookCreation,
    /// Deleted once every hook of its event succeeded.
    HookSucceeded,
    /// Deleted when it failed.
    HookFailed,
}

impl DeletePolicy {
    fn parse(text: &str) -> Option<DeletePolicy> {
        Some(match text {
            "before-hook-creation" => DeletePolicy::BeforeHookCreation,
            "hook-succeeded" => DeletePolicy::HookSucceeded,
            "hook-failed" => DeletePolicy::HookFailed,
            _ => return None,
        })
    }
}

/// One hook of a chart: its object and when and how it runs.
#[derive(Debug, Clone)]
pub struct Hook {
    /// The object, labelled and pinned like the release's, with its API.
    pub resolved: Resolved,
    /// The events it runs on.
    pub events: Vec<Event>,
    /// Lower runs first.
    pub weight: i32,
    /// Its delete policies (never empty: the default is
    /// `before-hook-creation`).
    pub delete: Vec<DeletePolicy>,
    /// Events in its annotation helm does not know: it never runs on them.
    pub unknown_events: Vec<String>,
}

impl Hook {
    /// `Kind/name`.
    pub fn describe(&self) -> String {
        self.resolved.describe()
    }

    /// Its kind.
    pub fn kind(&self) -> &str {
        &self.resolved.resource.kind
    }

    /// Its name.
    pub fn name(&self) -> String {
        self.resolved.object.name_any()
    }

    /// Whether it has delete policy `policy`.
    pub fn deletes(&self, policy: DeletePolicy) -> bool {
        self.delete.contains(&policy)
    }

    /// Whether it runs on `event`.
    pub fn runs_on(&self, event: Event) -> bool {
        self.events.contains(&event)
    }
}

/// Whether `object` is a hook (annotated [`HOOK_ANNOTATION`]).
pub fn is_hook(object: &DynamicObject) -> bool {
    object.annotations().contains_key(HOOK_ANNOTATION)
}

/// The hook events `object` is annotated with, as written.
fn event_names(object: &DynamicObject) -> Vec<String> {
    list(object.annotations().get(HOOK_ANNOTATION))
}

/// A comma-separated annotation's entries, trimmed, empty ones left out.
fn list(value: Option<&String>) -> Vec<String> {
    value
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Take the hooks out of `objects` (the rest are applied as the release):
/// returned in document order, except `test` hooks, which are dropped
/// (never applied on a deploy, as `helm template --skip-tests` drops them).
pub fn take(objects: &mut Vec<DynamicObject>) -> Vec<DynamicObject> {
    let (hooks, rest): (Vec<_>, Vec<_>) = std::mem::take(objects).into_iter().partition(is_hook);
    *objects = rest;
    hooks
        .into_iter()
        .filter(|h| {
            !event_names(h)
                .iter()
                .any(|e| Event::parse(e) == Some(Event::Test))
        })
        .collect()
}

/// Read `resolved`'s hook annotations. A weight that is not an integer or
/// a delete policy helm does not know is bad input naming the object, the
/// annotation and the fix (helm would silently take weight 0 or ignore
/// the policy).
pub fn parse(resolved: Resolved) -> anyhow::Result<Hook> {
    let object = &resolved.object;
    let name = resolved.describe();
    let annotations = object.annotations();
    let mut events = Vec::new();
    let mut unknown_events = Vec::new();
    for text in event_names(object) {
        match Event::parse(&text) {
            Some(event) if !events.contains(&event) => events.push(event),
            Some(_) => {}
            None => unknown_events.push(text),
        }
    }
    let weight = match annotations.get(WEIGHT_ANNOTATION).map(|w| w.trim()) {
        None | Some("") => 0,
        Some(text) => text.parse::<i32>().map_err(|_| {
            input_error(format!(
                "{name}: its annotation {WEIGHT_ANNOTATION} is {text:?}, not an integer; \
                 write a whole number in quotes, e.g. \"-5\", in the chart"
            ))
        })?,
    };
    let mut delete = Vec::new();
    for text in list(annotations.get(DELETE_POLICY_ANNOTATION)) {
        match DeletePolicy::parse(&text) {
            Some(policy) if !delete.contains(&policy) => delete.push(policy),
            Some(_) => {}
            None => {
                return Err(input_error(format!(
                    "{name}: its annotation {DELETE_POLICY_ANNOTATION} names {text:?}, which is \
                     not a delete policy; use before-hook-creation, hook-succeeded or \
                     hook-failed (comma-separated) in the chart"
                )));
            }
        }
    }
    if delete.is_empty() {
        delete.push(DeletePolicy::BeforeHookCreation);
    }
    Ok(Hook {
        resolved,
        events,
        weight,
        delete,
        unknown_events,
    })
}

/// helm's install order of kinds, which breaks ties between hooks of one
/// weight (kinds not listed come after, alphabetically).
const INSTALL_ORDER: [&str; 36] = [
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
];

/// The hooks of `hooks` that run on `event`, in the order helm runs them:
/// by weight, then by kind (helm's install order), then by name.
pub fn for_event(hooks: &[Hook], event: Event) -> Vec<&Hook> {
    let mut running: Vec<&Hook> = hooks.iter().filter(|h| h.runs_on(event)).collect();
    let rank = |kind: &str| {
        INSTALL_ORDER
            .iter()
            .position(|k| *k == kind)
            .map_or((1, kind.to_string()), |p| (0, format!("{p:04}")))
    };
    running.sort_by_key(|h| (h.weight, rank(h.kind()), h.name()));
    running
}

/// Every event some hook of `hooks` runs on that berth never runs (the
/// delete events), and the events written that helm does not know, each
/// once: what a deploy warns of.
pub fn never_run(hooks: &[Hook]) -> Vec<String> {
    let mut never: BTreeSet<String> = BTreeSet::new();
    for hook in hooks {
        for event in &hook.events {
            if matches!(event, Event::PreDelete | Event::PostDelete) {
                never.insert(format!("{} ({})", event.as_str(), hook.describe()));
            }
        }
        for unknown in &hook.unknown_events {
            never.insert(format!("{unknown:?} ({})", hook.describe()));
        }
    }
    never.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use kube::api::{ApiResource, GroupVersionKind};
    use serde_json::json;

    use super::*;

    fn object(kind: &str, name: &str, annotations: serde_json::Value) -> DynamicObject {
        let api_version = match kind {
            "Job" => "batch/v1",
            _ => "v1",
        };
        serde_json::from_value(json!({
            "apiVersion": api_version, "kind": kind,
            "metadata": {"name": name, "annotations": annotations},
        }))
        .unwrap()
    }

    fn resolved(object: DynamicObject) -> Resolved {
        let types = object.types.clone().unwrap();
        let gvk = GroupVersionKind::try_from(&types).unwrap();
        Resolved {
            object,
            resource: ApiResource::from_gvk(&gvk),
            namespaced: true,
            with_crd: None,
        }
    }

    fn hook(kind: &str, name: &str, annotations: serde_json::Value) -> Hook {
        parse(resolved(object(kind, name, annotations))).unwrap()
    }

    #[test]
    fn hooks_are_taken_out_of_the_applied_objects_and_test_hooks_dropped() {
        let mut objects = vec![
            object("ConfigMap", "settings", json!({})),
            object(
                "Job",
                "migrate",
                json!({HOOK_ANNOTATION: "pre-install,pre-upgrade"}),
            ),
            object("Pod", "smoke", json!({HOOK_ANNOTATION: "test"})),
            object("Pod", "old-smoke", json!({HOOK_ANNOTATION: "test-success"})),
            object("Job", "notify", json!({HOOK_ANNOTATION: "post-upgrade"})),
        ];
        let hooks = take(&mut objects);
        let names = |o: &[DynamicObject]| o.iter().map(|o| o.name_any()).collect::<Vec<_>>();
        assert_eq!(names(&objects), ["settings"]);
        assert_eq!(names(&hooks), ["migrate", "notify"]);
    }

    #[test]
    fn annotations_are_read_with_helms_defaults() {
        let h = hook(
            "Job",
            "migrate",
            json!({HOOK_ANNOTATION: " pre-install , pre-upgrade,crd-install", WEIGHT_ANNOTATION: "-5"}),
        );
        assert_eq!(h.events, [Event::PreInstall, Event::PreUpgrade]);
        assert_eq!(h.unknown_events, ["crd-install"]);
        assert_eq!(h.weight, -5);
        assert_eq!(
            h.delete,
            [DeletePolicy::BeforeHookCreation],
            "the default policy"
        );
        let h = hook(
            "Job",
            "notify",
            json!({HOOK_ANNOTATION: "post-upgrade", DELETE_POLICY_ANNOTATION: "hook-succeeded,hook-failed"}),
        );
        assert_eq!(h.weight, 0);
        assert!(h.deletes(DeletePolicy::HookSucceeded) && h.deletes(DeletePolicy::HookFailed));
        assert!(!h.deletes(DeletePolicy::BeforeHookCreation));
        assert_eq!(
            never_run(&[
                h,
                hook(
                    "Job",
                    "x",
                    json!({HOOK_ANNOTATION: "pre-delete,crd-install"})
                )
            ]),
            ["\"crd-install\" (Job/x)", "pre-delete (Job/x)"]
        );
    }

    #[test]
    fn a_bad_weight_or_delete_policy_is_bad_input_naming_the_object() {
        let bad = |annotations| {
            let e = parse(resolved(object("Job", "migrate", annotations))).unwrap_err();
            assert!(
                matches!(
                    crate::error::kind_of(&e),
                    Some(crate::error::BerthError::Input(_))
                ),
                "{e:#}"
            );
            e.to_string()
        };
        let e = bad(json!({HOOK_ANNOTATION: "pre-upgrade", WEIGHT_ANNOTATION: "first"}));
        assert!(
            e.contains("Job/migrate") && e.contains(WEIGHT_ANNOTATION) && e.contains("\"first\""),
            "{e}"
        );
        let e =
            bad(json!({HOOK_ANNOTATION: "pre-upgrade", DELETE_POLICY_ANNOTATION: "hook-suceeded"}));
        assert!(
            e.contains("Job/migrate")
                && e.contains("hook-suceeded")
                && e.contains("hook-succeeded"),
            "{e}"
        );
    }

    #[test]
    fn an_events_hooks_run_by_weight_then_kind_then_name() {
        let hooks = vec![
            hook("Job", "b-job", json!({HOOK_ANNOTATION: "pre-upgrade"})),
            hook("Job", "a-job", json!({HOOK_ANNOTATION: "pre-upgrade"})),
            hook(
                "ConfigMap",
                "z-config",
                json!({HOOK_ANNOTATION: "pre-upgrade"}),
            ),
            hook("Widget", "w", json!({HOOK_ANNOTATION: "pre-upgrade"})),
            hook("Gadget", "g", json!({HOOK_ANNOTATION: "pre-upgrade"})),
            hook(
                "Job",
                "late",
                json!({HOOK_ANNOTATION: "pre-upgrade", WEIGHT_ANNOTATION: "10"}),
            ),
            hook(
                "Job",
                "early",
                json!({HOOK_ANNOTATION: "pre-install,pre-upgrade", WEIGHT_ANNOTATION: "-10"}),
            ),
            hook("Job", "after", json!({HOOK_ANNOTATION: "post-upgrade"})),
        ];
        let order: Vec<String> = for_event(&hooks, Event::PreUpgrade)
            .iter()
            .map(|h| h.describe())
            .collect();
        assert_eq!(
            order,
            [
                "Job/early",
                "ConfigMap/z-config",
                "Job/a-job",
                "Job/b-job",
                "Gadget/g",
                "Widget/w",
                "Job/late"
            ]
        );
        let install: Vec<String> = for_event(&hooks, Event::PreInstall)
            .iter()
            .map(|h| h.describe())
            .collect();
        assert_eq!(install, ["Job/early"]);
    }

    #[test]
    fn a_first_deploy_runs_install_hooks_and_later_ones_upgrade_hooks() {
        assert_eq!(Around::deploy(true).pre, Event::PreInstall);
        assert_eq!(Around::deploy(true).post, Event::PostInstall);
        assert_eq!(Around::deploy(false).pre, Event::PreUpgrade);
        assert_eq!(Around::deploy(false).post, Event::PostUpgrade);
        assert_eq!(Around::rollback().pre, Event::PreRollback);
    }
}
