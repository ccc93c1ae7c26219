//! `archive-get`: one WAL file from the repository into `pg_wal`, checked before PostgreSQL
//! sees it, with the next segments prefetched into a spool (pgBackRest's async archive-get
//! queue) so that replay from object storage is not one round trip per segment.
//!
//! The spool is `pg_wal/citus-recovery-spool/` (beside `%p`, so a spooled file reaches `%p` by
//! `rename`). It is written by archive-get, which runs as the servers' user. It holds only
//! decoded segments whose checksum passed, named `<segment>.<crc32c>`; each is read back and its
//! checksum checked again before it is renamed to `%p`, so a stale, damaged or foreign file is
//! never handed over. Writes go to `.tmp-*` files first; those (a crash mid-prefetch) and every
//! name outside the current window are removed by the next call, under a `flock` on the folder.
//! When PostgreSQL asks for a file the repository does not have (the end of the archive, and the
//! next timeline's history file when restore-finish promotes) the spool is removed.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use nix::fcntl::{Flock, FlockArg};

use super::{wal_key, SUFFIXES};
use crate::error::{Error, Result};
use crate::repository::codec;
use crate::repository::{RepoError, Repository};

/// The spool's folder name, inside the folder of `%p` (`pg_wal`).
pub const SPOOL_DIR: &str = "citus-recovery-spool";

/// What [`archive_get`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetOutcome {
    /// The file was fetched from the repository and written to the destination.
    Restored,
    /// The repository does not hold it: a normal part of recovery (PostgreSQL asks for files
    /// past the end of the archive and for `.history` files that may not exist).
    NotFound,
    /// The file was prefetched by an earlier call, checked again and renamed to the destination.
    FromSpool,
}

