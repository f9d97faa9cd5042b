//! Everything berth does to a cluster through the Kubernetes API: connect,
//! check permissions, lock, apply, and record releases.

pub mod access;
pub mod apply;
pub mod client;
pub mod crds;
pub mod create;
pub mod database;
pub mod exec;
pub mod follow;
pub mod kinds;
pub mod live;
pub mod lock;
pub mod pods;
pub mod release;
pub mod retry;
pub mod run_pod;
pub mod served;
pub mod watched;

use std::fmt::Debug;

use kube::Api;
use kube::api::DeleteParams;
use serde::de::DeserializeOwned;

/// The field manager of every server-side apply berth makes.
pub const FIELD_MANAGER: &str = "berth";
/// Label on every object berth applies.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "berth");
/// Label naming the app and environment an object belongs to (`<app>-<env>`).
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// The instance label value of an environment: `<app>-<env>`.
pub fn instance(app: &str, env: &str) -> String {
    format!("{app}-{env}")
}

/// The label selector of every object berth applied for an environment
/// (`app.kubernetes.io/instance=<app>-<env>`): its workloads among them.
pub fn environment_selector(app: &str, env: &str) -> String {
    format!("{INSTANCE_LABEL}={}", instance(app, env))
}

/// The label selector of the ReplicaSets and pods of berth's workloads:
/// `app.kubernetes.io/managed-by=berth`, which [`crate::render::label`] puts
/// on every pod template. The instance label is no good here: a workload
/// whose selector uses it (every `helm create` chart, kustomize
/// `commonLabels`) keeps its own value on the template. Each verdict picks
/// its workload's own ReplicaSets and pods from these by owner uid.
pub fn pods_selector() -> String {
    format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)
}

/// Delete `name` through `api`; an object already gone is no error. Whether
/// it was there.
pub async fn delete_if_present<K>(
    api: &Api<K>,
    name: &str,
    params: &DeleteParams,
) -> kube::Result<bool>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(false),
        Err(error) => Err(error),
    }
}
