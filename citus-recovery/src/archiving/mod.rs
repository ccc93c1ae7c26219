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

pub use get::{archive_get, GetOutcome};
pub use push::archive_push;

use crate::repository::Key;

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
fn check_wal_file_name(file: &str) -> Result<(), crate::Error> {
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
            problem: "is not the name of a WAL segment, .history, .backup or .partial file"
                .into(),
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
        for bad in ["", "../x", "pg_control", "00000001/0000", "0000000g0000000000000003"] {
            assert!(check_wal_file_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            wal_key("w1", "000000010000000000000003", ".zst").unwrap().as_str(),
            "wal/w1/000000010000000000000003.zst"
        );
    }
}
