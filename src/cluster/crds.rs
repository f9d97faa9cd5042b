//! A chart's CustomResourceDefinitions: those of its `crds/` created when
//! absent (as helm does), and every applied one waited for until
//! Established, so the custom resources of the same deploy can be applied
//! after them.

use std::time::Duration;

use futures::TryStreamExt;
use futures::future::try_join_all;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionCondition,
};
use kube::runtime::watcher;
use kube::{Api, Client};

use crate::error::BerthError;
use crate::output::Output;

/// The annotation on an object a chart ships in its `crds/` directory (set
/// when berth renders it), holding the file helm printed it from, e.g.
/// `shop/crds/widgets.yaml`. Such an object is created when absent and
/// otherwise left as it is, unless the deploy upgrades CRDs
/// (`--upgrade-crds`); `--prune` never deletes it.
pub const FROM_CHART_CRDS: &str = "berth.dev/chart-crds";

/// The line saying a chart's CRD was left as the cluster has it.
pub fn left_unchanged(object: &str) -> String {
    format!(
        "{object} exists: left unchanged (a chart's crds/ are only created, as helm does; \
         --upgrade-crds applies them)"
    )
}

/// How long a CRD may take to be Established; the API server's own
/// controller usually takes well under a second.
pub const ESTABLISHED_WITHIN: Duration = Duration::from_secs(120);

/// Where a CRD is on its way to being served.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Established: its custom resources are served.
    Established,
    /// It never will be (its names conflict with another CRD's): why.
    Refused(String),
    /// Not yet: what its conditions say.
    Pending(String),
}

/// A condition's reason and message, `Reason: message`.
fn said(condition: &CustomResourceDefinitionCondition) -> String {
    let reason = condition.reason.as_deref().unwrap_or("NoReason");
    let message = condition.message.as_deref().unwrap_or("no message");
    format!("{reason}: {message}")
}

/// The verdict on `crd` as last seen (`None`: it does not exist).
fn verdict(crd: Option<&CustomResourceDefinition>) -> Verdict {
    let Some(crd) = crd else {
        return Verdict::Pending("it does not exist".into());
    };
    let conditions = crd
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[]);
    let condition = |kind: &str| conditions.iter().find(|c| c.type_ == kind);
    if condition("Established").is_some_and(|c| c.status == "True") {
        return Verdict::Established;
    }
    if let Some(names) = condition("NamesAccepted").filter(|c| c.status == "False") {
        return Verdict::Refused(said(names));
    }
    let said: Vec<String> = conditions
        .iter()
        .filter(|c| c.status != "True")
        .map(|c| format!("{}={} ({})", c.type_, c.status, said(c)))
        .collect();
    if said.is_empty() {
        Verdict::Pending("the API server has not reported its conditions yet".into())
    } else {
        Verdict::Pending(said.join("; "))
    }
}

/// Watch every CRD of `names` until it is Established, saying so as each
/// is. A CRD whose names are refused fails at once (exit 1) with the API
/// server's message; one not Established within `limit` fails timed out
/// (exit 4) with what its conditions say.
pub async fn established(
    client: &Client,
    names: &[String],
    limit: Duration,
    out: &Output,
) -> anyhow::Result<()> {
    out.info(&format!(
        "waiting until {} {} Established",
        names.join(", "),
        if names.len() == 1 { "is" } else { "are" }
    ));
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    try_join_all(names.iter().map(|name| {
        let api = api.clone();
        async move {
            let mut last = Verdict::Pending("not seen yet".into());
            let watching = async {
                let mut events = std::pin::pin!(watcher::watch_object(api, name));
                while let Some(crd) = events.try_next().await? {
                    last = verdict(crd.as_ref());
                    match &last {
                        Verdict::Established => return anyhow::Ok(()),
                        Verdict::Refused(why) => {
                            return Err(BerthError::DeployFailed(format!(
                                "CustomResourceDefinition {name} cannot be Established: {why}"
                            ))
                            .into());
                        }
                        Verdict::Pending(_) => {}
                    }
                }
                Err(anyhow::anyhow!(
                    "the watch of CustomResourceDefinition {name} ended"
                ))
            };
            match tokio::time::timeout(limit, watching).await {
                Ok(result) => result?,
                Err(_) => {
                    let why = match &last {
                        Verdict::Pending(why) | Verdict::Refused(why) => why.clone(),
                        Verdict::Established => String::new(),
                    };
                    return Err(BerthError::TimedOut(format!(
                        "CustomResourceDefinition {name} was not Established within {}: {why}",
                        crate::duration::display(limit)
                    ))
                    .into());
                }
            }
            out.info(&format!("CustomResourceDefinition {name} is Established"));
            anyhow::Ok(())
        }
    }))
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(conditions: serde_json::Value) -> CustomResourceDefinition {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"kind": "Widget", "plural": "widgets"}, "versions": []},
            "status": {"conditions": conditions}
        }))
        .unwrap()
    }

    fn condition(kind: &str, status: &str, message: &str) -> serde_json::Value {
        serde_json::json!({"type": kind, "status": status, "reason": "Why", "message": message,
                           "lastTransitionTime": "2026-01-01T00:00:00Z"})
    }

    #[test]
    fn established_true_is_done() {
        let c = crd(serde_json::json!([
            condition("NamesAccepted", "True", "no conflicts found"),
            condition(
                "Established",
                "True",
                "the initial names have been accepted"
            ),
        ]));
        assert_eq!(verdict(Some(&c)), Verdict::Established);
    }

    #[test]
    fn refused_names_fail_with_the_servers_message() {
        let c = crd(serde_json::json!([
            condition("NamesAccepted", "False", "\"widgets\" is already in use"),
            condition("Established", "False", "not all names are accepted"),
        ]));
        assert_eq!(
            verdict(Some(&c)),
            Verdict::Refused("Why: \"widgets\" is already in use".into())
        );
    }

    #[test]
    fn anything_else_is_pending_with_what_the_conditions_say() {
        let c = crd(serde_json::json!([condition(
            "Established",
            "False",
            "installing"
        )]));
        assert_eq!(
            verdict(Some(&c)),
            Verdict::Pending("Established=False (Why: installing)".into())
        );
        assert!(matches!(
            verdict(Some(&crd(serde_json::json!([])))),
            Verdict::Pending(_)
        ));
        assert!(matches!(verdict(None), Verdict::Pending(_)));
    }
}
