//! The `image` asset source against the local registry: images pushed with
//! crane, read back by `berth::assets::image::extract` over the registry API.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use berth::assets::image::{Extracted, extract};
use support::fault_proxy::{FaultProxy, Mode};
use support::images::{self, Layer, MediaTypes, Pushed, noise};
use support::*;

/// 40 MiB: far more than any buffer, so the layer must stream.
const LARGE: usize = 40 << 20;

/// Every regular file below `dir`, by relative path, with its contents.
fn files_in(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            assert!(
                meta.is_dir() || meta.is_file(),
                "only files and directories: {path:?}"
            );
            if meta.is_dir() {
                dirs.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                files.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn expected(files: &[(&str, &[u8])]) -> BTreeMap<String, Vec<u8>> {
    files
        .iter()
        .map(|(path, contents)| (path.to_string(), contents.to_vec()))
        .collect()
}

/// Extract `path` of `image` into a fresh directory.
async fn extract_into(
    image: &Pushed,
    path: &str,
) -> (anyhow::Result<Extracted>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let result = extract(&image.repository, &image.tag, path, dir.path()).await;
    (result, dir)
}

/// The error of an extraction that must fail, checked to be an input error
/// (exit 2), as its full message.
fn input_error(result: anyhow::Result<Extracted>) -> String {
    let error = result.expect_err("the extraction must fail");
    let message = format!("{error:#}");
    assert_eq!(
        berth::error::exit_code_number(&error),
        2,
        "an input error: {message}"
    );
    message
}

/// Three layers: overrides, a whiteout, an opaque directory, files beside
/// the path, and (when `large`) a 40 MiB file.
fn layered_image(
    name: &str,
    media: MediaTypes,
    large: bool,
) -> (Pushed, BTreeMap<String, Vec<u8>>) {
    let env = local_env();
    let mut base = Layer::new()
        .dir("app")
        .dir("app/static")
        .file("app/static/css/site.css", "body { color: red }")
        .file("app/static/js/app.js", "console.log(1)")
        .file("app/static/robots.txt", "User-agent: *")
        .file("app/static/img/old.png", "old")
        .file("app/static/img/icons/a.svg", "<svg/>")
        .file("app/main.py", "print('outside')")
        .file("etc/passwd", "root:x:0:0");
    if large {
        base = base.file("app/static/big.bin", noise(LARGE, 7));
    }
    let change = Layer::new()
        .file("app/static/css/site.css", "body { color: blue }")
        .whiteout("app/static/robots.txt")
        .file("app/static/img/new.png", "new")
        .opaque("app/static/img")
        .file("app/staticfiles/x.css", "a sibling, not below the path");
    let extra = Layer::new().file("app/static/js/extra.js", "console.log(2)");
    let image = images::push(env, name, media, &[base, change, extra]);
    let mut files = expected(&[
        ("css/site.css", b"body { color: blue }"),
        ("js/app.js", b"console.log(1)"),
        ("js/extra.js", b"console.log(2)"),
        ("img/new.png", b"new"),
    ]);
    if large {
        files.insert("big.bin".into(), noise(LARGE, 7));
    }
    (image, files)
}

async fn extracts_exactly(name: &str, media: MediaTypes, large: bool) {
    let (image, want) = layered_image(name, media, large);
    let (result, dir) = extract_into(&image, "/app/static").await;
    let extracted = result.unwrap();
    let got = files_in(dir.path());
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "exactly the files below /app/static that the last layers leave"
    );
    for (path, contents) in &want {
        assert!(
            got[path] == *contents,
            "{path} has the last layer's contents"
        );
    }
    assert_eq!(
        extracted,
        Extracted {
            reference: image.reference(),
            digest: images::digest(local_env(), &image.reference()),
            files: want.len() as u64,
            bytes: want.values().map(|c| c.len() as u64).sum(),
        }
    );
}

#[tokio::test]
async fn a_docker_image_with_layers_whiteouts_and_a_large_file_extracts_exactly() {
    extracts_exactly("docker-layers", MediaTypes::Docker, true).await;
}

#[tokio::test]
async fn an_oci_image_extracts_exactly() {
    extracts_exactly("oci-layers", MediaTypes::Oci, false).await;
}

/// The registry's connections cut every 8 MiB (through the fault proxy):
/// the 40 MiB layer is resumed where each cut left it, with a Range request,
/// and the files come out whole, the layer's digest checked over every try.
#[tokio::test]
async fn a_layer_cut_again_and_again_midway_is_resumed_and_extracts_exactly() {
    let (image, want) = layered_image("cut-layer", MediaTypes::Oci, true);
    let registry = local_env().var("BERTH_LOCAL_REGISTRY");
    let proxy = FaultProxy::start(registry);
    proxy.set(Mode::ResetAfter(8 << 20));
    let through_proxy = image
        .repository
        .replacen(registry, &proxy.address().to_string(), 1);
    let dir = tempfile::tempdir().unwrap();
    let extracted = extract(&through_proxy, &image.tag, "/app/static", dir.path())
        .await
        .expect("a layer cut midway is resumed");
    assert!(
        proxy.accepted() >= 5,
        "the 40 MiB layer needed at least 4 cuts and resumptions, the proxy saw {} connections",
        proxy.accepted()
    );
    assert_eq!(files_in(dir.path()), want, "every file whole");
    assert_eq!(extracted.files, want.len() as u64);
}

#[tokio::test]
async fn an_index_resolves_to_its_linux_amd64_image() {
    let env = local_env();
    let arm = images::push(
        env,
        "index-arm",
        MediaTypes::Oci,
        &[Layer::new().file("app/static/arch.txt", "arm64")],
    );
    images::set_platform(env, &arm, "linux/arm64");
    let amd = images::push(
        env,
        "index-amd",
        MediaTypes::Oci,
        &[Layer::new().file("app/static/arch.txt", "amd64")],
    );
    images::set_platform(env, &amd, "linux/amd64");
    let index = images::push_index(env, "multi", &[&arm, &amd]);

    let (result, dir) = extract_into(&index, "/app/static").await;
    let extracted = result.unwrap();
    assert_eq!(files_in(dir.path()), expected(&[("arch.txt", b"amd64")]));
    assert_eq!(
        extracted.digest,
        images::digest(env, &amd.reference()),
        "the digest is the linux/amd64 image's, not the index's"
    );
}

#[tokio::test]
async fn a_missing_tag_or_repository_is_an_input_error_naming_the_image() {
    let env = local_env();
    let image = images::push(
        env,
        "missing-tag",
        MediaTypes::Docker,
        &[Layer::new().file("app/static/a", "a")],
    );
    let missing_tag = Pushed {
        repository: image.repository.clone(),
        tag: "deadbee".into(),
    };
    let missing_repository = Pushed {
        repository: format!(
            "{}/berth-test/{}",
            env.var("BERTH_LOCAL_REGISTRY"),
            unique_name("never-pushed")
        ),
        tag: "deadbee".into(),
    };
    for missing in [missing_tag, missing_repository] {
        let (result, dir) = extract_into(&missing, "/app/static").await;
        let message = input_error(result);
        assert!(
            message.contains(&format!("image {} does not exist", missing.reference())),
            "{message}"
        );
        assert!(
            message.contains("check that CI built and pushed it"),
            "{message}"
        );
        assert!(files_in(dir.path()).is_empty(), "nothing extracted");
    }
}

#[tokio::test]
async fn an_image_without_the_path_is_an_input_error_naming_the_path_and_what_exists() {
    let image = images::push(
        local_env(),
        "no-path",
        MediaTypes::Docker,
        &[Layer::new()
            .file("app/public/index.html", "<html>")
            .file("app/main.py", "print()")],
    );
    let (result, dir) = extract_into(&image, "/app/static").await;
    let message = input_error(result);
    assert!(
        message.contains(&format!(
            "image {} has no files under /app/static",
            image.reference()
        )),
        "{message}"
    );
    assert!(message.contains("assets.from.path"), "{message}");
    assert!(message.contains("/app: main.py, public"), "{message}");
    assert!(files_in(dir.path()).is_empty(), "nothing extracted");
}

#[tokio::test]
async fn a_relative_path_is_an_input_error_before_any_request() {
    let image = Pushed {
        repository: "127.0.0.1:9/never/contacted".into(),
        tag: images::TAG.into(),
    };
    let (result, _dir) = extract_into(&image, "app/static").await;
    let message = input_error(result);
    assert!(
        message.contains("\"app/static\" is not an absolute path"),
        "{message}"
    );
}

#[tokio::test]
async fn an_unreachable_registry_is_an_input_error_naming_it_within_seconds() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let image = Pushed {
        repository: format!("127.0.0.1:{port}/app/frontend"),
        tag: images::TAG.into(),
    };
    let started = Instant::now();
    let (result, _dir) = extract_into(&image, "/app/static").await;
    let message = input_error(result);
    assert!(
        message.contains(&format!("cannot reach registry 127.0.0.1:{port}")),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(20), "fails fast");
}

