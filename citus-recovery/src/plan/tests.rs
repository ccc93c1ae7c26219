//! Plan building from hand-made observations: no server, no I/O.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::backend::ServerState;
use crate::catalog::{Backup, Catalog, NodeBackup, NodeRestorePoint, RestorePoint};
use crate::config::ClusterConfig;
use crate::observe::{CitusNode, NodeObservation};
use crate::wal::Lsn;

pub(super) fn config() -> ClusterConfig {
    let json = serde_json::json!({
        "clusterName": "demo", "workerCount": 2,
        "coordinatorNode": {"name": "coordinator", "hostname": "localhost", "port": 9700, "username": "postgres", "dbname": "postgres"},
        "workerNodes": [
            {"name": "worker1", "hostname": "localhost", "port": 9701, "username": "postgres", "dbname": "postgres"},
            {"name": "worker2", "hostname": "localhost", "port": 9702, "username": "postgres", "dbname": "postgres"}
        ],
        "clusterBaseFolder": "/nonexistent/cluster", "archiveBaseFolder": "/nonexistent/archive", "backupBaseFolder": "/nonexistent/backup"
    });
    ClusterConfig::from_json_str(&json.to_string(), None).unwrap()
}

pub(super) fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
}

/// A running primary with archiving on (`archiving`) or off.
fn running(node: &str, archiving: bool) -> NodeObservation {
    let mut settings = BTreeMap::new();
    settings.insert("wal_level".to_string(), "replica".to_string());
    if archiving {
        settings.insert("archive_mode".into(), "on".into());
        settings.insert("archive_library".into(), "basic_archive".into());
        settings.insert(
            "basic_archive.archive_directory".into(),
            format!("/nonexistent/archive/{node}"),
        );
    } else {
        settings.insert("archive_mode".into(), "off".into());
        settings.insert("archive_command".into(), "(disabled)".into());
    }
    NodeObservation {
        in_recovery: Some(false),
        lsn: Some("0/3000000".into()),
        timeline: Some(1),
        settings,
        server_version: Some("15.18".into()),
        server_zstd: Some(true),
        addresses: vec!["127.0.0.1".parse().unwrap()],
        ..NodeObservation::new(node, ServerState::Running)
    }
}

pub(super) fn all(archiving: bool) -> Vec<NodeObservation> {
    ["coordinator", "worker1", "worker2"]
        .iter()
        .map(|n| running(n, archiving))
        .collect()
}

pub(super) fn backup(end_time: DateTime<Utc>) -> Backup {
    Backup {
        name: "b1".into(),
        cluster_name: "demo".into(),
        start_time: t(0),
        end_time,
        citus_version: None,
        nodes: ["coordinator", "worker1", "worker2"]
            .iter()
            .map(|n| NodeBackup {
                backup: "b1".into(),
                node: n.to_string(),
                start_lsn: Lsn(0x2000028),
                end_lsn: Lsn(0x2000100),
                timeline: 1,
                start_time: t(0),
                end_time,
                pg_version: "15.18".into(),
                bytes: 1,
                system_identifier: None,
                hot_standby: None,
                tablespaces: Vec::new(),
                wal_segment_size: None,
            })
            .collect(),
    }
}

pub(super) fn point(lsn: u64, time: DateTime<Utc>) -> RestorePoint {
    RestorePoint {
        name: "rp'1".into(),
        time,
        citus: false,
        nodes: ["coordinator", "worker1", "worker2"]
            .iter()
            .map(|n| NodeRestorePoint {
                node: n.to_string(),
                lsn: Some(Lsn(lsn)),
                timeline: 1,
                segment: "000000010000000000000003".into(),
            })
            .collect(),
    }
}

