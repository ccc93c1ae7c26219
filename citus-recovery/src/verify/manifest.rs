//! Checking a tar-format base backup against PostgreSQL's `backup_manifest`.
//!
//! `pg_verifybackup` in PostgreSQL 15 verifies plain-format backups only (tar support came in 18),
//! so the tar's entries are checked here the way it would check files: every file the manifest
//! lists is present with the listed size and CRC32C, and no unlisted file is present. `base.tar`
//! holds the data directory; each `<oid>.tar` holds a user tablespace, whose files the manifest
//! lists as `pg_tblspc/<oid>/<entry>`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use serde::Deserialize;

/// Files `pg_verifybackup` ignores too: they may change legitimately after the backup.
const IGNORED: [&str; 4] = [
    "backup_manifest",
    "postgresql.auto.conf",
    "recovery.signal",
    "standby.signal",
];

#[derive(Deserialize)]
struct Manifest {
    #[serde(rename = "Files")]
    files: Vec<ManifestFile>,
}

#[derive(Deserialize)]
struct ManifestFile {
    #[serde(rename = "Path")]
    path: String,
    #[serde(rename = "Size")]
    size: u64,
    #[serde(rename = "Checksum-Algorithm", default)]
    algorithm: Option<String>,
    #[serde(rename = "Checksum", default)]
    checksum: Option<String>,
}

/// What checking one backup found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TarCheck {
    /// Files checked against the manifest.
    pub files: usize,
    /// Bytes read.
    pub bytes: u64,
    /// Every problem, naming the file.
    pub problems: Vec<String>,
}

/// A manifest's files, checked off one by one as a backup's tars are read (a single pass: the
/// upload of a streamed backup and the extraction of a restore feed each file's size and CRC32C
/// as they go).
pub struct ManifestCheck {
    expected: HashMap<String, ManifestFile>,
    /// What was found so far.
    pub check: TarCheck,
}

impl ManifestCheck {
    /// The check of the backup whose `backup_manifest` is `manifest`.
    pub fn parse(manifest: &[u8]) -> Result<Self, String> {
        let manifest: Manifest = serde_json::from_slice(manifest)
            .map_err(|e| format!("backup_manifest cannot be read: {e}"))?;
        Ok(ManifestCheck {
            expected: manifest
                .files
                .into_iter()
                .filter(|f| !IGNORED.contains(&f.path.as_str()))
                .map(|f| (f.path.clone(), f))
                .collect(),
            check: TarCheck::default(),
        })
    }

    /// How many files the manifest lists (beside those it ignores), and their total size: what
    /// extracting the backup writes.
    pub fn listed(&self) -> (usize, u64) {
        (
            self.expected.len(),
            self.expected.values().map(|f| f.size).sum(),
        )
    }

    /// Whether the manifest ignores the file at `path` (it may change after the backup).
    pub fn ignored(path: &str) -> bool {
        IGNORED.contains(&path)
    }

    /// Checks off the file at manifest path `path`, found in `tar` with `size` bytes whose
    /// CRC32C is `crc`.
    pub fn file(&mut self, tar: &str, path: &str, size: u64, crc: u32) {
        let Some(want) = self.expected.remove(path) else {
            self.check
                .problems
                .push(format!("{path} is in {tar} but not in the manifest"));
            return;
        };
        self.check.files += 1;
        self.check.bytes += size;
        compare(&want, path, size, crc, &mut self.check);
    }

    /// The result: every file the manifest lists but no tar held is a problem.
    pub fn finish(mut self, place: &str) -> TarCheck {
        let mut missing: Vec<&String> = self.expected.keys().collect();
        missing.sort();
        for path in missing {
            self.check.problems.push(format!(
                "{path} is in the manifest but in no tar of {place}"
            ));
        }
        self.check
    }
}

/// Compares one file's size and checksum with the manifest's entry.
fn compare(want: &ManifestFile, path: &str, size: u64, crc: u32, check: &mut TarCheck) {
    if size != want.size {
        check.problems.push(format!(
            "{path} has {size} bytes, the manifest says {}",
            want.size
        ));
        return;
    }
    if want.algorithm.as_deref() == Some("CRC32C") {
        // The manifest holds the checksum's bytes in memory order: little-endian.
        let got = hex(&crc.to_le_bytes());
        if want.checksum.as_deref().map(str::to_ascii_lowercase) != Some(got.clone()) {
            check.problems.push(format!(
                "{path} has checksum {got}, the manifest says {}",
                want.checksum.as_deref().unwrap_or("none")
            ));
        }
    }
}

