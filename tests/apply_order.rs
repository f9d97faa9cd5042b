//! Kinds the cluster does not serve yet, against the local API server (kwok
//! nodes): every missing kind named in one refusal, a CRD and its custom
//! resources deployed in one run, custom resources applied before the
//! Services and Ingresses that name them, `--dry-run` and `diff` with a
//! CRD not installed yet, and plans that need nothing they do not use.
//!
//! Each test uses API groups of its own (`<unique>.berth.test`), so tests
//! running at once never share a CRD; the CRDs are deleted when a test ends.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::runtime::{WatchStreamExt, wait, watcher};
use kube::{Api, Client, ResourceExt};
use support::app::{Migration, TestApp};
use support::*;

/// An API group of the test's own.
fn group() -> String {
    format!("{}.berth.test", unique_name("g"))
}

/// A namespaced CRD of `kind` (plural: lowercase + s) in `group`, serving `version`.
fn crd(group: &str, version: &str, kind: &str) -> String {
    let plural = format!("{}s", kind.to_lowercase());
    format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{kind: {kind}, plural: {plural}, singular: {singular}}}
  versions:
    - name: {version}
      served: true
      storage: true
      schema:
        openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
"#,
        singular = kind.to_lowercase()
    )
}

/// A custom resource `name` of `group/version` `kind`.
fn custom(group: &str, version: &str, kind: &str, name: &str) -> String {
    format!(
        "apiVersion: {group}/{version}\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n  note: {name}\n"
    )
}

/// The CRD named `plural.group` is deleted when this is dropped.
struct Crds(Vec<String>);

