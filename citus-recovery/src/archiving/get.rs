//! `archive-get`: one WAL file from the repository into `pg_wal`, checked before PostgreSQL
//! sees it, with the following segments prefetched into a spool by a detached worker
//! (pgBackRest's asynchronous archive-get queue), so that replay from object storage is not
//! one round trip, nor one repository client, per segment.
//!
//! The spool is `pg_wal/citus-recovery-spool/` (beside `%p`, so a spooled file reaches `%p` by
//! `rename`), written by archive-get and its worker, which run as the servers' user. It holds
//! only decoded segments whose checksum passed, named `<segment>.<crc32c>`; each is read back
//! and its checksum checked again before it is renamed to `%p`, so a stale, damaged or foreign
//! file is never handed over. Writes go to `.tmp-*` files first and are published by `rename`.
//!
//! One worker at most runs per spool: it holds an exclusive `flock` on the folder, taken by the
//! call that starts it and handed over across `exec` ([`SpoolLock::spawn`]). Whoever takes the
//! free lock removes `.tmp-*` files first (a worker that was killed), so a crash anywhere leaves
//! nothing that is ever handed over. The worker fetches the segments of its window
//! ([`prefetch`]), records the window in `.window`, and exits when the window is done or the
//! archive ends. A call whose segment is spooled takes it without reading the config or
//! starting a runtime ([`take_spooled`]); one whose segment is in a running worker's window
//! waits for it; the rest fetch directly and start a worker for the segments after theirs.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;

use super::{wal_key, SUFFIXES};
use crate::error::{Error, Result};
use crate::repository::codec;
use crate::repository::{RepoError, Repository};
use crate::wal::TimeLineId;

mod remove;
mod seed;
pub use remove::{remove_spool_in, SpoolRemoval};
pub use seed::{seed_header, seed_spool};

/// The spool's folder name, inside the folder of `%p` (`pg_wal`).
pub const SPOOL_DIR: &str = "citus-recovery-spool";

/// The worker's window in the spool: `<first segment> <queue>`.
const WINDOW_FILE: &str = ".window";

/// The last segment handed to PostgreSQL, from the spool or fetched.
const LAST_FILE: &str = ".last";

/// Asks the spool's worker to end now rather than when its window is fetched: made by whoever
/// removes the spool ([`remove_spool_in`]), looked for by the worker between and during its
/// fetches, cleared by the next call that takes the free lock.
const STOP_FILE: &str = ".stop";

/// How often a worker waiting on its fetches looks for [`STOP_FILE`].
const STOP_POLL: Duration = Duration::from_millis(50);

/// How long a call waits for a running worker to deliver a segment of its window before
/// fetching it itself (pgBackRest's `archive-timeout` default).
const WORKER_WAIT: Duration = Duration::from_secs(60);

/// How long removing the spool waits for a running worker to end.
const REMOVE_WAIT: Duration = Duration::from_secs(2);

/// The largest window `.window` may name.
const MAX_WINDOW: usize = 1024;

/// Requests a worker keeps in flight.
const WORKER_PARALLEL: usize = 4;

/// What [`archive_get`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetOutcome {
    /// The file was fetched from the repository and written to the destination.
    Restored,
    /// The repository does not hold it: a normal part of recovery (PostgreSQL asks for files
    /// past the end of the archive and for `.history` files that may not exist).
    NotFound,
    /// The file was prefetched by a worker, checked again and renamed to the destination.
    FromSpool,
}

/// What [`take_spooled`] did.
#[derive(Debug)]
pub enum Spooled {
    /// The segment was in the spool, its checksum checked again, and it is now at `dest`.
    /// `refill` is the spool's free lock when fewer than half the queue's segments after it
    /// are spooled: start a worker with it ([`SpoolLock::spawn`]) from the next segment.
    Taken {
        /// The lock for a new worker, when the spool needs one.
        refill: Option<SpoolLock>,
        /// The segments' size: the taken segment's length.
        segment_size: u64,
    },
    /// Not spooled (or not a segment, or no usable spool): fetch it with [`archive_get`].
    Missing,
}

