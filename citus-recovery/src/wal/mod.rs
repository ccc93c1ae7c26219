//! A reader for archived PostgreSQL 15 WAL, in pure Rust.
//!
//! It reads the on-disk format directly (`xlog_internal.h`, `xlogrecord.h`, `xlogreader.c`):
//! page headers, record headers, records spanning pages and segments, record CRCs, and the
//! `RESTORE_POINT` record. It does not run `pg_waldump`.
//!
//! - [`lsn`]: [`Lsn`] and segment file names.
//! - [`page`], [`record`]: the page and record formats.
//! - [`pages`], [`reader`]: [`PageStream`] streams the pages of consecutive segments,
//!   [`WalReader`] walks their records.
//! - [`segment`], [`history`], [`backup_history`]: the files of an archive.
//! - [`source`]: [`WalSource`], where the files are read from: an archive folder
//!   ([`FolderSource`]) or a node's WAL in a repository ([`RepositorySource`]). Every archive
//!   function taking a folder has an `_in` twin taking a source.
//! - [`archive`]: [`find_restore_points`], [`scan_archive`] and [`check_continuity`] over one
//!   node's archive folder; [`find_restore_points_from`] and [`locate_restore_point`] read
//!   only part of it.
//! - [`proven`]: [`ProvenSegment`], WAL a pre-flight read and checked, kept for the restore's
//!   spool.
//! - [`backup_wal`]: [`check_backup_wal`] reads the segments inside a base backup's
//!   `pg_wal.tar` in place.
//!
//! `docs/wal-reader.md` describes what is checked and the limits.

pub mod archive;
pub mod backup_history;
pub mod backup_wal;
pub mod error;
pub mod history;
pub mod lsn;
pub mod page;
pub mod pages;
pub mod proven;
pub mod reader;
pub mod record;
pub mod segment;
pub mod source;
#[cfg(test)]
mod source_tests;
#[cfg(any(test, feature = "synthetic-wal"))]
#[doc(hidden)]
pub mod synthetic;
#[cfg(test)]
mod synthetic_tests;

pub use archive::{
    check_continuity, check_continuity_in, find_restore_points, find_restore_points_from,
    find_restore_points_from_in, find_restore_points_in, locate_restore_point,
    locate_restore_point_in, scan_archive, scan_archive_from, scan_archive_from_in,
    scan_archive_in, ArchiveScan, ContinuityOptions, ContinuityReport, HotStandbyParameters,
    RestorePointRecord, ScanOptions,
};
pub use backup_history::BackupHistory;
pub use backup_wal::{check_backup_wal, TarSegments};
pub use error::WalError;
pub use history::{TimelineHistory, TimelineSwitch};
pub use lsn::{
    is_valid_segment_size, parse_segment_file_name, prev_segment, segment_containing,
    segment_file_name, segment_size_or_default, segment_start, segno_file_name, Lsn, SegNo,
    TimeLineId, DEFAULT_PAGE_SIZE, DEFAULT_SEGMENT_SIZE,
};
pub use pages::{PageStream, SegmentData, SegmentProvider};
pub use proven::{FrameBudget, ProvenSegment, PROVEN_WAL_BUDGET};
pub use reader::{ReaderOptions, ReaderStats, RecordInfo, WalReader};
pub use record::{ParameterChange, RecordHeader, RestorePointData};
pub use segment::{ArchiveListing, SegmentRef};
pub use source::{node_source, FolderSource, RepositorySource, WalFileNames, WalSource};
