//! [`FakeBackend`]: a scripted, in-memory stand-in for the node hosts, for unit tests of the plans'
//! orchestration without servers (available under `cfg(test)` and the `fake` feature).
//!
//! Each node's host is a map of paths (folders and files with contents) plus the state of its
//! server (running or not, in recovery, paused). Every call is written to a call log
//! (`worker1: rename /a -> /b`), and any call can be scripted to fail ("the 2nd `rename` on
//! worker1") with an [`Error::Node`] naming the node and the call, without any effect.
//!
//! SQL: [`ClusterBackend::connect`] gives a real `tokio_postgres::Client` connected to a loopback
//! listener of the fake (started at the first connect) that speaks just enough of PostgreSQL's
//! protocol, and answers only what the waits and observations ask, from the fake server's state:
//! `observe::node`'s queries, `WaitPaused`'s pause state, `Resume` (promotes: recovery ends, the
//! timeline goes up, `recovery.signal` goes), `WaitPromoted`'s query, and `pg_reload_conf()`.
//! Connecting to a node whose server does not run fails, as does any other statement (so
//! `SetParameters`, `CreateRestorePoint`, `SwitchWalAndWait` and `BaseBackup` cannot run here).
//! Each statement answered is logged as `node: sql:<name>` and can be scripted to fail like a
//! method, as `sql:pause_state`, `sql:observe`, `sql:settings`, `sql:resume`,
//! `sql:promotion_state` or `sql:reload`.
//!
//! The model also checks what the real hosts would not tolerate and records it as a violation
//! ([`FakeBackend::violations`]) rather than failing: moving a running server's data directory.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    BackupFiles, ClusterBackend, FileSync, ServerState, StartWait, TablespaceTarget,
    PENDING_CONTROL_FILE,
};
use crate::config::{ClusterConfig, NodeConfig};
use crate::error::{Error, Result};
use crate::wal::Lsn;

mod wire;

/// One path on a fake host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A folder.
    Dir,
    /// A file and its contents.
    File(Vec<u8>),
}

/// The server of one fake node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FakeServer {
    /// Whether it runs (on the node's `data_dir`).
    pub running: bool,
    /// Whether it was started with a `recovery.signal` and is recovering.
    pub in_recovery: bool,
    /// Whether its recovery is paused (the fake reaches its target as soon as it starts).
    pub paused: bool,
    /// Its timeline (1 for a data directory made by the fake; a promotion adds one).
    pub timeline: u32,
    /// The LSN it reports: replayed up to in recovery, its current one otherwise.
    pub replay_lsn: Lsn,
}

/// One node's host: its paths and its server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeHost {
    /// Every path that exists, with its parents listed too.
    pub paths: BTreeMap<PathBuf, Entry>,
    /// The node's server.
    pub server: FakeServer,
}

impl FakeHost {
    fn is_dir(&self, path: &Path) -> bool {
        matches!(self.paths.get(path), Some(Entry::Dir))
    }

    fn parent_is_dir(&self, path: &Path) -> bool {
        path.parent().is_some_and(|p| self.is_dir(p))
    }

    /// Makes `path` a folder, with its missing parents.
    fn make_dirs(&mut self, path: &Path) {
        for a in path.ancestors() {
            self.paths.entry(a.to_path_buf()).or_insert(Entry::Dir);
        }
    }
}

/// A scripted failure: the `nth` (from 1) call of `method` on `node`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    node: String,
    method: String,
    nth: usize,
}

#[derive(Debug, Default)]
struct Inner {
    hosts: BTreeMap<String, FakeHost>,
    log: Vec<String>,
    calls: HashMap<(String, String), usize>,
    failures: Vec<Failure>,
    violations: Vec<String>,
    /// The WAL a pre-flight holds for each node's spool, by segment name.
    held: BTreeMap<String, Vec<String>>,
    delay: Duration,
    in_flight: usize,
    max_in_flight: usize,
    /// The server's error quoted by a failed `base_backup_stream` (default: the English one).
    stream_error: Option<String>,
}

