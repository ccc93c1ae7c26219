//! [`PosixRepository`]: a repository in a folder of a local or mounted filesystem.
//!
//! A key `a/b/c` is the file `<root>/a/b/c`. Every path is opened relative to the root's
//! descriptor with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` and `O_NOFOLLOW`, so no
//! symbolic link anywhere below the root is ever followed, whoever put it there (the root itself
//! is the operator's choice and may be reached through links).
//!
//! `put_create` writes a temporary file (`.tmp-<pid>-<counter>`, in the target folder so the
//! publish cannot cross filesystems), syncs it, and publishes it with `linkat`, which fails with
//! `EEXIST` instead of replacing: two writers of one key can never overwrite each other, and a
//! reader sees either no file or the whole of it. The folder (and each folder on the way, once
//! per repository value) is synced before `Ok` is returned. A crash can leave a temporary file
//! behind; listings skip those names and keys may not use them.
//!
//! `put_stream` writes the same way, piece by piece from a channel, and publishes only once
//! the stream has ended well: a failed or dropped stream removes the temporary file.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;

use futures::StreamExt;

use super::{GetStream, Key, ObjectMeta, PutOutcome, PutStream, RepoError, Repository};

/// The start of the names of the temporary files `put_create` writes. No key may have a part
/// starting with it, and listings skip such files (a crash can leave them behind).
pub const TEMP_PREFIX: &str = ".tmp-";

/// Makes the temporary names of one process unique.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How many times `put_create` retries when the object it found vanished before it could be
/// compared (a concurrent delete).
const PUBLISH_TRIES: usize = 3;

/// A repository in a folder. Cheap to clone; clones share the record of synced folders.
#[derive(Debug, Clone)]
pub struct PosixRepository {
    root: Arc<PathBuf>,
    /// Folders (as key text) whose entry and whose parents' entries this value has synced, so
    /// later puts into them sync only the folder itself.
    durable_folders: Arc<Mutex<HashSet<String>>>,
    /// The uid and gid new objects and folders are given to, if not the creator's.
    owner: Option<(u32, u32)>,
}

/// Why an operation failed, before it becomes a [`RepoError`].
enum Fail {
    Absent,
    Conflict,
    Other(String),
}

impl PosixRepository {
    /// The repository in `root`, which must be an existing folder (checked at the first use;
    /// see [`PosixRepository::create`] to make it).
    pub fn new(root: PathBuf) -> Self {
        PosixRepository {
            root: Arc::new(root),
            durable_folders: Arc::default(),
            owner: None,
        }
    }

    /// The same repository, giving every object and folder it creates to `uid`/`gid` (through
    /// the new descriptor, never a path): for WAL stored on the servers' behalf by a process
    /// running as root (`import-folders`), so the servers' `archive-get` and `archive-push`
    /// can read it and write beside it.
    pub fn owned_by(mut self, uid: u32, gid: u32) -> Self {
        self.owner = Some((uid, gid));
        self
    }

    /// The repository in `root`, making the folder (and missing parents) with mode 0700 if it
    /// does not exist.
    pub fn create(root: PathBuf) -> Result<Self, RepoError> {
        let fail = |detail: String| RepoError::Unavailable {
            repository: format!("posix {}", root.display()),
            action: "create",
            key: Key::root(),
            detail,
        };
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
        {
            Ok(()) => {}
            Err(e) => return Err(fail(format!("cannot make the folder: {e}"))),
        }
        let meta = std::fs::metadata(&root)
            .map_err(|e| fail(format!("cannot read the folder's attributes: {e}")))?;
        if !meta.is_dir() {
            return Err(fail(
                "it is not a folder; name a folder for the repository".to_string(),
            ));
        }
        Ok(Self::new(root))
    }

