//! Backup history files (`<segment>.<offset>.backup`), which PostgreSQL archives at the end of
//! every base backup taken while archiving is on.
//!
//! ```text
//! START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
//! STOP WAL LOCATION: 0/2000100 (file 000000010000000000000002)
//! CHECKPOINT LOCATION: 0/2000060
//! BACKUP METHOD: streamed
//! BACKUP FROM: primary
//! START TIME: 2024-05-01 10:00:00 UTC
//! LABEL: pg_basebackup base backup
//! START TIMELINE: 1
//! STOP TIME: 2024-05-01 10:00:01 UTC
//! STOP TIMELINE: 1
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::WalError;
use super::lsn::{Lsn, TimeLineId};
use super::source::WalSource;

/// The parsed contents of a backup history file. Times are kept as PostgreSQL wrote them (in
/// the server's `log_timezone`, with a zone abbreviation that cannot always be resolved).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHistory {
    /// `START WAL LOCATION`: where recovery from the backup starts reading WAL.
    pub start_lsn: Lsn,
    /// `STOP WAL LOCATION`: how far recovery must replay for the backup to be consistent.
    pub stop_lsn: Lsn,
    /// `CHECKPOINT LOCATION`.
    pub checkpoint_lsn: Option<Lsn>,
    /// `START TIMELINE`.
    pub start_timeline: Option<TimeLineId>,
    /// `STOP TIMELINE`.
    pub stop_timeline: Option<TimeLineId>,
    /// `LABEL`.
    pub label: Option<String>,
    /// `START TIME`, verbatim.
    pub start_time: Option<String>,
    /// `STOP TIME`, verbatim.
    pub stop_time: Option<String>,
}

impl BackupHistory {
    /// Parses the text of a backup history file; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<BackupHistory, WalError> {
        let err = |problem: String| WalError::InvalidBackupHistory {
            path: path.to_path_buf(),
            problem,
        };
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .map(str::trim)
        };
        // "0/2000028 (file 000000010000000000000002)": the LSN is the first word.
        let lsn = |key: &str| -> Result<Option<Lsn>, WalError> {
            match field(key) {
                None => Ok(None),
                Some(v) => {
                    let word = v.split_whitespace().next().unwrap_or("");
                    word.parse()
                        .map(Some)
                        .map_err(|_| err(format!("{key}: {v:?} is not an LSN")))
                }
            }
        };
        let tli = |key: &str| -> Result<Option<TimeLineId>, WalError> {
            field(key)
                .map(|v| {
                    v.parse()
                        .map_err(|_| err(format!("{key}: {v:?} is not a timeline")))
                })
                .transpose()
        };
        Ok(BackupHistory {
            start_lsn: lsn("START WAL LOCATION")?
                .ok_or_else(|| err("no START WAL LOCATION".into()))?,
            stop_lsn: lsn("STOP WAL LOCATION")?
                .ok_or_else(|| err("no STOP WAL LOCATION".into()))?,
            checkpoint_lsn: lsn("CHECKPOINT LOCATION")?,
            start_timeline: tli("START TIMELINE")?,
            stop_timeline: tli("STOP TIMELINE")?,
            label: field("LABEL").map(str::to_string),
            start_time: field("START TIME").map(str::to_string),
            stop_time: field("STOP TIME").map(str::to_string),
        })
    }

    /// Reads and parses a backup history file.
    pub fn read_file(path: &Path) -> Result<BackupHistory, WalError> {
        let text = super::segment::read_text(path)?;
        BackupHistory::parse(&text, path)
    }

    /// Reads and parses the backup history file `name` of `source`.
    pub fn read_in(source: &dyn WalSource, name: &str) -> Result<BackupHistory, WalError> {
        let text = source.read_text(name)?;
        BackupHistory::parse(&text, &source.path_of(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_backup_history_file() {
        let text = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
                    STOP WAL LOCATION: 0/2000100 (file 000000010000000000000002)\n\
                    CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\n\
                    BACKUP FROM: primary\nSTART TIME: 2024-05-01 10:00:00 UTC\n\
                    LABEL: nightly: full\nSTART TIMELINE: 1\n\
                    STOP TIME: 2024-05-01 10:00:01 UTC\nSTOP TIMELINE: 1\n";
        let b = BackupHistory::parse(text, Path::new("b.backup")).unwrap();
        assert_eq!(b.start_lsn, Lsn(0x2000028));
        assert_eq!(b.stop_lsn, Lsn(0x2000100));
        assert_eq!(b.checkpoint_lsn, Some(Lsn(0x2000060)));
        assert_eq!((b.start_timeline, b.stop_timeline), (Some(1), Some(1)));
        assert_eq!(b.label.as_deref(), Some("nightly: full"));
        assert_eq!(b.start_time.as_deref(), Some("2024-05-01 10:00:00 UTC"));
        let e = BackupHistory::parse("STOP WAL LOCATION: 0/1\n", Path::new("b.backup"));
        assert!(e.unwrap_err().to_string().contains("START WAL LOCATION"));
        let e = BackupHistory::parse("START WAL LOCATION: x\n", Path::new("b.backup"));
        assert!(e.unwrap_err().to_string().contains("b.backup"));
    }
}
