//! The tool needs no root (issue 11): the whole-cluster scenario over SSH on the namespace
//! topology (`scripts/netns.sh`) with the CLI run as an unprivileged admin user, uid/gid 65534
//! (`nobody`), no supplementary groups, no capabilities, in a mount namespace where the nodes'
//! folder is an empty tmpfs. That user has only what an admin has: its own copy of the client
//! key and known_hosts, a config file, its own backupBaseFolder/archiveBaseFolder and temporary
//! folder, and the S3 repository's credentials in its environment. Nothing it leaves on the
//! admin host may be root's. Needs root to build the topology; skipped with the reason printed
//! otherwise (failing when CITUS_RECOVERY_REQUIRE_NETNS=1).

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

/// The unprivileged admin: `nobody`.
const ADMIN_ID: u32 = 65534;

/// An admin user on the admin host: its ids, its home `DIR/<name>` and what is in it.
struct Admin {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
    config: PathBuf,
    env: Vec<(String, String)>,
}

impl Admin {
    /// Makes `DIR/admin` (0755, the admin's) with `.ssh/` (0700) holding copies of the client key
    /// (0600) and known_hosts, `backup/`, `archive/` and `tmp/` (0700), all the admin's; the
    /// config (0644: the node hosts read it at the same path) with `repository`.
    fn new(
        topology: &Topology,
        (name, uid, gid): (&str, u32, u32),
        repository: serde_json::Value,
        aws: &[(String, String)],
    ) -> Self {
        let home = topology.dir().join(format!("admin-{name}"));
        let ssh = home.join(".ssh");
        for (dir, mode) in [
            (&home, 0o755),
            (&ssh, 0o700),
            (&home.join("backup"), 0o700),
            (&home.join("archive"), 0o700),
            (&home.join("tmp"), 0o700),
        ] {
            std::fs::create_dir(dir).unwrap();
            std::fs::set_permissions(dir, PermissionsExt::from_mode(mode)).unwrap();
        }
        let key = ssh.join("id_citus");
        let known = ssh.join("known_hosts_citus");
        std::fs::copy(topology.identity_file(), &key).unwrap();
        std::fs::copy(topology.known_hosts_file(), &known).unwrap();
        std::fs::set_permissions(&key, PermissionsExt::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&known, PermissionsExt::from_mode(0o644)).unwrap();

        let mut json = topology.config_json();
        json["binary"] = serde_json::json!(env!("CARGO_BIN_EXE_citus-recovery"));
        json["repository"] = repository;
        json["backupBaseFolder"] = serde_json::json!(home.join("backup"));
        json["archiveBaseFolder"] = serde_json::json!(home.join("archive"));
        json["ssh"]["identityFile"] = serde_json::json!(key);
        json["ssh"]["knownHostsFile"] = serde_json::json!(known);
        let config = home.join("cluster.json");
        std::fs::write(&config, json.to_string()).unwrap();
        std::fs::set_permissions(&config, PermissionsExt::from_mode(0o644)).unwrap();

        // Everything the admin has is its own (made by root here, as an installer would).
        for entry in walk(&home) {
            std::os::unix::fs::lchown(&entry, Some(uid), Some(gid)).unwrap();
        }
        let mut env = vec![
            (
                "PATH".to_string(),
                "/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            ),
            ("HOME".to_string(), home.display().to_string()),
            ("TMPDIR".to_string(), home.join("tmp").display().to_string()),
            ("USER".to_string(), name.to_string()),
            ("LOGNAME".to_string(), name.to_string()),
        ];
        env.extend(aws.iter().cloned());
        Admin {
            name: name.to_string(),
            uid,
            gid,
            home,
            config,
            env,
        }
    }
}

/// `root` and every entry below it, not following symlinks.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let path = out[i].clone();
        i += 1;
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            for e in std::fs::read_dir(&path).unwrap() {
                out.push(e.unwrap().path());
            }
        }
    }
    out
}

