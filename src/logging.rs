//! Where berth's tracing log goes: standard error at the level `-v` picks
//! (or `BERTH_LOG`), and with `--log-file` (`BERTH_LOG_FILE`) also a file at
//! debug level, whatever stderr shows, for a CI artifact or a bug report.

use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

use crate::cli::GlobalArgs;
use crate::error::input_error;

/// What the log file records: what `-vv` shows.
const FILE_LEVEL: &str = "berth=debug,info";

/// Install the global subscriber; an unwritable log file is an input error.
pub fn init(global: &GlobalArgs) -> anyhow::Result<()> {
    let default_level = match global.verbose {
        0 => "warn",
        1 => "berth=info,warn",
        _ => FILE_LEVEL,
    };
    // A stderr or log file that cannot be written loses the log line, never
    // the work: tracing's own complaint would panic on a closed stderr.
    let stderr = tracing_subscriber::fmt::layer()
        .log_internal_errors(false)
        .with_writer(std::io::stderr)
        .with_filter(
            EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| EnvFilter::new(default_level)),
        );
    let file = global
        .log_file
        .as_deref()
        .map(open)
        .transpose()?
        .map(|file| {
            tracing_subscriber::fmt::layer()
                .log_internal_errors(false)
                .with_ansi(false)
                .with_writer(Mutex::new(file))
                .with_filter(EnvFilter::new(FILE_LEVEL))
        });
    tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .init();
    Ok(())
}

/// Open the log file for appending, creating it if needed.
fn open(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            input_error(format!(
                "cannot write the log file {} ({e}); pass a writable path to --log-file (or BERTH_LOG_FILE)",
                path.display()
            ))
        })
}
