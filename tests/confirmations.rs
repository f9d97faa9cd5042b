//! Dangerous operations confirm (docs/operators.md), against the local
//! cluster: without a terminal each refuses with exit 2 naming `--yes` and
//! changes nothing, `--yes` goes on, and under a real pseudo-terminal berth
//! asks y/N. The deploy lock by hand: a reason shown to whoever it refuses,
//! and someone else's lock broken only with `--force`.

mod support;

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::ListParams;
use support::app::{Migration, TestApp};
use support::*;

/// Exit 2, and the message says to pass `flag`.
fn assert_refused_naming(out: &Output, flag: &str) {
    assert_eq!(code(out), 2, "{}", stderr(out));
    assert!(
        stderr(out).contains(&format!("pass {flag}")),
        "names {flag}: {}",
        stderr(out)
    );
}

/// How many release records `namespace` holds.
async fn records(namespace: &str) -> usize {
    let secrets: Api<Secret> = Api::namespaced(local_env().kube().await, namespace);
    secrets
        .list(&ListParams::default().labels("berth.dev/release-record=true"))
        .await
        .unwrap()
        .items
        .len()
}

/// berth.yaml of `app` with a second environment, `production` (protected
/// by default), deploying the same overlay into a namespace of its own,
/// deleted when the returned cleanup drops.
fn add_production(app: &TestApp) -> (String, Cleanup) {
    let production = format!("{}-prod", app.namespace);
    let base = &app.base_config;
    let (_, test) = base.split_once("  test:\n").unwrap();
    let env = test.replace(
        &format!("namespace: {}\n", app.namespace),
        &format!("namespace: {production}\n"),
    );
    app.write_config(&format!("{base}  production:\n{env}"));
    (production.clone(), Cleanup::Namespace(production))
}

#[tokio::test]
async fn production_asks_before_a_sha_no_other_environment_ran() {
    let app = TestApp::new("confirm-deploy", Migration::Deleted);
    let (production, _cleanup) = add_production(&app);

    let out = app.berth(&["deploy", "production", "1a2b3c4"]);
    assert_refused_naming(&out, "--yes");
    assert!(
        stderr(&out).contains("production is protected"),
        "{}",
        stderr(&out)
    );
    assert_eq!(records(&production).await, 0, "no release recorded");

    // Once another environment ran it, production takes it without a question.
    app.ok(&["deploy", "test", "1a2b3c4"]);
    app.ok(&["deploy", "production", "1a2b3c4"]);
    assert_eq!(records(&production).await, 1);

    let out = app.berth(&["deploy", "production", "2b3c4d5"]);
    assert_refused_naming(&out, "--yes");
    assert_eq!(records(&production).await, 1, "no release recorded");
    app.ok(&["deploy", "production", "2b3c4d5", "--yes"]);
    assert_eq!(records(&production).await, 2);
}

#[tokio::test]
async fn a_rollback_past_the_previous_release_asks() {
    let app = TestApp::new("confirm-rollback", Migration::Deleted);
    for sha in ["1a2b3c4", "2b3c4d5", "5e6f7a8"] {
        app.ok(&["deploy", "test", sha]);
    }
    let out = app.berth(&["rollback", "test", "--to", "1"]);
    assert_refused_naming(&out, "--yes");
    assert!(
        stderr(&out).contains("2 successful releases back"),
        "{}",
        stderr(&out)
    );
    assert_eq!(app.history().len(), 3, "nothing recorded");
    app.ok(&["rollback", "test", "--to", "1", "--yes"]);
    let history = app.history();
    assert_eq!(history.len(), 4);
    assert_eq!(history[0]["sha"], "1a2b3c4");
}

#[tokio::test]
async fn maintenance_on_in_a_protected_environment_asks() {
    let app = TestApp::new("confirm-maint", Migration::Deleted);
    app.configure("    protected: true\n");
    app.ok(&["deploy", "test", "1a2b3c4", "--yes"]);
    let state = || {
        let out = app.ok(&["maintenance", "test", "status", "--output", "json"]);
        report(&out)["state"].as_str().unwrap().to_owned()
    };
    let out = app.berth(&["maintenance", "test", "on"]);
    assert_refused_naming(&out, "--yes");
    assert_eq!(state(), "off", "maintenance stays off");
    app.ok(&["maintenance", "test", "on", "--yes"]);
    assert_eq!(state(), "on");
    // Off is never dangerous.
    app.ok(&["maintenance", "test", "off"]);
    assert_eq!(state(), "off");
}

