//! WAL through the tool: what PostgreSQL runs as `archive_command` (`citus-recovery
//! archive-push`) and `restore_command` (`citus-recovery archive-get`), over any
//! [`Repository`](crate::repository::Repository), compressed and checksummed by the codec.
//!
//! Keys: `wal/<node>/<file name><codec suffix>` (`wal/worker1/000000010000000000000003.zst`).
//! A file is pushed once: the same content again is success (PostgreSQL retries after a crash),
//! different content under the same name is an error and never overwrites (two clusters
//! writing one archive, or corruption), whatever codec either copy was written with.

mod get;
mod push;

pub use get::{
    archive_get, next_segment, prefetch, prefetch_args, remove_spool_in, replay_went_back,
    seed_header, seed_spool, take_spooled, window_segments, GetOutcome, SpoolLock, SpoolRemoval,
    Spooled, SPOOL_DIR,
};
pub use push::{archive_push, archive_push_data};

use std::sync::Arc;

use crate::repository::{Key, Repository};
use crate::ClusterConfig;

/// The repository that `config`'s WAL commands use for `node` (checked to be one of the
/// config's nodes), opened without the rest of a [`Cluster`](crate::Cluster): no server
/// programs looked up, no OS user checked, so archive-get starts fast.
pub fn wal_repository(
    config: &ClusterConfig,
    node: &str,
) -> Result<Arc<dyn Repository>, crate::Error> {
    config.dsn(node)?;
    crate::cluster::open_repository(config)?.ok_or_else(|| crate::Error::Config {
        path: config.source.clone(),
        field: "repository".into(),
        problem: "is not set, so WAL goes through basic_archive into archiveBaseFolder and \
                  archive-push/archive-get have nothing to work on"
            .into(),
        fix: "add a \"repository\" object to the config and run prepare-archiving".into(),
    })
}

