//! Checking a tar-format base backup against PostgreSQL's `backup_manifest`.
//!
//! `pg_verifybackup` in PostgreSQL 15 verifies plain-format backups only (tar support came in 18),
//! so the tar's entries are checked here the way it would check files: every file the manifest
//! lists is present with the listed size and CRC32C, and no unlisted file is present.

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

/// Checks `<folder>/base.tar` against `<folder>/backup_manifest`. An unreadable manifest or tar is
/// a problem in the result, not an error: the caller reports it with the node.
pub fn check_tar_backup(folder: &Path) -> TarCheck {
    let mut check = TarCheck::default();
    let manifest_path = folder.join("backup_manifest");
    let manifest: Manifest = match std::fs::read(&manifest_path)
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
    let tar_path = folder.join("base.tar");
    if let Err(e) = read_tar(&tar_path, &mut expected, &mut check) {
        check.problems.push(format!("{}: {e}", tar_path.display()));
        return check;
    }
    let mut missing: Vec<&String> = expected.keys().collect();
    missing.sort();
    for path in missing {
        check.problems.push(format!(
            "{path} is in the manifest but not in {}",
            tar_path.display()
        ));
    }
    check
}

fn read_tar(
    tar_path: &Path,
    expected: &mut HashMap<String, ManifestFile>,
    check: &mut TarCheck,
) -> std::io::Result<()> {
    let file = File::open(tar_path)?;
    let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 20, file));
    let mut buf = vec![0u8; 1 << 20];
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        if IGNORED.contains(&path.as_str()) {
            continue;
        }
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
        if size != want.size {
            check.problems.push(format!(
                "{path} has {size} bytes, the manifest says {}",
                want.size
            ));
            continue;
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
        let mut builder = tar::Builder::new(File::create(dir.path().join("base.tar")).unwrap());
        for (path, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            header.set_cksum();
            builder.append_data(&mut header, path, *data).unwrap();
        }
        builder.finish().unwrap();
        let manifest =
            serde_json::json!({"PostgreSQL-Backup-Manifest-Version": 1, "Files": manifest_files});
        std::fs::write(dir.path().join("backup_manifest"), manifest.to_string()).unwrap();
        dir
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
            problems.contains("global/pg_control is in the manifest but not in"),
            "{problems}"
        );
    }
}
