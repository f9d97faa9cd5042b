//! Property tests of everything berth parses from people and tools: the
//! duration and `--rate` parsers, berth.yaml, and the YAML that kubectl and
//! helm print. None may panic; bad input is an error with exit code 2.
//!
//! `cargo test` runs 256 cases of each (proptest's default); `make fuzz`
//! runs many more through `PROPTEST_CASES`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;
use serde_norway::Value;

use crate::cli::{RATES, parse_rate};
use crate::config::Config;
use crate::duration;
use crate::error::exit_code_number;
use crate::image_ref;
use crate::render;

/// Keys berth.yaml and Kubernetes objects have, so that generated documents
/// get past the parser into validation.
const KEYS: &[&str] = &[
    "app",
    "images",
    "environments",
    "staging",
    "production",
    "namespace",
    "overlay",
    "context",
    "chart",
    "path",
    "values",
    "release",
    "migrate",
    "image",
    "command",
    "args",
    "deadline",
    "env_from",
    "secret",
    "rollout",
    "timeout",
    "unschedulable_after",
    "unready_after",
    "run",
    "workload",
    "container",
    "assets",
    "from",
    "dir",
    "bucket",
    "prefix",
    "concurrency",
    "precompress",
    "database",
    "port",
    "maintenance",
    "retry_after",
    "services",
    "title",
    "message",
    "tasks",
    "pod",
    "args_file",
    "github",
    "repo",
    "branch",
    "depth",
    "required_checks",
    "releases_kept",
    "render_cache",
    "workflow_table",
    "cache_table",
    "workflow_column",
    "clear",
    "buckets",
    "lock_timeout",
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "items",
];

/// Strings with meaning somewhere in berth.yaml, and near misses.
const WORDS: &[&str] = &[
    "",
    " ",
    "shop",
    "staging",
    "Shop_Staging",
    "overlays/staging",
    "../outside",
    "/etc",
    "registry.example.com/shop/web",
    "registry.example.com/shop/web:v1@sha256:00",
    "127.0.0.1:25000/app",
    ":",
    "@",
    "0s",
    "90s",
    "10m",
    "1h30m",
    "366d",
    "367d",
    "18446744073709551615s",
    "10 minutes",
    "br",
    "gzip",
    "é",
    "a\nb",
    "SELECT 1",
    "List",
    "ConfigMap",
    "v1",
    "apps/v1",
];

/// proptest's default settings (`PROPTEST_CASES` and friends apply), without
/// failure files written into the source tree.
fn settings() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A YAML scalar: the interesting words, numbers of every size, any text.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
        ".{0,16}".prop_map(Value::from),
    ]
}

/// A mapping key: mostly berth.yaml's own keys.
fn key() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::sample::select(KEYS).prop_map(Value::from),
        1 => scalar(),
    ]
}

/// A YAML value a few levels deep, built from [`key`] and [`scalar`].
fn tree() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|pairs| Value::Mapping(pairs.into_iter().collect())),
        ]
    })
}

/// A valid berth.yaml's content, which generated trees are merged into.
fn minimal() -> Value {
    serde_norway::from_str(
        "app: shop\n\
         images: [registry.example.com/shop/web]\n\
         environments:\n  staging:\n    namespace: shop-staging\n    overlay: overlays/staging\n",
    )
    .expect("the minimal berth.yaml is YAML")
}

/// `patch` laid over `base`: mappings merge key by key, anything else replaces.
fn merge(base: Value, patch: Value) -> Value {
    match (base, patch) {
        (Value::Mapping(mut base), Value::Mapping(patch)) => {
            for (key, value) in patch {
                let merged = match base.remove(&key) {
                    Some(old) => merge(old, value),
                    None => value,
                };
                base.insert(key, merged);
            }
            Value::Mapping(base)
        }
        (_, patch) => patch,
    }
}

/// A scratch deploy repo holding `overlays/staging`, and its berth.yaml path.
fn repo() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let overlay = dir.path().join("overlays/staging");
    std::fs::create_dir_all(&overlay).expect("creating the overlay");
    std::fs::write(overlay.join("kustomization.yaml"), "resources: []\n")
        .expect("writing the overlay");
    let path = dir.path().join("berth.yaml");
    (dir, path)
}

/// Load `text` as berth.yaml at `path`: it loads, or fails as bad input.
fn loads_or_refuses(text: &str, path: &Path) -> Result<(), TestCaseError> {
    if let Err(error) = Config::parse(text, path) {
        prop_assert_eq!(exit_code_number(&error), 2, "{:#}", error);
        prop_assert!(
            format!("{error:#}").contains(&path.display().to_string()),
            "the error names the file: {:#}",
            error
        );
    }
    Ok(())
}

/// Parse `text` as rendered objects: they parse, or fail as bad input.
fn renders_or_refuses(text: &str) -> Result<(), TestCaseError> {
    if let Err(error) = render::parse_objects(text, "kubectl kustomize") {
        prop_assert_eq!(exit_code_number(&error), 2, "{:#}", error);
    }
    Ok(())
}