#[test]
fn archive_plan_sets_only_what_differs_and_restarts() {
    let c = config();
    let plan = ArchivePlan::build(&c, &all(false), true, false).unwrap();
    let steps = &plan.phases[0].nodes[1].steps;
    assert!(
        matches!(&steps[0], Step::CreateFolder { path } if path == Path::new("/nonexistent/archive/worker1"))
    );
    let Step::SetParameters { parameters, .. } = &steps[1] else {
        panic!("{steps:?}")
    };
    let names: Vec<&str> = parameters.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "archive_mode",
            "archive_library",
            "basic_archive.archive_directory"
        ]
    );
    assert!(matches!(&steps[3], Step::Restart { because } if because == &["archive_mode"]));
    assert!(plan.restart_pending.is_empty());

    let no_restart = ArchivePlan::build(&c, &all(false), false, false).unwrap();
    assert_eq!(no_restart.restart_pending.len(), 3);
    assert!(
        no_restart.notes[0].contains("needs a restart for archive_mode"),
        "{:?}",
        no_restart.notes
    );

    let done = ArchivePlan::build(&c, &all(true), true, false).unwrap();
    assert!(
        done.phases[0].nodes.iter().all(|n| n.steps.len() == 1),
        "{done}"
    );
    assert!(done.notes.iter().any(|n| n.contains("already prepared")));
}

#[test]
fn archive_plan_keeps_logical_and_needs_running_nodes() {
    let c = config();
    let mut obs = all(true);
    obs[0].settings.insert("wal_level".into(), "logical".into());
    let plan = ArchivePlan::build(&c, &obs, true, false).unwrap();
    assert_eq!(
        plan.phases[0].nodes[0].steps.len(),
        1,
        "logical is kept: {plan}"
    );
    obs[2].server = ServerState::Stopped;
    let err = ArchivePlan::build(&c, &obs, true, false).unwrap_err();
    assert!(
        err.to_string().contains("node worker2 is not running"),
        "{err}"
    );
}

#[test]
fn basebackup_plan_refuses_without_archiving_and_bad_names() {
    let c = config();
    let catalog = Catalog::new(&c);
    let mut obs = all(true);
    obs[1] = running("worker1", false);
    let err = BasebackupPlan::build(&c, &obs, None, t(0), &catalog, false).unwrap_err();
    assert!(
        err.to_string()
            .contains("WAL archiving is not on for node worker1"),
        "{err}"
    );
    let err =
        BasebackupPlan::build(&c, &all(true), Some("../x"), t(0), &catalog, false).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
    let plan = BasebackupPlan::build(&c, &all(true), None, t(0), &catalog, false).unwrap();
    assert_eq!(plan.name, crate::names::default_name(t(0)));
    assert_eq!(plan.phases[0].nodes.len(), 3, "every node at once");
    assert!(plan.to_json().contains("\"action\": \"base_backup\""));
}

#[test]
fn restore_point_plan_citus_and_plain() {
    let c = config();
    let plain = RestorePointPlan::build(&c, &all(true), Some("x"), t(0), &[]).unwrap();
    assert!(!plain.citus);
    assert_eq!(plain.phases.len(), 1);
    assert!(plain.phases[0].nodes.iter().all(|n| matches!(
        n.steps[0],
        Step::CreateRestorePoint {
            function: RestorePointFunction::Postgres,
            ..
        }
    )));

    let mut obs = all(true);
    obs[0].citus_version = Some("13.2".into());
    let citus = RestorePointPlan::build(&c, &obs, Some("x"), t(0), &[]).unwrap();
    assert!(citus.citus);
    assert_eq!(
        citus.phases[0].nodes.len(),
        1,
        "only the coordinator calls citus_create_restore_point"
    );
    assert_eq!(
        citus.phases[1].nodes.len(),
        3,
        "every node switches WAL after it"
    );
    assert!(
        citus
            .to_string()
            .contains("citus_create_restore_point('x')"),
        "{citus}"
    );
    // The bounded lock wait is in the printed plan and in its JSON.
    assert!(
        citus.to_string().contains(
            "with lock_timeout 2000 ms (statement_timeout 4000 ms), retried up to 3 times"
        ),
        "{citus}"
    );
    assert!(
        citus.to_json().contains("\"lock_timeout_ms\": 2000"),
        "{}",
        citus.to_json()
    );

    let long = "x".repeat(64);
    assert!(matches!(
        RestorePointPlan::build(&c, &all(true), Some(&long), t(0), &[]),
        Err(Error::InvalidArgument { .. })
    ));
    let known = vec![point(0x3000000, t(5))];
    assert!(matches!(
        RestorePointPlan::build(&c, &all(true), Some("rp'1"), t(0), &known),
        Err(Error::RestorePointExists { .. })
    ));
}

