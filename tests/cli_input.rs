//! Bad flags and closed pipes, through the built binary. No cluster needed:
//! each case ends before berth reads berth.yaml or connects anywhere.

use std::process::{Command, Output, Stdio};

/// Run berth with `args` in an empty directory, stdout captured.
fn berth(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("a temporary directory");
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .current_dir(dir.path())
        .env_remove("BERTH_CONFIG")
        .env_remove("GITHUB_ACTIONS")
        .output()
        .expect("berth runs")
}

/// Assert that `args` exits 2, changes nothing, and says every one of `parts`.
fn assert_refused(args: &[&str], parts: &[&str]) {
    let output = berth(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    for part in parts {
        assert!(
            stderr.contains(part),
            "{args:?}: expected {part:?} in {stderr}"
        );
    }
}

#[test]
fn a_rate_outside_its_range_names_the_flag_and_the_range() {
    for rate in ["1e10", "1001", "0", "0.0001", "-5", "NaN", "inf", "five"] {
        assert_refused(
            &["clear-render-cache", "staging", &format!("--rate={rate}")],
            &["--rate", "from 0.001 to 1000"],
        );
    }
}

#[test]
fn a_duration_above_a_year_names_the_maximum() {
    let huge = "18446744073709551615s";
    for args in [
        vec!["run", "staging", "--timeout", huge, "--", "true"],
        vec!["assets", "prune", "staging", "--grace", "99999999999d"],
        vec![
            "advanced-deploy",
            "staging",
            "3f2a9c1",
            "--lock-wait",
            "367d",
        ],
        vec!["lock", "staging", "acquire", "--ttl", huge],
    ] {
        assert_refused(&args, &["is too long", "366d"]);
    }
}

#[test]
fn a_lock_held_for_no_time_is_refused() {
    assert_refused(
        &["lock", "staging", "acquire", "--ttl", "0s"],
        &["--ttl 0s", "--ttl 1h"],
    );
}

#[test]
fn rollback_flags_that_cannot_go_together_or_name_no_backup_are_refused() {
    assert_refused(
        &["rollback", "staging", "--restore-backup", "bogus"],
        &[
            "--restore-backup \"bogus\" is not a backup id",
            "db backups staging",
        ],
    );
    assert_refused(
        &[
            "rollback",
            "staging",
            "--restore-backup",
            "--accept-data-loss",
        ],
        &["cannot be used with"],
    );
}

/// Run berth with `args`, its stdout a pipe whose read end is already
/// closed: every write fails with EPIPE.
fn into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let dir = tempfile::tempdir().expect("a temporary directory");
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .current_dir(dir.path())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("berth runs")
}

#[test]
fn a_closed_stdout_ends_quietly_with_exit_0() {
    for args in [
        &["config", "schema"][..],
        &["completions", "bash"],
        &["completions", "zsh"],
    ] {
        let output = into_closed_pipe(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?} said something: {stderr}");
    }
}

#[test]
fn an_open_stdout_gets_everything() {
    let output = berth(&["config", "schema"]);
    assert_eq!(output.status.code(), Some(0));
    let schema: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the schema is JSON");
    assert!(schema["properties"]["environments"].is_object(), "{schema}");
}
