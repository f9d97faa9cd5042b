//! A command run in a pod through the Kubernetes API (exec): the local
//! terminal (a remote TTY, raw mode, window size) or plain pipes attached,
//! optional secret settings handed over on standard input, and the
//! command's exit code.

use std::io::{Read, Write};

use anyhow::Context;
use futures::SinkExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::Api;
use kube::api::{AttachParams, AttachedProcess, TerminalSize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};

use crate::terminal::{self, RawMode};

/// The line a [`Session::settings`] command prints when it is ready to read
/// its settings (and, with a TTY, has turned echo off).
pub const READY_MARKER: &str = "berth:ready-for-settings";

/// What to run, and where.
pub struct Session<'a> {
    /// The pod.
    pub pod: &'a str,
    /// The container; `None`: the pod's first (the API server's default).
    pub container: Option<&'a str>,
    /// The command and its arguments (no shell unless the command is one).
    pub command: Vec<String>,
    /// Lines written to the command's standard input before the user's,
    /// once it printed [`READY_MARKER`]: settings that must not appear in
    /// the command line (see `berth psql`, src/commands/psql.rs). Never printed or logged.
    pub settings: Option<String>,
    /// A remote TTY, with the local terminal in raw mode; else plain pipes.
    pub tty: bool,
}

/// Run `session` in its pod; the command's exit code.
pub async fn run(pods: &Api<Pod>, session: Session<'_>) -> anyhow::Result<i32> {
    let mut params = AttachParams::default()
        .stdin(true)
        .stdout(true)
        .stderr(!session.tty)
        .tty(session.tty);
    if let Some(container) = session.container {
        params = params.container(container);
    }
    // Raw mode before the exec starts, so nothing typed meanwhile is echoed
    // locally; restored when this function returns, whichever way.
    let _raw = if session.tty {
        Some(RawMode::enable()?)
    } else {
        None
    };
    let mut process = match pods
        .exec(session.pod, session.command.clone(), &params)
        .await
    {
        Ok(process) => process,
        Err(error) => {
            if let Some(code) = said_not_started(&error.to_string()) {
                return Ok(code);
            }
            return Err(error)
                .with_context(|| format!("starting the command in pod {}", session.pod));
        }
    };
    let status = process
        .take_status()
        .context("the exec has no status channel")?;
    let resize = session.tty.then(|| forward_window_size(&mut process));
    let mut remote_stdin = process.stdin().context("the exec has no standard input")?;
    let mut remote_stdout = process
        .stdout()
        .context("the exec has no standard output")?;
    let remote_stderr = process.stderr();
    if let Some(settings) = &session.settings {
        let after = wait_for_marker(&mut remote_stdout).await?;
        let Some(after) = after else {
            drop(remote_stdout);
            return Err(no_marker(status.await));
        };
        remote_stdin
            .write_all(settings.as_bytes())
            .await
            .context("handing the settings to the command")?;
        crate::stdout::write(&after)?;
    }
    let input = tokio::spawn(forward_stdin(remote_stdin));
    let output = tokio::spawn(copy_out(remote_stdout, std::io::stdout()));
    let errors = remote_stderr.map(|stderr| tokio::spawn(copy_out(stderr, std::io::stderr())));
    let status = status.await;
    let _ = output.await;
    if let Some(errors) = errors {
        let _ = errors.await;
    }
    input.abort();
    if let Some(resize) = resize {
        resize.abort();
    }
    if status.is_none() {
        process
            .join()
            .await
            .context("the connection to the pod broke")?;
    }
    match exit_code(status.as_ref()) {
        Ok(code) => Ok(code),
        Err(message) => said_not_started(&message).ok_or_else(|| anyhow::anyhow!(message)),
    }
}

/// A command the container runtime could not start, said in one line as a
/// shell says it (`berth: "nope": executable file not found in $PATH`);
/// the shell's exit code for it.
fn said_not_started(message: &str) -> Option<i32> {
    let (code, what) = not_started(message)?;
    crate::output::stderr_line(&format!("{}: {what}", crate::program::name()));
    Some(code)
}

/// Whether the runtime's `message` says the command could not start, and
/// if so a shell's exit code for it with the runtime's words from the
/// command on: 127 when it is not found (no such file on `$PATH` or at
/// its path), 126 when it is found but cannot be executed (no permission,
/// a directory).
pub fn not_started(message: &str) -> Option<(i32, String)> {
    let lower = message.to_lowercase();
    if !lower.contains("exec") {
        return None;
    }
    let code = if [
        "executable file not found",
        "no such file or directory",
        "not a directory",
    ]
    .iter()
    .any(|said| lower.contains(said))
    {
        127
    } else if ["permission denied", "is a directory"]
        .iter()
        .any(|said| lower.contains(said))
    {
        126
    } else {
        return None;
    };
    // containerd: `... unable to start container process: exec: "nope": executable file not found in $PATH`
    let what = message
        .rfind("exec: ")
        .map_or(message, |at| &message[at + "exec: ".len()..])
        .trim();
    Some((code, what.to_owned()))
}

/// Send the terminal's size now and after every resize (SIGWINCH).
fn forward_window_size(process: &mut AttachedProcess) -> tokio::task::JoinHandle<()> {
    let sender = process.terminal_size();
    tokio::spawn(async move {
        let Some(mut sender) = sender else { return };
        let Ok(mut resized) = signal(SignalKind::window_change()) else {
            return;
        };
        loop {
            if let Some((width, height)) = terminal::size()
                && sender.send(TerminalSize { width, height }).await.is_err()
            {
                return;
            }
            if resized.recv().await.is_none() {
                return;
            }
        }
    })
}

