//! WAL record headers (`XLogRecord`), their CRC, the block/data headers that follow them
//! (`xlogrecord.h`, `DecodeXLogRecord` in `xlogreader.c`) and the `RESTORE_POINT` record.

use chrono::{DateTime, Utc};

use super::lsn::Lsn;

/// `SizeOfXLogRecord`: the fixed record header.
pub const RECORD_HEADER_SIZE: usize = 24;
/// Offset of `xl_crc` in the header; the CRC covers the header up to there.
pub const RECORD_CRC_OFFSET: usize = 20;
/// The XLOG resource manager (`RM_XLOG_ID`).
pub const RM_XLOG_ID: u8 = 0;
/// Highest built-in resource manager in PostgreSQL 15 (`RM_LOGICALMSG_ID`).
pub const RM_MAX_BUILTIN_ID: u8 = 21;
/// Lowest custom resource manager ID (`RM_MIN_CUSTOM_ID`).
pub const RM_MIN_CUSTOM_ID: u8 = 128;
/// `XLR_INFO_MASK`: the `xl_info` bits that belong to the generic record layer.
pub const XLR_INFO_MASK: u8 = 0x0F;
/// `XLOG_SWITCH`: the rest of the segment is unused.
pub const XLOG_SWITCH: u8 = 0x40;
/// `XLOG_RESTORE_POINT`, written by `pg_create_restore_point`.
pub const XLOG_RESTORE_POINT: u8 = 0x70;
/// `XLOG_PARAMETER_CHANGE`: settings that matter to hot standby changed (`xl_parameter_change`).
pub const XLOG_PARAMETER_CHANGE: u8 = 0x60;
/// The tablespace resource manager (`RM_TBLSPC_ID`).
pub const RM_TBLSPC_ID: u8 = 5;
/// `XLOG_TBLSPC_CREATE`: `CREATE TABLESPACE` (`xl_tblspc_create_rec`).
pub const XLOG_TBLSPC_CREATE: u8 = 0x00;
/// Bytes of `xl_parameter_change` that carry fields (six `int`s, two `bool`s); the record holds
/// `sizeof` = 28 with padding.
pub const PARAMETER_CHANGE_SIZE: usize = 6 * 4 + 2;
/// `XLOG_OVERWRITE_CONTRECORD`, written where an abandoned record should have continued.
pub const XLOG_OVERWRITE_CONTRECORD: u8 = 0xD0;
/// `MAXFNAMELEN`, the size of `rp_name` including its terminating NUL.
pub const RESTORE_POINT_NAME_SIZE: usize = 64;
/// `sizeof(xl_restore_point)`: `TimestampTz rp_time; char rp_name[64]`.
pub const RESTORE_POINT_SIZE: usize = 8 + RESTORE_POINT_NAME_SIZE;
/// Seconds from the Unix epoch to the PostgreSQL epoch, 2000-01-01 00:00 UTC.
pub const POSTGRES_EPOCH_UNIX_SECS: i64 = 946_684_800;

// Block and data header IDs and flags.
const XLR_MAX_BLOCK_ID: u8 = 32;
pub(crate) const XLR_BLOCK_ID_DATA_SHORT: u8 = 255;
const XLR_BLOCK_ID_DATA_LONG: u8 = 254;
const XLR_BLOCK_ID_ORIGIN: u8 = 253;
const XLR_BLOCK_ID_TOPLEVEL_XID: u8 = 252;
const BKPBLOCK_HAS_IMAGE: u8 = 0x10;
const BKPBLOCK_HAS_DATA: u8 = 0x20;
const BKPBLOCK_SAME_REL: u8 = 0x80;
const BKPIMAGE_HAS_HOLE: u8 = 0x01;
const BKPIMAGE_COMPRESSED: u8 = 0x04 | 0x08 | 0x10; // PGLZ | LZ4 | ZSTD

/// The fixed header of a WAL record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// `xl_tot_len`: the whole record, header included.
    pub tot_len: u32,
    /// `xl_xid`: the transaction ID.
    pub xid: u32,
    /// `xl_prev`: start of the previous record.
    pub prev: Lsn,
    /// `xl_info`: generic flags in the low 4 bits, resource-manager info in the high 4.
    pub info: u8,
    /// `xl_rmid`: the resource manager.
    pub rmid: u8,
    /// `xl_crc`: CRC32C of the record body then of the header up to this field.
    pub crc: u32,
}

