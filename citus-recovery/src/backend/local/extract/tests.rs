//! Extraction against hostile and normal tars, as root with the servers' user `postgres`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::super::as_user::as_user;
use super::*;
use crate::files::OsUser;

fn postgres() -> OsUser {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "these tests run as root"
    );
    OsUser::lookup("postgres").expect("the tests need an OS user postgres")
}

/// A root-owned temporary folder (0755) with a `work` folder owned by postgres, where data
/// directories are made, and a `backup` folder owned by postgres.
struct Place {
    dir: tempfile::TempDir,
}

impl Place {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let user = postgres();
        for sub in ["work", "backup", "outside"] {
            let p = dir.path().join(sub);
            std::fs::create_dir(&p).unwrap();
            std::os::unix::fs::chown(&p, Some(user.uid), Some(user.gid)).unwrap();
        }
        Place { dir }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn data_dir(&self) -> PathBuf {
        self.path("work/data")
    }
    /// Writes `backup/<name>` from entries, readable by postgres.
    fn tar(&self, name: &str, entries: &[Entry]) {
        let path = self.path("backup").join(name);
        let mut b = tar::Builder::new(File::create(&path).unwrap());
        for e in entries {
            e.append(&mut b);
        }
        b.finish().unwrap();
        drop(b);
        let user = postgres();
        std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid)).unwrap();
    }
    fn extract(&self, targets: &[TablespaceTarget]) -> Result<()> {
        let (backup, data) = (self.path("backup"), self.data_dir());
        as_user(&postgres(), || extract_backup(&backup, &data, targets))
    }
    fn outside_is_empty(&self) -> bool {
        std::fs::read_dir(self.path("outside"))
            .unwrap()
            .next()
            .is_none()
    }
}

/// One tar entry, its name written raw (so hostile names reach the tar).
struct Entry {
    name: &'static [u8],
    kind: tar::EntryType,
    mode: u32,
    data: &'static [u8],
    link: Option<String>,
}

fn file(name: &'static str, mode: u32, data: &'static [u8]) -> Entry {
    Entry {
        name: name.as_bytes(),
        kind: tar::EntryType::Regular,
        mode,
        data,
        link: None,
    }
}

fn dir(name: &'static str) -> Entry {
    Entry {
        name: name.as_bytes(),
        kind: tar::EntryType::Directory,
        mode: 0o700,
        data: b"",
        link: None,
    }
}

fn link(name: &'static str, kind: tar::EntryType, target: &str) -> Entry {
    Entry {
        name: name.as_bytes(),
        kind,
        mode: 0o777,
        data: b"",
        link: Some(target.to_string()),
    }
}

impl Entry {
    fn append(&self, b: &mut tar::Builder<File>) {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..self.name.len()].copy_from_slice(self.name);
        h.set_entry_type(self.kind);
        h.set_mode(self.mode);
        h.set_mtime(1_600_000_000);
        h.set_size(self.data.len() as u64);
        if let Some(target) = &self.link {
            h.set_link_name(target).unwrap();
        }
        h.set_cksum();
        b.append(&h, self.data).unwrap();
    }
}

fn base_minimal() -> Vec<Entry> {
    vec![
        file("PG_VERSION", 0o600, b"15\n"),
        dir("global/"),
        file("global/pg_control", 0o600, b"control"),
        dir("pg_wal/"),
        dir("./pg_wal/archive_status/"),
        dir("pg_tblspc/"),
    ]
}

fn assert_refused(result: Result<()>, needle: &str) {
    let err = result
        .expect_err("the extraction must be refused")
        .to_string();
    assert!(err.contains(needle), "{err}");
}

#[test]
fn a_normal_backup_extracts_with_modes_times_and_a_pending_control_file() {
    let place = Place::new();
    let mut base = base_minimal();
    base.push(file("base/1/1234", 0o640, b"rows"));
    place.tar("base.tar", &base);
    place.tar(
        "pg_wal.tar",
        &[file("000000010000000000000002", 0o600, b"wal")],
    );
    place.extract(&[]).unwrap();
    let data = place.data_dir();
    let user = postgres();
    let meta = std::fs::symlink_metadata(&data).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o700, user.uid));
    let rows = std::fs::metadata(data.join("base/1/1234")).unwrap();
    assert_eq!(rows.mode() & 0o7777, 0o640);
    assert_eq!(rows.uid(), user.uid);
    assert_eq!(rows.mtime(), 1_600_000_000);
    assert_eq!(
        std::fs::read(data.join("pg_wal/000000010000000000000002")).unwrap(),
        b"wal"
    );
    assert!(data.join("pg_wal/archive_status").is_dir());
    assert!(!data.join(CONTROL_FILE).exists());
    assert_eq!(
        std::fs::read(data.join(PENDING_CONTROL_FILE)).unwrap(),
        b"control"
    );
}

