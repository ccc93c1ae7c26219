//! Node hosts over SSH on a real multi-host topology built on this machine: one network
//! namespace per host with its own sshd and PostgreSQL (`scripts/netns.sh`). Needs root; where
//! network namespaces are impossible the tests are skipped with the reason printed, or fail when
//! CITUS_RECOVERY_REQUIRE_NETNS=1 (scripts/test.sh sets it when run as root).

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::path::{Path, PathBuf};
use std::process::Command;

use citus_recovery::backend::{ClusterBackend, FileSync, ServerState, StartWait};
use citus_recovery::{ClusterConfig, Error, SshBackend};
use netns::{available_or_skip, Topology};

/// The environment variable that hands the inner test its config file.
const INNER_CONFIG: &str = "CITUS_RECOVERY_NETNS_CONFIG";
/// Printed by the inner test at its very end, so the outer one knows it ran to completion.
const INNER_DONE: &str = "netns conformance: every check passed";

/// The topology itself: each host answers over ssh (host keys checked against the generated
/// known_hosts) as the servers' user at its own address, and its PostgreSQL answers SQL from
/// the root namespace at that address. A known_hosts with the wrong key is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_answer_over_ssh_and_sql_at_their_addresses() {
    if !available_or_skip("hosts_answer_over_ssh_and_sql_at_their_addresses") {
        return;
    }
    let topology = Topology::up(2);
    for host in &topology.hosts {
        // Its sshd and PostgreSQL run inside its own namespace.
        let pids = Command::new("ip")
            .args(["netns", "pids", &host.netns])
            .output()
            .unwrap();
        let commands: Vec<String> = String::from_utf8_lossy(&pids.stdout)
            .split_whitespace()
            .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok())
            .collect();
        for program in ["sshd", "postgres"] {
            assert!(
                commands.iter().any(|c| c.trim() == program),
                "{} runs no {program}: {commands:?}",
                host.netns
            );
        }
        let out = topology.ssh_with(host, &topology.known_hosts_file(), "hostname -I; id -un");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "ssh to {}: {}",
            host.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            vec![host.addr.as_str()],
            "{} has only its own address",
            host.name
        );
        assert_eq!(lines[1], "postgres");

        let (client, connection) = tokio_postgres::connect(
            &format!("host={} port=5432 user=postgres dbname=postgres", host.addr),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", host.addr));
        tokio::spawn(connection);
        let row = client
            .query_one("SELECT host(inet_server_addr())", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), host.addr);
    }

    // h1's address with h2's host key: ssh refuses to talk to h1.
    let keys = std::fs::read_to_string(topology.known_hosts_file()).unwrap();
    let h2_key = keys.lines().nth(1).unwrap().split_once(' ').unwrap().1;
    let wrong = topology.dir().join("client/wrong_known_hosts");
    std::fs::write(&wrong, format!("{} {h2_key}\n", topology.hosts[0].addr)).unwrap();
    let out = topology.ssh_with(&topology.hosts[0], &wrong, "true");
    assert!(!out.status.success(), "a wrong host key must be refused");

    // The backend says which host and what to do.
    let mut config = topology.config_json();
    config["ssh"]["knownHostsFile"] = serde_json::json!(wrong);
    let backend =
        SshBackend::new(ClusterConfig::from_json_str(&config.to_string(), None).unwrap()).unwrap();
    let node = backend.config().coordinator.clone();
    let err = backend.exists(&node, Path::new("/")).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("node h1"), "{text}");
    assert!(text.contains(&topology.hosts[0].addr), "{text}");
    assert!(text.contains("host key"), "{text}");

    // A host whose sshd is down: the error names the node and the host, and what to check.
    let backend = SshBackend::new(
        ClusterConfig::from_json_str(&topology.config_json().to_string(), None).unwrap(),
    )
    .unwrap();
    let h2 = backend.config().workers[0].clone();
    assert_eq!(
        backend.server_state(&h2).await.unwrap(),
        ServerState::Running
    );
    topology.signal_sshd("h2", nix::sys::signal::Signal::SIGTERM);
    // The master connection outlives sshd's listener; a new backend needs a new connection.
    drop(backend);
    let backend = SshBackend::new(
        ClusterConfig::from_json_str(&topology.config_json().to_string(), None).unwrap(),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = backend.server_state(&h2).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("node h2"), "{text}");
    assert!(
        text.contains(&format!("postgres@{}:22", topology.hosts[1].addr)),
        "{text}"
    );
    assert!(text.contains("sshd listens on port 22"), "{text}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "a refused connection fails fast"
    );
    // The other host is unaffected.
    let h1 = backend.config().coordinator.clone();
    assert_eq!(
        backend.server_state(&h1).await.unwrap(),
        ServerState::Running
    );
}

