//! What the rest of the crate asks of one node's WAL archive folder: its restore points, and
//! whether the WAL between two LSNs is all there and intact.

use std::ops::RangeInclusive;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::WalError;
use super::history::TimelineHistory;
use super::lsn::{parse_segment_file_name, segno_file_name, Lsn, SegNo, TimeLineId};
use super::pages::{SegmentData, SegmentProvider};
use super::reader::{ReaderOptions, ReaderStats, RecordInfo, WalReader};
use super::record::{
    decode_parameter_change, decode_restore_point, ParameterChange, RecordHeader, RestorePointData,
};
use super::segment::{read_long_header_in, ArchiveListing, SegmentRef};
use super::source::{FolderSource, WalSource};

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
    find_restore_points_in(&FolderSource::new(dir))
}

/// [`find_restore_points`] over any [`WalSource`].
pub fn find_restore_points_in(source: &dyn WalSource) -> Result<Vec<RestorePointRecord>, WalError> {
    let mut scan = scan_archive_in(source, &ScanOptions::default())?;
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
    scan_archive_in(&FolderSource::new(dir), options)
}

/// [`scan_archive`] over any [`WalSource`]; only a source that cannot be listed is an error.
pub fn scan_archive_in(
    source: &dyn WalSource,
    options: &ScanOptions,
) -> Result<ArchiveScan, WalError> {
    let listing = ArchiveListing::read_in(source, options.segment_size)?;
    Ok(scan_listing(source, &listing, options, None))
}

/// Every restore point at or after `start` in the archive folder `dir`, by LSN then timeline;
/// the first damage found is an error. See [`scan_archive_from`] for what is read.
pub fn find_restore_points_from(
    dir: &Path,
    timeline: TimeLineId,
    start: Lsn,
    options: &ScanOptions,
) -> Result<Vec<RestorePointRecord>, WalError> {
    find_restore_points_from_in(&FolderSource::new(dir), timeline, start, options)
}

/// [`find_restore_points_from`] over any [`WalSource`].
pub fn find_restore_points_from_in(
    source: &dyn WalSource,
    timeline: TimeLineId,
    start: Lsn,
    options: &ScanOptions,
) -> Result<Vec<RestorePointRecord>, WalError> {
    let mut scan = scan_archive_from_in(source, timeline, start, options)?;
    if !scan.problems.is_empty() {
        return Err(scan.problems.swap_remove(0));
    }
    Ok(scan.restore_points)
}

/// [`scan_archive`] from a backup on: reads only the segments of timeline `timeline` and of
/// the later timelines, from the one holding `start` on. Segments before it are never opened
/// (not even to learn the segment size: that is read from the newest segment with a valid
/// header, or given in `options`), so damage there does not matter, and the work does not grow
/// with the archive's age (only the folder listing does). Only restore
/// points starting at or after `start` are returned.
///
/// Later timelines are read whether or not they descend from `timeline`: each restore point
/// carries its timeline, and the caller decides with the timeline histories which are reachable
/// (as [`scan_archive`] leaves it to the caller). Gaps are reported from `start`'s segment on.
pub fn scan_archive_from(
    dir: &Path,
    timeline: TimeLineId,
    start: Lsn,
    options: &ScanOptions,
) -> Result<ArchiveScan, WalError> {
    scan_archive_from_in(&FolderSource::new(dir), timeline, start, options)
}

/// [`scan_archive_from`] over any [`WalSource`].
pub fn scan_archive_from_in(
    source: &dyn WalSource,
    timeline: TimeLineId,
    start: Lsn,
    options: &ScanOptions,
) -> Result<ArchiveScan, WalError> {
    let listing = ArchiveListing::read_in(source, options.segment_size)?;
    let mut scan = scan_listing(source, &listing, options, Some((timeline, start)));
    scan.restore_points.retain(|r| r.lsn >= start);
    Ok(scan)
}

