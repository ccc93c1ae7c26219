//! The WAL reader against real PostgreSQL 15 archives, compared with `pg_waldump`.
//!
//! Each test runs its own throwaway server(s) as the `postgres` OS user, archiving with
//! `basic_archive` into a temporary folder, and stops them when it ends (also on failure).
//! Skipped, with the reason printed, when not root or PostgreSQL 15 is not installed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use citus_recovery::wal::record::main_data_range;
use citus_recovery::wal::{
    check_backup_wal, check_continuity, find_restore_points, find_restore_points_from,
    locate_restore_point, scan_archive, scan_archive_from, segno_file_name, ArchiveListing,
    BackupHistory, ContinuityOptions, HotStandbyParameters, Lsn, ReaderOptions, RecordHeader,
    RestorePointRecord, ScanOptions, SegNo, SegmentRef, TimelineHistory, WalError, WalReader,
};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const SEG: u64 = 16 << 20;
const PAGE: u64 = 8192;

fn skip_reason() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("not running as root (needed to run PostgreSQL as `postgres`)".into());
    }
    for prog in ["initdb", "pg_ctl", "psql", "pg_waldump", "pg_basebackup"] {
        if !Path::new(PG_BIN).join(prog).is_file() {
            return Some(format!("{PG_BIN}/{prog} not found"));
        }
    }
    if nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .is_none()
    {
        return Some("no `postgres` OS user".into());
    }
    None
}

macro_rules! skip_unless_possible {
    () => {
        if let Some(reason) = skip_reason() {
            // CI sets the switch: there, a missing PostgreSQL fails rather than passing as a skip.
            if std::env::var("CITUS_RECOVERY_REQUIRE_POSTGRES").is_ok_and(|v| !v.is_empty() && v != "0") {
                panic!("PostgreSQL is required (CITUS_RECOVERY_REQUIRE_POSTGRES is set) but this test cannot run: {reason}");
            }
            eprintln!("SKIPPED: {reason} (CITUS_RECOVERY_REQUIRE_POSTGRES=1 makes this a failure)");
            return;
        }
    };
}

/// Runs `cmd`, panicking with its output when it fails; returns stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A command running PostgreSQL program `prog` as the `postgres` user, in `cwd`.
fn as_postgres(prog: &str, cwd: &Path) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"])
        .arg(Path::new(PG_BIN).join(prog))
        .current_dir(cwd);
    c
}

/// Creates `path` owned by `postgres` with `mode`.
fn postgres_dir(path: &Path, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).unwrap();
    let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
    std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw())).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.to_path_buf()
}