/// The SSH node host's operations on two namespace hosts, run by the test binary itself in a
/// mount namespace where the nodes' folder is an empty tmpfs: any code path that touched a
/// node's files directly instead of over SSH would find nothing there and fail.
#[test]
fn ssh_node_host_conformance_with_the_nodes_folder_hidden() {
    if !available_or_skip("ssh_node_host_conformance_with_the_nodes_folder_hidden") {
        return;
    }
    let topology = Topology::up(2);
    let config = topology.dir().join("cluster-config.json");
    let mut json = topology.config_json();
    // The hosts share this machine's files: the binary under test is the hosts' citus-recovery.
    json["binary"] = serde_json::json!(env!("CARGO_BIN_EXE_citus-recovery"));
    std::fs::write(&config, json.to_string()).unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o size=1m,mode=700 citus-recovery-hidden "$1" && exec "$2" --exact --ignored --nocapture --test-threads=1 inner_conformance"#)
        .arg("sh")
        .arg(topology.nodes_dir())
        .arg(std::env::current_exe().unwrap())
        .env(INNER_CONFIG, &config)
        .output()
        .expect("run unshare");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains(INNER_DONE) && stdout.contains("1 passed"),
        "the inner conformance run failed:\n{stdout}\n{stderr}"
    );
    // Outside the mount namespace the folder is there: the operations really happened.
    assert!(topology.nodes_dir().join("h1/PG_VERSION").is_file());
    assert!(topology
        .nodes_dir()
        .join("h1.before-restore/PG_VERSION")
        .is_file());
    assert!(topology
        .nodes_dir()
        .join("awkward 'dir' \"with\" $HOME `x`/renamed $1 'it'.txt")
        .is_file());
}