impl Drop for Crds {
    fn drop(&mut self) {
        let deleted = local_env()
            .command("kubectl")
            .args([
                "--context",
                "berth-local",
                "delete",
                "crd",
                "--ignore-not-found",
            ])
            .arg("--wait=false")
            .args(&self.0)
            .stdin(std::process::Stdio::null())
            .output();
        if let Ok(out) = deleted
            && !out.status.success()
        {
            eprintln!(
                "cleanup: deleting CRDs failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The objects of `kind` in `namespace`, through the API resource `plural`.
fn dynamic(
    client: &Client,
    namespace: &str,
    (group, version, kind, plural): (&str, &str, &str, &str),
) -> Api<DynamicObject> {
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::namespaced_with(client.clone(), namespace, &resource)
}

async fn namespace_exists(client: &Client, name: &str) -> bool {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.get_opt(name).await.unwrap().is_some()
}

async fn crd_exists(client: &Client, name: &str) -> bool {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.get_opt(name).await.unwrap().is_some()
}

/// stdout's JSON lines.
fn events(output: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn every_kind_the_cluster_does_not_serve_is_named_in_one_refusal() {
    let (cloud, gke) = (group(), group());
    let app = TestApp::with_resources(
        "kinds-missing",
        Migration::Deleted,
        &[
            (
                "backend.yaml",
                &format!(
                    "{}---\n{}",
                    custom(&cloud, "v1", "BackendConfig", "api"),
                    custom(&cloud, "v1", "BackendConfig", "web")
                ),
            ),
            (
                "certificate.yaml",
                &custom(&gke, "v1beta1", "ManagedCertificate", "app"),
            ),
        ],
    );
    let client = local_env().kube().await;
    let out = app.berth(&["advanced-deploy", "test", "1a2b3c4"]);
    let expected = format!(
        "the cluster does not serve these kinds: {cloud}/v1 BackendConfig (2 objects), \
         {gke}/v1beta1 ManagedCertificate (1); install their CRDs or remove them from the overlay"
    );
    assert_refused(&out, &[&expected]);
    let text = stderr(&out);
    for dump in [
        "404",
        "page not found",
        "Discovery",
        "ApiError",
        "MissingKind",
    ] {
        assert!(
            !text.contains(dump),
            "a raw client error ({dump}) in:\n{text}"
        );
    }
    assert!(
        !namespace_exists(&client, &app.namespace).await,
        "nothing is created"
    );
    // the plan refuses them the same way
    let diff = app.berth(&["diff", "test", "1a2b3c4"]);
    assert_refused(&diff, &[&expected]);
}

#[tokio::test]
async fn a_crd_and_its_custom_resources_deploy_in_one_run() {
    let g = group();
    let name = format!("widgets.{g}");
    let _crds = Crds(vec![name.clone()]);
    let app = TestApp::with_resources(
        "kinds-crd",
        Migration::Deleted,
        &[
            ("crd.yaml", &crd(&g, "v1", "Widget")),
            (
                "widgets.yaml",
                &format!(
                    "{}---\n{}",
                    custom(&g, "v1", "Widget", "first"),
                    custom(&g, "v1", "Widget", "second")
                ),
            ),
        ],
    );
    let client = local_env().kube().await;
    let out = app.berth(&["advanced-deploy", "test", "1a2b3c4"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains(&format!("CustomResourceDefinition {name} is Established")),
        "{text}"
    );
    let widgets = dynamic(&client, &app.namespace, (&g, "v1", "Widget", "widgets"));
    let mut names: Vec<String> = widgets
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    names.sort();
    assert_eq!(names, ["first", "second"]);
    // a second deploy finds the kind served and applies it again
    let again = app.berth(&["advanced-deploy", "test", "2b3c4d5"]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));

    // a rollback re-applies the recorded CRD first too, once it is gone
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.delete(&name, &Default::default()).await.unwrap();
    poll(Duration::from_secs(60), "the CRD to be gone", async || {
        (!crd_exists(&client, &name).await).then_some(())
    })
    .await;
    let back = app.berth(&["rollback", "test"]);
    assert_eq!(code(&back), 0, "{}", stderr(&back));
    assert!(crd_exists(&client, &name).await);
    assert_eq!(
        widgets.list(&Default::default()).await.unwrap().items.len(),
        2
    );
}

/// `(Kind/name, resourceVersion when first seen)` of every object of each
/// API in `apis`, watched from before the deploy: the order the API server
/// created them in (resource versions are etcd's revisions).
fn record_creations(apis: Vec<(&str, Api<DynamicObject>)>) -> Arc<Mutex<BTreeMap<String, u64>>> {
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    for (kind, api) in apis {
        let kind = kind.to_owned();
        let seen = seen.clone();
        tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default()).applied_objects();
            let mut stream = std::pin::pin!(stream);
            while let Ok(Some(object)) = stream.try_next().await {
                let version: u64 = object.resource_version().unwrap().parse().unwrap();
                seen.lock()
                    .unwrap()
                    .entry(format!("{kind}/{}", object.name_any()))
                    .or_insert(version);
            }
        });
    }
    seen
}

#[tokio::test]
async fn custom_resources_are_applied_before_the_services_and_ingresses_that_name_them() {
    let (cloud, gke) = (group(), group());
    let kinds = [
        (cloud.as_str(), "v1", "BackendConfig", "backendconfigs"),
        (gke.as_str(), "v1beta1", "FrontendConfig", "frontendconfigs"),
        (
            gke.as_str(),
            "v1",
            "ManagedCertificate",
            "managedcertificates",
        ),
    ];
    let _crds = Crds(
        kinds
            .iter()
            .map(|(g, _, _, plural)| format!("{plural}.{g}"))
            .collect(),
    );
    // installed beforehand: this is about order, not about CRDs
    let client = local_env().kube().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (g, version, kind, plural) in kinds {
        let definition: CustomResourceDefinition =
            serde_norway::from_str(&crd(g, version, kind)).unwrap();
        crds.create(&PostParams::default(), &definition)
            .await
            .unwrap();
        let crd_name = format!("{plural}.{g}");
        let established = wait::await_condition(
            crds.clone(),
            &crd_name,
            wait::conditions::is_crd_established(),
        );
        within(
            Duration::from_secs(30),
            "the CRD to be established",
            established,
        )
        .await
        .unwrap();
    }
    let edge = format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: edge
  annotations:
    cloud.google.com/backend-config: '{{"default": "edge"}}'
spec:
  selector: {{app: frontend}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: edge
  annotations:
    networking.gke.io/v1beta1.FrontendConfig: edge
    networking.gke.io/managed-certificates: edge
spec:
  defaultBackend: {{service: {{name: edge, port: {{number: 80}}}}}}
---
{}---
{}---
{}"#,
        custom(&cloud, "v1", "BackendConfig", "edge"),
        custom(&gke, "v1beta1", "FrontendConfig", "edge"),
        custom(&gke, "v1", "ManagedCertificate", "edge"),
    );
    let app = TestApp::with_resources("kinds-order", Migration::Deleted, &[("edge.yaml", &edge)]);
    let ns = app.namespace.as_str();
    let watched = kinds.into_iter().chain([
        ("", "v1", "Service", "services"),
        ("networking.k8s.io", "v1", "Ingress", "ingresses"),
        ("apps", "v1", "Deployment", "deployments"),
    ]);
    let seen = record_creations(watched.map(|k| (k.2, dynamic(&client, ns, k))).collect());

    let plan = app.berth(&["advanced-deploy", "test", "1a2b3c4", "--dry-run"]);
    assert_eq!(code(&plan), 0, "{}", stderr(&plan));
    let out = app.berth(&["advanced-deploy", "test", "1a2b3c4"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let names = [
        "BackendConfig/edge",
        "FrontendConfig/edge",
        "ManagedCertificate/edge",
        "Service/edge",
        "Ingress/edge",
        "Deployment/frontend",
    ];
    let created = poll(
        Duration::from_secs(30),
        "the watch to see every object",
        async || {
            let seen = seen.lock().unwrap();
            names
                .iter()
                .map(|name| seen.get(*name).copied())
                .collect::<Option<Vec<u64>>>()
        },
    )
    .await;
    let custom_last = created[..3].iter().max().unwrap();
    let networking_first = created[3..5].iter().min().unwrap();
    assert!(
        custom_last < networking_first && created[3..5].iter().all(|v| *v < created[5]),
        "creation order {:?}",
        names.iter().zip(&created).collect::<Vec<_>>()
    );
    // the plan lists them in the same order
    let text = stdout(&plan);
    let at = |name: &str| {
        text.find(&format!("  {name}\n"))
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    assert!(at("ManagedCertificate/edge") < at("Service/edge"), "{text}");
    assert!(at("Ingress/edge") < at("Deployment/frontend"), "{text}");
}

#[tokio::test]
async fn dry_run_and_diff_show_custom_resources_of_a_crd_not_installed_yet() {
    let g = group();
    let name = format!("gadgets.{g}");
    let _crds = Crds(vec![name.clone()]);
    let app = TestApp::with_resources(
        "kinds-dry",
        Migration::Deleted,
        &[
            ("crd.yaml", &crd(&g, "v1", "Gadget")),
            ("gadget.yaml", &custom(&g, "v1", "Gadget", "one")),
        ],
    );
    let client = local_env().kube().await;
    let with_crd = format!("Gadget/one (created with its CRD {name})");

    let plan = app.berth(&["advanced-deploy", "test", "1a2b3c4", "--dry-run"]);
    assert_eq!(code(&plan), 0, "{}", stderr(&plan));
    assert!(
        stdout(&plan).contains(&format!("  {with_crd}\n")),
        "{}",
        stdout(&plan)
    );
    let event = app.plan("1a2b3c4");
    assert_eq!(
        event["with_crd"],
        serde_json::json!([{"object": "Gadget/one", "crd": name}])
    );

    // before the namespace exists, and with it (a server-side dry run of the rest)
    for namespace_made in [false, true] {
        if namespace_made {
            let namespaces: Api<Namespace> = Api::all(client.clone());
            let ns: Namespace =
                serde_json::from_value(serde_json::json!({"metadata": {"name": app.namespace}}))
                    .unwrap();
            namespaces
                .create(&PostParams::default(), &ns)
                .await
                .unwrap();
        }
        let diff = app.berth(&["diff", "test", "1a2b3c4"]);
        assert_eq!(code(&diff), 1, "differences: {}", stderr(&diff));
        let text = stdout(&diff);
        assert!(
            text.contains(&format!("+ Gadget/one (new, created with its CRD {name})")),
            "{text}"
        );
        assert!(
            text.contains(&format!("+ CustomResourceDefinition/{name} (new)")),
            "{text}"
        );
        let json = app.berth(&["diff", "test", "1a2b3c4", "--output", "json"]);
        assert_eq!(code(&json), 1, "differences: {}", stderr(&json));
        let gadget = events(&json)
            .into_iter()
            .find(|e| e["event"] == "object" && e["object"] == "Gadget/one")
            .unwrap();
        assert_eq!(gadget["change"], "added");
        assert_eq!(gadget["with_crd"], name.as_str());
    }
    assert!(
        !crd_exists(&client, &name).await,
        "dry runs install nothing"
    );
}

#[tokio::test]
async fn plans_need_nothing_they_do_not_use_and_list_what_runs_in_order() {
    let app = TestApp::new("kinds-plan", Migration::Kept);
    let (bucket, _bucket) = support::backups::bucket("kinds-plan").await;
    app.configure(&format!(
        "    assets:\n      from: {{ image: 127.0.0.1:25000/workbench/never-built-assets, path: /app/static }}\n      bucket: {bucket}\n"
    ));
    let missing = "never-built-assets";

    let diff = app.berth(&["diff", "test", "1a2b3c4"]);
    assert_eq!(code(&diff), 1, "differences: {}", stderr(&diff));
    assert!(
        stderr(&diff).contains("warning: the assets are unavailable"),
        "{}",
        stderr(&diff)
    );
    assert!(stderr(&diff).contains(missing), "{}", stderr(&diff));

    let plan = app.berth(&["advanced-deploy", "test", "1a2b3c4", "--dry-run"]);
    assert_eq!(code(&plan), 0, "{}", stderr(&plan));
    let text = stdout(&plan);
    assert!(
        text.contains("Assets: unavailable, the deploy refuses it"),
        "{text}"
    );
    assert!(
        text.contains("Migration, run to completion before the apply: Job/")
            && text.contains("127.0.0.1:25000/workbench/migrate:1a2b3c4"),
        "{text}"
    );
    let plain_order: Vec<String> = text
        .lines()
        .skip_while(|l| *l != "Objects, in apply order:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.trim().to_owned())
        .collect();

    let event = app.plan("1a2b3c4");
    assert!(
        event["assets"]["unavailable"]
            .as_str()
            .unwrap()
            .contains(missing),
        "{event}"
    );
    assert!(
        event["migration"]["object"]
            .as_str()
            .unwrap()
            .starts_with("Job/"),
        "{event}"
    );
    assert_eq!(
        event["migration"]["containers"][0]["image"],
        "127.0.0.1:25000/workbench/migrate:1a2b3c4"
    );
    let json_order: Vec<String> = event["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(json_order, plain_order);
    let position = |name: &str| json_order.iter().position(|o| o == name).unwrap();
    assert!(position("Secret/canary") < position("Service/frontend"));
    assert!(position("Service/frontend") < position("Deployment/frontend"));

    // the deploy itself still refuses it, changing nothing
    let deploy = app.berth(&["advanced-deploy", "test", "1a2b3c4"]);
    assert_refused(&deploy, &[missing]);
    let client = local_env().kube().await;
    assert!(!namespace_exists(&client, &app.namespace).await);
}
