//! Command-line parsing and dispatch. Every command is one call into [`citus_recovery::Cluster`];
//! this module only parses, calls and prints.

mod output;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use citus_recovery::archiving::{self, GetOutcome};
use citus_recovery::{Cluster, ClusterConfig};
use clap::{Parser, Subcommand};

use output::Output;

/// The five steps, as `--help` shows them.
const EXAMPLES: &str = "\
The five steps:
  citus-recovery prepare-archiving                         # WAL archiving on every node
  citus-recovery basebackup                                # a base backup of every node at once
  citus-recovery restore-point --name before-upgrade       # the same named point on every node
  citus-recovery verify --restore-point before-upgrade     # prove a restore would work
  citus-recovery restore-start --restore-point before-upgrade --dry-run   # look first
  citus-recovery restore-start --restore-point before-upgrade             # every node paused there
  citus-recovery restore-finish                            # keep it: every node writable again
  citus-recovery restore-abort                             # or undo it: the old data back

From cron: restore-point, expire (retention), check (exit 0 OK, 1 warning, 2 critical):
  citus-recovery expire --dry-run                          # what the retention would remove
  citus-recovery check --prometheus                        # for node_exporter's textfile collector

Shell completions: citus-recovery completions bash > /etc/bash_completion.d/citus-recovery
Man page:          citus-recovery man > /usr/local/share/man/man1/citus-recovery.1";

/// Consistent backup and point-in-time restore of a Citus cluster.
#[derive(Debug, Parser)]
#[command(name = "citus-recovery", version, about, long_about = None, after_help = EXAMPLES)]
struct Args {
    /// The cluster config (default: $CITUS_RECOVERY_CONFIG, else ./cluster-config.json).
    #[arg(
        long,
        global = true,
        env = "CITUS_RECOVERY_CONFIG",
        default_value = "cluster-config.json"
    )]
    config: PathBuf,
    /// Print the plan and change nothing.
    #[arg(long, global = true)]
    dry_run: bool,
    /// Machine-readable output (JSON on stdout).
    #[arg(long, global = true)]
    json: bool,
    /// Only errors on stderr, no progress.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Log lines as text or as JSON objects, one a line (default: json with --json, else text).
    /// Which lines: CITUS_RECOVERY_LOG, else RUST_LOG (such as `citus_recovery=debug`).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

