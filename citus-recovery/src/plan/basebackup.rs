//! [`BasebackupPlan`]: a base backup of every node at once, complete only when all are.
//!
//! Each node's folder gets PostgreSQL's tar backup and, once its WAL up to the stop LSN is in the
//! archive, a node manifest; the cluster manifest is written last, after every node is done, so a
//! backup that failed or was interrupted on any node is never listed or offered for restore.
//!
//! With a `repository` in the config, each node's backup streams into the repository instead
//! ([`into_repository`]): `pg_basebackup` writes one tar to a pipe, every file is checked
//! against the `backup_manifest` PostgreSQL appends to it, and the tar is compressed into
//! `backups/<backup>/<node>/base.tar.<ext>` as it passes; nothing is written on local disk.
//! A restore streams it back ([`extract_from_repository`]).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::archive::find;
use super::{run_phases, NodePlan, Phase, RunOptions, Step, StepOutput};
use crate::backend::{ClusterBackend, StreamedWal, TablespaceTarget, TarStreams};
use crate::catalog::{Backup, Catalog};
use crate::config::ClusterConfig;
use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::names;
use crate::observe::NodeObservation;
use crate::repository::backup::{self as stored, blocking_reader, manifest_key, node_folder};
use crate::repository::codec::{self, StreamDecoder};
use crate::repository::{Key, Repository};
use crate::verify::manifest::ManifestCheck;

/// The plan of `basebackup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BasebackupPlan {
    /// The backup's name.
    pub name: String,
    /// The Citus version on the coordinator, `None` on plain PostgreSQL.
    pub citus_version: Option<String>,
    /// The phases.
    pub phases: Vec<Phase>,
    /// Remarks.
    pub notes: Vec<String>,
    /// What it was built from, checked again by [`crate::Cluster::apply`] (not in the JSON).
    #[serde(skip)]
    pub basis: super::PlanBasis,
}

impl BasebackupPlan {
    /// Builds the plan. `name` defaults to the UTC date and time; `name_taken` says that a
    /// backup folder of that name exists (complete or not), and it is then refused. Every node
    /// must run with archiving on. Touches no disk: `catalog` only names the folders.
    pub fn build(
        config: &ClusterConfig,
        observed: &[NodeObservation],
        name: Option<&str>,
        now: DateTime<Utc>,
        catalog: &Catalog,
        name_taken: bool,
    ) -> Result<Self> {
        let name = name
            .map(str::to_string)
            .unwrap_or_else(|| names::default_name(now));
        names::check_backup_name(&name)?;
        if name_taken {
            return Err(Error::InvalidArgument {
                what: "backup name",
                value: name.clone(),
                problem: format!(
                    "{} exists already; choose another name",
                    catalog.backup_dir(&name).display()
                ),
            });
        }
        crate::observe::check_citus_topology(config, observed)?;
        let mut nodes = Vec::new();
        for node in config.nodes() {
            let obs = find(observed, &node.name);
            obs.require_running("start it with `citus-recovery cluster start`")?;
            if !obs.archiving() {
                return Err(Error::ArchivingOff {
                    node: node.name.clone(),
                    why: "a backup without archived WAL cannot be restored to a restore point",
                });
            }
            if obs.in_recovery == Some(true) {
                return Err(Error::NodeInRecovery {
                    node: node.name.clone(),
                    command: "basebackup",
                    fix: "finish the restore (`citus-recovery restore-finish`) before taking a backup"
                        .into(),
                });
            }
            let step = match config.repository {
                Some(_) => Step::BaseBackupToRepository {
                    backup: name.clone(),
                    object: stored::tar_key(
                        &node_folder(&name, &node.name)?,
                        "base",
                        config.compression,
                    )
                    .as_str()
                    .to_string(),
                    compression: config.compression.to_string(),
                    by_server: compressed_by_server(
                        config.compression,
                        obs.server_version.as_deref().and_then(server_major),
                        obs.server_zstd == Some(true),
                    )
                    .is_some(),
                },
                None => Step::BaseBackup {
                    backup: name.clone(),
                    folder: catalog.node_backup_dir(&name, &node.name),
                    archive: config.archive_dir(node),
                },
            };
            nodes.push(NodePlan {
                node: node.name.clone(),
                steps: vec![step],
            });
        }
        Ok(BasebackupPlan {
            citus_version: find(observed, &config.coordinator.name)
                .citus_version
                .clone(),
            phases: vec![Phase {
                title: format!("base backup {name}"),
                nodes,
            }],
            notes: vec![format!(
                "the cluster manifest {} is written last, once every node is done",
                catalog
                    .backup_dir(&name)
                    .join(crate::catalog::CLUSTER_MANIFEST)
                    .display()
            )],
            name,
            basis: super::PlanBasis::default(),
        })
    }