    /// The repository's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    async fn run<T: Send + 'static>(
        &self,
        action: &'static str,
        key: &Key,
        work: impl FnOnce(&PosixRepository, &Key) -> Result<T, Fail> + Send + 'static,
    ) -> Result<T, RepoError> {
        let this = self.clone();
        let k = key.clone();
        let outcome = tokio::task::spawn_blocking(move || work(&this, &k))
            .await
            .unwrap_or_else(|e| Err(Fail::Other(format!("the worker thread failed: {e}"))));
        outcome.map_err(|f| match f {
            Fail::Absent => RepoError::NotFound { key: key.clone() },
            Fail::Conflict => RepoError::Conflict { key: key.clone() },
            Fail::Other(detail) => RepoError::Unavailable {
                repository: self.describe(),
                action,
                key: key.clone(),
                detail,
            },
        })
    }

    fn open_root(&self) -> Result<OwnedFd, Fail> {
        nix::fcntl::open(
            self.root.as_path(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map(owned)
        .map_err(|e| {
            Fail::Other(format!(
                "cannot open the repository folder: {}; it must be an existing folder",
                e.desc()
            ))
        })
    }

    fn put_blocking(&self, key: &Key, data: &[u8]) -> Result<PutOutcome, Fail> {
        let name = key.name();
        if name.is_empty() {
            return Err(Fail::Other(
                "the root key names no object; give an object's key".to_string(),
            ));
        }
        let root = self.open_root()?;
        let folders: Vec<&str> = folder_parts(key);
        let dir = self.make_folders(&root, &folders)?;
        // A retried push finds its object there: answer without writing 16 MiB again.
        match same_content(&dir, name, data)? {
            Some(true) => {
                sync(&dir, "sync the object's folder")?;
                return Ok(PutOutcome::AlreadyThere);
            }
            Some(false) => return Err(Fail::Conflict),
            None => {}
        }
        let temp = TempFile::create(&dir, data, self.owner)?;
        let mut outcome = None;
        for _ in 0..PUBLISH_TRIES {
            match nix::unistd::linkat(
                Some(dir.as_raw_fd()),
                temp.name.as_str(),
                Some(dir.as_raw_fd()),
                name,
                AtFlags::empty(),
            ) {
                Ok(()) => {
                    outcome = Some(PutOutcome::Created);
                    break;
                }
                Err(Errno::EEXIST) => match same_content(&dir, name, data)? {
                    Some(true) => {
                        outcome = Some(PutOutcome::AlreadyThere);
                        break;
                    }
                    Some(false) => return Err(Fail::Conflict),
                    // Deleted between the link and the comparison: publish again.
                    None => continue,
                },
                Err(e) => return Err(Fail::Other(errno_text("publish the object", e))),
            }
        }
        drop(temp);
        let outcome = outcome.ok_or_else(|| {
            Fail::Other("the object kept being deleted while it was published; retry".to_string())
        })?;
        // Durable before Ok, also when another writer published the identical object and has
        // not synced its folder yet.
        sync(&dir, "sync the object's folder")?;
        self.durable_folders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(folders.join("/"));
        Ok(outcome)
    }

    /// Opens (making what is missing) the folders `parts` below `root`, and syncs each
    /// folder's parent unless this value did it before.
    fn make_folders(&self, root: &OwnedFd, parts: &[&str]) -> Result<OwnedFd, Fail> {
        let known = self
            .durable_folders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&parts.join("/"));
        let mut cur = root
            .try_clone()
            .map_err(|e| Fail::Other(format!("cannot duplicate a descriptor: {e}")))?;
        for (i, part) in parts.iter().enumerate() {
            let shown = parts[..=i].join("/");
            let next = match open_folder(&cur, part) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    let made = match nix::sys::stat::mkdirat(
                        Some(cur.as_raw_fd()),
                        *part,
                        Mode::from_bits_truncate(0o700),
                    ) {
                        Ok(()) => true,
                        Err(Errno::EEXIST) => false,
                        Err(e) => {
                            return Err(Fail::Other(errno_text(
                                &format!("make the folder {shown}"),
                                e,
                            )))
                        }
                    };
                    let fd = open_folder(&cur, part).map_err(|e| {
                        Fail::Other(errno_text(&format!("open the folder {shown}"), e))
                    })?;
                    // Only a folder this call made (another's stays theirs).
                    if made {
                        give(&fd, self.owner)?;
                    }
                    fd
                }
                Err(e) => {
                    return Err(Fail::Other(errno_text(
                        &format!("open the folder {shown}"),
                        e,
                    )))
                }
            };
            if !known {
                sync(&cur, "sync a folder")?;
            }
            cur = next;
        }
        Ok(cur)
    }

    /// Writes the pieces `rx` brings into a temporary file and publishes it at `key` once
    /// [`Piece::End`] arrives; a channel closed before it stores nothing.
    fn put_stream_blocking(
        &self,
        key: &Key,
        mut rx: tokio::sync::mpsc::Receiver<Piece>,
    ) -> Result<u64, Fail> {
        let name = key.name();
        if name.is_empty() {
            return Err(Fail::Other(
                "the root key names no object; give an object's key".to_string(),
            ));
        }
        let root = self.open_root()?;
        let folders: Vec<&str> = folder_parts(key);
        let dir = self.make_folders(&root, &folders)?;
        match beneath(&dir, name, OFlag::O_PATH) {
            Ok(_) => return Err(Fail::Conflict),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(Fail::Other(errno_text("look at the key", e))),
        }
        let (temp, mut file) = TempFile::open(&dir, self.owner)?;
        let mut total = 0u64;
        loop {
            match rx.blocking_recv() {
                Some(Piece::Data(bytes)) => {
                    file.write_all(&bytes)
                        .map_err(|e| Fail::Other(format!("cannot write a temporary file: {e}")))?;
                    total += bytes.len() as u64;
                }
                Some(Piece::End) => break,
                None => {
                    return Err(Fail::Other(
                        "the data stopped before its end; nothing was stored".to_string(),
                    ))
                }
            }
        }
        file.sync_all()
            .map_err(|e| Fail::Other(format!("cannot sync a temporary file: {e}")))?;
        match nix::unistd::linkat(
            Some(dir.as_raw_fd()),
            temp.name.as_str(),
            Some(dir.as_raw_fd()),
            name,
            AtFlags::empty(),
        ) {
            Ok(()) => {}
            Err(Errno::EEXIST) => return Err(Fail::Conflict),
            Err(e) => return Err(Fail::Other(errno_text("publish the object", e))),
        }
        drop(temp);
        sync(&dir, "sync the object's folder")?;
        self.durable_folders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(folders.join("/"));
        Ok(total)
    }

    fn get_blocking(&self, key: &Key) -> Result<Bytes, Fail> {
        let (fd, st) = match self.open_object(key, OFlag::O_RDONLY | OFlag::O_NONBLOCK)? {
            Some(found) => found,
            None => return Err(Fail::Absent),
        };
        let mut data = Vec::with_capacity(st.st_size as usize);
        File::from(fd)
            .read_to_end(&mut data)
            .map_err(|e| Fail::Other(format!("cannot read the object: {e}")))?;
        Ok(data.into())
    }

    fn head_blocking(&self, key: &Key) -> Result<Option<ObjectMeta>, Fail> {
        Ok(self
            .open_object(key, OFlag::O_PATH)?
            .map(|(_, st)| ObjectMeta {
                key: key.clone(),
                size: st.st_size as u64,
            }))
    }

    /// Opens the object at `key` with `flags`; `None` when there is no object (nothing, or a
    /// folder, or a temporary file). Anything other than a regular file or folder is an error.
    fn open_object(&self, key: &Key, flags: OFlag) -> Result<Option<(OwnedFd, FileStat)>, Fail> {
        if key.as_str().is_empty() || key.parts().any(is_temp) {
            return Ok(None);
        }
        let root = self.open_root()?;
        let fd = match beneath(&root, key.as_str(), flags) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(None),
            Err(e) => return Err(Fail::Other(errno_text("open the object", e))),
        };
        let st = nix::sys::stat::fstat(fd.as_raw_fd())
            .map_err(|e| Fail::Other(errno_text("read the object's attributes", e)))?;
        match file_type(&st) {
            SFlag::S_IFREG => Ok(Some((fd, st))),
            SFlag::S_IFDIR => Ok(None),
            _ => Err(Fail::Other(
                "a special file is at this key, not an object; remove it".to_string(),
            )),
        }
    }

    fn list_blocking(&self, prefix: &Key) -> Result<Vec<ObjectMeta>, Fail> {
        if prefix.parts().any(is_temp) {
            return Ok(Vec::new());
        }
        let root = self.open_root()?;
        let mut out = Vec::new();
        if prefix.as_str().is_empty() {
            walk(root, prefix, &mut out)?;
        } else {
            let fd = match beneath(&root, prefix.as_str(), OFlag::O_RDONLY | OFlag::O_NONBLOCK) {
                Ok(fd) => fd,
                Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(out),
                Err(e) => return Err(Fail::Other(errno_text("open the prefix", e))),
            };
            let st = nix::sys::stat::fstat(fd.as_raw_fd())
                .map_err(|e| Fail::Other(errno_text("read the prefix's attributes", e)))?;
            match file_type(&st) {
                SFlag::S_IFREG => out.push(ObjectMeta {
                    key: prefix.clone(),
                    size: st.st_size as u64,
                }),
                SFlag::S_IFDIR => walk(fd, prefix, &mut out)?,
                _ => {}
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete_blocking(&self, key: &Key) -> Result<(), Fail> {
        let name = key.name();
        if name.is_empty() || key.parts().any(is_temp) {
            return Ok(());
        }
        let root = self.open_root()?;
        let folders = folder_parts(key);
        let dir = if folders.is_empty() {
            root
        } else {
            match open_folder(&root, &folders.join("/")) {
                Ok(fd) => fd,
                Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(()),
                Err(e) => return Err(Fail::Other(errno_text("open the object's folder", e))),
            }
        };
        match nix::unistd::unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir) {
            // A folder at the key is no object: nothing to delete.
            Ok(()) => sync(&dir, "sync the object's folder"),
            Err(Errno::ENOENT | Errno::EISDIR) => Ok(()),
            Err(e) => Err(Fail::Other(errno_text("delete the object", e))),
        }
    }
}

#[async_trait]
impl Repository for PosixRepository {
    fn describe(&self) -> String {
        format!("posix {}", self.root.display())
    }

    async fn put_create(&self, key: &Key, data: Bytes) -> Result<PutOutcome, RepoError> {
        if key.parts().any(is_temp) {
            return Err(RepoError::Unavailable {
                repository: self.describe(),
                action: "put",
                key: key.clone(),
                detail: format!(
                    "names starting with {TEMP_PREFIX} are the repository's temporary files; \
                     choose another key"
                ),
            });
        }
        self.run("put", key, move |r, k| r.put_blocking(k, &data))
            .await
    }

    async fn get(&self, key: &Key) -> Result<Bytes, RepoError> {
        self.run("get", key, |r, k| r.get_blocking(k)).await
    }

    async fn put_stream(&self, key: &Key, mut data: PutStream) -> Result<u64, RepoError> {
        if key.parts().any(is_temp) {
            return Err(RepoError::Unavailable {
                repository: self.describe(),
                action: "put",
                key: key.clone(),
                detail: format!(
                    "names starting with {TEMP_PREFIX} are the repository's temporary files; \
                     choose another key"
                ),
            });
        }
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let writer = self.run("put", key, move |r, k| r.put_stream_blocking(k, rx));
        let feed = async move {
            while let Some(piece) = data.next().await {
                // A closed channel: the writer failed, and its error is the one returned.
                if tx.send(Piece::Data(piece?)).await.is_err() {
                    return Ok(());
                }
            }
            let _ = tx.send(Piece::End).await;
            Ok::<(), std::io::Error>(())
        };
        let (fed, written) = tokio::join!(feed, writer);
        match fed {
            Err(e) => Err(RepoError::Abandoned {
                key: key.clone(),
                detail: e.to_string(),
            }),
            Ok(()) => written,
        }
    }

    async fn get_stream(&self, key: &Key) -> Result<GetStream, RepoError> {
        let (fd, _) = self
            .run("get", key, |r, k| {
                r.open_object(k, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?
                    .ok_or(Fail::Absent)
            })
            .await?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (repository, key) = (self.describe(), key.clone());
        tokio::task::spawn_blocking(move || {
            let mut file = File::from(fd);
            loop {
                let mut buf = vec![0u8; 1 << 20];
                let piece = match file.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        buf.truncate(n);
                        Ok(Bytes::from(buf))
                    }
                    Err(e) => Err(RepoError::Unavailable {
                        repository: repository.clone(),
                        action: "get",
                        key: key.clone(),
                        detail: format!("cannot read the object: {e}"),
                    }),
                };
                let failed = piece.is_err();
                // The reader went away: stop reading.
                if tx.blocking_send(piece).is_err() || failed {
                    return;
                }
            }
        });
        Ok(receiver_stream(rx))
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>, RepoError> {
        self.run("head", key, |r, k| r.head_blocking(k)).await
    }

    async fn list(&self, prefix: &Key) -> Result<Vec<ObjectMeta>, RepoError> {
        self.run("list", prefix, |r, k| r.list_blocking(k)).await
    }

    async fn delete(&self, key: &Key) -> Result<(), RepoError> {
        self.run("delete", key, |r, k| r.delete_blocking(k)).await
    }
}

/// What the task feeding [`PosixRepository::put_stream_blocking`] sends.
enum Piece {
    /// The next bytes.
    Data(Bytes),
    /// The stream ended well: publish.
    End,
}

/// The items of `rx` as a stream.
pub(crate) fn receiver_stream<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> futures::stream::BoxStream<'static, T> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) }).boxed()
}

