//! Finding berth.yaml: `--config` (or `BERTH_CONFIG`) as given, else the
//! first berth.yaml from the current directory up to the repository's root,
//! as git finds its repository.

use std::path::{Path, PathBuf};

use crate::error::input_error;

/// The file looked for.
const FILE_NAME: &str = "berth.yaml";

/// The berth.yaml a command uses: `given` (`--config` or `BERTH_CONFIG`) as
/// given; else the first berth.yaml in the current directory or a directory
/// above it, up to the repository's root (the directory holding `.git`) or
/// the filesystem's root. Found in the current directory it is `berth.yaml`,
/// above it its absolute path. Logged at `-v`; none found is an input error
/// saying where berth looked.
pub fn locate(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(given) => given.to_path_buf(),
        None => {
            let current = std::env::current_dir().map_err(|error| {
                input_error(format!(
                    "cannot read the current directory ({error}); run {berth} from the deploy \
                     repo, or point --config (or BERTH_CONFIG) at berth.yaml",
                    berth = crate::program::name()
                ))
            })?;
            search(&current)?
        }
    };
    let shown = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
    tracing::info!("configuration: {}", shown.display());
    Ok(path)
}

/// The first berth.yaml from `start` up to the repository's root or the
/// filesystem's root: `berth.yaml` when in `start`, else absolute.
pub(super) fn search(start: &Path) -> anyhow::Result<PathBuf> {
    for dir in start.ancestors() {
        let candidate = dir.join(FILE_NAME);
        if candidate.is_file() {
            return Ok(if dir == start {
                PathBuf::from(FILE_NAME)
            } else {
                candidate
            });
        }
        if dir.join(".git").exists() {
            return Err(not_found(start, dir, "the repository's root"));
        }
    }
    let root = start.ancestors().last().unwrap_or(start);
    Err(not_found(start, root, "no git repository around it"))
}

/// No berth.yaml from `start` up to `top`.
fn not_found(start: &Path, top: &Path, what_top_is: &str) -> anyhow::Error {
    let range = if start == top {
        format!("in {} ({what_top_is})", start.display())
    } else {
        format!(
            "in {} or any directory above it up to {} ({what_top_is})",
            start.display(),
            top.display()
        )
    };
    input_error(format!(
        "no {FILE_NAME} found {range}; run {berth} inside the deploy repo (in the directory \
         holding {FILE_NAME} or below it), or point --config (or BERTH_CONFIG) at the file",
        berth = crate::program::name()
    ))
}