    /// Runs the plan and returns the complete backup.
    pub async fn execute(&self, backend: &dyn ClusterBackend, opts: &RunOptions) -> Result<Backup> {
        let start_time = Utc::now();
        let config = backend.config();
        // The backup's folder is the invoking user's; only the node folders inside are the
        // servers' user's (pg_basebackup writes them).
        Catalog::open(config, opts.repository.clone()).create_backup_dir(&self.name)?;
        let outputs = run_phases(backend, &self.phases, opts).await?;
        let mut nodes = Vec::new();
        for node in config.nodes() {
            let part = outputs
                .iter()
                .find(|o| o.node == node.name)
                .and_then(|o| {
                    o.outputs.iter().find_map(|out| match out {
                        StepOutput::Backup(b) => Some(b.clone()),
                        _ => None,
                    })
                })
                .ok_or_else(|| Error::node(&node.name, "base backup", "it reported no result"))?;
            nodes.push(part);
        }
        let backup = Backup {
            name: self.name.clone(),
            cluster_name: config.cluster_name.clone(),
            start_time,
            end_time: Utc::now(),
            citus_version: self.citus_version.clone(),
            nodes,
        };
        Catalog::open(config, opts.repository.clone())
            .write_cluster_manifest(&backup)
            .await?;
        Ok(backup)
    }
}

/// Whether the backups of `catalog` lie in `<backupBaseFolder>` (a folder per node) rather than
/// in the repository: where the catalog is, the backups are. A fork's config has no repository
/// but restores the live cluster's backups, whose catalog is in the live repository; a folder
/// backup from before a repository was configured is copied into it by `import-folders`.
/// Reads no disk: plans call it.
pub fn in_backup_folder(catalog: &Catalog) -> bool {
    !catalog.in_repository()
}

/// What [`into_repository`] stored for one node (also what a node host's `node-backup` prints,
/// as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredBackup {
    /// The stored size of the node's tar objects (compressed).
    pub bytes: u64,
    /// The oids of the user tablespaces backed up (one `<oid>.tar` object each).
    pub tablespaces: Vec<u32>,
    /// PostgreSQL's `backup_manifest`.
    pub manifest: String,
    /// The manifest's key, for messages.
    pub manifest_key: String,
}

/// Streams a base backup of `node` into `repo` as `backups/<backup>/<node>/base.tar<ext>`,
/// checking each file against the manifest PostgreSQL appends to the tar, and stores the
/// manifest as `backups/<backup>/<node>/backup_manifest`. The tar object is completed only when
/// `pg_basebackup` succeeded and every file matched; otherwise nothing is left visible.
/// `client` is a connection to the node (to look for user tablespaces).
pub async fn into_repository(
    backend: &dyn ClusterBackend,
    repo: &dyn Repository,
    node: &NodeConfig,
    backup: &str,
    client: &tokio_postgres::Client,
) -> Result<StoredBackup> {
    // Over SSH the node's host streams it into the repository itself.
    if let Some(stored) = backend.backup_to_repository_on_host(node, backup).await? {
        return Ok(stored);
    }
    let row = client
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')), \
                 current_setting('server_version_num')::int, {}",
                crate::observe::SERVER_ZSTD
            ),
            &[],
        )
        .await
        .map_err(|e| Error::sql(&node.name, "list tablespaces", e))?;
    if row.get::<_, i64>(0) > 0 {
        return staged_into_repository(backend, repo, node, backup).await;
    }
    let compression = backend.config().compression;
    let folder = node_folder(backup, &node.name)?;
    let key = stored::tar_key(&folder, "base", compression);
    let major = u32::try_from(row.get::<_, i32>(1) / 10_000).ok();
    let uploaded = match compressed_by_server(compression, major, row.get(2)) {
        Some(level) => server_compressed_into(backend, repo, node, backup, &key, level).await?,
        None => stream_with_fallback(backend, repo, node, backup, &key).await?,
    };
    let manifest = uploaded.scanned.manifest.unwrap_or_default();
    let mkey = manifest_key(&folder);
    repo.put_create(&mkey, codec::encode(compression, &manifest))
        .await?;
    Ok(StoredBackup {
        bytes: uploaded.stored,
        tablespaces: Vec::new(),
        manifest: String::from_utf8_lossy(&manifest).into_owned(),
        manifest_key: mkey.as_str().to_string(),
    })
}

