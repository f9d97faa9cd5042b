//! berth's own image (`packaging/build-image`: the static berth and
//! PostgreSQL's client), which backup, restore and drill pods run. Built
//! once per test binary from `$BERTH_STATIC_BINARY` when set (one
//! `packaging/build-static` built), else build-image runs
//! `packaging/build-static` (a release build: many minutes when it is not
//! up to date), and pushed to a repository path of the run's own.
//! `$BERTH_TEST_IMAGE`, when set, is used as it is instead (an image
//! already pushed, with an agent as new as the tests need).

use std::sync::OnceLock;

use super::{local_env, unique_name};

/// `REGISTRY/PATH/berth:VERSION@DIGEST`, built on the first call.
pub fn berth_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        if let Ok(image) = std::env::var("BERTH_TEST_IMAGE") {
            return image;
        }
        let env = local_env();
        let registry = format!(
            "{}/{}",
            env.var("BERTH_LOCAL_REGISTRY"),
            unique_name("berth-image")
        );
        let mut command = env.command("packaging/build-image");
        command.args(["--registry", &registry]);
        if let Some(binary) = std::env::var_os("BERTH_STATIC_BINARY") {
            command.arg("--binary").arg(binary);
        }
        let output = command
            .arg(env!("CARGO_PKG_VERSION"))
            .output()
            .expect("run packaging/build-image");
        assert!(
            output.status.success(),
            "packaging/build-image failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    })
}
