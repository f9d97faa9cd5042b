//! `berth man-pages DIR`: write the man pages of berth's command tree, one
//! per command and subcommand (packaging/dist puts them in the release
//! tarball). No date goes into them, so a build of one commit writes the
//! same bytes every time.

use std::fs;
use std::path::Path;

use anyhow::Context;
use clap_mangen::Man;

use crate::cli::{self, ManPagesArgs};

/// Every page's footer: the program and its version.
const SOURCE: &str = concat!("berth ", env!("CARGO_PKG_VERSION"));

/// Write `berth.1` and `berth-COMMAND[-SUBCOMMAND].1` into `args.dir`.
pub fn run(args: &ManPagesArgs) -> anyhow::Result<()> {
    fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    // Built, so that each subcommand knows its full name (`berth-lock-take`);
    // `help` is clap's, not a page of its own.
    let mut command = cli::command().disable_help_subcommand(true);
    command.build();
    write_pages(&command, &args.dir)
}

/// The page of `command`, then those of its visible subcommands.
fn write_pages(command: &clap::Command, dir: &Path) -> anyhow::Result<()> {
    let man = Man::new(command.clone()).source(SOURCE);
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)?;
    fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    for subcommand in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(subcommand, dir)?;
    }
    Ok(())
}
