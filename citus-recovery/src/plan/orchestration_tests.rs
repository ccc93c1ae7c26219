//! Orchestration without servers: plans run on [`FakeBackend`], with failures injected at every
//! call a plan makes, and with restores killed half-way.
//!
//! The matrices of injected failures and kills run restore plans without their `WaitPaused`
//! steps (each node ends at "started in recovery"): a failed SQL statement or connection in the
//! wait is retried, not a failure. Since a plan without `WaitPaused` reports no replay position,
//! a run of those that fails nowhere is driven through [`run_phases`] rather than
//! [`RestorePlan::execute`]. The fake's SQL answers the waits, so whole plans (with
//! `WaitPaused`, then restore-finish) run too.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tempfile::TempDir;

use super::*;
use crate::backend::fake::FakeBackend;
use crate::backend::ServerState;
use crate::catalog::{Backup, Catalog, RestorePoint};
use crate::config::ClusterConfig;
use crate::wal::Lsn;

const NODES: [&str; 3] = ["coordinator", "worker1", "worker2"];

/// The three-node config of `plan::tests`, with `backupBaseFolder` in `tmp` (the restore state
/// is a real trusted file there); the node folders exist only in the fake.
fn config(tmp: &TempDir) -> ClusterConfig {
    let json = serde_json::json!({
        "clusterName": "demo", "workerCount": 2,
        "coordinatorNode": {"name": "coordinator", "hostname": "localhost", "port": 9700, "username": "postgres", "dbname": "postgres"},
        "workerNodes": [
            {"name": "worker1", "hostname": "localhost", "port": 9701, "username": "postgres", "dbname": "postgres"},
            {"name": "worker2", "hostname": "localhost", "port": 9702, "username": "postgres", "dbname": "postgres"}
        ],
        "clusterBaseFolder": "/nonexistent/cluster", "archiveBaseFolder": "/nonexistent/archive",
        "backupBaseFolder": tmp.path().join("backup")
    });
    ClusterConfig::from_json_str(&json.to_string(), None).unwrap()
}

use super::tests::t;

/// The backup of `plan::tests`, ended at `t(10)`.
fn backup() -> Backup {
    super::tests::backup(t(10))
}

/// The restore point of `plan::tests`, at 0/3000000 on every node, named `rp1`.
fn point() -> RestorePoint {
    RestorePoint {
        name: "rp1".into(),
        ..super::tests::point(0x3000000, t(20))
    }
}

/// A fake cluster: every node has the backup's folder on its host, and its data directory
/// (holding an `ORIGINAL` marker) unless `has_data_dir` says not, with its server running as
/// `running` says.
struct Setup {
    _tmp: TempDir,
    fake: FakeBackend,
    running: [bool; 3],
    has_data_dir: [bool; 3],
}

impl Setup {
    fn new(running: [bool; 3]) -> Self {
        Self::with(running, [true; 3])
    }

    fn with(running: [bool; 3], has_data_dir: [bool; 3]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let config = config(&tmp);
        let catalog = Catalog::new(&config);
        let fake = FakeBackend::new(config.clone());
        for (i, node) in NODES.iter().enumerate() {
            if has_data_dir[i] {
                fake.init_data_dir(node, running[i]);
                let data_dir = config.data_dir(config.node(node).unwrap());
                fake.add_file(node, data_dir.join("ORIGINAL"), node.as_bytes());
            }
            fake.add_dir(node, catalog.node_backup_dir("b1", node));
        }
        Setup {
            _tmp: tmp,
            fake,
            running,
            has_data_dir,
        }
    }

    fn config(&self) -> &ClusterConfig {
        self.fake.config()
    }

    /// The restore-abort plan of `state` as built from what the fake holds now.
    async fn abort_plan(&self, state: &RestoreState) -> AbortPlan {
        let observed = crate::observe::cluster(&self.fake).await.unwrap();
        let existing = existing_paths(&self.fake, state.paths()).await.unwrap();
        let stamp = crate::names::default_name(Utc::now());
        AbortPlan::build(self.config(), &observed, state, &existing, &stamp).unwrap()
    }

    fn data_dir(&self, node: &str) -> PathBuf {
        self.config().data_dir(self.config().node(node).unwrap())
    }

    /// The restore plan as built from what the fake holds, without its `WaitPaused` steps;
    /// `previous` resumes a restore under way. The call log starts empty after it.
    async fn restore_plan(
        &self,
        previous: Option<&RestoreState>,
        now: DateTime<Utc>,
    ) -> RestorePlan {
        let mut plan = self.full_restore_plan(previous, now).await;
        for np in &mut plan.phases[0].nodes {
            let before = np.steps.len();
            np.steps.retain(|s| !matches!(s, Step::WaitPaused { .. }));
            assert_eq!(np.steps.len(), before - 1, "one WaitPaused per node");
        }
        plan
    }

