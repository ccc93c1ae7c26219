//! [`WalReader`]: walks the records of consecutive WAL segment files the way PostgreSQL's
//! `xlogreader.c` does.
//!
//! Files are streamed ([`PageStream`]); only the current page and the bodies of records the
//! caller asks for are held in memory. Records are reassembled across page and segment
//! boundaries, their headers and prev-links checked, and their CRC verified when asked for.

use std::sync::Arc;

use super::error::WalError;
use super::lsn::{segment_start, Lsn, SegNo, TimeLineId};
use super::pages::{PageStream, SegmentProvider};
use super::record::{RecordHeader, RECORD_CRC_OFFSET, RECORD_HEADER_SIZE};
use super::segment::SegmentRef;

/// How the reader works.
#[derive(Debug, Clone)]
pub struct ReaderOptions {
    /// Verify the CRC of every record (records whose body is kept are always verified).
    pub verify_crc: bool,
    /// Which records' bodies to keep for [`WalReader::body`]; others are skipped.
    pub keep_body: fn(&RecordHeader) -> bool,
    /// The timelines pages may belong to (a history's timelines), or `None` for any timeline
    /// not above the file's.
    pub timelines: Option<Vec<TimeLineId>>,
    /// The expected system identifier, or `None` to take the first segment's.
    pub system_id: Option<u64>,
}

fn keep_nothing(_: &RecordHeader) -> bool {
    false
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            verify_crc: false,
            keep_body: keep_nothing,
            timelines: None,
            system_id: None,
        }
    }
}

/// One record, as returned by [`WalReader::next_record`].
#[derive(Debug, Clone)]
pub struct RecordInfo {
    /// Where the record starts.
    pub lsn: Lsn,
    /// Where the next record may start: the end of this one rounded up to 8 bytes (the start of
    /// the next segment after an `XLOG_SWITCH`). This is what `pg_create_restore_point` returns.
    pub end_lsn: Lsn,
    /// The record header.
    pub header: RecordHeader,
    /// The segment file the record starts in.
    pub segment: Arc<SegmentRef>,
    /// Offset of the record in that file.
    pub offset: u64,
    /// Whether its CRC was verified.
    pub crc_checked: bool,
}

/// Counters of the work done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReaderStats {
    /// Segment files opened.
    pub segments: u64,
    /// Pages read.
    pub pages: u64,
    /// Records returned.
    pub records: u64,
}

enum Dest {
    Header,
    Body,
}

enum Step {
    Done,
    Overwritten,
    Exhausted,
}

/// The record being read.
struct InProgress {
    lsn: Lsn,
    segment: Arc<SegmentRef>,
    offset: u64,
    tot_len: u32,
    consumed: u32,
    crc: u32,
    verify: bool,
    keep: bool,
    header: [u8; RECORD_HEADER_SIZE],
}

/// Reads the records of consecutive segments, starting with the first record that begins in a
/// given segment (a leading continuation of an earlier record is skipped, as
/// `XLogFindNextRecord` does).
///
/// After an error the reader is finished: further calls return `Ok(None)`.
pub struct WalReader<P> {
    stream: PageStream<P>,
    verify_crc: bool,
    keep_body: fn(&RecordHeader) -> bool,
    start_segno: SegNo,
    pos: usize,
    started: bool,
    finished: bool,
    after_switch: bool,
    prev: Option<Lsn>,
    body: Vec<u8>,
    incomplete: Option<Lsn>,
    records: u64,
}

impl<P: SegmentProvider> WalReader<P> {
    /// A reader starting in segment `start_segno`, which `provider` must supply. The segment and
    /// page sizes come from that segment's long page header.
    pub fn new(provider: P, start_segno: SegNo, options: ReaderOptions) -> WalReader<P> {
        WalReader {
            stream: PageStream::new(provider, options.timelines, options.system_id),
            verify_crc: options.verify_crc,
            keep_body: options.keep_body,
            start_segno,
            pos: 0,
            started: false,
            finished: false,
            after_switch: false,
            prev: None,
            body: Vec::new(),
            incomplete: None,
            records: 0,
        }
    }

    /// The next record, or `None` when the provider has no next segment (or after an error).
    pub fn next_record(&mut self) -> Result<Option<RecordInfo>, WalError> {
        self.next_record_before(Lsn(u64::MAX))
    }

