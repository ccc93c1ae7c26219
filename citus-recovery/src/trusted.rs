//! The library's own files — catalog, restore state, lock — belong to the user who runs the tool.
//!
//! The tool often runs as root while the servers run as `postgres`, who can write every data
//! directory and anything else it owns. A restore state or catalog that `postgres` could edit
//! would let it steer what root renames or restores. So these files are written by the invoking
//! user (mode 0600, in a folder only that user can write), and before one is trusted its owner
//! and mode are checked, and those of every folder above it: no one else may be able to replace
//! the file or any folder on its path. Symbolic links are never followed.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Mode of the folders holding the library's own files: only the owner writes; the servers' user
/// may pass through (pg_basebackup writes into node folders below the backup folder).
pub const FOLDER_MODE: u32 = 0o755;
/// Mode of the library's own files.
pub const FILE_MODE: u32 = 0o600;

fn untrusted(path: &Path, problem: impl Into<String>, fix: impl Into<String>) -> Error {
    Error::UntrustedFile {
        path: path.to_path_buf(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

fn me() -> u32 {
    nix::unistd::Uid::effective().as_raw()
}

/// Checks one folder on the path to a trusted file: a real folder, owned by us or root, writable
/// by no one else (a sticky folder such as `/tmp` is fine: others cannot rename our entries).
fn check_folder(dir: &Path, must_be_mine: bool) -> Result<()> {
    let meta = fs::symlink_metadata(dir).map_err(|e| Error::io("inspect", dir, e))?;
    if meta.file_type().is_symlink() {
        // A link owned by root in a root-only folder (such as /var/run -> /run) is as safe as
        // its target; anything else could be re-pointed.
        if meta.uid() == 0 && !must_be_mine {
            let target = fs::canonicalize(dir).map_err(|e| Error::io("resolve", dir, e))?;
            return check_path_folders(&target);
        }
        return Err(untrusted(
            dir,
            "is a symbolic link",
            "use the real folder in the config",
        ));
    }
    if !meta.is_dir() {
        return Err(untrusted(
            dir,
            "is not a folder",
            "point the config at a folder",
        ));
    }
    let owner_ok = if must_be_mine {
        meta.uid() == me()
    } else {
        meta.uid() == me() || meta.uid() == 0
    };
    if !owner_ok {
        return Err(untrusted(
            dir,
            format!(
                "belongs to uid {}, not to the user running citus-recovery (uid {}), who must be the only one able to change the catalog and restore state",
                meta.uid(),
                me()
            ),
            format!(
                "check its content, then `chown {} {}` (the servers' user needs only to pass through it: mode 0755)",
                me(),
                dir.display()
            ),
        ));
    }
    // A sticky folder above ours (such as /tmp) is fine: others cannot rename our entries.
    let sticky_above = meta.mode() & 0o1000 != 0 && !must_be_mine;
    if meta.mode() & 0o022 != 0 && !sticky_above {
        return Err(untrusted(
            dir,
            format!(
                "is writable by group or others (mode {:o}), who could replace the files in it",
                meta.mode() & 0o7777
            ),
            format!("`chmod go-w {}`", dir.display()),
        ));
    }
    Ok(())
}

/// Checks every folder from the root down to `dir` (inclusive) with [`check_folder`].
fn check_path_folders(dir: &Path) -> Result<()> {
    let mut ancestors: Vec<&Path> = dir.ancestors().collect();
    ancestors.reverse();
    for a in ancestors {
        check_folder(a, false)?;
    }
    Ok(())
}

/// Checks that `dir` is a folder of ours that no one else can change, nor any folder above it.
pub fn check_dir(dir: &Path) -> Result<()> {
    if dir
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(untrusted(
            dir,
            "has '.' or '..' components",
            "use a normalized absolute path",
        ));
    }
    if let Some(parent) = dir.parent() {
        check_path_folders(parent)?;
    }
    check_folder(dir, true)
}

/// Creates `dir` (and missing parents) as ours with [`FOLDER_MODE`], then checks it.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(p) = cur {
        if fs::symlink_metadata(p).is_ok() {
            break;
        }
        missing.push(p.to_path_buf());
        cur = p.parent();
    }
    for d in missing.iter().rev() {
        match fs::DirBuilder::new().mode(FOLDER_MODE).create(d) {
            Ok(()) => {
                // The umask may have narrowed the mode; set it exactly.
                fs::set_permissions(d, fs::Permissions::from_mode(FOLDER_MODE))
                    .map_err(|e| Error::io("set the mode of", d, e))?;
                if let Some(parent) = d.parent() {
                    sync_folder(parent)?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create folder", d, e)),
        }
    }
    check_dir(dir)
}

/// Opens a trusted file for reading: not a link, a regular file of ours, writable by no one else,
/// in a trusted folder. `Ok(None)` when it does not exist.
pub fn open(path: &Path) -> Result<Option<File>> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    if fs::symlink_metadata(dir).is_err() {
        return Ok(None);
    }
    check_dir(dir)?;
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(untrusted(
                path,
                "is a symbolic link",
                "remove the link; the library writes this file itself",
            ))
        }
        Err(e) => return Err(Error::io("open", path, e)),
    };
    check_file(path, &file)?;
    Ok(Some(file))
}

