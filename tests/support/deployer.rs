//! A least-privilege deployer for tests: the shipped RBAC
//! (cluster-setup/rbac/deployer.yaml) bound to a ServiceAccount of the test's
//! namespace, and a kubeconfig holding the account's token.

use std::path::PathBuf;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::PostParams;
use kube::config::Kubeconfig;
use kube::{Api, Client};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{create, local_env, repo_root, unique_name};

/// The shipped deployer RBAC (cluster-setup/rbac/deployer.yaml) for
/// `namespace`, without `verb` on `resource`, bound to a new ServiceAccount.
/// Its cluster-wide objects are owned by the namespace, so they go with it.
/// Returns a kubeconfig (context `berth-local`) with the account's token.
pub async fn deployer_without(
    client: &Client,
    namespace: &str,
    resource: &str,
    verb: &str,
) -> PathBuf {
    deployer_with(client, namespace, |rules| without(rules, resource, verb)).await
}

/// The shipped deployer RBAC for `namespace`, as it is, bound to the
/// ServiceAccount `berth-deployer`: a kubeconfig with the account's token
/// (an hour long), for tests that revoke it (delete the RoleBinding `berth-deployer` or
/// the ServiceAccount) while berth works.
pub async fn deployer(client: &Client, namespace: &str) -> PathBuf {
    deployer_with(client, namespace, |rules| rules.as_array().unwrap().clone()).await
}

/// The shipped deployer RBAC for `namespace` with its Role's rules as
/// `rules` makes them; a kubeconfig with the account's token.
async fn deployer_with(
    client: &Client,
    namespace: &str,
    rules: impl Fn(&Value) -> Vec<Value>,
) -> PathBuf {
    let text =
        std::fs::read_to_string(repo_root().join("cluster-setup/rbac/deployer.yaml")).unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let owner = namespaces.get(namespace).await.unwrap();
    let owner = json!([{"apiVersion": "v1", "kind": "Namespace", "name": namespace, "uid": owner.metadata.uid}]);
    let cluster_name = format!("berth-deployer-{namespace}");
    for document in serde_norway::Deserializer::from_str(&text) {
        let mut object = Value::deserialize(document).unwrap();
        let kind = object["kind"].as_str().unwrap().to_string();
        let cluster_scoped = kind.starts_with("Cluster");
        if cluster_scoped {
            object["metadata"]["name"] = json!(cluster_name);
            object["metadata"]["ownerReferences"] = owner.clone();
        } else {
            object["metadata"]["namespace"] = json!(namespace);
        }
        if let Some(subjects) = object["subjects"].as_array_mut() {
            for subject in subjects {
                subject["namespace"] = json!(namespace);
            }
        }
        if kind == "ClusterRoleBinding" {
            object["roleRef"]["name"] = json!(cluster_name);
        }
        if kind == "ClusterRole" {
            object["rules"][0]["resourceNames"] = json!([namespace]);
        }
        if kind == "Role" {
            object["rules"] = json!(rules(&object["rules"]));
        }
        let params = PostParams::default();
        match kind.as_str() {
            "ServiceAccount" => drop(create::<ServiceAccount>(client, namespace, object).await),
            "Role" => drop(create::<Role>(client, namespace, object).await),
            "RoleBinding" => drop(create::<RoleBinding>(client, namespace, object).await),
            "ClusterRole" => {
                let role: ClusterRole = serde_json::from_value(object).unwrap();
                Api::all(client.clone())
                    .create(&params, &role)
                    .await
                    .unwrap();
            }
            "ClusterRoleBinding" => {
                let binding: ClusterRoleBinding = serde_json::from_value(object).unwrap();
                Api::all(client.clone())
                    .create(&params, &binding)
                    .await
                    .unwrap();
            }
            other => panic!("unexpected {other} in deployer.yaml"),
        }
    }
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let token = accounts
        .create_token_request("berth-deployer", &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let admin = Kubeconfig::read_from(local_env().var("KUBECONFIG")).unwrap();
    let cluster = admin.clusters[0].cluster.as_ref().unwrap();
    let kubeconfig = std::env::temp_dir().join(unique_name("deployer-kubeconfig"));
    std::fs::write(
        &kubeconfig,
        serde_json::to_string(&json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "c", "cluster": {
                "server": cluster.server,
                "certificate-authority-data": cluster.certificate_authority_data,
            }}],
            "users": [{"name": "deployer", "user": {"token": token}}],
            "contexts": [{"name": "berth-local", "context": {"cluster": "c", "user": "deployer", "namespace": namespace}}],
            "current-context": "berth-local",
        }))
        .unwrap(),
    )
    .unwrap();
    kubeconfig
}

/// `rules` with `verb` taken away from `resource` (and only from it).
fn without(rules: &Value, resource: &str, verb: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut found = false;
    for rule in rules.as_array().unwrap() {
        let resources: Vec<&str> = rule["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        if !resources.contains(&resource) {
            out.push(rule.clone());
            continue;
        }
        found = true;
        let others: Vec<&str> = resources
            .iter()
            .copied()
            .filter(|r| *r != resource)
            .collect();
        if !others.is_empty() {
            let mut kept = rule.clone();
            kept["resources"] = json!(others);
            out.push(kept);
        }
        let mut reduced = rule.clone();
        reduced["resources"] = json!([resource]);
        let verbs: Vec<&Value> = rule["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| *v != verb)
            .collect();
        reduced["verbs"] = json!(verbs);
        out.push(reduced);
    }
    assert!(found, "deployer.yaml grants nothing on {resource}");
    out
}
