//! The backups of one environment in its bucket: listing and reading the
//! manifests and drill records, writing records, deleting a backup whole.
//! The agent (in the pod) and the commands (on the operator's side) share
//! it; only how they connect differs.

use std::collections::BTreeMap;

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::layout::Layout;
use super::manifest::{DrillRecord, Manifest};
use crate::config::{Backups, Environment};
use crate::s3::{self, Settings, Store};

/// Where berth.yaml sets the backups' bucket up, for messages.
pub const SETTINGS: Settings = Settings {
    block: "backups",
    bucket_key: "backups.bucket",
};

/// One environment's backups: a client for its bucket and its key layout.
#[derive(Clone)]
pub struct BackupStore {
    /// The bucket.
    pub store: Store,
    /// The keys.
    pub layout: Layout,
}

impl BackupStore {
    /// The store of environment `env` as the operator's berth reaches it:
    /// `backups.endpoint` (else `AWS_ENDPOINT_URL`), with the credentials of
    /// `backups.credentials_secret`, read through the Kubernetes API.
    pub async fn connect(
        client: &kube::Client,
        env: &Environment,
        backups: &Backups,
    ) -> anyhow::Result<BackupStore> {
        let credentials = s3::secret_credentials(
            client,
            &env.namespace,
            &backups.credentials_secret,
            "backups.credentials_secret",
        )
        .await?;
        let store = Store::connect(
            SETTINGS,
            backups.endpoint.as_deref(),
            backups.region.as_deref(),
            &backups.bucket,
            Some(credentials),
        )
        .await?;
        Ok(BackupStore {
            store,
            layout: Layout {
                prefix: backups.prefix.clone(),
            },
        })
    }

    /// Every manifest, oldest first (ids sort by time).
    pub async fn manifests(&self) -> anyhow::Result<Vec<Manifest>> {
        let listed = self.store.list(&self.layout.backups()).await?;
        let keys: Vec<String> = listed
            .into_iter()
            .map(|object| object.key)
            .filter(|key| key.ends_with(".json"))
            .collect();
        let mut manifests: Vec<Manifest> = futures::stream::iter(keys)
            .map(|key| async move { self.get_json::<Manifest>(&key).await })
            .buffered(16)
            .try_filter_map(|m| async move { Ok(m) })
            .try_collect()
            .await?;
        manifests.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(manifests)
    }

    /// The manifest of backup `id`, if there is one.
    pub async fn manifest(&self, id: &str) -> anyhow::Result<Option<Manifest>> {
        self.get_json(&self.layout.manifest(id)).await
    }

    /// The drill records of every backup, by backup id, oldest first.
    pub async fn all_drills(&self) -> anyhow::Result<BTreeMap<String, Vec<DrillRecord>>> {
        let prefix = format!("{}drills/", self.layout.prefix);
        let keys: Vec<String> = self
            .store
            .list(&prefix)
            .await?
            .into_iter()
            .map(|object| object.key)
            .filter(|key| key.ends_with(".json"))
            .collect();
        let records: Vec<DrillRecord> = futures::stream::iter(keys)
            .map(|key| async move { self.get_json::<DrillRecord>(&key).await })
            .buffered(16)
            .try_filter_map(|r| async move { Ok(r) })
            .try_collect()
            .await?;
        let mut by_backup: BTreeMap<String, Vec<DrillRecord>> = BTreeMap::new();
        for record in records {
            by_backup
                .entry(record.backup.clone())
                .or_default()
                .push(record);
        }
        for drills in by_backup.values_mut() {
            drills.sort_by(|a, b| a.id.cmp(&b.id));
        }
        Ok(by_backup)
    }

    /// Write `value` as JSON at `key`.
    pub async fn put_json<T: Serialize>(&self, key: &str, value: &T) -> anyhow::Result<()> {
        let body = serde_json::to_vec_pretty(value).context("encoding a record")?;
        self.store
            .client
            .put_object()
            .bucket(&self.store.bucket)
            .key(key)
            .content_type("application/json")
            .body(body.into())
            .send()
            .await
            .map_err(|e| self.store.explain(e, "writing a record to"))?;
        Ok(())
    }

    /// The JSON object at `key`, or `None` when there is none.
    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> anyhow::Result<Option<T>> {
        let got = match self
            .store
            .client
            .get_object()
            .bucket(&self.store.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(got) => got,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None);
            }
            Err(error) => return Err(self.store.explain(error, "reading a record from")),
        };
        let bytes = got
            .body
            .collect()
            .await
            .with_context(|| format!("reading {key}"))?
            .into_bytes();
        let value = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{key} in bucket {} is not a berth record",
                self.store.bucket
            )
        })?;
        Ok(Some(value))
    }

    /// Delete backup `id` whole: its dump, its drill records, then its
    /// manifest (last, so a half-done delete still lists).
    pub async fn delete_backup(&self, id: &str) -> anyhow::Result<()> {
        let mut keys = vec![self.layout.dump(id)];
        keys.extend(
            self.store
                .list(&self.layout.drills(id))
                .await?
                .into_iter()
                .map(|object| object.key),
        );
        self.store.delete(&keys).await?;
        self.store.delete(&[self.layout.manifest(id)]).await
    }
}