/// Run `berth assets push` of `image`'s /app/static into a fresh bucket with
/// `vars` (and nothing else) as registry credentials. berth reads them from
/// its process environment, so each case is a process of its own.
async fn push_with(image: &Pushed, vars: &[(&str, &std::ffi::OsStr)]) -> std::process::Output {
    let env = local_env();
    let name = unique_name("assets-auth");
    env.s3()
        .await
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = example_config(&name, &kwok_app().join("overlays/staging"));
    config.push_str(&format!(
        "    assets:\n      from: {{ image: {}, path: /app/static }}\n      bucket: {name}\n",
        image.repository
    ));
    let config_path = dir.path().join("berth.yaml");
    std::fs::write(&config_path, config).unwrap();
    let empty_docker_config = tempfile::tempdir().unwrap();
    let mut command = berth_command(
        &config_path,
        dir.path(),
        &["assets", "push", "test", &image.tag],
    );
    command
        .env_remove("BERTH_REGISTRY_USERNAME")
        .env_remove("BERTH_REGISTRY_PASSWORD")
        .env("DOCKER_CONFIG", empty_docker_config.path());
    for (name, value) in vars {
        command.env(name, value);
    }
    command.output().unwrap()
}

/// The push of `image` was refused naming the registry and `source` of the credentials.
fn assert_registry_refused(
    output: &std::process::Output,
    image: &Pushed,
    source: &str,
    password: &str,
) {
    let registry = image.repository.split('/').next().unwrap();
    assert_refused(
        output,
        &[
            &format!(
                "registry {registry} refused access to image {}",
                image.reference()
            ),
            source,
            "BERTH_REGISTRY_USERNAME",
        ],
    );
    assert!(!stderr(output).contains(password), "never the password");
}

