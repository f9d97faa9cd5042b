//! `berth completions SHELL`: print a completion script for the shell.

use clap::{ArgGroup, Command};

use crate::cli::{self, CompletionsArgs};
use crate::stdout;

/// Write the completion script for `args.shell` to standard output.
pub fn run(args: &CompletionsArgs) -> anyhow::Result<()> {
    let mut command = visible(&cli::command());
    // Into memory first: clap_complete panics when its writer fails.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "berth", &mut script);
    stdout::write(&script)
}

/// `command` as help shows it: a copy without its hidden subcommands and
/// hidden options, at every level (clap_complete's generators offer
/// hidden ones too, and clap cannot take a subcommand out of a tree, so
/// the tree is copied). The copy keeps what the generators read: names,
/// about texts, visible aliases, arguments and groups, the version flag
/// and how subcommands and arguments combine.
fn visible(command: &Command) -> Command {
    let kept = |id: &clap::Id| {
        command
            .get_arguments()
            .any(|arg| arg.get_id() == id && !arg.is_hide_set())
    };
    let groups: Vec<ArgGroup> = command
        .get_groups()
        .map(|group| {
            let mut copy = group.clone();
            ArgGroup::new(group.get_id().clone())
                .args(group.get_args().filter(|id| kept(id)).cloned())
                .required(group.is_required_set())
                .multiple(copy.is_multiple())
        })
        .collect();
    let versioned = command.get_version().is_some() || command.get_long_version().is_some();
    // These four are global settings, which clap passes down to the
    // subcommands as it builds the tree: set here only where they were set
    // (clap reports a command without a version as having no version flag).
    let mut copy = Command::new(command.get_name().to_owned())
        .propagate_version(command.is_propagate_version_set())
        .disable_version_flag(versioned && command.is_disable_version_flag_set())
        .disable_help_flag(command.is_disable_help_flag_set())
        .disable_help_subcommand(command.is_disable_help_subcommand_set())
        .subcommand_required(command.is_subcommand_required_set())
        .args_conflicts_with_subcommands(command.is_args_conflicts_with_subcommands_set())
        .subcommand_negates_reqs(command.is_subcommand_negates_reqs_set())
        .allow_external_subcommands(command.is_allow_external_subcommands_set())
        .visible_aliases(command.get_visible_aliases().map(str::to_owned))
        .args(
            command
                .get_arguments()
                .filter(|arg| !arg.is_hide_set())
                .cloned(),
        )
        .groups(groups)
        .subcommands(
            command
                .get_subcommands()
                .filter(|sub| !sub.is_hide_set())
                .map(visible),
        );
    if let Some(about) = command.get_about() {
        copy = copy.about(about.clone());
    }
    if let Some(about) = command.get_long_about() {
        copy = copy.long_about(about.clone());
    }
    if let Some(version) = command.get_version() {
        copy = copy.version(version.to_owned());
    }
    if let Some(version) = command.get_long_version() {
        copy = copy.long_version(version.to_owned());
    }
    copy
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names of `command`'s subcommands and options, at every level.
    fn names(command: &Command) -> Vec<String> {
        let mut found: Vec<String> = command
            .get_arguments()
            .map(|arg| arg.get_id().to_string())
            .collect();
        for sub in command.get_subcommands() {
            found.push(sub.get_name().to_owned());
            found.extend(names(sub));
        }
        found
    }

    #[test]
    fn the_visible_tree_leaves_out_hidden_subcommands_at_every_level() {
        let full = cli::command();
        let shown = visible(&full);
        shown.clone().debug_assert();
        let names = names(&shown);
        assert!(!names.iter().any(|n| n == "preview"), "{names:?}");
        assert!(!names.iter().any(|n| n == "agent"), "{names:?}");
        for kept in ["rollback", "db", "drill", "backups", "completions"] {
            assert!(names.iter().any(|n| n == kept), "{kept} kept: {names:?}");
        }
        let db = shown.find_subcommand("db").unwrap();
        assert!(db.find_subcommand("drill").is_some());
        assert_eq!(
            shown
                .find_subcommand("advanced-deploy")
                .unwrap()
                .get_visible_aliases()
                .collect::<Vec<_>>(),
            ["deploy"]
        );
    }

    /// `shown` offers what `full` shows, at every level: the same visible
    /// options (help and version flags included), subcommands, aliases and
    /// about texts.
    fn same_as_shown(full: &Command, shown: &Command) {
        let path = shown.get_name();
        let args = |c: &Command| -> Vec<String> {
            c.get_arguments()
                .filter(|a| !a.is_hide_set())
                .map(|a| format!("{:?} {:?} {:?}", a.get_id(), a.get_long(), a.get_short()))
                .collect()
        };
        assert_eq!(args(full), args(shown), "options of {path}");
        let about = |c: &Command| c.get_about().map(ToString::to_string);
        assert_eq!(about(full), about(shown), "about {path}");
        let aliases = |c: &Command| {
            c.get_visible_aliases()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(aliases(full), aliases(shown), "aliases of {path}");
        let subs = |c: &Command| {
            c.get_subcommands()
                .filter(|s| !s.is_hide_set())
                .map(|s| s.get_name().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(subs(full), subs(shown), "subcommands of {path}");
        for sub in shown.get_subcommands() {
            same_as_shown(full.find_subcommand(sub.get_name()).unwrap(), sub);
        }
    }

    #[test]
    fn the_visible_tree_offers_what_help_shows() {
        let mut full = cli::command();
        full.build();
        let mut shown = visible(&cli::command());
        shown.build();
        same_as_shown(&full, &shown);
        let status = shown.find_subcommand("status").unwrap();
        assert!(
            status
                .get_arguments()
                .any(|a| a.get_long() == Some("version"))
        );
    }

    #[test]
    fn hidden_options_are_left_out() {
        let command = Command::new("x")
            .arg(clap::Arg::new("shown").long("shown"))
            .arg(clap::Arg::new("secret").long("secret").hide(true))
            .subcommand(Command::new("sub").arg(clap::Arg::new("inner").long("inner").hide(true)));
        let shown = visible(&command);
        let ids: Vec<&str> = shown.get_arguments().map(|a| a.get_id().as_str()).collect();
        assert_eq!(ids, ["shown"]);
        assert_eq!(
            shown
                .find_subcommand("sub")
                .unwrap()
                .get_arguments()
                .count(),
            0
        );
    }
}
