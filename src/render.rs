//! Rendering an environment (kustomize through kubectl or standalone, or helm) and pinning images in memory.
//!
//! [`render`] runs `kubectl kustomize`, `kustomize build` or `helm template` and reads the objects
//! they print; [`label`] and [`pin_images`] then change those objects in
//! memory only. Nothing here writes to the deploy repo.

mod chart_source;
mod images;
mod incompatible;
pub mod notes;
mod target;
mod tool;
mod version;

use std::collections::{BTreeMap, BTreeSet};

use kube::api::DynamicObject;
use serde::Deserialize;
use serde_json::Value;

use crate::cluster::crds::FROM_CHART_CRDS;
use crate::cluster::{INSTANCE_LABEL as INSTANCE, instance};
use crate::config::{Config, Environment, Source};
use crate::error::input_error;
use crate::image_ref;
pub use images::{ContainerImage, ImageCheck};
pub use target::{Target, kube_version};
pub use tool::TOOL_TIMEOUT;
use tool::Tool;

/// The label saying berth applied an object, and its value.
const MANAGED_BY: &str = crate::cluster::MANAGED_BY.0;
const BERTH: &str = crate::cluster::MANAGED_BY.1;

/// Kinds that live outside any namespace. berth clears `metadata.namespace`
/// on them and puts every other object in the environment's namespace.
const CLUSTER_SCOPED: &[&str] = &[
    "APIService",
    "CSIDriver",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "IngressClass",
    "MutatingWebhookConfiguration",
    "Namespace",
    "PersistentVolume",
    "PriorityClass",
    "RuntimeClass",
    "StorageClass",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration",
    "VolumeAttachment",
];

/// A container whose image [`pin_images`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedImage {
    /// The object holding the container, as `Kind/name` (e.g. `Deployment/frontend`).
    pub object: String,
    /// The container's name.
    pub container: String,
    /// The image as rendered.
    pub from: String,
    /// The image as pinned: `<repository>:<sha>`, or the reference [`Pins`] gave.
    pub to: String,
}

/// What each of the app's image repositories is pinned to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pins(BTreeMap<String, String>);

impl Pins {
    /// Every one of `repositories` at `:<sha>`.
    pub fn at_sha(repositories: &[String], sha: &str) -> Pins {
        Pins(
            repositories
                .iter()
                .map(|r| (r.clone(), format!("{r}:{sha}")))
                .collect(),
        )
    }

    /// Pin `repository` to the full `reference`, e.g. `repo:sha@sha256:...`
    /// by digest.
    pub fn set(&mut self, repository: String, reference: String) {
        self.0.insert(repository, reference);
    }

    /// The reference `repository` is pinned to, if it is one of the app's.
    fn get(&self, repository: &str) -> Option<&String> {
        self.0.get(repository)
    }
}

/// Render environment `env_name`'s objects, in document order, each in the
/// environment's namespace unless its kind is cluster-scoped.
///
/// Kustomize overlays run through `kubectl kustomize` (the `BERTH_KUBECTL`
/// environment variable overrides the binary), or `<kustomize> build` with
/// `render.kustomize` (`BERTH_KUSTOMIZE` overrides); helm charts through
/// `helm template --skip-tests --include-crds` (`BERTH_HELM` overrides): a
/// chart's test pods are for `helm test`, not for every deploy; the CRDs in
/// its `crds/` are rendered too, marked [`FROM_CHART_CRDS`]. A tool that fails, output that is
/// not a list of Kubernetes objects, or an object in another namespace is an
/// input error naming the overlay or chart and the fix; the tool's errors name
/// the binary and version that ran, and a kustomization that kustomize v5
/// refuses for a known v4-to-v5 incompatibility says so and how to get out. A
/// tool still running after [`TOOL_TIMEOUT`] is killed, an input error too.
///
/// A chart renders for `target`, the cluster it deploys to ([`Target`]:
/// its version and API versions for `.Capabilities`, its context for
/// `lookup`); without one (no cluster at hand), for helm's default cluster,
/// `lookup` finding nothing. Kustomize ignores it.
pub async fn render(
    config: &Config,
    env_name: &str,
    env: &Environment,
    target: Option<&Target>,
) -> anyhow::Result<Vec<DynamicObject>> {
    let key = match env.source {
        Source::Kustomize { .. } => format!("environments.{env_name}.overlay"),
        Source::Helm { .. } => format!("environments.{env_name}.chart"),
    };
    render_source(config, env_name, &env.source, &key, &env.namespace, target).await
}

/// Render `source` (berth.yaml's key `key`, for messages) for environment
/// `env_name` as [`render`] does, every namespaced object in `namespace`:
/// the environment's overlay or chart, or another directory rendered with
/// the same tools (`migrate.overlay`).
pub async fn render_source(
    config: &Config,
    env_name: &str,
    source: &Source,
    key: &str,
    namespace: &str,
    target: Option<&Target>,
) -> anyhow::Result<Vec<DynamicObject>> {
    let chart = match source {
        Source::Helm { chart, .. } => Some(chart_source::prepare(chart, key).await?),
        Source::Kustomize { .. } => None,
    };
    let chart_path = chart.as_ref().map(|prepared| prepared.path.as_path());
    let tool = Tool::for_source(config, source, chart_path, key, namespace, target);
    let output = tool.run(TOOL_TIMEOUT).await?;
    let mut objects = match parse_objects(&output, &tool.shown) {
        Ok(objects) => objects,
        Err(error) => {
            let version = tool.version().await;
            return Err(input_error(format!("{error}\nrendered by {version}")));
        }
    };
    place_in_namespace(&mut objects, env_name, namespace, noun(source))?;
    Ok(objects)
}

