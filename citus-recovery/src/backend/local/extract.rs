//! Extracting a tar-format base backup into a new data directory, and making it startable.
//!
//! Everything here runs as the servers' OS user (see [`super::as_user`]), and every file and
//! folder is created with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` relative to the
//! destination folder and `O_CREAT | O_EXCL | O_NOFOLLOW`: an entry can neither leave its folder
//! nor write through a link, whatever an earlier entry put there. Only regular files and folders
//! are written; `pg_tblspc/<oid>` links in `base.tar` are skipped (PostgreSQL recreates them from
//! `tablespace_map`, which is rewritten to name the new tablespace folders).
//!
//! Crash order. `global/pg_control` is written as [`PENDING_CONTROL_FILE`], and nothing is synced
//! during extraction. The plan then writes the recovery settings and `recovery.signal`, and only
//! then [`install_control_file`] syncs every filesystem involved and renames the pending file to
//! `global/pg_control`. A data directory without `pg_control` cannot start, so a crash at any
//! moment leaves either a directory that cannot start, or one with all its files, its recovery
//! settings and `recovery.signal` durable: never a server that starts without recovery.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, RenameFlags, ResolveFlag};
use nix::sys::stat::Mode;
use nix::sys::time::TimeSpec;

use super::node_fs::{self, io_err, shown};
use crate::backend::{TablespaceTarget, TarStreams};
use crate::error::{Error, Result};
use crate::repository::codec::CodecError;
use crate::verify::manifest::ManifestCheck;

/// Where extraction puts the backup's `global/pg_control`, relative to the data directory, until
/// [`crate::backend::ClusterBackend::install_control_file`] renames it to `global/pg_control`.
/// PostgreSQL ignores this name; a data directory holding only it cannot start.
pub const PENDING_CONTROL_FILE: &str = "global/pg_control.citus-recovery-pending";

/// The control file, relative to the data directory.
const CONTROL_FILE: &str = "global/pg_control";

/// The largest `tablespace_map` read (it holds one line per tablespace).
const MAX_MAP_BYTES: u64 = 1 << 20;

/// Which tar is being extracted, for the rules that differ.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TarKind {
    /// `base.tar`, into the data directory.
    Base,
    /// `pg_wal.tar`, into `pg_wal`.
    Wal,
    /// `<oid>.tar`, into a tablespace folder.
    Tablespace,
}

/// Extracts the backup in `backup` into `data_dir` (see
/// [`crate::backend::ClusterBackend::extract_backup`] for the contract). Runs as the servers'
/// user.
pub(in crate::backend) fn extract_backup(
    backup: &Path,
    data_dir: &Path,
    tablespaces: &[TablespaceTarget],
) -> Result<()> {
    let tars = backup_tars(backup)?;
    let targets = check_targets(backup, &tars.tablespaces, data_dir, tablespaces)?;
    report_total(backup);
    let data_fd = make_new_dir(data_dir)?;
    let base = backup.join("base.tar");
    let map_seen = unpack(&base, &data_fd, TarKind::Base, &targets)?;
    if !targets.is_empty() && !map_seen {
        return Err(refused(
            &base,
            b"tablespace_map",
            "it is missing, yet the backup has tablespaces",
        ));
    }
    let wal_fd = ensure_pg_wal(&data_fd, data_dir)?;
    if let Some(wal) = &tars.wal {
        unpack(wal, &wal_fd, TarKind::Wal, &targets)?;
    }
    for (oid, location) in &targets {
        let fd = make_new_dir(location)?;
        unpack(
            &backup.join(format!("{oid}.tar")),
            &fd,
            TarKind::Tablespace,
            &targets,
        )?;
        set_mode(&fd, 0o700, location)?;
    }
    set_mode(&data_fd, 0o700, data_dir)
}