/// A temporary folder the `postgres` user can enter.
fn test_root() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::Builder::new()
        .prefix("wal-reader-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    root
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A server; stopped on drop.
struct Pg {
    root: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    running: bool,
}

impl Pg {
    /// initdb, configured to archive into `archive` with `basic_archive`.
    fn init(root: &Path, name: &str, archive: &Path, extra_conf: &str) -> Pg {
        let data = postgres_dir(&root.join(name), 0o700);
        let logs = postgres_dir(&root.join(format!("{name}-log")), 0o755);
        run(as_postgres("initdb", root).arg("-D").arg(&data).args([
            "--auth=trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]));
        let pg = Pg {
            root: root.to_path_buf(),
            data,
            log: logs.join("server.log"),
            port: 0,
            running: false,
        };
        pg.configure(&format!(
            "wal_level = replica\narchive_mode = on\narchive_library = 'basic_archive'\n\
             basic_archive.archive_directory = '{}'\nunix_socket_directories = '/tmp'\n\
             listen_addresses = '127.0.0.1'\nautovacuum = off\nfsync = off\n\
             checkpoint_timeout = '1h'\nmax_wal_size = '4GB'\n{extra_conf}",
            archive.display()
        ));
        pg
    }

    /// A server on an existing data directory (a base backup).
    fn existing(root: &Path, data: PathBuf, name: &str) -> Pg {
        let logs = postgres_dir(&root.join(format!("{name}-log")), 0o755);
        Pg {
            root: root.to_path_buf(),
            data,
            log: logs.join("server.log"),
            port: 0,
            running: false,
        }
    }

    fn configure(&self, text: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))
            .unwrap();
        writeln!(f, "\n{text}").unwrap();
    }

    fn start(&mut self) {
        self.port = free_port();
        self.configure(&format!("port = {}", self.port));
        let out = as_postgres("pg_ctl", &self.root)
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "120", "start"])
            .output()
            .unwrap();
        self.running = true;
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn stop(&mut self) {
        if self.running {
            self.running = false;
            run(as_postgres("pg_ctl", &self.root)
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "fast", "-w", "stop"]));
        }
    }

    /// Runs each statement (one `-c` each, in one session); returns their outputs.
    fn sql_all(&self, statements: &[&str]) -> Vec<String> {
        let mut c = Command::new(Path::new(PG_BIN).join("psql"));
        c.args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .arg("-p")
        .arg(self.port.to_string())
        .env("PGCLIENTENCODING", "UTF8");
        for s in statements {
            c.arg("-c").arg(s);
        }
        run(&mut c).lines().map(str::to_string).collect()
    }

    fn sql(&self, statement: &str) -> String {
        self.sql_all(&[statement]).join("\n")
    }

    fn lsn(&self, statement: &str) -> Lsn {
        self.sql(statement).parse().unwrap()
    }

    /// Switches to a new segment and waits until the finished one is archived.
    fn switch_and_wait(&self, archive: &Path) -> String {
        let file = self.sql("SELECT pg_walfile_name(pg_switch_wal())");
        wait_for(&archive.join(&file));
        file
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if self.running {
            let _ = as_postgres("pg_ctl", &self.root)
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{} did not appear",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `XLogRecPtrToBytePos` for 16 MiB segments and 8 KiB pages: WAL bytes without page headers.
fn bytepos(p: u64) -> u64 {
    let usable_page = PAGE - 24;
    let usable_seg = (SEG / PAGE) * usable_page - 16;
    let (segs, off) = (p / SEG, p % SEG);
    let (pages, in_page) = (off / PAGE, off % PAGE);
    let mut r = segs * usable_seg;
    if pages == 0 {
        r += in_page.saturating_sub(40);
    } else {
        r += PAGE - 40 + (pages - 1) * usable_page + in_page.saturating_sub(24);
    }
    r
}

/// `XLogBytePosToEndRecPtr`.
fn end_ptr(b: u64) -> u64 {
    let usable_page = PAGE - 24;
    let usable_seg = (SEG / PAGE) * usable_page - 16;
    let (segs, mut left) = (b / usable_seg, b % usable_seg);
    let off = if left <= PAGE - 40 {
        if left == 0 {
            0
        } else {
            left + 40
        }
    } else {
        left -= PAGE - 40;
        let (pages, rest) = (left / usable_page, left % usable_page);
        pages * PAGE + PAGE + if rest == 0 { 0 } else { rest + 24 }
    };
    segs * SEG + off
}

/// Emits a logical message sized so that a restore point named `base #n` starts at
/// `target(insert position)`; retries when other WAL got in between. Returns the name that
/// landed; every restore point made is pushed on `made` with the LSN PostgreSQL returned.
fn place_restore_point(
    pg: &Pg,
    base: &str,
    target: impl Fn(u64) -> u64,
    made: &mut Vec<(String, Lsn)>,
) -> String {
    for attempt in 0..8 {
        let insert = pg.lsn("SELECT pg_current_wal_insert_lsn()").0;
        let at = target(insert);
        // A non-transactional message with prefix "x" is 24 + 5 + 24 + 2 + n bytes.
        let n = bytepos(at) - bytepos(insert) - 55;
        let name = format!("{base} #{attempt}");
        let out = pg.sql_all(&[
            &format!("SELECT pg_logical_emit_message(false, 'x', repeat('x', {n}))"),
            &format!("SELECT pg_create_restore_point({})", quote(&name)),
        ]);
        let (emitted, end): (Lsn, Lsn) = (out[0].parse().unwrap(), out[1].parse().unwrap());
        made.push((name.clone(), end));
        if emitted.0 == at && end.0 == end_ptr(bytepos(at) + 104) {
            return name;
        }
        eprintln!(
            "{name}: message ended at {emitted} (wanted {}), restore point at {end}; retrying",
            Lsn(at)
        );
    }
    panic!("could not place restore point {base}");
}

/// One record as `pg_waldump` prints it.
#[derive(Debug, Clone, PartialEq)]
struct Dumped {
    rmgr: String,
    tot_len: u32,
    lsn: Lsn,
    prev: Lsn,
    desc: String,
}

fn field<'a>(line: &'a str, key: &str, end: &str) -> &'a str {
    let rest = &line[line
        .find(key)
        .unwrap_or_else(|| panic!("no {key:?} in {line}"))
        + key.len()..];
    rest.find(end).map_or(rest, |i| &rest[..i]).trim()
}

