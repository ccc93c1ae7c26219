//! One command that changes the cluster at a time: an advisory lock per cluster.
//!
//! The lock is a `flock` on `<backupBaseFolder>/citus-recovery.lock`; the kernel releases it when
//! the holder exits, however it exits, so a crashed command never leaves the cluster locked. The
//! file's content names the holder, for the message the second command prints. Like the catalog,
//! it is the invoking user's ([`crate::trusted`]): the servers' user can neither take it nor
//! replace it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

use nix::fcntl::{Flock, FlockArg};

use crate::config::ClusterConfig;
use crate::error::{Error, Result};
use crate::trusted;

/// File name of the lock, in `backupBaseFolder`.
pub const LOCK_FILE: &str = "citus-recovery.lock";

/// Held while a command changes the cluster; released on drop.
#[derive(Debug)]
pub struct ClusterLock {
    _lock: Flock<File>,
    path: PathBuf,
}

impl ClusterLock {
    /// Takes the cluster's lock for `command`, or fails at once naming who holds it.
    pub fn acquire(config: &ClusterConfig, command: &str) -> Result<Self> {
        let dir = &config.backup_base_folder;
        trusted::ensure_dir(dir)?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(trusted::FILE_MODE)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| Error::io("open the lock file", &path, e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io("inspect the lock file", &path, e))?;
        if !meta.is_file() || meta.uid() != nix::unistd::Uid::effective().as_raw() {
            return Err(Error::UntrustedFile {
                path,
                problem: format!(
                    "is not a regular file of the user running citus-recovery (owner uid {})",
                    meta.uid()
                ),
                fix: "move it away; the library makes it again".into(),
            });
        }
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(Error::Locked {
                    holder: match holder.trim() {
                        "" => "unknown holder".into(),
                        h => h.to_string(),
                    },
                    path,
                });
            }
            Err((_, errno)) => {
                return Err(Error::io("lock", &path, std::io::Error::from(errno)));
            }
        };
        let text = format!(
            "pid {} running `{command}` since {}",
            std::process::id(),
            chrono::Utc::now().to_rfc3339()
        );
        let write = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            f.write_all(text.as_bytes())
        };
        write(&mut lock).map_err(|e| Error::io("write the lock file", &path, e))?;
        Ok(ClusterLock { _lock: lock, path })
    }

    /// The lock file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_command_is_refused_and_told_who_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let json = serde_json::json!({
            "clusterName": "c", "workerCount": 0,
            "coordinatorNode": {"name": "coordinator", "hostname": "localhost", "port": 9700, "username": "postgres", "dbname": "postgres"},
            "workerNodes": [],
            "clusterBaseFolder": dir.path().join("cluster"),
            "archiveBaseFolder": dir.path().join("archive"),
            "backupBaseFolder": dir.path().join("backup"),
        });
        let config = ClusterConfig::from_json_str(&json.to_string(), None).unwrap();
        let held = ClusterLock::acquire(&config, "basebackup").unwrap();
        match ClusterLock::acquire(&config, "restore-start") {
            Err(Error::Locked { holder, path }) => {
                assert!(
                    holder.contains(&format!("pid {}", std::process::id())),
                    "{holder}"
                );
                assert!(holder.contains("`basebackup`"), "{holder}");
                assert_eq!(path, held.path());
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(held);
        ClusterLock::acquire(&config, "restore-start").expect("free again once released");
    }
}
