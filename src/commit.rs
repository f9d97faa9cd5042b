//! A commit SHA as given (7 to 40 hex characters) expanded to the full 40,
//! before anything else happens: images are tagged with the full SHA, and
//! release records name it.
//!
//! An abbreviation is looked up, in order, in the deploy repository's git
//! (when it is the app's repository: one of its remotes names berth.yaml's
//! `github.repo`), in the registry's tags of the first repository under
//! `images:`, then on GitHub (`github.repo`). The first place that knows
//! commits starting with it answers: one is the SHA, several are refused
//! (exit 2) naming them. None anywhere is refused saying where berth looked.
//!
//! `BERTH_SHA_AS_GIVEN=1` takes an abbreviation as given, looking nothing
//! up: for images CI tags with the abbreviated SHA.

use std::path::Path;
use std::sync::Arc;

use oci_client::Reference;
use tokio::process::Command;

use crate::config::{self, Config};
use crate::error::{brief, input_error};
use crate::output::Output;

/// The variable that, set to `1` or `true`, takes an abbreviation as given.
pub const AS_GIVEN_VAR: &str = "BERTH_SHA_AS_GIVEN";

/// The length of a full SHA-1 commit id.
pub const FULL: usize = 40;

/// Most tags read from the registry per request.
const TAGS_PER_PAGE: usize = 1000;
/// Most pages of tags read: a registry that ignores `last` would repeat itself.
const MAX_TAG_PAGES: usize = 200;

/// The full SHA `given` abbreviates (or is), lowercase; an input error when
/// it is not a SHA, is ambiguous, or names no commit berth can find.
pub async fn expand(config: &Config, given: &str, out: &Arc<Output>) -> anyhow::Result<String> {
    let prefix = config::parse_sha(given)?;
    let as_given = std::env::var(AS_GIVEN_VAR).is_ok_and(|v| v == "1" || v == "true");
    if prefix.len() == FULL || as_given {
        return Ok(prefix);
    }
    let mut looked = Vec::new();
    let sources = [Source::Git, Source::Registry, Source::GitHub];
    for source in sources {
        let (place, answer) = source.ask(config, &prefix, out).await;
        match answer {
            Answer::Skipped(why) => looked.push(format!("not {place} ({why})")),
            Answer::Failed(why) => looked.push(format!("{place} could not be read ({why})")),
            Answer::Found(candidates) => match chosen(&prefix, &place, candidates)? {
                Some(sha) => {
                    out.info(&format!("{prefix} is commit {sha} (from {place})"));
                    return Ok(sha);
                }
                None => looked.push(format!("{place} has none")),
            },
        }
    }
    Err(input_error(format!(
        "no commit starting with {prefix} was found: {}; give the full 40-character SHA \
         (`git rev-parse {prefix}` in the app's repository), and check that CI built and pushed \
         its images",
        looked.join("; ")
    )))
}

/// The one full SHA among `candidates` (found in `place`) that starts with
/// `prefix`; `None` when none does; an input error naming them when
/// several do.
pub fn chosen(
    prefix: &str,
    place: &str,
    candidates: Vec<String>,
) -> anyhow::Result<Option<String>> {
    let mut matching = matching(prefix, candidates);
    match matching.len() {
        0 => Ok(None),
        1 => Ok(matching.pop()),
        n => Err(input_error(format!(
            "{prefix} is ambiguous: {n} commits in {place} start with it: {}; give more of the \
             SHA, or all 40 characters",
            matching.join(", ")
        ))),
    }
}

/// The full SHAs (40 hex characters, lowercased, each once, sorted) among
/// `candidates` that start with `prefix`.
pub fn matching(prefix: &str, candidates: impl IntoIterator<Item = String>) -> Vec<String> {
    let prefix = prefix.to_ascii_lowercase();
    let mut found: Vec<String> = candidates
        .into_iter()
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| c.len() == FULL && c.chars().all(|ch| ch.is_ascii_hexdigit()))
        .filter(|c| c.starts_with(&prefix))
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Where an abbreviation is looked up.
#[derive(Debug, Clone, Copy)]
enum Source {
    Git,
    Registry,
    GitHub,
}

