//! Tests of the reader and the archive functions on synthetic WAL ([`super::synthetic`]).

use std::path::Path;

use super::synthetic::{Builder, PAGE, SEG};
use super::*;

fn read_all(
    dir: &Path,
    tli: u32,
    start: SegNo,
    verify: bool,
) -> (Vec<RecordInfo>, Result<(), WalError>) {
    let provider = |segno: SegNo| {
        let path = dir.join(segno_file_name(tli, segno, SEG));
        Ok::<_, WalError>(path.exists().then_some(SegmentRef {
            timeline: tli,
            segno,
            path,
        }))
    };
    let options = ReaderOptions {
        verify_crc: verify,
        ..ReaderOptions::default()
    };
    let mut reader = WalReader::new(provider, start, options);
    let mut out = Vec::new();
    loop {
        match reader.next_record() {
            Ok(Some(r)) => out.push(r),
            Ok(None) | Err(WalError::EndOfWal { .. }) => return (out, Ok(())),
            Err(e) => return (out, Err(e)),
        }
    }
}

#[test]
fn crossings_switches_and_restore_points() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Builder::new(1, 2);
    let first = b.restore_point("first");
    // Header split over a page boundary, then body split over a segment boundary.
    b.fill_to(2 * SEG + PAGE - 8);
    let split_header = b.restore_point("split header");
    b.fill_to(3 * SEG - 48);
    let cross_segment = b.restore_point("across segments");
    let big = b.filler(3 * PAGE as usize + 100);
    let switch = b.switch();
    let after = b.restore_point("after switch");
    b.save(dir.path());

    let (recs, end) = read_all(dir.path(), 1, 2, true);
    end.unwrap();
    assert!(recs.iter().all(|r| r.crc_checked));
    let find = |lsn: Lsn| recs.iter().find(|r| r.lsn == lsn).unwrap();
    for (s, e) in [first, split_header, cross_segment, big, switch, after] {
        assert_eq!(find(s).end_lsn, e, "record at {s}");
    }
    assert_eq!(split_header.0, Lsn(2 * SEG + PAGE - 8));
    assert_eq!(cross_segment.1.segment(SEG), 3);
    assert_eq!(find(after.0).segment.segno, 4);
    assert_eq!(switch.1, Lsn(4 * SEG));

    let scan = scan_archive(
        dir.path(),
        &ScanOptions {
            verify_crc: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(scan.problems.is_empty(), "{:?}", scan.problems);
    let names: Vec<_> = scan
        .restore_points
        .iter()
        .map(|r| (r.name.as_str(), r.lsn, r.end_lsn))
        .collect();
    assert_eq!(
        names,
        vec![
            ("first", first.0, first.1),
            ("split header", split_header.0, split_header.1),
            ("across segments", cross_segment.0, cross_segment.1),
            ("after switch", after.0, after.1),
        ]
    );
    let rp = &scan.restore_points[2];
    assert_eq!(
        (rp.segment.as_str(), rp.last_segment.as_str()),
        ("000000010000000000000002", "000000010000000000000003")
    );

    // Starting in segment 3 skips the continuation of the restore point that began in 2.
    let (recs, end) = read_all(dir.path(), 1, 3, false);
    end.unwrap();
    assert!(recs[0].lsn > cross_segment.0 && recs[0].lsn == cross_segment.1);

    // Continuity over the whole range, then from inside segment 3.
    let opts = ContinuityOptions::default();
    let report = check_continuity(dir.path(), None, first.0, after.1, &opts).unwrap();
    assert_eq!(report.segments.len(), 3);
    assert_eq!(report.first_record, Some(first.0));
    assert_eq!(report.end, after.1);
    let report = check_continuity(dir.path(), None, big.0, switch.1, &opts).unwrap();
    assert_eq!(report.segments, vec!["000000010000000000000003"]);
    assert_eq!(report.records, 2);
}

#[test]
fn damage_is_reported_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Builder::new(1, 1);
    let rp = b.restore_point("a");
    b.fill_to(SEG + 5 * PAGE - 16);
    let filler = b.filler(2 * PAGE as usize);
    b.fill_to(2 * SEG + 100 * 8);
    let last = b.restore_point("b");
    b.save(dir.path());
    let seg1 = dir.path().join("000000010000000000000001");
    let bytes = std::fs::read(&seg1).unwrap();
    let opts = ContinuityOptions::default();

    // A flipped byte inside a record spanning pages: CRC error, only when verifying.
    let mut bad = bytes.clone();
    bad[(filler.0 .0 - SEG) as usize + PAGE as usize] ^= 0x40;
    std::fs::write(&seg1, &bad).unwrap();
    let e = check_continuity(dir.path(), None, rp.0, last.1, &opts).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, WalError::CrcMismatch { offset, .. } if offset == filler.0 .0 - SEG),
        "{msg}"
    );
    assert!(
        msg.contains("000000010000000000000001")
            && msg.contains(&format!("offset {}", filler.0 .0 - SEG)),
        "{msg}"
    );
    let lax = ContinuityOptions {
        verify_crc: false,
        ..opts
    };
    check_continuity(dir.path(), None, rp.0, last.1, &lax).unwrap();
    std::fs::write(&seg1, &bytes).unwrap();

    // A page whose address is wrong; a page with bad magic; a truncated file.
    let mut bad = bytes.clone();
    bad[3 * PAGE as usize + 8] ^= 1;
    std::fs::write(&seg1, &bad).unwrap();
    let e = check_continuity(dir.path(), None, rp.0, last.1, &opts).unwrap_err();
    assert!(
        matches!(e, WalError::BadPageAddress { offset, .. } if offset == 3 * PAGE),
        "{e}"
    );
    bad[3 * PAGE as usize] ^= 1;
    std::fs::write(&seg1, &bad).unwrap();
    let e = check_continuity(dir.path(), None, rp.0, last.1, &opts).unwrap_err();
    assert!(matches!(e, WalError::BadPageMagic { .. }), "{e}");
    std::fs::write(&seg1, &bytes[..PAGE as usize * 10]).unwrap();
    let e = check_continuity(dir.path(), None, rp.0, last.1, &opts).unwrap_err();
    assert!(matches!(e, WalError::WrongSegmentSize { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("000000010000000000000001 has 81920 bytes"),
        "{e}"
    );
    let scan = scan_archive(dir.path(), &ScanOptions::default()).unwrap();
    assert_eq!(scan.problems.len(), 1);
    // "a" was in the truncated segment.
    assert_eq!(
        scan.restore_points
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
    assert!(find_restore_points(dir.path()).is_err());

    // A missing segment; WAL that ends (zeroes) before the target.
    std::fs::remove_file(&seg1).unwrap();
    let e = check_continuity(dir.path(), None, rp.0, last.1, &opts).unwrap_err();
    let want = format!(
        "000000010000000000000001 is missing from {}: WAL is not continuous from {} to {}",
        dir.path().display(),
        rp.0,
        last.1
    );
    assert_eq!(e.to_string(), want);
    std::fs::write(&seg1, &bytes).unwrap();
    let e = check_continuity(dir.path(), None, rp.0, Lsn(2 * SEG + 2000), &opts).unwrap_err();
    assert!(
        matches!(
            e,
            WalError::EndOfWal {
                needed: Some(_),
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn overwritten_contrecord_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Builder::new(1, 1);
    let before = b.restore_point("before");
    b.fill_to(SEG + PAGE - 200);
    let kept = b.filler(64);
    let abandoned = b.abandon(500);
    let after = b.restore_point("after");
    b.save(dir.path());
    let (recs, end) = read_all(dir.path(), 1, 1, true);
    end.unwrap();
    assert!(recs.iter().all(|r| r.lsn != abandoned));
    let rec = recs.iter().find(|r| r.lsn == after.0).unwrap();
    assert_eq!(rec.header.prev, kept.0);
    assert_eq!(after.0, Lsn(SEG + PAGE + 24));
    let rps = find_restore_points(dir.path()).unwrap();
    assert_eq!(
        rps.iter().map(|r| r.lsn).collect::<Vec<_>>(),
        vec![before.0, after.0]
    );
}

#[test]
fn timelines_follow_the_history() {
    let dir = tempfile::tempdir().unwrap();
    // Timeline 1: segments 1-3; timeline 2 branched at 0/2000100 + copy of segment 2.
    let mut b1 = Builder::new(1, 1);
    b1.restore_point("t1-a");
    b1.fill_to(2 * SEG + 0x100);
    let (_, switch_point) = b1.restore_point("t1-b");
    b1.fill_to(3 * SEG + 64);
    b1.restore_point("t1-only");
    let mut b2 = Builder {
        tli: 2,
        base: 2 * SEG,
        buf: b1.buf[(SEG as usize)..(switch_point.0 - SEG) as usize].to_vec(),
        prev: switch_point.0 - 104,
        page_flags: 0,
    };
    b1.save(dir.path());
    b2.fill_to(3 * SEG + 128);
    let t2 = b2.restore_point("t2");
    b2.save(dir.path());
    std::fs::write(
        dir.path().join("00000002.history"),
        format!("1\t{switch_point}\tat restore point \"t1-b\"\n"),
    )
    .unwrap();

    let rps = find_restore_points(dir.path()).unwrap();
    let got: Vec<_> = rps.iter().map(|r| (r.name.as_str(), r.timeline)).collect();
    assert_eq!(
        got,
        vec![
            ("t1-a", 1),
            ("t1-b", 1),
            ("t1-b", 2),
            ("t1-only", 1),
            ("t2", 2)
        ]
    );

    let report = check_continuity(
        dir.path(),
        None,
        Lsn(SEG),
        t2.1,
        &ContinuityOptions::default(),
    )
    .unwrap();
    assert_eq!(report.timeline, 2);
    assert_eq!(
        report.segments,
        vec![
            "000000010000000000000001",
            "000000020000000000000002",
            "000000020000000000000003"
        ]
    );
    // Located from timeline 2's last segment: segment 2 is read on timeline 2 (its copy holds
    // timeline 1's WAL up to the switch), segment 1 on timeline 1, as the history says.
    let last = "000000020000000000000003";
    let r = locate_restore_point(dir.path(), "t1-b", last, 1)
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.timeline, r.segment.as_str()),
        (2, "000000020000000000000002")
    );
    let r = locate_restore_point(dir.path(), "t1-a", last, 2)
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.timeline, r.segment.as_str()),
        (1, "000000010000000000000001")
    );
    let r = locate_restore_point(dir.path(), "t2", last, 0)
        .unwrap()
        .unwrap();
    assert_eq!(r.end_lsn, t2.1);
    std::fs::remove_file(dir.path().join("000000020000000000000002")).unwrap();
    assert!(locate_restore_point(dir.path(), "t1-a", last, 2)
        .unwrap()
        .is_none());
    let e = check_continuity(
        dir.path(),
        None,
        Lsn(SEG),
        t2.1,
        &ContinuityOptions::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("000000020000000000000002 is missing"),
        "{e}"
    );
    // Timeline 1 alone is still continuous.
    let h1 = TimelineHistory::new(1);
    check_continuity(
        dir.path(),
        Some(&h1),
        Lsn(SEG),
        Lsn(3 * SEG + 100),
        &ContinuityOptions::default(),
    )
    .unwrap();
}

/// Settings of a parameter change record: connections, workers, senders, prepared, locks.
pub(super) fn parameter_change(b: &mut Builder, v: [i32; 5]) -> (Lsn, Lsn) {
    use super::record::tests::parameter_change_body;
    let body = parameter_change_body([v[0], v[1], v[2], v[3], v[4], 1], false, false);
    b.insert(0, super::record::XLOG_PARAMETER_CHANGE, &body)
}

#[test]
fn parameter_changes_and_tablespace_creates_in_a_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Builder::new(1, 1);
    let before = parameter_change(&mut b, [900, 90, 90, 90, 900]);
    let from = b.restore_point("from");
    let p1 = parameter_change(&mut b, [200, 8, 10, 0, 64]);
    b.fill_to(SEG + PAGE - 8); // the next record's header spans a page boundary
    let p2 = parameter_change(&mut b, [150, 16, 5, 40, 128]);
    let ts = b.insert(5, 0x00, &[0xFF, 8, 1, 0, 0, 0, b'/', b't', b's', 0, 0, 0]);
    let to = b.restore_point("to");
    let after = parameter_change(&mut b, [5000, 5000, 5000, 5000, 5000]);
    let ts_after = b.insert(5, 0x00, &[0xFF, 4, 2, 0, 0, 0]);
    b.save(dir.path());
    assert!(p2.0 .0 % PAGE > PAGE - 24);

    let opts = ContinuityOptions::default();
    let r = check_continuity(dir.path(), None, from.0, to.1, &opts).unwrap();
    assert_eq!(
        r.parameter_max,
        Some(HotStandbyParameters {
            max_connections: 200,
            max_worker_processes: 16,
            max_wal_senders: 10,
            max_prepared_xacts: 40,
            max_locks_per_xact: 128,
        })
    );
    assert_eq!(r.tablespace_creates, vec![ts.0]);
    assert_eq!(
        r.parameter_max.unwrap().settings()[3],
        ("max_prepared_transactions", 40)
    );
    // Records before `from` (in the same segment) and from `to` on do not count.
    assert!(before.1 <= from.0 && after.0 >= to.1 && ts_after.0 > to.1);
    let r = check_continuity(dir.path(), None, from.0, p1.0, &opts).unwrap();
    assert_eq!((r.parameter_max, r.tablespace_creates.len()), (None, 0));
    let r = check_continuity(dir.path(), None, from.0, p1.1, &opts).unwrap();
    assert_eq!(r.parameter_max.unwrap().max_connections, 200);

    // A damaged parameter change (a body too short, with a correct CRC) is an error naming it.
    let dir2 = tempfile::tempdir().unwrap();
    let mut b = Builder::new(1, 1);
    let from = b.restore_point("from");
    let bad = b.insert(
        0,
        super::record::XLOG_PARAMETER_CHANGE,
        &[255, 4, 1, 2, 3, 4],
    );
    let to = b.restore_point("to");
    b.save(dir2.path());
    let e = check_continuity(dir2.path(), None, from.0, to.1, &opts).unwrap_err();
    assert!(
        matches!(&e, WalError::BadRecord { lsn, .. } if *lsn == bad.0),
        "{e}"
    );
    assert!(e.to_string().contains("parameter change data"), "{e}");
}