    /// The restore plan as built from what the fake holds; the call log starts empty after it.
    async fn full_restore_plan(
        &self,
        previous: Option<&RestoreState>,
        now: DateTime<Utc>,
    ) -> RestorePlan {
        let config = self.config();
        let observed = crate::observe::cluster(&self.fake).await.unwrap();
        let mut paths: Vec<(&str, PathBuf)> =
            NODES.iter().map(|n| (*n, self.data_dir(n))).collect();
        if let Some(p) = previous {
            paths.extend(p.paths().map(|(n, p)| (n, p.to_path_buf())));
        }
        let existing = existing_paths(&self.fake, paths.iter().map(|(n, p)| (*n, p.as_path())))
            .await
            .unwrap();
        let (backup, point) = (backup(), point());
        let plan = RestorePlan::build(
            config,
            &observed,
            &Catalog::new(config),
            &RestoreInputs {
                backup: &backup,
                restore_point: &point,
                wal_parameters: &BTreeMap::new(),
                existing: &existing,
                previous,
                attempt: &crate::names::default_name(now),
            },
            now,
        )
        .unwrap();
        self.fake.clear_calls();
        plan
    }

    /// The folders `<node>.failed-restore-*` on the node's host.
    fn failed_restores(&self, node: &str) -> Vec<PathBuf> {
        let prefix = format!("{node}.failed-restore-");
        self.fake
            .children(node, &self.config().cluster_base_folder)
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .collect()
    }

    /// Asserts the layout from before restore-start: every node's original data directory at
    /// its `data_dir`, its server as it was, each restored copy kept (once) under
    /// `<node>.failed-restore-<stamp>`, nothing removed, the restore state gone.
    /// `restored[i]`: whether node i's backup was extracted.
    fn assert_original_layout(&self, restored: [bool; 3], context: &str) {
        let config = self.config();
        for (i, node) in NODES.iter().enumerate() {
            let data_dir = self.data_dir(node);
            if !self.has_data_dir[i] {
                assert!(
                    self.fake.entry(node, &data_dir).is_none(),
                    "{context}: {node} had no data directory, but now {} exists; calls:\n{}",
                    data_dir.display(),
                    self.fake.calls().join("\n")
                );
            } else {
                assert_eq!(
                    self.fake.file(node, data_dir.join("ORIGINAL")).as_deref(),
                    Some(node.as_bytes()),
                    "{context}: {node}'s original data directory is not back at {}; calls:\n{}",
                    data_dir.display(),
                    self.fake.calls().join("\n")
                );
                assert_eq!(
                    self.fake
                        .file(node, data_dir.join("global/pg_control"))
                        .as_deref(),
                    Some(&b"control"[..]),
                    "{context}: {node}"
                );
                assert_eq!(
                    self.fake
                        .file(node, data_dir.join("postgresql.auto.conf"))
                        .as_deref(),
                    Some(&b""[..]),
                    "{context}: {node}'s settings were changed"
                );
                assert!(
                    self.fake
                        .entry(node, data_dir.join("recovery.signal"))
                        .is_none(),
                    "{context}: {node}"
                );
            }
            let server = self.fake.server(node);
            assert_eq!(
                server.running, self.running[i],
                "{context}: {node}'s server"
            );
            assert!(!server.in_recovery, "{context}: {node}");
            let aside = super::moved_aside_dir(config, node, &crate::names::default_name(t(30)));
            assert!(
                self.fake.entry(node, &aside).is_none(),
                "{context}: {node}: {} is still there",
                aside.display()
            );
            let failed = self.failed_restores(node);
            assert_eq!(
                failed.len(),
                usize::from(restored[i]),
                "{context}: {node}: restored copies kept: {failed:?}"
            );
            for f in failed {
                let conf = self
                    .fake
                    .file(node, f.join("postgresql.auto.conf"))
                    .unwrap();
                assert!(
                    String::from_utf8_lossy(&conf).contains("# restored from"),
                    "{context}: {node}: {} is not the restored copy",
                    f.display()
                );
                assert!(self.fake.entry(node, f.join("ORIGINAL")).is_none());
            }
        }
        let calls = self.fake.calls();
        assert!(
            !calls.iter().any(|c| c.contains("remove_file")),
            "{context}: something was removed:\n{}",
            calls.join("\n")
        );
        assert_eq!(self.fake.violations(), Vec::<String>::new(), "{context}");
        assert!(
            !RestoreState::path(config).exists(),
            "{context}: the restore state is still there"
        );
    }
}

