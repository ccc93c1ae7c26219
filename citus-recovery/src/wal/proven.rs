//! WAL a pre-flight proved, kept for the restore that follows: restore-start reads every node's
//! WAL from the backup's start to the restore point before it changes anything, and the first
//! segments of that read are the ones replay asks for first. Kept as the repository's objects
//! (compressed frames, their checksums checked when they were decoded), they are handed to the
//! node's archive-get spool instead of being fetched again: half the WAL requests and bytes of
//! a restore's first window, and replay starts on the very bytes the proof read.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

/// How many bytes of frames one pre-flight keeps at most, over all nodes: beyond it, the
/// segments are fetched again by the prefetch worker as before (a large cluster, or large
/// segments, never holds more than this in memory).
pub const PROVEN_WAL_BUDGET: u64 = 256 << 20;

/// One WAL segment as stored in the repository: a codec frame whose checksum was checked when
/// the proof decoded it.
#[derive(Clone, PartialEq, Eq)]
pub struct ProvenSegment {
    /// The segment's file name (`000000010000000000000017`).
    pub name: String,
    /// The repository object's bytes: a [`crate::repository::codec`] frame.
    pub frame: Bytes,
}

impl std::fmt::Debug for ProvenSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvenSegment")
            .field("name", &self.name)
            .field("frame_bytes", &self.frame.len())
            .finish()
    }
}

/// The bytes of frames still allowed to be kept, shared by every node's source of one
/// pre-flight.
#[derive(Debug)]
pub struct FrameBudget {
    left: AtomicU64,
}

impl FrameBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: u64) -> Self {
        FrameBudget {
            left: AtomicU64::new(bytes),
        }
    }

    /// Takes `bytes` from the budget; false (nothing taken) when fewer are left.
    pub fn take(&self, bytes: u64) -> bool {
        self.left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(bytes)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_gives_what_it_has_and_no_more() {
        let budget = FrameBudget::new(10);
        assert!(budget.take(6));
        assert!(!budget.take(5), "only 4 left");
        assert!(budget.take(4));
        assert!(!budget.take(1));
        assert!(budget.take(0));
    }
}