/// Checks `<folder>/base.tar` and every `<folder>/<oid>.tar` against `<folder>/backup_manifest`,
/// and that every file the manifest lists is in one of them. Files are opened without following
/// links. An unreadable manifest or tar is a problem in the result, not an error: the caller
/// reports it with the node.
pub fn check_tar_backup(folder: &Path) -> TarCheck {
    let mut check = TarCheck::default();
    let manifest_path = folder.join("backup_manifest");
    let manifest: Manifest = match open_no_follow(&manifest_path)
        .and_then(|mut f| {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).map(|_| bytes)
        })
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(m) => m,
        Err(e) => {
            check
                .problems
                .push(format!("{}: {e}", manifest_path.display()));
            return check;
        }
    };
    let mut expected: HashMap<String, ManifestFile> = manifest
        .files
        .into_iter()
        .filter(|f| !IGNORED.contains(&f.path.as_str()))
        .map(|f| (f.path.clone(), f))
        .collect();
    let mut tars = vec![(folder.join("base.tar"), String::new())];
    match tablespace_tars(folder) {
        Ok(oids) => {
            for oid in oids {
                tars.push((
                    folder.join(format!("{oid}.tar")),
                    format!("pg_tblspc/{oid}/"),
                ));
            }
        }
        Err(e) => check.problems.push(format!("{}: {e}", folder.display())),
    }
    for (tar_path, prefix) in &tars {
        if let Err(e) = read_tar(tar_path, prefix, &mut expected, &mut check) {
            check.problems.push(format!("{}: {e}", tar_path.display()));
        }
    }
    let mut missing: Vec<&String> = expected.keys().collect();
    missing.sort();
    for path in missing {
        check.problems.push(format!(
            "{path} is in the manifest but in no tar of {}",
            folder.display()
        ));
    }
    check
}

/// The oids of the `<oid>.tar` files in `folder`, ascending.
fn tablespace_tars(folder: &Path) -> std::io::Result<Vec<u32>> {
    let mut oids = Vec::new();
    for entry in std::fs::read_dir(folder)? {
        let name = entry?.file_name();
        let Some(digits) = name.to_str().and_then(|n| n.strip_suffix(".tar")) else {
            continue;
        };
        if !digits.is_empty()
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit())
        {
            if let Ok(oid) = digits.parse() {
                oids.push(oid);
            }
        }
    }
    oids.sort_unstable();
    Ok(oids)
}

/// Opens a regular file for reading, refusing a link as its last component.
fn open_no_follow(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(nix::libc::ELOOP) {
                std::io::Error::other("it is a symbolic link, which is never followed")
            } else {
                e
            }
        })?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("it is not a regular file"));
    }
    Ok(file)
}

