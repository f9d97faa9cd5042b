//! Checks serde cannot make, turning the file's shape into the public model.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{
    AssetSourceFile, AssetsFile, BackupsFile, BeforeMigrateFile, ChartFile, ConfigFile,
    DatabaseFile, EncodingFile, EnvironmentFile, FrameworkFile, GitHubFile, MaintenanceFile,
    MigrateFile, RenderCacheFile, RenderFile, RunFile, TaskFile,
};
use super::{
    AssetSource, Assets, Backups, BeforeMigrate, Chart, Conclusion, Config, Database, Drill,
    Environment, Framework, GitHub, Kustomize, Maintenance, Migrate, MigrateOverlay,
    MigrationSource, RenderCache, Retention, RolloutSettings, RunSettings, SchemaSettings, Scope,
    Source, Task, TaskTarget,
};

/// One thing wrong with berth.yaml: where, what, and how to fix it.
#[derive(Debug)]
pub(super) struct Problem {
    /// The key path, such as `environments.staging.namespace`.
    pub key: String,
    /// What is wrong.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

impl Problem {
    /// The problem as one line naming berth.yaml at `path`.
    pub fn line(&self, path: &Path) -> String {
        format!(
            "{}: {}: {}; {}",
            path.display(),
            self.key,
            self.problem,
            self.fix
        )
    }

    /// Where and what, without the fix: `key: what is wrong`.
    pub fn summary(&self) -> String {
        format!("{}: {}", self.key, self.problem)
    }
}

/// Check `file` and build the model, or list every problem that is an
/// error. The file's own keys are always checked; an environment's only when
/// `scope` checks it: another environment with problems is left out of the
/// model, its problems kept in [`Config::skipped`]. Relative paths are
/// resolved against `dir`, berth.yaml's directory; `path` is berth.yaml.
pub(super) fn validate(
    file: ConfigFile,
    path: &Path,
    dir: &Path,
    scope: &Scope,
) -> Result<Config, Vec<Problem>> {
    let mut checker = Checker {
        dir,
        problems: Vec::new(),
    };
    checker.dns_label("app", &file.app, 63);
    checker.images(&file.images);
    let github = file.github.map(|github| checker.github(github));
    if file.releases_kept == 0 {
        checker.report(
            "releases_kept",
            "is 0, so no release would be recorded",
            "keep at least 1 (the default is 20)",
        );
    }
    if file.environments.is_empty() {
        checker.report(
            "environments",
            "lists no environment",
            "add one, e.g. `staging: { namespace: myapp-staging, overlay: overlays/staging }`",
        );
    }
    let environment_names: Vec<String> = file.environments.keys().cloned().collect();
    let kustomize = checker.render("render", file.render.as_ref(), Kustomize::Kubectl);
    let mut environments = BTreeMap::new();
    let mut skipped: BTreeMap<String, Vec<Problem>> = BTreeMap::new();
    for (name, environment) in file.environments {
        let before = checker.problems.len();
        let built = checker.environment(&file.app, &file.images, &kustomize, &name, environment);
        if !scope.checks(&name) && checker.problems.len() > before {
            skipped.insert(name, checker.problems.split_off(before));
        } else if let Some(built) = built {
            environments.insert(name, built);
        }
    }
    for (name, problem) in Checker::backup_locations(&environments, scope) {
        if scope.checks(&name) {
            checker.problems.push(problem);
        } else {
            skipped.entry(name).or_default().push(problem);
        }
    }
    environments.retain(|name, _| !skipped.contains_key(name));
    let render_cache = file
        .render_cache
        .map(|cache| checker.render_cache(cache, &environment_names));
    let tasks = file
        .tasks
        .into_iter()
        .filter_map(|(name, task)| {
            let task = checker.task(&name, task);
            Some((name, task?))
        })
        .collect();
    if !checker.problems.is_empty() {
        return Err(checker.problems);
    }
    Ok(Config {
        render_cache,
        app: file.app,
        images: file.images,
        github,
        releases_kept: file.releases_kept,
        environments,
        tasks,
        path: path.to_path_buf(),
        dir: dir.to_path_buf(),
        skipped: skipped
            .into_iter()
            .map(|(name, problems)| {
                let lines = problems.iter().map(Problem::summary).collect();
                (name, lines)
            })
            .collect(),
    })
}

/// A YAML value as a SQL literal: null, a quoted string (JSON text for lists
/// and maps), a number or a boolean. Quotes are doubled, so nothing in the
/// value is read as SQL.
fn sql_literal(value: &serde_json::Value) -> String {
    let quote = |text: &str| format!("'{}'", text.replace('\'', "''"));
    match value {
        serde_json::Value::Null => "NULL".to_string(),
        serde_json::Value::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(text) => quote(text),
        other => quote(&other.to_string()),
    }
}

/// Collects problems while checking one file.
struct Checker<'a> {
    /// berth.yaml's directory, against which relative paths resolve.
    dir: &'a Path,
    /// Every problem found so far.
    problems: Vec<Problem>,
}

