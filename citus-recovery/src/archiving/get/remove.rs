//! Removing a node's prefetch spool from outside archive-get: restore-finish and restore-abort,
//! so segments prefetched past the restore point do not stay behind in `pg_wal`.
//!
//! `pg_wal` is writable by the servers' user, and the caller may be root (with the servers'
//! filesystem identity, see `backend/local/as_user.rs`): everything goes through descriptors,
//! `pg_wal` and the spool are opened with `O_NOFOLLOW`, entries are looked at with
//! `AT_SYMLINK_NOFOLLOW` and removed with `unlinkat`, and only regular files with the spool's own
//! names are removed. A link in the spool's place is removed (never followed).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::UnlinkatFlags;
use serde::{Deserialize, Serialize};

use super::{spooled_segment, LAST_FILE, SPOOL_DIR, STOP_FILE, WINDOW_FILE};
use crate::error::{Error, Result};

/// What [`remove_spool_in`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpoolRemoval {
    /// There was no spool.
    Absent,
    /// The spool and its files are gone (or a link in its place, removed and not followed).
    Removed,
    /// A prefetch worker still held the spool's lock after the wait: nothing was removed.
    Busy,
    /// The spool's own files were removed, but entries with other names (listed) remain, so
    /// the folder stays.
    Foreign(Vec<String>),
}

/// Removes the prefetch spool `<pg_wal>/citus-recovery-spool`: waits up to `wait` for a
/// running worker to let go of its lock (asking it to end, `.stop`), then removes its regular
/// files with spool names (`<segment>.<crc32c>`, `.window`, `.last`, `.stop`, `.tmp-*`) and the
/// folder. Never follows a link.
/// An error only when `pg_wal` or the spool cannot be opened or changed.
pub fn remove_spool_in(pg_wal: &Path, wait: Duration) -> Result<SpoolRemoval> {
    let io = |what: &str, e: Errno| Error::io(what, pg_wal, std::io::Error::from(e));
    let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let wal = nix::fcntl::open(pg_wal, dir_flags, Mode::empty())
        .map_err(|e| io("open (without following a link)", e))?;
    // SAFETY: `open` returned a new descriptor that nothing else owns.
    let wal = unsafe { OwnedFd::from_raw_fd(wal) };
    let spool = match nix::fcntl::openat(Some(wal.as_raw_fd()), SPOOL_DIR, dir_flags, Mode::empty())
    {
        // SAFETY: as above.
        Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
        Err(Errno::ENOENT) => return Ok(SpoolRemoval::Absent),
        // A link or a file in the spool's place: removed, never followed.
        Err(Errno::ELOOP | Errno::ENOTDIR) => {
            nix::unistd::unlinkat(Some(wal.as_raw_fd()), SPOOL_DIR, UnlinkatFlags::NoRemoveDir)
                .map_err(|e| io("remove what stands in place of the prefetch spool in", e))?;
            return Ok(SpoolRemoval::Removed);
        }
        Err(e) => return Err(io("open the prefetch spool in", e)),
    };
    let deadline = Instant::now() + wait;
    let mut asked = false;
    loop {
        // SAFETY: flock on a descriptor this function owns.
        let locked =
            unsafe { nix::libc::flock(spool.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB) };
        if locked == 0 {
            break;
        }
        if !asked {
            // A worker runs: asked to end now, it lets go within a poll instead of fetching
            // the rest of its window first. Best effort: without it, the wait is the bound.
            asked = true;
            ask_worker_to_stop(&spool);
        }
        if Instant::now() >= deadline {
            return Ok(SpoolRemoval::Busy);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let listing = format!("/proc/self/fd/{}", spool.as_raw_fd());
    let entries = std::fs::read_dir(&listing)
        .map_err(|e| Error::io("list the prefetch spool in", pg_wal, e))?;
    let mut foreign = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list the prefetch spool in", pg_wal, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name == WINDOW_FILE
            || name == LAST_FILE
            || name == STOP_FILE
            || name.starts_with(".tmp-")
            || spooled_segment(&name).is_some();
        let regular = nix::sys::stat::fstatat(
            Some(spool.as_raw_fd()),
            name.as_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG);
        if !(ours && regular) {
            foreign.push(name);
            continue;
        }
        match nix::unistd::unlinkat(
            Some(spool.as_raw_fd()),
            name.as_str(),
            UnlinkatFlags::NoRemoveDir,
        ) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(io("remove a file of the prefetch spool in", e)),
        }
    }
    if !foreign.is_empty() {
        foreign.sort();
        return Ok(SpoolRemoval::Foreign(foreign));
    }
    match nix::unistd::unlinkat(Some(wal.as_raw_fd()), SPOOL_DIR, UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(SpoolRemoval::Removed),
        Err(e) => Err(io("remove the prefetch spool folder in", e)),
    }
}

