//! The repository seam: where backups, archived WAL and the catalog live, over logical keys.
//!
//! One trait ([`Repository`]) with a small, documented contract, and one module per backend
//! (`posix.rs`, `memory.rs`, `object.rs`), as `object_store` does. Compression and checksums
//! are a codec layer above it (`codec.rs`), so nothing above cares which store or codec is used.
//! One conformance suite (`tests/conformance/repository.rs`) runs against every backend.
//!
//! Keys are logical, never host paths: `wal/<node>/<segment>.zst`,
//! `backups/<backup>/<node>/base.tar.zst`, `catalog/restore-points/<name>.json`.

pub mod backup;
pub mod codec;
pub mod key;
pub mod memory;
pub mod object;
pub mod posix;

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use key::Key;
pub use object::{ObjectRepository, S3Settings};

/// What went wrong in a repository. Callers match on the first three; the rest carry the
/// backend's own error as text without secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// No object at that key.
    #[error("{key} is not in the repository")]
    NotFound {
        /// The key.
        key: Key,
    },
    /// [`Repository::put_create`] found an object with other content at that key: never
    /// overwritten (two clusters writing one archive, or corruption).
    #[error("{key} exists in the repository with different content; it is never overwritten")]
    Conflict {
        /// The key.
        key: Key,
    },
    /// The repository could not be reached or refused the request (credentials, network,
    /// permissions); the message names the repository and never holds a secret.
    #[error("{repository}: {action} {key}: {detail}")]
    Unavailable {
        /// The repository, as [`Repository::describe`] says.
        repository: String,
        /// What was being done (`put`, `get`, `list`, `delete`).
        action: &'static str,
        /// The key involved (the prefix for `list`).
        key: Key,
        /// The backend's message.
        detail: String,
    },
    /// [`Repository::put_stream`] stopped because its data failed (the program producing it
    /// failed, or a check on the data did); nothing was stored at the key.
    #[error("storing {key} was abandoned, nothing was stored: {detail}")]
    Abandoned {
        /// The key.
        key: Key,
        /// Why the data failed.
        detail: String,
    },
}

/// The bytes [`Repository::put_stream`] stores, in order. An `Err` item abandons the put.
pub type PutStream = BoxStream<'static, std::io::Result<Bytes>>;

/// An object's bytes, in order, as [`Repository::get_stream`] gives them.
pub type GetStream = BoxStream<'static, Result<Bytes, RepoError>>;

/// Whether [`Repository::put_create`] stored the object or found the same bytes there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was stored.
    Created,
    /// An object with identical content was there already (a retried archive-push).
    AlreadyThere,
}

/// An object's key and size, as a listing gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The key.
    pub key: Key,
    /// Its size in bytes.
    pub size: u64,
}

/// A store of objects under logical keys.
///
/// Contract, for every implementation (the conformance suite checks each point):
/// - `put_create` is create-only: an absent key is stored durably (after it returns `Ok`, a
///   crash or power loss does not lose it); identical bytes already there are
///   [`PutOutcome::AlreadyThere`]; different bytes are [`RepoError::Conflict`] and the stored
///   object is unchanged. Readers never see a partly written object.
/// - `get` of an absent key is [`RepoError::NotFound`].
/// - `list(prefix)` returns every object whose key starts with `prefix` followed by `/` (or
///   equals it), sorted by key; an empty prefix lists everything.
/// - `put_stream` is create-only too, and stores an object of any size without holding it in
///   memory: an object already at the key is [`RepoError::Conflict`] (streams are not
///   compared) and stays unchanged; an `Err` item in the stream, or the call being dropped,
///   leaves nothing visible at the key. After `Ok` the object is durable.
/// - `get_stream` gives the object's bytes in pieces; an absent key is [`RepoError::NotFound`]
///   (from the call itself, not the stream).
/// - `delete` of an absent key is `Ok` (deleting is idempotent).
/// - Methods may be called from many tasks at once.
#[async_trait]
pub trait Repository: Send + Sync + fmt::Debug {
    /// A description for messages: the kind and where, never a secret (`posix /srv/repo`,
    /// `s3://bucket/prefix`).
    fn describe(&self) -> String;

    /// Stores `data` at `key` unless an object is there already (see the contract).
    async fn put_create(&self, key: &Key, data: Bytes) -> Result<PutOutcome, RepoError>;

    /// The whole object at `key`.
    async fn get(&self, key: &Key) -> Result<Bytes, RepoError>;

    /// Stores the bytes of `data` at `key` unless an object is there (see the contract);
    /// returns how many bytes were stored.
    async fn put_stream(&self, key: &Key, data: PutStream) -> Result<u64, RepoError>;

    /// The object at `key` as a stream of pieces.
    async fn get_stream(&self, key: &Key) -> Result<GetStream, RepoError>;

    /// The object at `key`'s size, or `None` when it is absent.
    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>, RepoError>;

    /// Every object under `prefix`, sorted by key.
    async fn list(&self, prefix: &Key) -> Result<Vec<ObjectMeta>, RepoError>;

    /// Removes the object at `key`; absent is fine.
    async fn delete(&self, key: &Key) -> Result<(), RepoError>;
}
