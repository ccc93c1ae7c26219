//! [`Cluster`]: the library's front door. One method per command; the command-line tool and the
//! Python module call these and nothing else.
//!
//! Each recovery step comes as a pair: `plan_*` observes the nodes and builds the plan (changing
//! nothing); the plain method takes the lock, builds the plan and runs it as [`Cluster::apply`]
//! does: exactly as printed, once it has checked that the plan is not outdated.

mod apply;
mod fork;
mod import;
mod manage;
mod target;

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;

pub use apply::Apply;
pub use manage::ClusterStatus;
pub use target::RestoreTarget;

use crate::archiving::GetOutcome;
use crate::backend::{ClusterBackend, LocalBackend, SshBackend};
use crate::catalog::{Backup, Catalog, RestorePoint};
use crate::config::{ClusterConfig, RepositoryConfig};
use crate::error::{Error, Result};
use crate::files::OsUser;
use crate::lock::{ClusterLock, LockHolder};
use crate::observe;
use crate::plan::{
    attempt_paths, free_stamp, moved_aside_dir, AbortPlan, AbortReport, ArchivePlan, ArchiveReport,
    BasebackupPlan, FinishPlan, FinishReport, PlanBasis, RestoreInputs, RestorePlan,
    RestorePointPlan, RestoreReport, RestoreState, RunOptions,
};
use crate::repository::object::ObjectRepository;
use crate::repository::posix::PosixRepository;
use crate::repository::{PutOutcome, Repository};
use crate::verify::listing::ArchivedRestorePoint;
use crate::verify::VerifyReport;

/// A Citus (or plain PostgreSQL) cluster, reached through a [`ClusterBackend`].
#[derive(Clone)]
pub struct Cluster {
    backend: Arc<dyn ClusterBackend>,
    options: RunOptions,
    /// The WAL archive's repository, opened once from the config's `repository`.
    repository: Option<Arc<dyn Repository>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("cluster_name", &self.config().cluster_name)
            .field("options", &self.options)
            .finish()
    }
}

impl Cluster {
    /// A cluster from a validated config: nodes reached over SSH when it has an `ssh` object
    /// (cluster-level or a node's own), else nodes on this host.
    pub fn new(config: ClusterConfig) -> Result<Self> {
        if config.uses_ssh() {
            return Self::with_backend(Arc::new(SshBackend::new(config)?));
        }
        Self::with_backend(Arc::new(LocalBackend::new(config)?))
    }

    /// A cluster of nodes on this host, from a config file.
    pub fn from_config_file(path: impl AsRef<Path>) -> Result<Self> {
        Self::new(ClusterConfig::from_file(path)?)
    }

    /// A cluster reached through any backend.
    pub fn with_backend(backend: Arc<dyn ClusterBackend>) -> Result<Self> {
        // Fails here, not half-way through a command, when the servers' user is wrong. Over SSH
        // that user is an account of the node hosts (checked by logging in), not of this host.
        if !backend.config().uses_ssh() {
            OsUser::for_config(backend.config())?;
        }
        let repository = open_repository(backend.config())?;
        Ok(Cluster {
            backend,
            options: RunOptions {
                repository: repository.clone(),
                ..RunOptions::default()
            },
            repository,
        })
    }

    /// Takes the cluster's lock for a command that changes things: in the repository when the
    /// config has one, else in `backupBaseFolder`.
    async fn lock(&self, command: &str) -> Result<ClusterLock> {
        ClusterLock::acquire_in(self.config(), self.repository.as_ref(), command).await
    }

    /// Who holds the cluster's lock in the repository, `None` when it is free (or there is no
    /// repository: a `flock` cannot outlive its holder).
    pub async fn lock_holder(&self) -> Result<Option<LockHolder>> {
        ClusterLock::holder(self.config(), self.repository.as_ref()).await
    }

    /// `unlock --force`: breaks the repository lock that a command which died left behind and
    /// returns who held it (`None`: it was free). Check first that the holder no longer runs.
    pub async fn break_lock(&self) -> Result<Option<LockHolder>> {
        ClusterLock::break_lock(self.config(), self.repository.as_ref()).await
    }

