//! One command that changes the cluster at a time: an advisory lock per cluster.
//!
//! With a `repository` in the config the lock is the object `lock` there, created only if absent
//! (`put_create`), so commands on several admin hosts exclude each other. It holds who, where,
//! since when and which command ([`LockHolder`]) and is deleted when the command ends (also when
//! it fails or is dropped). A command that dies without deleting it leaves it behind: such a
//! lock is reported as stale (its process is gone from this host, or it is older than
//! [`LOCK_LEASE`]) with how to break it (`citus-recovery unlock --force`), never taken over
//! silently. In a posix repository the object is checked like the catalog ([`crate::trusted`]).
//!
//! Without a repository, the lock is a `flock` on `<backupBaseFolder>/citus-recovery.lock`; the
//! kernel releases it when the holder exits, however it exits, so a crashed command never leaves
//! the cluster locked. The file's content names the holder, for the message the second command
//! prints. Like the catalog, it is the invoking user's ([`crate::trusted`]): the servers' user
//! can neither take it nor replace it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::config::{ClusterConfig, RepositoryConfig};
use crate::error::{Error, Result};
use crate::repository::{Key, RepoError, Repository};
use crate::trusted;

/// File name of the lock, in `backupBaseFolder`.
pub const LOCK_FILE: &str = "citus-recovery.lock";

/// The key of the lock object in a repository.
pub const LOCK_KEY: &str = "lock";

/// How long a repository lock is trusted to belong to a live command. Older ones are reported as
/// stale (never taken over): no command of the library runs this long (a restore of a large
/// cluster takes hours, not a day).
pub const LOCK_LEASE: Duration = Duration::from_secs(24 * 3600);

/// How long dropping a lock on a single-threaded runtime waits for the delete (its retries
/// included).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(30);

/// The pauses between attempts to delete the lock when the repository does not answer: a
/// repository that is back within seconds does not leave the lock behind.
const RELEASE_RETRIES: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];

/// Who holds a repository lock: the content of the `lock` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// The command (`basebackup`, `restore-start`, ...).
    pub command: String,
    /// The host it runs on (its host name).
    pub host: String,
    /// Its process id there.
    pub pid: u32,
    /// The process's start time (clock ticks since boot, from `/proc`), so a reused pid is not
    /// taken for the holder.
    #[serde(default)]
    pub process_start: Option<u64>,
    /// The user id it runs as.
    pub uid: u32,
    /// Since when it holds the lock.
    pub since: DateTime<Utc>,
    /// Unique to this taking of the lock: a command deletes only its own lock.
    pub token: String,
}

impl LockHolder {
    fn for_this_process(command: &str) -> Self {
        let pid = std::process::id();
        let since = Utc::now();
        let host = this_host();
        LockHolder {
            command: command.to_string(),
            token: format!(
                "{host}-{pid}-{}",
                since.timestamp_nanos_opt().unwrap_or_default()
            ),
            host,
            pid,
            process_start: process_start(pid),
            uid: nix::unistd::Uid::effective().as_raw(),
            since,
        }
    }

