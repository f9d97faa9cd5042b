//! Where a Service stands, and the JSON merge patches that switch it to the
//! maintenance pods and back. Pure: values in, values out; the API calls
//! live in [`super`].
//!
//! A switched Service selects only `berth.dev/maintenance: <app>-<env>`, and
//! its own selector is recorded in an annotation by the same patch that
//! switches it, so any state berth leaves behind (a crash, a lost laptop) is
//! one `off` away from the original. Every patch carries the
//! `resourceVersion` it was computed from: the API server refuses it (409)
//! if the Service changed in between.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::api::DynamicObject;
use serde::Serialize;
use serde_json::{Map, Value, json};

/// A Service's `spec.selector`.
pub type Selector = BTreeMap<String, String>;

/// The label of the maintenance pods, valued `<app>-<env>`: the one key of a
/// switched Service's selector. No app selects on it.
pub const POD_LABEL: &str = "berth.dev/maintenance";
/// Annotation holding a switched Service's own selector, as a JSON object.
pub const ORIGINAL_SELECTOR: &str = "berth.dev/maintenance-original-selector";
/// Annotation: when maintenance began (RFC 3339).
pub const SINCE: &str = "berth.dev/maintenance-since";
/// Annotation: who turned maintenance on.
pub const BY: &str = "berth.dev/maintenance-by";
/// Annotation: the page's title.
pub const TITLE: &str = "berth.dev/maintenance-title";
/// Annotation: the page's message.
pub const MESSAGE: &str = "berth.dev/maintenance-message";

/// Every annotation berth writes on a switched Service.
const RECORD: [&str; 5] = [ORIGINAL_SELECTOR, SINCE, BY, TITLE, MESSAGE];

/// The selector of a switched Service of environment `instance`.
pub fn maintenance_selector(instance: &str) -> Selector {
    Selector::from([(POD_LABEL.to_owned(), instance.to_owned())])
}

/// Who turned maintenance on, when, and what the page says, as a Service's
/// annotations record it (each part may be missing from a hand-made record).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// When maintenance began (RFC 3339).
    pub since: Option<String>,
    /// Who turned it on.
    pub by: Option<String>,
    /// The page's title.
    pub title: Option<String>,
    /// The page's message.
    pub message: Option<String>,
}

/// Where a Service stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// It selects its own pods, and carries no maintenance record.
    Serving,
    /// It selects its own pods, but a maintenance record was left on it (its
    /// selector was set since, by hand); `off` removes the record.
    Stale,
    /// It selects the maintenance pods; its own selector is recorded.
    InMaintenance {
        /// The selector `off` restores.
        original: Selector,
    },
    /// It selects the maintenance pods, but no usable record of its own
    /// selector is left; berth cannot restore it by itself.
    Unrecorded {
        /// What is wrong with the record.
        problem: String,
    },
}

impl Standing {
    /// Whether the Service selects the maintenance pods.
    pub fn is_switched(&self) -> bool {
        matches!(
            self,
            Standing::InMaintenance { .. } | Standing::Unrecorded { .. }
        )
    }
}

/// A Service's selector; empty when it has none.
pub fn selector_of(service: &Service) -> Selector {
    service
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default()
}

/// Where `service` stands with respect to the maintenance of `instance`.
pub fn standing(service: &Service, instance: &str) -> Standing {
    let annotations = service.annotations();
    if selector_of(service) != maintenance_selector(instance) {
        return if RECORD.iter().any(|key| annotations.contains_key(*key)) {
            Standing::Stale
        } else {
            Standing::Serving
        };
    }
    let Some(text) = annotations.get(ORIGINAL_SELECTOR) else {
        return Standing::Unrecorded {
            problem: format!("it has no {ORIGINAL_SELECTOR} annotation"),
        };
    };
    match serde_json::from_str::<Selector>(text) {
        Ok(original) if original.is_empty() || original == maintenance_selector(instance) => {
            Standing::Unrecorded {
                problem: format!(
                    "its {ORIGINAL_SELECTOR} annotation records no selector of its own"
                ),
            }
        }
        Ok(original) => Standing::InMaintenance { original },
        Err(e) => Standing::Unrecorded {
            problem: format!(
                "its {ORIGINAL_SELECTOR} annotation is not a JSON object of strings ({e})"
            ),
        },
    }
}

/// The maintenance record on `service`.
pub fn notice_of(service: &Service) -> Notice {
    let annotations = service.annotations();
    let get = |key: &str| annotations.get(key).cloned();
    Notice {
        since: get(SINCE),
        by: get(BY),
        title: get(TITLE),
        message: get(MESSAGE),
    }
}

