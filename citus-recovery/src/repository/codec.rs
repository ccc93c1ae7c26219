//! Compression and checksums, a layer above any [`super::Repository`]: an object is stored as
//! one self-describing frame, so a reader needs no setting to decode it and every corruption
//! is found before the data is used.
//!
//! Frame (integers little-endian), 28 bytes of header then the payload:
//!
//! | bytes  | field                                                   |
//! |--------|---------------------------------------------------------|
//! | 0..4   | magic `CRFR`                                            |
//! | 4      | format version, 1                                       |
//! | 5      | codec: 0 none, 1 zstd, 2 lz4 (block format)             |
//! | 6..8   | flags, 0 (anything else is refused)                     |
//! | 8..16  | length of the uncompressed data                         |
//! | 16..24 | length of the payload                                   |
//! | 24..28 | CRC32C of the uncompressed data                         |
//! | 28..   | the payload: the data, compressed by the codec          |

use std::fmt;
use std::str::FromStr;

use bytes::{BufMut, Bytes, BytesMut};

/// The frame's first four bytes.
pub const MAGIC: [u8; 4] = *b"CRFR";

/// The frame format version written and read.
pub const FORMAT_VERSION: u8 = 1;

/// The header's length in bytes.
pub const HEADER_LEN: usize = 28;

/// The largest uncompressed data a frame may hold: 1 GiB, PostgreSQL's largest WAL segment. A
/// reader never allocates more than this for a frame, whatever its header claims.
pub const MAX_DATA_LEN: u64 = 1 << 30;

/// The largest zstd level accepted (levels above are slow and gain little on WAL).
pub const MAX_ZSTD_LEVEL: i32 = 19;

/// lz4's largest compression ratio (a block decodes to at most ~255 times its size), to refuse
/// a claimed length no payload could hold before allocating it.
const LZ4_MAX_RATIO: u64 = 255;

/// How objects are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Stored as is (still framed and checksummed).
    None,
    /// zstd at a level from 1 to [`MAX_ZSTD_LEVEL`].
    Zstd(i32),
    /// lz4, block format: the fastest, compressing less.
    Lz4,
}

impl Default for Compression {
    /// zstd level 1: most of zstd's gain on WAL at a fraction of the time of higher levels.
    fn default() -> Self {
        Compression::Zstd(1)
    }
}

impl Compression {
    /// The file-name suffix of objects in this compression (`.zst`, `.lz4`, or none).
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Zstd(_) => ".zst",
            Compression::Lz4 => ".lz4",
        }
    }

    fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Zstd(_) => 1,
            Compression::Lz4 => 2,
        }
    }

    fn codec_name(id: u8) -> &'static str {
        match id {
            0 => "none",
            1 => "zstd",
            CARRIED_ZSTD => "zstd (carried)",
            _ => "lz4",
        }
    }
}

impl FromStr for Compression {
    type Err = String;

    /// `none`, `zstd` (level 1), `zstd:N` (N from 1 to 19) or `lz4`.
    fn from_str(s: &str) -> Result<Self, String> {
        let accepted = "the accepted values are \"none\", \"zstd\" (level 1), \"zstd:N\" \
                        (N from 1 to 19) and \"lz4\"";
        match s {
            "none" => Ok(Compression::None),
            "zstd" => Ok(Compression::Zstd(1)),
            "lz4" => Ok(Compression::Lz4),
            _ => match s.strip_prefix("zstd:").map(str::parse::<i32>) {
                Some(Ok(level)) if (1..=MAX_ZSTD_LEVEL).contains(&level) => {
                    Ok(Compression::Zstd(level))
                }
                Some(_) => Err(format!(
                    "compression {s:?}: the zstd level must be a number from 1 to \
                     {MAX_ZSTD_LEVEL}; {accepted}"
                )),
                None => Err(format!("compression {s:?} is unknown; {accepted}")),
            },
        }
    }
}

impl fmt::Display for Compression {
    /// The text [`FromStr`] reads back: `none`, `zstd:N`, `lz4`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Zstd(level) => write!(f, "zstd:{level}"),
            Compression::Lz4 => f.write_str("lz4"),
        }
    }
}