    /// Replaces the run options (concurrency, timeouts).
    /// The repository is always the config's, whatever `options.repository` says.
    pub fn with_options(mut self, options: RunOptions) -> Self {
        self.options = RunOptions {
            repository: self.repository.clone(),
            ..options
        };
        self
    }

    /// The WAL archive's repository, when the config has a `repository`; `None`: WAL goes to
    /// `<archiveBaseFolder>/<node>` through `basic_archive`.
    pub fn repository(&self) -> Option<&Arc<dyn Repository>> {
        self.repository.as_ref()
    }

    /// `archive-push`: pushes the WAL file at `path` (PostgreSQL's `%p`) of `node` into the
    /// repository, compressed as the config's `compression` says. `Ok` means durable there.
    /// Takes no cluster lock: PostgreSQL runs it while other commands hold the lock.
    pub async fn archive_push(&self, node: &str, path: &Path) -> Result<PutOutcome> {
        let (repo, node) = self.wal_repository(node)?;
        crate::archiving::archive_push(repo.as_ref(), self.config().compression, &node, path).await
    }

    /// `archive-get`: restores WAL file `file` (PostgreSQL's `%f`) of `node` from the
    /// repository into `dest` (`%p`), checksum checked, or from the prefetch spool beside
    /// `dest` when the command's worker put it there. Starts no worker (the command-line tool
    /// does). Takes no cluster lock.
    pub async fn archive_get(&self, node: &str, file: &str, dest: &Path) -> Result<GetOutcome> {
        let (repo, node) = self.wal_repository(node)?;
        let queue = self.config().archive_get_queue;
        crate::archiving::archive_get(repo.as_ref(), &node, file, dest, queue).await
    }

    /// The repository and the node's name, checked against the config.
    fn wal_repository(&self, node: &str) -> Result<(Arc<dyn Repository>, String)> {
        let node = self.config().dsn(node).map(|_| node.to_string())?;
        let repo = self.repository.clone().ok_or_else(|| Error::Config {
            path: self.config().source.clone(),
            field: "repository".into(),
            problem: "is not set, so WAL goes through basic_archive into archiveBaseFolder and \
                      archive-push/archive-get have nothing to work on"
                .into(),
            fix: "add a \"repository\" object to the config and run prepare-archiving".into(),
        })?;
        Ok((repo, node))
    }

    /// The run options.
    pub fn options(&self) -> &RunOptions {
        &self.options
    }

    /// The configuration.
    pub fn config(&self) -> &ClusterConfig {
        self.backend.config()
    }

    /// The backend.
    pub fn backend(&self) -> &dyn ClusterBackend {
        self.backend.as_ref()
    }

    /// The catalog of backups and restore points: in the repository when the config has one,
    /// else in `backupBaseFolder`.
    pub fn catalog(&self) -> Catalog {
        Catalog::open(self.config(), self.repository.clone())
    }

    /// Complete backups, oldest first.
    pub async fn list_backups(&self) -> Result<Vec<Backup>> {
        self.catalog().backups().await
    }

    /// Recorded restore points, oldest first (from the catalog: no WAL is read).
    pub async fn list_restore_points(&self) -> Result<Vec<RestorePoint>> {
        self.catalog().restore_points().await
    }

    /// Plans `restore-point delete`: the recorded point that would be removed (an unknown
    /// name is [`Error::UnknownRestorePoint`]). Changes nothing.
    pub async fn plan_delete_restore_point(&self, name: &str) -> Result<RestorePoint> {
        self.catalog().restore_point(name).await
    }

    /// `restore-point delete`: removes the restore point from the catalog, under the cluster
    /// lock, and returns it. The WAL record itself stays in every node's WAL: recovery can
    /// still stop at it when named, and `list --scan` shows it as "not made by citus-recovery".
    pub async fn delete_restore_point(&self, name: &str) -> Result<RestorePoint> {
        let _lock = self.lock("restore-point delete").await?;
        self.catalog().delete_restore_point(name).await
    }

