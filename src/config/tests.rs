//! Tests of loading and checking berth.yaml.

use std::fs;
use std::process::ExitCode;

use super::*;
use crate::error::exit_code_of;

/// A scratch deploy repo with an `overlays/staging` kustomization; removed on drop.
struct Repo(PathBuf);

impl Repo {
    /// A fresh repo whose name includes `test` (tests run in parallel).
    fn new(test: &str) -> Repo {
        let dir = std::env::temp_dir().join(format!("berth-config-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let repo = Repo(dir);
        repo.write("overlays/staging/kustomization.yaml", "resources: []\n");
        repo
    }

    /// Write `text` to `path` inside the repo, creating directories.
    fn write(&self, path: &str, text: &str) {
        let path = self.0.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    /// Write berth.yaml and load it.
    fn load(&self, yaml: &str) -> anyhow::Result<Config> {
        self.write("berth.yaml", yaml);
        Config::load(&self.0.join("berth.yaml"))
    }

    /// Write berth.yaml, load it, and return the error's text; it must be an input error.
    fn error(&self, yaml: &str) -> String {
        let error = self.load(yaml).expect_err("berth.yaml should be refused");
        assert_eq!(exit_code_of(&error), ExitCode::from(2), "{error:#}");
        let text = format!("{error:#}");
        let file = self.0.join("berth.yaml").display().to_string();
        assert!(text.contains(&file), "the error names the file: {text}");
        text
    }
}

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A valid berth.yaml that tests vary.
const MINIMAL: &str = "\
app: shop
images: [registry.example.com/shop/web, registry.example.com/shop/migrate]
environments:
  staging:
    namespace: shop-staging
    overlay: overlays/staging
";

/// Assert that `text` contains every one of `parts`.
fn assert_mentions(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "expected {part:?} in:\n{text}");
    }
}

#[test]
fn the_example_berth_yaml_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config::load(&dir.join("berth.yaml")).unwrap();
    assert_eq!(config.app, "workbench");
    assert_eq!(config.dir, dir);
    assert_eq!(config.images.len(), 4);
    assert_eq!(config.releases_kept, 20);
    let github = config.github.as_ref().unwrap();
    assert_eq!(github.branch, "master");
    assert_eq!(
        github.required_checks.as_deref(),
        Some(&["ci".to_string()][..])
    );
    assert_eq!(
        config.environments.keys().collect::<Vec<_>>(),
        ["production", "staging"]
    );
    let staging = config.environment("staging").unwrap();
    assert_eq!(staging.context.as_deref(), Some("berth-local"));
    assert_eq!(staging.namespace, "workbench-staging");
    assert_eq!(
        staging.source,
        Source::Kustomize {
            overlay: dir.join("overlays/staging"),
            kustomize: Kustomize::Kubectl,
        }
    );
    assert_eq!(
        staging.rollout,
        RolloutSettings {
            timeout: Duration::from_secs(600),
            unschedulable_after: Duration::from_secs(60),
            unready_after: Duration::from_secs(120),
        }
    );
    // the example's migration is the Job template in overlays/base/migrate.yaml
    assert_eq!(staging.migrate, None);
    let production = config.environment("production").unwrap();
    assert_eq!(production.namespace, "workbench-production");
}

#[test]
fn omitted_keys_take_their_defaults() {
    let repo = Repo::new("defaults");
    let config = repo.load(MINIMAL).unwrap();
    assert_eq!(config.releases_kept, 20);
    assert_eq!(config.github, None);
    assert_eq!(config.dir, repo.0);
    let staging = &config.environments["staging"];
    assert_eq!(staging.context, None);
    assert_eq!(staging.migrate, None);
    assert_eq!(staging.maintenance, Maintenance::default());
    assert_eq!(staging.maintenance.services, None);
    assert_eq!(staging.maintenance.image, "nginx:1.28-alpine");
    assert_eq!(staging.maintenance.port, 8080);
    assert_eq!(staging.maintenance.retry_after, Duration::from_secs(300));
    assert_eq!(staging.maintenance.title, "Down for maintenance");
    assert_eq!(
        staging.rollout,
        RolloutSettings {
            timeout: Duration::from_secs(600),
            unschedulable_after: Duration::from_secs(300),
            unready_after: Duration::from_secs(120),
        }
    );
}