fn check_file(path: &Path, file: &File) -> Result<()> {
    let meta = file.metadata().map_err(|e| Error::io("inspect", path, e))?;
    if !meta.is_file() {
        return Err(untrusted(
            path,
            "is not a regular file",
            "move it away; the library writes this file itself",
        ));
    }
    if meta.uid() != me() {
        return Err(untrusted(
            path,
            format!(
                "belongs to uid {}, not to the user running citus-recovery (uid {}): someone else may have written it",
                meta.uid(),
                me()
            ),
            format!(
                "check its content, then `chown {} {}` if it is right, or move it away",
                me(),
                path.display()
            ),
        ));
    }
    if meta.mode() & 0o022 != 0 || meta.nlink() != 1 {
        return Err(untrusted(
            path,
            format!(
                "is writable by group or others, or has other hard links (mode {:o}, {} links)",
                meta.mode() & 0o7777,
                meta.nlink()
            ),
            format!(
                "check its content, then `chmod 600 {}` (and remove other links)",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Reads a trusted JSON file; `Ok(None)` when it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let Some(file) = open(path)? else {
        return Ok(None);
    };
    let reader = std::io::BufReader::new(file);
    serde_json::from_reader(reader).map(Some).map_err(|e| {
        Error::io(
            "parse",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })
}

/// Writes a trusted file atomically and durably: a new temporary file (mode 0600), fsync,
/// rename into place, fsync of the folder. The folder must exist and be trusted.
pub fn write(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    check_dir(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp); // a leftover of a killed run of ours (the folder is trusted)
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
        f.write_all(contents)?;
        f.sync_all()
    };
    write().map_err(|e| Error::io("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io("rename into place", path, e))?;
    sync_folder(dir)
}

/// Writes a trusted JSON file (pretty, with a final newline).
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(value).expect("plain data serializes");
    text.push(b'\n');
    write(path, &text)
}

/// Removes a trusted file (absent is fine), durably.
pub fn remove(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    check_dir(dir)?;
    match fs::remove_file(path) {
        Ok(()) => sync_folder(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

fn sync_folder(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync folder", dir, e))
}

/// Checks the folders `rel` (`a/b`, relative) below the posix repository `root` before the
/// library trusts or writes its own objects there (catalog entries, the lock): `root` and every
/// folder above it as [`check_dir`] does, and each existing folder below as ours, writable by no
/// one else, not a link. Missing folders are fine (the repository makes them as ours, 0700).
/// `Ok(false)` when one is missing: nothing below it can exist.
///
/// The servers' user writes `wal/` in the same repository (archive-push), so without this it
/// could plant a catalog entry or a lock that root would then believe.
pub fn check_repository_folders(root: &Path, rel: &str) -> Result<bool> {
    check_dir(root).map_err(|e| match e {
        Error::UntrustedFile { path, problem, fix } => Error::UntrustedFile {
            path,
            problem: format!(
                "{problem} (the repository's folder holds the catalog and the lock, so it must be the invoking user's; the servers' user needs only its wal/ folder)"
            ),
            fix: format!(
                "{fix}; for a repository folder: `chown {} {}` and `chmod 755` it, leaving wal/ to the servers' user",
                me(),
                root.display()
            ),
        },
        other => other,
    })?;
    let mut dir = root.to_path_buf();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(_) => check_folder(&dir, true)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("inspect", &dir, e)),
        }
    }
    Ok(true)
}

/// Checks the library's own object `rel` (`catalog/backups/x.json`, `lock`) in the posix
/// repository `root` before it is read: every folder as [`check_repository_folders`] says, and
/// the file a regular file of ours, writable by no one else, with no other hard link.
/// `Ok(false)` when it does not exist. Once this passes, no one else can change the file
/// before it is read: every folder on the way is ours alone.
pub fn check_repository_file(root: &Path, rel: &str) -> Result<bool> {
    let (dir, _) = rel.rsplit_once('/').unwrap_or(("", rel));
    if !check_repository_folders(root, dir)? {
        return Ok(false);
    }
    let path = root.join(rel);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("inspect", &path, e)),
    };
    if meta.file_type().is_symlink() {
        return Err(untrusted(
            &path,
            "is a symbolic link",
            "remove the link; the library writes this file itself",
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    check_file(&path, &file)?;
    Ok(true)
}

/// Where a file would go in `dir`, refusing a name that is not one plain path component.
pub fn file_in(dir: &Path, name: &str) -> Result<PathBuf> {
    let mut parts = Path::new(name).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(_)), None) if !name.contains('/') => Ok(dir.join(name)),
        _ => Err(Error::InvalidArgument {
            what: "file name",
            value: name.into(),
            problem: "must be one plain path component".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn postgres() -> Option<(u32, u32)> {
        let u = nix::unistd::User::from_name("postgres").ok()??;
        Some((u.uid.as_raw(), u.gid.as_raw()))
    }

    #[test]
    fn written_files_are_ours_0600_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("catalog");
        ensure_dir(&dir).unwrap();
        let path = dir.join("x.json");
        write_json(&path, &vec![1, 2, 3]).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(meta.uid(), me());
        assert_eq!(read_json::<Vec<i32>>(&path).unwrap(), Some(vec![1, 2, 3]));
        remove(&path).unwrap();
        assert_eq!(read_json::<Vec<i32>>(&path).unwrap(), None);
    }

    #[test]
    fn a_file_anyone_else_can_write_or_own_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("catalog");
        ensure_dir(&dir).unwrap();
        let path = dir.join("state.json");
        write_json(&path, &1).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        let err = read_json::<i32>(&path).unwrap_err();
        assert!(matches!(err, Error::UntrustedFile { .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        if let (Some((uid, gid)), true) = (postgres(), me() == 0) {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            let err = read_json::<i32>(&path).unwrap_err();
            assert!(err.to_string().contains(&format!("uid {uid}")), "{err}");
        }
    }

    #[test]
    fn a_symlinked_file_or_folder_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("catalog");
        ensure_dir(&dir).unwrap();
        let real = dir.join("real.json");
        write_json(&real, &1).unwrap();
        let link = dir.join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = read_json::<i32>(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let dir_link = tmp.path().join("dirlink");
        std::os::unix::fs::symlink(&dir, &dir_link).unwrap();
        let err = read_json::<i32>(&dir_link.join("real.json")).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    #[test]
    fn a_folder_of_the_servers_user_is_refused() {
        let (Some((uid, gid)), true) = (postgres(), me() == 0) else {
            eprintln!("SKIPPED: needs root and a postgres user");
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let theirs = tmp.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(uid), Some(gid)).unwrap();
        // Folder owned by postgres: it could swap our file for its own.
        let err = ensure_dir(&theirs.join("catalog")).unwrap_err();
        assert!(matches!(err, Error::UntrustedFile { .. }), "{err}");
        let err = write_json(&theirs.join("x.json"), &1).unwrap_err();
        assert!(err.to_string().contains(&format!("uid {uid}")), "{err}");
    }

    #[test]
    fn names_stay_in_their_folder() {
        let dir = Path::new("/srv/backup");
        assert_eq!(file_in(dir, "a.json").unwrap(), dir.join("a.json"));
        for bad in ["../x", "a/b", "/etc/passwd", "..", ".", ""] {
            assert!(file_in(dir, bad).is_err(), "{bad:?}");
        }
    }
}
