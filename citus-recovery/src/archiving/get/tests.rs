use std::sync::atomic::AtomicUsize;

use async_trait::async_trait;

use super::*;
use crate::repository::codec::Compression;
use crate::repository::memory::{Call, Hook, Hooked};
use crate::repository::Key;

/// Counts `get` and `get_stream` requests.
#[derive(Debug, Default)]
struct Gets(AtomicUsize);

#[async_trait]
impl Hook for Gets {
    async fn before(&self, call: Call, _key: &Key) -> Result<(), RepoError> {
        if matches!(call, Call::Get | Call::GetStream) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// A memory repository that counts gets.
type Counting = Hooked<Gets>;

impl Counting {
    fn gets(&self) -> usize {
        self.hook.0.load(Ordering::SeqCst)
    }
}

const MIB16: u64 = crate::wal::DEFAULT_SEGMENT_SIZE;

fn seg(n: u64) -> String {
    format!("00000001{:08X}{:08X}", n / 256, n % 256)
}

fn content(n: u64) -> Vec<u8> {
    (0..64 * 1024).map(|i| (i as u64 * 7 + n) as u8).collect()
}

fn spooled_name(n: u64) -> String {
    format!("{}.{:08x}", seg(n), crc32c::crc32c(&content(n)))
}

/// A repository holding segments `range` of node w1, and a pg_wal folder.
async fn setup(range: std::ops::Range<u64>) -> (Counting, tempfile::TempDir) {
    let repo = Counting::default();
    for n in range {
        let key = wal_key("w1", &seg(n), ".zst").unwrap();
        let frame = codec::encode(Compression::Zstd(1), &content(n));
        repo.put_create(&key, frame).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pg_wal")).unwrap();
    (repo, dir)
}

/// The spooled segment files (not `.window`).
fn spooled(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("pg_wal").join(SPOOL_DIR))
        .map(|e| {
            e.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != WINDOW_FILE && n != LAST_FILE)
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Runs a worker in this process, as the command's detached one does: lock, then prefetch.
async fn worker(repo: &Counting, dest: &Path, first: u64, queue: usize) -> usize {
    let lock = SpoolLock::for_dest(dest).expect("the spool's lock is free");
    prefetch(repo, "w1", &seg(first), queue, None, &lock)
        .await
        .unwrap()
}

fn taken(s: Spooled) -> Option<bool> {
    match s {
        Spooled::Taken { refill, .. } => Some(refill.is_some()),
        Spooled::Missing => None,
    }
}

#[test]
fn the_window_follows_the_timeline_across_a_log_id() {
    assert_eq!(
        following_segments("0000000200000000000000FE", 3, MIB16).unwrap(),
        [
            "0000000200000000000000FF",
            "000000020000000100000000",
            "000000020000000100000001"
        ]
    );
    assert_eq!(following_segments("00000002.history", 3, MIB16), None);
    assert_eq!(
        following_segments("000000010000000000000003.partial", 3, MIB16),
        None
    );
    assert!(following_segments("000000010000000000000003", 0, MIB16)
        .unwrap()
        .is_empty());
    assert_eq!(
        next_segment("0000000200000000000000FF", MIB16).unwrap(),
        "000000020000000100000000"
    );
    assert_eq!(next_segment("00000002.history", MIB16), None);
}

#[test]
fn other_segment_sizes_roll_over_where_theirs_do() {
    // 64 MiB: 64 segments per log id; 1 MiB: 4096; 1 GiB: 4.
    assert_eq!(
        following_segments("00000001000000000000003E", 3, 64 << 20).unwrap(),
        [
            "00000001000000000000003F",
            "000000010000000100000000",
            "000000010000000100000001"
        ]
    );
    assert_eq!(
        next_segment("0000000100000000000000FF", 1 << 20).unwrap(),
        "000000010000000000000100"
    );
    assert_eq!(
        next_segment("000000010000000000000FFF", 1 << 20).unwrap(),
        "000000010000000100000000"
    );
    assert_eq!(
        next_segment("000000010000000000000003", 1 << 30).unwrap(),
        "000000010000000100000000"
    );
    // A name no segment of that size has.
    assert_eq!(next_segment("000000010000000000000040", 64 << 20), None);
    // Ordering by name holds for every size: a step back is seen across a log id.
    assert!(
        name_order("000000010000000100000000").unwrap().1
            > name_order("000000010000000000000FFF").unwrap().1
    );
}

/// A worker given no size learns it from the first segment's length and names the rest by
/// it; the window records it, so that calls wait for the right names.
#[tokio::test]
async fn a_worker_learns_the_segment_size_from_the_first_segment() {
    let size: u64 = 1 << 20;
    let name = |n: u64| format!("00000001{:08X}{:08X}", n / 4096, n % 4096);
    let body = |n: u64| vec![n as u8; size as usize];
    let repo = Counting::default();
    // Across the end of log id 0 for 1 MiB segments (4096 per log id).
    for n in 4094..4099 {
        let key = wal_key("w1", &name(n), ".zst").unwrap();
        repo.put_create(&key, codec::encode(Compression::Zstd(1), &body(n)))
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pg_wal")).unwrap();
    let dest = dir.path().join("pg_wal/RECOVERYXLOG");
    let lock = SpoolLock::for_dest(&dest).unwrap();
    assert_eq!(
        prefetch(&repo, "w1", &name(4094), 4, None, &lock)
            .await
            .unwrap(),
        4
    );
    assert_eq!(repo.gets(), 4, "each segment once, the first included");
    let window = dir.path().join("pg_wal").join(SPOOL_DIR).join(WINDOW_FILE);
    assert_eq!(
        std::fs::read_to_string(&window).unwrap(),
        format!("{} 4 size={size}", name(4094))
    );
    drop(lock);
    for n in 4094..4098 {
        match take_spooled(&name(n), &dest) {
            Spooled::Taken { segment_size, .. } => assert_eq!(segment_size, size),
            Spooled::Missing => panic!("{} was not spooled", name(n)),
        }
        assert_eq!(std::fs::read(&dest).unwrap(), body(n));
    }
    assert_eq!(repo.gets(), 4, "no call fetched anything");
}

#[tokio::test]
async fn calls_take_what_the_worker_fetched_without_a_request_and_ask_for_a_refill() {
    let (repo, dir) = setup(1..12).await;
    let dest = dir.path().join("pg_wal/RECOVERYXLOG");
    assert!(matches!(take_spooled(&seg(1), &dest), Spooled::Missing));
    let got = archive_get(&repo, "w1", &seg(1), &dest, 4).await.unwrap();
    assert_eq!(got, GetOutcome::Restored);
    assert_eq!(std::fs::read(&dest).unwrap(), content(1));
    assert_eq!(repo.gets(), 1);
    assert_eq!(worker(&repo, &dest, 2, 4).await, 4);
    assert_eq!(repo.gets(), 5, "segments 2 to 5, once each");
    assert_eq!(
        spooled(dir.path()),
        (2..=5).map(spooled_name).collect::<Vec<_>>()
    );
    // 3 and 2 left after the segment taken: no refill; 1 left (under half of 4): a refill.
    for (n, refill) in [(2, false), (3, false), (4, true), (5, true)] {
        assert_eq!(
            taken(take_spooled(&seg(n), &dest)),
            Some(refill),
            "segment {n}"
        );
        assert_eq!(std::fs::read(&dest).unwrap(), content(n), "segment {n}");
    }
    assert_eq!(repo.gets(), 5, "no request for spooled segments");
    assert!(spooled(dir.path()).is_empty());
    // The library call takes a spooled segment too.
    worker(&repo, &dest, 6, 2).await;
    let got = archive_get(&repo, "w1", &seg(6), &dest, 2).await.unwrap();
    assert_eq!(got, GetOutcome::FromSpool);
    assert_eq!(std::fs::read(&dest).unwrap(), content(6));
}

#[test]
fn a_call_waits_for_the_running_worker_only_for_a_segment_of_its_window() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pg_wal")).unwrap();
    let dest = dir.path().join("pg_wal/RECOVERYXLOG");
    let lock = SpoolLock::for_dest(&dest).unwrap();
    write_atomically(&lock.dir, WINDOW_FILE, format!("{} 4", seg(2)).as_bytes()).unwrap();
    assert!(SpoolLock::for_dest(&dest).is_none(), "one worker per spool");
    // Outside the window: no wait.
    let started = Instant::now();
    assert!(matches!(take_spooled(&seg(9), &dest), Spooled::Missing));
    assert!(started.elapsed() < Duration::from_millis(500));
    let worker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        store(&lock.dir, &seg(3), &content(3)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drop(lock); // exits without segment 4
    });
    let started = Instant::now();
    assert_eq!(taken(take_spooled(&seg(3), &dest)), Some(false));
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(std::fs::read(&dest).unwrap(), content(3));
    // The worker ends without it: the call stops waiting and fetches it itself.
    let started = Instant::now();
    assert!(matches!(take_spooled(&seg(4), &dest), Spooled::Missing));
    assert!(started.elapsed() < Duration::from_secs(5));
    worker.join().unwrap();
}

#[test]
fn a_spawned_worker_keeps_the_lock_until_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pg_wal")).unwrap();
    let dest = dir.path().join("pg_wal/RECOVERYXLOG");
    let lock = SpoolLock::for_dest(&dest).unwrap();
    let marker = dir.path().join("ran");
    let mut cmd = std::process::Command::new("sh");
    // The worker sees the lock's descriptor open; its /proc stat names its session.
    cmd.arg("-c").arg(format!(
        "test -e /proc/$$/fd/{} && cat /proc/$$/stat > {}; sleep 1",
        lock.raw_fd(),
        marker.display()
    ));
    let started = Instant::now();
    lock.spawn(cmd).unwrap();
    assert!(
        SpoolLock::for_dest(&dest).is_none(),
        "the detached worker holds the lock after the caller let go of it"
    );
    while SpoolLock::for_dest(&dest).is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never released"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(started.elapsed() >= Duration::from_millis(800));
    let stat = std::fs::read_to_string(&marker).expect("the descriptor was inherited");
    // Fields after the command name: state, ppid, pgrp, session.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let (pid, session): (i32, i32) = (
        stat.split_whitespace().next().unwrap().parse().unwrap(),
        fields[3].parse().unwrap(),
    );
    assert_ne!(
        session,
        nix::unistd::getsid(None).unwrap().as_raw(),
        "a session of its own"
    );
    assert_ne!(session, pid, "not its leader: forked twice");
    assert_ne!(
        fields[1].parse::<u32>().unwrap(),
        std::process::id(),
        "not this process' child"
    );
}

#[tokio::test]
async fn an_inherited_lock_is_checked_and_works_in_the_locked_folder() {
    let (repo, dir) = setup(1..4).await;
    let dest = dir.path().join("pg_wal/RECOVERYXLOG");
    let lock = SpoolLock::for_dest(&dest).unwrap();
    // What the worker gets: another descriptor of the same open folder (same lock).
    let fd = nix::unistd::dup(lock.raw_fd()).unwrap();
    let inherited = SpoolLock::inherited(fd).unwrap();
    assert_eq!(
        prefetch(&repo, "w1", &seg(1), 2, None, &inherited)
            .await
            .unwrap(),
        2
    );
    assert_eq!(spooled(dir.path()), [spooled_name(1), spooled_name(2)]);
    // Not a folder, not open, a standard stream, or a folder another process has locked.
    let file = File::create(dir.path().join("f")).unwrap();
    assert!(SpoolLock::inherited(file.as_raw_fd()).is_err());
    std::mem::forget(file); // inherited() took ownership of (and closed) it
    assert!(SpoolLock::inherited(999).is_err());
    assert!(SpoolLock::inherited(2).is_err());
    drop(inherited);
    drop(lock);
    let other = File::options()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY)
        .open(dir.path().join("pg_wal").join(SPOOL_DIR))
        .unwrap();
    let held = SpoolLock::for_dest(&dest).unwrap();
    let fd = nix::unistd::dup(other.as_raw_fd()).unwrap();
    assert!(SpoolLock::inherited(fd).is_err(), "another holder's lock");
    drop(held);
}