/// Whether WAL file `file` of `node` is in `repo`, under any codec suffix (what the waits for
/// archiving look for). Looks with `head`: nothing is fetched.
pub async fn is_archived(
    repo: &dyn crate::repository::Repository,
    node: &str,
    file: &str,
) -> Result<bool, crate::Error> {
    for suffix in SUFFIXES {
        if repo.head(&wal_key(node, file, suffix)?).await?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The codec suffixes a WAL file may have been pushed with, newest default first.
const SUFFIXES: [&str; 3] = [".zst", ".lz4", ""];

/// The key of `file` of `node` with `suffix`; the names come from PostgreSQL (`%f`) and the
/// config, and are checked to be one plain key part each.
fn wal_key(node: &str, file: &str, suffix: &str) -> Result<Key, crate::Error> {
    check_wal_file_name(file)?;
    Key::new("wal")
        .and_then(|k| k.join(node))
        .and_then(|k| k.join(&format!("{file}{suffix}")))
        .map_err(|problem| crate::Error::InvalidArgument {
            what: "WAL file name",
            value: file.into(),
            problem,
        })
}

/// WAL file names PostgreSQL archives: segments, `.history`, `.backup` and `.partial` files.
pub(crate) fn check_wal_file_name(file: &str) -> Result<(), crate::Error> {
    let ok = file.len() >= 8
        && file
            .split('.')
            .next()
            .is_some_and(|stem| stem.bytes().all(|b| b.is_ascii_hexdigit()) && stem.len() >= 8)
        && file
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b".historybackupartial".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(crate::Error::InvalidArgument {
            what: "WAL file name",
            value: file.into(),
            problem: "is not the name of a WAL segment, .history, .backup or .partial file".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_file_names() {
        for ok in [
            "000000010000000000000003",
            "00000002.history",
            "000000010000000000000003.00000028.backup",
            "000000010000000000000003.partial",
        ] {
            check_wal_file_name(ok).unwrap();
        }
        for bad in [
            "",
            "../x",
            "pg_control",
            "00000001/0000",
            "0000000g0000000000000003",
        ] {
            assert!(check_wal_file_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            wal_key("w1", "000000010000000000000003", ".zst")
                .unwrap()
                .as_str(),
            "wal/w1/000000010000000000000003.zst"
        );
    }
}

#[cfg(test)]
mod push_get_tests {
    use super::*;
    use crate::repository::codec::Compression;
    use crate::repository::memory::MemoryRepository;
    use crate::repository::{PutOutcome, RepoError, Repository};

    fn segment(dir: &std::path::Path, name: &str, fill: u8) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, vec![fill; 16 * 1024 * 1024]).unwrap();
        path
    }

    #[tokio::test]
    async fn pushed_once_fetched_checked_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let repo = MemoryRepository::new();
        let name = "000000010000000000000003";
        let wal = segment(dir.path(), name, 7);
        let pushed = archive_push(&repo, Compression::Zstd(1), "w1", &wal).await;
        assert_eq!(pushed.unwrap(), PutOutcome::Created);
        let stored = repo.list(&Key::new("wal/w1").unwrap()).await.unwrap();
        assert_eq!(stored.len(), 1);
        assert!(stored[0].key.as_str().ends_with(".zst"));
        assert!(
            stored[0].size < 1024 * 1024,
            "compressed: {}",
            stored[0].size
        );
        // Again, and again with another codec or level: the content decides.
        for c in [
            Compression::Zstd(1),
            Compression::Zstd(5),
            Compression::Lz4,
            Compression::None,
        ] {
            let again = archive_push(&repo, c, "w1", &wal).await.unwrap();
            assert_eq!(again, PutOutcome::AlreadyThere, "{c}");
        }
        // Other content under the same name: refused, the stored copy kept.
        let other = segment(&dir.path().join("."), name, 8);
        for c in [Compression::Zstd(1), Compression::Lz4] {
            match archive_push(&repo, c, "w1", &other).await {
                Err(crate::Error::Repository(RepoError::Conflict { .. })) => {}
                res => panic!("expected a conflict, got {res:?}"),
            }
        }
        let dest = dir.path().join("RECOVERYXLOG");
        assert_eq!(
            archive_get(&repo, "w1", name, &dest, 0).await.unwrap(),
            GetOutcome::Restored
        );
        assert_eq!(std::fs::read(&dest).unwrap(), vec![7u8; 16 * 1024 * 1024]);
        // Not there: a normal answer, not an error.
        assert_eq!(
            archive_get(&repo, "w1", "000000010000000000000004", &dest, 0)
                .await
                .unwrap(),
            GetOutcome::NotFound
        );
        assert_eq!(
            archive_get(&repo, "w2", name, &dest, 0).await.unwrap(),
            GetOutcome::NotFound,
            "another node's archive is another folder"
        );
    }

    #[tokio::test]
    async fn a_damaged_object_is_an_error_never_handed_to_postgres() {
        let dir = tempfile::tempdir().unwrap();
        let repo = MemoryRepository::new();
        let name = "000000010000000000000005";
        let key = wal_key("w1", name, ".lz4").unwrap();
        let mut frame = crate::repository::codec::encode(Compression::Lz4, &[1u8; 4096]).to_vec();
        let last = frame.len() - 1;
        frame[last] ^= 0xFF;
        repo.put_create(&key, frame.into()).await.unwrap();
        let dest = dir.path().join("RECOVERYXLOG");
        match archive_get(&repo, "w1", name, &dest, 0).await {
            Err(crate::Error::Corrupt { key, .. }) => assert!(key.contains(name)),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(!dest.exists(), "PostgreSQL never sees a damaged file");
        assert!(
            archive_push(
                &repo,
                Compression::Zstd(1),
                "w1",
                &segment(dir.path(), name, 1)
            )
            .await
            .is_err(),
            "a damaged copy is not taken for a match"
        );
        assert!(archive_push(
            &repo,
            Compression::Zstd(1),
            "w1",
            &dir.path().join("../etc")
        )
        .await
        .is_err());
    }
}
