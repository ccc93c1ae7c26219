//! Config validation: every rule, one row each.

use serde_json::{json, Value};

use super::*;

fn sample() -> Value {
    json!({
        "clusterName": "demo",
        "workerCount": 2,
        "coordinatorNode": {"name": "coordinator", "hostname": "localhost", "port": 9700, "username": "postgres", "dbname": "postgres"},
        "workerNodes": [
            {"name": "worker1", "hostname": "localhost", "port": 9701, "username": "postgres", "dbname": "postgres"},
            {"name": "worker2", "hostname": "localhost", "port": 9702, "username": "postgres", "dbname": "postgres"}
        ],
        "clusterBaseFolder": "/srv/citus/cluster",
        "archiveBaseFolder": "/srv/citus/archive",
        "backupBaseFolder": "/srv/citus/backup",
        "backupToRestore": "",
        "restorePoint": ""
    })
}

fn parse(v: &Value) -> Result<ClusterConfig> {
    ClusterConfig::from_json_str(&v.to_string(), Some(Path::new("/etc/cluster-config.json")))
}

#[test]
fn the_old_scripts_file_is_accepted() {
    let c = parse(&sample()).unwrap();
    assert_eq!(c.cluster_name, "demo");
    assert_eq!(c.workers.len(), 2);
    assert_eq!(c.coordinator.role, NodeRole::Coordinator);
    assert_eq!(c.workers[1].role, NodeRole::Worker);
    assert_eq!(c.backup_to_restore, None, "an empty string means not set");
    assert_eq!(c.restore_point, None);
    assert_eq!(
        c.data_dir(&c.workers[0]),
        Path::new("/srv/citus/cluster/worker1")
    );
    assert_eq!(
        c.archive_dir(&c.workers[0]),
        Path::new("/srv/citus/archive/worker1")
    );
    let names: Vec<&str> = c.nodes().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["coordinator", "worker1", "worker2"]);
}

#[test]
fn optional_fields_are_read() {
    let mut v = sample();
    v["osUser"] = json!("pgowner");
    v["pgBinDir"] = json!("/opt/pg/bin");
    v["backupToRestore"] = json!("nightly");
    v["restorePoint"] = json!("before-upgrade");
    let c = parse(&v).unwrap();
    assert_eq!(c.os_user.as_deref(), Some("pgowner"));
    assert_eq!(c.pg_bin_dir.as_deref(), Some(Path::new("/opt/pg/bin")));
    assert_eq!(c.backup_to_restore.as_deref(), Some("nightly"));
    assert_eq!(c.restore_point.as_deref(), Some("before-upgrade"));
}

