//! Seeding a spool with WAL restore-start's pre-flight read ([`crate::wal::ProvenSegment`]):
//! the tool sends the repository objects on the stdin of `archive-get-prefetch`, which runs as
//! the servers' user with the spool's lock and stores each one as the worker would have, so
//! the worker it starts next finds them there and fetches only the rest of its window.
//!
//! The stream is, for each segment, a line `<segment> <frame bytes>\n` and the frame; then the
//! end of the stream. Every frame is decoded (its checksum checked) before it is stored, and
//! only segments of the recorded window are taken.

use std::io::{BufRead, Read};

use super::{store, window_segments, SpoolLock};
use crate::error::{Error, Result};
use crate::repository::codec;
use crate::wal::ProvenSegment;

/// The line that announces `segment` on the stream.
pub fn seed_header(segment: &ProvenSegment) -> String {
    format!("{} {}\n", segment.name, segment.frame.len())
}

/// Reads segments from `input` (as [`seed_header`] and the frame send them) into the spool
/// `lock` holds, each decoded and checksum-checked; only segments of the window `first` and the
/// `count - 1` after it (of `segment_size` bytes) are taken. Returns how many it stored. A malformed stream, a segment outside the window or a damaged
/// frame is an error: the worker fetches whatever is missing.
pub fn seed_spool(
    lock: &SpoolLock,
    first: &str,
    count: usize,
    segment_size: u64,
    input: impl Read,
) -> Result<usize> {
    let bad = |problem: String| Error::InvalidArgument {
        what: "proven WAL on stdin",
        value: String::new(),
        problem,
    };
    let window = window_segments(first, count, segment_size)
        .ok_or_else(|| bad(format!("{first} is not a WAL segment name")))?;
    let mut input = std::io::BufReader::new(input);
    let mut stored = 0;
    loop {
        let mut line = String::new();
        let read = (&mut input)
            .take(128)
            .read_line(&mut line)
            .map_err(|e| bad(format!("cannot read it: {e}")))?;
        if read == 0 {
            return Ok(stored);
        }
        let (name, len) = line
            .trim_end_matches('\n')
            .split_once(' ')
            .and_then(|(n, l)| Some((n.to_string(), l.parse::<u64>().ok()?)))
            .ok_or_else(|| bad(format!("{line:?} is not `<segment> <length>`")))?;
        if !window.contains(&name) {
            return Err(bad(format!("{name} is not in the window {window:?}")));
        }
        if len > codec::HEADER_LEN as u64 + codec::MAX_DATA_LEN {
            return Err(bad(format!(
                "{name}: {len} bytes is more than a frame holds"
            )));
        }
        let mut frame = Vec::with_capacity(len as usize);
        (&mut input)
            .take(len)
            .read_to_end(&mut frame)
            .map_err(|e| bad(format!("cannot read {name}: {e}")))?;
        if frame.len() as u64 != len {
            return Err(bad(format!(
                "{name} ends after {} of {len} bytes",
                frame.len()
            )));
        }
        let data = codec::decode(&frame).map_err(|e| bad(format!("{name}: {e}")))?;
        store(&lock.dir, &name, &data)?;
        stored += 1;
    }
}
