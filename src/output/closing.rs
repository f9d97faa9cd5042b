//! The one report every command ends with, assembled from what the command
//! staged and how it ended: the last JSON line with `--output json`, one
//! summary line on stderr otherwise. See docs/output.md for the schema.

use serde_json::{Map, Value, json};

use crate::error::Outcome;

/// How a command's report is printed when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// Always: the JSON report, or the summary line on stderr.
    Always,
    /// The command handed the terminal to a child process (`run`, `task`,
    /// `psql`), whose output is the result: the JSON report with
    /// `--output json`; otherwise only berth's own error, never a summary
    /// and never a word about the child's exit code.
    AfterChild,
}

/// Marks an error whose report already said it, so main prints it no more.
#[derive(Debug)]
pub struct Reported;

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reported")
    }
}

/// Whether `error`'s report was printed already.
pub fn was_reported(error: &anyhow::Error) -> bool {
    error.downcast_ref::<Reported>().is_some()
}

/// What a command staged for its report while it ran.
#[derive(Debug, Default)]
pub(super) struct Staged {
    /// Fields of the JSON report (`status` among them, if the command chose it).
    pub fields: Map<String, Value>,
    /// The summary line, when the command words its own (a deploy does).
    pub headline: Option<String>,
    /// Whether the staged fields explain a failure (a deploy's `failure`),
    /// so the summary line need not repeat the error's message.
    pub explained: bool,
}

/// The report, ready to print.
#[derive(Debug)]
pub(super) struct Final {
    /// The JSON report, `event: report` included.
    pub json: Value,
    /// The summary line for stderr.
    pub line: String,
}

/// The report of `command`, which staged `staged` and ended with `result`
/// after `duration_s` seconds. The process's exit code and the error decide
/// `exit_code` and `error` (the error's message, when it failed); the
/// command's own `status` wins over the derived one.
pub(super) fn assemble(
    command: &str,
    staged: Staged,
    result: &anyhow::Result<()>,
    duration_s: f64,
) -> Final {
    let Staged {
        mut fields,
        headline,
        explained,
    } = staged;
    let status = fields
        .get("status")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| status(result).to_owned());
    // a success exits 0 unless the command staged its code (`diff`: 1 for differences)
    let exit_code = match result {
        Ok(()) => fields.get("exit_code").and_then(Value::as_u64).unwrap_or(0),
        Err(error) => u64::from(crate::error::exit_code_number(error)),
    };
    fields.insert("event".into(), json!("report"));
    fields.insert("command".into(), json!(command));
    fields.insert("status".into(), json!(status));
    fields.insert("exit_code".into(), json!(exit_code));
    fields
        .entry("duration_s")
        .or_insert_with(|| json!(duration_s));
    let message = result.as_ref().err().map(crate::error::final_message);
    if let Some(message) = &message {
        fields.insert("error".into(), json!(message));
    }
    let line = match (headline, message) {
        (Some(headline), Some(message)) if !explained => format!("{headline}: {message}"),
        (Some(headline), _) => headline,
        (None, Some(message)) => format!("error: {message}"),
        (None, None) => format!(
            "{command} {status} in {}",
            crate::duration::display_seconds(duration_s)
        ),
    };
    Final {
        json: Value::Object(fields),
        line,
    }
}

/// The `status` of a report for how the command ended, e.g. `locked`.
fn status(result: &anyhow::Result<()>) -> &'static str {
    Outcome::of_result(result).as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::BerthError;
    use crate::error::input_error;

    #[test]
    fn a_success_reports_status_exit_code_and_a_summary() {
        let done = assemble("history", Staged::default(), &Ok(()), 0.25);
        assert_eq!(done.json["event"], "report");
        assert_eq!(done.json["command"], "history");
        assert_eq!(done.json["status"], "succeeded");
        assert_eq!(done.json["exit_code"], 0);
        assert_eq!(done.json["duration_s"], 0.25);
        assert!(done.json.get("error").is_none(), "{}", done.json);
        assert_eq!(done.line, "history succeeded in 0.3s");
    }

    #[test]
    fn a_failure_carries_its_message_and_exit_code_once() {
        let failed = Err(input_error("environment `nowhere` is not in berth.yaml"));
        let done = assemble("lock", Staged::default(), &failed, 0.0);
        assert_eq!(done.json["status"], "refused");
        assert_eq!(done.json["exit_code"], 2);
        assert_eq!(
            done.json["error"],
            "environment `nowhere` is not in berth.yaml"
        );
        assert_eq!(
            done.line,
            "error: environment `nowhere` is not in berth.yaml"
        );
    }

    #[test]
    fn the_commands_status_wins_and_the_exit_code_is_the_processs() {
        let mut fields = Map::new();
        fields.insert("status".into(), json!("timed_out"));
        fields.insert("exit_code".into(), json!(0));
        fields.insert("sha".into(), json!("1a2b3c4"));
        let staged = Staged {
            fields,
            headline: Some("timed_out deploying 1a2b3c4 to test: Deployment/web Timeout".into()),
            explained: true,
        };
        let failed = Err(BerthError::TimedOut("the rollout did not finish".into()).into());
        let done = assemble("advanced-deploy", staged, &failed, 1.0);
        assert_eq!(done.json["status"], "timed_out");
        assert_eq!(done.json["exit_code"], 4);
        assert_eq!(done.json["sha"], "1a2b3c4");
        assert_eq!(done.json["error"], "the rollout did not finish");
        assert_eq!(
            done.line, "timed_out deploying 1a2b3c4 to test: Deployment/web Timeout",
            "the failure was explained above: the message is not repeated"
        );
    }

    #[test]
    fn a_headline_without_an_explanation_ends_with_the_message() {
        let staged = Staged {
            headline: Some("refused deploying xyz to test (0.0s)".into()),
            ..Staged::default()
        };
        let failed = Err(input_error("xyz is not a SHA"));
        let done = assemble("advanced-deploy", staged, &failed, 0.0);
        assert_eq!(
            done.line,
            "refused deploying xyz to test (0.0s): xyz is not a SHA"
        );
    }

    #[test]
    fn a_child_that_exited_non_zero_is_status_exited_with_its_code() {
        let failed = Err(BerthError::Exited(3).into());
        let done = assemble("run", Staged::default(), &failed, 0.0);
        assert_eq!(done.json["status"], "exited");
        assert_eq!(done.json["exit_code"], 3);
    }

    #[test]
    fn a_reported_error_is_recognised_under_its_marker_and_keeps_its_exit_code() {
        let error = anyhow::Error::from(BerthError::Locked("held".into())).context(Reported);
        assert!(was_reported(&error));
        assert_eq!(crate::error::exit_code_number(&error), 3);
        assert!(!was_reported(&input_error("x")));
    }
}