/// Fetches `file` (PostgreSQL's `%f`) of `node` from `repo` into `dest` (`%p`), after checking
/// its checksum. When `file` is a WAL segment and `queue` is above 0, the next `queue` segments
/// of its timeline are fetched in parallel into the spool beside `dest` ([`SPOOL_DIR`]), and a
/// segment already spooled is taken from there without a request.
///
/// Any failure other than "not there" is an error, which the command turns into an exit code
/// above 125 so that PostgreSQL stops recovery instead of taking it for the end of the WAL. A
/// failed or damaged prefetch is not an error: that segment is fetched (and its failure
/// reported) when PostgreSQL asks for it.
pub async fn archive_get(
    repo: &dyn Repository,
    node: &str,
    file: &str,
    dest: &Path,
    queue: usize,
) -> Result<GetOutcome> {
    wal_key(node, file, "")?; // checks the name before anything touches the disk
    let spool_dir = dest.parent().unwrap_or(Path::new(".")).join(SPOOL_DIR);
    if queue == 0 {
        // Prefetch off (maybe turned off since the last call): leave nothing behind.
        let dir = spool_dir.clone();
        spool_step(blocking(&spool_dir, move || Spool::remove_all(&dir)).await);
        return fetch_to(repo, node, file, dest).await;
    }
    let Some(window) = following_segments(file, queue) else {
        // A .history, .backup or .partial file: fetched directly, the spool untouched unless
        // the repository lacks it.
        let outcome = fetch_to(repo, node, file, dest).await?;
        if outcome == GetOutcome::NotFound {
            let dir = spool_dir.clone();
            spool_step(blocking(&spool_dir, move || Spool::remove_all(&dir)).await);
        }
        return Ok(outcome);
    };
    let spool = {
        let dir = spool_dir.clone();
        spool_step(blocking(&spool_dir, move || Spool::open(&dir)).await).flatten()
    };
    let Some(spool) = spool else {
        // Not a folder of ours: never trusted, never written.
        return fetch_to(repo, node, file, dest).await;
    };
    let spool = std::sync::Arc::new(spool);
    let (wanted, first) = (window.clone(), file.to_string());
    let taken = {
        let (spool, dest) = (spool.clone(), dest.to_path_buf());
        blocking(&spool_dir, move || {
            let mut keep = wanted;
            keep.push(first.clone());
            let present = spool.clean(&keep)?;
            let taken = spool.take(&first, &dest)?;
            Ok((taken, present))
        })
        .await
    };
    let Some((taken, present)) = spool_step(taken) else {
        return fetch_to(repo, node, file, dest).await;
    };
    if taken {
        tracing::debug!("archive-get {file}: from the prefetch spool");
        return Ok(GetOutcome::FromSpool);
    }
    // Not spooled: this segment and the missing ones after it, all at once.
    let prefetch = window
        .into_iter()
        .filter(|name| !present.contains(name))
        .map(|name| {
            let spool = spool.clone();
            async move {
                match fetch_decoded(repo, node, &name).await {
                    Ok(Some(data)) => {
                        let dir = spool.dir.clone();
                        let stored = blocking(&dir, move || spool.store(&name, &data)).await;
                        if let Err(e) = stored {
                            tracing::debug!("archive-get: prefetch not spooled: {e}");
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!("archive-get: prefetch failed: {e}"),
                }
            }
        });
    let (main, _) = futures::join!(
        fetch_decoded(repo, node, file),
        futures::future::join_all(prefetch)
    );
    match main? {
        Some(data) => {
            let dest2 = dest.to_path_buf();
            blocking(dest, move || write_new(&dest2, &data)).await?;
            tracing::debug!("archive-get {file}: fetched, next {queue} prefetched");
            Ok(GetOutcome::Restored)
        }
        None => {
            // The end of the archive: nothing after it is worth keeping.
            spool_step(blocking(&spool_dir, move || spool.empty_and_remove()).await);
            Ok(GetOutcome::NotFound)
        }
    }
}

/// The outcome of work on the spool, which never fails a call: a spool that cannot be used is
/// said in PostgreSQL's log and the segment is fetched directly (above all, the end of the
/// archive stays "not found", never a failure that would stop recovery).
fn spool_step<T>(result: Result<T>) -> Option<T> {
    result
        .map_err(|e| tracing::warn!("archive-get: prefetch spool not used: {e}"))
        .ok()
}

/// Fetches `file` into `dest` without the spool.
async fn fetch_to(
    repo: &dyn Repository,
    node: &str,
    file: &str,
    dest: &Path,
) -> Result<GetOutcome> {
    match fetch_decoded(repo, node, file).await? {
        Some(data) => {
            let dest2 = dest.to_path_buf();
            blocking(dest, move || write_new(&dest2, &data)).await?;
            Ok(GetOutcome::Restored)
        }
        None => Ok(GetOutcome::NotFound),
    }
}

/// `file` of `node`, decoded and checksum-checked; `None` when the repository lacks it.
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

/// The names of the `count` segments after segment `file` on its timeline, or `None` when
/// `file` is not a segment. Assumes 16 MiB segments (PostgreSQL's default) where the log id
/// rolls over: with another size some names do not exist (not found, skipped) or are missed
/// (fetched when asked), and correctness never depends on it.
pub(crate) fn following_segments(file: &str, count: usize) -> Option<Vec<String>> {
    if file.len() != 24 || !file.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let tli = &file[..8];
    let log = u64::from_str_radix(&file[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&file[16..24], 16).ok()?;
    const PER_LOG: u64 = 0x1_0000_0000 / (16 * 1024 * 1024);
    let first = log * PER_LOG + seg;
    Some(
        (1..=count as u64)
            .map(|i| first + i)
            .filter(|n| n / PER_LOG <= 0xFFFF_FFFF)
            .map(|n| format!("{tli}{:08X}{:08X}", n / PER_LOG, n % PER_LOG))
            .collect(),
    )
}

/// The spool folder, locked for this call.
#[derive(Debug)]
struct Spool {
    dir: PathBuf,
    _lock: Flock<File>,
}

/// Counter for unique temporary names within this process.
static TMP: AtomicU64 = AtomicU64::new(0);

impl Spool {
    /// Opens (making it, mode 0700) and locks the spool folder; `None` when what is there is
    /// not a folder owned by this user that others cannot write (a link, a file, another
    /// owner): then it is not used at all.
    fn open(dir: &Path) -> Result<Option<Spool>> {
        if !parent_is_ours(dir) {
            return Ok(None);
        }
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create the prefetch spool", dir, e)),
        }
        let meta = std::fs::symlink_metadata(dir)
            .map_err(|e| Error::io("inspect the prefetch spool", dir, e))?;
        if !meta.is_dir()
            || meta.uid() != nix::unistd::geteuid().as_raw()
            || meta.mode() & 0o022 != 0
        {
            tracing::warn!(
                "{} is not a folder of this user that only it can write: prefetch is off until it is removed",
                dir.display()
            );
            return Ok(None);
        }
        let handle = File::options()
            .read(true)
            .custom_flags(libc_o_directory_nofollow())
            .open(dir)
            .map_err(|e| Error::io("open the prefetch spool", dir, e))?;
        let lock = Flock::lock(handle, FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::io("lock the prefetch spool", dir, e.into()))?;
        Ok(Some(Spool {
            dir: dir.to_path_buf(),
            _lock: lock,
        }))
    }

    /// Removes temporary files (an earlier call that died mid-prefetch), links, and every file
    /// not for one of `keep`; returns the names of `keep` that have a spooled file.
    fn clean(&self, keep: &[String]) -> Result<Vec<String>> {
        let mut present = Vec::new();
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| Error::io("list the prefetch spool", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list the prefetch spool", &self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let wanted = spooled_segment(&name).filter(|(seg, _)| keep.iter().any(|k| k == seg));
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            match wanted {
                Some((seg, _)) if is_file => present.push(seg.to_string()),
                _ => remove_entry(&entry.path()),
            }
        }
        Ok(present)
    }

    /// Moves the spooled copy of `segment` to `dest` after checking its checksum again; `false`
    /// when there is none (a damaged one is removed).
    fn take(&self, segment: &str, dest: &Path) -> Result<bool> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| Error::io("list the prefetch spool", &self.dir, e))?;
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
                std::fs::rename(&path, dest)
                    .map_err(|e| Error::io("move the spooled segment into place", dest, e))?;
                return Ok(true);
            }
            tracing::warn!("{}: damaged spooled segment removed", path.display());
            remove_entry(&path);
        }
        Ok(false)
    }

    /// Stores `data` (checksum already checked by the codec) as `segment`.
    fn store(&self, segment: &str, data: &[u8]) -> Result<()> {
        let crc = crc32c::crc32c(data);
        let tmp = self.dir.join(format!(
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
            return Err(Error::io("write the spooled segment", &tmp, e));
        }
        let path = self.dir.join(format!("{segment}.{crc:08x}"));
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io("publish the spooled segment", &path, e)
        })
    }

    /// Removes the spool folder and everything in it (absent is fine); a link there is
    /// removed, never followed.
    fn remove_all(dir: &Path) -> Result<()> {
        if !parent_is_ours(dir) {
            return Ok(());
        }
        let meta = match std::fs::symlink_metadata(dir) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("inspect the prefetch spool", dir, e)),
        };
        if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() {
            // Not ours to empty: a link or a file is removed, another user's folder left.
            if !meta.is_dir() {
                remove_entry(dir);
            }
            return Ok(());
        }
        match Spool::open(dir)? {
            Some(spool) => spool.empty_and_remove(),
            None => Ok(()),
        }
    }

    /// Empties the locked spool and removes its folder.
    fn empty_and_remove(&self) -> Result<()> {
        self.clean(&[])?;
        std::fs::remove_dir(&self.dir).or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(Error::io("remove the prefetch spool", &self.dir, e)),
        })
    }
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

