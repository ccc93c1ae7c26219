//! WAL positions ([`Lsn`]) and WAL segment file names.
//!
//! PostgreSQL numbers WAL segments from the start of the WAL (`XLogSegNo`); a segment file is named
//! `TTTTTTTTXXXXXXXXYYYYYYYY`: the timeline, then the segment number split into a "log id" and a
//! segment within that log id (`XLogFileName` in `xlog_internal.h`), all upper-case hex.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::WalError;

/// A timeline ID (`TimeLineID`).
pub type TimeLineId = u32;

/// A WAL segment number (`XLogSegNo`): the LSN divided by the segment size.
pub type SegNo = u64;

/// The default WAL segment size, 16 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

/// The default WAL page size (`XLOG_BLCKSZ`), 8 KiB.
pub const DEFAULT_PAGE_SIZE: u32 = 8192;

/// Length of a segment file name (`XLOG_FNAME_LEN`).
pub const SEGMENT_FILE_NAME_LEN: usize = 24;

/// A position in the WAL (`XLogRecPtr`), written `X/X` in hex like PostgreSQL does (`0/3000028`).
///
/// Serialized as that string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `InvalidXLogRecPtr`, 0/0.
    pub const INVALID: Lsn = Lsn(0);

    /// Whether this is not 0/0.
    pub fn is_valid(self) -> bool {
        self.0 != 0
    }

    /// The segment holding the byte at this LSN (`XLByteToSeg`).
    pub fn segment(self, seg_size: u64) -> SegNo {
        self.0 / seg_size
    }

    /// The segment holding the byte just before this LSN (`XLByteToPrevSeg`): for an end
    /// position, the last segment that is needed to read up to it.
    pub fn prev_segment(self, seg_size: u64) -> SegNo {
        self.0.saturating_sub(1) / seg_size
    }

    /// Offset of this LSN inside its segment (`XLogSegmentOffset`).
    pub fn segment_offset(self, seg_size: u64) -> u64 {
        self.0 % seg_size
    }
}

impl std::ops::Add<u64> for Lsn {
    type Output = Lsn;

