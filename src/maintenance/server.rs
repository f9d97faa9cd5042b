//! The maintenance server: an nginx Deployment that answers every request
//! with 503, `Retry-After` and the page, from a ConfigMap holding the page and
//! nginx's configuration. Pure: it builds the objects; [`super`] applies them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use md5::{Digest as _, Md5};
use serde_json::json;

use super::selector::POD_LABEL;
use crate::cluster::MANAGED_BY;

/// Name of the maintenance Deployment and of its ConfigMap.
pub const NAME: &str = "berth-maintenance";
/// Where the ConfigMap is mounted in the container.
const MOUNT: &str = "/etc/berth-maintenance";
/// The internal URI of the page, the target of nginx's `error_page 503`.
const PAGE_URI: &str = "/.berth-maintenance-page";
/// The path that answers 200, for readiness probes and load balancer health checks.
pub const HEALTH_PATH: &str = "/healthz";
/// Pod template annotation: a digest of the ConfigMap, so a new page rolls the pods.
const CONTENT_DIGEST: &str = "berth.dev/maintenance-content";

/// What the page says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The heading and the document title.
    pub title: String,
    /// The text; a blank line starts a new paragraph, a newline breaks a line.
    pub message: String,
}

/// `text` safe inside HTML text and attribute values.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The maintenance page as a complete HTML document, title and message escaped.
pub fn html(page: &Page) -> String {
    let title = escape(page.title.trim());
    let paragraphs: String = page
        .message
        .replace("\r\n", "\n")
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| format!("<p>{}</p>\n", escape(p).replace('\n', "<br>\n")))
        .collect();
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; color: #222; line-height: 1.5; margin: 0; }}
main {{ max-width: 36rem; margin: 18vh auto; padding: 0 1.5rem; }}
h1 {{ font-weight: 600; }}
</style>
</head>
<body>
<main>
<h1>{title}</h1>
{paragraphs}</main>
</body>
</html>
"#
    )
}

/// nginx's whole configuration: on each of `ports`, every path answers 503
/// with `Retry-After` and the page, except [`HEALTH_PATH`] (200). Temporary
/// files and the pid file go to /tmp, so it runs as any user with a
/// read-only root filesystem.
pub fn nginx_conf(ports: &[u16], retry_after: Duration) -> String {
    let listen: String = ports
        .iter()
        .map(|port| format!("        listen {port};\n"))
        .collect();
    format!(
        r#"# Written by berth: the maintenance page. Every path answers 503 with
# Retry-After and the page; {HEALTH_PATH} answers 200 for health checks.
daemon off;
worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log /dev/stdout;
    client_body_temp_path /tmp/client_body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    server_tokens off;
    charset utf-8;
    server {{
{listen}        add_header Retry-After {retry_after} always;
        add_header Cache-Control "no-store" always;
        # A URI, not a named location: nginx then answers any method with the page.
        error_page 503 {PAGE_URI};
        location = {HEALTH_PATH} {{
            default_type text/plain;
            return 200 "ok\n";
        }}
        location = {PAGE_URI} {{
            internal;
            default_type text/html;
            alias {MOUNT}/index.html;
        }}
        location / {{
            return 503;
        }}
    }}
}}
"#,
        retry_after = retry_after.as_secs().max(1),
    )
}

/// A port the maintenance container listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPort {
    /// The port number.
    pub number: u16,
    /// Its name, when a Service targets it by name.
    pub name: Option<String>,
}

/// The ports the maintenance container must serve so that every TCP port
/// of `services` reaches it once their selectors point at it: each numeric
/// `targetPort` as it is, and each named one on a port of its own, from
/// `named_from` up (sharing a numeric one where it can).
pub fn server_ports(services: &[Service], named_from: u16) -> Result<Vec<ServerPort>, String> {
    let mut numbers = BTreeSet::new();
    let mut names = BTreeSet::new();
    let ports = services
        .iter()
        .filter_map(|s| s.spec.as_ref()?.ports.as_ref())
        .flatten()
        .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP");
    for port in ports {
        match port
            .target_port
            .clone()
            .unwrap_or(IntOrString::Int(port.port))
        {
            IntOrString::Int(n) => {
                numbers.insert(u16::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("a Service targets port {n}, which is not a port number")
                })?);
            }
            IntOrString::String(name) => {
                names.insert(name);
            }
        }
    }
    let mut served: BTreeMap<u16, Option<String>> =
        numbers.into_iter().map(|n| (n, None)).collect();
    let mut next = named_from;
    for name in names {
        while matches!(served.get(&next), Some(Some(_))) {
            next = next
                .checked_add(1)
                .ok_or("no port is left for the named target ports")?;
        }
        served.insert(next, Some(name));
    }
    if served.is_empty() {
        served.insert(named_from, None);
    }
    Ok(served
        .into_iter()
        .map(|(number, name)| ServerPort { number, name })
        .collect())
}