/// The calls a node's steps make, as `(method, nth)`, from a run that fails nowhere.
async fn call_positions(
    running: [bool; 3],
    has_data_dir: [bool; 3],
) -> BTreeMap<&'static str, Vec<(String, usize)>> {
    let setup = Setup::with(running, has_data_dir);
    let plan = setup.restore_plan(None, t(30)).await;
    run_phases(&setup.fake, &plan.phases, &RunOptions::default())
        .await
        .unwrap();
    assert!(
        setup.fake.violations().is_empty(),
        "{:?}",
        setup.fake.violations()
    );
    let mut positions = BTreeMap::new();
    for node in NODES {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let list: Vec<(String, usize)> = setup
            .fake
            .node_calls(node)
            .iter()
            .map(|c| {
                let method = c.split(' ').next().unwrap().to_string();
                let nth = seen.entry(method.clone()).or_insert(0);
                *nth += 1;
                (method, *nth)
            })
            .collect();
        positions.insert(node, list);
    }
    positions
}

/// Whether `node`'s backup was extracted (its `extract_backup` call succeeded).
fn extracted(fake: &FakeBackend, node: &str) -> bool {
    fake.node_calls(node)
        .iter()
        .any(|c| c.starts_with("extract_backup") && !c.ends_with("(injected failure)"))
}

async fn fail_everywhere_and_roll_back(running: [bool; 3], has_data_dir: [bool; 3]) -> usize {
    let positions = call_positions(running, has_data_dir).await;
    let mut runs = 0;
    for (node, calls) in &positions {
        let methods: Vec<&str> = calls.iter().map(|(m, _)| m.as_str()).collect();
        let mut expected = vec![
            "rename",
            "extract_backup",
            "read_file",
            "write_file",
            "write_file",
            "install_control_file",
            "start",
        ];
        let i = NODES.iter().position(|n| n == node).unwrap();
        if !has_data_dir[i] {
            expected.remove(0);
        }
        if running[i] {
            expected.insert(0, "stop");
        }
        assert_eq!(methods, expected, "{node}: the calls of its restore steps");
        for (method, nth) in calls {
            let setup = Setup::with(running, has_data_dir);
            let plan = setup.restore_plan(None, t(30)).await;
            setup.fake.fail(node, method, *nth);
            let context = format!("failing call {nth} of {method} on {node}");
            let err = plan
                .execute(&setup.fake, &RunOptions::default())
                .await
                .unwrap_err();
            let Error::RestoreFailed { failure, rollback } = &err else {
                panic!("{context}: {err}")
            };
            assert_eq!(failure.node_name(), Some(*node), "{context}: {err}");
            assert!(
                matches!(&**failure, Error::Node { action, .. } if action == method),
                "{context}: {failure}"
            );
            assert!(
                rollback.contains("every node was rolled back"),
                "{context}: {rollback}"
            );
            let restored = NODES.map(|n| extracted(&setup.fake, n));
            assert_eq!(
                restored,
                NODES.map(|n| n != *node
                    || !["stop", "rename", "extract_backup"].contains(&method.as_str())),
                "{context}: which nodes were extracted"
            );
            setup.assert_original_layout(restored, &context);
            runs += 1;
        }
    }
    runs
}

#[tokio::test]
async fn a_failure_at_any_step_of_any_node_rolls_every_node_back() {
    assert_eq!(
        fail_everywhere_and_roll_back([true; 3], [true; 3]).await,
        24
    );
}

#[tokio::test]
async fn a_failure_at_any_step_rolls_back_a_cluster_with_a_stopped_node() {
    assert_eq!(
        fail_everywhere_and_roll_back([true, true, false], [true; 3]).await,
        23
    );
}

#[tokio::test]
async fn a_rollback_failing_at_its_first_rename_keeps_the_restore_state() {
    let setup = Setup::new([true; 3]);
    let plan = setup.restore_plan(None, t(30)).await;
    setup.fake.fail("worker1", "start", 1);
    // Its first rename was restore-start's move aside: the second is the rollback's first.
    setup.fake.fail("worker1", "rename", 2);
    let err = plan
        .execute(&setup.fake, &RunOptions::default())
        .await
        .unwrap_err();
    let Error::RestoreFailed { failure, rollback } = &err else {
        panic!("{err}")
    };
    assert_eq!(failure.node_name(), Some("worker1"), "{err}");
    let state_path = RestoreState::path(setup.config());
    assert!(
        rollback.contains("rolling back failed too")
            && rollback.contains("node worker1: rename failed")
            && rollback.contains(&state_path.display().to_string()),
        "{rollback}"
    );
    assert!(
        setup
            .fake
            .node_calls("worker1")
            .last()
            .is_some_and(|c| c.starts_with("rename") && c.ends_with("(injected failure)")),
        "the rollback stops at the failed rename: {:?}",
        setup.fake.node_calls("worker1")
    );
    let state = RestoreState::load(setup.config()).unwrap().expect("kept");
    assert_eq!(state, plan.state);
    // Nothing was lost: restore-abort from the state puts everything back.
    let abort = setup.abort_plan(&state).await;
    abort
        .execute(&setup.fake, &RunOptions::default())
        .await
        .unwrap();
    setup.assert_original_layout([true; 3], "restore-abort after a failed rollback");
}

