//! Timeline history files (`<TLI>.history`, `timeline.c` in PostgreSQL) and the choice of the
//! timeline each segment is read from.
//!
//! The history file of timeline N lists its ancestors, oldest first, one per line:
//! `parentTLI<TAB>switchpoint<TAB>reason`, where the switch point is the LSN at which the parent
//! timeline ended and the next one began. Lines that are empty or start with `#` are skipped.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::WalError;
use super::lsn::{Lsn, SegNo, TimeLineId};
use super::source::{FolderSource, WalSource};

/// One ancestor of a timeline and where it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineSwitch {
    /// The ancestor timeline.
    pub timeline: TimeLineId,
    /// The LSN where it ended and the next timeline (the next entry's, or the history's own)
    /// began.
    pub switch_point: Lsn,
    /// The reason PostgreSQL wrote (`no recovery target specified`, `at restore point "x"`...).
    pub reason: String,
}

/// The history of a timeline: its ancestors with their switch points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineHistory {
    /// The timeline this history leads to.
    pub timeline: TimeLineId,
    /// Its ancestors, oldest first; empty for a timeline that branched from nothing (timeline 1).
    pub switches: Vec<TimelineSwitch>,
}

impl TimelineHistory {
    /// A timeline with no ancestors.
    pub fn new(timeline: TimeLineId) -> TimelineHistory {
        TimelineHistory {
            timeline,
            switches: Vec::new(),
        }
    }

