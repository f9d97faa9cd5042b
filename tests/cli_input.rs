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
        &["'0s' for '--ttl", "from 1s to 366d"],
    );
}

/// Every flag that waits, times out or holds, with the command it belongs to.
const POSITIVE_DURATION_FLAGS: [(&[&str], &str); 10] = [
    (&["advanced-deploy", "staging", "3f2a9c1"], "--timeout"),
    (&["advanced-deploy", "staging", "3f2a9c1"], "--lock-wait"),
    (&["update-staging-to-latest-passing-master"], "--timeout"),
    (&["promote", "staging", "production"], "--lock-wait"),
    (&["rollback", "staging"], "--timeout"),
    (&["run", "staging", "--", "true"], "--timeout"),
    (&["lock", "staging", "acquire"], "--ttl"),
    (&["maintenance", "staging", "on"], "--lock-wait"),
    (&["db", "restore", "staging", "daily-1"], "--lock-wait"),
    (&["db", "drill", "staging", "--check"], "--max-age"),
];

#[test]
fn a_wait_timeout_or_hold_of_no_time_or_beyond_the_maximum_is_refused_naming_the_range() {
    for (command, flag) in POSITIVE_DURATION_FLAGS {
        for value in ["0s", "0m", "100y", "367d"] {
            let mut args = command.to_vec();
            let at = args.iter().position(|a| *a == "--").unwrap_or(args.len());
            args.splice(at..at, [flag, value]);
            assert_refused(&args, &[flag, "from 1s to 366d"]);
        }
    }
}

#[test]
fn a_grace_or_minimum_age_may_be_zero_but_not_beyond_the_maximum() {
    for (command, flag) in [
        (&["assets", "prune", "staging"][..], "--grace"),
        (&["update-production-to-staging"], "--min-age"),
    ] {
        let mut args = command.to_vec();
        args.extend([flag, "100y"]);
        assert_refused(&args, &[flag, "from 0s to 366d"]);
        // 0s passes the flag's check: what fails next is the missing berth.yaml
        let mut args = command.to_vec();
        args.extend([flag, "0s"]);
        let output = berth(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("berth.yaml"), "{args:?}: {stderr}");
        assert!(!stderr.contains(flag), "{args:?}: {stderr}");
    }
}

#[test]
fn help_lists_only_what_is_built() {
    let output = berth(&["--help"]);
    let help = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{help}");
    assert!(
        help.contains("status") && help.contains("version"),
        "{help}"
    );
    assert!(!help.contains("preview"), "{help}");
    let pages = tempfile::tempdir().unwrap();
    let output = berth(&["man-pages", pages.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0));
    assert!(pages.path().join("berth-status.1").exists());
    assert!(
        !pages.path().join("berth-preview.1").exists(),
        "no page for preview"
    );
    let page = std::fs::read_to_string(pages.path().join("berth.1")).unwrap();
    assert!(!page.contains("preview"), "{page}");
}

/// The words of a completion script: runs of letters, digits, `-` and
/// `_`, an option's leading dashes left out (`--lock-wait` is `lock-wait`).
fn words(script: &str) -> std::collections::BTreeSet<&str> {
    script
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .map(|w| w.trim_start_matches('-'))
        .filter(|w| !w.is_empty())
        .collect()
}

#[test]
fn completions_offer_only_what_help_lists() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = berth(&["completions", shell]);
        let script = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{shell}: {script}");
        let words = words(&script);
        // `preview` is not built yet; `db agent` is berth's image's own
        for hidden in ["preview", "agent"] {
            assert!(!words.contains(hidden), "{shell} offers {hidden}: {script}");
        }
        for shown in ["rollback", "status", "drill", "completions", "lock-wait"] {
            assert!(words.contains(shown), "{shell} lacks {shown}: {script}");
        }
    }
}

#[test]
fn commands_do_not_offer_global_options_they_ignore() {
    for command in [&["completions"][..], &["man-pages"], &["config", "schema"]] {
        let mut args = command.to_vec();
        args.push("--help");
        let output = berth(&args);
        let help = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {help}");
        for flag in ["--output", "--config", "--verbose", "--log-file"] {
            assert!(!help.contains(flag), "{args:?} offers {flag}: {help}");
        }
    }
    let output = berth(&["version", "--help"]);
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        help.contains("--output") && !help.contains("--config"),
        "{help}"
    );
    // where it means something, a global option goes before or after the command
    let output = berth(&["status", "--help"]);
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        help.contains("--output") && help.contains("--config"),
        "{help}"
    );

    assert_refused(&["completions", "bash", "--output", "json"], &["--output"]);
    assert_refused(
        &["--output", "json", "completions", "bash"],
        &["--output does nothing for `berth completions`"],
    );
    assert_refused(&["config", "schema", "--config", "x.yaml"], &["--config"]);
    assert_refused(&["man-pages", "/tmp/x", "-v"], &["-v"]);
}

#[test]
fn two_words_in_the_wrong_order_get_the_right_order() {
    assert_refused(
        &["lock", "acquire", "staging"],
        &["did you mean: berth lock staging acquire"],
    );
    assert_refused(
        &["maintenance", "status", "production"],
        &["did you mean: berth maintenance production status"],
    );
    assert_refused(
        &["db", "staging", "backups"],
        &["did you mean: berth db backups staging"],
    );
}

/// A kubeconfig whose only cluster listens nowhere.
fn unreachable_kubeconfig(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\ncurrent-context: nowhere\n\
         clusters: [{name: nowhere, cluster: {server: 'https://127.0.0.1:9'}}]\n\
         users: [{name: nobody, user: {token: t}}]\n\
         contexts: [{name: nowhere, context: {cluster: nowhere, user: nobody}}]\n",
    )
    .unwrap();
    path
}

#[test]
fn version_says_the_build_and_an_unreachable_server_without_failing() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = unreachable_kubeconfig(dir.path());
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .current_dir(dir.path())
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("GITHUB_ACTIONS")
            .output()
            .unwrap()
    };
    let output = run(&["version"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for part in [
        concat!("berth ", env!("CARGO_PKG_VERSION")),
        "\ncommit: ",
        "\ncommit-date: ",
        "\nserver: unreachable (",
    ] {
        assert!(text.contains(part), "{part:?} in {text}");
    }
    let output = run(&["version", "--output", "json"]);
    assert_eq!(output.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(
        output
            .stdout
            .trim_ascii_end()
            .rsplit(|b| *b == b'\n')
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(report["version"], env!("CARGO_PKG_VERSION"), "{report}");
    assert!(report["server"]["unreachable"].is_string(), "{report}");
    // --version: the same as `berth version`, the server line included
    let output = run(&["--version"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("commit: ") && text.contains("\nserver: unreachable ("),
        "{text}"
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
