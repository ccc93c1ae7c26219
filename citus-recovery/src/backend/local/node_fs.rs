//! File operations on a node's host that never follow a path's last component when it is a link.
//!
//! Every function here (apart from [`create_dir`], which switches itself) expects to run inside
//! [`super::as_user::as_user`], so each lookup is checked with the servers' user's rights.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, RenameFlags};
use nix::sys::stat::{Mode, SFlag};

use super::as_user::as_user;
use crate::backend::FileSync;
use crate::error::{Error, Result};
use crate::files::OsUser;

/// An `std::io::Error` from an errno, saying plainly when a link was refused.
pub(super) fn io_err(errno: Errno) -> std::io::Error {
    if errno == Errno::ELOOP {
        std::io::Error::other("it is a symbolic link, which is never followed")
    } else if errno == Errno::EACCES {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "permission denied to the servers' OS user, which does all file work on a node's host; give it access to this folder",
        )
    } else {
        std::io::Error::from(errno)
    }
}

/// Wraps a new descriptor.
fn owned(fd: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: the caller passes a descriptor it just opened and owns nothing else with it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Flags that open a folder, never through a link.
const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Opens a folder; a link as the last component is refused.
pub(super) fn open_dir(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(path, DIR_FLAGS, Mode::empty())
        .map(owned)
        .map_err(|e| Error::io("open folder", path, io_err(e)))
}

/// Opens the folder `name` in the folder `parent`, never through a link; `path` names it in
/// errors.
pub(super) fn open_dir_at(parent: &OwnedFd, name: &OsStr, path: &Path) -> Result<OwnedFd> {
    nix::fcntl::openat(Some(parent.as_raw_fd()), name, DIR_FLAGS, Mode::empty())
        .map(owned)
        .map_err(|e| Error::io("open folder", path, io_err(e)))
}

/// The folder and the last component of `path`.
pub(super) fn split(path: &Path) -> Result<(&Path, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((
            if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            },
            name,
        )),
        _ => Err(Error::io(
            "use",
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the path names no file in a folder",
            ),
        )),
    }
}

/// Syncs an open folder.
pub(super) fn sync_fd(fd: &OwnedFd, path: &Path) -> Result<()> {
    nix::unistd::fsync(fd.as_raw_fd()).map_err(|e| Error::io("sync", path, io_err(e)))
}

/// Whether `path` exists (a link counts and is not followed).
pub(super) fn exists(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("look at", path, e)),
    }
}

/// Reads a regular file as text; `None` when it does not exist.
pub(super) fn read_file(path: &Path) -> Result<Option<String>> {
    let fd = match nix::fcntl::open(
        path,
        // O_NONBLOCK: a FIFO planted in the file's place must not hang us.
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => owned(fd),
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(Error::io("read", path, io_err(e))),
    };
    let file = regular_file(fd, path)?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut &file, &mut text).map_err(|e| Error::io("read", path, e))?;
    Ok(Some(text))
}

/// Opens a regular file for reading; a link or anything else is an error naming `path`.
pub(super) fn open_regular(path: &Path) -> Result<File> {
    open_regular_if_present(path, OFlag::O_RDONLY)?
        .ok_or_else(|| Error::io("open", path, io_err(Errno::ENOENT)))
}

/// Opens a regular file with `access` (`O_RDONLY`, `O_RDWR`), `None` when nothing is at
/// `path`; a link or anything else is an error naming `path`. Non-blocking while it is
/// looked at, so a planted fifo never blocks.
pub(super) fn open_regular_if_present(path: &Path, access: OFlag) -> Result<Option<File>> {
    let fd = match nix::fcntl::open(
        path,
        access | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => owned(fd),
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(Error::io("open", path, io_err(e))),
    };
    regular_file(fd, path).map(Some)
}

/// `fd` as a blocking [`File`] when it is a regular file.
fn regular_file(fd: OwnedFd, path: &Path) -> Result<File> {
    let st =
        nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| Error::io("read", path, io_err(e)))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(Error::io(
            "read",
            path,
            std::io::Error::other("it is not a regular file"),
        ));
    }
    nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::F_SETFL(OFlag::empty()))
        .map_err(|e| Error::io("read", path, io_err(e)))?;
    Ok(File::from(fd))
}

/// A name for a temporary file, unique in this process.
fn temp_name(name: &OsStr) -> OsString {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    tmp
}

