//! What the rest of the crate asks of one node's WAL archive folder: its restore points, and
//! whether the WAL between two LSNs is all there and intact.

use std::ops::RangeInclusive;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::WalError;
use super::history::TimelineHistory;
use super::lsn::{segno_file_name, Lsn, SegNo, TimeLineId};
use super::pages::SegmentProvider;
use super::reader::{ReaderOptions, ReaderStats, WalReader};
use super::record::{decode_restore_point, RecordHeader};
use super::segment::{ArchiveListing, SegmentRef};

/// A `RESTORE_POINT` record found in an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePointRecord {
    /// The name given to `pg_create_restore_point` (lossily decoded as UTF-8).
    pub name: String,
    /// Where the record starts (what `pg_waldump` shows as `lsn:`).
    pub lsn: Lsn,
    /// Where it ends, rounded up to 8 bytes: what `pg_create_restore_point` returned, and how far
    /// recovery must replay to reach the point.
    pub end_lsn: Lsn,
    /// When it was created (`rp_time`).
    pub time: DateTime<Utc>,
    /// The timeline in the name of the segment file it was read from.
    pub timeline: TimeLineId,
    /// The segment file the record starts in.
    pub segment: String,
    /// The segment file holding its last byte: the last segment recovery needs to reach it.
    pub last_segment: String,
}

/// Options of [`scan_archive`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanOptions {
    /// Verify the CRC of every record, not only of the restore point records (which always are).
    pub verify_crc: bool,
    /// The segment size, when known; otherwise read from the first segment.
    pub segment_size: Option<u64>,
}

/// What [`scan_archive`] found.
#[derive(Debug, Default)]
pub struct ArchiveScan {
    /// Restore points, by LSN then timeline.
    pub restore_points: Vec<RestorePointRecord>,
    /// Damage found; the scan went on with the next segment after each.
    pub problems: Vec<WalError>,
    /// Missing segments between archived ones of the same timeline, as (timeline, range).
    pub gaps: Vec<(TimeLineId, RangeInclusive<SegNo>)>,
    /// Work done.
    pub stats: ReaderStats,
}

fn is_restore_point(h: &RecordHeader) -> bool {
    h.is_restore_point()
}

/// Every restore point in the archive folder `dir`, by LSN then timeline; the first damage
/// found is an error. See [`scan_archive`] for what is read.
pub fn find_restore_points(dir: &Path) -> Result<Vec<RestorePointRecord>, WalError> {
    let mut scan = scan_archive(dir, &ScanOptions::default())?;
    if !scan.problems.is_empty() {
        return Err(scan.problems.swap_remove(0));
    }
    Ok(scan.restore_points)
}

/// Reads every complete segment of the archive folder `dir` (`.partial` files are skipped, as
/// recovery skips them) and collects the restore points.
///
/// Each timeline is read separately, each run of consecutive segments from its first record on.
/// A restore point made before a timeline switch, in the segment where the switch happened, is
/// in both timelines' copies of that segment and is reported once for each. Damage is recorded
/// in [`ArchiveScan::problems`] and reading goes on with the next segment; zeroes where a record
/// should start are the normal end of the WAL when in the last segment of a run. Only a folder
/// that cannot be listed is an error.
pub fn scan_archive(dir: &Path, options: &ScanOptions) -> Result<ArchiveScan, WalError> {
    let listing = ArchiveListing::read(dir, options.segment_size)?;
    let mut scan = ArchiveScan::default();
    let mut system_id = None;
    for tli in listing.segment_timelines() {
        let runs = listing.runs(tli);
        for pair in runs.windows(2) {
            scan.gaps
                .push((tli, *pair[0].end() + 1..=*pair[1].start() - 1));
        }
        for run in runs {
            let last = *run.end();
            let mut start = *run.start();
            while start <= last {
                let provider = |segno: SegNo| {
                    Ok::<_, WalError>(listing.segment(tli, segno).filter(|_| segno <= last))
                };
                let reader_options = ReaderOptions {
                    verify_crc: options.verify_crc,
                    keep_body: is_restore_point,
                    system_id,
                    ..ReaderOptions::default()
                };
                let mut reader = WalReader::new(provider, start, reader_options);
                start = scan_run(&mut reader, &listing, tli, last, &mut scan).max(start + 1);
                system_id = system_id.or(reader.system_id());
                let stats = reader.stats();
                scan.stats.segments += stats.segments;
                scan.stats.pages += stats.pages;
                scan.stats.records += stats.records;
            }
        }
    }
    scan.restore_points.sort_by_key(|r| (r.lsn, r.timeline));
    Ok(scan)
}

