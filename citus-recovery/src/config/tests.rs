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

/// Asserts that `v` is refused with a config error naming `field`, with `word` in the problem.
fn assert_refused(what: &str, v: &Value, field: &str, word: &str) {
    match parse(v) {
        Err(Error::Config {
            field: f,
            problem,
            fix,
            ..
        }) => {
            assert_eq!(f, field, "{what}: wrong field ({problem})");
            assert!(problem.contains(word), "{what}: {problem:?} lacks {word:?}");
            assert!(!fix.is_empty(), "{what}: no fix given");
        }
        other => panic!("{what}: expected a config error, got {other:?}"),
    }
}

/// Paths: no `.` or `..` component, no control character; each row also names the value.
#[test]
fn paths_without_dot_components_or_control_characters() {
    let cases = [
        (
            "clusterBaseFolder",
            "/srv/./citus/cluster",
            "\".\" component",
        ),
        (
            "archiveBaseFolder",
            "/srv/citus/archive/.",
            "\".\" component",
        ),
        // `..` would also reach into a data directory unseen by a plain prefix comparison.
        (
            "backupBaseFolder",
            "/srv/citus/backup/../cluster/worker1/b",
            "\"..\" component",
        ),
        (
            "pgBinDir",
            "/usr/lib/postgresql/15/bin/..",
            "\"..\" component",
        ),
        (
            "archiveBaseFolder",
            "/srv/citus/arch\nive",
            "control character",
        ),
        (
            "backupBaseFolder",
            "/srv/citus/back\tup",
            "control character",
        ),
        (
            "clusterBaseFolder",
            "/srv/citus/cluster\u{1b}",
            "control character",
        ),
    ];
    for (field, value, word) in cases {
        let mut v = sample();
        v[field] = json!(value);
        assert_refused(value, &v, field, word);
        let Err(Error::Config { problem, .. }) = parse(&v) else {
            unreachable!()
        };
        assert!(
            problem.contains(value) || problem.contains(&format!("{value:?}")),
            "{problem:?} does not name {value:?}"
        );
    }
}

/// Names: no control characters (a newline in a host name ends up in the server settings).
#[test]
fn names_without_control_characters() {
    type Edit = fn(&mut Value);
    let cases: Vec<(Edit, &str)> = vec![
        (|v| v["clusterName"] = json!("demo\nx"), "clusterName"),
        (
            |v| v["workerNodes"][0]["hostname"] = json!("localhost\n"),
            "workerNodes[0].hostname",
        ),
        (
            |v| v["coordinatorNode"]["username"] = json!("post\tgres"),
            "coordinatorNode.username",
        ),
        (
            |v| v["workerNodes"][1]["dbname"] = json!("postgres\r"),
            "workerNodes[1].dbname",
        ),
        (|v| v["osUser"] = json!("pg\nowner"), "osUser"),
        (|v| v["restorePoint"] = json!("a\nb"), "restorePoint"),
        (
            |v| v["backupToRestore"] = json!("a\u{7}"),
            "backupToRestore",
        ),
    ];
    for (edit, field) in cases {
        let mut v = sample();
        edit(&mut v);
        assert_refused(field, &v, field, "control character");
    }
}

/// Node names that the library's own files beside the node folders could be taken for.
#[test]
fn node_names_that_collide_with_the_librarys_files() {
    for name in [
        "worker1.log",
        "w.json",
        "w.lock",
        "coordinator.before-restore-20261126T000000Z",
        "w.failed-restore-x",
        "w.tablespaces-1",
        "restore-points.json",
        "citus-recovery.lock",
    ] {
        let mut v = sample();
        v["workerNodes"][1]["name"] = json!(name);
        assert_refused(name, &v, "workerNodes[1].name", name);
    }
    // Dots elsewhere stay fine.
    let mut v = sample();
    v["workerNodes"][1]["name"] = json!("worker.2.logs");
    parse(&v).unwrap();
}

