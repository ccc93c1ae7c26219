//! The whole cluster over SSH, end to end, on the namespace topology (`scripts/netns.sh`): the
//! CLI runs in a mount namespace where the nodes' folder is an empty tmpfs, so every node file it
//! touches is touched on the node's host. With the repository on a folder every host sees, each
//! host's own `citus-recovery node-backup`/`node-restore` moves that node's bytes. Needs root;
//! skipped with the reason printed elsewhere (failing when CITUS_RECOVERY_REQUIRE_NETNS=1).
//!
//! Plain PostgreSQL nodes: the namespace hosts' servers are made by netns.sh without Citus.

mod common;
#[path = "common/netns.rs"]
#[allow(dead_code)] // shared with tests/netns.rs, which uses the rest
mod netns;
#[path = "common/s3.rs"]
mod s3;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use netns::{available_or_skip, count, sql, Topology};

/// Runs the CLI with `args` against `config`, in a new mount namespace with an empty tmpfs over
/// the nodes' folder.
fn tool(topology: &Topology, config: &Path, args: &[&str], env: &[(String, String)]) -> Output {
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o size=1m,mode=700 citus-recovery-hidden "$1" && shift && exec "$@""#)
        .arg("sh")
        .arg(topology.nodes_dir())
        .arg(env!("CARGO_BIN_EXE_citus-recovery"))
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run unshare")
}