/// Extracts a backup from tar streams (see
/// [`crate::backend::ClusterBackend::extract_backup_streams`]), checking every file against
/// the manifest as it is written. Runs as the servers' user.
pub(super) fn extract_streams(
    tars: TarStreams,
    data_dir: &Path,
    tablespaces: &[TablespaceTarget],
) -> Result<()> {
    let TarStreams {
        base: (base_name, base),
        tablespaces: tablespace_tars,
        manifest,
    } = tars;
    let base_label = PathBuf::from(&base_name);
    let in_backup: BTreeSet<u32> = tablespace_tars.iter().map(|(oid, ..)| *oid).collect();
    let targets = check_targets(&base_label, &in_backup, data_dir, tablespaces)?;
    let mut check = ManifestCheck::parse(&manifest).map_err(|problem| Error::Corrupt {
        key: format!("the backup_manifest beside {base_name}"),
        problem,
    })?;
    // What extracting writes, as the total (tar headers make `done` pass it a little at the end;
    // the total then grows with it).
    crate::progress::update(
        crate::progress::ProgressUnit::Bytes,
        0,
        Some(check.listed().1),
    );
    let data_fd = make_new_dir(data_dir)?;
    let map_seen = unpack_from(
        base,
        &base_label,
        &data_fd,
        TarKind::Base,
        &targets,
        Some((&mut check, "")),
    )?;
    if !targets.is_empty() && !map_seen {
        return Err(refused(
            &base_label,
            b"tablespace_map",
            "it is missing, yet the backup has tablespaces",
        ));
    }
    ensure_pg_wal(&data_fd, data_dir)?;
    for (oid, name, reader) in tablespace_tars {
        let location = &targets[&oid];
        let fd = make_new_dir(location)?;
        let prefix = format!("pg_tblspc/{oid}/");
        unpack_from(
            reader,
            Path::new(&name),
            &fd,
            TarKind::Tablespace,
            &targets,
            Some((&mut check, &prefix)),
        )?;
        set_mode(&fd, 0o700, location)?;
    }
    let result = check.finish(&base_name);
    if !result.problems.is_empty() {
        return Err(Error::Corrupt {
            key: base_name,
            problem: format!(
                "{} (checked against its backup_manifest while extracting); choose another backup",
                result
                    .problems
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        });
    }
    set_mode(&data_fd, 0o700, data_dir)
}

/// Opens `pg_wal` of the new data directory, making it when the tar had none.
fn ensure_pg_wal(data_fd: &OwnedFd, data_dir: &Path) -> Result<OwnedFd> {
    match open_beneath(data_fd, Path::new("pg_wal"), true) {
        Ok(fd) => Ok(fd),
        Err(Errno::ENOENT) => {
            nix::sys::stat::mkdirat(
                Some(data_fd.as_raw_fd()),
                "pg_wal",
                Mode::from_bits_truncate(0o700),
            )
            .map_err(|e| Error::io("create folder", data_dir.join("pg_wal"), io_err(e)))?;
            open_beneath(data_fd, Path::new("pg_wal"), true)
                .map_err(|e| Error::io("open folder", data_dir.join("pg_wal"), io_err(e)))
        }
        Err(e) => Err(Error::io(
            "open folder",
            data_dir.join("pg_wal"),
            std::io::Error::other(format!(
                "{} (base.tar must give pg_wal as a plain folder)",
                io_err(e)
            )),
        )),
    }
}

/// Makes the extracted `data_dir` startable (see
/// [`crate::backend::ClusterBackend::install_control_file`]). Runs as the servers' user.
pub(in crate::backend) fn install_control_file(
    data_dir: &Path,
    tablespaces: &[TablespaceTarget],
) -> Result<()> {
    let data_fd = node_fs::open_dir(data_dir)?;
    let global_path = data_dir.join("global");
    let global = open_beneath(&data_fd, Path::new("global"), true)
        .map_err(|e| Error::io("open folder", &global_path, io_err(e)))?;
    let pending_name = file_name(PENDING_CONTROL_FILE);
    let control_name = file_name(CONTROL_FILE);
    let present = |name: &OsStr| -> Result<bool> {
        match nix::sys::stat::fstatat(Some(global.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW)
        {
            Ok(_) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(Error::io("look at", global_path.join(name), io_err(e))),
        }
    };
    match (present(pending_name)?, present(control_name)?) {
        (false, true) => return node_fs::sync_fd(&global, &global_path),
        (false, false) => {
            return Err(Error::io(
                "install the control file in",
                data_dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "neither {CONTROL_FILE} nor {PENDING_CONTROL_FILE} is there: the backup was not extracted here; extract it again"
                    ),
                ),
            ))
        }
        (true, true) => {
            return Err(Error::io(
                "install the control file in",
                data_dir,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("both {CONTROL_FILE} and {PENDING_CONTROL_FILE} are there; this is not a directory extracted by this library, or someone changed it: extract it again"),
                ),
            ))
        }
        (true, false) => {}
    }
    // One syncfs per filesystem: every extracted file, folder, setting and signal becomes durable
    // before pg_control exists.
    let mut devices = BTreeSet::new();
    let mut folders = vec![(data_dir.to_path_buf(), data_fd)];
    for t in tablespaces {
        folders.push((t.location.clone(), node_fs::open_dir(&t.location)?));
    }
    for (path, fd) in &folders {
        let st = nix::sys::stat::fstat(fd.as_raw_fd())
            .map_err(|e| Error::io("look at", path, io_err(e)))?;
        if devices.insert(st.st_dev) {
            nix::unistd::syncfs(fd.as_raw_fd())
                .map_err(|e| Error::io("sync the filesystem of", path, io_err(e)))?;
        }
    }
    nix::fcntl::renameat2(
        Some(global.as_raw_fd()),
        pending_name,
        Some(global.as_raw_fd()),
        control_name,
        RenameFlags::RENAME_NOREPLACE,
    )
    .map_err(|e| {
        Error::io(
            format!(
                "rename {} to",
                data_dir.join(PENDING_CONTROL_FILE).display()
            ),
            data_dir.join(CONTROL_FILE),
            io_err(e),
        )
    })?;
    node_fs::sync_fd(&global, &global_path)
}

