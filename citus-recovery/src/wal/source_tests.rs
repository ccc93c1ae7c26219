//! The archive functions over a repository ([`RepositorySource`]) give what they give over the
//! folder the same files came from.

use std::path::Path;
use std::sync::Arc;

use super::source::READ_AHEAD;
use super::synthetic::{Builder, PAGE, SEG};
use super::synthetic_tests::{archive_with_old_damage, parameter_change};
use super::*;
use crate::repository::codec::{self, Compression};
use crate::repository::memory::{Hooked, MemoryRepository, Slow};
use crate::repository::{Key, Repository};

/// A runtime for the repository; the tests call the reader from their own thread, outside it.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Stores every file of `dir` as `archive-push` would: `wal/<node>/<name>` plus the suffix of
/// the compression `codec_of(name)` picks.
fn push_folder(
    rt: &tokio::runtime::Runtime,
    repo: &MemoryRepository,
    node: &str,
    dir: &Path,
    codec_of: impl Fn(&str) -> Compression,
) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let c = codec_of(&name);
        let key = Key::new(&format!("wal/{node}/{name}{}", c.suffix())).unwrap();
        let frame = codec::encode(c, &std::fs::read(entry.path()).unwrap());
        rt.block_on(repo.put_create(&key, frame)).unwrap();
    }
}

fn zstd(_: &str) -> Compression {
    Compression::Zstd(1)
}

/// A source over the files of `dir` pushed with zstd into a memory repository.
fn pushed(rt: &tokio::runtime::Runtime, dir: &Path) -> (Arc<MemoryRepository>, RepositorySource) {
    let repo = Arc::new(MemoryRepository::new());
    push_folder(rt, &repo, "n1", dir, zstd);
    let source = RepositorySource::with_handle(repo.clone(), "n1", rt.handle().clone()).unwrap();
    (repo, source)
}

/// Asserts that two continuity results agree on everything but paths.
fn same_continuity(a: &Result<ContinuityReport, WalError>, b: &Result<ContinuityReport, WalError>) {
    match (a, b) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.timeline, b.timeline);
            assert_eq!(a.segments, b.segments);
            assert_eq!(a.first_record, b.first_record);
            assert_eq!(a.end, b.end);
            assert_eq!(a.records, b.records);
            assert_eq!(a.parameter_max, b.parameter_max);
            assert_eq!(a.tablespace_creates, b.tablespace_creates);
            assert_eq!(a.stats, b.stats);
        }
        (Err(a), Err(b)) => assert_eq!(
            std::mem::discriminant(a),
            std::mem::discriminant(b),
            "{a} / {b}"
        ),
        (a, b) => panic!("folder: {a:?}\nrepository: {b:?}"),
    }
}

/// Asserts that the whole-archive scan of `source` agrees with that of the folder `dir`.
fn same_archive_scan(dir: &Path, source: &dyn WalSource, opts: &ScanOptions) {
    same_scan(
        &scan_archive(dir, opts).unwrap(),
        &scan_archive_in(source, opts).unwrap(),
    );
}

/// Asserts that two scans agree on everything but paths.
fn same_scan(a: &ArchiveScan, b: &ArchiveScan) {
    assert_eq!(a.restore_points, b.restore_points);
    assert_eq!(a.gaps, b.gaps);
    assert_eq!(a.stats, b.stats);
    let kinds = |s: &ArchiveScan| {
        s.problems
            .iter()
            .map(std::mem::discriminant)
            .collect::<Vec<_>>()
    };
    assert_eq!(kinds(a), kinds(b));
}

/// Builds the two-timeline archive of `timelines_follow_the_history`; returns the end of the
/// restore point on timeline 2.
fn two_timelines(dir: &Path) -> Lsn {
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
    b1.save(dir);
    b2.fill_to(3 * SEG + 128);
    let t2 = b2.restore_point("t2");
    b2.save(dir);
    std::fs::write(
        dir.join("00000002.history"),
        format!("1\t{switch_point}\tat restore point \"t1-b\"\n"),
    )
    .unwrap();
    t2.1
}

