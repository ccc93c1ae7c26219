//! A user tablespace on a real PostgreSQL 15 server: its backup is extracted into a new folder,
//! the restored `tablespace_map` names that folder, and a copy started from the extraction reads
//! the table while the live tablespace folder stays exactly as it was.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use citus_recovery::backend::{FileSync, TablespaceTarget, PENDING_CONTROL_FILE};
use common::{TestCluster, PG_BIN};

/// Every file below `dir`: its modification time and contents.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (i64, i64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(path, (meta.mtime(), meta.mtime_nsec(), bytes));
            }
        }
    }
    out
}

/// `pg_ctl` as the servers' user.
fn pg_ctl(args: &[&str], data_dir: &Path) -> std::process::ExitStatus {
    std::process::Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(Path::new(PG_BIN).join("pg_ctl"))
        .args(args)
        .arg("-D")
        .arg(data_dir)
        .current_dir("/")
        .status()
        .unwrap()
}

/// Stops the copy's server when the test ends, however it ends.
struct StopCopy(PathBuf);

impl Drop for StopCopy {
    fn drop(&mut self) {
        if self.0.join("postmaster.pid").exists() {
            pg_ctl(&["stop", "-m", "immediate", "-w"], &self.0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tablespace_is_restored_into_a_new_folder_and_the_live_one_is_untouched() {
    skip_unless_postgres!();
    let t = TestCluster::new(0);
    t.cluster.create(true).await.expect("create");
    let backend = t.cluster.backend();
    let node = t.config().coordinator.clone();
    let live_ts = t.dir().join("ts-live");
    backend.create_dir(&node, &live_ts).await.unwrap();
    t.sql(
        "coordinator",
        &format!("CREATE TABLESPACE ts LOCATION '{}'", live_ts.display()),
    )
    .await
    .unwrap();
    t.sql(
        "coordinator",
        "CREATE TABLE tt(x int) TABLESPACE ts; INSERT INTO tt SELECT generate_series(1, 1000)",
    )
    .await
    .unwrap();
    let oid: u32 = t
        .sql(
            "coordinator",
            "SELECT oid FROM pg_tablespace WHERE spcname = 'ts'",
        )
        .await
        .unwrap()[0]
        .parse()
        .unwrap();

    let folder = t.dir().join("backup/one");
    let files = backend.base_backup(&node, &folder, "ts").await.unwrap();
    assert_eq!(files.tablespaces, vec![oid]);
    let check = citus_recovery::verify::manifest::check_tar_backup(&folder);
    assert_eq!(check.problems, Vec::<String>::new());
    assert!(check.files > 0);

    // Rows after the backup, then the live server stops: its tablespace folder is frozen.
    t.sql(
        "coordinator",
        "INSERT INTO tt SELECT generate_series(1, 500)",
    )
    .await
    .unwrap();
    backend.stop(&node).await.unwrap();
    let before = snapshot(&live_ts);
    assert!(!before.is_empty());

    let copy = t.dir().join("cluster/copy");
    let ts_copy = t.dir().join("cluster/ts copy");
    let targets = [TablespaceTarget {
        oid,
        location: ts_copy.clone(),
    }];
    // Without a folder for the tablespace, the backup is refused.
    let err = backend
        .extract_backup(&node, &folder, &copy, &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&oid.to_string()), "{err}");
    backend
        .extract_backup(&node, &folder, &copy, &targets)
        .await
        .unwrap();
    let map = std::fs::read_to_string(copy.join("tablespace_map")).unwrap();
    assert_eq!(map, format!("{oid} {}\n", ts_copy.display()));
    assert!(copy.join(PENDING_CONTROL_FILE).is_file());
    assert!(!copy.join("global/pg_control").exists());
    assert!(ts_copy.join("PG_15_202209061").is_dir());

    // A standby copy on another port: replays the backup's WAL, then serves reads.
    let port = common::free_ports(1)[0];
    let auto = copy.join("postgresql.auto.conf");
    let mut conf = backend.read_file(&node, &auto).await.unwrap().unwrap();
    conf.push_str(&format!("port = {port}\n"));
    backend
        .write_file(&node, &auto, conf.as_bytes(), FileSync::Later)
        .await
        .unwrap();
    backend
        .write_file(&node, &copy.join("standby.signal"), b"", FileSync::Later)
        .await
        .unwrap();
    backend
        .install_control_file(&node, &copy, &targets)
        .await
        .unwrap();
    let _stop = StopCopy(copy.clone());
    let log = copy.join("copy.log");
    assert!(pg_ctl(
        &["start", "-w", "-t", "120", "-l", log.to_str().unwrap()],
        &copy
    )
    .success());
    let (client, connection) = tokio_postgres::connect(
        &format!("host=localhost port={port} user=postgres dbname=postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one("SELECT count(*) FROM tt", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1000);
    assert_eq!(
        std::fs::read_link(copy.join(format!("pg_tblspc/{oid}"))).unwrap(),
        ts_copy
    );
    drop(client);
    assert!(pg_ctl(&["stop", "-m", "fast", "-w"], &copy).success());
    assert_eq!(
        snapshot(&live_ts),
        before,
        "the live tablespace folder changed"
    );
}