/// The merge patch of `spec.selector` that turns `from` into exactly `to`:
/// `to`'s entries, and `null` for every key of `from` that `to` lacks.
pub fn selector_patch(from: &Selector, to: &Selector) -> Value {
    let mut patch: Map<String, Value> = to
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    for key in from.keys().filter(|k| !to.contains_key(*k)) {
        patch.insert(key.clone(), Value::Null);
    }
    Value::Object(patch)
}

/// A merge patch's `metadata`: the `resourceVersion` precondition, and `annotations`.
fn metadata_patch(service: &Service, annotations: Map<String, Value>) -> Value {
    let mut metadata = json!({ "annotations": annotations });
    if let Some(version) = &service.metadata.resource_version {
        metadata["resourceVersion"] = json!(version);
    }
    metadata
}

/// The merge patch that puts `service` in maintenance for `instance`, with
/// `notice` as its record. One patch records the Service's own selector and
/// switches it, so no state exists where it is switched but unrecorded.
///
/// A Service already in maintenance keeps its recorded selector, `since` and
/// `by`; only the page's title and message are updated. `Ok(None)`: nothing
/// to change. `Err`: the Service cannot be switched (no selector, or it
/// selects the maintenance pods with no record of its own selector).
pub fn switch_patch(
    service: &Service,
    instance: &str,
    notice: &Notice,
) -> Result<Option<Value>, String> {
    let annotations = service.annotations();
    let mut record = Map::new();
    match standing(service, instance) {
        Standing::Unrecorded { problem } => Err(format!(
            "it already selects the maintenance pods, but {problem}"
        )),
        Standing::InMaintenance { .. } => {
            for (key, value) in [
                (SINCE, &notice.since),
                (BY, &notice.by),
                (TITLE, &notice.title),
                (MESSAGE, &notice.message),
            ] {
                let keep = matches!(key, SINCE | BY) && annotations.contains_key(key);
                if let Some(value) = value
                    && !keep
                    && annotations.get(key) != Some(value)
                {
                    record.insert(key.to_owned(), json!(value));
                }
            }
            Ok(
                (!record.is_empty())
                    .then(|| json!({ "metadata": metadata_patch(service, record) })),
            )
        }
        Standing::Serving | Standing::Stale => {
            let own = selector_of(service);
            if own.is_empty() {
                return Err("it has no selector (its endpoints are managed elsewhere)".into());
            }
            let own_json = serde_json::to_string(&own).map_err(|e| e.to_string())?;
            record.insert(ORIGINAL_SELECTOR.to_owned(), json!(own_json));
            for key in [SINCE, BY, TITLE, MESSAGE] {
                record.insert(key.to_owned(), Value::Null);
            }
            for (key, value) in [
                (SINCE, &notice.since),
                (BY, &notice.by),
                (TITLE, &notice.title),
                (MESSAGE, &notice.message),
            ] {
                if let Some(value) = value {
                    record.insert(key.to_owned(), json!(value));
                }
            }
            Ok(Some(json!({
                "metadata": metadata_patch(service, record),
                "spec": { "selector": selector_patch(&own, &maintenance_selector(instance)) },
            })))
        }
    }
}

/// The merge patch that takes `service` out of the maintenance of
/// `instance`: its recorded selector restored exactly, and the record
/// removed. A Service whose selector was set since keeps it; only the stale
/// record goes. `Ok(None)`: nothing to do. `Err`: it selects the maintenance
/// pods with no usable record of its own selector.
pub fn restore_patch(service: &Service, instance: &str) -> Result<Option<Value>, String> {
    let removal: Map<String, Value> = RECORD
        .iter()
        .map(|key| ((*key).to_owned(), Value::Null))
        .collect();
    match standing(service, instance) {
        Standing::Serving => Ok(None),
        Standing::Stale => Ok(Some(
            json!({ "metadata": metadata_patch(service, removal) }),
        )),
        Standing::InMaintenance { original } => Ok(Some(json!({
            "metadata": metadata_patch(service, removal),
            "spec": { "selector": selector_patch(&selector_of(service), &original) },
        }))),
        Standing::Unrecorded { problem } => Err(problem),
    }
}