/// Read the command's output until [`READY_MARKER`]'s line; what came
/// before it is printed, what came after is returned. `None` if the output
/// ended first.
async fn wait_for_marker(stdout: &mut (impl AsyncRead + Unpin)) -> anyhow::Result<Option<Vec<u8>>> {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stdout
            .read(&mut chunk)
            .await
            .context("reading the command's output")?;
        if n == 0 {
            crate::stdout::write(&seen)?;
            return Ok(None);
        }
        seen.extend_from_slice(&chunk[..n]);
        if let Some((before, after)) = split_at_marker(&seen) {
            crate::stdout::write(before)?;
            return Ok(Some(after.to_vec()));
        }
    }
}

/// `output` split around the [`READY_MARKER`] line, once that line is complete.
pub fn split_at_marker(output: &[u8]) -> Option<(&[u8], &[u8])> {
    let marker = READY_MARKER.as_bytes();
    let start = output.windows(marker.len()).position(|w| w == marker)?;
    let newline = output[start..].iter().position(|&b| b == b'\n')? + start;
    Some((&output[..start], &output[newline + 1..]))
}

/// The error for a command that ended before asking for its settings.
fn no_marker(status: Option<Status>) -> anyhow::Error {
    let why = match exit_code(status.as_ref()) {
        Ok(code) => format!("it exited with code {code}"),
        Err(message) => message,
    };
    anyhow::anyhow!(
        "the command in the pod ended before reading its connection settings ({why}); \
         the container needs `sh` (and `stty` with a terminal) on its PATH"
    )
}

/// Copy the local standard input to the command until it ends; then close
/// the command's input. A thread reads, so a read blocked on the terminal
/// never holds up berth's exit.
async fn forward_stdin(mut remote: impl AsyncWrite + Unpin) {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buffer = [0u8; 8192];
        while let Ok(n) = stdin.read(&mut buffer) {
            if n == 0 || sender.blocking_send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    while let Some(bytes) = receiver.recv().await {
        if remote.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = remote.shutdown().await;
}

/// Copy one of the command's output streams to a local one, as it comes.
async fn copy_out(mut remote: impl AsyncRead + Unpin, mut local: impl Write) {
    let mut buffer = [0u8; 8192];
    while let Ok(n) = remote.read(&mut buffer).await {
        if n == 0
            || local
                .write_all(&buffer[..n])
                .and_then(|()| local.flush())
                .is_err()
        {
            break;
        }
    }
}

/// The exit code an exec's final status reports, or why there is none.
pub fn exit_code(status: Option<&Status>) -> Result<i32, String> {
    let Some(status) = status else {
        return Err("the pod closed the connection without reporting how the command ended".into());
    };
    if status.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    if status.reason.as_deref() == Some("NonZeroExitCode")
        && let Some(code) = status
            .details
            .iter()
            .flat_map(|details| details.causes.iter().flatten())
            .find(|cause| cause.reason.as_deref() == Some("ExitCode"))
            .and_then(|cause| cause.message.as_deref()?.parse().ok())
    {
        return Ok(code);
    }
    Err(format!(
        "the command could not run: {}",
        status.message.as_deref().unwrap_or("no reason given")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(json: serde_json::Value) -> Status {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn success_is_exit_0() {
        assert_eq!(
            exit_code(Some(&status(serde_json::json!({"status": "Success"})))),
            Ok(0)
        );
    }

    #[test]
    fn a_non_zero_exit_code_comes_from_the_details() {
        let failed = status(serde_json::json!({
            "status": "Failure",
            "message": "command terminated with non-zero exit code: exit status 3",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}
        }));
        assert_eq!(exit_code(Some(&failed)), Ok(3));
    }

    #[test]
    fn a_command_that_could_not_start_says_why() {
        let failed = status(serde_json::json!({
            "status": "Failure",
            "message": "exec: \"nope\": executable file not found in $PATH",
            "reason": "InternalError"
        }));
        assert!(
            exit_code(Some(&failed))
                .unwrap_err()
                .contains("executable file not found")
        );
        assert!(exit_code(None).is_err());
    }

    #[test]
    fn a_command_the_runtime_cannot_start_exits_as_in_a_shell() {
        let start = "Internal error occurred: error executing command in container: failed to \
                     exec in container: failed to start exec \"1b8b\": OCI runtime exec failed: \
                     exec failed: unable to start container process: exec: ";
        for (said, code, what) in [
            (
                "\"nope\": executable file not found in $PATH",
                127,
                "\"nope\": executable file not found in $PATH",
            ),
            (
                "\"/pause/x\": stat /pause/x: not a directory",
                127,
                "\"/pause/x\": stat /pause/x: not a directory",
            ),
            (
                "\"/bin/x\": stat /bin/x: no such file or directory",
                127,
                "\"/bin/x\": stat /bin/x: no such file or directory",
            ),
            ("\"/etc\": is a directory", 126, "\"/etc\": is a directory"),
            (
                "\"/etc/hosts\": permission denied",
                126,
                "\"/etc/hosts\": permission denied",
            ),
        ] {
            assert_eq!(
                not_started(&format!("{start}{said}")),
                Some((code, what.to_owned())),
                "{said}"
            );
        }
        assert_eq!(
            not_started("error dialing backend: connection refused"),
            None
        );
        assert_eq!(not_started("pods \"x\" is forbidden"), None);
    }

    #[test]
    fn the_marker_line_splits_the_output() {
        let output = format!("motd\n{READY_MARKER}\r\nrest");
        let (before, after) = split_at_marker(output.as_bytes()).unwrap();
        assert_eq!(before, b"motd\n");
        assert_eq!(after, b"rest");
        assert!(
            split_at_marker(READY_MARKER.as_bytes()).is_none(),
            "the line is not complete"
        );
        assert!(split_at_marker(b"nothing\n").is_none());
    }
}
