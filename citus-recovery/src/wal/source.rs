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
use super::proven::{FrameBudget, ProvenSegment};
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

    /// Tells the source which files the reader will open next, in order (replacing what was
    /// said before), so that it may fetch a few of them ahead, beside the reader. A hint only:
    /// a file named but never opened is never an error, and a file opened that was not named
    /// is read as usual. By default nothing is done (a folder on this host is read when a file
    /// is opened).
    fn will_read(&self, names: &[String]) {
        let _ = names;
    }

    /// The whole file `name`, decoded, with its size.
    fn open(&self, name: &str) -> Result<SegmentData, WalError>;

    /// Lets go of the decoded files kept for the next read, and of the reads ahead, before the
    /// source waits unused (a check keeps each node's source between two reads). By default
    /// nothing is kept.
    fn release(&self) {}

    /// Asks the source to keep the repository objects of the files `names` (besides those
    /// asked for before) as it reads them, while `budget` allows: a file kept is decoded from
    /// its object when it is read again, not fetched again (the restore point's segment, read
    /// by the search and again by the continuity check), and [`WalSource::take_frames`] gives
    /// them (restore-start hands them to the node's spool). Kept through
    /// [`WalSource::release`]. By default nothing is kept (a folder holds no frames).
    fn keep_frames(&self, names: &[String], budget: &Arc<FrameBudget>) {
        let _ = (names, budget);
    }

    /// The objects kept since [`WalSource::keep_frames`], in the order they were read; the
    /// source holds them no more.
    fn take_frames(&self) -> Vec<ProvenSegment> {
        Vec::new()
    }

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

/// A [`WalSource`] listed at most once: the first successful [`WalSource::list`] is kept and
/// given again. For one check that reads a node's archive in several steps (find the restore
/// point, then read from the backup to it): against an object store each listing is a request
/// that returns every object of the node. The archive only grows while the check runs, and
/// what the steps read was archived before it began.
pub struct ListedOnce {
    inner: Box<dyn WalSource>,
    listing: Mutex<Option<WalFileNames>>,
}

impl ListedOnce {
    /// `inner`, to be listed once.
    pub fn new(inner: Box<dyn WalSource>) -> Self {
        ListedOnce {
            inner,
            listing: Mutex::new(None),
        }
    }
}

impl WalSource for ListedOnce {
    fn location(&self) -> PathBuf {
        self.inner.location()
    }

    fn list(&self) -> Result<WalFileNames, WalError> {
        let mut listing = self.listing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(names) = listing.as_ref() {
            return Ok(names.clone());
        }
        let names = self.inner.list()?;
        *listing = Some(names.clone());
        Ok(names)
    }

    fn exists(&self, name: &str) -> Result<bool, WalError> {
        self.inner.exists(name)
    }

    fn will_read(&self, names: &[String]) {
        self.inner.will_read(names)
    }

    fn open(&self, name: &str) -> Result<SegmentData, WalError> {
        self.inner.open(name)
    }

    fn read_head(&self, name: &str, len: usize) -> Result<Vec<u8>, WalError> {
        self.inner.read_head(name, len)
    }

    fn read_text(&self, name: &str) -> Result<String, WalError> {
        self.inner.read_text(name)
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.inner.path_of(name)
    }

    fn keep_frames(&self, names: &[String], budget: &Arc<FrameBudget>) {
        self.inner.keep_frames(names, budget)
    }

    fn take_frames(&self) -> Vec<ProvenSegment> {
        self.inner.take_frames()
    }