impl RecordHeader {
    /// Parses the 24-byte header.
    pub fn parse(b: &[u8; RECORD_HEADER_SIZE]) -> RecordHeader {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        RecordHeader {
            tot_len: u32_at(0),
            xid: u32_at(4),
            prev: Lsn(u64::from(u32_at(8)) | (u64::from(u32_at(12)) << 32)),
            info: b[16],
            rmid: b[17],
            crc: u32_at(20),
        }
    }

    /// The resource-manager part of `xl_info` (`info & ~XLR_INFO_MASK`).
    pub fn rmgr_info(&self) -> u8 {
        self.info & !XLR_INFO_MASK
    }

    /// Whether this is an `XLOG_SWITCH` record.
    pub fn is_switch(&self) -> bool {
        self.rmid == RM_XLOG_ID && self.rmgr_info() == XLOG_SWITCH
    }

    /// Whether this is an `XLOG_PARAMETER_CHANGE` record.
    pub fn is_parameter_change(&self) -> bool {
        self.rmid == RM_XLOG_ID && self.rmgr_info() == XLOG_PARAMETER_CHANGE
    }

    /// Whether this is an `XLOG_TBLSPC_CREATE` record.
    pub fn is_tablespace_create(&self) -> bool {
        self.rmid == RM_TBLSPC_ID && self.rmgr_info() == XLOG_TBLSPC_CREATE
    }

    /// Whether this is an `XLOG_RESTORE_POINT` record.
    pub fn is_restore_point(&self) -> bool {
        self.rmid == RM_XLOG_ID && self.rmgr_info() == XLOG_RESTORE_POINT
    }

    /// Checks the header of the record at `lsn` as `ValidXLogRecordHeader` does: length, resource
    /// manager, and `xl_prev` (equal to `prev` when the previous record is known, else before
    /// `lsn`).
    pub fn check(&self, lsn: Lsn, prev: Option<Lsn>) -> Result<(), String> {
        if (self.tot_len as usize) < RECORD_HEADER_SIZE {
            return Err(format!(
                "invalid record length {}, at least {RECORD_HEADER_SIZE} expected",
                self.tot_len
            ));
        }
        if !rmid_is_valid(self.rmid) {
            return Err(format!("invalid resource manager ID {}", self.rmid));
        }
        match prev {
            Some(p) if self.prev != p => Err(format!(
                "record with incorrect prev-link {}, expected {p}",
                self.prev
            )),
            None if self.prev >= lsn => Err(format!(
                "record with incorrect prev-link {}, not before the record",
                self.prev
            )),
            _ => Ok(()),
        }
    }
}

/// Whether `rmid` is a built-in or custom resource manager of PostgreSQL 15 (`RmgrIdIsValid`).
pub fn rmid_is_valid(rmid: u8) -> bool {
    rmid <= RM_MAX_BUILTIN_ID || rmid >= RM_MIN_CUSTOM_ID
}

/// CRC32C of a record as PostgreSQL computes `xl_crc`: over `body` (the record after its
/// header), then over the header up to `xl_crc`.
pub fn record_crc(header: &[u8; RECORD_HEADER_SIZE], body: &[u8]) -> u32 {
    let crc = crc32c::crc32c(body);
    crc32c::crc32c_append(crc, &header[..RECORD_CRC_OFFSET])
}