/// Like [`tool`], failing the test, with the tool's output, unless it succeeded.
fn tool_ok(topology: &Topology, config: &Path, args: &[&str], env: &[(String, String)]) -> String {
    let out = tool(topology, config, args, env);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "citus-recovery {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// How the test itself runs SQL on the hosts.
enum Access {
    /// The topology's servers as netns.sh made them: trust from the private subnet.
    Trust,
    /// scram-sha-256 over TLS only (see [`secure_hosts`]).
    Secure(SecureHosts),
}

impl Access {
    /// Runs `sql` on the host at `addr`; the first column of the first row, if any.
    async fn sql(&self, addr: &str, sql_text: &str) -> Option<String> {
        match self {
            Access::Trust => sql(addr, sql_text).await,
            Access::Secure(s) => {
                Some(secure_sql(addr, &s.ca, s.password, sql_text)).filter(|t| !t.is_empty())
            }
        }
    }

    async fn count(&self, addr: &str, table: &str) -> i64 {
        self.sql(addr, &format!("SELECT count(*) FROM {table}"))
            .await
            .unwrap()
            .parse()
            .unwrap()
    }
}

/// What the scenario's config and commands get besides the topology's config.
struct Shared {
    /// `repository` for the config.
    repository: serde_json::Value,
    /// The environment of the tool (the S3 credentials), forwarded to the hosts by it.
    env: Vec<(String, String)>,
    /// How the test runs SQL, and the config keys that go with it.
    access: Access,
}

impl Shared {
    /// The config of the scenario: the topology's, the hosts' citus-recovery being the binary
    /// under test, with the repository and (secure) the connection keys.
    fn config_json(&self, topology: &Topology) -> serde_json::Value {
        let mut json = topology.config_json();
        // The hosts share this machine's files: the binary under test is the hosts'
        // citus-recovery, and the config file is at the same path on every host.
        json["binary"] = serde_json::json!(env!("CARGO_BIN_EXE_citus-recovery"));
        json["repository"] = self.repository.clone();
        if let Access::Secure(s) = &self.access {
            json["sslmode"] = "verify-full".into();
            json["sslrootcert"] = s.ca.display().to_string().into();
            json["passfile"] = s.pgpass.display().to_string().into();
        }
        json
    }
}

/// prepare-archiving, basebackup, restore-point, verify, list, restore-start, restore-finish,
/// restore-start again and restore-abort, the CLI in a mount namespace without the nodes'
/// folder: rows exact after the restore, the old cluster back after the abort.
async fn scenario(
    topology: &Topology,
    shared: &Shared,
    citus: bool,
    after_backup: impl Fn(),
) -> PathBuf {
    let config = topology.dir().join("cluster-config.json");
    let json = shared.config_json(topology);
    std::fs::write(&config, json.to_string()).unwrap();
    let addrs: Vec<String> = topology.hosts.iter().map(|h| h.addr.clone()).collect();
    let (env, db) = (&shared.env, &shared.access);
    debug_sessions(topology);

    // Without the binary on the hosts, prepare-archiving says what to install where, for every
    // host, and changes nothing.
    let bad = topology.dir().join("no-binary-config.json");
    let mut bad_json = json.clone();
    bad_json["binary"] = serde_json::json!("/nonexistent/citus-recovery");
    std::fs::write(&bad, bad_json.to_string()).unwrap();
    let out = tool(topology, &bad, &["prepare-archiving"], env);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    for addr in &addrs {
        assert!(
            text.contains(&format!(
                "install citus-recovery {}",
                env!("CARGO_PKG_VERSION")
            )) && text.contains(&format!("on {addr} at /nonexistent/citus-recovery")),
            "{addr}: {text}"
        );
        let mode = db.sql(addr, "SHOW archive_mode").await.unwrap();
        assert_eq!(mode, "off", "{addr}: nothing changed");
    }

    tool_ok(topology, &config, &["prepare-archiving"], env);
    for addr in &addrs {
        db.sql(
            addr,
            "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100)",
        )
        .await;
    }
    if citus {
        // A distributed table: its shards on the worker, written through the coordinator.
        db.sql(
            &addrs[0],
            "CREATE TABLE d (id int PRIMARY KEY); SELECT create_distributed_table('d', 'id'); \
             INSERT INTO d SELECT generate_series(1, 1000)",
        )
        .await;
    }
    tool_ok(topology, &config, &["basebackup", "--name", "b1"], env);
    after_backup();
    for addr in &addrs {
        db.sql(addr, "INSERT INTO t SELECT generate_series(101, 200)")
            .await;
    }
    if citus {
        db.sql(
            &addrs[0],
            "INSERT INTO d SELECT generate_series(1001, 2000)",
        )
        .await;
    }
    tool_ok(topology, &config, &["restore-point", "--name", "rp1"], env);
    for addr in &addrs {
        db.sql(addr, "INSERT INTO t SELECT generate_series(201, 250)")
            .await;
    }
    if citus {
        db.sql(
            &addrs[0],
            "INSERT INTO d SELECT generate_series(2001, 2500)",
        )
        .await;
    }
    let verify = tool_ok(
        topology,
        &config,
        &["verify", "--backup", "b1", "--restore-point", "rp1"],
        env,
    );
    // The free space is read on each host, where the data directories are.
    assert!(
        verify.contains(&format!("on {}", addrs[1])),
        "disk space of each host: {verify}"
    );
    let list = tool_ok(topology, &config, &["list"], env);
    assert!(list.contains("b1") && list.contains("rp1"), "{list}");

    let logs: Vec<(PathBuf, usize)> = topology
        .hosts
        .iter()
        .map(|h| {
            let log = topology.nodes_dir().join(format!("{}.log", h.name));
            let len = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
            (log, len)
        })
        .collect();
    let out = tool(
        topology,
        &config,
        &["restore-start", "--backup", "b1", "--restore-point", "rp1"],
        env,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "restore-start: {err}");
    // Each host's own citus-recovery filled its node's spool before the server started.
    assert!(!err.contains("no WAL prefetch"), "{err}");
    // ... with the repository reachable from its worker (with S3: the credentials arrived), so
    // archive-get's first answer for the backup's first segment came from the spool.
    for (host, (log, from)) in topology.hosts.iter().zip(&logs) {
        let first = backup_start_segment(&topology.nodes_dir().join(&host.name));
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let text = text.get(*from..).unwrap_or_default();
        let line = text
            .lines()
            .find(|l| l.contains(&format!("archive-get {first}:")))
            .unwrap_or_else(|| panic!("{}: no archive-get line for {first}:\n{text}", host.name));
        assert!(
            line.ends_with("from the prefetch spool"),
            "{}: the first segment was spooled before the server asked: {line}\n{text}",
            host.name
        );
    }
    assert_no_secret_on_a_command_line(env);
    tool_ok(topology, &config, &["restore-finish"], env);
    for addr in &addrs {
        assert_eq!(
            db.count(addr, "t").await,
            200,
            "{addr}: rows up to the restore point"
        );
        db.sql(addr, "INSERT INTO t VALUES (-1)").await;
    }
    if citus {
        assert_eq!(db.count(&addrs[0], "d").await, 2000, "distributed rows");
        // The coordinator still lists the namespace addresses.
        let nodes = db
            .sql(
                &addrs[0],
                "SELECT string_agg(nodename || ':' || nodeport, ',' ORDER BY nodename) FROM pg_dist_node",
            )
            .await
            .unwrap();
        assert_eq!(nodes, format!("{}:5432,{}:5432", addrs[0], addrs[1]));
    }

    // A second restore, undone: the cluster is as restore-finish left it, marker row included.
    tool_ok(
        topology,
        &config,
        &["restore-start", "--backup", "b1", "--restore-point", "rp1"],
        env,
    );
    for addr in &addrs {
        assert_eq!(
            db.count(addr, "t").await,
            200,
            "{addr}: paused at the restore point"
        );
    }
    tool_ok(topology, &config, &["restore-abort"], env);
    for addr in &addrs {
        assert_eq!(
            db.count(addr, "t").await,
            201,
            "{addr}: back as before restore-start"
        );
    }
    // restore-finish and restore-abort removed every prefetch spool on the hosts.
    let spools: Vec<PathBuf> = std::fs::read_dir(topology.nodes_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path().join("pg_wal/citus-recovery-spool"))
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect();
    assert!(spools.is_empty(), "{spools:?}");
    let list = tool_ok(topology, &config, &["list"], env);
    assert!(list.contains("b1") && list.contains("rp1"), "{list}");
    assert!(topology.nodes_dir().join("h1/PG_VERSION").is_file());
    // Server logs, data directories, spools, restore state, repository folder: no secret.
    assert_no_secret_in_files(topology.dir(), env);
    config
}

/// The hosts' SSH sessions, and so the servers restore-start starts there, get
/// `CITUS_RECOVERY_LOG` from sshd itself (the tool forwards only `AWS_*`): archive-get then says
/// in the server log where each segment came from. Each sshd reloads its config (SIGHUP).
fn debug_sessions(topology: &Topology) {
    const FILTER: &str = "citus_recovery=debug";
    for host in &topology.hosts {
        let dir = topology.dir().join(&host.name);
        let config = dir.join("sshd_config");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!("SetEnv CITUS_RECOVERY_LOG={FILTER}\n"));
        std::fs::write(&config, text).unwrap();
        topology.signal_sshd(&host.name, nix::sys::signal::Signal::SIGHUP);
        // sshd re-executes itself: until then a session may fail or lack the variable.
        let started = std::time::Instant::now();
        loop {
            let out = topology.ssh_with(
                host,
                &topology.known_hosts_file(),
                r#"printf %s "$CITUS_RECOVERY_LOG""#,
            );
            if out.status.success() && out.stdout == FILTER.as_bytes() {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "{}: sshd did not set CITUS_RECOVERY_LOG: {out:?}",
                host.name
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

/// The backup's first WAL segment, from the `backup_label.old` the server left in the restored
/// data directory `data` (it renames `backup_label` once recovery starts).
fn backup_start_segment(data: &Path) -> String {
    let label = std::fs::read_to_string(data.join("backup_label.old"))
        .unwrap_or_else(|e| panic!("{}/backup_label.old: {e}", data.display()));
    // START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
    label
        .lines()
        .find_map(|l| l.strip_prefix("START WAL LOCATION: "))
        .and_then(|l| l.split_once("(file "))
        .map(|(_, f)| f.trim_end_matches(')').to_string())
        .unwrap_or_else(|| panic!("no START WAL LOCATION in {label}"))
}

/// The values of `env` (the tool's S3 credentials) as they may leak.
fn secrets(env: &[(String, String)]) -> Vec<&str> {
    env.iter()
        .map(|(_, v)| v.as_str())
        .filter(|v| v.len() >= 8)
        .collect()
}

/// No process's command line holds a value of `env` (the hosts' processes included: they share
/// this machine's /proc).
fn assert_no_secret_on_a_command_line(env: &[(String, String)]) {
    let secrets = secrets(env);
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&cmdline);
        for secret in &secrets {
            assert!(
                !text.contains(secret),
                "a secret on the command line of {}: {}",
                entry.path().display(),
                text.replace(secret, "<secret>")
            );
        }
    }
}

/// No file under `dir` (symbolic links not followed) holds a value of `env`.
fn assert_no_secret_in_files(dir: &Path, env: &[(String, String)]) {
    let secrets = secrets(env);
    if secrets.is_empty() {
        return;
    }
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                todo.push(entry.path());
            } else if kind.is_file() {
                let Ok(bytes) = std::fs::read(entry.path()) else {
                    continue;
                };
                // std's search (the secrets are ASCII, which the lossy decoding keeps).
                let text = String::from_utf8_lossy(&bytes);
                for secret in &secrets {
                    assert!(
                        !text.contains(secret),
                        "a secret in {}",
                        entry.path().display()
                    );
                }
            }
        }
    }
}