/// A temporary file holding the new object, removed when dropped (published or not).
struct TempFile<'a> {
    dir: &'a OwnedFd,
    name: String,
}

impl<'a> TempFile<'a> {
    /// Writes and syncs `data` in a new temporary file in `dir` (given to `owner`).
    fn create(
        dir: &'a OwnedFd,
        data: &[u8],
        owner: Option<(u32, u32)>,
    ) -> Result<TempFile<'a>, Fail> {
        let (temp, mut file) = Self::open(dir, owner)?;
        file.write_all(data)
            .and_then(|()| file.sync_all())
            .map_err(|e| Fail::Other(format!("cannot write a temporary file: {e}")))?;
        Ok(temp)
    }

    /// A new, empty temporary file in `dir` (given to `owner`), open for writing.
    fn open(dir: &'a OwnedFd, owner: Option<(u32, u32)>) -> Result<(TempFile<'a>, File), Fail> {
        let mut tries = 0;
        let (fd, name) = loop {
            let name = format!(
                "{TEMP_PREFIX}{}-{}",
                std::process::id(),
                TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            match crate::files::create_new_beneath(dir, name.as_str()) {
                Ok(fd) => break (fd, name),
                // The same pid in another pid namespace on a shared filesystem: next name.
                Err(Errno::EEXIST) if tries < 8 => tries += 1,
                Err(e) => return Err(Fail::Other(errno_text("create a temporary file", e))),
            }
        };
        let temp = TempFile { dir, name };
        give(&fd, owner)?;
        Ok((temp, File::from(fd)))
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        // Best effort: a leftover is skipped by listings.
        let _ = nix::unistd::unlinkat(
            Some(self.dir.as_raw_fd()),
            self.name.as_str(),
            UnlinkatFlags::NoRemoveDir,
        );
    }
}