/// Each case: a change to the sample, the field the error must name, and a word of its message.
#[test]
fn every_rule_names_its_field() {
    type Edit = fn(&mut Value);
    let cases: Vec<(&str, Edit, &str, &str)> = vec![
        (
            "worker count mismatch",
            |v| v["workerCount"] = json!(3),
            "workerCount",
            "lists 2",
        ),
        (
            "missing field",
            |v| {
                v.as_object_mut().unwrap().remove("backupBaseFolder");
            },
            "(file)",
            "missing field `backupBaseFolder`",
        ),
        (
            "missing node field",
            |v| {
                v["workerNodes"][1].as_object_mut().unwrap().remove("port");
            },
            "workerNodes[1]",
            "missing field `port`",
        ),
        (
            "wrong type",
            |v| v["workerCount"] = json!("two"),
            "workerCount",
            "invalid type",
        ),
        (
            "wrong port type",
            |v| v["coordinatorNode"]["port"] = json!("9700"),
            "coordinatorNode.port",
            "invalid type",
        ),
        (
            "port out of range",
            |v| v["workerNodes"][0]["port"] = json!(70000),
            "workerNodes[0].port",
            "invalid value",
        ),
        (
            "port zero",
            |v| v["workerNodes"][0]["port"] = json!(0),
            "workerNodes[0].port",
            "is 0",
        ),
        (
            "unknown field",
            |v| v["clusterNmae"] = json!("x"),
            "clusterNmae",
            "unknown field",
        ),
        (
            "unknown node field",
            |v| v["coordinatorNode"]["pasword"] = json!("x"),
            "coordinatorNode.pasword",
            "unknown field",
        ),
        (
            "duplicate name",
            |v| v["workerNodes"][1]["name"] = json!("worker1"),
            "workerNodes[1].name",
            "used twice",
        ),
        (
            "duplicate port",
            |v| v["workerNodes"][1]["port"] = json!(9700),
            "workerNodes[1].port",
            "used by another node",
        ),
        (
            "name with slash",
            |v| v["workerNodes"][0]["name"] = json!("a/b"),
            "workerNodes[0].name",
            "contains '/'",
        ),
        (
            "empty name",
            |v| v["coordinatorNode"]["name"] = json!(""),
            "coordinatorNode.name",
            "is empty",
        ),
        (
            "empty hostname",
            |v| v["workerNodes"][0]["hostname"] = json!(" "),
            "workerNodes[0].hostname",
            "is empty",
        ),
        (
            "empty cluster name",
            |v| v["clusterName"] = json!(""),
            "clusterName",
            "is empty",
        ),
        (
            "relative cluster folder",
            |v| v["clusterBaseFolder"] = json!("cluster"),
            "clusterBaseFolder",
            "relative",
        ),
        (
            "relative archive folder",
            |v| v["archiveBaseFolder"] = json!("./archive"),
            "archiveBaseFolder",
            "relative",
        ),
        (
            "relative backup folder",
            |v| v["backupBaseFolder"] = json!("backup"),
            "backupBaseFolder",
            "relative",
        ),
        (
            "relative bin folder",
            |v| v["pgBinDir"] = json!("bin"),
            "pgBinDir",
            "relative",
        ),
        (
            "archive inside a data directory",
            |v| v["archiveBaseFolder"] = json!("/srv/citus/cluster/worker2/archive"),
            "archiveBaseFolder",
            "overlaps the data directory of node worker2",
        ),
        (
            "backup inside a data directory",
            |v| v["backupBaseFolder"] = json!("/srv/citus/cluster/coordinator/b"),
            "backupBaseFolder",
            "overlaps",
        ),
        (
            "data directory inside the backup folder",
            |v| v["backupBaseFolder"] = json!("/srv/citus/cluster"),
            "backupBaseFolder",
            "overlaps",
        ),
        (
            "archive and backup the same",
            |v| v["backupBaseFolder"] = json!("/srv/citus/archive"),
            "backupBaseFolder",
            "same folder",
        ),
    ];
    for (what, edit, field, word) in cases {
        let mut v = sample();
        edit(&mut v);
        match parse(&v) {
            Err(Error::Config {
                field: f,
                problem,
                fix,
                path,
            }) => {
                assert_eq!(f, field, "{what}: wrong field ({problem})");
                assert!(problem.contains(word), "{what}: {problem:?} lacks {word:?}");
                assert!(!fix.is_empty(), "{what}: no fix given");
                assert_eq!(path.as_deref(), Some(Path::new("/etc/cluster-config.json")));
            }
            other => panic!("{what}: expected a config error, got {other:?}"),
        }
    }
}

#[test]
fn invalid_json_gives_the_position() {
    let err = ClusterConfig::from_json_str("{\n  \"clusterName\": \"demo\",\n  oops\n}", None)
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("line 3"), "{text}");
    assert!(text.contains("correct the JSON syntax"), "{text}");
}

#[test]
fn a_missing_file_is_a_config_error_naming_it() {
    let err = ClusterConfig::from_file("/no/such/cluster-config.json").unwrap_err();
    assert!(matches!(err, Error::Config { .. }));
    assert!(
        err.to_string().contains("/no/such/cluster-config.json"),
        "{err}"
    );
}