    /// The LSN `n` bytes further.
    fn add(self, n: u64) -> Lsn {
        Lsn(self.0 + n)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = WalError;

    /// Parses `X/X` (one to eight hex digits on each side, any case), as `pg_lsn` does.
    fn from_str(s: &str) -> Result<Lsn, WalError> {
        let bad = || WalError::InvalidLsn(s.to_string());
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        let part = |p: &str| {
            if p.is_empty() || p.len() > 8 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u32::from_str_radix(p, 16).map_err(|_| bad())
        };
        Ok(Lsn((u64::from(part(hi)?) << 32) | u64::from(part(lo)?)))
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Lsn, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether `seg_size` is a segment size PostgreSQL accepts: a power of two from 1 MiB to 1 GiB.
pub fn is_valid_segment_size(seg_size: u64) -> bool {
    seg_size.is_power_of_two() && (1 << 20..=1 << 30).contains(&seg_size)
}

/// `seg_size` when it is a segment size PostgreSQL accepts, else its default
/// ([`DEFAULT_SEGMENT_SIZE`]): for a size recorded or measured that may be missing or odd.
pub fn segment_size_or_default(seg_size: Option<u64>) -> u64 {
    seg_size
        .filter(|s| is_valid_segment_size(*s))
        .unwrap_or(DEFAULT_SEGMENT_SIZE)
}

/// Segments per "log id", the middle eight hex digits of a file name (`XLogSegmentsPerXLogId`).
fn segments_per_xlog_id(seg_size: u64) -> u64 {
    0x1_0000_0000 / seg_size
}

/// The first LSN of segment `segno` (`XLogSegNoOffsetToRecPtr` with offset 0).
pub fn segment_start(segno: SegNo, seg_size: u64) -> Lsn {
    Lsn(segno * seg_size)
}

/// The segment holding `lsn` (`XLByteToSeg`); same as [`Lsn::segment`].
pub fn segment_containing(lsn: Lsn, seg_size: u64) -> SegNo {
    lsn.segment(seg_size)
}

/// The segment holding the byte before `lsn` (`XLByteToPrevSeg`); same as [`Lsn::prev_segment`].
pub fn prev_segment(lsn: Lsn, seg_size: u64) -> SegNo {
    lsn.prev_segment(seg_size)
}

/// File name of segment `segno` on `timeline` (`XLogFileName`), e.g. `000000010000000000000003`.
///
/// `seg_size` must satisfy [`is_valid_segment_size`].
pub fn segno_file_name(timeline: TimeLineId, segno: SegNo, seg_size: u64) -> String {
    let per_id = segments_per_xlog_id(seg_size);
    format!(
        "{:08X}{:08X}{:08X}",
        timeline,
        segno / per_id,
        segno % per_id
    )
}

/// File name of the segment on `timeline` holding `lsn`, e.g. `segment_file_name(1, 0/3000028,
/// 16 MiB)` is `000000010000000000000003`.
///
/// `seg_size` must satisfy [`is_valid_segment_size`].
pub fn segment_file_name(timeline: TimeLineId, lsn: Lsn, seg_size: u64) -> String {
    segno_file_name(timeline, lsn.segment(seg_size), seg_size)
}

/// The three hex fields of a segment file name: timeline, log id and segment within the log id,
/// or `None` when `name` is not 24 hex digits (`IsXLogFileName`).
pub fn split_segment_file_name(name: &str) -> Option<(TimeLineId, u32, u32)> {
    if name.len() != SEGMENT_FILE_NAME_LEN || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let field = |i: usize| u32::from_str_radix(&name[i..i + 8], 16).ok();
    Some((field(0)?, field(8)?, field(16)?))
}

/// Parses a segment file name into `(timeline, segment number)` (`XLogFromFileName`).
///
/// Returns `None` when `name` is not a segment file name, when the timeline is 0, or when the
/// segment field is out of range for `seg_size` (which must satisfy [`is_valid_segment_size`]).
pub fn parse_segment_file_name(name: &str, seg_size: u64) -> Option<(TimeLineId, SegNo)> {
    let (tli, log, seg) = split_segment_file_name(name)?;
    let per_id = segments_per_xlog_id(seg_size);
    if tli == 0 || u64::from(seg) >= per_id {
        return None;
    }
    Some((tli, u64::from(log) * per_id + u64::from(seg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB16: u64 = DEFAULT_SEGMENT_SIZE;

    #[test]
    fn lsn_display_and_parse() {
        assert_eq!(Lsn(0x3000028).to_string(), "0/3000028");
        assert_eq!(Lsn(0x1_0000_00FF).to_string(), "1/FF");
        assert_eq!(Lsn(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
        assert_eq!("0/3000028".parse::<Lsn>().unwrap(), Lsn(0x3000028));
        assert_eq!("0/03000028".parse::<Lsn>().unwrap(), Lsn(0x3000028));
        assert_eq!("a/ff".parse::<Lsn>().unwrap(), Lsn(0xA_0000_00FF));
        for bad in [
            "",
            "0",
            "/1",
            "1/",
            "0/123456789",
            "x/1",
            "1/2/3",
            "-1/2",
            "+1/2",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} parsed");
        }
        let e = "zz".parse::<Lsn>().unwrap_err();
        assert!(e.to_string().contains("zz"), "{e}");
    }

    #[test]
    fn lsn_serde_is_a_string() {
        let l = Lsn(0x1_0300_0028);
        let s = serde_json::to_string(&l).unwrap();
        assert_eq!(s, "\"1/3000028\"");
        assert_eq!(serde_json::from_str::<Lsn>(&s).unwrap(), l);
        assert!(serde_json::from_str::<Lsn>("\"nope\"").is_err());
        assert!(serde_json::from_str::<Lsn>("12").is_err());
    }

    #[test]
    fn segments() {
        let lsn = Lsn(0x3000028);
        assert_eq!(lsn.segment(MB16), 3);
        assert_eq!(lsn.segment_offset(MB16), 0x28);
        assert_eq!(Lsn(0x4000000).segment(MB16), 4);
        assert_eq!(Lsn(0x4000000).prev_segment(MB16), 3);
        assert_eq!(prev_segment(Lsn(0x4000001), MB16), 4);
        assert_eq!(prev_segment(Lsn(0), MB16), 0);
        assert_eq!(segment_containing(Lsn(0x3FFFFFF), MB16), 3);
        assert_eq!(segment_start(5, MB16), Lsn(0x5000000));
        assert_eq!(Lsn(0x5000000) + 0x28, Lsn(0x5000028));
        assert!(is_valid_segment_size(MB16));
        assert!(is_valid_segment_size(1 << 20) && is_valid_segment_size(1 << 30));
        assert!(!is_valid_segment_size(0) && !is_valid_segment_size(3 << 20));
        assert!(!is_valid_segment_size(1 << 19) && !is_valid_segment_size(1 << 31));
    }

    #[test]
    fn file_names() {
        assert_eq!(
            segment_file_name(1, Lsn(0x3000028), MB16),
            "000000010000000000000003"
        );
        // 256 segments of 16 MiB per log id.
        assert_eq!(
            segment_file_name(2, Lsn(0x1_0500_0000), MB16),
            "000000020000000100000005"
        );
        assert_eq!(
            segno_file_name(0xA, 0x1FF, MB16),
            "0000000A00000001000000FF"
        );
        // 1 GiB segments: 4 per log id.
        assert_eq!(segno_file_name(1, 5, 1 << 30), "000000010000000100000001");
        assert_eq!(
            parse_segment_file_name("000000010000000000000003", MB16),
            Some((1, 3))
        );
        assert_eq!(
            parse_segment_file_name("0000000A00000001000000ff", MB16),
            Some((10, 0x1FF))
        );
        assert_eq!(
            parse_segment_file_name("000000010000000100000001", 1 << 30),
            Some((1, 5))
        );
        // Segment field out of range for the size, timeline 0, wrong shapes.
        assert_eq!(
            parse_segment_file_name("000000010000000000000100", MB16),
            None
        );
        assert_eq!(
            parse_segment_file_name("000000000000000000000001", MB16),
            None
        );
        assert_eq!(
            parse_segment_file_name("00000001000000000000000", MB16),
            None
        );
        assert_eq!(
            parse_segment_file_name("00000001000000000000000G", MB16),
            None
        );
        assert_eq!(
            parse_segment_file_name("000000010000000000000003.partial", MB16),
            None
        );
        for segno in [0, 1, 255, 256, 0x12345] {
            let name = segno_file_name(7, segno, MB16);
            assert_eq!(parse_segment_file_name(&name, MB16), Some((7, segno)));
        }
    }
}