/// An in-memory [`ClusterBackend`] with scripted failures and a call log; see the module docs.
#[derive(Debug)]
pub struct FakeBackend {
    config: ClusterConfig,
    inner: Arc<Mutex<Inner>>,
    /// The port of the SQL listener, once started.
    port: tokio::sync::OnceCell<u16>,
}

impl Inner {
    /// Logs and counts a call; whether it is scripted to fail.
    fn record(&mut self, node: &str, method: &str, args: String) -> bool {
        let count = self
            .calls
            .entry((node.to_string(), method.to_string()))
            .or_insert(0);
        *count += 1;
        let nth = *count;
        let fails = self
            .failures
            .iter()
            .any(|f| f.node == node && f.method == method && f.nth == nth);
        let line = if args.is_empty() {
            format!("{node}: {method}")
        } else {
            format!("{node}: {method} {args}")
        };
        self.log.push(if fails {
            format!("{line} (injected failure)")
        } else {
            line
        });
        fails
    }
}

/// Counts a call as in flight until dropped.
struct InFlight<'a>(&'a FakeBackend);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.lock().in_flight -= 1;
    }
}

impl FakeBackend {
    /// A fake for every node of `config`: each host holds `clusterBaseFolder` (and its parents),
    /// no data directory, and a stopped server.
    pub fn new(config: ClusterConfig) -> Self {
        let mut hosts = BTreeMap::new();
        for node in config.nodes() {
            let mut host = FakeHost::default();
            host.make_dirs(&config.cluster_base_folder);
            hosts.insert(node.name.clone(), host);
        }
        FakeBackend {
            config,
            inner: Arc::new(Mutex::new(Inner {
                hosts,
                ..Inner::default()
            })),
            port: tokio::sync::OnceCell::new(),
        }
    }