#[test]
fn timelines_read_from_a_repository_as_from_the_folder() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let t2_end = two_timelines(dir.path());
    let (_repo, source) = pushed(&rt, dir.path());
    let folder = FolderSource::new(dir.path());

    let from_repo = find_restore_points_in(&source).unwrap();
    assert_eq!(from_repo.len(), 5);
    assert_eq!(find_restore_points(dir.path()).unwrap(), from_repo);
    let opts = ScanOptions {
        verify_crc: true,
        ..ScanOptions::default()
    };
    same_archive_scan(dir.path(), &source, &opts);
    assert_eq!(
        find_restore_points_from(dir.path(), 2, Lsn(2 * SEG), &opts).unwrap(),
        find_restore_points_from_in(&source, 2, Lsn(2 * SEG), &opts).unwrap()
    );

    let listing = ArchiveListing::read_in(&source, None).unwrap();
    let folder_listing = ArchiveListing::read(dir.path(), None).unwrap();
    assert_eq!(listing.seg_size, SEG);
    assert_eq!(
        listing.segments.keys().collect::<Vec<_>>(),
        folder_listing.segments.keys().collect::<Vec<_>>()
    );
    assert_eq!(listing.histories.keys().collect::<Vec<_>>(), vec![&2]);
    assert_eq!(
        TimelineHistory::load_in(&source, 2).unwrap(),
        TimelineHistory::load(dir.path(), 2).unwrap()
    );

    let h1 = TimelineHistory::new(1);
    let opts = ContinuityOptions::default();
    for (history, from, to) in [
        (None, Lsn(SEG), t2_end),
        (None, Lsn(SEG + 100), Lsn(3 * SEG)),
        (Some(&h1), Lsn(SEG), Lsn(3 * SEG + 100)),
        (None, Lsn(5 * SEG), Lsn(6 * SEG)), // missing
    ] {
        let a = check_continuity(dir.path(), history, from, to, &opts);
        let b = check_continuity_in(&source, history, from, to, &opts);
        let c = check_continuity_in(&folder, history, from, to, &opts);
        same_continuity(&a, &b);
        same_continuity(&a, &c);
    }
    let r = check_continuity_in(&source, None, Lsn(SEG), t2_end, &opts).unwrap();
    assert_eq!(
        r.segments,
        [
            "000000010000000000000001",
            "000000020000000000000002",
            "000000020000000000000003"
        ]
    );
    let e = check_continuity_in(&source, None, Lsn(5 * SEG), Lsn(6 * SEG), &opts).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("000000020000000000000005 is missing from memory/wal/n1"),
        "{e}"
    );

    let last = "000000020000000000000003";
    for (name, back) in [
        ("t1-b", 1),
        ("t1-a", 2),
        ("t1-a", 1),
        ("t2", 0),
        ("none", 9),
    ] {
        assert_eq!(
            locate_restore_point(dir.path(), name, last, back).unwrap(),
            locate_restore_point_in(&source, name, last, back).unwrap(),
            "{name} {back}"
        );
    }
    assert!(locate_restore_point_in(&source, "t1-a", last, 2)
        .unwrap()
        .is_some());
    // A segment not in the repository ends the search, as a missing file does.
    let e = locate_restore_point_in(&source, "t2", "000000020000000000000009", 0).unwrap_err();
    assert!(matches!(e, WalError::Repository { .. }), "{e}");
}