/// `drill` of the SSH cluster of `config` (after [`scenario`]): its fork runs on this host, from
/// the live repository, and checks the rows of restore point rp1 on every node (and, with Citus,
/// a distributed count, which needs pg_dist_node rewritten from the namespace addresses).
fn drill(topology: &Topology, config: &Path, env: &[(String, String)], citus: bool) {
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    let mut checks: Vec<serde_json::Value> = topology
        .hosts
        .iter()
        .map(|h| serde_json::json!({"node": h.name, "sql": "SELECT count(*) FROM t", "expect": "200"}))
        .collect();
    if citus {
        checks.push(
            serde_json::json!({"node": "h1", "sql": "SELECT count(*) FROM d", "expect": "2000"}),
        );
    }
    json["drill"] = serde_json::json!({ "checks": checks });
    std::fs::write(config, json.to_string()).unwrap();
    let out = tool_ok(topology, config, &["drill"], env);
    assert!(out.contains("drill OK"), "{out}");
    assert_eq!(out.matches("passed (200)").count(), 2, "{out}");
    if citus {
        assert!(out.contains("passed (2000)"), "{out}");
    }
    assert!(!out.contains("could not be torn down"), "{out}");
    let check = tool(topology, config, &["check"], env);
    let status = String::from_utf8_lossy(&check.stdout);
    assert!(
        status.contains("the last drill passed"),
        "check sees the drill: {status}"
    );
}

/// The repository of `topology` on a folder every host sees, `DIR/repo`: the tool's, with `wal/`
/// and `backups/` the servers' user's (their archive-push and node-backup write there).
fn shared_folder(topology: &Topology) -> (PathBuf, nix::unistd::User) {
    let repo = topology.dir().join("repo");
    let postgres = nix::unistd::User::from_name("postgres").unwrap().unwrap();
    for sub in ["wal", "backups"] {
        std::fs::create_dir_all(repo.join(sub)).unwrap();
        nix::unistd::chown(&repo.join(sub), Some(postgres.uid), Some(postgres.gid)).unwrap();
    }
    (repo, postgres)
}

/// Whether Citus is installed; else prints why the test is skipped (failing it under
/// `CITUS_RECOVERY_REQUIRE_CITUS`).
fn citus_or_skip() -> bool {
    let control =
        Path::new(common::PG_BIN).join("../../../../share/postgresql/15/extension/citus.control");
    if control.is_file() {
        return true;
    }
    let reason = format!("Citus is not installed ({} is missing)", control.display());
    if std::env::var("CITUS_RECOVERY_REQUIRE_CITUS").is_ok_and(|v| !v.is_empty() && v != "0") {
        panic!("{reason}");
    }
    eprintln!("SKIPPED: {reason}");
    false
}

