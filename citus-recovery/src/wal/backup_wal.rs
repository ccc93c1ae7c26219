//! The WAL segments inside a base backup's `pg_wal.tar` (`pg_basebackup -Ft -X stream`),
//! read in place: nothing is extracted to disk.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::archive::{range_reader_options, read_range, ContinuityReport};
use super::error::WalError;
use super::lsn::{parse_segment_file_name, split_segment_file_name, Lsn, SegNo, TimeLineId};
use super::page::LONG_PAGE_HEADER_SIZE;
use super::pages::{SegmentData, SegmentProvider};
use super::reader::WalReader;
use super::segment::{open_regular, parse_long_header, SegmentRef};

/// Where one segment's bytes are in the tar file.
#[derive(Debug, Clone, Copy)]
struct Member {
    offset: u64,
    size: u64,
}

/// The segment files of a tar file, indexed by their headers (the data is not read).
///
/// Only entries at the top of the tar whose name is a segment file name count; others
/// (`archive_status/`, `.partial` files) are skipped. A segment entry that is not a regular
/// file (a link) is refused. When a name appears twice, the later entry counts, as extraction
/// would leave it. In errors, a segment is named `<tar path>/<segment name>`.
#[derive(Debug)]
pub struct TarSegments {
    tar: PathBuf,
    file: Arc<File>,
    seg_size: u64,
    members: BTreeMap<(TimeLineId, SegNo), (String, Member)>,
}

impl TarSegments {
    /// Opens `tar` (no link followed, regular file only) and indexes its segment entries. The
    /// segment size comes from the long page header of the last segment in it.
    pub fn open(tar: &Path) -> Result<TarSegments, WalError> {
        let (file, _) = open_regular(tar)?;
        let bad = |problem: String| WalError::BadTar {
            tar: tar.to_path_buf(),
            problem,
        };
        let mut raw: Vec<(String, Member)> = Vec::new();
        {
            let mut archive = tar::Archive::new(&file);
            let entries = archive
                .entries_with_seek()
                .map_err(|e| bad(format!("not a readable tar file: {e}")))?;
            for entry in entries {
                let entry = entry.map_err(|e| bad(format!("not a readable tar file: {e}")))?;
                let path = entry
                    .path()
                    .map_err(|e| bad(format!("an entry has an unreadable name: {e}")))?;
                let name = path.to_string_lossy();
                let name = name.strip_prefix("./").unwrap_or(&name).to_string();
                if split_segment_file_name(&name).is_none() {
                    continue;
                }
                let kind = entry.header().entry_type();
                if !kind.is_file() {
                    return Err(bad(format!(
                        "entry {name} is a {kind:?} entry, not a regular file: this is not a pg_wal.tar written by pg_basebackup"
                    )));
                }
                raw.push((
                    name,
                    Member {
                        offset: entry.raw_file_position(),
                        size: entry.size(),
                    },
                ));
            }
        }
        let file = Arc::new(file);
        let seg_size = match raw.iter().max_by(|a, b| a.0.cmp(&b.0)) {
            Some((name, m)) => {
                let mut buf = [0u8; LONG_PAGE_HEADER_SIZE];
                let path = tar.join(name);
                if m.size < LONG_PAGE_HEADER_SIZE as u64 {
                    return Err(WalError::WrongSegmentSize {
                        path,
                        size: m.size,
                        expected: super::lsn::DEFAULT_SEGMENT_SIZE,
                    });
                }
                file.read_exact_at(&mut buf, m.offset)
                    .map_err(|e| WalError::io(&path, e))?;
                u64::from(parse_long_header(&buf, &path)?.seg_size)
            }
            None => super::lsn::DEFAULT_SEGMENT_SIZE,
        };
        let mut members = BTreeMap::new();
        for (name, m) in raw {
            if let Some(key) = parse_segment_file_name(&name, seg_size) {
                members.insert(key, (name, m));
            }
        }
        Ok(TarSegments {
            tar: tar.to_path_buf(),
            file,
            seg_size,
            members,
        })
    }