    /// Another handle on the same hosts, servers and call log (for a [`crate::Cluster`], which
    /// owns its backend, while the test keeps this one to look and to script).
    pub fn share(&self) -> Self {
        FakeBackend {
            config: self.config.clone(),
            inner: self.inner.clone(),
            port: tokio::sync::OnceCell::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn node_config(&self, node: &str) -> &NodeConfig {
        self.config
            .node(node)
            .unwrap_or_else(|| panic!("the fake's config has no node {node}"))
    }

    /// Gives `node` a data directory (`PG_VERSION`, `global/pg_control`, an empty
    /// `postgresql.auto.conf`) at its `data_dir`, with its server running or stopped, on
    /// timeline 1.
    pub fn init_data_dir(&self, node: &str, running: bool) {
        let data_dir = self.config.data_dir(self.node_config(node));
        let mut inner = self.lock();
        let host = inner.hosts.get_mut(node).expect("known node");
        write_data_dir(host, &data_dir, b"", "global/pg_control");
        host.server = FakeServer {
            running,
            timeline: 1,
            ..FakeServer::default()
        };
    }

    /// Sets the LSN `node`'s server reports (where a recovery pauses, for `WaitPaused`).
    pub fn set_replay_lsn(&self, node: &str, lsn: Lsn) {
        self.lock()
            .hosts
            .get_mut(node)
            .expect("known node")
            .server
            .replay_lsn = lsn;
    }

    /// Creates a folder (and its parents) on `node`'s host.
    pub fn add_dir(&self, node: &str, path: impl AsRef<Path>) {
        let mut inner = self.lock();
        inner
            .hosts
            .get_mut(node)
            .expect("known node")
            .make_dirs(path.as_ref());
    }

    /// Writes a file (creating its parents) on `node`'s host.
    pub fn add_file(&self, node: &str, path: impl AsRef<Path>, contents: impl Into<Vec<u8>>) {
        let path = path.as_ref();
        let mut inner = self.lock();
        let host = inner.hosts.get_mut(node).expect("known node");
        if let Some(parent) = path.parent() {
            host.make_dirs(parent);
        }
        host.paths
            .insert(path.to_path_buf(), Entry::File(contents.into()));
    }

    /// Makes the `nth` call (counting from 1, failed calls included) of `method` on `node` fail.
    /// `method` is the [`ClusterBackend`] method's name (`rename`, `stop`, `extract_backup`, ...).
    pub fn fail(&self, node: &str, method: &str, nth: usize) {
        self.lock().failures.push(Failure {
            node: node.into(),
            method: method.into(),
            nth,
        });
    }

    /// The server error a failed `base_backup_stream` quotes (as if the server's `lc_messages`
    /// were another language), in place of the English "has already been removed" one.
    pub fn set_stream_error(&self, server_error: &str) {
        self.lock().stream_error = Some(server_error.to_string());
    }

    /// Forgets the calls so far (log and counts; scripted failures count from here on).
    pub fn clear_calls(&self) {
        let mut inner = self.lock();
        inner.log.clear();
        inner.calls.clear();
        inner.max_in_flight = 0;
    }

    /// Makes every call wait `delay` before it acts (so calls of several nodes overlap and
    /// [`Self::max_in_flight`] shows how many ran at once).
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Every call so far, `node: method args`, in the order they were made; a scripted failure
    /// ends with ` (injected failure)`.
    pub fn calls(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    /// The segments a pre-flight holds for `node`'s spool now (empty once let go of).
    pub fn held_proven_wal(&self, node: &str) -> Vec<String> {
        self.lock().held.get(node).cloned().unwrap_or_default()
    }

    /// The calls of one node so far, without the `node: ` prefix.
    pub fn node_calls(&self, node: &str) -> Vec<String> {
        let prefix = format!("{node}: ");
        self.lock()
            .log
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
            .collect()
    }

    /// How many calls of `method` were made on `node` (failed ones included).
    pub fn call_count(&self, node: &str, method: &str) -> usize {
        self.lock()
            .calls
            .get(&(node.to_string(), method.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// The most calls that were under way at the same time (see [`Self::set_delay`]).
    pub fn max_in_flight(&self) -> usize {
        self.lock().max_in_flight
    }

    /// What the model found that a real host would not tolerate.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// A copy of `node`'s host.
    pub fn host(&self, node: &str) -> FakeHost {
        self.lock().hosts.get(node).cloned().unwrap_or_default()
    }

    /// `node`'s server.
    pub fn server(&self, node: &str) -> FakeServer {
        self.host(node).server
    }

    /// The entry at `path` on `node`'s host.
    pub fn entry(&self, node: &str, path: impl AsRef<Path>) -> Option<Entry> {
        self.lock()
            .hosts
            .get(node)
            .and_then(|h| h.paths.get(path.as_ref()).cloned())
    }

    /// The contents of the file at `path` on `node`'s host.
    pub fn file(&self, node: &str, path: impl AsRef<Path>) -> Option<Vec<u8>> {
        match self.entry(node, path) {
            Some(Entry::File(c)) => Some(c),
            _ => None,
        }
    }

    /// The paths directly inside `dir` on `node`'s host, sorted.
    pub fn children(&self, node: &str, dir: impl AsRef<Path>) -> Vec<PathBuf> {
        let dir = dir.as_ref();
        self.lock()
            .hosts
            .get(node)
            .map(|h| {
                h.paths
                    .keys()
                    .filter(|p| p.parent() == Some(dir))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Logs and counts a call, waits the delay, and fails it when scripted to.
    async fn call(&self, node: &NodeConfig, method: &str, args: String) -> Result<()> {
        let delay = {
            let mut inner = self.lock();
            inner.in_flight += 1;
            inner.max_in_flight = inner.max_in_flight.max(inner.in_flight);
            inner.delay
        };
        let _guard = InFlight(self);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut inner = self.lock();
        if inner.record(&node.name, method, args) {
            let nth = inner.calls[&(node.name.clone(), method.to_string())];
            return Err(Error::node(
                &node.name,
                method,
                format!("injected failure of call {nth} of {method} (fake backend)"),
            ));
        }
        Ok(())
    }

    /// Runs `f` on `node`'s host.
    fn with_host<T>(
        &self,
        node: &NodeConfig,
        f: impl FnOnce(&mut FakeHost, &mut Vec<String>) -> T,
    ) -> T {
        let mut inner = self.lock();
        let Inner {
            hosts, violations, ..
        } = &mut *inner;
        let host = hosts.entry(node.name.clone()).or_default();
        f(host, violations)
    }
}

/// Writes a data directory at `data_dir` with its control file under `control` (the real name or
/// the pending one).
fn write_data_dir(host: &mut FakeHost, data_dir: &Path, auto_conf: &[u8], control: &str) {
    host.make_dirs(&data_dir.join("global"));
    host.make_dirs(&data_dir.join("pg_wal"));
    host.paths
        .insert(data_dir.join("PG_VERSION"), Entry::File(b"15\n".to_vec()));
    host.paths
        .insert(data_dir.join(control), Entry::File(b"control".to_vec()));
    host.paths.insert(
        data_dir.join("postgresql.auto.conf"),
        Entry::File(auto_conf.to_vec()),
    );
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

fn missing(node: &NodeConfig, action: &str, path: &Path, what: &str) -> Error {
    Error::node(&node.name, action, format!("{} {what}", path.display()))
}

#[async_trait]
impl ClusterBackend for FakeBackend {
    fn config(&self) -> &ClusterConfig {
        &self.config
    }

    async fn connect(&self, node: &NodeConfig) -> Result<tokio_postgres::Client> {
        self.call(node, "connect", String::new()).await?;
        let port = self
            .port
            .get_or_try_init(|| async {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
                    .await
                    .map_err(|e| {
                        Error::node(&node.name, "start the fake SQL listener", e.to_string())
                    })?;
                let port = listener
                    .local_addr()
                    .map_err(|e| {
                        Error::node(&node.name, "start the fake SQL listener", e.to_string())
                    })?
                    .port();
                let data_dirs = self
                    .config
                    .nodes()
                    .map(|n| (n.name.clone(), self.config.data_dir(n)))
                    .collect();
                tokio::spawn(wire::serve(listener, self.inner.clone(), data_dirs));
                Ok::<u16, Error>(port)
            })
            .await?;
        let (client, connection) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(*port)
            .user("fake")
            .dbname(&node.name)
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| Error::sql(&node.name, "connect to the fake server", e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    async fn server_state(&self, node: &NodeConfig) -> Result<ServerState> {
        self.call(node, "server_state", String::new()).await?;
        let data_dir = self.config.data_dir(node);
        Ok(self.with_host(node, |h, _| {
            if !matches!(
                h.paths.get(&data_dir.join("PG_VERSION")),
                Some(Entry::File(_))
            ) {
                ServerState::Missing
            } else if h.server.running {
                ServerState::Running
            } else {
                ServerState::Stopped
            }
        }))
    }

    async fn init_node(&self, node: &NodeConfig, settings: &[(String, String)]) -> Result<()> {
        self.call(node, "init_node", String::new()).await?;
        let data_dir = self.config.data_dir(node);
        self.with_host(node, |h, _| {
            if h.paths.contains_key(&data_dir) {
                return Err(missing(node, "initdb", &data_dir, "exists already"));
            }
            write_data_dir(h, &data_dir, b"", "global/pg_control");
            let conf: String = settings
                .iter()
                .map(|(k, v)| format!("{k} = {v}\n"))
                .collect();
            h.paths.insert(
                data_dir.join("postgresql.conf"),
                Entry::File(conf.into_bytes()),
            );
            Ok(())
        })
    }

    async fn start(&self, node: &NodeConfig, wait: StartWait) -> Result<()> {
        self.call(node, "start", format!("{wait:?}")).await?;
        let data_dir = self.config.data_dir(node);
        self.with_host(node, |h, _| {
            if h.server.running {
                return Err(Error::node(
                    &node.name,
                    "start",
                    "a server is running already",
                ));
            }
            for needed in ["PG_VERSION", "global/pg_control"] {
                if !matches!(h.paths.get(&data_dir.join(needed)), Some(Entry::File(_))) {
                    return Err(missing(node, "start", &data_dir.join(needed), "is missing"));
                }
            }
            let in_recovery = h.paths.contains_key(&data_dir.join("recovery.signal"));
            h.server = FakeServer {
                running: true,
                in_recovery,
                paused: in_recovery,
                ..h.server
            };
            Ok(())
        })
    }

    async fn stop(&self, node: &NodeConfig) -> Result<()> {
        self.call(node, "stop", String::new()).await?;
        self.with_host(node, |h, _| {
            if !h.server.running {
                return Err(Error::node(&node.name, "stop", "no server running"));
            }
            h.server = FakeServer {
                running: false,
                in_recovery: false,
                paused: false,
                ..h.server
            };
            Ok(())
        })
    }

    /// A tar of `PG_VERSION` and a manifest listing it. An injected failure fails as
    /// pg_basebackup `-X fetch` does when a checkpoint recycled a segment of the backup: the tar
    /// cut short and the exit quoting the server's error.
    async fn base_backup_stream(
        &self,
        node: &NodeConfig,
        label: &str,
        wal: super::StreamedWal,
    ) -> Result<super::BackupStream> {
        let mode = match wal {
            super::StreamedWal::Fetch => "fetch",
            super::StreamedWal::None => "none",
        };
        let failed = self
            .call(node, "base_backup_stream", format!("{mode} {label}"))
            .await
            .is_err();
        let version = b"15\n";
        let manifest = format!(
            r#"{{"Files": [{{"Path": "PG_VERSION", "Size": 3, "Checksum-Algorithm": "CRC32C", "Checksum": "{:08x}"}}], "WAL-Ranges": [{{"Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100"}}]}}"#,
            u32::from_be_bytes(crc32c::crc32c(version).to_le_bytes())
        );
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in [
            ("PG_VERSION", &version[..]),
            ("backup_manifest", manifest.as_bytes()),
        ] {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            header.set_cksum();
            builder
                .append_data(&mut header, path, data)
                .expect("a tar in memory");
        }
        let mut tar = builder.into_inner().expect("a tar in memory");
        let name = node.name.clone();
        let server_error = self.lock().stream_error.clone().unwrap_or_else(|| {
            "ERROR:  requested WAL segment 000000010000000000000002 has already been removed".into()
        });
        let done: futures::future::BoxFuture<'static, Result<()>> = if failed {
            tar.truncate(700);
            Box::pin(async move {
                Err(Error::node(
                    &name,
                    "pg_basebackup",
                    format!("pg_basebackup: error: backup failed: {server_error}"),
                ))
            })
        } else {
            Box::pin(async { Ok(()) })
        };
        Ok(super::BackupStream {
            tar: Box::new(std::io::Cursor::new(tar)),
            done,
        })
    }

    async fn base_backup(
        &self,
        node: &NodeConfig,
        folder: &Path,
        label: &str,
    ) -> Result<BackupFiles> {
        self.call(node, "base_backup", format!("{} {label}", shown(folder)))
            .await?;
        self.with_host(node, |h, _| {
            if !h.server.running {
                return Err(Error::node(&node.name, "pg_basebackup", "no server running"));
            }
            if h.paths.keys().any(|p| p != folder && p.starts_with(folder)) {
                return Err(missing(node, "pg_basebackup", folder, "is not empty"));
            }
            h.make_dirs(folder);
            let manifest = r#"{"WAL-Ranges": [{"Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100"}]}"#;
            for (name, contents) in [
                ("base.tar", &b"base"[..]),
                ("pg_wal.tar", b"wal"),
                ("backup_manifest", manifest.as_bytes()),
            ] {
                h.paths
                    .insert(folder.join(name), Entry::File(contents.to_vec()));
            }
            Ok(BackupFiles {
                folder: folder.to_path_buf(),
                bytes: 7 + manifest.len() as u64,
                tablespaces: Vec::new(),
            })
        })
    }

    async fn extract_backup(
        &self,
        node: &NodeConfig,
        backup: &Path,
        data_dir: &Path,
        tablespaces: &[TablespaceTarget],
    ) -> Result<()> {
        self.call(
            node,
            "extract_backup",
            format!("{} -> {}", shown(backup), shown(data_dir)),
        )
        .await?;
        self.with_host(node, |h, _| {
            if !h.is_dir(backup) {
                return Err(missing(node, "extract", backup, "is not a backup folder"));
            }
            if h.paths.contains_key(data_dir) {
                return Err(missing(node, "extract", data_dir, "exists already"));
            }
            if !h.parent_is_dir(data_dir) {
                return Err(missing(node, "extract", data_dir, "has no parent folder"));
            }
            for t in tablespaces {
                if h.paths.contains_key(&t.location) || !h.parent_is_dir(&t.location) {
                    return Err(missing(
                        node,
                        "extract",
                        &t.location,
                        "exists already or has no parent folder",
                    ));
                }
            }
            let restored = format!("# restored from {}\n", backup.display());
            write_data_dir(h, data_dir, restored.as_bytes(), PENDING_CONTROL_FILE);
            for t in tablespaces {
                h.paths.insert(t.location.clone(), Entry::Dir);
            }
            Ok(())
        })
    }

    async fn install_control_file(
        &self,
        node: &NodeConfig,
        data_dir: &Path,
        _tablespaces: &[TablespaceTarget],
    ) -> Result<()> {
        self.call(node, "install_control_file", shown(data_dir))
            .await?;
        self.with_host(node, |h, _| {
            let pending = data_dir.join(PENDING_CONTROL_FILE);
            let control = data_dir.join("global/pg_control");
            match (
                h.paths.contains_key(&pending),
                h.paths.contains_key(&control),
            ) {
                (true, false) => {
                    let contents = h.paths.remove(&pending).expect("present");
                    h.paths.insert(control, contents);
                    Ok(())
                }
                (false, true) => Ok(()),
                (true, true) => Err(missing(
                    node,
                    "install pg_control",
                    &control,
                    "exists already beside the pending one",
                )),
                (false, false) => Err(missing(
                    node,
                    "install pg_control",
                    &control,
                    "is missing and nothing is pending",
                )),
            }
        })
    }

    async fn create_dir(&self, node: &NodeConfig, path: &Path) -> Result<()> {
        self.call(node, "create_dir", shown(path)).await?;
        self.with_host(node, |h, _| {
            if let Some(a) = path
                .ancestors()
                .find(|a| matches!(h.paths.get(*a), Some(Entry::File(_))))
            {
                return Err(missing(node, "create folder", a, "is a file"));
            }
            h.make_dirs(path);
            Ok(())
        })
    }

    async fn exists(&self, node: &NodeConfig, path: &Path) -> Result<bool> {
        self.call(node, "exists", shown(path)).await?;
        Ok(self.with_host(node, |h, _| h.paths.contains_key(path)))
    }

    async fn rename(&self, node: &NodeConfig, from: &Path, to: &Path) -> Result<()> {
        self.call(node, "rename", format!("{} -> {}", shown(from), shown(to)))
            .await?;
        let data_dir = self.config.data_dir(node);
        self.with_host(node, |h, violations| {
            if !h.paths.contains_key(from) {
                return Err(missing(node, "rename", from, "does not exist"));
            }
            if h.paths.contains_key(to) {
                return Err(missing(node, "rename", to, "exists already"));
            }
            if !h.parent_is_dir(to) {
                return Err(missing(node, "rename", to, "has no parent folder"));
            }
            if h.server.running && (data_dir.starts_with(from) || from.starts_with(&data_dir)) {
                violations.push(format!(
                    "{}: renamed {} while its server runs",
                    node.name,
                    from.display()
                ));
            }
            let moved: Vec<PathBuf> = h
                .paths
                .keys()
                .filter(|p| p.starts_with(from))
                .cloned()
                .collect();
            for p in moved {
                let entry = h.paths.remove(&p).expect("listed");
                let rest = p.strip_prefix(from).expect("under from");
                let new = if rest.as_os_str().is_empty() {
                    to.to_path_buf()
                } else {
                    to.join(rest)
                };
                h.paths.insert(new, entry);
            }
            Ok(())
        })
    }

    async fn read_file(&self, node: &NodeConfig, path: &Path) -> Result<Option<String>> {
        self.call(node, "read_file", shown(path)).await?;
        self.with_host(node, |h, _| match h.paths.get(path) {
            None => Ok(None),
            Some(Entry::File(c)) => Ok(Some(String::from_utf8_lossy(c).into_owned())),
            Some(Entry::Dir) => Err(missing(node, "read", path, "is a folder")),
        })
    }

    async fn write_file(
        &self,
        node: &NodeConfig,
        path: &Path,
        contents: &[u8],
        sync: FileSync,
    ) -> Result<()> {
        self.call(node, "write_file", format!("{} ({sync:?})", shown(path)))
            .await?;
        self.with_host(node, |h, _| {
            if !h.parent_is_dir(path) {
                return Err(missing(node, "write", path, "has no parent folder"));
            }
            if h.is_dir(path) {
                return Err(missing(node, "write", path, "is a folder"));
            }
            h.paths
                .insert(path.to_path_buf(), Entry::File(contents.to_vec()));
            Ok(())
        })
    }

    async fn remove_file(&self, node: &NodeConfig, path: &Path) -> Result<()> {
        self.call(node, "remove_file", shown(path)).await?;
        self.with_host(node, |h, _| match h.paths.get(path) {
            Some(Entry::File(_)) => {
                h.paths.remove(path);
                Ok(())
            }
            Some(Entry::Dir) => Err(missing(node, "remove", path, "is a folder")),
            None => Err(missing(node, "remove", path, "does not exist")),
        })
    }

    fn hold_proven_wal(&self, node: &str, segments: Vec<crate::wal::ProvenSegment>) {
        // Kept for held_proven_wal and recorded as a call, not used: the fake's start_prefetch
        // makes the spool whatever is held. Letting go (nothing held) is no call worth a
        // test's attention, so only a hold is recorded.
        let names: Vec<String> = segments.iter().map(|s| s.name.clone()).collect();
        let mut inner = self.lock();
        if names.is_empty() {
            inner.held.remove(node);
        } else {
            inner.record(node, "hold_proven_wal", names.join(" "));
            inner.held.insert(node.to_string(), names);
        }
    }

    async fn start_prefetch(
        &self,
        node: &NodeConfig,
        pg_wal: &Path,
        first: &str,
        count: usize,
        segment_size: u64,
    ) -> Result<()> {
        self.call(
            node,
            "start_prefetch",
            match segment_size {
                crate::wal::DEFAULT_SEGMENT_SIZE => format!("{} {first} {count}", shown(pg_wal)),
                size => format!("{} {first} {count} size={size}", shown(pg_wal)),
            },
        )
        .await?;
        // The spool with the window recorded, as the real worker leaves it.
        self.with_host(node, |h, _| {
            if !h.is_dir(pg_wal) {
                return Err(missing(
                    node,
                    "start the WAL prefetch",
                    pg_wal,
                    "is not a folder",
                ));
            }
            let spool = pg_wal.join(crate::archiving::SPOOL_DIR);
            h.make_dirs(&spool);
            h.paths.insert(
                spool.join(".window"),
                Entry::File(format!("{first} {count}").into_bytes()),
            );
            Ok(())
        })
    }

    async fn remove_spool(
        &self,
        node: &NodeConfig,
        pg_wal: &Path,
    ) -> Result<crate::archiving::SpoolRemoval> {
        self.call(node, "remove_spool", shown(pg_wal)).await?;
        let spool = pg_wal.join(crate::archiving::SPOOL_DIR);
        Ok(self.with_host(node, |h, _| {
            let before = h.paths.len();
            h.paths.retain(|p, _| !p.starts_with(&spool));
            if h.paths.len() == before {
                crate::archiving::SpoolRemoval::Absent
            } else {
                crate::archiving::SpoolRemoval::Removed
            }
        }))
    }

    async fn log_tail(&self, node: &NodeConfig, _lines: usize) -> String {
        format!("(fake server log of {})", node.name)
    }

    async fn citus_available(&self, node: &NodeConfig) -> Result<bool> {
        self.call(node, "citus_available", String::new()).await?;
        Ok(true)
    }
}
