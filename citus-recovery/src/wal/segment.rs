//! The files of a WAL archive folder: segments, `.partial` segments, `.history` and `.backup`
//! files.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use super::error::WalError;
use super::lsn::{
    parse_segment_file_name, segno_file_name, split_segment_file_name, SegNo, TimeLineId,
    DEFAULT_SEGMENT_SIZE, SEGMENT_FILE_NAME_LEN,
};
use super::page::{LongPageHeader, PageHeader, LONG_PAGE_HEADER_SIZE, XLOG_PAGE_MAGIC};
use super::source::{FolderSource, WalSource};

/// One WAL segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRef {
    /// The timeline in its name.
    pub timeline: TimeLineId,
    /// Its segment number.
    pub segno: SegNo,
    /// Where it is.
    pub path: PathBuf,
}

impl SegmentRef {
    /// The file name (`000000010000000000000003`), from the path.
    pub fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// Opens `path` for reading the way every file of an archive is opened: without following a
/// symbolic link in its last component (`O_NOFOLLOW`) and without blocking on a FIFO
/// (`O_NONBLOCK`), and only when it is a regular file. Returns the file and its size.
///
/// The archive folder is written by the `postgres` user while this library may run as root: a
/// link planted there must never make root read another file.
pub fn open_regular(path: &Path) -> Result<(File, u64), WalError> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(nix::libc::ELOOP) {
                WalError::NotRegularFile {
                    path: path.to_path_buf(),
                    kind: "a symbolic link".into(),
                }
            } else {
                WalError::io(path, e)
            }
        })?;
    let meta = file.metadata().map_err(|e| WalError::io(path, e))?;
    if !meta.is_file() {
        return Err(WalError::NotRegularFile {
            path: path.to_path_buf(),
            kind: if meta.is_dir() {
                "a folder".into()
            } else {
                "a special file".into()
            },
        });
    }
    Ok((file, meta.len()))
}

/// Reads a small text file (a `.history` or `.backup` file) with [`open_regular`].
pub fn read_text(path: &Path) -> Result<String, WalError> {
    let (mut file, _) = open_regular(path)?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| WalError::io(path, e))?;
    Ok(text)
}

/// Reads and checks the long page header at the start of a segment file.
pub fn read_long_header(path: &Path) -> Result<LongPageHeader, WalError> {
    let mut buf = [0u8; LONG_PAGE_HEADER_SIZE];
    let (mut file, _) = open_regular(path)?;
    file.read_exact(&mut buf)
        .map_err(|e| WalError::io(path, e))?;
    parse_long_header(&buf, path)
}

/// Checks the first 40 bytes of a segment (`path` names it in errors).
pub(crate) fn parse_long_header(
    buf: &[u8; LONG_PAGE_HEADER_SIZE],
    path: &Path,
) -> Result<LongPageHeader, WalError> {
    let invalid = |problem: String| WalError::InvalidSegmentSize {
        path: path.to_path_buf(),
        problem,
    };
    let header = PageHeader::parse(buf).expect("40 bytes");
    if header.magic != XLOG_PAGE_MAGIC {
        return Err(WalError::BadPageMagic {
            path: path.to_path_buf(),
            offset: 0,
            lsn: header.page_addr,
            found: header.magic,
        });
    }
    let long = header
        .long
        .ok_or_else(|| invalid("the first page has no long header".into()))?;
    long.check_sizes().map_err(invalid)?;
    Ok(long)
}

/// What is in an archive folder, by kind. Other files (compressed segments, temporary files of
/// the archiver, anything else) are listed in `ignored`, and so are symbolic links and other
/// entries that are not regular files, whatever their name: they are never read (a segment
/// that is a link counts as missing).
#[derive(Debug, Clone, Default)]
pub struct ArchiveListing {
    /// The folder.
    pub dir: PathBuf,
    /// The WAL segment size: from the options, else from the first segment's long header, else
    /// 16 MiB when there are no segments.
    pub seg_size: u64,
    /// Complete segment files by (timeline, segment number).
    pub segments: BTreeMap<(TimeLineId, SegNo), PathBuf>,
    /// `<segment>.partial` files: the last, incomplete segment of a timeline that a promotion
    /// ended. PostgreSQL recovery never reads them, so neither does this reader.
    pub partial: Vec<SegmentRef>,
    /// `<TLI>.history` files by timeline.
    pub histories: BTreeMap<TimeLineId, PathBuf>,
    /// `<segment>.<offset>.backup` files (backup history files).
    pub backups: Vec<PathBuf>,
    /// Everything else.
    pub ignored: Vec<PathBuf>,
}

