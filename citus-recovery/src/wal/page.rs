//! WAL page headers (`XLogPageHeaderData` and `XLogLongPageHeaderData`, `xlog_internal.h`).
//!
//! Every WAL page (`XLOG_BLCKSZ`, 8 KiB by default) starts with a 24-byte header; the first
//! page of a segment has the 40-byte long header that also gives the system identifier and the
//! segment and page sizes. Integers are little-endian (the reader supports WAL written on
//! little-endian machines only, which is every platform PostgreSQL is built for in practice).

use std::fmt;

use super::lsn::{is_valid_segment_size, Lsn, TimeLineId};

/// `XLOG_PAGE_MAGIC` of PostgreSQL 15.
pub const XLOG_PAGE_MAGIC: u16 = 0xD110;
/// `xlp_info`: the page starts with the continuation of a record from the previous page.
pub const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
/// `xlp_info`: the page has the long header (first page of a segment).
pub const XLP_LONG_HEADER: u16 = 0x0002;
/// `xlp_info`: backup blocks on the page are optional (unused since PostgreSQL 9.5).
pub const XLP_BKP_REMOVABLE: u16 = 0x0004;
/// `xlp_info`: a record that was to continue on this page was abandoned and overwritten by an
/// `XLOG_OVERWRITE_CONTRECORD` record.
pub const XLP_FIRST_IS_OVERWRITE_CONTRECORD: u16 = 0x0008;
/// Every defined `xlp_info` bit.
pub const XLP_ALL_FLAGS: u16 = 0x000F;
/// `SizeOfXLogShortPHD`.
pub const SHORT_PAGE_HEADER_SIZE: usize = 24;
/// `SizeOfXLogLongPHD`.
pub const LONG_PAGE_HEADER_SIZE: usize = 40;

/// The extra fields of the long page header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongPageHeader {
    /// `xlp_sysid`: the database system identifier from `pg_control`.
    pub system_id: u64,
    /// `xlp_seg_size`: the WAL segment size.
    pub seg_size: u32,
    /// `xlp_xlog_blcksz`: the WAL page size.
    pub page_size: u32,
}

/// A parsed page header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    /// `xlp_magic`.
    pub magic: u16,
    /// `xlp_info` flag bits (`XLP_*`).
    pub info: u16,
    /// `xlp_tli`: timeline of the first record on the page.
    pub timeline: TimeLineId,
    /// `xlp_pageaddr`: the LSN of the page itself.
    pub page_addr: Lsn,
    /// `xlp_rem_len`: bytes of the record continued from the previous page still to come.
    pub rem_len: u32,
    /// The long header fields when `XLP_LONG_HEADER` is set.
    pub long: Option<LongPageHeader>,
}

/// Why a page header is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageCheck {
    /// `xlp_magic` is not [`XLOG_PAGE_MAGIC`].
    BadMagic(u16),
    /// `xlp_pageaddr` is not the page's own LSN.
    BadAddress(Lsn),
    /// Anything else, described.
    Invalid(String),
}

impl fmt::Display for PageCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageCheck::BadMagic(m) => write!(f, "bad magic {m:#06X}"),
            PageCheck::BadAddress(a) => write!(f, "unexpected page address {a}"),
            PageCheck::Invalid(s) => f.write_str(s),
        }
    }
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

impl PageHeader {
    /// Parses the header at the start of `bytes`, without judging it.
    ///
    /// Returns `None` when `bytes` is shorter than the header (24 bytes, or 40 when the
    /// `XLP_LONG_HEADER` bit is set).
    pub fn parse(bytes: &[u8]) -> Option<PageHeader> {
        if bytes.len() < SHORT_PAGE_HEADER_SIZE {
            return None;
        }
        let info = u16_at(bytes, 2);
        let long = if info & XLP_LONG_HEADER != 0 {
            if bytes.len() < LONG_PAGE_HEADER_SIZE {
                return None;
            }
            Some(LongPageHeader {
                system_id: u64_at(bytes, 24),
                seg_size: u32_at(bytes, 32),
                page_size: u32_at(bytes, 36),
            })
        } else {
            None
        };
        Some(PageHeader {
            magic: u16_at(bytes, 0),
            info,
            timeline: u32_at(bytes, 4),
            page_addr: Lsn(u64_at(bytes, 8)),
            rem_len: u32_at(bytes, 16),
            long,
        })
    }

    /// Size of this header: 40 bytes for the long header, 24 otherwise.
    pub fn size(&self) -> usize {
        if self.long.is_some() {
            LONG_PAGE_HEADER_SIZE
        } else {
            SHORT_PAGE_HEADER_SIZE
        }
    }

    /// Whether the page starts with the rest of a record from the previous page.
    pub fn is_contrecord(&self) -> bool {
        self.info & XLP_FIRST_IS_CONTRECORD != 0
    }

    /// Whether a record that was to continue here was abandoned and overwritten.
    pub fn is_overwrite_contrecord(&self) -> bool {
        self.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD != 0
    }

