//! Everything berth tells the user while it works: live progress on a
//! terminal, timestamped lines on a pipe, JSON lines with `--output json`,
//! and GitHub Actions groups, annotations and a step summary.
//!
//! Progress goes to stderr; JSON lines (events and the final report) go to
//! stdout, so `berth ... --output json | jq` sees only JSON. Every command
//! ends with exactly one report ([`Output::finish`], see [`closing`]).

mod closing;

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use serde_json::json;

use crate::error::Outcome;
use crate::progress::{Progress, RolloutReporter, TaskEvent, TaskReporter, WorkloadState};
use crate::style::{Painter, Tone};
pub use closing::{Closing, Reported, was_reported};
use closing::{Staged, assemble};

/// How berth reports progress and results (`--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Live progress on a terminal, plain timestamped lines on a pipe.
    Auto,
    /// Plain timestamped lines.
    Plain,
    /// JSON lines; the last line is the report.
    Json,
}

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
    /// How the deploy ended: succeeded, planned (`--dry-run`), failed,
    /// timed_out, locked, lock_lost, refused or interrupted.
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
    /// A rollback's schema part: its plan, or why it is not rolled back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    /// Seconds per pipeline step (`migrate`, `assets`, `apply`, `wait`, …),
    /// as the release record keeps them; absent before a release was recorded.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub timings: BTreeMap<String, f64>,
    /// The chart's NOTES.txt, after the environment's first successful deploy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// The chart hooks run (`Kind/name`, event, status, seconds), in the
    /// order run; absent when none ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<crate::cluster::release::HookRecord>,
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
    /// Colours lines on a terminal (not in a pipe, not with `NO_COLOR`).
    painter: Painter,
    github: bool,
    bars: MultiProgress,
    workloads: Mutex<HashMap<String, ProgressBar>>,
    group_open: Mutex<bool>,
    /// The step [`Output::step`] last began, for failures that name it.
    current_step: Mutex<Option<String>>,
    /// When the current step began, to say how long it took when the next one begins.
    step_began: Mutex<Option<std::time::Instant>>,
    /// The command as its report names it, e.g. `advanced-deploy`.
    command: &'static str,
    /// When the command started, for the report's `duration_s`.
    started: Instant,
    /// What the command said about how it ended, printed by [`Output::finish`].
    staged: Mutex<Staged>,
}