/// The last component of one of our constant relative paths.
fn file_name(rel: &'static str) -> &'static OsStr {
    Path::new(rel).file_name().expect("a constant file path")
}

/// Reports the size of the backup's tar files as the extraction's total (progress only: a file
/// that cannot be looked at counts as empty here and fails later when it is opened).
fn report_total(backup: &Path) {
    let total = std::fs::read_dir(backup)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().as_bytes().ends_with(b".tar"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    crate::progress::update(crate::progress::ProgressUnit::Bytes, 0, Some(total));
}

/// The tars of a backup folder.
struct BackupTars {
    wal: Option<PathBuf>,
    tablespaces: BTreeSet<u32>,
}

/// Lists `base.tar` (required), `pg_wal.tar` and the `<oid>.tar` files of `backup`.
fn backup_tars(backup: &Path) -> Result<BackupTars> {
    let entries = std::fs::read_dir(backup).map_err(|e| Error::io("list", backup, e))?;
    let (mut base, mut wal, mut tablespaces) = (false, None, BTreeSet::new());
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", backup, e))?;
        let name = entry.file_name();
        let name = name.as_bytes();
        if name == b"base.tar" {
            base = true;
        } else if name == b"pg_wal.tar" {
            wal = Some(entry.path());
        } else if let Some(oid) = tablespace_oid(name) {
            tablespaces.insert(oid);
        }
    }
    if !base {
        return Err(Error::io(
            "open",
            backup.join("base.tar"),
            std::io::Error::new(std::io::ErrorKind::NotFound, "the backup has no base.tar"),
        ));
    }
    Ok(BackupTars { wal, tablespaces })
}

/// The oid of a tablespace tar's file name (`<digits>.tar`, as `pg_basebackup` writes it).
pub(crate) fn tablespace_oid(name: &[u8]) -> Option<u32> {
    let digits = name.strip_suffix(b".tar")?;
    if digits.is_empty() || digits[0] == b'0' || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Checks the tablespace targets against the backup's `<oid>.tar` set, and that every target is
/// a new absolute folder distinct from the data directory; returns them by oid.
fn check_targets(
    backup: &Path,
    in_backup: &BTreeSet<u32>,
    data_dir: &Path,
    tablespaces: &[TablespaceTarget],
) -> Result<BTreeMap<u32, PathBuf>> {
    let mut targets = BTreeMap::new();
    let problem = |what: String| {
        Error::io(
            "extract",
            backup,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, what),
        )
    };
    for t in tablespaces {
        if targets.insert(t.oid, t.location.clone()).is_some() {
            return Err(problem(format!("tablespace {} is given twice", t.oid)));
        }
        if !t.location.is_absolute()
            || t.location.starts_with(data_dir)
            || data_dir.starts_with(&t.location)
        {
            return Err(problem(format!(
                "tablespace {} cannot go to {}: give an absolute folder outside the data directory {}",
                t.oid,
                t.location.display(),
                data_dir.display()
            )));
        }
    }
    let given: BTreeSet<u32> = targets.keys().copied().collect();
    if &given != in_backup {
        return Err(problem(format!(
            "the backup holds tablespaces {:?} (one <oid>.tar each), but folders were given for {:?}; give one new folder for each tablespace of the backup",
            in_backup, given
        )));
    }
    let locations: BTreeSet<&PathBuf> = targets.values().collect();
    if locations.len() != targets.len() {
        return Err(problem("two tablespaces are given the same folder".into()));
    }
    for location in targets.values() {
        for other in targets.values() {
            if location != other && location.starts_with(other) {
                return Err(problem(format!(
                    "tablespace folder {} lies inside {}",
                    location.display(),
                    other.display()
                )));
            }
        }
    }
    Ok(targets)
}

/// Creates `path` (which must not exist; its parent must) with mode 0700 and opens it.
fn make_new_dir(path: &Path) -> Result<OwnedFd> {
    let (parent, name) = node_fs::split(path)?;
    let parent_fd = node_fs::open_dir(parent)?;
    nix::sys::stat::mkdirat(
        Some(parent_fd.as_raw_fd()),
        name,
        Mode::from_bits_truncate(0o700),
    )
    .map_err(|e| {
        let source = if e == Errno::EEXIST {
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "it exists already; a backup is only extracted into a new folder",
            )
        } else {
            io_err(e)
        };
        Error::io("create folder", path, source)
    })?;
    let fd = node_fs::open_dir_at(&parent_fd, name, path)?;
    set_mode(&fd, 0o700, path)?;
    Ok(fd)
}

