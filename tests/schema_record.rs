//! What a deploy records of its migrations (`migrate.framework: django`),
//! against the real example app on the real node: the adapter's Job run in
//! a copy of the migration Job, and the release record's schema part.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth::config::Config;
use berth::migrate::{self, JobTask};
use berth::progress::{TaskEvent, TaskReporter};
use berth::render::{self, Pins};
use berth::rollout::Thresholds;
use berth::schema::adapter::Request;
use berth::schema::django::Django;
use berth::schema::jobs::{self, Spec};
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use tokio_util::sync::CancellationToken;

use support::real_app::{RealApp, Release};
use support::*;

/// The output lines a task printed.
#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl TaskReporter for Lines {
    fn task(&self, _: &str, event: TaskEvent<'_>) {
        if let TaskEvent::Output(line) = event {
            self.0.lock().unwrap().push(line.to_string());
        }
    }
}

/// The overlay's migration Job, rendered and pinned to `sha` as a deploy does.
async fn migration_template(config_path: &Path, sha: &str) -> (Job, Thresholds) {
    let config = Config::load(config_path).unwrap();
    let env = config.environment("test").unwrap().clone();
    let mut objects = render::render(&config, "test", &env).await.unwrap();
    render::label(&mut objects, &config.app, "test").unwrap();
    render::pin_images(&mut objects, &Pins::at_sha(&config.images, sha));
    let template = migrate::take_template(&mut objects).unwrap().unwrap();
    (template, Thresholds::from(&env.rollout))
}

fn id(text: &str) -> String {
    text.to_string()
}

#[tokio::test]
async fn the_adapter_reads_what_a_release_will_migrate_in_a_copy_of_its_migration_job() {
    let client = local_env().kube().await;
    let app = RealApp::new(&client, "schema-jobs").await;
    let sha = Release::GoodA.sha();
    let (template, thresholds) = migration_template(&app.dir.join("berth.yaml"), sha).await;
    let spec = Spec {
        template: &template,
        task: JobTask::SchemaInspect,
        instance: "wb-test",
        number: 1,
        sha,
        image: None,
    };
    let lines = Arc::new(Lines::default());
    let started = Instant::now();
    let ran = jobs::run(
        &client,
        &app.namespace,
        &Django::new(vec![id("python3"), id("manage.py")]),
        &Request::Inspect,
        &spec,
        thresholds,
        Duration::from_secs(300),
        &CancellationToken::new(),
        &lines,
    )
    .await
    .unwrap();
    eprintln!(
        "the inspect Job took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(ran.failure.is_none(), "{:?}", ran.failure);
    assert!(ran.response.applied.is_empty(), "{:?}", ran.response);
    let pending: Vec<String> = ran
        .response
        .pending
        .iter()
        .filter(|s| s.migration.app == "workbench")
        .map(|s| s.migration.to_string())
        .collect();
    assert_eq!(
        pending,
        [
            "workbench.0001_initial",
            "workbench.0002_step_order",
            "workbench.0003_number_steps",
            "workbench.0004_module"
        ]
    );
    let irreversible: Vec<String> = ran
        .response
        .pending
        .iter()
        .filter(|s| s.irreversible())
        .map(|s| s.migration.to_string())
        .collect();
    assert_eq!(irreversible, ["workbench.0003_number_steps"]);
    let image = ran.image_id.expect("the pod's image by digest");
    assert!(
        image.starts_with("127.0.0.1:25000/workbench/migrate@sha256:"),
        "{image}"
    );
    let printed = lines.0.lock().unwrap().clone();
    assert!(
        !printed.iter().any(|l| l.contains("berth-schema-result")),
        "the result line is read, not shown: {printed:?}"
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), &app.namespace);
    assert!(
        jobs.get_opt(&ran.job).await.unwrap().is_none(),
        "a Job that changes nothing is deleted"
    );
    assert_eq!(
        ran.job,
        format!("wb-test-migration-inspect-1-{}", &sha[..12])
    );
}
