//! Reading a node's WAL archive from a backup on: the cost must not grow with the number of
//! segments archived before the backup (issue 8). Synthetic WAL (1 MiB segments of 8 KiB
//! records, every CRC valid), `before` segments archived before the backup, 4 after it.

use std::path::Path;

use citus_recovery::wal::synthetic::{Builder, SEG};
use citus_recovery::wal::{
    check_continuity, find_restore_points, find_restore_points_from, scan_archive_from,
    ContinuityOptions, Lsn, ScanOptions,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// Segments after the backup's start.
const AFTER: u64 = 4;

/// Writes the archive; returns the backup's start and the restore point's end.
fn archive(dir: &Path, before: u64) -> (Lsn, Lsn) {
    let mut b = Builder::new(1, 1);
    for segno in 1..=before {
        b.restore_point(&format!("old {segno}"));
        b.fill_to((segno + 1) * SEG + 0x100);
        b.flush_complete(dir);
    }
    let (start, _) = b.restore_point("backup start");
    b.fill_to((before + AFTER) * SEG + 0x100);
    let (_, end) = b.restore_point("target");
    b.save(dir);
    (start, end)
}

fn from_backup_start(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal/from_backup_start");
    group.sample_size(10);
    for before in [20, 400] {
        let dir = tempfile::tempdir().unwrap();
        let (start, end) = archive(dir.path(), before);
        let opts = ScanOptions::default();
        // The same work whatever `before` is: the segments after the start, and no other.
        let scan = scan_archive_from(dir.path(), 1, start, &opts).unwrap();
        assert_eq!((scan.restore_points.len(), scan.stats.segments), (2, AFTER));
        let copts = ContinuityOptions::default();
        let report = check_continuity(dir.path(), None, start, end, &copts).unwrap();
        assert_eq!(report.stats.segments, AFTER);
        group.bench_with_input(
            BenchmarkId::new("find_restore_points_from", before),
            &start,
            |b, &start| b.iter(|| find_restore_points_from(dir.path(), 1, start, &opts).unwrap()),
        );
        group.bench_with_input(
            BenchmarkId::new("check_continuity", before),
            &(start, end),
            |b, &(start, end)| {
                b.iter(|| check_continuity(dir.path(), None, start, end, &copts).unwrap())
            },
        );
        // For contrast: the whole archive, what `find_restore_points` reads.
        group.bench_with_input(
            BenchmarkId::new("find_restore_points (whole archive)", before),
            &(),
            |b, _| b.iter(|| find_restore_points(dir.path()).unwrap()),
        );
    }
    group.finish();
}

criterion_group!(benches, from_backup_start);
criterion_main!(benches);