#[test]
fn every_key_is_read() {
    let repo = Repo::new("every-key");
    repo.write("charts/shop/Chart.yaml", "name: shop\n");
    repo.write("charts/values-prod.yaml", "{}\n");
    let config = repo
        .load(
            "\
app: shop
images: [127.0.0.1:25000/shop/web, registry.example.com/shop/migrate]
github: { repo: acme/shop, branch: main, required_checks: [build, test] }
releases_kept: 5
environments:
  prod:
    context: gke_acme_us-central1-b_shop
    namespace: shop
    chart: { path: charts/shop, values: [charts/values-prod.yaml], release: shop-web }
    migrate:
      image: registry.example.com/shop/migrate
      command: [flyway]
      args: [migrate]
      deadline: 1h30m
      env_from: [{ secret: db-credentials }, { secret: flyway.conf }]
      service_account: migrate
      pending_check: [flyway, validate]
    rollout: { timeout: 15m, unschedulable_after: 90s, unready_after: 45s }
    database: { workload: web, container: app, secret: db-credentials, port: 5433 }
    maintenance:
      services: [web, api]
      image: registry.example.com/ops/nginx:1.27
      port: 9000
      retry_after: 1h
      timeout: 30s
      title: Upgrading
      message: Back at noon.
    run: { workload: worker, container: main, timeout: 20m }
    assets:
      from: { image: registry.example.com/shop/web, path: /app/static }
      bucket: shop-static
      prefix: prod
      endpoint: https://storage.googleapis.com/
      region: auto
      credentials_secret: static-hmac
      cache_control: no-cache
      immutable_cache_control: public, max-age=86400, immutable
      precompress: [br]
      concurrency: 16
",
        )
        .unwrap();
    assert_eq!(config.releases_kept, 5);
    assert_eq!(
        config.github,
        Some(GitHub {
            repo: "acme/shop".into(),
            branch: "main".into(),
            required_checks: Some(vec!["build".into(), "test".into()]),
            allow_failures: Vec::new(),
            also_passing: Vec::new(),
            depth: 50,
        })
    );
    assert_eq!(
        config.environment("prod").unwrap(),
        &Environment {
            context: Some("gke_acme_us-central1-b_shop".into()),
            namespace: "shop".into(),
            protected: false,
            source: Source::Helm {
                chart: Chart::Dir(repo.0.join("charts/shop")),
                values: vec![repo.0.join("charts/values-prod.yaml")],
                set: BTreeMap::new(),
                release: "shop-web".into(),
            },
            migrate: Some(MigrationSource::Built(Migrate {
                image: "registry.example.com/shop/migrate".into(),
                command: vec!["flyway".into()],
                args: vec!["migrate".into()],
                deadline: Duration::from_secs(5400),
                env_from_secrets: vec!["db-credentials".into(), "flyway.conf".into()],
                service_account: Some("migrate".into()),
                pending_check: Some(vec!["flyway".into(), "validate".into()]),
            })),
            schema: None,
            rollout: RolloutSettings {
                timeout: Duration::from_secs(900),
                unschedulable_after: Duration::from_secs(90),
                unready_after: Duration::from_secs(45),
            },
            assets: Some(Assets {
                from: AssetSource::Image {
                    repository: "registry.example.com/shop/web".into(),
                    path: "/app/static".into(),
                },
                bucket: "shop-static".into(),
                prefix: "prod/".into(),
                endpoint: Some("https://storage.googleapis.com".into()),
                region: Some("auto".into()),
                credentials_secret: Some("static-hmac".into()),
                cache_control: "no-cache".into(),
                immutable_cache_control: "public, max-age=86400, immutable".into(),
                gzip: false,
                brotli: true,
                concurrency: 16,
            }),
            database: Some(Database {
                workload: "web".into(),
                container: Some("app".into()),
                secret: Some("db-credentials".into()),
                port: 5433,
            }),
            maintenance: Maintenance {
                services: Some(vec!["web".into(), "api".into()]),
                image: "registry.example.com/ops/nginx:1.27".into(),
                port: 9000,
                retry_after: Duration::from_secs(3600),
                timeout: Duration::from_secs(30),
                title: "Upgrading".into(),
                message: "Back at noon.".into(),
            },
            run: Some(RunSettings {
                workload: "worker".into(),
                container: Some("main".into()),
                timeout: Duration::from_secs(1200),
            }),
            backups: None,
            failed_jobs_kept: 3,
        }
    );
}

#[test]
fn a_helm_release_defaults_to_the_app_name() {
    let repo = Repo::new("release-default");
    repo.write("chart/Chart.yaml", "name: shop\n");
    let config = repo
        .load("app: shop\nimages: [r/shop]\nenvironments:\n  dev: { namespace: dev, chart: { path: chart } }\n")
        .unwrap();
    let Source::Helm {
        release, values, ..
    } = &config.environments["dev"].source
    else {
        panic!("expected a chart");
    };
    assert_eq!(release, "shop");
    assert!(values.is_empty());
}

#[test]
fn an_unknown_key_lists_the_allowed_keys_with_its_line() {
    let repo = Repo::new("unknown-key");
    let text = repo.error(&MINIMAL.replace("    overlay:", "    overlays:"));
    assert_mentions(
        &text,
        &[
            "berth.yaml line 6 column 5",
            "environments.staging: unknown field `overlays`",
            "`overlay`",
            "`chart`",
            "remove the key or fix its spelling",
        ],
    );
    let text = repo.error(&format!("{MINIMAL}hooks: {{}}\n"));
    assert_mentions(
        &text,
        &[
            "line 7 column 1",
            "unknown field `hooks`",
            "`releases_kept`",
        ],
    );
}

#[test]
fn a_missing_key_is_named() {
    let repo = Repo::new("missing-key");
    let text = repo.error(&MINIMAL.replace("    namespace: shop-staging\n", ""));
    assert_mentions(
        &text,
        &[
            "environments.staging: missing field `namespace`",
            "add the missing key",
        ],
    );
}

#[test]
fn a_wrong_type_is_named() {
    let repo = Repo::new("wrong-type");
    let text = repo.error(&MINIMAL.replace("app: shop", "app: shop\nreleases_kept: many"));
    assert_mentions(
        &text,
        &[
            "line 2 column",
            "releases_kept: invalid type",
            "expected type",
        ],
    );
}

#[test]
fn a_bad_duration_says_how_to_write_one() {
    let repo = Repo::new("bad-duration");
    let text = repo.error(&format!(
        "{MINIMAL}    rollout: {{ timeout: 10 minutes }}\n"
    ));
    assert_mentions(
        &text,
        &[
            "line 7 column 25",
            "environments.staging.rollout.timeout: '10 minutes' is not a duration",
            "'10 minutes' is not a duration",
            "write it like 90s, 10m",
        ],
    );
}