#[tokio::test]
async fn a_killed_worker_leaves_only_temporary_files_that_the_next_lock_removes() {
    let (repo, dir) = setup(1..6).await;
    let dest = dir.path().join("pg_wal/RECOVERYXLOG");
    worker(&repo, &dest, 1, 2).await;
    let spool = dir.path().join("pg_wal").join(SPOOL_DIR);
    // What a kill mid-write leaves: a temporary file with a segment's full bytes.
    std::fs::write(spool.join(".tmp-77-0"), content(3)).unwrap();
    assert!(matches!(take_spooled(&seg(3), &dest), Spooled::Missing));
    assert!(!dest.exists(), "a temporary file is never handed over");
    let lock = SpoolLock::for_dest(&dest).unwrap();
    assert!(!spool.join(".tmp-77-0").exists());
    drop(lock);
    assert!(taken(take_spooled(&seg(1), &dest)).is_some());
    assert_eq!(std::fs::read(&dest).unwrap(), content(1));
}

#[tokio::test]
async fn the_end_of_the_archive_is_not_an_error_and_removes_the_spool() {
    let (repo, dir) = setup(10..12).await;
    let dest = dir.path().join("pg_wal/RECOVERYXLOG");
    let spool = dir.path().join("pg_wal").join(SPOOL_DIR);
    let got = archive_get(&repo, "w1", &seg(10), &dest, 4).await.unwrap();
    assert_eq!(got, GetOutcome::Restored);
    assert_eq!(worker(&repo, &dest, 11, 4).await, 1, "stops at the end");
    assert_eq!(spooled(dir.path()), [spooled_name(11)]);
    assert!(taken(take_spooled(&seg(11), &dest)).is_some());
    assert_eq!(std::fs::read(&dest).unwrap(), content(11));
    let got = archive_get(&repo, "w1", &seg(12), &dest, 4).await.unwrap();
    assert_eq!(got, GetOutcome::NotFound);
    assert!(!spool.exists());
    // A worker started past the end finds nothing; the call past the end removes the spool.
    assert_eq!(worker(&repo, &dest, 12, 4).await, 0);
    let got = archive_get(&repo, "w1", &seg(12), &dest, 4).await.unwrap();
    assert_eq!(got, GetOutcome::NotFound);
    assert!(!spool.exists());
    // A missing history file (what promotion asks for) also removes it.
    worker(&repo, &dest, 11, 4).await;
    assert!(spool.exists());
    let got = archive_get(&repo, "w1", "00000002.history", &dest, 4)
        .await
        .unwrap();
    assert_eq!(got, GetOutcome::NotFound);
    assert!(!spool.exists());
    // But not while a worker runs (after a short wait): it is the worker's.
    let lock = SpoolLock::for_dest(&dest).unwrap();
    let started = Instant::now();
    let got = archive_get(&repo, "w1", &seg(12), &dest, 4).await.unwrap();
    assert_eq!(got, GetOutcome::NotFound);
    assert!(spool.exists());
    assert!(started.elapsed() >= REMOVE_WAIT);
    drop(lock);
}