/// Segments 1-4 with restore points in 1, 2 (spanning into 3) and 4; segment 1 damaged.
pub(super) fn archive_with_old_damage(dir: &Path) -> [(Lsn, Lsn); 4] {
    let mut b = Builder::new(1, 1);
    let old = b.restore_point("old");
    b.fill_to(2 * SEG + 0x200);
    let start = b.restore_point("backup start");
    b.fill_to(3 * SEG - 40);
    let spanning = b.restore_point("spanning");
    b.fill_to(4 * SEG + 0x100);
    let last = b.restore_point("spanning");
    b.save(dir);
    let seg1 = dir.join("000000010000000000000001");
    let mut bytes = std::fs::read(&seg1).unwrap();
    bytes[(old.0 .0 - SEG) as usize + 30] ^= 0xFF; // inside the restore point's body
    std::fs::write(&seg1, &bytes).unwrap();
    [old, start, spanning, last]
}

#[test]
fn restore_points_from_a_backup_start_ignore_older_segments() {
    let dir = tempfile::tempdir().unwrap();
    let [_, start, spanning, last] = archive_with_old_damage(dir.path());
    assert!(find_restore_points(dir.path()).is_err());
    let opts = ScanOptions::default();
    let got = find_restore_points_from(dir.path(), 1, start.0, &opts).unwrap();
    let lsns: Vec<Lsn> = got.iter().map(|r| r.lsn).collect();
    assert_eq!(lsns, vec![start.0, spanning.0, last.0]);
    assert_eq!(got[1].segment, "000000010000000000000002");
    assert_eq!(got[1].last_segment, "000000010000000000000003");
    // Just after the start: that point is left out; the scan still reads from its segment.
    let scan = scan_archive_from(dir.path(), 1, start.1, &opts).unwrap();
    assert_eq!(scan.restore_points.len(), 2);
    assert_eq!(scan.stats.segments, 3);
    // Segment 1 is not even opened: an unreadable file there does not matter.
    let seg1 = dir.path().join("000000010000000000000001");
    std::fs::remove_file(&seg1).unwrap();
    std::os::unix::fs::symlink("/nonexistent", &seg1).unwrap();
    assert_eq!(
        find_restore_points_from(dir.path(), 1, start.0, &opts)
            .unwrap()
            .len(),
        3
    );
    // Later timelines are read too, earlier ones are not.
    let got = find_restore_points_from(dir.path(), 2, start.0, &opts).unwrap();
    assert!(got.is_empty());
    // Damage after the start still counts.
    let seg4 = dir.path().join("000000010000000000000004");
    let mut bytes = std::fs::read(&seg4).unwrap();
    bytes[(last.0 .0 - 4 * SEG) as usize + 30] ^= 0xFF;
    std::fs::write(&seg4, &bytes).unwrap();
    let e = find_restore_points_from(dir.path(), 1, start.0, &opts).unwrap_err();
    assert!(
        matches!(e, WalError::CrcMismatch { lsn, .. } if lsn == last.0),
        "{e}"
    );
}