fn owned(fd: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: a descriptor just opened, owned by nothing else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn set_mode(fd: &OwnedFd, mode: u32, path: &Path) -> Result<()> {
    nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(mode))
        .map_err(|e| Error::io("set the mode of", path, io_err(e)))
}

/// Opens `rel` below `root` (a folder, or with `dir == false` anything, as `O_PATH`), never
/// leaving `root` and never through a link.
fn open_beneath(root: &OwnedFd, rel: &Path, dir: bool) -> std::result::Result<OwnedFd, Errno> {
    let flags = if dir {
        OFlag::O_RDONLY | OFlag::O_DIRECTORY
    } else {
        OFlag::O_PATH
    };
    nix::fcntl::openat2(
        root.as_raw_fd(),
        rel,
        OpenHow::new()
            .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS),
    )
    .map(owned)
}

/// An entry refused, naming the tar, the entry and why.
fn refused(tar: &Path, entry: &[u8], why: &str) -> Error {
    Error::io(
        format!("extract entry {:?} of", shown(entry)),
        tar,
        std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string()),
    )
}

/// The entry's path as plain relative components; `Ok(None)` for the folder itself (`./`).
/// `pg_basebackup` writes a few names with a leading `./`, which is dropped; any other `.`, any
/// `..`, an empty component or a leading `/` is refused.
fn clean_path(raw: &[u8]) -> std::result::Result<Option<PathBuf>, &'static str> {
    if raw.first() == Some(&b'/') {
        return Err("it is an absolute path");
    }
    let raw = raw.strip_prefix(b"./").unwrap_or(raw);
    let raw = raw.strip_suffix(b"/").unwrap_or(raw);
    if raw.is_empty() || raw == b"." {
        return Ok(None);
    }
    if raw.contains(&0) {
        return Err("its name holds a NUL byte");
    }
    let mut path = PathBuf::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" => return Err("its path has an empty component"),
            b"." | b".." => return Err("its path has a `.` or `..` component"),
            _ => path.push(OsStr::from_bytes(part)),
        }
    }
    Ok(Some(path))
}

