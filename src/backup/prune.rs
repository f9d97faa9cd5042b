//! `berth db agent prune`: retention applied to the bucket. The plan
//! ([`super::retention::plan`]) decides; this deletes what it says, each
//! backup whole (dump, drill records, then manifest).

use serde::Serialize;

use super::retention::{self, Decision};
use super::store::BackupStore;
use crate::config::Retention;
use crate::output::stderr_line;

/// The result of `berth db agent prune`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pruned {
    /// Backups deleted, and why.
    pub deleted: Vec<Decision>,
    /// Backups kept, and why.
    pub kept: Vec<Decision>,
}

/// Apply `retention` to the backups in `store`.
pub async fn prune(store: &BackupStore, retention: &Retention) -> anyhow::Result<Pruned> {
    let manifests = store.manifests().await?;
    let plan = retention::plan(&manifests, retention);
    for decision in &plan.delete {
        stderr_line(&format!(
            "deleting backup {} ({})",
            decision.id, decision.reason
        ));
        store.delete_backup(&decision.id).await?;
    }
    Ok(Pruned {
        deleted: plan.delete,
        kept: plan.keep,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_json_has_the_contract_shape() {
        let decision = |id: &str, reason: &str| Decision {
            id: id.into(),
            reason: reason.into(),
        };
        let pruned = Pruned {
            deleted: vec![decision("a", "beyond daily 7")],
            kept: vec![decision("b", "daily 2026-12-05")],
        };
        assert_eq!(
            serde_json::to_value(&pruned).unwrap(),
            serde_json::json!({"deleted": [{"id": "a", "reason": "beyond daily 7"}],
                               "kept": [{"id": "b", "reason": "daily 2026-12-05"}]})
        );
    }
}