/// What `source` is called in messages: `overlay` or `chart`.
pub fn noun(source: &Source) -> &'static str {
    match source {
        Source::Kustomize { .. } => "overlay",
        Source::Helm { .. } => "chart",
    }
}

/// Whether environment `env` renders a helm chart, for itself or its
/// migration (`migrate.overlay`): then it needs its cluster's [`Target`].
pub fn uses_a_chart(env: &Environment) -> bool {
    let migration = match &env.migrate {
        Some(crate::config::MigrationSource::Overlay(overlay)) => Some(&overlay.source),
        _ => None,
    };
    [Some(&env.source), migration]
        .into_iter()
        .flatten()
        .any(|source| matches!(source, Source::Helm { .. }))
}

/// The chart environment `env_name` renders, as its release records it
/// (name, version, where it comes from, digests); `None` for an overlay.
/// A remote chart is read from berth's cache, where [`render`] pulled it.
pub async fn chart_record(
    config: &Config,
    env_name: &str,
    env: &Environment,
) -> anyhow::Result<Option<crate::cluster::release::ChartRecord>> {
    match &env.source {
        Source::Helm { chart, .. } => {
            let key = format!("environments.{env_name}.chart");
            Ok(Some(chart_source::record(config, chart, &key).await?))
        }
        Source::Kustomize { .. } => Ok(None),
    }
}

/// Label every object `app.kubernetes.io/managed-by=berth` and
/// `app.kubernetes.io/instance=<app>-<env_name>`, and the pod templates of
/// workloads too. Selectors are never changed, and a pod template label that
/// its workload's selector uses is left alone (changing it would orphan the
/// pods); so an instance label in a selector keeps the chart's value on the
/// template. `managed-by=berth` is on every template, since berth finds the
/// pods of its workloads by it ([`crate::cluster::pods_selector`]): a
/// selector that pins `managed-by` to another value is refused.
pub fn label(objects: &mut [DynamicObject], app: &str, env_name: &str) -> anyhow::Result<()> {
    let instance = instance(app, env_name);
    let labels = [(MANAGED_BY, BERTH), (INSTANCE, instance.as_str())];
    for object in objects {
        let metadata_labels = object.metadata.labels.get_or_insert_default();
        for (key, value) in labels {
            metadata_labels.insert(key.to_owned(), value.to_owned());
        }
        let Some(template_pointer) = pod_template_pointer(kind_of(object)) else {
            continue;
        };
        let selector_pointer = format!(
            "{}/selector",
            template_pointer.trim_end_matches("/template")
        );
        let selected = selector_keys(object.data.pointer(&selector_pointer));
        let name = object_ref(object);
        let Some(template) = object.data.pointer_mut(template_pointer) else {
            continue;
        };
        let template_labels = object_entry(object_entry(template, "metadata"), "labels");
        let Some(template_labels) = template_labels.as_object_mut() else {
            continue;
        };
        for (key, value) in labels {
            if !selected.contains(key) {
                template_labels.insert(key.to_owned(), Value::String(value.to_owned()));
            }
        }
        let managed_by = template_labels.get(MANAGED_BY).and_then(Value::as_str);
        if managed_by != Some(BERTH) {
            return Err(input_error(format!(
                "{name}: its selector uses the label {MANAGED_BY} (pod template value {}), \
                 which berth must set to `{BERTH}` on every pod template to watch the pods; \
                 remove {MANAGED_BY} from the selector in the overlay or chart \
                 (a selector cannot change in place: the workload must be recreated)",
                managed_by.map_or("unset".to_owned(), |v| format!("`{v}`"))
            )));
        }
    }
    Ok(())
}

/// Pin every container and init container whose image repository is one of
/// `pins`' to its reference, in the pod specs of Deployments,
/// StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs and Pods. Other
/// images are untouched. Returns what changed, in document order.
///
/// Repositories compare exactly as written (`nginx` is not
/// `docker.io/library/nginx`).
pub fn pin_images(objects: &mut [DynamicObject], pins: &Pins) -> Vec<PinnedImage> {
    let mut pinned = Vec::new();
    for object in objects {
        let Some(pointer) = pod_spec_pointer(kind_of(object)) else {
            continue;
        };
        let name = object_ref(object);
        let Some(spec) = object.data.pointer_mut(&pointer) else {
            continue;
        };
        for list in ["initContainers", "containers"] {
            let Some(Value::Array(containers)) = spec.get_mut(list) else {
                continue;
            };
            for container in containers {
                let Some(image) = container.get("image").and_then(Value::as_str) else {
                    continue;
                };
                let Some(to) = pins.get(image_ref::repository(image)).cloned() else {
                    continue;
                };
                pinned.push(PinnedImage {
                    object: name.clone(),
                    container: container
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    from: image.to_owned(),
                    to: to.clone(),
                });
                container["image"] = Value::String(to);
            }
        }
    }
    pinned
}

/// Every container and init container image in the pod specs of `objects`
/// (the kinds [`pin_images`] pins), in document order.
pub fn container_images(objects: &[DynamicObject]) -> Vec<ContainerImage> {
    let mut images = Vec::new();
    for object in objects {
        let Some(spec) = pod_spec_pointer(kind_of(object)).and_then(|p| object.data.pointer(&p))
        else {
            continue;
        };
        for list in ["initContainers", "containers"] {
            for container in spec
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(image) = container.get("image").and_then(Value::as_str) else {
                    continue;
                };
                images.push(ContainerImage {
                    object: object_ref(object),
                    container: container
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    image: image.to_owned(),
                });
            }
        }
    }
    images
}