/// The cheap path of archive-get: takes segment `file` (PostgreSQL's `%f`) from the spool
/// beside `dest` (`%p`) when a worker put it there, checksum checked. Reads no config and
/// makes no request. When the segment is not there yet but a running worker's window holds
/// it, waits for the worker (at most a minute). Never fails: anything odd is [`Spooled::Missing`].
pub fn take_spooled(file: &str, dest: &Path) -> Spooled {
    if name_order(file).is_none() {
        return Spooled::Missing; // only segments are spooled
    }
    let dir = spool_dir_of(dest);
    if !spool_is_ours(&dir) {
        return Spooled::Missing;
    }
    let deadline = Instant::now() + WORKER_WAIT;
    let mut pause = Duration::from_millis(1);
    while !take(&dir, file, dest) {
        let waiting = Instant::now() < deadline
            && read_window(&dir).is_some_and(|w| w.holds(file))
            && SpoolLock::try_acquire(&dir).is_none();
        if !waiting {
            // The worker may have stored it just before it let go of the lock.
            if take(&dir, file, dest) {
                break;
            }
            return Spooled::Missing;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(5));
    }
    record_last(&dir, file);
    let window = read_window(&dir);
    let queue = window.as_ref().map_or(0, |w| w.queue);
    let segment_size = segment_size_of(dest);
    let (ahead, leftovers) = scan(&dir, file, queue, segment_size);
    // restore-start's window ends where replay stops: fetching past it would only compete
    // with replay (a segment replay still asks for after it is fetched, and starts a worker).
    let low = ahead * 2 < queue && !window.is_some_and(|w| w.restore && w.holds(file));
    // Taking the free lock also removes what a killed worker left.
    let lock = (low || leftovers).then(|| SpoolLock::try_acquire(&dir));
    Spooled::Taken {
        refill: lock.flatten().filter(|_| low),
        segment_size,
    }
}

/// Fetches `file` (PostgreSQL's `%f`) of `node` from `repo` into `dest` (`%p`), after checking
/// its checksum; a segment a worker spooled is taken from the spool instead (checked again).
/// Starts no worker: the command does, with [`SpoolLock::for_dest`]. With `queue` 0, and when
/// the repository lacks the file (the end of the archive, the next timeline's history file
/// during promotion), the spool is removed unless a worker runs.
///
/// Any failure other than "not there" is an error, which the command turns into an exit code
/// above 125 so that PostgreSQL stops recovery instead of taking it for the end of the WAL.
pub async fn archive_get(
    repo: &dyn Repository,
    node: &str,
    file: &str,
    dest: &Path,
    queue: usize,
) -> Result<GetOutcome> {
    wal_key(node, file, "")?; // checks the name before anything touches the disk
    let dir = spool_dir_of(dest);
    if queue == 0 || replay_went_back(file, dest) {
        // Prefetch off (maybe turned off since the last call): leave nothing behind.
        let d = dir.clone();
        blocking(&dir, move || remove_spool_unless_busy(&d)).await?;
    } else if name_order(file).is_some() && spool_is_ours(&dir) {
        let (d, f, to) = (dir.clone(), file.to_string(), dest.to_path_buf());
        if blocking(&dir, move || Ok(take(&d, &f, &to))).await? {
            tracing::debug!("archive-get {file}: from the prefetch spool");
            return Ok(GetOutcome::FromSpool);
        }
    }
    match fetch_decoded(repo, node, file).await? {
        Some(data) => {
            let (dest2, d, f) = (dest.to_path_buf(), dir.clone(), file.to_string());
            blocking(dest, move || {
                write_new(&dest2, &data)?;
                if name_order(&f).is_some() && spool_is_ours(&d) {
                    record_last(&d, &f);
                }
                Ok(())
            })
            .await?;
            tracing::debug!("archive-get {file}: fetched");
            Ok(GetOutcome::Restored)
        }
        None => {
            // The end of the archive: nothing spooled after it is worth keeping.
            let d = dir.clone();
            blocking(&dir, move || remove_spool_unless_busy(&d)).await?;
            Ok(GetOutcome::NotFound)
        }
    }
}

