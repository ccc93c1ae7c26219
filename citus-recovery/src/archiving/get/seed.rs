//! Seeding a spool with WAL restore-start's pre-flight read ([`crate::wal::ProvenSegment`]):
//! the tool sends the repository objects on the stdin of `archive-get-prefetch`, which runs as
//! the servers' user and hands its stdin, with the spool's lock, to the worker it starts. The
//! worker reads them all, stores each one as if it had fetched it, and then fetches only the
//! rest of its window. The server starts meanwhile: its first archive-get waits for the worker
//! as for any segment of the worker's window.
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
/// `count - 1` after it (of `segment_size` bytes) are taken. The whole stream is read before
/// the first segment is decoded, so the sender is not kept waiting. Returns how many it stored.
/// A malformed stream, a segment outside the window or a damaged frame is an error (what was
/// stored before it stays): the worker fetches whatever is missing.
pub fn seed_spool(
    lock: &SpoolLock,
    first: &str,
    count: usize,
    segment_size: u64,
    input: impl Read,
) -> Result<usize> {
    let window =
        window_segments(first, count, segment_size).ok_or_else(|| Error::InvalidArgument {
            what: "prefetch window",
            value: first.to_string(),
            problem: "is not a WAL segment name".into(),
        })?;
    let mut stored = 0;
    for segment in read_seeds(&window, input)? {
        let data =
            codec::decode(&segment.frame).map_err(|e| bad(format!("{}: {e}", segment.name)))?;
        store(&lock.dir, &segment.name, &data)?;
        stored += 1;
    }
    Ok(stored)
}

fn bad(problem: String) -> Error {
    Error::InvalidArgument {
        what: "proven WAL on stdin",
        value: String::new(),
        problem,
    }
}

/// Every segment on `input` until its end, each one of `window`.
fn read_seeds(window: &[String], input: impl Read) -> Result<Vec<ProvenSegment>> {
    let mut input = std::io::BufReader::new(input);
    let mut segments = Vec::new();
    loop {
        let mut line = String::new();
        let read = (&mut input)
            .take(128)
            .read_line(&mut line)
            .map_err(|e| bad(format!("cannot read it: {e}")))?;
        if read == 0 {
            return Ok(segments);
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
        // Grown as it is read: a header's length alone never sizes an allocation.
        let mut frame = Vec::new();
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
        segments.push(ProvenSegment {
            name,
            frame: frame.into(),
        });
    }
}
