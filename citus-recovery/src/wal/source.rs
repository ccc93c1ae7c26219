//! [`WalSource`]: where the reader finds one node's archived WAL files. [`FolderSource`] reads
//! an archive folder on this host; [`RepositorySource`] reads `wal/<node>/` of a
//! [`Repository`], decoding each object with the codec.
//!
//! Every function of [`super::archive`], [`ArchiveListing`](super::ArchiveListing),
//! [`TimelineHistory`](super::TimelineHistory) and [`BackupHistory`](super::BackupHistory) reads
//! through this trait; the functions taking a folder path make a [`FolderSource`].

use std::collections::{BTreeMap, VecDeque};
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::error::WalError;
use super::lsn::{is_valid_segment_size, parse_segment_file_name, segno_file_name};
use super::pages::SegmentData;
use super::segment::open_regular;
use crate::repository::codec;
use crate::repository::{Key, RepoError, Repository};

/// The names in a [`WalSource`], as [`WalSource::list`] gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalFileNames {
    /// Files that can be read, by name (without any codec suffix).
    pub files: Vec<String>,
    /// Entries that are never read whatever their name (symbolic links, special files).
    pub unreadable: Vec<String>,
}

/// One node's WAL archive: its objects in `repo` when there is one (read on the runtime of
/// `handle`), else the folder `dir`. For the callers that read either, as the config says.
pub fn node_source(
    repo: Option<Arc<dyn Repository>>,
    dir: PathBuf,
    node: &str,
    handle: tokio::runtime::Handle,
) -> Result<Box<dyn WalSource>, WalError> {
    Ok(match repo {
        Some(repo) => Box::new(RepositorySource::with_handle(repo, node, handle)?),
        None => Box::new(FolderSource::new(dir)),
    })
}

/// One node's archived WAL files, read by name: segments, `.partial`, `.history` and `.backup`
/// files. Synchronous: the reader runs in a blocking thread.
pub trait WalSource: Send + Sync {
    /// Where the files are, for messages and for the paths in [`WalError`]s: the folder, or
    /// `<repository>/wal/<node>`. A file's path in errors is this joined with its name.
    fn location(&self) -> PathBuf;

    /// The names of the files present, sorted.
    fn list(&self) -> Result<WalFileNames, WalError>;

    /// Whether an entry named `name` is there (a link counts: reading it then fails).
    fn exists(&self, name: &str) -> Result<bool, WalError>;

    /// The whole file `name`, decoded, with its size.
    fn open(&self, name: &str) -> Result<SegmentData, WalError>;

    /// The first `len` bytes of `name` (fewer when it is shorter): for a segment's long header.
    fn read_head(&self, name: &str, len: usize) -> Result<Vec<u8>, WalError> {
        let data = self.open(name)?;
        let mut buf = Vec::with_capacity(len);
        data.reader
            .take(len as u64)
            .read_to_end(&mut buf)
            .map_err(|e| WalError::io(self.path_of(name), e))?;
        Ok(buf)
    }

    /// The whole file `name` (a `.history` or `.backup` file) as text.
    fn read_text(&self, name: &str) -> Result<String, WalError> {
        let mut data = self.open(name)?;
        let mut text = String::new();
        data.reader
            .read_to_string(&mut text)
            .map_err(|e| WalError::io(self.path_of(name), e))?;
        Ok(text)
    }

    /// The path naming `name` in errors.
    fn path_of(&self, name: &str) -> PathBuf {
        self.location().join(name)
    }
}

/// An archive folder on this host, read as the reader always has: entries that are not
/// regular files (links, FIFOs) are listed as unreadable and never opened, and every file is
/// opened without following a link ([`open_regular`]). The folder is written by `postgres`
/// while this library may run as root.
#[derive(Debug, Clone)]
pub struct FolderSource {
    dir: PathBuf,
}