/// Whether PostgreSQL asks for segment `file` after it was given a later (or the same) one of
/// its timeline through the spool beside `dest`: replay went back (the re-read of the last
/// segment when recovery ends, a restart), so what is spooled ahead is not wanted and no worker
/// should start. [`archive_get`] then removes the spool.
pub fn replay_went_back(file: &str, dest: &Path) -> bool {
    let dir = spool_dir_of(dest);
    let Some((tli, n)) = name_order(file) else {
        return false;
    };
    if !spool_is_ours(&dir) {
        return false;
    }
    let mut text = String::new();
    let read = File::options()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(dir.join(LAST_FILE))
        .and_then(|f| f.take(64).read_to_string(&mut text));
    read.is_ok() && name_order(text.trim()).is_some_and(|(t, m)| t == tli && m >= n)
}

/// Records segment `file` as the last one handed over (best effort: without it nothing is
/// taken for a step back).
fn record_last(dir: &Path, file: &str) {
    let write = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(dir.join(LAST_FILE))
        .and_then(|mut f| f.write_all(file.as_bytes()));
    let _ = write;
}

/// The arguments of `archive-get-prefetch` for `count` segments of `node` from `first`, as
/// every backend starts it (after the program's `--config`; the caller adds `--pg-wal` and its
/// own options). `--segment-size` only when the segments are not 16 MiB: a node's older tool
/// need not know the option.
pub fn prefetch_args(node: &str, first: &str, count: usize, segment_size: u64) -> Vec<String> {
    let mut args: Vec<String> = ["archive-get-prefetch", "--node", node, "--count"]
        .map(String::from)
        .into();
    args.push(count.to_string());
    if segment_size != crate::wal::DEFAULT_SEGMENT_SIZE {
        args.extend(["--segment-size".to_string(), segment_size.to_string()]);
    }
    args.push(first.to_string());
    args
}

/// The prefetch worker's job: fetches the segments `first` and the `queue - 1` after it on its
/// timeline that are not spooled yet, [`WORKER_PARALLEL`] requests at a time, into the spool
/// `lock` holds, each decoded and checksum-checked; stops at the first one the repository
/// lacks (the end of the archive). With `queue` 0 it removes the spool. Returns how
/// many it stored. A failed or damaged fetch stores nothing: PostgreSQL's own call reports it.
///
/// The names after `first` depend on the segments' size (`segment_size`): without it, `first`
/// is fetched before the others and its length is the size.
pub async fn prefetch(
    repo: &dyn Repository,
    node: &str,
    first: &str,
    queue: usize,
    segment_size: Option<u64>,
    lock: &SpoolLock,
) -> Result<usize> {
    wal_key(node, first, "")?;
    let dir = lock.dir.clone();
    if queue == 0 {
        let d = dir.clone();
        blocking(&dir, move || empty_and_remove(&d)).await?;
        return Ok(0);
    }
    if stop_requested(&dir) {
        return Ok(0);
    }
    let mut early = None;
    let seg_size = match segment_size {
        Some(size) => size,
        None => match fetch_decoded(repo, node, first).await {
            Ok(Some(data)) => {
                let size = data.len() as u64;
                early = Some(data);
                crate::wal::segment_size_or_default(Some(size))
            }
            Ok(None) => return Ok(0), // the end of the archive
            Err(e) => {
                tracing::debug!("archive-get prefetch {first}: {e}");
                crate::wal::DEFAULT_SEGMENT_SIZE
            }
        },
    };
    let Some(window) = window_segments(first, queue, seg_size) else {
        return Ok(0); // not a segment: nothing follows it
    };
    let present = {
        let (d, w) = (dir.clone(), window.clone());
        let line = format!("{first} {queue}{}", size_word(seg_size));
        let first = first.to_string();
        blocking(&dir, move || {
            // restore-start recorded this window already, marked as its own: kept.
            let recorded = read_window(&d).is_some_and(|r| {
                r.restore && r.queue == queue && r.first == first && r.seg_size == seg_size
            });
            if !recorded {
                write_atomically(&d, WINDOW_FILE, line.as_bytes())?;
            }
            clean(&d, &w)
        })
        .await?
    };
    let missing: Vec<String> = window
        .into_iter()
        .filter(|name| !present.contains(name))
        .collect();
    let mut fetches = futures::stream::iter(missing)
        .map(|name| {
            // `first`, when fetched already to learn the size, is not fetched again.
            let fetched = early.take().filter(|_| name == first);
            async move {
                let data = match fetched {
                    Some(data) => Ok(Some(data)),
                    None => fetch_decoded(repo, node, &name).await,
                };
                (data, name)
            }
        })
        .buffered(WORKER_PARALLEL);
    let mut stored = 0;
    loop {
        // A fetch may take long (a slow or unreachable repository): the stop request is looked
        // for while waiting too, and dropping the stream cancels the fetches under way.
        let next = tokio::select! {
            next = fetches.next() => next,
            () = tokio::time::sleep(STOP_POLL) => {
                if stop_requested(&dir) {
                    break;
                }
                continue;
            }
        };
        let Some((fetched, name)) = next else { break };
        if stop_requested(&dir) {
            break;
        }
        match fetched {
            Ok(Some(data)) => {
                let d = dir.clone();
                match blocking(&dir, move || store(&d, &name, &data)).await {
                    Ok(()) => stored += 1,
                    Err(e) => tracing::debug!("archive-get prefetch: not spooled: {e}"),
                }
            }
            // The end of the archive. The spool stays: its `.last` tells a later step back,
            // and PostgreSQL's own request past the end removes it.
            Ok(None) => break,
            Err(e) => tracing::debug!("archive-get prefetch {name}: {e}"),
        }
    }
    Ok(stored)
}