/// Check berth.yaml's `images:` against environment `env`'s `containers`
/// (rendered and pinned, [`container_images`]): `pinned` are the images
/// pinned in the render and the migration; `migrate.image` and an assets
/// image count as used too.
pub fn check_images(
    config: &Config,
    env: &Environment,
    containers: &[ContainerImage],
    pinned: &[&PinnedImage],
) -> ImageCheck {
    let mut used: BTreeSet<&str> = pinned
        .iter()
        .map(|p| image_ref::repository(&p.from))
        .collect();
    if let Some(crate::config::MigrationSource::Built(migrate)) = &env.migrate {
        used.insert(&migrate.image);
    }
    if let Some(crate::config::AssetSource::Image { repository, .. }) =
        env.assets.as_ref().map(|assets| &assets.from)
    {
        used.insert(repository);
    }
    images::check(&config.images, &used, containers)
}

/// Read the objects in a multi-document YAML stream printed by `shown`.
/// Empty documents are skipped and `List`s are expanded. An object helm
/// printed from a chart's `crds/` directory (its `# Source:` comment says
/// so) is annotated [`FROM_CHART_CRDS`] with that file.
pub(crate) fn parse_objects(text: &str, shown: &str) -> anyhow::Result<Vec<DynamicObject>> {
    let mut objects = Vec::new();
    let mut index = 0;
    for (source, chunk) in documents(text) {
        let from_crds = source.filter(|path| in_chart_crds(path));
        let first = objects.len();
        for document in serde_norway::Deserializer::from_str(chunk) {
            index += 1;
            let place = format!("document {index} printed by `{shown}`");
            let value = Value::deserialize(document)
                .map_err(|error| input_error(format!("{place} is not valid YAML: {error}")))?;
            match value {
                Value::Null => {}
                Value::Object(ref map) if map.get("kind") == Some(&Value::from("List")) => {
                    let items = map.get("items").and_then(Value::as_array);
                    for (item_index, item) in items.into_iter().flatten().enumerate() {
                        let place = format!("item {} of {place}", item_index + 1);
                        objects.push(to_object(item.clone(), &place)?);
                    }
                }
                value => objects.push(to_object(value, &place)?),
            }
        }
        for object in objects.iter_mut().skip(first) {
            if let Some(path) = from_crds {
                object
                    .metadata
                    .annotations
                    .get_or_insert_default()
                    .insert(FROM_CHART_CRDS.to_owned(), path.to_owned());
            }
        }
    }
    Ok(objects)
}