    /// Why the lock looks abandoned, or `None` while its holder may still run: on this host,
    /// its process is gone (or the pid is another process now); anywhere, it is older than
    /// [`LOCK_LEASE`].
    pub fn stale(&self, now: DateTime<Utc>) -> Option<String> {
        if self.host == this_host() {
            let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), None)
                .map_or_else(|e| e != nix::errno::Errno::ESRCH, |()| true);
            if !alive {
                return Some(format!(
                    "process {} no longer runs on {}",
                    self.pid, self.host
                ));
            }
            if self.process_start.is_some() && process_start(self.pid) != self.process_start {
                return Some(format!(
                    "process {} on {} is another program now",
                    self.pid, self.host
                ));
            }
        }
        let age = now.signed_duration_since(self.since);
        if age.to_std().is_ok_and(|a| a > LOCK_LEASE) {
            return Some(format!(
                "it is {} h old, more than the {} h lease",
                age.num_hours(),
                LOCK_LEASE.as_secs() / 3600
            ));
        }
        None
    }
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` on {} (pid {}, uid {}) since {}",
            self.command,
            self.host,
            self.pid,
            self.uid,
            self.since.to_rfc3339()
        )
    }
}

/// This host's name, as the kernel knows it.
fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// A process's start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Held while a command changes the cluster; released on drop.
#[derive(Debug)]
pub struct ClusterLock {
    inner: Held,
}

#[derive(Debug)]
enum Held {
    Flock {
        _lock: Flock<File>,
        path: PathBuf,
    },
    Repository {
        store: LockStore,
        holder: LockHolder,
        released: bool,
    },
}

/// The repository holding the lock, and its folder when it is a posix one (checked first).
#[derive(Debug, Clone)]
struct LockStore {
    repo: Arc<dyn Repository>,
    posix_root: Option<PathBuf>,
    /// The config file, for the command that breaks a lock left behind.
    config_path: Option<PathBuf>,
}

impl LockStore {
    fn new(config: &ClusterConfig, repo: &Arc<dyn Repository>) -> Self {
        LockStore {
            repo: repo.clone(),
            posix_root: match &config.repository {
                Some(RepositoryConfig::Posix { path }) => Some(path.clone()),
                _ => None,
            },
            config_path: config.source.clone(),
        }
    }

    fn key() -> Key {
        Key::new(LOCK_KEY).expect("a plain key")
    }

    /// The holder recorded in the lock, `None` when there is no lock.
    async fn read(&self) -> Result<Option<LockHolder>> {
        if let Some(root) = &self.posix_root {
            if !trusted::check_repository_file(root, LOCK_KEY)? {
                return Ok(None);
            }
        }
        let data = match self.repo.get(&Self::key()).await {
            Ok(d) => d,
            Err(RepoError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&data).map(Some).map_err(|e| Error::Corrupt {
            key: format!("{}: {LOCK_KEY}", self.repo.describe()),
            problem: format!(
                "it is not a lock of citus-recovery ({e}); if no command runs, remove it with `citus-recovery unlock --force`"
            ),
        })
    }

    /// Deletes the lock if it is still the one with `token` (not one taken after ours was
    /// broken).
    async fn release(&self, token: &str) -> Result<()> {
        match self.read().await? {
            Some(h) if h.token == token => Ok(self.repo.delete(&Self::key()).await?),
            _ => {
                tracing::warn!(
                    "the cluster lock in {} was no longer ours when the command ended (broken with unlock --force?); left as it is",
                    self.repo.describe()
                );
                Ok(())
            }
        }
    }

    /// [`Self::release`], tried again after each pause of [`RELEASE_RETRIES`] while the
    /// repository does not answer; when it never does, says (at error level, so `--quiet` shows
    /// it too) exactly what to run once it is back, and returns the last error.
    async fn release_retrying(&self, holder: &LockHolder) -> Result<()> {
        let mut pauses = RELEASE_RETRIES.iter();
        loop {
            let e = match self.release(&holder.token).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if matches!(e, Error::Repository(RepoError::Unavailable { .. })) {
                if let Some(pause) = pauses.next() {
                    tokio::time::sleep(*pause).await;
                    continue;
                }
            }
            tracing::error!("{}", self.left_behind(holder, &e.to_string()));
            return Err(e);
        }
    }

    /// What to say when the lock of `holder` (this process's, its command over) stays behind.
    fn left_behind(&self, holder: &LockHolder, why: &str) -> String {
        format!(
            "the cluster lock in {} stays behind: `{}` has ended but could not delete it ({why}); the next command will be refused until you run `{}` once the repository answers again",
            self.repo.describe(),
            holder.command,
            unlock_command(self.config_path.as_deref())
        )
    }
}

/// The command line that breaks the lock of the config at `path`.
pub fn unlock_command(path: Option<&std::path::Path>) -> String {
    match path {
        Some(p) => format!(
            "citus-recovery --config {} unlock --force",
            shell_quote(&p.to_string_lossy())
        ),
        None => "citus-recovery --config <the cluster's config file> unlock --force".into(),
    }
}

/// `text` as one word for a POSIX shell.
fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | ':' | ',')
        });
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

impl ClusterLock {
    /// Takes the cluster's lock for `command`, or fails at once naming who holds it: the
    /// `lock` object in `repository` when given (the config's), else the `flock` in
    /// `backupBaseFolder` ([`ClusterLock::acquire`]).
    pub async fn acquire_in(
        config: &ClusterConfig,
        repository: Option<&Arc<dyn Repository>>,
        command: &str,
    ) -> Result<Self> {
        let Some(repo) = repository else {
            return Self::acquire(config, command);
        };
        let store = LockStore::new(config, repo);
        if let Some(root) = &store.posix_root {
            trusted::ensure_dir(root)?;
            trusted::check_repository_folders(root, "")?;
        }
        let holder = LockHolder::for_this_process(command);
        let mut text = serde_json::to_vec_pretty(&holder).expect("plain data serializes");
        text.push(b'\n');
        match repo.put_create(&LockStore::key(), text.into()).await {
            // AlreadyThere: our own write, retried (the token is unique).
            Ok(_) => Ok(ClusterLock {
                inner: Held::Repository {
                    store,
                    holder,
                    released: false,
                },
            }),
            Err(RepoError::Conflict { .. }) => {
                let there = store.read().await?;
                Err(Error::RepositoryLocked {
                    repository: repo.describe(),
                    stale: there.as_ref().and_then(|h| h.stale(Utc::now())),
                    holder: there.map_or_else(
                        || "a command that has just released it".to_string(),
                        |h| h.to_string(),
                    ),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Who holds the lock, without taking it: `None` when it is free (always `None` without a
    /// repository: a `flock` cannot outlive its holder).
    pub async fn holder(
        config: &ClusterConfig,
        repository: Option<&Arc<dyn Repository>>,
    ) -> Result<Option<LockHolder>> {
        match repository {
            Some(repo) => LockStore::new(config, repo).read().await,
            None => Ok(None),
        }
    }

    /// Breaks the repository lock whoever holds it, and returns who did (`None`: it was free).
    /// Only for a lock left by a command that died: check first that its holder no longer runs.
    /// Without a repository there is nothing to break (the kernel releases a `flock` when its
    /// holder exits): a lock held by a live command is [`Error::Locked`].
    pub async fn break_lock(
        config: &ClusterConfig,
        repository: Option<&Arc<dyn Repository>>,
    ) -> Result<Option<LockHolder>> {
        let Some(repo) = repository else {
            drop(Self::acquire(config, "unlock")?);
            return Ok(None);
        };
        let store = LockStore::new(config, repo);
        let holder = match store.read().await {
            Ok(h) => h,
            // An unreadable lock object is what --force is for.
            Err(Error::Corrupt { .. }) => None,
            Err(e) => return Err(e),
        };
        if let Some(root) = &store.posix_root {
            trusted::check_repository_folders(root, "")?;
        }
        repo.delete(&LockStore::key()).await?;
        Ok(holder)
    }

    /// Releases the lock now, reporting a failure (dropping it releases too, but can only log).
    pub async fn release(mut self) -> Result<()> {
        if let Held::Repository {
            store,
            holder,
            released,
        } = &mut self.inner
        {
            *released = true;
            store.release_retrying(holder).await?;
        }
        Ok(())
    }

    /// Takes the `flock` in `backupBaseFolder` for `command`, or fails at once naming who holds
    /// it (the lock of a config without a repository).
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
        Ok(ClusterLock {
            inner: Held::Flock { _lock: lock, path },
        })
    }

    /// The lock file, for a `flock`; `None` for a lock in a repository.
    pub fn path(&self) -> Option<&std::path::Path> {
        match &self.inner {
            Held::Flock { path, .. } => Some(path),
            Held::Repository { .. } => None,
        }
    }

    /// Who holds this lock, for a lock in a repository.
    pub fn holder_info(&self) -> Option<&LockHolder> {
        match &self.inner {
            Held::Repository { holder, .. } => Some(holder),
            Held::Flock { .. } => None,
        }
    }
}

impl Drop for ClusterLock {
    fn drop(&mut self) {
        let Held::Repository {
            store,
            holder,
            released: false,
        } = &self.inner
        else {
            return;
        };
        // Drop cannot await: wait for the delete on this thread where the runtime allows it
        // (the command-line tool's and the Python module's runtimes do), so the lock is gone
        // when the command returns, also after an error or a cancelled call.
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::error!("{}", store.left_behind(holder, "no async runtime"));
            return;
        };
        if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            // release_retrying says what to run when it fails.
            let _ = tokio::task::block_in_place(|| handle.block_on(store.release_retrying(holder)));
            return;
        }
        // A single-threaded runtime cannot be blocked on from inside: release on a thread of
        // its own with a runtime of its own, bounded in time (a connection pooled by the
        // blocked runtime could otherwise wait for ever).
        let (store, holder) = (store.clone(), holder.clone());
        let _ = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(
                        "{}",
                        store.left_behind(&holder, &format!("no runtime: {e}"))
                    );
                    return;
                }
            };
            rt.block_on(async {
                if tokio::time::timeout(RELEASE_TIMEOUT, store.release_retrying(&holder))
                    .await
                    .is_err()
                {
                    tracing::error!("{}", store.left_behind(&holder, "no answer in time"));
                }
            })
        })
        .join();
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
                assert_eq!(Some(path.as_path()), held.path());
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(held);
        ClusterLock::acquire(&config, "restore-start").expect("free again once released");
    }

    fn config_in(dir: &std::path::Path) -> ClusterConfig {
        let json = serde_json::json!({
            "clusterName": "c", "workerCount": 0,
            "coordinatorNode": {"name": "coordinator", "hostname": "localhost", "port": 9700, "username": "postgres", "dbname": "postgres"},
            "workerNodes": [],
            "clusterBaseFolder": dir.join("cluster"),
            "archiveBaseFolder": dir.join("archive"),
            "backupBaseFolder": dir.join("backup"),
        });
        ClusterConfig::from_json_str(&json.to_string(), None).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_repository_lock_refuses_a_second_command_and_goes_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let repo: Arc<dyn Repository> =
            Arc::new(crate::repository::memory::MemoryRepository::new());
        let held = ClusterLock::acquire_in(&config, Some(&repo), "basebackup")
            .await
            .unwrap();
        let holder = ClusterLock::holder(&config, Some(&repo))
            .await
            .unwrap()
            .expect("held");
        assert_eq!(Some(&holder), held.holder_info());
        assert_eq!(holder.pid, std::process::id());
        assert_eq!(holder.stale(Utc::now()), None, "our own process runs");
        match ClusterLock::acquire_in(&config, Some(&repo), "restore-start").await {
            Err(e @ Error::RepositoryLocked { .. }) => {
                let text = e.to_string();
                assert!(text.contains("`basebackup`"), "{text}");
                assert!(
                    text.contains(&format!("pid {}", std::process::id())),
                    "{text}"
                );
                assert!(text.contains("wait for that command"), "{text}");
                assert!(matches!(e, Error::RepositoryLocked { stale: None, .. }));
            }
            other => panic!("expected RepositoryLocked, got {other:?}"),
        }
        drop(held);
        assert_eq!(
            ClusterLock::holder(&config, Some(&repo)).await.unwrap(),
            None
        );
        let again = ClusterLock::acquire_in(&config, Some(&repo), "restore-start")
            .await
            .expect("free again once dropped");
        again.release().await.unwrap();
        assert!(repo.list(&Key::root()).await.unwrap().is_empty());
        // Nothing beside the backups: the lock is only in the repository.
        assert!(!dir.path().join("backup").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_lock_is_reported_with_the_fix_and_only_broken_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let repo: Arc<dyn Repository> =
            Arc::new(crate::repository::memory::MemoryRepository::new());
        // A command that died on this host: a pid that runs no process.
        let mut dead = LockHolder::for_this_process("restore-start");
        dead.pid = 4_000_000; // above the kernel's pid_max ceiling (4194304 is the maximum)
        while nix::sys::signal::kill(nix::unistd::Pid::from_raw(dead.pid as i32), None).is_ok() {
            dead.pid += 1;
        }
        repo.put_create(&LockStore::key(), serde_json::to_vec(&dead).unwrap().into())
            .await
            .unwrap();
        match ClusterLock::acquire_in(&config, Some(&repo), "basebackup").await {
            Err(e @ Error::RepositoryLocked { .. }) => {
                let text = e.to_string();
                assert!(text.contains("looks stale"), "{text}");
                assert!(text.contains("no longer runs"), "{text}");
                assert!(text.contains("citus-recovery unlock --force"), "{text}");
            }
            other => panic!("expected RepositoryLocked, got {other:?}"),
        }
        // Still there: never taken over silently.
        assert_eq!(
            ClusterLock::holder(&config, Some(&repo)).await.unwrap(),
            Some(dead.clone())
        );
        // Another host's lock is stale only past the lease.
        let mut remote = dead.clone();
        remote.host = "other-admin-host".into();
        assert_eq!(remote.stale(Utc::now()), None);
        let late = remote.since + chrono::Duration::hours(25);
        assert!(remote.stale(late).unwrap().contains("lease"));
        assert_eq!(
            ClusterLock::break_lock(&config, Some(&repo)).await.unwrap(),
            Some(dead)
        );
        assert_eq!(
            ClusterLock::break_lock(&config, Some(&repo)).await.unwrap(),
            None
        );
        ClusterLock::acquire_in(&config, Some(&repo), "basebackup")
            .await
            .expect("free once broken")
            .release()
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_single_threaded_runtime_releases_on_drop_too() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let mut config = config_in(dir.path());
        config.repository = Some(RepositoryConfig::Posix { path: root.clone() });
        let repo: Arc<dyn Repository> =
            Arc::new(crate::repository::posix::PosixRepository::new(root.clone()));
        for command in ["cluster create", "prepare-archiving", "basebackup"] {
            let held = ClusterLock::acquire_in(&config, Some(&repo), command)
                .await
                .unwrap();
            assert!(root.join(LOCK_KEY).exists());
            drop(held);
            assert!(!root.join(LOCK_KEY).exists(), "released when dropped");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_command_releases_only_its_own_lock() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let repo: Arc<dyn Repository> =
            Arc::new(crate::repository::memory::MemoryRepository::new());
        let first = ClusterLock::acquire_in(&config, Some(&repo), "basebackup")
            .await
            .unwrap();
        // An operator broke it, and another command took the lock since.
        ClusterLock::break_lock(&config, Some(&repo)).await.unwrap();
        let second = ClusterLock::acquire_in(&config, Some(&repo), "restore-point")
            .await
            .unwrap();
        drop(first);
        let holder = ClusterLock::holder(&config, Some(&repo)).await.unwrap();
        assert_eq!(holder.as_ref(), second.holder_info(), "the second keeps it");
    }
}