/// A spool's worker lock: the folder opened (never through a link) with an exclusive `flock`
/// on it, so that one worker at most fills a spool. Dropping it closes the handle without
/// unlocking, so a lock handed to a worker stays with the worker.
#[derive(Debug)]
pub struct SpoolLock {
    /// The spool; for an inherited lock, `/proc/self/fd/<fd>`, so every name resolves in the
    /// folder that is locked whatever is renamed meanwhile.
    dir: PathBuf,
    fd: OwnedFd,
}

impl SpoolLock {
    /// The lock of the spool beside `dest` (`%p`), making the spool (0700) when it is missing;
    /// `None` when a worker holds it or the spool is not usable (a link, a file, another
    /// user's folder, or `pg_wal` of another user: see [`parent_is_ours`]).
    pub fn for_dest(dest: &Path) -> Option<SpoolLock> {
        let dir = spool_dir_of(dest);
        if !parent_is_ours(&dir) {
            return None;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(_) => return None,
        }
        Self::try_acquire(&dir)
    }

    /// The lock of the spool in the folder `pg_wal`, as [`Self::for_dest`] for a file there:
    /// restore-start takes it to fill the spool before the server starts.
    pub fn for_pg_wal(pg_wal: &Path) -> Option<SpoolLock> {
        Self::for_dest(&pg_wal.join("RECOVERYXLOG"))
    }

    /// Records restore-start's window, `first` and the `queue - 1` segments after it, as the
    /// one being filled, before the worker starts: an archive-get for one of them waits for
    /// the worker instead of fetching it too, and taking one starts no refill worker (the
    /// window ends at the restore point). [`prefetch`] keeps the record when it names the
    /// same window.
    pub fn record_window(&self, first: &str, queue: usize, segment_size: u64) -> Result<()> {
        if segment_number(first, segment_size).is_none()
            || !crate::wal::is_valid_segment_size(segment_size)
            || queue == 0
            || queue > MAX_WINDOW
        {
            return Err(Error::InvalidArgument {
                what: "prefetch window",
                value: format!("{first} {queue} {segment_size}"),
                problem: format!(
                    "must be a WAL segment name, 1 to {MAX_WINDOW} segments and a WAL segment \
                     size (a power of two from 1 MiB to 1 GiB)"
                ),
            });
        }
        let line = format!(
            "{first} {queue} {RESTORE_WINDOW}{}",
            size_word(segment_size)
        );
        write_atomically(&self.dir, WINDOW_FILE, line.as_bytes())
    }

    /// The free lock of the spool folder `dir`, after removing what a killed worker left
    /// (`.tmp-*` files) and a stop request; `None` when it is held or `dir` is not a usable spool.
    fn try_acquire(dir: &Path) -> Option<SpoolLock> {
        let fd = open_spool(dir)?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { nix::libc::flock(fd.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB) } != 0
        {
            return None;
        }
        let lock = SpoolLock {
            dir: dir.to_path_buf(),
            fd,
        };
        remove_temporary(&lock.dir);
        // A stop request was for the worker that held the lock before, which has ended.
        let _ = std::fs::remove_file(lock.dir.join(STOP_FILE));
        Some(lock)
    }