/// The zstd level the server compresses a backup with, when it does: with zstd configured and
/// a server of PostgreSQL 15 or newer (`server_major`, when known), which compresses base
/// backups itself, built with zstd (`server_zstd`, see [`crate::observe::SERVER_ZSTD`]). The
/// plan and the run decide by this one rule; otherwise the backup is compressed here.
pub fn compressed_by_server(
    compression: codec::Compression,
    server_major: Option<u32>,
    server_zstd: bool,
) -> Option<i32> {
    match (compression, server_major) {
        (codec::Compression::Zstd(level), Some(major)) if major >= 15 && server_zstd => Some(level),
        _ => None,
    }
}

/// The major version in `server_version` (`15.20 (Debian 15.20-0+deb12u1)`, `16devel`).
fn server_major(version: &str) -> Option<u32> {
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A base backup of `node` compressed by the server with zstd at `level`, stored into `key` as
/// the server compressed it ([`stored::TarEncoding::CarriedZstd`]): the tar never crosses the
/// connection uncompressed nor is compressed twice, and it is decompressed here only to check
/// every file against `backup_manifest` before the object is completed. pg_basebackup writes
/// it into the node's staging folder beside its data directory
/// ([`ClusterConfig::backup_staging_dir`]), read and freed as it grows; the folder is removed
/// after, whatever happened.
async fn server_compressed_into(
    backend: &dyn ClusterBackend,
    repo: &dyn Repository,
    node: &NodeConfig,
    backup: &str,
    key: &Key,
    level: i32,
) -> Result<stored::UploadedTar> {
    let staging = backend.config().backup_staging_dir(node);
    let manifest_path = staging.join("backup_manifest");
    // A killed earlier backup of this node left its files (backups run one at a time, under
    // the repository's lock): pg_basebackup needs the folder empty.
    remove_staged(backend, node, &staging).await;
    let stream = backend
        .base_backup_server_zstd(node, &staging, backup, level)
        .await;
    let uploaded = match stream {
        Ok(stream) => {
            let manifest = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
            let (slot, path) = (manifest.clone(), manifest_path.clone());
            // pg_basebackup writes the manifest last, beside the tar: read once it is done.
            let done = async move {
                stream.done.await?;
                let text = backend.read_file(node, &path).await?;
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = text;
                Ok(())
            };
            let shown = key.as_str().to_string();
            let place = manifest_path.display().to_string();
            let uploaded = stored::upload_tar(
                repo,
                key,
                stored::TarEncoding::CarriedZstd,
                stream.tar,
                done,
                |scan| {
                    let text = manifest.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    let text = text.ok_or_else(|| {
                        Error::node(&node.name, "pg_basebackup", format!("it wrote no {place}"))
                    })?;
                    check_scanned(&shown, text.as_bytes(), scan)
                },
            )
            .await;
            uploaded.map(|mut up| {
                let text = manifest.lock().unwrap_or_else(|p| p.into_inner()).take();
                up.scanned.manifest = text.map(String::into_bytes);
                up
            })
        }
        Err(e) => Err(e),
    };
    remove_staged(backend, node, &staging).await;
    let _ = backend.remove_empty_dir(node, &staging).await;
    uploaded
}

/// Removes what pg_basebackup writes into a server-compressed backup's staging folder, as far
/// as it is there.
async fn remove_staged(backend: &dyn ClusterBackend, node: &NodeConfig, staging: &std::path::Path) {
    for name in ["base.tar.zst", "pg_wal.tar", "backup_manifest"] {
        let _ = backend.remove_file(node, &staging.join(name)).await;
    }
}

/// Streams a base backup of `node` into `key`: `-X fetch` first, so that the server ends the
/// backup without waiting for its WAL to be archived (it checks once a second) and the caller
/// waits for the last segment itself, polling faster; the WAL it adds to the tar is left out of
/// the stored object. A segment recycled during the backup fails it before anything is stored:
/// it is then taken again with `-X none`, where the server keeps the WAL until archived.
pub(crate) async fn stream_with_fallback(
    backend: &dyn ClusterBackend,
    repo: &dyn Repository,
    node: &NodeConfig,
    backup: &str,
    key: &Key,
) -> Result<stored::UploadedTar> {
    match stream_into(backend, repo, node, backup, key, StreamedWal::Fetch).await {
        Err(e) if lost_archived_wal(repo, node, &e).await => {
            crate::progress::message(format!(
                "{}: a WAL segment of the backup was recycled before pg_basebackup fetched it; \
                 taking the backup again without WAL in the stream",
                node.name
            ));
            stream_into(backend, repo, node, backup, key, StreamedWal::None).await
        }
        other => other,
    }
}

/// Whether a failed `-X fetch` backup failed because the server had already recycled a WAL
/// segment it wanted to send: the error names a segment (24 hex digits, whatever language the
/// server's `lc_messages` speaks) that the repository holds. A server archiving into the
/// repository recycles only archived segments, so any other failure (a refused login, a full
/// disk, a segment missing from the archive) is returned as it is, never retried.
async fn lost_archived_wal(repo: &dyn Repository, node: &NodeConfig, e: &Error) -> bool {
    let text = e.to_string();
    let Some(segment) = named_segments(&text).next() else {
        return false;
    };
    matches!(
        crate::archiving::is_archived(repo, &node.name, segment).await,
        Ok(true)
    )
}

/// The WAL segment names (24 upper-case hex digits, standing alone) in `text`, in order.
fn named_segments(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() == 24 && w.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')))
}

/// One streamed `pg_basebackup` of `node` into `key`, every file checked against the manifest at
/// the tar's end before the object is completed.
async fn stream_into(
    backend: &dyn ClusterBackend,
    repo: &dyn Repository,
    node: &NodeConfig,
    backup: &str,
    key: &Key,
    wal: StreamedWal,
) -> Result<stored::UploadedTar> {
    let compression = backend.config().compression;
    let stream = backend.base_backup_stream(node, backup, wal).await?;
    let shown = key.as_str().to_string();
    stored::upload_tar(repo, key, compression, stream.tar, stream.done, |scan| {
        let manifest = scan.manifest.as_deref().ok_or_else(|| Error::Corrupt {
            key: shown.clone(),
            problem: "pg_basebackup's tar holds no backup_manifest, so its files cannot be \
                      checked; nothing was stored (is the server PostgreSQL 13 or newer?)"
                .into(),
        })?;
        check_scanned(&shown, manifest, scan)
    })
    .await
}

/// Checks every file that went past in `scan` against PostgreSQL's `manifest`: any difference
/// refuses the object (named `shown`), which is then never completed.
fn check_scanned(shown: &str, manifest: &[u8], scan: &stored::ScannedTar) -> Result<()> {
    let mut check = ManifestCheck::parse(manifest).map_err(|problem| Error::Corrupt {
        key: shown.to_string(),
        problem,
    })?;
    for f in scan
        .files
        .iter()
        .filter(|f| !ManifestCheck::ignored(&f.path))
    {
        check.file(shown, &f.path, f.size, f.crc);
    }
    let result = check.finish(shown);
    if result.problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Corrupt {
            key: shown.to_string(),
            problem: format!(
                "the stream from pg_basebackup differs from its own manifest: {}; nothing \
                 was stored, take the backup again",
                result.problems[..result.problems.len().min(5)].join("; ")
            ),
        })
    }
}