/// A folder whose mode and time are set once its contents are in.
struct DirTimes {
    rel: PathBuf,
    mode: u32,
    mtime: u64,
}

/// Extracts one tar file into the folder `dest`; returns whether it held a `tablespace_map`.
fn unpack(
    tar_path: &Path,
    dest: &OwnedFd,
    kind: TarKind,
    targets: &BTreeMap<u32, PathBuf>,
) -> Result<bool> {
    let file = node_fs::open_regular(tar_path)?;
    unpack_from(file, tar_path, dest, kind, targets, None)
}

/// A read error of the tar `tar_path`: a damaged stream (its codec's check failed) is
/// [`Error::Corrupt`] naming the object.
fn read_error(tar_path: &Path, e: std::io::Error) -> Error {
    match e.get_ref().and_then(|i| i.downcast_ref::<CodecError>()) {
        Some(codec) => Error::Corrupt {
            key: tar_path.display().to_string(),
            problem: format!("{codec}; choose another backup"),
        },
        None => Error::io("read", tar_path, e),
    }
}

/// Extracts the tar read from `reader` (named `tar_path` in messages) into the folder `dest`;
/// returns whether it held a `tablespace_map`. With `check`, every regular file is checked off
/// the manifest under its prefix as it is written, and a top-level `backup_manifest` of
/// `base.tar` is skipped.
fn unpack_from(
    reader: impl Read,
    tar_path: &Path,
    dest: &OwnedFd,
    kind: TarKind,
    targets: &BTreeMap<u32, PathBuf>,
    mut check: Option<(&mut ManifestCheck, &str)>,
) -> Result<bool> {
    // Counted as it is read: the restore's progress is bytes of the backup extracted.
    let reader = crate::progress::CountingReader(reader);
    let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 20, reader));
    let read_err = |e: std::io::Error| read_error(tar_path, e);
    let tar_name = tar_path.display().to_string();
    let mut dirs: Vec<DirTimes> = Vec::new();
    let mut map_seen = false;
    let mut buf = vec![0u8; 1 << 20];
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let raw = entry.path_bytes().into_owned();
        let refuse = |why: &str| refused(tar_path, &raw, why);
        let rel = clean_path(&raw).map_err(refuse)?;
        let header = entry.header();
        let mode = header.mode().map_err(read_err)?;
        let mtime = header.mtime().map_err(read_err)?;
        let entry_type = header.entry_type();
        if mode & 0o7000 != 0 {
            return Err(refuse("its mode has a setuid, setgid or sticky bit"));
        }
        let Some(rel) = rel else {
            if entry_type.is_dir() {
                continue;
            }
            return Err(refuse("it names the destination folder itself"));
        };
        if entry_type.is_symlink() {
            if kind == TarKind::Base && is_tablespace_link(&rel) {
                // PostgreSQL recreates these links from tablespace_map at startup.
                continue;
            }
            return Err(refuse(
                "it is a symbolic link (only pg_tblspc/<oid> links in base.tar are accepted)",
            ));
        }
        if entry_type.is_hard_link() {
            return Err(refuse("it is a hard link"));
        }
        if entry_type.is_dir() {
            make_dir(dest, &rel).map_err(|e| {
                Error::io(format!("extract entry {:?} of", shown(&raw)), tar_path, e)
            })?;
            dirs.push(DirTimes { rel, mode, mtime });
            continue;
        }
        if !entry_type.is_file() {
            return Err(refuse(&format!(
                "it is neither a regular file nor a folder (tar type {:?})",
                entry_type.as_byte() as char
            )));
        }
        let manifest_path = rel.to_string_lossy().into_owned();
        if check.is_some() && kind == TarKind::Base && manifest_path == "backup_manifest" {
            continue;
        }
        // The manifest's path of this file, when it is checked against it.
        let checked = match &check {
            Some((_, prefix))
                if !(kind == TarKind::Base && ManifestCheck::ignored(&manifest_path)) =>
            {
                Some(format!("{prefix}{manifest_path}"))
            }
            _ => None,
        };
        let mut name = rel.clone();
        let mut rewritten = None;
        let (mut crc, mut size) = (0u32, 0u64);
        if kind == TarKind::Base {
            if rel == Path::new(PENDING_CONTROL_FILE) {
                return Err(refuse(
                    "the name is reserved for the library's pending control file",
                ));
            }
            if rel == Path::new(CONTROL_FILE) {
                name = PathBuf::from(PENDING_CONTROL_FILE);
            } else if rel == Path::new("tablespace_map") {
                map_seen = true;
                if entry.size() > MAX_MAP_BYTES {
                    return Err(refuse("it is larger than any tablespace map"));
                }
                let mut old = Vec::new();
                entry.read_to_end(&mut old).map_err(read_err)?;
                crc = crc32c::crc32c(&old);
                size = old.len() as u64;
                let oids = map_oids(&old).map_err(refuse)?;
                let given: BTreeSet<u32> = targets.keys().copied().collect();
                if oids != given {
                    return Err(refuse(&format!(
                        "it lists tablespaces {oids:?}, but the backup has tar files for {given:?}"
                    )));
                }
                rewritten = Some(tablespace_map(targets));
            }
        }
        let out = create_file(dest, &name)
            .map_err(|e| Error::io(format!("extract entry {:?} of", shown(&raw)), tar_path, e))?;
        let mut out = File::from(out);
        let write_err =
            |e: std::io::Error| Error::io(format!("write entry {:?} of", shown(&raw)), tar_path, e);
        match rewritten {
            Some(bytes) => std::io::Write::write_all(&mut out, &bytes).map_err(write_err)?,
            None => loop {
                // Large reads and writes: a WAL segment is 16 MiB.
                let n = entry.read(&mut buf).map_err(read_err)?;
                if n == 0 {
                    break;
                }
                if checked.is_some() {
                    crc = crc32c::crc32c_append(crc, &buf[..n]);
                    size += n as u64;
                }
                std::io::Write::write_all(&mut out, &buf[..n]).map_err(write_err)?;
            },
        }
        // Start the file's writeback now, while the rest extracts: the sync before pg_control
        // is installed then finds little left to write (PostgreSQL's own pre-sync does the
        // same). Only a hint; durability still comes from that sync.
        // SAFETY: a plain system call on a descriptor this function owns.
        let _ =
            unsafe { libc::sync_file_range(out.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        finish_node(out.as_raw_fd(), mode, mtime).map_err(|e| write_err(io_err(e)))?;
        if let (Some(path), Some((manifest, _))) = (checked, check.as_mut()) {
            manifest.file(&tar_name, &path, size, crc);
        }
    }
    // Innermost first, so a parent's time is set after its children changed it.
    for d in dirs.iter().rev() {
        let folder_err = |e| {
            Error::io(
                format!(
                    "set the mode of folder {:?} of",
                    d.rel.display().to_string()
                ),
                tar_path,
                io_err(e),
            )
        };
        let fd = open_beneath(dest, &d.rel, true).map_err(folder_err)?;
        finish_node(fd.as_raw_fd(), d.mode, d.mtime).map_err(folder_err)?;
    }
    Ok(map_seen)
}