    /// The lock a worker was started with: descriptor `fd`, inherited from the call that took
    /// it. Checked to be a folder of this user that others cannot write, locked by this
    /// process' open file (a `flock` on it succeeds).
    pub fn inherited(fd: RawFd) -> Result<SpoolLock> {
        let dir = PathBuf::from(format!("/proc/self/fd/{fd}"));
        let bad = |problem: &str| {
            Error::io(
                "use the inherited prefetch spool",
                &dir,
                std::io::Error::other(problem.to_string()),
            )
        };
        // SAFETY: F_GETFD only asks whether `fd` is open; nothing else owns it in this process.
        if fd < 3 || unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } < 0 {
            return Err(bad("no such open descriptor"));
        }
        // SAFETY: the descriptor is open and was passed to this process for it alone.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let file = File::from(fd);
        let meta = file
            .metadata()
            .map_err(|e| Error::io("inspect the prefetch spool", &dir, e))?;
        if !meta.is_dir()
            || meta.uid() != nix::unistd::geteuid().as_raw()
            || meta.mode() & 0o022 != 0
        {
            return Err(bad("not a folder of this user that only it can write"));
        }
        let fd = OwnedFd::from(file);
        // SAFETY: flock and fcntl on a descriptor this function owns.
        let locked = unsafe {
            nix::libc::fcntl(fd.as_raw_fd(), nix::libc::F_SETFD, nix::libc::FD_CLOEXEC);
            nix::libc::flock(fd.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB)
        };
        if locked != 0 {
            return Err(bad("its lock is held by another process"));
        }
        Ok(SpoolLock { dir, fd })
    }

    /// The descriptor a worker gets the lock by (pass it to [`SpoolLock::inherited`]).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Starts `cmd` detached with this lock: forked twice (no zombie, no parent to wait for
    /// it), in a new session, stdin/stdout/stderr on `/dev/null` (nobody waits for its
    /// output), working folder `/`, the lock's descriptor kept open across `exec`. Returns once
    /// the program runs; the lock is then the worker's.
    pub fn spawn(self, cmd: std::process::Command) -> Result<()> {
        self.spawn_detached(cmd, std::process::Stdio::null())
    }

    /// [`Self::spawn`], the worker reading this process's stdin (restore-start's
    /// `archive-get-prefetch` passes on what the pre-flight read: [`seed_spool`]).
    pub fn spawn_with_stdin(self, cmd: std::process::Command) -> Result<()> {
        self.spawn_detached(cmd, std::process::Stdio::inherit())
    }

    fn spawn_detached(
        self,
        mut cmd: std::process::Command,
        stdin: std::process::Stdio,
    ) -> Result<()> {
        let fd = self.fd.as_raw_fd();
        cmd.stdin(stdin)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .current_dir("/");
        // SAFETY: only async-signal-safe calls (setsid, fork, _exit, fcntl) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                use nix::libc;
                libc::setsid();
                match libc::fork() {
                    -1 => return Err(std::io::Error::last_os_error()),
                    0 => {}
                    _ => libc::_exit(0), // the middle process: the worker is adopted
                }
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io("start the prefetch worker for", &self.dir, e))?;
        let _ = child.wait(); // the middle process, which exits at once
        Ok(())
    }
}

/// The spool folder beside `dest`.
fn spool_dir_of(dest: &Path) -> PathBuf {
    dest.parent().unwrap_or(Path::new(".")).join(SPOOL_DIR)
}

/// Whether `dir` is a spool that may be used: in a `pg_wal` of this user, a folder (not a link)
/// of this user that others cannot write.
fn spool_is_ours(dir: &Path) -> bool {
    parent_is_ours(dir)
        && std::fs::symlink_metadata(dir).is_ok_and(|m| {
            m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw() && m.mode() & 0o022 == 0
        })
}

