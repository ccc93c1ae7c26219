//! `import-folders`: what a cluster kept in its folders before it had a `repository` (the
//! complete backups of `backupBaseFolder`, the restore points of its catalog, the WAL of
//! `archiveBaseFolder`) copied into the repository, so it is listed, verified and restored from
//! there and the folders can go.
//!
//! Nothing in the folders changes. Every backup file is checked against the backup's manifest as
//! it is uploaded (as a streamed backup is), WAL files go in as `archive-push` puts them
//! (create-only: the same content already there is fine, different content an error that
//! overwrites nothing), and a backup becomes visible only when its catalog entry, written last,
//! is there. So an interrupted import leaves nothing that is offered, and running it again
//! carries on: what is there is skipped, an unfinished backup's objects are removed first.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::catalog::{Backup, RestorePoint};
use crate::plan::{Phase, Plan};

/// One node's archive folder: the WAL files not in the repository yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeWal {
    /// The node's name.
    pub node: String,
    /// Its archive folder (`<archiveBaseFolder>/<node>`).
    pub folder: PathBuf,
    /// The files to copy, sorted.
    pub files: Vec<String>,
    /// Their size.
    pub bytes: u64,
}

/// A complete backup of `backupBaseFolder` to copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportBackup {
    /// The backup as its folder records it.
    pub backup: Backup,
    /// Objects of an earlier, unfinished import (or backup) of that name in the repository:
    /// never offered (no catalog entry names them), removed before the copy.
    pub leftovers: Vec<String>,
}

/// What the folders hold and the repository does not, as observed (see [`ImportPlan::build`]).
#[derive(Debug, Clone, Default)]
pub struct ImportInputs {
    /// The repository, for messages.
    pub repository: String,
    /// The complete backups of `backupBaseFolder`.
    pub folder_backups: Vec<Backup>,
    /// The restore points of the folder catalog.
    pub folder_points: Vec<RestorePoint>,
    /// The names of the backups in the repository's catalog.
    pub repository_backups: Vec<String>,
    /// The names of the restore points in the repository's catalog.
    pub repository_points: Vec<String>,
    /// Per node: its archive folder, each regular file in it with its size, the names that are
    /// not regular files (links are never followed), and the WAL file names in the repository.
    pub archives: Vec<ArchiveFolder>,
    /// Per backup name: the keys under `backups/<name>/` in the repository.
    pub stored_objects: Vec<(String, Vec<String>)>,
}

/// One node's archive folder and the node's WAL in the repository, as observed.
#[derive(Debug, Clone, Default)]
pub struct ArchiveFolder {
    /// The node's name.
    pub node: String,
    /// The folder.
    pub folder: PathBuf,
    /// Its regular files with their sizes.
    pub files: Vec<(String, u64)>,
    /// Entries that are not regular files.
    pub unreadable: Vec<String>,
    /// The node's WAL files in the repository, without codec suffix.
    pub in_repository: Vec<String>,
}

/// The plan of `import-folders`: what is copied, in the order it is copied (WAL, then backups
/// oldest first, then restore points, which need both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportPlan {
    /// The repository copied into, for messages.
    pub repository: String,
    /// Per node, the WAL files to copy.
    pub wal: Vec<NodeWal>,
    /// The backups to copy, oldest first.
    pub backups: Vec<ImportBackup>,
    /// The restore points to record in the repository's catalog.
    pub restore_points: Vec<RestorePoint>,
    /// Remarks: what is left out and why.
    pub notes: Vec<String>,
}

