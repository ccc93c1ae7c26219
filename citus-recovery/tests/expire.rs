//! `expire` on real servers, in the folders (no repository), a posix repository and S3 (moto):
//! the retention keeps the newest backups and the WAL they need; an expire stopped at any
//! deletion, or killed with SIGKILL, leaves every kept backup restorable to its restore point
//! (verify passes), and the next run finishes.

mod common;
#[path = "common/repository_cycle.rs"]
mod repository_cycle;
#[path = "common/s3.rs"]
mod s3;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use citus_recovery::expire::{ExpirePlan, ExpireStore, FileSet, StoredFile};
use citus_recovery::repository::Key;
use citus_recovery::Cluster;
use common::{backup_names, TestCluster};

/// The cluster's store, failing every deletion after the first `allowed`.
struct FailingStore {
    inner: Box<dyn ExpireStore>,
    allowed: AtomicI64,
}

impl FailingStore {
    fn take(&self, what: &str) -> citus_recovery::Result<()> {
        if self.allowed.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(citus_recovery::Error::InvalidArgument {
                what: "test",
                value: what.into(),
                problem: "injected failure".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ExpireStore for FailingStore {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn wal_files(&self, node: &str) -> citus_recovery::Result<Vec<StoredFile>> {
        self.inner.wal_files(node).await
    }
    async fn delete_wal(&self, node: &str, file: &StoredFile) -> citus_recovery::Result<()> {
        self.take(&file.name)?;
        self.inner.delete_wal(node, file).await
    }
    async fn backup_files(
        &self,
    ) -> citus_recovery::Result<std::collections::BTreeMap<String, (FileSet, bool)>> {
        self.inner.backup_files().await
    }
    async fn delete_backup_files(&self, backup: &str) -> citus_recovery::Result<()> {
        self.take(backup)?;
        self.inner.delete_backup_files(backup).await
    }
}

/// Everything a run could remove, to put back before the next: the repository's objects and
/// copies of the folders (`cp -a` keeps owners and modes).
struct Snapshot {
    objects: Vec<(Key, Bytes)>,
    copy: tempfile::TempDir,
}

fn cp(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}

impl Snapshot {
    async fn take(t: &TestCluster, c: &Cluster) -> Snapshot {
        let mut objects = Vec::new();
        if let Some(repo) = c.repository() {
            for m in repo.list(&Key::root()).await.unwrap() {
                objects.push((m.key.clone(), repo.get(&m.key).await.unwrap()));
            }
        }
        let copy = tempfile::tempdir().unwrap();
        for d in ["archive", "backup"] {
            std::fs::create_dir(copy.path().join(d)).unwrap();
            if t.dir().join(d).exists() {
                cp(&t.dir().join(d), &copy.path().join(d));
            }
        }
        Snapshot { objects, copy }
    }

    /// Puts back what was removed (nothing else changed: expire only removes).
    async fn restore(&self, t: &TestCluster, c: &Cluster) {
        if let Some(repo) = c.repository() {
            for (k, data) in &self.objects {
                repo.put_create(k, data.clone()).await.unwrap();
            }
        }
        for d in ["archive", "backup"] {
            if t.dir().join(d).exists() {
                cp(&self.copy.path().join(d), &t.dir().join(d));
            }
        }
    }
}

/// Every kept backup still restores to its restore point.
async fn assert_kept_restorable(c: &Cluster, when: &str) {
    for (b, rp) in [("b2", "rp2"), ("b3", "rp3")] {
        let report = c.verify(Some(b), Some(rp)).await.expect("verify runs");
        assert!(report.ok(), "{when}: {b} to {rp}: {report}");
    }
    let names = backup_names(c).await;
    assert!(
        names.ends_with(&["b2".to_string(), "b3".to_string()]),
        "{when}: {names:?}"
    );
}

/// What a finished expire leaves: b1 and the planned WAL files gone, every other file there.
async fn assert_finished(c: &Cluster, plan: &ExpirePlan, before: &[(String, Vec<StoredFile>)]) {
    let store = c.expire_store();
    assert!(!store.backup_files().await.unwrap().contains_key("b1"));
    let names = backup_names(c).await;
    assert_eq!(names, ["b2", "b3"]);
    for (node, files) in before {
        let now: BTreeSet<String> = store
            .wal_files(node)
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        let removed: BTreeSet<&str> = plan
            .wal
            .iter()
            .find(|w| &w.node == node)
            .unwrap()
            .remove
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        for f in files {
            assert_eq!(
                now.contains(&f.name),
                !removed.contains(f.name.as_str()),
                "node {node}: {}",
                f.name
            );
        }
    }
}

fn tool(t: &TestCluster, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_citus-recovery"))
        .arg("--config")
        .arg(t.config_file())
        .args(args)
        .env_remove("CITUS_RECOVERY_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Three backups with a restore point after each; expire keeping two, stopped at many
/// deletions and killed at a few moments, each time verified and finished.
async fn scenario(t: &mut TestCluster, repository: Option<serde_json::Value>) {
    if let Some(r) = repository {
        repository_cycle::with_repository(t, r);
    }
    let c = t.cluster.clone();
    c.create(true).await.expect("create");
    c.prepare_archiving(true, false).await.expect("archiving");
    for i in 1..=3 {
        c.basebackup(Some(&format!("b{i}"))).await.expect("backup");
        let create = if i == 1 {
            "CREATE TABLE xx(id int); "
        } else {
            ""
        };
        for node in t.node_names() {
            t.sql(
                &node,
                &format!("{create}INSERT INTO xx SELECT generate_series(1, 1000)"),
            )
            .await
            .unwrap();
        }
        c.create_restore_point(Some(&format!("rp{i}")))
            .await
            .expect("restore point");
    }

    let plan = c.plan_expire(Some(2), None, false).await.unwrap();
    assert_eq!(plan.kept, ["b2", "b3"], "{plan}");
    let gone: Vec<&str> = plan.backups.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(gone, ["b1"], "{plan}");
    assert!(plan.backups[0].files.bytes > 0, "{plan}");
    assert_eq!(plan.unreachable_restore_points, ["rp1"], "{plan}");
    for w in &plan.wal {
        assert!(
            !w.remove.is_empty(),
            "node {} keeps all its WAL: {plan}",
            w.node
        );
        assert!(w.remove.iter().all(|f| !f.name.ends_with(".history")));
    }
    // The dry run prints the plan and changes nothing.
    let dry = tool(t, &["expire", "--retain-full", "2", "--dry-run"])
        .wait_with_output()
        .unwrap();
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success() && text.contains("remove backup b1"),
        "{text}"
    );
    assert_eq!(c.list_backups().await.unwrap().len(), 3);

    let store = c.expire_store();
    let mut before = Vec::new();
    for node in t.node_names() {
        before.push((node.clone(), store.wal_files(&node).await.unwrap()));
    }
    let snapshot = Snapshot::take(t, &c).await;
    let deletions = 1 + plan.wal.iter().map(|w| w.remove.len()).sum::<usize>() as i64;
    // Stopped after k deletions: kept backups restorable, the next run finishes.
    for k in [0, 1, 2, deletions / 2, deletions - 1] {
        snapshot.restore(t, &c).await;
        let again = c.plan_expire(Some(2), None, false).await.unwrap();
        let failing = FailingStore {
            inner: c.expire_store(),
            allowed: AtomicI64::new(k),
        };
        assert!(
            again.execute(&c.catalog(), &failing).await.is_err(),
            "stopped at deletion {k} of {deletions}"
        );
        assert_kept_restorable(&c, &format!("stopped after {k} deletion(s)")).await;
        c.expire(Some(2), None, false).await.expect("second run");
        assert_finished(&c, &plan, &before).await;
        assert_kept_restorable(&c, &format!("finished after a stop at {k}")).await;
    }
    // Killed (SIGKILL) at a few moments.
    for delay in [20, 80, 250] {
        snapshot.restore(t, &c).await;
        let mut child = tool(t, &["expire", "--retain-full", "2"]);
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
        // A killed command leaves the repository's lock behind: never taken over silently.
        if c.repository().is_some() {
            c.break_lock().await.unwrap();
        }
        assert_kept_restorable(&c, &format!("killed after {delay} ms")).await;
        c.expire(Some(2), None, false)
            .await
            .expect("run after a kill");
        assert_finished(&c, &plan, &before).await;
    }
    // rp1 is marked in `list`, and removed from the catalog on request.
    let list = tool(t, &["list"]).wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("UNREACHABLE"), "{text}");
    let report = c.expire(Some(2), None, true).await.unwrap();
    assert_eq!(report.unreachable_restore_points, ["rp1"]);
    let points: Vec<String> = c
        .list_restore_points()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(points, ["rp2", "rp3"]);
    assert_kept_restorable(&c, "at the end").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expire_in_the_folders() {
    skip_unless_postgres!();
    let mut t = TestCluster::new(1);
    scenario(&mut t, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expire_in_a_posix_repository() {
    skip_unless_postgres!();
    let mut t = TestCluster::new(1);
    let path = t.dir().join("repo");
    scenario(
        &mut t,
        Some(serde_json::json!({"type": "posix", "path": path})),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expire_in_s3() {
    skip_unless_postgres!();
    // Without signature checks, so the fixed credentials below (the servers inherit them)
    // need not be the server's: no other test of this binary reads them.
    let moto = moto_or_skip!(&["expire-bucket"], false);
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    let mut t = TestCluster::new(1);
    let settings = serde_json::json!({
        "type": "s3", "bucket": "expire-bucket", "prefix": "c",
        "region": "us-east-1", "endpoint": moto.endpoint(), "allowHttp": true
    });
    scenario(&mut t, Some(settings)).await;
}

/// Without a retention in the config or on the command line, expire refuses and says both ways.
#[test]
fn expire_without_a_retention_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cluster-config.json");
    std::fs::write(&config, common::config_json(dir.path(), 1)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_citus-recovery"))
        .arg("--config")
        .arg(&config)
        .args(["expire", "--dry-run"])
        .env_remove("CITUS_RECOVERY_CONFIG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("retention") && err.contains("--retain-full"),
        "{err}"
    );
}