impl FolderSource {
    /// The archive folder `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> FolderSource {
        FolderSource { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl WalSource for FolderSource {
    fn location(&self) -> PathBuf {
        self.dir.clone()
    }

    fn list(&self) -> Result<WalFileNames, WalError> {
        let dir = &self.dir;
        let mut names = WalFileNames::default();
        for entry in std::fs::read_dir(dir).map_err(|e| WalError::io(dir, e))? {
            let entry = entry.map_err(|e| WalError::io(dir, e))?;
            // file_type() does not follow links: a link is never taken for a segment.
            let kind = entry
                .file_type()
                .map_err(|e| WalError::io(entry.path(), e))?;
            if kind.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if kind.is_file() {
                names.files.push(name);
            } else {
                names.unreadable.push(name);
            }
        }
        names.files.sort();
        names.unreadable.sort();
        Ok(names)
    }

    fn exists(&self, name: &str) -> Result<bool, WalError> {
        Ok(self.dir.join(name).symlink_metadata().is_ok())
    }

    fn open(&self, name: &str) -> Result<SegmentData, WalError> {
        SegmentData::file(&self.dir.join(name))
    }

    fn read_head(&self, name: &str, len: usize) -> Result<Vec<u8>, WalError> {
        // Only the head: never the whole 16 MiB segment.
        let path = self.dir.join(name);
        let (file, _) = open_regular(&path)?;
        let mut buf = Vec::with_capacity(len);
        file.take(len as u64)
            .read_to_end(&mut buf)
            .map_err(|e| WalError::io(&path, e))?;
        Ok(buf)
    }
}

/// The codec suffixes a WAL object may have (as `archive-push` writes them), in the order a
/// name is looked up.
const SUFFIXES: [&str; 3] = [".zst", ".lz4", ""];

/// How many decoded files a [`RepositorySource`] keeps: the segment whose head was read to
/// learn the segment size is opened again right after, and a record spanning two segments
/// reads both. Each is up to a segment (16 MiB by default).
const CACHED_FILES: usize = 2;

/// One node's WAL in a repository: the objects `wal/<node>/<file name><codec suffix>` that
/// `archive-push` writes. Each file is fetched whole and decoded (checksum checked) when it is
/// opened; the last [`CACHED_FILES`] decoded files are kept, no more. Opening a segment starts
/// fetching the next one of its timeline (when the last listing has it), so at most one
/// segment is read ahead (fetched and decoded in the runtime's threads while the reader parses
/// the current one): memory stays within a few segments.
///
/// The repository is async and the reader is not: each call runs the repository's future with
/// [`tokio::runtime::Handle::block_on`] on the runtime captured when the source was made. So
/// the reader must run in a blocking thread (`tokio::task::spawn_blocking`) or a thread outside
/// the runtime, never inside an async task (tokio panics there). Use a multi-thread runtime:
/// the repository's own tasks must be able to run while this thread waits.
pub struct RepositorySource {
    repo: Arc<dyn Repository>,
    node: String,
    prefix: Key,
    handle: tokio::runtime::Handle,
    state: Mutex<State>,
}

/// What a [`RepositorySource`] remembers between calls.
#[derive(Default)]
struct State {
    /// The key of each file name, from the last listing.
    keys: BTreeMap<String, Key>,
    /// Decoded files, most recent last.
    cache: VecDeque<(String, Bytes)>,
    /// The fetch of the next segment, under way.
    read_ahead: Option<ReadAhead>,
}

/// A segment being fetched before the reader asks for it.
struct ReadAhead {
    name: String,
    key: Key,
    task: tokio::task::JoinHandle<Result<Bytes, WalError>>,
}

impl Drop for RepositorySource {
    fn drop(&mut self) {
        if let Some(r) = self.state().read_ahead.take() {
            r.task.abort();
        }
    }
}

impl std::fmt::Debug for RepositorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepositorySource")
            .field("repo", &self.repo.describe())
            .field("node", &self.node)
            .finish()
    }
}

