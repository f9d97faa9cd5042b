//! The command-line interface: clap types only, no behaviour.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::duration;
use crate::output::OutputFormat;

/// Deploy web applications to Kubernetes by git SHA, and run the operations
/// around a deploy.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    long_version = crate::version::LONG,
    propagate_version = true
)]
pub struct Cli {
    /// Options read before the command runs (each command offers those it uses).
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options read before the command runs. They go before the command or
/// after it (`berth --output json status`, `berth status --output json`);
/// each command offers only those it uses ([`command`] adds them, and
/// [`parse_from`] refuses one given for a command that ignores it).
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The berth.yaml describing the app and its environments [default: the
    /// first berth.yaml from the current directory up to the repository's
    /// root, as git finds its repository].
    #[arg(long, env = "BERTH_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// How to report progress and results.
    #[arg(long, value_enum, default_value_t = OutputFormat::Auto)]
    pub output: OutputFormat,
    /// More detail in logs (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Also write the log, at debug level (as `-vv` shows it), to this file.
    #[arg(long, env = "BERTH_LOG_FILE", value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

/// The ids of [`GlobalArgs`]' options.
const GLOBAL_IDS: [&str; 4] = ["config", "output", "verbose", "log_file"];

/// The options of [`GlobalArgs`] that the command at `path` (its names,
/// `["config", "schema"]`) does not use: a shell script, man pages and a
/// fixed schema read no berth.yaml, report nothing and log nothing;
/// `version` reads the kubeconfig, not berth.yaml.
fn ignored_globals(path: &[&str]) -> &'static [&'static str] {
    match path {
        ["completions"] | ["man-pages"] | ["config", "schema"] => &GLOBAL_IDS,
        ["version"] => &["config"],
        _ => &[],
    }
}

/// berth's command tree: [`Cli`] with each [`GlobalArgs`] option offered
/// by every command that uses it (and not by those that ignore it). Help,
/// completions and man pages come from this.
pub fn command() -> clap::Command {
    let mut root = Cli::command();
    let shared: Vec<clap::Arg> = root
        .get_arguments()
        .filter(|arg| GLOBAL_IDS.contains(&arg.get_id().as_str()))
        .cloned()
        .collect();
    offer_globals(&mut root, &shared, &mut Vec::new());
    root
}

/// Add the `shared` options each subcommand of `command` (at `path`) uses.
fn offer_globals(command: &mut clap::Command, shared: &[clap::Arg], path: &mut Vec<String>) {
    for sub in command.get_subcommands_mut() {
        path.push(sub.get_name().to_owned());
        offer_globals(sub, shared, path);
        let names: Vec<&str> = path.iter().map(String::as_str).collect();
        let ignored = ignored_globals(&names);
        let offered = shared
            .iter()
            .filter(|arg| !ignored.contains(&arg.get_id().as_str()))
            .cloned();
        *sub = std::mem::take(sub).args(offered);
        path.pop();
    }
}

/// Parse a command line (`args[0]` is the program) as `berth` says it
/// (`bin_name`): the global options merged from wherever they were given
/// (the deepest wins; `-v`s add up), refused for a command that ignores
/// them.
pub fn parse_from<I, T>(bin_name: &str, args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut root = command().bin_name(bin_name.to_owned());
    let matches = root.try_get_matches_from_mut(args)?;
    let mut cli = Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut root))?;
    let mut levels = vec![&matches];
    let mut path = Vec::new();
    let mut current = &matches;
    while let Some((name, sub)) = current.subcommand() {
        path.push(name);
        levels.push(sub);
        current = sub;
    }
    let ignored = ignored_globals(&path);
    for id in GLOBAL_IDS {
        let typed = levels.iter().any(|level| {
            level.try_contains_id(id).unwrap_or(false)
                && level.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
        });
        if typed && ignored.contains(&id) {
            return Err(root.error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "--{} does nothing for `{bin_name} {}`; leave it out",
                    id.replace('_', "-"),
                    path.join(" ")
                ),
            ));
        }
    }
    cli.global.verbose = levels
        .iter()
        .filter(|level| level.try_contains_id("verbose").unwrap_or(false))
        .map(|level| level.get_count("verbose"))
        .fold(0u8, u8::saturating_add);
    if let Some(config) = deepest::<PathBuf>(&levels, "config") {
        cli.global.config = Some(config);
    }
    if let Some(output) = deepest::<OutputFormat>(&levels, "output") {
        cli.global.output = output;
    }
    if let Some(log_file) = deepest::<PathBuf>(&levels, "log_file") {
        cli.global.log_file = Some(log_file);
    }
    Ok(cli)
}