    /// Checks the header of the page at `expected` as PostgreSQL's
    /// `XLogReaderValidatePageHeader` does: magic, info bits, long header on (and only checked
    /// on) the first page of a segment with the given sizes, page address. Timelines and the
    /// system identifier are checked by the reader, which knows the previous pages.
    pub fn check(&self, expected: Lsn, seg_size: u64, page_size: u32) -> Result<(), PageCheck> {
        if self.magic != XLOG_PAGE_MAGIC {
            return Err(PageCheck::BadMagic(self.magic));
        }
        if self.info & !XLP_ALL_FLAGS != 0 {
            return Err(PageCheck::Invalid(format!(
                "invalid info bits {:#06X}",
                self.info
            )));
        }
        let first_in_segment = expected.segment_offset(seg_size) == 0;
        match self.long {
            Some(long) if first_in_segment => {
                if u64::from(long.seg_size) != seg_size {
                    return Err(PageCheck::Invalid(format!(
                        "segment size {} in the long header, expected {seg_size}",
                        long.seg_size
                    )));
                }
                if long.page_size != page_size {
                    return Err(PageCheck::Invalid(format!(
                        "page size {} in the long header, expected {page_size}",
                        long.page_size
                    )));
                }
            }
            Some(_) => {
                return Err(PageCheck::Invalid(
                    "long header on a page that does not start a segment".into(),
                ))
            }
            None if first_in_segment => {
                return Err(PageCheck::Invalid(
                    "first page of the segment lacks the long header".into(),
                ))
            }
            None => {}
        }
        if self.page_addr != expected {
            return Err(PageCheck::BadAddress(self.page_addr));
        }
        if self.timeline == 0 {
            return Err(PageCheck::Invalid("timeline 0".into()));
        }
        Ok(())
    }
}

impl LongPageHeader {
    /// Checks that the segment and page sizes are ones PostgreSQL allows.
    pub fn check_sizes(&self) -> Result<(), String> {
        if !is_valid_segment_size(u64::from(self.seg_size)) {
            return Err(format!(
                "invalid WAL segment size {} in the long page header (a power of two from 1 MiB to 1 GiB)",
                self.seg_size
            ));
        }
        if !self.page_size.is_power_of_two() || !(1024..=65536).contains(&self.page_size) {
            return Err(format!(
                "invalid WAL page size {} in the long page header",
                self.page_size
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a page header; `long` adds the long fields with 16 MiB segments and 8 KiB pages.
    pub(crate) fn header_bytes(info: u16, tli: u32, addr: u64, rem: u32, long: bool) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&XLOG_PAGE_MAGIC.to_le_bytes());
        let info = if long { info | XLP_LONG_HEADER } else { info };
        b.extend_from_slice(&info.to_le_bytes());
        b.extend_from_slice(&tli.to_le_bytes());
        b.extend_from_slice(&addr.to_le_bytes());
        b.extend_from_slice(&rem.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        if long {
            b.extend_from_slice(&0x1234_5678_9ABC_DEF0u64.to_le_bytes());
            b.extend_from_slice(&(16u32 << 20).to_le_bytes());
            b.extend_from_slice(&8192u32.to_le_bytes());
        }
        b
    }

    const SEG: u64 = 16 << 20;

    #[test]
    fn parses_short_and_long_headers() {
        let b = header_bytes(XLP_FIRST_IS_CONTRECORD, 3, 0x3002000, 77, false);
        let h = PageHeader::parse(&b).unwrap();
        assert_eq!(h.size(), 24);
        assert!(h.is_contrecord() && !h.is_overwrite_contrecord());
        assert_eq!(
            (h.timeline, h.page_addr, h.rem_len),
            (3, Lsn(0x3002000), 77)
        );
        assert_eq!(h.check(Lsn(0x3002000), SEG, 8192), Ok(()));

        let b = header_bytes(0, 1, 0x3000000, 0, true);
        let h = PageHeader::parse(&b).unwrap();
        assert_eq!(h.size(), 40);
        let long = h.long.unwrap();
        assert_eq!(long.system_id, 0x1234_5678_9ABC_DEF0);
        assert_eq!((long.seg_size, long.page_size), (16 << 20, 8192));
        assert_eq!(long.check_sizes(), Ok(()));
        assert_eq!(h.check(Lsn(0x3000000), SEG, 8192), Ok(()));
        assert!(PageHeader::parse(&b[..39]).is_none());
        assert!(PageHeader::parse(&b[..23]).is_none());
    }

    #[test]
    fn rejects_bad_headers() {
        let mut b = header_bytes(0, 1, 0x3002000, 0, false);
        let h = PageHeader::parse(&b).unwrap();
        assert_eq!(
            h.check(Lsn(0x3004000), SEG, 8192),
            Err(PageCheck::BadAddress(Lsn(0x3002000)))
        );
        b[0] = 0x00;
        let h = PageHeader::parse(&b).unwrap();
        assert_eq!(
            h.check(Lsn(0x3002000), SEG, 8192),
            Err(PageCheck::BadMagic(0xD100))
        );
        // Unknown info bits; missing or misplaced long header; sizes.
        let h = PageHeader::parse(&header_bytes(0x0010, 1, 0x3002000, 0, false)).unwrap();
        assert!(matches!(
            h.check(Lsn(0x3002000), SEG, 8192),
            Err(PageCheck::Invalid(_))
        ));
        let h = PageHeader::parse(&header_bytes(0, 1, 0x3000000, 0, false)).unwrap();
        assert!(matches!(
            h.check(Lsn(0x3000000), SEG, 8192),
            Err(PageCheck::Invalid(_))
        ));
        let h = PageHeader::parse(&header_bytes(0, 1, 0x3002000, 0, true)).unwrap();
        assert!(matches!(
            h.check(Lsn(0x3002000), SEG, 8192),
            Err(PageCheck::Invalid(_))
        ));
        let h = PageHeader::parse(&header_bytes(0, 1, 0x2000000, 0, true)).unwrap();
        assert!(matches!(
            h.check(Lsn(0x2000000), 32 << 20, 8192),
            Err(PageCheck::Invalid(_))
        ));
        assert!(matches!(
            h.check(Lsn(0x3000000), SEG, 4096),
            Err(PageCheck::Invalid(_))
        ));
        let bad = LongPageHeader {
            system_id: 1,
            seg_size: 3 << 20,
            page_size: 8192,
        };
        assert!(bad.check_sizes().is_err());
    }
}