/// The admin host's password database: this machine's without the servers' user (the admin
/// host runs no PostgreSQL, so it has no `postgres` account), `DIR/admin-host/passwd`.
fn admin_host_passwd(topology: &Topology) -> PathBuf {
    let dir = topology.dir().join("admin-host");
    let file = dir.join("passwd");
    if !file.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        let without: String = passwd
            .lines()
            .filter(|l| !l.starts_with("postgres:"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(without.len(), passwd.len(), "/etc/passwd has postgres");
        std::fs::write(&file, without).unwrap();
        std::fs::set_permissions(&file, PermissionsExt::from_mode(0o644)).unwrap();
    }
    file
}

/// Runs the CLI with `args` as the admin (uid/gid 65534, no groups, no capabilities, only the
/// admin's environment), in a new mount namespace with an empty tmpfs over the nodes' folder
/// and no `postgres` account in /etc/passwd unless the admin is that user.
fn tool(topology: &Topology, admin: &Admin, args: &[&str]) -> Output {
    tool_with(topology, admin, &admin.config, true, args)
}

/// Like [`tool`] with `config`, as the admin when `unprivileged`, else as root.
fn tool_with(
    topology: &Topology,
    admin: &Admin,
    config: &Path,
    unprivileged: bool,
    args: &[&str],
) -> Output {
    let (uid, gid) = (admin.uid.to_string(), admin.gid.to_string());
    let drop_root: &[&str] = if unprivileged {
        &[
            "setpriv",
            "--reuid",
            &uid,
            "--regid",
            &gid,
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ]
    } else {
        &[]
    };
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(
            r#"mount -t tmpfs -o size=1m,mode=700 citus-recovery-hidden "$1" && { [ -z "$2" ] || mount --bind "$2" /etc/passwd; } && shift 2 && exec "$@""#,
        )
        .arg("sh")
        .arg(topology.nodes_dir())
        // The servers' user as admin keeps its account.
        .arg(if admin.name == "postgres" {
            PathBuf::new()
        } else {
            admin_host_passwd(topology)
        })
        .args(drop_root)
        .arg(env!("CARGO_BIN_EXE_citus-recovery"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_clear()
        .envs(admin.env.iter().filter_map(|(k, v)| {
            // Root keeps its own home and temporary folder.
            (unprivileged || k.starts_with("AWS_") || k == "PATH").then_some((k, v))
        }))
        .current_dir(if unprivileged { &admin.home } else { Path::new("/") })
        .output()
        .expect("run unshare")
}

/// Like [`tool`], failing the test, with the tool's output, unless it succeeded.
fn tool_ok(topology: &Topology, admin: &Admin, args: &[&str]) -> String {
    let out = tool(topology, admin, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "citus-recovery {args:?} as uid {} failed:\n{stdout}\n{}",
        admin.uid,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The scenario as the admin: prepare-archiving, basebackup, restore-point, verify, list,
/// restore-start, restore-finish (rows exact at the point), restore-start again and
/// restore-abort (rows as before). Every command succeeds, and every file under the admin's
/// home, the restore state and the lock included, is the admin's.
async fn scenario(topology: &Topology, admin: &Admin) {
    let addrs: Vec<String> = topology.hosts.iter().map(|h| h.addr.clone()).collect();

    // The harness really drops root: the admin cannot read root's copy of the client key.
    let (uid, gid) = (admin.uid.to_string(), admin.gid.to_string());
    let probe = Command::new("setpriv")
        .args(["--reuid", &uid, "--regid", &gid, "--clear-groups", "--"])
        .args(["sh", "-c", "id -u; cat \"$1\" >/dev/null", "sh"])
        .arg(topology.identity_file())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), uid);
    assert!(!probe.status.success(), "root's key is not the admin's");

    tool_ok(topology, admin, &["prepare-archiving"]);
    for addr in &addrs {
        sql(
            addr,
            "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100)",
        )
        .await;
    }
    tool_ok(topology, admin, &["basebackup", "--name", "b1"]);
    for addr in &addrs {
        sql(addr, "INSERT INTO t SELECT generate_series(101, 200)").await;
    }
    tool_ok(topology, admin, &["restore-point", "--name", "rp1"]);
    for addr in &addrs {
        sql(addr, "INSERT INTO t SELECT generate_series(201, 250)").await;
    }
    let verify = tool_ok(
        topology,
        admin,
        &["verify", "--backup", "b1", "--restore-point", "rp1"],
    );
    assert!(
        verify.contains(&format!("on {}", addrs[1])),
        "disk space of each host: {verify}"
    );
    let list = tool_ok(topology, admin, &["list"]);
    assert!(list.contains("b1") && list.contains("rp1"), "{list}");

    // The servers' user named by `osUser` rather than `ssh.user`: it is the node hosts' account,
    // which the admin host need not have, neither for the admin nor for root.
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&admin.config).unwrap()).unwrap();
    json["ssh"].as_object_mut().unwrap().remove("user");
    json["osUser"] = "postgres".into();
    let os_user_config = topology.dir().join("admin-host/os-user.json");
    std::fs::write(&os_user_config, json.to_string()).unwrap();
    for unprivileged in [true, false] {
        let out = tool_with(topology, admin, &os_user_config, unprivileged, &["list"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !unprivileged && json["repository"]["type"] == "posix" {
            // Root still trusts no repository folder that another user could change.
            assert!(
                !out.status.success() && stderr.contains("is not trusted"),
                "{out:?}"
            );
            continue;
        }
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("rp1"),
            "list with osUser, unprivileged {unprivileged}: {out:?}"
        );
    }

    tool_ok(
        topology,
        admin,
        &["restore-start", "--backup", "b1", "--restore-point", "rp1"],
    );
    tool_ok(topology, admin, &["restore-finish"]);
    for addr in &addrs {
        assert_eq!(
            count(addr).await,
            200,
            "{addr}: rows up to the restore point"
        );
        sql(addr, "INSERT INTO t VALUES (-1)").await;
    }

    tool_ok(
        topology,
        admin,
        &["restore-start", "--backup", "b1", "--restore-point", "rp1"],
    );
    for addr in &addrs {
        assert_eq!(
            count(addr).await,
            200,
            "{addr}: paused at the restore point"
        );
    }
    tool_ok(topology, admin, &["restore-abort"]);
    for addr in &addrs {
        assert_eq!(
            count(addr).await,
            201,
            "{addr}: back as before restore-start"
        );
    }

    // Nothing the admin made on the admin host is root's (or anyone else's), and it made some.
    let entries = walk(&admin.home);
    for entry in &entries {
        let meta = std::fs::symlink_metadata(entry).unwrap();
        assert!(
            meta.uid() == admin.uid && meta.gid() == admin.gid,
            "{} is {}:{}, not the admin's",
            entry.display(),
            meta.uid(),
            meta.gid()
        );
    }
    let made: Vec<&PathBuf> = entries
        .iter()
        .filter(|e| e.starts_with(admin.home.join("backup")) && **e != admin.home.join("backup"))
        .collect();
    assert!(
        !made.is_empty(),
        "the tool wrote its restore state under backupBaseFolder"
    );
    // Its SSH control folders are gone with it.
    let tmp = std::fs::read_dir(admin.home.join("tmp")).unwrap().count();
    assert_eq!(tmp, 0, "control folders left in the admin's TMPDIR");
}

/// The scenario as `nobody` with the repository in S3 (moto on the topology's bridge address,
/// checking signatures; the credentials only in the admin's environment, forwarded to the
/// hosts by the tool).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_over_ssh_as_an_unprivileged_admin() {
    if !available_or_skip("whole_cluster_over_ssh_as_an_unprivileged_admin") {
        return;
    }
    let topology = Topology::up(2);
    let addr = &topology.hosts[0].addr;
    let bridge = format!("{}.1", &addr[..addr.rfind('.').unwrap()]);
    let server = moto_or_skip!(&["cr-noroot"], true);
    drop(server);
    let server = match s3::MotoS3::start_on(&bridge, &["cr-noroot"], true) {
        Ok(s) => s,
        Err(e) => panic!("moto on {bridge}: {e}"),
    };
    let admin = Admin::new(
        &topology,
        ("nobody", ADMIN_ID, ADMIN_ID),
        serde_json::json!({
            "type": "s3", "bucket": "cr-noroot", "prefix": "noroot", "region": "us-east-1",
            "endpoint": server.endpoint(), "allowHttp": true,
        }),
        &[
            ("AWS_ACCESS_KEY_ID".into(), server.access_key_id.clone()),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                server.secret_access_key.clone(),
            ),
        ],
    );
    scenario(&topology, &admin).await;

    // The backup's objects are in S3, written by the hosts.
    let repo = server.repository("cr-noroot", "noroot");
    let objects: Vec<String> = {
        use citus_recovery::repository::{Key, Repository};
        repo.list(&Key::new("backups/b1").unwrap())
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key.as_str().to_string())
            .collect()
    };
    for host in &topology.hosts {
        let key = format!("backups/b1/{}/base.tar.zst", host.name);
        assert!(objects.contains(&key), "{key} in {objects:?}");
    }
}

