//! What berth says under real names and real failures, against the local
//! cluster: `status` under long names and foreign sidecars, a deploy failing
//! on unschedulable pods, a refused rollback.

mod support;

use support::app::{Migration, TestApp};
use support::*;

#[tokio::test]
async fn a_rollback_refused_before_it_changed_anything_says_nothing_about_the_schema() {
    let app = TestApp::new("msg-refused", Migration::Deleted);
    app.ok(&["advanced-deploy", "test", "1a2b3c4"]);
    app.ok(&["advanced-deploy", "test", "5e6f7a8"]);
    app.ok(&["lock", "test", "acquire", "--ttl", "10m"]);
    let out = app.berth(&["rollback", "test"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("is locked by"), "it says why: {said}");
    // the plan (stdout) says what the rollback would do; nothing after it
    // claims what happened to the schema
    assert!(
        !said.contains("schema") && !said.contains("warning"),
        "no warning, nothing about the schema: {said}"
    );
    app.ok(&["lock", "test", "release"]);
    // the rollback that runs still says the schema stayed where it was
    let out = app.ok(&["rollback", "test"]);
    assert!(
        stderr(&out).contains("the database schema was NOT rolled back"),
        "{}",
        stderr(&out)
    );
}
