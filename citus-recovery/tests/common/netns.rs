//! A multi-host topology for tests: `scripts/netns.sh` builds one network namespace per node
//! host (own address, sshd, PostgreSQL); [`Topology`] tears it down when dropped, also when the
//! test fails. Include it with `#[path = "common/netns.rs"] mod netns;` beside `mod common;`.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Set to `1` to make a machine without network namespaces fail the tests instead of skipping.
pub const REQUIRE_ENV: &str = "CITUS_RECOVERY_REQUIRE_NETNS";

/// Held while a topology claims its slot; a test that checks a freed slot holds it too, so no
/// other test of the process reuses the slot meanwhile.
pub static SLOT_CLAIMS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Parent of every topology's folder: root-owned and not writable by others all the way up, as
/// sshd's StrictModes wants for the authorized keys inside.
const BASE: &str = "/var/lib/citus-recovery-netns";

/// One node host of a topology.
#[derive(Debug, Clone)]
pub struct NsHost {
    /// `h1`, `h2`, ...: also the name of its data directory in [`Topology::nodes_dir`].
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its address (sshd on port 22, PostgreSQL on 5432).
    pub addr: String,
}

/// A running topology; dropping it tears everything down.
#[derive(Debug)]
pub struct Topology {
    dir: PathBuf,
    /// The hosts, in order.
    pub hosts: Vec<NsHost>,
}

/// The harness script.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/netns.sh")
}

/// Why a topology cannot be built here, if it cannot.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("not running as root (network namespaces need it)".into());
    }
    for program in ["/usr/sbin/sshd", "/usr/bin/ssh", "/usr/bin/ssh-keygen"] {
        if !Path::new(program).is_file() {
            return Some(format!(
                "{program} is missing: run bash scripts/setup.sh --tests"
            ));
        }
    }
    if let Some(reason) = crate::common::skip_reason() {
        return Some(reason);
    }
    static PROBES: AtomicU32 = AtomicU32::new(0);
    let probe = format!(
        "cr-probe-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    );
    match Command::new("ip").args(["netns", "add", &probe]).output() {
        Ok(out) if out.status.success() => {
            let _ = Command::new("ip").args(["netns", "del", &probe]).status();
            None
        }
        Ok(out) => Some(format!(
            "ip netns add fails here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run ip (iproute2): {e}")),
    }
}

/// `true` when the test may go on; `false` (after printing why) when it is skipped; panics when
/// [`REQUIRE_ENV`] is `1` and namespaces are impossible.
pub fn available_or_skip(test: &str) -> bool {
    match unavailable() {
        None => true,
        Some(reason) if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") => {
            panic!("{test}: {REQUIRE_ENV}=1 but the multi-host topology cannot be built: {reason}")
        }
        Some(reason) => {
            eprintln!("SKIPPED {test}: {reason} (set {REQUIRE_ENV}=1 to make this a failure)");
            false
        }
    }
}

