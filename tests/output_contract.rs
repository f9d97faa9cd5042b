//! The output contract (docs/output.md) against the local environment: with
//! `--output json` every stdout line is JSON and the last one is the only
//! `event: report`, naming the command, its status and the process's exit
//! code; in plain mode an error is said once.

mod support;

use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;
use support::*;

/// A throw-away copy of the kwok-backed app (its migration dropped, so a doomed
/// image fails the rollout itself), deploying into a namespace of its own.
struct App {
    dir: PathBuf,
    namespace: String,
}

impl App {
    fn new(prefix: &str) -> App {
        let namespace = unique_name(prefix);
        let dir = std::env::temp_dir().join(&namespace);
        let overlay = dir.join("overlay");
        std::fs::create_dir_all(&overlay).unwrap();
        let staging = kwok_app().join("overlays/staging");
        std::fs::write(
            overlay.join("kustomization.yaml"),
            format!(
                "resources: [{}]\npatches:\n  - patch: |-\n      $patch: delete\n      \
                 apiVersion: batch/v1\n      kind: Job\n      metadata: {{name: migrate}}\n",
                pathdiff(&overlay, &staging).display()
            ),
        )
        .unwrap();
        std::fs::write(dir.join("berth.yaml"), example_config(&namespace, &overlay)).unwrap();
        App { dir, namespace }
    }

    fn berth(&self, args: &[&str]) -> Output {
        berth_command(&self.dir.join("berth.yaml"), &repo_root(), args)
            .output()
            .unwrap()
    }

    /// Run `args` with `--output json` and check the contract; the report.
    fn json(&self, command: &str, args: &[&str]) -> (Output, Value) {
        let mut with_json = vec!["--output", "json"];
        with_json.extend(args);
        let out = self.berth(&with_json);
        let report = assert_contract(&out, command, &with_json);
        (out, report)
    }
}

/// `to` relative to the directory `from` (kustomize refuses absolute resource paths).
fn pathdiff(from: &std::path::Path, to: &std::path::Path) -> PathBuf {
    let ups = from.components().count() - 1;
    let mut path: PathBuf = std::iter::repeat_n("..", ups).collect();
    path.push(to.strip_prefix("/").unwrap());
    path
}

/// Every stdout line is a JSON object with an `event`; the last is the one
/// report, with the documented fields and the process's exit code.
fn assert_contract(out: &Output, command: &str, args: &[&str]) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: Vec<Value> = stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{args:?}: a stdout line is not JSON ({e}): {line}"))
        })
        .collect();
    assert!(
        events.iter().all(|e| e["event"].is_string()),
        "{args:?}: every line is an event: {stdout}"
    );
    let reports = events.iter().filter(|e| e["event"] == "report").count();
    assert_eq!(reports, 1, "{args:?}: one report: {stdout}");
    let report = events.last().unwrap().clone();
    assert_eq!(report["event"], "report", "{args:?}: the report is last");
    assert_eq!(report["command"], command, "{args:?}: {report}");
    assert!(report["status"].is_string(), "{args:?}: {report}");
    assert!(report["duration_s"].is_number(), "{args:?}: {report}");
    assert_eq!(
        report["exit_code"],
        code(out),
        "{args:?}: the report's exit code is the process's: {report}"
    );
    // diff exits 1 for differences, a success without an error
    if code(out) == 0 || report["status"] == "succeeded" {
        assert!(report["error"].is_null(), "{args:?}: {report}");
    } else {
        assert!(
            report["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{args:?}: a failure says why: {report}"
        );
    }
    report
}

/// The stdout events named `event`.
fn events(out: &Output, event: &str) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|e| e["event"] == event)
        .collect()
}