#[test]
fn ranges_and_damage_read_from_a_repository_as_from_the_folder() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut b = Builder::new(1, 1);
    parameter_change(&mut b, [900, 90, 90, 90, 900]);
    let from = b.restore_point("from");
    let p1 = parameter_change(&mut b, [200, 8, 10, 0, 64]);
    b.fill_to(SEG + PAGE - 8);
    parameter_change(&mut b, [150, 16, 5, 40, 128]);
    b.insert(5, 0x00, &[0xFF, 8, 1, 0, 0, 0, b'/', b't', b's', 0, 0, 0]);
    let to = b.restore_point("to");
    parameter_change(&mut b, [5000, 5000, 5000, 5000, 5000]);
    b.save(dir.path());
    let (_repo, source) = pushed(&rt, dir.path());
    let opts = ContinuityOptions::default();
    for (f, t) in [
        (from.0, to.1),
        (from.0, p1.0),
        (from.0, p1.1),
        (Lsn(0), to.1),
    ] {
        let a = check_continuity(dir.path(), None, f, t, &opts);
        let b = check_continuity_in(&source, None, f, t, &opts);
        same_continuity(&a, &b);
    }
    let r = check_continuity_in(&source, None, from.0, to.1, &opts).unwrap();
    assert_eq!(r.parameter_max.unwrap().max_prepared_xacts, 40);
    assert_eq!(r.tablespace_creates.len(), 1);

    // Old damage: the same errors, and the same restore points from the backup start on.
    let dir = tempfile::tempdir().unwrap();
    let [_, start, _, last] = archive_with_old_damage(dir.path());
    let (_repo, source) = pushed(&rt, dir.path());
    assert!(matches!(
        find_restore_points_in(&source).unwrap_err(),
        WalError::CrcMismatch { .. }
    ));
    let opts = ScanOptions::default();
    same_archive_scan(dir.path(), &source, &opts);
    let got = find_restore_points_from_in(&source, 1, start.0, &opts).unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(
        got,
        find_restore_points_from(dir.path(), 1, start.0, &opts).unwrap()
    );
    same_scan(
        &scan_archive_from(dir.path(), 1, start.1, &opts).unwrap(),
        &scan_archive_from_in(&source, 1, start.1, &opts).unwrap(),
    );
    let seg = |n: u64| segno_file_name(1, n, SEG);
    for (name, at, back) in [
        ("spanning", 4, 0),
        ("backup start", 3, 0),
        ("backup start", 3, 1),
        ("spanning", 3, 5),
        ("nowhere", 4, 1),
    ] {
        assert_eq!(
            locate_restore_point(dir.path(), name, &seg(at), back).unwrap(),
            locate_restore_point_in(&source, name, &seg(at), back).unwrap(),
        );
    }
    let e = locate_restore_point_in(&source, "nowhere", &seg(4), 3).unwrap_err();
    assert!(
        matches!(e, WalError::CrcMismatch { lsn, .. } if lsn < last.0),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("memory/wal/n1/000000010000000000000001"),
        "{e}"
    );
}

#[test]
fn a_damaged_object_is_named() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let t2_end = two_timelines(dir.path());
    let (repo, source) = pushed(&rt, dir.path());
    let key = Key::new("wal/n1/000000020000000000000003.zst").unwrap();
    let mut frame = rt.block_on(repo.get(&key)).unwrap().to_vec();
    let last = frame.len() - 1;
    frame[last] ^= 0xFF;
    rt.block_on(repo.delete(&key)).unwrap();
    rt.block_on(repo.put_create(&key, frame.into())).unwrap();
    let opts = ContinuityOptions::default();
    let e = check_continuity_in(&source, None, Lsn(SEG), t2_end, &opts).unwrap_err();
    match &e {
        WalError::CorruptObject {
            key: k, repository, ..
        } => {
            assert_eq!((k.as_str(), repository.as_str()), (key.as_str(), "memory"));
        }
        other => panic!("expected CorruptObject, got {other}"),
    }
    assert!(e.to_string().contains(key.as_str()), "{e}");
    // The scan records it and goes on; the segment size comes from another segment.
    let scan = scan_archive_in(&source, &ScanOptions::default()).unwrap();
    assert!(
        matches!(&scan.problems[..], [WalError::CorruptObject { .. }]),
        "{:?}",
        scan.problems
    );
    assert_eq!(scan.restore_points.len(), 4);
    // A damaged .history file is named too.
    let key = Key::new("wal/n1/00000002.history.zst").unwrap();
    let mut frame = rt.block_on(repo.get(&key)).unwrap().to_vec();
    frame[30] ^= 0x01;
    rt.block_on(repo.delete(&key)).unwrap();
    rt.block_on(repo.put_create(&key, frame.into())).unwrap();
    let e = TimelineHistory::load_in(&source, 2).unwrap_err();
    assert!(e.to_string().contains("wal/n1/00000002.history.zst"), "{e}");
}

