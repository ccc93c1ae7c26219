//! File work on this host: folders and files owned by the servers' OS user, written atomically.
//!
//! The library often runs as root while the servers run as an unprivileged user, so everything it
//! creates for the servers is handed to that user; a file is written to a temporary name, synced
//! and renamed, so a crash never leaves half a manifest behind.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{chown, lchown, DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The OS user (and group) the servers run as, resolved to ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsUser {
    /// The user name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// Its home folder.
    pub home: PathBuf,
}

impl OsUser {
    /// Looks a user up by name.
    pub fn lookup(name: &str) -> Result<Self> {
        match nix::unistd::User::from_name(name) {
            Ok(Some(u)) => Ok(OsUser {
                name: u.name,
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
                home: u.dir,
            }),
            Ok(None) => Err(Error::Config {
                path: None,
                field: "osUser".into(),
                problem: format!("there is no OS user {name:?} on this host"),
                fix: "create the user or set osUser to an existing unprivileged user".into(),
            }),
            Err(e) => Err(Error::Config {
                path: None,
                field: "osUser".into(),
                problem: format!("cannot look up OS user {name:?}: {e}"),
                fix: "check /etc/passwd or set osUser".into(),
            }),
        }
    }

    /// The default: the current user, or `postgres` when that is root (PostgreSQL refuses root).
    pub fn default_for_current() -> Result<Self> {
        let uid = nix::unistd::Uid::effective();
        if uid.is_root() {
            return Self::lookup("postgres");
        }
        match nix::unistd::User::from_uid(uid) {
            Ok(Some(u)) => Ok(OsUser {
                name: u.name,
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
                home: u.dir,
            }),
            _ => Err(Error::Config {
                path: None,
                field: "osUser".into(),
                problem: format!("the current uid {uid} has no user name"),
                fix: "set osUser in the config".into(),
            }),
        }
    }

    /// The servers' user for a config: `osUser`, else the default for the current user.
    pub fn for_config(config: &crate::config::ClusterConfig) -> Result<Self> {
        let user = match &config.os_user {
            Some(name) => Self::lookup(name)?,
            None => Self::default_for_current()?,
        };
        if user.uid == 0 {
            return Err(Error::Config {
                path: config.source.clone(),
                field: "osUser".into(),
                problem: "is root, and PostgreSQL refuses to run as root".into(),
                fix: "set osUser to an unprivileged user such as postgres".into(),
            });
        }
        Ok(user)
    }

    /// Whether files must be handed over (we run as someone else, and can: as root).
    pub fn needs_chown(&self) -> bool {
        let me = nix::unistd::Uid::effective();
        me.is_root() && me.as_raw() != self.uid
    }

    /// Whether programs must switch to this user to run as it.
    pub fn needs_switch(&self) -> bool {
        nix::unistd::Uid::effective().as_raw() != self.uid
    }

    /// Hands `path` (not following a link) to this user, when we run as root.
    pub fn own(&self, path: &Path) -> Result<()> {
        if self.needs_chown() {
            lchown(path, Some(self.uid), Some(self.gid))
                .map_err(|e| Error::io("change the owner of", path, e))?;
        }
        Ok(())
    }

    /// Checks that this user can reach (search) every ancestor of `path` that exists, so a server
    /// started as the user can open it; names the first folder in the way.
    pub fn check_reachable(&self, path: &Path) -> Result<()> {
        if !self.needs_switch() {
            return Ok(());
        }
        let mut ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
        ancestors.reverse();
        for dir in ancestors {
            let Ok(meta) = fs::metadata(dir) else { break };
            use std::os::unix::fs::MetadataExt;
            let mode = meta.mode();
            let ok = if meta.uid() == self.uid {
                mode & 0o100 != 0
            } else if meta.gid() == self.gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !ok {
                return Err(Error::ServersUser {
                    user: self.name.clone(),
                    problem: format!(
                        "cannot reach {}: folder {} (mode {:o}, owner uid {}) is not searchable by it",
                        path.display(),
                        dir.display(),
                        mode & 0o7777,
                        meta.uid()
                    ),
                    fix: format!(
                        "run `chmod o+x {}` or choose folders the user can reach",
                        dir.display()
                    ),
                    source: None,
                });
            }
        }
        Ok(())
    }
}

/// Creates `path` and any missing parents with `mode`, each new folder owned by `owner`.
pub fn create_dir_owned(path: &Path, mode: u32, owner: &OsUser) -> Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut cur = Some(path);
    while let Some(p) = cur {
        if p.exists() {
            break;
        }
        missing.push(p.to_path_buf());
        cur = p.parent();
    }
    for dir in missing.iter().rev() {
        fs::DirBuilder::new()
            .mode(mode)
            .create(dir)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists if dir.is_dir() => Ok(()),
                _ => Err(e),
            })
            .map_err(|e| Error::io("create folder", dir, e))?;
        // The umask may have narrowed the mode; set it exactly.
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("set the mode of", dir, e))?;
        owner.own(dir)?;
    }
    Ok(())
}

/// Writes `contents` to `path` atomically (temporary file, fsync, rename, fsync of the folder),
/// with `mode`, owned by `owner`.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32, owner: &OsUser) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        Ok(())
    };
    write().map_err(|e| Error::io("write", &tmp, e))?;
    if owner.needs_chown() {
        chown(&tmp, Some(owner.uid), Some(owner.gid))
            .map_err(|e| Error::io("change the owner of", &tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| Error::io("rename into place", path, e))?;
    sync_dir(dir)
}

/// Syncs a folder, so a rename or a new entry in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync folder", dir, e))
}

/// Creates the new file `rel` below the folder `dir` for writing (mode 0600), never through a
/// link and never outside `dir` (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`,
/// `O_EXCL | O_NOFOLLOW`): an existing name is `EEXIST`, never reused.
pub fn create_new_beneath<P: ?Sized + nix::NixPath>(
    dir: &std::os::fd::OwnedFd,
    rel: &P,
) -> nix::Result<std::os::fd::OwnedFd> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    use std::os::fd::{AsRawFd, FromRawFd};
    let fd = nix::fcntl::openat2(
        dir.as_raw_fd(),
        rel,
        OpenHow::new()
            .flags(
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
            )
            .mode(nix::sys::stat::Mode::from_bits_truncate(0o600))
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS),
    )?;
    // SAFETY: openat2 just returned this descriptor, and nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}