impl ImportPlan {
    /// The plan from what was observed; reads nothing.
    pub fn build(inputs: ImportInputs) -> ImportPlan {
        let mut notes = Vec::new();
        let mut wal = Vec::new();
        for a in inputs.archives {
            let mut files = Vec::new();
            let mut bytes = 0;
            for (name, size) in a.files {
                if crate::archiving::check_wal_file_name(&name).is_err() {
                    notes.push(format!(
                        "{}: {name} is not a WAL file name and stays out",
                        a.folder.display()
                    ));
                } else if !a.in_repository.contains(&name) {
                    bytes += size;
                    files.push(name);
                }
            }
            for name in a.unreadable {
                notes.push(format!(
                    "{}: {name} is not a regular file (a link is never followed) and stays out",
                    a.folder.display()
                ));
            }
            files.sort();
            if !files.is_empty() {
                wal.push(NodeWal {
                    node: a.node,
                    folder: a.folder,
                    files,
                    bytes,
                });
            }
        }
        let mut backups = Vec::new();
        for backup in inputs.folder_backups {
            if inputs.repository_backups.contains(&backup.name) {
                notes.push(format!(
                    "backup {} is in the repository already and stays as it is there",
                    backup.name
                ));
                continue;
            }
            let leftovers = inputs
                .stored_objects
                .iter()
                .find(|(name, _)| *name == backup.name)
                .map(|(_, keys)| keys.clone())
                .unwrap_or_default();
            backups.push(ImportBackup { backup, leftovers });
        }
        backups.sort_by_key(|a| a.backup.start_time);
        let mut restore_points = Vec::new();
        for point in inputs.folder_points {
            if inputs.repository_points.contains(&point.name) {
                notes.push(format!(
                    "restore point {} is in the repository already and stays as it is there",
                    point.name
                ));
            } else {
                restore_points.push(point);
            }
        }
        ImportPlan {
            repository: inputs.repository,
            wal,
            backups,
            restore_points,
            notes,
        }
    }

    /// Whether there is nothing to copy.
    pub fn is_empty(&self) -> bool {
        self.wal.is_empty() && self.backups.is_empty() && self.restore_points.is_empty()
    }
}

impl Plan for ImportPlan {
    fn command(&self) -> &'static str {
        "import-folders"
    }

    /// None: an import is not run node by node (see [`Plan::step_lines`]).
    fn phases(&self) -> &[Phase] {
        &[]
    }

    fn notes(&self) -> &[String] {
        &self.notes
    }

    /// One line per copy, in the order they run.
    fn step_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for w in &self.wal {
            lines.push(format!(
                "{}: copy {} WAL file(s), {}, {} .. {}, from {}",
                w.node,
                w.files.len(),
                mib(w.bytes),
                w.files.first().map_or("", String::as_str),
                w.files.last().map_or("", String::as_str),
                w.folder.display()
            ));
        }
        for b in &self.backups {
            if !b.leftovers.is_empty() {
                lines.push(format!(
                    "backup {}: remove {} object(s) of an unfinished earlier copy",
                    b.backup.name,
                    b.leftovers.len()
                ));
            }
            lines.push(format!(
                "backup {}: copy every node's tars ({}), each file checked against its manifest, then its catalog entry",
                b.backup.name,
                mib(b.backup.bytes())
            ));
        }
        for p in &self.restore_points {
            lines.push(format!("restore point {}: record it", p.name));
        }
        lines
    }
}

impl fmt::Display for ImportPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "import-folders into {}", self.repository)?;
        for (i, line) in self.step_lines().iter().enumerate() {
            writeln!(f, "  {}. {line}", i + 1)?;
        }
        if self.is_empty() {
            writeln!(
                f,
                "nothing to copy: the repository has everything the folders hold"
            )?;
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}