/// `pg_waldump -p archive first last`.
fn waldump(archive: &Path, first: &str, last: &str) -> Vec<Dumped> {
    let out = Command::new(Path::new(PG_BIN).join("pg_waldump"))
        .arg("-p")
        .arg(archive)
        .args([first, last])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let recs: Vec<Dumped> = text
        .lines()
        .filter(|l| l.starts_with("rmgr: "))
        .map(|l| Dumped {
            rmgr: field(l, "rmgr: ", " ").to_string(),
            tot_len: field(field(l, "len (rec/tot):", ","), "/", ",")
                .parse()
                .unwrap(),
            lsn: field(l, "lsn: ", ",").parse().unwrap(),
            prev: field(l, "prev ", ",").parse().unwrap(),
            desc: l[l.find("desc: ").unwrap() + 6..].to_string(),
        })
        .collect();
    assert!(
        !recs.is_empty(),
        "pg_waldump printed nothing: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    recs
}

/// (name, lsn) of the restore points in a dump.
fn dumped_restore_points(recs: &[Dumped]) -> Vec<(String, Lsn)> {
    recs.iter()
        .filter_map(|r| Some((r.desc.strip_prefix("RESTORE_POINT ")?.to_string(), r.lsn)))
        .collect()
}

/// The first and last segment files of `timeline` in `archive`.
fn segment_span(listing: &ArchiveListing, timeline: u32) -> (String, String) {
    let runs = listing.runs(timeline);
    assert_eq!(runs.len(), 1, "timeline {timeline} has gaps: {runs:?}");
    (
        listing.file_name(timeline, *runs[0].start()),
        listing.file_name(timeline, *runs[0].end()),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Makes a restore point and notes the LSN PostgreSQL returns.
fn point(pg: &Pg, name: &str, made: &mut Vec<(String, Lsn)>) {
    let lsn = pg.lsn(&format!("SELECT pg_create_restore_point({})", quote(name)));
    made.push((name.to_string(), lsn));
}

fn keep_all(_: &RecordHeader) -> bool {
    true
}

/// Every record of timeline 1 from the first archived segment, with its main data checked.
fn read_records(archive: &Path, first: SegNo) -> Vec<(Lsn, Lsn, u32)> {
    let provider = |segno: SegNo| {
        let path = archive.join(segno_file_name(1, segno, SEG));
        Ok::<_, WalError>(path.exists().then_some(SegmentRef {
            timeline: 1,
            segno,
            path,
        }))
    };
    let options = ReaderOptions {
        verify_crc: true,
        keep_body: keep_all,
        ..ReaderOptions::default()
    };
    let mut reader = WalReader::new(provider, first, options);
    let mut out = Vec::new();
    while let Some(rec) = reader.next_record().unwrap() {
        main_data_range(reader.body()).unwrap_or_else(|e| panic!("record at {}: {e}", rec.lsn));
        out.push((rec.lsn, rec.header.prev, rec.header.tot_len));
    }
    assert!(reader.incomplete_record().is_none());
    out
}

#[test]
fn restore_points_and_records_match_pg_waldump() {
    skip_unless_possible!();
    let root = test_root();
    let archive = postgres_dir(&root.path().join("archive"), 0o755);
    let mut pg = Pg::init(root.path(), "data", &archive, "wal_compression = pglz");
    pg.start();
    let test_start = chrono::Utc::now();

    let mut made: Vec<(String, Lsn)> = Vec::new();
    point(&pg, "plain", &mut made);
    pg.sql("CREATE TABLE t (id int PRIMARY KEY, pad text); INSERT INTO t SELECT g, repeat('p', 50) FROM generate_series(1, 20000) g");
    for name in [
        "it's quoted",
        "semi;colon -- \"double\"",
        "  spaces  around  ",
        &"n".repeat(63),
        "café ☕ 点",
        &"点".repeat(21),
    ] {
        point(&pg, name, &mut made);
    }
    pg.sql("CHECKPOINT");
    pg.sql("UPDATE t SET pad = 'q' WHERE id % 7 = 0"); // full-page images, compressed
    point(&pg, "after updates", &mut made);

    // Restore points across a page boundary (header split, body split) and across segments.
    let page_target = |back: u64| {
        move |insert: u64| {
            let mut page = insert / PAGE + 2;
            if (page + 1) % (SEG / PAGE) == 0 {
                page += 2;
            }
            page * PAGE + PAGE - back
        }
    };
    let seg_target = |back: u64| {
        move |insert: u64| {
            let end = (insert / SEG + 1) * SEG;
            if end - insert < 64 * 1024 {
                end + SEG - back
            } else {
                end - back
            }
        }
    };
    let header_split = place_restore_point(&pg, "page: split header", page_target(8), &mut made);
    let body_split = place_restore_point(&pg, "page: split body", page_target(40), &mut made);
    let seg_header_split =
        place_restore_point(&pg, "segment: split header", seg_target(16), &mut made);
    let seg_body_split = place_restore_point(&pg, "segment: split body", seg_target(48), &mut made);
    pg.sql("DELETE FROM t WHERE id % 3 = 0");
    point(&pg, "last", &mut made);
    let last_file = pg.switch_and_wait(&archive);
    pg.stop();
    let test_end = chrono::Utc::now();

    // What pg_waldump sees.
    let listing = ArchiveListing::read(&archive, None).unwrap();
    let (first_file, last_archived) = segment_span(&listing, 1);
    assert_eq!(last_archived, last_file);
    let dumped = waldump(&archive, &first_file, &last_file);
    let dumped_points = dumped_restore_points(&dumped);
    assert_eq!(
        dumped_points.len(),
        made.len(),
        "pg_waldump: {dumped_points:?}\nmade: {made:?}"
    );

    // Every record: same LSN, prev-link and length as pg_waldump, CRC verified, block headers
    // decoded.
    let t = Instant::now();
    let first_segno = *listing.runs(1)[0].start();
    let ours = read_records(&archive, first_segno);
    eprintln!(
        "read {} records of {} segments with CRC in {:?}",
        ours.len(),
        listing.segments.len(),
        t.elapsed()
    );
    let theirs: Vec<(Lsn, Lsn, u32)> = dumped.iter().map(|d| (d.lsn, d.prev, d.tot_len)).collect();
    assert_eq!(ours.len(), theirs.len());
    assert!(
        ours == theirs,
        "first difference: {:?}",
        ours.iter().zip(&theirs).find(|(a, b)| a != b)
    );
    assert!(
        dumped.iter().any(|d| d.desc.contains("FPW")),
        "no full-page images"
    );

    // Restore points: same names and LSNs as pg_waldump, same end LSNs as PostgreSQL returned.
    let t = Instant::now();
    let points = find_restore_points(&archive).unwrap();
    eprintln!("found {} restore points in {:?}", points.len(), t.elapsed());
    let ours: Vec<(String, Lsn)> = points.iter().map(|p| (p.name.clone(), p.lsn)).collect();
    assert_eq!(ours, dumped_points);
    let ends: Vec<(String, Lsn)> = points.iter().map(|p| (p.name.clone(), p.end_lsn)).collect();
    assert_eq!(ends, made);
    for p in &points {
        assert_eq!(p.timeline, 1);
        assert!(
            p.time >= test_start - chrono::Duration::seconds(1) && p.time <= test_end,
            "{p:?}"
        );
        assert_eq!(p.segment, segno_file_name(1, p.lsn.segment(SEG), SEG));
        assert_eq!(
            p.last_segment,
            segno_file_name(1, p.end_lsn.prev_segment(SEG), SEG)
        );
    }
    let by_name =
        |name: &str| -> &RestorePointRecord { points.iter().find(|p| p.name == name).unwrap() };
    let p = by_name(&header_split);
    assert!(
        p.lsn.0 % PAGE > PAGE - 24 && p.lsn.0 / PAGE != (p.end_lsn.0 - 1) / PAGE,
        "{p:?}"
    );
    let p = by_name(&body_split);
    assert!(
        p.lsn.0 % PAGE <= PAGE - 24 && p.lsn.0 / PAGE != (p.end_lsn.0 - 1) / PAGE,
        "{p:?}"
    );
    let p = by_name(&seg_header_split);
    assert!(
        p.lsn.0 % SEG > SEG - 24 && p.segment != p.last_segment,
        "{p:?}"
    );
    let p = by_name(&seg_body_split);
    assert!(
        p.lsn.0 % SEG <= SEG - 24 && p.segment != p.last_segment,
        "{p:?}"
    );

    // Continuity over the whole archive, from the first record to the last restore point.
    let from = dumped[0].lsn;
    let to = by_name("last").end_lsn;
    let t = Instant::now();
    let report = check_continuity(&archive, None, from, to, &ContinuityOptions::default()).unwrap();
    eprintln!(
        "checked continuity of {} segments in {:?}",
        report.segments.len(),
        t.elapsed()
    );
    assert_eq!(report.first_record, Some(from));
    assert_eq!(report.end, to);
    assert_eq!(
        report.records as usize,
        dumped.iter().filter(|d| d.lsn < to).count()
    );
    let all: Vec<String> = listing
        .segments
        .values()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(report.segments, all);

    // Damage, on copies of the archive.
    let copy = root.path().join("copy");
    copy_dir(&archive, &copy);
    let middle = &all[all.len() / 2];
    std::fs::remove_file(copy.join(middle)).unwrap();
    let e = check_continuity(&copy, None, from, to, &ContinuityOptions::default()).unwrap_err();
    assert!(matches!(e, WalError::MissingSegment { .. }));
    assert_eq!(
        e.to_string(),
        format!(
            "{middle} is missing from {}: WAL is not continuous from {from} to {to}",
            copy.display()
        )
    );
    std::fs::copy(archive.join(middle), copy.join(middle)).unwrap();

    // A flipped byte in the name of a restore point: its CRC no longer matches.
    let p = by_name("plain");
    let file = copy.join(&p.segment);
    let mut bytes = std::fs::read(&file).unwrap();
    let at = p.lsn.segment_offset(SEG) as usize + 24 + 2 + 8;
    assert_eq!(bytes[at], b'p');
    bytes[at] = b'P';
    std::fs::write(&file, &bytes).unwrap();
    let e = check_continuity(&copy, None, from, to, &ContinuityOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, WalError::CrcMismatch { lsn, .. } if *lsn == p.lsn),
        "{msg}"
    );
    let want = format!(
        "{} offset {}: CRC mismatch in record at {}",
        file.display(),
        p.lsn.segment_offset(SEG),
        p.lsn
    );
    assert!(msg.starts_with(&want), "{msg}\nwanted: {want}");
    let e = find_restore_points(&copy).unwrap_err();
    assert!(matches!(e, WalError::CrcMismatch { .. }), "{e}");
    let scan = scan_archive(&copy, &ScanOptions::default()).unwrap();
    assert_eq!(scan.problems.len(), 1);
    bytes[at] = b'p';

    // A damaged page header; a truncated segment.
    let page = (p.lsn.segment_offset(SEG) / PAGE + 1) * PAGE;
    bytes[page as usize] ^= 0xFF;
    std::fs::write(&file, &bytes).unwrap();
    let e = check_continuity(&copy, None, from, to, &ContinuityOptions::default()).unwrap_err();
    assert!(
        matches!(e, WalError::BadPageMagic { offset, .. } if offset == page),
        "{e}"
    );
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let e = check_continuity(&copy, None, from, to, &ContinuityOptions::default()).unwrap_err();
    assert!(matches!(e, WalError::WrongSegmentSize { .. }), "{e}");
}

#[test]
fn timeline_switch_after_point_in_time_recovery() {
    skip_unless_possible!();
    let root = test_root();
    let archive = postgres_dir(&root.path().join("archive"), 0o755);
    let mut a = Pg::init(root.path(), "primary", &archive, "");
    a.start();
    a.sql("CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g");
    let backup = postgres_dir(&root.path().join("restored"), 0o700);
    run(as_postgres("pg_basebackup", root.path())
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-X",
            "none",
            "-c",
            "fast",
            "-D",
        ])
        .arg(&backup)
        .arg("-p")
        .arg(a.port.to_string()));
    a.lsn("SELECT pg_create_restore_point('before branch')");
    a.sql("INSERT INTO t SELECT generate_series(1, 10000)");
    let branch = a.lsn("SELECT pg_create_restore_point('branch here')");
    a.sql("INSERT INTO t SELECT generate_series(1, 100000)");
    a.lsn("SELECT pg_create_restore_point('timeline 1 only')");
    a.switch_and_wait(&archive);
    a.stop();

    // Point-in-time recovery to "branch here", promoted to timeline 2.
    let mut b = Pg::existing(root.path(), backup.clone(), "restored-log");
    b.configure(&format!(
        "restore_command = 'cp {}/%f %p'\nrecovery_target_name = 'branch here'\nrecovery_target_action = 'promote'",
        archive.display()
    ));
    std::fs::write(backup.join("recovery.signal"), "").unwrap();
    b.start();
    let start = Instant::now();
    while b.sql("SELECT pg_is_in_recovery()") != "f" {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "recovery did not end"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let tl2_point = b.lsn("SELECT pg_create_restore_point('on timeline 2')");
    b.sql("INSERT INTO t SELECT generate_series(1, 10000)");
    b.switch_and_wait(&archive);
    wait_for(&archive.join("00000002.history"));
    b.stop();

    let history = TimelineHistory::load(&archive, 2).unwrap();
    assert_eq!(history.switches.len(), 1);
    assert_eq!(
        (
            history.switches[0].timeline,
            history.switches[0].switch_point
        ),
        (1, branch)
    );
    assert!(
        history.switches[0].reason.contains("branch here"),
        "{history:?}"
    );

    // Restore points per timeline, as pg_waldump reads each timeline's files.
    let listing = ArchiveListing::read(&archive, None).unwrap();
    eprintln!(
        "archive: {:?}, partial: {:?}",
        listing.segments.keys().collect::<Vec<_>>(),
        listing.partial
    );
    let points = find_restore_points(&archive).unwrap();
    for tli in [1, 2] {
        let (first, last) = segment_span(&listing, tli);
        let dumped = dumped_restore_points(&waldump(&archive, &first, &last));
        let ours: Vec<(String, Lsn)> = points
            .iter()
            .filter(|p| p.timeline == tli)
            .map(|p| (p.name.clone(), p.lsn))
            .collect();
        assert_eq!(ours, dumped, "timeline {tli}");
    }
    let names: Vec<(&str, u32)> = points
        .iter()
        .map(|p| (p.name.as_str(), p.timeline))
        .collect();
    assert!(
        names.contains(&("timeline 1 only", 1)) && names.contains(&("on timeline 2", 2)),
        "{names:?}"
    );
    assert!(!names.contains(&("timeline 1 only", 2)), "{names:?}");

    // From the backup's start to the timeline 2 point: timeline 1 up to the switch segment.
    assert_eq!(listing.backups.len(), 1);
    let backup_info = BackupHistory::read_file(&listing.backups[0]).unwrap();
    let to = points
        .iter()
        .find(|p| p.name == "on timeline 2")
        .unwrap()
        .end_lsn;
    assert_eq!(to, tl2_point);
    let report = check_continuity(
        &archive,
        None,
        backup_info.start_lsn,
        to,
        &ContinuityOptions::default(),
    )
    .unwrap();
    assert_eq!(report.timeline, 2);
    let switch_seg = branch.segment(SEG);
    let want: Vec<String> = (backup_info.start_lsn.segment(SEG)..=to.prev_segment(SEG))
        .map(|s| segno_file_name(if s < switch_seg { 1 } else { 2 }, s, SEG))
        .collect();
    assert_eq!(report.segments, want);
    assert!(
        want.iter().any(|f| f.starts_with("00000001"))
            && want.iter().any(|f| f.starts_with("00000002")),
        "the range should cross the switch: {want:?}"
    );
    // Timeline 1 alone is intact too.
    let tl1_end = points
        .iter()
        .find(|p| p.name == "timeline 1 only")
        .unwrap()
        .end_lsn;
    check_continuity(
        &archive,
        Some(&TimelineHistory::new(1)),
        backup_info.start_lsn,
        tl1_end,
        &ContinuityOptions::default(),
    )
    .unwrap();

    // Without timeline 2's copy of the switch segment there is no path, even though timeline
    // 1's segment of that number is there.
    let copy = root.path().join("copy");
    copy_dir(&archive, &copy);
    let missing = segno_file_name(2, switch_seg, SEG);
    assert!(copy.join(segno_file_name(1, switch_seg, SEG)).exists());
    std::fs::remove_file(copy.join(&missing)).unwrap();
    let e = check_continuity(
        &copy,
        None,
        backup_info.start_lsn,
        to,
        &ContinuityOptions::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{missing} is missing from")),
        "{e}"
    );
}

/// The settings of each `PARAMETER_CHANGE` record `pg_waldump` prints, with its LSN.
fn dumped_parameter_changes(recs: &[Dumped]) -> Vec<(Lsn, HotStandbyParameters)> {
    recs.iter()
        .filter(|r| r.rmgr == "XLOG" && r.desc.starts_with("PARAMETER_CHANGE "))
        .map(|r| {
            let v = |key: &str| -> u32 { field(&r.desc, &format!("{key}="), " ").parse().unwrap() };
            (
                r.lsn,
                HotStandbyParameters {
                    max_connections: v("max_connections"),
                    max_worker_processes: v("max_worker_processes"),
                    max_wal_senders: v("max_wal_senders"),
                    max_prepared_xacts: v("max_prepared_xacts"),
                    max_locks_per_xact: v("max_locks_per_xact"),
                },
            )
        })
        .collect()
}

#[test]
fn parameter_changes_and_tablespaces_match_pg_waldump() {
    skip_unless_possible!();
    let root = test_root();
    let archive = postgres_dir(&root.path().join("archive"), 0o755);
    let mut pg = Pg::init(root.path(), "data", &archive, "");
    pg.start();
    let from = pg.lsn("SELECT pg_current_wal_insert_lsn()");
    // Raise two settings, restart; lower one again, restart: the maximum stays.
    pg.sql_all(&[
        "ALTER SYSTEM SET max_connections = 150",
        "ALTER SYSTEM SET max_prepared_transactions = 30",
    ]);
    pg.stop();
    pg.start();
    pg.sql("ALTER SYSTEM SET max_connections = 110");
    pg.stop();
    pg.start();
    let shown = pg.sql_all(&["SHOW max_connections", "SHOW max_prepared_transactions"]);
    assert_eq!(shown, ["110", "30"]);
    let ts_dir = postgres_dir(&root.path().join("ts"), 0o700);
    pg.sql(&format!(
        "CREATE TABLESPACE t1 LOCATION {}",
        quote(&ts_dir.display().to_string())
    ));
    let to = pg.lsn("SELECT pg_create_restore_point('after changes')");
    let last = pg.switch_and_wait(&archive);
    pg.stop();

    let report = check_continuity(&archive, None, from, to, &ContinuityOptions::default()).unwrap();
    let want = HotStandbyParameters {
        max_connections: 150,
        max_worker_processes: 8,
        max_wal_senders: 10,
        max_prepared_xacts: 30,
        max_locks_per_xact: 64,
    };
    assert_eq!(report.parameter_max, Some(want));

    // The same records as pg_waldump shows.
    let first = segno_file_name(1, from.segment(SEG), SEG);
    let dumped = waldump(&archive, &first, &last);
    let in_range = |lsn: Lsn| lsn >= from && lsn < to;
    let changes: Vec<_> = dumped_parameter_changes(&dumped)
        .into_iter()
        .filter(|c| in_range(c.0))
        .collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[0].1.max_connections, 150);
    assert_eq!(changes[1].1.max_connections, 110);
    let max = changes.iter().map(|c| c.1).reduce(|a, b| a.max(&b));
    assert_eq!(report.parameter_max, max);
    let creates: Vec<Lsn> = dumped
        .iter()
        .filter(|d| d.rmgr == "Tablespace" && d.desc.starts_with("CREATE "))
        .map(|d| d.lsn)
        .collect();
    assert_eq!(creates.len(), 1, "{creates:?}");
    assert_eq!(report.tablespace_creates, creates);

    // Before the changes there are none.
    let before = check_continuity(
        &archive,
        None,
        from,
        changes[0].0,
        &ContinuityOptions::default(),
    )
    .unwrap();
    assert_eq!(before.parameter_max, None);
    assert!(before.tablespace_creates.is_empty());
}