#[tokio::test]
async fn a_node_the_rollback_cannot_reach_waits_while_the_others_are_rolled_back() {
    let setup = Setup::new([true; 3]);
    let plan = setup.restore_plan(None, t(30)).await;
    setup.fake.clear_calls();
    setup.fake.fail("worker1", "start", 1);
    // worker1's host is gone for the rollback: every look at its files fails.
    for nth in 1..=20 {
        setup.fake.fail("worker1", "exists", nth);
    }
    let err = plan
        .execute(&setup.fake, &RunOptions::default())
        .await
        .unwrap_err();
    let Error::RestoreFailed { rollback, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        rollback.contains("in place again): coordinator, worker2\n")
            && rollback.contains("not rolled back yet: node worker1")
            && rollback.contains("restore-abort"),
        "{rollback}"
    );
    assert!(
        RestoreState::load(setup.config()).unwrap().is_some(),
        "the state is kept for restore-abort"
    );
    for node in ["coordinator", "worker2"] {
        assert_eq!(
            setup
                .fake
                .file(node, setup.data_dir(node).join("ORIGINAL"))
                .as_deref(),
            Some(node.as_bytes()),
            "{node} has its old data directory back"
        );
        assert!(setup.fake.server(node).running, "{node} runs again");
    }
    assert!(
        !setup.fake.server("worker1").running,
        "worker1 is left as the failure left it"
    );
}

#[tokio::test]
async fn run_phases_runs_nodes_at_once_up_to_the_concurrency() {
    for (concurrency, expected) in [(0, 3), (1, 1), (2, 2), (5, 3)] {
        let setup = Setup::new([true; 3]);
        let plan = setup.restore_plan(None, t(30)).await;
        setup.fake.set_delay(Duration::from_millis(5));
        let opts = RunOptions {
            concurrency,
            ..RunOptions::default()
        };
        run_phases(&setup.fake, &plan.phases, &opts).await.unwrap();
        assert_eq!(
            setup.fake.max_in_flight(),
            expected,
            "concurrency {concurrency}"
        );
    }
}

#[tokio::test]
async fn run_phases_lets_every_node_finish_and_collects_every_error() {
    for concurrency in [0, 1] {
        let setup = Setup::new([true; 3]);
        let plan = setup.restore_plan(None, t(30)).await;
        setup.fake.fail("coordinator", "stop", 1);
        setup.fake.fail("worker2", "extract_backup", 1);
        let opts = RunOptions {
            concurrency,
            ..RunOptions::default()
        };
        let err = run_phases(&setup.fake, &plan.phases, &opts)
            .await
            .unwrap_err();
        let Error::Several(errors) = &err else {
            panic!("{err}")
        };
        let names: Vec<_> = errors.iter().map(|e| e.node_name()).collect();
        assert_eq!(names, [Some("coordinator"), Some("worker2")], "{err}");
        // A node stops at its failing step; the others run all of theirs.
        assert_eq!(setup.fake.node_calls("coordinator").len(), 1);
        assert_eq!(setup.fake.call_count("worker2", "extract_backup"), 1);
        assert_eq!(setup.fake.call_count("worker2", "write_file"), 0);
        assert_eq!(setup.fake.call_count("worker1", "start"), 1);
        assert!(setup.fake.server("worker1").in_recovery);
    }
    // A later phase does not run after a failed one.
    let setup = Setup::new([true; 3]);
    let plan = setup.restore_plan(None, t(30)).await;
    let mut phases = plan.phases.clone();
    phases.push(Phase {
        title: "later".into(),
        nodes: vec![NodePlan {
            node: "worker1".into(),
            steps: vec![Step::Stop],
        }],
    });
    setup.fake.fail("worker2", "start", 1);
    let err = run_phases(&setup.fake, &phases, &RunOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.node_name(), Some("worker2"), "{err}");
    assert_eq!(
        setup.fake.call_count("worker1", "stop"),
        1,
        "only the first phase's stop"
    );
}

