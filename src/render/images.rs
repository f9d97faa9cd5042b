//! Checking berth.yaml's `images:` against an environment's render, after
//! pinning. A listed repository that no container uses while a container is
//! left at an image close to it (a few characters apart) is most likely a
//! typo of that image: deploying would leave the container at the overlay's
//! own tag (often `:latest`), so it is refused, naming that image. A listed
//! repository nothing uses and nothing resembles (an image this environment
//! does not run) is a warning, as is a container left at an untagged or
//! `:latest` image.

use std::collections::BTreeSet;
use std::path::Path;

use crate::error::input_error;
use crate::image_ref;

/// A container or init container and its image, as rendered and pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerImage {
    /// The object holding the container, as `Kind/name`.
    pub object: String,
    /// The container's name.
    pub container: String,
    /// Its image.
    pub image: String,
}

/// A listed repository no container uses, with the unpinned image nearest to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmatched {
    /// Its index under `images:`.
    pub index: usize,
    /// The repository as listed.
    pub repository: String,
    /// The unpinned container image whose repository is nearest in edit distance.
    pub closest: ContainerImage,
}

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageCheck {
    /// Listed repositories that match nothing while an unpinned container's
    /// image is a likely typo of them: refused.
    pub unmatched: Vec<Unmatched>,
    /// Listed repositories that match nothing and resemble no unpinned
    /// image, with their index under `images:`: warned.
    pub unused: Vec<(usize, String)>,
    /// Containers left at an untagged or `:latest` image: warned.
    pub floating: Vec<ContainerImage>,
}

/// Check `listed` (berth.yaml's `images:`) against `containers` (the
/// render's, after pinning) and `used` (the repositories pinned in the
/// render and the migration, and those berth.yaml uses outside the render:
/// `migrate.image`, an assets image).
pub fn check(
    listed: &[String],
    used: &BTreeSet<&str>,
    containers: &[ContainerImage],
) -> ImageCheck {
    let unpinned: Vec<&ContainerImage> = containers
        .iter()
        .filter(|c| !listed.iter().any(|l| l == image_ref::repository(&c.image)))
        .collect();
    let mut unmatched = Vec::new();
    let mut unused = Vec::new();
    for (index, repository) in listed.iter().enumerate() {
        if used.contains(repository.as_str()) {
            continue;
        }
        let closest = unpinned
            .iter()
            .map(|c| {
                (
                    edit_distance(repository, image_ref::repository(&c.image)),
                    c,
                )
            })
            .min_by_key(|(distance, _)| *distance);
        match closest {
            Some((distance, c)) if distance <= typo_distance(repository) => {
                unmatched.push(Unmatched {
                    index,
                    repository: repository.clone(),
                    closest: (*c).clone(),
                });
            }
            _ => unused.push((index, repository.clone())),
        }
    }
    let floating = unpinned
        .into_iter()
        .filter(|c| is_floating(&c.image))
        .cloned()
        .collect();
    ImageCheck {
        unmatched,
        unused,
        floating,
    }
}

/// The most characters a typo of `repository` changes: a quarter of it, at
/// least 2.
fn typo_distance(repository: &str) -> usize {
    (repository.chars().count() / 4).max(2)
}

impl ImageCheck {
    /// The refusal of environment `env_name` (berth.yaml at `path`), if a
    /// listed repository matched nothing.
    pub fn error(&self, path: &Path, env_name: &str) -> Option<anyhow::Error> {
        if self.unmatched.is_empty() {
            return None;
        }
        let lines: Vec<String> = self
            .unmatched
            .iter()
            .map(|u| {
                format!(
                    "{}: images[{}]: {:?} matches no container or init container image in \
                     environment `{env_name}`, so nothing would be pinned to the SHA from it; \
                     the closest image is {} ({}, container {}), which would stay at that tag; \
                     fix the repository under `images:` (written exactly as the overlay or \
                     chart writes the image, without its tag)",
                    path.display(),
                    u.index,
                    u.repository,
                    u.closest.image,
                    u.closest.object,
                    u.closest.container
                )
            })
            .collect();
        Some(input_error(lines.join("\n")))
    }

