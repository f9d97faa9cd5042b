//! `berth assets push|prune` and the upload inside `advanced-deploy`,
//! against the local MinIO, API server and registry.

mod support;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::ListParams;
use support::images::noise;
use support::images::{self, Layer, MediaTypes};
use support::*;

/// A throw-away project: berth.yaml deploying the kwok-backed app's staging
/// overlay into a namespace of its own, with `assets:` pointing at a fresh bucket.
/// Dropping it deletes the namespace, the bucket and the directory.
struct Project {
    dir: PathBuf,
    namespace: String,
    bucket: String,
    _cleanup: [Cleanup; 3],
}

impl Project {
    /// `from` and `extra` are YAML for the `assets:` block's `from:` and further keys.
    async fn new(prefix: &str, from: &str, extra: &str) -> Project {
        let namespace = unique_name(prefix);
        let bucket = namespace.clone();
        let dir = std::env::temp_dir().join(&namespace);
        let cleanup = [
            Cleanup::Namespace(namespace.clone()),
            Cleanup::Bucket(bucket.clone()),
            Cleanup::Dir(dir.clone()),
        ];
        std::fs::create_dir_all(&dir).unwrap();
        local_env()
            .s3()
            .await
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        let project = Project {
            dir,
            namespace,
            bucket,
            _cleanup: cleanup,
        };
        project.configure(from, extra);
        project
    }

    /// Rewrite berth.yaml with these `assets:` settings.
    fn configure(&self, from: &str, extra: &str) {
        let overlay = kwok_app().join("overlays/staging");
        let mut config = example_config(&self.namespace, &overlay);
        config.push_str(&format!(
            "    assets:\n      from: {from}\n      bucket: {}\n      prefix: static/\n",
            self.bucket
        ));
        for line in extra.lines() {
            config.push_str(&format!("      {line}\n"));
        }
        std::fs::write(self.dir.join("berth.yaml"), config).unwrap();
    }

    /// A directory of files below the project, created with `files` (path, content).
    fn tree(&self, name: &str, files: &[(impl AsRef<str>, Vec<u8>)]) -> PathBuf {
        let root = self.dir.join(name);
        for (path, content) in files {
            let path = root.join(path.as_ref());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        root
    }

    fn command(&self, args: &[&str]) -> Command {
        berth_command(&self.dir.join("berth.yaml"), &self.dir, args)
    }

    fn berth(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Every key in the bucket, sorted.
    async fn keys(&self) -> Vec<String> {
        let s3 = local_env().s3().await;
        let mut keys = Vec::new();
        let mut pages = s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            keys.extend(
                page.unwrap()
                    .contents
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|o| o.key),
            );
        }
        keys.sort();
        keys
    }
}

/// Text that compresses well.
fn text(seed: u64, len: usize) -> Vec<u8> {
    format!("/* {seed} */ function f{seed}() {{ return {seed}; }}\n")
        .repeat(len / 10 + 1)
        .into_bytes()[..len]
        .to_vec()
}

struct Served {
    body: Vec<u8>,
    content_type: Option<String>,
    cache_control: Option<String>,
    content_encoding: Option<String>,
}

async fn get(bucket: &str, key: &str) -> Served {
    let object = local_env()
        .get_object(bucket, key)
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
    Served {
        content_type: object.content_type.clone(),
        cache_control: object.cache_control.clone(),
        content_encoding: object.content_encoding.clone(),
        body: object.body.collect().await.unwrap().into_bytes().to_vec(),
    }
}