/// Sets a new file's or folder's mode (`& 0o777`) and modification time.
fn finish_node(fd: std::os::fd::RawFd, mode: u32, mtime: u64) -> nix::Result<()> {
    nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(mode & 0o777))?;
    let time = TimeSpec::new(mtime as i64, 0);
    nix::sys::stat::futimens(fd, &time, &time)
}

/// `pg_tblspc/<oid>`.
fn is_tablespace_link(rel: &Path) -> bool {
    let mut parts = rel.iter();
    parts.next() == Some(OsStr::new("pg_tblspc"))
        && parts
            .next()
            .is_some_and(|oid| tablespace_oid(&[oid.as_bytes(), b".tar"].concat()).is_some())
        && parts.next().is_none()
}

/// Creates the parents of `rel` below `dest` that are missing (mode 0700), never through a link.
fn make_parents(dest: &OwnedFd, rel: &Path) -> std::io::Result<()> {
    let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    match open_beneath(dest, parent, true) {
        Ok(_) => Ok(()),
        Err(Errno::ENOENT) => make_dir(dest, parent),
        Err(e) => Err(io_err(e)),
    }
}

/// Creates the folder `rel` below `dest` (and missing parents); an existing folder is accepted.
fn make_dir(dest: &OwnedFd, rel: &Path) -> std::io::Result<()> {
    make_parents(dest, rel)?;
    let name = rel.file_name().expect("a cleaned path ends in a name");
    let parent = rel.parent().filter(|p| !p.as_os_str().is_empty());
    let parent_fd = match parent {
        Some(p) => Some(open_beneath(dest, p, true).map_err(io_err)?),
        None => None,
    };
    let at = parent_fd.as_ref().unwrap_or(dest);
    match nix::sys::stat::mkdirat(Some(at.as_raw_fd()), name, Mode::from_bits_truncate(0o700)) {
        Ok(()) => Ok(()),
        // Listed twice, or made as a parent earlier: fine when it is a real folder.
        Err(Errno::EEXIST) => open_beneath(dest, rel, true).map(drop).map_err(io_err),
        Err(e) => Err(io_err(e)),
    }
}

