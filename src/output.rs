//! Everything berth tells the user while it works: live progress on a
//! terminal, timestamped lines on a pipe, JSON lines with `--output json`,
//! and GitHub Actions groups, annotations and a step summary.
//!
//! Progress goes to stderr; JSON lines (events and the final report) go to
//! stdout, so `berth ... --output json | jq` sees only JSON.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use serde_json::json;

use crate::cli::OutputFormat;
use crate::error::Outcome;

/// How output is rendered, decided once at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Live progress bars (stderr is a terminal).
    Terminal,
    /// Plain timestamped lines.
    Plain,
    /// JSON lines on stdout.
    Json,
}

/// The deploy's final report: the last JSON line, and the summary.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// How the deploy ended.
    pub status: Outcome,
    /// The environment deployed to.
    pub environment: String,
    /// The SHA deployed.
    pub sha: String,
    /// The release number recorded, if one was.
    pub release: Option<u64>,
    /// Seconds from start to end.
    pub duration_s: f64,
    /// What failed, if anything.
    pub failure: Option<ReportFailure>,
    /// The process exit code this report ends with.
    pub exit_code: u8,
}

/// The failure part of a [`Report`].
#[derive(Debug, Clone, Serialize)]
pub struct ReportFailure {
    /// `Kind/name` of the workload or task.
    pub workload: String,
    /// The pod that showed it.
    pub pod: Option<String>,
    /// Short reason, e.g. `ImagePullBackOff`.
    pub reason: String,
    /// Human explanation.
    pub message: String,
}

/// The user-facing output of one berth run.
pub struct Output {
    mode: Mode,
    github: bool,
    bars: MultiProgress,
    workloads: Mutex<HashMap<String, ProgressBar>>,
    group_open: Mutex<bool>,
}

impl Output {
    /// Choose the mode from `--output`, whether stderr is a terminal, and
    /// whether we run under GitHub Actions.
    pub fn new(format: OutputFormat) -> Output {
        let github = std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true");
        let mode = match format {
            OutputFormat::Json => Mode::Json,
            OutputFormat::Plain => Mode::Plain,
            OutputFormat::Auto if std::io::stderr().is_terminal() && !github => Mode::Terminal,
            OutputFormat::Auto => Mode::Plain,
        };
        let target = if mode == Mode::Terminal {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Output {
            mode,
            github,
            bars: MultiProgress::with_draw_target(target),
            workloads: Mutex::new(HashMap::new()),
            group_open: Mutex::new(false),
        }
    }

    /// The mode in use.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn line(&self, text: &str) {
        match self.mode {
            Mode::Terminal => self.bars.suspend(|| eprintln!("{text}")),
            Mode::Plain => eprintln!("{} {text}", Timestamp::now().strftime("%H:%M:%S")),
            Mode::Json => {}
        }
    }

    fn json(&self, value: serde_json::Value) {
        if self.mode == Mode::Json {
            // A reader that went away must not stop a deploy halfway: the
            // work goes on, unseen, and the exit code still tells the outcome.
            let _ = crate::stdout::line(value);
        }
    }

    /// A pipeline step begins (a `::group::` under GitHub Actions).
    pub fn step(&self, name: &str) {
        if self.github {
            let mut open = self.group_open.lock().unwrap();
            if *open {
                eprintln!("::endgroup::");
            }
            eprintln!("::group::{name}");
            *open = true;
        }
        self.line(&format!("==> {name}"));
        self.json(json!({"event": "step", "name": name, "time": Timestamp::now().to_string()}));
    }

    /// Something worth saying.
    pub fn info(&self, message: &str) {
        self.line(message);
        self.json(
            json!({"event": "info", "message": message, "time": Timestamp::now().to_string()}),
        );
    }

    /// A warning (a `::warning::` annotation under GitHub Actions).
    pub fn warn(&self, message: &str) {
        if self.github {
            eprintln!("::warning::{}", escape_annotation(message));
        }
        self.line(&format!("warning: {message}"));
        self.json(
            json!({"event": "warning", "message": message, "time": Timestamp::now().to_string()}),
        );
    }

    /// A line of a pre-deploy task's output, prefixed with the task's name.
    pub fn task_line(&self, task: &str, line: &str) {
        self.line(&format!("[{task}] {line}"));
        self.json(json!({"event": "task_output", "task": task, "line": line}));
    }