#[test]
fn a_duration_above_a_year_names_the_maximum() {
    let repo = Repo::new("huge-duration");
    let text = repo.error(&format!(
        "{MINIMAL}    rollout: {{ timeout: 18446744073709551615s }}\n"
    ));
    assert_mentions(
        &text,
        &[
            "environments.staging.rollout.timeout",
            "'18446744073709551615s' is too long",
            "the longest duration berth accepts is 366d",
        ],
    );
    assert!(!text.contains("fix the YAML there"), "{text}");
}

#[test]
fn broken_yaml_points_at_the_line() {
    let repo = Repo::new("broken-yaml");
    let text = repo.error("app: shop\nimages: [registry.example.com/shop/web\nenvironments: {}\n");
    assert_mentions(&text, &["berth.yaml line", "fix the YAML there"]);
}

#[test]
fn an_empty_file_says_what_to_write() {
    let repo = Repo::new("empty");
    let text = repo.error("# nothing yet\n");
    assert_mentions(&text, &["berth.yaml is empty", "`environments:`"]);
}

#[test]
fn a_missing_file_says_how_to_point_at_one() {
    let error = Config::load(Path::new("/nonexistent/berth.yaml")).unwrap_err();
    assert_eq!(exit_code_of(&error), ExitCode::from(2));
    assert_mentions(
        &error.to_string(),
        &["/nonexistent/berth.yaml", "--config", "BERTH_CONFIG"],
    );
}

#[test]
fn names_must_be_dns_labels() {
    let repo = Repo::new("names");
    let text = repo.error(&MINIMAL.replace("app: shop", "app: Shop_App"));
    assert_mentions(
        &text,
        &[
            ": app: \"Shop_App\" is not a valid name",
            "lowercase",
            "e.g. \"shop-app\"",
        ],
    );
    let text = repo.error(&MINIMAL.replace("namespace: shop-staging", "namespace: shop.staging"));
    assert_mentions(
        &text,
        &[
            "environments.staging.namespace: \"shop.staging\"",
            "e.g. \"shop-staging\"",
        ],
    );
    let text = repo.error(&MINIMAL.replace("  staging:", "  Staging:"));
    assert_mentions(
        &text,
        &["environments.Staging: the environment name", "rename it"],
    );
    let text = repo.error(&MINIMAL.replace("  staging:", &format!("  {}:", "s".repeat(60))));
    assert_mentions(&text, &["longer than 63 characters", "shorten"]);
}

#[test]
fn images_must_be_repositories_without_tag_or_digest() {
    let repo = Repo::new("images");
    let text = repo.error(&MINIMAL.replace("shop/web", "shop/web:latest"));
    assert_mentions(
        &text,
        &[
            "images[0]: \"registry.example.com/shop/web:latest\" has a tag or digest",
            "write \"registry.example.com/shop/web\"",
            "remove the tag; berth sets it to the SHA",
        ],
    );
    let text = repo.error(&MINIMAL.replace("shop/web", "shop/web@sha256:abcd"));
    assert_mentions(&text, &["images[0]", "remove the tag"]);
    let text = repo.error(&MINIMAL.replace(
        "shop/migrate]",
        "shop/migrate, registry.example.com/shop/web]",
    ));
    assert_mentions(
        &text,
        &["images[2]", "listed twice", "remove the duplicate"],
    );
    let text = repo.error(&MINIMAL.replace("registry.example.com/shop/web", "a//b"));
    assert_mentions(&text, &["images[0]: \"a//b\" is not an image repository"]);
    let text = repo.error(&MINIMAL.replace(
        "images: [registry.example.com/shop/web, registry.example.com/shop/migrate]",
        "images: []",
    ));
    assert_mentions(
        &text,
        &["images: lists no image repository", "e.g. `images:"],
    );
    let config = repo
        .load(&MINIMAL.replace("registry.example.com/shop/web", "127.0.0.1:25000/shop/web"))
        .unwrap();
    assert_eq!(config.images[0], "127.0.0.1:25000/shop/web");
}

#[test]
fn the_overlay_must_be_a_kustomization() {
    let repo = Repo::new("overlay");
    let text = repo.error(&MINIMAL.replace("overlays/staging", "overlays/stagin"));
    assert_mentions(
        &text,
        &[
            "environments.staging.overlay: overlays/stagin is not a directory",
            "point it at the kustomize directory",
        ],
    );
    repo.write("overlays/empty/README", "nothing\n");
    let text = repo.error(&MINIMAL.replace("overlays/staging", "overlays/empty"));
    assert_mentions(
        &text,
        &[
            "environments.staging.overlay",
            "has no kustomization.yaml",
            "create kustomization.yaml",
        ],
    );
    repo.write("overlays/yml/kustomization.yml", "resources: []\n");
    repo.load(&MINIMAL.replace("overlays/staging", "overlays/yml"))
        .unwrap();
}

#[test]
fn exactly_one_of_overlay_and_chart() {
    let repo = Repo::new("one-source");
    repo.write("chart/Chart.yaml", "name: shop\n");
    let text = repo.error(&format!("{MINIMAL}    chart: {{ path: chart }}\n"));
    assert_mentions(
        &text,
        &[
            "environments.staging: has both `overlay` and `chart`",
            "keep one",
        ],
    );
    let text = repo.error(&MINIMAL.replace("    overlay: overlays/staging\n", ""));
    assert_mentions(
        &text,
        &[
            "environments.staging: has neither",
            "add `overlay: overlays/staging`",
        ],
    );
}

