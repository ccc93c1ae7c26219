//! The five steps with `%`, spaces and a quote in every folder of the config: PostgreSQL
//! substitutes `%` sequences in `restore_command`, and shells split on spaces.

mod common;

use common::{TestCluster, FIRST, SECOND};

/// Stops the servers of a cluster whose folder `TestCluster`'s `Drop` does not look at.
struct StopOnDrop(std::path::PathBuf);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        common::stop_servers_in(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percent_spaces_and_quotes_in_every_folder() {
    skip_unless_postgres!();
    let t = TestCluster::with_folders(
        1,
        "100% sure/clus ter",
        "100% sure/it's %f %% %p arch ive",
        "100% sure/back up %r",
    );
    let _stop = StopOnDrop(t.config().cluster_base_folder.clone());
    let c = &t.cluster;
    c.create(true).await.expect("create");
    c.prepare_archiving(true, false)
        .await
        .expect("prepare archiving");
    c.basebackup(Some("base")).await.expect("base backup");
    t.insert_everywhere(FIRST, true).await;
    c.create_restore_point(Some("rp"))
        .await
        .expect("restore point");
    t.insert_everywhere(SECOND, false).await;
    assert_eq!(t.counts().await, [FIRST + SECOND, FIRST + SECOND]);

    let report = c.verify(Some("base"), Some("rp")).await.expect("verify");
    assert!(report.ok(), "{:?}", report.failures());
    c.restore_start(Some("base"), Some("rp"))
        .await
        .expect("restore-start");
    assert_eq!(
        t.counts().await,
        [FIRST, FIRST],
        "paused at the restore point"
    );
    c.restore_finish().await.expect("restore-finish");
    assert_eq!(t.counts().await, [FIRST, FIRST]);
    t.insert_everywhere(1, false).await;
    assert_eq!(t.counts().await, [FIRST + 1, FIRST + 1], "writable again");
}