/// Runs the first `done[i]` steps of node i's restore (a restore killed there), after writing
/// the restore state as restore-start does.
async fn killed_restore(setup: Setup, done: [usize; 3]) -> (Setup, RestorePlan) {
    let plan = setup.restore_plan(None, t(30)).await;
    plan.state.save(setup.config()).unwrap();
    let mut phases = plan.phases.clone();
    for (np, n) in phases[0].nodes.iter_mut().zip(done) {
        np.steps.truncate(n);
    }
    run_phases(&setup.fake, &phases, &RunOptions::default())
        .await
        .unwrap();
    (setup, plan)
}

/// Every way to kill a restore of three nodes: each node stopped after 0 to 8 of its steps.
fn kill_points() -> impl Iterator<Item = [usize; 3]> {
    (0..9).flat_map(|a| (0..9).flat_map(move |b| (0..9).map(move |c| [a, b, c])))
}

#[tokio::test]
async fn restore_abort_after_a_kill_at_any_moment_restores_the_layout() {
    for done in kill_points() {
        let (setup, _) = killed_restore(Setup::new([true; 3]), done).await;
        let state = RestoreState::load(setup.config()).unwrap().expect("saved");
        let abort = setup.abort_plan(&state).await;
        let report = abort
            .execute(&setup.fake, &RunOptions::default())
            .await
            .unwrap_or_else(|e| panic!("killed after {done:?}: {e}"));
        // Extracted once the third step (stop, move aside, extract) has run.
        let restored = done.map(|n| n >= 3);
        setup.assert_original_layout(restored, &format!("killed after steps {done:?}"));
        for (i, n) in report.nodes.iter().enumerate() {
            assert_eq!(n.restored_old_data_dir, done[i] >= 2, "{done:?}: {n:?}");
            assert_eq!(
                n.failed_restore_kept_at.is_some(),
                restored[i],
                "{done:?}: {n:?}"
            );
        }
    }
}

#[tokio::test]
async fn restore_start_again_after_a_kill_at_any_moment_resumes() {
    for done in kill_points() {
        let (setup, first) = killed_restore(Setup::new([true; 3]), done).await;
        let state = RestoreState::load(setup.config()).unwrap().expect("saved");
        let plan = setup.restore_plan(Some(&state), t(40)).await;
        assert_eq!(plan.state.stamp, first.state.stamp, "{done:?}");
        run_phases(&setup.fake, &plan.phases, &RunOptions::default())
            .await
            .unwrap_or_else(|e| panic!("killed after {done:?}: {e}\n{plan}"));
        let attempt = crate::names::default_name(t(40));
        for (i, node) in NODES.iter().enumerate() {
            let context = format!("killed after {done:?}: {node}");
            let data_dir = setup.data_dir(node);
            let aside = moved_aside_dir(setup.config(), node, &first.state.stamp);
            assert_eq!(
                setup.fake.file(node, aside.join("ORIGINAL")).as_deref(),
                Some(node.as_bytes()),
                "{context}: the old data directory is kept"
            );
            let conf = setup
                .fake
                .file(node, data_dir.join("postgresql.auto.conf"))
                .unwrap();
            assert!(
                String::from_utf8_lossy(&conf).contains("recovery_target_name"),
                "{context}"
            );
            assert!(setup.fake.server(node).in_recovery, "{context}");
            let failed = failed_restore_dir(setup.config(), node, &attempt);
            assert_eq!(
                setup.fake.entry(node, &failed).is_some(),
                done[i] >= 3,
                "{context}: the first attempt's copy is kept"
            );
        }
        assert_eq!(setup.fake.violations(), Vec::<String>::new(), "{done:?}");
        assert!(RestoreState::path(setup.config()).exists());
    }
}

#[tokio::test]
async fn a_failure_at_any_step_rolls_back_a_cluster_with_a_node_without_data_directory() {
    // worker2 had no data directory: after the rollback it has none either (what restore-start
    // made there is kept as a failed restore), so nothing half-restored can be started.
    assert_eq!(
        fail_everywhere_and_roll_back([true, true, false], [true, true, false]).await,
        22
    );
}