/// localhost, 127.0.0.1 and ::1 are one host; so is a name /etc/hosts maps to them.
#[test]
fn one_host_under_several_names() {
    type Edit = fn(&mut Value);
    let cases: Vec<(&str, Edit)> = vec![
        ("127.0.0.1 and localhost", |v| {
            v["workerNodes"][0]["hostname"] = json!("127.0.0.1");
            v["workerNodes"][0]["port"] = json!(9700);
        }),
        ("::1 and 127.0.0.1", |v| {
            v["coordinatorNode"]["hostname"] = json!("::1");
            v["workerNodes"][0]["hostname"] = json!("127.0.0.1");
            v["workerNodes"][0]["port"] = json!(9700);
        }),
        ("LOCALHOST and localhost", |v| {
            v["workerNodes"][1]["hostname"] = json!("LOCALHOST");
            v["workerNodes"][1]["port"] = json!(9701);
        }),
        ("[::1] and localhost", |v| {
            v["workerNodes"][1]["hostname"] = json!("[::1]");
            v["workerNodes"][1]["port"] = json!(9701);
        }),
    ];
    for (what, edit) in cases {
        let mut v = sample();
        edit(&mut v);
        let field = if what.starts_with("127") || what.starts_with("::1") {
            "workerNodes[0].port"
        } else {
            "workerNodes[1].port"
        };
        assert_refused(what, &v, field, "used by another node");
    }
    // Other hosts may use the same port.
    let mut v = sample();
    v["workerNodes"][0]["hostname"] = json!("10.0.0.2");
    v["workerNodes"][0]["port"] = json!(9700);
    v["workerNodes"][1]["hostname"] = json!("10.0.0.3");
    v["workerNodes"][1]["port"] = json!(9700);
    parse(&v).unwrap();

    // A name /etc/hosts maps to 127.0.0.1 or ::1 (resolved without the network).
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let alias = hosts.lines().find_map(|l| {
        let mut words = l.split('#').next()?.split_whitespace();
        let ip = words.next()?;
        if ip != "127.0.0.1" && ip != "::1" {
            return None;
        }
        words
            .find(|w| !w.eq_ignore_ascii_case("localhost"))
            .map(str::to_string)
    });
    match alias {
        Some(alias) => {
            let mut v = sample();
            v["workerNodes"][0]["hostname"] = json!(alias);
            v["workerNodes"][0]["port"] = json!(9700);
            assert_refused(&alias, &v, "workerNodes[0].port", "used by another node");
        }
        None => eprintln!("NOTE: /etc/hosts has no loopback alias; that case was not tried"),
    }
}

/// Folders compared after resolving symlinks as far as the path exists.
#[test]
fn folders_reached_through_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("cluster/worker1")).unwrap();
    std::fs::create_dir_all(root.join("archive")).unwrap();
    std::os::unix::fs::symlink(root.join("cluster/worker1"), root.join("into-worker1")).unwrap();
    std::os::unix::fs::symlink(root.join("cluster"), root.join("cluster-link")).unwrap();
    std::os::unix::fs::symlink(root.join("archive"), root.join("archive-link")).unwrap();
    let with = |cluster: &str, archive: &str, backup: &str| {
        let mut v = sample();
        v["clusterBaseFolder"] = json!(root.join(cluster));
        v["archiveBaseFolder"] = json!(root.join(archive));
        v["backupBaseFolder"] = json!(root.join(backup));
        v
    };
    parse(&with("cluster", "archive", "backup")).unwrap();
    assert_refused(
        "archive folder through a link into a data directory",
        &with("cluster", "into-worker1/archive", "backup"),
        "archiveBaseFolder",
        "overlaps the data directory of node worker1",
    );
    assert_refused(
        "backup folder inside a data directory reached through the cluster folder's link",
        &with("cluster-link", "archive", "cluster/worker1/backups"),
        "backupBaseFolder",
        "resolved",
    );
    assert_refused(
        "a data directory inside the backup folder, through a link",
        &with("cluster", "archive", "cluster-link"),
        "backupBaseFolder",
        "overlaps",
    );
    assert_refused(
        "archive and backup one folder through a link",
        &with("cluster", "archive", "archive-link"),
        "backupBaseFolder",
        "same folder",
    );
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