impl ArchiveListing {
    /// Lists the archive folder `dir`. `seg_size` is the segment size when known; otherwise it
    /// is read from the newest segment file.
    pub fn read(dir: &Path, seg_size: Option<u64>) -> Result<ArchiveListing, WalError> {
        ArchiveListing::read_in(&FolderSource::new(dir), seg_size)
    }

    /// Lists `source`, as [`ArchiveListing::read`] lists a folder. Paths are
    /// [`WalSource::path_of`] the names (`dir` is [`WalSource::location`]).
    pub fn read_in(
        source: &dyn WalSource,
        seg_size: Option<u64>,
    ) -> Result<ArchiveListing, WalError> {
        let listed = source.list()?;
        let mut names = listed.files;
        names.sort();
        let seg_size = match seg_size {
            Some(s) => s,
            None => detect_segment_size(source, &names)?,
        };
        let mut listing = ArchiveListing {
            dir: source.location(),
            seg_size,
            ignored: listed
                .unreadable
                .iter()
                .map(|n| source.path_of(n))
                .collect(),
            ..ArchiveListing::default()
        };
        for name in names {
            let path = source.path_of(&name);
            if let Some((tli, segno)) = parse_segment_file_name(&name, seg_size) {
                listing.segments.insert((tli, segno), path);
            } else if let Some(seg) = name
                .strip_suffix(".partial")
                .and_then(|n| parse_segment_file_name(n, seg_size))
            {
                listing.partial.push(SegmentRef {
                    timeline: seg.0,
                    segno: seg.1,
                    path,
                });
            } else if let Some(tli) = history_file_timeline(&name) {
                listing.histories.insert(tli, path);
            } else if is_backup_history_name(&name) {
                listing.backups.push(path);
            } else {
                listing.ignored.push(path);
            }
        }
        Ok(listing)
    }

    /// The complete segment `segno` of timeline `timeline`, if archived.
    pub fn segment(&self, timeline: TimeLineId, segno: SegNo) -> Option<SegmentRef> {
        self.segments
            .get(&(timeline, segno))
            .map(|path| SegmentRef {
                timeline,
                segno,
                path: path.clone(),
            })
    }

    /// The file name segment `segno` of `timeline` has (whether or not it is archived).
    pub fn file_name(&self, timeline: TimeLineId, segno: SegNo) -> String {
        segno_file_name(timeline, segno, self.seg_size)
    }

    /// Timelines with complete segments, ascending.
    pub fn segment_timelines(&self) -> Vec<TimeLineId> {
        let mut t: Vec<TimeLineId> = self.segments.keys().map(|k| k.0).collect();
        t.dedup();
        t
    }

    /// The highest timeline that has a segment or a history file (what PostgreSQL's
    /// `recovery_target_timeline = 'latest'` would pick), or `None` for an empty archive.
    pub fn latest_timeline(&self) -> Option<TimeLineId> {
        let seg = self.segments.keys().map(|k| k.0).max();
        let hist = self.histories.keys().copied().max();
        seg.max(hist)
    }

    /// The runs of consecutive segment numbers archived for `timeline`, ascending.
    pub fn runs(&self, timeline: TimeLineId) -> Vec<RangeInclusive<SegNo>> {
        let mut runs: Vec<RangeInclusive<SegNo>> = Vec::new();
        for &(_, segno) in self
            .segments
            .range((timeline, 0)..=(timeline, SegNo::MAX))
            .map(|e| e.0)
        {
            match runs.last_mut() {
                Some(r) if *r.end() + 1 == segno => *r = *r.start()..=segno,
                _ => runs.push(segno..=segno),
            }
        }
        runs
    }
}

/// The segment size from the long header of the newest segment file (by name) that has a valid
/// one (16 MiB when there are no segment files; the newest one's error when none is valid).
/// Newest first: readers that start at a backup never open the older segments.
fn detect_segment_size(source: &dyn WalSource, names: &[String]) -> Result<u64, WalError> {
    let mut first_error = None;
    for name in names
        .iter()
        .rev()
        .filter(|n| split_segment_file_name(n).is_some())
    {
        match read_long_header_in(source, name) {
            Ok(long) => return Ok(u64::from(long.seg_size)),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(DEFAULT_SEGMENT_SIZE), Err)
}

/// Reads and checks the long page header at the start of segment file `name` of `source`.
pub fn read_long_header_in(source: &dyn WalSource, name: &str) -> Result<LongPageHeader, WalError> {
    let path = source.path_of(name);
    let head = source.read_head(name, LONG_PAGE_HEADER_SIZE)?;
    let buf: [u8; LONG_PAGE_HEADER_SIZE] = head.try_into().map_err(|head: Vec<u8>| {
        WalError::io(
            &path,
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} bytes, shorter than a page header", head.len()),
            ),
        )
    })?;
    parse_long_header(&buf, &path)
}

