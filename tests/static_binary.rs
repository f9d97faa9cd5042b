//! The statically linked release binary (`packaging/build-static`) needs
//! nothing from the system: in a root holding only it, the static kubectl,
//! `/etc/hosts`, `/etc/resolv.conf`, `/dev/null`, a kubeconfig and the kwok
//! app, it reads the environment's status and deploys, reaching the API
//! server, MinIO and the registry by the name `localhost`, which berth
//! resolves itself from `/etc/hosts` (a static glibc cannot load the NSS
//! modules `getaddrinfo` would need). The only name server it may ask is
//! 127.0.0.1.
//!
//! Needs root (for chroot) and the static binary: `make test` builds it
//! first. Without either the test fails, saying so.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::ListParams;
use support::images::{self, Layer, MediaTypes, TAG};
use support::*;

/// Where `packaging/build-static` leaves the binary, unless
/// `BERTH_STATIC_BINARY` names another.
fn static_binary() -> PathBuf {
    let path = std::env::var_os("BERTH_STATIC_BINARY").map_or_else(
        || repo_root().join("target/x86_64-unknown-linux-gnu/release/berth"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "no static berth at {}: build it with `packaging/build-static` (`make test` does), or \
         set BERTH_STATIC_BINARY to it",
        path.display()
    );
    path
}

/// The program interpreter an ELF executable names (its `PT_INTERP`), if
/// any: a statically linked one names none.
fn interpreter(path: &Path) -> Option<String> {
    const PT_INTERP: u32 = 3;
    let elf = std::fs::read(path).unwrap();
    assert!(
        elf.starts_with(b"\x7fELF\x02\x01"),
        "{} is not a 64-bit little-endian ELF file",
        path.display()
    );
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap()) as usize;
    let (table, entry_size, entries) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..entries)
        .map(|i| table + i * entry_size)
        .find_map(|header| {
            let kind = u32::from_le_bytes(elf[header..header + 4].try_into().unwrap());
            (kind == PT_INTERP).then(|| {
                let (offset, size) = (u64_at(header + 8), u64_at(header + 32));
                String::from_utf8_lossy(&elf[offset..offset + size]).into_owned()
            })
        })
}

/// `name` of a kubeconfig list (`clusters`, `users`, `contexts`): its entry's value.
fn named<'a>(config: &'a serde_norway::Value, list: &str, name: &str) -> &'a serde_norway::Value {
    let entry = config[list]
        .as_sequence()
        .and_then(|entries| entries.iter().find(|e| e["name"].as_str() == Some(name)))
        .unwrap_or_else(|| panic!("the kubeconfig has no {list} entry {name}"));
    &entry[list.trim_end_matches('s')]
}

/// A kubeconfig for the local cluster's `berth-local` context that names the
/// API server `https://localhost:PORT`, its credentials copied in.
fn kubeconfig(env: &LocalEnv) -> String {
    let text = std::fs::read_to_string(env.var("KUBECONFIG")).unwrap();
    let config: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    let context = named(&config, "contexts", "berth-local");
    let cluster = named(&config, "clusters", context["cluster"].as_str().unwrap());
    let user = named(&config, "users", context["user"].as_str().unwrap());
    let data = |entry: &serde_norway::Value, key: &str| {
        entry[key]
            .as_str()
            .unwrap_or_else(|| panic!("the berth-local context has no {key}"))
            .to_owned()
    };
    let server = data(cluster, "server");
    let (_, port) = server.rsplit_once(':').unwrap();
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://localhost:{port}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    client-certificate-data: {certificate}
    client-key-data: {key}
contexts:
- name: berth-local
  context: {{cluster: local, user: admin}}
current-context: berth-local
",
        ca = data(cluster, "certificate-authority-data"),
        certificate = data(user, "client-certificate-data"),
        key = data(user, "client-key-data"),
    )
}

/// `host:port` of `address` (`http://host:port` or `host:port`) as `localhost:port`.
fn on_localhost(address: &str) -> String {
    let (_, port) = address.rsplit_once(':').unwrap();
    format!("localhost:{port}")
}

