//! WAL built byte by byte for tests and benchmarks, laid out the way `XLogInsert` lays it out
//! (1 MiB segments, 8 KiB pages). Not part of the API: compiled for tests and with the
//! `synthetic-wal` feature (for the benchmarks).

use std::path::Path;

use super::page::{
    XLOG_PAGE_MAGIC, XLP_FIRST_IS_CONTRECORD, XLP_FIRST_IS_OVERWRITE_CONTRECORD, XLP_LONG_HEADER,
};
use super::record::{
    record_crc, RECORD_HEADER_SIZE, RESTORE_POINT_NAME_SIZE, RESTORE_POINT_SIZE, RM_XLOG_ID,
    XLOG_RESTORE_POINT, XLOG_SWITCH, XLR_BLOCK_ID_DATA_SHORT,
};
use super::*;

/// The segment size of synthetic WAL.
pub const SEG: u64 = 1 << 20;
/// The page size of synthetic WAL.
pub const PAGE: u64 = 8192;
const SYSID: u64 = 7_000_000_000_000_000_001;

/// A restore point record body (short data header + `xl_restore_point`).
pub fn restore_point_body(name: &str, micros: i64) -> Vec<u8> {
    let mut b = vec![XLR_BLOCK_ID_DATA_SHORT, RESTORE_POINT_SIZE as u8];
    b.extend_from_slice(&micros.to_le_bytes());
    let mut n = [0u8; RESTORE_POINT_NAME_SIZE];
    n[..name.len()].copy_from_slice(name.as_bytes());
    b.extend_from_slice(&n);
    b
}

/// A full record: header with a correct CRC, then `body`.
pub fn record(rmid: u8, info: u8, prev: u64, body: &[u8]) -> Vec<u8> {
    let mut h = [0u8; RECORD_HEADER_SIZE];
    h[..4].copy_from_slice(&((RECORD_HEADER_SIZE + body.len()) as u32).to_le_bytes());
    h[8..16].copy_from_slice(&prev.to_le_bytes());
    h[16] = info;
    h[17] = rmid;
    let crc = record_crc(&h, body);
    h[20..].copy_from_slice(&crc.to_le_bytes());
    let mut r = h.to_vec();
    r.extend_from_slice(body);
    r
}

/// Lays out records into pages from the start of segment `first`.
pub struct Builder {
    /// The timeline in page headers and file names.
    pub tli: u32,
    /// The LSN of `buf[0]` (a segment start).
    pub base: u64,
    /// The WAL bytes laid out so far.
    pub buf: Vec<u8>,
    /// The start of the last record inserted.
    pub prev: u64,
    /// Extra `xlp_info` flags for the next page header.
    pub page_flags: u16,
}

impl Builder {
    /// A builder at the start of segment `first` of timeline `tli`.
    pub fn new(tli: u32, first: SegNo) -> Builder {
        Builder {
            tli,
            base: first * SEG,
            buf: Vec::new(),
            prev: 0,
            page_flags: 0,
        }
    }

