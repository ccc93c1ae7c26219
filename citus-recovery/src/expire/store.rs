//! Where `expire` finds and removes backup files and archived WAL: the seam between the plan and
//! the storage. [`RepositoryStore`] works through the [`Repository`] trait by prefix
//! (`backups/<backup>/`, `wal/<node>/`) and also clears a backup's folder in
//! `backupBaseFolder`, where base backups are still written; [`FolderStore`] is the layout
//! without a repository (`backupBaseFolder/<backup>/`, `archiveBaseFolder/<node>/<file>`).
//!
//! Nothing here follows a link the servers' user could have planted: folders are removed with
//! `remove_dir_all` (which never follows links below its start), archive files are listed and
//! unlinked relative to a descriptor of the node's archive folder opened with `O_NOFOLLOW`.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::UnlinkatFlags;
use serde::Serialize;

use crate::catalog::CLUSTER_MANIFEST;
use crate::config::ClusterConfig;
use crate::error::{Error, Result};
use crate::repository::{Key, Repository};

/// One stored file: a WAL file of a node or a backup's file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredFile {
    /// The name PostgreSQL gave it (a WAL file's name without codec suffix).
    pub name: String,
    /// Where it is: the repository key or the path.
    pub location: String,
    /// Its size in bytes, as stored.
    pub size: u64,
}

/// A backup's files in the store: how many and how big.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FileSet {
    /// Files (objects).
    pub files: u64,
    /// Bytes.
    pub bytes: u64,
}

/// What `expire` needs of the storage. Deleting is idempotent: absent is fine.
#[async_trait]
pub trait ExpireStore: Send + Sync {
    /// The storage, for messages (never a secret).
    fn describe(&self) -> String;
    /// Every archived WAL file of `node` (segments, `.partial`, `.history`, `.backup`), sorted.
    async fn wal_files(&self, node: &str) -> Result<Vec<StoredFile>>;
    /// Removes one WAL file that [`ExpireStore::wal_files`] listed.
    async fn delete_wal(&self, node: &str, file: &StoredFile) -> Result<()>;
    /// Every backup that has files, by name, and whether it is protected: its folder holds a
    /// complete manifest (a backup the catalog does not list: taken before the config had a
    /// repository, or with a manifest the catalog does not trust). Protected ones are never
    /// removed as leftovers.
    async fn backup_files(&self) -> Result<BTreeMap<String, (FileSet, bool)>>;
    /// Removes every file of `backup`.
    async fn delete_backup_files(&self, backup: &str) -> Result<()>;
}

/// Sizes of every regular file below `dir`, links not followed.
fn folder_size(dir: &Path) -> FileSet {
    let mut set = FileSet::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                set.files += 1;
                set.bytes += meta.len();
            }
        }
    }
    set
}

/// Backup folders in `backup_base`: directories with a node's subfolder or node manifest
/// (so nothing else kept there is taken for a backup).
fn backup_folders(config: &ClusterConfig) -> Result<BTreeMap<String, (FileSet, bool)>> {
    let base = &config.backup_base_folder;
    let entries = match std::fs::read_dir(base) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(Error::io("list", base, e)),
    };
    let mut out = BTreeMap::new();
    for e in entries.flatten() {
        let path = e.path();
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !path.symlink_metadata().is_ok_and(|m| m.is_dir())
            || crate::names::check_backup_name(&name).is_err()
        {
            continue;
        }
        let looks_like_backup = config.nodes().any(|n| {
            path.join(&n.name).is_dir()
                || path
                    .join(format!(
                        "{}{}.json",
                        crate::catalog::NODE_MANIFEST_PREFIX,
                        n.name
                    ))
                    .is_file()
        });
        if looks_like_backup {
            let complete = path.join(CLUSTER_MANIFEST).is_file();
            out.insert(name, (folder_size(&path), complete));
        }
    }
    Ok(out)
}

/// Removes `backup_base/<backup>` and everything below it, links not followed.
fn remove_backup_folder(config: &ClusterConfig, backup: &str) -> Result<()> {
    crate::names::check_backup_name(backup)?;
    let dir = config.backup_dir(backup);
    match dir.symlink_metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("look at", dir, e)),
        Ok(m) if !m.is_dir() => {
            return Err(Error::UntrustedFile {
                path: dir,
                problem: "is not a folder (a link?) where a backup's folder should be".into(),
                fix: "remove it by hand after checking what it is".into(),
            })
        }
        Ok(_) => {}
    }
    std::fs::remove_dir_all(&dir).map_err(|e| Error::io("remove", dir, e))
}

/// The layout without a repository: backups in `backupBaseFolder/<backup>/`, WAL in
/// `archiveBaseFolder/<node>/`.
#[derive(Debug, Clone)]
pub struct FolderStore {
    config: ClusterConfig,
}

impl FolderStore {
    /// The folders of `config`.
    pub fn new(config: &ClusterConfig) -> Self {
        FolderStore {
            config: config.clone(),
        }
    }

    fn archive(&self, node: &str) -> Result<PathBuf> {
        let node = self
            .config
            .node(node)
            .ok_or_else(|| Error::InvalidArgument {
                what: "node name",
                value: node.into(),
                problem: "the config has no such node".into(),
            })?;
        Ok(self.config.archive_dir(node))
    }
}

