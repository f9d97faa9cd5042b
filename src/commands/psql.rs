//! `berth psql ENV [-- ARGS]`: psql in a Ready pod of the environment's
//! database workload, through the Kubernetes API; never an exposed port.
//!
//! With `database.secret`, the libpq settings come from that Secret and
//! reach psql on its standard input, read by a small `sh` script that
//! exports them and then execs psql: never in a command line (the API
//! server's audit log and `ps` show those), never in berth's output.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use serde_json::json;

use crate::cli::{GlobalArgs, PsqlArgs};
use crate::cluster::exec::{self, READY_MARKER, Session};
use crate::cluster::{client, pods};
use crate::error::{BerthError, input_error};
use crate::output::Output;
use crate::terminal;

/// Open psql in the environment's database workload.
pub async fn run(global: &GlobalArgs, args: &PsqlArgs, out: &Output) -> anyhow::Result<()> {
    out.json_report(&json!({"environment": args.env}));
    let config = crate::commands::load_config(global, &[&args.env], out)?;
    let env = config.environment(&args.env)?;
    let database = env
        .database
        .as_ref()
        .ok_or_else(|| no_database(&args.env))?;
    let client = client::connect(env.context.as_deref()).await?;
    let ns = &env.namespace;
    let key = format!("environments.{}.database", args.env);
    let pod = pods::ready_pod(&client, ns, &database.workload, &format!("{key}.workload")).await?;
    let spec = pod.spec.clone().unwrap_or_default();
    let container = pods::container(
        &spec,
        database.container.as_deref(),
        &format!("{key}.container"),
    )?;
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    tracing::info!("psql in pod {pod_name}, container {container}");
    let tty = terminal::is_interactive();
    let settings = match &database.secret {
        Some(secret) => Some(settings(&client, ns, secret, &key).await?),
        None => None,
    };
    let session = Session {
        pod: &pod_name,
        container: Some(&container),
        command: psql_command(settings.is_some(), tty, &args.psql_args),
        settings,
        tty,
    };
    let code = exec::run(&pods::api(&client, ns), session).await?;
    Ok(BerthError::from_exit(code)?)
}

/// The error for an environment without a `database:` block.
fn no_database(env: &str) -> anyhow::Error {
    input_error(format!(
        "environment `{env}` has no `database:` block, so berth does not know where psql runs; \
         add it to berth.yaml:\n\n\
         environments:\n  {env}:\n    database:\n      \
         workload: frontend       # a Deployment whose Ready pod reaches the database\n      \
         container: frontend      # optional, default: the pod's first\n      \
         secret: db-credentials   # optional: a Secret of PGUSER, PGPASSWORD, PGDATABASE, PGHOST, PGPORT\n"
    ))
}

/// The command exec'd in the pod: plain `psql ARGS` when the container's
/// environment has the settings, else a script that reads them first.
/// Without a terminal (a file or a pipe on standard input), psql runs with
/// `-v ON_ERROR_STOP=1` before ARGS: a script stops at its first failed
/// statement and exits 3, as a script run by CI should, instead of going on
/// and exiting 0; `-- -v ON_ERROR_STOP=0` turns that off.
pub fn psql_command(reads_settings: bool, tty: bool, args: &[String]) -> Vec<String> {
    let mut command = if reads_settings {
        let (echo_off, echo_on) = if tty {
            ("stty -echo 2>/dev/null; ", "stty echo 2>/dev/null; ")
        } else {
            ("", "")
        };
        let script = format!(
            "{echo_off}printf '%s\\n' '{READY_MARKER}'; \
             while IFS= read -r line && [ -n \"$line\" ]; do export \"$line\"; done; \
             {echo_on}exec psql \"$@\""
        );
        vec!["sh".into(), "-c".into(), script, "psql".into()]
    } else {
        vec!["psql".into()]
    };
    if !tty {
        command.extend(["-v".into(), "ON_ERROR_STOP=1".into()]);
    }
    command.extend(args.iter().cloned());
    command
}