    /// The LSN where the next byte goes.
    pub fn pos(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    /// Writes the page header if at a page boundary; `rem` is what is left of a record.
    fn page_header(&mut self, rem: u32) {
        let lsn = self.pos();
        if lsn % PAGE != 0 {
            return;
        }
        let long = lsn % SEG == 0;
        let mut info = if rem > 0 { XLP_FIRST_IS_CONTRECORD } else { 0 } | self.page_flags;
        self.page_flags = 0;
        if long {
            info |= XLP_LONG_HEADER;
        }
        self.buf.extend_from_slice(&XLOG_PAGE_MAGIC.to_le_bytes());
        self.buf.extend_from_slice(&info.to_le_bytes());
        self.buf.extend_from_slice(&self.tli.to_le_bytes());
        self.buf.extend_from_slice(&lsn.to_le_bytes());
        self.buf.extend_from_slice(&rem.to_le_bytes());
        self.buf.extend_from_slice(&[0; 4]);
        if long {
            self.buf.extend_from_slice(&SYSID.to_le_bytes());
            self.buf.extend_from_slice(&(SEG as u32).to_le_bytes());
            self.buf.extend_from_slice(&(PAGE as u32).to_le_bytes());
        }
    }

    /// Writes `bytes` of a record, at most `limit` of them; returns the start LSN.
    fn write(&mut self, bytes: &[u8], limit: usize) -> u64 {
        self.page_header(0);
        let start = self.pos();
        let mut done = 0;
        while done < bytes.len().min(limit) {
            if done > 0 {
                self.page_header((bytes.len() - done) as u32);
            }
            let room = (PAGE - self.pos() % PAGE) as usize;
            let n = room.min(bytes.len().min(limit) - done);
            self.buf.extend_from_slice(&bytes[done..done + n]);
            done += n;
        }
        start
    }

    fn align(&mut self) {
        while self.buf.len() % 8 != 0 {
            self.buf.push(0);
        }
    }

    /// Inserts a record; returns (start, end).
    pub fn insert(&mut self, rmid: u8, info: u8, body: &[u8]) -> (Lsn, Lsn) {
        let rec = record(rmid, info, self.prev, body);
        let start = self.write(&rec, usize::MAX);
        self.align();
        self.prev = start;
        (Lsn(start), Lsn(self.pos()))
    }

    /// A record of `len` bytes of resource manager 21 (logical message) with filler.
    pub fn filler(&mut self, len: usize) -> (Lsn, Lsn) {
        self.insert(21, 0, &vec![0xAB; len - 24])
    }

    /// Pads with fillers so that the next record starts at `target`.
    pub fn fill_to(&mut self, target: u64) {
        while self.pos() < target {
            self.page_header(0);
            let room = (target - self.pos()) as usize;
            let page_left = (PAGE - self.pos() % PAGE) as usize;
            let len = if room <= page_left {
                room
            } else {
                page_left.max(64)
            };
            assert!(len >= 24, "cannot fill {room} bytes");
            self.filler(len);
        }
        assert_eq!(self.pos(), target);
    }

    /// Inserts a restore point; returns (start, end).
    pub fn restore_point(&mut self, name: &str) -> (Lsn, Lsn) {
        self.insert(
            RM_XLOG_ID,
            XLOG_RESTORE_POINT,
            &restore_point_body(name, 1_000_000),
        )
    }

    /// Inserts an `XLOG_SWITCH`; returns its start and the next segment's start.
    pub fn switch(&mut self) -> (Lsn, Lsn) {
        let (s, _) = self.insert(RM_XLOG_ID, XLOG_SWITCH, &[]);
        let end = self.pos().div_ceil(SEG) * SEG;
        self.buf.resize((end - self.base) as usize, 0);
        (s, Lsn(end))
    }

    /// Writes the start of a record up to the page end, then marks the next page as
    /// overwriting it (what crash recovery does after losing the rest).
    pub fn abandon(&mut self, len: usize) -> Lsn {
        let rec = record(21, 0, self.prev, &vec![1; len - 24]);
        let room = (PAGE - self.pos() % PAGE) as usize;
        let start = self.write(&rec, room);
        self.page_flags = XLP_FIRST_IS_OVERWRITE_CONTRECORD;
        Lsn(start)
    }

    /// Writes the complete segments laid out so far into `dir` and drops them from the
    /// buffer, keeping the one being filled: for building many segments in little memory.
    pub fn flush_complete(&mut self, dir: &Path) {
        let complete = self.buf.len() / SEG as usize;
        for (i, seg) in self.buf[..complete * SEG as usize]
            .chunks(SEG as usize)
            .enumerate()
        {
            let segno = self.base / SEG + i as u64;
            std::fs::write(dir.join(segno_file_name(self.tli, segno, SEG)), seg).unwrap();
        }
        self.buf.drain(..complete * SEG as usize);
        self.base += complete as u64 * SEG;
    }

    /// Writes the segments (zero-filled to the end) into `dir`.
    pub fn save(mut self, dir: &Path) {
        let end = self.pos().div_ceil(SEG) * SEG;
        self.buf.resize((end - self.base) as usize, 0);
        for (i, seg) in self.buf.chunks(SEG as usize).enumerate() {
            let segno = self.base / SEG + i as u64;
            std::fs::write(dir.join(segno_file_name(self.tli, segno, SEG)), seg).unwrap();
        }
    }
}