/// The value of option `id` from the level where it came from the most
/// direct source (command line over environment over default), the
/// deepest level among equals.
fn deepest<T: Clone + Send + Sync + 'static>(levels: &[&clap::ArgMatches], id: &str) -> Option<T> {
    levels
        .iter()
        .filter(|level| level.try_contains_id(id).unwrap_or(false))
        .filter_map(|level| {
            let source = level.value_source(id)?;
            let value = level.try_get_one::<T>(id).ok()??.clone();
            Some((source, value))
        })
        .fold(
            None::<(clap::parser::ValueSource, T)>,
            |best, (source, value)| match best {
                Some((kept, _)) if kept > source => best,
                _ => Some((source, value)),
            },
        )
        .map(|(_, value)| value)
}

/// Every berth command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Deploy SHA to ENV: validate, lock, render and pin, migrate, apply,
    /// wait until healthy, record the release.
    #[command(visible_alias = "deploy")]
    AdvancedDeploy(DeployArgs),
    /// Deploy the newest commit on the branch whose required checks passed to staging.
    UpdateStagingToLatestPassingMaster(UpdateStagingArgs),
    /// Deploy the SHA staging runs, healthy, to production (`promote staging production`).
    UpdateProductionToStaging(PromoteOptions),
    /// Deploy what FROM runs, healthy, to TO.
    Promote(PromoteArgs),
    /// Go back to an earlier release (default: the successful one before the
    /// current): its workloads and config as recorded, and with
    /// `migrate.framework: django` first its database schema.
    ///
    /// The plan comes first and changes nothing: the objects re-applied and,
    /// with `migrate.framework: django`, the migrations unapplied, planned
    /// in the newer release's migration image against the live database.
    /// A migration that cannot be unapplied is refused (exit 5) unless
    /// `--restore-backup` or `--accept-data-loss` says how. Then, under the
    /// deploy lock: maintenance on, the migrations unapplied (or the backup
    /// restored), the schema checked against the release's record, its
    /// objects re-applied and waited for, the rollback recorded as a
    /// release, maintenance off. Without a framework (or for one berth
    /// cannot roll back yet) only the code is rolled back, and berth says
    /// so. See docs/rollback.md.
    Rollback(RollbackArgs),
    /// Per workload: SHA, ready/desired, health; the lock holder; the last release.
    Status(StatusArgs),
    /// The release log of an environment.
    History(HistoryArgs),
    /// What a deploy of SHA to ENV would change (server-side dry run).
    ///
    /// Exit codes, as `kubectl diff`'s, so CI can gate on them: 0 nothing
    /// would change, 1 something would change (the diff is printed), 2 bad
    /// input (flags, berth.yaml, SHA, environment, an unreachable cluster
    /// or registry: nothing was compared), 3 to 5 as for every command,
    /// and 6 for any other failure (the server refusing the dry run, an
    /// unexpected API error): other commands exit 1 with it, `diff` exits
    /// 6 so that a failure is never read as "differences". See
    /// docs/output.md.
    ///
    /// A Secret's values never show; one whose data would change names the
    /// keys that change (added, removed, changed).
    Diff(EnvShaArgs),
    /// Inspect, take or release an environment's deploy lock.
    Lock(LockArgs),
    /// psql inside the environment, through the Kubernetes API.
    Psql(PsqlArgs),
    /// A one-off command in a pod built from the current release.
    Run(RunArgs),
    /// Run a maintenance task declared in berth.yaml (without NAME: list them).
    Task(TaskArgs),
    /// Slowly clear the app's cached render results, one workflow at a time.
    ClearRenderCache(ClearRenderCacheArgs),
    /// Re-import the app's modules (the `refresh-suggested-modules` task).
    RefreshSuggestedModules(EnvArg),
    /// Serve a maintenance page instead of the app.
    Maintenance(MaintenanceArgs),
    /// Database backups, restores and restore drills (`berth db --help`).
    Db(DbArgs),
    /// Back up the environment's database to S3 (`db backup`), or drill a
    /// backup (`backup verify`, as `db drill`).
    Backup(BackupArgs),
    /// List the environment's database backups (`db backups`).
    Backups(BackupsArgs),
    /// Restore the environment's database from a backup (`db restore`).
    Restore(RestoreArgs),
    /// A short-lived environment per pull request (not built yet: hidden
    /// from help, completions and man pages until it is).
    #[command(hide = true)]
    Preview(PreviewArgs),
    /// Static assets: push a SHA's assets to S3, prune old ones.
    Assets(AssetsArgs),
    /// Work with berth.yaml.
    Config(ConfigArgs),
    /// berth's version, commit and commit date, and the Kubernetes server's version.
    ///
    /// `--version` prints the same about berth alone, at once and offline;
    /// `berth version` also asks the server of the current kubeconfig
    /// context (`KUBECONFIG`, else ~/.kube/config) for its version, waiting
    /// at most 3 seconds. An unreachable server is no error: it prints
    /// `server: unreachable (why)` and exits 0.
    Version,
    /// Print shell completions.
    Completions(CompletionsArgs),
    /// Write berth's man pages, one per command and subcommand, into DIR.
    ManPages(ManPagesArgs),
}