/// `O_DIRECTORY | O_NOFOLLOW`: the spool is opened only if it is a folder, never a link.
fn libc_o_directory_nofollow() -> i32 {
    nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW
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
    let is_hex = |s: &str, len| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_hex(seg, 24) || !is_hex(crc, 8) {
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
mod tests {
    use std::sync::atomic::AtomicUsize;

    use async_trait::async_trait;

    use super::*;
    use crate::repository::codec::Compression;
    use crate::repository::memory::MemoryRepository;
    use crate::repository::{Key, ObjectMeta, PutOutcome};

    /// A memory repository that counts `get` requests.
    #[derive(Debug, Default)]
    struct Counting {
        inner: MemoryRepository,
        gets: AtomicUsize,
    }

    #[async_trait]
    impl Repository for Counting {
        fn describe(&self) -> String {
            "counting memory".into()
        }
        async fn put_create(&self, key: &Key, data: Bytes) -> Result<PutOutcome, RepoError> {
            self.inner.put_create(key, data).await
        }
        async fn get(&self, key: &Key) -> Result<Bytes, RepoError> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            self.inner.get(key).await
        }
        async fn put_stream(
            &self,
            key: &Key,
            data: crate::repository::PutStream,
        ) -> Result<u64, RepoError> {
            self.inner.put_stream(key, data).await
        }
        async fn get_stream(&self, key: &Key) -> Result<crate::repository::GetStream, RepoError> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            self.inner.get_stream(key).await
        }
        async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>, RepoError> {
            self.inner.head(key).await
        }
        async fn list(&self, prefix: &Key) -> Result<Vec<ObjectMeta>, RepoError> {
            self.inner.list(prefix).await
        }
        async fn delete(&self, key: &Key) -> Result<(), RepoError> {
            self.inner.delete(key).await
        }
    }

    impl Counting {
        fn gets(&self) -> usize {
            self.gets.load(Ordering::SeqCst)
        }
    }

    fn seg(n: u64) -> String {
        format!("00000001{:08X}{:08X}", n / 256, n % 256)
    }

    fn content(n: u64) -> Vec<u8> {
        (0..64 * 1024).map(|i| (i as u64 * 7 + n) as u8).collect()
    }

    /// A repository holding segments `range` of node w1, and a pg_wal folder.
    async fn setup(range: std::ops::Range<u64>) -> (Counting, tempfile::TempDir) {
        let repo = Counting::default();
        for n in range {
            let key = wal_key("w1", &seg(n), ".zst").unwrap();
            let frame = codec::encode(Compression::Zstd(1), &content(n));
            repo.put_create(&key, frame).await.unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pg_wal")).unwrap();
        (repo, dir)
    }

    fn spooled(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("pg_wal").join(SPOOL_DIR))
            .map(|e| {
                e.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn the_window_follows_the_timeline_across_a_log_id() {
        assert_eq!(
            following_segments("0000000200000000000000FE", 3).unwrap(),
            [
                "0000000200000000000000FF",
                "000000020000000100000000",
                "000000020000000100000001"
            ]
        );
        assert_eq!(following_segments("00000002.history", 3), None);
        assert_eq!(
            following_segments("000000010000000000000003.partial", 3),
            None
        );
        assert!(following_segments("000000010000000000000003", 0)
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn later_calls_take_prefetched_segments_without_a_request() {
        let (repo, dir) = setup(1..12).await;
        let dest = dir.path().join("pg_wal/RECOVERYXLOG");
        let got = archive_get(&repo, "w1", &seg(1), &dest, 4).await.unwrap();
        assert_eq!(got, GetOutcome::Restored);
        assert_eq!(std::fs::read(&dest).unwrap(), content(1));
        let after_first = repo.gets();
        assert_eq!(after_first, 5, "segment 1 and the 4 after it, once each");
        assert_eq!(spooled(dir.path()).len(), 4, "{:?}", spooled(dir.path()));
        for n in 2..=5 {
            let got = archive_get(&repo, "w1", &seg(n), &dest, 4).await.unwrap();
            assert_eq!(got, GetOutcome::FromSpool, "segment {n}");
            assert_eq!(std::fs::read(&dest).unwrap(), content(n), "segment {n}");
        }
        assert_eq!(repo.gets(), after_first, "no request for spooled segments");
        assert!(spooled(dir.path()).is_empty());
        // The spool ran dry: the next batch.
        let got = archive_get(&repo, "w1", &seg(6), &dest, 4).await.unwrap();
        assert_eq!(got, GetOutcome::Restored);
        assert_eq!(repo.gets(), after_first + 5);
        assert_eq!(spooled(dir.path()).len(), 4);
    }

    #[tokio::test]
    async fn the_end_of_the_archive_is_not_an_error_and_removes_the_spool() {
        let (repo, dir) = setup(10..12).await;
        let dest = dir.path().join("pg_wal/RECOVERYXLOG");
        let got = archive_get(&repo, "w1", &seg(10), &dest, 4).await.unwrap();
        assert_eq!(got, GetOutcome::Restored);
        assert_eq!(
            spooled(dir.path()),
            [format!("{}.{:08x}", seg(11), crc32c::crc32c(&content(11)))]
        );
        let got = archive_get(&repo, "w1", &seg(11), &dest, 4).await.unwrap();
        assert_eq!(got, GetOutcome::FromSpool);
        assert_eq!(std::fs::read(&dest).unwrap(), content(11));
        let got = archive_get(&repo, "w1", &seg(12), &dest, 4).await.unwrap();
        assert_eq!(got, GetOutcome::NotFound);
        assert!(!dir.path().join("pg_wal").join(SPOOL_DIR).exists());
        // A missing history file (what promotion asks for) also removes it.
        archive_get(&repo, "w1", &seg(10), &dest, 4).await.unwrap();
        assert!(dir.path().join("pg_wal").join(SPOOL_DIR).exists());
        let got = archive_get(&repo, "w1", "00000002.history", &dest, 4)
            .await
            .unwrap();
        assert_eq!(got, GetOutcome::NotFound);
        assert!(!dir.path().join("pg_wal").join(SPOOL_DIR).exists());
    }

    #[tokio::test]
    async fn damaged_stale_and_foreign_spool_files_are_never_handed_over() {
        let (repo, dir) = setup(1..6).await;
        let dest = dir.path().join("pg_wal/RECOVERYXLOG");
        let spool = dir.path().join("pg_wal").join(SPOOL_DIR);
        archive_get(&repo, "w1", &seg(1), &dest, 3).await.unwrap();
        // Damage segment 2's spooled copy, keeping its name and size.
        let two = spool.join(format!("{}.{:08x}", seg(2), crc32c::crc32c(&content(2))));
        let mut bytes = std::fs::read(&two).unwrap();
        bytes[100] ^= 1;
        std::fs::write(&two, &bytes).unwrap();
        // Cut segment 3's copy short (a crash while the page cache was written back).
        let three = spool.join(format!("{}.{:08x}", seg(3), crc32c::crc32c(&content(3))));
        std::fs::write(&three, &content(3)[..4096]).unwrap();
        // Left-overs of a crash, a stale segment, junk, and a link to a file elsewhere.
        std::fs::write(spool.join(".tmp-1-0"), b"partial").unwrap();
        std::fs::write(spool.join(format!("{}.00000000", seg(0))), b"old").unwrap();
        std::fs::write(spool.join("junk"), b"x").unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, content(4)).unwrap();
        std::os::unix::fs::symlink(
            &outside,
            spool.join(format!("{}.{:08x}", seg(5), crc32c::crc32c(&content(4)))),
        )
        .unwrap();

        let before = repo.gets();
        let got = archive_get(&repo, "w1", &seg(2), &dest, 3).await.unwrap();
        assert_eq!(
            got,
            GetOutcome::Restored,
            "the damaged copy is fetched again"
        );
        assert_eq!(std::fs::read(&dest).unwrap(), content(2));
        assert!(repo.gets() > before);
        let names = spooled(dir.path());
        for gone in [".tmp-1-0", "junk"] {
            assert!(!names.iter().any(|n| n == gone), "{names:?}");
        }
        assert!(!names.iter().any(|n| n.starts_with(&seg(0))), "{names:?}");
        assert!(outside.exists(), "a link is removed, never followed");
        let got = archive_get(&repo, "w1", &seg(3), &dest, 3).await.unwrap();
        assert_eq!(got, GetOutcome::Restored, "the short copy is fetched again");
        assert_eq!(std::fs::read(&dest).unwrap(), content(3));
        for n in 4..=5 {
            let got = archive_get(&repo, "w1", &seg(n), &dest, 3).await.unwrap();
            assert_eq!(got, GetOutcome::FromSpool, "segment {n}");
            assert_eq!(std::fs::read(&dest).unwrap(), content(n), "segment {n}");
        }
    }

    #[tokio::test]
    async fn a_link_in_place_of_the_spool_is_never_followed() {
        let (repo, dir) = setup(1..4).await;
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("pg_wal").join(SPOOL_DIR)).unwrap();
        let dest = dir.path().join("pg_wal/RECOVERYXLOG");
        let got = archive_get(&repo, "w1", &seg(1), &dest, 3).await.unwrap();
        assert_eq!(got, GetOutcome::Restored);
        assert_eq!(std::fs::read(&dest).unwrap(), content(1));
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        // With prefetch off the link is removed (never followed).
        archive_get(&repo, "w1", &seg(2), &dest, 0).await.unwrap();
        assert!(std::fs::symlink_metadata(dir.path().join("pg_wal").join(SPOOL_DIR)).is_err());
        assert!(elsewhere.exists());
    }

    #[tokio::test]
    async fn a_damaged_object_in_the_window_is_skipped_and_refused_when_asked_for() {
        let (repo, dir) = setup(1..3).await;
        let key = wal_key("w1", &seg(3), ".zst").unwrap();
        let mut frame = codec::encode(Compression::Zstd(1), &content(3)).to_vec();
        let last = frame.len() - 1;
        frame[last] ^= 0xFF;
        repo.put_create(&key, frame.into()).await.unwrap();
        let dest = dir.path().join("pg_wal/RECOVERYXLOG");
        let got = archive_get(&repo, "w1", &seg(1), &dest, 4).await.unwrap();
        assert_eq!(got, GetOutcome::Restored);
        assert_eq!(spooled(dir.path()).len(), 1, "only segment 2");
        assert_eq!(
            archive_get(&repo, "w1", &seg(2), &dest, 4).await.unwrap(),
            GetOutcome::FromSpool
        );
        std::fs::remove_file(&dest).unwrap();
        match archive_get(&repo, "w1", &seg(3), &dest, 4).await {
            Err(Error::Corrupt { key, .. }) => assert!(key.contains(&seg(3)), "{key}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(!dest.exists(), "PostgreSQL never sees damaged bytes");
    }

    #[tokio::test]
    async fn no_spool_in_a_pg_wal_of_another_user() {
        let required = std::env::var("CITUS_RECOVERY_REQUIRE_POSTGRES")
            .is_ok_and(|v| !v.is_empty() && v != "0");
        let postgres = nix::unistd::User::from_name("postgres").ok().flatten();
        let Some(postgres) = postgres.filter(|_| nix::unistd::geteuid().is_root()) else {
            assert!(!required, "needs root and a postgres user");
            eprintln!("SKIPPED: needs root and a postgres user to own the folder");
            return;
        };
        let (repo, dir) = setup(1..4).await;
        let pg_wal = dir.path().join("pg_wal");
        nix::unistd::chown(&pg_wal, Some(postgres.uid), Some(postgres.gid)).unwrap();
        let dest = pg_wal.join("RECOVERYXLOG");
        let got = archive_get(&repo, "w1", &seg(1), &dest, 4).await.unwrap();
        assert_eq!(got, GetOutcome::Restored);
        assert_eq!(std::fs::read(&dest).unwrap(), content(1));
        assert!(
            !pg_wal.join(SPOOL_DIR).exists(),
            "root makes no spool there"
        );
        assert_eq!(repo.gets(), 1, "and fetches nothing ahead");
    }

    #[tokio::test]
    async fn a_file_in_place_of_the_spool_is_not_used_and_never_fails_the_call() {
        let (repo, dir) = setup(1..3).await;
        let pg_wal = dir.path().join("pg_wal");
        let dest = pg_wal.join("RECOVERYXLOG");
        let spool = pg_wal.join(SPOOL_DIR);
        std::fs::write(&spool, b"not a folder").unwrap();
        let got = archive_get(&repo, "w1", &seg(1), &dest, 4).await.unwrap();
        assert_eq!(got, GetOutcome::Restored);
        assert_eq!(std::fs::read(&dest).unwrap(), content(1));
        assert_eq!(repo.gets(), 1, "nothing fetched ahead without a spool");
        // The end of the archive stays "not found" whatever the spool's state.
        let got = archive_get(&repo, "w1", &seg(9), &dest, 4).await.unwrap();
        assert_eq!(got, GetOutcome::NotFound);
        let got = archive_get(&repo, "w1", "00000002.history", &dest, 4).await;
        assert_eq!(got.unwrap(), GetOutcome::NotFound);
    }
}