#[tokio::test]
async fn restore_abort_after_a_kill_puts_back_a_node_without_data_directory() {
    for done in kill_points().filter(|d| d[2] <= 6) {
        let setup = Setup::with([true, true, false], [true, true, false]);
        let (setup, _) = killed_restore(setup, done).await;
        let state = RestoreState::load(setup.config()).unwrap().expect("saved");
        let abort = setup.abort_plan(&state).await;
        let report = abort
            .execute(&setup.fake, &RunOptions::default())
            .await
            .unwrap_or_else(|e| panic!("killed after {done:?}: {e}"));
        // worker2's first step is the extraction.
        let restored = [done[0] >= 3, done[1] >= 3, done[2] >= 1];
        setup.assert_original_layout(restored, &format!("killed after steps {done:?}"));
        assert!(!report.nodes[2].restored_old_data_dir);
        assert_eq!(
            report.nodes[2].failed_restore_kept_at.is_some(),
            restored[2]
        );
        if restored[2] {
            assert!(
                report
                    .to_string()
                    .contains("no data directory before restore-start"),
                "{report}"
            );
        }
    }
}

#[tokio::test]
async fn sql_reaches_only_running_servers_and_known_statements() {
    let setup = Setup::new([true, true, false]);
    let opts = RunOptions::default();
    let worker1 = setup.config().node("worker1").unwrap().clone();
    let worker2 = setup.config().node("worker2").unwrap().clone();
    assert!(Step::Reload
        .run(&setup.fake, &worker1, &opts)
        .await
        .unwrap()
        .is_none());
    let err = Step::Reload
        .run(&setup.fake, &worker2, &opts)
        .await
        .unwrap_err();
    assert_eq!(err.node_name(), Some("worker2"), "{err}");
    assert!(err.to_string().contains("not running"), "{err}");
    let step = Step::CreateRestorePoint {
        name: "x".into(),
        function: RestorePointFunction::Postgres,
        lock_wait: None,
    };
    let err = step.run(&setup.fake, &worker1, &opts).await.unwrap_err();
    assert!(
        err.to_string().contains("the fake server does not answer"),
        "{err}"
    );
    assert_eq!(
        setup.fake.calls(),
        [
            "worker1: connect",
            "worker1: sql:reload",
            "worker2: connect",
            "worker1: connect"
        ]
    );
    let observed = crate::observe::cluster(&setup.fake).await.unwrap();
    assert_eq!(observed[1].in_recovery, Some(false), "{:?}", observed[1]);
    assert_eq!(observed[1].timeline, Some(1), "{:?}", observed[1]);
    assert_eq!(observed[2].server, ServerState::Stopped);
}

fn opts() -> RunOptions {
    RunOptions {
        poll_interval: Duration::from_millis(5),
        ..RunOptions::default()
    }
}