/// Why a frame could not be decoded: each names what failed. Any of them means the object is
/// damaged (or not written by this codec) and its data must not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Shorter than its header says (or than a header).
    #[error(
        "the frame is truncated: {have} bytes where {needed} are needed; the object was cut \
         short"
    )]
    Truncated {
        /// Bytes the frame should have.
        needed: u64,
        /// Bytes it has.
        have: u64,
    },
    /// More bytes after the payload than the header says.
    #[error("the frame has {extra} bytes after its payload; the object is damaged")]
    TrailingBytes {
        /// How many.
        extra: u64,
    },
    /// Not a frame at all.
    #[error(
        "the object is not a citus-recovery frame (it starts with {found:02x?}, not \"CRFR\"); \
         it was not written by this tool's codec, or is damaged"
    )]
    BadMagic {
        /// The first four bytes found.
        found: [u8; 4],
    },
    /// A format version this build cannot read.
    #[error(
        "frame format version {version} is not readable by this build (it reads version \
         {FORMAT_VERSION}); use the citus-recovery that wrote it or a newer one"
    )]
    UnsupportedVersion {
        /// The version found.
        version: u8,
    },
    /// A codec id this build does not know.
    #[error("the frame names codec {id}, which this build does not know (0 none, 1 zstd, 2 lz4)")]
    UnknownCodec {
        /// The id found.
        id: u8,
    },
    /// Flags this build does not know.
    #[error("the frame has flags {flags:#06x}, which this build does not know")]
    UnknownFlags {
        /// The flags found.
        flags: u16,
    },
    /// The header claims more data than any frame may hold.
    #[error(
        "the frame claims {declared} bytes of data, more than the {MAX_DATA_LEN} a frame may \
         hold; the header is damaged"
    )]
    TooLarge {
        /// The length claimed.
        declared: u64,
    },
    /// The payload decodes to another length than the header says.
    #[error(
        "the frame's data is {} bytes where its header says {declared}; the object is damaged",
        found.map_or_else(|| "more".to_string(), |n| n.to_string())
    )]
    BadLength {
        /// The length in the header.
        declared: u64,
        /// The length found (`None`: more than declared).
        found: Option<u64>,
    },
    /// The codec could not decompress the payload.
    #[error(
        "the frame's {codec} payload cannot be decompressed ({detail}); the object is damaged"
    )]
    Decompress {
        /// The codec.
        codec: &'static str,
        /// The codec's message.
        detail: String,
    },
    /// The data's checksum differs from the header's.
    #[error(
        "the frame's data has CRC32C {computed:#010x} where its header says {declared:#010x}; \
         the object is damaged"
    )]
    ChecksumMismatch {
        /// The checksum in the header.
        declared: u32,
        /// The checksum of the decoded data.
        computed: u32,
    },
}

/// `data` compressed by `c` in a frame (see the module's documentation).
///
/// # Panics
/// If `data` is longer than [`MAX_DATA_LEN`] (no object written through the codec is: WAL
/// segments and catalog files are smaller), or if zstd cannot allocate its state.
pub fn encode(c: Compression, data: &[u8]) -> Bytes {
    assert!(
        data.len() as u64 <= MAX_DATA_LEN,
        "a frame holds at most {MAX_DATA_LEN} bytes"
    );
    let payload: std::borrow::Cow<'_, [u8]> = match c {
        Compression::None => data.into(),
        Compression::Zstd(level) => zstd::bulk::compress(data, level.clamp(1, MAX_ZSTD_LEVEL))
            .expect("zstd compresses any input held in memory")
            .into(),
        Compression::Lz4 => lz4_flex::block::compress(data).into(),
    };
    let mut out = BytesMut::with_capacity(HEADER_LEN + payload.len());
    out.put_slice(&MAGIC);
    out.put_u8(FORMAT_VERSION);
    out.put_u8(c.id());
    out.put_u16_le(0);
    out.put_u64_le(data.len() as u64);
    out.put_u64_le(payload.len() as u64);
    out.put_u32_le(crc32c::crc32c(data));
    out.put_slice(&payload);
    out.freeze()
}