/// `WAL-Ranges` of a `backup_manifest`: (timeline, start, end).
fn manifest_wal_range(manifest: &Path) -> (u32, Lsn, Lsn) {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    let r = &m["WAL-Ranges"][0];
    (
        r["Timeline"].as_u64().unwrap() as u32,
        r["Start-LSN"].as_str().unwrap().parse().unwrap(),
        r["End-LSN"].as_str().unwrap().parse().unwrap(),
    )
}

/// (name, data offset, size) of each entry of a tar file.
fn tar_members(path: &Path) -> Vec<(String, u64, u64)> {
    let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                e.raw_file_position(),
                e.size(),
            )
        })
        .collect()
}

#[test]
fn backup_wal_tar_and_reading_from_the_backup_on() {
    skip_unless_possible!();
    let root = test_root();
    let archive = postgres_dir(&root.path().join("archive"), 0o755);
    let mut pg = Pg::init(root.path(), "data", &archive, "");
    pg.start();
    // Some archived segments before the backup.
    pg.sql("CREATE TABLE t (id int, pad text)");
    let mut made = Vec::new();
    point(&pg, "before the backup", &mut made);
    for _ in 0..3 {
        pg.sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g");
        pg.switch_and_wait(&archive);
    }
    let backup = postgres_dir(&root.path().join("backup"), 0o700);
    // Writes during the backup, so that pg_wal.tar holds more than the checkpoint.
    let writer = {
        let port = pg.port;
        std::thread::spawn(move || {
            for _ in 0..5 {
                let _ = Command::new(Path::new(PG_BIN).join("psql"))
                    .args([
                        "-X",
                        "-q",
                        "-h",
                        "127.0.0.1",
                        "-U",
                        "postgres",
                        "-d",
                        "postgres",
                    ])
                    .arg("-p")
                    .arg(port.to_string())
                    .args([
                        "-c",
                        "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g",
                    ])
                    .output();
            }
        })
    };
    run(as_postgres("pg_basebackup", root.path())
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-Ft",
            "-X",
            "stream",
            "-c",
            "fast",
            "-D",
        ])
        .arg(&backup)
        .arg("-p")
        .arg(pg.port.to_string()));
    writer.join().unwrap();
    let (tli, start, end) = manifest_wal_range(&backup.join("backup_manifest"));
    let wal_tar = backup.join("pg_wal.tar");
    let members = tar_members(&wal_tar);
    eprintln!("pg_wal.tar: {members:?}; WAL {start}..{end} on timeline {tli}");

    // Every record of the backup's WAL, as pg_waldump reads the extracted segments.
    let report = check_backup_wal(&wal_tar, tli, start, end).unwrap();
    let extracted = root.path().join("extracted");
    std::fs::create_dir(&extracted).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&wal_tar)
        .arg("-C")
        .arg(&extracted));
    let want: Vec<String> = (start.segment(SEG)..=end.prev_segment(SEG))
        .map(|s| segno_file_name(tli, s, SEG))
        .collect();
    assert_eq!(report.segments, want);
    let dumped = waldump(&extracted, &want[0], want.last().unwrap());
    let in_backup: Vec<&Dumped> = dumped
        .iter()
        .filter(|d| d.lsn >= start && d.lsn < end)
        .collect();
    assert_eq!(report.records as usize, in_backup.len());
    assert_eq!(report.first_record, Some(in_backup[0].lsn));
    assert!(report.end >= end, "{report:?}");

    // A flipped byte inside a record body in pg_wal.tar fails, naming segment and LSN.
    let victim = in_backup
        .iter()
        .rev()
        .find(|d| d.tot_len > 64 && d.lsn.0 % PAGE + 64 < PAGE)
        .expect("a record to damage");
    let seg_name = segno_file_name(tli, victim.lsn.segment(SEG), SEG);
    let (_, data_at, _) = members.iter().find(|m| m.0 == seg_name).unwrap();
    let damaged_tar = root.path().join("damaged-pg_wal.tar");
    let mut bytes = std::fs::read(&wal_tar).unwrap();
    bytes[(data_at + victim.lsn.segment_offset(SEG) + 40) as usize] ^= 0x10;
    std::fs::write(&damaged_tar, &bytes).unwrap();
    let e = check_backup_wal(&damaged_tar, tli, start, end).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, WalError::CrcMismatch { lsn, .. } if *lsn == victim.lsn),
        "{msg}"
    );
    assert!(
        msg.starts_with(&format!(
            "{}/{seg_name} offset {}: CRC mismatch in record at {}",
            damaged_tar.display(),
            victim.lsn.segment_offset(SEG),
            victim.lsn
        )),
        "{msg}"
    );

    // After the backup: a restore point across a segment boundary, then the one recorded.
    let spanning = place_restore_point(
        &pg,
        "spanning",
        |insert: u64| {
            let end = (insert / SEG + 1) * SEG;
            if end - insert < 64 * 1024 {
                end + SEG - 48
            } else {
                end - 48
            }
        },
        &mut made,
    );
    pg.sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g");
    point(&pg, "recorded", &mut made);
    let last_segment = pg.switch_and_wait(&archive);
    pg.stop();

    // locate_restore_point reads the last segment (and the ones before it when needed).
    let all = find_restore_points(&archive).unwrap();
    let by_name = |n: &str| all.iter().find(|r| r.name == n).unwrap().clone();
    let got = locate_restore_point(&archive, "recorded", &last_segment, 0)
        .unwrap()
        .unwrap();
    assert_eq!(got, by_name("recorded"));
    assert_eq!(got.end_lsn, made.last().unwrap().1);
    let sp = by_name(&spanning);
    assert_ne!(sp.segment, sp.last_segment);
    let got = locate_restore_point(&archive, &spanning, &sp.last_segment, 1)
        .unwrap()
        .unwrap();
    assert_eq!(got, sp);
    assert_eq!(
        locate_restore_point(&archive, &spanning, &sp.last_segment, 0).unwrap(),
        None
    );

    // From the backup's start on: the same points as a full scan, without the older segments,
    // which may be damaged.
    let opts = ScanOptions::default();
    let from_start = find_restore_points_from(&archive, tli, start, &opts).unwrap();
    let after: Vec<RestorePointRecord> = all.iter().filter(|r| r.lsn >= start).cloned().collect();
    assert_eq!(from_start, after);
    assert_eq!(from_start.len(), 2);
    let copy = root.path().join("copy");
    copy_dir(&archive, &copy);
    let oldest = ArchiveListing::read(&copy, None).unwrap();
    let (first_file, _) = segment_span(&oldest, 1);
    assert!(first_file < segno_file_name(tli, start.segment(SEG), SEG));
    std::fs::write(copy.join(&first_file), b"not WAL").unwrap();
    assert!(find_restore_points(&copy).is_err());
    let scan = scan_archive_from(&copy, tli, start, &opts).unwrap();
    assert!(scan.problems.is_empty(), "{:?}", scan.problems);
    assert_eq!(scan.restore_points, after);
    let full = scan_archive(&archive, &opts).unwrap();
    assert!(
        scan.stats.segments < full.stats.segments,
        "{:?} vs {:?}",
        scan.stats,
        full.stats
    );
}

