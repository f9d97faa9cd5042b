//! What the release ships besides the binary: `--version`, the man pages
//! and the index files packaging/dist-manifests writes (the release build
//! itself is `make dist-check`'s, too slow for the suite).

use std::path::Path;
use std::process::{Command, Output};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn berth(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .output()
        .expect("berth runs");
    assert!(output.status.success(), "{args:?}: {output:?}");
    output
}

fn text(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8")
}

#[test]
fn version_says_commit_date_target_and_linkage_and_v_stays_short() {
    assert_eq!(text(&berth(&["-V"])), format!("berth {VERSION}\n"));
    let long = text(&berth(&["--version"]));
    let lines: Vec<&str> = long.lines().collect();
    assert_eq!(lines[0], format!("berth {VERSION}"), "{long}");
    let head = Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let expected_commit = head.unwrap_or_else(|| "unknown".into());
    assert_eq!(lines[1], format!("commit: {expected_commit}"), "{long}");
    let date = lines[2].strip_prefix("commit-date: ").expect(&long);
    assert!(
        date == "unknown" || (date.len() == 10 && date.as_bytes()[4] == b'-'),
        "{long}"
    );
    assert!(lines[3].starts_with("target: x86_64-") || lines[3].starts_with("target: aarch64-"));
    assert!(lines[4] == "linkage: static" || lines[4] == "linkage: dynamic");
}

#[test]
fn man_pages_cover_every_command_and_subcommand_without_a_date() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man/man1");
    berth(&["man-pages", out.to_str().unwrap()]);
    for page in [
        "berth.1",
        "berth-status.1",
        "berth-lock.1",
        "berth-version.1",
        "berth-assets-push.1",
        "berth-man-pages.1",
    ] {
        let roff =
            std::fs::read_to_string(out.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        let title = roff.lines().find(|l| l.starts_with(".TH ")).expect(page);
        // .TH name section date source: the date stays empty.
        assert!(
            title.ends_with(&format!("1  \"berth {VERSION}\" ")),
            "{page}: {title}"
        );
    }
    assert!(
        !out.join("berth-help.1").exists(),
        "clap's help gets no page"
    );
    let again = dir.path().join("again");
    berth(&["man-pages", again.to_str().unwrap()]);
    let listing = |d: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    assert_eq!(listing(&out), listing(&again));
    for name in listing(&out) {
        assert_eq!(
            std::fs::read(out.join(&name)).unwrap(),
            std::fs::read(again.join(&name)).unwrap(),
            "{name:?} differs between two runs"
        );
    }
}

#[test]
fn dist_manifests_checksum_every_tarball_and_name_it_in_the_krew_manifest() {
    let dist = tempfile::tempdir().unwrap();
    for (target, bytes) in [
        ("x86_64-unknown-linux-gnu", &b"x86_64 tarball"[..]),
        ("aarch64-unknown-linux-gnu", b"aarch64 tarball"),
    ] {
        std::fs::write(
            dist.path().join(format!("berth-{VERSION}-{target}.tar.gz")),
            bytes,
        )
        .unwrap();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/dist-manifests");
    let output = Command::new(script)
        .arg(dist.path())
        .env("BERTH_RELEASE_URL", "http://127.0.0.1:1/rel/")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");

    let check = Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(dist.path())
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let sums = std::fs::read_to_string(dist.path().join("SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), 2, "{sums}");

    let manifest: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(dist.path().join("berth.krew.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["metadata"]["name"], "berth");
    assert_eq!(manifest["spec"]["version"], format!("v{VERSION}"));
    let platforms = manifest["spec"]["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 2);
    for platform in platforms {
        let arch = platform["selector"]["matchLabels"]["arch"]
            .as_str()
            .unwrap();
        let target = match arch {
            "amd64" => "x86_64-unknown-linux-gnu",
            "arm64" => "aarch64-unknown-linux-gnu",
            other => panic!("arch {other}"),
        };
        let tarball = format!("berth-{VERSION}-{target}.tar.gz");
        assert_eq!(platform["selector"]["matchLabels"]["os"], "linux");
        assert_eq!(
            platform["uri"],
            format!("http://127.0.0.1:1/rel/v{VERSION}/{tarball}")
        );
        let line = sums.lines().find(|l| l.ends_with(&tarball)).unwrap();
        assert_eq!(platform["sha256"], line[..64]);
        assert_eq!(platform["bin"], "berth");
        assert_eq!(
            platform["files"][0]["from"],
            format!("berth-{VERSION}-{target}/berth")
        );
    }
}

/// A dist directory holding one tarball whose member `x/f1` holds `content`.
fn dist_with(root: &Path, side: &str, content: &str) -> std::path::PathBuf {
    let stage = root.join(format!("stage-{side}"));
    std::fs::create_dir_all(stage.join("x")).unwrap();
    std::fs::write(stage.join("x/f1"), content).unwrap();
    std::fs::write(stage.join("x/f2"), "the same").unwrap();
    let dist = root.join(side);
    std::fs::create_dir_all(&dist).unwrap();
    let tarball = format!("berth-{VERSION}-x86_64-unknown-linux-gnu.tar.gz");
    let shell = format!(
        "tar --create --gzip --mtime=@0 --file {dist}/{tarball} --directory {stage} x && cd {dist} && sha256sum {tarball} >SHA256SUMS",
        dist = dist.display(),
        stage = stage.display(),
    );
    let status = Command::new("bash").args(["-c", &shell]).status().unwrap();
    assert!(status.success());
    dist
}

#[test]
fn dist_compare_names_the_member_that_differs() {
    let root = tempfile::tempdir().unwrap();
    let one = dist_with(root.path(), "one", "first build");
    let two = dist_with(root.path(), "two", "other build");
    let same = dist_with(root.path(), "same", "first build");
    let compare = |a: &Path, b: &Path| {
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/dist-compare"))
            .args([a, b])
            .output()
            .unwrap()
    };
    let output = compare(&one, &two);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(stdout.contains("DIFFERENT: SHA256SUMS"), "{stdout}");
    assert!(stdout.contains("content differs: x/f1"), "{stdout}");
    assert!(!stdout.contains("x/f2"), "{stdout}");

    let output = compare(&one, &same);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
}