/// `text` cut before each document marker (a line `---`), each piece with
/// the file helm named in its `# Source: FILE` comment, if any. What comes
/// before the first marker is a piece only when it holds more than comments.
fn documents(text: &str) -> Vec<(Option<&str>, &str)> {
    let mut starts = vec![0];
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let marker = line.strip_prefix("---").is_some_and(|rest| {
            rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_whitespace())
        });
        if marker && offset > 0 {
            starts.push(offset);
        }
        offset += line.len();
    }
    starts.push(text.len());
    starts
        .windows(2)
        .map(|w| &text[w[0]..w[1]])
        .enumerate()
        .filter(|(i, chunk)| {
            *i > 0
                || chunk
                    .lines()
                    .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .map(|(_, chunk)| {
            let source = chunk
                .lines()
                .find_map(|l| l.strip_prefix("# Source: "))
                .map(str::trim);
            (source, chunk)
        })
        .collect()
}

/// Whether helm's `# Source:` path `path` (`CHART/crds/FILE`, or
/// `CHART/charts/SUB/crds/FILE` for a dependency's) is in a chart's `crds/`.
fn in_chart_crds(path: &str) -> bool {
    let mut parts: Vec<&str> = path.split('/').skip(1).collect();
    while parts.len() > 2 && parts[0] == "charts" {
        parts.drain(..2);
    }
    parts.len() > 1 && parts[0] == "crds"
}

/// One rendered document as an object; it must have apiVersion, kind and metadata.name.
fn to_object(value: Value, place: &str) -> anyhow::Result<DynamicObject> {
    let text = |pointer: &str| value.pointer(pointer).and_then(Value::as_str).unwrap_or("");
    let missing: Vec<&str> = [
        ("/apiVersion", "apiVersion"),
        ("/kind", "kind"),
        ("/metadata/name", "metadata.name"),
    ]
    .into_iter()
    .filter(|(pointer, _)| text(pointer).is_empty())
    .map(|(_, field)| field)
    .collect();
    if !missing.is_empty() {
        let kind = text("/kind");
        let what = if kind.is_empty() {
            String::new()
        } else {
            format!(" ({kind})")
        };
        return Err(input_error(format!(
            "{place}{what} has no {}; every rendered document must be a Kubernetes object \
             with apiVersion, kind and metadata.name (berth does not support generateName)",
            missing.join(", ")
        )));
    }
    serde_json::from_value(value).map_err(|error| {
        input_error(format!(
            "{place} is not a valid Kubernetes object: {error}; fix it in the overlay or chart"
        ))
    })
}

/// Put every namespaced object in `namespace`; clear it on cluster-scoped ones.
/// An object that names another namespace is an input error naming the
/// `noun` (overlay or chart) to fix.
fn place_in_namespace(
    objects: &mut [DynamicObject],
    env_name: &str,
    namespace: &str,
    noun: &str,
) -> anyhow::Result<()> {
    for object in objects {
        if CLUSTER_SCOPED.contains(&kind_of(object)) {
            object.metadata.namespace = None;
            continue;
        }
        match &object.metadata.namespace {
            Some(theirs) if theirs != namespace => {
                return Err(input_error(format!(
                    "{} is in namespace `{theirs}`, but environment `{env_name}` deploys to \
                     `{namespace}`; remove `namespace: {theirs}` from the {noun} \
                     (berth sets the namespace), or change environments.{env_name}.namespace \
                     in berth.yaml",
                    object_ref(object)
                )));
            }
            _ => object.metadata.namespace = Some(namespace.to_owned()),
        }
    }
    Ok(())
}

/// The object's kind, or "" when it has none.
fn kind_of(object: &DynamicObject) -> &str {
    object
        .types
        .as_ref()
        .map_or("", |types| types.kind.as_str())
}

/// `Kind/name`, as kubectl writes it.
fn object_ref(object: &DynamicObject) -> String {
    format!(
        "{}/{}",
        kind_of(object),
        object.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Where a workload of `kind` keeps its pod template, as a JSON pointer into its data.
fn pod_template_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => Some("/spec/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

/// Where an object of `kind` keeps its pod spec, as a JSON pointer into its data.
fn pod_spec_pointer(kind: &str) -> Option<String> {
    match kind {
        "Pod" => Some("/spec".to_owned()),
        kind => pod_template_pointer(kind).map(|template| format!("{template}/spec")),
    }
}

/// The label keys a selector uses (`matchLabels` and `matchExpressions`).
fn selector_keys(selector: Option<&Value>) -> BTreeSet<String> {
    let Some(selector) = selector else {
        return BTreeSet::new();
    };
    let match_labels = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|labels| labels.keys().cloned());
    let match_expressions = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|expression| expression.get("key").and_then(Value::as_str))
        .map(str::to_owned);
    match_labels.chain(match_expressions).collect()
}

/// `value[key]`, created as an empty map if missing or null. `value` must be a map
/// (or null, which becomes one); anything else is returned unchanged.
fn object_entry<'a>(value: &'a mut Value, key: &str) -> &'a mut Value {
    if value.is_null() {
        *value = Value::Object(serde_json::Map::new());
    }
    let Value::Object(map) = value else {
        return value;
    };
    let entry = map.entry(key).or_insert(Value::Null);
    if entry.is_null() {
        *entry = Value::Object(serde_json::Map::new());
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::version::Renderer;
    use super::*;
    use crate::config::{Chart, Kustomize, MigrationSource, RolloutSettings};
    use crate::error::exit_code_of;
    use std::path::Path;
    use std::process::ExitCode;
    use std::time::Duration;

    /// Objects from inline YAML, as `render` reads them.
    fn objects(yaml: &str) -> Vec<DynamicObject> {
        parse_objects(yaml, "test").unwrap()
    }

    /// The input error's text; it must exit 2.
    fn input_error_text(result: anyhow::Result<impl std::fmt::Debug>) -> String {
        let error = result.unwrap_err();
        assert_eq!(exit_code_of(&error), ExitCode::from(2), "{error:#}");
        format!("{error:#}")
    }

    /// The image string at JSON `pointer` in the object's data.
    fn image<'a>(object: &'a DynamicObject, pointer: &str) -> &'a str {
        object
            .data
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap()
    }

    const WORKLOADS: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: { name: web, labels: { team: shop } }
spec:
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      initContainers:
        - { name: wait, image: 127.0.0.1:25000/shop/web:old }
      containers:
        - { name: web, image: 127.0.0.1:25000/shop/web:latest }
        - { name: proxy, image: 127.0.0.1:25000/proxy:1.2 }
        - { name: sidecar, image: 'registry.example.com/shop/worker@sha256:0123abcd' }
---
---
apiVersion: batch/v1
kind: CronJob
metadata: { name: nightly }
spec:
  schedule: '0 3 * * *'
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
            - { name: job, image: 'registry.example.com/shop/worker' }
---
apiVersion: apps/v1
kind: StatefulSet
metadata: { name: db }
spec:
  selector:
    matchExpressions: [{ key: app.kubernetes.io/instance, operator: In, values: [shop] }]
  template:
    metadata:
      labels: { app.kubernetes.io/instance: shop }
    spec:
      containers:
        - { name: db, image: postgres:15 }
---
apiVersion: v1
kind: Pod
metadata: { name: debug }
spec:
  containers:
    - { name: shell, image: registry.example.com/shop/worker:v1 }
  ephemeralContainers:
    - { name: probe, image: registry.example.com/shop/worker:v1 }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: settings }