/// The labels of the maintenance objects (not their pods).
fn object_labels(instance: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (POD_LABEL.to_owned(), instance.to_owned()),
    ])
}

/// The ConfigMap holding the page (`index.html`) and `nginx.conf`.
pub fn config_map(instance: &str, page: &Page, conf: &str) -> ConfigMap {
    ConfigMap {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(NAME.to_owned()),
            labels: Some(object_labels(instance)),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            ("index.html".to_owned(), html(page)),
            ("nginx.conf".to_owned(), conf.to_owned()),
        ])),
        ..Default::default()
    }
}

/// A digest of the ConfigMap's content (hex MD5: change detection, not security).
pub fn content_digest(config_map: &ConfigMap) -> String {
    let mut hasher = Md5::new();
    for (key, value) in config_map.data.iter().flatten() {
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

/// The maintenance Deployment of `instance`: nginx from `image` on `ports`,
/// serving the ConfigMap whose content digest is `digest`. Its pods carry
/// only [`POD_LABEL`], which no app selects on, so no app workload adopts
/// them and only switched Services select them.
pub fn deployment(
    instance: &str,
    image: &str,
    ports: &[ServerPort],
    digest: &str,
) -> serde_json::Result<Deployment> {
    let pod_labels = json!({ POD_LABEL: instance });
    let container_ports: Vec<_> = ports
        .iter()
        .map(|p| match &p.name {
            Some(name) => json!({ "containerPort": p.number, "name": name, "protocol": "TCP" }),
            None => json!({ "containerPort": p.number, "protocol": "TCP" }),
        })
        .collect();
    let probe_port = ports.first().map_or(8080, |p| p.number);
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": NAME, "labels": object_labels(instance) },
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 2,
            "selector": { "matchLabels": pod_labels },
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": { CONTENT_DIGEST: digest },
                },
                "spec": {
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "containers": [{
                        "name": "maintenance",
                        "image": image,
                        "command": ["nginx", "-c", format!("{MOUNT}/nginx.conf")],
                        "ports": container_ports,
                        "readinessProbe": {
                            "httpGet": { "path": HEALTH_PATH, "port": probe_port },
                            "periodSeconds": 2,
                        },
                        "resources": {
                            "requests": { "cpu": "10m", "memory": "16Mi" },
                            "limits": { "memory": "64Mi" },
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                        },
                        "volumeMounts": [
                            { "name": "page", "mountPath": MOUNT, "readOnly": true },
                            { "name": "tmp", "mountPath": "/tmp" },
                        ],
                    }],
                    "volumes": [
                        { "name": "page", "configMap": { "name": NAME } },
                        { "name": "tmp", "emptyDir": {} },
                    ],
                },
            },
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(title: &str, message: &str) -> Page {
        Page {
            title: title.into(),
            message: message.into(),
        }
    }

    #[test]
    fn the_page_escapes_title_and_message() {
        let text = html(&page(
            "<script>alert(1)</script> & \"more\"",
            "Back at 5 o'clock <b>sharp</b>.\n\nSecond paragraph,\nsecond line.",
        ));
        assert!(!text.contains("<script>"), "{text}");
        assert!(!text.contains("<b>"), "{text}");
        assert!(text.contains(
            "<title>&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;more&quot;</title>"
        ));
        assert!(text.contains("<h1>&lt;script&gt;"), "{text}");
        assert!(text.contains("<p>Back at 5 o&#39;clock &lt;b&gt;sharp&lt;/b&gt;.</p>\n"));
        assert!(text.contains("<p>Second paragraph,<br>\nsecond line.</p>\n"));
        assert!(text.starts_with("<!doctype html>") && text.contains("charset=\"utf-8\""));
    }

    #[test]
    fn nginx_answers_503_with_retry_after_and_the_page_on_every_port() {
        let conf = nginx_conf(&[8080, 9000], Duration::from_secs(300));
        for line in [
            "listen 8080;",
            "listen 9000;",
            "add_header Retry-After 300 always;",
            "error_page 503 /.berth-maintenance-page;",
            "return 503;",
            "location = /healthz {",
            "return 200 \"ok\\n\";",
            "alias /etc/berth-maintenance/index.html;",
            "internal;",
            "pid /tmp/nginx.pid;",
            "daemon off;",
        ] {
            assert!(conf.contains(line), "missing {line:?} in:\n{conf}");
        }
        assert_eq!(conf.matches('{').count(), conf.matches('}').count());
        // `always`: the headers go with the 503 too
        assert!(!conf.contains("Retry-After 300;"));
    }

    fn services(ports: serde_json::Value) -> Vec<Service> {
        vec![
            serde_json::from_value(json!({"metadata": {"name": "a"}, "spec": {"ports": ports}}))
                .unwrap(),
        ]
    }

    fn port(number: u16, name: Option<&str>) -> ServerPort {
        ServerPort {
            number,
            name: name.map(str::to_owned),
        }
    }

    #[test]
    fn every_target_port_of_the_services_is_served() {
        let served = server_ports(
            &services(json!([
                {"port": 80, "targetPort": "http"},
                {"port": 81, "targetPort": 9000},
                {"port": 82},
                {"port": 83, "targetPort": "metrics"},
                {"port": 53, "protocol": "UDP", "targetPort": 5353},
            ])),
            8080,
        )
        .unwrap();
        assert_eq!(
            served,
            [
                port(82, None),
                port(8080, Some("http")),
                port(8081, Some("metrics")),
                port(9000, None),
            ]
        );
    }

    #[test]
    fn a_named_port_shares_a_numeric_one_and_no_ports_serve_the_default() {
        let served = server_ports(
            &services(
                json!([{"port": 80, "targetPort": 8080}, {"port": 81, "targetPort": "http"}]),
            ),
            8080,
        )
        .unwrap();
        assert_eq!(served, [port(8080, Some("http"))]);
        assert_eq!(
            server_ports(&services(json!([])), 8080).unwrap(),
            [port(8080, None)]
        );
        assert!(server_ports(&services(json!([{"port": 80, "targetPort": 70000}])), 8080).is_err());
        assert!(
            server_ports(
                &services(json!([{"port": 1, "targetPort": "a"}, {"port": 2, "targetPort": "b"}])),
                65535
            )
            .is_err()
        );
    }

    #[test]
    fn the_pods_carry_only_the_maintenance_label_and_serve_the_config_map() {
        let map = config_map("wb-test", &page("T", "M"), "conf");
        let digest = content_digest(&map);
        let deployment = deployment(
            "wb-test",
            "nginx:1.28-alpine",
            &[port(8080, Some("http"))],
            &digest,
        )
        .unwrap();
        let spec = deployment.spec.as_ref().unwrap();
        let template_labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap();
        assert_eq!(
            template_labels,
            BTreeMap::from([(POD_LABEL.to_owned(), "wb-test".to_owned())])
        );
        assert_eq!(spec.selector.match_labels.as_ref(), Some(&template_labels));
        let labels = deployment.metadata.labels.clone().unwrap();
        assert_eq!(labels[MANAGED_BY.0], MANAGED_BY.1);
        assert!(
            !labels.contains_key(crate::cluster::INSTANCE_LABEL),
            "never pruned as the app's"
        );
        let pod = spec.template.spec.as_ref().unwrap();
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some("nginx:1.28-alpine"));
        assert_eq!(
            container.ports.as_ref().unwrap()[0].name.as_deref(),
            Some("http")
        );
        assert_eq!(
            pod.volumes.as_ref().unwrap()[0]
                .config_map
                .as_ref()
                .unwrap()
                .name,
            NAME
        );
        assert_eq!(map.metadata.labels, deployment.metadata.labels);
        // a new page gives a new digest, which rolls the pods
        assert_ne!(
            digest,
            content_digest(&config_map("wb-test", &page("T", "N"), "conf"))
        );
        assert_eq!(
            digest,
            content_digest(&config_map("wb-test", &page("T", "M"), "conf"))
        );
    }
}