/// `rendered`, a Service about to be applied, as it must be applied while
/// its live self (`live`) is in maintenance: still selecting the
/// maintenance pods, with the rendered selector recorded for `off` to
/// restore. `None` when it applies as rendered (the live Service serves its
/// pods, or the rendered one has no selector).
pub fn hold(rendered: &DynamicObject, live: &Service) -> Option<DynamicObject> {
    let instance = rendered.labels().get(crate::cluster::INSTANCE_LABEL)?;
    if selector_of(live) != maintenance_selector(instance) {
        return None;
    }
    let own: Selector = rendered
        .data
        .pointer("/spec/selector")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .filter(|s: &Selector| !s.is_empty())?;
    let mut held = rendered.clone();
    let annotations = held.annotations_mut();
    annotations.insert(
        ORIGINAL_SELECTOR.to_owned(),
        serde_json::to_string(&own).ok()?,
    );
    for key in [SINCE, BY, TITLE, MESSAGE] {
        if let Some(value) = live.annotations().get(key) {
            annotations.insert(key.to_owned(), value.clone());
        }
    }
    held.data["spec"]["selector"] = json!(maintenance_selector(instance));
    Some(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(selector: &[(&str, &str)], annotations: &[(&str, &str)]) -> Service {
        serde_json::from_value(json!({
            "metadata": {
                "name": "frontend",
                "resourceVersion": "42",
                "annotations": annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            },
            "spec": { "selector": selector.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>() },
        }))
        .unwrap()
    }

    /// `service` with a merge patch applied (RFC 7386), as the API server would.
    fn patched(service: &Service, patch: &Value) -> Service {
        fn merge(target: &mut Value, patch: &Value) {
            let Value::Object(patch) = patch else {
                *target = patch.clone();
                return;
            };
            if !target.is_object() {
                *target = json!({});
            }
            let target = target.as_object_mut().unwrap();
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        let mut value = serde_json::to_value(service).unwrap();
        merge(&mut value, patch);
        serde_json::from_value(value).unwrap()
    }

    fn notice(title: &str) -> Notice {
        Notice {
            since: Some("2026-11-22T10:00:00Z".into()),
            by: Some("ada@box".into()),
            title: Some(title.into()),
            message: Some("back soon".into()),
        }
    }

    const APP: [(&str, &str); 2] = [("app", "frontend"), ("tier", "web")];

    #[test]
    fn switching_records_the_own_selector_and_selects_only_the_maintenance_pods() {
        let before = service(&APP, &[("team", "web")]);
        let patch = switch_patch(&before, "wb-test", &notice("Upgrade"))
            .unwrap()
            .unwrap();
        assert_eq!(patch["metadata"]["resourceVersion"], "42");
        assert_eq!(
            patch["spec"]["selector"],
            json!({"app": null, "tier": null, POD_LABEL: "wb-test"})
        );
        let after = patched(&before, &patch);
        assert_eq!(selector_of(&after), maintenance_selector("wb-test"));
        assert_eq!(
            standing(&after, "wb-test"),
            Standing::InMaintenance {
                original: Selector::from(APP.map(|(k, v)| (k.into(), v.into())))
            }
        );
        assert_eq!(notice_of(&after), notice("Upgrade"));
        assert_eq!(after.annotations()["team"], "web", "other annotations stay");
        // a Service of another environment is not in this one's maintenance
        assert_eq!(standing(&after, "wb-prod"), Standing::Stale);
    }

    #[test]
    fn switching_twice_keeps_the_recorded_selector_since_and_by() {
        let on = patched(
            &service(&APP, &[]),
            &switch_patch(&service(&APP, &[]), "wb-test", &notice("First"))
                .unwrap()
                .unwrap(),
        );
        let mut later = notice("Second");
        later.since = Some("2026-11-22T11:00:00Z".into());
        later.by = Some("bob@laptop".into());
        let patch = switch_patch(&on, "wb-test", &later).unwrap().unwrap();
        assert!(
            patch.get("spec").is_none(),
            "the selector is left alone: {patch}"
        );
        assert_eq!(
            patch["metadata"]["annotations"],
            json!({ TITLE: "Second" }),
            "only what changed"
        );
        let twice = patched(&on, &patch);
        assert_eq!(
            twice.annotations()[ORIGINAL_SELECTOR],
            on.annotations()[ORIGINAL_SELECTOR]
        );
        assert_eq!(twice.annotations()[SINCE], "2026-11-22T10:00:00Z");
        assert_eq!(twice.annotations()[BY], "ada@box");
        assert_eq!(
            switch_patch(&twice, "wb-test", &later).unwrap(),
            None,
            "nothing left to change"
        );
    }

    #[test]
    fn restoring_brings_back_the_exact_selector_and_removes_the_record() {
        let before = service(&APP, &[("team", "web")]);
        let on = patched(
            &before,
            &switch_patch(&before, "wb-test", &notice("x"))
                .unwrap()
                .unwrap(),
        );
        let off = patched(&on, &restore_patch(&on, "wb-test").unwrap().unwrap());
        assert_eq!(selector_of(&off), selector_of(&before));
        assert_eq!(off.annotations(), before.annotations());
        assert_eq!(standing(&off, "wb-test"), Standing::Serving);
        assert_eq!(restore_patch(&off, "wb-test").unwrap(), None);
    }

    #[test]
    fn a_hand_made_half_done_state_restores_from_the_annotation_alone() {
        let half = service(
            &[(POD_LABEL, "wb-test")],
            &[(ORIGINAL_SELECTOR, r#"{"app":"frontend"}"#)],
        );
        let off = patched(&half, &restore_patch(&half, "wb-test").unwrap().unwrap());
        assert_eq!(
            selector_of(&off),
            Selector::from([("app".into(), "frontend".into())])
        );
        assert!(off.annotations().is_empty());
    }

    #[test]
    fn a_selector_set_since_is_kept_and_only_the_stale_record_goes() {
        let stale = service(
            &[("app", "frontend-v2")],
            &[(ORIGINAL_SELECTOR, r#"{"app":"frontend"}"#), (TITLE, "x")],
        );
        assert_eq!(standing(&stale, "wb-test"), Standing::Stale);
        let patch = restore_patch(&stale, "wb-test").unwrap().unwrap();
        assert!(patch.get("spec").is_none(), "{patch}");
        let off = patched(&stale, &patch);
        assert_eq!(
            selector_of(&off),
            Selector::from([("app".into(), "frontend-v2".into())])
        );
        assert!(off.annotations().is_empty());
        // switching it again records the selector it has now
        let on = patched(
            &stale,
            &switch_patch(&stale, "wb-test", &notice("x"))
                .unwrap()
                .unwrap(),
        );
        assert_eq!(
            on.annotations()[ORIGINAL_SELECTOR],
            r#"{"app":"frontend-v2"}"#
        );
    }

    #[test]
    fn a_switched_service_without_a_usable_record_is_refused_not_guessed() {
        for annotations in [
            vec![],
            vec![(ORIGINAL_SELECTOR, "not json")],
            vec![(ORIGINAL_SELECTOR, "{}")],
            vec![(ORIGINAL_SELECTOR, r#"{"berth.dev/maintenance":"wb-test"}"#)],
        ] {
            let orphan = service(&[(POD_LABEL, "wb-test")], &annotations);
            assert!(matches!(
                standing(&orphan, "wb-test"),
                Standing::Unrecorded { .. }
            ));
            assert!(restore_patch(&orphan, "wb-test").is_err());
            let refused = switch_patch(&orphan, "wb-test", &notice("x")).unwrap_err();
            assert!(refused.contains("maintenance pods"), "{refused}");
        }
    }

    #[test]
    fn a_service_without_a_selector_cannot_be_switched() {
        let external = service(&[], &[]);
        let refused = switch_patch(&external, "wb-test", &notice("x")).unwrap_err();
        assert!(refused.contains("no selector"), "{refused}");
    }

    #[test]
    fn selector_patches_turn_one_map_into_exactly_the_other() {
        let from = Selector::from([("a".into(), "1".into()), ("b".into(), "2".into())]);
        let to = Selector::from([("b".into(), "3".into()), ("c".into(), "4".into())]);
        assert_eq!(
            selector_patch(&from, &to),
            json!({"a": null, "b": "3", "c": "4"})
        );
    }

    fn rendered(selector: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "frontend",
                "labels": { crate::cluster::INSTANCE_LABEL: "wb-test" },
                "annotations": { "team": "web" },
            },
            "spec": { "selector": selector, "ports": [{ "port": 80 }] },
        }))
        .unwrap()
    }

    #[test]
    fn a_deploy_keeps_a_service_in_maintenance_and_records_the_new_selector() {
        let live = service(
            &[(POD_LABEL, "wb-test")],
            &[
                (ORIGINAL_SELECTOR, r#"{"app":"frontend"}"#),
                (SINCE, "2026-11-22T10:00:00Z"),
                (TITLE, "Upgrade"),
            ],
        );
        let held = hold(&rendered(json!({"app": "frontend", "v": "2"})), &live).unwrap();
        assert_eq!(
            held.data["spec"]["selector"],
            json!({ POD_LABEL: "wb-test" })
        );
        assert_eq!(held.data["spec"]["ports"], json!([{ "port": 80 }]));
        let annotations = held.annotations();
        assert_eq!(
            annotations[ORIGINAL_SELECTOR],
            r#"{"app":"frontend","v":"2"}"#
        );
        assert_eq!(annotations[SINCE], "2026-11-22T10:00:00Z");
        assert_eq!(annotations[TITLE], "Upgrade");
        assert_eq!(annotations["team"], "web");
        // applied as rendered when the live Service serves its pods
        assert!(hold(&rendered(json!({"app": "frontend"})), &service(&APP, &[])).is_none());
        // or when the rendered Service has no selector
        assert!(hold(&rendered(json!({})), &live).is_none());
        // or belongs to another environment's maintenance
        let other = service(&[(POD_LABEL, "wb-prod")], &[]);
        assert!(hold(&rendered(json!({"app": "frontend"})), &other).is_none());
    }
}
