//! [`MemoryRepository`]: a repository in memory, for unit tests of the orchestration (no disk,
//! no server). It keeps the whole contract of [`Repository`] except durability across restarts.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;

use futures::StreamExt;

use super::{GetStream, Key, ObjectMeta, PutOutcome, PutStream, RepoError, Repository};

/// A repository held in a map in memory; its objects go when it is dropped.
#[derive(Debug, Default)]
pub struct MemoryRepository {
    objects: Mutex<BTreeMap<Key, Bytes>>,
}

impl MemoryRepository {
    /// An empty repository.
    pub fn new() -> Self {
        Self::default()
    }

    fn objects(&self) -> MutexGuard<'_, BTreeMap<Key, Bytes>> {
        // A panic while holding the lock cannot leave the map half changed (every change is
        // one insert or remove), so a poisoned lock is still usable.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Repository for MemoryRepository {
    fn describe(&self) -> String {
        "memory".to_string()
    }

    async fn put_create(&self, key: &Key, data: Bytes) -> Result<PutOutcome, RepoError> {
        if key.as_str().is_empty() {
            return Err(RepoError::Unavailable {
                repository: self.describe(),
                action: "put",
                key: key.clone(),
                detail: "the root key names no object; give an object's key".to_string(),
            });
        }
        let mut objects = self.objects();
        match objects.get(key) {
            Some(there) if *there == data => Ok(PutOutcome::AlreadyThere),
            Some(_) => Err(RepoError::Conflict { key: key.clone() }),
            None => {
                objects.insert(key.clone(), data);
                Ok(PutOutcome::Created)
            }
        }
    }

    async fn get(&self, key: &Key) -> Result<Bytes, RepoError> {
        self.objects()
            .get(key)
            .cloned()
            .ok_or_else(|| RepoError::NotFound { key: key.clone() })
    }

    async fn put_stream(&self, key: &Key, mut data: PutStream) -> Result<u64, RepoError> {
        if key.as_str().is_empty() {
            return Err(RepoError::Unavailable {
                repository: self.describe(),
                action: "put",
                key: key.clone(),
                detail: "the root key names no object; give an object's key".to_string(),
            });
        }
        let mut all = bytes::BytesMut::new();
        while let Some(piece) = data.next().await {
            let piece = piece.map_err(|e| RepoError::Abandoned {
                key: key.clone(),
                detail: e.to_string(),
            })?;
            all.extend_from_slice(&piece);
        }
        let mut objects = self.objects();
        if objects.contains_key(key) {
            return Err(RepoError::Conflict { key: key.clone() });
        }
        let len = all.len() as u64;
        objects.insert(key.clone(), all.freeze());
        Ok(len)
    }

    async fn get_stream(&self, key: &Key) -> Result<GetStream, RepoError> {
        let data = self.get(key).await?;
        // Several pieces, so that readers are tested on pieces that split the data.
        let pieces: Vec<Result<Bytes, RepoError>> = data
            .chunks(64 << 10)
            .map(|c| Ok(data.slice_ref(c)))
            .collect();
        Ok(futures::stream::iter(pieces).boxed())
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>, RepoError> {
        Ok(self.objects().get(key).map(|data| ObjectMeta {
            key: key.clone(),
            size: data.len() as u64,
        }))
    }

    async fn list(&self, prefix: &Key) -> Result<Vec<ObjectMeta>, RepoError> {
        // Keys under `prefix` sort from `prefix` on, but not contiguously (`wal/n1-x` sorts
        // between `wal/n1` and `wal/n1/…`), so filter within the range.
        Ok(self
            .objects()
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.as_str().starts_with(prefix.as_str()))
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, data)| ObjectMeta {
                key: k.clone(),
                size: data.len() as u64,
            })
            .collect())
    }

    async fn delete(&self, key: &Key) -> Result<(), RepoError> {
        self.objects().remove(key);
        Ok(())
    }
}

/// Which call a [`Hooked`] repository is about to make.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    PutCreate,
    Get,
    PutStream,
    GetStream,
    Head,
    List,
    Delete,
}

/// What a test puts in front of every call of a [`Hooked`] repository: it may count the call,
/// delay it, or fail it instead of letting it through.
#[cfg(test)]
#[async_trait]
pub(crate) trait Hook: Send + Sync + std::fmt::Debug {
    async fn before(&self, call: Call, key: &Key) -> Result<(), RepoError>;
}