#[tokio::test]
async fn every_command_ends_with_one_json_report_carrying_its_exit_code() {
    let client = local_env().kube().await;
    let app = App::new("output-json");

    let (_, report) = app.json("config validate", &["config", "validate"]);
    assert_eq!(report["status"], "succeeded");
    // The schema is JSON itself: printed as such, no `--output`.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["config", "schema"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(schema["properties"].is_object(), "{schema}");

    let (out, report) = app.json(
        "advanced-deploy",
        &["deploy", "test", "1a2b3c4", "--dry-run"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(report["status"], "planned", "{report}");
    assert_eq!(report["sha"], "1a2b3c4");
    assert_eq!(events(&out, "plan").len(), 1, "the plan, then the report");
    assert_eq!(
        deployment_count(&client, &app.namespace).await,
        0,
        "a dry run changes nothing"
    );

    let (out, report) = app.json("advanced-deploy", &["deploy", "test", "not-a-sha"]);
    assert_eq!(code(&out), 2);
    assert_eq!(report["status"], "refused");
    for field in ["environment", "sha", "release", "failure"] {
        assert!(report.get(field).is_some(), "{field}: {report}");
    }
    assert!(report["error"].as_str().unwrap().contains("not-a-sha"));

    let (out, report) = app.json("advanced-deploy", &["deploy", "test", "1a2b3c4"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["release"], 1);

    let (out, report) = app.json("status", &["status", "test"]);
    assert_eq!(report["environments"], serde_json::json!(["test"]));
    let environment = &events(&out, "environment")[0];
    assert_eq!(environment["lock"]["state"], "free", "{environment}");
    assert_eq!(environment["last_release"]["number"], 1, "{environment}");
    let workloads = environment["workloads"].as_array().unwrap();
    assert!(
        workloads
            .iter()
            .any(|w| w["health"] == "healthy" && w["shas"][0] == "1a2b3c4"),
        "{environment}"
    );

    let (out, report) = app.json("history", &["history", "test"]);
    assert_eq!(report["releases"], 1);
    let releases = events(&out, "release");
    assert_eq!(releases[0]["sha"], "1a2b3c4");
    let manifest = &releases[0]["manifest"];
    assert_eq!(manifest["redacted"], true, "{manifest}");
    assert!(
        manifest["objects"]
            .as_array()
            .is_some_and(|names| names.iter().all(|n| n.is_string())),
        "object names only, never their bodies: {manifest}"
    );

    // The command in the pod owns stdout; these two write nothing, so
    // stdout is berth's JSON alone, the report after the child exited.
    let (out, report) = app.json(
        "run",
        &["run", "test", "--workload", "frontend", "--", "true"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(report["status"], "succeeded");
    let exit_3 = [
        "run",
        "test",
        "--workload",
        "frontend",
        "--",
        "sh",
        "-c",
        "exit 3",
    ];
    let (out, report) = app.json("run", &exit_3);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(report["status"], "exited");
    assert!(
        !stderr(&out).contains("error"),
        "the child said why: {}",
        stderr(&out)
    );

    let (out, report) = app.json("diff", &["diff", "test", "2b3c4d5"]);
    assert_eq!(code(&out), 1, "differences: {}", stderr(&out));
    assert_eq!(report["differs"], true, "{report}");
    let objects = events(&out, "object");
    let changed: Vec<&Value> = objects
        .iter()
        .filter(|o| o["change"] == "changed")
        .collect();
    assert_eq!(report["changed"], changed.len(), "{report}");
    assert!(report["changed"].as_u64().unwrap() > 0, "{report}");
    assert!(
        changed
            .iter()
            .any(|o| o["lines"].as_array().unwrap().iter().any(|l| l
                .as_str()
                .unwrap()
                .starts_with('+')
                && l.as_str().unwrap().contains(":2b3c4d5"))),
        "a changed object shows its new image: {changed:?}"
    );

    let (_, report) = app.json("lock", &["lock", "test", "acquire", "--ttl", "10m"]);
    assert_eq!(report["lock"], "held", "{report}");
    assert_eq!(report["ttl_s"], 600);
    let (out, report) = app.json("advanced-deploy", &["deploy", "test", "2b3c4d5"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(report["status"], "locked");
    let (_, report) = app.json("lock", &["lock", "test", "status"]);
    assert_eq!(report["lock"], "held", "{report}");
    let (_, report) = app.json("lock", &["lock", "test", "release"]);
    assert!(report["released"].is_string(), "{report}");
    let (out, report) = app.json("lock", &["lock", "test", "status", "-m", "why"]);
    assert_eq!(code(&out), 2);
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("lock test acquire")
    );

    let (out, report) = app.json("rollback", &["rollback", "test", "--to", "1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(report["status"], "succeeded", "{report}");
    assert_eq!(report["release"], 2, "{report}");
    let (_, report) = app.json("maintenance", &["maintenance", "test", "status"]);
    assert_eq!(report["state"], "off", "{report}");
    let (out, _) = app.json("assets push", &["assets", "push", "test", "1a2b3c4"]);
    assert_eq!(
        code(&out),
        2,
        "the kwok-backed app has no assets: {}",
        stderr(&out)
    );
    // A child process owns the terminal; berth's own refusal is still a report.
    let (out, _) = app.json("task", &["task", "test", "nosuch"]);
    assert_eq!(code(&out), 2);
    let (out, _) = app.json("psql", &["psql", "test"]);
    assert_eq!(code(&out), 2, "no database block: {}", stderr(&out));
    let (out, report) = app.json("run", &["run", "test", "--", "true"]);
    assert_eq!(code(&out), 2, "no run settings: {}", stderr(&out));
    assert_eq!(report["environment"], "test");

    delete_namespace(&client, &app.namespace).await;
}

#[tokio::test]
async fn a_failed_deploy_says_its_error_once() {
    let client = local_env().kube().await;
    let app = App::new("output-once");

    // Refused before any release: the message, once, and no second `error:`.
    let (_, refused) = app.json("advanced-deploy", &["deploy", "test", "not-a-sha"]);
    let message = refused["error"].as_str().unwrap();
    let plain = app.berth(&["deploy", "test", "not-a-sha"]);
    assert_eq!(code(&plain), 2);
    let text = stderr(&plain);
    assert_eq!(text.matches(message).count(), 1, "{text}");
    assert!(!text.contains("error:"), "said again: {text}");

    // A doomed rollout: explained at length once, then one summary line.
    let plain = app.berth(&["deploy", "test", "badbad1"]);
    assert_eq!(code(&plain), 1, "{}", stderr(&plain));
    let text = stderr(&plain);
    assert!(!text.contains("error:"), "said again: {text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("failed deploying badbad1 to test"))
            .count(),
        1,
        "{text}"
    );
    // The explanation's first line names the workload and the reason; the
    // next is the failure's message, which must not be repeated.
    let at = lines
        .iter()
        .position(|l| l.ends_with("rollout failed"))
        .unwrap_or_else(|| panic!("no explanation: {text}"));
    let detail = lines[at + 2].trim();
    assert!(detail.contains(":badbad1"), "{text}");
    assert_eq!(text.matches(detail).count(), 1, "{text}");

    // The same failure with --output json: the report says it all, and
    // stderr says the error once, for people.
    let (out, report) = app.json("advanced-deploy", &["deploy", "test", "badbad1"]);
    assert_eq!(report["status"], "failed");
    assert!(report["failure"]["reason"].is_string(), "{report}");
    let message = report["error"].as_str().unwrap();
    assert_eq!(stderr(&out).matches(message).count(), 1, "{}", stderr(&out));

    delete_namespace(&client, &app.namespace).await;
}

#[test]
fn a_closed_stderr_is_no_panic_and_the_exit_code_still_tells() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader); // every write to stderr fails with EPIPE
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["lock", "staging", "status"])
        .current_dir(dir.path())
        .env_remove("BERTH_CONFIG")
        .stderr(writer)
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "no berth.yaml: bad input, not a panic (101)");
}

/// What people read at a glance, in a pipe: `history` and `status` give
/// local times (here a +05:30 zone) to the second with their age, in
/// aligned columns, the newest `--limit N` releases; JSON keeps RFC 3339; a
/// deploy's summary names each step's duration; no colour escapes anywhere.
#[tokio::test]
async fn times_are_local_with_their_age_steps_are_timed_and_pipes_get_no_colour() {
    let app = App::new("output-glance");
    let in_kolkata = |args: &[&str]| {
        berth_command(&app.dir.join("berth.yaml"), &repo_root(), args)
            .env("TZ", "IST-5:30")
            .output()
            .unwrap()
    };
    let no_escapes = |out: &Output| {
        let all = [out.stdout.as_slice(), out.stderr.as_slice()].concat();
        assert!(
            !all.contains(&0x1b),
            "no colour in a pipe: {}",
            String::from_utf8_lossy(&all)
        );
    };
    for sha in ["1a2b3c4", "2b3c4d5", "3c4d5e6"] {
        let out = in_kolkata(&["deploy", "test", sha]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        no_escapes(&out);
        let text = stderr(&out);
        let summary = text.lines().last().unwrap();
        assert!(
            summary.contains(": apply ") && summary.contains(", wait "),
            "the summary names each step's duration: {summary}"
        );
        let wait = text
            .lines()
            .find(|line| line.contains("==> wait"))
            .unwrap_or_else(|| panic!("a wait step: {text}"));
        assert!(
            wait.contains("(apply took ") && wait.ends_with("s)"),
            "each step's line says how long the one before took: {wait}"
        );
    }

    let (out, report) = app.json("history", &["history", "test", "--limit", "2"]);
    assert_eq!(
        (report["releases"].as_u64(), report["shown"].as_u64()),
        (Some(3), Some(2))
    );
    let releases = events(&out, "release");
    assert_eq!(releases.len(), 2, "{releases:?}");
    let started: Vec<jiff::Timestamp> = releases
        .iter()
        .map(|r| {
            r["started_at"]
                .as_str()
                .unwrap()
                .parse()
                .expect("RFC 3339 in JSON")
        })
        .collect();

    let out = in_kolkata(&["history", "test", "--limit", "2"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    no_escapes(&out);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "a header, two releases, a hint: {text}");
    assert!(!text.contains("1a2b3c4"), "only the newest two: {text}");
    assert_eq!(
        lines[3], "(2 of 3 releases; --limit N shows more)",
        "{text}"
    );
    let zone = jiff::tz::TimeZone::fixed(jiff::tz::Offset::from_seconds(5 * 3600 + 1800).unwrap());
    let column = lines[0].find("STARTED").unwrap();
    for (line, at) in lines[1..3].iter().zip(&started) {
        let local = at
            .to_zoned(zone.clone())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string();
        assert_eq!(
            line.find(&local),
            Some(column),
            "aligned local time: {text}"
        );
        let age = &line[column + local.len()..];
        assert!(age.starts_with(" (") && age.contains(" ago)"), "{text}");
        assert!(line.contains("succeeded"), "{text}");
    }

    let out = in_kolkata(&["status", "test"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    no_escapes(&out);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let newest = started[0]
        .to_zoned(zone)
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string();
    assert!(
        text.contains("last release: 3 3c4d5e6 succeeded by")
            && text.contains(&format!(", started {newest} (")),
        "{text}"
    );

    let out = app.berth(&["history", "test", "--limit", "0"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}