/// A repository folder for `owner`, set up as docs/remote.md says: the folder the admin's
/// (0755), `wal/` and `backups/` the servers' user's.
fn shared_folder(topology: &Topology, name: &str, owner: (u32, u32)) -> PathBuf {
    let repo = topology.dir().join(name);
    let postgres = nix::unistd::User::from_name("postgres").unwrap().unwrap();
    std::fs::create_dir(&repo).unwrap();
    std::fs::set_permissions(&repo, PermissionsExt::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&repo, Some(owner.0), Some(owner.1)).unwrap();
    for sub in ["wal", "backups"] {
        std::fs::create_dir(repo.join(sub)).unwrap();
        nix::unistd::chown(&repo.join(sub), Some(postgres.uid), Some(postgres.gid)).unwrap();
    }
    repo
}

/// A shared posix folder without root: the servers' user writes its objects readable by itself
/// only, so an admin other than that user (here `nobody`) cannot see the WAL it waits for, and
/// basebackup says so at once instead of waiting an hour. Run as the servers' user on the admin
/// host (the same uid as on the node hosts, no root), the whole scenario works; the catalog it
/// writes is its own and the backup's objects were written by the hosts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_over_ssh_without_root_with_a_shared_posix_repository() {
    if !available_or_skip("whole_cluster_over_ssh_without_root_with_a_shared_posix_repository") {
        return;
    }
    let topology = Topology::up(2);
    let postgres = nix::unistd::User::from_name("postgres").unwrap().unwrap();
    let ids = (postgres.uid.as_raw(), postgres.gid.as_raw());

    let repo = shared_folder(&topology, "repo-nobody", (ADMIN_ID, ADMIN_ID));
    let nobody = Admin::new(
        &topology,
        ("nobody", ADMIN_ID, ADMIN_ID),
        serde_json::json!({"type": "posix", "path": repo}),
        &[],
    );
    tool_ok(&topology, &nobody, &["prepare-archiving"]);
    let started = std::time::Instant::now();
    let out = tool(&topology, &nobody, &["basebackup", "--name", "b0"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("cannot look for")
            && text.contains("as that user")
            && text.contains("S3 repository"),
        "{text}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(90),
        "said at once"
    );

    // The next admin's config is another file: archiving is handed over to it.
    for h in &topology.hosts {
        sql(&h.addr, "ALTER SYSTEM RESET archive_command").await;
        sql(&h.addr, "SELECT pg_reload_conf()").await;
    }

    let repo = shared_folder(&topology, "repo", ids);
    let admin = Admin::new(
        &topology,
        ("postgres", ids.0, ids.1),
        serde_json::json!({"type": "posix", "path": repo}),
        &[],
    );
    scenario(&topology, &admin).await;

    let object = repo.join("backups/b1/h2/base.tar.zst");
    let meta = std::fs::symlink_metadata(&object).unwrap();
    assert!(meta.len() > 1000, "{}", object.display());
    let catalog = walk(&repo.join("catalog"));
    assert!(catalog.len() > 1, "{catalog:?}");
    for entry in &catalog {
        let meta = std::fs::symlink_metadata(entry).unwrap();
        assert_eq!(meta.uid(), ids.0, "{} is the admin's", entry.display());
    }
}