#[tokio::test]
async fn someone_elses_lock_shows_its_reason_and_breaks_only_with_force() {
    let app = TestApp::new("confirm-lock", Migration::Deleted);
    app.ok(&["deploy", "test", "1a2b3c4"]);
    let held = app
        .command(&[
            "lock",
            "test",
            "acquire",
            "--ttl",
            "10m",
            "-m",
            "restoring the database",
        ])
        .env("USER", "someone-else")
        .output()
        .unwrap();
    assert_eq!(code(&held), 0, "{}", stderr(&held));

    let status = app.ok(&["lock", "test", "status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("restoring the database"), "{status}");
    let refused = app.berth(&["deploy", "test", "2b3c4d5"]);
    assert_eq!(code(&refused), 3, "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("reason: \"restoring the database\""),
        "the refused deploy says why: {}",
        stderr(&refused)
    );

    let lock_held = || {
        let out = app.ok(&["lock", "test", "status", "--output", "json"]);
        report(&out)["lock"] == "held"
    };
    let out = app.berth(&["lock", "test", "release"]);
    assert_refused_naming(&out, "--force");
    assert!(lock_held(), "the lock stays");
    // Not taken in this shell either: without a terminal, --yes too.
    let out = app.berth(&["lock", "test", "release", "--force"]);
    assert_refused_naming(&out, "--yes");
    assert!(lock_held(), "the lock stays");

    let out = app.ok(&["lock", "test", "release", "--force", "--yes"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("broke the lock of someone-else@") && said.contains("held since"),
        "{said}"
    );
    assert!(!lock_held());
}

#[tokio::test]
async fn breaking_a_lock_still_renewed_warns_that_its_holder_is_alive() {
    let app = TestApp::new("confirm-alive", Migration::Held);
    let client = local_env().kube().await;
    let deploy = spawn_captured(&mut app.command(&["deploy", "test", "1a2b3c4"]));
    let leases: Api<Lease> = Api::namespaced(client, &app.namespace);
    poll(
        Duration::from_secs(60),
        "the deploy to take the lock",
        async || leases.get_opt("berth-deploy-lock").await.ok().flatten(),
    )
    .await;
    let out = app.ok(&["lock", "test", "release", "--force", "--yes"]);
    assert!(
        stderr(&out).contains("THE HOLDER IS ALIVE"),
        "{}",
        stderr(&out)
    );
    let deploy = deploy.wait_with_output().unwrap();
    assert_eq!(code(&deploy), 3, "the deploy stops: {}", stderr(&deploy));
}

#[tokio::test]
async fn my_lock_from_another_shell_asks_and_from_this_one_does_not() {
    let app = TestApp::new("confirm-session", Migration::Deleted);
    app.ok(&["deploy", "test", "1a2b3c4"]);
    let mut elsewhere = app.command(&["lock", "test", "acquire", "--ttl", "10m"]);
    // SAFETY: setsid is async-signal-safe; it starts another session, as
    // another terminal's shell would be.
    unsafe {
        elsewhere.pre_exec(|| {
            rustix::process::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let held = elsewhere.output().unwrap();
    assert_eq!(code(&held), 0, "{}", stderr(&held));
    let out = app.berth(&["lock", "test", "release"]);
    assert_refused_naming(&out, "--yes");
    app.ok(&["lock", "test", "release", "--yes"]);

    app.ok(&["lock", "test", "acquire", "--ttl", "10m"]);
    app.ok(&["lock", "test", "release"]);
}

/// A pseudo-terminal: the parent's end and the path of the child's end.
fn open_pty() -> (OwnedFd, PathBuf) {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let parent = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&parent).unwrap();
    unlockpt(&parent).unwrap();
    let child = ptsname(&parent, Vec::new()).unwrap();
    (parent, PathBuf::from(child.to_str().unwrap()))
}

/// Run berth `args` for `app` on a pseudo-terminal, answer `answer` to its
/// question, and return its exit code and everything it showed.
async fn answer_on_a_terminal(app: &TestApp, args: &[&str], answer: &str) -> (i32, String) {
    let (parent, child_path) = open_pty();
    let terminal = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&child_path)
            .unwrap()
    };
    let mut child = app
        .command(args)
        .stdin(terminal())
        .stdout(terminal())
        .stderr(terminal())
        .spawn()
        .unwrap();
    let mut reader = std::fs::File::from(parent.as_fd().try_clone_to_owned().unwrap());
    let mut writer = std::fs::File::from(parent);
    let collected = Arc::new(Mutex::new(Vec::new()));
    let sink = collected.clone();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        // EIO once every holder of the child's end is gone.
        while let Ok(n) = reader.read(&mut buffer) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buffer[..n]);
        }
    });
    let shown = || String::from_utf8_lossy(&collected.lock().unwrap()).into_owned();
    poll(Duration::from_secs(60), "berth's question", async || {
        shown().contains("[y/N]").then_some(())
    })
    .await;
    writer.write_all(answer.as_bytes()).unwrap();
    let status = poll(Duration::from_secs(120), "berth to exit", async || {
        child.try_wait().unwrap()
    })
    .await;
    (status.code().unwrap_or(-1), shown())
}

#[tokio::test]
async fn on_a_terminal_berth_shows_from_and_to_and_asks() {
    let app = TestApp::new("confirm-tty", Migration::Deleted);
    app.configure("    protected: true\n");
    app.ok(&["deploy", "test", "1a2b3c4", "--yes"]);

    let (code, shown) = answer_on_a_terminal(&app, &["deploy", "test", "2b3c4d5"], "n\r").await;
    assert_eq!(code, 2, "{shown}");
    assert!(shown.contains("environment: test"), "{shown}");
    assert!(
        shown.contains("1a2b3c4") && shown.contains("→ 2b3c4d5"),
        "{shown}"
    );
    assert!(shown.contains("Deploy 2b3c4d5 to test? [y/N]"), "{shown}");
    assert!(shown.contains("not confirmed"), "{shown}");
    assert_eq!(app.history().len(), 1, "nothing recorded");

    let (code, shown) = answer_on_a_terminal(&app, &["deploy", "test", "2b3c4d5"], "y\r").await;
    assert_eq!(code, 0, "{shown}");
    let history = app.history();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["sha"], "2b3c4d5");
}
