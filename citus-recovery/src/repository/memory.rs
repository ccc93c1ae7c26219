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
