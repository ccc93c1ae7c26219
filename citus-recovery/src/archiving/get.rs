//! `archive-get`: one WAL file from the repository into `pg_wal`, checked before PostgreSQL
//! sees it.

use std::io::Write;
use std::path::Path;

use super::{wal_key, SUFFIXES};
use crate::error::{Error, Result};
use crate::repository::codec;
use crate::repository::{RepoError, Repository};

/// What [`archive_get`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetOutcome {
    /// The file was written to the destination.
    Restored,
    /// The repository does not hold it: a normal part of recovery (PostgreSQL asks for files
    /// past the end of the archive and for `.history` files that may not exist).
    NotFound,
}

/// Fetches `file` (PostgreSQL's `%f`) of `node` from `repo` into `dest` (`%p`), after checking
/// its checksum. Any failure other than "not there" is an error, which the command turns into an
/// exit code above 125 so that PostgreSQL stops recovery instead of taking it for the end of
/// the WAL.
pub async fn archive_get(
    repo: &dyn Repository,
    node: &str,
    file: &str,
    dest: &Path,
) -> Result<GetOutcome> {
    for suffix in SUFFIXES {
        let key = wal_key(node, file, suffix)?;
        let frame = match repo.get(&key).await {
            Ok(frame) => frame,
            Err(RepoError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let (dest, key_text) = (dest.to_path_buf(), key.to_string());
        return tokio::task::spawn_blocking(move || {
            let data = codec::decode(&frame).map_err(|e| Error::Corrupt {
                key: key_text,
                problem: e.to_string(),
            })?;
            write_new(&dest, &data)?;
            Ok(GetOutcome::Restored)
        })
        .await
        .map_err(Error::task(format!("restoring {file}")))?;
    }
    Ok(GetOutcome::NotFound)
}

/// Writes `data` to `dest` through a temporary file beside it, so PostgreSQL never reads a
/// partial file.
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
        f.write_all(data)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io("write", &tmp, e));
    }
    std::fs::rename(&tmp, dest).map_err(|e| Error::io("rename into place", dest, e))
}