    /// Every restore point in any node's WAL archive or in the record, with the nodes that hold
    /// it: the truth, read from the archives, not only what the library recorded.
    pub async fn archived_restore_points(&self) -> Result<Vec<ArchivedRestorePoint>> {
        crate::verify::listing::archived_restore_points(
            self.config(),
            self.repository.as_ref(),
            &self.list_restore_points().await?,
            &self.list_backups().await?,
        )
        .await
    }

    /// The newest restore point created before `before` that is in every node's WAL archive
    /// (see [`crate::verify::before::point_before`]): restore to its name as if it had been
    /// given; its `note` says which and how far before the time it is.
    pub async fn restore_point_before(
        &self,
        before: chrono::DateTime<Utc>,
    ) -> Result<crate::verify::before::ChosenPoint> {
        let nodes: Vec<String> = self.config().nodes().map(|n| n.name.clone()).collect();
        let points = self.archived_restore_points().await?;
        crate::verify::before::point_before(&points, &nodes, &self.list_backups().await?, before)
    }

    /// Where `expire` finds and removes backups and WAL: the repository's objects (and the
    /// backups' folders in `backupBaseFolder`), else the folders.
    pub fn expire_store(&self) -> Box<dyn crate::expire::ExpireStore> {
        match &self.repository {
            Some(repo) => Box::new(crate::expire::RepositoryStore::new(
                repo.clone(),
                self.config(),
            )),
            None => Box::new(crate::expire::FolderStore::new(self.config())),
        }
    }

    /// Plans `expire`: which backups, WAL files and (with `remove_restore_points`) restore
    /// points go, and the bytes freed. `full`/`days` override the config's `retention`.
    /// Changes nothing.
    pub async fn plan_expire(
        &self,
        full: Option<u32>,
        days: Option<u32>,
        remove_restore_points: bool,
    ) -> Result<crate::expire::ExpirePlan> {
        let retention = crate::expire::effective_retention(self.config(), full, days)?;
        let store = self.expire_store();
        let listing = crate::expire::ExpireListing::read(
            self.config(),
            &self.catalog(),
            store.as_ref(),
            self.repository.as_ref(),
        )
        .await?;
        crate::expire::ExpirePlan::build(&listing, retention, remove_restore_points, Utc::now())
    }

    /// `expire`: under the cluster lock, builds the plan and removes what it says (see
    /// [`crate::expire`] for the order that keeps it safe to interrupt).
    pub async fn expire(
        &self,
        full: Option<u32>,
        days: Option<u32>,
        remove_restore_points: bool,
    ) -> Result<crate::expire::ExpireReport> {
        let _lock = self.lock("expire").await?;
        let plan = self.plan_expire(full, days, remove_restore_points).await?;
        plan.execute(&self.catalog(), self.expire_store().as_ref())
            .await
    }

    /// `check`: the health of archiving, backups and restore points on every node, with the
    /// config's thresholds; `round_trip` switches WAL on every node and waits until the
    /// segment is archived. Changes nothing else; takes no lock.
    pub async fn check(&self, round_trip: bool) -> Result<crate::check::CheckReport> {
        crate::check::check(self, round_trip).await
    }

    /// The restore under way, if restore-start has begun and restore-finish has not ended it.
    pub fn restore_state(&self) -> Result<Option<RestoreState>> {
        RestoreState::load(self.config())
    }

    /// Plans `prepare-archiving`; with `restart`, nodes that need it are restarted. Archiving
    /// that another tool set up (`archive_command`, another `archive_library` or archive folder)
    /// is refused with [`Error::ArchivingInUse`] unless `replace_existing`; then the plan says
    /// what it replaces.
    pub async fn plan_prepare_archiving(
        &self,
        restart: bool,
        replace_existing: bool,
    ) -> Result<ArchivePlan> {
        let observed = observe::cluster(self.backend()).await?;
        let mut plan = ArchivePlan::build(self.config(), &observed, restart, replace_existing)?;
        plan.basis = PlanBasis::new(&observed);
        Ok(plan)
    }

