//! `berth maintenance ENV on|off|status` and `advanced-deploy --maintenance`
//! against the local cluster: selectors switched and restored exactly, crash
//! safety, idempotence, status, deploys around maintenance, and bad input
//! that changes nothing.

mod support;

use std::collections::BTreeMap;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use support::app::{Migration, TestApp};
use support::*;

const SERVER: &str = "berth-maintenance";
const POD_LABEL: &str = "berth.dev/maintenance";
const ORIGINAL: &str = "berth.dev/maintenance-original-selector";
/// A deploy of 2b3c4d5 behind the maintenance page, reported as JSON.
const DEPLOY_IN_MAINTENANCE: &[&str] = &[
    "deploy",
    "test",
    "2b3c4d5",
    "--maintenance",
    "--output",
    "json",
];

/// A second Service of the kwok-backed app: two selector keys, a numeric
/// target port.
const RENDERER_SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: renderer}\nspec:\n  selector: {app: renderer, app.kubernetes.io/part-of: workbench}\n  ports: [{name: metrics, port: 9000, targetPort: 9000}]\n";

/// The kwok-backed app plus the renderer Service, in a namespace of the test's
/// own. `migration`: keep the fixture's migration Job (else it is deleted,
/// for speed).
fn app(prefix: &str, migration: bool) -> TestApp {
    let migration = if migration {
        Migration::Kept
    } else {
        Migration::Deleted
    };
    TestApp::with_resources(
        prefix,
        migration,
        &[("renderer-service.yaml", RENDERER_SERVICE)],
    )
}

/// The app deployed at 1a2b3c4, plus a Service berth does not manage.
async fn deployed(prefix: &str, migration: bool, client: &Client) -> TestApp {
    let app = app(prefix, migration);
    app.ok(&["deploy", "test", "1a2b3c4"]);
    create::<Service>(
        client,
        &app.namespace,
        json!({
            "metadata": { "name": "by-hand" },
            "spec": { "selector": { "app": "legacy" }, "ports": [{ "port": 80 }] },
        }),
    )
    .await;
    app
}

/// Every Service's full selector and annotations, by name.
type Snapshot = BTreeMap<String, (BTreeMap<String, String>, BTreeMap<String, String>)>;

async fn snapshot(client: &Client, ns: &str) -> Snapshot {
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    services
        .list(&ListParams::default())
        .await
        .unwrap()
        .into_iter()
        .map(|s| {
            let selector = s
                .spec
                .as_ref()
                .and_then(|spec| spec.selector.clone())
                .unwrap_or_default();
            (s.name_any(), (selector, s.annotations().clone()))
        })
        .collect()
}

fn maintenance_selector() -> BTreeMap<String, String> {
    BTreeMap::from([(POD_LABEL.to_string(), "wb-test".to_string())])
}

/// The app's Services (those berth deployed) select only the maintenance
/// pods and record exactly their selectors of `before`; the rest are untouched.
fn assert_switched(before: &Snapshot, now: &Snapshot) {
    for (name, (selector, annotations)) in before {
        let (now_selector, now_annotations) = &now[name];
        if name == "by-hand" {
            assert_eq!((now_selector, now_annotations), (selector, annotations));
            continue;
        }
        assert_eq!(now_selector, &maintenance_selector(), "Service {name}");
        let recorded: BTreeMap<String, String> =
            serde_json::from_str(&now_annotations[ORIGINAL]).unwrap();
        assert_eq!(&recorded, selector, "Service {name} records its selector");
    }
}

async fn server_exists(client: &Client, ns: &str) -> bool {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let deployment = deployments.get_opt(SERVER).await.unwrap().is_some();
    let map = maps.get_opt(SERVER).await.unwrap().is_some();
    assert_eq!(
        deployment, map,
        "the Deployment and its ConfigMap go together"
    );
    deployment
}