/// A whole restore (waiting until paused), then restore-finish, all on the fake.
#[tokio::test]
async fn restore_start_then_restore_finish() {
    let setup = Setup::new([true, true, false]);
    for node in NODES {
        setup.fake.set_replay_lsn(node, Lsn(0x3000100));
    }
    let plan = setup.full_restore_plan(None, t(30)).await;
    // A failed statement while waiting is retried.
    setup.fake.fail("worker1", "sql:pause_state", 1);
    let report = plan.execute(&setup.fake, &opts()).await.unwrap();
    assert_eq!(setup.fake.call_count("worker1", "sql:pause_state"), 2);
    for (i, n) in report.nodes.iter().enumerate() {
        assert_eq!(n.node, NODES[i]);
        assert_eq!(n.replay_lsn, Lsn(0x3000100));
        let server = setup.fake.server(NODES[i]);
        assert!(
            server.running && server.in_recovery && server.paused,
            "{server:?}"
        );
        let aside = n.moved_aside_to.as_ref().unwrap();
        assert_eq!(
            setup.fake.file(NODES[i], aside.join("ORIGINAL")).as_deref(),
            Some(NODES[i].as_bytes())
        );
    }
    let state = RestoreState::load(setup.config())
        .unwrap()
        .expect("under way");
    let observed = crate::observe::cluster(&setup.fake).await.unwrap();
    assert!(observed
        .iter()
        .all(|o| o.pause_state.as_deref() == Some("paused")));
    let finish = FinishPlan::build(setup.config(), &observed, Some(&state)).unwrap();
    let report = finish.execute(&setup.fake, &opts()).await.unwrap();
    assert!(
        report.nodes.iter().all(|n| n.timeline == Some(2)),
        "{report}"
    );
    for node in NODES {
        let data_dir = setup.data_dir(node);
        let server = setup.fake.server(node);
        assert!(server.running && !server.in_recovery, "{node}: {server:?}");
        assert!(setup
            .fake
            .entry(node, data_dir.join("recovery.signal"))
            .is_none());
        let conf = setup
            .fake
            .file(node, data_dir.join("postgresql.auto.conf"))
            .unwrap();
        let conf = String::from_utf8(conf).unwrap();
        assert!(conf.contains("# restored from"), "{node}: {conf}");
        assert!(!conf.contains("recovery_target_name"), "{node}: {conf}");
        assert!(
            setup
                .fake
                .node_calls(node)
                .iter()
                .any(|c| c == "sql:reload"),
            "{node}"
        );
    }
    assert!(!RestoreState::path(setup.config()).exists());
    assert_eq!(setup.fake.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn a_pause_before_the_restore_point_rolls_every_node_back() {
    let setup = Setup::new([true; 3]);
    for node in NODES {
        setup.fake.set_replay_lsn(node, Lsn(0x3000100));
    }
    // worker1 pauses before the point's record, as for a setting the WAL raised.
    setup.fake.set_replay_lsn("worker1", Lsn(0x2000200));
    let plan = setup.full_restore_plan(None, t(30)).await;
    let err = plan.execute(&setup.fake, &opts()).await.unwrap_err();
    let Error::RestoreFailed { failure, rollback } = &err else {
        panic!("{err}")
    };
    assert!(
        matches!(&**failure, Error::NotAtTarget { node, .. } if node == "worker1"),
        "{failure}"
    );
    assert!(
        rollback.contains("every node was rolled back"),
        "{rollback}"
    );
    setup.assert_original_layout([true; 3], "paused before the point");
}

/// A [`crate::Cluster`] over the setup's fake (sharing its hosts and call log).
fn cluster_of(setup: &Setup) -> crate::Cluster {
    crate::Cluster::with_backend(std::sync::Arc::new(setup.fake.share()))
        .unwrap()
        .with_options(opts())
}

#[tokio::test]
async fn a_restore_plan_refused_as_outdated_lets_go_of_the_wal_its_pre_flight_held() {
    let setup = Setup::new([true; 3]);
    let cluster = cluster_of(&setup);
    let mut plan = setup.full_restore_plan(None, t(30)).await;
    for node in NODES {
        setup.fake.hold_proven_wal(
            node,
            vec![crate::wal::ProvenSegment {
                name: "000000010000000000000002".into(),
                frame: bytes::Bytes::from_static(b"frame"),
            }],
        );
    }
    // Built by hand, so it has no basis: apply refuses it before it changes anything.
    plan.basis = PlanBasis::default();
    let err = cluster.apply(&plan).await.unwrap_err();
    assert!(matches!(err, Error::PlanOutdated { .. }), "{err}");
    for node in NODES {
        assert_eq!(changes(&setup, node), Vec::<String>::new(), "{node}");
        assert_eq!(
            setup.fake.held_proven_wal(node),
            Vec::<String>::new(),
            "{node}: no restore follows, so nothing stays held"
        );
    }
}

/// The calls of `node` that change it (stop, start, rename), in order.
fn changes(setup: &Setup, node: &str) -> Vec<String> {
    setup
        .fake
        .node_calls(node)
        .into_iter()
        .filter(|c| c.starts_with("stop") || c.starts_with("start") || c.starts_with("rename"))
        .collect()
}

#[tokio::test]
async fn apply_refuses_a_plan_the_cluster_moved_away_from_and_changes_nothing() {
    // The coordinator restored and started, worker1 stopped and moved aside, worker2 untouched.
    let (setup, _) = killed_restore(Setup::new([true; 3]), [7, 2, 0]).await;
    let cluster = cluster_of(&setup);
    let plan = cluster.plan_restore_abort().await.unwrap();
    // Someone stops the coordinator behind the plan's back.
    let coordinator = setup.config().coordinator.clone();
    setup.fake.stop(&coordinator).await.unwrap();
    setup.fake.clear_calls();
    let err = cluster.apply(&plan).await.unwrap_err();
    match &err {
        Error::PlanOutdated { what } => assert_eq!(
            what, "node coordinator was running when planned and is stopped now",
            "{err}"
        ),
        other => panic!("not PlanOutdated: {other}"),
    }
    assert!(err.to_string().contains("build the plan again"), "{err}");
    for node in NODES {
        assert_eq!(changes(&setup, node), Vec::<String>::new(), "{node}");
    }

    // The restore ends (restore-finish elsewhere): a plan from before is outdated too.
    let plan = cluster.plan_restore_abort().await.unwrap();
    let state = RestoreState::load(setup.config())
        .unwrap()
        .expect("under way");
    RestoreState::remove(setup.config()).unwrap();
    let err = cluster.apply(&plan).await.unwrap_err();
    assert!(
        matches!(&err, Error::PlanOutdated { what } if what.contains("has ended")),
        "{err}"
    );
    state.save(setup.config()).unwrap();

    // A plan not built by the cluster's plan methods has no basis to check.
    let mut bare = plan.clone();
    bare.basis = PlanBasis::default();
    assert!(matches!(
        cluster.apply(&bare).await,
        Err(Error::PlanOutdated { .. })
    ));
    for node in NODES {
        assert_eq!(changes(&setup, node), Vec::<String>::new(), "{node}");
    }
}

#[tokio::test]
async fn apply_runs_a_fresh_plan_exactly_as_printed() {
    let (setup, _) = killed_restore(Setup::new([true; 3]), [7, 2, 0]).await;
    let cluster = cluster_of(&setup);
    let plan = cluster.plan_restore_abort().await.unwrap();
    let printed = plan.to_string();
    setup.fake.clear_calls();
    let report = cluster.apply(&plan).await.unwrap();
    assert_eq!(plan.to_string(), printed);
    // Every step of the plan ran, in order, and nothing else changed a node.
    for np in &plan.phases[0].nodes {
        let expected: Vec<String> = np
            .steps
            .iter()
            .map(|s| match s {
                Step::Stop => "stop".to_string(),
                Step::Start { .. } => "start".to_string(),
                Step::MoveAside { from, to } => {
                    format!("rename {} -> {}", from.display(), to.display())
                }
                other => panic!("an abort plan has no {other:?} step"),
            })
            .collect();
        let done = changes(&setup, &np.node);
        assert_eq!(done.len(), expected.len(), "{}: {done:?}", np.node);
        for (d, e) in done.iter().zip(&expected) {
            assert_eq!(d.split(' ').next(), e.split(' ').next(), "{d} vs {e}");
        }
        for (d, s) in done.iter().zip(&np.steps) {
            if let Step::MoveAside { from, .. } = s {
                assert!(d.contains(&from.display().to_string()), "{d}");
            }
        }
    }
    setup.assert_original_layout([true, false, false], "aborted through apply");
    let put_back: Vec<bool> = report
        .nodes
        .iter()
        .map(|n| n.restored_old_data_dir)
        .collect();
    assert_eq!(put_back, [true, true, false], "worker2 was never touched");
    assert!(!RestoreState::path(setup.config()).exists());
}

#[test]
fn plan_basis_names_what_changed() {
    use crate::observe::NodeObservation;
    let mut a = NodeObservation::new("worker1", ServerState::Running);
    a.in_recovery = Some(false);
    a.settings.insert("archive_mode".into(), "off".into());
    let mut b = a.clone();
    b.settings.insert("archive_mode".into(), "on".into());
    let planned = PlanBasis::new(std::slice::from_ref(&a));
    planned
        .check(&PlanBasis::new(std::slice::from_ref(&a)))
        .unwrap();
    let err = planned
        .check(&PlanBasis::new(std::slice::from_ref(&b)))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the plan is outdated: node worker1: archive_mode changed since the plan was built; build the plan again (run the command without the plan, or plan it again) and check it"
    );
    // Replay going on (not answering yet, pause state moving) is no change.
    let mut c = a.clone();
    c.error = Some("starting up".into());
    c.in_recovery = None;
    c.settings.clear();
    planned.check(&PlanBasis::new(&[c])).unwrap();
    let mut d = a.clone();
    d.in_recovery = Some(true);
    assert!(planned.check(&PlanBasis::new(&[d])).is_err());
}

#[tokio::test]
async fn a_new_stamp_skips_every_second_whose_folders_exist() {
    let setup = Setup::new([true; 3]);
    let config = setup.config();
    // A restore began at t(30) and one at t(31): their folders are on worker2's host only.
    for second in [30, 31] {
        let stamp = crate::names::default_name(t(second));
        setup
            .fake
            .add_dir("worker2", moved_aside_dir(config, "worker2", &stamp));
    }
    let paths = |s: &str| attempt_paths(config, s);
    let stamp = free_stamp(&setup.fake, t(30), paths).await.unwrap();
    assert_eq!(stamp, crate::names::default_name(t(32)));
    assert_eq!(
        free_stamp(&setup.fake, t(32), paths).await.unwrap(),
        crate::names::default_name(t(32)),
        "a free second is taken as it is"
    );
    // Every second of the minute taken: refused, naming a folder, before anything is touched.
    for second in 32..100 {
        let stamp = crate::names::default_name(t(second));
        setup
            .fake
            .add_dir("worker2", failed_restore_dir(config, "worker2", &stamp));
    }
    let err = free_stamp(&setup.fake, t(30), paths).await.unwrap_err();
    assert!(err.to_string().contains("worker2.before-restore-"), "{err}");
}