    /// The next record if it starts before `limit`; `None` otherwise (without reading further,
    /// so a later call with a higher limit continues), or when the WAL runs out.
    pub fn next_record_before(&mut self, limit: Lsn) -> Result<Option<RecordInfo>, WalError> {
        if self.finished {
            return Ok(None);
        }
        let result = self.read_record(limit);
        if result.is_err() || self.incomplete.is_some() {
            self.finished = true;
        }
        result
    }

    /// The body (the record after its 24-byte header) of the last record returned, when its
    /// header matched [`ReaderOptions::keep_body`]; empty otherwise.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Where the reader stands: the start of the next record, or the page or segment boundary
    /// before it (0/0 before the first call).
    pub fn position(&self) -> Lsn {
        let seg_size = self.stream.seg_size();
        if !self.started {
            Lsn::INVALID
        } else if self.after_switch {
            segment_start(self.stream.page_lsn().segment(seg_size) + 1, seg_size)
        } else {
            self.stream.page_lsn() + self.pos as u64
        }
    }

    /// The start of a record that the last segment supplied ended in the middle of.
    pub fn incomplete_record(&self) -> Option<Lsn> {
        self.incomplete
    }

    /// Whether the reader has ended (no more segments, or an error).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The segment file being read.
    pub fn current_segment(&self) -> Option<&SegmentRef> {
        self.stream.segment().map(|s| s.as_ref())
    }

    /// The number of the segment being read: the last one asked of the provider (after an
    /// error, the segment the error is in).
    pub fn segment_number(&self) -> Option<SegNo> {
        self.stream.segno()
    }

    /// The segment provider.
    pub fn provider(&self) -> &P {
        self.stream.provider()
    }

    /// The WAL segment size (0 before the first segment is opened).
    pub fn segment_size(&self) -> u64 {
        self.stream.seg_size()
    }

    /// The system identifier of the segments read so far.
    pub fn system_id(&self) -> Option<u64> {
        self.stream.system_id()
    }

    /// Work done so far.
    pub fn stats(&self) -> ReaderStats {
        let (segments, pages) = self.stream.counts();
        ReaderStats {
            segments,
            pages,
            records: self.records,
        }
    }

    fn read_record(&mut self, limit: Lsn) -> Result<Option<RecordInfo>, WalError> {
        if !self.started {
            self.started = true;
            if !self.stream.open_segment(self.start_segno)? || !self.skip_continuation()? {
                self.finished = true;
                return Ok(None);
            }
        }
        loop {
            if self.position() >= limit {
                return Ok(None);
            }
            if self.after_switch || self.pos >= self.stream.page_size() {
                if !self.stream.next_page(self.after_switch)? {
                    self.finished = true;
                    return Ok(None);
                }
                self.after_switch = false;
                let header = self.stream.header();
                self.pos = header.size();
                if header.is_contrecord() {
                    return Err(self.stream.page_error(format!(
                        "the page continues a record ({} bytes left), but the previous record ended before it",
                        header.rem_len
                    )));
                }
            }
            let lsn = self.position();
            if lsn >= limit {
                return Ok(None);
            }
            let segment = Arc::clone(self.stream.segment().expect("segment open"));
            let offset = lsn.segment_offset(self.stream.seg_size());
            let page = self.stream.page();
            let tot_len = u32::from_le_bytes(page[self.pos..self.pos + 4].try_into().expect("4"));
            if tot_len == 0 {
                return Err(WalError::EndOfWal {
                    path: segment.path.clone(),
                    offset,
                    lsn,
                    needed: None,
                });
            }
            let bad = |problem: String| WalError::BadRecord {
                path: segment.path.clone(),
                offset,
                lsn,
                problem,
            };
            if (tot_len as usize) < RECORD_HEADER_SIZE {
                return Err(bad(format!(
                    "invalid record length {tot_len}, at least {RECORD_HEADER_SIZE} expected"
                )));
            }
            let mut rec = InProgress {
                lsn,
                segment: Arc::clone(&segment),
                offset,
                tot_len,
                consumed: 0,
                crc: 0,
                verify: false,
                keep: false,
                header: [0; RECORD_HEADER_SIZE],
            };
            match self.take(RECORD_HEADER_SIZE, &mut rec, Dest::Header)? {
                Step::Done => {}
                Step::Overwritten => continue,
                Step::Exhausted => return Ok(self.exhausted(lsn)),
            }
            let header = RecordHeader::parse(&rec.header);
            header.check(lsn, self.prev).map_err(bad)?;
            rec.keep = (self.keep_body)(&header);
            rec.verify = self.verify_crc || rec.keep;
            self.body.clear();
            match self.take(tot_len as usize - RECORD_HEADER_SIZE, &mut rec, Dest::Body)? {
                Step::Done => {}
                Step::Overwritten => continue,
                Step::Exhausted => return Ok(self.exhausted(lsn)),
            }
            if rec.verify {
                let computed = crc32c::crc32c_append(rec.crc, &rec.header[..RECORD_CRC_OFFSET]);
                if computed != header.crc {
                    return Err(WalError::CrcMismatch {
                        path: segment.path.clone(),
                        offset,
                        lsn,
                        len: tot_len,
                        stored: header.crc,
                        computed,
                    });
                }
            }
            // Records start on 8-byte boundaries (MAXALIGN); pages are multiples of 8.
            self.pos = (self.pos + 7) & !7;
            self.after_switch = header.is_switch();
            self.prev = Some(lsn);
            self.records += 1;
            return Ok(Some(RecordInfo {
                lsn,
                end_lsn: self.position(),
                header,
                segment,
                offset,
                crc_checked: rec.verify,
            }));
        }
    }