/// Each host's server made to load Citus (restarted in its namespace), h1 the coordinator, and
/// `pg_dist_node` holding both namespace addresses.
async fn load_citus(topology: &Topology) {
    let addrs: Vec<String> = topology.hosts.iter().map(|h| h.addr.clone()).collect();
    for (host, addr) in topology.hosts.iter().zip(&addrs) {
        sql(addr, "ALTER SYSTEM SET shared_preload_libraries = 'citus'").await;
        let data = topology.nodes_dir().join(&host.name);
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &host.netns,
                "runuser",
                "-u",
                "postgres",
                "--",
            ])
            .arg(Path::new(common::PG_BIN).join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(topology.nodes_dir().join(format!("{}.log", host.name)))
            .args(["-w", "-t", "60", "restart"])
            .current_dir("/")
            .output()
            .unwrap();
        assert!(out.status.success(), "restart {}: {out:?}", host.name);
        sql(addr, "CREATE EXTENSION citus").await;
    }
    sql(
        &addrs[0],
        &format!("SELECT citus_set_coordinator_host('{}', 5432)", addrs[0]),
    )
    .await;
    sql(
        &addrs[0],
        &format!("SELECT citus_add_node('{}', 5432)", addrs[1]),
    )
    .await;
}

/// The scenario on Citus: each host's server loads Citus, the coordinator h1 lists itself and
/// h2 by their namespace addresses in `pg_dist_node`, the restore points are Citus's, and a
/// distributed table holds exactly the rows up to the restore point after the restore. Then a
/// drill, whose fork on this host gets its pg_dist_node rewritten from the namespace addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_over_ssh_on_citus() {
    if !available_or_skip("whole_cluster_over_ssh_on_citus") || !citus_or_skip() {
        return;
    }
    let topology = Topology::up(2);
    load_citus(&topology).await;
    let (repo, _) = shared_folder(&topology);
    let shared = Shared {
        repository: serde_json::json!({"type": "posix", "path": repo}),
        env: Vec::new(),
        access: Access::Trust,
    };
    let config = scenario(&topology, &shared, true, || {}).await;
    // The restore points were Citus's: the coordinator's catalog of them is in the repository.
    let points = std::fs::read_dir(repo.join("catalog/restore-points"))
        .unwrap()
        .count();
    assert_eq!(points, 1);
    drill(&topology, &config, &shared.env, true);
}

/// The scenario with the repository on a folder every host sees: the backup's objects are
/// written by the hosts (owned by their user, postgres, not by root, which runs the tool).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_over_ssh_with_a_shared_posix_repository() {
    if !available_or_skip("whole_cluster_over_ssh_with_a_shared_posix_repository") {
        return;
    }
    let topology = Topology::up(2);
    let (repo, postgres) = shared_folder(&topology);
    let shared = Shared {
        repository: serde_json::json!({"type": "posix", "path": repo}),
        env: Vec::new(),
        access: Access::Trust,
    };
    let hosts: Vec<String> = topology.hosts.iter().map(|h| h.name.clone()).collect();
    scenario(&topology, &shared, false, || {
        for host in &hosts {
            let object = repo.join(format!("backups/b1/{host}/base.tar.zst"));
            let meta = std::fs::symlink_metadata(&object)
                .unwrap_or_else(|e| panic!("{}: {e}", object.display()));
            // Written by the node host's own citus-recovery, not by the tool (root) here.
            assert_eq!(meta.uid(), postgres.uid.as_raw(), "{}", object.display());
            assert!(meta.len() > 1000, "{}", object.display());
        }
    })
    .await;
}

/// moto on the topology's bridge address (10.231.S.1, which every namespace reaches), checking
/// signatures, with bucket `cr-remote`; `None` (the test skipped, after saying why) without moto,
/// unless an S3 server is required.
fn moto_on_bridge(topology: &Topology) -> Option<s3::MotoS3> {
    let addr = &topology.hosts[0].addr;
    let bridge = format!("{}.1", &addr[..addr.rfind('.').unwrap()]);
    match s3::MotoS3::start_on(&bridge, &["cr-remote"], true) {
        Ok(server) => Some(server),
        Err(reason) if reason.starts_with("no S3 test server") && !s3::s3_required() => {
            eprintln!("SKIPPED: {reason} (CITUS_RECOVERY_REQUIRE_S3=1 makes this a failure)");
            None
        }
        Err(reason) => panic!("moto on {bridge}: {reason}"),
    }
}

/// The repository in `server`'s bucket, the credentials only in the tool's environment.
fn s3_shared(server: &s3::MotoS3, access: Access) -> Shared {
    Shared {
        repository: serde_json::json!({
            "type": "s3", "bucket": "cr-remote", "prefix": "netns", "region": "us-east-1",
            "endpoint": server.endpoint(), "allowHttp": true,
        }),
        env: vec![
            ("AWS_ACCESS_KEY_ID".into(), server.access_key_id.clone()),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                server.secret_access_key.clone(),
            ),
        ],
        access,
    }
}

/// The keys of the backup `b1`'s objects in `server`'s repository.
fn backup_objects(server: &s3::MotoS3) -> Vec<String> {
    let repo = server.repository("cr-remote", "netns");
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Runtime::new().unwrap().block_on(async {
                use citus_recovery::repository::{Key, Repository};
                repo.list(&Key::new("backups/b1").unwrap()).await.unwrap()
            })
        })
        .join()
        .unwrap()
    })
    .into_iter()
    .map(|m| m.key.as_str().to_string())
    .collect()
}

/// The scenario with the repository in S3 (moto listening on the topology's bridge address,
/// checking signatures): the credentials exist only in the tool's environment, so the hosts'
/// node-backup, node-restore, archive-push, archive-get and restore-start's prefetch worker (whose
/// first segment must come from its spool) work only because the tool forwards them. Then a drill, whose fork on this host reads the same bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_over_ssh_with_an_s3_repository() {
    if !available_or_skip("whole_cluster_over_ssh_with_an_s3_repository") {
        return;
    }
    let topology = Topology::up(2);
    let Some(server) = moto_on_bridge(&topology) else {
        return;
    };
    let shared = s3_shared(&server, Access::Trust);
    let objects = std::sync::Mutex::new(Vec::new());
    let config = scenario(&topology, &shared, false, || {
        objects.lock().unwrap().extend(backup_objects(&server));
    })
    .await;
    let objects = objects.into_inner().unwrap();
    for host in &topology.hosts {
        let key = format!("backups/b1/{}/base.tar.zst", host.name);
        assert!(objects.contains(&key), "{key} in {objects:?}");
    }
    drill(&topology, &config, &shared.env, false);
}