    /// Prepares WAL archiving on every node (see [`Cluster::plan_prepare_archiving`]).
    pub async fn prepare_archiving(
        &self,
        restart: bool,
        replace_existing: bool,
    ) -> Result<ArchiveReport> {
        let _lock = self.lock("prepare-archiving").await?;
        let plan = self
            .plan_prepare_archiving(restart, replace_existing)
            .await?;
        self.apply_locked(&plan).await
    }

    /// Plans `basebackup`; the name defaults to the UTC date and time.
    pub async fn plan_basebackup(&self, name: Option<&str>) -> Result<BasebackupPlan> {
        let now = Utc::now();
        let name = name.map_or_else(|| crate::names::default_name(now), str::to_string);
        // Checked before the name reaches the disk or the repository.
        crate::names::check_backup_name(&name)?;
        let catalog = self.catalog();
        // In a repository the name may be taken by another admin host: refused before any work.
        let taken = if catalog.in_repository() {
            if catalog.backup_name_taken(&name).await? {
                return Err(Error::InvalidArgument {
                    what: "backup name",
                    value: name,
                    problem: "is taken in the repository's catalog; choose another name".into(),
                });
            }
            false
        } else {
            catalog.backup_folder_exists(&name)
        };
        let observed = observe::cluster(self.backend()).await?;
        let mut plan =
            BasebackupPlan::build(self.config(), &observed, Some(&name), now, &catalog, taken)?;
        plan.basis = PlanBasis::new(&observed);
        Ok(plan)
    }

    /// Takes a base backup of every node.
    pub async fn basebackup(&self, name: Option<&str>) -> Result<Backup> {
        let _lock = self.lock("basebackup").await?;
        let plan = self.plan_basebackup(name).await?;
        self.apply_just_planned(&plan).await
    }

    /// Plans `restore-point`; the name defaults to the UTC date and time.
    pub async fn plan_restore_point(&self, name: Option<&str>) -> Result<RestorePointPlan> {
        if let Some(name) = name {
            // Refuse a bad name before asking any node.
            crate::names::check_restore_point_name(name)?;
        }
        let known = self.list_restore_points().await?;
        let observed = observe::cluster(self.backend()).await?;
        let mut plan = RestorePointPlan::build(self.config(), &observed, name, Utc::now(), &known)?;
        plan.basis = PlanBasis::new(&observed);
        Ok(plan)
    }

    /// Creates a restore point on every node and waits until it is archived everywhere.
    pub async fn create_restore_point(&self, name: Option<&str>) -> Result<RestorePoint> {
        let _lock = self.lock("restore-point").await?;
        let plan = self.plan_restore_point(name).await?;
        self.apply_just_planned(&plan).await
    }

    /// The restore point a restore goes to: the one given, else the config's `restorePoint`.
    fn restore_point_name(&self, given: Option<&str>) -> Result<String> {
        given
            .map(str::to_string)
            .or_else(|| self.config().restore_point.clone())
            .ok_or_else(|| Error::UnknownRestorePoint {
                name: String::new(),
                hint:
                    "no restore point given: pass --restore-point or set restorePoint in the config"
                        .into(),
            })
    }

    /// Runs every pre-flight check of restoring `backup` to `restore_point` and changes nothing.
    /// Without a backup (given or `backupToRestore`), the newest that reaches the restore point on
    /// every node is chosen, and the report says why. Failed checks are in the report.
    pub async fn verify(
        &self,
        backup: Option<&str>,
        restore_point: Option<&str>,
    ) -> Result<VerifyReport> {
        self.verify_reading(backup, restore_point, crate::verify::BackupRead::Full)
            .await
    }

    /// [`Cluster::verify`], reading a repository backup as `read` says.
    pub(crate) async fn verify_reading(
        &self,
        backup: Option<&str>,
        restore_point: Option<&str>,
        read: crate::verify::BackupRead,
    ) -> Result<VerifyReport> {
        let point = self.restore_point_name(restore_point)?;
        let backup = backup
            .map(str::to_string)
            .or_else(|| self.config().backup_to_restore.clone());
        crate::verify::verify_reading(
            self.config(),
            self.repository.as_ref(),
            &self.catalog(),
            backup.as_deref(),
            &point,
            Some(self.backend.as_ref()),
            read,
        )
        .await
    }

