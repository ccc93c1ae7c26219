//! Inputs for the micro-benchmarks: configs of any size and the observations plans are built
//! from, made up without any server.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use citus_recovery::backend::ServerState;
use citus_recovery::observe::NodeObservation;
use citus_recovery::{Backup, ClusterConfig, NodeBackup, NodeRestorePoint, RestorePoint};

/// A `cluster-config.json` in the old scripts' shape with `workers` workers.
pub fn config_json(workers: usize) -> String {
    let node = |name: String, port: usize| {
        serde_json::json!({
            "name": name, "hostname": "localhost", "port": port,
            "username": "postgres", "dbname": "postgres"
        })
    };
    serde_json::json!({
        "clusterName": "bench",
        "workerCount": workers,
        "coordinatorNode": node("coordinator".into(), 9700),
        "workerNodes": (1..=workers).map(|i| node(format!("worker{i}"), 9700 + i)).collect::<Vec<_>>(),
        "clusterBaseFolder": "/nonexistent/citus-recovery-bench/cluster",
        "archiveBaseFolder": "/nonexistent/citus-recovery-bench/archive",
        "backupBaseFolder": "/nonexistent/citus-recovery-bench/backup",
        "backupToRestore": "",
        "restorePoint": ""
    })
    .to_string()
}

/// The validated config of [`config_json`].
pub fn config(workers: usize) -> ClusterConfig {
    ClusterConfig::from_json_str(&config_json(workers), None).expect("the fixture is valid")
}

/// The state the nodes can be observed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Running primaries with the server defaults: archiving off.
    Fresh,
    /// Running primaries archiving into the config's archive folders.
    Archiving,
    /// Restored and paused at the restore point.
    Paused,
}

/// Every node of `config` observed in `state`.
pub fn observations(config: &ClusterConfig, state: NodeState) -> Vec<NodeObservation> {
    config
        .nodes()
        .map(|node| {
            let mut settings = BTreeMap::new();
            settings.insert("wal_level".to_string(), "replica".to_string());
            if state == NodeState::Fresh {
                settings.insert("archive_mode".into(), "off".into());
                settings.insert("archive_library".into(), String::new());
                settings.insert("archive_command".into(), "(disabled)".into());
            } else {
                settings.insert("archive_mode".into(), "on".into());
                settings.insert("archive_library".into(), "basic_archive".into());
                settings.insert("archive_command".into(), "(disabled)".into());
                settings.insert(
                    "basic_archive.archive_directory".into(),
                    config.archive_dir(node).display().to_string(),
                );
            }
            let paused = state == NodeState::Paused;
            NodeObservation {
                in_recovery: Some(paused),
                pause_state: paused.then(|| "paused".to_string()),
                lsn: Some("0/5000000".into()),
                timeline: (!paused).then_some(1),
                settings,
                server_version: Some("15.14".into()),
                server_zstd: Some(true),
                ..NodeObservation::new(&node.name, ServerState::Running)
            }
        })
        .collect()
}

/// Every node's data directory, as if all exist (what a restore plan is built from).
pub fn data_dirs(config: &ClusterConfig) -> std::collections::HashSet<std::path::PathBuf> {
    config.nodes().map(|n| config.data_dir(n)).collect()
}

/// A fixed point in time, so plans come out the same in every iteration.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap()
}

/// A complete backup of every node of `config`, named `name`.
pub fn backup(config: &ClusterConfig, name: &str) -> Backup {
    Backup {
        name: name.into(),
        cluster_name: config.cluster_name.clone(),
        start_time: now(),
        end_time: now(),
        citus_version: None,
        nodes: config
            .nodes()
            .map(|n| NodeBackup {
                backup: name.into(),
                node: n.name.clone(),
                start_lsn: "0/2000028".parse().expect("an LSN"),
                end_lsn: "0/2000100".parse().expect("an LSN"),
                timeline: 1,
                start_time: now(),
                end_time: now(),
                pg_version: "15.14".into(),
                bytes: 1 << 30,
                system_identifier: None,
                hot_standby: None,
                tablespaces: Vec::new(),
                wal_segment_size: None,
            })
            .collect(),
    }
}

/// A restore point on every node of `config`, after [`backup`].
pub fn restore_point(config: &ClusterConfig, name: &str) -> RestorePoint {
    RestorePoint {
        name: name.into(),
        time: now() + chrono::Duration::hours(1),
        citus: false,
        nodes: config
            .nodes()
            .map(|n| NodeRestorePoint {
                node: n.name.clone(),
                lsn: Some("0/4000090".parse().expect("an LSN")),
                timeline: 1,
                segment: "000000010000000000000004".into(),
            })
            .collect(),
    }
}