/// Writes `path` atomically with mode 0600: a new temporary file (never through a link) renamed
/// over it. An existing `path` must be a regular file.
pub(super) fn write_file(path: &Path, contents: &[u8], sync: FileSync) -> Result<()> {
    let (dir, name) = split(path)?;
    let dir_fd = nix::fcntl::open(
        dir,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(owned)
    .map_err(|e| Error::io("open folder", dir, io_err(e)))?;
    match nix::sys::stat::fstatat(Some(dir_fd.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG => {
            return Err(Error::io(
                "write",
                path,
                std::io::Error::other(
                    "it exists and is not a regular file (a link is never followed)",
                ),
            ))
        }
        Ok(_) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(Error::io("write", path, io_err(e))),
    }
    let tmp = temp_name(name);
    let tmp_path = dir.join(&tmp);
    let fd = nix::fcntl::openat(
        Some(dir_fd.as_raw_fd()),
        tmp.as_os_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map(owned)
    .map_err(|e| Error::io("create", &tmp_path, io_err(e)))?;
    let written = (|| -> Result<()> {
        let mut file = File::from(fd);
        file.write_all(contents)
            .map_err(|e| Error::io("write", &tmp_path, e))?;
        nix::sys::stat::fchmod(file.as_raw_fd(), Mode::from_bits_truncate(0o600))
            .map_err(|e| Error::io("set the mode of", &tmp_path, io_err(e)))?;
        if sync == FileSync::Now {
            file.sync_all()
                .map_err(|e| Error::io("sync", &tmp_path, e))?;
        }
        nix::fcntl::renameat(
            Some(dir_fd.as_raw_fd()),
            tmp.as_os_str(),
            Some(dir_fd.as_raw_fd()),
            name,
        )
        .map_err(|e| Error::io("rename into place", path, io_err(e)))
    })();
    if let Err(e) = written {
        let _ = nix::unistd::unlinkat(
            Some(dir_fd.as_raw_fd()),
            tmp.as_os_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
        return Err(e);
    }
    if sync == FileSync::Now {
        sync_fd(&dir_fd, dir)?;
    }
    Ok(())
}

/// Renames `from` to `to`, never replacing an existing `to`, and syncs both folders.
pub(super) fn rename(from: &Path, to: &Path) -> Result<()> {
    nix::fcntl::renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE).map_err(|e| {
        let source = if e == Errno::EEXIST {
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "the target exists already",
            )
        } else {
            io_err(e)
        };
        Error::io(format!("rename {} to", from.display()), to, source)
    })?;
    let (to_dir, _) = split(to)?;
    let (from_dir, _) = split(from)?;
    sync_fd(&open_dir(to_dir)?, to_dir)?;
    if from_dir != to_dir {
        sync_fd(&open_dir(from_dir)?, from_dir)?;
    }
    Ok(())
}

/// Removes a file (a link is removed, never followed).
pub(super) fn remove_file(path: &Path) -> Result<()> {
    std::fs::remove_file(path).map_err(|e| Error::io("remove", path, e))
}

/// Creates `path` and its missing parents, mode 0700, owned by `user`.
///
/// Each missing folder is created as `user`. When `user` may not write in its parent and that
/// parent, reached from `/` without links through folders only root can change, belongs to root,
/// root creates it there and hands it over; a folder in such a parent cannot be swapped by anyone
/// else in between.
pub(super) fn create_dir(path: &Path, user: &OsUser) -> Result<()> {
    if !path.is_absolute() {
        return Err(Error::io(
            "create folder",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path is not absolute"),
        ));
    }
    let mut missing: Vec<&Path> = Vec::new();
    for dir in path.ancestors() {
        // The folder itself must not be a link; a link higher up (another disk) is followed, as
        // the user.
        let meta = as_user(user, || {
            Ok(if dir == path {
                std::fs::symlink_metadata(dir)
            } else {
                std::fs::metadata(dir)
            })
        })?;
        match meta {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => {
                return Err(Error::io(
                    "create folder",
                    dir,
                    std::io::Error::other(
                        "it exists and is not a folder (a link is never followed)",
                    ),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing.push(dir),
            Err(e) => return Err(Error::io("look at", dir, e)),
        }
    }
    for dir in missing.into_iter().rev() {
        let (parent, name) = split(dir)?;
        let made = as_user(user, || {
            let parent_fd = match nix::fcntl::open(
                parent,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => owned(fd),
                Err(e) => return Ok(Err(e)),
            };
            match nix::sys::stat::mkdirat(
                Some(parent_fd.as_raw_fd()),
                name,
                Mode::from_bits_truncate(0o700),
            ) {
                Ok(()) | Err(Errno::EEXIST) => Ok(Ok(parent_fd)),
                Err(e) => Ok(Err(e)),
            }
        })?;
        let parent_fd = match made {
            Ok(fd) => fd,
            Err(Errno::EACCES | Errno::EPERM) if user.needs_switch() => {
                create_as_root(parent, name, user).map_err(|why| Error::ServersUser {
                    user: user.name.clone(),
                    problem: format!(
                        "cannot create folder {}: the user may not write in {}, and {why}",
                        dir.display(),
                        parent.display()
                    ),
                    fix: format!("create {} yourself, owned by {}", dir.display(), user.name),
                    source: None,
                })?
            }
            Err(e) => return Err(Error::io("create folder", dir, io_err(e))),
        };
        // Check what is there now as the user, and set the mode the umask may have narrowed.
        as_user(user, || {
            let fd = open_dir_at(&parent_fd, name, dir)?;
            let st = nix::sys::stat::fstat(fd.as_raw_fd())
                .map_err(|e| Error::io("look at", dir, io_err(e)))?;
            if st.st_uid != user.uid {
                // It existed already (created meanwhile) and belongs to someone else: accept it
                // as `path` would have been accepted had it existed before.
                return Ok(());
            }
            nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(0o700))
                .map_err(|e| Error::io("set the mode of", dir, io_err(e)))?;
            sync_fd(&parent_fd, parent)
        })?;
    }
    Ok(())
}

/// Creates `parent/name` as root and hands it to `user`, when `parent` is a folder only root can
/// change; returns the parent's descriptor, or why not.
fn create_as_root(
    parent: &Path,
    name: &OsStr,
    user: &OsUser,
) -> std::result::Result<OwnedFd, String> {
    let parent_fd = open_root_only(parent)?;
    // Made under a temporary name and handed over before it gets its real name, so that nobody
    // (another node's call at the same moment) ever sees it owned by root.
    let tmp = temp_name(name);
    nix::sys::stat::mkdirat(
        Some(parent_fd.as_raw_fd()),
        tmp.as_os_str(),
        Mode::from_bits_truncate(0o700),
    )
    .map_err(|e| format!("root cannot create it either: {e}"))?;
    let placed = nix::unistd::fchownat(
        Some(parent_fd.as_raw_fd()),
        tmp.as_os_str(),
        Some(nix::unistd::Uid::from_raw(user.uid)),
        Some(nix::unistd::Gid::from_raw(user.gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| format!("root cannot hand it over: {e}"))
    .and_then(|()| {
        match nix::fcntl::renameat2(
            Some(parent_fd.as_raw_fd()),
            tmp.as_os_str(),
            Some(parent_fd.as_raw_fd()),
            name,
            RenameFlags::RENAME_NOREPLACE,
        ) {
            // Created meanwhile by someone else: theirs is used.
            Ok(()) | Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(format!("root cannot rename it into place: {e}")),
        }
    });
    let _ = nix::unistd::unlinkat(
        Some(parent_fd.as_raw_fd()),
        tmp.as_os_str(),
        nix::unistd::UnlinkatFlags::RemoveDir,
    );
    placed.map(|()| parent_fd)
}

/// Opens `dir` walking from `/` without following links, when every folder on the way belongs to
/// root and only root can change it (group/other write only with the sticky bit, as on `/tmp`).
fn open_root_only(dir: &Path) -> std::result::Result<OwnedFd, String> {
    let flags = DIR_FLAGS;
    let check = |fd: &OwnedFd, at: &Path| -> std::result::Result<(), String> {
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| e.to_string())?;
        let sticky = st.st_mode & 0o1000 != 0;
        if st.st_uid != 0 || (st.st_mode & 0o022 != 0 && !sticky) {
            return Err(format!(
                "{} is not a folder only root can change",
                at.display()
            ));
        }
        Ok(())
    };
    let mut fd = nix::fcntl::open("/", flags, Mode::empty())
        .map(owned)
        .map_err(|e| e.to_string())?;
    let mut at = PathBuf::from("/");
    check(&fd, &at)?;
    for component in dir.components() {
        match component {
            Component::RootDir => continue,
            Component::Normal(name) => {
                at.push(name);
                fd = nix::fcntl::openat(Some(fd.as_raw_fd()), name, flags, Mode::empty())
                    .map(owned)
                    .map_err(|e| {
                        if e == Errno::ELOOP || e == Errno::ENOTDIR {
                            format!("{} is a link or not a folder", at.display())
                        } else {
                            format!("{}: {e}", at.display())
                        }
                    })?;
                check(&fd, &at)?;
            }
            _ => return Err(format!("{} has a `.` or `..` component", dir.display())),
        }
    }
    Ok(fd)
}

/// The bytes of a path, for messages that must show odd names exactly.
pub(super) fn shown(bytes: &[u8]) -> String {
    OsStr::from_bytes(bytes).to_string_lossy().into_owned()
}