/// Gives the file or folder open as `fd` to `owner`, if any.
fn give(fd: &OwnedFd, owner: Option<(u32, u32)>) -> Result<(), Fail> {
    let Some((uid, gid)) = owner else {
        return Ok(());
    };
    nix::unistd::fchown(
        fd.as_raw_fd(),
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .map_err(|e| Fail::Other(errno_text("hand a new file to the servers' user", e)))
}

/// Whether the object `name` in `dir` holds exactly `data`; `None` if it is gone.
fn same_content(dir: &OwnedFd, name: &str, data: &[u8]) -> Result<Option<bool>, Fail> {
    let fd = match beneath(dir, name, OFlag::O_RDONLY | OFlag::O_NONBLOCK) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(Fail::Other(errno_text("open the existing object", e))),
    };
    let st = nix::sys::stat::fstat(fd.as_raw_fd())
        .map_err(|e| Fail::Other(errno_text("read the existing object's attributes", e)))?;
    if file_type(&st) != SFlag::S_IFREG {
        return Err(Fail::Other(
            "a folder or special file is at this key, not an object; remove it or choose \
             another key"
                .to_string(),
        ));
    }
    if st.st_size as u64 != data.len() as u64 {
        return Ok(Some(false));
    }
    let mut file = File::from(fd);
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Fail::Other(format!("cannot read the existing object: {e}")))?;
        if n == 0 {
            return Ok(Some(at == data.len()));
        }
        if at + n > data.len() || buf[..n] != data[at..at + n] {
            return Ok(Some(false));
        }
        at += n;
    }
}