    fn exhausted(&mut self, lsn: Lsn) -> Option<RecordInfo> {
        self.incomplete = Some(lsn);
        None
    }

    /// Copies or skips `n` bytes of the record, crossing pages as needed.
    fn take(&mut self, mut n: usize, rec: &mut InProgress, dest: Dest) -> Result<Step, WalError> {
        while n > 0 {
            if self.pos >= self.stream.page_size() {
                if !self.stream.next_page(false)? {
                    return Ok(Step::Exhausted);
                }
                let header = self.stream.header();
                self.pos = header.size();
                if header.is_overwrite_contrecord() {
                    // PostgreSQL abandoned this record and wrote an XLOG_OVERWRITE_CONTRECORD
                    // record at this page instead; reading restarts here.
                    return Ok(Step::Overwritten);
                }
                let left = rec.tot_len - rec.consumed;
                let page_lsn = self.stream.page_lsn();
                let problem = if !header.is_contrecord() {
                    format!("it continues on page {page_lsn} ({left} bytes left), which has no contrecord flag")
                } else if header.rem_len != left {
                    format!(
                        "it continues on page {page_lsn} with {left} bytes left, but that page announces {}",
                        header.rem_len
                    )
                } else {
                    String::new()
                };
                if !problem.is_empty() {
                    return Err(WalError::BadRecord {
                        path: rec.segment.path.clone(),
                        offset: rec.offset,
                        lsn: rec.lsn,
                        problem,
                    });
                }
            }
            let avail = n.min(self.stream.page_size() - self.pos);
            let chunk = &self.stream.page()[self.pos..self.pos + avail];
            match dest {
                Dest::Header => {
                    let at = rec.consumed as usize;
                    rec.header[at..at + avail].copy_from_slice(chunk);
                }
                Dest::Body => {
                    if rec.verify {
                        rec.crc = crc32c::crc32c_append(rec.crc, chunk);
                    }
                    if rec.keep {
                        self.body.extend_from_slice(chunk);
                    }
                }
            }
            self.pos += avail;
            rec.consumed += avail as u32;
            n -= avail;
        }
        Ok(Step::Done)
    }

    /// Skips the continuation of a record from the previous segment at the start of the first
    /// segment (`XLogFindNextRecord`). Returns false when the WAL ends first.
    fn skip_continuation(&mut self) -> Result<bool, WalError> {
        loop {
            let header = self.stream.header();
            self.pos = header.size();
            if !header.is_contrecord() {
                return Ok(true);
            }
            let rem = (header.rem_len as usize + 7) & !7;
            if rem < self.stream.page_size() - header.size() {
                self.pos += rem;
                return Ok(true);
            }
            if !self.stream.next_page(false)? {
                self.pos = self.stream.page_size();
                return Ok(false);
            }
        }
    }
}
