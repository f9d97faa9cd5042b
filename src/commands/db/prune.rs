//! `berth db prune ENV [--dry-run]`: delete the backups retention no longer
//! keeps (dump, drill records, then manifest), saying why each one stays or
//! goes. See [`crate::backup::retention`] for the rules.

use std::sync::Arc;

use serde::Serialize;

use super::setup;
use crate::backup::restore_record::{RestoreRecord, Stored};
use crate::backup::retention::{self, Decision, Plan};
use crate::cli::{GlobalArgs, PruneArgs};
use crate::output::Output;

/// The report of `db prune`.
#[derive(Debug, Serialize)]
struct Report {
    environment: String,
    dry_run: bool,
    /// Backups deleted (or that would be, with `--dry-run`), newest first.
    deleted: Vec<Decision>,
    /// Backups kept, newest first.
    kept: Vec<Decision>,
}

/// Run `db prune`.
pub async fn run(global: &GlobalArgs, args: &PruneArgs, out: Arc<Output>) -> anyhow::Result<()> {
    let config = crate::commands::load_config(global, &[&args.env], &out)?;
    let configured = setup::connect(&config, &args.env).await?;
    let store = &configured.store;
    let manifests = store.manifests().await?;
    let mut plan = retention::plan(&manifests, &configured.backups.retention);
    let restoring = Stored::load(&configured.client, &configured.env.namespace).await?;
    if let Some((_, record)) = restoring {
        spare_restore(&mut plan, &record);
    }
    for kept in &plan.keep {
        out.info(&format!("keep {}: {}", kept.id, kept.reason));
    }
    let verb = if args.dry_run {
        "would delete"
    } else {
        "delete"
    };
    let mut deleted = Vec::new();
    let mut failure = None;
    for doomed in plan.delete {
        out.info(&format!("{verb} {}: {}", doomed.id, doomed.reason));
        if !args.dry_run
            && let Err(error) = store.delete_backup(&doomed.id).await
        {
            failure = Some(error.context(format!("deleting backup {}", doomed.id)));
            break;
        }
        deleted.push(doomed);
    }
    out.info(&format!(
        "{}: kept {}, {} {}",
        args.env,
        plan.keep.len(),
        if args.dry_run {
            "would delete"
        } else {
            "deleted"
        },
        deleted.len()
    ));
    out.json_report(&Report {
        environment: args.env.clone(),
        dry_run: args.dry_run,
        deleted,
        kept: plan.keep,
    });
    failure.map_or(Ok(()), Err)
}

/// Keep the backups an unfinished restore needs: the one it restores and
/// its safety backup.
fn spare_restore(plan: &mut Plan, record: &RestoreRecord) {
    let needed = [Some(&record.backup), record.safety_backup.as_ref()];
    let (spared, doomed): (Vec<Decision>, Vec<Decision>) = std::mem::take(&mut plan.delete)
        .into_iter()
        .partition(|d| needed.contains(&Some(&d.id)));
    plan.delete = doomed;
    for mut decision in spared {
        decision.reason = format!(
            "an unfinished restore (ConfigMap {}) needs it",
            crate::backup::restore_record::CONFIG_MAP
        );
        plan.keep.push(decision);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unfinished_restore_keeps_its_backup_and_safety_backup() {
        let decision = |id: &str| Decision {
            id: id.into(),
            reason: "manual 3 of 2".into(),
        };
        let mut plan = Plan {
            keep: vec![decision("new")],
            delete: vec![decision("safety"), decision("old"), decision("restored")],
        };
        let mut record = RestoreRecord::new(
            "staging",
            "restored",
            false,
            "ada@box",
            "2026-12-06T12:00:00Z".parse().unwrap(),
        );
        record.safety_backup = Some("safety".into());
        spare_restore(&mut plan, &record);
        let ids = |d: &[Decision]| d.iter().map(|d| d.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&plan.delete), ["old"]);
        assert_eq!(ids(&plan.keep), ["new", "safety", "restored"]);
        assert!(plan.keep[1].reason.contains("unfinished restore"));
    }
}