#[test]
fn the_chart_must_have_chart_yaml_and_its_values() {
    let repo = Repo::new("chart");
    repo.write("chart/values.yaml", "{}\n");
    let text = repo.error(&MINIMAL.replace(
        "overlay: overlays/staging",
        "chart: { path: chart, values: [chart/values.yaml, chart/missing.yaml], release: Shop }",
    ));
    assert_mentions(
        &text,
        &[
            "environments.staging.chart.path:",
            "has no Chart.yaml",
            "environments.staging.chart.values[1]: chart/missing.yaml does not exist",
            "environments.staging.chart.release: \"Shop\"",
        ],
    );
    assert!(!text.contains("values[0]"), "{text}");
}

#[test]
fn the_migration_image_must_be_listed_in_images() {
    let repo = Repo::new("migrate");
    let text = repo.error(&format!(
        "{MINIMAL}    migrate: {{ image: registry.example.com/shop/other, command: [migrate] }}\n"
    ));
    assert_mentions(
        &text,
        &[
            "environments.staging.migrate.image: \"registry.example.com/shop/other\" is not listed in `images`",
            "add \"registry.example.com/shop/other\" to `images`",
        ],
    );
    let text = repo.error(&format!(
        "{MINIMAL}    migrate: {{ image: \"registry.example.com/shop/migrate:v1\", env_from: [{{ secret: DB }}], service_account: Migrate, deadline: 0s }}\n"
    ));
    assert_mentions(
        &text,
        &[
            "migrate.image: \"registry.example.com/shop/migrate:v1\" has a tag",
            "migrate.env_from[0].secret: \"DB\"",
            "migrate.service_account: \"Migrate\"",
            "migrate.deadline: is zero",
        ],
    );
    assert!(
        !text.contains("not listed"),
        "one problem at a time per key: {text}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let repo = Repo::new("all-problems");
    let text = repo.error(
        "\
app: Shop
images: [shop:1]
github: { repo: shop, branch: '', required_checks: [], also_passing: [failure], depth: 0 }
releases_kept: 0
environments:
  staging: { namespace: Staging, overlay: nowhere, context: '', rollout: { unschedulable_after: 0m, unready_after: 0s } }
",
    );
    let keys = [
        "app:",
        "images[0]:",
        "github.repo:",
        "github.branch:",
        "github.required_checks:",
        "github.also_passing[0]:",
        "github.depth:",
        "releases_kept:",
        "environments.staging.context:",
        "environments.staging.namespace:",
        "environments.staging.overlay:",
        "environments.staging.rollout.unschedulable_after:",
        "environments.staging.rollout.unready_after:",
    ];
    assert_mentions(&text, &keys);
    assert_eq!(text.lines().count(), keys.len(), "{text}");
}

#[test]
fn no_environment_is_refused() {
    let repo = Repo::new("no-environment");
    let text = repo.error("app: shop\nimages: [r/shop]\nenvironments: {}\n");
    assert_mentions(&text, &["environments: lists no environment", "add one"]);
}

#[test]
fn an_unknown_environment_lists_the_known_ones() {
    let config = Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("berth.yaml")).unwrap();
    let error = config.environment("prod").unwrap_err();
    assert_eq!(exit_code_of(&error), ExitCode::from(2));
    assert_mentions(
        &error.to_string(),
        &[
            "no environment `prod`",
            "`production`, `staging`",
            "add it under `environments:` in berth.yaml",
        ],
    );
}

#[test]
fn shas_are_7_to_40_hex_characters_lowercased() {
    assert_eq!(parse_sha("ABCDEF1").unwrap(), "abcdef1");
    let full = "0123456789abcdef0123456789abcdef01234567";
    assert_eq!(parse_sha(full).unwrap(), full);
    assert_eq!(parse_sha(" deadbee\n").unwrap(), "deadbee");
    for bad in [
        "",
        "abc123",
        "main",
        "g123456",
        "0123456789abcdef0123456789abcdef012345678",
        "dead bee",
    ] {
        let error = parse_sha(bad).unwrap_err();
        assert_eq!(exit_code_of(&error), ExitCode::from(2));
        assert_mentions(
            &error.to_string(),
            &[
                "is not a git commit SHA",
                "7 to 40 hexadecimal",
                "git rev-parse",
            ],
        );
    }
}

#[test]
fn berth_schema_json_is_the_generated_schema() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("berth.schema.json");
    let generated = serde_json::to_string_pretty(&Config::schema()).unwrap() + "\n";
    if std::env::var_os("BERTH_UPDATE_SCHEMA").is_some() {
        fs::write(&path, &generated).unwrap();
    }
    let written = fs::read_to_string(&path).unwrap_or_default();
    assert!(
        written == generated,
        "berth.schema.json is out of date; regenerate it with \
         `BERTH_UPDATE_SCHEMA=1 cargo test --lib berth_schema_json`"
    );
}

#[test]
fn the_schema_describes_the_file() {
    let schema = Config::schema();
    let rollout = serde_json::json!([{ "$ref": "#/definitions/Rollout" }]);
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(schema["title"], "berth.yaml");
    assert_eq!(
        schema["required"],
        serde_json::json!(["app", "images", "environments"])
    );
    assert_eq!(schema["additionalProperties"], false);
    let environment = &schema["definitions"]["Environment"];
    assert_eq!(environment["oneOf"][0]["required"][0], "overlay");
    assert_eq!(environment["properties"]["rollout"]["allOf"], rollout);
    assert_eq!(
        schema["definitions"]["Duration"]["pattern"],
        "^([0-9]+[smhd])+$"
    );
}