impl Output {
    /// Output for `command` (as its report names it). Choose the mode from
    /// `--output`, whether stderr is a terminal, and whether we run under
    /// GitHub Actions.
    pub fn new(format: OutputFormat, command: &'static str) -> Output {
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
            painter: Painter::new(mode == Mode::Terminal),
            github,
            bars: MultiProgress::with_draw_target(target),
            workloads: Mutex::new(HashMap::new()),
            group_open: Mutex::new(false),
            current_step: Mutex::new(None),
            step_began: Mutex::new(None),
            command,
            started: Instant::now(),
            staged: Mutex::new(Staged::default()),
        }
    }

    /// The mode in use.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn line(&self, text: &str) {
        match self.mode {
            // Not `suspend`: indicatif unwraps its redraw there, so a
            // terminal gone away (EIO) would panic and abandon the deploy.
            // Once a line cannot be written, the bars stop drawing.
            Mode::Terminal => {
                if self.bars.println(text).is_err() {
                    self.bars.set_draw_target(ProgressDrawTarget::hidden());
                }
            }
            Mode::Plain => {
                stderr_line(&format!("{} {text}", Timestamp::now().strftime("%H:%M:%S")))
            }
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
                stderr_line("::endgroup::");
            }
            stderr_line(&format!("::group::{name}"));
            *open = true;
        }
        let previous = self.current_step.lock().unwrap().replace(name.to_string());
        let began = self
            .step_began
            .lock()
            .unwrap()
            .replace(std::time::Instant::now());
        let took = match (previous, began) {
            (Some(previous), Some(began)) => format!(
                "  ({previous} took {})",
                crate::duration::display(began.elapsed())
            ),
            _ => String::new(),
        };
        self.line(&format!("==> {name}{took}"));
        self.json(json!({"event": "step", "name": name, "time": Timestamp::now().to_string()}));
    }

    /// The step [`Output::step`] last began, if any.
    pub fn current_step(&self) -> Option<String> {
        self.current_step.lock().unwrap().clone()
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
            stderr_line(&format!("::warning::{}", escape_annotation(message)));
        }
        self.line(
            &self
                .painter
                .paint(Tone::Warning, &format!("warning: {message}")),
        );
        self.json(
            json!({"event": "warning", "message": message, "time": Timestamp::now().to_string()}),
        );
    }

    /// A line of a pre-deploy task's output, prefixed with the task's name.
    pub fn task_line(&self, task: &str, line: &str) {
        self.line(&format!("[{task}] {line}"));
        self.json(json!({"event": "task_output", "task": task, "line": line}));
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
            stderr_line(&format!("::error::{}", escape_annotation(summary)));
        }
        self.line(&self.painter.paint(Tone::Error, summary));
    }

    /// The command's own report fields (`status` among them, if it chooses
    /// it), replacing any staged before. [`Output::finish`] prints them when
    /// the command ends, with `event`, `command`, `exit_code`, `duration_s`
    /// and, on failure, `error`.
    pub fn json_report(&self, report: &impl Serialize) {
        let fields = match serde_json::to_value(report).expect("report serializes") {
            serde_json::Value::Object(fields) => fields,
            other => serde_json::Map::from_iter([("value".to_string(), other)]),
        };
        self.staged.lock().unwrap().fields = fields;
    }

    /// Markdown for the GitHub Actions step summary (nothing elsewhere).
    pub fn summary(&self, markdown: &str) {
        if let (true, Ok(path)) = (self.github, std::env::var("GITHUB_STEP_SUMMARY")) {
            append_to_summary(&path, markdown);
        }
    }

    /// A deploy's report: staged as the report's fields and summary line
    /// ([`Output::finish`] prints them), and the GitHub step summary.
    pub fn report(&self, report: &Report) {
        self.finish_workloads();
        self.json_report(report);
        // A lost lock's line ends with the error, which names the new
        // holder and since when; the recorded failure does not.
        let lost_lock = report.status == Outcome::LockLost;
        let outcome = match &report.failure {
            Some(_) if lost_lock => format!(
                "{} deploying {} to {}",
                report.status,
                crate::config::short_sha(&report.sha),
                report.environment
            ),
            None => format!(
                "{} {} to {}",
                report.status,
                crate::config::short_sha(&report.sha),
                report.environment
            ),
            Some(f) => format!(
                "{} deploying {} to {}: {} {}",
                report.status,
                crate::config::short_sha(&report.sha),
                report.environment,
                f.workload,
                f.reason
            ),
        };
        let release = match report.release {
            Some(n) if lost_lock => format!(", release {n} left unfinished"),
            Some(n) => format!(", release {n}"),
            None => String::new(),
        };
        {
            let mut staged = self.staged.lock().unwrap();
            staged.headline = Some(format!(
                "{outcome}{release} ({}{})",
                crate::duration::display_seconds(report.duration_s),
                step_durations(&report.timings)
                    .map(|steps| format!(": {steps}"))
                    .unwrap_or_default()
            ));
            staged.explained = report.failure.is_some() && !lost_lock;
        }
        if self.github {
            append_step_summary(report);
        }
    }

    /// The command ended with `result`: print its one report (see
    /// [`Closing`]) and hand `result` back, an error marked [`Reported`]
    /// when it was said. With `--output json` the report is the last stdout
    /// line and a failure is also said once on stderr, for people, as
    /// `error: …`; otherwise the summary line on stderr is the only one. A
    /// closed stdout gets no report.
    pub fn finish(&self, result: anyhow::Result<()>, closing: Closing) -> anyhow::Result<()> {
        use crate::error::{BerthError, kind_of};
        let child_said = match &result {
            Err(error) => match kind_of(error) {
                Some(BerthError::OutputClosed) => return result,
                Some(BerthError::Exited(_)) => closing == Closing::AfterChild,
                _ => false,
            },
            Ok(()) => false,
        };
        self.finish_workloads();
        if self.github && std::mem::take(&mut *self.group_open.lock().unwrap()) {
            stderr_line("::endgroup::");
        }
        let staged = std::mem::take(&mut *self.staged.lock().unwrap());
        let done = assemble(
            self.command,
            staged,
            &result,
            self.started.elapsed().as_secs_f64(),
        );
        let said = match (self.mode, &result) {
            (Mode::Json, _) => {
                // A reader that went away has missed the report; the exit code still tells.
                let _ = crate::stdout::line(&done.json);
                if let Err(error) = &result
                    && !child_said
                {
                    stderr_line(&format!("error: {}", crate::error::final_message(error)));
                }
                true
            }
            // The child's output is the result, and its exit code passes through.
            _ if closing == Closing::AfterChild && (result.is_ok() || child_said) => false,
            _ => {
                let tone = if result.is_ok() {
                    Tone::Success
                } else {
                    Tone::Error
                };
                self.line(&self.painter.paint(tone, &done.line));
                true
            }
        };
        match result {
            Err(error) if said => Err(error.context(Reported)),
            other => other,
        }
    }
}