/// Opens `dir` as a folder without following a link at its last part.
fn open_dir(dir: &Path) -> Result<Option<std::os::fd::OwnedFd>> {
    match nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        // SAFETY: open just returned this descriptor and nothing else owns it.
        Ok(fd) => Ok(Some(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(Error::io("open the WAL archive", dir, e.into())),
    }
}

#[async_trait]
impl ExpireStore for FolderStore {
    fn describe(&self) -> String {
        format!(
            "backups in {}, WAL in {}",
            self.config.backup_base_folder.display(),
            self.config.archive_base_folder.display()
        )
    }

    async fn wal_files(&self, node: &str) -> Result<Vec<StoredFile>> {
        let dir = self.archive(node)?;
        let Some(fd) = open_dir(&dir)? else {
            return Ok(Vec::new());
        };
        let mut listing = nix::dir::Dir::from_fd(std::os::fd::IntoRawFd::into_raw_fd(fd))
            .map_err(|e| Error::io("list", &dir, e.into()))?;
        let raw = listing.as_raw_fd();
        let mut out = Vec::new();
        for entry in listing.iter().flatten() {
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let Ok(st) = nix::sys::stat::fstatat(Some(raw), name, AtFlags::AT_SYMLINK_NOFOLLOW)
            else {
                continue;
            };
            // Only regular files: links and anything else stay where they are.
            if st.st_mode & libc_mode_mask() != libc_mode_reg() {
                continue;
            }
            out.push(StoredFile {
                name: name.to_string(),
                location: dir.join(name).display().to_string(),
                size: st.st_size as u64,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn delete_wal(&self, node: &str, file: &StoredFile) -> Result<()> {
        crate::archiving::check_wal_file_name(&file.name)?;
        let dir = self.archive(node)?;
        let Some(fd) = open_dir(&dir)? else {
            return Ok(());
        };
        match nix::unistd::unlinkat(
            Some(fd.as_raw_fd()),
            file.name.as_str(),
            UnlinkatFlags::NoRemoveDir,
        ) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(Error::io("remove", dir.join(&file.name), e.into())),
        }
    }

    async fn backup_files(&self) -> Result<BTreeMap<String, (FileSet, bool)>> {
        // A folder with a manifest the catalog did not list (one it does not trust) is
        // protected: expire removes a manifest only as the first step of removing its backup.
        backup_folders(&self.config)
    }

    async fn delete_backup_files(&self, backup: &str) -> Result<()> {
        remove_backup_folder(&self.config, backup)
    }
}

fn libc_mode_mask() -> nix::sys::stat::mode_t {
    nix::sys::stat::SFlag::S_IFMT.bits()
}

fn libc_mode_reg() -> nix::sys::stat::mode_t {
    nix::sys::stat::SFlag::S_IFREG.bits()
}

/// The config's repository: `backups/<backup>/...` and `wal/<node>/...` objects; and, while base
/// backups are still written to `backupBaseFolder`, the backups' folders there.
#[derive(Debug, Clone)]
pub struct RepositoryStore {
    repo: Arc<dyn Repository>,
    config: ClusterConfig,
}

impl RepositoryStore {
    /// `repo` (the config's), and the config's `backupBaseFolder`.
    pub fn new(repo: Arc<dyn Repository>, config: &ClusterConfig) -> Self {
        RepositoryStore {
            repo,
            config: config.clone(),
        }
    }
}

fn key(parts: &[&str]) -> Result<Key> {
    let mut k = Key::root();
    for p in parts {
        k = k.join(p).map_err(|problem| Error::InvalidArgument {
            what: "key part",
            value: p.to_string(),
            problem,
        })?;
    }
    Ok(k)
}

/// The codec suffixes archive-push writes.
const SUFFIXES: [&str; 2] = [".zst", ".lz4"];

#[async_trait]
impl ExpireStore for RepositoryStore {
    fn describe(&self) -> String {
        self.repo.describe()
    }

    async fn wal_files(&self, node: &str) -> Result<Vec<StoredFile>> {
        let mut out: Vec<StoredFile> = self
            .repo
            .list(&key(&["wal", node])?)
            .await?
            .into_iter()
            .map(|m| {
                let full = m.key.name().to_string();
                let name = SUFFIXES
                    .iter()
                    .find_map(|s| full.strip_suffix(s))
                    .unwrap_or(&full)
                    .to_string();
                StoredFile {
                    name,
                    location: m.key.as_str().to_string(),
                    size: m.size,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn delete_wal(&self, node: &str, file: &StoredFile) -> Result<()> {
        let k = Key::new(&file.location).map_err(|problem| Error::InvalidArgument {
            what: "WAL key",
            value: file.location.clone(),
            problem,
        })?;
        // Only a key of this node's archive.
        if !k
            .as_str()
            .starts_with(&format!("{}/", key(&["wal", node])?.as_str()))
        {
            return Err(Error::InvalidArgument {
                what: "WAL key",
                value: file.location.clone(),
                problem: format!("is not in node {node}'s archive"),
            });
        }
        Ok(self.repo.delete(&k).await?)
    }

    async fn backup_files(&self) -> Result<BTreeMap<String, (FileSet, bool)>> {
        let mut out = backup_folders(&self.config)?;
        for m in self.repo.list(&key(&["backups"])?).await? {
            let Some(name) = m.key.as_str().split('/').nth(1) else {
                continue;
            };
            let entry = out.entry(name.to_string()).or_default();
            entry.0.files += 1;
            entry.0.bytes += m.size;
        }
        Ok(out)
    }

    async fn delete_backup_files(&self, backup: &str) -> Result<()> {
        crate::names::check_backup_name(backup)?;
        for m in self.repo.list(&key(&["backups", backup])?).await? {
            self.repo.delete(&m.key).await?;
        }
        remove_backup_folder(&self.config, backup)
    }
}