data: { image: registry.example.com/shop/worker:v1 }
";

    #[test]
    fn documents_are_read_in_order_skipping_empty_ones() {
        let objects = objects(WORKLOADS);
        let refs: Vec<String> = objects.iter().map(object_ref).collect();
        assert_eq!(
            refs,
            [
                "Deployment/web",
                "CronJob/nightly",
                "StatefulSet/db",
                "Pod/debug",
                "ConfigMap/settings"
            ]
        );
        assert_eq!(objects[0].types.as_ref().unwrap().api_version, "apps/v1");
        assert_eq!(objects[0].metadata.labels.as_ref().unwrap()["team"], "shop");
    }

    #[test]
    fn lists_are_expanded() {
        let objects = objects(
            "apiVersion: v1\nkind: List\nitems:\n\
             - { apiVersion: v1, kind: ConfigMap, metadata: { name: a } }\n\
             - { apiVersion: v1, kind: Secret, metadata: { name: b } }\n",
        );
        let refs: Vec<String> = objects.iter().map(object_ref).collect();
        assert_eq!(refs, ["ConfigMap/a", "Secret/b"]);
    }

    #[test]
    fn objects_helm_printed_from_a_charts_crds_are_marked_with_their_file() {
        let printed = "---\n# Source: shop/crds/widgets.yaml\n\
            apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: { name: widgets.x.io }\n\
            ---\n# Source: shop/charts/db/crds/backups.yaml\n\
            apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: { name: backups.x.io }\n\
            ---\n# Source: shop/templates/crds/extra.yaml\n\
            apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: { name: extras.x.io }\n\
            ---\n# Source: shop/templates/widget.yaml\napiVersion: x.io/v1\nkind: Widget\nmetadata: { name: w }\n";
        let objects = objects(printed);
        let marks: Vec<Option<&str>> = objects
            .iter()
            .map(|o| {
                o.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(FROM_CHART_CRDS))
                    .map(String::as_str)
            })
            .collect();
        assert_eq!(
            marks,
            [
                Some("shop/crds/widgets.yaml"),
                Some("shop/charts/db/crds/backups.yaml"),
                None,
                None
            ]
        );
        // a kustomize stream: nothing marked, documents counted as before
        let text = input_error_text(parse_objects(
            "# a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: { name: a }\n--- \nkind: Secret\n",
            "t",
        ));
        assert!(
            text.contains("document 2 printed by `t` (Secret)"),
            "{text}"
        );
    }

    #[test]
    fn a_document_that_is_not_an_object_is_named() {
        let text = input_error_text(parse_objects(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: a }\n---\nkind: Secret\nmetadata: {}\n",
            "kubectl kustomize overlays/x",
        ));
        assert!(
            text.contains(
                "document 2 printed by `kubectl kustomize overlays/x` (Secret) has no apiVersion, metadata.name"
            ),
            "{text}"
        );
        let text = input_error_text(parse_objects("- a\n- b\n", "t"));
        assert!(
            text.contains("document 1 printed by `t` has no apiVersion, kind, metadata.name"),
            "{text}"
        );
        let text = input_error_text(parse_objects(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: a, labels: [x] }\n",
            "t",
        ));
        assert!(
            text.contains("document 1 printed by `t` is not a valid Kubernetes object"),
            "{text}"
        );
        let text = input_error_text(parse_objects("a: [\n", "t"));
        assert!(
            text.contains("document 1 printed by `t` is not valid YAML"),
            "{text}"
        );
    }

    #[test]
    fn namespaced_objects_go_to_the_environment_namespace() {
        let mut objects = objects(&format!(
            "{WORKLOADS}---\napiVersion: v1\nkind: Namespace\nmetadata: {{ name: shop }}\n\
             ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{ name: r, namespace: shop }}\n\
             ---\napiVersion: v1\nkind: Service\nmetadata: {{ name: s, namespace: shop-staging }}\n"
        ));
        place_in_namespace(&mut objects, "staging", "shop-staging", "overlay").unwrap();
        for object in &objects {
            let expected = match kind_of(object) {
                "Namespace" | "ClusterRole" => None,
                _ => Some("shop-staging"),
            };
            assert_eq!(
                object.metadata.namespace.as_deref(),
                expected,
                "{}",
                object_ref(object)
            );
        }
    }

    #[test]
    fn an_object_in_another_namespace_is_refused() {
        let mut objects =
            objects("apiVersion: v1\nkind: Service\nmetadata: { name: s, namespace: other }\n");
        let text = input_error_text(place_in_namespace(
            &mut objects,
            "staging",
            "shop-staging",
            "overlay",
        ));
        for part in [
            "Service/s is in namespace `other`",
            "environment `staging` deploys to `shop-staging`",
            "remove `namespace: other` from the overlay",
            "environments.staging.namespace",
        ] {
            assert!(text.contains(part), "{part:?} in {text}");
        }
    }

    #[test]
    fn labels_go_on_objects_and_pod_templates_never_on_selectors() {
        let mut objects = objects(WORKLOADS);
        label(&mut objects, "shop", "staging").unwrap();
        for object in &objects {
            let labels = object.metadata.labels.as_ref().unwrap();
            assert_eq!(labels[MANAGED_BY], "berth", "{}", object_ref(object));
            assert_eq!(labels[INSTANCE], "shop-staging", "{}", object_ref(object));
        }
        assert_eq!(objects[0].metadata.labels.as_ref().unwrap()["team"], "shop");
        let web = &objects[0].data;
        assert_eq!(
            web["spec"]["template"]["metadata"]["labels"],
            serde_json::json!({ "app": "web", MANAGED_BY: "berth", INSTANCE: "shop-staging" })
        );
        assert_eq!(
            web["spec"]["selector"],
            serde_json::json!({ "matchLabels": { "app": "web" } })
        );
        // A CronJob's pod template had no metadata at all.
        assert_eq!(
            objects[1].data["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"],
            serde_json::json!({ MANAGED_BY: "berth", INSTANCE: "shop-staging" })
        );
        // The StatefulSet's selector uses the instance label: the template keeps its value.
        assert_eq!(
            objects[2].data["spec"]["template"]["metadata"]["labels"],
            serde_json::json!({ INSTANCE: "shop", MANAGED_BY: "berth" })
        );
        // Pods and ConfigMaps have no template.
        assert!(objects[3].data["spec"].get("template").is_none());
        assert!(objects[4].data.get("spec").is_none());
    }

    #[test]
    fn a_selector_pinning_managed_by_to_another_value_is_refused() {
        let mut theirs = objects(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: web }\nspec:\n  \
             selector: { matchLabels: { app.kubernetes.io/managed-by: Helm } }\n  \
             template: { metadata: { labels: { app.kubernetes.io/managed-by: Helm } } }\n",
        );
        let text = input_error_text(label(&mut theirs, "shop", "staging"));
        for part in [
            "Deployment/web",
            "pod template value `Helm`",
            "remove app.kubernetes.io/managed-by from the selector",
        ] {
            assert!(text.contains(part), "{part:?} in {text}");
        }
        // The same key at berth's own value is fine.
        let mut ours = objects(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: web }\nspec:\n  \
             selector: { matchLabels: { app.kubernetes.io/managed-by: berth } }\n  \
             template: { metadata: { labels: { app.kubernetes.io/managed-by: berth } } }\n",
        );
        label(&mut ours, "shop", "staging").unwrap();
    }

    #[test]
    fn listed_images_are_pinned_to_the_sha_everywhere_in_pod_specs() {
        let mut objects = objects(WORKLOADS);
        let repositories = [
            "127.0.0.1:25000/shop/web".to_owned(),
            "registry.example.com/shop/worker".to_owned(),
        ];
        let pinned = pin_images(&mut objects, &Pins::at_sha(&repositories, "abc1234"));
        let pin = |object: &str, container: &str, from: &str, to: &str| PinnedImage {
            object: object.into(),
            container: container.into(),
            from: from.into(),
            to: to.into(),
        };
        assert_eq!(
            pinned,
            [
                pin(
                    "Deployment/web",
                    "wait",
                    "127.0.0.1:25000/shop/web:old",
                    "127.0.0.1:25000/shop/web:abc1234"
                ),
                pin(
                    "Deployment/web",
                    "web",
                    "127.0.0.1:25000/shop/web:latest",
                    "127.0.0.1:25000/shop/web:abc1234"
                ),
                pin(
                    "Deployment/web",
                    "sidecar",
                    "registry.example.com/shop/worker@sha256:0123abcd",
                    "registry.example.com/shop/worker:abc1234"
                ),
                pin(
                    "CronJob/nightly",
                    "job",
                    "registry.example.com/shop/worker",
                    "registry.example.com/shop/worker:abc1234"
                ),
                pin(
                    "Pod/debug",
                    "shell",
                    "registry.example.com/shop/worker:v1",
                    "registry.example.com/shop/worker:abc1234"
                ),
            ]
        );
        let spec = "/spec/template/spec";
        assert_eq!(
            image(&objects[0], &format!("{spec}/initContainers/0/image")),
            "127.0.0.1:25000/shop/web:abc1234"
        );
        assert_eq!(
            image(&objects[0], &format!("{spec}/containers/0/image")),
            "127.0.0.1:25000/shop/web:abc1234"
        );
        // Not listed: a different repository on the same registry, and postgres.
        assert_eq!(
            image(&objects[0], &format!("{spec}/containers/1/image")),
            "127.0.0.1:25000/proxy:1.2"
        );
        assert_eq!(
            image(&objects[0], &format!("{spec}/containers/2/image")),
            "registry.example.com/shop/worker:abc1234"
        );
        assert_eq!(
            image(
                &objects[1],
                "/spec/jobTemplate/spec/template/spec/containers/0/image"
            ),
            "registry.example.com/shop/worker:abc1234"
        );
        assert_eq!(
            image(&objects[2], &format!("{spec}/containers/0/image")),
            "postgres:15"
        );
        // Ephemeral containers and other objects' data are left alone.
        assert_eq!(
            image(&objects[3], "/spec/ephemeralContainers/0/image"),
            "registry.example.com/shop/worker:v1"
        );
        assert_eq!(
            image(&objects[4], "/data/image"),
            "registry.example.com/shop/worker:v1"
        );
    }

    #[test]
    fn nothing_is_pinned_when_nothing_is_listed() {
        let mut objects = objects(WORKLOADS);
        let before = objects.clone();
        assert!(
            pin_images(
                &mut objects,
                &Pins::at_sha(&["nginx".to_owned()], "abc1234")
            )
            .is_empty()
        );
        assert_eq!(objects, before);
    }

    /// The example app's berth.yaml.
    fn example() -> Config {
        Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("berth.yaml")).unwrap()
    }

    #[tokio::test]
    async fn the_example_staging_overlay_renders_pins_and_labels() {
        let config = example();
        let env = config.environment("staging").unwrap();
        let mut objects = render(&config, "staging", env, None).await.unwrap();
        let refs: Vec<String> = objects.iter().map(object_ref).collect();
        for expected in [
            "ServiceAccount/workbench",
            "Service/frontend",
            "Ingress/frontend",
            "Deployment/frontend",
            "Deployment/worker",
            "Deployment/cron",
            "Job/migrate",
        ] {
            assert!(refs.iter().any(|r| r == expected), "{expected} in {refs:?}");
        }
        assert!(
            refs.iter()
                .any(|r| r.starts_with("ConfigMap/workbench-config-")),
            "{refs:?}"
        );
        assert!(
            !refs.iter().any(|r| r.starts_with("Namespace/")),
            "{refs:?}"
        );
        assert!(
            objects
                .iter()
                .all(|o| o.metadata.namespace.as_deref() == Some("workbench-staging"))
        );
        let frontend = objects
            .iter()
            .find(|o| object_ref(o) == "Deployment/frontend")
            .unwrap();
        assert_eq!(frontend.data["spec"]["replicas"], 1);
        // every pod of the example runs on the real node, and only there
        for object in objects
            .iter()
            .filter(|o| o.data["spec"]["template"].is_object())
        {
            let pod = &object.data["spec"]["template"]["spec"];
            assert_eq!(pod["nodeSelector"]["berth.dev/real"], "true", "{object:?}");
            assert_eq!(pod["tolerations"][0]["key"], "berth.dev/real", "{object:?}");
        }

        label(&mut objects, &config.app, "staging").unwrap();
        let pinned = pin_images(
            &mut objects,
            &Pins::at_sha(&config.images, "0123456789abcdef0123456789abcdef01234567"),
        );
        let mut pinned_objects: Vec<&str> = pinned.iter().map(|p| p.object.as_str()).collect();
        pinned_objects.sort_unstable();
        assert_eq!(
            pinned_objects,
            [
                "Deployment/cron",
                // the app and its db-proxy sidecar
                "Deployment/frontend",
                "Deployment/frontend",
                "Deployment/worker",
                "Job/migrate"
            ]
        );
        for pin in &pinned {
            assert!(pin.from.ends_with(":latest"), "{pin:?}");
            assert!(
                pin.to
                    .ends_with(":0123456789abcdef0123456789abcdef01234567"),
                "{pin:?}"
            );
        }
        let production = config.environment("production").unwrap();
        let objects = render(&config, "production", production, None)
            .await
            .unwrap();
        let frontend = objects
            .iter()
            .find(|o| object_ref(o) == "Deployment/frontend")
            .unwrap();
        assert_eq!(frontend.data["spec"]["replicas"], 2);
        assert_eq!(
            frontend.metadata.namespace.as_deref(),
            Some("workbench-production")
        );
    }

    /// An environment rendered from `source`, in namespace `shop`.
    fn environment(source: Source) -> Environment {
        Environment {
            context: None,
            namespace: "shop".into(),
            protected: false,
            source,
            migrate: None::<MigrationSource>,
            schema: None,
            assets: None,
            database: None,
            maintenance: Default::default(),
            run: None,
            backups: None,
            failed_jobs_kept: crate::config::DEFAULT_KEEP_FAILED,
            rollout: RolloutSettings {
                timeout: std::time::Duration::from_secs(600),
                unschedulable_after: std::time::Duration::from_secs(300),
                unready_after: std::time::Duration::from_secs(120),
            },
        }
    }

    #[test]
    fn helm_gets_release_chart_values_set_values_and_namespace() {
        let config = example();
        let env = environment(Source::Helm {
            chart: Chart::Dir(config.dir.join("charts/shop")),
            values: vec![
                config.dir.join("charts/a.yaml"),
                config.dir.join("charts/b.yaml"),
            ],
            set: [
                ("greeting".to_owned(), serde_json::json!("it's a,b=c")),
                ("replicas".to_owned(), serde_json::json!(2)),
            ]
            .into(),
            release: "shop".into(),
        });
        let target = Target {
            kube_version: "v1.36.3".into(),
            api_versions: vec!["batch/v1".into(), "batch/v1/CronJob".into()],
            context: Some("prod".into()),
        };
        let chart = config.dir.join("charts/shop");
        let tool = Tool::for_source(
            &config,
            &env.source,
            Some(&chart),
            "environments.dev.chart",
            &env.namespace,
            Some(&target),
        );
        let args: Vec<String> = tool
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let dir = config.dir.display();
        assert_eq!(
            args,
            [
                "template".to_owned(),
                "shop".to_owned(),
                format!("{dir}/charts/shop"),
                "-f".to_owned(),
                format!("{dir}/charts/a.yaml"),
                "-f".to_owned(),
                format!("{dir}/charts/b.yaml"),
                "--set-json".to_owned(),
                r#"greeting="it's a,b=c""#.to_owned(),
                "--set-json".to_owned(),
                "replicas=2".to_owned(),
                "--namespace".to_owned(),
                "shop".to_owned(),
                "--skip-tests".to_owned(),
                "--include-crds".to_owned(),
                "--kube-version".to_owned(),
                "v1.36.3".to_owned(),
                "--api-versions".to_owned(),
                "batch/v1,batch/v1/CronJob".to_owned(),
                "--dry-run=server".to_owned(),
                "--kube-context".to_owned(),
                "prod".to_owned(),
            ]
        );
        assert_eq!(
            tool.shown,
            r#"helm template shop charts/shop -f charts/a.yaml -f charts/b.yaml --set-json 'greeting="it'\''s a,b=c"' --set-json replicas=2 --namespace shop --skip-tests --include-crds --kube-version v1.36.3 --api-versions <the 2 the cluster serves> --dry-run=server --kube-context prod"#
        );
        assert_eq!(tool.override_var, "BERTH_HELM");
    }

    #[test]
    fn a_remote_chart_renders_from_the_cache_and_is_shown_by_its_reference() {
        let config = example();
        let env = environment(Source::Helm {
            chart: Chart::Oci {
                reference: "oci://127.0.0.1:25000/charts/web".into(),
                version: "0.1.0".into(),
                plain_http: true,
            },
            values: Vec::new(),
            set: Default::default(),
            release: "web".into(),
        });
        let cached = Path::new("/cache/charts/web-0.1.0-0123/chart.tgz");
        let tool = Tool::for_source(
            &config,
            &env.source,
            Some(cached),
            "environments.dev.chart",
            "shop",
            None,
        );
        assert_eq!(tool.args[2], cached.as_os_str());
        assert_eq!(
            tool.shown,
            "helm template web oci://127.0.0.1:25000/charts/web --version 0.1.0 --namespace shop --skip-tests --include-crds"
        );
        assert!(
            tool.fix
                .contains("fix the chart oci://127.0.0.1:25000/charts/web 0.1.0"),
            "{}",
            tool.fix
        );
    }

    #[tokio::test]
    async fn a_failing_overlay_shows_the_tool_error_and_the_fix() {
        let config = example();
        let env = environment(Source::Kustomize {
            overlay: config.dir.join("overlays/does-not-exist"),
            kustomize: Kustomize::Kubectl,
        });
        let tool = Tool::for_source(
            &config,
            &env.source,
            None,
            "environments.dev.overlay",
            &env.namespace,
            None,
        );
        assert_eq!(tool.shown, "kubectl kustomize overlays/does-not-exist");
        let text = input_error_text(render(&config, "dev", &env, None).await);
        for part in [
            "`kubectl kustomize overlays/does-not-exist` failed (exit status: 1)",
            "overlays/does-not-exist",
            "fix the overlay overlays/does-not-exist (environments.dev.overlay in berth.yaml)",
            "\nrendered by kubectl v1.",
            " (kustomize v5.",
        ] {
            assert!(text.contains(part), "{part:?} in {text}");
        }
    }

    #[tokio::test]
    async fn a_kustomization_for_v4_that_kubectl_refuses_names_the_ways_out() {
        let dir = tempfile::tempdir().unwrap();
        let overlay = dir.path().join("overlays/staging");
        std::fs::create_dir_all(&overlay).unwrap();
        std::fs::write(
            overlay.join("kustomization.yaml"),
            "resources: [web.yaml]\npatches:\n- replicas.yaml\n",
        )
        .unwrap();
        std::fs::write(
            overlay.join("web.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: web }\n",
        )
        .unwrap();
        std::fs::write(
            overlay.join("replicas.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: web }\ndata: { a: b }\n",
        )
        .unwrap();
        let config = Config {
            dir: dir.path().to_owned(),
            ..example()
        };
        let env = environment(Source::Kustomize {
            overlay,
            kustomize: Kustomize::Kubectl,
        });
        let text = input_error_text(render(&config, "staging", &env, None).await);
        for part in [
            "`kubectl kustomize overlays/staging` failed",
            "Kustomization.patches of type types.Patch",
            "\nrendered by kubectl v1.",
            "known kustomize v4-to-v5 incompatibility: `patches:` lists bare file names",
            "`render: { kustomize: PATH_OR_NAME }` in berth.yaml",
            "in overlays/staging or a base or component it uses, write each entry as `- path: FILE`",
        ] {
            assert!(text.contains(part), "{part:?} in {text}");
        }
        assert!(!text.contains("fix the overlay"), "{text}");
    }

    #[tokio::test]
    async fn a_missing_tool_says_how_to_point_at_it() {
        let tool = Tool {
            program: "/nonexistent/helm".into(),
            args: Vec::new(),
            shown: "helm template shop chart".into(),
            override_var: "BERTH_HELM",
            fix: String::new(),
            renderer: Renderer::Helm,
            subject: "chart".into(),
        };
        let text = input_error_text(tool.run(TOOL_TIMEOUT).await);
        assert!(
            text.contains("cannot run /nonexistent/helm for `helm template shop chart`"),
            "{text}"
        );
        assert!(text.contains("set BERTH_HELM to its path"), "{text}");
    }

    #[tokio::test]
    async fn a_missing_standalone_kustomize_names_render_kustomize() {
        let config = example();
        let env = environment(Source::Kustomize {
            overlay: config.dir.join("overlays/staging"),
            kustomize: Kustomize::Standalone("/nonexistent/kustomize".into()),
        });
        let text = input_error_text(render(&config, "dev", &env, None).await);
        assert!(
            text.contains(
                "cannot run /nonexistent/kustomize for `/nonexistent/kustomize build overlays/staging`"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "install it, name it in berth.yaml's render.kustomize, or set BERTH_KUSTOMIZE to its path"
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_tool_that_hangs_is_stopped_and_named() {
        let pid_file = std::env::temp_dir().join(format!("berth-hang-{}", std::process::id()));
        let tool = Tool {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                format!("echo $$ > {}; exec sleep 600", pid_file.display()).into(),
            ],
            shown: "helm template shop charts/shop".into(),
            override_var: "BERTH_HELM",
            fix: "fix the chart charts/shop".into(),
            renderer: Renderer::Helm,
            subject: "charts/shop".into(),
        };
        let text = input_error_text(tool.run(Duration::from_secs(2)).await);
        assert!(
            text.contains(
                "`helm template shop charts/shop` did not finish within 2s and was stopped"
            ),
            "{text}"
        );
        assert!(text.contains("fix the chart charts/shop"), "{text}");
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        std::fs::remove_file(&pid_file).unwrap();
        // Killed on drop: the process is gone, or a zombie until tokio reaps it.
        let stat = format!("/proc/{}/stat", pid.trim());
        let alive = || {
            std::fs::read_to_string(&stat).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
            })
        };
        for _ in 0..100 {
            if !alive() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the hung tool (pid {}) still runs", pid.trim());
    }
}