/// The JSON lines of a `--output json` run.
fn events(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The names of the steps a `--output json` run went through, in order.
fn steps(output: &Output) -> Vec<String> {
    events(output)
        .iter()
        .filter(|e| e["event"] == "step")
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

/// Wait until Service `name` selects the maintenance pods.
async fn wait_until_switched(client: &Client, ns: &str, name: &str) {
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    poll(
        Duration::from_secs(60),
        "the Service to switch",
        async || {
            let service = services.get_opt(name).await.unwrap();
            let selector = service.and_then(|s| s.spec?.selector).unwrap_or_default();
            (selector == maintenance_selector()).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn on_then_off_restores_every_selector_exactly() {
    let client = local_env().kube().await;
    let app = deployed("maint-on-off", false, &client).await;
    let ns = &app.namespace;
    let before = snapshot(&client, ns).await;
    assert_eq!(before.len(), 3, "{before:?}");

    let on = app.ok(&[
        "maintenance",
        "test",
        "on",
        "--title",
        "<b>Upgrade</b> & more",
        "--message",
        "Back at 5 o'clock.",
        "--output",
        "json",
    ]);
    let on_report = report(&on);
    assert_eq!(on_report["status"], "succeeded", "{on_report}");
    assert_eq!(on_report["state"], "on", "{on_report}");
    assert_switched(&before, &snapshot(&client, ns).await);

    // the server: berth's, never the app's, and available
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let server = deployments.get(SERVER).await.unwrap();
    assert_eq!(server.labels()["app.kubernetes.io/managed-by"], "berth");
    assert!(!server.labels().contains_key("app.kubernetes.io/instance"));
    assert_eq!(server.status.unwrap().available_replicas, Some(1));
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let serving = pods
        .list(&ListParams::default().labels(&format!("{POD_LABEL}=wb-test")))
        .await
        .unwrap();
    assert!(!serving.items.is_empty());
    for pod in &serving.items {
        let labels = pod.labels();
        assert!(!labels.contains_key("app"), "{labels:?}");
        assert!(
            !labels.contains_key("app.kubernetes.io/instance"),
            "{labels:?}"
        );
        // the named (http) and numeric (9000) target ports are both served
        let ports: Vec<(Option<String>, i32)> = pod.spec.as_ref().unwrap().containers[0]
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone(), p.container_port))
            .collect();
        assert_eq!(ports, [(Some("http".into()), 8080), (None, 9000)]);
    }
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let page = maps.get(SERVER).await.unwrap().data.unwrap();
    assert!(
        page["index.html"].contains("<h1>&lt;b&gt;Upgrade&lt;/b&gt; &amp; more</h1>")
            && page["index.html"].contains("Back at 5 o&#39;clock."),
        "{}",
        page["index.html"]
    );
    assert!(page["nginx.conf"].contains("add_header Retry-After 300 always;"));

    let off = app.ok(&["maintenance", "test", "off", "--output", "json"]);
    assert_eq!(report(&off)["state"], "off");
    assert_eq!(
        snapshot(&client, ns).await,
        before,
        "every selector and annotation as before"
    );
    assert!(!server_exists(&client, ns).await, "the server is removed");
    // off again: nothing to do
    app.ok(&["maintenance", "test", "off"]);
    assert_eq!(snapshot(&client, ns).await, before);
}

#[tokio::test]
async fn off_restores_from_the_annotations_alone_whatever_a_crash_left() {
    let client = local_env().kube().await;
    let app = deployed("maint-crash", false, &client).await;
    let ns = &app.namespace;
    let before = snapshot(&client, ns).await;

    // the server lost after `on`: status says so, off restores anyway
    app.ok(&["maintenance", "test", "on"]);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    deployments
        .delete(SERVER, &DeleteParams::default())
        .await
        .unwrap();
    maps.delete(SERVER, &DeleteParams::default()).await.unwrap();
    let status =
        String::from_utf8_lossy(&app.ok(&["maintenance", "test", "status"]).stdout).into_owned();
    assert!(
        status.contains("maintenance on") && status.contains("server: missing"),
        "{status}"
    );
    app.ok(&["maintenance", "test", "off"]);
    assert_eq!(snapshot(&client, ns).await, before);

    // berth killed in the middle of `on`
    let mut child = app
        .command(&["maintenance", "test", "on"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    poll(
        Duration::from_secs(60),
        "the maintenance server",
        async || deployments.get_opt(SERVER).await.unwrap(),
    )
    .await;
    child.kill().unwrap(); // SIGKILL: nothing cleaned up, the lock left held
    child.wait().unwrap();
    app.ok(&["maintenance", "test", "off", "--lock-wait", "60s"]);
    assert_eq!(snapshot(&client, ns).await, before);
    assert!(!server_exists(&client, ns).await);

    // a half-done state made by hand: the record written and the selector switched
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let own = serde_json::to_string(&before["renderer"].0).unwrap();
    services
        .patch(
            "renderer",
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": { "annotations": { ORIGINAL: own } },
                "spec": { "selector": { "app": null, "app.kubernetes.io/part-of": null, POD_LABEL: "wb-test" } },
            })),
        )
        .await
        .unwrap();
    let status = app.ok(&["maintenance", "test", "status", "--output", "json"]);
    assert_eq!(report(&status)["state"], "partial", "{}", report(&status));
    app.ok(&["maintenance", "test", "off"]);
    assert_eq!(snapshot(&client, ns).await, before);
}

#[tokio::test]
async fn on_twice_keeps_the_original_selector_recorded() {
    let client = local_env().kube().await;
    let app = deployed("maint-twice", false, &client).await;
    let ns = &app.namespace;
    let before = snapshot(&client, ns).await;
    app.ok(&["maintenance", "test", "on", "--message", "first"]);
    let first = snapshot(&client, ns).await;
    let again = app.ok(&[
        "maintenance",
        "test",
        "on",
        "--message",
        "second",
        "--output",
        "json",
    ]);
    assert_eq!(report(&again)["message"], "second");
    let second = snapshot(&client, ns).await;
    assert_switched(&before, &second);
    for name in ["frontend", "renderer"] {
        let (a, b) = (&first[name].1, &second[name].1);
        for key in [
            ORIGINAL,
            "berth.dev/maintenance-since",
            "berth.dev/maintenance-by",
        ] {
            assert_eq!(a[key], b[key], "{name} {key}");
        }
        assert_eq!(b["berth.dev/maintenance-message"], "second");
    }
    // the page shows the new message, and a third `on` keeps it
    app.ok(&["maintenance", "test", "on"]);
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let page = maps.get(SERVER).await.unwrap().data.unwrap();
    assert!(page["index.html"].contains("<p>second</p>"));
    app.ok(&["maintenance", "test", "off"]);
    assert_eq!(snapshot(&client, ns).await, before);
}

#[tokio::test]
async fn status_says_whether_maintenance_is_on_since_when_and_with_what_message() {
    let client = local_env().kube().await;
    let app = deployed("maint-status", false, &client).await;
    let status = |json: bool| {
        let args: &[&str] = if json {
            &["maintenance", "test", "status", "--output", "json"]
        } else {
            &["maintenance", "test", "status"]
        };
        let out = app.ok(args);
        if json {
            report(&out)
        } else {
            Value::String(String::from_utf8_lossy(&out.stdout).into_owned())
        }
    };
    let off = status(true);
    assert_eq!(off["state"], "off");
    assert!(off["since"].is_null());
    assert!(
        status(false)
            .as_str()
            .unwrap()
            .starts_with("test: maintenance off")
    );

    let started = Timestamp::now();
    app.ok(&[
        "maintenance",
        "test",
        "on",
        "--title",
        "Database upgrade",
        "--message",
        "Back by noon.",
    ]);
    let on = status(true);
    assert_eq!(on["state"], "on", "{on}");
    assert_eq!(on["title"], "Database upgrade");
    assert_eq!(on["message"], "Back by noon.");
    assert!(on["by"].as_str().unwrap().contains('@'), "{on}");
    let since: Timestamp = on["since"].as_str().unwrap().parse().unwrap();
    assert!(since >= started - std::time::Duration::from_secs(1), "{on}");
    assert_eq!(on["server"], json!({"ready": 1, "desired": 1}));
    let text = status(false);
    let text = text.as_str().unwrap();
    assert!(
        text.starts_with("test: maintenance on since ")
            && text.contains("message: Back by noon.")
            && text.contains("Service/frontend: maintenance page (restores selector app=frontend"),
        "{text}"
    );
    // `berth status` says so too, and does not list the server as a workload
    let overall = String::from_utf8_lossy(&app.ok(&["status", "test"]).stdout).into_owned();
    assert!(overall.contains("maintenance: on since"), "{overall}");
    assert!(
        !overall.contains("Deployment/berth-maintenance"),
        "{overall}"
    );

    app.ok(&["maintenance", "test", "off"]);
    assert_eq!(status(true)["state"], "off");
    let overall = String::from_utf8_lossy(&app.ok(&["status", "test"]).stdout).into_owned();
    assert!(overall.contains("maintenance: off"), "{overall}");
}

#[tokio::test]
async fn a_deploy_with_maintenance_serves_the_page_from_before_the_migration_to_after_the_rollout()
{
    let client = local_env().kube().await;
    let app = deployed("maint-deploy", true, &client).await;
    let ns = &app.namespace;
    let before = snapshot(&client, ns).await;
    let child = spawn_captured(&mut app.command(DEPLOY_IN_MAINTENANCE));
    // berth switches the Services one after another: wait for every one.
    for name in before.keys().filter(|name| *name != "by-hand") {
        wait_until_switched(&client, ns, name).await;
    }
    let mid = snapshot(&client, ns).await;
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_switched(&before, &mid);
    let steps = steps(&out);
    let at = |name: &str| {
        steps
            .iter()
            .position(|s| s == name)
            .unwrap_or_else(|| panic!("no step {name} in {steps:?}"))
    };
    assert!(
        at("lock") < at("maintenance on")
            && at("maintenance on") < at("pre-deploy")
            && at("pre-deploy") < at("apply")
            && at("wait") < at("maintenance off")
            && at("maintenance off") < at("unlock"),
        "{steps:?}"
    );
    assert_eq!(report(&out)["status"], "succeeded");
    assert_eq!(snapshot(&client, ns).await, before);
    assert!(!server_exists(&client, ns).await);
}

#[tokio::test]
async fn a_failed_deploy_with_maintenance_still_turns_it_off() {
    let client = local_env().kube().await;
    let app = deployed("maint-deploy-fail", false, &client).await;
    let ns = &app.namespace;
    let before = snapshot(&client, ns).await;
    let started = Instant::now();
    let out = app.berth(&[
        "deploy",
        "test",
        "badbad1",
        "--maintenance",
        "--output",
        "json",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(60));
    let steps = steps(&out);
    assert!(
        steps.contains(&"maintenance on".to_string())
            && steps.contains(&"maintenance off".to_string()),
        "{steps:?}"
    );
    assert_eq!(report(&out)["status"], "failed");
    assert_eq!(snapshot(&client, ns).await, before);
    assert!(!server_exists(&client, ns).await);
}

#[tokio::test]
async fn ctrl_c_during_a_deploy_with_maintenance_turns_it_off_and_exits_130() {
    let client = local_env().kube().await;
    let app = deployed("maint-deploy-int", true, &client).await;
    let ns = &app.namespace;
    let before = snapshot(&client, ns).await;
    let child = spawn_captured(&mut app.command(DEPLOY_IN_MAINTENANCE));
    wait_until_switched(&client, ns, "frontend").await;
    let out = interrupt(child);
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert_eq!(report(&out)["status"], "interrupted");
    assert!(steps(&out).contains(&"maintenance off".to_string()));
    assert_eq!(snapshot(&client, ns).await, before);
    assert!(!server_exists(&client, ns).await);
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), ns);
    assert!(leases.get_opt("berth-deploy-lock").await.unwrap().is_none());
}

#[tokio::test]
async fn a_deploy_while_maintenance_is_on_keeps_it_on_and_prune_spares_the_server() {
    let client = local_env().kube().await;
    let app = deployed("maint-hold", false, &client).await;
    let ns = &app.namespace;
    let before = snapshot(&client, ns).await;
    app.ok(&["maintenance", "test", "on"]);
    // the release changes frontend's selector
    let overlay = app.overlay();
    let kustomization = std::fs::read_to_string(overlay.join("kustomization.yaml")).unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!("{kustomization}  - target: {{kind: Service, name: frontend}}\n    patch: |-\n      - op: add\n        path: /spec/selector/track\n        value: stable\n"),
    )
    .unwrap();
    // diff shows what the deploy will apply: the selector held, the rendered one recorded
    let diff = app.berth(&["diff", "test", "2b3c4d5"]);
    assert_eq!(code(&diff), 1, "differences: {}", stderr(&diff));
    let diff = String::from_utf8_lossy(&diff.stdout).into_owned();
    assert!(diff.contains(r#""track":"stable""#), "{diff}");
    assert!(
        !diff
            .lines()
            .any(|l| l.trim_start_matches([' ', '+', '-']) == "track: stable"),
        "diff shows the Service leaving maintenance:\n{diff}"
    );
    app.ok(&["deploy", "test", "2b3c4d5", "--prune"]);
    let held = snapshot(&client, ns).await;
    for name in ["frontend", "renderer"] {
        assert_eq!(
            held[name].0,
            maintenance_selector(),
            "{name} stays switched"
        );
    }
    let recorded: BTreeMap<String, String> =
        serde_json::from_str(&held["frontend"].1[ORIGINAL]).unwrap();
    assert_eq!(
        recorded,
        BTreeMap::from([
            ("app".to_string(), "frontend".to_string()),
            ("track".to_string(), "stable".to_string())
        ]),
        "the selector this release renders is what off restores"
    );
    assert!(
        server_exists(&client, ns).await,
        "--prune spared the server"
    );
    let status = String::from_utf8_lossy(&app.ok(&["status", "test"]).stdout).into_owned();
    assert!(!status.contains("berth-maintenance "), "{status}");

    // --maintenance when it was on already: on before, and still on after
    let out = app.ok(&["deploy", "test", "3c4d5e6", "--maintenance"]);
    assert!(stderr(&out).contains("stays on"), "{}", stderr(&out));
    assert_eq!(
        snapshot(&client, ns).await["frontend"].0,
        maintenance_selector()
    );

    app.ok(&["maintenance", "test", "off"]);
    let after = snapshot(&client, ns).await;
    assert_eq!(after["frontend"].0, recorded);
    assert_eq!(after["renderer"], before["renderer"]);
    assert_eq!(after["by-hand"], before["by-hand"]);
    assert!(after["frontend"].1.is_empty());
    assert!(!server_exists(&client, ns).await);
}

#[tokio::test]
async fn bad_input_exits_2_and_changes_nothing() {
    let client = local_env().kube().await;
    let app = app("maint-bad-input", false);

    let unknown = app.berth(&["maintenance", "nowhere", "on"]);
    assert_eq!(code(&unknown), 2, "{}", stderr(&unknown));
    assert!(stderr(&unknown).contains("`test`"), "{}", stderr(&unknown));
    let json = app.berth(&["maintenance", "nowhere", "status", "--output", "json"]);
    assert_eq!(code(&json), 2);
    assert_eq!(report(&json)["status"], "refused");
    assert_eq!(report(&json)["exit_code"], 2);

    let nothing_yet = app.berth(&["maintenance", "test", "on"]);
    assert_eq!(code(&nothing_yet), 2, "{}", stderr(&nothing_yet));
    assert!(
        stderr(&nothing_yet).contains("deploy it first"),
        "{}",
        stderr(&nothing_yet)
    );

    app.ok(&["deploy", "test", "1a2b3c4"]);
    let ns = &app.namespace;
    let before = snapshot(&client, ns).await;
    app.configure("    maintenance: { services: [frontend, nosuch] }\n");
    let missing = app.berth(&["maintenance", "test", "on"]);
    assert_eq!(code(&missing), 2, "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("environments.test.maintenance.services names Service nosuch"),
        "{}",
        stderr(&missing)
    );
    let deploy = app.berth(&["deploy", "test", "2b3c4d5", "--maintenance"]);
    assert_eq!(code(&deploy), 2, "{}", stderr(&deploy));
    assert!(stderr(&deploy).contains("nosuch"), "{}", stderr(&deploy));
    let history = String::from_utf8_lossy(&app.ok(&["history", "test"]).stdout).into_owned();
    assert!(
        !history.contains("2b3c4d5"),
        "no release was recorded: {history}"
    );

    app.configure("");
    for args in [
        &["maintenance", "test", "on", "--title", ""][..],
        &["maintenance", "test", "off", "--message", "x"][..],
    ] {
        let out = app.berth(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
    }
    assert_eq!(snapshot(&client, ns).await, before, "no Service changed");
    assert!(!server_exists(&client, ns).await, "no server was started");
}

#[tokio::test]
async fn a_maintenance_server_that_cannot_start_fails_fast_and_switches_nothing() {
    let client = local_env().kube().await;
    let app = deployed("maint-badbad", false, &client).await;
    let ns = &app.namespace;
    let before = snapshot(&client, ns).await;
    app.configure("    maintenance: { image: \"127.0.0.1:25000/nginx:badbad1\" }\n");
    let started = Instant::now();
    let out = app.berth(&["maintenance", "test", "on", "--output", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(30));
    let report = report(&out);
    assert_eq!(report["status"], "failed");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("cannot start") && error.contains("maintenance.image"),
        "{error}"
    );
    assert_eq!(snapshot(&client, ns).await, before, "no Service switched");
    app.ok(&["maintenance", "test", "off"]);
    assert!(!server_exists(&client, ns).await);
}