/// Write a line to stderr; a stderr that is closed or gone is ignored, as
/// there is nowhere left to say anything.
pub fn stderr_line(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{text}");
}

/// A workload's progress: a live line on a terminal while it progresses and
/// a permanent line once it is healthy or failed; a line per change otherwise.
impl RolloutReporter for Output {
    fn workload(&self, name: &str, progress: Progress, state: &WorkloadState) {
        let Progress { ready, desired } = progress;
        let text = match state {
            WorkloadState::Healthy => "healthy".to_string(),
            WorkloadState::Progressing(why) => why.clone(),
            WorkloadState::Failed(reason) => format!("FAILED: {reason}"),
        };
        self.json(json!({"event": "workload", "name": name, "ready": ready, "desired": desired, "state": text}));
        if self.mode != Mode::Terminal {
            self.line(&format!("  {name} {ready}/{desired} {text}"));
            return;
        }
        let mut bars = self.workloads.lock().unwrap();
        if state.is_settled() {
            if let Some(bar) = bars.remove(name) {
                bar.finish_and_clear();
            }
            let mark = if *state == WorkloadState::Healthy {
                "✓"
            } else {
                "✗"
            };
            self.line(&format!("  {mark} {name:<32} {ready}/{desired}  {text}"));
            return;
        }
        let bar = bars
            .entry(name.to_string())
            .or_insert_with(|| self.spinner(name));
        bar.set_message(format!("{ready}/{desired}  {text}"));
    }
}