    fn release(&self) {
        self.inner.release()
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

/// How many files a [`RepositorySource`] fetches ahead of the one the reader is at, at most,
/// once the reader said which it will read ([`WalSource::will_read`]). Each read-ahead ends as
/// a decoded segment held until the reader takes it, so this bounds the memory too.
pub const READ_AHEAD: usize = 4;

/// One node's WAL in a repository: the objects `wal/<node>/<file name><codec suffix>` that
/// `archive-push` writes. Each file is fetched whole and decoded (checksum checked) when it is
/// opened; the last [`CACHED_FILES`] decoded files are kept, no more.
///
/// Read-ahead: once the reader said which files it will read ([`WalSource::will_read`]), the
/// next [`READ_AHEAD`] of them are fetched and decoded in the runtime's threads while the
/// reader parses the current one, and never a file outside that list. Without a list, opening
/// a segment starts fetching only the next one of its timeline (when the last listing has it).
/// So at most [`READ_AHEAD`] + 1 fetches run at once, and at most [`READ_AHEAD`] +
/// [`CACHED_FILES`] decoded files are held. A read-ahead's failure is reported only when the
/// reader asks for that file, exactly as fetching it then would have.
///
/// The repository is async and the reader is not: each call runs the repository's future with
/// [`tokio::runtime::Handle::block_on`] on the runtime captured when the source was made. So
/// the reader must run in a blocking thread (`tokio::task::spawn_blocking`) or a thread outside
/// the runtime, never inside an async task (tokio panics there). Use a multi-thread runtime:
/// the repository's own tasks must be able to run while this thread waits.
pub struct RepositorySource {
    fetcher: Fetcher,
    node: String,
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
    /// The files the reader said it will read and has not opened yet, in order; `None` until
    /// it says.
    plan: Option<VecDeque<String>>,
    /// Files being fetched before the reader asks for them, at most [`READ_AHEAD`].
    ahead: Vec<ReadAhead>,
    /// The files whose objects are kept when read, and the budget they are kept within.
    keep: Option<(Vec<String>, Arc<FrameBudget>)>,
    /// The objects kept so far.
    kept: Vec<ProvenSegment>,
}

impl State {
    /// Keeps `frame`, the object `name` was decoded from, when `name` is to be kept and the
    /// budget allows (once per name).
    fn keep_frame(&mut self, name: &str, frame: Bytes) {
        let Some((names, budget)) = &self.keep else {
            return;
        };
        if !names.iter().any(|n| n == name) || self.kept.iter().any(|k| k.name == name) {
            return;
        }
        if budget.take(frame.len() as u64) {
            self.kept.push(ProvenSegment {
                name: name.to_string(),
                frame,
            });
        }
    }
}

/// A file being fetched before the reader asks for it.
struct ReadAhead {
    name: String,
    task: tokio::task::JoinHandle<Result<Fetched, WalError>>,
}

/// A file fetched: decoded, and the repository object it was decoded from.
struct Fetched {
    data: Bytes,
    frame: Bytes,
}

/// How a file is fetched and decoded, the same on the reader's thread and in a read-ahead task
/// (so both report the same errors).
#[derive(Clone)]
struct Fetcher {
    repo: Arc<dyn Repository>,
    prefix: Key,
}

impl Fetcher {
    /// `<repository>/wal/<node>`, for messages.
    fn location(&self) -> String {
        format!("{}/{}", self.repo.describe(), self.prefix)
    }

    fn repo_error(&self, e: RepoError) -> WalError {
        WalError::Repository {
            location: self.location(),
            problem: e.to_string(),
        }
    }

    /// The keys `name` may be at: the one from the last listing, else each codec suffix.
    fn candidates(&self, name: &str, listed: Option<Key>) -> Vec<Key> {
        match listed {
            Some(key) => vec![key],
            None => SUFFIXES
                .iter()
                .filter_map(|s| self.prefix.join(&format!("{name}{s}")).ok())
                .collect(),
        }
    }

    /// The first of `candidates` present, with its frame; `name` missing is an error.
    async fn get(&self, name: &str, candidates: Vec<Key>) -> Result<(Key, Bytes), WalError> {
        for key in candidates {
            match self.repo.get(&key).await {
                Ok(frame) => return Ok((key, frame)),
                Err(RepoError::NotFound { .. }) => continue,
                Err(e) => return Err(self.repo_error(e)),
            }
        }
        Err(WalError::Repository {
            location: self.location(),
            problem: format!(
                "{name} is not in the repository (no object {}/{name}[.zst|.lz4])",
                self.prefix
            ),
        })
    }

    /// Decodes the frame fetched from `key`; damage is [`WalError::CorruptObject`].
    fn decode(&self, key: &Key, frame: &[u8]) -> Result<Bytes, WalError> {
        codec::decode(frame).map_err(|e| WalError::CorruptObject {
            repository: self.repo.describe(),
            key: key.to_string(),
            problem: e.to_string(),
        })
    }
}

impl Drop for RepositorySource {
    fn drop(&mut self) {
        // Reads ahead run on the runtime: they must not outlive the source.
        self.release();
    }
}

impl std::fmt::Debug for RepositorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepositorySource")
            .field("repo", &self.fetcher.repo.describe())
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
            fetcher: Fetcher { repo, prefix },
            node: node.to_string(),
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

    /// The decoded bytes of `name`: from the cache, from a read-ahead, or fetched and checked.
    fn decoded(&self, name: &str) -> Result<Bytes, WalError> {
        let pending = self.take_read_ahead(name);
        // The reader is at `name`: the files it will read next start coming before it waits.
        let planned = self.advance_plan(name);
        let cached = self
            .state()
            .cache
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.clone());
        let data = match cached {
            Some(data) => {
                if let Some(pending) = pending {
                    pending.task.abort();
                }
                data
            }
            None => {
                let fetched = match pending {
                    Some(pending) => self.finish(pending)?,
                    None => match self.kept_frame(name) {
                        // Read before and kept: decoded again, not fetched again.
                        Some((key, frame)) => {
                            let data = self.fetcher.decode(&key, &frame)?;
                            Fetched { data, frame }
                        }
                        None => {
                            let listed = self.state().keys.get(name).cloned();
                            let candidates = self.fetcher.candidates(name, listed);
                            let (key, frame) =
                                self.handle.block_on(self.fetcher.get(name, candidates))?;
                            let data = self.fetcher.decode(&key, &frame)?;
                            Fetched { data, frame }
                        }
                    },
                };
                let data = fetched.data;
                let mut state = self.state();
                state.keep_frame(name, fetched.frame);
                if state.cache.len() >= CACHED_FILES {
                    state.cache.pop_front();
                }
                state.cache.push_back((name.to_string(), data.clone()));
                data
            }
        };
        if !planned {
            self.read_next_segment(name, data.len() as u64);
        }
        Ok(data)
    }