/// Timing on a large archive: `WAL_READER_PERF_SEGMENTS` segments (default 200) of insert
/// WAL. Run with `cargo test --release -p citus-recovery --test wal_reader -- --ignored
/// --nocapture`.
#[test]
#[ignore = "generates gigabytes of WAL; run by hand for timings"]
fn scan_speed_on_a_large_archive() {
    skip_unless_possible!();
    let segments: u64 =
        std::env::var("WAL_READER_PERF_SEGMENTS").map_or(200, |v| v.parse().unwrap());
    let root = test_root();
    let archive = postgres_dir(&root.path().join("archive"), 0o755);
    let mut pg = Pg::init(root.path(), "data", &archive, "");
    pg.start();
    pg.sql("CREATE UNLOGGED TABLE src AS SELECT g AS id, md5(g::text) AS pad FROM generate_series(1, 1000000) g");
    pg.sql("CREATE TABLE t (id int, pad text)");
    let first = pg.lsn("SELECT pg_current_wal_insert_lsn()");
    let mut made = Vec::new();
    let mut i = 0;
    while pg.lsn("SELECT pg_current_wal_insert_lsn()").0 < first.0 + segments * SEG {
        pg.sql("INSERT INTO t SELECT * FROM src");
        point(&pg, &format!("point {i}"), &mut made);
        i += 1;
    }
    pg.switch_and_wait(&archive);
    pg.stop();
    let listing = ArchiveListing::read(&archive, None).unwrap();
    let n = listing.segments.len();
    let gib = (n as u64 * SEG) as f64 / (1u64 << 30) as f64;
    let time = |what: &str, f: &dyn Fn() -> u64| {
        let t = Instant::now();
        let records = f();
        let s = t.elapsed().as_secs_f64();
        eprintln!(
            "{what}: {n} segments ({gib:.2} GiB, {records} records) in {s:.2} s = {:.0} MiB/s",
            gib * 1024.0 / s
        );
    };
    time("find_restore_points (no CRC)", &|| {
        let scan = scan_archive(&archive, &ScanOptions::default()).unwrap();
        assert!(scan.problems.is_empty());
        assert_eq!(scan.restore_points.len(), made.len());
        scan.stats.records
    });
    time("scan_archive with CRC", &|| {
        scan_archive(
            &archive,
            &ScanOptions {
                verify_crc: true,
                ..Default::default()
            },
        )
        .unwrap()
        .stats
        .records
    });
    let to = made.last().unwrap().1;
    time("check_continuity (CRC)", &|| {
        check_continuity(&archive, None, first, to, &ContinuityOptions::default())
            .unwrap()
            .records
    });
    let dumped = Instant::now();
    let (a, b) = segment_span(&listing, 1);
    let out = Command::new(Path::new(PG_BIN).join("pg_waldump"))
        .arg("-p")
        .arg(&archive)
        .args(["-r", "XLOG", &a, &b])
        .output()
        .unwrap();
    eprintln!(
        "pg_waldump -r XLOG for comparison: {:.2} s ({} bytes of output)",
        dumped.elapsed().as_secs_f64(),
        out.stdout.len()
    );
}

