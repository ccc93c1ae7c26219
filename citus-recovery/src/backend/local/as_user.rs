//! Doing file work as the servers' OS user, from a process that runs as root.
//!
//! [`as_user`] switches the calling thread's filesystem identity (`setfsuid`/`setfsgid`, and its
//! supplementary groups through the raw per-thread `setgroups` system call) to the servers' user
//! for the length of one closure. While the filesystem uid is not 0 the kernel removes
//! `CAP_DAC_OVERRIDE`, `CAP_DAC_READ_SEARCH`, `CAP_FOWNER`, `CAP_CHOWN` and `CAP_FSETID` from the
//! thread's effective set, so every path lookup and permission check is the user's: a link the
//! user planted can lead only where the user could go anyway, and what the closure creates belongs
//! to the user. The identity is per thread, so call it inside `tokio::task::spawn_blocking`,
//! never on an async worker thread.

use nix::libc;
use nix::unistd::{Gid, Uid};

use crate::error::{Error, Result};
use crate::files::OsUser;

/// Runs `f` on this thread with the filesystem identity of `user` (when we are root and `user` is
/// someone else), and restores the thread's identity afterwards, also when `f` panics.
///
/// Fails, without running `f`, when the identity cannot be taken: we are neither root nor `user`,
/// or the kernel refused the switch.
pub(crate) fn as_user<T>(user: &OsUser, f: impl FnOnce() -> Result<T>) -> Result<T> {
    if !user.needs_switch() {
        return f();
    }
    if !Uid::effective().is_root() {
        return Err(Error::ServersUser {
            user: user.name.clone(),
            problem: format!(
                "cannot act as this user (uid {}): this process runs as uid {}",
                user.uid,
                Uid::effective()
            ),
            fix: format!("run it as root or as {}", user.name),
            source: None,
        });
    }
    let _guard = Switched::enter(user)?;
    f()
}

/// The thread's saved identity, restored when dropped.
struct Switched {
    groups: Vec<libc::gid_t>,
    fsuid: Uid,
    fsgid: Gid,
}

impl Switched {
    fn enter(user: &OsUser) -> Result<Self> {
        let groups = thread_groups().map_err(|source| Error::ServersUser {
            user: user.name.clone(),
            problem: "cannot read this thread's supplementary groups, to put them back after file work as this user".into(),
            fix: "run citus-recovery as root where getgroups(2) is allowed (no seccomp filter forbidding it)".into(),
            source: Some(source),
        })?;
        let refused = |what: &str| {
            Error::ServersUser {
            user: user.name.clone(),
            problem: format!(
                "cannot take its {what} (uid {}, gid {}) for file work: the kernel refused",
                user.uid, user.gid
            ),
            fix: "run citus-recovery as root, without a seccomp or user-namespace rule that forbids setfsuid/setfsgid/setgroups".into(),
            source: None,
        }
        };
        // From here on, dropping `saved` puts back whatever was changed.
        let mut saved = Switched {
            groups,
            fsuid: Uid::from_raw(u32::MAX),
            fsgid: Gid::from_raw(u32::MAX),
        };
        set_thread_groups(&[]).map_err(|_| refused("empty group list"))?;
        // setfsgid/setfsuid return the previous id and never an error: a second call tells
        // whether the first one took.
        saved.fsgid = nix::unistd::setfsgid(Gid::from_raw(user.gid));
        if nix::unistd::setfsgid(Gid::from_raw(user.gid)).as_raw() != user.gid {
            return Err(refused("group id"));
        }
        saved.fsuid = nix::unistd::setfsuid(Uid::from_raw(user.uid));
        if nix::unistd::setfsuid(Uid::from_raw(user.uid)).as_raw() != user.uid {
            return Err(refused("user id"));
        }
        Ok(saved)
    }
}

impl Drop for Switched {
    fn drop(&mut self) {
        let mut ok = true;
        if self.fsuid.as_raw() != u32::MAX {
            nix::unistd::setfsuid(self.fsuid);
            ok &= nix::unistd::setfsuid(self.fsuid) == self.fsuid;
        }
        if self.fsgid.as_raw() != u32::MAX {
            nix::unistd::setfsgid(self.fsgid);
            ok &= nix::unistd::setfsgid(self.fsgid) == self.fsgid;
        }
        ok &= set_thread_groups(&self.groups).is_ok();
        if !ok {
            // A pooled thread left with another identity would do later work as the wrong user.
            eprintln!("citus-recovery: cannot restore this thread's file identity; aborting");
            std::process::abort();
        }
    }
}

/// The calling thread's supplementary groups.
fn thread_groups() -> std::io::Result<Vec<libc::gid_t>> {
    // SAFETY: getgroups with size 0 only counts; the second call fills a buffer of that size.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut groups = vec![0 as libc::gid_t; n as usize];
    let got = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    if got < 0 {
        return Err(std::io::Error::last_os_error());
    }
    groups.truncate(got as usize);
    Ok(groups)
}

/// Sets the calling thread's supplementary groups. libc's `setgroups` changes every thread of the
/// process; the raw system call changes only this one.
fn set_thread_groups(groups: &[libc::gid_t]) -> std::io::Result<()> {
    // SAFETY: the pointer and length describe a live slice.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_setgroups,
            groups.len() as libc::size_t,
            groups.as_ptr(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn postgres() -> OsUser {
        OsUser::lookup("postgres").expect("the tests need an OS user postgres")
    }

    fn fs_ids() -> (u32, u32) {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let field = |name: &str| -> u32 {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap();
            // Real, effective, saved, filesystem.
            line.split_whitespace().nth(4).unwrap().parse().unwrap()
        };
        (field("Uid:"), field("Gid:"))
    }

    #[test]
    fn root_only_files_are_closed_and_new_files_belong_to_the_user() {
        assert!(Uid::effective().is_root(), "this test runs as root");
        let user = postgres();
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "root only").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let created = dir.path().join("created");
        let before = fs_ids();
        assert_eq!(before, (0, 0));
        let inside = as_user(&user, || {
            assert_eq!(fs_ids(), (user.uid, user.gid));
            let read = std::fs::read(&secret);
            std::fs::write(&created, "mine").unwrap();
            Ok(read)
        })
        .unwrap();
        let err = inside.expect_err("root's 0600 file must be closed to the user");
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
        let meta = std::fs::metadata(&created).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (user.uid, user.gid));
        assert_eq!(fs_ids(), (0, 0));
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root only");
    }

    #[test]
    fn the_identity_comes_back_after_a_panic() {
        let user = postgres();
        let groups = thread_groups().unwrap();
        let result = std::panic::catch_unwind(|| {
            as_user(&user, || -> Result<()> { panic!("inside") }).unwrap();
        });
        assert!(result.is_err());
        assert_eq!(fs_ids(), (0, 0));
        assert_eq!(thread_groups().unwrap(), groups);
        std::fs::read_to_string("/etc/shadow").expect("root again");
    }
}