/// What one place said of a prefix.
enum Answer {
    /// The place does not apply, and why.
    Skipped(String),
    /// It could not be read, and why.
    Failed(String),
    /// What it holds that may start with the prefix (not yet filtered).
    Found(Vec<String>),
}

impl Source {
    /// The place, as messages name it, and its answer for `prefix`.
    async fn ask(self, config: &Config, prefix: &str, out: &Arc<Output>) -> (String, Answer) {
        match self {
            Source::Git => (
                format!("the git repository at {}", config.dir.display()),
                git_commits(&config.dir, config.github.as_ref(), prefix).await,
            ),
            Source::Registry => match config.images.first() {
                Some(image) => (
                    format!("the registry's tags of {image}"),
                    registry_tags(image).await,
                ),
                None => (
                    "the registry".to_string(),
                    Answer::Skipped("berth.yaml lists no `images:`".into()),
                ),
            },
            Source::GitHub => match &config.github {
                Some(github) => (
                    format!("GitHub repository {}", github.repo),
                    github_commit(github, prefix, out).await,
                ),
                None => (
                    "GitHub".to_string(),
                    Answer::Skipped("berth.yaml has no `github.repo`".into()),
                ),
            },
        }
    }
}

/// The commits of the deploy repository in `dir` starting with `prefix`,
/// when it is the app's repository: a remote of it names `github.repo`.
async fn git_commits(dir: &Path, github: Option<&config::GitHub>, prefix: &str) -> Answer {
    let Some(github) = github else {
        return Answer::Skipped(
            "berth.yaml has no `github.repo` to tell whether it is the app's repository".into(),
        );
    };
    let Some(remotes) = git(dir, &["remote", "-v"]).await else {
        return Answer::Skipped("not a git repository, or git is not installed".into());
    };
    if !remotes.lines().any(|line| names_repo(line, &github.repo)) {
        return Answer::Skipped(format!(
            "no remote of it is {}, so it is not the app's repository",
            github.repo
        ));
    }
    if let Some(sha) = git(
        dir,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{prefix}^{{commit}}"),
        ],
    )
    .await
    {
        return Answer::Found(vec![sha]);
    }
    // Not found, or ambiguous: list every object with the prefix, keep commits.
    let disambiguate = format!("--disambiguate={prefix}");
    let objects = git(dir, &["rev-parse", &disambiguate])
        .await
        .unwrap_or_default();
    let mut commits = Vec::new();
    for object in objects.lines() {
        if git(dir, &["cat-file", "-t", object]).await.as_deref() == Some("commit") {
            commits.push(object.to_string());
        }
    }
    Answer::Found(commits)
}

/// Whether a `git remote -v` line's URL is the GitHub repository `repo`
/// (`owner/name`): `https://github.com/owner/name.git`,
/// `git@github.com:owner/name`, and the like.
fn names_repo(remote_line: &str, repo: &str) -> bool {
    let Some(url) = remote_line.split_whitespace().nth(1) else {
        return false;
    };
    let url = url.trim_end_matches('/').to_ascii_lowercase();
    let url = url.strip_suffix(".git").unwrap_or(&url);
    let repo = repo.to_ascii_lowercase();
    url.strip_suffix(repo.as_str())
        .is_some_and(|before| before.ends_with('/') || before.ends_with(':'))
}

/// `git -C dir ARGS`'s trimmed stdout when it succeeds.
async fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Every tag of `image` (a repository, no tag) in its registry.
async fn registry_tags(image: &str) -> Answer {
    match list_tags(image).await {
        Ok(tags) => Answer::Found(tags),
        Err(error) => Answer::Failed(brief(&error)),
    }
}

