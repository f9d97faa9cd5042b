//! Clearing the app's cached render results one workflow at a time: the
//! app's row lock on that workflow, its cache columns reset, its objects
//! deleted, and a checkpoint in the cluster so an interrupted run resumes.

use std::collections::BTreeMap;

use anyhow::Context;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Statement, Transaction};

use crate::cluster::delete_if_present;
use crate::config::RenderCache;
use crate::s3::Store;

/// The ConfigMap holding an unfinished run's checkpoint.
const CHECKPOINT: &str = "berth-clear-render-cache";
/// Its key.
const CHECKPOINT_KEY: &str = "checkpoint.json";

/// Where a run stands: enough to resume it after any interruption.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// When the run began (RFC 3339).
    pub started_at: String,
    /// Every workflow up to this id was handled, in id order.
    pub done_through: Option<i64>,
    /// Workflows to try again: busy ones, and ones whose objects S3 refused.
    pub retry: Vec<i64>,
    /// Workflows cleared at the first try.
    pub cleared: u64,
    /// Workflows busy at first, cleared on a later try.
    pub busy_then_cleared: u64,
    /// Cache rows reset.
    pub rows_cleared: u64,
    /// Objects deleted.
    pub objects_deleted: u64,
}

impl Checkpoint {
    /// Read the checkpoint of `namespace`, if a run left one.
    pub async fn load(client: &Client, namespace: &str) -> anyhow::Result<Option<Checkpoint>> {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let Some(map) = api
            .get_opt(CHECKPOINT)
            .await
            .context("reading the clear-render-cache checkpoint")?
        else {
            return Ok(None);
        };
        let text = map
            .data
            .and_then(|d| d.get(CHECKPOINT_KEY).cloned())
            .unwrap_or_default();
        let checkpoint = serde_json::from_str(&text).with_context(|| {
            format!("ConfigMap {namespace}/{CHECKPOINT} is not a berth checkpoint; delete it")
        })?;
        Ok(Some(checkpoint))
    }

    /// Write it (server-side apply, so it is created or replaced).
    pub async fn save(&self, client: &Client, namespace: &str) -> anyhow::Result<()> {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let map = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": CHECKPOINT,
                "labels": {crate::cluster::MANAGED_BY.0: crate::cluster::MANAGED_BY.1},
            },
            "data": {CHECKPOINT_KEY: serde_json::to_string(self)?},
        });
        api.patch(
            CHECKPOINT,
            &PatchParams::apply(crate::cluster::FIELD_MANAGER).force(),
            &Patch::Apply(map),
        )
        .await
        .context("saving the clear-render-cache checkpoint")?;
        Ok(())
    }

    /// Remove it: the run finished with nothing left to retry.
    pub async fn delete(client: &Client, namespace: &str) -> anyhow::Result<()> {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        delete_if_present(&api, CHECKPOINT, &DeleteParams::default())
            .await
            .context("deleting the clear-render-cache checkpoint")?;
        Ok(())
    }

    /// The workflows still to handle, in order: those after `done_through`,
    /// then those to retry.
    pub fn remaining(&self, ids: &[i64]) -> (Vec<i64>, Vec<i64>) {
        let fresh = ids
            .iter()
            .copied()
            .filter(|id| self.done_through.is_none_or(|done| *id > done))
            .collect();
        (fresh, self.retry.clone())
    }
}

/// What happened to one workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its rows were reset and its objects deleted.
    Cleared {
        /// Cache rows reset.
        rows: u64,
        /// Objects deleted.
        objects: u64,
    },
    /// Another session holds its lock; try again later.
    Busy,
    /// Its rows were reset, but S3 did not delete its objects.
    ObjectsLeft(String),
}

/// The prepared statements of a run.
pub struct Statements {
    lock: Statement,
    clear: Statement,
    count: Statement,
}

impl Statements {
    /// Prepare the configured SQL; a statement the database refuses is bad
    /// configuration.
    pub async fn prepare(db: &tokio_postgres::Client, cache: &RenderCache) -> anyhow::Result<Self> {
        let prepare = |sql: &str, key: &'static str| {
            let sql = sql.to_string();
            async move {
                db.prepare(&sql).await.map_err(|e| {
                    crate::error::input_error(format!(
                        "the database refused the SQL of `render_cache` ({key}): {sql}: {}; \
                         check the table and column names in berth.yaml",
                        e.as_db_error()
                            .map_or(e.to_string(), |d| d.message().to_string())
                    ))
                })
            }
        };
        Ok(Statements {
            lock: prepare(&cache.lock_sql, "lock_sql").await?,
            clear: prepare(&cache.clear_sql, "clear").await?,
            count: prepare(&cache.count_sql, "clear").await?,
        })
    }

    /// How many of workflow `id`'s rows hold a cached result.
    pub async fn count(&self, db: &tokio_postgres::Client, id: i64) -> anyhow::Result<u64> {
        let param = id_param(&self.count, id)?;
        let row = db.query_one(&self.count, &[param.as_ref()]).await?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }
}

