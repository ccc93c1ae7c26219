//! Extracting a tar-format base backup into a new data directory.
//!
//! `base.tar` goes into the data directory and `pg_wal.tar` into its `pg_wal`. Following
//! pgBackRest, `global/pg_control` is written last: a data directory without it cannot start, so
//! an interrupted extraction can never be mistaken for a complete one.

use std::fs::{self, File};
use std::io::BufReader;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

use crate::error::{Error, Result};
use crate::files::{self, OsUser};

/// The control file, restored last.
const PG_CONTROL: &str = "global/pg_control";

/// Extracts the backup in `backup` (a folder with `base.tar` and `pg_wal.tar`) into `data_dir`,
/// which must not exist yet.
pub(super) fn extract_backup(backup: &Path, data_dir: &Path, user: &OsUser) -> Result<()> {
    if data_dir.exists() {
        return Err(Error::io(
            "extract into",
            data_dir,
            std::io::Error::new(std::io::ErrorKind::AlreadyExists, "it exists already"),
        ));
    }
    let base = backup.join("base.tar");
    if !base.is_file() {
        return Err(Error::io(
            "open",
            &base,
            std::io::Error::new(std::io::ErrorKind::NotFound, "the backup has no base.tar"),
        ));
    }
    files::create_dir_owned(data_dir, 0o700, user)?;
    let control = unpack(&base, data_dir, user, Some(PG_CONTROL))?;
    let wal_tar = backup.join("pg_wal.tar");
    if wal_tar.is_file() {
        let wal_dir = data_dir.join("pg_wal");
        files::create_dir_owned(&wal_dir, 0o700, user)?;
        unpack(&wal_tar, &wal_dir, user, None)?;
    }
    if let Some(bytes) = control {
        let path = data_dir.join(PG_CONTROL);
        files::write_atomic(&path, &bytes, 0o600, user)?;
    }
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("set the mode of", data_dir, e))?;
    files::sync_dir(data_dir)
}

/// Unpacks one tar into `into`, handing every entry to `user`; the entry named `hold_back` is
/// returned instead of written.
fn unpack(
    tar_path: &Path,
    into: &Path,
    user: &OsUser,
    hold_back: Option<&str>,
) -> Result<Option<Vec<u8>>> {
    let file = File::open(tar_path).map_err(|e| Error::io("open", tar_path, e))?;
    let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 20, file));
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(false);
    let mut held = None;
    let entries = archive
        .entries()
        .map_err(|e| Error::io("read", tar_path, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::io("read", tar_path, e))?;
        let rel = entry
            .path()
            .map_err(|e| Error::io("read an entry name in", tar_path, e))?
            .into_owned();
        // A backup holds relative paths only; refuse anything that could escape the folder.
        if rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(Error::io(
                "extract",
                tar_path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("entry {} is not a plain relative path", rel.display()),
                ),
            ));
        }
        if hold_back.is_some_and(|h| rel == Path::new(h)) {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes)
                .map_err(|e| Error::io("read", tar_path, e))?;
            held = Some(bytes);
            continue;
        }
        entry
            .unpack_in(into)
            .map_err(|e| Error::io(format!("extract {} into", rel.display()), into, e))?;
        let target = into.join(&rel);
        user.own(&target)?;
    }
    Ok(held)
}