/// The libpq settings in Secret `name`, as `NAME=value` lines ending with an
/// empty line, for the script of [`psql_command`].
async fn settings(client: &Client, ns: &str, name: &str, key: &str) -> anyhow::Result<String> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = secrets.get_opt(name).await?.ok_or_else(|| {
        input_error(format!(
            "no Secret {name} in namespace {ns}; create it with the libpq settings \
             (`kubectl -n {ns} create secret generic {name} --from-literal=PGUSER=... \
             --from-literal=PGPASSWORD=... --from-literal=PGDATABASE=...`), or fix {key}.secret"
        ))
    })?;
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    settings_lines(&data).map_err(|problem| {
        input_error(format!(
            "Secret {name} in namespace {ns}: {problem}; fix the Secret or {key}.secret"
        ))
    })
}

/// `NAME=value` lines of the Secret's libpq keys (`PG...`), then an empty
/// line. A problem never quotes a value.
pub fn settings_lines(data: &BTreeMap<String, Vec<u8>>) -> Result<String, String> {
    let mut lines = String::new();
    for (name, value) in data {
        let libpq = name.len() > 2
            && name.starts_with("PG")
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !libpq {
            continue;
        }
        let value = std::str::from_utf8(value)
            .ok()
            .filter(|v| !v.contains(['\n', '\r', '\0']))
            .ok_or_else(|| format!("the value of {name} is not one line of text"))?;
        lines.push_str(&format!("{name}={value}\n"));
    }
    if lines.is_empty() {
        return Err("it has no libpq key (PGUSER, PGPASSWORD, PGDATABASE, PGHOST, PGPORT)".into());
    }
    lines.push('\n');
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_secret_psql_runs_with_the_args() {
        let args = vec!["-At".to_string(), "-c".into(), "select 1".into()];
        assert_eq!(
            psql_command(false, true, &args),
            ["psql", "-At", "-c", "select 1"]
        );
    }

    #[test]
    fn without_a_terminal_a_script_stops_at_its_first_error() {
        let args = vec!["-v".to_string(), "ON_ERROR_STOP=0".into()];
        assert_eq!(
            psql_command(false, false, &args),
            ["psql", "-v", "ON_ERROR_STOP=1", "-v", "ON_ERROR_STOP=0"],
            "berth's setting first, so the user's wins"
        );
        assert_eq!(
            psql_command(true, false, &[])[3..],
            ["psql", "-v", "ON_ERROR_STOP=1"]
        );
    }

    #[test]
    fn with_a_secret_a_script_reads_the_settings_and_no_value_is_in_the_command() {
        let args = vec!["-At".to_string()];
        let command = psql_command(true, false, &args);
        assert_eq!(command[..2], ["sh", "-c"]);
        assert_eq!(command[3..], ["psql", "-v", "ON_ERROR_STOP=1", "-At"]);
        assert!(command[2].contains(READY_MARKER));
        assert!(command[2].ends_with("exec psql \"$@\""));
        assert!(!command[2].contains("stty"), "no terminal, no stty");
        let tty = psql_command(true, true, &args);
        assert!(
            tty[2].starts_with("stty -echo"),
            "echo off before the marker: {}",
            tty[2]
        );
    }

    #[test]
    fn the_script_exports_what_it_reads() {
        let command = psql_command(true, false, &[]);
        let script = command[2].replace("exec psql \"$@\"", "echo \"$PGUSER|$PGPASSWORD\"");
        let mut child = std::process::Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        let data = BTreeMap::from([
            ("PGUSER".to_string(), b"app".to_vec()),
            ("PGPASSWORD".to_string(), b"p a$(ss) 'w\\".to_vec()),
        ]);
        let lines = settings_lines(&data).unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(lines.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert_eq!(stdout, format!("{READY_MARKER}\napp|p a$(ss) 'w\\\n"));
    }

    #[test]
    fn only_libpq_keys_are_sent_and_bad_values_are_refused_unquoted() {
        let data = BTreeMap::from([
            ("PGUSER".to_string(), b"app".to_vec()),
            ("DATABASE_URL".to_string(), b"postgres://x".to_vec()),
            ("PG".to_string(), b"x".to_vec()),
        ]);
        assert_eq!(settings_lines(&data).unwrap(), "PGUSER=app\n\n");
        let bad = BTreeMap::from([("PGPASSWORD".to_string(), b"sec\nret".to_vec())]);
        let problem = settings_lines(&bad).unwrap_err();
        assert!(
            problem.contains("PGPASSWORD") && !problem.contains("sec"),
            "{problem}"
        );
        assert!(
            settings_lines(&BTreeMap::new())
                .unwrap_err()
                .contains("no libpq key")
        );
    }
}