/// Finds the main data in a record body (the record after its 24-byte header) by walking the
/// block and data headers as `DecodeXLogRecord` does; returns its byte range within `body`.
///
/// Block images and block data are skipped, not decoded.
pub fn main_data_range(body: &[u8]) -> Result<std::ops::Range<usize>, String> {
    let mut pos = 0usize;
    let mut datatotal = 0usize;
    let mut main_len = 0usize;
    let mut last_block: Option<u8> = None;
    let need = |pos: usize, n: usize| -> Result<(), String> {
        if pos + n > body.len() {
            Err(format!(
                "record headers run past the record end at byte {pos}"
            ))
        } else {
            Ok(())
        }
    };
    let u16_at = |i: usize| usize::from(u16::from_le_bytes([body[i], body[i + 1]]));
    while pos < body.len() && body.len() - pos > datatotal {
        need(pos, 1)?;
        let id = body[pos];
        pos += 1;
        match id {
            XLR_BLOCK_ID_DATA_SHORT => {
                need(pos, 1)?;
                main_len = usize::from(body[pos]);
                pos += 1;
                datatotal += main_len;
                break;
            }
            XLR_BLOCK_ID_DATA_LONG => {
                need(pos, 4)?;
                main_len = u32::from_le_bytes(body[pos..pos + 4].try_into().expect("4")) as usize;
                pos += 4;
                datatotal += main_len;
                break;
            }
            XLR_BLOCK_ID_ORIGIN => {
                need(pos, 2)?;
                pos += 2;
            }
            XLR_BLOCK_ID_TOPLEVEL_XID => {
                need(pos, 4)?;
                pos += 4;
            }
            id if id <= XLR_MAX_BLOCK_ID => {
                if last_block.is_some_and(|l| id <= l) {
                    return Err(format!("out-of-order block_id {id}"));
                }
                need(pos, 3)?;
                let fork_flags = body[pos];
                let data_len = u16_at(pos + 1);
                pos += 3;
                if (fork_flags & BKPBLOCK_HAS_DATA != 0) != (data_len > 0) {
                    return Err(format!(
                        "block {id}: data length {data_len} and BKPBLOCK_HAS_DATA disagree"
                    ));
                }
                datatotal += data_len;
                if fork_flags & BKPBLOCK_HAS_IMAGE != 0 {
                    need(pos, 5)?;
                    let image_len = u16_at(pos);
                    let bimg_info = body[pos + 4];
                    pos += 5;
                    if bimg_info & BKPIMAGE_HAS_HOLE != 0 && bimg_info & BKPIMAGE_COMPRESSED != 0 {
                        need(pos, 2)?;
                        pos += 2; // XLogRecordBlockCompressHeader
                    }
                    if image_len == 0 {
                        return Err(format!("block {id}: image of length 0"));
                    }
                    datatotal += image_len;
                }
                if fork_flags & BKPBLOCK_SAME_REL == 0 {
                    need(pos, 12)?;
                    pos += 12; // RelFileNode
                } else if last_block.is_none() {
                    return Err("BKPBLOCK_SAME_REL set but no previous rel".into());
                }
                need(pos, 4)?;
                pos += 4; // BlockNumber
                last_block = Some(id);
            }
            id => return Err(format!("invalid block_id {id}")),
        }
    }
    if body.len() - pos != datatotal {
        return Err(format!(
            "record headers announce {datatotal} bytes of data, but {} remain",
            body.len().saturating_sub(pos)
        ));
    }
    Ok(body.len() - main_len..body.len())
}

/// A PostgreSQL `TimestampTz` (microseconds since 2000-01-01 UTC) as a `DateTime`, or `None`
/// when out of range.
pub fn timestamp_to_datetime(micros: i64) -> Option<DateTime<Utc>> {
    let unix = micros.checked_add(POSTGRES_EPOCH_UNIX_SECS * 1_000_000)?;
    DateTime::from_timestamp_micros(unix)
}

/// The contents of an `XLOG_RESTORE_POINT` record (`xl_restore_point`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePointData {
    /// `rp_time`.
    pub time: DateTime<Utc>,
    /// `rp_name`, bytes up to the NUL; not-UTF-8 bytes are replaced by U+FFFD.
    pub name: String,
}

/// Decodes the body (the record after its header) of an `XLOG_RESTORE_POINT` record.
pub fn decode_restore_point(body: &[u8]) -> Result<RestorePointData, String> {
    let main = &body[main_data_range(body)?];
    if main.len() != RESTORE_POINT_SIZE {
        return Err(format!(
            "restore point data has {} bytes, expected {RESTORE_POINT_SIZE}",
            main.len()
        ));
    }
    let micros = i64::from_le_bytes(main[..8].try_into().expect("8 bytes"));
    let time = timestamp_to_datetime(micros)
        .ok_or_else(|| format!("restore point time {micros} is out of range"))?;
    let name = &main[8..];
    let end = name
        .iter()
        .position(|&b| b == 0)
        .ok_or("restore point name is not NUL-terminated")?;
    Ok(RestorePointData {
        time,
        name: String::from_utf8_lossy(&name[..end]).into_owned(),
    })
}