/// The scan of [`scan_archive`], from `from` (timeline, LSN) on when given.
fn scan_listing(
    source: &dyn WalSource,
    listing: &ArchiveListing,
    options: &ScanOptions,
    from: Option<(TimeLineId, Lsn)>,
) -> ArchiveScan {
    let mut scan = ArchiveScan::default();
    let mut system_id = None;
    let first_segno = from.map_or(0, |(_, lsn)| lsn.segment(listing.seg_size));
    let first_tli = from.map_or(0, |(tli, _)| tli);
    for tli in listing.segment_timelines() {
        if tli < first_tli {
            continue;
        }
        let runs: Vec<RangeInclusive<SegNo>> = listing
            .runs(tli)
            .into_iter()
            .filter(|r| *r.end() >= first_segno)
            .map(|r| (*r.start()).max(first_segno)..=*r.end())
            .collect();
        for pair in runs.windows(2) {
            scan.gaps
                .push((tli, *pair[0].end() + 1..=*pair[1].start() - 1));
        }
        for run in runs {
            let last = *run.end();
            let mut start = *run.start();
            while start <= last {
                let names: Vec<String> = (start..=last)
                    .map(|segno| segno_file_name(tli, segno, listing.seg_size))
                    .collect();
                source.will_read(&names);
                let provider = SourceProvider {
                    source,
                    find: |segno: SegNo| {
                        Ok::<_, WalError>(listing.segment(tli, segno).filter(|_| segno <= last))
                    },
                };
                let reader_options = ReaderOptions {
                    verify_crc: options.verify_crc,
                    keep_body: is_restore_point,
                    system_id,
                    ..ReaderOptions::default()
                };
                let mut reader = WalReader::new(provider, start, reader_options);
                start = scan_run(&mut reader, listing, tli, last, &mut scan).max(start + 1);
                system_id = system_id.or(reader.system_id());
                let stats = reader.stats();
                scan.stats.segments += stats.segments;
                scan.stats.pages += stats.pages;
                scan.stats.records += stats.records;
            }
        }
    }
    scan.restore_points.sort_by_key(|r| (r.lsn, r.timeline));
    scan
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
                    Ok(rp) => {
                        let last =
                            listing.file_name(tli, rec.end_lsn.prev_segment(listing.seg_size));
                        scan.restore_points
                            .push(restore_point_record(rp, &rec, last));
                    }
                    Err(problem) => scan.problems.push(bad_record(&rec, problem)),
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
    /// The highest value of each hot-standby setting over the `XLOG_PARAMETER_CHANGE` records
    /// starting in `[from, to)`, or `None` when there is none. Recovery (with `hot_standby`)
    /// pauses at such a record when one of these is above the recovering server's own
    /// setting, so a restore must start with settings at least this high.
    pub parameter_max: Option<HotStandbyParameters>,
    /// Where the `XLOG_TBLSPC_CREATE` records starting in `[from, to)` are: replaying one
    /// creates a tablespace at the path it had on the live server.
    pub tablespace_creates: Vec<Lsn>,
    /// Work done (including the records before `from` in the first segment).
    pub stats: ReaderStats,
}

/// The settings that PostgreSQL 15 recovery requires to be at least as high as on the server
/// that wrote the WAL (`CheckRequiredParameterValues`): with `hot_standby` on, a replayed
/// `XLOG_PARAMETER_CHANGE` record above the recovering server's value pauses recovery there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotStandbyParameters {
    /// `max_connections`.
    pub max_connections: u32,
    /// `max_worker_processes`.
    pub max_worker_processes: u32,
    /// `max_wal_senders`.
    pub max_wal_senders: u32,
    /// `max_prepared_transactions`.
    pub max_prepared_xacts: u32,
    /// `max_locks_per_transaction`.
    pub max_locks_per_xact: u32,
}

impl HotStandbyParameters {
    /// Each field's maximum of `self` and `other`.
    pub fn max(&self, other: &HotStandbyParameters) -> HotStandbyParameters {
        HotStandbyParameters {
            max_connections: self.max_connections.max(other.max_connections),
            max_worker_processes: self.max_worker_processes.max(other.max_worker_processes),
            max_wal_senders: self.max_wal_senders.max(other.max_wal_senders),
            max_prepared_xacts: self.max_prepared_xacts.max(other.max_prepared_xacts),
            max_locks_per_xact: self.max_locks_per_xact.max(other.max_locks_per_xact),
        }
    }