    /// The WAL segment size.
    pub fn seg_size(&self) -> u64 {
        self.seg_size
    }

    /// The segments in the tar, as (timeline, segment number), ascending.
    pub fn segments(&self) -> Vec<(TimeLineId, SegNo)> {
        self.members.keys().copied().collect()
    }

    fn segment_ref(&self, timeline: TimeLineId, segno: SegNo) -> Option<SegmentRef> {
        self.members
            .get(&(timeline, segno))
            .map(|(name, _)| SegmentRef {
                timeline,
                segno,
                path: self.tar.join(name),
            })
    }
}

/// Reads one member with positioned reads, so no file offset is shared.
struct MemberReader {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for MemberReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = (self.end - self.pos).min(buf.len() as u64) as usize;
        if left == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..left], self.pos)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Hands out the segments of one timeline from the tar, or fails naming the missing one.
struct TarProvider<'a> {
    segments: &'a TarSegments,
    timeline: TimeLineId,
    from: Lsn,
    to: Lsn,
    opened: Vec<String>,
}

impl TarProvider<'_> {
    fn find(&self, segno: SegNo) -> Result<SegmentRef, WalError> {
        let s = self.segments;
        s.segment_ref(self.timeline, segno)
            .ok_or_else(|| WalError::MissingSegment {
                dir: s.tar.clone(),
                file: super::lsn::segno_file_name(self.timeline, segno, s.seg_size),
                from: self.from,
                to: self.to,
            })
    }
}

impl SegmentProvider for TarProvider<'_> {
    fn segment(&mut self, segno: SegNo) -> Result<Option<SegmentRef>, WalError> {
        let seg = self.find(segno)?;
        self.opened.push(seg.file_name());
        Ok(Some(seg))
    }

    fn open(&mut self, segment: &SegmentRef) -> Result<SegmentData, WalError> {
        let (_, m) = &self.segments.members[&(segment.timeline, segment.segno)];
        Ok(SegmentData {
            reader: Box::new(MemberReader {
                file: Arc::clone(&self.segments.file),
                pos: m.offset,
                end: m.offset + m.size,
            }),
            size: m.size,
        })
    }
}

/// Checks the WAL a base backup carries in its `pg_wal.tar` (`pg_basebackup -Ft -X stream`):
/// the segments of `timeline` from the one holding `start` (the backup's start LSN) to the one
/// holding the byte before `end` (its end LSN) must all be in the tar, each one segment long,
/// and every record from `start` up to `end` whole, chained and with a correct CRC, as
/// [`super::check_continuity`] checks an archive. The segments are read in place from the tar
/// (opened with `O_NOFOLLOW`); nothing is extracted.
///
/// The report's `segments` are the segment names read; `parameter_max` and
/// `tablespace_creates` cover `[start, end)`. Errors name the segment as
/// `<tar path>/<segment name>`, the offset in it and the LSN; a missing segment is
/// [`WalError::MissingSegment`] with the tar as the folder.
pub fn check_backup_wal(
    tar: &Path,
    timeline: TimeLineId,
    start: Lsn,
    end: Lsn,
) -> Result<ContinuityReport, WalError> {
    if start >= end {
        return Err(WalError::InvalidRange {
            from: start,
            to: end,
        });
    }
    let segments = TarSegments::open(tar)?;
    let seg_size = segments.seg_size;
    let provider = TarProvider {
        segments: &segments,
        timeline,
        from: start,
        to: end,
        opened: Vec::new(),
    };
    for segno in start.segment(seg_size)..=end.prev_segment(seg_size) {
        provider.find(segno)?;
    }
    let mut reader = WalReader::new(
        provider,
        start.segment(seg_size),
        range_reader_options(true, None),
    );
    let found = read_range(&mut reader, start, end)?;
    Ok(ContinuityReport {
        timeline,
        first_record: found.first_record,
        end: found.end,
        records: found.records,
        parameter_max: found.parameter_max,
        tablespace_creates: found.tablespace_creates,
        stats: reader.stats(),
        segments: reader.provider().opened.clone(),
    })
}