/// The data in `frame`, after checking the header, the lengths and the checksum.
pub fn decode(frame: &[u8]) -> Result<Bytes, CodecError> {
    let have = frame.len() as u64;
    if frame.len() < HEADER_LEN {
        // Say "not a frame" rather than "truncated" when even the magic is wrong.
        if frame.len() >= 4 && frame[..4] != MAGIC {
            return Err(CodecError::BadMagic {
                found: frame[..4].try_into().expect("four bytes"),
            });
        }
        return Err(CodecError::Truncated {
            needed: HEADER_LEN as u64,
            have,
        });
    }
    let (header, payload) = frame.split_at(HEADER_LEN);
    let u64_at = |i: usize| u64::from_le_bytes(header[i..i + 8].try_into().expect("8 bytes"));
    if header[..4] != MAGIC {
        return Err(CodecError::BadMagic {
            found: header[..4].try_into().expect("four bytes"),
        });
    }
    if header[4] != FORMAT_VERSION {
        return Err(CodecError::UnsupportedVersion { version: header[4] });
    }
    let codec = header[5];
    if codec > 2 {
        return Err(CodecError::UnknownCodec { id: codec });
    }
    let flags = u16::from_le_bytes([header[6], header[7]]);
    if flags != 0 {
        return Err(CodecError::UnknownFlags { flags });
    }
    let declared = u64_at(8);
    let payload_len = u64_at(16);
    let crc = u32::from_le_bytes(header[24..28].try_into().expect("4 bytes"));
    match (payload.len() as u64).cmp(&payload_len) {
        std::cmp::Ordering::Less => {
            return Err(CodecError::Truncated {
                needed: HEADER_LEN as u64 + payload_len,
                have,
            })
        }
        std::cmp::Ordering::Greater => {
            return Err(CodecError::TrailingBytes {
                extra: payload.len() as u64 - payload_len,
            })
        }
        std::cmp::Ordering::Equal => {}
    }
    if declared > MAX_DATA_LEN {
        return Err(CodecError::TooLarge { declared });
    }
    let bad_length = |found: Option<u64>| CodecError::BadLength { declared, found };
    let decompress_err = |detail: String| CodecError::Decompress {
        codec: Compression::codec_name(codec),
        detail,
    };
    let data: Bytes = match codec {
        0 => {
            if payload_len != declared {
                return Err(bad_length(Some(payload_len)));
            }
            Bytes::copy_from_slice(payload)
        }
        1 => {
            // zstd records the content size in its frame: compare before allocating.
            match zstd::zstd_safe::get_frame_content_size(payload) {
                Ok(Some(n)) if n != declared => return Err(bad_length(Some(n))),
                Ok(Some(_)) => {}
                Ok(None) => return Err(decompress_err("no content size".to_string())),
                Err(_) => return Err(decompress_err("not a zstd frame".to_string())),
            }
            let out = zstd::bulk::decompress(payload, declared as usize)
                .map_err(|e| decompress_err(e.to_string()))?;
            if out.len() as u64 != declared {
                return Err(bad_length(Some(out.len() as u64)));
            }
            out.into()
        }
        _ => {
            if declared > payload_len.saturating_mul(LZ4_MAX_RATIO) {
                return Err(bad_length(None));
            }
            // One spare byte tells "longer than declared" from "exactly declared".
            let mut out = vec![0u8; declared as usize + 1];
            let n = match lz4_flex::block::decompress_into(payload, &mut out) {
                Ok(n) => n,
                Err(lz4_flex::block::DecompressError::OutputTooSmall { .. }) => {
                    return Err(bad_length(None))
                }
                Err(e) => return Err(decompress_err(e.to_string())),
            };
            if n as u64 != declared {
                return Err(bad_length(Some(n as u64)));
            }
            out.truncate(n);
            out.into()
        }
    };
    let computed = crc32c::crc32c(&data);
    if computed != crc {
        return Err(CodecError::ChecksumMismatch {
            declared: crc,
            computed,
        });
    }
    Ok(data)
}

/// The first four bytes of a streamed object (see [`StreamEncoder`]).
pub const STREAM_MAGIC: [u8; 4] = *b"CRST";

/// The streamed header's length: magic, version, codec, flags.
pub const STREAM_HEADER_LEN: usize = 8;

/// How much uncompressed data one chunk of a streamed object holds (the last may hold less).
pub const STREAM_CHUNK: usize = 1 << 20;

/// The codec id of a stream whose chunks carry one zstd stream compressed elsewhere (see
/// [`StreamEncoder::carrying_zstd`]). Streams only: a frame never has it.
pub const CARRIED_ZSTD: u8 = 3;

/// The largest chunk a reader accepts, whatever the chunk header claims.
const MAX_STREAM_CHUNK: u32 = 16 << 20;

/// Encodes a stream of any length, chunk by chunk, so that no more than one chunk is held in
/// memory: the codec for base backups, which can be many GB.
///
/// Layout (integers little-endian): an 8-byte header (`CRST`, version 1, codec id as in
/// [`encode`], flags 0), then chunks of `[raw length u32][payload length u32][CRC32C of the raw
/// data u32][payload]`, each holding at most [`STREAM_CHUNK`] bytes of data, then an end marker
/// (a chunk header of three zeros) and a trailer `[total length u64][CRC32C of all data u32]`.
/// A reader that does not reach the trailer knows the object is cut short.
///
/// A stream may also carry data that is compressed already ([`StreamEncoder::carrying_zstd`]):
/// codec id [`CARRIED_ZSTD`], chunks holding the compressed bytes as they came (their CRC32C is
/// of those bytes), and the reader decompresses the whole as one zstd stream. A base backup the
/// server compressed is stored so, never decompressed and compressed again.
#[derive(Debug)]
pub struct StreamEncoder {
    compression: Compression,
    codec_id: u8,
    pending: Vec<u8>,
    total: u64,
    crc: u32,
    zstd: Zstd<zstd::bulk::Compressor<'static>>,
}

/// A zstd context kept from chunk to chunk: a new one per 1 MiB chunk (what
/// `zstd::bulk::compress` does) allocates and clears its tables every time.
#[derive(Default)]
struct Zstd<T>(Option<T>);

impl<T> fmt::Debug for Zstd<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("zstd context")
    }
}

impl StreamEncoder {
    /// An encoder, and the header to write first.
    pub fn new(compression: Compression) -> (Self, Bytes) {
        let encoder = StreamEncoder {
            compression,
            codec_id: compression.id(),
            pending: Vec::with_capacity(STREAM_CHUNK),
            total: 0,
            crc: 0,
            zstd: Zstd(None),
        };
        let header = encoder.header();
        (encoder, header)
    }