/// An environment name from berth.yaml.
#[derive(Debug, Args)]
pub struct EnvArg {
    /// Environment name, as in berth.yaml (for example `staging`).
    pub env: String,
}

/// An environment and a git SHA.
#[derive(Debug, Args)]
pub struct EnvShaArgs {
    /// Environment name, as in berth.yaml.
    pub env: String,
    /// Git commit SHA, 7 to 40 hex characters; an abbreviation is expanded
    /// to the full SHA (the deploy repo's git, the registry's tags, GitHub).
    pub sha: String,
}

/// Options of `advanced-deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Environment and SHA to deploy.
    #[command(flatten)]
    pub target: EnvShaArgs,
    /// Stop after rendering and pinning images; print the plan.
    #[arg(long)]
    pub dry_run: bool,
    /// How long to wait.
    #[command(flatten)]
    pub wait: WaitArgs,
    /// Re-apply the previous release if the rollout fails.
    #[arg(long)]
    pub rollback_on_failure: bool,
    /// Delete objects berth manages that the overlay no longer renders.
    #[arg(long)]
    pub prune: bool,
    /// Serve the maintenance page from before the migration until the rollout ends.
    #[arg(long)]
    pub maintenance: bool,
    /// Skip the backup `backups.before_migrate` would take before the
    /// migration, for emergencies; the release records that it was skipped.
    #[arg(long)]
    pub no_backup: bool,
    /// Apply the CRDs of the chart's `crds/` directory that already exist
    /// (by default they are created when absent and otherwise left
    /// unchanged, as helm does); see docs/charts.md.
    #[arg(long)]
    pub upgrade_crds: bool,
    /// Take over objects a helm release manages in the namespace (without
    /// it berth refuses, exit 2); the release record says which helm release
    /// it adopted, and berth prints how to delete helm's release records.
    #[arg(long)]
    pub adopt: bool,
    /// Confirmation: a protected environment asks before a SHA no other
    /// environment ran successfully.
    #[command(flatten)]
    pub confirm: YesArg,
}

/// How long a deploy waits, for every command that deploys.
#[derive(Debug, Clone, Default, Args)]
pub struct WaitArgs {
    /// Give up waiting for the rollout after this long, 1s to 366d, e.g.
    /// `10m` [default: the environment's `rollout.timeout`, else 10m].
    #[arg(long, value_parser = duration::parse_positive)]
    pub timeout: Option<Duration>,
    /// Wait this long (1s to 366d) for a held deploy lock instead of exiting 3.
    #[arg(long, value_parser = duration::parse_positive)]
    pub lock_wait: Option<Duration>,
}