#[tokio::test]
async fn damaged_stale_and_foreign_spool_files_are_never_handed_over() {
    let (repo, dir) = setup(1..6).await;
    let dest = dir.path().join("pg_wal/RECOVERYXLOG");
    let spool = dir.path().join("pg_wal").join(SPOOL_DIR);
    worker(&repo, &dest, 2, 3).await;
    // Damage segment 2's spooled copy, keeping its name and size.
    let two = spool.join(spooled_name(2));
    let mut bytes = std::fs::read(&two).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&two, &bytes).unwrap();
    // Cut segment 3's copy short (a crash while the page cache was written back).
    std::fs::write(spool.join(spooled_name(3)), &content(3)[..4096]).unwrap();
    // Left-overs of a crash, a stale segment, junk, and a link to a file elsewhere.
    std::fs::write(spool.join(".tmp-1-0"), b"partial").unwrap();
    std::fs::write(spool.join(format!("{}.00000000", seg(0))), b"old").unwrap();
    std::fs::write(spool.join("junk"), b"x").unwrap();
    let outside = dir.path().join("outside");
    std::fs::write(&outside, content(5)).unwrap();
    std::fs::remove_file(spool.join(spooled_name(4))).unwrap();
    std::os::unix::fs::symlink(&outside, spool.join(spooled_name(5))).unwrap();

    assert!(matches!(take_spooled(&seg(2), &dest), Spooled::Missing));
    assert!(!dest.exists());
    assert!(
        !spool.join(spooled_name(2)).exists(),
        "the damaged copy removed"
    );
    let before = repo.gets();
    let got = archive_get(&repo, "w1", &seg(2), &dest, 3).await.unwrap();
    assert_eq!(got, GetOutcome::Restored, "fetched again");
    assert_eq!(std::fs::read(&dest).unwrap(), content(2));
    assert_eq!(repo.gets(), before + 1);
    // The next worker cleans up: window 3..5.
    worker(&repo, &dest, 3, 3).await;
    let names = spooled(dir.path());
    for gone in [".tmp-1-0", "junk"] {
        assert!(!names.iter().any(|n| n == gone), "{names:?}");
    }
    assert!(!names.iter().any(|n| n.starts_with(&seg(0))), "{names:?}");
    assert!(outside.exists(), "a link is removed, never followed");
    assert!(matches!(take_spooled(&seg(3), &dest), Spooled::Missing));
    let got = archive_get(&repo, "w1", &seg(3), &dest, 3).await.unwrap();
    assert_eq!(got, GetOutcome::Restored, "the short copy is fetched again");
    assert_eq!(std::fs::read(&dest).unwrap(), content(3));
    for n in 4..=5 {
        assert!(taken(take_spooled(&seg(n), &dest)).is_some(), "segment {n}");
        assert_eq!(std::fs::read(&dest).unwrap(), content(n), "segment {n}");
    }
}