#[test]
fn restore_plan_steps_per_node() {
    let c = config();
    let mut obs = all(true);
    obs[2].server = ServerState::Stopped;
    let plan = restore_plan(
        &c,
        &obs,
        &backup(t(10)),
        &point(0x3000000, t(20)),
        &data_dirs(&c),
        None,
        t(30),
    )
    .unwrap();
    assert_eq!(
        kinds(&plan, 0),
        ["stop", "aside", "extract", "settings", "signal", "control", "start", "wait"]
    );
    assert_eq!(
        kinds(&plan, 2),
        ["aside", "extract", "settings", "signal", "control", "start", "wait"],
        "a stopped node is not stopped again"
    );
    let aside = plan.state.nodes[1].moved_aside_to.as_ref().unwrap();
    assert_eq!(
        aside,
        Path::new(&format!(
            "/nonexistent/cluster/worker1.before-restore-{}",
            crate::names::default_name(t(30))
        ))
    );
    let Step::WriteRecoverySettings { settings, .. } = &plan.phases[0].nodes[0].steps[3] else {
        panic!()
    };
    let get = |k: &str| {
        settings
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("recovery_target_name"), Some("'rp''1'"));
    assert_eq!(get("recovery_target_action"), Some("'pause'"));
    assert_eq!(get("recovery_target_timeline"), Some("'1'"));
    assert!(get("restore_command")
        .unwrap()
        .contains("/nonexistent/archive/coordinator"));
}

#[test]
fn restore_plan_refuses_an_attempt_stamp_whose_folders_exist() {
    // Two restore-starts in one second: the second attempt's stamp names the first one's
    // moved-aside directory, and a rename onto it would fail half-way through the restore.
    let c = config();
    for taken in [
        moved_aside_dir(&c, "worker1", &crate::names::default_name(t(30))),
        failed_restore_dir(&c, "worker2", &crate::names::default_name(t(30))),
        restore::tablespace_dir(&c, "coordinator", &crate::names::default_name(t(30)), 1)
            .parent()
            .unwrap()
            .to_path_buf(),
    ] {
        let mut existing = data_dirs(&c);
        existing.insert(taken.clone());
        let err = restore_plan(
            &c,
            &all(true),
            &backup(t(10)),
            &point(0x3000000, t(20)),
            &existing,
            None,
            t(30),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidArgument {
                    what: "time stamp of new folders",
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains(&taken.display().to_string()),
            "{err}"
        );
    }
}

#[test]
fn abort_plan_refuses_a_kept_copy_name_that_exists() {
    let c = config();
    let plan = restore_plan(
        &c,
        &all(true),
        &backup(t(10)),
        &point(0x3000000, t(20)),
        &data_dirs(&c),
        None,
        t(30),
    )
    .unwrap();
    let mut existing = data_dirs(&c);
    existing.extend(
        plan.state
            .nodes
            .iter()
            .filter_map(|n| n.moved_aside_to.clone()),
    );
    let stamp = crate::names::default_name(t(40));
    AbortPlan::build(&c, &all(true), &plan.state, &existing, &stamp).unwrap();
    let kept = AbortPlan::kept_paths(&c, &plan.state, &stamp);
    assert_eq!(kept.len(), 3);
    existing.insert(kept[1].1.clone());
    let err = AbortPlan::build(&c, &all(true), &plan.state, &existing, &stamp).unwrap_err();
    assert!(
        err.to_string().contains(&kept[1].1.display().to_string()),
        "{err}"
    );
}

#[test]
fn restore_plan_refuses_a_point_before_the_backup_end() {
    let c = config();
    let err = restore_plan(
        &c,
        &all(true),
        &backup(t(10)),
        &point(0x2000000, t(20)),
        &data_dirs(&c),
        None,
        t(30),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("lies before the end of backup b1"),
        "{err}"
    );
    // Without an LSN (Citus reports only the coordinator's) the times decide.
    let mut rp = point(0, t(5));
    for n in &mut rp.nodes {
        n.lsn = None;
    }
    assert!(restore_plan(
        &c,
        &all(true),
        &backup(t(10)),
        &rp,
        &data_dirs(&c),
        None,
        t(30)
    )
    .is_err());
    let mut short = backup(t(10));
    short.nodes.pop();
    let err = restore_plan(
        &c,
        &all(true),
        &short,
        &point(0x3000000, t(20)),
        &data_dirs(&c),
        None,
        t(30),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Identity { .. }), "{err}");
    assert!(err.to_string().contains("it lacks worker2"), "{err}");
    // A node removed from the config since the backup: refused too, not silently skipped.
    let mut long = backup(t(10));
    let mut extra = long.nodes[2].clone();
    extra.node = "worker3".into();
    long.nodes.push(extra);
    let err = restore_plan(
        &c,
        &all(true),
        &long,
        &point(0x3000000, t(20)),
        &data_dirs(&c),
        None,
        t(30),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("it has worker3 which the config lacks"),
        "{err}"
    );
}