/// Adds every object below the folder `dir` (whose key is `base`) to `out`.
fn walk(dir: OwnedFd, base: &Key, out: &mut Vec<ObjectMeta>) -> Result<(), Fail> {
    let mut d = nix::dir::Dir::from_fd(dir.into_raw_fd())
        .map_err(|e| Fail::Other(errno_text("read a folder", e)))?;
    let raw: RawFd = d.as_raw_fd();
    let mut folders = Vec::new();
    for entry in d.iter() {
        let entry = entry.map_err(|e| Fail::Other(errno_text("read a folder", e)))?;
        let Ok(name) = entry.file_name().to_str() else {
            continue;
        };
        if name == "." || name == ".." || is_temp(name) {
            continue;
        }
        // A name no key can have was not written by a repository: not an object.
        let Ok(key) = base.join(name) else {
            continue;
        };
        let st = match nix::sys::stat::fstatat(Some(raw), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(Fail::Other(errno_text(&format!("look at {key}"), e))),
        };
        match file_type(&st) {
            SFlag::S_IFREG => out.push(ObjectMeta {
                key,
                size: st.st_size as u64,
            }),
            SFlag::S_IFDIR => folders.push(key),
            // Links and special files are never objects, and never followed.
            _ => {}
        }
    }
    for key in folders {
        let fd = match beneath_raw(raw, key.name(), OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => {
                return Err(Fail::Other(errno_text(
                    &format!("open the folder {key}"),
                    e,
                )))
            }
        };
        walk(fd, &key, out)?;
    }
    Ok(())
}