async fn list_tags(image: &str) -> anyhow::Result<Vec<String>> {
    let shown = format!("{image}:latest");
    let reference: Reference = shown.parse().map_err(|e| {
        input_error(format!(
            "{image} is not a valid image repository ({e}); check `images:` in berth.yaml"
        ))
    })?;
    let session = crate::registry::Session::open(reference, image.to_string(), "`images:`").await?;
    let mut tags: Vec<String> = Vec::new();
    for _ in 0..MAX_TAG_PAGES {
        let last = tags.last().cloned();
        let page = session
            .image
            .retried("listing the tags of", || {
                session.client.list_tags(
                    &session.reference,
                    &session.auth,
                    Some(TAGS_PER_PAGE),
                    last.as_deref(),
                )
            })
            .await
            .map_err(|e| session.image.error(e))?;
        let fetched = page.tags.len();
        let new = page.tags.last().is_some_and(|t| Some(t) != last.as_ref());
        tags.extend(page.tags);
        if fetched < TAGS_PER_PAGE || !new {
            break;
        }
    }
    Ok(tags)
}

/// The commit GitHub finds for `prefix` (its commits API takes a SHA prefix).
async fn github_commit(github: &config::GitHub, prefix: &str, out: &Arc<Output>) -> Answer {
    let found = async {
        let repository = crate::github::Repository::from_env(github, out.clone())?;
        repository.commit_sha(prefix).await
    };
    match found.await {
        Ok(sha) => Answer::Found(sha.into_iter().collect()),
        Err(error) => Answer::Failed(brief(&error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "f5ee4830000000000000000000000000000000aa";
    const B: &str = "f5ee4831111111111111111111111111111111bb";

    #[test]
    fn only_full_shas_starting_with_the_prefix_match_each_once() {
        let candidates = [
            A,
            B,
            "latest",
            "f5ee483",
            A,
            "F5EE4830000000000000000000000000000000AA",
        ]
        .map(String::from);
        assert_eq!(matching("F5EE4830", candidates.clone()), [A]);
        assert_eq!(matching("f5ee483", candidates), [A, B]);
        assert!(matching("abcdef0", [A.to_string()]).is_empty());
    }

    #[test]
    fn one_match_is_the_sha_none_is_none_and_several_are_refused_naming_them() {
        let place = "the registry's tags of r/frontend";
        let both = vec![A.to_string(), B.to_string()];
        assert_eq!(
            chosen("f5ee4830", place, both.clone()).unwrap().as_deref(),
            Some(A)
        );
        assert_eq!(chosen("0000000", place, both.clone()).unwrap(), None);
        let refused = chosen("f5ee483", place, both).unwrap_err();
        assert_eq!(crate::error::exit_code_number(&refused), 2);
        let message = refused.to_string();
        assert!(message.contains(A) && message.contains(B), "{message}");
        assert!(message.contains(place), "{message}");
    }

    #[test]
    fn a_remote_names_the_repository_over_https_or_ssh() {
        let repo = "Example/Workbench";
        for line in [
            "origin\thttps://github.com/example/workbench.git (fetch)",
            "origin\thttps://github.com/example/workbench (push)",
            "up\tgit@github.com:example/workbench.git (fetch)",
            "up\tssh://git@github.example.com/example/workbench/ (fetch)",
        ] {
            assert!(names_repo(line, repo), "{line}");
        }
        for line in [
            "origin\thttps://github.com/example/workbench-deploy.git (fetch)",
            "origin\thttps://github.com/other-example/workbench.git (fetch)",
            "origin",
        ] {
            assert!(!names_repo(line, repo), "{line}");
        }
    }

    #[tokio::test]
    async fn a_full_sha_is_kept_without_looking_anywhere() {
        let config = Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("berth.yaml"))
            .expect("the example berth.yaml loads");
        let out = Arc::new(Output::new(crate::output::OutputFormat::Json, "test"));
        let upper = A.to_ascii_uppercase();
        assert_eq!(expand(&config, &upper, &out).await.unwrap(), A);
        let bad = expand(&config, "f5ee48", &out).await.unwrap_err();
        assert_eq!(crate::error::exit_code_number(&bad), 2);
    }
}
