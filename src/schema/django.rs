//! The Django adapter: `django.py`, run as `manage.py shell -c` in the
//! migration image with the request in `BERTH_SCHEMA_REQUEST`, reads
//! `django_migrations` through Django's own migration loader and executor
//! and prints one result line.

use anyhow::Context;

use crate::config::Framework;

use super::adapter::{Adapter, Invocation, Request, Response};

/// The script run in the migration image.
const SCRIPT: &str = include_str!("django.py");
/// The environment variable carrying the request, as JSON.
const REQUEST_VAR: &str = "BERTH_SCHEMA_REQUEST";
/// How the script's result line starts.
pub const RESULT_PREFIX: &str = "berth-schema-result: ";

/// Django, reached with `manage` (e.g. `python3 manage.py`).
pub struct Django {
    manage: Vec<String>,
}

impl Django {
    /// The adapter running `manage` in the image's working directory.
    pub fn new(manage: Vec<String>) -> Django {
        Django { manage }
    }
}

impl Adapter for Django {
    fn framework(&self) -> Framework {
        Framework::Django
    }

    fn invocation(&self, request: &Request) -> anyhow::Result<Invocation> {
        let mut command = self.manage.clone();
        command.extend(["shell".into(), "-c".into(), SCRIPT.into()]);
        let request = serde_json::to_string(request).context("writing the schema request")?;
        Ok(Invocation {
            command,
            env: vec![(REQUEST_VAR.into(), request)],
        })
    }

    fn result_prefix(&self) -> &'static str {
        RESULT_PREFIX
    }

    fn parse(&self, log: &str) -> anyhow::Result<Response> {
        let Some(line) = log
            .lines()
            .rev()
            .find_map(|line| line.trim_end().strip_prefix(RESULT_PREFIX))
        else {
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            anyhow::bail!(
                "Django printed no result (is `{}` how the migration image runs manage.py? \
                 set migrate.manage); its log ends:\n  {}",
                self.manage.join(" "),
                if tail.is_empty() {
                    "(empty)".to_string()
                } else {
                    tail.join("\n  ")
                }
            );
        };
        serde_json::from_str(line).context("reading Django's schema result")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::adapter::{MigrationId, State};

    fn django() -> Django {
        Django::new(vec!["python3".into(), "manage.py".into()])
    }

    #[test]
    fn the_request_travels_as_json_in_the_environment_and_the_script_as_shell_c() {
        let target: State = [("workbench".to_string(), "0004_module".to_string())].into();
        let request = Request::Migrate {
            target,
            expected: vec![MigrationId {
                app: "workbench".into(),
                name: "0005_tag".into(),
            }],
            accept_data_loss: false,
        };
        let invocation = django().invocation(&request).unwrap();
        assert_eq!(
            invocation.command[..4],
            ["python3", "manage.py", "shell", "-c"]
        );
        assert!(invocation.command[4].contains("def berth_main"));
        let (name, json) = &invocation.env[0];
        assert_eq!(name, "BERTH_SCHEMA_REQUEST");
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(value["action"], "migrate");
        assert_eq!(value["target"]["workbench"], "0004_module");
        assert_eq!(value["expected"][0]["name"], "0005_tag");
        assert_eq!(value["accept_data_loss"], false);
        let inspect = django().invocation(&Request::Inspect).unwrap();
        assert_eq!(inspect.env[0].1, r#"{"action":"inspect"}"#);
    }

    #[test]
    fn the_last_result_line_is_the_response() {
        let log = "Operations to perform:\n  Unapplying workbench.0006_tag... OK\n\
            berth-schema-result: {\"applied\": {\"workbench\": \"0005_x\"}}\n\
            berth-schema-result: {\"applied\": {\"workbench\": \"0004_module\"}, \"plan\": [\
            {\"migration\": {\"app\": \"workbench\", \"name\": \"0006_tag\"}, \"backwards\": true, \
            \"operations\": [{\"description\": \"Raw Python operation -> IRREVERSIBLE\", \"irreversible\": true}]}], \
            \"error\": \"IrreversibleError: no\", \"unknown\": []}\n";
        let response = django().parse(log).unwrap();
        assert_eq!(response.applied["workbench"], "0004_module");
        assert!(response.plan[0].irreversible());
        assert_eq!(response.error.as_deref(), Some("IrreversibleError: no"));
    }

    #[test]
    fn no_result_line_says_how_the_log_ends() {
        let err = django()
            .parse("Traceback (most recent call last):\nModuleNotFoundError: No module named 'x'\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("printed no result"), "{err}");
        assert!(err.contains("ModuleNotFoundError"), "{err}");
        assert!(err.contains("migrate.manage"), "{err}");
    }
}