#[test]
fn asset_sources_substitute_the_sha() {
    let repo = Repo::new("asset-sources");
    let config = repo
        .load(&format!(
            "{MINIMAL}    assets: {{ bucket: static, from: {{ dir: \"build/{{sha}}/static\" }} }}\n"
        ))
        .unwrap();
    let assets = config.environments["staging"].assets.clone().unwrap();
    assert_eq!(assets.prefix, "");
    assert_eq!(assets.cache_control, "public, max-age=300");
    assert_eq!(assets.concurrency, 64);
    assert_eq!(
        assets.from.for_sha("abc1234"),
        AssetSource::Dir(repo.0.join("build/abc1234/static"))
    );
    let config = repo
        .load(&format!(
            "{MINIMAL}    assets: {{ bucket: static, from: {{ s3: \"s3://builds/{{sha}}/static\" }} }}\n"
        ))
        .unwrap();
    assert_eq!(
        config.environments["staging"]
            .assets
            .clone()
            .unwrap()
            .from
            .for_sha("abc1234"),
        AssetSource::S3 {
            bucket: "builds".into(),
            prefix: "abc1234/static/".into()
        }
    );
}

#[test]
fn bad_asset_settings_are_named_with_their_fix() {
    let repo = Repo::new("asset-errors");
    let error = repo.error(&format!(
        "{MINIMAL}    assets:\n      bucket: s3://Static\n      prefix: /x//y\n      endpoint: storage.example.com\n      from: {{ image: registry.example.com/web:v1 }}\n"
    ));
    assert_mentions(
        &error,
        &[
            "environments.staging.assets.bucket",
            "not a bucket name",
            "environments.staging.assets.prefix",
            "environments.staging.assets.endpoint",
            "with its scheme",
            "environments.staging.assets.from",
            "has `image` but no `path`",
        ],
    );
    let error = repo.error(&format!(
        "{MINIMAL}    assets: {{ bucket: static, from: {{ dir: a, s3: \"s3://b/\" }} }}\n"
    ));
    assert_mentions(
        &error,
        &["environments.staging.assets.from", "says it twice"],
    );
    let error = repo.error(&format!(
        "{MINIMAL}    assets: {{ bucket: static, from: {{ image: registry.example.com/web, path: app }} }}\n"
    ));
    assert_mentions(
        &error,
        &["environments.staging.assets.from.path", "\"/app\""],
    );
}

#[test]
fn bad_maintenance_settings_are_named_with_their_fix() {
    let repo = Repo::new("maintenance-errors");
    let error = repo.error(&format!(
        "{MINIMAL}    maintenance:\n      services: [Frontend, api, api]\n      image: \"nginx latest\"\n      port: 0\n      retry_after: 0s\n      title: \" \"\n"
    ));
    assert_mentions(
        &error,
        &[
            "environments.staging.maintenance.services[0]: \"Frontend\" is not a valid name",
            "environments.staging.maintenance.services[2]: \"api\" is listed twice",
            "environments.staging.maintenance.image",
            "environments.staging.maintenance.port: is 0",
            "environments.staging.maintenance.retry_after: is zero",
            "environments.staging.maintenance.title: is empty",
        ],
    );
    let error = repo.error(&format!("{MINIMAL}    maintenance: {{ services: [] }}\n"));
    assert_mentions(
        &error,
        &["environments.staging.maintenance.services: lists no Service"],
    );
    let error = repo.error(&format!("{MINIMAL}    maintenance: {{ port: 70000 }}\n"));
    assert_mentions(&error, &["line 7", "70000"]);
    let error = repo.error(&format!("{MINIMAL}    maintenance: {{ servics: [a] }}\n"));
    assert_mentions(&error, &["unknown field `servics`", "services"]);
}

#[test]
fn tasks_are_read_and_checked() {
    let repo = Repo::new("tasks");
    repo.write("tasks/slugs.txt", "loadurl\n");
    let config = repo
        .load(&format!(
            "{MINIMAL}tasks:\n  refresh:\n    workload: web\n    command: [manage.py, import]\n    args: [--all]\n    args_file: tasks/slugs.txt\n  shell:\n    pod: true\n    command: [sh]\n    timeout: 5m\n"
        ))
        .unwrap();
    assert_eq!(
        config.task("refresh").unwrap(),
        &Task {
            target: TaskTarget::Exec {
                workload: "web".into(),
                container: None
            },
            command: vec!["manage.py".into(), "import".into(), "--all".into()],
            args_file: Some(repo.0.join("tasks/slugs.txt")),
            timeout: Duration::from_secs(3600),
        }
    );
    assert_eq!(config.task("shell").unwrap().target, TaskTarget::Pod);
    let missing = format!("{:#}", config.task("nope").unwrap_err());
    assert_mentions(
        &missing,
        &["no task `nope`", "`refresh`, `shell`", "tasks:\n  nope:\n"],
    );
    let text = repo.error(&format!(
        "{MINIMAL}tasks:\n  both:\n    workload: web\n    pod: true\n    command: [x]\n  neither:\n    command: [x]\n  nofile:\n    pod: true\n    command: []\n    args_file: gone.txt\n"
    ));
    assert_mentions(
        &text,
        &[
            "tasks.both: has both `workload` and `pod: true`",
            "tasks.neither: does not say where it runs",
            "tasks.nofile.command: is empty",
            "tasks.nofile.args_file: gone.txt does not exist",
        ],
    );
}

#[test]
fn a_sha_prefix_counts_characters_not_bytes() {
    assert_eq!(short_sha("3f2a9c1d0e5b7a8c"), "3f2a9c1d0e5b");
    assert_eq!(short_sha("3f2a9c1"), "3f2a9c1");
    assert_eq!(sha_prefix("3f2a", 12), "3f2a");
    // a live image tag set by hand: slicing at byte 12 would split a character
    assert_eq!(sha_prefix("ééééééééééééé", 12), "éééééééééééé");
    assert_eq!(short_sha("v1.2-ünïcødé-rc1"), "v1.2-ünïcødé");
}