/// The spool folder opened without following a link, when it is ours ([`spool_is_ours`]).
fn open_spool(dir: &Path) -> Option<OwnedFd> {
    if !parent_is_ours(dir) {
        return None;
    }
    let file = File::options()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW)
        .open(dir)
        .ok()?;
    let meta = file.metadata().ok()?;
    let ours = meta.uid() == nix::unistd::geteuid().as_raw() && meta.mode() & 0o022 == 0;
    ours.then(|| OwnedFd::from(file))
}

/// The mark after a window restore-start recorded (`<first> <queue> restore`).
const RESTORE_WINDOW: &str = "restore";

/// The mark before the segments' size in `.window` (`size=67108864`).
const SIZE_MARK: &str = "size=";

/// The segments' size as `.window` records it: nothing for the default (16 MiB), so that
/// the line reads as before for most clusters.
fn size_word(seg_size: u64) -> String {
    if seg_size == crate::wal::DEFAULT_SEGMENT_SIZE {
        String::new()
    } else {
        format!(" {SIZE_MARK}{seg_size}")
    }
}

/// A worker's window as `.window` records it: `<first> <queue>[ restore][ size=<bytes>]`.
struct Window {
    first: String,
    queue: usize,
    /// Recorded by restore-start ([`SpoolLock::record_window`]): no refill inside it.
    restore: bool,
    /// The segments' size (16 MiB when not recorded).
    seg_size: u64,
}

impl Window {
    /// Whether segment `file` is in the window.
    fn holds(&self, file: &str) -> bool {
        let (Some((tli, n)), Some((first_tli, first))) = (
            segment_number(file, self.seg_size),
            segment_number(&self.first, self.seg_size),
        ) else {
            return false;
        };
        tli == first_tli && n >= first && n < first + self.queue as u64
    }
}

/// The window the last worker of spool `dir` recorded.
fn read_window(dir: &Path) -> Option<Window> {
    let mut text = String::new();
    File::options()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(dir.join(WINDOW_FILE))
        .ok()?
        .take(64)
        .read_to_string(&mut text)
        .ok()?;
    let mut words = text.split_whitespace();
    let (first, queue) = (words.next()?, words.next()?);
    let (mut restore, mut seg_size) = (false, crate::wal::DEFAULT_SEGMENT_SIZE);
    for word in words {
        match word.strip_prefix(SIZE_MARK) {
            Some(size) => {
                seg_size = size
                    .parse()
                    .ok()
                    .filter(|s| crate::wal::is_valid_segment_size(*s))?
            }
            None if word == RESTORE_WINDOW && !restore => restore = true,
            None => return None,
        }
    }
    name_order(first)?;
    Some(Window {
        first: first.to_string(),
        queue: queue.parse().ok().filter(|q| *q <= MAX_WINDOW)?,
        restore,
        seg_size,
    })
}

/// How many of the `queue` segments after `file` are spooled, and whether temporary files are
/// there (left by a worker that was killed, or being written by a running one).
fn scan(dir: &Path, file: &str, queue: usize, seg_size: u64) -> (usize, bool) {
    let (Some((tli, n)), Ok(entries)) = (segment_number(file, seg_size), std::fs::read_dir(dir))
    else {
        return (0, false);
    };
    let (mut ahead, mut leftovers) = (0, false);
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        leftovers |= name.starts_with(".tmp-");
        let spooled = spooled_segment(&name).and_then(|(seg, _)| segment_number(seg, seg_size));
        if spooled.is_some_and(|(t, m)| t == tli && m > n && m <= n + queue as u64) {
            ahead += 1;
        }
    }
    (ahead, leftovers)
}

/// Fetches `file` of `node`, decoded and checksum-checked; `None` when the repository lacks it.
async fn fetch_decoded(repo: &dyn Repository, node: &str, file: &str) -> Result<Option<Bytes>> {
    for suffix in SUFFIXES {
        let key = wal_key(node, file, suffix)?;
        let frame = match repo.get(&key).await {
            Ok(frame) => frame,
            Err(RepoError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let key_text = key.to_string();
        let data = tokio::task::spawn_blocking(move || codec::decode(&frame))
            .await
            .map_err(|e| Error::io("decode", Path::new(&key_text), std::io::Error::other(e)))?
            .map_err(|e| Error::Corrupt {
                key: key.to_string(),
                problem: e.to_string(),
            })?;
        return Ok(Some(data));
    }
    Ok(None)
}

/// Runs blocking file work off the async threads; a panic there is an error about `path`.
async fn blocking<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::io("work on", path, std::io::Error::other(e)))?
}