/// The time zone times are shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TimeZone {
    /// UTC (for machines and for comparing across hosts).
    #[value(name = "utc", alias = "UTC")]
    Utc,
    /// This host's local time zone.
    Local,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line, for log collectors.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage a local cluster (what `citus_dev` did).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Turn on WAL archiving on every node, into <archiveBaseFolder>/<node> (or the config's
    /// repository, through archive-push).
    PrepareArchiving {
        /// Do not restart nodes whose wal_level or archive_mode change; only say so.
        #[arg(long)]
        no_restart: bool,
        /// Take over WAL archiving that another tool set up (archive_command, another
        /// archive_library or archive folder): that tool's WAL stream stops.
        #[arg(long)]
        replace_existing: bool,
    },
    /// Take a base backup of every node at once.
    Basebackup {
        /// The backup's name (default: the UTC date and time).
        #[arg(long)]
        name: Option<String>,
    },
    /// Create a named restore point on every node and wait until it is archived
    /// (`restore-point delete NAME` removes one from the catalog).
    RestorePoint {
        /// The restore point's name (default: the UTC date and time; at most 63 bytes).
        #[arg(long)]
        name: Option<String>,
        #[command(subcommand)]
        action: Option<RestorePointCommand>,
    },
    /// Restore every node from a backup and pause it at a restore point.
    RestoreStart {
        /// The backup (default: backupToRestore, else the newest that reaches the restore point on every node).
        #[arg(long)]
        backup: Option<String>,
        /// The restore point (default: restorePoint from the config).
        #[arg(long)]
        restore_point: Option<String>,
        /// Instead of --restore-point: the newest restore point on every node created before
        /// this time ("2026-11-26 14:05:00+00").
        #[arg(long, conflicts_with = "restore_point")]
        before: Option<String>,
    },
    /// End recovery on every node: the restored cluster becomes writable.
    RestoreFinish,
    /// Check that a restore would work (backup files, restore point in every archive, WAL, timeline, disk); change nothing.
    Verify {
        /// The backup (default: backupToRestore, else the newest that reaches the restore point).
        #[arg(long)]
        backup: Option<String>,
        /// The restore point (default: restorePoint from the config).
        #[arg(long)]
        restore_point: Option<String>,
        /// Instead of --restore-point: the newest restore point on every node created before
        /// this time ("2026-11-26 14:05:00+00").
        #[arg(long, conflicts_with = "restore_point")]
        before: Option<String>,
    },
    /// Undo restore-start: stop the recovering nodes and put the old data directories back.
    RestoreAbort,
    /// List complete backups and recorded restore points (from the catalog; no WAL is read).
    List {
        /// Read every node's WAL archive instead and show each restore point on the nodes that
        /// really hold it, including points not in the catalog (slower).
        #[arg(long)]
        scan: bool,
        /// The time zone restore points' times are shown in.
        #[arg(long, value_enum, default_value = "utc")]
        tz: TimeZone,
    },
    /// Remove backups the retention does not keep, and the WAL no kept backup needs
    /// (config `retention`, or --retain-full/--retain-days). --dry-run prints what would go.
    Expire {
        /// Keep the newest N complete backups (overrides the config's retention).
        #[arg(long, value_name = "N")]
        retain_full: Option<u32>,
        /// Keep the complete backups of the last D days (overrides the config's retention).
        #[arg(long, value_name = "D")]
        retain_days: Option<u32>,
        /// Also remove from the catalog the restore points no kept backup reaches.
        #[arg(long)]
        restore_points: bool,
    },
    /// Copy the backups, restore points and WAL of backupBaseFolder and archiveBaseFolder
    /// (kept before the config had a repository) into the repository; the folders stay as they
    /// are. --dry-run prints what would be copied.
    ImportFolders,
    /// Report archiving, backup and restore point health; exit 0 OK, 1 warning, 2 critical,
    /// 3 when the check itself failed.
    Check {
        /// Switch WAL on every node and wait (bounded) until the segment is archived.
        #[arg(long)]
        round_trip: bool,
        /// Print Prometheus text format (for node_exporter's textfile collector).
        #[arg(long, conflicts_with = "json")]
        prometheus: bool,
    },
    /// Restore the whole cluster to a restore point into a second cluster (its own config:
    /// folders, ports; the same node names) beside the live one, which it only reads.
    Fork {
        /// The fork's config file.
        #[arg(long)]
        target: PathBuf,
        /// The restore point (default: restorePoint from the config).
        #[arg(long)]
        restore_point: Option<String>,
        /// The backup (default: the newest that reaches the restore point on every node).
        #[arg(long)]
        backup: Option<String>,
        /// End recovery and point pg_dist_node at the fork's nodes: a writable fork. Without
        /// it the fork stays paused, read-only, with Citus connections blocked.
        #[arg(long)]
        promote: bool,
        /// Archive the fork's WAL into its own archiveBaseFolder (default: archive_mode off).
        #[arg(long)]
        archive: bool,
    },
    /// Prove the backups restore: fork the newest restore point onto free ports in a temporary
    /// folder, run the config's drill.checks, report the time to recover, tear the fork down;
    /// exit 0 passed, 2 failed, 3 when the drill could not run.
    Drill,
    /// Show who holds the cluster's lock in the repository; with --force, break it.
    Unlock {
        /// Remove the lock: only when its holder no longer runs (a command that died).
        #[arg(long)]
        force: bool,
    },
    /// What PostgreSQL's archive_command runs (set by prepare-archiving with a repository):
    /// pushes one WAL file into the repository. Exit 0 only once it is durable there.
    #[command(hide = true)]
    ArchivePush {
        /// The node whose WAL it is.
        #[arg(long)]
        node: String,
        /// The WAL file (PostgreSQL's %p).
        path: PathBuf,
    },
    /// What PostgreSQL's restore_command runs (set by restore-start with a repository):
    /// restores one WAL file. Exit 0 restored, 1 not in the repository, 200 any other failure.
    #[command(hide = true)]
    ArchiveGet {
        /// The node whose WAL it is.
        #[arg(long)]
        node: String,
        /// The WAL file's name (PostgreSQL's %f).
        file: String,
        /// Where to write it (PostgreSQL's %p).
        dest: PathBuf,
    },
    /// Started by archive-get, detached: fetches the segments from FIRST on into the prefetch
    /// spool whose locked folder it inherits as descriptor --spool-fd, then exits.
    #[command(hide = true)]
    ArchiveGetWorker {
        /// The node whose WAL it is.
        #[arg(long)]
        node: String,
        /// The spool folder's descriptor, locked by the archive-get that started this.
        #[arg(long)]
        spool_fd: i32,
        /// The first segment to fetch.
        first: String,
        /// How many segments to fetch, FIRST included (default: the config's archiveGetQueue).
        #[arg(long)]
        queue: Option<usize>,
        /// The segments' size in bytes (default: FIRST's own length, fetched first).
        #[arg(long)]
        segment_size: Option<u64>,
        /// Segments the pre-flight read come on stdin (as for archive-get-prefetch): stored
        /// before the rest is fetched. Needs --queue and --segment-size.
        #[arg(long, requires_all = ["queue", "segment_size"])]
        proven_on_stdin: bool,
    },
    /// Run by restore-start as the servers' user, on the node's host, before the server
    /// starts: takes the lock of the prefetch spool in --pg-wal and starts a detached
    /// archive-get-worker for COUNT segments from FIRST on, then exits.
    #[command(hide = true)]
    ArchiveGetPrefetch {
        /// The node whose WAL it is.
        #[arg(long)]
        node: String,
        /// The restored data directory's pg_wal.
        #[arg(long)]
        pg_wal: PathBuf,
        /// How many segments, FIRST included.
        #[arg(long)]
        count: usize,
        /// The `AWS_*` variables come on stdin, as for node-restore (over SSH).
        #[arg(long)]
        env_on_stdin: bool,
        /// Segments of the window the pre-flight read come on stdin, each as a line
        /// `<segment> <length>` and the repository object: the worker reads them, stores them
        /// in the spool and fetches only the rest.
        #[arg(long, conflicts_with = "env_on_stdin")]
        proven_on_stdin: bool,
        /// The segments' size in bytes (the backup's `wal_segment_size`; default 16 MiB).
        #[arg(long)]
        segment_size: Option<u64>,
        /// The first segment replay asks for.
        first: String,
    },
    /// Run over SSH on a node host by restore-finish and restore-abort: removes the prefetch
    /// spool in --pg-wal; prints what it found as JSON. Needs no config.
    #[command(hide = true)]
    NodeRemoveSpool {
        /// The data directory's pg_wal.
        #[arg(long)]
        pg_wal: PathBuf,
    },
    /// Run over SSH on a node host (the SSH node host's restore step): extracts a base backup
    /// there into a new data directory. Needs no config.
    #[command(hide = true)]
    NodeExtract {
        /// The backup's folder on this host.
        #[arg(long)]
        backup: PathBuf,
        /// The new data directory (must not exist).
        #[arg(long)]
        data_dir: PathBuf,
        /// A tablespace and its new folder, `<oid>=<folder>`; once per tablespace.
        #[arg(long)]
        tablespace: Vec<String>,
    },
    /// Run over SSH on a node host: makes an extracted data directory startable. Needs no config.
    #[command(hide = true)]
    NodeInstallControlFile {
        /// The extracted data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// A tablespace and its new folder, `<oid>=<folder>`; once per tablespace.
        #[arg(long)]
        tablespace: Vec<String>,
    },
    /// Run over SSH on a node host: streams a base backup of the node into the repository of
    /// the config at --config on this host; prints the result as JSON. `AWS_*` variables come
    /// on stdin (`NAME=value` lines, then an empty line).
    #[command(hide = true)]
    NodeBackup {
        /// The node.
        #[arg(long)]
        node: String,
        /// The backup's name.
        #[arg(long)]
        backup: String,
    },
    /// Run over SSH on a node host: restores the node's part of a backup from the repository of
    /// the config at --config into a new data directory on this host. Stdin as for node-backup.
    #[command(hide = true)]
    NodeRestore {
        /// The node.
        #[arg(long)]
        node: String,
        /// The backup's name.
        #[arg(long)]
        backup: String,
        /// The new data directory (must not exist).
        #[arg(long)]
        data_dir: PathBuf,
        /// A tablespace and its new folder, `<oid>=<folder>`; once per tablespace.
        #[arg(long)]
        tablespace: Vec<String>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout.
    Man,
}

#[derive(Debug, Subcommand)]
enum RestorePointCommand {
    /// Remove a restore point from the catalog. The WAL record itself stays in the WAL:
    /// recovery can still stop at it by name, and `list --scan` still finds it.
    Delete {
        /// The restore point's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// initdb, configure and start every node; with Citus installed, create the extension and add the workers.
    Create {
        /// Plain PostgreSQL nodes even when Citus is installed.
        #[arg(long)]
        plain: bool,
        /// Require scram-sha-256 passwords over TLS: writes a generated CA to the config's
        /// `sslrootcert` and a random password to its `passfile` (see docs/connections.md).
        #[arg(long)]
        secure: bool,
    },
    /// Start every node.
    Start,
    /// Stop every node.
    Stop,
    /// Show every node's state.
    Status,
}

/// Runs the tool; the exit code is 0 on success, 1 on any error (printed on stderr).
pub fn main() -> ExitCode {
    let args = Args::parse();
    // Before logging and the runtime: a spooled segment costs only its checksum and a rename.
    if let Command::ArchiveGet { node, file, dest } = &args.command {
        if let Some(code) = archive_get_from_spool(&args, node, file, dest) {
            return code;
        }
    }
    if let Command::ArchiveGetWorker {
        node,
        spool_fd,
        first,
        queue,
        segment_size,
        proven_on_stdin,
    } = &args.command
    {
        let window = Window {
            first,
            queue: *queue,
            segment_size: *segment_size,
        };
        return prefetch_worker(&args, node, *spool_fd, &window, *proven_on_stdin);
    }
    if let Command::ArchiveGetPrefetch {
        node,
        pg_wal,
        count,
        env_on_stdin,
        proven_on_stdin,
        segment_size,
        first,
    } = &args.command
    {
        let size = segment_size.unwrap_or(citus_recovery::wal::DEFAULT_SEGMENT_SIZE);
        let stdin = if *env_on_stdin {
            StdinCarries::Environment
        } else if *proven_on_stdin {
            StdinCarries::ProvenWal
        } else {
            StdinCarries::Nothing
        };
        return match warm_spool(&args, node, pg_wal, *count, size, stdin, first) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("citus-recovery archive-get-prefetch: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let json_logs = args.log_format.map_or(args.json, |f| f == LogFormat::Json);
    let display = progress::Progress::new(progress::Mode::choose(args.json, args.quiet), json_logs);
    init_logging(&args, &display);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            if let Command::ArchiveGet { .. } = args.command {
                return ExitCode::from(GET_FAILED);
            }
            return ExitCode::FAILURE;
        }
    };
    if let Command::ArchivePush { .. } | Command::ArchiveGet { .. } = &args.command {
        return runtime.block_on(wal_command(&args));
    }
    let out = Output {
        json: args.json,
        progress: display.clone(),
    };
    if let Command::Check {
        round_trip,
        prometheus,
    } = &args.command
    {
        let code = runtime.block_on(check_command(&args, &out, *round_trip, *prometheus));
        display.finish();
        return code;
    }
    if let Command::Drill = &args.command {
        let code = runtime.block_on(drill_command(&args, &out));
        display.finish();
        return code;
    }
    let result = runtime.block_on(run(&args, &out, &display));
    display.finish();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Log lines on stderr (through the progress bars, when shown), filtered by `CITUS_RECOVERY_LOG`
/// or `RUST_LOG`; every line logged during a node's steps names the node.
fn init_logging(args: &Args, display: &progress::Progress) {
    let default = if args.quiet {
        "error"
    } else {
        "citus_recovery=info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CITUS_RECOVERY_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(display.log_writer())
        // Colours only for a person at a terminal, never into files or log collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    if display.json_logs() {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}

async fn run(
    args: &Args,
    out: &Output,
    display: &std::sync::Arc<progress::Progress>,
) -> citus_recovery::Result<()> {
    // Generated from the command definition; no config needed.
    match &args.command {
        Command::Completions { shell } => {
            let mut cmd = <Args as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "citus-recovery", &mut std::io::stdout());
            return Ok(());
        }
        Command::Man => {
            let cmd = <Args as clap::CommandFactory>::command();
            return clap_mangen::Man::new(cmd)
                .render(&mut std::io::stdout())
                .map_err(|e| citus_recovery::Error::io("write", "stdout", e));
        }
        Command::NodeExtract {
            backup,
            data_dir,
            tablespace,
        } => {
            let targets = node_tablespaces(tablespace)?;
            return citus_recovery::backend::node_side::extract_backup(backup, data_dir, &targets);
        }
        Command::NodeInstallControlFile {
            data_dir,
            tablespace,
        } => {
            let targets = node_tablespaces(tablespace)?;
            return citus_recovery::backend::node_side::install_control_file(data_dir, &targets);
        }
        Command::NodeBackup { node, backup } => {
            citus_recovery::backend::node_side::read_environment()?;
            let stored = citus_recovery::backend::node_side::backup_to_repository(
                &args.config,
                node,
                backup,
            )
            .await?;
            let json = serde_json::to_string(&stored)
                .map_err(|e| citus_recovery::Error::io("write", "stdout", e.into()))?;
            println!("{json}");
            return Ok(());
        }
        Command::NodeRemoveSpool { pg_wal } => {
            let found = citus_recovery::backend::node_side::remove_spool(pg_wal)?;
            let json = serde_json::to_string(&found)
                .map_err(|e| citus_recovery::Error::io("write", "stdout", e.into()))?;
            println!("{json}");
            return Ok(());
        }
        Command::NodeRestore {
            node,
            backup,
            data_dir,
            tablespace,
        } => {
            citus_recovery::backend::node_side::read_environment()?;
            let targets = node_tablespaces(tablespace)?;
            return citus_recovery::backend::node_side::restore_from_repository(
                &args.config,
                node,
                backup,
                data_dir,
                &targets,
            )
            .await;
        }
        _ => {}
    }
    let cluster = Cluster::new(load_config(args)?)?;
    let options = citus_recovery::RunOptions {
        progress: display.sink(),
        ..cluster.options().clone()
    };
    let cluster = cluster.with_options(options);
    let dry = args.dry_run;
    match &args.command {
        Command::Cluster(cmd) => cluster_command(&cluster, cmd, dry, out).await,
        Command::PrepareArchiving {
            no_restart,
            replace_existing,
        } => {
            let (restart, replace) = (!no_restart, *replace_existing);
            if dry {
                return out.plan(&cluster.plan_prepare_archiving(restart, replace).await?);
            }
            out.report(&cluster.prepare_archiving(restart, replace).await?)
        }
        Command::Basebackup { name } => {
            let name = name.as_deref();
            if dry {
                return out.plan(&cluster.plan_basebackup(name).await?);
            }
            out.report(&cluster.basebackup(name).await?)
        }
        Command::RestorePoint {
            action: Some(RestorePointCommand::Delete { name }),
            ..
        } => {
            if dry {
                let rp = cluster.plan_delete_restore_point(name).await?;
                return out.text(&format!(
                    "dry run: would remove restore point {:?} (created {}) from the catalog; its WAL record stays in the WAL",
                    rp.name,
                    rp.time.format("%Y-%m-%d %H:%M:%S UTC")
                ));
            }
            let rp = cluster.delete_restore_point(name).await?;
            out.text(&format!(
                "removed restore point {:?} from the catalog. Its WAL record stays in every node's WAL: recovery can still stop at it by name, and `list --scan` shows it as not made by citus-recovery",
                rp.name
            ))
        }
        Command::RestorePoint { name, action: None } => {
            let name = name.as_deref();
            if dry {
                return out.plan(&cluster.plan_restore_point(name).await?);
            }
            out.report(&cluster.create_restore_point(name).await?)
        }
        Command::RestoreStart {
            backup,
            restore_point,
            before,
        } => {
            let target = restore_target(restore_point, before.as_deref())?;
            if dry {
                return out.plan(
                    &cluster
                        .plan_restore_start_to(backup.as_deref(), &target)
                        .await?,
                );
            }
            out.report(&cluster.restore_start_to(backup.as_deref(), &target).await?)
        }
        Command::RestoreFinish => {
            if dry {
                return out.plan(&cluster.plan_restore_finish().await?);
            }
            out.report(&cluster.restore_finish().await?)
        }
        Command::RestoreAbort => {
            if dry {
                return out.plan(&cluster.plan_restore_abort().await?);
            }
            out.report(&cluster.restore_abort().await?)
        }
        Command::Verify {
            backup,
            restore_point,
            before,
        } => {
            let target = restore_target(restore_point, before.as_deref())?;
            let report = cluster.verify_to(backup.as_deref(), &target).await?;
            out.report(&report)?;
            if report.ok() {
                Ok(())
            } else {
                Err(citus_recovery::Error::PreflightFailed {
                    backup: report.backup.clone(),
                    restore_point: report.restore_point.clone(),
                    failures: report.failures(),
                })
            }
        }
        Command::List { scan: false, tz } => {
            let (backups, points) = (
                cluster.list_backups().await?,
                cluster.list_restore_points().await?,
            );
            let unreachable: Vec<String> =
                citus_recovery::expire::unreachable_restore_points(&backups, &points)
                    .into_iter()
                    .map(|p| p.name.clone())
                    .collect();
            out.list_recorded(&backups, &points, &unreachable, *tz == TimeZone::Local)
        }
        Command::ImportFolders => {
            if dry {
                return out.plan(&cluster.plan_import_folders().await?);
            }
            out.report(&cluster.import_folders().await?)
        }
        Command::Expire {
            retain_full,
            retain_days,
            restore_points,
        } => {
            if dry {
                return out.plan(
                    &cluster
                        .plan_expire(*retain_full, *retain_days, *restore_points)
                        .await?,
                );
            }
            out.report(
                &cluster
                    .expire(*retain_full, *retain_days, *restore_points)
                    .await?,
            )
        }
        Command::List { scan: true, tz } => out.list(
            &cluster.list_backups().await?,
            &cluster.archived_restore_points().await?,
            *tz == TimeZone::Local,
        ),
        Command::Fork {
            target,
            restore_point,
            backup,
            promote,
            archive,
        } => {
            let path = std::path::absolute(target)
                .map_err(|e| citus_recovery::Error::io("find the absolute path of", target, e))?;
            let fork = Cluster::new(ClusterConfig::from_file(&path)?)?;
            let (backup, point) = (backup.as_deref(), restore_point.as_deref());
            if dry {
                return out.plan(
                    &cluster
                        .plan_fork(&fork, backup, point, *promote, *archive)
                        .await?,
                );
            }
            out.report(
                &cluster
                    .fork(&fork, backup, point, *promote, *archive)
                    .await?,
            )
        }
        Command::Unlock { force } => {
            let holder = if *force && !dry {
                cluster.break_lock().await?
            } else {
                cluster.lock_holder().await?
            };
            out.text(&match (holder, *force && !dry) {
                (None, _) if cluster.repository().is_none() => "no repository: the lock is a flock in backupBaseFolder, which the kernel releases when its holder exits; nothing to break".to_string(),
                (None, _) => "the cluster is not locked".to_string(),
                (Some(h), true) => format!("broke the lock held by {h}"),
                (Some(h), false) => format!(
                    "locked by {h}{}; if that command no longer runs, `citus-recovery unlock --force` breaks the lock",
                    h.stale(chrono::Utc::now()).map(|w| format!(" (looks stale: {w})")).unwrap_or_default()
                ),
            })
        }
        Command::Completions { .. }
        | Command::Man
        | Command::NodeExtract { .. }
        | Command::NodeInstallControlFile { .. }
        | Command::NodeBackup { .. }
        | Command::NodeRestore { .. }
        | Command::ArchivePush { .. }
        | Command::ArchiveGet { .. }
        | Command::ArchiveGetWorker { .. }
        | Command::ArchiveGetPrefetch { .. }
        | Command::NodeRemoveSpool { .. }
        | Command::Check { .. }
        | Command::Drill => unreachable!("handled above"),
    }
}

/// The `--tablespace` values of the node-side commands.
fn node_tablespaces(
    values: &[String],
) -> citus_recovery::Result<Vec<citus_recovery::backend::TablespaceTarget>> {
    values
        .iter()
        .map(|v| citus_recovery::backend::node_side::parse_tablespace(v))
        .collect()
}

/// The restore target `--restore-point` or `--before` names (clap lets through at most one).
fn restore_target(
    restore_point: &Option<String>,
    before: Option<&str>,
) -> citus_recovery::Result<citus_recovery::RestoreTarget> {
    let before = before
        .map(citus_recovery::verify::before::parse_time)
        .transpose()?;
    citus_recovery::RestoreTarget::new(restore_point.clone(), before)
}

/// The config, read from its absolute path (it goes into archive_command and restore_command),
/// with `binary` defaulting to this program.
fn load_config(args: &Args) -> citus_recovery::Result<ClusterConfig> {
    let path = std::path::absolute(&args.config)
        .map_err(|e| citus_recovery::Error::io("find the absolute path of", &args.config, e))?;
    let mut config = ClusterConfig::from_file(&path)?;
    if config.binary.is_none() {
        config.binary = std::env::current_exe().ok();
    }
    Ok(config)
}

/// `drill`: the report, and 0 passed / 2 failed as the exit code; 3 when it could not run.
async fn drill_command(args: &Args, out: &Output) -> ExitCode {
    if args.dry_run {
        eprintln!("error: drill has no dry run: it changes nothing of the live cluster; run `fork --dry-run` to see a fork's plan");
        return ExitCode::from(CHECK_UNKNOWN);
    }
    let report = async { Cluster::new(load_config(args)?)?.drill().await }.await;
    match report {
        Ok(report) => {
            if let Err(e) = out.report(&report) {
                eprintln!("error: {e}");
                return ExitCode::from(CHECK_UNKNOWN);
            }
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(CHECK_UNKNOWN)
        }
    }
}

/// Exit code of check when the check itself failed (Nagios' UNKNOWN).
const CHECK_UNKNOWN: u8 = 3;

/// `check`: the report, and its status as the exit code (0 OK, 1 warning, 2 critical).
async fn check_command(args: &Args, out: &Output, round_trip: bool, prometheus: bool) -> ExitCode {
    let report = async { Cluster::new(load_config(args)?)?.check(round_trip).await }.await;
    match report {
        Ok(report) => {
            if prometheus {
                print!("{}", report.to_prometheus());
            } else if let Err(e) = out.report(&report) {
                eprintln!("error: {e}");
                return ExitCode::from(CHECK_UNKNOWN);
            }
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(CHECK_UNKNOWN)
        }
    }
}

/// Exit code of archive-get when the file is not in the repository.
const GET_NOT_FOUND: u8 = 1;
/// Exit code of archive-get on any failure: above 125, so PostgreSQL stops recovery instead of
/// taking the failure for the end of the archive.
const GET_FAILED: u8 = 200;

/// archive-push and archive-get: quiet on success (PostgreSQL logs what they print), no
/// cluster lock (the server runs them while commands hold it).
async fn wal_command(args: &Args) -> ExitCode {
    match &args.command {
        Command::ArchivePush { node, path } => {
            // The repository alone, as for archive-get: no server programs looked up (Debian's
            // `pg_config` wrapper costs more than a small segment's upload).
            let pushed = async {
                let config = load_config(args)?;
                let repo = archiving::wal_repository(&config, node)?;
                archiving::archive_push(repo.as_ref(), config.compression, node, path).await
            };
            match pushed.await {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("citus-recovery archive-push {}: {e}", path.display());
                    ExitCode::FAILURE
                }
            }
        }
        Command::ArchiveGet { node, file, dest } => {
            match archive_get_fetch(args, node, file, dest).await {
                Ok(GetOutcome::Restored | GetOutcome::FromSpool) => ExitCode::SUCCESS,
                Ok(GetOutcome::NotFound) => ExitCode::from(GET_NOT_FOUND),
                Err(e) => {
                    eprintln!("citus-recovery archive-get {file}: {e}");
                    ExitCode::from(GET_FAILED)
                }
            }
        }
        _ => unreachable!("only the WAL commands come here"),
    }
}

/// archive-get's first step: the segment from the prefetch spool, with no config, logging,
/// runtime or repository client. `Some(0)` when it was there (a worker is started to refill
/// the spool when it runs low), `None`: fetch it.
fn archive_get_from_spool(
    args: &Args,
    node: &str,
    file: &str,
    dest: &std::path::Path,
) -> Option<ExitCode> {
    let archiving::Spooled::Taken {
        refill,
        segment_size,
    } = archiving::take_spooled(file, dest)
    else {
        return None;
    };
    if wants_debug() {
        eprintln!("archive-get {file}: from the prefetch spool");
    }
    if let (Some(lock), Some(next)) = (refill, archiving::next_segment(file, segment_size)) {
        // Best effort: without a worker the next call fetches (and starts one).
        let window = Window {
            first: &next,
            queue: None,
            segment_size: Some(segment_size),
        };
        let _ = start_prefetch_worker(args, node, &window, lock, false);
    }
    Some(ExitCode::SUCCESS)
}

/// Whether the log filter asks for debug lines (the spool path logs without a subscriber).
fn wants_debug() -> bool {
    ["CITUS_RECOVERY_LOG", "RUST_LOG"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|f| f.contains("debug") || f.contains("trace")))
}

/// archive-get's second step: the repository, opened without the rest of a cluster (no server
/// programs looked up), a prefetch worker started for the segments after `file` when the
/// config queues any, then `file` fetched.
async fn archive_get_fetch(
    args: &Args,
    node: &str,
    file: &str,
    dest: &std::path::Path,
) -> citus_recovery::Result<GetOutcome> {
    let config = load_config(args)?;
    let repo = archiving::wal_repository(&config, node)?;
    let queue = config.archive_get_queue;
    if queue > 0 && !archiving::replay_went_back(file, dest) {
        // The size is not known before the fetch: 16 MiB names the next segment, and the
        // worker learns the real size from that segment (a wrong guess, at a log id's end
        // with another size, only means no prefetch this time).
        let guess = citus_recovery::wal::DEFAULT_SEGMENT_SIZE;
        if let Some(next) = archiving::next_segment(file, guess) {
            if let Some(lock) = archiving::SpoolLock::for_dest(dest) {
                let window = Window {
                    first: &next,
                    queue: None,
                    segment_size: None,
                };
                if let Err(e) = start_prefetch_worker(args, node, &window, lock, false) {
                    tracing::warn!("archive-get {file}: no prefetch: {e}");
                }
            }
        }
    }
    archiving::archive_get(repo.as_ref(), node, file, dest, queue).await
}

/// A prefetch worker's window: `queue` segments (default: the config's archiveGetQueue) from
/// `first` on, of `segment_size` bytes (default: the worker learns it from `first`).
struct Window<'a> {
    first: &'a str,
    queue: Option<usize>,
    segment_size: Option<u64>,
}

/// Starts this program's detached `archive-get-worker` with the spool's lock for `window`;
/// with `proven`, the worker reads the pre-flight's WAL from this process's stdin first.
fn start_prefetch_worker(
    args: &Args,
    node: &str,
    window: &Window,
    lock: archiving::SpoolLock,
    proven: bool,
) -> citus_recovery::Result<()> {
    let exe = std::env::current_exe()
        .map_err(|e| citus_recovery::Error::io("find this program", "/proc/self/exe", e))?;
    let config = std::path::absolute(&args.config)
        .map_err(|e| citus_recovery::Error::io("find the absolute path of", &args.config, e))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--config")
        .arg(config)
        .args(["archive-get-worker", "--node", node, "--spool-fd"])
        .arg(lock.raw_fd().to_string());
    if let Some(queue) = window.queue {
        cmd.arg("--queue").arg(queue.to_string());
    }
    if let Some(size) = window.segment_size {
        cmd.arg("--segment-size").arg(size.to_string());
    }
    cmd.arg(window.first);
    if proven {
        cmd.arg("--proven-on-stdin");
        return lock.spawn_with_stdin(cmd);
    }
    lock.spawn(cmd)
}

/// What `archive-get-prefetch` reads on stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StdinCarries {
    Nothing,
    /// The `AWS_*` variables (over SSH).
    Environment,
    /// Segments the pre-flight read ([`archiving::seed_spool`]).
    ProvenWal,
}