/// A [`MemoryRepository`] whose every call runs its `hook` first: the one wrapper the unit tests
/// need to count requests, slow them down or inject failures.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Hooked<H> {
    pub(crate) inner: MemoryRepository,
    pub(crate) hook: H,
}

#[cfg(test)]
#[async_trait]
impl<H: Hook> Repository for Hooked<H> {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn put_create(&self, key: &Key, data: Bytes) -> Result<PutOutcome, RepoError> {
        self.hook.before(Call::PutCreate, key).await?;
        self.inner.put_create(key, data).await
    }
    async fn get(&self, key: &Key) -> Result<Bytes, RepoError> {
        self.hook.before(Call::Get, key).await?;
        self.inner.get(key).await
    }
    async fn put_stream(&self, key: &Key, data: PutStream) -> Result<u64, RepoError> {
        self.hook.before(Call::PutStream, key).await?;
        self.inner.put_stream(key, data).await
    }
    async fn get_stream(&self, key: &Key) -> Result<GetStream, RepoError> {
        self.hook.before(Call::GetStream, key).await?;
        self.inner.get_stream(key).await
    }
    async fn head(&self, key: &Key) -> Result<Option<ObjectMeta>, RepoError> {
        self.hook.before(Call::Head, key).await?;
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &Key) -> Result<Vec<ObjectMeta>, RepoError> {
        self.hook.before(Call::List, prefix).await?;
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &Key) -> Result<(), RepoError> {
        self.hook.before(Call::Delete, key).await?;
        self.inner.delete(key).await
    }
}

/// A [`Hook`] that records every call and makes the gets of some keys slow or fail as absent:
/// which calls were made, which gets started and in which order they ended, how many gets ran
/// at once at most.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Slow {
    /// A delay in milliseconds for each key whose name contains the text (an empty text: every
    /// key).
    pub(crate) delays: Vec<(String, u64)>,
    /// Keys whose get says "not found" though the listing has them (deleted meanwhile).
    pub(crate) vanished: Vec<String>,
    pub(crate) running: std::sync::atomic::AtomicUsize,
    pub(crate) most: std::sync::atomic::AtomicUsize,
    /// Every call, in order.
    pub(crate) calls: std::sync::Mutex<Vec<Call>>,
    pub(crate) started: std::sync::Mutex<Vec<String>>,
    pub(crate) ended: std::sync::Mutex<Vec<String>>,
}

/// Counts a get as running until it ends or is dropped (an aborted read-ahead).
#[cfg(test)]
struct Running<'a>(&'a std::sync::atomic::AtomicUsize);

#[cfg(test)]
impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
#[async_trait]
impl Hook for Slow {
    async fn before(&self, call: Call, key: &Key) -> Result<(), RepoError> {
        use std::sync::atomic::Ordering::SeqCst;
        self.calls.lock().unwrap().push(call);
        if call != Call::Get {
            return Ok(());
        }
        self.started.lock().unwrap().push(key.to_string());
        let now = self.running.fetch_add(1, SeqCst) + 1;
        let _running = Running(&self.running);
        self.most.fetch_max(now, SeqCst);
        let delay = self
            .delays
            .iter()
            .find(|(part, _)| key.as_str().contains(part.as_str()))
            .map_or(0, |(_, ms)| *ms);
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        self.ended.lock().unwrap().push(key.to_string());
        if self
            .vanished
            .iter()
            .any(|v| key.as_str().contains(v.as_str()))
        {
            return Err(RepoError::NotFound { key: key.clone() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lists_only_under_the_prefix() {
        let repo = MemoryRepository::new();
        for k in ["wal/n1", "wal/n1-x/a", "wal/n1/a", "wal/n1/b", "wal/n2/a"] {
            repo.put_create(&Key::new(k).unwrap(), Bytes::from_static(b"x"))
                .await
                .unwrap();
        }
        let listed: Vec<String> = repo
            .list(&Key::new("wal/n1").unwrap())
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key.as_str().to_string())
            .collect();
        assert_eq!(listed, ["wal/n1", "wal/n1/a", "wal/n1/b"]);
        assert!(repo.put_create(&Key::root(), Bytes::new()).await.is_err());
    }
}