/// A segment name's timeline and its place in name order (log id × 2^32 + segment): the
/// segments' own order whatever their size. `None` for anything else.
fn name_order(file: &str) -> Option<(TimeLineId, u64)> {
    let (tli, log, seg) = crate::wal::lsn::split_segment_file_name(file)?;
    Some((tli, (u64::from(log) << 32) | u64::from(seg)))
}

/// The timeline and segment number of a segment name for `seg_size`-byte segments; `None`
/// for anything else, or a name no segment of that size has.
fn segment_number(file: &str, seg_size: u64) -> Option<(TimeLineId, u64)> {
    crate::wal::parse_segment_file_name(file, crate::wal::segment_size_or_default(Some(seg_size)))
}

/// The name of the segment after segment `file` of `seg_size` bytes on its timeline (where the
/// next worker starts).
pub fn next_segment(file: &str, seg_size: u64) -> Option<String> {
    following_segments(file, 1, seg_size)?.pop()
}

/// The names of a window: `first` and the `count - 1` segments of `segment_size` bytes after
/// it; `None` when `first` is not a segment name.
pub fn window_segments(first: &str, count: usize, segment_size: u64) -> Option<Vec<String>> {
    let mut names = following_segments(first, count.saturating_sub(1), segment_size)?;
    names.insert(0, first.to_string());
    Some(names)
}

/// The names of the `count` segments of `seg_size` bytes after segment `file` on its
/// timeline, or `None` when `file` is not such a segment.
pub(crate) fn following_segments(file: &str, count: usize, seg_size: u64) -> Option<Vec<String>> {
    let seg_size = crate::wal::segment_size_or_default(Some(seg_size));
    let (tli, first) = segment_number(file, seg_size)?;
    // The last segment a name can hold: the last of log id 0xFFFFFFFF.
    let last = ((0x1_0000_0000 / seg_size) << 32) - 1;
    Some(
        (1..=count as u64)
            .map(|i| first + i)
            .filter(|&n| n <= last)
            .map(|n| crate::wal::lsn::segno_file_name(tli, n, seg_size))
            .collect(),
    )
}

/// The size of the segment at `path` (a whole segment's length is its size); the default
/// when that is not a valid segment size.
fn segment_size_of(path: &Path) -> u64 {
    crate::wal::segment_size_or_default(std::fs::symlink_metadata(path).ok().map(|m| m.len()))
}

/// Counter for unique temporary names within this process.
static TMP: AtomicU64 = AtomicU64::new(0);

/// Removes `.tmp-*` files from spool `dir`: the work of a worker that died. Only called with
/// the lock held, when no worker runs.
fn remove_temporary(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            remove_entry(&entry.path());
        }
    }
}

/// With the lock held: removes temporary files, links, and every file that is not a spooled
/// copy of one of `keep` (or the window file); returns the names of `keep` that are spooled.
fn clean(dir: &Path, keep: &[String]) -> Result<Vec<String>> {
    let mut present = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io("list the prefetch spool", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list the prefetch spool", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        // A stop request made meanwhile stays for the worker to see.
        if (name == WINDOW_FILE || name == LAST_FILE || name == STOP_FILE) && is_file {
            continue;
        }
        let wanted = spooled_segment(&name).filter(|(seg, _)| keep.iter().any(|k| k == seg));
        match wanted {
            Some((seg, _)) if is_file => present.push(seg.to_string()),
            _ => remove_entry(&entry.path()),
        }
    }
    Ok(present)
}

/// Moves the spooled copy of `segment` to `dest` after checking its checksum again; `false`
/// when there is none (a damaged one is removed) or it cannot be moved.
fn take(dir: &Path, segment: &str, dest: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((seg, crc)) = spooled_segment(&name) else {
            continue;
        };
        if seg != segment {
            continue;
        }
        let path = entry.path();
        if checksum_of(&path).ok() == Some(crc) {
            if std::fs::rename(&path, dest).is_ok() {
                return true;
            }
            continue;
        }
        tracing::warn!("{}: damaged spooled segment removed", path.display());
        remove_entry(&path);
    }
    false
}