/// What `import-folders` copied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(get_all, frozen, module = "citus_recovery", name = "ImportReport")
)]
pub struct ImportReport {
    /// The repository copied into.
    pub repository: String,
    /// WAL files stored.
    pub wal_files: usize,
    /// WAL files the repository had already with the same content.
    pub wal_already_there: usize,
    /// The backups copied, oldest first.
    pub backups: Vec<String>,
    /// The restore points recorded.
    pub restore_points: Vec<String>,
    /// Bytes stored (compressed) for the backups' tars.
    pub backup_bytes_stored: u64,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "imported into {}: {} WAL file(s) ({} there already), {} backup(s){}, {} restore point(s){}",
            self.repository,
            self.wal_files,
            self.wal_already_there,
            self.backups.len(),
            if self.backups.is_empty() {
                String::new()
            } else {
                format!(" ({}; {} stored)", self.backups.join(", "), mib(self.backup_bytes_stored))
            },
            self.restore_points.len(),
            if self.restore_points.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.restore_points.join(", "))
            },
        )?;
        writeln!(
            f,
            "the folders are unchanged: once `verify` passes against the repository, they can go"
        )
    }
}

#[cfg(feature = "python")]
#[pyo3::pymethods]
impl ImportReport {
    fn __str__(&self) -> String {
        self.to_string()
    }
}

/// `bytes` in MiB, one decimal.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn backup(name: &str, hour: u32) -> Backup {
        let t = Utc.with_ymd_and_hms(2026, 11, 1, hour, 0, 0).unwrap();
        Backup {
            name: name.into(),
            cluster_name: "c".into(),
            start_time: t,
            end_time: t,
            citus_version: None,
            nodes: Vec::new(),
        }
    }

    fn point(name: &str) -> RestorePoint {
        RestorePoint {
            name: name.into(),
            time: Utc.with_ymd_and_hms(2026, 11, 1, 5, 0, 0).unwrap(),
            citus: false,
            nodes: Vec::new(),
        }
    }

    #[test]
    fn copies_what_the_repository_lacks_and_names_what_stays_out() {
        let plan = ImportPlan::build(ImportInputs {
            repository: "posix repository /r".into(),
            folder_backups: vec![backup("late", 3), backup("early", 1), backup("there", 2)],
            folder_points: vec![point("p1"), point("p2")],
            repository_backups: vec!["there".into()],
            repository_points: vec!["p2".into()],
            archives: vec![
                ArchiveFolder {
                    node: "coordinator".into(),
                    folder: "/a/coordinator".into(),
                    files: vec![
                        ("000000010000000000000003".into(), 16),
                        ("000000010000000000000002".into(), 16),
                        ("00000002.history".into(), 1),
                        ("notes.txt".into(), 5),
                    ],
                    unreadable: vec!["000000010000000000000009".into()],
                    in_repository: vec!["000000010000000000000002".into()],
                },
                ArchiveFolder {
                    node: "worker1".into(),
                    folder: "/a/worker1".into(),
                    files: vec![("000000010000000000000002".into(), 16)],
                    unreadable: Vec::new(),
                    in_repository: vec!["000000010000000000000002".into()],
                },
            ],
            stored_objects: vec![(
                "late".into(),
                vec!["backups/late/coordinator/base.tar.zst".into()],
            )],
        });
        assert_eq!(plan.wal.len(), 1, "worker1 has everything there: {plan}");
        assert_eq!(
            plan.wal[0].files,
            ["000000010000000000000003", "00000002.history"]
        );
        assert_eq!(plan.wal[0].bytes, 17);
        let names: Vec<&str> = plan
            .backups
            .iter()
            .map(|b| b.backup.name.as_str())
            .collect();
        assert_eq!(names, ["early", "late"], "oldest first, `there` skipped");
        assert_eq!(plan.backups[1].leftovers.len(), 1);
        assert_eq!(plan.restore_points.len(), 1);
        let text = plan.to_string();
        for expected in [
            "notes.txt is not a WAL file name",
            "000000010000000000000009 is not a regular file",
            "backup there is in the repository already",
            "restore point p2 is in the repository already",
            "backup late: remove 1 object(s) of an unfinished earlier copy",
            "restore point p1: record it",
        ] {
            assert!(text.contains(expected), "{expected:?} in:\n{text}");
        }
        assert!(!plan.is_empty());
        assert!(ImportPlan::build(ImportInputs::default()).is_empty());
    }
}