#[test]
fn install_control_file_renames_the_pending_file_and_is_idempotent() {
    let place = Place::new();
    place.tar("base.tar", &base_minimal());
    place.extract(&[]).unwrap();
    let data = place.data_dir();
    let install = || as_user(&postgres(), || install_control_file(&data, &[]));
    install().unwrap();
    assert_eq!(std::fs::read(data.join(CONTROL_FILE)).unwrap(), b"control");
    assert!(!data.join(PENDING_CONTROL_FILE).exists());
    install().unwrap();
    std::fs::remove_file(data.join(CONTROL_FILE)).unwrap();
    assert_refused(install(), "neither");
    // Both present: never replace a control file.
    std::fs::write(data.join(CONTROL_FILE), "other").unwrap();
    std::fs::write(data.join(PENDING_CONTROL_FILE), "pending").unwrap();
    assert_refused(install(), "both");
    assert_eq!(std::fs::read(data.join(CONTROL_FILE)).unwrap(), b"other");
}

#[test]
fn a_pg_wal_link_to_an_outside_folder_is_refused_and_nothing_is_written_there() {
    let place = Place::new();
    let outside = place.path("outside");
    let mut base = base_minimal();
    base.retain(|e| !e.name.starts_with(b"pg_wal") && !e.name.starts_with(b"./pg_wal"));
    base.push(link(
        "pg_wal",
        tar::EntryType::Symlink,
        outside.to_str().unwrap(),
    ));
    place.tar("base.tar", &base);
    place.tar(
        "pg_wal.tar",
        &[file("000000010000000000000002", 0o600, b"wal")],
    );
    assert_refused(place.extract(&[]), "symbolic link");
    assert!(place.outside_is_empty());
}

#[test]
fn a_pg_wal_link_made_by_someone_else_is_not_followed() {
    // base.tar without pg_wal, and a link planted where pg_wal.tar goes: pg_wal must be ours.
    let place = Place::new();
    let base: Vec<Entry> = base_minimal()
        .into_iter()
        .filter(|e| !e.name.starts_with(b"pg_wal") && !e.name.starts_with(b"./pg_wal"))
        .collect();
    place.tar("base.tar", &base);
    place.tar(
        "pg_wal.tar",
        &[file("000000010000000000000002", 0o600, b"wal")],
    );
    place.extract(&[]).unwrap();
    assert!(std::fs::symlink_metadata(place.data_dir().join("pg_wal"))
        .unwrap()
        .is_dir());
}

#[test]
fn a_link_anywhere_else_is_refused() {
    let place = Place::new();
    let mut base = base_minimal();
    base.push(link("base/evil", tar::EntryType::Symlink, "/etc/passwd"));
    place.tar("base.tar", &base);
    assert_refused(place.extract(&[]), "\"base/evil\"");
}

#[test]
fn a_file_written_through_an_earlier_link_is_impossible() {
    // Even a link accepted by name (pg_tblspc/<oid>) is skipped, never created: a later entry
    // under that name lands in a real folder of the data directory, or fails.
    let place = Place::new();
    let mut base = base_minimal();
    let outside = place.path("outside");
    base.push(link(
        "pg_tblspc/16384",
        tar::EntryType::Symlink,
        outside.to_str().unwrap(),
    ));
    base.push(file("pg_tblspc/16384/x", 0o600, b"x"));
    place.tar("base.tar", &base);
    place.extract(&[]).unwrap();
    assert!(place.outside_is_empty());
    let made = place.data_dir().join("pg_tblspc/16384");
    assert!(std::fs::symlink_metadata(&made).unwrap().is_dir());
}

#[test]
fn a_hard_link_is_refused() {
    let place = Place::new();
    let mut base = base_minimal();
    base.push(link("base/hard", tar::EntryType::Link, "PG_VERSION"));
    place.tar("base.tar", &base);
    assert_refused(place.extract(&[]), "hard link");
}