/// A pre-deploy task: a spinner while it runs, its output prefixed with its name.
impl TaskReporter for Output {
    fn task(&self, task: &str, event: TaskEvent<'_>) {
        match event {
            TaskEvent::Started(message) => self.task_started(task, message),
            TaskEvent::Output(line) => self.task_line(task, line),
            TaskEvent::Succeeded(message) | TaskEvent::Cancelled(message) => {
                self.task_finished(task, message)
            }
            TaskEvent::Failed(message) => self.task_finished(task, &format!("FAILED: {message}")),
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
                "{}/{} {}, {rate:.1}/s, eta {}",
                done.0,
                self.total,
                self.unit,
                crate::duration::display_seconds(eta)
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

/// The order steps run in, for showing their durations (a chart's pre
/// hooks first, its post hooks last).
const STEP_ORDER: [&str; 12] = [
    "pre-install",
    "pre-upgrade",
    "pre-rollback",
    "backup",
    "schema",
    "migrate",
    "assets",
    "apply",
    "wait",
    "post-install",
    "post-upgrade",
    "post-rollback",
];

/// Each step's name and duration in the order they run (steps berth does
/// not know last), durations shown as people read them.
fn in_step_order(timings: &BTreeMap<String, f64>) -> Vec<(&str, String)> {
    let mut steps: Vec<(&str, String)> = timings
        .iter()
        .map(|(step, seconds)| (step.as_str(), crate::duration::display_seconds(*seconds)))
        .collect();
    steps.sort_by_key(|(step, _)| {
        STEP_ORDER
            .iter()
            .position(|known| known == step)
            .unwrap_or(STEP_ORDER.len())
    });
    steps
}

/// `migrate 4.2s, apply 0.3s, wait 14s`; `None` without timings.
fn step_durations(timings: &BTreeMap<String, f64>) -> Option<String> {
    let shown: Vec<String> = in_step_order(timings)
        .into_iter()
        .map(|(step, took)| format!("{step} {took}"))
        .collect();
    (!shown.is_empty()).then(|| shown.join(", "))
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
        "### berth: {} `{}` to {}\n\n| | |\n|---|---|\n| status | {} |\n| release | {} |\n| duration | {} |\n",
        if report.failure.is_some() {
            "failed to deploy"
        } else {
            "deployed"
        },
        crate::config::short_sha(&report.sha),
        report.environment,
        report.status,
        report.release.map_or("-".to_string(), |n| n.to_string()),
        crate::duration::display_seconds(report.duration_s)
    );
    for (step, took) in in_step_order(&report.timings) {
        text.push_str(&format!("| {step} | {took} |\n"));
    }
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
        stderr_line(&format!(
            "warning: cannot append to GITHUB_STEP_SUMMARY ({path}): {e}"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_durations_follow_the_pipeline_order() {
        let timings: BTreeMap<String, f64> = [
            ("wait", 3599.0),
            ("apply", 0.34),
            ("migrate", 150.0),
            ("later", 1.0),
        ]
        .map(|(step, s)| (step.to_string(), s))
        .into();
        assert_eq!(
            step_durations(&timings).as_deref(),
            Some("migrate 2m30s, apply 0.3s, wait 59m59s, later 1s")
        );
        assert_eq!(step_durations(&BTreeMap::new()), None);
    }

    #[test]
    fn a_lost_locks_line_names_the_new_holder_and_the_release_left_unfinished() {
        let out = Output::new(OutputFormat::Plain, "advanced-deploy");
        out.report(&Report {
            status: Outcome::LockLost,
            environment: "staging".into(),
            sha: "1a2b3c4".into(),
            release: Some(4),
            duration_s: 20.0,
            failure: Some(ReportFailure {
                workload: "lock".into(),
                pod: None,
                reason: "LockLost".into(),
                message: "lost the deploy lock to bob@ci (pid 9)".into(),
            }),
            exit_code: 3,
            schema: None,
            timings: BTreeMap::new(),
            notes: None,
            hooks: Vec::new(),
        });
        let lost: anyhow::Error = crate::error::BerthError::LockLost {
            namespace: "workbench-staging".into(),
            holder: "bob@ci (pid 9) (deploy 2b3c4d5)".into(),
            since: Some("2026-12-07 08:40:12 (20s ago)".into()),
        }
        .into();
        let staged = std::mem::take(&mut *out.staged.lock().unwrap());
        let line = assemble("advanced-deploy", staged, &Err(lost), 20.0).line;
        assert!(
            line.starts_with(
                "lock_lost deploying 1a2b3c4 to staging, release 4 left unfinished (20s): \
                 lost the deploy lock of namespace workbench-staging to bob@ci (pid 9) \
                 (deploy 2b3c4d5), holding it since 2026-12-07 08:40:12 (20s ago); \
                 berth stopped before its next change"
            ),
            "{line}"
        );
    }

    #[test]
    fn annotations_keep_multi_line_messages_on_one_line() {
        assert_eq!(escape_annotation("50% done\nnext"), "50%25 done%0Anext");
    }
}