/// A node host whose sshd is down (the listener and every session): basebackup fails naming
/// the node and `user@host:port` and leaves no backup listed; restore-start fails the same way
/// and the other node runs on with its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_ssh_fails_backup_and_restore_naming_it() {
    if !available_or_skip("a_host_without_ssh_fails_backup_and_restore_naming_it") {
        return;
    }
    let topology = Topology::up(2);
    let (config, _, addrs) = archiving_into_a_shared_folder(&topology);
    backup_and_point(&topology, &config, &addrs).await;
    sql(&addrs[0], "INSERT INTO t VALUES (-1)").await;

    // Every sshd in h2's namespace: the listener and any session.
    let h2 = &topology.hosts[1];
    assert!(kill_sshd(h2) >= 1, "h2 ran an sshd");
    let named = |text: &str| {
        text.contains("node h2") && text.contains(&format!("postgres@{}:22", addrs[1]))
    };

    let out = tool(&topology, &config, &["basebackup", "--name", "b2"], &[]);
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && named(&text), "{text}");
    let list = tool_ok(&topology, &config, &["list"], &[]);
    assert!(list.contains("b1") && !list.contains("b2"), "{list}");

    let out = tool(
        &topology,
        &config,
        &["restore-start", "--backup", "b1", "--restore-point", "rp1"],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && named(&text), "{text}");
    // h1 runs on, on its own data directory, the row written after the restore point there.
    assert_eq!(count(&addrs[0]).await, 101);
    assert_eq!(count(&addrs[1]).await, 100);
}

/// The topology's cluster with the repository on a folder every host sees, archiving into it:
/// the config file, the repository's folder and the hosts' addresses.
fn archiving_into_a_shared_folder(topology: &Topology) -> (PathBuf, PathBuf, Vec<String>) {
    let (repo, _) = shared_folder(topology);
    let config = topology.dir().join("cluster-config.json");
    let mut json = topology.config_json();
    json["binary"] = serde_json::json!(env!("CARGO_BIN_EXE_citus-recovery"));
    json["repository"] = serde_json::json!({"type": "posix", "path": repo});
    std::fs::write(&config, json.to_string()).unwrap();
    let addrs: Vec<String> = topology.hosts.iter().map(|h| h.addr.clone()).collect();
    tool_ok(topology, &config, &["prepare-archiving"], &[]);
    (config, repo, addrs)
}

/// Table `t` (100 rows) on every host, then backup `b1` and restore point `rp1`.
async fn backup_and_point(topology: &Topology, config: &Path, addrs: &[String]) {
    for addr in addrs {
        sql(
            addr,
            "CREATE TABLE t AS SELECT generate_series(1, 100) AS id",
        )
        .await;
    }
    tool_ok(topology, config, &["basebackup", "--name", "b1"], &[]);
    tool_ok(topology, config, &["restore-point", "--name", "rp1"], &[]);
}

/// The pids of the processes named `comm` in `host`'s namespace.
fn processes(host: &netns::NsHost, comm: &str) -> Vec<i32> {
    let pids = Command::new("ip")
        .args(["netns", "pids", &host.netns])
        .output()
        .unwrap();
    String::from_utf8_lossy(&pids.stdout)
        .split_whitespace()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm)
        })
        .filter_map(|pid| pid.parse().ok())
        .collect()
}

/// Kills every sshd of `host` (its listener and sessions, all started by the topology); returns
/// how many.
fn kill_sshd(host: &netns::NsHost) -> usize {
    let pids = processes(host, "sshd");
    for &pid in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    pids.len()
}

