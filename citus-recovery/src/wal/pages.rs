//! [`PageStream`]: the pages of consecutive segment files, read in order through a buffer,
//! each header checked against its position, timeline and the cluster's system identifier.

use std::io::{BufReader, Read};
use std::sync::Arc;

use super::error::WalError;
use super::lsn::{segment_start, Lsn, SegNo, TimeLineId, DEFAULT_SEGMENT_SIZE};
use super::page::{PageCheck, PageHeader, LONG_PAGE_HEADER_SIZE, XLOG_PAGE_MAGIC};
use super::segment::{open_regular, SegmentRef};

/// The bytes of one segment, as [`SegmentProvider::open`] hands them out.
pub struct SegmentData {
    /// The segment from its first byte.
    pub reader: Box<dyn Read + Send>,
    /// How many bytes there are (must be the segment size).
    pub size: u64,
}

impl SegmentData {
    /// The segment file at `path`, opened with [`open_regular`] (no link followed, regular
    /// files only).
    pub fn file(path: &std::path::Path) -> Result<SegmentData, WalError> {
        let (file, size) = open_regular(path)?;
        Ok(SegmentData {
            reader: Box::new(file),
            size,
        })
    }
}

/// Hands the reader the file of each segment it reaches.
pub trait SegmentProvider {
    /// The file of segment `segno`, or `None` when there is none: the reader then ends (an
    /// error instead makes the reader fail with it).
    fn segment(&mut self, segno: SegNo) -> Result<Option<SegmentRef>, WalError>;

    /// The bytes of a segment returned by [`SegmentProvider::segment`]. By default the file at
    /// its path, through [`SegmentData::file`]; a provider reading another container (a tar
    /// file) overrides it.
    fn open(&mut self, segment: &SegmentRef) -> Result<SegmentData, WalError> {
        SegmentData::file(&segment.path)
    }
}

impl<F: FnMut(SegNo) -> Result<Option<SegmentRef>, WalError>> SegmentProvider for F {
    fn segment(&mut self, segno: SegNo) -> Result<Option<SegmentRef>, WalError> {
        self(segno)
    }
}

/// An open segment: where it is, its bytes, its size.
type OpenSegment = (Arc<SegmentRef>, BufReader<Box<dyn Read + Send>>, u64);

/// Bytes read ahead from a segment file.
const READ_BUFFER: usize = 256 * 1024;

/// The current page of a walk through consecutive segments.
pub struct PageStream<P> {
    provider: P,
    timelines: Option<Vec<TimeLineId>>,
    system_id: Option<u64>,
    seg_size: u64,
    page_size: usize,
    file: Option<OpenSegment>,
    segno: Option<SegNo>,
    page: Vec<u8>,
    page_lsn: Lsn,
    header: Option<PageHeader>,
    last_tli: TimeLineId,
    segments: u64,
    pages: u64,
}

impl<P: SegmentProvider> PageStream<P> {
    /// A stream with no page yet. `timelines` restricts the page timelines allowed;
    /// `system_id` is the expected system identifier (else the first segment's).
    pub fn new(provider: P, timelines: Option<Vec<TimeLineId>>, system_id: Option<u64>) -> Self {
        PageStream {
            provider,
            timelines,
            system_id,
            seg_size: 0,
            page_size: 0,
            file: None,
            segno: None,
            page: Vec::new(),
            page_lsn: Lsn::INVALID,
            header: None,
            last_tli: 0,
            segments: 0,
            pages: 0,
        }
    }

    /// The current page, header included.
    pub fn page(&self) -> &[u8] {
        &self.page
    }

    /// The LSN of the current page.
    pub fn page_lsn(&self) -> Lsn {
        self.page_lsn
    }

    /// The header of the current page.
    pub fn header(&self) -> PageHeader {
        self.header.expect("a page is loaded")
    }

    /// The page size (0 before the first segment is opened).
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The segment size (0 before the first segment is opened).
    pub fn seg_size(&self) -> u64 {
        self.seg_size
    }

    /// The segment file of the current page.
    pub fn segment(&self) -> Option<&Arc<SegmentRef>> {
        self.file.as_ref().map(|f| &f.0)
    }

    /// The last segment number asked of the provider.
    pub fn segno(&self) -> Option<SegNo> {
        self.segno
    }

    /// The system identifier seen so far.
    pub fn system_id(&self) -> Option<u64> {
        self.system_id
    }