/// Run only by [`ssh_node_host_conformance_with_the_nodes_folder_hidden`], inside its mount
/// namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by ssh_node_host_conformance_with_the_nodes_folder_hidden inside a mount namespace"]
async fn inner_conformance() {
    let path = PathBuf::from(
        std::env::var_os(INNER_CONFIG).expect("run through the outer test, which sets the config"),
    );
    let config = ClusterConfig::from_file(&path).unwrap();
    let nodes_dir = config.cluster_base_folder.clone();
    assert!(
        std::fs::read_dir(&nodes_dir).unwrap().next().is_none(),
        "{} must look empty here (a tmpfs over it)",
        nodes_dir.display()
    );
    let backend = SshBackend::new(config.clone()).unwrap();
    let nodes: Vec<_> = config.nodes().cloned().collect();

    // Server control on both hosts at once.
    futures::future::try_join_all(nodes.iter().map(|n| async {
        assert_eq!(backend.server_state(n).await?, ServerState::Running);
        backend.stop(n).await?;
        assert_eq!(backend.server_state(n).await?, ServerState::Stopped);
        backend.start(n, StartWait::UntilReady).await?;
        assert_eq!(backend.server_state(n).await?, ServerState::Running);
        let client = backend.connect(n).await?;
        let row = client
            .query_one("SELECT host(inet_server_addr())", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), n.hostname);
        let tail = backend.log_tail(n, 50).await;
        assert!(
            tail.contains("database system is ready to accept connections"),
            "{}: {tail}",
            n.name
        );
        Ok::<_, Error>(())
    }))
    .await
    .unwrap();

    // A new node made on h2's host: initdb there, then started and stopped there (its own port;
    // no Unix socket, as the hosts share one /var/run/postgresql).
    let mut raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    raw["workerNodes"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "h2b", "hostname": nodes[1].hostname, "port": 5433, "username": "postgres", "dbname": "postgres"}));
    raw["workerCount"] = serde_json::json!(nodes.len());
    let wider = ClusterConfig::from_json_str(&raw.to_string(), None).unwrap();
    let wider_backend = SshBackend::new(wider.clone()).unwrap();
    let extra = wider.node("h2b").unwrap();
    assert_eq!(
        wider_backend.server_state(extra).await.unwrap(),
        ServerState::Missing
    );
    let settings = [
        ("listen_addresses", format!("'{}'", extra.hostname)),
        ("port", "5433".to_string()),
        ("unix_socket_directories", "''".to_string()),
    ]
    .map(|(k, v)| (k.to_string(), v));
    wider_backend.init_node(extra, &settings).await.unwrap();
    assert_eq!(
        wider_backend.server_state(extra).await.unwrap(),
        ServerState::Stopped
    );
    let conf = wider.data_dir(extra).join("postgresql.conf");
    let text = wider_backend
        .read_file(extra, &conf)
        .await
        .unwrap()
        .unwrap();
    assert!(text.contains("port = 5433"), "settings appended");
    wider_backend
        .start(extra, StartWait::UntilReady)
        .await
        .unwrap();
    assert_eq!(
        wider_backend.server_state(extra).await.unwrap(),
        ServerState::Running
    );
    wider_backend.stop(extra).await.unwrap();
    assert_eq!(
        wider_backend.server_state(extra).await.unwrap(),
        ServerState::Stopped
    );
    drop(wider_backend);

    let n = &nodes[0];
    // Awkward paths survive the remote shell.
    let dir = nodes_dir.join("awkward 'dir' \"with\" $HOME `x`");
    backend.create_dir(n, &dir).await.unwrap();
    backend.create_dir(n, &dir).await.unwrap(); // an existing folder is fine
    assert!(backend.exists(n, &dir).await.unwrap());
    // Had the shell expanded it, `touch` would run in the SSH user's home folder.
    let pwned = Path::new("/var/lib/postgresql/pwned-by-citus-recovery");
    let file = dir.join("file $(touch pwned-by-citus-recovery) `id` ;'\n.txt");
    let contents = b"line 1\n'quoted' \"double\" $HOME `id`\n\\ end";
    assert_eq!(backend.read_file(n, &file).await.unwrap(), None);
    backend
        .write_file(n, &file, contents, FileSync::Now)
        .await
        .unwrap();
    assert_eq!(
        backend
            .read_file(n, &file)
            .await
            .unwrap()
            .unwrap()
            .as_bytes(),
        contents
    );
    backend
        .write_file(n, &file, b"replaced", FileSync::Later)
        .await
        .unwrap();
    assert_eq!(
        backend.read_file(n, &file).await.unwrap().as_deref(),
        Some("replaced")
    );
    let renamed = dir.join("renamed $1 'it'.txt");
    backend.rename(n, &file, &renamed).await.unwrap();
    assert!(!backend.exists(n, &file).await.unwrap());
    assert!(backend.exists(n, &renamed).await.unwrap());
    assert!(!pwned.exists(), "a command substitution in a path ran");
    // Never replaces an existing name.
    let other = dir.join("other");
    backend
        .write_file(n, &other, b"x", FileSync::Now)
        .await
        .unwrap();
    let err = backend.rename(n, &other, &renamed).await.unwrap_err();
    assert!(err.to_string().contains("exists already"), "{err}");
    assert_eq!(
        backend.read_file(n, &renamed).await.unwrap().as_deref(),
        Some("replaced")
    );
    backend.remove_file(n, &other).await.unwrap();
    assert!(!backend.exists(n, &other).await.unwrap());
    assert!(
        backend.remove_file(n, &other).await.is_err(),
        "already gone"
    );
    // A link is never followed: it exists, but is neither read nor written through.
    let link = dir.join("link 'to' renamed");
    backend
        .run_on_host(
            n,
            "ln",
            &["-s", renamed.to_str().unwrap(), link.to_str().unwrap()],
        )
        .await
        .unwrap();
    assert!(backend.exists(n, &link).await.unwrap());
    let err = backend.read_file(n, &link).await.unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    let err = backend
        .write_file(n, &link, b"through the link", FileSync::Now)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(backend.create_dir(n, &link).await.is_err());
    assert_eq!(
        backend.read_file(n, &renamed).await.unwrap().as_deref(),
        Some("replaced"),
        "the link's target is unchanged"
    );
    // A folder is not a file, and a file is not a folder.
    assert!(backend.read_file(n, &dir).await.is_err());
    assert!(backend.create_dir(n, &renamed).await.is_err());
    // A data directory that exists is never initialised over.
    let err = backend.init_node(n, &[]).await.unwrap_err();
    assert!(err.to_string().contains("exists already"), "{err}");

    // Citus as the host has it (the hosts share this machine's installation).
    let citus_here = Path::new("/usr/share/postgresql/15/extension/citus.control").is_file();
    assert_eq!(backend.citus_available(n).await.unwrap(), citus_here);

    // More commands at once than sshd's MaxSessions (10): the backend queues them, so all run as
    // channels of the one master connection, in rounds of at most 10. (Beyond 10, sshd refuses
    // the channel and ssh quietly opens a connection of its own: the log would show it.)
    let sshd_log = path.parent().unwrap().join(format!("{}/sshd.log", n.name));
    let logins = || {
        std::fs::read_to_string(&sshd_log)
            .unwrap()
            .matches("Accepted publickey")
            .count()
    };
    let logins_before = logins();
    let started = std::time::Instant::now();
    let many = futures::future::join_all(
        (0..25).map(|_| backend.run_on_host(n, "sh", &["-c", "sleep 0.5; echo ran"])),
    )
    .await;
    for result in many {
        assert_eq!(result.unwrap(), "ran\n", "every queued command ran");
    }
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1400),
        "25 commands of 0.5 s with 10 at a time take three rounds, not {:?}",
        started.elapsed()
    );
    assert_eq!(
        logins(),
        logins_before,
        "no command needed a connection of its own"
    );

    // A base backup is taken on the node's host, into a folder there.
    let folder = nodes_dir.join("backups/first 'one'");
    let files = backend.base_backup(n, &folder, "netns test").await.unwrap();
    assert_eq!(files.folder, folder);
    assert!(files.bytes > 1_000_000, "{files:?}");
    assert_eq!(files.tablespaces, Vec::<u32>::new());
    for name in ["base.tar", "pg_wal.tar", "backup_manifest"] {
        assert!(
            backend.exists(n, &folder.join(name)).await.unwrap(),
            "{name}"
        );
    }
    // A cancelled backup stops on the node's host too (pg_basebackup and its WAL child): the
    // call is dropped as soon as pg_basebackup runs there.
    let cancelled = nodes_dir.join("backups/cancelled");
    let running = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                comm.trim() == "pg_basebackup"
                    && String::from_utf8_lossy(&cmdline).contains("backups/cancelled")
            })
            .count()
    };
    let seen = async {
        while running() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    tokio::select! {
        result = backend.base_backup(n, &cancelled, "cancelled") => {
            panic!("the backup ended before it could be cancelled: {result:?}")
        }
        () = seen => {}
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while running() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(running(), 0, "pg_basebackup still runs on the host");
    assert!(
        !backend
            .exists(n, &cancelled.join("backup_manifest"))
            .await
            .unwrap(),
        "the cancelled backup did not finish"
    );

    // A restore of h1 from that backup, all on h1's host: extracted there by the host's own
    // citus-recovery, pg_control installed last, swapped in for the old data directory.
    let restored = nodes_dir.join("h1.restored");
    backend
        .extract_backup(n, &folder, &restored, &[])
        .await
        .unwrap();
    assert!(backend
        .exists(n, &restored.join("PG_VERSION"))
        .await
        .unwrap());
    let pending = restored.join(citus_recovery::backend::PENDING_CONTROL_FILE);
    let control = restored.join("global/pg_control");
    assert!(backend.exists(n, &pending).await.unwrap());
    assert!(!backend.exists(n, &control).await.unwrap(), "held back");
    backend
        .install_control_file(n, &restored, &[])
        .await
        .unwrap();
    assert!(backend.exists(n, &control).await.unwrap());
    assert!(!backend.exists(n, &pending).await.unwrap());
    // Extracting over an existing folder is refused, with the host's message.
    let err = backend
        .extract_backup(n, &folder, &restored, &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("h1.restored"), "{err}");
    let data_dir = config.data_dir(n);
    let old = nodes_dir.join("h1.before-restore");
    backend.stop(n).await.unwrap();
    backend.rename(n, &data_dir, &old).await.unwrap();
    backend.rename(n, &restored, &data_dir).await.unwrap();
    backend.start(n, StartWait::UntilReady).await.unwrap();
    let client = backend.connect(n).await.unwrap();
    let row = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap();
    assert!(
        !row.get::<_, bool>(0),
        "the restored server runs on its own"
    );
    // A host whose citus-recovery is missing: the error says what to install where.
    let mut raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    raw["binary"] = serde_json::json!("/nonexistent/citus-recovery");
    let elsewhere =
        SshBackend::new(ClusterConfig::from_json_str(&raw.to_string(), None).unwrap()).unwrap();
    let err = elsewhere
        .extract_backup(n, &folder, &nodes_dir.join("never"), &[])
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("install citus-recovery"), "{text}");
    assert!(text.contains(&n.hostname), "{text}");
    assert!(!backend.exists(n, &nodes_dir.join("never")).await.unwrap());
    println!("{INNER_DONE}");
}