    /// The values with the names of their settings in `postgresql.conf`.
    pub fn settings(&self) -> [(&'static str, u32); 5] {
        [
            ("max_connections", self.max_connections),
            ("max_worker_processes", self.max_worker_processes),
            ("max_wal_senders", self.max_wal_senders),
            ("max_prepared_transactions", self.max_prepared_xacts),
            ("max_locks_per_transaction", self.max_locks_per_xact),
        ]
    }
}

impl From<&ParameterChange> for HotStandbyParameters {
    fn from(p: &ParameterChange) -> HotStandbyParameters {
        let u = |v: i32| u32::try_from(v).unwrap_or(0);
        HotStandbyParameters {
            max_connections: u(p.max_connections),
            max_worker_processes: u(p.max_worker_processes),
            max_wal_senders: u(p.max_wal_senders),
            max_prepared_xacts: u(p.max_prepared_xacts),
            max_locks_per_xact: u(p.max_locks_per_xact),
        }
    }
}

/// What one pass over `[from, to)` found, wherever the segments come from.
pub(crate) struct RangeFindings {
    pub(crate) first_record: Option<Lsn>,
    pub(crate) end: Lsn,
    pub(crate) records: u64,
    pub(crate) parameter_max: Option<HotStandbyParameters>,
    pub(crate) tablespace_creates: Vec<Lsn>,
}

fn keep_parameter_change(h: &RecordHeader) -> bool {
    h.is_parameter_change()
}

/// The reader options of a range check: parameter change bodies kept (and so CRC-checked).
pub(crate) fn range_reader_options(
    verify_crc: bool,
    timelines: Option<Vec<TimeLineId>>,
) -> ReaderOptions {
    ReaderOptions {
        verify_crc,
        keep_body: keep_parameter_change,
        timelines,
        ..ReaderOptions::default()
    }
}

/// Reads every record from the reader's start up to `to` (see [`check_continuity`]) and
/// collects what a restore needs to know about `[from, to)`.
pub(crate) fn read_range<P: SegmentProvider>(
    reader: &mut WalReader<P>,
    from: Lsn,
    to: Lsn,
) -> Result<RangeFindings, WalError> {
    let mut f = RangeFindings {
        first_record: None,
        end: from,
        records: 0,
        parameter_max: None,
        tablespace_creates: Vec::new(),
    };
    loop {
        match reader.next_record_before(to) {
            Ok(Some(rec)) => {
                f.end = rec.end_lsn;
                if rec.lsn < from {
                    continue;
                }
                f.first_record.get_or_insert(rec.lsn);
                f.records += 1;
                if rec.header.is_parameter_change() {
                    let p = decode_parameter_change(reader.body()).map_err(|problem| {
                        WalError::BadRecord {
                            path: rec.segment.path.clone(),
                            offset: rec.offset,
                            lsn: rec.lsn,
                            problem,
                        }
                    })?;
                    let p = HotStandbyParameters::from(&p);
                    f.parameter_max = Some(f.parameter_max.map_or(p, |m| m.max(&p)));
                } else if rec.header.is_tablespace_create() {
                    f.tablespace_creates.push(rec.lsn);
                }
            }
            Ok(None) => return Ok(f),
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
}

/// Segments chosen by `find`, opened from `source`.
struct SourceProvider<'a, F> {
    source: &'a dyn WalSource,
    find: F,
}

impl<F: FnMut(SegNo) -> Result<Option<SegmentRef>, WalError>> SegmentProvider
    for SourceProvider<'_, F>
{
    fn segment(&mut self, segno: SegNo) -> Result<Option<SegmentRef>, WalError> {
        (self.find)(segno)
    }

    fn open(&mut self, segment: &SegmentRef) -> Result<SegmentData, WalError> {
        self.source.open(&segment.file_name())
    }
}

/// Hands out the segment of the right timeline, or fails naming the missing one.
struct HistoryProvider<'a> {
    source: &'a dyn WalSource,
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

    fn open(&mut self, segment: &SegmentRef) -> Result<SegmentData, WalError> {
        self.source.open(&segment.file_name())
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
    check_continuity_in(&FolderSource::new(dir), history, from, to, options)
}

/// [`check_continuity`] over any [`WalSource`].
pub fn check_continuity_in(
    source: &dyn WalSource,
    history: Option<&TimelineHistory>,
    from: Lsn,
    to: Lsn,
    options: &ContinuityOptions,
) -> Result<ContinuityReport, WalError> {
    if from >= to {
        return Err(WalError::InvalidRange { from, to });
    }
    let listing = ArchiveListing::read_in(source, options.segment_size)?;
    let loaded;
    let history = match history {
        Some(h) => h,
        None => {
            loaded = TimelineHistory::load_in(source, listing.latest_timeline().unwrap_or(1))?;
            &loaded
        }
    };
    let provider = HistoryProvider {
        source,
        listing: &listing,
        history,
        from,
        to,
        opened: Vec::new(),
    };
    let seg_size = listing.seg_size;
    let names = (from.segment(seg_size)..=to.prev_segment(seg_size))
        .map(|segno| provider.find(segno).map(|s| s.file_name()))
        .collect::<Result<Vec<String>, WalError>>()?;
    // Read in this order: a repository fetches the next few while one is parsed.
    source.will_read(&names);
    let reader_options = range_reader_options(
        options.verify_crc,
        Some(history.timelines().into_iter().map(|t| t.0).collect()),
    );
    let mut reader = WalReader::new(provider, from.segment(seg_size), reader_options);
    let found = read_range(&mut reader, from, to)?;
    Ok(ContinuityReport {
        timeline: history.timeline,
        first_record: found.first_record,
        end: found.end,
        records: found.records,
        parameter_max: found.parameter_max,
        tablespace_creates: found.tablespace_creates,
        stats: reader.stats(),
        segments: reader.provider().opened.clone(),
    })
}

/// Finds the restore point `name` near the end of the archive folder `dir`, reading as little
/// as possible: for recording a restore point's exact LSN right after creating it, without
/// scanning the archive.
///
/// `last_segment` is the file name of a segment archived after the restore point was
/// created (for instance the one `pg_walfile_name(pg_switch_wal())` names). That segment is
/// read first, then the ones before it, newest first, at most `max_back` of them; each is read
/// from its first record on, into the next one when its last record spans the boundary (a
/// record may start in one segment and end in the next). Each segment number is read on the
/// timeline that `last_segment`'s timeline history assigns to it.
///
/// Returns the last record of that name in the first (newest) segment holding one, or `None`
/// when none of these segments has one, or when a segment before `last_segment` is not
/// archived (reading stops there). Damage in the segments read is an error; zeroes where a
/// record should start in `last_segment` are its end.
pub fn locate_restore_point(
    dir: &Path,
    name: &str,
    last_segment: &str,
    max_back: usize,
) -> Result<Option<RestorePointRecord>, WalError> {
    locate_restore_point_in(&FolderSource::new(dir), name, last_segment, max_back)
}

/// [`locate_restore_point`] over any [`WalSource`].
pub fn locate_restore_point_in(
    source: &dyn WalSource,
    name: &str,
    last_segment: &str,
    max_back: usize,
) -> Result<Option<RestorePointRecord>, WalError> {
    if super::lsn::split_segment_file_name(last_segment).is_none() {
        return Err(WalError::InvalidSegmentName(last_segment.to_string()));
    }
    let seg_size = u64::from(read_long_header_in(source, last_segment)?.seg_size);
    let (tli, last) = parse_segment_file_name(last_segment, seg_size)
        .ok_or_else(|| WalError::InvalidSegmentName(last_segment.to_string()))?;
    let history = TimelineHistory::load_in(source, tli)?;
    let file_of = |segno: SegNo| {
        let timeline = history.timeline_for_segment(segno, seg_size);
        SegmentRef {
            timeline,
            segno,
            path: source.path_of(&segno_file_name(timeline, segno, seg_size)),
        }
    };
    let mut system_id = None;
    for back in 0..=max_back as u64 {
        let Some(segno) = last.checked_sub(back) else {
            break;
        };
        if !source.exists(&file_of(segno).file_name())? {
            return Ok(None);
        }
        let provider = SourceProvider {
            source,
            find: |n: SegNo| Ok::<_, WalError>((n <= last).then(|| file_of(n))),
        };
        let options = ReaderOptions {
            keep_body: is_restore_point,
            system_id,
            ..ReaderOptions::default()
        };
        let mut reader = WalReader::new(provider, segno, options);
        let mut found = None;
        loop {
            match reader.next_record() {
                Ok(Some(rec)) if rec.lsn.segment(seg_size) > segno => break,
                Ok(Some(rec)) if rec.header.is_restore_point() => {
                    let rp = decode_restore_point(reader.body())
                        .map_err(|problem| bad_record(&rec, problem))?;
                    if rp.name == name {
                        let end_tli = history
                            .timeline_for_segment(rec.end_lsn.prev_segment(seg_size), seg_size);
                        let last_name =
                            segno_file_name(end_tli, rec.end_lsn.prev_segment(seg_size), seg_size);
                        found = Some(restore_point_record(rp, &rec, last_name));
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(WalError::EndOfWal { .. }) if reader.segment_number() == Some(last) => break,
                Err(e) => return Err(e),
            }
        }
        if found.is_some() {
            return Ok(found);
        }
        system_id = system_id.or(reader.system_id());
    }
    Ok(None)
}

fn bad_record(rec: &RecordInfo, problem: String) -> WalError {
    WalError::BadRecord {
        path: rec.segment.path.clone(),
        offset: rec.offset,
        lsn: rec.lsn,
        problem,
    }
}

/// The [`RestorePointRecord`] of a decoded record; `last_segment` names the segment holding its
/// last byte.
fn restore_point_record(
    rp: RestorePointData,
    rec: &RecordInfo,
    last_segment: String,
) -> RestorePointRecord {
    RestorePointRecord {
        name: rp.name,
        lsn: rec.lsn,
        end_lsn: rec.end_lsn,
        time: rp.time,
        timeline: rec.segment.timeline,
        segment: rec.segment.file_name(),
        last_segment,
    }
}
