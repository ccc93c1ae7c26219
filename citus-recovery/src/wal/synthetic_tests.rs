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
    std::fs::remove_file(dir.path().join("000000020000000000000002")).unwrap();
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