/// `archive-get-prefetch` (restore-start, as the servers' user): the spool in `pg_wal` locked,
/// its window recorded, and a worker started for `count` segments of `segment_size` bytes from
/// `first` on (reading what the pre-flight read from this program's stdin, when it comes).
fn warm_spool(
    args: &Args,
    node: &str,
    pg_wal: &std::path::Path,
    count: usize,
    segment_size: u64,
    stdin: StdinCarries,
    first: &str,
) -> citus_recovery::Result<()> {
    if stdin == StdinCarries::Environment {
        citus_recovery::backend::node_side::read_environment()?;
    }
    if nix::unistd::Uid::effective().is_root() {
        return Err(citus_recovery::Error::InvalidArgument {
            what: "user",
            value: "root".into(),
            problem: "the prefetch worker runs as the servers' OS user (owner of pg_wal), not root"
                .into(),
        });
    }
    // The worker reads it: fail here, where restore-start sees the message, if it cannot.
    let config = load_config(args)?;
    if config.node(node).is_none() || config.repository.is_none() {
        return Err(citus_recovery::Error::InvalidArgument {
            what: "node",
            value: node.into(),
            problem: "is not a node of this config, or the config has no repository; use the config of the cluster's restore_command".into(),
        });
    }
    let lock = archiving::SpoolLock::for_pg_wal(pg_wal).ok_or_else(|| {
        citus_recovery::Error::io(
            "lock the prefetch spool in",
            pg_wal,
            std::io::Error::other(
                "a worker holds it, or pg_wal or the spool is not a folder of this user",
            ),
        )
    })?;
    lock.record_window(first, count, segment_size)?;
    let window = Window {
        first,
        queue: Some(count),
        segment_size: Some(segment_size),
    };
    // The worker reads the pre-flight's WAL, so this returns (and the server starts) at once.
    start_prefetch_worker(args, node, &window, lock, stdin == StdinCarries::ProvenWal)
}