/// `--yes`, for every command that asks before a dangerous operation.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct YesArg {
    /// Answer yes to berth's confirmation question. Without a terminal
    /// berth never asks: it refuses (exit 2) what it would ask about unless
    /// given --yes (see docs/operators.md).
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// Options of `update-staging-to-latest-passing-master`.
#[derive(Debug, Args)]
pub struct UpdateStagingArgs {
    /// Redeploy even when staging already runs the chosen SHA.
    #[arg(long)]
    pub force: bool,
    /// Say which commit would be deployed, and why newer ones are not; deploy nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How long to wait.
    #[command(flatten)]
    pub wait: WaitArgs,
    /// Confirmation, when staging is marked `protected`.
    #[command(flatten)]
    pub confirm: YesArg,
}

/// Options shared by the promotion commands.
#[derive(Debug, Args)]
pub struct PromoteOptions {
    /// Refuse unless the source has been healthy on its SHA at least this
    /// long, 0s (no minimum) to 366d, e.g. `30m`.
    #[arg(long, value_parser = duration::parse)]
    pub min_age: Option<Duration>,
    /// How long to wait.
    #[command(flatten)]
    pub wait: WaitArgs,
    /// Confirmation: a protected target asks before a SHA no other
    /// environment ran successfully.
    #[command(flatten)]
    pub confirm: YesArg,
}

/// Options of `promote`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// Environment whose release is promoted.
    pub from: String,
    /// Environment that receives it.
    pub to: String,
    /// Promotion options.
    #[command(flatten)]
    pub options: PromoteOptions,
}

/// Options of `rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Environment to roll back.
    pub env: String,
    /// Release number (e.g. `12`) or SHA (7 to 40 hex characters) to return
    /// to [default: the successful release before the current one].
    #[arg(long, value_name = "RELEASE|SHA")]
    pub to: Option<String>,
    /// Show the plan (the objects that change and the migrations that are
    /// unapplied) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Serve the maintenance page from before the schema changes until the
    /// rollout ends [default: on when migrations are unapplied].
    #[arg(long, overrides_with = "no_maintenance")]
    pub maintenance: bool,
    /// Keep the site up while migrations are unapplied.
    #[arg(long, overrides_with = "maintenance")]
    pub no_maintenance: bool,
    /// When a migration cannot be unapplied: restore the database from the
    /// backup taken before the schema left the target's state (or backup
    /// ID), instead of unapplying. Writes since that backup are lost.
    #[arg(long, value_name = "ID", num_args = 0..=1, default_missing_value = "", conflicts_with = "accept_data_loss")]
    pub restore_backup: Option<String>,
    /// When a migration cannot be unapplied: unapply it anyway, its
    /// irreversible operations doing nothing (the data they changed stays
    /// changed or lost).
    #[arg(long)]
    pub accept_data_loss: bool,
    /// How long to wait.
    #[command(flatten)]
    pub wait: WaitArgs,
    /// Confirmation: going back more than one release asks first.
    #[command(flatten)]
    pub confirm: YesArg,
}

/// Options of `history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Environment name, as in berth.yaml (for example `staging`).
    pub env: String,
    /// Show the newest N releases.
    #[arg(long, default_value_t = 20, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,
}

/// Options of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Environment (default: every environment in berth.yaml).
    pub env: Option<String>,
    /// Also print the chart's NOTES.txt, rendered for ENV as `helm install`
    /// would print it (JSON: the `notes` field); reads the cluster, writes
    /// nothing.
    #[arg(long, requires = "env")]
    pub notes: bool,
}

/// Options of `lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// Environment whose lock this is.
    pub env: String,
    /// What to do with the lock.
    #[arg(value_enum)]
    pub action: LockAction,
    /// How long an acquired lock is held unless released, 1s to 366d.
    #[arg(long, value_parser = duration::parse_positive, default_value = "1h")]
    pub ttl: Duration,
    /// With `acquire`: why the lock is held, shown to whoever it refuses
    /// and by `lock ENV status`.
    #[arg(short = 'm', long, value_name = "REASON")]
    pub message: Option<String>,
    /// With `release`: break a lock held by someone else (another person,
    /// CI run or deploy process); berth says whose lock it broke.
    #[arg(long)]
    pub force: bool,
    /// Confirmation: releasing a lock not taken in this shell asks first.
    #[command(flatten)]
    pub confirm: YesArg,
}

/// What `lock` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LockAction {
    /// Show who holds the lock, since when, until when.
    Status,
    /// Hold the lock for a person until released or the TTL runs out.
    Acquire,
    /// Release the lock.
    Release,
}

