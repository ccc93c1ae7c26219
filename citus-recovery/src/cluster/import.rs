//! `Cluster::plan_import_folders` / `import_folders`: observe the folders and the repository,
//! plan ([`ImportPlan::build`]), copy.

use std::io::Read;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use super::Cluster;
use crate::catalog::{Catalog, NodeBackup};
use crate::error::{Error, Result};
use crate::files::OsUser;
use crate::import::{ArchiveFolder, ImportInputs, ImportPlan, ImportReport};
use crate::repository::backup::node_folder;
use crate::repository::posix::PosixRepository;
use crate::repository::{Key, PutOutcome, Repository};
use crate::wal::{FolderSource, WalSource};

/// WAL files read and uploaded at once.
const WAL_AT_ONCE: usize = 4;

impl Cluster {
    /// The repository, or the error an import without one gets.
    fn import_repository(&self) -> Result<Arc<dyn Repository>> {
        if self
            .config()
            .nodes()
            .any(|n| self.config().ssh_for(n).is_some())
        {
            return Err(Error::InvalidArgument {
                what: "config for import-folders",
                value: self.config().cluster_name.clone(),
                problem: "it reaches nodes over ssh, but the folders to import are on this host: run import-folders on the host that has backupBaseFolder and archiveBaseFolder, with the nodes local".into(),
            });
        }
        self.repository.clone().ok_or_else(|| Error::InvalidArgument {
            what: "config for import-folders",
            value: self.config().cluster_name.clone(),
            problem: "it has no repository: add a \"repository\" object to copy backupBaseFolder and archiveBaseFolder into".into(),
        })
    }

    /// Plans `import-folders`: which WAL files, backups and restore points of the folders the
    /// repository lacks. Changes nothing.
    pub async fn plan_import_folders(&self) -> Result<ImportPlan> {
        let repo = self.import_repository()?;
        let config = self.config();
        let folders = Catalog::new(config);
        let stored = self.catalog();
        let mut archives = Vec::new();
        for node in config.nodes() {
            let folder = config.archive_dir(node);
            let source = FolderSource::new(folder.clone());
            let node_name = node.name.clone();
            let wal_err = move |source| Error::WalArchive {
                node: node_name.clone(),
                source,
            };
            let (files, unreadable) = tokio::task::spawn_blocking(move || -> Result<_> {
                let names = match source.list() {
                    Ok(n) => n,
                    Err(crate::wal::WalError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        return Ok((Vec::new(), Vec::new()))
                    }
                    Err(e) => return Err(wal_err(e)),
                };
                let mut files = Vec::new();
                for name in names.files {
                    let path = source.dir().join(&name);
                    let meta = std::fs::symlink_metadata(&path)
                        .map_err(|e| Error::io("look at", &path, e))?;
                    files.push((name, meta.len()));
                }
                Ok((files, names.unreadable))
            })
            .await
            .map_err(Error::task("listing an archive folder"))??;
            let prefix = Key::new("wal")
                .and_then(|k| k.join(&node.name))
                .map_err(|problem| Error::InvalidArgument {
                    what: "node name",
                    value: node.name.clone(),
                    problem,
                })?;
            let in_repository = repo
                .list(&prefix)
                .await?
                .into_iter()
                .map(|m| {
                    let name = m.key.name();
                    name.strip_suffix(".zst")
                        .or_else(|| name.strip_suffix(".lz4"))
                        .unwrap_or(name)
                        .to_string()
                })
                .collect();
            archives.push(ArchiveFolder {
                node: node.name.clone(),
                folder,
                files,
                unreadable,
                in_repository,
            });
        }
        let folder_backups = folders.backups().await?;
        let mut stored_objects = Vec::new();
        for b in &folder_backups {
            let mut keys = Vec::new();
            for node in config.nodes() {
                let folder = node_folder(&b.name, &node.name)?;
                keys.extend(
                    repo.list(&folder)
                        .await?
                        .into_iter()
                        .map(|m| m.key.as_str().to_string()),
                );
            }
            if !keys.is_empty() {
                stored_objects.push((b.name.clone(), keys));
            }
        }
        Ok(ImportPlan::build(ImportInputs {
            repository: repo.describe(),
            folder_backups,
            folder_points: folders.restore_points().await?,
            repository_backups: stored
                .backups()
                .await?
                .into_iter()
                .map(|b| b.name)
                .collect(),
            repository_points: stored
                .restore_points()
                .await?
                .into_iter()
                .map(|p| p.name)
                .collect(),
            archives,
            stored_objects,
        }))
    }

    /// Copies what the folders hold and the repository lacks into the repository, under the
    /// lock: WAL files, then backups (each file checked against its manifest, the catalog entry
    /// last), then restore points. The folders are not changed. Run again after a failure, it
    /// carries on.
    pub async fn import_folders(&self) -> Result<ImportReport> {
        let _lock = self.lock("import-folders").await?;
        let plan = self.plan_import_folders().await?;
        self.run_import(&plan).await
    }