/// The contents of an `XLOG_PARAMETER_CHANGE` record (`xl_parameter_change` of PostgreSQL 15,
/// `src/include/access/xlog_internal.h`): the server's settings when it started or when one of
/// them changed. Recovery with `hot_standby` pauses when one of the first five is above the
/// recovering server's own value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParameterChange {
    /// `MaxConnections` (`max_connections`).
    pub max_connections: i32,
    /// `max_worker_processes`.
    pub max_worker_processes: i32,
    /// `max_wal_senders`.
    pub max_wal_senders: i32,
    /// `max_prepared_xacts` (`max_prepared_transactions`).
    pub max_prepared_xacts: i32,
    /// `max_locks_per_xact` (`max_locks_per_transaction`).
    pub max_locks_per_xact: i32,
    /// `wal_level` (0 minimal, 1 replica, 2 logical).
    pub wal_level: i32,
    /// `wal_log_hints`.
    pub wal_log_hints: bool,
    /// `track_commit_timestamp`.
    pub track_commit_timestamp: bool,
}

/// Decodes the body (the record after its header) of an `XLOG_PARAMETER_CHANGE` record.
pub fn decode_parameter_change(body: &[u8]) -> Result<ParameterChange, String> {
    let main = &body[main_data_range(body)?];
    if main.len() < PARAMETER_CHANGE_SIZE {
        return Err(format!(
            "parameter change data has {} bytes, expected at least {PARAMETER_CHANGE_SIZE}",
            main.len()
        ));
    }
    let int = |i: usize| i32::from_le_bytes(main[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    Ok(ParameterChange {
        max_connections: int(0),
        max_worker_processes: int(1),
        max_wal_senders: int(2),
        max_prepared_xacts: int(3),
        max_locks_per_xact: int(4),
        wal_level: int(5),
        wal_log_hints: main[24] != 0,
        track_commit_timestamp: main[25] != 0,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wal::synthetic::{record, restore_point_body};

    #[test]
    fn header_fields_and_crc() {
        let body = restore_point_body("before upgrade", 0);
        let rec = record(RM_XLOG_ID, XLOG_RESTORE_POINT, 0x1_0300_0028, &body);
        let h = RecordHeader::parse(rec[..24].try_into().unwrap());
        assert_eq!(h.tot_len, 98);
        assert_eq!(h.prev, Lsn(0x1_0300_0028));
        assert!(h.is_restore_point() && !h.is_switch());
        assert_eq!(h.crc, record_crc(rec[..24].try_into().unwrap(), &rec[24..]));
        // The CRC is CRC32C of body then header prefix, i.e. of their concatenation.
        let mut cat = rec[24..].to_vec();
        cat.extend_from_slice(&rec[..20]);
        assert_eq!(h.crc, crc32c::crc32c(&cat));
        assert_eq!(
            h.check(Lsn(0x1_0300_0100), Some(Lsn(0x1_0300_0028))),
            Ok(())
        );
        assert!(h
            .check(Lsn(0x1_0300_0100), Some(Lsn(0x1_0300_0030)))
            .is_err());
        assert!(h.check(Lsn(0x1_0300_0020), None).is_err());
        let mut bad = h;
        bad.rmid = 40;
        assert!(bad.check(Lsn(0x1_0300_0100), None).is_err());
        bad.rmid = 200;
        assert_eq!(bad.check(Lsn(0x1_0300_0100), None), Ok(()));
        bad.tot_len = 0;
        assert!(bad.check(Lsn(0x1_0300_0100), None).is_err());
    }

    #[test]
    fn restore_point_decoding() {
        // 2024-01-02 03:04:05.678901 UTC in PostgreSQL microseconds.
        let t = DateTime::parse_from_rfc3339("2024-01-02T03:04:05.678901Z").unwrap();
        let micros = t.timestamp_micros() - POSTGRES_EPOCH_UNIX_SECS * 1_000_000;
        let rp = decode_restore_point(&restore_point_body("x'; y z é", micros)).unwrap();
        assert_eq!(rp.name, "x'; y z é");
        assert_eq!(rp.time, t);
        let long = "n".repeat(63);
        assert_eq!(
            decode_restore_point(&restore_point_body(&long, 0))
                .unwrap()
                .name,
            long
        );
        assert_eq!(
            timestamp_to_datetime(0).unwrap().to_rfc3339(),
            "2000-01-01T00:00:00+00:00"
        );
        // No NUL, wrong size.
        let mut b = restore_point_body("", 0);
        b[10..].fill(b'a');
        assert!(decode_restore_point(&b).is_err());
        let mut b = restore_point_body("a", 0);
        b[1] = 71;
        assert!(decode_restore_point(&b[..b.len() - 1]).is_err());
    }

    /// A parameter change record body as `XLogReportParameters` writes it (28 bytes).
    pub(crate) fn parameter_change_body(values: [i32; 6], hints: bool, commit_ts: bool) -> Vec<u8> {
        let mut b = vec![XLR_BLOCK_ID_DATA_SHORT, 28];
        for v in values {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&[u8::from(hints), u8::from(commit_ts), 0x7F, 0x7F]);
        b
    }

    #[test]
    fn parameter_change_decoding() {
        let body = parameter_change_body([250, 8, 10, 64, 128, 1], true, false);
        let p = decode_parameter_change(&body).unwrap();
        assert_eq!(
            p,
            ParameterChange {
                max_connections: 250,
                max_worker_processes: 8,
                max_wal_senders: 10,
                max_prepared_xacts: 64,
                max_locks_per_xact: 128,
                wal_level: 1,
                wal_log_hints: true,
                track_commit_timestamp: false,
            }
        );
        let mut short = body.clone();
        short[1] = 25;
        short.truncate(2 + 25);
        assert!(decode_parameter_change(&short).is_err());
        let rec = record(RM_XLOG_ID, XLOG_PARAMETER_CHANGE, 0, &body);
        let h = RecordHeader::parse(rec[..24].try_into().unwrap());
        assert!(h.is_parameter_change() && !h.is_restore_point() && !h.is_tablespace_create());
        let rec = record(RM_TBLSPC_ID, XLOG_TBLSPC_CREATE, 0, &[0; 8]);
        let h = RecordHeader::parse(rec[..24].try_into().unwrap());
        assert!(h.is_tablespace_create() && !h.is_parameter_change());
        // XLOG_TBLSPC_DROP (0x10) is not a create.
        let rec = record(RM_TBLSPC_ID, 0x10, 0, &[0; 8]);
        assert!(!RecordHeader::parse(rec[..24].try_into().unwrap()).is_tablespace_create());
    }

    #[test]
    fn main_data_after_block_headers() {
        // One block with data and an image with a compressed hole, one with SAME_REL, origin,
        // long main data header.
        let mut b = vec![0u8, BKPBLOCK_HAS_DATA | BKPBLOCK_HAS_IMAGE];
        b.extend_from_slice(&3u16.to_le_bytes()); // data length
        b.extend_from_slice(&5u16.to_le_bytes()); // image length
        b.extend_from_slice(&100u16.to_le_bytes()); // hole offset
        b.push(BKPIMAGE_HAS_HOLE | 0x04); // pglz
        b.extend_from_slice(&200u16.to_le_bytes()); // hole length
        b.extend_from_slice(&[0; 12 + 4]); // RelFileNode, block number
        b.extend_from_slice(&[1, BKPBLOCK_SAME_REL | BKPBLOCK_HAS_DATA, 2, 0]);
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&[XLR_BLOCK_ID_ORIGIN, 1, 0]);
        b.push(XLR_BLOCK_ID_DATA_LONG);
        b.extend_from_slice(&300u32.to_le_bytes());
        let headers = b.len();
        b.extend_from_slice(&[7u8; 5 + 3 + 2]);
        b.extend_from_slice(&[9u8; 300]);
        assert_eq!(main_data_range(&b), Ok(headers + 10..headers + 310));
        assert!(main_data_range(&b[..b.len() - 1]).is_err());
        assert!(main_data_range(&[40, 0, 0, 0]).is_err());
        // No main data at all: an empty range at the end.
        assert_eq!(main_data_range(&[]), Ok(0..0));
    }
}