#[test]
fn locate_a_restore_point_from_the_last_segment() {
    let dir = tempfile::tempdir().unwrap();
    let [_, start, spanning, last] = archive_with_old_damage(dir.path());
    let seg = |n: u64| segno_file_name(1, n, SEG);
    // In the given segment: the last record of the name there.
    let r = locate_restore_point(dir.path(), "spanning", &seg(4), 0)
        .unwrap()
        .unwrap();
    assert_eq!((r.lsn, r.end_lsn, r.timeline), (last.0, last.1, 1));
    // Begins in 2, ends in 3: found from 3 by reading 2 on into 3.
    assert!(locate_restore_point(dir.path(), "backup start", &seg(3), 0)
        .unwrap()
        .is_none());
    let r = locate_restore_point(dir.path(), "backup start", &seg(3), 1)
        .unwrap()
        .unwrap();
    assert_eq!(r.lsn, start.0);
    let r = locate_restore_point(dir.path(), "spanning", &seg(3), 5)
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            r.lsn,
            r.end_lsn,
            r.segment.as_str(),
            r.last_segment.as_str()
        ),
        (spanning.0, spanning.1, seg(2).as_str(), seg(3).as_str())
    );
    // Segment 1 (damaged) is read only when reached.
    assert!(locate_restore_point(dir.path(), "nowhere", &seg(4), 1)
        .unwrap()
        .is_none());
    let e = locate_restore_point(dir.path(), "nowhere", &seg(4), 3).unwrap_err();
    assert!(matches!(e, WalError::CrcMismatch { .. }), "{e}");
    // Stops at a segment that is not there.
    std::fs::remove_file(dir.path().join(seg(1))).unwrap();
    assert!(locate_restore_point(dir.path(), "nowhere", &seg(4), 10)
        .unwrap()
        .is_none());
    // Not a segment name, or a path.
    for bad in [
        "../000000010000000000000004",
        "00000001000000000000000",
        "x",
    ] {
        let e = locate_restore_point(dir.path(), "x", bad, 1).unwrap_err();
        assert!(matches!(e, WalError::InvalidSegmentName(_)), "{e}");
    }
}