/// A duration as people write it: parts like `90s` or `1h`, and its seconds.
fn written_duration() -> impl Strategy<Value = (String, Option<u64>)> {
    let unit = prop::sample::select(vec![('s', 1u64), ('m', 60), ('h', 3600), ('d', 86_400)]);
    let amount = prop_oneof![0u64..1000, any::<u64>()];
    prop::collection::vec((amount, unit), 1..4).prop_map(|parts| {
        let text: String = parts.iter().map(|(n, (u, _))| format!("{n}{u}")).collect();
        let seconds = parts.iter().try_fold(0u64, |total, (n, (_, unit))| {
            n.checked_mul(*unit)?.checked_add(total)
        });
        (text, seconds)
    })
}

proptest! {
    #![proptest_config(settings())]

    #[test]
    fn durations_never_panic(text in prop_oneof![any::<String>(), "[0-9smhdx .-]{0,24}"]) {
        if let Err(message) = duration::parse(&text) {
            prop_assert!(message.starts_with(&format!("'{text}'")), "{}", message);
        }
    }

    #[test]
    fn durations_read_back_up_to_the_maximum((text, seconds) in written_duration()) {
        match seconds.filter(|&s| s <= duration::MAX.as_secs()) {
            Some(seconds) => prop_assert_eq!(duration::parse(&text), Ok(Duration::from_secs(seconds))),
            None => {
                let message = duration::parse(&text).expect_err("above the maximum");
                prop_assert!(message.contains("366d"), "{}", message);
            }
        }
    }

    #[test]
    fn durations_above_the_maximum_are_refused(seconds in duration::MAX.as_secs() + 1..=u64::MAX) {
        let message = duration::parse(&format!("{seconds}s")).expect_err("above the maximum");
        prop_assert!(message.contains("366d"), "{}", message);
    }

    #[test]
    fn rates_are_within_range_or_refused(
        text in prop_oneof![
            any::<f64>().prop_map(|rate| rate.to_string()),
            (0.0001f64..2000.0).prop_map(|rate| rate.to_string()),
            any::<String>(),
            "[0-9e.+-]{1,12}|inf|NaN",
        ]
    ) {
        match parse_rate(&text) {
            Ok(rate) => {
                prop_assert!(RATES.contains(&rate));
                // What clear-render-cache's ticker gets: tokio panics on zero.
                let period = Duration::from_secs_f64(1.0 / rate);
                prop_assert!(period >= Duration::from_millis(1), "{:?}", period);
            }
            Err(message) => prop_assert!(message.contains("--rate") && message.contains("0.001 to 1000"), "{}", message),
        }
    }

    #[test]
    fn any_text_as_berth_yaml_loads_or_is_refused(
        text in prop_oneof![any::<String>(), "[a-z_:\\-\\[\\]{}&*!|>'\"#%@ \n]{0,120}"]
    ) {
        let (_repo, path) = repo();
        loads_or_refuses(&text, &path)?;
    }

    #[test]
    fn any_berth_yaml_document_loads_or_is_refused(patch in tree(), over_minimal in any::<bool>()) {
        let document = if over_minimal { merge(minimal(), patch) } else { patch };
        let (_repo, path) = repo();
        let text = serde_norway::to_string(&document).expect("a YAML value serializes");
        loads_or_refuses(&text, &path)?;
    }

    #[test]
    fn any_text_as_rendered_objects_parses_or_is_refused(
        text in prop_oneof![any::<String>(), "(---\n|[a-zA-Z:\\-\\[\\]{}&*!| \n]){0,120}"]
    ) {
        renders_or_refuses(&text)?;
    }

    #[test]
    fn any_rendered_documents_parse_or_are_refused(documents in prop::collection::vec(tree(), 0..4)) {
        let text: Vec<String> = documents
            .iter()
            .map(|d| serde_norway::to_string(d).expect("a YAML value serializes"))
            .collect();
        renders_or_refuses(&text.join("---\n"))?;
    }

    #[test]
    fn image_references_split_without_panicking(image in prop_oneof![any::<String>(), "[a-zé:/@.0-9]{0,24}"]) {
        let repository = image_ref::repository(&image);
        prop_assert!(image.starts_with(repository));
        if let Some(tag) = image_ref::tag(&image) {
            let joined = format!("{repository}:{tag}");
            prop_assert!(image.contains(&joined), "{} in {}", joined, image);
        }
    }
}

/// The document the generated patches are merged into loads, so the
/// patches are what gets refused, not the base.
#[test]
fn the_minimal_document_loads() {
    let (_repo, path) = repo();
    let text = serde_norway::to_string(&minimal()).expect("a YAML value serializes");
    let config = Config::parse(&text, &path).expect("the minimal berth.yaml loads");
    assert_eq!(config.app, "shop");
}