/// The catalog a cluster of `c` reads: in its repository (an empty one in memory) when it has
/// one, else in `backupBaseFolder`.
fn catalog_of(c: &ClusterConfig) -> Catalog {
    match &c.repository {
        Some(_) => Catalog::open(
            c,
            Some(std::sync::Arc::new(
                crate::repository::memory::MemoryRepository::new(),
            )),
        ),
        None => Catalog::new(c),
    }
}

/// A restore plan with no WAL parameter changes.
pub(super) fn restore_plan(
    c: &ClusterConfig,
    obs: &[NodeObservation],
    backup: &Backup,
    point: &RestorePoint,
    existing: &HashSet<PathBuf>,
    previous: Option<&RestoreState>,
    now: DateTime<Utc>,
) -> Result<RestorePlan> {
    RestorePlan::build(
        c,
        obs,
        &catalog_of(c),
        &RestoreInputs {
            backup,
            restore_point: point,
            wal_parameters: &Default::default(),
            existing,
            previous,
            attempt: &crate::names::default_name(now),
        },
        now,
    )
}

/// Every node's data directory, as if all exist.
pub(super) fn data_dirs(c: &ClusterConfig) -> HashSet<PathBuf> {
    c.nodes().map(|n| c.data_dir(n)).collect()
}

#[test]
fn a_restore_started_again_resumes_from_what_the_disk_holds() {
    let c = config();
    let first = restore_plan(
        &c,
        &all(true),
        &backup(t(10)),
        &point(0x3000000, t(20)),
        &data_dirs(&c),
        None,
        t(30),
    )
    .unwrap();
    let stamp = first.state.stamp.clone();
    let aside = |n: &str| moved_aside_dir(&c, n, &stamp);
    // Killed mid-way: the coordinator was moved aside and half-restored, worker1 was not moved
    // yet, worker2 was moved aside and nothing extracted.
    let mut existing = HashSet::new();
    existing.insert(aside("coordinator"));
    existing.insert(c.data_dir(&c.coordinator));
    existing.insert(c.data_dir(&c.workers[0]));
    existing.insert(aside("worker2"));
    let mut obs = all(true);
    for o in &mut obs {
        o.server = ServerState::Stopped;
    }
    let again = restore_plan(
        &c,
        &obs,
        &backup(t(10)),
        &point(0x3000000, t(20)),
        &existing,
        Some(&first.state),
        t(90),
    )
    .unwrap();
    assert_eq!(
        again.state.stamp, stamp,
        "the old directories stay where they are"
    );
    assert_eq!(again.state.started, first.state.started);
    let moves = |i: usize| -> Vec<(PathBuf, PathBuf)> {
        again.phases[0].nodes[i]
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::MoveAside { from, to } => Some((from.clone(), to.clone())),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        moves(0),
        [(
            c.data_dir(&c.coordinator),
            failed_restore_dir(&c, "coordinator", &crate::names::default_name(t(90)))
        )],
        "the half-restored directory is kept aside, the old one stays put"
    );
    assert_eq!(moves(1), [(c.data_dir(&c.workers[0]), aside("worker1"))]);
    assert!(moves(2).is_empty());
    for n in &again.state.nodes {
        assert_eq!(n.moved_aside_to.as_ref(), Some(&aside(&n.node)));
        assert!(
            n.was_running,
            "what counts is whether it ran before the first attempt"
        );
    }
    // Both gone: the old data cannot be found, so nothing is done.
    existing.remove(&aside("worker2"));
    let err = restore_plan(
        &c,
        &obs,
        &backup(t(10)),
        &point(0x3000000, t(20)),
        &existing,
        Some(&first.state),
        t(90),
    )
    .unwrap_err();
    assert!(err.to_string().contains("neither"), "{err}");
}

