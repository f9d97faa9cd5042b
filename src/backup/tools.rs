//! The PostgreSQL client programs the agent runs (pg_dump, pg_restore):
//! started with libpq's variables in their environment (never in argv),
//! their standard error copied to the log line by line with any password
//! masked, its last lines kept for the error message.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, Command};

use super::pod_env::Pg;
use crate::output::stderr_line;

/// How many of a program's last stderr lines an error message quotes.
const KEPT_LINES: usize = 5;

/// A running client program.
pub struct Tool {
    /// The program's name, for messages.
    pub name: &'static str,
    /// The process.
    pub child: Child,
    stderr: tokio::task::JoinHandle<()>,
    tail: Arc<Mutex<Vec<String>>>,
}

/// Start `name` with `args`, connected to database `dbname` of `server`
/// through the environment; stdin and stdout piped when asked.
pub fn start(
    name: &'static str,
    args: &[&str],
    server: &Pg,
    dbname: &str,
    stdin: bool,
    stdout: bool,
) -> anyhow::Result<Tool> {
    let pipe = |wanted: bool| {
        if wanted {
            Stdio::piped()
        } else {
            Stdio::null()
        }
    };
    let mut child = Command::new(name)
        .args(args)
        .envs(server.child_env(dbname))
        .stdin(pipe(stdin))
        .stdout(pipe(stdout))
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {name}: is the PostgreSQL client installed?"))?;
    let tail = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().context("the child's stderr")?;
    let task = tokio::spawn(copy_stderr(
        name,
        stderr,
        server.password.clone(),
        tail.clone(),
    ));
    Ok(Tool {
        name,
        child,
        stderr: task,
        tail,
    })
}

/// Copy a program's stderr to ours, passwords masked, keeping the last lines.
async fn copy_stderr(
    name: &'static str,
    stderr: ChildStderr,
    password: Option<String>,
    tail: Arc<Mutex<Vec<String>>>,
) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = mask(&line, password.as_deref());
        let line = if line.starts_with(name) {
            line
        } else {
            format!("{name}: {line}")
        };
        stderr_line(&line);
        let mut kept = tail.lock().unwrap_or_else(|e| e.into_inner());
        kept.push(line);
        if kept.len() > KEPT_LINES {
            kept.remove(0);
        }
    }
}

/// `line` with every occurrence of `secret` replaced by `***`.
pub fn mask(line: &str, secret: Option<&str>) -> String {
    match secret {
        Some(secret) if !secret.is_empty() => line.replace(secret, "***"),
        _ => line.to_owned(),
    }
}

impl Tool {
    /// The child's stdin, to stream into.
    pub fn stdin(&mut self) -> anyhow::Result<ChildStdin> {
        self.child.stdin.take().context("the child's stdin")
    }

    /// Wait for the program to exit; an error quoting its last stderr lines
    /// unless it exited 0.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        let status = self
            .child
            .wait()
            .await
            .with_context(|| format!("waiting for {}", self.name))?;
        let _ = self.stderr.await;
        if status.success() {
            return Ok(());
        }
        let tail = self
            .tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("; ");
        anyhow::bail!(
            "{} failed ({status}){}",
            self.name,
            if tail.is_empty() {
                String::new()
            } else {
                format!(": {tail}")
            }
        )
    }

    /// Kill the program (it has not finished, and what it does must not
    /// complete) and reap it.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
        let _ = self.stderr.await;
    }
}

/// The first line `program --version` prints, e.g. `pg_dump (PostgreSQL) 15.18`.
pub async fn version(program: &str) -> anyhow::Result<String> {
    let output = Command::new(program)
        .arg("--version")
        .output()
        .await
        .with_context(|| format!("cannot run {program}: is the PostgreSQL client installed?"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}

/// Write `chunk` to a child's stdin, if it is still open; a child that
/// closed it (it read all it wanted, as `pg_restore --list` does after the
/// table of contents) gets nothing more.
pub async fn feed(stdin: &mut Option<ChildStdin>, chunk: &[u8]) -> anyhow::Result<()> {
    if let Some(pipe) = stdin {
        match pipe.write_all(chunk).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => *stdin = None,
            Err(e) => return Err(e).context("writing to the PostgreSQL client"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask("password authentication failed for s3cr3t", Some("s3cr3t")),
            "password authentication failed for ***"
        );
        assert_eq!(mask("nothing", None), "nothing");
        assert_eq!(mask("nothing", Some("")), "nothing");
    }
}