    /// One warning per listed repository nothing uses, and per container
    /// left at an untagged or `:latest` image.
    pub fn warnings(&self, env_name: &str) -> Vec<String> {
        let unused = self.unused.iter().map(|(index, repository)| {
            format!(
                "images[{index}]: {repository:?} matches no container or init container image                  in {env_name}, so nothing is pinned from it; if {env_name} runs that image, fix                  the repository (written as the overlay or chart writes the image)"
            )
        });
        let floating = self.floating.iter().map(|c| {
            format!(
                "{} container {} in {env_name} runs {}, which berth does not pin and which \
                 can change under it (untagged or :latest); give it a fixed tag or digest \
                 in the overlay or chart, or list its repository under `images:`",
                c.object, c.container, c.image
            )
        });
        unused.chain(floating).collect()
    }
}

/// Whether `image` names no fixed version: no digest, and no tag or `latest`.
fn is_floating(image: &str) -> bool {
    !image.contains('@') && image_ref::tag(image).is_none_or(|tag| tag == "latest")
}

/// The Levenshtein distance between `a` and `b`, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(object: &str, image: &str) -> ContainerImage {
        ContainerImage {
            object: object.to_owned(),
            container: "main".to_owned(),
            image: image.to_owned(),
        }
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("frontend", "frontend"), 0);
        assert_eq!(edit_distance("frontnd", "frontend"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn a_typo_names_the_closest_unpinned_image() {
        let listed = vec!["reg/app/web".to_owned(), "reg/app/wroker".to_owned()];
        let containers = [
            container("Deployment/web", "reg/app/web:abc1234"),
            container("Deployment/worker", "reg/app/worker:latest"),
            container("Deployment/cache", "redis:7.4"),
        ];
        let used = BTreeSet::from(["reg/app/web"]);
        let found = check(&listed, &used, &containers);
        assert_eq!(
            found.unmatched,
            [Unmatched {
                index: 1,
                repository: "reg/app/wroker".to_owned(),
                closest: containers[1].clone(),
            }]
        );
        assert_eq!(found.floating, [containers[1].clone()]);
        let text = found
            .error(Path::new("berth.yaml"), "staging")
            .unwrap()
            .to_string();
        for part in [
            "berth.yaml: images[1]: \"reg/app/wroker\" matches no container",
            "environment `staging`",
            "the closest image is reg/app/worker:latest (Deployment/worker, container main)",
        ] {
            assert!(text.contains(part), "{part:?} in {text}");
        }
    }

    #[test]
    fn a_repository_an_environment_does_not_run_is_a_warning_not_a_refusal() {
        let listed = vec!["reg/app/web".to_owned(), "reg/app/migrate".to_owned()];
        let containers = [
            container("Deployment/web", "reg/app/web:abc1234"),
            // a third-party sidecar nothing listed resembles
            container(
                "Deployment/web",
                "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0",
            ),
        ];
        let found = check(&listed, &BTreeSet::from(["reg/app/web"]), &containers);
        assert!(found.unmatched.is_empty(), "{found:?}");
        assert_eq!(found.unused, [(1, "reg/app/migrate".to_owned())]);
        assert!(found.error(Path::new("berth.yaml"), "staging").is_none());
        let warnings = found.warnings("staging");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("images[1]: \"reg/app/migrate\" matches no container"),
            "{warnings:?}"
        );
    }

    #[test]
    fn only_untagged_and_latest_images_float() {
        for floating in [
            "nginx",
            "nginx:latest",
            "127.0.0.1:5000/app",
            "reg/app:latest",
        ] {
            assert!(is_floating(floating), "{floating}");
        }
        for fixed in [
            "nginx:1.28",
            "nginx@sha256:0123",
            "nginx:latest@sha256:0123",
            "127.0.0.1:5000/app:v1",
        ] {
            assert!(!is_floating(fixed), "{fixed}");
        }
    }

    #[test]
    fn repositories_used_outside_the_render_are_matched() {
        let listed = vec!["reg/app/migrate".to_owned()];
        let containers = [container("Deployment/cache", "redis:7.4")];
        let found = check(&listed, &BTreeSet::from(["reg/app/migrate"]), &containers);
        assert!(found.unmatched.is_empty());
    }
}