#[test]
fn a_parent_component_is_refused_and_nothing_lands_outside() {
    let place = Place::new();
    let mut base = base_minimal();
    base.push(file("../outside/x", 0o600, b"x"));
    place.tar("base.tar", &base);
    assert_refused(place.extract(&[]), "`..`");
    assert!(place.outside_is_empty());
    assert!(!place.path("work/outside").exists());
}

#[test]
fn an_absolute_path_is_refused() {
    let place = Place::new();
    let mut base = base_minimal();
    let target: &'static str =
        Box::leak(format!("{}/x", place.path("outside").display()).into_boxed_str());
    base.push(file(target, 0o600, b"x"));
    place.tar("base.tar", &base);
    assert_refused(place.extract(&[]), "absolute");
    assert!(place.outside_is_empty());
}

#[test]
fn a_dot_inside_a_path_is_refused() {
    let place = Place::new();
    let mut base = base_minimal();
    base.push(file("base/./x", 0o600, b"x"));
    place.tar("base.tar", &base);
    assert_refused(place.extract(&[]), "`.`");
}

#[test]
fn setuid_setgid_and_sticky_modes_are_refused() {
    for mode in [0o4755, 0o2755, 0o1755] {
        let place = Place::new();
        let mut base = base_minimal();
        base.push(file("base/tool", mode, b"#!/bin/sh\n"));
        place.tar("base.tar", &base);
        assert_refused(place.extract(&[]), "setuid");
    }
}

#[test]
fn a_device_or_fifo_is_refused() {
    let place = Place::new();
    let mut base = base_minimal();
    base.push(Entry {
        name: b"base/fifo",
        kind: tar::EntryType::Fifo,
        mode: 0o600,
        data: b"",
        link: None,
    });
    place.tar("base.tar", &base);
    assert_refused(place.extract(&[]), "neither a regular file nor a folder");
}

#[test]
fn an_existing_data_directory_is_refused() {
    let place = Place::new();
    place.tar("base.tar", &base_minimal());
    let data = place.data_dir();
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("keep"), "mine").unwrap();
    assert_refused(place.extract(&[]), "exists already");
    assert_eq!(std::fs::read_to_string(data.join("keep")).unwrap(), "mine");
    // A link in its place too.
    std::fs::remove_dir_all(&data).unwrap();
    std::os::unix::fs::symlink(place.path("outside"), &data).unwrap();
    assert_refused(place.extract(&[]), "exists already");
    assert!(place.outside_is_empty());
}

#[test]
fn a_tar_that_is_a_link_is_refused() {
    let place = Place::new();
    let real = place.path("outside/base.tar");
    place.tar("real.tar", &base_minimal());
    std::fs::rename(place.path("backup/real.tar"), &real).unwrap();
    std::os::unix::fs::symlink(&real, place.path("backup/base.tar")).unwrap();
    assert_refused(place.extract(&[]), "symbolic link");
}

#[test]
fn tablespaces_go_to_their_new_folder_and_the_map_names_it() {
    let place = Place::new();
    let mut base = base_minimal();
    base.push(file("tablespace_map", 0o600, b"16384 /srv/live\\\\ts\n"));
    base.push(link(
        "pg_tblspc/16384",
        tar::EntryType::Symlink,
        "/srv/live",
    ));
    place.tar("base.tar", &base);
    place.tar(
        "16384.tar",
        &[
            dir("PG_15_202209061/"),
            dir("PG_15_202209061/5/"),
            file("PG_15_202209061/5/16385", 0o600, b"table"),
        ],
    );
    let location = place.path("work/ts new\nline");
    let targets = [TablespaceTarget {
        oid: 16384,
        location: location.clone(),
    }];
    // The set of tablespace tars must match.
    assert_refused(place.extract(&[]), "16384");
    std::fs::remove_dir_all(place.data_dir()).ok();
    place.extract(&targets).unwrap();
    assert_eq!(
        std::fs::read(location.join("PG_15_202209061/5/16385")).unwrap(),
        b"table"
    );
    let meta = std::fs::metadata(&location).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o700, postgres().uid));
    let map = std::fs::read(place.data_dir().join("tablespace_map")).unwrap();
    let want = format!("16384 {}/work/ts new\\\nline\n", place.dir.path().display());
    assert_eq!(String::from_utf8_lossy(&map), want);
    assert!(!place.data_dir().join("pg_tblspc/16384").exists());
    let data = place.data_dir();
    as_user(&postgres(), || install_control_file(&data, &targets)).unwrap();
    assert!(data.join(CONTROL_FILE).is_file());
}