/// Opens the folder `rel` below `dir` (see [`beneath`]). A link where the folder should be
/// fails with `ELOOP`, not the kernel's `ENOTDIR`, so that it is reported as a link.
fn open_folder(dir: &OwnedFd, rel: &str) -> Result<OwnedFd, Errno> {
    beneath(dir, rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY).map_err(|e| {
        let is_link = || {
            nix::sys::stat::fstatat(Some(dir.as_raw_fd()), rel, AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok_and(|st| file_type(&st) == SFlag::S_IFLNK)
        };
        if e == Errno::ENOTDIR && is_link() {
            Errno::ELOOP
        } else {
            e
        }
    })
}

/// Opens `rel` below `dir` without leaving it and without following any link.
fn beneath(dir: &OwnedFd, rel: &str, flags: OFlag) -> Result<OwnedFd, Errno> {
    beneath_raw(dir.as_raw_fd(), rel, flags)
}

fn beneath_raw(dir: RawFd, rel: &str, flags: OFlag) -> Result<OwnedFd, Errno> {
    nix::fcntl::openat2(
        dir,
        rel,
        OpenHow::new()
            .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS),
    )
    .map(owned)
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: a descriptor just opened, owned by nothing else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn sync(fd: &OwnedFd, what: &str) -> Result<(), Fail> {
    nix::unistd::fsync(fd.as_raw_fd()).map_err(|e| Fail::Other(errno_text(what, e)))
}

fn folder_parts(key: &Key) -> Vec<&str> {
    let mut parts: Vec<&str> = key.parts().collect();
    parts.pop();
    parts
}

fn is_temp(part: &str) -> bool {
    part.starts_with(TEMP_PREFIX)
}

fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// What failed and why, with the fix where one is known.
fn errno_text(what: &str, e: Errno) -> String {
    let why = match e {
        Errno::ELOOP | Errno::EXDEV => {
            "a symbolic link is on the way, and the repository never follows links below its \
             folder; remove the link"
        }
        Errno::ENOTDIR => "a file is where a folder is needed; remove it or choose another key",
        Errno::ENOSPC | Errno::EDQUOT => "the repository's filesystem is full; free space",
        Errno::EACCES | Errno::EPERM => {
            "permission denied; the repository folder must be writable by this user"
        }
        Errno::EROFS => "the repository's filesystem is read-only",
        Errno::ENOSYS => "openat2 is missing: Linux 5.6 or newer is needed",
        other => other.desc(),
    };
    format!("cannot {what}: {why}")
}
