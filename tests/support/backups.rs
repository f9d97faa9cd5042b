//! What the backup tests share: a bucket of the test's own, the Secret the
//! backup pods read, the app's `backups:` block, and reading the bucket
//! and the namespace's Jobs.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use serde_json::{Value, json};

use super::berth_image::berth_image;
use super::real_app::RealApp;
use super::{Cleanup, create, local_env, unique_name};

/// A bucket of the test's own, emptied and removed when dropped.
pub async fn bucket(prefix: &str) -> (String, Cleanup) {
    let name = unique_name(prefix);
    let cleanup = bucket_named(&name).await;
    (name, cleanup)
}

/// The bucket `name`, created; emptied and removed when the guard drops.
pub async fn bucket_named(name: &str) -> Cleanup {
    local_env()
        .s3()
        .await
        .create_bucket()
        .bucket(name)
        .send()
        .await
        .expect("create the bucket");
    Cleanup::Bucket(name.to_string())
}

/// The Secret `backup-s3` the backup pods read: MinIO's credentials and
/// its address as pods reach it.
pub async fn credentials_secret(client: &Client, namespace: &str) {
    let env = local_env();
    let _: Secret = create(
        client,
        namespace,
        json!({
            "metadata": {"name": "backup-s3"},
            "stringData": {
                "AWS_ACCESS_KEY_ID": env.var("AWS_ACCESS_KEY_ID"),
                "AWS_SECRET_ACCESS_KEY": env.var("AWS_SECRET_ACCESS_KEY"),
                "AWS_ENDPOINT_URL": env.var("BERTH_NODE_S3_URL"),
                "AWS_REGION": env.var("AWS_REGION"),
            }
        }),
    )
    .await;
}

/// Give the app's environment `test` a `backups:` block (replacing any)
/// in `bucket`, run by berth's image, with the `extra` keys (YAML lines
/// indented for the block, e.g. `      schedule: "* * * * *"\n`).
pub fn set_backups(app: &RealApp, bucket: &str, extra: &str) {
    write_backups(app, bucket, berth_image(), extra);
}

/// [`set_backups`] with `image` (for tests where no pod runs).
pub fn write_backups(app: &RealApp, bucket: &str, image: &str, extra: &str) {
    let path = app.dir.join("berth.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let (head, tail) = text
        .split_once("\ntasks:")
        .expect("the app's berth.yaml has tasks");
    let head = head.split_once("\n    backups:\n").map_or(head, |(h, _)| h);
    let block = format!(
        "    backups:\n      bucket: {bucket}\n      credentials_secret: backup-s3\n      \
         image: {image}\n      timeout: 10m\n{extra}"
    );
    std::fs::write(&path, format!("{head}\n{block}tasks:{tail}")).unwrap();
}

/// The JSON object at `key` in `bucket`, if there is one.
pub async fn json_object(bucket: &str, key: &str) -> Option<Value> {
    let got = local_env().get_object(bucket, key).await.ok()?;
    let bytes = got.body.collect().await.unwrap().into_bytes();
    Some(serde_json::from_slice(&bytes).expect("a JSON record"))
}

/// How many multipart uploads are in progress in `bucket`.
pub async fn multipart_uploads(bucket: &str) -> usize {
    local_env()
        .s3()
        .await
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .expect("list the multipart uploads")
        .uploads()
        .len()
}

/// Every key in `bucket`.
pub async fn keys(bucket: &str) -> Vec<String> {
    let listed = local_env()
        .s3()
        .await
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .expect("list the bucket");
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

/// The names of the Jobs in `namespace`.
pub async fn jobs(client: &Client, namespace: &str) -> Vec<String> {
    Api::<Job>::namespaced(client.clone(), namespace)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect()
}