impl RepositorySource {
    /// The WAL of `node` in `repo`, read on the current tokio runtime. Call it where a runtime
    /// is current (in an async task, or a blocking thread of the runtime); then use the source
    /// from a blocking thread (see the type's documentation).
    pub fn new(repo: Arc<dyn Repository>, node: &str) -> Result<RepositorySource, WalError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|e| WalError::Repository {
            location: repo.describe(),
            problem: format!(
                "reading WAL from a repository needs a tokio runtime to run on ({e}); \
                     make the source inside the runtime or give it a handle with \
                     RepositorySource::with_handle"
            ),
        })?;
        RepositorySource::with_handle(repo, node, handle)
    }

    /// The WAL of `node` in `repo`, read on the runtime of `handle`.
    pub fn with_handle(
        repo: Arc<dyn Repository>,
        node: &str,
        handle: tokio::runtime::Handle,
    ) -> Result<RepositorySource, WalError> {
        let prefix = Key::new("wal")
            .and_then(|k| k.join(node))
            .map_err(|problem| WalError::Repository {
                location: repo.describe(),
                problem: format!("node name {node:?}: {problem}"),
            })?;
        Ok(RepositorySource {
            repo,
            node: node.to_string(),
            prefix,
            handle,
            state: Mutex::new(State::default()),
        })
    }

    /// The node whose WAL this is.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every change is one insert or replace: a panic cannot leave the state half changed.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn repo_error(&self, e: RepoError) -> WalError {
        WalError::Repository {
            location: self.location().display().to_string(),
            problem: e.to_string(),
        }
    }

    /// The object of `name`: from the last listing, else the first suffix present.
    fn fetch(&self, name: &str) -> Result<Option<(Key, Bytes)>, WalError> {
        let listed = self.state().keys.get(name).cloned();
        let candidates: Vec<Key> = match listed {
            Some(key) => vec![key],
            None => SUFFIXES
                .iter()
                .filter_map(|s| self.prefix.join(&format!("{name}{s}")).ok())
                .collect(),
        };
        for key in candidates {
            match self.handle.block_on(self.repo.get(&key)) {
                Ok(frame) => return Ok(Some((key, frame))),
                Err(RepoError::NotFound { .. }) => continue,
                Err(e) => return Err(self.repo_error(e)),
            }
        }
        Ok(None)
    }

    /// The decoded bytes of `name`: from the cache, from the read-ahead, or fetched and
    /// checked. A segment read starts the read-ahead of the next one.
    fn decoded(&self, name: &str) -> Result<Bytes, WalError> {
        let cached = self
            .state()
            .cache
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.clone());
        let data = match cached {
            Some(data) => data,
            None => {
                let data = match self.take_read_ahead(name) {
                    Some(pending) => self.finish(pending)?,
                    None => {
                        let Some((key, frame)) = self.fetch(name)? else {
                            return Err(WalError::Repository {
                                location: self.location().display().to_string(),
                                problem: format!(
                                    "{name} is not in the repository (no object \
                                     {}/{name}[.zst|.lz4])",
                                    self.prefix
                                ),
                            });
                        };
                        decode(&self.repo.describe(), &key, &frame)?
                    }
                };
                let mut state = self.state();
                if state.cache.len() >= CACHED_FILES {
                    state.cache.pop_front();
                }
                state.cache.push_back((name.to_string(), data.clone()));
                data
            }
        };
        self.read_ahead_after(name, data.len() as u64);
        Ok(data)
    }

    /// The read-ahead of `name`, if one is under way; a read-ahead of another file is
    /// dropped (the reader went elsewhere).
    fn take_read_ahead(&self, name: &str) -> Option<ReadAhead> {
        let mut state = self.state();
        match state.read_ahead.take() {
            Some(r) if r.name == name => Some(r),
            Some(r) => {
                r.task.abort();
                None
            }
            None => None,
        }
    }

    /// Waits for a read-ahead.
    fn finish(&self, pending: ReadAhead) -> Result<Bytes, WalError> {
        match self.handle.block_on(pending.task) {
            Ok(result) => result,
            Err(e) => Err(WalError::Repository {
                location: self.location().display().to_string(),
                problem: format!("fetching {} failed: {e}", pending.key),
            }),
        }
    }

    /// Starts fetching the segment after segment file `name` (of `size` bytes) on the same
    /// timeline when the last listing has it and it is not cached: the reader reads
    /// segments in order, so the next one arrives while this one is parsed.
    fn read_ahead_after(&self, name: &str, size: u64) {
        if !is_valid_segment_size(size) {
            return;
        }
        let Some((tli, segno)) = parse_segment_file_name(name, size) else {
            return;
        };
        let next = segno_file_name(tli, segno + 1, size);
        let mut state = self.state();
        if state.read_ahead.as_ref().is_some_and(|r| r.name == next)
            || state.cache.iter().any(|(n, _)| *n == next)
        {
            return;
        }
        let Some(key) = state.keys.get(&next).cloned() else {
            return;
        };
        if let Some(stale) = state.read_ahead.take() {
            stale.task.abort();
        }
        let (repo, k) = (self.repo.clone(), key.clone());
        let location = self.location().display().to_string();
        // Fetched and decoded (checksum checked) beside the reader: on WAL, decoding costs
        // about as much as parsing. An error is reported when the file is asked for.
        let task = self.handle.spawn(async move {
            let frame = repo.get(&k).await.map_err(|e| WalError::Repository {
                location: location.clone(),
                problem: e.to_string(),
            })?;
            let repository = repo.describe();
            let key = k.clone();
            tokio::task::spawn_blocking(move || decode(&repository, &key, &frame))
                .await
                .unwrap_or_else(|e| {
                    Err(WalError::Repository {
                        location,
                        problem: format!("decoding {k} failed: {e}"),
                    })
                })
        });
        state.read_ahead = Some(ReadAhead {
            name: next,
            key,
            task,
        });
    }
}