impl Checker<'_> {
    /// Record a problem.
    fn report(
        &mut self,
        key: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.problems.push(Problem {
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        });
    }

    /// `value` must be a DNS-1123 label of at most `max` characters.
    fn dns_label(&mut self, key: &str, value: &str, max: usize) {
        if !is_dns_label(value, max) {
            self.report(
                key,
                format!("{value:?} is not a valid name"),
                format!(
                    "use at most {max} lowercase letters, digits and '-', starting and ending \
                     with a letter or digit, e.g. {:?}",
                    suggest_label(value, max)
                ),
            );
        }
    }

    /// `value` must be a DNS-1123 subdomain (the names of Secrets, ServiceAccounts, ...).
    fn dns_subdomain(&mut self, key: &str, value: &str) {
        let valid = value.len() <= 253 && value.split('.').all(|part| is_dns_label(part, 63));
        if !valid {
            self.report(
                key,
                format!("{value:?} is not a valid Kubernetes object name"),
                format!(
                    "use the object's name as Kubernetes shows it: lowercase letters, digits, \
                     '-' and '.', e.g. {:?}",
                    suggest_label(value, 63)
                ),
            );
        }
    }

    /// `images` must list at least one repository, each well formed and listed once.
    fn images(&mut self, images: &[String]) {
        if images.is_empty() {
            self.report(
                "images",
                "lists no image repository",
                "list the repositories CI builds and tags with the commit SHA, \
                 e.g. `images: [registry.example.com/myapp/web]`",
            );
        }
        let mut seen = BTreeSet::new();
        for (index, image) in images.iter().enumerate() {
            let key = format!("images[{index}]");
            self.repository(&key, image);
            if !seen.insert(image) {
                self.report(
                    key,
                    format!("{image:?} is listed twice"),
                    "remove the duplicate",
                );
            }
        }
    }

    /// `image` must be a repository: no tag, no digest, no blanks.
    fn repository(&mut self, key: &str, image: &str) {
        let repository = crate::image_ref::repository(image);
        if image.is_empty()
            || image.split('/').any(str::is_empty)
            || image.contains(char::is_whitespace)
        {
            self.report(
                key,
                format!("{image:?} is not an image repository"),
                "write it like registry.example.com/team/app, without spaces or empty path parts",
            );
        } else if repository != image {
            self.report(
                key,
                format!("{image:?} has a tag or digest"),
                format!("write {repository:?}: remove the tag; berth sets it to the SHA"),
            );
        }
    }

    /// Check the `github:` block.
    fn github(&mut self, github: GitHubFile) -> GitHub {
        let valid_repo = github.repo.split_once('/').is_some_and(|(owner, name)| {
            [owner, name].iter().all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            })
        });
        if !valid_repo {
            self.report(
                "github.repo",
                format!("{:?} is not a GitHub repository", github.repo),
                "write it as owner/name, as in the repository's URL github.com/owner/name",
            );
        }
        if github.branch.trim().is_empty() {
            self.report(
                "github.branch",
                "is empty",
                "name the branch to deploy from, e.g. `branch: master`, or remove the key",
            );
        }
        let required = github.required_checks.as_deref().unwrap_or_default();
        if github.required_checks.is_some() && required.is_empty() {
            self.report(
                "github.required_checks",
                "lists no check",
                "list the names of the checks that must pass before a commit is deployed, \
                 e.g. `required_checks: [ci]`, or remove the key to require every check",
            );
        }
        for (index, check) in required.iter().enumerate() {
            if check.trim().is_empty() {
                self.report(
                    format!("github.required_checks[{index}]"),
                    "is empty",
                    "write the check's name as GitHub shows it on a commit, or remove the entry",
                );
            }
        }
        let mut also_passing = Vec::new();
        for (index, name) in github.also_passing.iter().enumerate() {
            match name.as_str() {
                "neutral" => also_passing.push(Conclusion::Neutral),
                "skipped" => also_passing.push(Conclusion::Skipped),
                other => self.report(
                    format!("github.also_passing[{index}]"),
                    format!("{other:?} is not a conclusion berth can count as passed"),
                    "write `neutral` or `skipped` (`success` always passes; failures never do)",
                ),
            }
        }
        if !(1..=1000).contains(&github.depth) {
            self.report(
                "github.depth",
                format!("is {}", github.depth),
                "give how many of the branch's newest commits to consider, from 1 to 1000",
            );
        }
        GitHub {
            repo: github.repo,
            branch: github.branch,
            required_checks: github.required_checks,
            allow_failures: github.allow_failures,
            also_passing,
            depth: github.depth,
        }
    }

    /// Check one environment; `None` when its rendering source is unusable.
    fn environment(
        &mut self,
        app: &str,
        images: &[String],
        kustomize: &Kustomize,
        name: &str,
        environment: EnvironmentFile,
    ) -> Option<Environment> {
        let key = format!("environments.{name}");
        let kustomize = self.render(
            &format!("{key}.render"),
            environment.render.as_ref(),
            kustomize.clone(),
        );
        if is_dns_label(name, 63) {
            if app.len() + 1 + name.len() > 63 {
                self.report(
                    &key,
                    format!("`{app}-{name}` (app and environment) is longer than 63 characters"),
                    "shorten the environment's name or `app`: berth uses both in a Kubernetes label",
                );
            }
        } else {
            self.report(
                &key,
                format!("the environment name {name:?} is not a valid name"),
                format!(
                    "rename it to lowercase letters, digits and '-', e.g. {:?}",
                    suggest_label(name, 63)
                ),
            );
        }
        if environment
            .context
            .as_deref()
            .is_some_and(|context| context.trim().is_empty())
        {
            self.report(
                format!("{key}.context"),
                "is empty",
                "name a context from your kubeconfig (`kubectl config get-contexts`), \
                 or remove the key to use the current context",
            );
        }
        self.dns_label(&format!("{key}.namespace"), &environment.namespace, 63);
        let source = self.source(
            &key,
            app,
            &kustomize,
            environment.overlay,
            environment.chart,
        );
        let failed_jobs_kept = environment
            .migrate
            .as_ref()
            .and_then(|migrate| migrate.keep_failed)
            .unwrap_or(super::DEFAULT_KEEP_FAILED);
        let (migrate, schema) = match environment.migrate {
            Some(migrate) => {
                self.migrate(&format!("{key}.migrate"), app, images, &kustomize, migrate)
            }
            None => (None, None),
        };
        let rollout = RolloutSettings {
            timeout: self.positive(
                &format!("{key}.rollout.timeout"),
                environment.rollout.timeout.0,
            ),
            unschedulable_after: self.positive(
                &format!("{key}.rollout.unschedulable_after"),
                environment.rollout.unschedulable_after.0,
            ),
            unready_after: self.positive(
                &format!("{key}.rollout.unready_after"),
                environment.rollout.unready_after.0,
            ),
        };
        let maintenance = self.maintenance(&format!("{key}.maintenance"), environment.maintenance);
        let assets = match environment.assets {
            Some(assets) => Some(self.assets(&format!("{key}.assets"), assets)?),
            None => None,
        };
        let database = environment
            .database
            .map(|database| self.database(&format!("{key}.database"), database));
        let run = environment
            .run
            .map(|run| self.run(&format!("{key}.run"), run));
        let backups = environment
            .backups
            .map(|backups| self.backups(&key, name, database.as_ref(), backups));
        Some(Environment {
            context: environment.context,
            namespace: environment.namespace,
            protected: environment.protected.unwrap_or(name == "production"),
            source: source?,
            migrate,
            schema,
            rollout,
            assets,
            database,
            maintenance,
            run,
            backups,
            failed_jobs_kept,
        })
    }

    /// Two environments' backups must not share a bucket and prefix: each
    /// would list, prune and restore the other's backups. Each clash is
    /// returned with the environment it is reported under: one `scope`
    /// checks if there is one, so that using either environment finds it.
    fn backup_locations(
        environments: &BTreeMap<String, Environment>,
        scope: &Scope,
    ) -> Vec<(String, Problem)> {
        let mut seen: BTreeMap<(String, String), &str> = BTreeMap::new();
        let mut clashes = Vec::new();
        for (name, environment) in environments {
            let Some(backups) = &environment.backups else {
                continue;
            };
            let location = (backups.bucket.clone(), backups.prefix.clone());
            if let Some(first) = seen.insert(location, name) {
                let (this, other) = if scope.checks(name) || !scope.checks(first) {
                    (name.as_str(), first)
                } else {
                    (first, name.as_str())
                };
                let problem = Problem {
                    key: format!("environments.{this}.backups.prefix"),
                    problem: format!(
                        "is {:?} in bucket {}, as in environment {other}",
                        backups.prefix, backups.bucket
                    ),
                    fix: "give each environment its own prefix (the default is the \
                          environment's name) or its own bucket"
                        .to_owned(),
                };
                clashes.push((this.to_owned(), problem));
            }
        }
        clashes
    }

    /// Check the `backups:` block of environment `env` (at `key`), which
    /// needs the environment's `database.secret`.
    fn backups(
        &mut self,
        key: &str,
        env: &str,
        database: Option<&Database>,
        backups: BackupsFile,
    ) -> Backups {
        let at = format!("{key}.backups");
        if database.and_then(|d| d.secret.as_ref()).is_none() {
            self.report(
                &at,
                "needs `database.secret`",
                "backup pods connect to PostgreSQL with the libpq variables of a Secret: add \
                 `database: { workload: ..., secret: db-credentials }` whose Secret has PGHOST, \
                 PGPORT, PGUSER, PGPASSWORD and PGDATABASE as pods reach the database",
            );
        }
        self.bucket_name(&format!("{at}.bucket"), &backups.bucket);
        let prefix = match &backups.prefix {
            Some(prefix) => self.prefix(&format!("{at}.prefix"), prefix),
            None => format!("{env}/"),
        };
        if let Some(endpoint) = &backups.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            self.report(
                format!("{at}.endpoint"),
                format!("{endpoint:?} is not a URL"),
                "write the endpoint with its scheme, e.g. https://s3.example.com or http://127.0.0.1:9000",
            );
        }
        self.dns_subdomain(
            &format!("{at}.credentials_secret"),
            &backups.credentials_secret,
        );
        let image = backups
            .image
            .unwrap_or_else(|| format!("ghcr.io/berth-deploy/berth:{}", env!("CARGO_PKG_VERSION")));
        for (name, schedule) in [
            ("schedule", &backups.schedule),
            ("drill.schedule", &backups.drill.schedule),
        ] {
            if let Some(schedule) = schedule
                && schedule.split_whitespace().count() != 5
            {
                self.report(
                    format!("{at}.{name}"),
                    format!("{schedule:?} is not a five-field cron expression"),
                    "write minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\" for 03:00 daily",
                );
            }
        }
        if let Some(secret) = &backups.drill.secret {
            self.dns_subdomain(&format!("{at}.drill.secret"), secret);
        }
        for (i, query) in backups.drill.smoke.iter().enumerate() {
            if query.trim().is_empty() {
                self.report(
                    format!("{at}.drill.smoke[{i}]"),
                    "is empty",
                    "write a query whose first column is true when the data is right, \
                     e.g. SELECT count(*) > 0 FROM django_migrations",
                );
            }
        }
        let r = backups.retention;
        if r.daily + r.weekly + r.monthly == 0 && backups.schedule.is_some() {
            self.report(
                format!("{at}.retention"),
                "keeps no scheduled backup",
                "keep at least one, e.g. `retention: { daily: 7, weekly: 4, monthly: 12 }`",
            );
        }
        let before_migrate = match backups.before_migrate {
            Some(BeforeMigrateFile::Always) => BeforeMigrate::Always,
            Some(BeforeMigrateFile::Pending) => BeforeMigrate::Pending,
            Some(BeforeMigrateFile::Never) => BeforeMigrate::Never,
            None if env == "production" => BeforeMigrate::Pending,
            None => BeforeMigrate::Never,
        };
        Backups {
            bucket: backups.bucket,
            prefix,
            endpoint: backups.endpoint.map(|e| e.trim_end_matches('/').to_owned()),
            region: backups.region,
            credentials_secret: backups.credentials_secret,
            image,
            schedule: backups.schedule,
            time_zone: backups.time_zone,
            retention: Retention {
                daily: r.daily,
                weekly: r.weekly,
                monthly: r.monthly,
                manual: r.manual,
                pre_migrate: r.pre_migrate,
                pre_restore: r.pre_restore,
            },
            before_migrate,
            timeout: self.positive(&format!("{at}.timeout"), backups.timeout.0),
            drill: Drill {
                schedule: backups.drill.schedule,
                smoke: backups.drill.smoke,
                secret: backups.drill.secret,
            },
        }
    }

    /// Check the `run:` block.
    fn run(&mut self, key: &str, run: RunFile) -> RunSettings {
        self.dns_subdomain(&format!("{key}.workload"), &run.workload);
        if let Some(container) = &run.container {
            self.dns_label(&format!("{key}.container"), container, 63);
        }
        RunSettings {
            workload: run.workload,
            container: run.container,
            timeout: self.positive(&format!("{key}.timeout"), run.timeout.0),
        }
    }

    /// Check one task; `None` when it does not say where it runs.
    fn task(&mut self, name: &str, task: TaskFile) -> Option<Task> {
        let key = format!("tasks.{name}");
        if !is_dns_label(name, 63) {
            self.report(
                &key,
                format!("the task name {name:?} is not a valid name"),
                format!(
                    "rename it to lowercase letters, digits and '-', e.g. {:?}",
                    suggest_label(name, 63)
                ),
            );
        }
        if task.command.is_empty() || task.command[0].trim().is_empty() {
            self.report(
                format!("{key}.command"),
                "is empty",
                "give the program and its first arguments, e.g. `command: [./manage.py, import-modules]`",
            );
        }
        if let Some(container) = &task.container {
            self.dns_label(&format!("{key}.container"), container, 63);
        }
        let args_file = task.args_file.map(|file| {
            let resolved = self.dir.join(&file);
            if !resolved.is_file() {
                self.report(
                    format!("{key}.args_file"),
                    format!(
                        "{} does not exist (looked for {})",
                        file.display(),
                        resolved.display()
                    ),
                    "create the file (one argument per line), or fix its path \
                     (relative to berth.yaml's directory)",
                );
            }
            resolved
        });
        let timeout = self.positive(&format!("{key}.timeout"), task.timeout.0);
        let target = match (task.workload, task.pod) {
            (Some(workload), false) => {
                self.dns_subdomain(&format!("{key}.workload"), &workload);
                TaskTarget::Exec {
                    workload,
                    container: task.container,
                }
            }
            (None, true) => {
                if task.container.is_some() {
                    self.report(
                        format!("{key}.container"),
                        "is set on a task with `pod: true`",
                        "remove it: a one-off pod runs in the environment's `run.container`",
                    );
                }
                TaskTarget::Pod
            }
            (Some(_), true) => {
                self.report(
                    &key,
                    "has both `workload` and `pod: true`",
                    "keep one: `workload: NAME` runs in a Ready pod of that Deployment, \
                     `pod: true` in a one-off pod",
                );
                return None;
            }
            (None, false) => {
                self.report(
                    &key,
                    "does not say where it runs",
                    format!(
                        "add `workload: NAME` (a Deployment whose Ready pod runs it) or `pod: true` \
                         (a one-off pod, like `{} run`)",
                        crate::program::name()
                    ),
                );
                return None;
            }
        };
        let mut command = task.command;
        command.extend(task.args);
        Some(Task {
            target,
            command,
            args_file,
            timeout,
        })
    }

    /// Check the `render_cache:` block and build its SQL.
    fn render_cache(&mut self, cache: RenderCacheFile, environments: &[String]) -> RenderCache {
        let key = "render_cache";
        for (name, value) in [
            ("workflow_table", &cache.workflow_table),
            ("cache_table", &cache.cache_table),
            ("workflow_column", &cache.workflow_column),
        ] {
            self.sql_name(&format!("{key}.{name}"), value);
        }
        for column in cache.clear.keys() {
            self.sql_name(&format!("{key}.clear.{column}"), column);
        }
        if cache.clear.is_empty() {
            self.report(
                format!("{key}.clear"),
                "lists no column",
                "name each cache column and its empty value, e.g. `clear: { cached_result: null }`",
            );
        }
        let lock_sql = cache.lock_sql.unwrap_or_else(|| {
            format!(
                "SELECT id FROM {} WHERE id = $1 FOR UPDATE",
                cache.workflow_table
            )
        });
        if !lock_sql.contains("$1") {
            self.report(
                format!("{key}.lock_sql"),
                "does not use $1",
                "write the SQL that locks one workflow, its id being $1, e.g. \
                 `SELECT id FROM workflow WHERE id = $1 FOR UPDATE`",
            );
        }
        let lock_timeout = self.positive(&format!("{key}.lock_timeout"), cache.lock_timeout.0);
        for (env, bucket) in &cache.buckets {
            if !environments.contains(env) {
                self.report(
                    format!("{key}.buckets.{env}"),
                    "names no environment",
                    format!("use an environment's name: {}", environments.join(", ")),
                );
            }
            self.bucket_name(&format!("{key}.buckets.{env}"), bucket);
        }
        if !cache.prefix.contains("{workflow}") || cache.prefix.starts_with('/') {
            self.report(
                format!("{key}.prefix"),
                format!(
                    "{:?} does not place {{workflow}} in a relative key",
                    cache.prefix
                ),
                "write the key prefix of one workflow's objects, e.g. `wf-{workflow}/`",
            );
        } else if !cache.prefix.ends_with('/') {
            self.report(
                format!("{key}.prefix"),
                format!("{:?} does not end with /", cache.prefix),
                "end it with / so one workflow's prefix never matches another's \
                 (wf-1/ must not match wf-10/)",
            );
        }
        if let Some(secret) = &cache.credentials_secret {
            self.dns_subdomain(&format!("{key}.credentials_secret"), secret);
        }
        let assignments: Vec<String> = cache
            .clear
            .iter()
            .map(|(column, value)| format!("{column} = {}", sql_literal(value)))
            .collect();
        let differs: Vec<String> = cache
            .clear
            .iter()
            .map(|(column, value)| format!("{column} IS DISTINCT FROM {}", sql_literal(value)))
            .collect();
        RenderCache {
            list_sql: format!("SELECT id::int8 FROM {} ORDER BY id", cache.workflow_table),
            lock_sql,
            lock_timeout,
            clear_sql: format!(
                "UPDATE {} SET {} WHERE {} = $1",
                cache.cache_table,
                assignments.join(", "),
                cache.workflow_column
            ),
            count_sql: format!(
                "SELECT count(*) FROM {} WHERE {} = $1 AND ({})",
                cache.cache_table,
                cache.workflow_column,
                differs.join(" OR ")
            ),
            buckets: cache.buckets,
            prefix: cache.prefix,
            endpoint: cache.endpoint,
            region: cache.region,
            credentials_secret: cache.credentials_secret,
        }
    }

    /// `value` must be a lowercase SQL identifier, optionally schema-qualified.
    fn sql_name(&mut self, key: &str, value: &str) {
        let part = |p: &str| {
            p.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        let valid = match value.split_once('.') {
            Some((schema, name)) => part(schema) && part(name),
            None => part(value),
        };
        if !valid {
            self.report(
                key,
                format!("{value:?} is not a plain SQL name"),
                "use lowercase letters, digits and _, optionally schema-qualified (public.step)",
            );
        }
    }

    /// Check the `database:` block.
    fn database(&mut self, key: &str, database: DatabaseFile) -> Database {
        self.dns_subdomain(&format!("{key}.workload"), &database.workload);
        if let Some(container) = &database.container {
            self.dns_label(&format!("{key}.container"), container, 63);
        }
        if let Some(secret) = &database.secret {
            self.dns_subdomain(&format!("{key}.secret"), secret);
        }
        if database.port == 0 {
            self.report(
                format!("{key}.port"),
                "is 0",
                "give the pod's port that reaches PostgreSQL, e.g. 5432",
            );
        }
        Database {
            workload: database.workload,
            container: database.container,
            secret: database.secret,
            port: database.port,
        }
    }

    /// Check the `maintenance:` block: Service names, the image, the page.
    fn maintenance(&mut self, key: &str, maintenance: MaintenanceFile) -> Maintenance {
        if let Some(services) = &maintenance.services {
            if services.is_empty() {
                self.report(
                    format!("{key}.services"),
                    "lists no Service",
                    "name the Services to switch, e.g. `services: [frontend]`, or remove the \
                     key to switch every Service of the environment",
                );
            }
            let mut seen = BTreeSet::new();
            for (index, service) in services.iter().enumerate() {
                let service_key = format!("{key}.services[{index}]");
                self.dns_label(&service_key, service, 63);
                if !seen.insert(service) {
                    self.report(
                        service_key,
                        format!("{service:?} is listed twice"),
                        "remove the duplicate",
                    );
                }
            }
        }
        if maintenance.image.trim().is_empty() || maintenance.image.contains(char::is_whitespace) {
            self.report(
                format!("{key}.image"),
                format!("{:?} is not an image", maintenance.image),
                "name an image with nginx, e.g. `nginx:1.28-alpine`, or remove the key",
            );
        }
        if maintenance.port == 0 {
            self.report(
                format!("{key}.port"),
                "is 0",
                "give a port from 1 to 65535 (the default is 8080)",
            );
        }
        if maintenance.title.trim().is_empty() {
            self.report(
                format!("{key}.title"),
                "is empty",
                "write the page's title, e.g. `title: Down for maintenance`, or remove the key",
            );
        }
        Maintenance {
            retry_after: self.positive(&format!("{key}.retry_after"), maintenance.retry_after.0),
            timeout: self.positive(&format!("{key}.timeout"), maintenance.timeout.0),
            services: maintenance.services,
            image: maintenance.image,
            port: maintenance.port,
            title: maintenance.title,
            message: maintenance.message,
        }
    }

    /// Exactly one of `overlay` and `chart`, pointing at something renderable.
    fn source(
        &mut self,
        key: &str,
        app: &str,
        kustomize: &Kustomize,
        overlay: Option<PathBuf>,
        chart: Option<ChartFile>,
    ) -> Option<Source> {
        match (overlay, chart) {
            (Some(overlay), None) => {
                let overlay = self.overlay(&format!("{key}.overlay"), &overlay);
                Some(Source::Kustomize {
                    overlay,
                    kustomize: kustomize.clone(),
                })
            }
            (None, Some(chart)) => Some(self.chart(&format!("{key}.chart"), app, chart)),
            (Some(_), Some(_)) => {
                self.report(
                    key,
                    "has both `overlay` and `chart`",
                    "keep one: `overlay` for a kustomize directory, `chart` for a helm chart",
                );
                None
            }
            (None, None) => {
                self.report(
                    key,
                    "has neither `overlay` nor `chart`",
                    format!(
                        "add `overlay: overlays/{}` (a kustomize directory) or \
                         `chart: {{ path: charts/{app} }}` (a helm chart)",
                        key.trim_start_matches("environments.")
                    ),
                );
                None
            }
        }
    }

    /// The overlay must be a directory holding a kustomization file.
    fn overlay(&mut self, key: &str, overlay: &Path) -> PathBuf {
        let resolved = self.dir.join(overlay);
        if !resolved.is_dir() {
            self.report(
                key,
                format!(
                    "{} is not a directory (looked for {})",
                    overlay.display(),
                    resolved.display()
                ),
                "point it at the kustomize directory, relative to berth.yaml's directory",
            );
        } else if !["kustomization.yaml", "kustomization.yml", "Kustomization"]
            .iter()
            .any(|file| resolved.join(file).is_file())
        {
            self.report(
                key,
                format!("{} has no kustomization.yaml", resolved.display()),
                "create kustomization.yaml there, or point `overlay` at the directory that has it",
            );
        }
        resolved
    }

    /// The chart: a directory holding Chart.yaml (with a Chart.lock when it
    /// declares dependencies), an `oci://` chart or a repository's chart at
    /// one exact version; every values file must exist; `set:` keys must be
    /// helm key paths.
    fn chart(&mut self, key: &str, app: &str, chart: ChartFile) -> Source {
        let from = self.chart_from(key, &chart);
        let values = chart
            .values
            .iter()
            .enumerate()
            .map(|(index, file)| {
                let resolved = self.dir.join(file);
                if !resolved.is_file() {
                    self.report(
                        format!("{key}.values[{index}]"),
                        format!("{} does not exist (looked for {})", file.display(), resolved.display()),
                        "create the values file, or fix its path (relative to berth.yaml's directory)",
                    );
                }
                resolved
            })
            .collect();
        for name in chart.set.keys() {
            if !is_set_key(name) {
                self.report(
                    format!("{key}.set"),
                    format!("{name:?} is not a helm key path"),
                    "write names joined by dots, each with optional [N] indexes, such as \
                     `image.tag` or `ingress.hosts[0].host`; a key with other characters \
                     (a dot in an annotation's name) goes in a values file",
                );
            }
        }
        let release = chart.release.unwrap_or_else(|| app.to_owned());
        self.dns_label(&format!("{key}.release"), &release, 53);
        Source::Helm {
            chart: from,
            values,
            set: chart.set,
            release,
        }
    }

    /// Where the chart comes from: exactly one of `path` and `repo`, a
    /// remote chart with an exact `version`, a directory without one.
    fn chart_from(&mut self, key: &str, chart: &ChartFile) -> Chart {
        let placeholder = Chart::Dir(self.dir.join(chart.path.as_deref().unwrap_or_default()));
        match (chart.path.as_deref(), chart.repo.as_deref()) {
            (Some(_), Some(_)) => {
                self.report(
                    key,
                    "has both `path` and `repo`",
                    "keep `path` for a chart directory or an `oci://REGISTRY/REPO/NAME` chart, \
                     or `repo` with `name` and `version` for a chart repository's chart",
                );
                placeholder
            }
            (None, None) => {
                self.report(
                    key,
                    "has neither `path` nor `repo`",
                    "add `path: charts/NAME` (a chart directory), `path: oci://REGISTRY/REPO/NAME` \
                     with `version`, or `repo: URL` with `name` and `version`",
                );
                placeholder
            }
            (Some(path), None) if path.starts_with("oci://") => {
                self.not_for(
                    key,
                    "name",
                    chart.name.is_some(),
                    "the chart's name is the last part of the `oci://` path",
                );
                self.oci_reference(&format!("{key}.path"), path);
                let version = self.chart_version(key, chart.version.as_deref());
                Chart::Oci {
                    reference: path.trim_end_matches('/').to_owned(),
                    version,
                    plain_http: is_loopback_host(host_of(&path["oci://".len()..])),
                }
            }
            (Some(path), None) if path.contains("://") => {
                self.report(
                    format!("{key}.path"),
                    format!("{path:?} is neither a directory nor an `oci://` chart"),
                    "for a chart repository write `repo: URL` with `name: CHART` and `version`; \
                     for a registry `path: oci://REGISTRY/REPO/NAME`",
                );
                placeholder
            }
            (Some(path), None) => {
                self.not_for(
                    key,
                    "name",
                    chart.name.is_some(),
                    "a chart directory's name is in its Chart.yaml",
                );
                self.not_for(
                    key,
                    "version",
                    chart.version.is_some(),
                    "a chart directory's version is in its Chart.yaml",
                );
                let dir = self.dir.join(path);
                self.chart_dir(&format!("{key}.path"), &dir);
                Chart::Dir(dir)
            }
            (None, Some(url)) => {
                self.repo_url(&format!("{key}.repo"), url);
                let name = match chart.name.as_deref() {
                    Some(name) if !name.is_empty() && !name.contains(['/', ' ', ':']) => {
                        name.to_owned()
                    }
                    Some(name) => {
                        self.report(
                            format!("{key}.name"),
                            format!("{name:?} is not a chart name"),
                            "write the chart's name as the repository lists it (`helm search repo`)",
                        );
                        name.to_owned()
                    }
                    None => {
                        self.report(
                            format!("{key}.name"),
                            "is missing: `repo` needs the chart's name",
                            "add `name: CHART`, the chart's name as the repository lists it",
                        );
                        String::new()
                    }
                };
                let version = self.chart_version(key, chart.version.as_deref());
                Chart::Repo {
                    url: url.trim_end_matches('/').to_owned(),
                    name,
                    version,
                }
            }
        }
    }

    /// `{key}.{field}`, given (`present`), has no place here: `why`.
    fn not_for(&mut self, key: &str, field: &str, present: bool, why: &str) {
        if present {
            self.report(
                format!("{key}.{field}"),
                format!("has no place here: {why}"),
                format!("remove `{field}`"),
            );
        }
    }

    /// A chart directory holds Chart.yaml; one that declares dependencies
    /// holds Chart.lock too (berth builds them from the lock, never
    /// resolving versions itself).
    fn chart_dir(&mut self, key: &str, dir: &Path) {
        let Ok(text) = std::fs::read_to_string(dir.join("Chart.yaml")) else {
            self.report(
                key,
                format!("{} has no Chart.yaml", dir.display()),
                "point `path` at the chart's directory, relative to berth.yaml's directory, \
                 or at `oci://REGISTRY/REPO/NAME` with `version`",
            );
            return;
        };
        /// The part of Chart.yaml read here; helm reports the rest.
        #[derive(serde::Deserialize)]
        struct Dependencies {
            #[serde(default)]
            dependencies: Option<Vec<serde::de::IgnoredAny>>,
        }
        let declared = serde_norway::from_str::<Dependencies>(&text)
            .ok()
            .and_then(|chart| chart.dependencies)
            .is_some_and(|dependencies| !dependencies.is_empty());
        if declared && !dir.join("Chart.lock").is_file() {
            self.report(
                key,
                format!(
                    "{} declares dependencies in Chart.yaml but has no Chart.lock",
                    dir.display()
                ),
                format!(
                    "run `helm dependency update {}` and commit Chart.lock (berth builds the \
                     dependencies it locks, outside the repository)",
                    dir.display()
                ),
            );
        }
    }

    /// `oci://REGISTRY/REPO/NAME`: a registry, a path, no tag or digest.
    fn oci_reference(&mut self, key: &str, reference: &str) {
        let rest = reference.trim_start_matches("oci://").trim_end_matches('/');
        let (registry, path) = rest.split_once('/').unwrap_or((rest, ""));
        let last = path.rsplit('/').next().unwrap_or_default();
        if last.contains(['@', ':']) {
            self.report(
                key,
                format!("{reference:?} names a tag or digest"),
                "write the chart without it, `oci://REGISTRY/REPO/NAME`, and its version in `version`",
            );
        } else if registry.is_empty()
            || path.is_empty()
            || path.split('/').any(|part| !is_repository_part(part))
        {
            self.report(
                key,
                format!("{reference:?} is not an OCI chart reference"),
                "write `oci://REGISTRY/REPO/NAME` (lowercase), e.g. `oci://ghcr.io/acme/charts/web`",
            );
        }
    }

    /// A chart repository's URL: https, or http on this machine only (a
    /// chart fetched over plain http could be changed on the way).
    fn repo_url(&mut self, key: &str, url: &str) {
        if url.starts_with("oci://") {
            self.report(
                key,
                format!("{url:?} is an OCI registry, not a chart repository"),
                "write `path: oci://REGISTRY/REPO/NAME` with `version`, without `repo` and `name`",
            );
        } else if let Some(rest) = url.strip_prefix("http://") {
            if !is_loopback_host(host_of(rest)) {
                self.report(
                    key,
                    format!("{url:?} is plain http"),
                    "serve the repository over https (a chart fetched over http could be changed \
                     on the way); plain http is for 127.0.0.1 and localhost only",
                );
            }
        } else if !url.starts_with("https://") || host_of(&url["https://".len()..]).is_empty() {
            self.report(
                key,
                format!("{url:?} is not a chart repository URL"),
                "write the repository's https URL, the one `helm repo add` takes",
            );
        }
    }

    /// A remote chart's version: given, exact, semantic.
    fn chart_version(&mut self, key: &str, version: Option<&str>) -> String {
        let key = format!("{key}.version");
        match version {
            None => self.report(
                key,
                "is missing: a chart from a registry or repository is pinned to one version",
                "add `version: X.Y.Z`, the chart version to deploy (`helm show chart REF` shows the newest)",
            ),
            Some(version) if is_exact_version(version) => {}
            Some(version) if is_version_range(version) => {
                self.report(
                    key,
                    format!("{version:?} is a range, not one version"),
                    "write one exact version such as `1.2.3`: berth pulls each version once and \
                     every deploy renders the same chart",
                )
            }
            Some(version) => self.report(
                key,
                format!("{version:?} is not a chart version"),
                "write the chart's exact semantic version, such as `1.2.3` or `1.2.3-rc.1`",
            ),
        }
        version.unwrap_or_default().to_owned()
    }

    /// Check the migration: its image is one of `images`, its names are
    /// valid. The Job berth builds (when `image` is given) and the
    /// framework (when `framework` is).
    fn migrate(
        &mut self,
        key: &str,
        app: &str,
        images: &[String],
        kustomize: &Kustomize,
        migrate: MigrateFile,
    ) -> (Option<MigrationSource>, Option<SchemaSettings>) {
        let schema = migrate.framework.map(|framework| SchemaSettings {
            framework: match framework {
                FrameworkFile::Django => Framework::Django,
                FrameworkFile::Rails => Framework::Rails,
                FrameworkFile::Alembic => Framework::Alembic,
                FrameworkFile::Flyway => Framework::Flyway,
                FrameworkFile::Laravel => Framework::Laravel,
                FrameworkFile::Other => Framework::Other,
            },
            manage: migrate
                .manage
                .clone()
                .unwrap_or_else(|| vec!["python3".into(), "manage.py".into()]),
        });
        if migrate
            .manage
            .as_ref()
            .is_some_and(|c| c.first().is_none_or(|program| program.trim().is_empty()))
        {
            self.report(
                format!("{key}.manage"),
                "names no program",
                "write how the migration image runs manage.py, e.g. [python3, manage.py], \
                 or leave the key out",
            );
        }
        let job_keys = [
            ("command", !migrate.command.is_empty()),
            ("args", !migrate.args.is_empty()),
            ("env_from", !migrate.env_from.is_empty()),
            ("service_account", migrate.service_account.is_some()),
        ];
        if let Some(overlay) = &migrate.overlay {
            if migrate.image.is_some() {
                self.report(
                    format!("{key}.overlay"),
                    "is given with `image`",
                    "keep one: `overlay` runs the repository's own migration Pod or Job, \
                     `image` has berth build one",
                );
            }
            if let Some((name, _)) = job_keys.iter().find(|(_, given)| *given) {
                self.report(
                    format!("{key}.{name}"),
                    "is given with `overlay`",
                    "the Pod or Job in the overlay says it: change it there, or remove the key",
                );
            }
            let source = self.migration_overlay(&format!("{key}.overlay"), app, kustomize, overlay);
            let overlay = MigrateOverlay {
                source,
                name: migrate.name,
                container: migrate.container,
                deadline: self.positive(&format!("{key}.deadline"), migrate.deadline.0),
                pending_check: migrate.pending_check,
            };
            return (Some(MigrationSource::Overlay(overlay)), schema);
        }
        for (field, given) in [
            ("name", migrate.name.is_some()),
            ("container", migrate.container.is_some()),
        ] {
            if given {
                self.report(
                    format!("{key}.{field}"),
                    "is given without `overlay`",
                    "it names the Pod or Job (or its container) in `migrate.overlay`: add \
                     `overlay`, or remove the key",
                );
            }
        }
        let Some(image) = migrate.image else {
            let job_keys = job_keys
                .into_iter()
                .chain([("pending_check", migrate.pending_check.is_some())]);
            if let Some((name, _)) = job_keys.clone().find(|(_, given)| *given) {
                self.report(
                    format!("{key}.{name}"),
                    "is given without `image`",
                    "add `image` (berth builds the migration Job from this block), or keep the \
                     Job in the overlay (labelled berth.dev/role: migration) and leave only \
                     `framework` here",
                );
            } else if schema.is_none() && migrate.keep_failed.is_none() {
                self.report(
                    key.to_string(),
                    "names neither `image`, `overlay` nor `framework`",
                    "add `image: REPOSITORY` (berth builds the migration Job), `overlay: PATH` \
                     (the repository's own migration Pod or Job), or `framework: django` for \
                     the overlay's migration Job, or remove the block",
                );
            }
            return (None, schema);
        };
        let image_key = format!("{key}.image");
        self.repository(&image_key, &image);
        if crate::image_ref::repository(&image) == image && !images.contains(&image) {
            self.report(
                image_key,
                format!("{image:?} is not listed in `images`"),
                format!(
                    "add {image:?} to `images`: the migration runs the image CI built for the SHA"
                ),
            );
        }
        for (index, entry) in migrate.env_from.iter().enumerate() {
            self.dns_subdomain(&format!("{key}.env_from[{index}].secret"), &entry.secret);
        }
        if let Some(account) = &migrate.service_account {
            self.dns_subdomain(&format!("{key}.service_account"), account);
        }
        if migrate
            .pending_check
            .as_ref()
            .is_some_and(|c| c.first().is_none_or(|program| program.trim().is_empty()))
        {
            self.report(
                format!("{key}.pending_check"),
                "names no program",
                "write the command and its arguments, e.g. [python3, manage.py, migrate, --check], \
                 or leave the key out",
            );
        }
        let job = Migrate {
            deadline: self.positive(&format!("{key}.deadline"), migrate.deadline.0),
            image,
            command: migrate.command,
            args: migrate.args,
            env_from_secrets: migrate
                .env_from
                .into_iter()
                .map(|entry| entry.secret)
                .collect(),
            service_account: migrate.service_account,
            pending_check: migrate.pending_check,
        };
        (Some(MigrationSource::Built(job)), schema)
    }

    /// `migrate.overlay`: a chart directory (Chart.yaml) rendered with helm
    /// (release: the app), else a kustomize directory rendered like the
    /// environment's overlays.
    fn migration_overlay(
        &mut self,
        key: &str,
        app: &str,
        kustomize: &Kustomize,
        overlay: &Path,
    ) -> Source {
        let resolved = self.dir.join(overlay);
        if resolved.join("Chart.yaml").is_file() {
            return Source::Helm {
                chart: Chart::Dir(resolved),
                values: Vec::new(),
                set: BTreeMap::new(),
                release: app.to_owned(),
            };
        }
        Source::Kustomize {
            overlay: self.overlay(key, overlay),
            kustomize: kustomize.clone(),
        }
    }

    /// The kustomize that `render:` at `key` names, else `inherited`.
    fn render(
        &mut self,
        key: &str,
        render: Option<&RenderFile>,
        inherited: Kustomize,
    ) -> Kustomize {
        let Some(binary) = render.and_then(|render| render.kustomize.as_deref()) else {
            return inherited;
        };
        if binary.trim().is_empty() {
            self.report(
                format!("{key}.kustomize"),
                "is empty",
                "name a standalone kustomize (`kustomize`, looked up in PATH) or its path, \
                 or remove the key to render with `kubectl kustomize`",
            );
            return inherited;
        }
        if binary.contains('/') {
            Kustomize::Standalone(self.dir.join(binary))
        } else {
            Kustomize::Standalone(PathBuf::from(binary))
        }
    }

    /// Check the `assets:` block; `None` when its source is unusable.
    fn assets(&mut self, key: &str, assets: AssetsFile) -> Option<Assets> {
        let from = self.asset_source(&format!("{key}.from"), assets.from);
        self.bucket_name(&format!("{key}.bucket"), &assets.bucket);
        let prefix = self.prefix(&format!("{key}.prefix"), &assets.prefix);
        if let Some(endpoint) = &assets.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            self.report(
                format!("{key}.endpoint"),
                format!("{endpoint:?} is not a URL"),
                "write the endpoint with its scheme, e.g. https://storage.googleapis.com \
                 or http://127.0.0.1:9000",
            );
        }
        if let Some(secret) = &assets.credentials_secret {
            self.dns_subdomain(&format!("{key}.credentials_secret"), secret);
        }
        for (name, value) in [
            ("cache_control", &assets.cache_control),
            ("immutable_cache_control", &assets.immutable_cache_control),
        ] {
            if value.trim().is_empty() || value.contains(['\r', '\n']) {
                self.report(
                    format!("{key}.{name}"),
                    "is empty or spans lines",
                    "write one Cache-Control header value, e.g. `public, max-age=300`",
                );
            }
        }
        if !(1..=512).contains(&assets.concurrency) {
            self.report(
                format!("{key}.concurrency"),
                format!("is {}", assets.concurrency),
                "allow between 1 and 512 requests at once (the default is 64)",
            );
        }
        Some(Assets {
            from: from?,
            bucket: assets.bucket,
            prefix,
            endpoint: assets.endpoint.map(|e| e.trim_end_matches('/').to_owned()),
            region: assets.region,
            credentials_secret: assets.credentials_secret,
            cache_control: assets.cache_control,
            immutable_cache_control: assets.immutable_cache_control,
            gzip: assets.precompress.contains(&EncodingFile::Gzip),
            brotli: assets.precompress.contains(&EncodingFile::Br),
            concurrency: assets.concurrency,
        })
    }

    /// Exactly one of `image` (with `path`), `dir` and `s3`.
    fn asset_source(&mut self, key: &str, from: AssetSourceFile) -> Option<AssetSource> {
        let example = "write one of `from: { image: registry.example.com/app/frontend, path: /app/static }`, \
                       `from: { dir: build/static }` or `from: { s3: s3://builds/{sha}/static/ }`";
        match (from.image, from.path, from.dir, from.s3) {
            (Some(image), Some(path), None, None) => {
                self.repository(&format!("{key}.image"), &image);
                if !path.starts_with('/') {
                    self.report(
                        format!("{key}.path"),
                        format!("{path:?} is not an absolute path"),
                        format!("write the directory as the image has it, e.g. \"/{path}\""),
                    );
                }
                Some(AssetSource::Image {
                    repository: image,
                    path,
                })
            }
            (Some(_), None, None, None) => {
                self.report(
                    key,
                    "has `image` but no `path`",
                    "add `path:`, the directory inside the image that holds the assets, e.g. /app/static",
                );
                None
            }
            (None, Some(_), None, None) => {
                self.report(
                    key,
                    "has `path` but no `image`",
                    "add `image:`, the repository (no tag) whose :SHA image holds the assets",
                );
                None
            }
            (None, None, Some(dir), None) if !dir.trim().is_empty() => {
                Some(AssetSource::Dir(self.dir.join(dir)))
            }
            (None, None, None, Some(url)) => {
                let Some((bucket, prefix)) = url
                    .strip_prefix("s3://")
                    .map(|rest| rest.split_once('/').unwrap_or((rest, "")))
                    .filter(|(bucket, _)| !bucket.is_empty())
                else {
                    self.report(
                        format!("{key}.s3"),
                        format!("{url:?} is not an s3:// URL"),
                        "write it as s3://BUCKET/PREFIX/, e.g. s3://builds/{sha}/static/",
                    );
                    return None;
                };
                let prefix = self.prefix(&format!("{key}.s3"), prefix);
                Some(AssetSource::S3 {
                    bucket: bucket.to_owned(),
                    prefix,
                })
            }
            _ => {
                self.report(
                    key,
                    "does not say where the assets come from, or says it twice",
                    example,
                );
                None
            }
        }
    }

    /// An S3 bucket name: 3 to 63 lowercase letters, digits, '-' and '.'.
    fn bucket_name(&mut self, key: &str, bucket: &str) {
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid {
            self.report(
                key,
                format!("{bucket:?} is not a bucket name"),
                "write the bucket's name alone (no s3:// and no path): 3 to 63 lowercase \
                 letters, digits, '-' and '.'",
            );
        }
    }

    /// A key prefix: no leading `/`, no empty parts; returned ending in `/` unless empty.
    fn prefix(&mut self, key: &str, prefix: &str) -> String {
        let trimmed = prefix.trim_end_matches('/');
        if prefix.starts_with('/') || trimmed.split('/').any(str::is_empty) && !trimmed.is_empty() {
            self.report(
                key,
                format!("{prefix:?} is not a key prefix"),
                "write it without a leading '/' or empty parts, e.g. `static/`",
            );
        }
        if trimmed.is_empty() {
            String::new()
        } else {
            format!("{trimmed}/")
        }
    }

    /// A duration that must not be zero.
    fn positive(&mut self, key: &str, duration: Duration) -> Duration {
        if duration.is_zero() {
            self.report(key, "is zero", "give it time, e.g. 10m");
        }
        duration
    }
}

