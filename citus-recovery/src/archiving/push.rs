//! `archive-push`: one WAL file from `pg_wal` into the repository.

use std::path::Path;

use super::{wal_key, SUFFIXES};
use crate::error::{Error, Result};
use crate::repository::codec::{self, Compression};
use crate::repository::{PutOutcome, RepoError, Repository};

/// Pushes the WAL file at `path` (PostgreSQL's `%p`) of `node` into `repo`, compressed with
/// `compression`. When it returns `Ok` the file is durable in the repository. The same content
/// there already (under any codec) is [`PutOutcome::AlreadyThere`]; different content is
/// [`RepoError::Conflict`], and nothing is overwritten.
pub async fn archive_push(
    repo: &dyn Repository,
    compression: Compression,
    node: &str,
    path: &Path,
) -> Result<PutOutcome> {
    let file = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::InvalidArgument {
            what: "WAL file path",
            value: path.display().to_string(),
            problem: "has no file name".into(),
        })?;
    let data = tokio::fs::read(path)
        .await
        .map_err(|e| Error::io("read", path, e))?;
    archive_push_data(repo, compression, node, file, data).await
}

/// [`archive_push`] of the WAL file `file` whose content is `data` (already read: from an
/// archive folder by `import-folders`).
pub async fn archive_push_data(
    repo: &dyn Repository,
    compression: Compression,
    node: &str,
    file: &str,
    data: Vec<u8>,
) -> Result<PutOutcome> {
    let key = wal_key(node, file, compression.suffix())?;
    // Pushed before with another codec: the content decides.
    for suffix in SUFFIXES.iter().filter(|s| **s != compression.suffix()) {
        let other = wal_key(node, file, suffix)?;
        if let Some(outcome) = compare_stored(repo, &other, &data).await? {
            return outcome;
        }
    }
    let frame = {
        let data = data.clone();
        tokio::task::spawn_blocking(move || codec::encode(compression, &data))
            .await
            .map_err(Error::task(format!("compressing {file}")))?
    };
    match repo.put_create(&key, frame).await {
        // Another level or library version encodes the same content differently.
        Err(RepoError::Conflict { .. }) => compare_stored(repo, &key, &data)
            .await?
            .unwrap_or(Err(RepoError::Conflict { key }.into())),
        other => other.map_err(Error::from),
    }
}

/// Compares what is stored at `key` with `data`: `None` when nothing is there.
async fn compare_stored(
    repo: &dyn Repository,
    key: &crate::repository::Key,
    data: &[u8],
) -> Result<Option<Result<PutOutcome>>> {
    let frame = match repo.get(key).await {
        Ok(frame) => frame,
        Err(RepoError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let stored = codec::decode(&frame).map_err(|e| Error::Corrupt {
        key: key.to_string(),
        problem: e.to_string(),
    })?;
    Ok(Some(if stored.as_ref() == data {
        Ok(PutOutcome::AlreadyThere)
    } else {
        Err(RepoError::Conflict { key: key.clone() }.into())
    }))
}