    /// The stream's header: magic, version, codec id, flags.
    fn header(&self) -> Bytes {
        let mut header = BytesMut::with_capacity(STREAM_HEADER_LEN);
        header.put_slice(&STREAM_MAGIC);
        header.put_u8(FORMAT_VERSION);
        header.put_u8(self.codec_id);
        header.put_u16_le(0);
        header.freeze()
    }

    /// An encoder whose data is a zstd stream compressed elsewhere (a base backup PostgreSQL
    /// compressed, `BASE_BACKUP ... COMPRESSION 'zstd'`), kept as it is: the chunks hold the
    /// compressed bytes with their checksum, and [`StreamDecoder`] gives the decompressed
    /// data. Returns the header to write first, as [`StreamEncoder::new`] does.
    pub fn carrying_zstd() -> (Self, Bytes) {
        let (mut encoder, _) = StreamEncoder::new(Compression::None);
        encoder.codec_id = CARRIED_ZSTD;
        let header = encoder.header();
        (encoder, header)
    }

    /// Adds `data`; returns the chunks it completed, to be written in order.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<Bytes> {
        let mut out = Vec::new();
        while !data.is_empty() {
            let take = (STREAM_CHUNK - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == STREAM_CHUNK {
                out.push(self.chunk());
            }
        }
        out
    }

    /// The data pushed so far.
    pub fn total(&self) -> u64 {
        self.total + self.pending.len() as u64
    }

    /// The last chunk (if data is pending), the end marker and the trailer.
    pub fn finish(mut self) -> Bytes {
        let mut out = BytesMut::new();
        if !self.pending.is_empty() {
            out.put_slice(&self.chunk());
        }
        out.put_slice(&[0u8; 12]);
        out.put_u64_le(self.total);
        out.put_u32_le(self.crc);
        out.freeze()
    }

    fn chunk(&mut self) -> Bytes {
        let data = std::mem::take(&mut self.pending);
        let payload: std::borrow::Cow<'_, [u8]> = match self.compression {
            Compression::None => data.as_slice().into(),
            Compression::Zstd(level) => {
                let zstd = match &mut self.zstd.0 {
                    Some(z) => z,
                    none => none.insert(
                        zstd::bulk::Compressor::new(level.clamp(1, MAX_ZSTD_LEVEL))
                            .expect("a zstd context at a checked level"),
                    ),
                };
                zstd.compress(&data)
                    .expect("zstd compresses any input held in memory")
                    .into()
            }
            Compression::Lz4 => lz4_flex::block::compress(&data).into(),
        };
        let mut out = BytesMut::with_capacity(12 + payload.len());
        // One pass over the data: the running checksum is combined from the chunk's.
        let crc = crc32c::crc32c(&data);
        out.put_u32_le(data.len() as u32);
        out.put_u32_le(payload.len() as u32);
        out.put_u32_le(crc);
        out.put_slice(&payload);
        self.total += data.len() as u64;
        self.crc = crc32c::crc32c_combine(self.crc, crc, data.len());
        self.pending = data;
        self.pending.clear();
        out.freeze()
    }
}

/// Reads a streamed object (see [`StreamEncoder`]) from `inner` and gives its data, checking
/// every chunk's checksum as it goes and, at the end, the total length and checksum. Every
/// failure is an [`std::io::Error`] of kind `InvalidData` whose inner error is a
/// [`CodecError`]; a stream that ends before the trailer is [`CodecError::Truncated`].
#[derive(Debug)]
pub struct StreamDecoder<R> {
    inner: R,
    codec: Option<u8>,
    data: Vec<u8>,
    at: usize,
    payload: Vec<u8>,
    read: u64,
    total: u64,
    crc: u32,
    done: bool,
    zstd: Zstd<zstd::bulk::Decompressor<'static>>,
    carried: Zstd<zstd::stream::raw::Decoder<'static>>,
    /// Whether the carried zstd stream's last frame ended (nothing of a frame is pending).
    frame_ended: bool,
}

impl<R: std::io::Read> StreamDecoder<R> {
    /// A decoder over `inner`; the header is read at the first read.
    pub fn new(inner: R) -> Self {
        StreamDecoder {
            inner,
            codec: None,
            data: Vec::new(),
            at: 0,
            payload: Vec::new(),
            read: 0,
            total: 0,
            crc: 0,
            done: false,
            zstd: Zstd(None),
            carried: Zstd(None),
            frame_ended: true,
        }
    }