#[test]
fn finish_plan_needs_paused_nodes() {
    let c = config();
    let err = FinishPlan::build(&c, &all(true), None).unwrap_err();
    assert!(err.to_string().contains("no restore is under way"), "{err}");
    let mut obs = all(true);
    for o in &mut obs {
        o.in_recovery = Some(true);
        o.pause_state = Some("paused".into());
    }
    let plan = FinishPlan::build(&c, &obs, None).unwrap();
    assert_eq!(plan.phases.len(), 2);
    assert!(plan.phases[0]
        .nodes
        .iter()
        .all(|n| n.steps == [Step::Resume, Step::WaitPromoted]));
    assert_eq!(plan.step_lines().len(), 9);
    obs[1].pause_state = Some("not paused".into());
    let err = FinishPlan::build(&c, &obs, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("node worker1 is still in recovery"),
        "{err}"
    );
}

#[test]
fn a_citus_node_missing_from_the_config_is_refused() {
    let c = config();
    let catalog = Catalog::new(&c);
    let mut obs = all(true);
    obs[0].citus_version = Some("13.2".into());
    let cn = |host: &str, port: u16| CitusNode {
        host: host.into(),
        port,
        addresses: vec!["127.0.0.1".parse().unwrap()],
        active: true,
    };
    // Registered by address, configured by name: the same servers.
    obs[0].citus_nodes = Some(vec![
        cn("127.0.0.1", 9700),
        cn("127.0.0.1", 9701),
        cn("localhost", 9702),
    ]);
    BasebackupPlan::build(&c, &obs, None, t(0), &catalog, false)
        .expect("every active node is configured");
    obs[0]
        .citus_nodes
        .as_mut()
        .unwrap()
        .push(cn("localhost", 9703));
    for err in [
        BasebackupPlan::build(&c, &obs, None, t(0), &catalog, false).unwrap_err(),
        RestorePointPlan::build(&c, &obs, None, t(0), &[]).unwrap_err(),
    ] {
        assert!(
            err.to_string().contains("an active node localhost:9703"),
            "{err}"
        );
    }
}

/// The refusals are typed: callers match on the variant and its fields, not on the text.
#[test]
fn refusals_are_typed_variants_naming_the_node() {
    let c = config();
    let catalog = Catalog::new(&c);
    let mut obs = all(true);
    obs[2].server = ServerState::Stopped;
    assert!(matches!(
        ArchivePlan::build(&c, &obs, true, false),
        Err(Error::NodeNotRunning { ref node, state: ServerState::Stopped, .. }) if node == "worker2"
    ));
    assert!(matches!(
        FinishPlan::build(&c, &obs, None),
        Err(Error::NodeNotRunning { ref node, .. }) if node == "worker2"
    ));
    assert!(matches!(
        FinishPlan::build(&c, &all(true), None),
        Err(Error::NoRestoreUnderWay { .. })
    ));

    let mut obs = all(true);
    obs[1].in_recovery = Some(true);
    obs[1].pause_state = Some("not paused".into());
    assert!(matches!(
        BasebackupPlan::build(&c, &obs, None, t(0), &catalog, false),
        Err(Error::NodeInRecovery { ref node, command: "basebackup", .. }) if node == "worker1"
    ));
    assert!(matches!(
        RestorePointPlan::build(&c, &obs, None, t(0), &[]),
        Err(Error::NodeInRecovery { ref node, command: "restore-point", .. }) if node == "worker1"
    ));
    for o in &mut obs {
        o.in_recovery = Some(true);
        o.pause_state.get_or_insert_with(|| "paused".into());
    }
    let err = FinishPlan::build(&c, &obs, None).unwrap_err();
    assert!(
        matches!(&err, Error::NotPaused { node, pause_state } if node == "worker1" && pause_state == "not paused"),
        "{err}"
    );
    assert_eq!(err.node_name(), Some("worker1"));

    let mut obs = all(true);
    obs[0] = running("coordinator", false);
    for err in [
        BasebackupPlan::build(&c, &obs, None, t(0), &catalog, false).unwrap_err(),
        RestorePointPlan::build(&c, &obs, None, t(0), &[]).unwrap_err(),
    ] {
        assert!(
            matches!(&err, Error::ArchivingOff { node, .. } if node == "coordinator"),
            "{err}"
        );
        assert!(err.to_string().contains("prepare-archiving"), "{err}");
    }
    assert!(matches!(
        BasebackupPlan::build(&c, &all(true), Some("b1"), t(0), &catalog, true),
        Err(Error::InvalidArgument {
            what: "backup name",
            ..
        })
    ));
}