/// The fallback of [`into_repository`] for a node with user tablespaces (PostgreSQL writes
/// those backups only as one tar per tablespace, into a folder): the backup is staged in the
/// node's backup folder as zstd-compressed tars (never an uncompressed copy), then each tar is
/// decompressed, checked against the manifest, re-encoded and uploaded as it streams, and the
/// staged files are removed. Objects of a backup that fails the check are deleted.
async fn staged_into_repository(
    backend: &dyn ClusterBackend,
    repo: &dyn Repository,
    node: &NodeConfig,
    backup: &str,
) -> Result<StoredBackup> {
    let config = backend.config();
    let compression = config.compression;
    let staging = Catalog::new(config).node_backup_dir(backup, &node.name);
    let files = backend.base_backup_staged(node, &staging, backup).await?;
    let manifest_path = staging.join("backup_manifest");
    let manifest = backend
        .read_file(node, &manifest_path)
        .await?
        .ok_or_else(|| {
            Error::node(
                &node.name,
                "pg_basebackup",
                format!("it wrote no {}", manifest_path.display()),
            )
        })?;
    let folder = node_folder(backup, &node.name)?;
    let mut names = vec!["base".to_string()];
    names.extend(files.tablespaces.iter().map(|oid| oid.to_string()));
    let shown = staging.display().to_string();
    let uploaded = upload_checked_tars(
        repo,
        &folder,
        compression,
        (manifest.as_bytes(), &shown),
        &names,
        |name| {
            let staged = staging.join(format!("{name}.tar.zst"));
            async move {
                let reader = backend.open_read(node, &staged).await?;
                let decoder = zstd::stream::read::Decoder::new(reader)
                    .map_err(|e| Error::io("decompress", &staged, e))?;
                Ok(Box::new(decoder) as Box<dyn std::io::Read + Send>)
            }
        },
    )
    .await;
    // The staged files go in every case.
    for name in &names {
        let _ = backend
            .remove_file(node, &staging.join(format!("{name}.tar.zst")))
            .await;
    }
    let _ = backend.remove_file(node, &manifest_path).await;
    let _ = backend.remove_empty_dir(node, &staging).await;
    let stored_bytes = uploaded?;
    let mkey = manifest_key(&folder);
    Ok(StoredBackup {
        bytes: stored_bytes,
        tablespaces: files.tablespaces,
        manifest,
        manifest_key: mkey.as_str().to_string(),
    })
}