    /// Moves the reader's list past `name` (when `name` is on it) and fetches the next
    /// [`READ_AHEAD`] files of it; false when the reader gave no list.
    fn advance_plan(&self, name: &str) -> bool {
        let window: Vec<String> = {
            let mut state = self.state();
            let Some(plan) = state.plan.as_mut() else {
                return false;
            };
            if plan.iter().any(|n| n == name) {
                while plan.pop_front().is_some_and(|n| n != name) {}
            }
            plan.iter().take(READ_AHEAD).cloned().collect()
        };
        self.read_ahead(&window);
        true
    }

    /// Without a list from the reader: after segment file `name` (of `size` bytes), fetches
    /// the next segment of its timeline when the last listing has it (the reader reads
    /// segments in order, so it arrives while this one is parsed).
    fn read_next_segment(&self, name: &str, size: u64) {
        if !is_valid_segment_size(size) {
            return;
        }
        let Some((tli, segno)) = parse_segment_file_name(name, size) else {
            return;
        };
        let next = segno_file_name(tli, segno + 1, size);
        if self.state().keys.contains_key(&next) {
            self.read_ahead(&[next]);
        }
    }

    /// Makes `window` the files being fetched ahead: the read-aheads of other files are
    /// dropped (the reader went elsewhere), and each file of it neither cached nor under way
    /// starts being fetched and decoded (checksum checked) beside the reader. An error is
    /// reported when the file is asked for.
    fn read_ahead(&self, window: &[String]) {
        let mut state = self.state();
        state.ahead.retain(|r| {
            let keep = window.contains(&r.name);
            if !keep {
                r.task.abort();
            }
            keep
        });
        for name in window {
            if state.ahead.iter().any(|r| r.name == *name)
                || state.cache.iter().any(|(n, _)| n == name)
                || state.kept.iter().any(|k| k.name == *name)
            {
                continue;
            }
            let candidates = self.fetcher.candidates(name, state.keys.get(name).cloned());
            let (fetcher, file) = (self.fetcher.clone(), name.clone());
            // Decoding costs about as much as parsing on WAL: it runs off the reader's thread
            // too, in a blocking thread (it would stall the runtime's own).
            let task = self.handle.spawn(async move {
                let (key, frame) = fetcher.get(&file, candidates).await?;
                let k = key.clone();
                let location = fetcher.location();
                tokio::task::spawn_blocking(move || {
                    let data = fetcher.decode(&key, &frame)?;
                    Ok(Fetched { data, frame })
                })
                .await
                .unwrap_or_else(|e| {
                    Err(WalError::Repository {
                        location,
                        problem: format!("decoding {k} failed: {e}"),
                    })
                })
            });
            state.ahead.push(ReadAhead {
                name: name.clone(),
                task,
            });
        }
    }