    /// Runs `plan` (the caller holds the lock).
    async fn run_import(&self, plan: &ImportPlan) -> Result<ImportReport> {
        let repo = self.import_repository()?;
        let config = self.config();
        // In a posix repository the servers' user owns the WAL (archive-push writes it as that
        // user, and archive-get must read it): what is copied on their behalf is given to them.
        let wal_repo: Arc<dyn Repository> = match &config.repository {
            Some(crate::config::RepositoryConfig::Posix { path }) => {
                let user = OsUser::for_config(config)?;
                let posix = PosixRepository::new(path.clone());
                Arc::new(if user.needs_chown() {
                    posix.owned_by(user.uid, user.gid)
                } else {
                    posix
                })
            }
            _ => repo.clone(),
        };
        let compression = config.compression;
        let mut report = ImportReport {
            repository: plan.repository.clone(),
            ..ImportReport::default()
        };
        for w in &plan.wal {
            let outcomes: Vec<PutOutcome> = futures::stream::iter(w.files.iter())
                .map(|file| {
                    let (repo, folder, file) = (wal_repo.clone(), w.folder.clone(), file.clone());
                    let node = w.node.clone();
                    async move {
                        let pushed_as = node.clone();
                        let source = FolderSource::new(folder);
                        let name = file.clone();
                        let data = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
                            let mut data = Vec::new();
                            let mut opened =
                                source.open(&name).map_err(|source| Error::WalArchive {
                                    node: node.clone(),
                                    source,
                                })?;
                            opened
                                .reader
                                .read_to_end(&mut data)
                                .map_err(|e| Error::io("read", source.path_of(&name), e))?;
                            Ok(data)
                        })
                        .await
                        .map_err(Error::task(format!("reading {file}")))??;
                        crate::archiving::archive_push_data(
                            repo.as_ref(),
                            compression,
                            &pushed_as,
                            &file,
                            data,
                        )
                        .await
                    }
                })
                .buffer_unordered(WAL_AT_ONCE)
                .try_collect()
                .await?;
            for outcome in outcomes {
                match outcome {
                    PutOutcome::AlreadyThere => report.wal_already_there += 1,
                    _ => report.wal_files += 1,
                }
            }
        }
        let folders = Catalog::new(config);
        let stored = self.catalog();
        for b in &plan.backups {
            let name = &b.backup.name;
            for key in &b.leftovers {
                let key = Key::new(key).map_err(|problem| Error::Corrupt {
                    key: key.clone(),
                    problem,
                })?;
                repo.delete(&key).await?;
            }
            stored.delete_backup_node_parts(name).await?;
            let mut nodes = Vec::new();
            for part in &b.backup.nodes {
                let node = config.node(&part.node).ok_or_else(|| Error::Identity {
                    node: part.node.clone(),
                    problem: format!(
                        "backup {name} has a part for it, but the config has no such node"
                    ),
                    fix: "import with the config the backup was taken with".into(),
                })?;
                let dir = folders.node_backup_dir(name, &part.node);
                let manifest_path = dir.join("backup_manifest");
                let manifest = self
                    .backend()
                    .read_file(node, &manifest_path)
                    .await?
                    .ok_or_else(|| Error::Corrupt {
                        key: manifest_path.display().to_string(),
                        problem: format!("it is missing, so backup {name} cannot be checked; it stays out: run import-folders again after removing that backup's folder, or restore it without a repository"),
                    })?;
                let mut tars = vec!["base".to_string()];
                tars.extend(part.tablespaces.iter().map(|oid| oid.to_string()));
                let shown = manifest_path.display().to_string();
                let backend = self.backend();
                let bytes = crate::plan::basebackup::upload_checked_tars(
                    repo.as_ref(),
                    &node_folder(name, &part.node)?,
                    compression,
                    (manifest.as_bytes(), &shown),
                    &tars,
                    |tar| {
                        let path = dir.join(format!("{tar}.tar"));
                        async move { backend.open_read(node, &path).await }
                    },
                )
                .await?;
                report.backup_bytes_stored += bytes;
                let part = NodeBackup {
                    bytes,
                    ..part.clone()
                };
                stored.write_node_manifest(&part).await?;
                nodes.push(part);
            }
            stored
                .write_cluster_manifest(&crate::catalog::Backup {
                    nodes,
                    ..b.backup.clone()
                })
                .await?;
            report.backups.push(name.clone());
        }
        for p in &plan.restore_points {
            stored.record_restore_point(p).await?;
            report.restore_points.push(p.name.clone());
        }
        Ok(report)
    }
}