/// Stores `data` (checksum already checked by the codec) as `segment` in spool `dir`.
fn store(dir: &Path, segment: &str, data: &[u8]) -> Result<()> {
    let crc = crc32c::crc32c(data);
    write_atomically(dir, &format!("{segment}.{crc:08x}"), data)
}

/// Writes `data` to `name` in spool `dir` through a `.tmp-*` file and `rename`, so the name
/// never holds a partial file.
fn write_atomically(dir: &Path, name: &str, data: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TMP.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> std::io::Result<()> {
        let mut f = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(data)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io("write into the prefetch spool", &tmp, e));
    }
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("publish in the prefetch spool", &path, e)
    })
}

/// Removes the spool folder `dir` as restore-finish does ([`remove_spool_in`]: through
/// descriptors, never following a link, waiting up to [`REMOVE_WAIT`] for a worker), unless
/// `pg_wal` is not this user's. Absent is fine, and failures are left for the next call: this
/// never fails a call.
fn remove_spool_unless_busy(dir: &Path) -> Result<()> {
    if parent_is_ours(dir) {
        let pg_wal = dir.parent().filter(|p| !p.as_os_str().is_empty());
        let _ = remove_spool_in(pg_wal.unwrap_or(Path::new(".")), REMOVE_WAIT);
    }
    Ok(())
}

/// With the lock held: empties the spool folder `dir` and removes it.
fn empty_and_remove(dir: &Path) -> Result<()> {
    clean(dir, &[])?;
    let _ = std::fs::remove_file(dir.join(WINDOW_FILE));
    let _ = std::fs::remove_file(dir.join(LAST_FILE));
    let _ = std::fs::remove_file(dir.join(STOP_FILE));
    // An inherited lock names the folder by its descriptor; rmdir needs its path.
    let path = match std::fs::read_link(dir) {
        Ok(target) if dir.starts_with("/proc/self/fd") => target,
        _ => dir.to_path_buf(),
    };
    std::fs::remove_dir(&path).or_else(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Ok(()),
        _ => Err(Error::io("remove the prefetch spool", dir, e)),
    })
}

/// Whether the folder holding the spool (`pg_wal`) belongs to this user. Otherwise (root running
/// archive-get by hand in the servers' `pg_wal`) the spool is left alone: its owner could swap
/// a folder for a link between a check and a use, and root must not follow it.
fn parent_is_ours(dir: &Path) -> bool {
    let parent = dir.parent().unwrap_or(Path::new("."));
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    std::fs::symlink_metadata(parent)
        .is_ok_and(|m| m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw())
}

/// Whether someone removing spool `dir` asked its worker to end ([`STOP_FILE`]).
fn stop_requested(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir.join(STOP_FILE)).is_ok()
}

/// Removes a file or link (never following it) or an empty folder; failures are left for the
/// next call.
fn remove_entry(path: &Path) {
    if std::fs::remove_file(path).is_err() {
        let _ = std::fs::remove_dir(path);
    }
}

/// The segment and checksum of a spool file name `<segment>.<crc32c, 8 hex digits>`.
fn spooled_segment(name: &str) -> Option<(&str, u32)> {
    let (seg, crc) = name.split_once('.')?;
    crate::wal::lsn::split_segment_file_name(seg)?;
    if crc.len() != 8 || !crc.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((seg, u32::from_str_radix(crc, 16).ok()?))
}

/// The CRC32C of a regular file, opened without following a link.
fn checksum_of(path: &Path) -> std::io::Result<u32> {
    let mut f = File::options()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut crc = 0u32;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(crc);
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
    }
}

/// Writes `data` to `dest` through a temporary file beside it, so PostgreSQL never reads a
/// partial file. Not synced: PostgreSQL syncs a restored segment itself when it keeps it
/// (`durable_rename`), and after a crash it asks for the file again.
fn write_new(dest: &Path, data: &[u8]) -> Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("wal");
    let tmp = dir.join(format!(".{name}.citus-recovery-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(data)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io("write", &tmp, e));
    }
    std::fs::rename(&tmp, dest).map_err(|e| Error::io("rename into place", dest, e))
}

#[cfg(test)]
mod tests;