/// Options of `psql`.
#[derive(Debug, Args)]
pub struct PsqlArgs {
    /// Environment whose database to open.
    pub env: String,
    /// Arguments passed to psql (after `--`).
    #[arg(last = true)]
    pub psql_args: Vec<String>,
}

/// Options of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Environment to run in.
    pub env: String,
    /// Keep the pod after the command ends (for inspection); print how to reach it.
    #[arg(long)]
    pub keep: bool,
    /// Stop after this long (1s to 366d), pod start included; exit 4 and
    /// delete the pod [default: the environment's `run.timeout`, else 1h].
    #[arg(long, value_parser = duration::parse_positive)]
    pub timeout: Option<Duration>,
    /// The Deployment whose pod template the pod copies [default: the
    /// environment's `run.workload`, else `database.workload`].
    #[arg(long, value_name = "NAME")]
    pub workload: Option<String>,
    /// The container the command runs in [default: `run.container`, else the first].
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Options of `task`.
#[derive(Debug, Args)]
pub struct TaskArgs {
    /// Environment to run in.
    pub env: String,
    /// Task name, as declared under `tasks:` in berth.yaml [default: list
    /// the declared tasks and run none].
    pub name: Option<String>,
}

/// Options of `clear-render-cache`.
#[derive(Debug, Args)]
pub struct ClearRenderCacheArgs {
    /// Environment whose cache to clear.
    pub env: String,
    /// At most this many workflows per second, from 0.001 to 1000.
    #[arg(long, default_value_t = 5.0, value_parser = parse_rate)]
    pub rate: f64,
    /// Count what would be cleared; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Ignore an interrupted run's checkpoint and start over.
    #[arg(long)]
    pub restart: bool,
}

/// The slowest and fastest `--rate` of `clear-render-cache`, in workflows per second.
pub const RATES: std::ops::RangeInclusive<f64> = 0.001..=1000.0;

/// Parse `--rate`: a number of workflows per second within [`RATES`].
pub fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if RATES.contains(&rate) => Ok(rate),
        _ => Err(format!(
            "--rate takes workflows per second from {} to {}, e.g. --rate 5",
            RATES.start(),
            RATES.end()
        )),
    }
}

/// Options of `maintenance`.
#[derive(Debug, Args)]
pub struct MaintenanceArgs {
    /// Environment to put in (or take out of) maintenance.
    pub env: String,
    /// Turn maintenance on or off, or show its state.
    #[arg(value_enum)]
    pub action: MaintenanceAction,
    /// Title of the maintenance page.
    #[arg(long)]
    pub title: Option<String>,
    /// Message of the maintenance page.
    #[arg(long)]
    pub message: Option<String>,
    /// Wait this long (1s to 366d) for a held deploy lock instead of exiting 3.
    #[arg(long, value_parser = duration::parse_positive)]
    pub lock_wait: Option<Duration>,
    /// Confirmation: `on` for a protected environment asks first.
    #[command(flatten)]
    pub confirm: YesArg,
}

/// What `maintenance` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MaintenanceAction {
    /// Serve the maintenance page.
    On,
    /// Serve the app again.
    Off,
    /// Say whether maintenance is on, since when, with what message.
    Status,
}

/// Options of `db`.
#[derive(Debug, Args)]
pub struct DbArgs {
    /// What to do with the database.
    #[command(subcommand)]
    pub command: DbCommand,
}

/// Sub-commands of `db`.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Back up the database now: pg_dump in the cluster, streamed to the
    /// bucket, verified, with a manifest beside it.
    Backup(DbBackupArgs),
    /// List the backups, their status, and their last drill.
    #[command(visible_alias = "list")]
    Backups(BackupsArgs),
    /// Restore the database from a backup: lock, maintenance on, clients
    /// scaled down, a safety backup, restore, check, everything put back.
    Restore(RestoreArgs),
    /// Restore a backup into a scratch database and check it (a restore
    /// drill), or check that a recent drill passed (`--check`).
    #[command(visible_alias = "verify")]
    Drill(DrillArgs),
    /// Delete backups that retention no longer keeps.
    Prune(PruneArgs),
    /// The work inside the cluster (berth's image runs this; not for operators).
    #[command(hide = true)]
    Agent(AgentArgs),
}