/// The node-side subcommands the SSH node host runs: they refuse root (the files would be
/// root's) and a malformed `--tablespace`, before touching anything.
#[test]
fn node_side_commands_refuse_root_and_bad_tablespaces() {
    let bin = env!("CARGO_BIN_EXE_citus-recovery");
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("new");
    let run = |args: &[&str]| Command::new(bin).args(args).output().unwrap();
    let out = run(&[
        "node-extract",
        "--backup",
        "/nonexistent",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--tablespace",
        "16384",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("<oid>=<new folder>"), "{stderr}");
    if nix::unistd::Uid::effective().is_root() {
        let out = run(&[
            "node-install-control-file",
            "--data-dir",
            data_dir.to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("not root"), "{stderr}");
    }
    assert!(!data_dir.exists(), "nothing was made");
}

/// `netns.sh up` that fails half-way (here on purpose, after the first host is fully up) tears
/// down everything it made: namespaces, bridge, veths, servers.
#[test]
fn a_topology_that_fails_half_way_leaves_nothing_behind() {
    if !available_or_skip("a_topology_that_fails_half_way_leaves_nothing_behind") {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("half-way-")
        .tempdir_in("/var/lib")
        .unwrap();
    let target = dir.path().join("topology");
    // No other test may claim the slot until it was checked.
    let _claims = netns::SLOT_CLAIMS.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new("bash")
        .arg(netns::script())
        .args(["up", "2"])
        .arg(&target)
        .env("NETNS_FAIL_AFTER", "h1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("on purpose"), "{stderr}");
    let slot = stderr
        .lines()
        .find_map(|l| l.strip_prefix("netns.sh: slot "))
        .unwrap_or_else(|| panic!("no slot in {stderr}"))
        .to_string();
    let namespaces = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(
        !namespaces.contains(&format!("cr{slot}-h")),
        "namespaces left: {namespaces}"
    );
    let links = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    for name in [format!("crbr{slot}:"), format!("crv{slot}h1")] {
        assert!(!links.contains(&name), "{name} left: {links}");
    }
    assert!(!target.join("topology.env").exists());
    // h1's server was up before the failure; it must not run on.
    let postmaster = target.join("nodes/h1/postmaster.pid");
    assert!(!postmaster.exists(), "h1's server still runs");
}
