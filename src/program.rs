//! The name berth runs under: `berth`, or `kubectl berth` when kubectl runs
//! it as its plugin (the binary installed as, or linked to, `kubectl-berth`).
//! Usage lines, clap's errors and every hint that names a berth command say
//! it the way the user typed it.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::OnceLock;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::Cli;

/// The file name kubectl looks for on PATH to run `kubectl berth`.
pub const PLUGIN_FILE: &str = "kubectl-berth";

/// How the user runs berth: `berth` or `kubectl berth`, from this process's
/// argv[0].
pub fn name() -> &'static str {
    static NAME: OnceLock<&'static str> = OnceLock::new();
    NAME.get_or_init(|| name_for(std::env::args_os().next().as_deref()))
}

/// The program name for `argv0`: `kubectl berth` when its file name is
/// [`PLUGIN_FILE`] (`.exe` allowed), else `berth`.
fn name_for(argv0: Option<&OsStr>) -> &'static str {
    let file = argv0
        .and_then(|a| Path::new(a).file_name())
        .and_then(OsStr::to_str);
    match file {
        Some(f) if f.strip_suffix(".exe").unwrap_or(f) == PLUGIN_FILE => "kubectl berth",
        _ => "berth",
    }
}

/// Parse the command line; help, usage and errors name the program as
/// [`name`] does (clap's errors exit 2).
pub fn parse() -> Cli {
    let mut command = Cli::command().bin_name(name());
    let mut matches = command.get_matches_mut();
    Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.format(&mut command).exit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_file_name_makes_it_kubectl_berth() {
        for argv0 in [
            "kubectl-berth",
            "/usr/local/bin/kubectl-berth",
            "C:\\x/kubectl-berth.exe",
        ] {
            assert_eq!(
                name_for(Some(OsStr::new(argv0))),
                "kubectl berth",
                "{argv0}"
            );
        }
    }

    #[test]
    fn any_other_name_is_berth() {
        for argv0 in [
            "berth",
            "/opt/bin/berth",
            "kubectl-berth-dev",
            "kubectl",
            "./berth-1a2b",
        ] {
            assert_eq!(name_for(Some(OsStr::new(argv0))), "berth", "{argv0}");
        }
        assert_eq!(name_for(None), "berth");
    }
}