impl Topology {
    /// Builds `n` hosts.
    pub fn up(n: usize) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let base = Path::new(BASE);
        match std::fs::DirBuilder::new().mode(0o755).create(base) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("create {BASE}: {e}"),
        }
        let meta = std::fs::symlink_metadata(base).unwrap();
        assert!(
            meta.is_dir() && meta.uid() == 0 && meta.permissions().mode() & 0o022 == 0,
            "{BASE} must be a root-owned folder others cannot write"
        );
        // Topologies of test processes that were killed before their Drop ran.
        let _ = Command::new("bash")
            .arg(script())
            .arg("sweep")
            .arg(base)
            .status();
        let dir = base.join(format!(
            "run-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let claim = SLOT_CLAIMS.lock().unwrap_or_else(|e| e.into_inner());
        let out = Command::new("bash")
            .arg(script())
            .arg("up")
            .arg(n.to_string())
            .arg(&dir)
            .env("NETNS_OWNER", std::process::id().to_string())
            .output()
            .expect("run scripts/netns.sh");
        drop(claim);
        // From here on Drop tears down whatever `up` left (it cleans up after itself on failure).
        let mut topology = Topology {
            dir,
            hosts: Vec::new(),
        };
        assert!(
            out.status.success(),
            "netns.sh up failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if let ["host", name, netns, addr] = parts.as_slice() {
                topology.hosts.push(NsHost {
                    name: name.to_string(),
                    netns: netns.to_string(),
                    addr: addr.to_string(),
                });
            }
        }
        assert_eq!(topology.hosts.len(), n, "netns.sh up listed the hosts");
        topology
    }

    /// The topology's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder of the hosts' data directories and logs (a config's clusterBaseFolder).
    pub fn nodes_dir(&self) -> PathBuf {
        self.dir.join("nodes")
    }

    /// Sends `signal` to the sshd of the host named `host` (its pid file in the topology).
    pub fn signal_sshd(&self, host: &str, signal: nix::sys::signal::Signal) {
        let pid: i32 = std::fs::read_to_string(self.dir.join(host).join("sshd.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
    }

    /// The client's private key.
    pub fn identity_file(&self) -> PathBuf {
        self.dir.join("client/id_ed25519")
    }

    /// The client's known_hosts, listing every host's key.
    pub fn known_hosts_file(&self) -> PathBuf {
        self.dir.join("client/known_hosts")
    }

    /// Runs `command` on `host` with the system ssh: batch mode, the test key, host keys checked
    /// against `known_hosts` only.
    pub fn ssh_with(&self, host: &NsHost, known_hosts: &Path, command: &str) -> Output {
        Command::new("ssh")
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args(["-o", "GlobalKnownHostsFile=/dev/null", "-i"])
            .arg(self.identity_file())
            .arg(format!("postgres@{}", host.addr))
            .arg(command)
            .output()
            .expect("run ssh")
    }

    /// A config whose nodes are the hosts (h1 the coordinator), reached over SSH as `postgres`
    /// with the test key and known_hosts.
    pub fn config_json(&self) -> serde_json::Value {
        let node = |h: &NsHost| serde_json::json!({"name": h.name, "hostname": h.addr, "port": 5432, "username": "postgres", "dbname": "postgres"});
        let workers: Vec<_> = self.hosts[1..].iter().map(node).collect();
        serde_json::json!({
            "clusterName": "netns",
            "workerCount": workers.len(),
            "coordinatorNode": node(&self.hosts[0]),
            "workerNodes": workers,
            "clusterBaseFolder": self.nodes_dir(),
            "archiveBaseFolder": self.dir.join("archive"),
            "backupBaseFolder": self.dir.join("backup"),
            "pgBinDir": crate::common::PG_BIN,
            "ssh": {
                "user": "postgres",
                "identityFile": self.identity_file(),
                "knownHostsFile": self.known_hosts_file(),
            },
        })
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let out = Command::new("bash")
            .arg(script())
            .arg("down")
            .arg(&self.dir)
            .output();
        match out {
            Ok(out) if out.status.success() => {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
            other => eprintln!(
                "netns.sh down {} failed ({other:?}); tear down by hand: bash scripts/netns.sh down {}",
                self.dir.display(),
                self.dir.display()
            ),
        }
    }
}

/// Runs `sql` on the host at `addr` as `postgres` (the topology's servers trust the private
/// subnet); returns the first column of the first row, if any.
#[allow(dead_code)] // tests/netns.rs does not use it
pub async fn sql(addr: &str, sql: &str) -> Option<String> {
    let (client, connection) = tokio_postgres::connect(
        &format!("host={addr} port=5432 user=postgres dbname=postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    tokio::spawn(connection);
    let rows = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql} on {addr}: {e:?}"));
    rows.into_iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    })
}

/// The rows of table `t` on the host at `addr`.
#[allow(dead_code)] // tests/netns.rs does not use it
pub async fn count(addr: &str) -> i64 {
    sql(addr, "SELECT count(*) FROM t")
        .await
        .unwrap()
        .parse()
        .unwrap()
}