/// Copy the directory `from` to `to`, recursively.
fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The empty root and what runs in it.
struct Root {
    dir: tempfile::TempDir,
    /// Variables berth gets, and nothing else.
    vars: Vec<(&'static str, String)>,
}

impl Root {
    /// `berth --config /app/berth.yaml ARGS`, chrooted into the root.
    fn berth(&self, args: &[&str]) -> Output {
        Command::new("/usr/sbin/chroot")
            .arg(self.dir.path())
            .args(["/berth", "--config", "/app/berth.yaml"])
            .args(args)
            .env_clear()
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run chroot")
    }
}

#[tokio::test]
async fn the_static_binary_deploys_from_an_empty_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test chroots into an empty root, which needs root: run `make test` as root"
    );
    let binary = static_binary();
    assert_eq!(
        interpreter(&binary),
        None,
        "{} is dynamically linked: build it with `packaging/build-static`",
        binary.display()
    );
    let kubectl = std::fs::canonicalize("/usr/bin/kubectl").unwrap();
    assert_eq!(
        interpreter(&kubectl),
        None,
        "{} must be static to run in the empty root",
        kubectl.display()
    );

    let env = local_env();
    let namespace = unique_name("static-binary");
    let bucket = namespace.clone();
    let _cleanup = [
        Cleanup::Namespace(namespace.clone()),
        Cleanup::Bucket(bucket.clone()),
    ];
    env.s3()
        .await
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create the bucket");
    let registry = on_localhost(env.var("BERTH_LOCAL_REGISTRY"));
    let image = images::push_to(
        env,
        &registry,
        None,
        "static-frontend",
        MediaTypes::Docker,
        &[Layer::new().file("app/static/app.js", "hello()")],
    );

    let dir = tempfile::Builder::new()
        .prefix("empty-root-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let root = dir.path();
    for sub in ["etc", "tmp", "app", "dev"] {
        std::fs::create_dir(root.join(sub)).unwrap();
    }
    // What every container runtime provides: children's stdin is /dev/null.
    let null = root.join("dev/null");
    let made = Command::new("mknod")
        .arg(&null)
        .args(["-m", "666", "c", "1", "3"])
        .status();
    assert!(made.is_ok_and(|s| s.success()), "mknod {}", null.display());
    std::fs::copy(&binary, root.join("berth")).unwrap();
    std::fs::copy(&kubectl, root.join("kubectl")).unwrap();
    std::fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    std::fs::write(root.join("etc/resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
    std::fs::write(root.join("kubeconfig"), kubeconfig(env)).unwrap();
    copy_tree(&kwok_app().join("overlays"), &root.join("app/overlays"));
    let mut config = example_config(&namespace, Path::new("overlays/staging"));
    config.push_str(&format!(
        "    assets:\n      from: {{ image: {}, path: /app/static }}\n      bucket: {bucket}\n      \
         endpoint: http://{}\n      prefix: static/\n",
        image.repository,
        on_localhost(env.var("AWS_ENDPOINT_URL")),
    ));
    std::fs::write(root.join("app/berth.yaml"), config).unwrap();
    let root = Root {
        vars: vec![
            ("KUBECONFIG", "/kubeconfig".into()),
            ("BERTH_KUBECTL", "/kubectl".into()),
            ("HOME", "/tmp".into()),
            // The fixture's SHAs are made up: no repository or registry
            // tag expands them (tests/support's berth_command sets it too).
            ("BERTH_SHA_AS_GIVEN", "1".into()),
            ("AWS_ACCESS_KEY_ID", env.var("AWS_ACCESS_KEY_ID").into()),
            (
                "AWS_SECRET_ACCESS_KEY",
                env.var("AWS_SECRET_ACCESS_KEY").into(),
            ),
            ("AWS_REGION", env.var("AWS_REGION").into()),
        ],
        dir,
    };

    let before = root.berth(&["status", "test"]);
    assert_eq!(code(&before), 0, "status: {}", stderr(&before));
    let deploy = root.berth(&["deploy", "test", TAG, "--output", "json"]);
    assert_eq!(code(&deploy), 0, "deploy: {}", stderr(&deploy));
    assert_eq!(
        report(&deploy)["status"],
        "succeeded",
        "{}",
        stderr(&deploy)
    );

    // The workloads rolled out at the SHA, and the image's assets reached the bucket.
    let deployments: Api<Deployment> = Api::namespaced(env.kube().await, &namespace);
    let live = deployments.list(&ListParams::default()).await.unwrap();
    assert_eq!(live.items.len(), 4, "{:?}", live.items);
    for deployment in &live.items {
        let spec = deployment.spec.as_ref().unwrap();
        let images: Vec<_> = spec
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .filter_map(|c| c.image.as_deref())
            .collect();
        assert!(
            images.iter().all(|i| i.ends_with(&format!(":{TAG}"))),
            "{images:?}"
        );
        let status = deployment.status.as_ref().unwrap();
        assert_eq!(status.updated_replicas, spec.replicas, "{status:?}");
        assert_eq!(status.available_replicas, spec.replicas, "{status:?}");
    }
    let object = env
        .s3()
        .await
        .get_object()
        .bucket(&bucket)
        .key("static/app.js")
        .send()
        .await
        .expect("the image's static file in the bucket");
    assert_eq!(
        object.body.collect().await.unwrap().into_bytes().as_ref(),
        b"hello()"
    );

    let after = root.berth(&["status", "test"]);
    let text = String::from_utf8_lossy(&after.stdout);
    assert_eq!(code(&after), 0, "status: {}", stderr(&after));
    assert!(
        text.contains("Deployment/frontend") && text.contains(TAG) && text.contains("healthy"),
        "{text}"
    );
}