#[tokio::test]
async fn basic_auth_credentials_come_from_the_environment_else_the_docker_config() {
    let env = local_env();
    let registry = images::AuthRegistry::start(env);
    let image = images::push_to(
        env,
        &registry.address,
        Some(&registry.docker_config),
        "private",
        MediaTypes::Docker,
        &[Layer::new().file("app/static/a.css", "private")],
    );
    let user = std::ffi::OsStr::new(&registry.user);
    let password = std::ffi::OsStr::new(&registry.password);
    let wrong = std::ffi::OsStr::new("not-the-password");

    let from_environment = push_with(
        &image,
        &[
            ("BERTH_REGISTRY_USERNAME", user),
            ("BERTH_REGISTRY_PASSWORD", password),
        ],
    )
    .await;
    assert_eq!(code(&from_environment), 0, "{}", stderr(&from_environment));
    let from_docker_config = push_with(
        &image,
        &[("DOCKER_CONFIG", registry.docker_config.as_os_str())],
    )
    .await;
    assert_eq!(
        code(&from_docker_config),
        0,
        "{}",
        stderr(&from_docker_config)
    );
    let wrong_password = push_with(
        &image,
        &[
            ("BERTH_REGISTRY_USERNAME", user),
            ("BERTH_REGISTRY_PASSWORD", wrong),
        ],
    )
    .await;
    assert_registry_refused(
        &wrong_password,
        &image,
        "user docker from BERTH_REGISTRY_USERNAME",
        &registry.password,
    );
    let anonymous = push_with(&image, &[]).await;
    assert_registry_refused(&anonymous, &image, "anonymous", &registry.password);
}