#[test]
fn a_tablespace_folder_that_exists_is_refused() {
    let place = Place::new();
    let mut base = base_minimal();
    base.push(file("tablespace_map", 0o600, b"16384 /srv/live\n"));
    place.tar("base.tar", &base);
    place.tar("16384.tar", &[file("PG_15_202209061/x", 0o600, b"x")]);
    let location = place.path("outside");
    let targets = [TablespaceTarget {
        oid: 16384,
        location,
    }];
    assert_refused(place.extract(&targets), "exists already");
    assert!(place.outside_is_empty());
}

#[test]
fn map_parsing_follows_postgres_escapes() {
    assert_eq!(
        map_oids(b"1 /a\\\nb\n2 /c\\\\\r\n").unwrap(),
        BTreeSet::from([1, 2])
    );
    assert!(map_oids(b"x /a\n").is_err());
    assert!(map_oids(b"1 /a\n1 /b\n").is_err());
    let mut targets = BTreeMap::new();
    targets.insert(7, PathBuf::from("/a\\b\nc"));
    assert_eq!(tablespace_map(&targets), b"7 /a\\\\b\\\nc\n");
}

#[test]
fn read_file_refuses_a_linked_auto_conf() {
    let place = Place::new();
    let secret = place.path("secret");
    std::fs::write(&secret, "root:hash").unwrap();
    // Readable by anyone: only the link rule may stop it.
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let conf = place.path("work/postgresql.auto.conf");
    std::os::unix::fs::symlink(&secret, &conf).unwrap();
    let err = as_user(&postgres(), || node_fs::read_file(&conf)).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    // Writing over it is refused too, and the target is untouched.
    let err = as_user(&postgres(), || {
        node_fs::write_file(&conf, b"x", crate::backend::FileSync::Now)
    })
    .unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root:hash");
}

#[test]
fn rename_never_replaces() {
    let place = Place::new();
    let (a, b) = (place.path("work/a"), place.path("work/b"));
    std::fs::write(&a, "a").unwrap();
    std::fs::write(&b, "b").unwrap();
    let err = as_user(&postgres(), || node_fs::rename(&a, &b)).unwrap_err();
    assert!(err.to_string().contains("exists already"), "{err}");
    assert_eq!(std::fs::read_to_string(&b).unwrap(), "b");
    std::fs::remove_file(&b).unwrap();
    as_user(&postgres(), || node_fs::rename(&a, &b)).unwrap();
    assert_eq!(std::fs::read_to_string(&b).unwrap(), "a");
}

#[test]
fn create_dir_hands_new_folders_to_the_user_and_never_follows_a_link() {
    let place = Place::new();
    let user = postgres();
    // The parent is root's (0755): root creates, the user owns.
    let top = place.path("cluster/sub");
    node_fs::create_dir(&top, &user).unwrap();
    for p in [place.path("cluster"), top.clone()] {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!(
            (meta.uid(), meta.mode() & 0o7777),
            (user.uid, 0o700),
            "{p:?}"
        );
    }
    // A link the user planted as the last component is refused.
    let planted = place.path("work/planted");
    std::os::unix::fs::symlink("/etc", &planted).unwrap();
    let err = node_fs::create_dir(&planted, &user).unwrap_err();
    assert!(err.to_string().contains("not a folder"), "{err}");
    // Through a user-owned link, creation happens with the user's rights only: not in /etc.
    let through = planted.join("citus-recovery-test-must-not-exist");
    assert!(node_fs::create_dir(&through, &user).is_err());
    assert!(!Path::new("/etc/citus-recovery-test-must-not-exist").exists());
}