/// Runs `f` and returns its result with the seconds it took.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed().as_secs_f64())
}

/// A real archive pushed with `archive_push` into a posix repository reads as the folder does:
/// the same restore points (the LSNs PostgreSQL returned) and the same continuity. Prints the
/// time of each over the folder and the repository (`WAL_SOURCE_SEGMENTS` segments of WAL,
/// default 10; `--release --nocapture` for meaningful timings).
#[test]
fn a_real_archive_reads_the_same_from_a_posix_repository() {
    use citus_recovery::archiving::archive_push;
    use citus_recovery::repository::codec::Compression;
    use citus_recovery::repository::posix::PosixRepository;
    use citus_recovery::wal::{
        check_continuity_in, find_restore_points_in, locate_restore_point_in, RepositorySource,
    };
    use std::sync::Arc;

    skip_unless_possible!();
    let segments: u64 = std::env::var("WAL_SOURCE_SEGMENTS").map_or(10, |v| v.parse().unwrap());
    let root = test_root();
    let archive = postgres_dir(&root.path().join("archive"), 0o755);
    let mut pg = Pg::init(root.path(), "data", &archive, "");
    pg.start();
    pg.sql("CREATE TABLE t (id int, pad text)");
    let mut made = Vec::new();
    point(&pg, "first", &mut made);
    let first = made[0].1;
    let mut i = 0;
    while pg.lsn("SELECT pg_current_wal_insert_lsn()").0 < first.0 + segments * SEG {
        pg.sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 100000) g");
        point(&pg, &format!("point {i}"), &mut made);
        i += 1;
    }
    let last_segment = pg.switch_and_wait(&archive);
    pg.stop();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let repo = Arc::new(PosixRepository::create(root.path().join("repo")).unwrap());
    let mut pushed = 0;
    let ((), push_secs) = timed(|| {
        for e in std::fs::read_dir(&archive).unwrap() {
            let path = e.unwrap().path();
            rt.block_on(archive_push(
                &*repo,
                Compression::Zstd(1),
                "coordinator",
                &path,
            ))
            .unwrap();
            pushed += 1;
        }
    });
    let source = RepositorySource::with_handle(repo, "coordinator", rt.handle().clone()).unwrap();

    let (in_folder, folder_rp) = timed(|| find_restore_points(&archive).unwrap());
    let (in_repo, repo_rp) = timed(|| find_restore_points_in(&source).unwrap());
    assert_eq!(in_repo, in_folder);
    let got: Vec<(String, Lsn)> = in_repo
        .iter()
        .map(|r| (r.name.clone(), r.end_lsn))
        .collect();
    assert_eq!(got, made);

    let to = made.last().unwrap().1;
    let opts = ContinuityOptions::default();
    let (a, folder_cont) = timed(|| check_continuity(&archive, None, first, to, &opts).unwrap());
    let (b, repo_cont) = timed(|| check_continuity_in(&source, None, first, to, &opts).unwrap());
    assert_eq!(
        (
            &b.segments,
            b.records,
            b.parameter_max,
            b.first_record,
            b.end
        ),
        (
            &a.segments,
            a.records,
            a.parameter_max,
            a.first_record,
            a.end
        )
    );
    assert_eq!(b.stats, a.stats);
    assert!(b.segments.len() as u64 >= segments, "{:?}", b.segments);
    assert!(b.records > 0);

    let name = made.last().unwrap().0.as_str();
    let (found, repo_locate) =
        timed(|| locate_restore_point_in(&source, name, &last_segment, 4).unwrap());
    assert_eq!(
        found,
        locate_restore_point(&archive, name, &last_segment, 4).unwrap()
    );
    assert_eq!(found.unwrap().end_lsn, to);
    eprintln!(
        "{} segments, {pushed} files pushed (zstd-1) in {push_secs:.2} s\n\
         find_restore_points: folder {folder_rp:.2} s, repository {repo_rp:.2} s\n\
         check_continuity ({} records): folder {folder_cont:.2} s, repository {repo_cont:.2} s\n\
         locate_restore_point in the repository: {repo_locate:.3} s",
        b.segments.len(),
        a.records
    );
}