/// Reads until the reader ends; returns the segment to go on with.
fn scan_run<P: SegmentProvider>(
    reader: &mut WalReader<P>,
    listing: &ArchiveListing,
    tli: TimeLineId,
    last: SegNo,
    scan: &mut ArchiveScan,
) -> SegNo {
    loop {
        match reader.next_record() {
            Ok(Some(rec)) if rec.header.is_restore_point() => {
                match decode_restore_point(reader.body()) {
                    Ok(rp) => scan.restore_points.push(RestorePointRecord {
                        name: rp.name,
                        lsn: rec.lsn,
                        end_lsn: rec.end_lsn,
                        time: rp.time,
                        timeline: tli,
                        segment: rec.segment.file_name(),
                        last_segment: listing
                            .file_name(tli, rec.end_lsn.prev_segment(listing.seg_size)),
                    }),
                    Err(problem) => scan.problems.push(WalError::BadRecord {
                        path: rec.segment.path.clone(),
                        offset: rec.offset,
                        lsn: rec.lsn,
                        problem,
                    }),
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => return last + 1,
            Err(e) => {
                let at = reader.segment_number().unwrap_or(last);
                if !(matches!(e, WalError::EndOfWal { .. }) && at == last) {
                    scan.problems.push(e);
                }
                return at + 1;
            }
        }
    }
}

/// Options of [`check_continuity`].
#[derive(Debug, Clone, Copy)]
pub struct ContinuityOptions {
    /// Verify the CRC of every record (default: true).
    pub verify_crc: bool,
    /// The segment size, when known; otherwise read from the first segment.
    pub segment_size: Option<u64>,
}

impl Default for ContinuityOptions {
    fn default() -> Self {
        ContinuityOptions {
            verify_crc: true,
            segment_size: None,
        }
    }
}

/// What [`check_continuity`] read.
#[derive(Debug, Clone)]
pub struct ContinuityReport {
    /// The timeline the history leads to.
    pub timeline: TimeLineId,
    /// The segment files read, in order (timelines chosen by the history).
    pub segments: Vec<String>,
    /// The first record starting at or after `from`, if any starts before `to`.
    pub first_record: Option<Lsn>,
    /// The end of the last record read (at or after `to` when a record ends exactly at or
    /// spans `to`).
    pub end: Lsn,
    /// Records starting in `[from, to)`.
    pub records: u64,
    /// Work done (including the records before `from` in the first segment).
    pub stats: ReaderStats,
}

/// Hands out the segment of the right timeline, or fails naming the missing one.
struct HistoryProvider<'a> {
    listing: &'a ArchiveListing,
    history: &'a TimelineHistory,
    from: Lsn,
    to: Lsn,
    opened: Vec<String>,
}

impl HistoryProvider<'_> {
    fn find(&self, segno: SegNo) -> Result<SegmentRef, WalError> {
        let tli = self
            .history
            .timeline_for_segment(segno, self.listing.seg_size);
        self.listing
            .segment(tli, segno)
            .ok_or_else(|| WalError::MissingSegment {
                dir: self.listing.dir.clone(),
                file: segno_file_name(tli, segno, self.listing.seg_size),
                from: self.from,
                to: self.to,
            })
    }
}

impl SegmentProvider for HistoryProvider<'_> {
    fn segment(&mut self, segno: SegNo) -> Result<Option<SegmentRef>, WalError> {
        let seg = self.find(segno)?;
        self.opened.push(seg.file_name());
        Ok(Some(seg))
    }
}

/// Checks that the archive folder `dir` holds intact WAL from `from` up to `to`.
///
/// The WAL is continuous when every segment from the one holding `from` to the one holding
/// the byte before `to` is archived, complete (segment-sized), with valid page headers
/// (magic, page address, timeline, system identifier), and every record that starts in those
/// segments before `to` is whole (read into the next segment when it spans it), chained to
/// the previous one by `xl_prev`, and has a correct CRC (when `verify_crc`). Pass a restore
/// point's `end_lsn` as `to` to include the restore point record itself. The first segment is
/// read from its first record on; a continuation of a record from an earlier segment is only
/// skipped.
///
/// Each segment is read from the timeline that `history` assigns to it
/// ([`TimelineHistory::timeline_for_segment`]: the newest timeline that began in or before the
/// segment), with no fallback to another timeline's copy. Without `history`, the latest
/// timeline in the archive is used with its `.history` file.
///
/// The first problem is the error: [`WalError::MissingSegment`] for the first missing segment
/// (all are checked before any is read), else the first damage in WAL order.
pub fn check_continuity(
    dir: &Path,
    history: Option<&TimelineHistory>,
    from: Lsn,
    to: Lsn,
    options: &ContinuityOptions,
) -> Result<ContinuityReport, WalError> {
    if from >= to {
        return Err(WalError::InvalidRange { from, to });
    }
    let listing = ArchiveListing::read(dir, options.segment_size)?;
    let loaded;
    let history = match history {
        Some(h) => h,
        None => {
            loaded = TimelineHistory::load(dir, listing.latest_timeline().unwrap_or(1))?;
            &loaded
        }
    };
    let provider = HistoryProvider {
        listing: &listing,
        history,
        from,
        to,
        opened: Vec::new(),
    };
    let seg_size = listing.seg_size;
    for segno in from.segment(seg_size)..=to.prev_segment(seg_size) {
        provider.find(segno)?;
    }
    let reader_options = ReaderOptions {
        verify_crc: options.verify_crc,
        timelines: Some(history.timelines().into_iter().map(|t| t.0).collect()),
        ..ReaderOptions::default()
    };
    let mut reader = WalReader::new(provider, from.segment(seg_size), reader_options);
    let (mut first_record, mut end, mut records) = (None, from, 0);
    loop {
        match reader.next_record_before(to) {
            Ok(Some(rec)) => {
                end = rec.end_lsn;
                if rec.lsn >= from {
                    first_record.get_or_insert(rec.lsn);
                    records += 1;
                }
            }
            Ok(None) => break,
            Err(WalError::EndOfWal {
                path, offset, lsn, ..
            }) => {
                return Err(WalError::EndOfWal {
                    path,
                    offset,
                    lsn,
                    needed: Some(to),
                })
            }
            Err(e) => return Err(e),
        }
    }
    Ok(ContinuityReport {
        timeline: history.timeline,
        first_record,
        end,
        records,
        stats: reader.stats(),
        segments: reader.provider().opened.clone(),
    })
}