#[test]
fn any_codec_and_only_the_nodes_own_objects() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let t2_end = two_timelines(dir.path());
    let repo = Arc::new(MemoryRepository::new());
    // Each file in another codec, as archive-push with changing settings leaves them.
    push_folder(&rt, &repo, "n1", dir.path(), |name| {
        match name.as_bytes()[name.len() - 1] % 3 {
            0 => Compression::None,
            1 => Compression::Lz4,
            _ => Compression::Zstd(3),
        }
    });
    // Another node whose name starts the same, and a deeper key: neither is listed.
    let other = tempfile::tempdir().unwrap();
    let mut b = Builder::new(1, 9);
    b.restore_point("other node");
    b.save(other.path());
    push_folder(&rt, &repo, "n10", other.path(), zstd);
    let stray = Key::new("wal/n1/sub/000000010000000000000009.zst").unwrap();
    rt.block_on(repo.put_create(&stray, codec::encode(Compression::None, b"x")))
        .unwrap();
    let source = RepositorySource::with_handle(repo, "n1", rt.handle().clone()).unwrap();
    let names = source.list().unwrap().files;
    assert_eq!(names.len(), 6, "{names:?}");
    assert!(names
        .iter()
        .all(|n| !n.ends_with(".zst") && !n.ends_with(".lz4")));
    assert_eq!(
        find_restore_points_in(&source).unwrap(),
        find_restore_points(dir.path()).unwrap()
    );
    let opts = ContinuityOptions::default();
    same_continuity(
        &check_continuity(dir.path(), None, Lsn(SEG), t2_end, &opts),
        &check_continuity_in(&source, None, Lsn(SEG), t2_end, &opts),
    );
}

/// The documented use: the source made in the runtime, the reader run in `spawn_blocking`.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn read_from_a_blocking_thread() {
    let dir = tempfile::tempdir().unwrap();
    two_timelines(dir.path());
    let repo = Arc::new(MemoryRepository::new());
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let key = format!("wal/n1/{}.zst", entry.file_name().to_string_lossy());
        let frame = codec::encode(Compression::Zstd(1), &std::fs::read(entry.path()).unwrap());
        repo.put_create(&Key::new(&key).unwrap(), frame)
            .await
            .unwrap();
    }
    let source = RepositorySource::new(repo, "n1").unwrap();
    let found = tokio::task::spawn_blocking(move || find_restore_points_in(&source))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, find_restore_points(dir.path()).unwrap());
    // Outside a runtime there is nothing to run on: an error, not a panic.
    let made = std::thread::spawn(|| {
        RepositorySource::new(Arc::new(MemoryRepository::new()), "n1").map(|_| ())
    })
    .join()
    .unwrap();
    assert!(matches!(made, Err(WalError::Repository { .. })));
}

impl Slow {
    /// The segment numbers of the segment keys whose get was started, in order.
    fn segments_started(&self) -> Vec<u64> {
        segnos(&self.started.lock().unwrap())
    }

    /// The segment numbers of the segment keys whose get ended, in order.
    fn segments_ended(&self) -> Vec<u64> {
        segnos(&self.ended.lock().unwrap())
    }
}

fn segnos(keys: &[String]) -> Vec<u64> {
    keys.iter()
        .filter_map(|k| k.strip_prefix("wal/n1/")?.strip_suffix(".zst"))
        .filter_map(|n| parse_segment_file_name(n, SEG).map(|(_, s)| s))
        .collect()
}