    /// Plans `restore-start`. The restore point defaults to the config's `restorePoint`; the
    /// backup to `backupToRestore`, else the newest that reaches the point on every node. Every
    /// check of [`Cluster::verify`] runs first: any failure is an error, before anything changes.
    /// When a restore is under way already (a restore-start was killed or failed to roll back),
    /// the plan resumes it: the data directories from before it stay where it moved them.
    pub async fn plan_restore_start(
        &self,
        backup: Option<&str>,
        restore_point: Option<&str>,
    ) -> Result<RestorePlan> {
        let config = self.config();
        let point = self.restore_point_name(restore_point)?;
        let previous = self.restore_state()?;
        let planned = async {
            // One pass over a repository backup: extraction checks every file (see
            // BackupRead). The nodes are observed while the WAL is proven: reading it is the
            // pre-flight's long part, and looking at the servers changes nothing (apply checks
            // them again).
            let (report, observed) = tokio::join!(
                self.verify_reading(backup, Some(&point), crate::verify::BackupRead::Objects),
                observe::cluster(self.backend()),
            );
            let report = report?;
            if !report.ok() {
                return Err(Error::PreflightFailed {
                    backup: report.backup.clone(),
                    restore_point: point.clone(),
                    failures: report.failures(),
                });
            }
            let catalog = self.catalog();
            let backup = catalog.backup(&report.backup).await?;
            let observed = observed?;
            observe::check_identity(config, &observed, &backup)?;
            self.restore_plan_into(&catalog, &backup, report, &observed, previous)
                .await
        }
        .await;
        if planned.is_err() {
            // No restore follows: nothing the pre-flight read is kept.
            self.let_go_of_proven_wal();
        }
        planned
    }

    /// The restore plan of this cluster's nodes from `backup` (of `catalog`) to the point
    /// `report` checked: moved-aside names from the stamp of the restore under way
    /// (`previous`) or a new one, which of those paths exist, and the plan's basis. Shared by
    /// restore-start and fork (whose target is `self`, the backup the live cluster's).
    pub(super) async fn restore_plan_into(
        &self,
        catalog: &Catalog,
        backup: &Backup,
        report: VerifyReport,
        observed: &[crate::observe::NodeObservation],
        previous: Option<RestoreState>,
    ) -> Result<RestorePlan> {
        let config = self.config();
        let now = Utc::now();
        let attempt = free_stamp(self.backend(), now, |s| attempt_paths(config, s)).await?;
        let stamp = previous
            .as_ref()
            .map_or_else(|| attempt.clone(), |p| p.stamp.clone());
        // A new attempt's moved-aside folders are among its own below; a restore started
        // again moves aside into the first attempt's, which are checked here.
        let paths = config.nodes().flat_map(|n| {
            let earlier = previous
                .is_some()
                .then(|| (n.name.clone(), moved_aside_dir(config, &n.name, &stamp)));
            std::iter::once((n.name.clone(), config.data_dir(n))).chain(earlier)
        });
        let mut checked = self.path_basis(paths).await?;
        // The attempt's own folders are in the basis too, as free_stamp just found them
        // (absent): apply refuses if one appeared since.
        checked.extend(
            attempt_paths(config, &attempt)
                .into_iter()
                .map(|(n, p)| (n, p, false)),
        );
        let existing = checked
            .iter()
            .filter(|(_, _, exists)| *exists)
            .map(|(_, p, _)| p.clone())
            .collect();
        let inputs = RestoreInputs {
            backup,
            restore_point: &report.target,
            wal_parameters: &report.wal_parameters,
            existing: &existing,
            previous: previous.as_ref(),
            attempt: &attempt,
        };
        let mut plan = RestorePlan::build(config, observed, catalog, &inputs, now)?;
        if let Some(why) = report.chosen_because {
            plan.notes.insert(0, why);
        }
        plan.basis = PlanBasis {
            paths: checked,
            backup: Some(backup.name.clone()),
            ..PlanBasis::new(observed).with_restore(previous.map(|p| p.started.to_rfc3339()))
        };
        Ok(plan)
    }