/// Decodes the frame fetched from `key`; damage is [`WalError::CorruptObject`].
fn decode(repository: &str, key: &Key, frame: &[u8]) -> Result<Bytes, WalError> {
    codec::decode(frame).map_err(|e| WalError::CorruptObject {
        repository: repository.to_string(),
        key: key.to_string(),
        problem: e.to_string(),
    })
}

impl WalSource for RepositorySource {
    fn location(&self) -> PathBuf {
        PathBuf::from(format!("{}/{}", self.repo.describe(), self.prefix))
    }

    fn list(&self) -> Result<WalFileNames, WalError> {
        let objects = self
            .handle
            .block_on(self.repo.list(&self.prefix))
            .map_err(|e| self.repo_error(e))?;
        let mut keys: BTreeMap<String, (usize, Key)> = BTreeMap::new();
        let start = self.prefix.as_str().len() + 1;
        for meta in objects {
            // Only the node's own folder: `wal/<node>/<name>`, nothing deeper.
            let Some(object) = meta.key.as_str().get(start..) else {
                continue;
            };
            if object.contains('/') {
                continue;
            }
            let (rank, name) = SUFFIXES
                .iter()
                .enumerate()
                .find_map(|(i, s)| object.strip_suffix(s).map(|stem| (i, stem)))
                .unwrap_or((SUFFIXES.len(), object));
            // The same file under two suffixes: the one archive-get would take.
            match keys.get(name) {
                Some((r, _)) if *r <= rank => {}
                _ => {
                    keys.insert(name.to_string(), (rank, meta.key.clone()));
                }
            }
        }
        let names = WalFileNames {
            files: keys.keys().cloned().collect(),
            unreadable: Vec::new(),
        };
        self.state().keys = keys.into_iter().map(|(n, (_, k))| (n, k)).collect();
        Ok(names)
    }

    fn exists(&self, name: &str) -> Result<bool, WalError> {
        {
            let state = self.state();
            if state.keys.contains_key(name) || state.cache.iter().any(|(n, _)| n == name) {
                return Ok(true);
            }
        }
        for suffix in SUFFIXES {
            let Ok(key) = self.prefix.join(&format!("{name}{suffix}")) else {
                return Ok(false);
            };
            match self.handle.block_on(self.repo.head(&key)) {
                Ok(Some(_)) => return Ok(true),
                Ok(None) => {}
                Err(e) => return Err(self.repo_error(e)),
            }
        }
        Ok(false)
    }

    fn open(&self, name: &str) -> Result<SegmentData, WalError> {
        let data = self.decoded(name)?;
        Ok(SegmentData {
            size: data.len() as u64,
            reader: Box::new(Cursor::new(data)),
        })
    }
}