#[test]
fn create_dir_from_many_threads_at_once_hands_over_the_shared_parent() {
    for _ in 0..20 {
        let place = Place::new();
        let user = postgres();
        let start = std::sync::Arc::new(std::sync::Barrier::new(6));
        let threads: Vec<_> = (0..6)
            .map(|i| {
                let (dir, user) = (place.path(&format!("shared/node{i}")), user.clone());
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    node_fs::create_dir(&dir, &user)
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        let meta = std::fs::symlink_metadata(place.path("shared")).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (user.uid, 0o700));
        assert_eq!(std::fs::read_dir(place.path("shared")).unwrap().count(), 6);
    }
}

/// A manifest listing `files` (path, content) with their CRC32C.
fn manifest_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let list: Vec<serde_json::Value> = files
        .iter()
        .map(|(p, d)| {
            let crc = crc32c::crc32c(d).to_le_bytes();
            let hex: String = crc.iter().map(|b| format!("{b:02x}")).collect();
            serde_json::json!({"Path": p, "Size": d.len(), "Checksum-Algorithm": "CRC32C", "Checksum": hex})
        })
        .collect();
    serde_json::json!({"PostgreSQL-Backup-Manifest-Version": 1, "Files": list})
        .to_string()
        .into_bytes()
}

fn tar_bytes(entries: &[Entry]) -> Vec<u8> {
    let place = Place::new();
    place.tar("t.tar", entries);
    std::fs::read(place.path("backup/t.tar")).unwrap()
}

fn extract_stream(place: &Place, base: Vec<u8>, manifest: Vec<u8>) -> Result<()> {
    let data = place.data_dir();
    let tars = TarStreams {
        base: (
            "backups/b/n/base.tar.zst".into(),
            Box::new(std::io::Cursor::new(base)),
        ),
        tablespaces: Vec::new(),
        manifest,
    };
    as_user(&postgres(), || extract_streams(tars, &data, &[]))
}

#[test]
fn a_stream_extracts_checked_against_its_manifest() {
    let place = Place::new();
    let mut base = base_minimal();
    base.push(file("base/1/1234", 0o640, b"rows"));
    base.push(file("backup_manifest", 0o600, b"{}"));
    let manifest = manifest_of(&[
        ("PG_VERSION", b"15\n"),
        ("global/pg_control", b"control"),
        ("base/1/1234", b"rows"),
    ]);
    extract_stream(&place, tar_bytes(&base), manifest).unwrap();
    let data = place.data_dir();
    assert_eq!(std::fs::read(data.join("base/1/1234")).unwrap(), b"rows");
    assert!(!data.join("backup_manifest").exists(), "not extracted");
    assert!(data.join("pg_wal").is_dir());
}

#[test]
fn a_stream_differing_from_its_manifest_fails_naming_the_object_and_file() {
    let place = Place::new();
    let mut base = base_minimal();
    base.push(file("base/1/1234", 0o640, b"rowz"));
    let manifest = manifest_of(&[
        ("PG_VERSION", b"15\n"),
        ("global/pg_control", b"control"),
        ("base/1/1234", b"rows"),
        ("base/1/5678", b"gone"),
    ]);
    let err = extract_stream(&place, tar_bytes(&base), manifest)
        .unwrap_err()
        .to_string();
    assert!(err.contains("backups/b/n/base.tar.zst"), "{err}");
    assert!(err.contains("base/1/1234 has checksum"), "{err}");
    assert!(
        err.contains("base/1/5678 is in the manifest but in no tar"),
        "{err}"
    );
}

#[test]
fn a_damaged_stream_is_named_as_corrupt() {
    let place = Place::new();
    let (mut enc, header) =
        crate::repository::codec::StreamEncoder::new(crate::repository::codec::Compression::Lz4);
    let mut framed = header.to_vec();
    for c in enc.push(&tar_bytes(&base_minimal())) {
        framed.extend_from_slice(&c);
    }
    framed.extend_from_slice(&enc.finish());
    let at = framed.len() / 2;
    framed[at] ^= 0x55;
    let data = place.data_dir();
    let tars = TarStreams {
        base: (
            "backups/b/n/base.tar.lz4".into(),
            Box::new(crate::repository::codec::StreamDecoder::new(
                std::io::Cursor::new(framed),
            )),
        ),
        tablespaces: Vec::new(),
        manifest: manifest_of(&[]),
    };
    let err = as_user(&postgres(), || extract_streams(tars, &data, &[])).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { key, .. } if key == "backups/b/n/base.tar.lz4"),
        "{err:?}"
    );
}