/// An archive of segments 1 to 10 (1 MiB each) on timeline 1, restore points "a" in the first
/// and "b" in the last; returns the end of "b".
fn ten_segments(dir: &Path) -> Lsn {
    let mut b = Builder::new(1, 1);
    b.restore_point("a");
    b.fill_to(10 * SEG + 0x100);
    let end = b.restore_point("b").1;
    b.save(dir);
    end
}

/// `repo` holding the files of `dir` (zstd), and a source over it.
fn slow_source(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    hook: Slow,
) -> (Arc<Hooked<Slow>>, RepositorySource) {
    let repo = Hooked {
        inner: MemoryRepository::new(),
        hook,
    };
    push_folder(rt, &repo.inner, "n1", dir, zstd);
    let repo = Arc::new(repo);
    let source = RepositorySource::with_handle(repo.clone(), "n1", rt.handle().clone()).unwrap();
    (repo, source)
}

/// The error opening `name` gives.
fn open_error(source: &RepositorySource, name: &str) -> WalError {
    match source.open(name) {
        Ok(_) => panic!("{name} opened"),
        Err(e) => e,
    }
}

/// Known segment size: the continuity check then opens no segment to learn it.
fn sized() -> ContinuityOptions {
    ContinuityOptions {
        segment_size: Some(SEG),
        ..ContinuityOptions::default()
    }
}

#[test]
fn read_ahead_keeps_the_order_when_fetches_end_out_of_order() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let end = ten_segments(dir.path());
    // Every get is slow (so read-aheads overlap), the early ones slower than later ones.
    let delays = [("00000002.zst", 300), ("00000003.zst", 200), ("", 60)];
    let (repo, source) = slow_source(
        &rt,
        dir.path(),
        Slow {
            delays: delays.iter().map(|(p, d)| (p.to_string(), *d)).collect(),
            ..Slow::default()
        },
    );
    let got = check_continuity_in(&source, None, Lsn(SEG), end, &sized());
    same_continuity(
        &check_continuity(dir.path(), None, Lsn(SEG), end, &sized()),
        &got,
    );
    assert_eq!(got.unwrap().segments.len(), 10);
    // Fetches ended out of order, each file was fetched once and none ahead of the plan.
    let ended = repo.hook.segments_ended();
    assert!(ended.windows(2).any(|w| w[0] > w[1]), "{ended:?}");
    let mut started = repo.hook.segments_started();
    started.sort_unstable();
    assert_eq!(started, (1..=10).collect::<Vec<_>>());
    let most = repo.hook.most.load(std::sync::atomic::Ordering::SeqCst);
    assert!((3..=READ_AHEAD + 1).contains(&most), "{most} gets at once");

    // The scans of verify and list read ahead too, with the same results as from the folder.
    let (repo, source) = slow_source(
        &rt,
        dir.path(),
        Slow {
            delays: vec![(String::new(), 30)],
            ..Slow::default()
        },
    );
    let opts = ScanOptions {
        verify_crc: true,
        ..ScanOptions::default()
    };
    same_archive_scan(dir.path(), &source, &opts);
    let most = repo.hook.most.load(std::sync::atomic::Ordering::SeqCst);
    assert!((3..=READ_AHEAD + 1).contains(&most), "{most} gets at once");
}