    /// Parses the contents of the history file of `timeline`; `path` is only used in errors.
    pub fn parse(
        timeline: TimeLineId,
        text: &str,
        path: &Path,
    ) -> Result<TimelineHistory, WalError> {
        let mut switches: Vec<TimelineSwitch> = Vec::new();
        let err = |line: usize, problem: String| WalError::InvalidHistory {
            path: path.to_path_buf(),
            line,
            problem,
        };
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let mut fields = trimmed.splitn(3, char::is_whitespace);
            let tli: TimeLineId = fields
                .next()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| err(i + 1, "expected a numeric timeline ID".into()))?;
            let switch_point: Lsn =
                fields.next().and_then(|l| l.parse().ok()).ok_or_else(|| {
                    err(
                        i + 1,
                        "expected a switch point LSN after the timeline".into(),
                    )
                })?;
            if switches.last().is_some_and(|s| tli <= s.timeline) {
                return Err(err(
                    i + 1,
                    "timeline IDs must be in increasing sequence".into(),
                ));
            }
            if switches
                .last()
                .is_some_and(|s| switch_point < s.switch_point)
            {
                return Err(err(i + 1, "switch points must not decrease".into()));
            }
            let reason = fields.next().unwrap_or("").trim().to_string();
            switches.push(TimelineSwitch {
                timeline: tli,
                switch_point,
                reason,
            });
        }
        if switches.last().is_some_and(|s| s.timeline >= timeline) {
            return Err(err(
                0,
                format!("ancestor timelines must be below {timeline}"),
            ));
        }
        Ok(TimelineHistory { timeline, switches })
    }

    /// Reads a `<TLI>.history` file; the timeline comes from its name.
    pub fn read_file(path: &Path) -> Result<TimelineHistory, WalError> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let timeline = name
            .as_deref()
            .and_then(super::segment::history_file_timeline)
            .ok_or_else(|| WalError::InvalidHistory {
                path: path.to_path_buf(),
                line: 0,
                problem: "the file name is not <8 hex digits>.history".into(),
            })?;
        let text = super::segment::read_text(path)?;
        TimelineHistory::parse(timeline, &text, path)
    }

    /// The history of `timeline` from the archive folder `dir`: its `.history` file, or no
    /// ancestors for timeline 1 (which never has one).
    pub fn load(dir: &Path, timeline: TimeLineId) -> Result<TimelineHistory, WalError> {
        TimelineHistory::load_in(&FolderSource::new(dir), timeline)
    }

    /// [`TimelineHistory::load`] from any [`WalSource`]. Timeline 1 has no history file: the
    /// source is not asked (PostgreSQL's `readTimeLineHistory` does not look either; against an
    /// object store that is a request saved per node and check).
    pub fn load_in(
        source: &dyn WalSource,
        timeline: TimeLineId,
    ) -> Result<TimelineHistory, WalError> {
        if timeline == 1 {
            return Ok(TimelineHistory::new(1));
        }
        let name = format!("{timeline:08X}.history");
        if source.exists(&name)? {
            let text = source.read_text(&name)?;
            TimelineHistory::parse(timeline, &text, &source.path_of(&name))
        } else {
            Err(WalError::MissingHistory {
                dir: source.location(),
                timeline,
            })
        }
    }

    /// Every timeline of the history with the LSN where it began, newest first (the first one
    /// begins at 0/0).
    pub fn timelines(&self) -> Vec<(TimeLineId, Lsn)> {
        let mut out = vec![(
            self.timeline,
            self.switches
                .last()
                .map_or(Lsn::INVALID, |s| s.switch_point),
        )];
        for (i, s) in self.switches.iter().enumerate().rev() {
            let begin = if i == 0 {
                Lsn::INVALID
            } else {
                self.switches[i - 1].switch_point
            };
            out.push((s.timeline, begin));
        }
        out
    }

    /// Whether `timeline` is this history's timeline or one of its ancestors.
    pub fn contains(&self, timeline: TimeLineId) -> bool {
        timeline == self.timeline || self.switches.iter().any(|s| s.timeline == timeline)
    }

    /// The timeline the WAL at `lsn` belongs to (`tliOfPointInHistory`): the first ancestor
    /// whose switch point is after `lsn`, else the history's own timeline.
    pub fn timeline_of(&self, lsn: Lsn) -> TimeLineId {
        self.switches
            .iter()
            .find(|s| lsn < s.switch_point)
            .map_or(self.timeline, |s| s.timeline)
    }

    /// The timeline whose file holds segment `segno`, the way recovery picks it
    /// (`XLogFileReadAnyTLI`): the newest timeline that began in this segment or before.
    ///
    /// So the segment in which a timeline branched off is read from the new timeline (its copy
    /// holds the parent's WAL up to the switch point), and every segment before it from the
    /// parent (or an older ancestor).
    pub fn timeline_for_segment(&self, segno: SegNo, seg_size: u64) -> TimeLineId {
        self.timelines()
            .into_iter()
            .find(|&(_, begin)| begin.segment(seg_size) <= segno)
            .map_or(self.timeline, |(tli, _)| tli)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 16 << 20;

    fn h3() -> TimelineHistory {
        let text = "1\t0/3000158\tno recovery target specified\n\n# comment\n2\t0/5000000\tat restore point \"a b\"\n";
        TimelineHistory::parse(3, text, Path::new("00000003.history")).unwrap()
    }

    #[test]
    fn parses_history_files() {
        let h = h3();
        assert_eq!(h.switches.len(), 2);
        assert_eq!(h.switches[0].timeline, 1);
        assert_eq!(h.switches[0].switch_point, Lsn(0x3000158));
        assert_eq!(h.switches[0].reason, "no recovery target specified");
        assert_eq!(h.switches[1].reason, "at restore point \"a b\"");
        assert_eq!(
            h.timelines(),
            vec![(3, Lsn(0x5000000)), (2, Lsn(0x3000158)), (1, Lsn(0))]
        );
        assert!(h.contains(1) && h.contains(3) && !h.contains(4));
        let p = Path::new("x.history");
        for bad in ["x\t0/1\n", "1\n", "1\tzz\n", "2\t0/1\n1\t0/2\n", "5\t0/1\n"] {
            let e = TimelineHistory::parse(3, bad, p).unwrap_err();
            assert!(e.to_string().contains("x.history"), "{e}");
        }
        assert_eq!(
            TimelineHistory::parse(1, "", p).unwrap(),
            TimelineHistory::new(1)
        );
    }

    #[test]
    fn picks_timelines() {
        let h = h3();
        assert_eq!(h.timeline_of(Lsn(0x3000157)), 1);
        assert_eq!(h.timeline_of(Lsn(0x3000158)), 2);
        assert_eq!(h.timeline_of(Lsn(0x4FFFFFF)), 2);
        assert_eq!(h.timeline_of(Lsn(0x5000000)), 3);
        assert_eq!(h.timeline_for_segment(2, SEG), 1);
        // The segment where timeline 2 began comes from timeline 2.
        assert_eq!(h.timeline_for_segment(3, SEG), 2);
        assert_eq!(h.timeline_for_segment(4, SEG), 2);
        assert_eq!(h.timeline_for_segment(5, SEG), 3);
        assert_eq!(h.timeline_for_segment(9, SEG), 3);
        assert_eq!(TimelineHistory::new(1).timeline_for_segment(7, SEG), 1);
    }

    #[test]
    fn loads_from_an_archive() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            TimelineHistory::load(dir.path(), 1).unwrap(),
            TimelineHistory::new(1)
        );
        let e = TimelineHistory::load(dir.path(), 2).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("00000002.history is missing from"),
            "{e}"
        );
        std::fs::write(
            dir.path().join("00000002.history"),
            "1\t0/3000158\tpromoted\n",
        )
        .unwrap();
        let h = TimelineHistory::load(dir.path(), 2).unwrap();
        assert_eq!(h.timeline, 2);
        assert_eq!(h.switches[0].switch_point, Lsn(0x3000158));
        // Timeline 1 never has a history file: one of that name is not even read.
        std::fs::write(dir.path().join("00000001.history"), "not a history\n").unwrap();
        assert_eq!(
            TimelineHistory::load(dir.path(), 1).unwrap(),
            TimelineHistory::new(1)
        );
    }
}