/// Creates the new file `rel` below `dest` for writing.
fn create_file(dest: &OwnedFd, rel: &Path) -> std::io::Result<OwnedFd> {
    make_parents(dest, rel)?;
    crate::files::create_new_beneath(dest, rel).map_err(|e| match e {
        Errno::EEXIST => std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "the tar holds this name twice",
        ),
        other => io_err(other),
    })
}

/// The oids a `tablespace_map` lists (PostgreSQL's format: `<oid> <path>` lines, where `\`
/// escapes a following `\`, newline or carriage return in the path).
fn map_oids(text: &[u8]) -> std::result::Result<BTreeSet<u32>, &'static str> {
    let mut oids = BTreeSet::new();
    let mut line = Vec::new();
    let mut escaped = false;
    let mut take = |line: &mut Vec<u8>| -> std::result::Result<(), &'static str> {
        if line.is_empty() {
            return Ok(());
        }
        let oid = line.split(|b| *b == b' ').next().unwrap_or_default();
        let oid = std::str::from_utf8(oid)
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .ok_or("a line does not start with a tablespace oid")?;
        if !oids.insert(oid) {
            return Err("it lists a tablespace twice");
        }
        line.clear();
        Ok(())
    };
    for &b in text {
        if escaped {
            line.push(b);
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'\n' || b == b'\r' {
            take(&mut line)?;
        } else {
            line.push(b);
        }
    }
    take(&mut line)?;
    Ok(oids)
}

/// A `tablespace_map` naming the new locations.
fn tablespace_map(targets: &BTreeMap<u32, PathBuf>) -> Vec<u8> {
    let mut out = Vec::new();
    for (oid, location) in targets {
        out.extend_from_slice(format!("{oid} ").as_bytes());
        for &b in location.as_os_str().as_bytes() {
            if matches!(b, b'\\' | b'\n' | b'\r') {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests;