    /// Restores every node to the restore point and waits until all are paused there.
    pub async fn restore_start(
        &self,
        backup: Option<&str>,
        restore_point: Option<&str>,
    ) -> Result<RestoreReport> {
        let _lock = self.lock("restore-start").await?;
        let plan = self.plan_restore_start(backup, restore_point).await?;
        self.apply_locked(&plan).await
    }

    /// Plans `restore-finish`.
    pub async fn plan_restore_finish(&self) -> Result<FinishPlan> {
        let observed = observe::cluster(self.backend()).await?;
        let state = self.restore_state()?;
        let mut plan = FinishPlan::build(self.config(), &observed, state.as_ref())?;
        plan.basis = PlanBasis::new(&observed).with_restore(state.map(|s| s.started.to_rfc3339()));
        Ok(plan)
    }

    /// Ends recovery on every node: the cluster is writable again.
    pub async fn restore_finish(&self) -> Result<FinishReport> {
        let _lock = self.lock("restore-finish").await?;
        let plan = self.plan_restore_finish().await?;
        self.apply_locked(&plan).await
    }

    /// Plans `restore-abort`: every node's data directory from before restore-start put back.
    pub async fn plan_restore_abort(&self) -> Result<AbortPlan> {
        let state = self
            .restore_state()?
            .ok_or_else(|| Error::NoRestoreUnderWay {
                detail: format!(
                    "{} does not exist, so there is nothing to abort",
                    RestoreState::path(self.config()).display()
                ),
            })?;
        let observed = observe::cluster(self.backend()).await?;
        let config = self.config();
        let stamp = free_stamp(self.backend(), Utc::now(), |s| {
            AbortPlan::kept_paths(config, &state, s)
        })
        .await?;
        let mut checked = self
            .path_basis(state.paths().map(|(n, p)| (n.to_string(), p.to_path_buf())))
            .await?;
        // The kept copies' names are in the basis too, as free_stamp just found them (absent):
        // apply refuses if one appeared since.
        checked.extend(
            AbortPlan::kept_paths(config, &state, &stamp)
                .into_iter()
                .map(|(n, p)| (n, p, false)),
        );
        let existing = checked
            .iter()
            .filter(|(_, _, exists)| *exists)
            .map(|(_, p, _)| p.clone())
            .collect();
        let mut plan = AbortPlan::build(config, &observed, &state, &existing, &stamp)?;
        plan.basis = PlanBasis {
            paths: checked,
            ..PlanBasis::new(&observed).with_restore(Some(state.started.to_rfc3339()))
        };
        Ok(plan)
    }

    /// Undoes restore-start: stops the recovering nodes and puts the old data directories back.
    pub async fn restore_abort(&self) -> Result<AbortReport> {
        let _lock = self.lock("restore-abort").await?;
        let plan = self.plan_restore_abort().await?;
        self.apply_locked(&plan).await
    }
}

/// Opens the config's repository, if any. Makes no request: an unreachable one shows at the
/// first use, naming the repository.
pub(crate) fn open_repository(config: &ClusterConfig) -> Result<Option<Arc<dyn Repository>>> {
    Ok(match &config.repository {
        None => None,
        Some(RepositoryConfig::Posix { path }) => {
            Some(Arc::new(PosixRepository::new(path.clone())) as Arc<dyn Repository>)
        }
        Some(RepositoryConfig::S3(settings)) => {
            let repo = ObjectRepository::s3(settings).map_err(|e| Error::Config {
                path: config.source.clone(),
                field: "repository".into(),
                problem: format!("cannot open s3://{}: {e}", settings.bucket),
                fix: "correct the repository's settings; credentials come from AWS_* variables"
                    .into(),
            })?;
            Some(Arc::new(repo) as Arc<dyn Repository>)
        }
    })
}