#[test]
fn symlinked_segments_are_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let mut b = Builder::new(1, 1);
    let a = b.restore_point("a");
    b.fill_to(2 * SEG + 0x100);
    let c = b.restore_point("c");
    b.save(other.path());
    let name = "000000010000000000000002";
    std::fs::copy(
        other.path().join("000000010000000000000001"),
        dir.path().join("000000010000000000000001"),
    )
    .unwrap();
    std::os::unix::fs::symlink(other.path().join(name), dir.path().join(name)).unwrap();
    // The listing takes the link for no segment: it is missing.
    let e =
        check_continuity(dir.path(), None, a.0, c.1, &ContinuityOptions::default()).unwrap_err();
    assert!(matches!(e, WalError::MissingSegment { .. }), "{e}");
    // Reading it directly refuses the link.
    let e = locate_restore_point(dir.path(), "c", name, 0).unwrap_err();
    assert!(matches!(e, WalError::NotRegularFile { .. }), "{e}");
    let e = crate::wal::segment::open_regular(&dir.path().join(name)).unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
}

/// A tar of `files` (name, bytes) as pg_basebackup writes pg_wal.tar, plus a status folder.
fn write_tar(path: &Path, files: &[(String, Vec<u8>)]) {
    let mut t = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(0o700);
    t.append_data(&mut h, "archive_status/", std::io::empty())
        .unwrap();
    for (name, bytes) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o600);
        t.append_data(&mut h, name, bytes.as_slice()).unwrap();
    }
    t.finish().unwrap();
}

