//! The name berth runs under: `berth`, or `kubectl berth` when kubectl runs
//! it as its plugin (the binary installed as, or linked to, `kubectl-berth`).
//! Usage lines, clap's errors and every hint that names a berth command say
//! it the way the user typed it.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::OnceLock;

use clap::error::{ContextKind, ContextValue, ErrorKind};

use crate::cli::{self, Cli};

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
/// [`name`] does (clap's errors exit 2). A command line that fails only
/// because two words are in the wrong order (`lock acquire staging`) says
/// the right order. `--version` is `berth version` (the server's version
/// too); `-V` stays the one offline line.
pub fn parse() -> Cli {
    let args: Vec<OsString> = std::env::args_os().collect();
    cli::parse_from(name(), &args).unwrap_or_else(|error| {
        let mut error = error;
        if error.kind() == ErrorKind::DisplayVersion && args.iter().any(|a| a == "--version") {
            // With the flags given (`--output json --version`), else alone.
            let mut flags: Vec<OsString> =
                args.iter().filter(|a| *a != "--version").cloned().collect();
            flags.push("version".into());
            let program = args.first().cloned().unwrap_or_else(|| name().into());
            let alone = [program, "version".into()];
            let with_flags = cli::parse_from(name(), &flags)
                .ok()
                .filter(|cli| matches!(cli.command, cli::Command::Version));
            if let Some(version) = with_flags.or_else(|| cli::parse_from(name(), &alone).ok()) {
                return version;
            }
        }
        if !matches!(
            error.kind(),
            ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        ) && let Some(fixed) = swapped(&args)
        {
            let tip = format!("did you mean: {} {}", name(), fixed.join(" "));
            error.insert(
                ContextKind::Suggested,
                ContextValue::StyledStrs(vec![tip.into()]),
            );
        }
        error.exit()
    })
}

/// The words after the program's name with two neighbours swapped, when
/// that parses and `args` does not: `lock acquire staging` for
/// `lock staging acquire`, `db staging backup` for `db backup staging`.
/// Flags and what follows `--` stay where they are.
pub fn swapped(args: &[OsString]) -> Option<Vec<String>> {
    let words: Vec<String> = args
        .iter()
        .map(|arg| arg.to_str().map(str::to_owned))
        .collect::<Option<_>>()?;
    if cli::parse_from(name(), &words).is_ok() {
        return None;
    }
    let end = words.iter().position(|w| w == "--").unwrap_or(words.len());
    (1..end.saturating_sub(1)).find_map(|i| {
        if words[i].starts_with('-') || words[i + 1].starts_with('-') {
            return None;
        }
        let mut candidate = words.clone();
        candidate.swap(i, i + 1);
        cli::parse_from(name(), &candidate)
            .is_ok()
            .then(|| candidate[1..].to_vec())
    })
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

    fn words(line: &str) -> Vec<OsString> {
        line.split(' ').map(OsString::from).collect()
    }

    #[test]
    fn two_words_in_the_wrong_order_are_put_right() {
        for (typed, meant) in [
            ("berth lock acquire staging", "lock staging acquire"),
            (
                "berth maintenance on production --title x",
                "maintenance production on --title x",
            ),
            ("berth db staging backup", "db backup staging"),
            ("berth assets staging prune", "assets prune staging"),
        ] {
            assert_eq!(
                swapped(&words(typed)).map(|w| w.join(" ")).as_deref(),
                Some(meant),
                "{typed}"
            );
        }
        for fine_or_hopeless in [
            "berth lock staging acquire",
            "berth lock staging acuire",
            "berth status",
            "berth lock acquire",
        ] {
            assert_eq!(
                swapped(&words(fine_or_hopeless)),
                None,
                "{fine_or_hopeless}"
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