    /// The kept object of `name` and the key it is named by in messages, if one is kept.
    fn kept_frame(&self, name: &str) -> Option<(Key, Bytes)> {
        let state = self.state();
        let frame = state.kept.iter().find(|k| k.name == name)?.frame.clone();
        let key = state
            .keys
            .get(name)
            .cloned()
            .or_else(|| self.fetcher.prefix.join(name).ok())?;
        Some((key, frame))
    }

    /// The read-ahead of `name`, if one is under way.
    fn take_read_ahead(&self, name: &str) -> Option<ReadAhead> {
        let mut state = self.state();
        let at = state.ahead.iter().position(|r| r.name == name)?;
        Some(state.ahead.remove(at))
    }

    /// Waits for a read-ahead.
    fn finish(&self, pending: ReadAhead) -> Result<Fetched, WalError> {
        match self.handle.block_on(pending.task) {
            Ok(result) => result,
            Err(e) => Err(WalError::Repository {
                location: self.fetcher.location(),
                problem: format!("fetching {} failed: {e}", pending.name),
            }),
        }
    }
}

impl WalSource for RepositorySource {
    fn location(&self) -> PathBuf {
        PathBuf::from(self.fetcher.location())
    }

    fn list(&self) -> Result<WalFileNames, WalError> {
        let objects = self
            .handle
            .block_on(self.fetcher.repo.list(&self.fetcher.prefix))
            .map_err(|e| self.fetcher.repo_error(e))?;
        let mut keys: BTreeMap<String, (usize, Key)> = BTreeMap::new();
        let start = self.fetcher.prefix.as_str().len() + 1;
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
        let mut keys = Vec::new();
        for suffix in SUFFIXES {
            let Ok(key) = self.fetcher.prefix.join(&format!("{name}{suffix}")) else {
                return Ok(false);
            };
            keys.push(key);
        }
        // Every name at once: one round trip, not three (a missing file is the usual case).
        let repo = &self.fetcher.repo;
        let heads = self.handle.block_on(futures::future::join_all(
            keys.iter().map(|key| repo.head(key)),
        ));
        let mut failure = None;
        for head in heads {
            match head {
                Ok(Some(_)) => return Ok(true),
                Ok(None) => {}
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        match failure {
            Some(e) => Err(self.fetcher.repo_error(e)),
            None => Ok(false),
        }
    }

    fn will_read(&self, names: &[String]) {
        let window: Vec<String> = names.iter().take(READ_AHEAD).cloned().collect();
        self.state().plan = Some(names.iter().cloned().collect());
        self.read_ahead(&window);
    }

    fn keep_frames(&self, names: &[String], budget: &Arc<FrameBudget>) {
        let mut state = self.state();
        let (wanted, _) = state
            .keep
            .get_or_insert_with(|| (Vec::new(), budget.clone()));
        wanted.extend(
            names
                .iter()
                .filter(|n| !wanted.contains(n))
                .cloned()
                .collect::<Vec<_>>(),
        );
    }

    fn take_frames(&self) -> Vec<ProvenSegment> {
        let mut state = self.state();
        state.keep = None;
        std::mem::take(&mut state.kept)
    }

    fn release(&self) {
        let mut state = self.state();
        state.cache.clear();
        state.plan = None;
        for r in state.ahead.drain(..) {
            r.task.abort();
        }
    }

    fn open(&self, name: &str) -> Result<SegmentData, WalError> {
        let data = self.decoded(name)?;
        Ok(SegmentData {
            size: data.len() as u64,
            reader: Box::new(Cursor::new(data)),
        })
    }
}