    /// A workload's progress: a live line on a terminal while it progresses and
    /// a permanent line once it is healthy or failed; a line per change otherwise.
    pub fn workload(&self, name: &str, ready: i32, desired: i32, state: &str) {
        self.json(json!({"event": "workload", "name": name, "ready": ready, "desired": desired, "state": state}));
        if self.mode != Mode::Terminal {
            self.line(&format!("  {name} {ready}/{desired} {state}"));
            return;
        }
        let settled = state == "healthy" || state.starts_with("FAILED");
        let mut bars = self.workloads.lock().unwrap();
        if settled {
            if let Some(bar) = bars.remove(name) {
                bar.finish_and_clear();
            }
            let mark = if state == "healthy" { "✓" } else { "✗" };
            self.line(&format!("  {mark} {name:<32} {ready}/{desired}  {state}"));
            return;
        }
        let bar = bars
            .entry(name.to_string())
            .or_insert_with(|| self.spinner(name));
        bar.set_message(format!("{ready}/{desired}  {state}"));
    }

    fn spinner(&self, prefix: &str) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("  {spinner} {prefix:<32} {msg} ({elapsed})")
                .expect("valid template"),
        );
        bar.set_prefix(prefix.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// A pre-deploy task starts: a spinner on a terminal.
    pub fn task_started(&self, task: &str, message: &str) {
        self.task_line(task, message);
        if self.mode == Mode::Terminal {
            let bar = self.spinner(&format!("[{task}]"));
            bar.set_message(message.to_string());
            self.workloads
                .lock()
                .unwrap()
                .insert(format!("task:{task}"), bar);
        }
    }

    /// A pre-deploy task ended: its spinner goes, a line stays.
    pub fn task_finished(&self, task: &str, message: &str) {
        if let Some(bar) = self
            .workloads
            .lock()
            .unwrap()
            .remove(&format!("task:{task}"))
        {
            bar.finish_and_clear();
        }
        self.task_line(task, message);
    }

    /// A transfer of `files` files and `bytes` bytes starts: a progress bar
    /// on a terminal, a line every few seconds otherwise.
    pub fn transfer(self: &Arc<Self>, task: &str, files: u64, bytes: u64) -> TransferProgress {
        let bar = (self.mode == Mode::Terminal).then(|| {
            let bar = self.bars.add(ProgressBar::new(bytes));
            bar.set_style(
                ProgressStyle::with_template(
                    "  [{prefix}] {bar:24} {binary_bytes}/{binary_total_bytes} {msg} \
                     {binary_bytes_per_sec} ({eta})",
                )
                .expect("valid template"),
            );
            bar.set_prefix(task.to_string());
            bar.set_message(format!("0/{files} files"));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        TransferProgress {
            out: self.clone(),
            task: task.to_string(),
            bar,
            total: (files, bytes),
            done: Mutex::new((0, 0, std::time::Instant::now())),
        }
    }

    /// Counted work of `total` `unit`s starts: a bar with a rate and an ETA
    /// on a terminal, a line every few seconds otherwise.
    pub fn counter(self: &Arc<Self>, task: &str, total: u64, unit: &str) -> Counter {
        let bar = (self.mode == Mode::Terminal).then(|| {
            let bar = self.bars.add(ProgressBar::new(total));
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "  [{{prefix}}] {{bar:24}} {{pos}}/{{len}} {unit} {{per_sec}} (eta {{eta}})"
                ))
                .expect("valid template"),
            );
            bar.set_prefix(task.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Counter {
            out: self.clone(),
            task: task.to_string(),
            unit: unit.to_string(),
            bar,
            total,
            done: Mutex::new((0, std::time::Instant::now(), std::time::Instant::now())),
        }
    }

    /// Clear whatever live lines remain (a rollout or task ended).
    pub fn finish_workloads(&self) {
        for bar in self.workloads.lock().unwrap().drain().map(|(_, b)| b) {
            bar.finish_and_clear();
        }
    }

    /// A failure explained at length (an `::error::` annotation under GitHub Actions).
    pub fn failure(&self, summary: &str) {
        if self.github {
            eprintln!("::error::{}", escape_annotation(summary));
        }
        self.line(summary);
    }

    /// A command's final report as the last JSON line (`event: report`).
    pub fn json_report(&self, report: &impl Serialize) {
        let mut value = serde_json::to_value(report).expect("report serializes");
        value["event"] = json!("report");
        self.json(value);
    }

    /// Markdown for the GitHub Actions step summary (nothing elsewhere).
    pub fn summary(&self, markdown: &str) {
        if let (true, Ok(path)) = (self.github, std::env::var("GITHUB_STEP_SUMMARY")) {
            append_to_summary(&path, markdown);
        }
    }

    /// The final report: the last JSON line, a summary line, and the
    /// GitHub step summary.
    pub fn report(&self, report: &Report) {
        self.finish_workloads();
        if self.github && *self.group_open.lock().unwrap() {
            eprintln!("::endgroup::");
        }
        self.json_report(report);
        let outcome = match &report.failure {
            None => format!("{} {} to {}", report.status, report.sha, report.environment),
            Some(f) => format!(
                "{} deploying {} to {}: {} {}",
                report.status, report.sha, report.environment, f.workload, f.reason
            ),
        };
        let release = report
            .release
            .map_or(String::new(), |n| format!(", release {n}"));
        self.line(&format!("{outcome}{release} ({:.1}s)", report.duration_s));
        if self.github {
            append_step_summary(report);
        }
    }
}

/// Progress of counted work, with an ETA.
pub struct Counter {
    out: Arc<Output>,
    task: String,
    unit: String,
    bar: Option<ProgressBar>,
    total: u64,
    /// Done, when it started, and when a progress line was last printed.
    done: Mutex<(u64, std::time::Instant, std::time::Instant)>,
}

impl Counter {
    /// One more unit is done.
    pub fn inc(&self) {
        let mut done = self.done.lock().unwrap();
        done.0 += 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
        } else if done.2.elapsed() >= Duration::from_secs(5) {
            done.2 = std::time::Instant::now();
            let rate = done.0 as f64 / done.1.elapsed().as_secs_f64().max(0.001);
            let eta = (self.total.saturating_sub(done.0)) as f64 / rate.max(0.001);
            let line = format!(
                "{}/{} {}, {rate:.1}/s, eta {:.0}s",
                done.0, self.total, self.unit, eta
            );
            self.out.task_line(&self.task, &line);
        }
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Progress of one transfer, counted in files and bytes.
pub struct TransferProgress {
    out: Arc<Output>,
    task: String,
    bar: Option<ProgressBar>,
    total: (u64, u64),
    /// Files and bytes done, and when a progress line was last printed.
    done: Mutex<(u64, u64, std::time::Instant)>,
}

impl TransferProgress {
    /// One more file of `bytes` bytes is done.
    pub fn add(&self, bytes: u64) {
        let mut done = self.done.lock().unwrap();
        done.0 += 1;
        done.1 += bytes;
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
            bar.set_message(format!("{}/{} files", done.0, self.total.0));
        } else if done.2.elapsed() >= Duration::from_secs(5) {
            done.2 = std::time::Instant::now();
            let line = format!(
                "{}/{} files, {}/{}",
                done.0,
                self.total.0,
                indicatif::BinaryBytes(done.1),
                indicatif::BinaryBytes(self.total.1)
            );
            self.out.task_line(&self.task, &line);
        }
    }
}

impl Drop for TransferProgress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// GitHub annotations end at a newline; encode it as the runner expects.
fn escape_annotation(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Append a markdown summary of the report to `$GITHUB_STEP_SUMMARY`.
fn append_step_summary(report: &Report) {
    let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY") else {
        return;
    };
    let mut text = format!(
        "### berth: {} `{}` to {}\n\n| | |\n|---|---|\n| status | {} |\n| release | {} |\n| duration | {:.1}s |\n",
        if report.failure.is_some() {
            "failed to deploy"
        } else {
            "deployed"
        },
        report.sha,
        report.environment,
        report.status,
        report.release.map_or("-".to_string(), |n| n.to_string()),
        report.duration_s
    );
    if let Some(f) = &report.failure {
        text.push_str(&format!(
            "| failure | `{}`{} {}: {} |\n",
            f.workload,
            f.pod
                .as_ref()
                .map_or(String::new(), |p| format!(" pod `{p}`")),
            f.reason,
            f.message.replace('|', "\\|")
        ));
    }
    append_to_summary(&path, &text);
}

/// Append markdown to the step summary file at `path`; a failure is a warning.
fn append_to_summary(path: &str, text: &str) {
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()));
    if let Err(e) = written {
        eprintln!("warning: cannot append to GITHUB_STEP_SUMMARY ({path}): {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_keep_multi_line_messages_on_one_line() {
        assert_eq!(escape_annotation("50% done\nnext"), "50%25 done%0Anext");
    }
}
