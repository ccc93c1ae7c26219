//! [`WalError`], the error type of the WAL reader.

use std::path::PathBuf;

use super::lsn::{Lsn, TimeLineId};

/// Everything the WAL reader can report.
///
/// Variants about a file carry its full path and the byte offset inside it (and, where there is
/// one, the LSN), so the message alone tells where to look.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// A file or folder could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },

    /// A file the reader was to read is a symbolic link, a folder or a special file; it is
    /// never followed or read.
    #[error("{} is {kind}, not a regular file: refusing to read it (the archive's owner could point it anywhere); replace it with the real file", path.display())]
    NotRegularFile {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        kind: String,
    },

    /// An entry of a tar file is not what a `pg_wal.tar` holds, or the tar cannot be read.
    #[error("{}: {problem}", tar.display())]
    BadTar {
        /// The tar file.
        tar: PathBuf,
        /// What is wrong (naming the entry).
        problem: String,
    },

    /// A segment needed to go from `from` to `to` is not in the archive.
    #[error("{file} is missing from {}: WAL is not continuous from {from} to {to}", dir.display())]
    MissingSegment {
        /// The archive folder.
        dir: PathBuf,
        /// The segment file name that should be there.
        file: String,
        /// Start of the checked range.
        from: Lsn,
        /// End of the checked range.
        to: Lsn,
    },

    /// A segment file does not have the segment size (usually: truncated by an interrupted copy).
    #[error("{} has {size} bytes, but WAL segments here have {expected}: the file is truncated or not a WAL segment", path.display())]
    WrongSegmentSize {
        /// The segment file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The segment size.
        expected: u64,
    },

    /// A page does not start with the PostgreSQL 15 WAL page magic.
    #[error("{} offset {offset} (page {lsn}): bad page magic {found:#06X}, expected {:#06X} (PostgreSQL 15 WAL)", path.display(), super::page::XLOG_PAGE_MAGIC)]
    BadPageMagic {
        /// The segment file.
        path: PathBuf,
        /// Offset of the page in the file.
        offset: u64,
        /// LSN of the page.
        lsn: Lsn,
        /// The magic found.
        found: u16,
    },

    /// A page header names another WAL position than where the page lies (a recycled or
    /// misplaced segment).
    #[error("{} offset {offset}: page address {found} in the page header, expected {expected}: the file holds other WAL than its name says", path.display())]
    BadPageAddress {
        /// The segment file.
        path: PathBuf,
        /// Offset of the page in the file.
        offset: u64,
        /// `xlp_pageaddr` as found.
        found: Lsn,
        /// The LSN of the page according to the file name and offset.
        expected: Lsn,
    },

    /// Some other page header field is wrong (info bits, long header, timeline, system id).
    #[error("{} offset {offset} (page {lsn}): invalid page header: {problem}", path.display())]
    BadPageHeader {
        /// The segment file.
        path: PathBuf,
        /// Offset of the page in the file.
        offset: u64,
        /// LSN of the page.
        lsn: Lsn,
        /// What is wrong.
        problem: String,
    },

    /// A record header, a continuation page or the record's block headers are invalid.
    #[error("{} offset {offset}: invalid record at {lsn}: {problem}", path.display())]
    BadRecord {
        /// The segment file where the record starts.
        path: PathBuf,
        /// Offset of the record in that file.
        offset: u64,
        /// LSN of the record.
        lsn: Lsn,
        /// What is wrong.
        problem: String,
    },

    /// The CRC stored in a record does not match its contents.
    #[error("{} offset {offset}: CRC mismatch in record at {lsn} ({len} bytes): stored {stored:08X}, computed {computed:08X}", path.display())]
    CrcMismatch {
        /// The segment file where the record starts.
        path: PathBuf,
        /// Offset of the record in that file.
        offset: u64,
        /// LSN of the record.
        lsn: Lsn,
        /// `xl_tot_len`.
        len: u32,
        /// `xl_crc`.
        stored: u32,
        /// CRC32C of the record as read.
        computed: u32,
    },

    /// Where a record should start there is none (zeroes): the WAL ends there.
    #[error("{} offset {offset}: WAL ends at {lsn} (no record there){}", path.display(), needed.map(|n| format!(" before reaching {n}")).unwrap_or_default())]
    EndOfWal {
        /// The segment file.
        path: PathBuf,
        /// Offset in the file.
        offset: u64,
        /// Where the next record should have started.
        lsn: Lsn,
        /// How far the WAL was needed, when checking a range.
        needed: Option<Lsn>,
    },

    /// Text that should be an LSN is not `X/X` in hex.
    #[error("invalid LSN {0:?}: expected two hex numbers separated by a slash, like 0/3000028")]
    InvalidLsn(String),

    /// A segment's long page header gives a segment or page size PostgreSQL does not allow.
    #[error("{}: {problem}", path.display())]
    InvalidSegmentSize {
        /// The segment file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },

    /// A timeline history file cannot be parsed.
    #[error("{} line {line}: invalid timeline history: {problem}", path.display())]
    InvalidHistory {
        /// The `.history` file.
        path: PathBuf,
        /// 1-based line number (0 for the file as a whole).
        line: usize,
        /// What is wrong.
        problem: String,
    },

    /// The history file of a timeline above 1 is not in the archive.
    #[error("{:08X}.history is missing from {}: cannot tell where timeline {timeline} branched off", timeline, dir.display())]
    MissingHistory {
        /// The archive folder.
        dir: PathBuf,
        /// The timeline.
        timeline: TimeLineId,
    },

    /// A backup history file (`.backup`) cannot be parsed.
    #[error("{}: invalid backup history file: {problem}", path.display())]
    InvalidBackupHistory {
        /// The `.backup` file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },

    /// A name given as a segment file name is not one.
    #[error("{0:?} is not a WAL segment file name (24 hex digits, like 000000010000000000000003)")]
    InvalidSegmentName(String),

    /// A repository holding the WAL could not be read, or lacks a file that was asked for.
    #[error("{location}: {problem}")]
    Repository {
        /// The repository and the node's WAL prefix (`posix /srv/repo/wal/worker1`).
        location: String,
        /// What went wrong (the repository's message, without secrets).
        problem: String,
    },

    /// An object of archived WAL in a repository fails its checksum or cannot be decoded: its
    /// data is never used.
    #[error("{repository}: object {key} is damaged: {problem}; the WAL file in it cannot be used (delete the object and push the file again from the node's pg_wal if it is still there, else take a new base backup)")]
    CorruptObject {
        /// The repository, as it describes itself.
        repository: String,
        /// The object's key (`wal/worker1/000000010000000000000003.zst`).
        key: String,
        /// What the codec found.
        problem: String,
    },

    /// A range of LSNs to check is empty or reversed.
    #[error("invalid WAL range: {from} is not before {to}")]
    InvalidRange {
        /// Start of the range.
        from: Lsn,
        /// End of the range.
        to: Lsn,
    },
}

impl WalError {
    /// Wraps an I/O error with the path it is about.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> WalError {
        WalError::Io {
            path: path.into(),
            source,
        }
    }
}