/// `archive-get-worker`: fills the spool from `first` on, then exits. Its output goes nowhere
/// (nobody waits for it), so it logs nothing; a failed prefetch is fetched, and reported, by
/// PostgreSQL's own archive-get call.
fn prefetch_worker(
    args: &Args,
    node: &str,
    spool_fd: i32,
    window: &Window,
    proven: bool,
) -> ExitCode {
    let Ok(lock) = archiving::SpoolLock::inherited(spool_fd) else {
        return ExitCode::FAILURE;
    };
    if let (true, Some(queue), Some(size)) = (proven, window.queue, window.segment_size) {
        // First, so that restore-start (writing them) goes on; a failure leaves the segments
        // to be fetched below.
        let seeded =
            archiving::seed_spool(&lock, window.first, queue, size, std::io::stdin().lock());
        if seeded.is_ok_and(|n| n == queue) {
            // The whole window is there: nothing to fetch, no repository client to make, and
            // the lock is let go at once.
            return ExitCode::SUCCESS;
        }
    }
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        return ExitCode::FAILURE;
    };
    let done = runtime.block_on(async {
        let config = load_config(args)?;
        let repo = archiving::wal_repository(&config, node)?;
        let queue = window.queue.unwrap_or(config.archive_get_queue);
        archiving::prefetch(
            repo.as_ref(),
            node,
            window.first,
            queue,
            window.segment_size,
            &lock,
        )
        .await
    });
    match done {
        Ok(_) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

async fn cluster_command(
    cluster: &Cluster,
    cmd: &ClusterCommand,
    dry: bool,
    out: &Output,
) -> citus_recovery::Result<()> {
    if dry && !matches!(cmd, ClusterCommand::Status) {
        return out.text(&format!(
            "dry run: would {} {} node(s): {}",
            match cmd {
                ClusterCommand::Create { .. } => "create (initdb, configure, start)",
                ClusterCommand::Start => "start",
                _ => "stop",
            },
            cluster.config().nodes().count(),
            cluster
                .config()
                .nodes()
                .map(|n| format!(
                    "{} ({}:{}, {})",
                    n.name,
                    n.hostname,
                    n.port,
                    cluster.config().data_dir(n).display()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    match cmd {
        ClusterCommand::Create { plain, secure } => {
            if *secure {
                cluster.create_secure(*plain).await?;
            } else {
                cluster.create(*plain).await?;
            }
            out.status(&cluster.status().await?)
        }
        ClusterCommand::Start => {
            cluster.start().await?;
            out.status(&cluster.status().await?)
        }
        ClusterCommand::Stop => {
            cluster.stop().await?;
            out.status(&cluster.status().await?)
        }
        ClusterCommand::Status => out.status(&cluster.status().await?),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Args, Command};

    /// Both backends start a node's prefetch with `archiving::prefetch_args`: this program
    /// reads back what they write, with `--segment-size` only when it is not 16 MiB, and the
    /// option each adds for its stdin (SSH the environment, this host the pre-flight's WAL),
    /// never both.
    #[test]
    fn the_backends_prefetch_arguments_parse() {
        let first = "000000010000000000000003";
        let argv = |size: u64, stdin: &[&str]| {
            let mut argv: Vec<String> = ["citus-recovery", "--config", "/etc/c.json"]
                .map(String::from)
                .into();
            argv.extend(citus_recovery::archiving::prefetch_args(
                "worker1", first, 7, size,
            ));
            argv.extend(["--pg-wal", "/d/pg_wal"].map(String::from));
            argv.extend(stdin.iter().map(|s| s.to_string()));
            argv
        };
        for (size, expected) in [(16 << 20, None), (1 << 20, Some(1 << 20))] {
            for (option, env, proven) in [
                ("--env-on-stdin", true, false),
                ("--proven-on-stdin", false, true),
            ] {
                let argv = argv(size, &[option]);
                let args = Args::try_parse_from(&argv).expect("the prefetch arguments parse");
                let Command::ArchiveGetPrefetch {
                    node,
                    pg_wal,
                    count,
                    env_on_stdin,
                    proven_on_stdin,
                    segment_size,
                    first: got,
                } = args.command
                else {
                    panic!("not archive-get-prefetch: {argv:?}");
                };
                assert_eq!(
                    (node.as_str(), pg_wal.to_str(), count),
                    ("worker1", Some("/d/pg_wal"), 7)
                );
                assert_eq!((env_on_stdin, proven_on_stdin), (env, proven));
                assert_eq!((segment_size, got.as_str()), (expected, first));
            }
        }
        let both = argv(16 << 20, &["--env-on-stdin", "--proven-on-stdin"]);
        assert!(Args::try_parse_from(&both).is_err(), "one use of stdin");
        // The worker it starts reads them for a window it knows whole.
        let worker = |more: &[&str]| {
            let mut argv = vec![
                "citus-recovery",
                "--config",
                "/etc/c.json",
                "archive-get-worker",
            ];
            argv.extend([
                "--node",
                "worker1",
                "--spool-fd",
                "5",
                "--proven-on-stdin",
                first,
            ]);
            argv.extend(more);
            Args::try_parse_from(argv)
        };
        assert!(
            worker(&[]).is_err(),
            "--queue and --segment-size are needed"
        );
        let args = worker(&["--queue", "7", "--segment-size", "16777216"]).unwrap();
        assert!(matches!(
            args.command,
            Command::ArchiveGetWorker {
                proven_on_stdin: true,
                queue: Some(7),
                ..
            }
        ));
    }
}