/// A node host that becomes unreachable while its node-backup streams (a large table keeps its
/// stream going for a while): the backup fails naming the node
/// and `user@host:port`, is not listed, and its pg_basebackup on that host stops (the node side
/// sees its stdin end), leaving no complete object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_lost_during_its_backup_stops_it_there() {
    if !available_or_skip("a_host_lost_during_its_backup_stops_it_there") {
        return;
    }
    let topology = Topology::up(2);
    let (config, repo, addrs) = archiving_into_a_shared_folder(&topology);
    // A node's backup no longer waits for its archive (`-X fetch`): h2 gets enough data that
    // its stream is still running when its host is lost.
    sql(
        &addrs[1],
        "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g * 7)::text) AS t \
         FROM generate_series(1, 3000000) g",
    )
    .await;
    let h2 = &topology.hosts[1];
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o size=1m,mode=700 citus-recovery-hidden "$1" && shift && exec "$@""#)
        .arg("sh")
        .arg(topology.nodes_dir())
        .arg(env!("CARGO_BIN_EXE_citus-recovery"))
        .arg("--config")
        .arg(&config)
        .args(["basebackup", "--name", "b2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while processes(h2, "pg_basebackup").is_empty() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no pg_basebackup ran on h2"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Let it start streaming its tar.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(kill_sshd(h2) >= 1);
    let lost = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("node h2") && text.contains(&format!("postgres@{}:22", addrs[1])),
        "{text}"
    );
    assert!(
        lost.elapsed() < std::time::Duration::from_secs(60),
        "the loss is noticed promptly"
    );
    // On h2, pg_basebackup and node-backup stop without us.
    let since = std::time::Instant::now();
    while !(processes(h2, "pg_basebackup").is_empty() && processes(h2, "citus-recovery").is_empty())
    {
        assert!(
            since.elapsed() < std::time::Duration::from_secs(30),
            "pg_basebackup still runs on h2"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(!repo.join("backups/b2/h2/base.tar.zst").exists());
    let list = tool_ok(&topology, &config, &["list"], &[]);
    assert!(!list.contains("b2"), "{list}");
}

/// A node host lost half-way through restore-start (once its server has stopped): restore-start
/// fails naming the node, rolls the reachable node back at once (it runs its old data right
/// after the failure) and names the lost one as waiting, keeping the restore state; once the
/// host is back, restore-abort puts its old data directory back too: nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_lost_during_a_restore_loses_nothing() {
    if !available_or_skip("a_host_lost_during_a_restore_loses_nothing") {
        return;
    }
    let topology = Topology::up(2);
    let (config, _, addrs) = archiving_into_a_shared_folder(&topology);
    backup_and_point(&topology, &config, &addrs).await;
    for addr in &addrs {
        sql(addr, "INSERT INTO t VALUES (-1)").await;
    }
    let h2 = &topology.hosts[1];
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o size=1m,mode=700 citus-recovery-hidden "$1" && shift && exec "$@""#)
        .arg("sh")
        .arg(topology.nodes_dir())
        .arg(env!("CARGO_BIN_EXE_citus-recovery"))
        .arg("--config")
        .arg(&config)
        .args(["restore-start", "--backup", "b1", "--restore-point", "rp1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !processes(h2, "postgres").is_empty() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "h2's server never stopped"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(kill_sshd(h2) >= 1);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("node h2") && text.contains(&format!("postgres@{}:22", addrs[1])),
        "{text}"
    );
    assert!(
        text.contains("in place again): h1\n")
            && text.contains("not rolled back yet: node h2")
            && text.contains("citus-recovery-restore.json")
            && text.contains("restore-abort"),
        "{text}"
    );
    // The reachable node runs its old data (with the row added after the restore point) at once.
    assert_eq!(count(&addrs[0]).await, 101, "h1 rolled back at once");
    assert!(!text.contains("failed: ;"), "ssh's silence is said: {text}");

    // h2's sshd back: restore-abort puts every old data directory back and starts it.
    let dir = topology.dir();
    let out = Command::new("ip")
        .args(["netns", "exec", &h2.netns, "/usr/sbin/sshd", "-f"])
        .arg(dir.join("h2/sshd_config"))
        .arg("-E")
        .arg(dir.join("h2/sshd.log"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    tool_ok(&topology, &config, &["restore-abort"], &[]);
    for addr in &addrs {
        assert_eq!(count(addr).await, 101, "{addr} has all its rows again");
    }
}

/// Runs `args` of openssl in `dir`, failing the test unless it succeeds.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A test CA `NAME.crt`/`NAME.key` in `dir`.
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// Runs `sql` on `addr` with psql over verify-full TLS and the password; its output, trimmed.
fn secure_sql(addr: &str, ca: &Path, password: &str, sql: &str) -> String {
    let out = psql(
        addr,
        5432,
        &format!("sslmode=verify-full sslrootcert={}", ca.display()),
        password,
        sql,
    );
    assert!(out.status.success(), "{sql} on {addr}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// psql's run of `sql` on `addr:port` with the connection keys `ssl` and `password`.
fn psql(addr: &str, port: u16, ssl: &str, password: &str, sql: &str) -> Output {
    Command::new(format!("{}/psql", common::PG_BIN))
        .arg(format!(
            "host={addr} port={port} user=postgres dbname=postgres {ssl}"
        ))
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-tAc", sql])
        .env("PGPASSWORD", password)
        .output()
        .expect("run psql")
}

/// The hosts' TLS material and password (see [`secure_hosts`]).
struct SecureHosts {
    /// `DIR/tls`.
    tls: PathBuf,
    /// The CA that signed the servers' certificates (readable by the servers' user, since
    /// pg_basebackup runs on each host with it).
    ca: PathBuf,
    /// The superuser's password.
    password: &'static str,
    /// A root-only passfile with it.
    pgpass: PathBuf,
}

impl SecureHosts {
    /// A root-only passfile `DIR/tls/<name>` with `secret` for every host.
    fn passfile(&self, name: &str, secret: &str) -> PathBuf {
        let p = self.tls.join(name);
        std::fs::write(&p, format!("*:*:*:postgres:{secret}\n")).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        p
    }
}

/// The namespace hosts' servers made to admit only scram-sha-256 over TLS, with certificates
/// for their namespace addresses from a test CA (and a second CA, `other-ca.crt`, that signed
/// nothing); the CA and a root-only passfile in `DIR/tls`. With `citus`, the nodes' own
/// connections to each other use verify-full and the password too.
async fn secure_hosts(topology: &Topology, citus: bool) -> SecureHosts {
    let postgres = nix::unistd::User::from_name("postgres").unwrap().unwrap();
    let tls = topology.dir().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    make_ca(&tls, "ca");
    make_ca(&tls, "other-ca");
    let password = "Scram-Test-Secret-7f3a";
    let ca = tls.join("ca.crt");
    for f in ["ca.crt", "other-ca.crt"] {
        std::fs::set_permissions(
            tls.join(f),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
    }
    std::fs::set_permissions(&tls, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for h in &topology.hosts {
        let data = topology.nodes_dir().join(&h.name);
        std::fs::write(
            tls.join("san.ext"),
            format!("subjectAltName=IP:{}\n", h.addr),
        )
        .unwrap();
        openssl(
            &tls,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                &format!("/CN={}", h.addr),
            ],
        );
        openssl(
            &tls,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        );
        for f in ["server.crt", "server.key"] {
            std::fs::copy(tls.join(f), data.join(f)).unwrap();
            nix::unistd::chown(&data.join(f), Some(postgres.uid), Some(postgres.gid)).unwrap();
            std::fs::set_permissions(
                data.join(f),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .unwrap();
        }
        // Each host's own password (Citus would send it on to hosts not set up yet).
        let local = if citus {
            "SET citus.enable_ddl_propagation = off; "
        } else {
            ""
        };
        sql(
            &h.addr,
            &format!("{local}ALTER USER postgres PASSWORD '{password}'"),
        )
        .await;
        sql(&h.addr, "ALTER SYSTEM SET ssl = on").await;
        if citus {
            // Citus' own connections: verify-full against the CA, the password from
            // pg_dist_authinfo (a bind parameter would do as well; this is a test secret).
            sql(
                &h.addr,
                &format!(
                    "ALTER SYSTEM SET citus.node_conninfo = 'sslmode=verify-full sslrootcert={}'",
                    ca.display()
                ),
            )
            .await;
            sql(
                &h.addr,
                &format!(
                    "INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo) VALUES (0, 'postgres', 'password={password}')"
                ),
            )
            .await;
        }
        let net = h.addr.rsplit_once('.').unwrap().0;
        std::fs::write(
            data.join("pg_hba.conf"),
            format!(
                "hostssl all all {net}.0/24 scram-sha-256\nhostssl replication all {net}.0/24 scram-sha-256\n"
            ),
        )
        .unwrap();
        sql(&h.addr, "SELECT pg_reload_conf()").await;
    }
    let mut secure = SecureHosts {
        tls,
        ca,
        password,
        pgpass: PathBuf::new(),
    };
    secure.pgpass = secure.passfile("pgpass", password);
    for h in &topology.hosts {
        assert_eq!(
            secure_sql(
                &h.addr,
                &secure.ca,
                password,
                "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ),
            "true"
        );
    }
    secure
}

/// The faults of a secure cluster over SSH, each a basebackup with one thing wrong in the
/// config of `shared`: a wrong password, a CA that did not sign the certificates, a changed host
/// key of h1. Each fails naming node h1 (and, for the host key, `user@host:port`), never showing
/// a password or the S3 secret, and no backup is listed after them.
fn secure_faults(topology: &Topology, shared: &Shared) {
    let Access::Secure(secure) = &shared.access else {
        panic!("secure_faults needs a secure cluster");
    };
    let json = shared.config_json(topology);
    let wrong = "Wrong-Secret-0c1d";
    let secrets: Vec<&str> = shared
        .env
        .iter()
        .filter(|(k, _)| k.contains("SECRET"))
        .map(|(_, v)| v.as_str())
        .chain([secure.password, wrong])
        .collect();
    let fault = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut j = json.clone();
        edit(&mut j);
        let p = topology.dir().join("fault-config.json");
        std::fs::write(&p, j.to_string()).unwrap();
        let out = tool(topology, &p, &["basebackup", "--name", "bad"], &shared.env);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{text}");
        for secret in &secrets {
            assert!(!text.contains(secret), "no secret: {text}");
        }
        text
    };
    let bad_pass = secure.passfile("pgpass-wrong", wrong);
    let text = fault(&|j| j["passfile"] = bad_pass.display().to_string().into());
    assert!(
        text.contains("node h1") && text.contains("password"),
        "{text}"
    );
    let other = secure.tls.join("other-ca.crt");
    let text = fault(&|j| j["sslrootcert"] = other.display().to_string().into());
    assert!(
        text.contains("node h1") && text.contains("certificate"),
        "{text}"
    );
    // h1's address with a key it does not have: as if h1 were replaced, or an impostor.
    let fake = secure.tls.join("fake_host_key");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&fake)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let fake_pub = std::fs::read_to_string(fake.with_extension("pub")).unwrap();
    let fake_key: Vec<&str> = fake_pub.split_whitespace().take(2).collect();
    let h1 = &topology.hosts[0].addr;
    let known: String = std::fs::read_to_string(topology.known_hosts_file())
        .unwrap()
        .lines()
        .map(|l| match l.split_once(' ') {
            Some((host, _)) if host == h1 => format!("{h1} {}\n", fake_key.join(" ")),
            _ => format!("{l}\n"),
        })
        .collect();
    let changed = secure.tls.join("known_hosts_changed");
    std::fs::write(&changed, known).unwrap();
    let text = fault(&|j| j["ssh"]["knownHostsFile"] = changed.display().to_string().into());
    assert!(
        text.contains("node h1")
            && text.contains(&format!("postgres@{h1}:22"))
            && text.contains("host key"),
        "{text}"
    );
    let list = tool_ok(
        topology,
        &topology.dir().join("cluster-config.json"),
        &["list"],
        &shared.env,
    );
    assert!(!list.contains("bad"), "{list}");
}

/// The scenario with scram-sha-256 over TLS only (`sslmode` verify-full, `sslrootcert`, a
/// root-only `passfile`) over SSH with a shared posix repository, then the faults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_over_ssh_with_scram_and_tls() {
    if !available_or_skip("whole_cluster_over_ssh_with_scram_and_tls") {
        return;
    }
    let topology = Topology::up(2);
    let (repo, _) = shared_folder(&topology);
    let shared = Shared {
        repository: serde_json::json!({"type": "posix", "path": repo}),
        env: Vec::new(),
        access: Access::Secure(secure_hosts(&topology, false).await),
    };
    scenario(&topology, &shared, false, || {}).await;
    secure_faults(&topology, &shared);
}

/// The issue's full matrix in one: Citus (pg_dist_node holding the namespace addresses, the
/// nodes' own connections verify-full with the password), scram-sha-256 over TLS only, over
/// SSH, with the repository in S3 on the bridge address: the scenario (restore-abort, verify
/// and list included), then the faults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_over_ssh_on_citus_with_scram_tls_and_s3() {
    if !available_or_skip("whole_cluster_over_ssh_on_citus_with_scram_tls_and_s3")
        || !citus_or_skip()
    {
        return;
    }
    let topology = Topology::up(2);
    let Some(server) = moto_on_bridge(&topology) else {
        return;
    };
    load_citus(&topology).await;
    let secure = secure_hosts(&topology, true).await;
    let shared = s3_shared(&server, Access::Secure(secure));
    scenario(&topology, &shared, true, || {}).await;
    let objects = backup_objects(&server);
    for host in &topology.hosts {
        let key = format!("backups/b1/{}/base.tar.zst", host.name);
        assert!(objects.contains(&key), "{key} in {objects:?}");
    }
    secure_faults(&topology, &shared);
}

/// `cluster create --secure` with nodes on other hosts: each node made on its host over SSH
/// (the CLI in the mount namespace without the nodes' folder), the certificates generated here and
/// installed there, the password set by initdb; the servers admit only scram-sha-256 over TLS,
/// and with Citus the nodes reach each other that way. Plain `cluster create` is refused,
/// making nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_create_secure_over_ssh_makes_each_node_on_its_host() {
    if !available_or_skip("cluster_create_secure_over_ssh_makes_each_node_on_its_host") {
        return;
    }
    let topology = Topology::up(2);
    let mut json = topology.config_json();
    // Inside the hidden folder, made by the servers' user on the hosts.
    let base = topology.nodes_dir().join("created");
    json["clusterBaseFolder"] = serde_json::json!(base);
    json["coordinatorNode"]["port"] = 5433.into();
    json["workerNodes"][0]["port"] = 5434.into();
    let (ca, pgpass) = (
        topology.dir().join("new-ca.crt"),
        topology.dir().join("new-pgpass"),
    );
    json["sslmode"] = "verify-full".into();
    json["sslrootcert"] = ca.display().to_string().into();
    json["passfile"] = pgpass.display().to_string().into();
    let config = topology.dir().join("create-config.json");
    std::fs::write(&config, json.to_string()).unwrap();

    let out = tool(&topology, &config, &["cluster", "create"], &[]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("ssh") && text.contains("cluster create --secure"),
        "{text}"
    );
    assert!(
        !base.exists() && !ca.exists() && !pgpass.exists(),
        "nothing made"
    );

    let out = tool(&topology, &config, &["cluster", "create", "--secure"], &[]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    let line = std::fs::read_to_string(&pgpass).unwrap();
    let password = line
        .lines()
        .next()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(password.len(), 32, "{line}");
    assert!(
        !said.contains(&password),
        "no password in the output: {said}"
    );
    let mode = std::fs::metadata(&pgpass).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let verify = format!("sslmode=verify-full sslrootcert={}", ca.display());
    for (h, port) in topology.hosts.iter().zip([5433, 5434]) {
        // Made on the host, by its user.
        let version = base.join(&h.name).join("PG_VERSION");
        let meta = std::fs::metadata(&version).unwrap();
        assert_eq!(
            meta.uid(),
            nix::unistd::User::from_name("postgres")
                .unwrap()
                .unwrap()
                .uid
                .as_raw()
        );
        let out = psql(
            &h.addr,
            port,
            &verify,
            &password,
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        );
        assert!(out.status.success(), "{}: {out:?}", h.addr);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "t");
        // Without TLS, or with a wrong password: refused.
        let out = psql(&h.addr, port, "sslmode=disable", &password, "SELECT 1");
        assert!(!out.status.success(), "{}: no TLS admitted", h.addr);
        let out = psql(&h.addr, port, &verify, "wrong", "SELECT 1");
        assert!(!out.status.success(), "{}: wrong password admitted", h.addr);
    }
    let status = tool_ok(&topology, &config, &["cluster", "status"], &[]);
    assert_eq!(status.matches("running").count(), 2, "{status}");
    let citus = psql(
        &topology.hosts[0].addr,
        5433,
        &verify,
        &password,
        "SELECT count(*) FROM pg_dist_node",
    );
    if citus.status.success() {
        // Citus: both nodes listed by their addresses, and the coordinator reaches the worker
        // over verify-full with the password.
        assert_eq!(String::from_utf8_lossy(&citus.stdout).trim(), "2");
        let out = psql(
            &topology.hosts[0].addr,
            5433,
            &verify,
            &password,
            "CREATE TABLE d (id int PRIMARY KEY); SELECT create_distributed_table('d', 'id'); \
             INSERT INTO d SELECT generate_series(1, 100); SELECT count(*) FROM d",
        );
        assert!(out.status.success(), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).trim().ends_with("100"),
            "{out:?}"
        );
    } else {
        assert!(
            !citus_or_skip(),
            "Citus is installed but not in the cluster: {citus:?}"
        );
    }
}