#[test]
fn read_ahead_never_fetches_past_the_range() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    ten_segments(dir.path());
    let (repo, source) = slow_source(
        &rt,
        dir.path(),
        Slow {
            delays: vec![(String::new(), 20)],
            ..Slow::default()
        },
    );
    let r = check_continuity_in(&source, None, Lsn(2 * SEG), Lsn(5 * SEG + 100), &sized());
    assert_eq!(r.unwrap().segments.len(), 4);
    // A read-ahead past the range would have started by now.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut started = repo.hook.segments_started();
    started.sort_unstable();
    assert_eq!(started, [2, 3, 4, 5]);

    // Files named past the end of the archive are fetched ahead and found missing: harmless
    // until one is opened, and then reported as when read without read-ahead.
    let names: Vec<String> = (8..=14).map(|n| segno_file_name(1, n, SEG)).collect();
    source.will_read(&names);
    for name in &names[..3] {
        assert_eq!(source.open(name).unwrap().size, SEG);
    }
    let e = open_error(&source, &names[3]);
    let fresh = RepositorySource::with_handle(repo.clone(), "n1", rt.handle().clone()).unwrap();
    assert_eq!(e.to_string(), open_error(&fresh, &names[3]).to_string());
    assert_eq!(
        e.to_string(),
        "memory/wal/n1: 00000001000000000000000B is not in the repository \
         (no object wal/n1/00000001000000000000000B[.zst|.lz4])"
    );
    drop(source);
}

#[test]
fn read_ahead_reports_a_missing_or_damaged_object_as_before() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let end = ten_segments(dir.path());
    let middle = "000000010000000000000005";

    // Deleted after the listing: the read-ahead finds it absent; the reader reports it when
    // it gets there, as a read without read-ahead does.
    let (repo, source) = slow_source(
        &rt,
        dir.path(),
        Slow {
            delays: vec![(String::new(), 20)],
            vanished: vec![middle.to_string()],
            ..Slow::default()
        },
    );
    let e = check_continuity_in(&source, None, Lsn(SEG), end, &sized()).unwrap_err();
    let fresh = RepositorySource::with_handle(repo.clone(), "n1", rt.handle().clone()).unwrap();
    fresh.list().unwrap();
    assert_eq!(e.to_string(), open_error(&fresh, middle).to_string());
    assert!(matches!(e, WalError::Repository { .. }), "{e}");
    assert!(e.to_string().contains(middle), "{e}");
    // Missing from the listing: the same MissingSegment as from the folder.
    let key = Key::new(&format!("wal/n1/{middle}.zst")).unwrap();
    rt.block_on(repo.inner.delete(&key)).unwrap();
    let source = RepositorySource::with_handle(repo.clone(), "n1", rt.handle().clone()).unwrap();
    let e = check_continuity_in(&source, None, Lsn(SEG), end, &sized()).unwrap_err();
    assert!(matches!(e, WalError::MissingSegment { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("{middle} is missing from memory/wal/n1")),
        "{e}"
    );

    // Damaged: named, and the same error as without read-ahead.
    let (repo, source) = slow_source(
        &rt,
        dir.path(),
        Slow {
            delays: vec![(String::new(), 20)],
            ..Slow::default()
        },
    );
    let key = Key::new(&format!("wal/n1/{middle}.zst")).unwrap();
    let mut frame = rt.block_on(repo.inner.get(&key)).unwrap().to_vec();
    let last = frame.len() - 1;
    frame[last] ^= 0xFF;
    rt.block_on(repo.inner.delete(&key)).unwrap();
    rt.block_on(repo.inner.put_create(&key, frame.into()))
        .unwrap();
    let e = check_continuity_in(&source, None, Lsn(SEG), end, &sized()).unwrap_err();
    assert!(
        matches!(&e, WalError::CorruptObject { key: k, .. } if k == key.as_str()),
        "{e}"
    );
    let fresh = RepositorySource::with_handle(repo.clone(), "n1", rt.handle().clone()).unwrap();
    fresh.list().unwrap();
    assert_eq!(e.to_string(), open_error(&fresh, middle).to_string());
}