    /// The provider.
    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// Segments opened and pages read so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.segments, self.pages)
    }

    /// Loads the page after the current one, or the first page of the next segment when
    /// `next_segment` (after an `XLOG_SWITCH`). Returns false when the provider has no segment.
    pub fn next_page(&mut self, next_segment: bool) -> Result<bool, WalError> {
        let next = self.page_lsn + self.page_size as u64;
        if next_segment || next.segment_offset(self.seg_size) == 0 {
            return self.open_segment(self.page_lsn.segment(self.seg_size) + 1);
        }
        let (segment, file, size) = self.file.as_mut().expect("segment open");
        if let Err(e) = file.read_exact(&mut self.page) {
            return Err(read_error(segment, *size, self.seg_size, e));
        }
        self.page_lsn = next;
        self.check_page()?;
        Ok(true)
    }

    /// Opens segment `segno` and loads its first page. Returns false when there is none.
    pub fn open_segment(&mut self, segno: SegNo) -> Result<bool, WalError> {
        self.segno = Some(segno);
        let Some(segment) = self.provider.segment(segno)? else {
            return Ok(false);
        };
        let path = &segment.path;
        let SegmentData { reader, size } = self.provider.open(&segment)?;
        let mut file = BufReader::with_capacity(READ_BUFFER, reader);
        let mut first = [0u8; LONG_PAGE_HEADER_SIZE];
        if let Err(e) = file.read_exact(&mut first) {
            let expected = if self.seg_size > 0 {
                self.seg_size
            } else {
                DEFAULT_SEGMENT_SIZE
            };
            return Err(read_error(&segment, size, expected, e));
        }
        if self.seg_size == 0 {
            // The first segment gives the sizes; check_page holds every later one to them.
            let header = PageHeader::parse(&first).expect("40 bytes");
            let Some(long) = header.long.filter(|_| header.magic == XLOG_PAGE_MAGIC) else {
                return Err(WalError::BadPageMagic {
                    path: path.clone(),
                    offset: 0,
                    lsn: header.page_addr,
                    found: header.magic,
                });
            };
            long.check_sizes()
                .map_err(|problem| WalError::InvalidSegmentSize {
                    path: path.clone(),
                    problem,
                })?;
            self.seg_size = u64::from(long.seg_size);
            self.page_size = long.page_size as usize;
            self.page = vec![0; self.page_size];
        }
        if size != self.seg_size {
            return Err(WalError::WrongSegmentSize {
                path: path.clone(),
                size,
                expected: self.seg_size,
            });
        }
        self.page[..LONG_PAGE_HEADER_SIZE].copy_from_slice(&first);
        if let Err(e) = file.read_exact(&mut self.page[LONG_PAGE_HEADER_SIZE..]) {
            return Err(read_error(&segment, size, self.seg_size, e));
        }
        self.file = Some((Arc::new(segment), file, size));
        self.page_lsn = segment_start(segno, self.seg_size);
        self.segments += 1;
        self.check_page()?;
        Ok(true)
    }

    /// Checks the header of the page just loaded (`XLogReaderValidatePageHeader`).
    fn check_page(&mut self) -> Result<(), WalError> {
        self.pages += 1;
        let header = PageHeader::parse(&self.page).expect("a whole page");
        let segment = &self.file.as_ref().expect("segment open").0;
        let offset = self.page_lsn.segment_offset(self.seg_size);
        let allowed = |t: TimeLineId| self.timelines.as_ref().map_or(true, |ts| ts.contains(&t));
        let problem = match header.check(self.page_lsn, self.seg_size, self.page_size as u32) {
            Err(PageCheck::BadMagic(found)) => {
                return Err(WalError::BadPageMagic {
                    path: segment.path.clone(),
                    offset,
                    lsn: self.page_lsn,
                    found,
                })
            }
            Err(PageCheck::BadAddress(found)) => {
                return Err(WalError::BadPageAddress {
                    path: segment.path.clone(),
                    offset,
                    found,
                    expected: self.page_lsn,
                })
            }
            Err(PageCheck::Invalid(problem)) => Some(problem),
            Ok(()) if header.timeline > segment.timeline => Some(format!(
                "page of timeline {} in a file of timeline {}",
                header.timeline, segment.timeline
            )),
            Ok(()) if header.timeline < self.last_tli => Some(format!(
                "out-of-sequence timeline {} after {}",
                header.timeline, self.last_tli
            )),
            Ok(()) if !allowed(header.timeline) => Some(format!(
                "timeline {} is not in the timeline history",
                header.timeline
            )),
            Ok(()) => match (header.long, self.system_id) {
                (Some(long), Some(id)) if long.system_id != id => Some(format!(
                    "system identifier {} differs from {id}: WAL of another cluster",
                    long.system_id
                )),
                _ => None,
            },
        };
        if let Some(problem) = problem {
            return Err(self.page_error(problem));
        }
        if let Some(long) = header.long {
            self.system_id = Some(long.system_id);
        }
        self.last_tli = header.timeline;
        self.header = Some(header);
        Ok(())
    }

    /// An error about the current page.
    pub fn page_error(&self, problem: String) -> WalError {
        WalError::BadPageHeader {
            path: self.file.as_ref().expect("segment open").0.path.clone(),
            offset: self.page_lsn.segment_offset(self.seg_size),
            lsn: self.page_lsn,
            problem,
        }
    }
}

/// A read error: a short file (`size` bytes) is reported as such.
fn read_error(segment: &SegmentRef, size: u64, expected: u64, e: std::io::Error) -> WalError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        WalError::WrongSegmentSize {
            path: segment.path.clone(),
            size,
            expected,
        }
    } else {
        WalError::io(&segment.path, e)
    }
}