/// With zstd and PostgreSQL 15 or newer built with zstd, the server compresses a repository
/// backup and the plan says so; an older server, one built without zstd, or lz4/none,
/// compresses here. One rule for the plan and the run.
#[test]
fn the_plan_says_which_side_compresses_a_repository_backup() {
    use crate::plan::basebackup::compressed_by_server;
    use crate::repository::codec::Compression;
    let mut c = config();
    c.repository = Some(crate::config::RepositoryConfig::Posix {
        path: "/nonexistent/repo".into(),
    });
    c.compression = "zstd:3".parse().unwrap();
    let catalog = Catalog::new(&c);
    let mut observed = all(true);
    observed[1].server_version = Some("14.9 (Debian 14.9-1)".into());
    observed[1].server_zstd = Some(false);
    observed[2].server_zstd = Some(false);
    observed[2].server_version = Some("16.4".into());
    let plan = BasebackupPlan::build(&c, &observed, Some("b1"), t(0), &catalog, false).unwrap();
    let by_server: Vec<bool> = plan.phases[0]
        .nodes
        .iter()
        .map(|n| match &n.steps[..] {
            [Step::BaseBackupToRepository { by_server, .. }] => *by_server,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        by_server,
        [true, false, false],
        "worker1 runs PostgreSQL 14, worker2 one built without zstd"
    );
    let text = plan.to_string();
    assert!(text.contains("compressed by the server (zstd:3"), "{text}");
    assert!(
        text.contains("compressed (zstd:3) into the repository"),
        "{text}"
    );
    assert_eq!(
        compressed_by_server(Compression::Zstd(3), Some(15), true),
        Some(3)
    );
    assert_eq!(
        compressed_by_server(Compression::Zstd(1), Some(17), true),
        Some(1)
    );
    assert_eq!(
        compressed_by_server(Compression::Zstd(1), Some(17), false),
        None
    );
    assert_eq!(compressed_by_server(Compression::Zstd(1), None, true), None);
    assert_eq!(compressed_by_server(Compression::Lz4, Some(16), true), None);
    assert_eq!(
        compressed_by_server(Compression::None, Some(16), true),
        None
    );
}

/// With a `repository`, the base backup streams into it and the restore streams from it; the
/// dry run says so and names the keys.
#[test]
fn with_a_repository_backups_go_into_it_and_restores_come_from_it() {
    let mut c = config();
    c.repository = Some(crate::config::RepositoryConfig::Posix {
        path: "/nonexistent/repo".into(),
    });
    c.compression = "lz4".parse().unwrap();
    c.binary = Some("/usr/local/bin/citus-recovery".into());
    c.source = Some("/etc/citus-recovery/cluster.json".into());
    let catalog = Catalog::new(&c);
    let plan = BasebackupPlan::build(&c, &all(true), Some("b1"), t(0), &catalog, false).unwrap();
    match &plan.phases[0].nodes[1].steps[..] {
        [Step::BaseBackupToRepository {
            backup,
            object,
            compression,
            by_server: false,
        }] => {
            assert_eq!(
                (backup.as_str(), object.as_str(), compression.as_str()),
                ("b1", "backups/b1/worker1/base.tar.lz4", "lz4")
            );
        }
        other => panic!("{other:?}"),
    }
    let text = plan.to_string();
    assert!(
        text.contains("into the repository as backups/b1/coordinator/base.tar.lz4"),
        "{text}"
    );
    assert!(plan
        .to_json()
        .contains("\"action\": \"base_backup_to_repository\""));

    let plan = restore_plan(
        &c,
        &all(true),
        &backup(t(10)),
        &point(0x3000000, t(20)),
        &data_dirs(&c),
        None,
        t(30),
    )
    .unwrap();
    let extracts: Vec<&Step> = plan.phases[0]
        .nodes
        .iter()
        .flat_map(|n| &n.steps)
        .filter(|s| matches!(s, Step::ExtractFromRepository { .. } | Step::Extract { .. }))
        .collect();
    assert_eq!(extracts.len(), 3, "one per node");
    for s in extracts {
        let Step::ExtractFromRepository { objects, .. } = s else {
            panic!("from the repository: {s:?}")
        };
        assert!(objects.starts_with("backups/"), "{objects}");
        assert!(s.to_string().contains("checking every file against"), "{s}");
    }
}

/// A `-X fetch` backup whose WAL was recycled before pg_basebackup fetched it stores nothing
/// and is taken again with `-X none`, whatever language the server's error is in; a segment
/// the archive lacks is no recycling and is not retried; a second failure is returned, naming
/// the cause, and leaves nothing either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_backup_that_lost_its_wal_is_taken_again_without_wal() {
    use crate::backend::fake::FakeBackend;
    use crate::repository::memory::MemoryRepository;
    use crate::repository::{Key, Repository};
    let c = config();
    let node = c.coordinator.clone();
    let fake = FakeBackend::new(c);
    let repo = MemoryRepository::new();
    // Recycled only once archived: the segment the error names is in the repository.
    crate::archiving::archive_push_data(
        &repo,
        Default::default(),
        "coordinator",
        "000000010000000000000002",
        vec![0; 64],
    )
    .await
    .unwrap();
    let key = Key::new("backups/b1/coordinator/base.tar.zst").unwrap();
    fake.fail("coordinator", "base_backup_stream", 1);
    let up = basebackup::stream_with_fallback(&fake, &repo, &node, "b1", &key)
        .await
        .expect("taken again");
    assert_eq!(
        fake.node_calls("coordinator"),
        [
            "base_backup_stream fetch b1 (injected failure)",
            "base_backup_stream none b1"
        ]
    );
    assert_eq!(up.scanned.files.len(), 2, "{:?}", up.scanned.files);
    assert!(repo.head(&key).await.unwrap().is_some());

    // The server's messages in another language: the archived segment it names decides. (The
    // failure scripted for the first call stays scripted after clear_calls.)
    fake.set_stream_error(
        "FEHLER:  angefordertes WAL-Segment 000000010000000000000002 wurde schon entfernt",
    );
    let key = Key::new("backups/b3/coordinator/base.tar.zst").unwrap();
    fake.clear_calls();
    basebackup::stream_with_fallback(&fake, &repo, &node, "b3", &key)
        .await
        .expect("taken again whatever the language");
    assert_eq!(fake.call_count("coordinator", "base_backup_stream"), 2);

    // A segment the repository does not hold was not recycled by archiving: no second try.
    fake.set_stream_error(
        "FEHLER:  angefordertes WAL-Segment 000000010000000000000009 wurde schon entfernt",
    );
    let key = Key::new("backups/b4/coordinator/base.tar.zst").unwrap();
    fake.clear_calls();
    let e = basebackup::stream_with_fallback(&fake, &repo, &node, "b4", &key)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("000000010000000000000009"), "{e}");
    assert_eq!(fake.call_count("coordinator", "base_backup_stream"), 1);
    assert_eq!(repo.head(&key).await.unwrap(), None);

    // Failing again: the second failure is returned, naming the cause.
    fake.set_stream_error(
        "ERROR:  requested WAL segment 000000010000000000000002 has already been removed",
    );
    let key = Key::new("backups/b2/coordinator/base.tar.zst").unwrap();
    fake.clear_calls();
    fake.fail("coordinator", "base_backup_stream", 2);
    let e = basebackup::stream_with_fallback(&fake, &repo, &node, "b2", &key)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("has already been removed"), "{e}");
    assert_eq!(fake.call_count("coordinator", "base_backup_stream"), 2);
    assert_eq!(repo.head(&key).await.unwrap(), None);
}

/// Each step of node `i` of a restore plan's first phase, by kind.
pub(super) fn kinds(plan: &RestorePlan, i: usize) -> Vec<&'static str> {
    plan.phases[0].nodes[i]
        .steps
        .iter()
        .map(|s| match s {
            Step::Stop => "stop",
            Step::MoveAside { .. } => "aside",
            Step::Extract { .. } => "extract",
            Step::ExtractFromRepository { .. } => "extract from repository",
            Step::WriteRecoverySettings { .. } => "settings",
            Step::CreateSignal { .. } => "signal",
            Step::PrefetchWal { .. } => "prefetch",
            Step::InstallControlFile { .. } => "control",
            Step::Start { wait: false } => "start",
            Step::WaitPaused { .. } => "wait",
            _ => "other",
        })
        .collect()
}