/// Uploads one node's tars into the repository folder `folder`: `base` and each tablespace's
/// oid in `names`, each read uncompressed from what `open` gives, encoded and uploaded as it
/// streams while every file is checked against `manifest` (`manifest.1` names it in errors),
/// then the manifest itself. Any failure deletes the objects already stored and is returned;
/// otherwise the tars' stored bytes. Shared by the staged backup and `import-folders`.
pub(crate) async fn upload_checked_tars<F, Fut>(
    repo: &dyn Repository,
    folder: &Key,
    compression: codec::Compression,
    manifest: (&[u8], &str),
    names: &[String],
    open: F,
) -> Result<u64>
where
    F: Fn(&str) -> Fut,
    Fut: std::future::Future<Output = Result<Box<dyn std::io::Read + Send>>>,
{
    let (manifest, manifest_shown) = manifest;
    let check = ManifestCheck::parse(manifest).map_err(|problem| Error::Corrupt {
        key: manifest_shown.to_string(),
        problem,
    })?;
    let check = std::sync::Arc::new(std::sync::Mutex::new(Some(check)));
    let (mut stored_bytes, mut keys) = (0, Vec::new());
    let mut outcome = Ok(());
    for name in names {
        let key = stored::tar_key(folder, name, compression);
        let reader = match open(name).await {
            Ok(r) => r,
            Err(e) => {
                outcome = Err(e);
                break;
            }
        };
        let prefix = if name == "base" {
            String::new()
        } else {
            format!("pg_tblspc/{name}/")
        };
        let (shown, check) = (key.as_str().to_string(), check.clone());
        let uploaded = stored::upload_tar(
            repo,
            &key,
            compression,
            reader,
            async { Ok(()) },
            move |scan| {
                let mut guard = check.lock().unwrap_or_else(|p| p.into_inner());
                let check = guard.as_mut().expect("the check lives until the end");
                for f in &scan.files {
                    if !(prefix.is_empty() && ManifestCheck::ignored(&f.path)) {
                        check.file(&shown, &format!("{prefix}{}", f.path), f.size, f.crc);
                    }
                }
                match check.check.problems.first() {
                    None => Ok(()),
                    Some(p) => Err(Error::Corrupt {
                        key: shown.clone(),
                        problem: format!("{p}; nothing of it was stored, take the backup again"),
                    }),
                }
            },
        )
        .await;
        match uploaded {
            Ok(u) => {
                stored_bytes += u.stored;
                keys.push(key);
            }
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    if outcome.is_ok() {
        let check = check
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .expect("taken once");
        let result = check.finish(manifest_shown);
        if !result.problems.is_empty() {
            outcome = Err(Error::Corrupt {
                key: folder.as_str().into(),
                problem: format!(
                    "the backup differs from its manifest: {}; take the backup again",
                    result.problems[..result.problems.len().min(5)].join("; ")
                ),
            });
        }
    }
    if outcome.is_ok() {
        outcome = repo
            .put_create(&manifest_key(folder), codec::encode(compression, manifest))
            .await
            .map(|_| ())
            .map_err(Error::from);
    }
    if let Err(e) = outcome {
        // No catalog entry names them, but they should not linger.
        for key in &keys {
            let _ = repo.delete(key).await;
        }
        return Err(e);
    }
    Ok(stored_bytes)
}

/// Streams node `node`'s part of backup `backup` from `repo` into the new `data_dir` (and each
/// tablespace into its new folder) through [`ClusterBackend::extract_backup_streams`]: decoded,
/// each chunk's checksum checked, each file checked against the manifest while written.
pub async fn extract_from_repository(
    backend: &dyn ClusterBackend,
    repo: &dyn Repository,
    node: &NodeConfig,
    backup: &str,
    data_dir: &std::path::Path,
    tablespaces: &[TablespaceTarget],
) -> Result<()> {
    // Over SSH the node's host reads the repository itself.
    if backend
        .restore_from_repository_on_host(node, backup, data_dir, tablespaces)
        .await?
    {
        return Ok(());
    }
    let (mkey, manifest, tars) = stored::stored_objects(repo, backup, &node.name).await?;
    let find = |name: &str| -> Result<Key> {
        tars.iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m.key.clone())
            .ok_or_else(|| Error::Corrupt {
                key: mkey.as_str().into(),
                problem: format!(
                    "its backup has no {name}.tar object beside it; the backup is incomplete, \
                     choose another backup"
                ),
            })
    };
    let open = |key: Key| async move {
        let stream = repo.get_stream(&key).await?;
        let reader: Box<dyn std::io::Read + Send> =
            Box::new(StreamDecoder::new(blocking_reader(stream)));
        Ok::<_, Error>((key.as_str().to_string(), reader))
    };
    let base = open(find("base")?).await?;
    let mut ts = Vec::new();
    for t in tablespaces {
        let (name, reader) = open(find(&t.oid.to_string())?).await?;
        ts.push((t.oid, name, reader));
    }
    let tars = TarStreams {
        base,
        tablespaces: ts,
        manifest,
    };
    backend
        .extract_backup_streams(node, tars, data_dir, tablespaces)
        .await
}

super::plan_impls!(BasebackupPlan, "basebackup", |p| format!(
    "plan: basebackup {}",
    p.name
));