#[tokio::test]
async fn a_link_in_place_of_the_spool_is_never_followed() {
    let (repo, dir) = setup(1..4).await;
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join(spooled_name(1)), content(1)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.path().join("pg_wal").join(SPOOL_DIR)).unwrap();
    let dest = dir.path().join("pg_wal/RECOVERYXLOG");
    assert!(SpoolLock::for_dest(&dest).is_none());
    assert!(matches!(take_spooled(&seg(1), &dest), Spooled::Missing));
    let got = archive_get(&repo, "w1", &seg(1), &dest, 3).await.unwrap();
    assert_eq!(got, GetOutcome::Restored);
    assert_eq!(std::fs::read(&dest).unwrap(), content(1));
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 1);
    // With prefetch off the link is removed (never followed).
    archive_get(&repo, "w1", &seg(2), &dest, 0).await.unwrap();
    assert!(std::fs::symlink_metadata(dir.path().join("pg_wal").join(SPOOL_DIR)).is_err());
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 1);
}

#[tokio::test]
async fn a_step_back_of_replay_drops_the_spool_and_starts_no_worker() {
    let (repo, dir) = setup(1..12).await;
    let dest = dir.path().join("pg_wal/RECOVERYXLOG");
    let spool = dir.path().join("pg_wal").join(SPOOL_DIR);
    drop(SpoolLock::for_dest(&dest)); // what the command does before its first fetch
    archive_get(&repo, "w1", &seg(1), &dest, 4).await.unwrap();
    assert!(replay_went_back(&seg(1), &dest));
    assert!(!replay_went_back(&seg(2), &dest));
    worker(&repo, &dest, 2, 4).await;
    for n in 2..=3 {
        assert!(taken(take_spooled(&seg(n), &dest)).is_some());
    }
    assert!(replay_went_back(&seg(3), &dest), "the same segment again");
    assert!(replay_went_back(&seg(2), &dest));
    assert!(!replay_went_back(&seg(4), &dest));
    assert!(
        !replay_went_back("000000020000000000000002", &dest),
        "another timeline"
    );
    // Recovery's end reads its last segment again: fetched, and the spool ahead dropped.
    let got = archive_get(&repo, "w1", &seg(3), &dest, 4).await.unwrap();
    assert_eq!(got, GetOutcome::Restored);
    assert_eq!(std::fs::read(&dest).unwrap(), content(3));
    assert!(!spool.exists());
}