#[tokio::test]
async fn a_push_uploads_exactly_then_nothing_then_only_what_changed() {
    let project = Project::new("assets-push", "{ dir: build }", "precompress: [gzip, br]").await;
    let big = noise(20 * 1024 * 1024 + 12345, 1);
    let files = vec![
        ("js/app.3f2a9c1e.js", text(1, 50_000)),
        ("css/site.css", text(2, 3_000)),
        ("img/logo.png", noise(5_000, 3)),
        ("media/intro.bin", big.clone()),
        ("robots.txt", b"User-agent: *\n".to_vec()),
    ];
    project.tree("build", &files);

    let first = project.berth(&["assets", "push", "test", "1a2b3c4", "--output", "json"]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    let report1 = report(&first);
    // five files, plus .gz and .br of the two text files worth compressing
    assert_eq!(report1["uploaded"], 9, "{report1}");
    assert_eq!(report1["skipped"], 0, "{report1}");
    assert!(report1["bytes_uploaded"].as_u64().unwrap() > big.len() as u64);
    assert!(report1["duration_s"].as_f64().unwrap() > 0.0);

    for (path, content) in &files {
        let served = get(&project.bucket, &format!("static/{path}")).await;
        assert!(served.body == *content, "{path} differs");
    }
    let js = get(&project.bucket, "static/js/app.3f2a9c1e.js").await;
    assert_eq!(
        js.content_type.as_deref(),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        js.cache_control.as_deref(),
        Some("public, max-age=31536000, immutable")
    );
    let css = get(&project.bucket, "static/css/site.css").await;
    assert_eq!(css.content_type.as_deref(), Some("text/css; charset=utf-8"));
    assert_eq!(css.cache_control.as_deref(), Some("public, max-age=300"));
    let png = get(&project.bucket, "static/img/logo.png").await;
    assert_eq!(png.content_type.as_deref(), Some("image/png"));

    let gz = get(&project.bucket, "static/js/app.3f2a9c1e.js.gz").await;
    assert_eq!(gz.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(
        gz.content_type.as_deref(),
        Some("text/javascript; charset=utf-8")
    );
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert!(
        unzipped == files[0].1,
        "the .gz variant decompresses to the file"
    );
    let br = get(&project.bucket, "static/css/site.css.br").await;
    assert_eq!(br.content_encoding.as_deref(), Some("br"));
    let mut unbrotli = Vec::new();
    brotli::BrotliDecompress(&mut &br.body[..], &mut unbrotli).unwrap();
    assert!(
        unbrotli == files[1].1,
        "the .br variant decompresses to the file"
    );
    assert!(
        project
            .keys()
            .await
            .contains(&"static/.berth/manifests/1a2b3c4.json".to_string())
    );

    let again = project.berth(&["assets", "push", "test", "1a2b3c4", "--output", "json"]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    let report2 = report(&again);
    assert_eq!(report2["uploaded"], 0, "{report2}");
    assert_eq!(report2["skipped"], 9, "{report2}");
    assert_eq!(report2["bytes_uploaded"], 0, "{report2}");

    std::fs::write(project.dir.join("build/img/logo.png"), noise(6_000, 4)).unwrap();
    let changed = project.berth(&["assets", "push", "test", "5e6f7a8", "--output", "json"]);
    assert_eq!(code(&changed), 0, "{}", stderr(&changed));
    let report3 = report(&changed);
    assert_eq!(report3["uploaded"], 1, "only the changed file: {report3}");
    assert_eq!(report3["bytes_uploaded"], 6_000, "{report3}");
    assert!(get(&project.bucket, "static/img/logo.png").await.body == noise(6_000, 4));
}

#[tokio::test]
async fn from_dir_overrides_the_source_and_sha_is_substituted_in_dir() {
    let project = Project::new("assets-fromdir", "{ dir: \"builds/{sha}\" }", "").await;
    project.tree("builds/abcdef1", &[("a.txt", b"configured".to_vec())]);
    let other = project.tree("elsewhere", &[("b.txt", b"overridden".to_vec())]);
    let configured = project.berth(&["assets", "push", "test", "abcdef1", "--output", "json"]);
    assert_eq!(code(&configured), 0, "{}", stderr(&configured));
    let overridden = project.berth(&[
        "assets",
        "push",
        "test",
        "abcdef2",
        "--from-dir",
        other.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(code(&overridden), 0, "{}", stderr(&overridden));
    let keys = project.keys().await;
    assert!(keys.contains(&"static/a.txt".to_string()), "{keys:?}");
    assert!(keys.contains(&"static/b.txt".to_string()), "{keys:?}");
}

#[tokio::test]
async fn bad_input_names_the_problem_exits_2_and_uploads_nothing() {
    let project = Project::new("assets-bad", "{ dir: build }", "").await;
    project.tree("build", &[("a.txt", b"a".to_vec())]);
    // (what, environment, berth.yaml change, expected message)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            "missing bucket",
            vec![],
            "bucket: no-such-bucket-berth",
            "no-such-bucket-berth",
        ),
        (
            "wrong credentials",
            vec![("AWS_SECRET_ACCESS_KEY", "not-the-secret")],
            "",
            "refused the credentials",
        ),
        (
            "unreachable endpoint",
            vec![],
            "endpoint: http://127.0.0.1:9",
            "cannot reach the S3 endpoint http://127.0.0.1:9",
        ),
        ("missing directory", vec![], "", "does not exist"),
    ];
    for (what, env, extra, expected) in cases {
        let from = if what == "missing directory" {
            "{ dir: nowhere }"
        } else {
            "{ dir: build }"
        };
        // `bucket:` in `extra` replaces the generated one.
        let config_extra = extra.to_string();
        project.configure(from, "");
        if !config_extra.is_empty() {
            let path = project.dir.join("berth.yaml");
            let text = std::fs::read_to_string(&path).unwrap();
            let text = if let Some(bucket) = config_extra.strip_prefix("bucket: ") {
                text.replace(
                    &format!("bucket: {}", project.bucket),
                    &format!("bucket: {bucket}"),
                )
            } else {
                format!("{text}      {config_extra}\n")
            };
            std::fs::write(path, text).unwrap();
        }
        let mut command = project.command(&["assets", "push", "test", "1a2b3c4"]);
        command.envs(env);
        let out = command.output().unwrap();
        assert_eq!(code(&out), 2, "{what}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{what}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("panicked"),
            "{what}: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        project.keys().await,
        Vec::<String>::new(),
        "nothing uploaded"
    );
    project.configure("{ dir: build }", "");
    std::fs::write(
        project.dir.join("berth.yaml"),
        std::fs::read_to_string(project.dir.join("berth.yaml"))
            .unwrap()
            .replace(
                "      from: { dir: build }\n",
                "      from: { path: /app/static }\n",
            ),
    )
    .unwrap();
    let out = project.berth(&["assets", "push", "test", "1a2b3c4"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has `path` but no `image`"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn an_interrupted_push_aborts_its_multipart_upload_and_leaves_no_object() {
    let project = Project::new("assets-interrupt", "{ dir: build }", "concurrency: 1").await;
    let big = project.dir.join("build/huge.bin");
    std::fs::create_dir_all(big.parent().unwrap()).unwrap();
    std::fs::write(&big, noise(400 * 1024 * 1024, 9)).unwrap();
    let child = spawn_captured(
        &mut project.command(&["assets", "push", "test", "1a2b3c4", "--output", "json"]),
    );
    wait_for_multipart_upload(&project.bucket).await;
    let out = interrupt(child);
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert_eq!(
        multipart_uploads(&project.bucket).await,
        0,
        "the multipart upload was aborted"
    );
    assert_eq!(
        project.keys().await,
        Vec::<String>::new(),
        "no object, no manifest"
    );
}

/// Both tasks started before either finished: the task events of a deploy's `--output json`.
fn ran_concurrently(output: &Output, first: (&str, &str), second: (&str, &str)) -> bool {
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["event"] == "task_output")
        .collect();
    let position = |task: &str, starts: &str| {
        lines
            .iter()
            .position(|v| v["task"] == task && v["line"].as_str().unwrap().starts_with(starts))
            .unwrap_or_else(|| panic!("no [{task}] {starts}… line in {lines:?}"))
    };
    let started = position(first.0, first.1).max(position(second.0, second.1));
    lines[..started].iter().all(|v| {
        !v["line"].as_str().unwrap().starts_with("succeeded")
            && !v["line"].as_str().unwrap().starts_with("uploaded")
    })
}

#[tokio::test]
async fn a_deploy_uploads_assets_while_the_migration_runs_and_records_them() {
    let project = Project::new("assets-deploy", "{ dir: build }", "").await;
    project.tree(
        "build",
        &(0..200)
            .map(|i| (format!("js/chunk-{i}.js"), text(i, 4_000)))
            .collect::<Vec<_>>(),
    );
    let out = project.berth(&["deploy", "test", "1a2b3c4", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        ran_concurrently(&out, ("migrate", "running Job"), ("assets", "")),
        "the migration and the upload overlap: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let keys = project.keys().await;
    assert_eq!(keys.len(), 201, "200 files and the manifest");
    let client = local_env().kube().await;
    let releases = berth::cluster::release::list(&client, &project.namespace)
        .await
        .unwrap();
    let recorded = releases[0]
        .assets
        .as_ref()
        .expect("the release records the upload");
    assert_eq!(recorded.uploaded, 200);
    assert_eq!(recorded.manifest, "static/.berth/manifests/1a2b3c4.json");
}

#[tokio::test]
async fn a_failed_upload_stops_the_migration_before_any_workload_changes() {
    let project = Project::new("assets-upload-fails", "{ dir: build }", "").await;
    // A key longer than S3's 1,024 bytes: the walk and the bucket check
    // pass, the upload itself is refused.
    let deep = too_long_for_s3();
    project.tree(
        "build",
        &[
            (format!("{deep}file.txt"), b"x".to_vec()),
            ("ok.txt".to_string(), b"ok".to_vec()),
        ],
    );
    let out = project.berth(&["deploy", "test", "1a2b3c4", "--output", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let report = report(&out);
    assert_eq!(report["failure"]["workload"], "assets", "{report}");
    assert!(
        stderr(&out).contains("the migration was stopped"),
        "{}",
        stderr(&out)
    );
    let client = local_env().kube().await;
    assert_eq!(
        deployment_count(&client, &project.namespace).await,
        0,
        "no workload was applied"
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), &project.namespace);
    migration_deleted(&jobs).await;
    assert!(
        !project
            .keys()
            .await
            .iter()
            .any(|k| k.contains(".berth/manifests/")),
        "no manifest for a failed push"
    );
}

#[tokio::test]
async fn a_failed_migration_cancels_the_upload() {
    // One request at a time over 3,000 files: the upload outlasts the migration.
    let project = Project::new("assets-migration-fails", "{ dir: build }", "concurrency: 1").await;
    let files: Vec<(String, Vec<u8>)> = (0..3000)
        .map(|i| (format!("f/{i}.txt"), format!("{i}").into_bytes()))
        .collect();
    project.tree("build", &files);
    let out = project.berth(&["deploy", "test", "fa11ed1", "--output", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let report = report(&out);
    assert!(
        report["failure"]["workload"]
            .as_str()
            .unwrap()
            .starts_with("Job/"),
        "{report}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(r#""line":"cancelled: the migration failed"#),
        "{stdout}"
    );
    let keys = project.keys().await;
    assert!(
        keys.len() < 3000,
        "the upload stopped early ({} objects)",
        keys.len()
    );
    assert!(
        !keys.iter().any(|k| k.contains(".berth/manifests/")),
        "no manifest"
    );
}

/// Directories whose path, as a key, is longer than S3's 1,024 bytes.
fn too_long_for_s3() -> String {
    (0..5).map(|i| format!("{}{i}/", "d".repeat(240))).collect()
}

/// How many multipart uploads are in progress in `bucket`.
async fn multipart_uploads(bucket: &str) -> usize {
    let uploads = local_env()
        .s3()
        .await
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    uploads.uploads().len()
}

/// Wait until a multipart upload is in progress in `bucket`.
async fn wait_for_multipart_upload(bucket: &str) {
    poll(
        Duration::from_secs(60),
        "a multipart upload to start",
        async || (multipart_uploads(bucket).await > 0).then_some(()),
    )
    .await;
}

/// Wait until every migration Job is gone or being deleted.
async fn migration_deleted(jobs: &Api<Job>) {
    poll(
        Duration::from_secs(30),
        "the migration Job to be deleted",
        async || {
            let listed = jobs.list(&ListParams::default()).await.unwrap();
            let live = listed
                .iter()
                .any(|job| job.metadata.deletion_timestamp.is_none());
            (!live).then_some(())
        },
    )
    .await;
}

/// Put an object straight into the bucket, as another tool would.
async fn put(bucket: &str, key: &str, body: &[u8]) {
    local_env()
        .s3()
        .await
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn prune_deletes_only_what_no_recent_release_references() {
    let project = Project::new("assets-prune", "{ dir: \"builds/{sha}\" }", "").await;
    for (sha, own) in [
        ("1111111", "one.js"),
        ("2222222", "two.js"),
        ("3333333", "three.js"),
    ] {
        project.tree(
            &format!("builds/{sha}"),
            &[
                (own, own.as_bytes().to_vec()),
                ("shared.css", b"body{}".to_vec()),
            ],
        );
        let out = project.berth(&["deploy", "test", sha]);
        assert_eq!(code(&out), 0, "{sha}: {}", stderr(&out));
    }
    put(
        &project.bucket,
        "static/stray.txt",
        b"uploaded by hand, just now",
    )
    .await;
    let everything = project.keys().await;

    let dry = project.berth(&[
        "assets",
        "prune",
        "test",
        "--keep",
        "1",
        "--grace",
        "0s",
        "--dry-run",
        "--output",
        "json",
    ]);
    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    assert_eq!(report(&dry)["deleted"], 3, "{}", report(&dry));
    assert_eq!(
        project.keys().await,
        everything,
        "a dry run deletes nothing"
    );

    // --keep 1 still keeps the previous release; the default grace keeps the fresh stray.
    let out = project.berth(&[
        "assets", "prune", "test", "--keep", "1", "--output", "json", "--yes",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        project.keys().await,
        everything,
        "everything is younger than an hour"
    );

    // Without a terminal, a prune that deletes needs --yes.
    let refused = project.berth(&["assets", "prune", "test", "--keep", "1", "--grace", "0s"]);
    assert_eq!(code(&refused), 2, "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("pass --yes"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(project.keys().await, everything, "nothing deleted");

    let out = project.berth(&[
        "assets", "prune", "test", "--keep", "1", "--grace", "0s", "--output", "json", "--yes",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(report(&out)["deleted"], 3, "{}", report(&out));
    assert_eq!(
        project.keys().await,
        [
            "static/.berth/manifests/2222222.json",
            "static/.berth/manifests/3333333.json",
            "static/shared.css",
            "static/three.js",
            "static/two.js",
        ],
        "release 1's file and manifest and the stray are gone; releases 2 and 3 keep theirs"
    );
}

#[tokio::test]
async fn a_manual_push_for_the_live_sha_adds_to_its_manifest_so_prune_keeps_every_live_file() {
    let project = Project::new("assets-push-live", "{ dir: build }", "").await;
    let live = [
        ("js/app.3f2a9c1e.js", text(1, 2_000)),
        ("css/site.css", text(2, 500)),
        ("robots.txt", b"User-agent: *\n".to_vec()),
    ];
    project.tree("build", &live);
    let out = project.berth(&["deploy", "test", "1a2b3c4"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    // A hand-built directory for the SHA the live release serves, sharing none of its files.
    let other = project.tree("other", &[("js/other.9d8e7f6a.js", text(3, 700))]);
    let out = project.berth(&[
        "assets",
        "push",
        "test",
        "1a2b3c4",
        "--from-dir",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("keeps 3 objects an earlier push listed"),
        "{}",
        stderr(&out)
    );

    let out = project.berth(&[
        "assets", "prune", "test", "--grace", "0s", "--output", "json", "--yes",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(report(&out)["deleted"], 0, "{}", report(&out));
    for (path, content) in live
        .iter()
        .chain([("js/other.9d8e7f6a.js", text(3, 700))].iter())
    {
        let served = get(&project.bucket, &format!("static/{path}")).await;
        assert!(served.body == *content, "{path} is served as deployed");
    }

    // --replace makes the directory the whole manifest: prune then frees the rest.
    let out = project.berth(&[
        "assets",
        "push",
        "test",
        "1a2b3c4",
        "--from-dir",
        other.to_str().unwrap(),
        "--replace",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = project.berth(&[
        "assets", "prune", "test", "--grace", "0s", "--output", "json", "--yes",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        project.keys().await,
        [
            "static/.berth/manifests/1a2b3c4.json",
            "static/js/other.9d8e7f6a.js"
        ]
    );
}

#[tokio::test]
async fn prune_refuses_when_a_kept_release_has_no_manifest() {
    let project = Project::new("assets-prune-refuse", "{ dir: build }", "").await;
    project.tree("build", &[("a.js", b"a".to_vec())]);
    let out = project.berth(&["deploy", "test", "1a2b3c4"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let s3 = local_env().s3().await;
    s3.delete_object()
        .bucket(&project.bucket)
        .key("static/.berth/manifests/1a2b3c4.json")
        .send()
        .await
        .unwrap();
    let before = project.keys().await;
    let out = project.berth(&["assets", "prune", "test", "--grace", "0s", "--yes"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("berth assets push test 1a2b3c4"),
        "{}",
        stderr(&out)
    );
    assert_eq!(project.keys().await, before, "nothing deleted");
}

#[tokio::test]
async fn a_build_bucket_prefix_is_copied_server_side_and_only_once() {
    let project = Project::new("assets-s3", "{ s3: \"s3://BUILDS/{sha}/static/\" }", "").await;
    let builds = format!("{}-builds", project.bucket);
    project.configure(&format!("{{ s3: \"s3://{builds}/{{sha}}/static/\" }}"), "");
    let s3 = local_env().s3().await;
    s3.create_bucket().bucket(&builds).send().await.unwrap();
    put(&builds, "1a2b3c4/static/app.js", b"console.log(1)").await;
    put(&builds, "1a2b3c4/static/css/site.css", b"body{}").await;
    put(&builds, "9999999/static/other.js", b"not this SHA").await;

    let out = project.berth(&["assets", "push", "test", "1a2b3c4", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(report(&out)["uploaded"], 2, "{}", report(&out));
    let app = get(&project.bucket, "static/app.js").await;
    assert_eq!(app.body, b"console.log(1)");
    assert_eq!(
        app.content_type.as_deref(),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(app.cache_control.as_deref(), Some("public, max-age=300"));
    assert_eq!(
        get(&project.bucket, "static/css/site.css").await.body,
        b"body{}"
    );
    assert!(
        !project
            .keys()
            .await
            .contains(&"static/other.js".to_string())
    );

    let again = project.berth(&["assets", "push", "test", "1a2b3c4", "--output", "json"]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert_eq!(report(&again)["uploaded"], 0, "{}", report(&again));
    assert_eq!(report(&again)["skipped"], 2, "{}", report(&again));

    let missing = project.berth(&["assets", "push", "test", "7777777"]);
    assert_eq!(code(&missing), 2, "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains(&format!("no files in s3://{builds}/7777777/static/")),
        "{}",
        stderr(&missing)
    );
}

#[tokio::test]
async fn credentials_can_come_from_a_kubernetes_secret() {
    let project = Project::new(
        "assets-secret",
        "{ dir: build }",
        "credentials_secret: s3-credentials",
    )
    .await;
    project.tree("build", &[("a.txt", b"a".to_vec())]);
    let without_chain = |args: &[&str]| {
        project
            .command(args)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .output()
            .unwrap()
    };
    let client = local_env().kube().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &Default::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": project.namespace}}))
                .unwrap(),
        )
        .await
        .unwrap();

    let missing = without_chain(&["assets", "push", "test", "1a2b3c4"]);
    assert_eq!(code(&missing), 2, "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains(
            "the Secret s3-credentials named by `assets.credentials_secret` does not exist"
        ),
        "{}",
        stderr(&missing)
    );

    let env = local_env();
    create::<k8s_openapi::api::core::v1::Secret>(
        &client,
        &project.namespace,
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s3-credentials"},
            "stringData": {
                "AWS_ACCESS_KEY_ID": env.var("AWS_ACCESS_KEY_ID"),
                "AWS_SECRET_ACCESS_KEY": env.var("AWS_SECRET_ACCESS_KEY"),
            }
        }),
    )
    .await;
    let out = without_chain(&["assets", "push", "test", "1a2b3c4", "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(report(&out)["uploaded"], 1, "{}", report(&out));
    let secret = env.var("AWS_SECRET_ACCESS_KEY");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(secret) && !stderr(&out).contains(secret),
        "the secret never reaches the output"
    );
}

#[tokio::test]
async fn thousands_of_files_are_listed_in_ranges_and_none_is_uploaded_twice() {
    let project = Project::new("assets-many", "{ dir: build }", "").await;
    let files: Vec<(String, Vec<u8>)> = (0..2500)
        .map(|i| {
            (
                format!("d{}/f{i}.txt", i % 7),
                format!("file {i}").into_bytes(),
            )
        })
        .collect();
    project.tree("build", &files);
    // Objects outside the tree, sorting before, between and after its keys.
    put(&project.bucket, "static/a-before.txt", b"x").await;
    put(&project.bucket, "static/d3/zz-between.txt", b"x").await;
    put(&project.bucket, "static/zz-after.txt", b"x").await;
    let first = project.berth(&["assets", "push", "test", "1a2b3c4", "--output", "json"]);
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    assert_eq!(report(&first)["uploaded"], 2500, "{}", report(&first));
    let again = project.berth(&["assets", "push", "test", "1a2b3c4", "--output", "json"]);
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert_eq!(report(&again)["uploaded"], 0, "{}", report(&again));
    assert_eq!(report(&again)["skipped"], 2500, "{}", report(&again));
}

#[tokio::test]
async fn a_deploy_publishes_the_images_directory_and_bad_image_input_changes_nothing() {
    let env = local_env();
    let image = images::push(
        env,
        "frontend",
        MediaTypes::Docker,
        &[
            Layer::new()
                .file("app/main.py", "print()")
                .file("app/static/js/app.0123abcd.js", "old()")
                .file("app/static/gone.css", "x"),
            Layer::new()
                .file("app/static/js/app.0123abcd.js", "new()")
                .whiteout("app/static/gone.css"),
        ],
    );
    let project = Project::new(
        "assets-image",
        &format!("{{ image: {}, path: /app/static }}", image.repository),
        "",
    )
    .await;
    let out = project.berth(&["deploy", "test", &image.tag, "--output", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        project.keys().await,
        [
            format!("static/.berth/manifests/{}.json", image.tag),
            "static/js/app.0123abcd.js".to_string()
        ]
    );
    assert_eq!(
        get(&project.bucket, "static/js/app.0123abcd.js").await.body,
        b"new()"
    );
    let manifest = get(
        &project.bucket,
        &format!("static/.berth/manifests/{}.json", image.tag),
    )
    .await;
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.body).unwrap();
    assert!(
        manifest["image_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{manifest}"
    );

    let client = env.kube().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &project.namespace);
    let live = || async {
        let mut images: Vec<String> = deployments
            .list(&ListParams::default())
            .await
            .unwrap()
            .into_iter()
            .flat_map(|d| d.spec.unwrap().template.spec.unwrap().containers)
            .filter_map(|c| c.image)
            .collect();
        images.sort();
        images
    };
    let before = live().await;
    // A SHA CI never pushed, then a path the image lacks: exit 2, nothing changes.
    let missing_tag = project.berth(&["deploy", "test", "9f9f9f9"]);
    assert_eq!(code(&missing_tag), 2, "{}", stderr(&missing_tag));
    assert!(
        stderr(&missing_tag).contains(&format!("{}:9f9f9f9", image.repository)),
        "{}",
        stderr(&missing_tag)
    );
    project.configure(
        &format!("{{ image: {}, path: /app/public }}", image.repository),
        "",
    );
    let missing_path = project.berth(&["deploy", "test", &image.tag]);
    assert_eq!(code(&missing_path), 2, "{}", stderr(&missing_path));
    assert!(
        stderr(&missing_path).contains("/app/public"),
        "{}",
        stderr(&missing_path)
    );
    assert_eq!(live().await, before, "no workload changed");
    let releases = berth::cluster::release::list(&client, &project.namespace)
        .await
        .unwrap();
    assert_eq!(releases.len(), 1, "no release recorded for bad input");
    assert_eq!(project.keys().await.len(), 2, "nothing more uploaded");
}

#[tokio::test]
async fn remembered_hashes_never_hide_a_change_even_with_the_same_size_and_mtime() {
    let project = Project::new("assets-hash-cache", "{ dir: build }", "").await;
    let root = project.tree(
        "build",
        &[("a.js", b"one".to_vec()), ("b.js", b"two".to_vec())],
    );
    let cache = project.dir.join("cache");
    let push = |sha: &str| {
        project
            .command(&["assets", "push", "test", sha, "--output", "json"])
            .env("BERTH_CACHE", &cache)
            .output()
            .unwrap()
    };
    // Files settle for a second before their hashes are remembered.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let first = push("1a2b3c4");
    assert_eq!(report(&first)["uploaded"], 2, "{}", stderr(&first));
    let remembered = std::fs::read_dir(cache.join("hashes")).unwrap().count();
    assert_eq!(remembered, 1, "the tree's hashes are remembered");

    // Same size, same modification time, different content.
    let file = root.join("a.js");
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::write(&file, b"ONE").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let second = push("1a2b3c4");
    assert_eq!(report(&second)["uploaded"], 1, "{}", report(&second));
    assert_eq!(get(&project.bucket, "static/a.js").await.body, b"ONE");
    let third = push("1a2b3c4");
    assert_eq!(report(&third)["uploaded"], 0, "{}", report(&third));

    // The cache is what a re-push reads: a remembered hash that is wrong
    // makes the unchanged file look changed, and its upload, sent with that
    // hash as Content-MD5, is refused by S3 rather than stored.
    let cache_file = std::fs::read_dir(cache.join("hashes"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut remembered: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cache_file).unwrap()).unwrap();
    remembered["b.js"]["md5s"][0] = "00000000000000000000000000000000".into();
    std::fs::write(&cache_file, remembered.to_string()).unwrap();
    let fourth = push("1a2b3c4");
    assert_eq!(code(&fourth), 1, "{}", stderr(&fourth));
    assert!(
        stderr(&fourth).contains("static/b.js"),
        "{}",
        stderr(&fourth)
    );
    assert_eq!(get(&project.bucket, "static/b.js").await.body, b"two");
}

#[tokio::test]
async fn ctrl_c_during_a_deploys_upload_aborts_it_stops_the_migration_and_unlocks() {
    let project = Project::new(
        "assets-deploy-interrupt",
        "{ dir: build }",
        "concurrency: 1",
    )
    .await;
    let big = project.dir.join("build/huge.bin");
    std::fs::create_dir_all(big.parent().unwrap()).unwrap();
    std::fs::write(&big, noise(400 * 1024 * 1024, 11)).unwrap();
    let child =
        spawn_captured(&mut project.command(&["deploy", "test", "1a2b3c4", "--output", "json"]));
    wait_for_multipart_upload(&project.bucket).await;
    let out = interrupt(child);
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert_eq!(report(&out)["status"], "interrupted");
    assert_eq!(
        multipart_uploads(&project.bucket).await,
        0,
        "the multipart upload was aborted"
    );
    assert_eq!(
        project.keys().await,
        Vec::<String>::new(),
        "no object, no manifest"
    );
    let client = local_env().kube().await;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &project.namespace);
    assert!(
        leases.get_opt("berth-deploy-lock").await.unwrap().is_none(),
        "the lock was released"
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), &project.namespace);
    migration_deleted(&jobs).await;
    assert_eq!(
        deployment_count(&client, &project.namespace).await,
        0,
        "no workload was applied"
    );
    let releases = berth::cluster::release::list(&client, &project.namespace)
        .await
        .unwrap();
    assert_eq!(releases[0].status.as_str(), "interrupted");
}

#[tokio::test]
async fn one_refused_file_stops_the_push_and_aborts_the_uploads_in_flight() {
    let project = Project::new("assets-one-refused", "{ dir: build }", "concurrency: 4").await;
    let deep = too_long_for_s3();
    project.tree(
        "build",
        &[
            ("a-big.bin".to_string(), noise(200 * 1024 * 1024, 12)),
            (format!("{deep}file.txt"), b"x".to_vec()),
        ],
    );
    let out = project.berth(&["assets", "push", "test", "1a2b3c4"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("cancelled"),
        "the cause is reported: {}",
        stderr(&out)
    );
    assert_eq!(
        multipart_uploads(&project.bucket).await,
        0,
        "no multipart upload is left behind"
    );
    assert!(
        !project
            .keys()
            .await
            .iter()
            .any(|k| k.contains(".berth/manifests/")),
        "no manifest"
    );
}