#[test]
fn backup_wal_is_read_from_the_tar() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Builder::new(1, 2);
    let start = b.restore_point("start");
    let p = parameter_change(&mut b, [300, 8, 10, 20, 64]);
    b.fill_to(3 * SEG + 2 * PAGE);
    let end = b.restore_point("end");
    b.save(dir.path());
    let files: Vec<(String, Vec<u8>)> = [2, 3]
        .iter()
        .map(|&n| {
            let name = segno_file_name(1, n, SEG);
            let bytes = std::fs::read(dir.path().join(&name)).unwrap();
            (name, bytes)
        })
        .collect();
    let tar = dir.path().join("pg_wal.tar");
    write_tar(&tar, &files);
    let r = check_backup_wal(&tar, 1, start.0, end.1).unwrap();
    assert_eq!(r.segments, vec![files[0].0.clone(), files[1].0.clone()]);
    assert_eq!((r.first_record, r.end), (Some(start.0), end.1));
    assert_eq!(r.parameter_max.unwrap().max_connections, 300);
    assert!(p.0 > start.0);

    // A flipped byte inside a record: the error names the tar, the segment and the LSN.
    let mut bad = files.clone();
    let at = (end.0 .0 - 3 * SEG) as usize + 40;
    bad[1].1[at] ^= 0x01;
    write_tar(&tar, &bad);
    let e = check_backup_wal(&tar, 1, start.0, end.1).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, WalError::CrcMismatch { lsn, .. } if *lsn == end.0),
        "{msg}"
    );
    assert!(
        msg.starts_with(&format!("{}/{} offset", tar.display(), files[1].0)),
        "{msg}"
    );
    // A missing segment; a truncated one; a link where a segment should be.
    write_tar(&tar, &files[..1]);
    let e = check_backup_wal(&tar, 1, start.0, end.1).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{} is missing from {}", files[1].0, tar.display())),
        "{e}"
    );
    let mut short = files.clone();
    short[1].1.truncate(SEG as usize / 2);
    write_tar(&tar, &short);
    let e = check_backup_wal(&tar, 1, start.0, end.1).unwrap_err();
    assert!(matches!(e, WalError::WrongSegmentSize { .. }), "{e}");
    let mut t = tar::Builder::new(std::fs::File::create(&tar).unwrap());
    t.append_data(
        &mut {
            let mut h = tar::Header::new_ustar();
            h.set_size(files[0].1.len() as u64);
            h
        },
        &files[0].0,
        files[0].1.as_slice(),
    )
    .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    t.append_link(&mut h, &files[1].0, "/etc/passwd").unwrap();
    t.finish().unwrap();
    drop(t);
    let e = check_backup_wal(&tar, 1, start.0, end.1).unwrap_err();
    assert!(matches!(e, WalError::BadTar { .. }), "{e}");
    // The tar itself must not be a link.
    write_tar(&dir.path().join("real.tar"), &files);
    std::fs::remove_file(&tar).unwrap();
    std::os::unix::fs::symlink(dir.path().join("real.tar"), &tar).unwrap();
    let e = check_backup_wal(&tar, 1, start.0, end.1).unwrap_err();
    assert!(matches!(e, WalError::NotRegularFile { .. }), "{e}");
}