/// Makes the spool's stop request ([`STOP_FILE`]) in the open spool, never through a link.
fn ask_worker_to_stop(spool: &OwnedFd) {
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mode = Mode::S_IRUSR | Mode::S_IWUSR;
    if let Ok(fd) = nix::fcntl::openat(Some(spool.as_raw_fd()), STOP_FILE, flags, mode) {
        // SAFETY: `openat` returned a new descriptor that nothing else owns.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool_of(dir: &Path) -> std::path::PathBuf {
        dir.join(SPOOL_DIR)
    }

    #[test]
    fn removes_spool_files_and_the_folder_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let spool = spool_of(dir.path());
        std::fs::create_dir(&spool).unwrap();
        for name in [
            "000000010000000000000003.0badf00d",
            ".window",
            ".last",
            ".tmp-1-2",
        ] {
            std::fs::write(spool.join(name), b"x").unwrap();
        }
        std::fs::write(dir.path().join("000000010000000000000003"), b"wal").unwrap();
        let got = remove_spool_in(dir.path(), Duration::ZERO).unwrap();
        assert_eq!(got, SpoolRemoval::Removed);
        assert!(std::fs::symlink_metadata(&spool).is_err());
        assert!(dir.path().join("000000010000000000000003").exists());
        assert_eq!(
            remove_spool_in(dir.path(), Duration::ZERO).unwrap(),
            SpoolRemoval::Absent
        );
    }

    #[test]
    fn never_follows_links() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let victim = elsewhere.path().join("000000010000000000000003.0badf00d");
        std::fs::write(&victim, b"keep").unwrap();
        // A link in the spool's place is removed, its target untouched.
        std::os::unix::fs::symlink(elsewhere.path(), spool_of(dir.path())).unwrap();
        assert_eq!(
            remove_spool_in(dir.path(), Duration::ZERO).unwrap(),
            SpoolRemoval::Removed
        );
        assert!(std::fs::symlink_metadata(spool_of(dir.path())).is_err());
        assert!(victim.exists());
        // A link with a spool name inside the spool is not removed, nor its target.
        let spool = spool_of(dir.path());
        std::fs::create_dir(&spool).unwrap();
        std::os::unix::fs::symlink(&victim, spool.join("000000010000000000000004.0badf00d"))
            .unwrap();
        std::fs::write(spool.join("000000010000000000000005.0badf00d"), b"x").unwrap();
        let got = remove_spool_in(dir.path(), Duration::ZERO).unwrap();
        assert_eq!(
            got,
            SpoolRemoval::Foreign(vec!["000000010000000000000004.0badf00d".into()])
        );
        assert!(victim.exists());
        assert!(!spool.join("000000010000000000000005.0badf00d").exists());
        // pg_wal itself a link: refused.
        let link = elsewhere.path().join("pg_wal_link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        assert!(remove_spool_in(&link, Duration::ZERO).is_err());
    }

    #[test]
    fn a_held_lock_leaves_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let lock = super::super::SpoolLock::for_dest(&dir.path().join("RECOVERYXLOG"))
            .expect("a fresh spool's lock");
        std::fs::write(spool_of(dir.path()).join(".window"), b"x").unwrap();
        assert_eq!(
            remove_spool_in(dir.path(), Duration::from_millis(50)).unwrap(),
            SpoolRemoval::Busy
        );
        assert!(spool_of(dir.path()).join(".window").exists());
        drop(lock); // closes the descriptor: the flock goes with it
        assert_eq!(
            remove_spool_in(dir.path(), Duration::ZERO).unwrap(),
            SpoolRemoval::Removed
        );
    }
}