/// Options of `db backup`.
#[derive(Debug, Args)]
pub struct DbBackupArgs {
    /// Environment whose database to back up.
    pub env: String,
    /// A note kept in the manifest and shown by `db backups`.
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,
}

/// Options of `backup` (the alias of `db backup` that also offers `verify`).
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackupArgs {
    /// Environment whose database to back up.
    #[arg(required = true)]
    pub env: Option<String>,
    /// A note kept in the manifest and shown by `db backups`.
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,
    /// Backup sub-commands.
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
}

/// Sub-commands of `backup`.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Restore BACKUP into a scratch database and check it (`db drill`).
    Verify(DrillArgs),
}

/// Options of `db backups`.
#[derive(Debug, Clone, Args)]
pub struct BackupsArgs {
    /// Environment name.
    pub env: String,
}

/// Options of `db restore`.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// Environment name.
    pub env: String,
    /// Backup id, as `berth db backups ENV` lists it. Omit it with
    /// `--abort`, or to resume an interrupted restore.
    pub backup: Option<String>,
    /// Confirm by naming the environment again (asked for on a terminal).
    #[arg(long, value_name = "ENV")]
    pub confirm: Option<String>,
    /// Skip the safety backup of the current data. It is the only way back
    /// if the backup restored is not the one you meant.
    #[arg(long)]
    pub no_safety_backup: bool,
    /// Undo an interrupted restore: scale back, resume, maintenance off.
    #[arg(long, conflicts_with = "no_safety_backup")]
    pub abort: bool,
    /// Wait up to this long for the deploy lock, 1s to 366d (e.g. 5m).
    #[arg(long, value_name = "DURATION", value_parser = duration::parse_positive)]
    pub lock_wait: Option<Duration>,
}

/// Options of `db drill`.
#[derive(Debug, Args)]
pub struct DrillArgs {
    /// Environment name.
    pub env: String,
    /// Backup id (default: the newest that succeeded).
    #[arg(conflicts_with = "check")]
    pub backup: Option<String>,
    /// Drill nothing: exit 1 unless the newest good backup passed a drill
    /// within `--max-age`.
    #[arg(long, requires = "max_age")]
    pub check: bool,
    /// With `--check`: how recent the passing drill must be, 1s to 366d (e.g. 7d).
    #[arg(long, value_name = "DURATION", value_parser = duration::parse_positive)]
    pub max_age: Option<Duration>,
}

/// Options of `db prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Environment name.
    pub env: String,
    /// Show what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Options of `db agent`: the work done inside the cluster's pods, set up
/// by the environment variables the pod templates give.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// What the pod does.
    #[command(subcommand)]
    pub command: AgentCommand,
}

/// The agent's jobs.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// pg_dump streamed to the bucket, verified, with its manifest.
    Backup,
    /// Check a dump: checksum and table of contents.
    Verify,
    /// Restore a dump into the live database.
    Restore,
    /// Restore a dump into a scratch database, check it, drop it.
    Drill,
    /// Apply retention (after a scheduled backup).
    Prune,
}

/// Options of `preview`.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// What to do with the preview environment.
    #[command(subcommand)]
    pub command: PreviewCommand,
}

/// Sub-commands of `preview`.
#[derive(Debug, Subcommand)]
pub enum PreviewCommand {
    /// Create or update the preview environment of a pull request.
    Up(PullRequestArg),
    /// Delete the preview environment of a pull request.
    Down(PullRequestArg),
    /// List preview environments.
    List,
}

/// A pull request number.
#[derive(Debug, Args)]
pub struct PullRequestArg {
    /// Pull request number.
    pub pr: u64,
}

/// Options of `assets`.
#[derive(Debug, Args)]
pub struct AssetsArgs {
    /// What to do with static assets.
    #[command(subcommand)]
    pub command: AssetsCommand,
}

/// Sub-commands of `assets`.
#[derive(Debug, Subcommand)]
pub enum AssetsCommand {
    /// Upload SHA's static assets to ENV's bucket (only what is missing or changed).
    Push(AssetsPushArgs),
    /// Delete assets no recent release references.
    Prune(AssetsPruneArgs),
}