#[test]
fn the_kwok_fixture_berth_yaml_loads() {
    // the kwok-backed app the integration tests and benchmarks deploy
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kwok-app");
    let config = Config::load(&dir.join("berth.yaml")).unwrap();
    assert_eq!(config.images.len(), 5);
    let staging = config.environment("staging").unwrap();
    assert_eq!(staging.namespace, "kwok-app-staging");
    assert_eq!(
        staging.source,
        Source::Kustomize {
            overlay: dir.join("overlays/staging"),
            kustomize: Kustomize::Kubectl,
        }
    );
    assert!(config.task("refresh-suggested-modules").is_ok());
}

/// Two environments with `backups:` in one bucket, and `database.secret`.
const BACKUPS: &str = "\
app: shop
images: [registry.example.com/shop/web]
environments:
  staging:
    namespace: shop-staging
    overlay: overlays/staging
    database: { workload: web, secret: db }
    backups: { bucket: shop-backups, credentials_secret: s3, schedule: \"0 3 * * *\" }
  production:
    namespace: shop
    overlay: overlays/staging
    database: { workload: web, secret: db }
    backups:
      bucket: shop-backups
      credentials_secret: s3
      image: registry.example.com/berth:0.1.0
      retention: { daily: 3, manual: 2 }
      drill: { schedule: \"0 5 * * 0\", smoke: [\"SELECT count(*) > 0 FROM users\"] }
";

#[test]
fn backups_take_their_defaults_and_production_backs_up_before_pending_migrations() {
    let repo = Repo::new("backups-defaults");
    let config = repo.load(BACKUPS).unwrap();
    let staging = config
        .environment("staging")
        .unwrap()
        .backups
        .clone()
        .unwrap();
    assert_eq!(
        staging.prefix, "staging/",
        "each environment under its own prefix"
    );
    assert_eq!(staging.before_migrate, BeforeMigrate::Never);
    assert_eq!(
        staging.image,
        format!("ghcr.io/berth-deploy/berth:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(staging.retention.weekly, 4);
    assert_eq!(staging.timeout, Duration::from_secs(7200));
    let production = config
        .environment("production")
        .unwrap()
        .backups
        .clone()
        .unwrap();
    assert_eq!(production.prefix, "production/");
    assert_eq!(production.before_migrate, BeforeMigrate::Pending);
    assert_eq!(
        (production.retention.daily, production.retention.manual),
        (3, 2)
    );
    assert_eq!(production.drill.smoke, ["SELECT count(*) > 0 FROM users"]);
}

#[test]
fn backups_without_a_database_secret_or_sharing_a_prefix_are_refused_together() {
    let repo = Repo::new("backups-refused");
    let yaml = BACKUPS
        .replacen(
            "database: { workload: web, secret: db }",
            "database: { workload: web }",
            1,
        )
        .replace(
            "credentials_secret: s3, schedule",
            "credentials_secret: s3, prefix: production/, schedule",
        )
        .replace("\"0 5 * * 0\"", "\"weekly\"");
    let text = repo.error(&yaml);
    assert_mentions(
        &text,
        &[
            "environments.staging.backups",
            "needs `database.secret`",
            "environments.staging.backups.prefix",
            "as in environment production",
            "environments.production.backups.drill.schedule",
            "five-field cron",
        ],
    );
}

/// berth.yaml with a sound `production` and a `staging` whose overlay is mistyped.
const STAGING_MISTYPED: &str = "\
app: shop
images: [registry.example.com/shop/web]
environments:
  production:
    namespace: shop
    overlay: overlays/staging
  staging:
    namespace: shop-staging
    overlay: overlays/stagng
";

#[test]
fn another_environments_problem_is_one_warning_not_an_error() {
    let repo = Repo::new("scope-other");
    repo.write("berth.yaml", STAGING_MISTYPED);
    let path = repo.0.join("berth.yaml");
    let config = Config::parse_in(
        STAGING_MISTYPED,
        &path,
        Scope::Environments(&["production"]),
    )
    .unwrap();
    assert_eq!(config.environment("production").unwrap().namespace, "shop");
    assert!(!config.environments.contains_key("staging"));
    let warning = config.skipped_warning().expect("a warning");
    assert_mentions(
        &warning,
        &[
            &path.display().to_string(),
            "environment `staging` has a problem",
            "environments.staging.overlay: overlays/stagng is not a directory",
            "config validate` lists it",
        ],
    );
    assert!(!warning.contains('\n'), "one line: {warning}");
    // Using the skipped environment anyway names its problem.
    let error = config.environment("staging").unwrap_err();
    assert_eq!(exit_code_of(&error), ExitCode::from(2));
    assert_mentions(&error.to_string(), &["overlays/stagng is not a directory"]);
}

#[test]
fn the_environment_touched_and_the_whole_file_are_still_checked() {
    let repo = Repo::new("scope-touched");
    let path = repo.0.join("berth.yaml");
    let error =
        Config::parse_in(STAGING_MISTYPED, &path, Scope::Environments(&["staging"])).unwrap_err();
    assert_eq!(exit_code_of(&error), ExitCode::from(2));
    assert_mentions(&error.to_string(), &["environments.staging.overlay"]);
    // Scope::All (`config validate`, Config::load) refuses it too.
    assert_mentions(
        &repo.error(STAGING_MISTYPED),
        &["environments.staging.overlay"],
    );
    // An unknown key is refused whichever environment it is in.
    let unknown = STAGING_MISTYPED.replace("namespace: shop-staging", "namspace: shop-staging");
    let error =
        Config::parse_in(&unknown, &path, Scope::Environments(&["production"])).unwrap_err();
    assert_mentions(&error.to_string(), &["unknown field `namspace`"]);
    // So is a problem of the file's own keys.
    let bad_app = STAGING_MISTYPED.replace("app: shop", "app: Shop_");
    let error =
        Config::parse_in(&bad_app, &path, Scope::Environments(&["production"])).unwrap_err();
    assert_mentions(&error.to_string(), &["app: \"Shop_\" is not a valid name"]);
}

#[test]
fn several_broken_environments_are_still_one_line() {
    let repo = Repo::new("scope-several");
    let path = repo.0.join("berth.yaml");
    let yaml = format!("{STAGING_MISTYPED}  qa:\n    namespace: Shop-QA\n    overlay: nowhere\n");
    let config = Config::parse_in(&yaml, &path, Scope::Environments(&[])).unwrap();
    assert_eq!(
        config.environments.keys().collect::<Vec<_>>(),
        ["production"]
    );
    let warning = config.skipped_warning().unwrap();
    assert_mentions(
        &warning,
        &[
            "environments `qa`, `staging` have problems",
            "and 2 more",
            "lists them",
        ],
    );
    assert!(!warning.contains('\n'), "one line: {warning}");
    let sound = Config::parse_in(MINIMAL, &path, Scope::Environments(&["staging"])).unwrap();
    assert_eq!(sound.skipped_warning(), None);
}

#[test]
fn a_backup_location_shared_with_the_environment_touched_is_an_error() {
    let repo = Repo::new("scope-backups");
    let path = repo.0.join("berth.yaml");
    let shared = BACKUPS.replace(
        "credentials_secret: s3, schedule",
        "credentials_secret: s3, prefix: production/, schedule",
    );
    for touched in ["staging", "production"] {
        let error = Config::parse_in(&shared, &path, Scope::Environments(&[touched])).unwrap_err();
        assert_mentions(
            &error.to_string(),
            &[
                &format!("environments.{touched}.backups.prefix"),
                "as in environment",
            ],
        );
    }
    // Neither touched: one warning.
    let config = Config::parse_in(&shared, &path, Scope::Environments(&[])).unwrap();
    assert_mentions(&config.skipped_warning().unwrap(), &["backups.prefix"]);
}

#[test]
fn berth_yaml_is_found_from_a_subdirectory_up_to_the_repository_root() {
    let repo = Repo::new("locate");
    repo.write("berth.yaml", MINIMAL);
    repo.write("overlays/staging/deep/.keep", "");
    fs::create_dir_all(repo.0.join(".git")).unwrap();
    assert_eq!(
        locate::search(&repo.0).unwrap(),
        PathBuf::from("berth.yaml")
    );
    let deep = repo.0.join("overlays/staging/deep");
    assert_eq!(locate::search(&deep).unwrap(), repo.0.join("berth.yaml"));
    // Not above the repository's root, even when a parent has one.
    let outer = Repo::new("locate-outer");
    outer.write("berth.yaml", MINIMAL);
    outer.write("inner/.git", "gitdir: elsewhere\n");
    outer.write("inner/src/.keep", "");
    let error = locate::search(&outer.0.join("inner/src")).unwrap_err();
    assert_eq!(exit_code_of(&error), ExitCode::from(2));
    assert_mentions(
        &error.to_string(),
        &[
            "no berth.yaml found in",
            &outer.0.join("inner/src").display().to_string(),
            &format!(
                "up to {} (the repository's root)",
                outer.0.join("inner").display()
            ),
            "--config",
            "BERTH_CONFIG",
        ],
    );
}

#[test]
fn production_is_protected_unless_it_says_otherwise_and_others_only_when_they_say_so() {
    let repo = Repo::new("protected");
    let environments = "  production:\n    namespace: shop-prod\n    overlay: overlays/staging\n";
    let config = repo.load(&format!("{MINIMAL}{environments}")).unwrap();
    assert!(config.environment("production").unwrap().protected);
    assert!(!config.environment("staging").unwrap().protected);
    let flipped = format!(
        "{}{environments}    protected: false\n",
        MINIMAL.replace(
            "    overlay: overlays/staging\n",
            "    overlay: overlays/staging\n    protected: true\n"
        )
    );
    let config = repo.load(&flipped).unwrap();
    assert!(!config.environment("production").unwrap().protected);
    assert!(config.environment("staging").unwrap().protected);
}

/// A chart environment `dev` with `chart` (a YAML flow mapping's inside).
fn with_chart(chart: &str) -> String {
    format!(
        "app: shop\nimages: [r/shop]\nenvironments:\n  dev: {{ namespace: dev, chart: {{ {chart} }} }}\n"
    )
}

#[test]
fn remote_charts_are_pinned_to_one_version_with_set_values() {
    let repo = Repo::new("remote-charts");
    let config = repo
        .load(&with_chart(
            "path: oci://127.0.0.1:25000/charts/web, version: 0.1.0, \
             set: { image.tag: \"1.0\", replicaCount: 2, \"ingress.hosts[0].host\": a.example }",
        ))
        .unwrap();
    let Source::Helm { chart, set, .. } = &config.environments["dev"].source else {
        panic!("expected a chart");
    };
    assert_eq!(
        chart,
        &Chart::Oci {
            reference: "oci://127.0.0.1:25000/charts/web".into(),
            version: "0.1.0".into(),
            plain_http: true,
        }
    );
    assert_eq!(set["image.tag"], serde_json::json!("1.0"));
    assert_eq!(set["replicaCount"], serde_json::json!(2));
    let config = repo
        .load(&with_chart(
            "path: oci://ghcr.io/acme/charts/web, version: 1.2.3-rc.1+build.5",
        ))
        .unwrap();
    let Source::Helm { chart, .. } = &config.environments["dev"].source else {
        panic!("expected a chart");
    };
    assert!(
        matches!(
            chart,
            Chart::Oci {
                plain_http: false,
                ..
            }
        ),
        "{chart:?}"
    );
    let config = repo
        .load(&with_chart(
            "repo: https://charts.example.com/stable/, name: web, version: 2.0.0",
        ))
        .unwrap();
    assert_eq!(
        config.environments["dev"].source,
        Source::Helm {
            chart: Chart::Repo {
                url: "https://charts.example.com/stable".into(),
                name: "web".into(),
                version: "2.0.0".into(),
            },
            values: Vec::new(),
            set: BTreeMap::new(),
            release: "shop".into(),
        }
    );
}

#[test]
fn every_chart_mistake_names_the_key_and_the_fix() {
    let repo = Repo::new("chart-mistakes");
    repo.write("chart/Chart.yaml", "name: web\nversion: 0.1.0\n");
    for (chart, parts) in [
        (
            "path: oci://ghcr.io/acme/web",
            &[
                "environments.dev.chart.version: is missing",
                "add `version: X.Y.Z`",
            ][..],
        ),
        (
            "repo: https://charts.example.com, name: web",
            &["environments.dev.chart.version: is missing"],
        ),
        (
            "path: chart, repo: https://charts.example.com, name: web, version: 1.0.0",
            &[
                "environments.dev.chart: has both `path` and `repo`",
                "keep `path`",
            ],
        ),
        (
            "path: oci://ghcr.io/acme/web, version: ^1.2.0",
            &[
                "environments.dev.chart.version: \"^1.2.0\" is a range",
                "one exact version",
            ],
        ),
        (
            "path: oci://ghcr.io/acme/web, version: \"1.2\"",
            &["\"1.2\" is a range"],
        ),
        (
            "path: oci://ghcr.io/acme/web, version: 1.x",
            &["\"1.x\" is a range"],
        ),
        (
            "path: oci://ghcr.io/acme/web, version: latest",
            &["\"latest\" is not a chart version", "such as `1.2.3`"],
        ),
        (
            "repo: oci://ghcr.io/acme, name: web, version: 1.0.0",
            &[
                "environments.dev.chart.repo: \"oci://ghcr.io/acme\" is an OCI registry",
                "`path: oci://REGISTRY/REPO/NAME`",
            ],
        ),
        (
            "repo: http://charts.example.com, name: web, version: 1.0.0",
            &[
                "environments.dev.chart.repo: \"http://charts.example.com\" is plain http",
                "https",
            ],
        ),
        (
            "repo: https://charts.example.com, version: 1.0.0",
            &["environments.dev.chart.name: is missing"],
        ),
        (
            "path: oci://ghcr.io/acme/web:1.0.0, version: 1.0.0",
            &[
                "environments.dev.chart.path: \"oci://ghcr.io/acme/web:1.0.0\" names a tag or digest",
            ],
        ),
        (
            "path: oci://ghcr.io, version: 1.0.0",
            &["is not an OCI chart reference"],
        ),
        (
            "path: https://charts.example.com/web, version: 1.0.0",
            &[
                "environments.dev.chart.path: \"https://charts.example.com/web\" is neither",
                "`repo: URL`",
            ],
        ),
        (
            "path: chart, version: 1.0.0",
            &[
                "environments.dev.chart.version: has no place here",
                "Chart.yaml",
                "remove `version`",
            ],
        ),
        (
            "path: oci://ghcr.io/acme/web, name: web, version: 1.0.0",
            &["environments.dev.chart.name: has no place here"],
        ),
        (
            "release: web",
            &["environments.dev.chart: has neither `path` nor `repo`"],
        ),
        (
            "path: chart, set: { \"a..b\": 1 }",
            &[
                "environments.dev.chart.set: \"a..b\" is not a helm key path",
                "values file",
            ],
        ),
        (
            "path: chart, set: { \"a=b\": 1 }",
            &["\"a=b\" is not a helm key path"],
        ),
    ] {
        let text = repo.error(&with_chart(chart));
        assert_mentions(&text, parts);
    }
}

#[test]
fn a_chart_with_dependencies_needs_its_lock() {
    let repo = Repo::new("chart-lock");
    repo.write(
        "chart/Chart.yaml",
        "apiVersion: v2\nname: web\nversion: 0.1.0\ndependencies:\n  - name: common\n    version: 0.1.0\n    repository: file://../common\n",
    );
    let text = repo.error(&with_chart("path: chart"));
    assert_mentions(
        &text,
        &[
            "environments.dev.chart.path:",
            "declares dependencies in Chart.yaml but has no Chart.lock",
            "run `helm dependency update",
            "commit Chart.lock",
        ],
    );
    repo.write("chart/Chart.lock", "dependencies: []\n");
    repo.load(&with_chart("path: chart")).unwrap();
}

#[test]
fn chart_versions_and_key_paths() {
    for good in ["0.1.0", "1.2.3-rc.1", "10.20.30+build.7", "1.0.0-0"] {
        assert!(validate::is_exact_version(good), "{good}");
    }
    for bad in ["1.2", "v1.2.3", "1.2.3-", "01.2.3.4", "1.2.3+", "latest"] {
        assert!(!validate::is_exact_version(bad), "{bad}");
    }
}