#[test]
fn node_infos_and_connection_strings() {
    let json = serde_json::json!({
        "clusterName": "c", "workerCount": 1,
        "coordinatorNode": {"name": "coordinator", "hostname": "localhost", "port": 9700, "username": "postgres", "dbname": "my db"},
        "workerNodes": [{"name": "worker1", "hostname": "10.0.0.2", "port": 9701, "username": "o'brien", "dbname": "postgres"}],
        "clusterBaseFolder": "/srv/c", "archiveBaseFolder": "/srv/a", "backupBaseFolder": "/srv/b",
    });
    let c = ClusterConfig::from_json_str(&json.to_string(), None).unwrap();
    let infos = c.node_infos();
    assert_eq!(infos.len(), 2);
    assert_eq!(infos[0].role, "coordinator");
    assert_eq!(infos[1].data_dir, std::path::Path::new("/srv/c/worker1"));
    assert_eq!(
        c.dsn("coordinator").unwrap(),
        "host=localhost port=9700 user=postgres dbname='my db'"
    );
    assert_eq!(
        c.dsn("worker1").unwrap(),
        r"host=10.0.0.2 port=9701 user='o\'brien' dbname=postgres"
    );
    let err = c.dsn("worker9").unwrap_err().to_string();
    assert!(err.contains("coordinator, worker1"), "{err}");
}

#[test]
fn repository_compression_and_binary() {
    let c = parse(&sample()).unwrap();
    assert_eq!(
        c.repository, None,
        "without one: the archive folder, as before"
    );
    assert_eq!(c.compression, Compression::Zstd(1));
    assert_eq!(c.binary, None);

    let mut v = sample();
    v["repository"] = json!({"type": "posix", "path": "/srv/citus/repo"});
    v["compression"] = json!("zstd:5");
    v["binary"] = json!("/usr/local/bin/citus-recovery");
    let c = parse(&v).unwrap();
    assert_eq!(
        c.repository,
        Some(RepositoryConfig::Posix {
            path: "/srv/citus/repo".into()
        })
    );
    assert_eq!(c.compression, Compression::Zstd(5));
    assert_eq!(
        c.binary.as_deref(),
        Some(Path::new("/usr/local/bin/citus-recovery"))
    );
    assert_eq!(serde_json::to_value(&c).unwrap()["compression"], "zstd:5");

    v["repository"] = json!({"type": "s3", "bucket": "b", "prefix": "p/q", "endpoint": "http://127.0.0.1:9000", "allowHttp": true});
    v["compression"] = json!("lz4");
    let c = parse(&v).unwrap();
    match c.repository {
        Some(RepositoryConfig::S3(s3)) => {
            assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("b", "p/q"));
            assert!(s3.allow_http);
        }
        other => panic!("expected s3, got {other:?}"),
    }
    assert_eq!(c.compression, Compression::Lz4);
}