/// Whether `value` is a DNS-1123 label of at most `max` characters.
/// The host of `rest`, a URL after its `scheme://`: without user, port or path.
fn host_of(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    }
}

/// Whether `host` is this machine: `localhost`, 127.0.0.0/8 or ::1. Traffic
/// to it never leaves the machine, so plain http is safe there.
fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A part of an OCI repository path: lowercase letters and digits, joined
/// by `.`, `_`, `__` or `-`s.
fn is_repository_part(part: &str) -> bool {
    let bytes = part.as_bytes();
    !part.is_empty()
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && part
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// `MAJOR.MINOR.PATCH`, optionally `-PRERELEASE` and `+BUILD`: one exact
/// semantic version, as `file::CHART_VERSION` describes it.
pub(super) fn is_exact_version(version: &str) -> bool {
    let (rest, build) = version.split_once('+').unwrap_or((version, ""));
    let (core, pre) = rest.split_once('-').unwrap_or((rest, ""));
    let identifiers = |text: &str| {
        text.split('.')
            .all(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    };
    let numbers: Vec<&str> = core.split('.').collect();
    numbers.len() == 3
        && numbers
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        && (!version.contains('-') || !pre.is_empty() && identifiers(pre))
        && (!version.contains('+') || !build.is_empty() && identifiers(build))
}

/// A version constraint helm would resolve (`^1.2`, `~1.2.3`, `>=1`,
/// `1.x`, `1.2`), rather than one version.
fn is_version_range(version: &str) -> bool {
    let parts: Vec<&str> = version.split('.').collect();
    version.contains(['^', '~', '<', '>', '=', '*', '|', ',', ' '])
        || parts.iter().any(|part| part.eq_ignore_ascii_case("x"))
        || (parts.len() < 3 && parts.iter().all(|part| part.parse::<u64>().is_ok()))
}

/// A helm key path, as `file::SET_KEY` describes it: names of letters,
/// digits, `_`, `-` and `/`, joined by dots, each with optional `[N]`.
fn is_set_key(key: &str) -> bool {
    key.split('.').all(|part| {
        let (name, indexes) = part.split_once('[').map_or((part, ""), |(n, i)| (n, i));
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-/".contains(&b));
        let indexes_ok = indexes.is_empty()
            || format!("[{indexes}")
                .strip_suffix(']')
                .is_some_and(|inner| {
                    inner[1..]
                        .split("][")
                        .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                });
        name_ok && indexes_ok
    })
}

fn is_dns_label(value: &str, max: usize) -> bool {
    let bytes = value.as_bytes();
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !value.is_empty()
        && value.len() <= max
        && bytes.iter().all(|b| alphanumeric(b) || *b == b'-')
        && bytes.first().is_some_and(alphanumeric)
        && bytes.last().is_some_and(alphanumeric)
}

/// The nearest valid label to `value`: lowercase, other characters as '-'.
fn suggest_label(value: &str, max: usize) -> String {
    let mapped: String = value
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .take(max)
        .collect();
    let trimmed = mapped.trim_matches('-');
    if trimmed.is_empty() {
        "myapp".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for good in [
            "a",
            "workbench",
            "workbench-staging",
            "0abc9",
            &"a".repeat(63),
        ] {
            assert!(is_dns_label(good, 63), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "ä", &"a".repeat(64)] {
            assert!(!is_dns_label(bad, 63), "{bad}");
        }
    }

    #[test]
    fn suggestions_are_valid_labels() {
        assert_eq!(suggest_label("Workbench_Staging", 63), "workbench-staging");
        assert_eq!(suggest_label("__", 63), "myapp");
        assert!(is_dns_label(&suggest_label(&"X".repeat(100), 63), 63));
    }
}
