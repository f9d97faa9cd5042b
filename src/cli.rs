//! The command-line interface: clap types only, no behaviour.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Options every command accepts.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The berth.yaml describing the app and its environments [default: the
    /// first berth.yaml from the current directory up to the repository's
    /// root, as git finds its repository].
    #[arg(long, global = true, env = "BERTH_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// How to report progress and results.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Auto)]
    pub output: OutputFormat,
    /// More detail in logs (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Also write the log, at debug level (as `-vv` shows it), to this file.
    #[arg(long, global = true, env = "BERTH_LOG_FILE", value_name = "PATH")]
    pub log_file: Option<PathBuf>,
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
    /// Go back to an earlier release: its database schema, then its workloads and config.
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
    Diff(EnvShaArgs),
    /// Inspect, take or release an environment's deploy lock.
    Lock(LockArgs),
    /// psql inside the environment, through the Kubernetes API.
    Psql(PsqlArgs),
    /// A one-off command in a pod built from the current release.
    Run(RunArgs),
    /// Run a maintenance task declared in berth.yaml.
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
    /// A short-lived environment per pull request.
    Preview(PreviewArgs),
    /// Static assets: push a SHA's assets to S3, prune old ones.
    Assets(AssetsArgs),
    /// Work with berth.yaml.
    Config(ConfigArgs),
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
    /// Confirmation: a protected environment asks before a SHA no other
    /// environment ran successfully.
    #[command(flatten)]
    pub confirm: YesArg,
}

/// How long a deploy waits, for every command that deploys.
#[derive(Debug, Clone, Default, Args)]
pub struct WaitArgs {
    /// Give up waiting for the rollout after this long, e.g. `10m`
    /// [default: the environment's `rollout.timeout`, else 10m].
    #[arg(long, value_parser = duration::parse)]
    pub timeout: Option<Duration>,
    /// Wait this long for a held deploy lock instead of exiting 3.
    #[arg(long, value_parser = duration::parse)]
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
    /// Refuse unless the source has been healthy on its SHA at least this long, e.g. `30m`.
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
}

/// Options of `lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// Environment whose lock this is.
    pub env: String,
    /// What to do with the lock.
    #[arg(value_enum)]
    pub action: LockAction,
    /// How long an acquired lock is held unless released.
    #[arg(long, value_parser = duration::parse, default_value = "1h")]
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
    /// Stop after this long, pod start included; exit 4 and delete the pod
    /// [default: the environment's `run.timeout`, else 1h].
    #[arg(long, value_parser = duration::parse)]
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
    /// Task name, as declared under `tasks:` in berth.yaml.
    pub name: String,
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
    /// Wait this long for a held deploy lock instead of exiting 3.
    #[arg(long, value_parser = duration::parse)]
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
    /// Wait up to this long for the deploy lock (e.g. 5m).
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
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
    /// With `--check`: how recent the passing drill must be (e.g. 7d).
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
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
    /// for a deploy that has not recorded its release yet).
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
    use clap::CommandFactory;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
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