#[tokio::test]
async fn a_damaged_object_in_the_window_is_skipped_and_refused_when_asked_for() {
    let (repo, dir) = setup(1..3).await;
    let key = wal_key("w1", &seg(3), ".zst").unwrap();
    let mut frame = codec::encode(Compression::Zstd(1), &content(3)).to_vec();
    let last = frame.len() - 1;
    frame[last] ^= 0xFF;
    repo.put_create(&key, frame.into()).await.unwrap();
    let dest = dir.path().join("pg_wal/RECOVERYXLOG");
    assert_eq!(worker(&repo, &dest, 2, 4).await, 1, "only segment 2");
    assert_eq!(spooled(dir.path()), [spooled_name(2)]);
    assert!(taken(take_spooled(&seg(2), &dest)).is_some());
    std::fs::remove_file(&dest).unwrap();
    assert!(matches!(take_spooled(&seg(3), &dest), Spooled::Missing));
    match archive_get(&repo, "w1", &seg(3), &dest, 4).await {
        Err(Error::Corrupt { key, .. }) => assert!(key.contains(&seg(3)), "{key}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(!dest.exists(), "PostgreSQL never sees damaged bytes");
}

#[tokio::test]
async fn no_spool_in_a_pg_wal_of_another_user() {
    let required =
        std::env::var("CITUS_RECOVERY_REQUIRE_POSTGRES").is_ok_and(|v| !v.is_empty() && v != "0");
    let postgres = nix::unistd::User::from_name("postgres").ok().flatten();
    let Some(postgres) = postgres.filter(|_| nix::unistd::geteuid().is_root()) else {
        assert!(!required, "needs root and a postgres user");
        eprintln!("SKIPPED: needs root and a postgres user to own the folder");
        return;
    };
    let (repo, dir) = setup(1..4).await;
    let pg_wal = dir.path().join("pg_wal");
    // A spool its owner made, with a copy root must not take.
    let spool = pg_wal.join(SPOOL_DIR);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&spool)
        .unwrap();
    std::fs::write(spool.join(spooled_name(1)), content(1)).unwrap();
    for p in [&pg_wal, &spool] {
        nix::unistd::chown(p, Some(postgres.uid), Some(postgres.gid)).unwrap();
    }
    let dest = pg_wal.join("RECOVERYXLOG");
    assert!(
        SpoolLock::for_dest(&dest).is_none(),
        "root starts no worker there"
    );
    assert!(matches!(take_spooled(&seg(1), &dest), Spooled::Missing));
    let got = archive_get(&repo, "w1", &seg(1), &dest, 4).await.unwrap();
    assert_eq!(got, GetOutcome::Restored);
    assert_eq!(
        repo.gets(),
        1,
        "fetched, not taken from the postgres user's spool"
    );
    assert!(spool.join(spooled_name(1)).exists());
}

#[tokio::test]
async fn a_file_in_place_of_the_spool_is_not_used_and_never_fails_the_call() {
    let (repo, dir) = setup(1..3).await;
    let pg_wal = dir.path().join("pg_wal");
    let dest = pg_wal.join("RECOVERYXLOG");
    let spool = pg_wal.join(SPOOL_DIR);
    std::fs::write(&spool, b"not a folder").unwrap();
    assert!(SpoolLock::for_dest(&dest).is_none());
    assert!(matches!(take_spooled(&seg(1), &dest), Spooled::Missing));
    let got = archive_get(&repo, "w1", &seg(1), &dest, 4).await.unwrap();
    assert_eq!(got, GetOutcome::Restored);
    assert_eq!(std::fs::read(&dest).unwrap(), content(1));
    // The end of the archive stays "not found" whatever the spool's state.
    let got = archive_get(&repo, "w1", &seg(9), &dest, 4).await.unwrap();
    assert_eq!(got, GetOutcome::NotFound);
    let got = archive_get(&repo, "w1", "00000002.history", &dest, 4).await;
    assert_eq!(got.unwrap(), GetOutcome::NotFound);
}

/// restore-start's window (recorded before its worker starts, kept by the worker): taking
/// its segments starts no refill past it; a segment after it is fetched, and a worker for
/// the following ones may start as usual.
#[tokio::test]
async fn restore_start_windows_are_kept_and_never_refilled() {
    let (repo, dir) = setup(1..12).await;
    let dest = dir.path().join("pg_wal/RECOVERYXLOG");
    let lock = SpoolLock::for_pg_wal(&dir.path().join("pg_wal")).unwrap();
    assert!(lock
        .record_window(&seg(2), 0, crate::wal::DEFAULT_SEGMENT_SIZE)
        .is_err());
    assert!(lock
        .record_window("00000002.history", 3, crate::wal::DEFAULT_SEGMENT_SIZE)
        .is_err());
    lock.record_window(&seg(2), 3, crate::wal::DEFAULT_SEGMENT_SIZE)
        .unwrap();
    let window = dir.path().join("pg_wal").join(SPOOL_DIR).join(WINDOW_FILE);
    let recorded = std::fs::read_to_string(&window).unwrap();
    assert_eq!(recorded, format!("{} 3 restore", seg(2)));
    assert_eq!(
        prefetch(
            &repo,
            "w1",
            &seg(2),
            3,
            Some(crate::wal::DEFAULT_SEGMENT_SIZE),
            &lock
        )
        .await
        .unwrap(),
        3
    );
    assert_eq!(std::fs::read_to_string(&window).unwrap(), recorded, "kept");
    drop(lock);
    for n in 2..=4 {
        assert_eq!(taken(take_spooled(&seg(n), &dest)), Some(false), "{n}");
        assert_eq!(std::fs::read(&dest).unwrap(), content(n));
    }
    assert_eq!(repo.gets(), 3);
    // Outside it, an archive-get worker's window (no mark) refills as before.
    assert!(matches!(take_spooled(&seg(5), &dest), Spooled::Missing));
    assert_eq!(worker(&repo, &dest, 5, 4).await, 4);
    assert_eq!(
        std::fs::read_to_string(&window).unwrap(),
        format!("{} 4", seg(5))
    );
    assert_eq!(taken(take_spooled(&seg(5), &dest)), Some(false));
    assert_eq!(taken(take_spooled(&seg(6), &dest)), Some(false));
    assert_eq!(taken(take_spooled(&seg(7), &dest)), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_spool_asks_a_running_worker_to_end_instead_of_waiting_for_its_window() {
    use crate::repository::memory::{MemoryRepository, Slow};
    // Every fetch takes 30 s: without the request, removal would wait out its whole bound.
    let repo = std::sync::Arc::new(Hooked {
        inner: MemoryRepository::new(),
        hook: Slow {
            delays: vec![(String::new(), 30_000)],
            ..Default::default()
        },
    });
    for n in 1..9 {
        let key = wal_key("w1", &seg(n), ".zst").unwrap();
        let frame = codec::encode(Compression::Zstd(1), &content(n));
        repo.put_create(&key, frame).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let pg_wal = dir.path().join("pg_wal");
    std::fs::create_dir(&pg_wal).unwrap();
    let lock = SpoolLock::for_pg_wal(&pg_wal).unwrap();
    let worker = tokio::spawn({
        let repo = repo.clone();
        async move { prefetch(&*repo, "w1", &seg(1), 8, Some(MIB16), &lock).await }
    });
    while repo.hook.started.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    let p = pg_wal.clone();
    let got =
        tokio::task::spawn_blocking(move || remove_spool_in(&p, crate::backend::SPOOL_REMOVE_WAIT))
            .await
            .unwrap()
            .unwrap();
    let took = started.elapsed();
    assert_eq!(got, SpoolRemoval::Removed);
    assert!(
        took < Duration::from_secs(5),
        "waited {took:?} for the worker"
    );
    assert_eq!(
        worker.await.unwrap().unwrap(),
        0,
        "nothing stored after the request"
    );
    assert!(!pg_wal.join(SPOOL_DIR).exists());
}

#[tokio::test]
async fn a_stop_request_left_behind_is_cleared_by_the_next_lock() {
    let (repo, dir) = setup(1..6).await;
    let dest = dir.path().join("pg_wal/RECOVERYXLOG");
    let spool = dir.path().join("pg_wal").join(SPOOL_DIR);
    // A removal that gave up on a worker (Busy) leaves its request; the worker then ended.
    let held = SpoolLock::for_dest(&dest).unwrap();
    let pg_wal = dir.path().join("pg_wal");
    assert_eq!(
        remove_spool_in(&pg_wal, Duration::ZERO).unwrap(),
        SpoolRemoval::Busy
    );
    assert!(spool.join(STOP_FILE).exists());
    drop(held);
    assert_eq!(worker(&repo, &dest, 1, 2).await, 2, "a new worker fetches");
    assert!(!spool.join(STOP_FILE).exists());
}

/// What `archive-get-prefetch --proven-on-stdin` reads: each segment's header and frame.
fn seed_stream(segments: &[crate::wal::ProvenSegment]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in segments {
        out.extend_from_slice(seed_header(s).as_bytes());
        out.extend_from_slice(&s.frame);
    }
    out
}

fn proven(n: u64) -> crate::wal::ProvenSegment {
    crate::wal::ProvenSegment {
        name: seg(n),
        frame: codec::encode(Compression::Zstd(1), &content(n)),
    }
}

#[tokio::test]
async fn a_seeded_spool_holds_what_the_pre_flight_read_and_the_worker_fetches_only_the_rest() {
    let (repo, dir) = setup(1..8).await;
    let dest = dir.path().join("pg_wal/RECOVERYXLOG");
    let pg_wal = dir.path().join("pg_wal");
    let lock = SpoolLock::for_pg_wal(&pg_wal).unwrap();
    lock.record_window(&seg(1), 5, MIB16).unwrap();
    let input = seed_stream(&[proven(1), proven(2), proven(3)]);
    assert_eq!(seed_spool(&lock, &seg(1), 5, MIB16, &input[..]).unwrap(), 3);
    assert_eq!(
        spooled(dir.path()),
        [spooled_name(1), spooled_name(2), spooled_name(3)]
    );
    assert_eq!(repo.gets(), 0, "nothing fetched");
    // The worker of the same window fetches the two that were not seeded, and nothing else.
    prefetch(&repo, "w1", &seg(1), 5, Some(MIB16), &lock)
        .await
        .unwrap();
    assert_eq!(repo.gets(), 2);
    assert_eq!(spooled(dir.path()).len(), 5);
    drop(lock);
    assert!(taken(take_spooled(&seg(1), &dest)).is_some());
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        content(1),
        "decoded as stored"
    );
}

#[tokio::test]
async fn a_seed_outside_the_window_damaged_or_cut_short_is_refused() {
    let (_repo, dir) = setup(1..2).await;
    let pg_wal = dir.path().join("pg_wal");
    let lock = SpoolLock::for_pg_wal(&pg_wal).unwrap();
    let refused = |input: Vec<u8>| {
        let e = seed_spool(&lock, &seg(1), 3, MIB16, &input[..]).unwrap_err();
        e.to_string()
    };
    assert!(refused(seed_stream(&[proven(4)])).contains("not in the window"));
    let mut damaged = proven(1);
    let mut bytes = damaged.frame.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    damaged.frame = bytes.into();
    let e = refused(seed_stream(&[damaged]));
    assert!(e.contains(&seg(1)), "{e}");
    let mut cut = seed_stream(&[proven(2)]);
    cut.truncate(cut.len() - 10);
    assert!(refused(cut).contains("ends after"));
    assert!(refused(b"not a header\n".to_vec()).contains("is not `<segment> <length>`"));
    assert!(spooled(dir.path()).is_empty(), "nothing refused is stored");
}