/// Every workflow id, in order.
pub async fn workflow_ids(
    db: &tokio_postgres::Client,
    cache: &RenderCache,
) -> anyhow::Result<Vec<i64>> {
    let rows = db.query(&cache.list_sql, &[]).await.map_err(|e| {
        crate::error::input_error(format!(
            "the database refused to list the workflows ({}); check \
                 `render_cache.workflow_table` in berth.yaml",
            e.as_db_error()
                .map_or(e.to_string(), |d| d.message().to_string())
        ))
    })?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Clear workflow `id`: in one transaction, take the app's lock on it
/// (giving up after the lock timeout: `Busy`), reset its cache rows, delete
/// its objects, commit. Objects are deleted while the lock is held, so no
/// writer can cache a new result under the prefix in between; should S3
/// fail, the reset rows are still committed (a missing cache is a miss).
pub async fn clear_one(
    db: &mut tokio_postgres::Client,
    statements: &Statements,
    cache: &RenderCache,
    store: &Store,
    id: i64,
) -> anyhow::Result<Outcome> {
    let tx = db.transaction().await.context("starting a transaction")?;
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{}ms'",
        cache.lock_timeout.as_millis()
    ))
    .await
    .context("setting the lock timeout")?;
    let param = id_param(&statements.lock, id)?;
    match tx.query(&statements.lock, &[param.as_ref()]).await {
        Ok(_) => {}
        Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
            tx.rollback().await.ok();
            return Ok(Outcome::Busy);
        }
        Err(e) => return Err(e).with_context(|| format!("locking workflow {id}")),
    }
    let rows = reset(&tx, statements, id).await?;
    let deleted = delete_objects(store, &cache.prefix_of(id)).await;
    tx.commit()
        .await
        .with_context(|| format!("committing workflow {id}"))?;
    Ok(match deleted {
        Ok(objects) => Outcome::Cleared { rows, objects },
        Err(e) => Outcome::ObjectsLeft(format!("{e:#}")),
    })
}

async fn reset(tx: &Transaction<'_>, statements: &Statements, id: i64) -> anyhow::Result<u64> {
    let param = id_param(&statements.clear, id)?;
    tx.execute(&statements.clear, &[param.as_ref()])
        .await
        .with_context(|| format!("resetting the cache rows of workflow {id}"))
}

/// Delete every object under `prefix`; how many there were.
async fn delete_objects(store: &Store, prefix: &str) -> anyhow::Result<u64> {
    let keys: Vec<String> = store
        .list(prefix)
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    store.delete(&keys).await?;
    Ok(keys.len() as u64)
}

/// Objects and bytes per workflow prefix, from one listing of the bucket
/// under the prefix's constant start (for `--dry-run`).
pub async fn objects_by_workflow(
    store: &Store,
    cache: &RenderCache,
    ids: &[i64],
) -> anyhow::Result<BTreeMap<i64, (u64, u64)>> {
    let common = cache.prefix.split("{workflow}").next().unwrap_or_default();
    let prefixes: Vec<(i64, String)> = ids.iter().map(|id| (*id, cache.prefix_of(*id))).collect();
    let by_prefix: BTreeMap<&str, i64> = prefixes.iter().map(|(id, p)| (p.as_str(), *id)).collect();
    let mut counts = BTreeMap::new();
    for object in store.list(common).await? {
        let owner = by_prefix
            .range(..=object.key.as_str())
            .next_back()
            .filter(|(prefix, _)| object.key.starts_with(*prefix))
            .map(|(_, id)| *id);
        if let Some(id) = owner {
            let entry = counts.entry(id).or_insert((0, 0));
            entry.0 += 1;
            entry.1 += object.size;
        }
    }
    Ok(counts)
}

/// Workflow `id` as the parameter type the statement expects.
fn id_param(statement: &Statement, id: i64) -> anyhow::Result<Box<dyn ToSql + Sync + Send>> {
    let ty = statement.params().first().cloned().unwrap_or(Type::INT8);
    Ok(match ty {
        Type::INT2 => Box::new(i16::try_from(id)?),
        Type::INT4 => Box::new(i32::try_from(id)?),
        Type::INT8 => Box::new(id),
        Type::TEXT | Type::VARCHAR => Box::new(id.to_string()),
        other => anyhow::bail!("$1 of the render_cache SQL is a {other}; berth passes integer ids"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_resumes_after_the_last_workflow_done_then_retries() {
        let checkpoint = Checkpoint {
            done_through: Some(3),
            retry: vec![2],
            ..Checkpoint::default()
        };
        assert_eq!(
            checkpoint.remaining(&[1, 2, 3, 4, 10]),
            (vec![4, 10], vec![2])
        );
        assert_eq!(
            Checkpoint::default().remaining(&[1, 2]),
            (vec![1, 2], vec![])
        );
    }
}
