//! The step before every apply: a Service whose live self is in maintenance
//! is applied still switched to the maintenance pods, with the selector the
//! deploy renders recorded for `berth maintenance ENV off` to restore. So a
//! deploy (or rollback, or promotion) never ends maintenance behind `off`'s
//! back, and `diff` shows what a deploy would apply.

use anyhow::Context;
use futures::future::try_join_all;
use k8s_openapi::api::core::v1::Service;
use kube::{Api, Client, ResourceExt};

use crate::cluster::access::Need;
use crate::cluster::apply::Resolved;
use crate::maintenance;

/// `objects` as a deploy must apply them (see the module doc). Reads each
/// rendered core Service; changes nothing.
pub async fn hold(
    client: &Client,
    namespace: &str,
    objects: &[Resolved],
) -> anyhow::Result<Vec<Resolved>> {
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    try_join_all(objects.iter().map(|object| {
        let api = api.clone();
        async move {
            if !is_service(object) {
                return Ok(object.clone());
            }
            let name = object.object.name_any();
            let live = api
                .get_opt(&name)
                .await
                .with_context(|| format!("reading Service {name}"))?;
            let held = live.and_then(|live| maintenance::hold(&object.object, &live));
            Ok(match held {
                Some(held) => {
                    tracing::info!("Service {name} is in maintenance and stays so");
                    Resolved {
                        object: held,
                        ..object.clone()
                    }
                }
                None => object.clone(),
            })
        }
    }))
    .await
}

/// The permission [`hold`] needs: reading the Services it is given.
pub fn needs(objects: &[Resolved], namespace: &str) -> Vec<Need> {
    if !objects.iter().any(is_service) {
        return Vec::new();
    }
    vec![Need {
        verb: "get",
        group: String::new(),
        resource: "services".into(),
        namespace: Some(namespace.to_string()),
        name: None,
    }]
}

/// A core Service, the only kind maintenance switches.
fn is_service(object: &Resolved) -> bool {
    object.resource.kind == "Service" && object.resource.group.is_empty()
}