/// The timeline of a `<TLI>.history` file name (8 hex digits then `.history`).
pub fn history_file_timeline(name: &str) -> Option<TimeLineId> {
    let hex = name.strip_suffix(".history")?;
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok().filter(|&t| t > 0)
}

/// Whether `name` is a backup history file name: `<segment>.<8 hex digits>.backup`.
pub fn is_backup_history_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".backup") else {
        return false;
    };
    stem.len() == SEGMENT_FILE_NAME_LEN + 9
        && split_segment_file_name(&stem[..SEGMENT_FILE_NAME_LEN]).is_some()
        && stem.as_bytes()[SEGMENT_FILE_NAME_LEN] == b'.'
        && stem[SEGMENT_FILE_NAME_LEN + 1..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::page::tests::header_bytes;

    #[test]
    fn file_kinds() {
        assert_eq!(history_file_timeline("00000002.history"), Some(2));
        assert_eq!(history_file_timeline("0000000A.history"), Some(10));
        assert_eq!(history_file_timeline("00000000.history"), None);
        assert_eq!(history_file_timeline("0000002.history"), None);
        assert!(is_backup_history_name(
            "000000010000000000000002.00000028.backup"
        ));
        assert!(!is_backup_history_name("000000010000000000000002.backup"));
        assert!(!is_backup_history_name(
            "000000010000000000000002.0000002G.backup"
        ));
    }

    #[test]
    fn lists_an_archive() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = header_bytes(0, 1, 0x2000000, 0, true);
        first.resize(8192, 0);
        for name in [
            "000000010000000000000002",
            "000000010000000000000003",
            "000000010000000000000005",
            "000000020000000000000005",
        ] {
            std::fs::write(dir.path().join(name), &first).unwrap();
        }
        for name in [
            "000000010000000000000006.partial",
            "00000002.history",
            "000000010000000000000002.00000028.backup",
            "000000010000000000000007.gz",
            "archtemp.000000010000000000000008.123",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join("000000010000000000000009")).unwrap();
        let l = ArchiveListing::read(dir.path(), None).unwrap();
        assert_eq!(l.seg_size, 16 << 20);
        assert_eq!(l.segments.len(), 4);
        assert_eq!(l.runs(1), vec![2..=3, 5..=5]);
        assert_eq!(l.runs(2), vec![5..=5]);
        assert_eq!(l.runs(3), vec![]);
        assert_eq!(l.segment_timelines(), vec![1, 2]);
        assert_eq!(l.latest_timeline(), Some(2));
        assert_eq!(l.partial.len(), 1);
        assert_eq!((l.partial[0].timeline, l.partial[0].segno), (1, 6));
        assert_eq!(l.histories.keys().copied().collect::<Vec<_>>(), vec![2]);
        assert_eq!(l.backups.len(), 1);
        assert_eq!(l.ignored.len(), 2);
        let s = l.segment(1, 3).unwrap();
        assert_eq!(s.file_name(), "000000010000000000000003");
        assert!(l.segment(1, 4).is_none());
        assert_eq!(l.file_name(1, 4), "000000010000000000000004");
        // A segment that is not WAL does not hide the size the others give...
        std::fs::write(dir.path().join("000000010000000000000001"), [0u8; 64]).unwrap();
        assert_eq!(
            ArchiveListing::read(dir.path(), None).unwrap().seg_size,
            16 << 20
        );
        // ...but when no segment is WAL, the first one's problem is reported.
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("000000010000000000000001"), [0u8; 64]).unwrap();
        let e = ArchiveListing::read(other.path(), None).unwrap_err();
        assert!(matches!(e, WalError::BadPageMagic { .. }), "{e}");
        assert!(e.to_string().contains("000000010000000000000001"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            ArchiveListing::read(empty.path(), None).unwrap().seg_size,
            16 << 20
        );
    }
}