/// Options of `assets push`.
#[derive(Debug, Args)]
pub struct AssetsPushArgs {
    /// Environment and SHA whose assets to push.
    #[command(flatten)]
    pub target: EnvShaArgs,
    /// Upload this local directory instead of the configured source (for CI
    /// jobs that build their assets locally).
    #[arg(long, value_name = "DIR")]
    pub from_dir: Option<PathBuf>,
    /// Make the pushed files the SHA's whole asset manifest. Without it a
    /// push adds to the manifest the SHA already has, so a release serving
    /// it never loses a file to `assets prune`.
    #[arg(long)]
    pub replace: bool,
}

/// Options of `assets prune`.
#[derive(Debug, Args)]
pub struct AssetsPruneArgs {
    /// Environment whose bucket to prune.
    pub env: String,
    /// Keep what the last N releases reference (the current and previous
    /// successful releases are always kept).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub keep: usize,
    /// Never delete objects written less than this long ago (assets pushed
    /// for a deploy that has not recorded its release yet); 0s to 366d.
    #[arg(long, default_value = "1h", value_parser = duration::parse, value_name = "DURATION")]
    pub grace: Duration,
    /// Say what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Confirmation: a prune without --dry-run asks first.
    #[command(flatten)]
    pub confirm: YesArg,
}

/// Options of `config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// What to do with berth.yaml.
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// Sub-commands of `config`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check berth.yaml and every environment's overlay; change nothing.
    ///
    /// A chart renders for its environment's cluster when that answers
    /// within 5 s, else for helm's default cluster (one line says so).
    Validate,
    /// Print berth.yaml's JSON Schema, for editors.
    Schema,
}

/// Options of `man-pages`.
#[derive(Debug, Args)]
pub struct ManPagesArgs {
    /// Directory to write `berth.1`, `berth-status.1`, ... into (created if missing),
    /// for example `/usr/local/share/man/man1`.
    pub dir: PathBuf,
}

/// Options of `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell to print completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_tree_is_consistent() {
        command().debug_assert();
    }

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        parse_from("berth", line.split(' '))
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        for line in [
            "berth --output json --config a.yaml status",
            "berth status --output json --config a.yaml",
            "berth --config b.yaml status --output json --config a.yaml",
            "berth db --output json backups staging --config a.yaml",
        ] {
            let cli = parse(line).unwrap();
            assert_eq!(cli.global.output, OutputFormat::Json, "{line}");
            assert_eq!(cli.global.config, Some(PathBuf::from("a.yaml")), "{line}");
        }
        let cli = parse("berth -v lock staging status -v").unwrap();
        assert_eq!(cli.global.verbose, 2);
        assert_eq!(
            parse("berth version --output json").unwrap().global.output,
            OutputFormat::Json
        );
    }

    #[test]
    fn a_global_option_is_refused_where_it_does_nothing() {
        for line in [
            "berth completions bash --output json",
            "berth --output json completions bash",
            "berth config --output json schema",
            "berth config schema --config x.yaml",
            "berth man-pages /tmp/x -v",
            "berth version --config x.yaml",
        ] {
            let error = parse(line).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{line}");
        }
        let help = command()
            .find_subcommand_mut("completions")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(
            !help.contains("--output") && !help.contains("--config"),
            "{help}"
        );
    }

    #[test]
    fn commands_not_built_are_hidden() {
        let help = command().render_long_help().to_string();
        assert!(!help.contains("preview"), "{help}");
    }

    #[test]
    fn deploy_is_an_alias_of_advanced_deploy() {
        let cli = Cli::try_parse_from(["berth", "deploy", "staging", "3f2a9c1"]).unwrap();
        match cli.command {
            Command::AdvancedDeploy(args) => {
                assert_eq!(args.target.env, "staging");
                assert_eq!(args.target.sha, "3f2a9c1");
                assert_eq!(args.wait.timeout, None);
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn backup_takes_an_environment_or_the_verify_subcommand() {
        let cli = Cli::try_parse_from(["berth", "backup", "production"]).unwrap();
        assert!(
            matches!(cli.command, Command::Backup(BackupArgs { env: Some(ref e), command: None, .. }) if e == "production")
        );
        let cli =
            Cli::try_parse_from(["berth", "backup", "verify", "production", "daily-1"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Backup(BackupArgs {
                command: Some(BackupCommand::Verify(_)),
                ..
            })
        ));
        assert!(Cli::try_parse_from(["berth", "backup"]).is_err());
    }
}