/// Checks one tar's files, whose manifest paths are `prefix` followed by the entry's name.
fn read_tar(
    tar_path: &Path,
    prefix: &str,
    expected: &mut HashMap<String, ManifestFile>,
    check: &mut TarCheck,
) -> std::io::Result<()> {
    let file = open_no_follow(tar_path)?;
    let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 20, file));
    let mut buf = vec![0u8; 1 << 20];
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path()?.to_string_lossy().into_owned();
        if prefix.is_empty() && IGNORED.contains(&name.as_str()) {
            continue;
        }
        let path = format!("{prefix}{name}");
        let Some(want) = expected.remove(&path) else {
            check.problems.push(format!(
                "{path} is in {} but not in the manifest",
                tar_path.display()
            ));
            continue;
        };
        let (mut crc, mut size) = (0u32, 0u64);
        loop {
            let n = entry.read(&mut buf)?;
            if n == 0 {
                break;
            }
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            size += n as u64;
        }
        check.files += 1;
        check.bytes += size;
        compare(&want, &path, size, crc, check);
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(files: &[(&str, &[u8])], manifest_files: serde_json::Value) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write_tar(&dir.path().join("base.tar"), files);
        let manifest =
            serde_json::json!({"PostgreSQL-Backup-Manifest-Version": 1, "Files": manifest_files});
        std::fs::write(dir.path().join("backup_manifest"), manifest.to_string()).unwrap();
        dir
    }

    fn write_tar(path: &Path, files: &[(&str, &[u8])]) {
        let mut builder = tar::Builder::new(File::create(path).unwrap());
        for (path, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            header.set_cksum();
            builder.append_data(&mut header, path, *data).unwrap();
        }
        builder.finish().unwrap();
    }

    /// A backup with one tablespace 16384 holding `PG_15_202209061/5/16385` = "15\n".
    fn with_tablespace(content: &[u8]) -> tempfile::TempDir {
        let dir = backup(
            &[("PG_VERSION", b"15\n")],
            serde_json::json!([
                {"Path": "PG_VERSION", "Size": 3, "Checksum-Algorithm": "CRC32C", "Checksum": "8a744722"},
                {"Path": "pg_tblspc/16384/PG_15_202209061/5/16385", "Size": 3, "Checksum-Algorithm": "CRC32C", "Checksum": "8a744722"}
            ]),
        );
        write_tar(
            &dir.path().join("16384.tar"),
            &[("PG_15_202209061/5/16385", content)],
        );
        dir
    }

    #[test]
    fn tablespace_tars_are_checked_under_their_manifest_path() {
        let dir = with_tablespace(b"15\n");
        let check = check_tar_backup(dir.path());
        assert_eq!(check.problems, Vec::<String>::new());
        assert_eq!(check.files, 2);
    }

    #[test]
    fn a_corrupt_byte_in_a_tablespace_tar_fails() {
        let dir = with_tablespace(b"16\n");
        let problems = check_tar_backup(dir.path()).problems.join("\n");
        assert!(
            problems.contains("pg_tblspc/16384/PG_15_202209061/5/16385 has checksum"),
            "{problems}"
        );
    }

    #[test]
    fn a_missing_tablespace_tar_fails() {
        let dir = with_tablespace(b"15\n");
        std::fs::remove_file(dir.path().join("16384.tar")).unwrap();
        let problems = check_tar_backup(dir.path()).problems.join("\n");
        assert!(
            problems.contains(
                "pg_tblspc/16384/PG_15_202209061/5/16385 is in the manifest but in no tar"
            ),
            "{problems}"
        );
    }

    #[test]
    fn a_linked_tar_is_not_followed() {
        let dir = with_tablespace(b"15\n");
        let elsewhere = dir.path().join("elsewhere.tar");
        std::fs::rename(dir.path().join("16384.tar"), &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("16384.tar")).unwrap();
        let problems = check_tar_backup(dir.path()).problems.join("\n");
        assert!(problems.contains("symbolic link"), "{problems}");
    }

    #[test]
    fn a_matching_backup_passes() {
        // CRC32C("15\n") is 0x2247748a: the manifest writes its bytes little-endian.
        let dir = backup(
            &[
                ("PG_VERSION", b"15\n"),
                ("postgresql.auto.conf", b"changed"),
            ],
            serde_json::json!([{"Path": "PG_VERSION", "Size": 3, "Checksum-Algorithm": "CRC32C", "Checksum": "8a744722"}]),
        );
        let check = check_tar_backup(dir.path());
        assert_eq!(check.problems, Vec::<String>::new());
        assert_eq!(check.files, 1);
    }

    #[test]
    fn every_difference_is_named() {
        let dir = backup(
            &[("PG_VERSION", b"16\n"), ("extra", b"x"), ("short", b"ab")],
            serde_json::json!([
                {"Path": "PG_VERSION", "Size": 3, "Checksum-Algorithm": "CRC32C", "Checksum": "8a744722"},
                {"Path": "short", "Size": 3, "Checksum-Algorithm": "CRC32C", "Checksum": "00000000"},
                {"Path": "global/pg_control", "Size": 8192, "Checksum-Algorithm": "CRC32C", "Checksum": "00000000"}
            ]),
        );
        let problems = check_tar_backup(dir.path()).problems.join("\n");
        assert!(problems.contains("PG_VERSION has checksum"), "{problems}");
        assert!(problems.contains("extra is in"), "{problems}");
        assert!(
            problems.contains("short has 2 bytes, the manifest says 3"),
            "{problems}"
        );
        assert!(
            problems.contains("global/pg_control is in the manifest but in no tar of"),
            "{problems}"
        );
    }
}