#[test]
fn repository_rules_name_their_field() {
    let with = |key: &str, value: Value| {
        let mut v = sample();
        v[key] = value;
        v
    };
    assert_refused(
        "unknown compression",
        &with("compression", json!("gzip")),
        "compression",
        "accepted values",
    );
    assert_refused(
        "zstd level",
        &with("compression", json!("zstd:99")),
        "compression",
        "level",
    );
    assert_refused(
        "relative posix path",
        &with("repository", json!({"type": "posix", "path": "repo"})),
        "repository.path",
        "relative",
    );
    assert_refused(
        "posix path inside a data directory",
        &with(
            "repository",
            json!({"type": "posix", "path": "/srv/citus/cluster/worker1/repo"}),
        ),
        "repository.path",
        "overlaps",
    );
    assert_refused(
        "relative binary",
        &with("binary", json!("bin/citus-recovery")),
        "binary",
        "relative",
    );
    assert_refused(
        "unknown type",
        &with("repository", json!({"type": "ftp", "path": "/x"})),
        "repository.type",
        "unknown variant",
    );
    assert_refused(
        "bad prefix",
        &with(
            "repository",
            json!({"type": "s3", "bucket": "b", "prefix": "/x"}),
        ),
        "repository.prefix",
        "/x",
    );
    // Credentials never go in the file; the fix says where they go instead.
    match parse(&with(
        "repository",
        json!({"type": "s3", "bucket": "b", "secretAccessKey": "hunter2"}),
    )) {
        Err(Error::Config {
            field,
            problem,
            fix,
            ..
        }) => {
            assert!(field.starts_with("repository"), "{field}");
            assert!(problem.contains("secretAccessKey"), "{problem}");
            assert!(fix.contains("AWS_SECRET_ACCESS_KEY"), "{fix}");
            assert!(!problem.contains("hunter2") && !fix.contains("hunter2"));
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn ssh_settings_merge_node_keys_over_the_clusters() {
    let plain = parse(&sample()).unwrap();
    assert!(!plain.uses_ssh(), "no ssh object: local nodes");
    assert_eq!(plain.ssh_for(&plain.coordinator), None);

    let mut v = sample();
    v["ssh"] = json!({"user": "postgres", "port": 2222, "identityFile": "/home/admin/.ssh/id_ed25519", "knownHostsFile": "/home/admin/.ssh/known_hosts"});
    v["workerNodes"][1]["ssh"] = json!({"port": 22, "maxSessions": 4});
    let c = parse(&v).unwrap();
    assert!(c.uses_ssh());
    let coordinator = c.ssh_for(&c.coordinator).unwrap();
    assert_eq!(coordinator.port, Some(2222));
    assert_eq!(coordinator.user.as_deref(), Some("postgres"));
    let worker2 = c.ssh_for(&c.workers[1]).unwrap();
    assert_eq!(worker2.port, Some(22), "the node's own key wins");
    assert_eq!(worker2.max_sessions, Some(4));
    assert_eq!(
        worker2.identity_file.as_deref(),
        Some(Path::new("/home/admin/.ssh/id_ed25519")),
        "keys the node leaves out come from the cluster"
    );

    // A node's own ssh object alone turns SSH on.
    let mut v = sample();
    v["coordinatorNode"]["ssh"] = json!({"user": "pg"});
    let c = parse(&v).unwrap();
    assert!(c.uses_ssh());
    assert_eq!(c.ssh_for(&c.workers[0]), None, "defaults for the others");
}

#[test]
fn bad_ssh_settings_are_refused() {
    let with_ssh = |ssh: Value| {
        let mut v = sample();
        v["ssh"] = ssh;
        v
    };
    assert_refused("port 0", &with_ssh(json!({"port": 0})), "ssh.port", "0");
    assert_refused(
        "relative key",
        &with_ssh(json!({"identityFile": "id_ed25519"})),
        "ssh.identityFile",
        "relative",
    );
    assert_refused(
        "relative known_hosts",
        &with_ssh(json!({"knownHostsFile": "../known_hosts"})),
        "ssh.knownHostsFile",
        "relative",
    );
    assert_refused(
        "user like an option",
        &with_ssh(json!({"user": "-oProxyCommand=x"})),
        "ssh.user",
        "not a user name",
    );
    assert_refused(
        "root",
        &with_ssh(json!({"user": "root"})),
        "ssh.user",
        "is root",
    );
    assert_refused(
        "no sessions",
        &with_ssh(json!({"maxSessions": 0})),
        "ssh.maxSessions",
        "0",
    );
    assert_refused(
        "a password key",
        &with_ssh(json!({"password": "hunter2"})),
        "ssh.password",
        "unknown field",
    );
    let mut v = sample();
    v["workerNodes"][0]["ssh"] = json!({"knownHostsFile": "/a/./b"});
    assert_refused(
        "node override checked too",
        &v,
        "workerNodes[0].ssh.knownHostsFile",
        "component",
    );
    let mut v = with_ssh(json!({}));
    v["workerNodes"][0]["hostname"] = json!("-oProxyCommand=x");
    assert_refused(
        "host like an option",
        &v,
        "workerNodes[0].hostname",
        "starts with '-'",
    );
    let mut v = with_ssh(json!({}));
    v["coordinatorNode"]["hostname"] = json!("root@db1");
    assert_refused("user in the host", &v, "coordinatorNode.hostname", "'@'");
}

#[test]
fn retention_and_check_thresholds() {
    let c = parse(&sample()).unwrap();
    assert_eq!(c.retention, None);
    assert_eq!(c.check, CheckThresholds::default());
    let mut v = sample();
    v["retention"] = json!({"full": 7, "days": 30});
    v["check"] = json!({"backupAgeCriticalHours": null, "archiveLagWarning": 2});
    let c = parse(&v).unwrap();
    assert_eq!(
        c.retention,
        Some(Retention {
            full: Some(7),
            days: Some(30)
        })
    );
    assert_eq!(c.check.backup_age_critical_hours, None, "null turns it off");
    assert_eq!(c.check.archive_lag_warning, Some(2));
    assert_eq!(
        c.check.backup_age_warning_hours,
        CheckThresholds::default().backup_age_warning_hours,
        "the others keep their defaults"
    );
    for (retention, field) in [
        (json!({}), "retention.full"),
        (json!({"full": 0}), "retention.full"),
        (json!({"days": 0}), "retention.days"),
        (json!({"weeks": 2}), "retention.weeks"),
    ] {
        let mut v = sample();
        v["retention"] = retention.clone();
        assert_refused(&format!("retention {retention}"), &v, field, "");
    }
    for (check, field) in [
        (
            json!({"freeSpaceWarningPercent": 150}),
            "check.freeSpaceWarningPercent",
        ),
        (
            json!({"backupAgeWarningHours": -1}),
            "check.backupAgeWarningHours",
        ),
        (
            json!({"roundTripTimeoutSeconds": 0}),
            "check.roundTripTimeoutSeconds",
        ),
        (json!({"backupAge": 3}), "check.backupAge"),
    ] {
        let mut v = sample();
        v["check"] = check.clone();
        assert_refused(&format!("check {check}"), &v, field, "");
    }
}

#[test]
fn archive_get_queue_defaults_and_is_checked() {
    let c = parse(&sample()).unwrap();
    assert_eq!(
        c.archive_get_queue,
        crate::config::DEFAULT_ARCHIVE_GET_QUEUE
    );
    let mut v = sample();
    for ok in [0, 1, 64] {
        v["archiveGetQueue"] = json!(ok);
        assert_eq!(parse(&v).unwrap().archive_get_queue, ok as usize);
    }
    for bad in [json!(-1), json!(65), json!(1_000_000)] {
        v["archiveGetQueue"] = bad.clone();
        let err = parse(&v).unwrap_err().to_string();
        assert!(
            err.contains("archiveGetQueue") && err.contains("0 (prefetch off) to 64"),
            "{bad}: {err}"
        );
    }
    v["archiveGetQueue"] = json!("8");
    assert!(parse(&v)
        .unwrap_err()
        .to_string()
        .contains("archiveGetQueue"));
}

#[test]
fn connection_keys_are_read_per_cluster_with_a_node_override() {
    let mut v = sample();
    v["sslmode"] = json!("verify-full");
    v["sslrootcert"] = json!("/etc/citus/ca.crt");
    v["passfile"] = json!("/home/admin/.pgpass-citus");
    v["workerNodes"][1]["sslmode"] = json!("verify-ca");
    v["workerNodes"][1]["sslrootcert"] = json!("/etc/citus/other-ca.crt");
    let c = parse(&v).unwrap();
    let w1 = c.connection_for(&c.workers[0]);
    assert_eq!(w1.mode(), SslMode::VerifyFull);
    assert_eq!(
        w1.sslrootcert.as_deref(),
        Some(Path::new("/etc/citus/ca.crt"))
    );
    let w2 = c.connection_for(&c.workers[1]);
    assert_eq!(w2.mode(), SslMode::VerifyCa);
    assert_eq!(
        w2.sslrootcert.as_deref(),
        Some(Path::new("/etc/citus/other-ca.crt"))
    );
    assert_eq!(
        w2.passfile.as_deref(),
        Some(Path::new("/home/admin/.pgpass-citus"))
    );
    // Without keys: libpq's default, prefer.
    let plain = parse(&sample()).unwrap();
    assert_eq!(
        plain.connection_for(&plain.coordinator).mode(),
        SslMode::Prefer
    );
}

#[test]
fn a_bad_sslmode_or_a_relative_certificate_path_is_refused() {
    let mut v = sample();
    v["sslmode"] = json!("verify");
    let e = parse(&v).unwrap_err().to_string();
    assert!(e.contains("sslmode") && e.contains("verify-full"), "{e}");
    let mut v = sample();
    v["workerNodes"][0]["sslkey"] = json!("keys/client.key");
    let e = parse(&v).unwrap_err().to_string();
    assert!(
        e.contains("workerNodes[0].sslkey") && e.contains("relative"),
        "{e}"
    );
}

#[test]
fn a_password_in_the_config_is_refused_without_repeating_it() {
    for (at, path) in [
        ("cluster", "password"),
        ("node", "coordinatorNode.password"),
    ] {
        let mut v = sample();
        if at == "cluster" {
            v["password"] = json!("hunter2-secret");
        } else {
            v["coordinatorNode"]["password"] = json!("hunter2-secret");
        }
        let e = parse(&v).unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(shown.contains(path), "{shown}");
        assert!(
            shown.contains("PGPASSWORD") && shown.contains("passfile"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "the password leaked: {shown}");
    }
}

#[test]
fn restore_point_locks_and_drill_checks() {
    let c = parse(&sample()).unwrap();
    assert_eq!(
        c.restore_point_locks,
        RestorePointLocks {
            lock_timeout_ms: 2000,
            retries: 3
        }
    );
    assert!(c.drill.checks.is_empty());
    let mut v = sample();
    v["restorePointLockTimeout"] = json!(0.25);
    v["restorePointRetries"] = json!(0);
    v["drill"] = json!({"checks": [
        {"node": "coordinator", "sql": "SELECT count(*) FROM t", "expect": "42"},
        {"node": "worker1", "sql": "SELECT 1"}
    ]});
    let c = parse(&v).unwrap();
    assert_eq!(c.restore_point_locks.lock_timeout_ms, 250);
    assert_eq!(c.restore_point_locks.retries, 0);
    assert_eq!(c.drill.checks.len(), 2);
    assert_eq!(c.drill.checks[0].expect.as_deref(), Some("42"));
    assert_eq!(c.drill.checks[1].expect, None);
    // The backoff doubles from 250 ms and stops at 4 s.
    let l = c.restore_point_locks;
    assert_eq!(l.backoff(1), std::time::Duration::from_millis(250));
    assert_eq!(l.backoff(2), std::time::Duration::from_millis(500));
    assert_eq!(l.backoff(9), std::time::Duration::from_millis(4000));

    for (value, field) in [
        (json!(0), "restorePointLockTimeout"),
        (json!(-1), "restorePointLockTimeout"),
        (json!(5000), "restorePointLockTimeout"),
    ] {
        let mut v = sample();
        v[field] = value;
        assert_refused(field, &v, field, "");
    }
    let mut v = sample();
    v["restorePointRetries"] = json!(21);
    assert_refused("retries", &v, "restorePointRetries", "21");
    let mut v = sample();
    v["drill"] = json!({"checks": [{"node": "nobody", "sql": "SELECT 1"}]});
    assert_refused("drill node", &v, "drill.checks[0].node", "nobody");
    let mut v = sample();
    v["drill"] = json!({"checks": [{"node": "coordinator", "sql": "SELECT 1", "expected": "1"}]});
    assert!(parse(&v).is_err(), "an unknown key of a check is refused");
}