/// A check that reads a node's archive twice (verify: find the point in its segment, then read
/// from the backup to it) lists it once, and holds nothing decoded in between.
#[test]
fn a_source_listed_once_lists_once_and_holds_nothing_between_reads() {
    use crate::repository::memory::Call;
    use crate::wal::source::ListedOnce;

    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let end = ten_segments(dir.path());
    let (repo, source) = slow_source(&rt, dir.path(), Slow::default());
    let source = ListedOnce::new(Box::new(source));
    let last = lsn::segno_file_name(1, 10, SEG);
    let found = locate_restore_point_in(&source, "b", &last, 4).unwrap();
    assert_eq!(found.map(|r| r.end_lsn), Some(end));
    let tenth = || {
        let started = repo.hook.segments_started();
        started.iter().filter(|&&s| s == 10).count()
    };
    // Kept decoded for the next read until released; fetched again after.
    source.open(&last).unwrap();
    assert_eq!(tenth(), 1);
    source.release();
    source.open(&last).unwrap();
    assert_eq!(tenth(), 2);
    source.release();
    let names = source.list().unwrap();
    let got = check_continuity_in(&source, None, Lsn(SEG), end, &sized());
    assert_eq!(got.unwrap().segments.len(), 10);
    assert_eq!(source.list().unwrap(), names, "the same listing every time");
    let calls = repo.hook.calls.lock().unwrap().clone();
    assert_eq!(
        calls.iter().filter(|c| **c == Call::List).count(),
        1,
        "{calls:?}"
    );
}

#[test]
fn a_source_keeps_the_objects_it_was_asked_to_keep_within_the_budget() {
    use crate::wal::source::ListedOnce;

    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let end = ten_segments(dir.path());
    let (repo, source) = slow_source(&rt, dir.path(), Slow::default());
    let source = ListedOnce::new(Box::new(source));
    let name = |n| lsn::segno_file_name(1, n, SEG);
    let object = |n| {
        let key = Key::new(&format!("wal/n1/{}.zst", name(n))).unwrap();
        rt.block_on(repo.inner.get(&key)).unwrap()
    };
    let wanted: Vec<String> = (1..=4).map(name).collect();
    // Room for three of the four: the fourth is read but not kept.
    let one = object(1).len() as u64;
    let budget = Arc::new(FrameBudget::new(
        one + object(2).len() as u64 + object(3).len() as u64,
    ));
    source.keep_frames(&wanted, &budget);
    let got = check_continuity_in(&source, None, Lsn(SEG), end, &sized());
    assert_eq!(got.unwrap().segments.len(), 10);
    // Releasing the reader's caches keeps them: they are for the restore that follows.
    source.release();
    let kept = source.take_frames();
    let names: Vec<&str> = kept.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, [name(1), name(2), name(3)]);
    for (n, k) in (1..).zip(&kept) {
        assert_eq!(k.frame, object(n), "the repository's object, as stored");
        assert_eq!(
            codec::decode(&k.frame).unwrap().len() as u64,
            SEG,
            "a frame that decodes to the segment"
        );
    }
    assert!(source.take_frames().is_empty(), "taken once");
    // Not asked to keep (anymore): nothing is kept.
    check_continuity_in(&source, None, Lsn(SEG), end, &sized()).unwrap();
    assert!(source.take_frames().is_empty());
    assert!(!budget.take(1), "the budget was used up");
}

#[test]
fn a_kept_object_is_decoded_again_not_fetched_again() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let end = ten_segments(dir.path());
    let (repo, source) = slow_source(&rt, dir.path(), Slow::default());
    let last = lsn::segno_file_name(1, 10, SEG);
    let budget = Arc::new(FrameBudget::new(u64::MAX));
    // The search reads the recorded segment; the continuity check ends in it.
    source.keep_frames(std::slice::from_ref(&last), &budget);
    assert!(locate_restore_point_in(&source, "b", &last, 4)
        .unwrap()
        .is_some());
    source.release();
    let got = check_continuity_in(&source, None, Lsn(SEG), end, &sized());
    assert_eq!(got.unwrap().segments.len(), 10);
    let started = repo.hook.segments_started();
    assert_eq!(
        started.iter().filter(|&&s| s == 10).count(),
        1,
        "fetched once: {started:?}"
    );
    assert_eq!(
        started.iter().filter(|&&s| s < 10).count(),
        9,
        "the others once each: {started:?}"
    );
}