    /// Reads exactly `buf.len()` bytes; an early end is [`CodecError::Truncated`].
    fn fill(&mut self, len: usize, into_payload: bool) -> std::io::Result<()> {
        let buf = if into_payload {
            &mut self.payload
        } else {
            &mut self.data
        };
        buf.clear();
        buf.resize(len, 0);
        let mut got = 0;
        while got < len {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => {
                    return Err(invalid(CodecError::Truncated {
                        needed: self.read + len as u64,
                        have: self.read + got as u64,
                    }))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.read += len as u64;
        Ok(())
    }

    fn header(&mut self) -> std::io::Result<u8> {
        self.fill(STREAM_HEADER_LEN, false)?;
        let h = &self.data;
        if h[..4] != STREAM_MAGIC {
            return Err(invalid(CodecError::BadMagic {
                found: h[..4].try_into().expect("four bytes"),
            }));
        }
        if h[4] != FORMAT_VERSION {
            return Err(invalid(CodecError::UnsupportedVersion { version: h[4] }));
        }
        if h[5] > CARRIED_ZSTD {
            return Err(invalid(CodecError::UnknownCodec { id: h[5] }));
        }
        let flags = u16::from_le_bytes([h[6], h[7]]);
        if flags != 0 {
            return Err(invalid(CodecError::UnknownFlags { flags }));
        }
        Ok(h[5])
    }

    /// Decodes the next chunk into `self.data`; `false` at the end (trailer checked).
    fn next_chunk(&mut self, codec: u8) -> std::io::Result<bool> {
        self.fill(12, false)?;
        let word = |i: usize, d: &[u8]| u32::from_le_bytes(d[i..i + 4].try_into().expect("4"));
        let (raw_len, payload_len, crc) = (
            word(0, &self.data),
            word(4, &self.data),
            word(8, &self.data),
        );
        if raw_len == 0 {
            if payload_len != 0 || crc != 0 {
                return Err(invalid(CodecError::BadLength {
                    declared: 0,
                    found: Some(u64::from(payload_len)),
                }));
            }
            self.fill(12, false)?;
            let total = u64::from_le_bytes(self.data[..8].try_into().expect("8"));
            let all_crc = word(8, &self.data);
            if total != self.total {
                return Err(invalid(CodecError::BadLength {
                    declared: total,
                    found: Some(self.total),
                }));
            }
            if all_crc != self.crc {
                return Err(invalid(CodecError::ChecksumMismatch {
                    declared: all_crc,
                    computed: self.crc,
                }));
            }
            let mut extra = [0u8; 1];
            loop {
                match self.inner.read(&mut extra) {
                    Ok(0) => break,
                    Ok(_) => return Err(invalid(CodecError::TrailingBytes { extra: 1 })),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(false);
        }
        if raw_len > MAX_STREAM_CHUNK || payload_len > MAX_STREAM_CHUNK + (MAX_STREAM_CHUNK >> 4) {
            return Err(invalid(CodecError::TooLarge {
                declared: u64::from(raw_len.max(payload_len)),
            }));
        }
        self.fill(payload_len as usize, true)?;
        let declared = u64::from(raw_len);
        let decompress_err = |detail: String| {
            invalid(CodecError::Decompress {
                codec: Compression::codec_name(codec),
                detail,
            })
        };
        let bad_length = |found| invalid(CodecError::BadLength { declared, found });
        self.data = match codec {
            // A carried stream's chunks hold its compressed bytes as they are.
            0 | CARRIED_ZSTD => {
                if payload_len != raw_len {
                    return Err(bad_length(Some(u64::from(payload_len))));
                }
                std::mem::take(&mut self.payload)
            }
            1 => {
                let zstd = match &mut self.zstd.0 {
                    Some(z) => z,
                    none => none.insert(zstd::bulk::Decompressor::new()?),
                };
                // Into the last chunk's buffer: no new allocation per chunk.
                let mut out = std::mem::take(&mut self.data);
                out.clear();
                out.reserve(raw_len as usize);
                zstd.decompress_to_buffer(&self.payload, &mut out)
                    .map_err(|e| decompress_err(e.to_string()))?;
                if out.len() != raw_len as usize {
                    return Err(bad_length(Some(out.len() as u64)));
                }
                out
            }
            _ => {
                let mut out = vec![0u8; raw_len as usize + 1];
                let n = match lz4_flex::block::decompress_into(&self.payload, &mut out) {
                    Ok(n) => n,
                    Err(lz4_flex::block::DecompressError::OutputTooSmall { .. }) => {
                        return Err(bad_length(None))
                    }
                    Err(e) => return Err(decompress_err(e.to_string())),
                };
                if n != raw_len as usize {
                    return Err(bad_length(Some(n as u64)));
                }
                out.truncate(n);
                out
            }
        };
        let computed = crc32c::crc32c(&self.data);
        if computed != crc {
            return Err(invalid(CodecError::ChecksumMismatch {
                declared: crc,
                computed,
            }));
        }
        self.total += declared;
        self.crc = crc32c::crc32c_combine(self.crc, computed, self.data.len());
        self.at = 0;
        Ok(true)
    }
}

impl<R: std::io::Read> StreamDecoder<R> {
    /// [`std::io::Read::read`] of a carried zstd stream: its chunks' bytes (checked as they
    /// come) through one zstd decoder. The stream must end where a zstd frame ends.
    fn read_carried(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
        let decompress_err = |detail: String| {
            invalid(CodecError::Decompress {
                codec: "zstd",
                detail,
            })
        };
        loop {
            let decoder = match &mut self.carried.0 {
                Some(d) => d,
                none => none.insert(zstd::stream::raw::Decoder::new()?),
            };
            let mut input = InBuffer::around(&self.data[self.at..]);
            let mut output = OutBuffer::around(buf);
            let hint = decoder
                .run(&mut input, &mut output)
                .map_err(|e| decompress_err(e.to_string()))?;
            let (used, made) = (input.pos(), output.pos());
            self.at += used;
            if used > 0 || made > 0 {
                // 0: a frame is complete and flushed.
                self.frame_ended = hint == 0;
            }
            if made > 0 {
                return Ok(made);
            }
            if self.at < self.data.len() {
                continue;
            }
            if self.done {
                if !self.frame_ended {
                    return Err(invalid(CodecError::Decompress {
                        codec: "zstd",
                        detail: "the carried zstd stream ends inside a frame".into(),
                    }));
                }
                return Ok(0);
            }
            self.data.clear();
            self.at = 0;
            if !self.next_chunk(CARRIED_ZSTD)? {
                // `data` held the trailer.
                self.data.clear();
                self.done = true;
            }
        }
    }
}

impl<R: std::io::Read> std::io::Read for StreamDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.codec == Some(CARRIED_ZSTD) && !buf.is_empty() {
            return self.read_carried(buf);
        }
        loop {
            if self.at < self.data.len() {
                let n = buf.len().min(self.data.len() - self.at);
                buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
                self.at += n;
                return Ok(n);
            }
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            let codec = match self.codec {
                Some(c) => c,
                None => {
                    let c = self.header()?;
                    self.codec = Some(c);
                    if c == CARRIED_ZSTD {
                        // `data` held the header: no chunk is read yet.
                        self.data.clear();
                        self.at = 0;
                        return self.read_carried(buf);
                    }
                    c
                }
            };
            self.data.clear();
            if !self.next_chunk(codec)? {
                self.data.clear();
                self.done = true;
            }
        }
    }
}

fn invalid(e: CodecError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 4] = [
        Compression::None,
        Compression::Zstd(1),
        Compression::Zstd(19),
        Compression::Lz4,
    ];

    /// Data that compresses somewhat, like WAL: runs and counters.
    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| {
                if i % 512 < 300 {
                    0
                } else {
                    (i / 7 % 251) as u8
                }
            })
            .collect()
    }

    #[test]
    fn round_trips_every_codec() {
        for c in ALL {
            for len in [0, 1, 100, 16 << 20] {
                if len == 16 << 20 && c == Compression::Zstd(19) {
                    continue; // slow, and level 1 covers the code path
                }
                let data = sample(len);
                let frame = encode(c, &data);
                assert_eq!(&frame[..4], b"CRFR");
                assert_eq!(frame[5], c.id());
                assert_eq!(decode(&frame).unwrap(), data, "{c} {len}");
                if len == 16 << 20 && c != Compression::None {
                    assert!(frame.len() < len / 2, "{c} compresses: {}", frame.len());
                }
            }
        }
    }

    fn set_u64(frame: &mut [u8], at: usize, v: u64) {
        frame[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn every_corruption_is_named() {
        for c in [Compression::None, Compression::Zstd(1), Compression::Lz4] {
            let data = sample(100_000);
            let good = encode(c, &data).to_vec();
            let check = |frame: &[u8], want: &dyn Fn(&CodecError) -> bool, what: &str| {
                let e = decode(frame).expect_err(what);
                assert!(want(&e), "{c}, {what}: got {e:?}");
                assert!(!e.to_string().is_empty());
            };
            let mut f = good.clone();
            f[0] = b'X';
            check(&f, &|e| matches!(e, CodecError::BadMagic { .. }), "magic");
            check(
                &b"PK\x03\x04 not a frame"[..],
                &|e| matches!(e, CodecError::BadMagic { .. }),
                "zip",
            );
            check(
                &good[..10],
                &|e| matches!(e, CodecError::Truncated { .. }),
                "short header",
            );
            check(&[], &|e| matches!(e, CodecError::Truncated { .. }), "empty");
            check(
                &good[..good.len() - 1],
                &|e| matches!(e, CodecError::Truncated { .. }),
                "cut",
            );
            let mut f = good.clone();
            f.push(0);
            check(
                &f,
                &|e| matches!(e, CodecError::TrailingBytes { extra: 1 }),
                "trailing",
            );
            let mut f = good.clone();
            f[4] = 2;
            check(
                &f,
                &|e| matches!(e, CodecError::UnsupportedVersion { version: 2 }),
                "version",
            );
            let mut f = good.clone();
            f[5] = 9;
            check(
                &f,
                &|e| matches!(e, CodecError::UnknownCodec { id: 9 }),
                "codec",
            );
            let mut f = good.clone();
            f[6] = 1;
            check(
                &f,
                &|e| matches!(e, CodecError::UnknownFlags { .. }),
                "flags",
            );
            let mut f = good.clone();
            set_u64(&mut f, 8, data.len() as u64 - 1);
            check(
                &f,
                &|e| matches!(e, CodecError::BadLength { .. }),
                "length smaller",
            );
            let mut f = good.clone();
            set_u64(&mut f, 8, data.len() as u64 + 1);
            check(
                &f,
                &|e| matches!(e, CodecError::BadLength { .. }),
                "length larger",
            );
            let mut f = good.clone();
            set_u64(&mut f, 8, u64::MAX);
            check(&f, &|e| matches!(e, CodecError::TooLarge { .. }), "huge");
            let mut f = good.clone();
            f[24] ^= 1;
            check(
                &f,
                &|e| matches!(e, CodecError::ChecksumMismatch { .. }),
                "crc",
            );
            // A flipped payload bit: the codec or the checksum catches it, never silence.
            for at in [HEADER_LEN, HEADER_LEN + 40, good.len() / 2, good.len() - 1] {
                let mut f = good.clone();
                f[at] ^= 0x10;
                check(
                    &f,
                    &|e| {
                        matches!(
                            e,
                            CodecError::ChecksumMismatch { .. }
                                | CodecError::Decompress { .. }
                                | CodecError::BadLength { .. }
                        )
                    },
                    "payload bit",
                );
            }
        }
        // The data itself damaged where no codec can notice: only the checksum can.
        let mut f = encode(Compression::None, b"hello").to_vec();
        f[HEADER_LEN] = b'j';
        assert!(matches!(
            decode(&f),
            Err(CodecError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn parses_compression_names() {
        for (text, c) in [
            ("none", Compression::None),
            ("zstd", Compression::Zstd(1)),
            ("zstd:1", Compression::Zstd(1)),
            ("zstd:19", Compression::Zstd(19)),
            ("lz4", Compression::Lz4),
        ] {
            assert_eq!(text.parse::<Compression>().unwrap(), c);
            assert_eq!(c.to_string().parse::<Compression>().unwrap(), c);
        }
        for bad in [
            "zstd:0", "zstd:20", "zstd:-1", "zstd:", "zstd:x", "gzip", "ZSTD", "",
        ] {
            let e = bad.parse::<Compression>().unwrap_err();
            assert!(
                e.contains("\"zstd:N\"") && e.contains("\"lz4\""),
                "{bad}: {e}"
            );
        }
        assert_eq!(Compression::default(), Compression::Zstd(1));
        assert_eq!(Compression::Zstd(3).suffix(), ".zst");
        assert_eq!(Compression::Lz4.suffix(), ".lz4");
        assert_eq!(Compression::None.suffix(), "");
    }

    fn stream_encode(c: Compression, data: &[u8], piece: usize) -> Vec<u8> {
        let (mut enc, header) = StreamEncoder::new(c);
        let mut out = header.to_vec();
        for part in data.chunks(piece.max(1)) {
            for chunk in enc.push(part) {
                out.extend_from_slice(&chunk);
            }
        }
        assert_eq!(enc.total(), data.len() as u64);
        out.extend_from_slice(&enc.finish());
        out
    }

    fn stream_decode(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut StreamDecoder::new(bytes), &mut out)?;
        Ok(out)
    }

    fn codec_error(e: std::io::Error) -> CodecError {
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
        e.into_inner()
            .and_then(|i| i.downcast::<CodecError>().ok())
            .map(|b| *b)
            .expect("a codec error inside")
    }

    #[test]
    fn streams_round_trip_every_codec() {
        for c in [Compression::None, Compression::Zstd(1), Compression::Lz4] {
            for len in [0, 1, STREAM_CHUNK - 1, STREAM_CHUNK, 3 * STREAM_CHUNK + 17] {
                let data = sample(len);
                let encoded = stream_encode(c, &data, 70_000);
                assert_eq!(&encoded[..4], b"CRST");
                assert_eq!(stream_decode(&encoded).unwrap(), data, "{c} {len}");
                if len > STREAM_CHUNK && c != Compression::None {
                    assert!(encoded.len() < len / 2, "{c} compresses");
                }
            }
        }
    }

    #[test]
    fn stream_corruption_is_named() {
        for c in [Compression::None, Compression::Zstd(1), Compression::Lz4] {
            let data = sample(2 * STREAM_CHUNK + 5);
            let good = stream_encode(c, &data, STREAM_CHUNK);
            // Cut anywhere (header, inside a chunk, before the trailer): truncated.
            for cut in [3, STREAM_HEADER_LEN + 5, good.len() / 2, good.len() - 1] {
                let e = codec_error(stream_decode(&good[..cut]).unwrap_err());
                assert!(
                    matches!(e, CodecError::Truncated { .. }),
                    "{c} cut {cut}: {e:?}"
                );
            }
            // A flipped byte anywhere in the data is caught.
            for at in [STREAM_HEADER_LEN + 12, good.len() / 2, good.len() - 20] {
                let mut bad = good.clone();
                bad[at] ^= 0x40;
                let e = codec_error(stream_decode(&bad).unwrap_err());
                assert!(!e.to_string().is_empty(), "{c} at {at}");
            }
            let mut bad = good.clone();
            bad.push(0);
            assert!(matches!(
                codec_error(stream_decode(&bad).unwrap_err()),
                CodecError::TrailingBytes { .. }
            ));
            let mut bad = good.clone();
            bad[0] = b'X';
            assert!(matches!(
                codec_error(stream_decode(&bad).unwrap_err()),
                CodecError::BadMagic { .. }
            ));
            // A whole chunk dropped: the total length and checksum in the trailer catch it.
            let first_chunk_end = {
                let raw = &good[STREAM_HEADER_LEN + 4..STREAM_HEADER_LEN + 8];
                STREAM_HEADER_LEN + 12 + u32::from_le_bytes(raw.try_into().unwrap()) as usize
            };
            let mut dropped = good[..STREAM_HEADER_LEN].to_vec();
            dropped.extend_from_slice(&good[first_chunk_end..]);
            assert!(matches!(
                codec_error(stream_decode(&dropped).unwrap_err()),
                CodecError::BadLength { .. }
            ));
        }
    }

    /// `compressed` carried in a stream, pushed `piece` bytes at a time.
    fn carry(compressed: &[u8], piece: usize) -> Vec<u8> {
        let (mut enc, header) = StreamEncoder::carrying_zstd();
        let mut out = header.to_vec();
        for part in compressed.chunks(piece.max(1)) {
            for chunk in enc.push(part) {
                out.extend_from_slice(&chunk);
            }
        }
        out.extend_from_slice(&enc.finish());
        out
    }

    #[test]
    fn a_carried_zstd_stream_decodes_to_its_data() {
        for len in [0, 1, STREAM_CHUNK + 3, 5 * STREAM_CHUNK] {
            let data = sample(len);
            let compressed = zstd::encode_all(&data[..], 1).unwrap();
            for piece in [1000, STREAM_CHUNK, 3 * STREAM_CHUNK] {
                let carried = carry(&compressed, piece);
                assert_eq!(carried[5], CARRIED_ZSTD);
                assert_eq!(stream_decode(&carried).unwrap(), data, "{len} by {piece}");
            }
        }
        // Two frames one after the other (a server that flushed), read a byte at a time.
        let data = sample(3 * STREAM_CHUNK);
        let mut compressed = zstd::encode_all(&data[..STREAM_CHUNK], 1).unwrap();
        compressed.extend(zstd::encode_all(&data[STREAM_CHUNK..], 3).unwrap());
        let carried = carry(&compressed, 70_000);
        let mut decoder = StreamDecoder::new(&carried[..]);
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        while std::io::Read::read(&mut decoder, &mut byte).unwrap() == 1 {
            out.push(byte[0]);
            if out.len() == 1000 {
                // The rest in one go.
                std::io::Read::read_to_end(&mut decoder, &mut out).unwrap();
                break;
            }
        }
        assert_eq!(out, data);
    }

    #[test]
    fn a_carried_zstd_stream_cut_or_damaged_is_refused() {
        let data = sample(2 * STREAM_CHUNK);
        let compressed = zstd::encode_all(&data[..], 1).unwrap();
        // The container complete, the zstd stream cut inside its frame.
        let cut = carry(&compressed[..compressed.len() - 10], STREAM_CHUNK);
        let e = codec_error(stream_decode(&cut).unwrap_err());
        assert!(matches!(e, CodecError::Decompress { .. }), "{e:?}");
        // Cut between two frames' blocks: the decoder waits for more, and none comes.
        let mut two = zstd::encode_all(&data[..STREAM_CHUNK], 1).unwrap();
        let second = zstd::encode_all(&data[STREAM_CHUNK..], 1).unwrap();
        two.extend_from_slice(&second[..6]);
        let e = codec_error(stream_decode(&carry(&two, STREAM_CHUNK)).unwrap_err());
        assert!(e.to_string().contains("inside a frame"), "{e}");
        // A flipped byte in the carried bytes: its chunk's checksum.
        let good = carry(&compressed, 70_000);
        let mut bad = good.clone();
        bad[STREAM_HEADER_LEN + 12 + 100] ^= 0x10;
        assert!(matches!(
            codec_error(stream_decode(&bad).unwrap_err()),
            CodecError::ChecksumMismatch { .. }
        ));
        // The container cut short.
        let e = codec_error(stream_decode(&good[..good.len() - 3]).unwrap_err());
        assert!(matches!(e, CodecError::Truncated { .. }), "{e:?}");
        // Not zstd at all.
        let e = codec_error(stream_decode(&carry(&sample(5000), 1000)).unwrap_err());
        assert!(matches!(e, CodecError::Decompress { .. }), "{e:?}");
    }
}
