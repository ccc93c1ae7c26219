//! The cluster configuration: `cluster-config.json` in, a validated [`ClusterConfig`] out.
//!
//! The file format is the one the old `citus_dev` scripts read, so existing files work unchanged;
//! `osUser` and `pgBinDir` are optional additions. Every rule is checked before anything runs, and
//! every error names the field (and the JSON position where there is one) and the fix.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv6Addr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::repository::codec::Compression;
use crate::repository::object::S3Settings;

mod connection;
mod ssh;
pub use connection::{ConnectionSettings, SslMode};
pub use ssh::{SshConfig, DEFAULT_MAX_SESSIONS, DEFAULT_SSH_PORT};

/// Where the WAL archive is kept when the config has a `repository` object; without one, WAL
/// goes into `<archiveBaseFolder>/<node>` through PostgreSQL's `basic_archive`. Base backups
/// stay in `backupBaseFolder` either way. Never holds credentials: S3 ones come from the
/// environment (`AWS_*` variables).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum RepositoryConfig {
    /// `{"type": "posix", "path": "/srv/wal-repo"}`: a folder on this host.
    Posix {
        /// The repository's folder (absolute).
        path: PathBuf,
    },
    /// `{"type": "s3", "bucket": ..., "prefix": ..., "region": ..., "endpoint": ..., "allowHttp": ...}`.
    S3(S3Settings),
}

/// The role a node plays in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// The Citus coordinator (on plain PostgreSQL: the first node).
    Coordinator,
    /// A Citus worker.
    Worker,
}

/// One PostgreSQL server of the cluster, as the config describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// The node's name; also the name of its data directory, WAL archive and backup folders.
    pub name: String,
    /// The host name the node listens on and is reached at.
    pub hostname: String,
    /// The TCP port.
    pub port: u16,
    /// The database user (a superuser) the library connects as.
    pub username: String,
    /// The database the library connects to (Citus lives in this one).
    pub dbname: String,
    /// Coordinator or worker.
    pub role: NodeRole,
    /// This node's own `ssh` object, overriding the cluster's keys ([`ClusterConfig::ssh_for`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshConfig>,
    /// This node's own connection keys (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`,
    /// `passfile`), over the cluster's ([`ClusterConfig::connection_for`]).
    #[serde(default, skip_serializing_if = "ConnectionSettings::is_empty")]
    pub connection: ConnectionSettings,
}

impl NodeConfig {
    /// A libpq connection string (`host=... port=... user=... dbname=...`), usable with psql
    /// and psycopg. It holds no password: libpq finds one the usual ways (`.pgpass`,
    /// `PGPASSWORD`).
    pub fn dsn(&self) -> String {
        // libpq: a value with spaces, quotes or backslashes goes in single quotes, with `'`
        // and `\` escaped by a backslash.
        let value = |v: &str| {
            if !v.is_empty() && !v.contains([' ', '\'', '\\', '=']) {
                v.to_string()
            } else {
                format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
            }
        };
        format!(
            "host={} port={} user={} dbname={}",
            value(&self.hostname),
            self.port,
            value(&self.username),
            value(&self.dbname)
        )
    }
}

/// One node as a client or a test harness needs it ([`ClusterConfig::node_infos`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(
    feature = "python",
    pyo3::pyclass(module = "citus_recovery", name = "NodeInfo", get_all, frozen, eq)
)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// `coordinator` or `worker`.
    pub role: String,
    /// The host name it listens on.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The database user the library connects as.
    pub user: String,
    /// The database the library connects to.
    pub dbname: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// A libpq connection string ([`NodeConfig::dsn`]).
    pub dsn: String,
}

/// A validated cluster configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterConfig {
    /// The cluster's name (`clusterName`).
    pub cluster_name: String,
    /// The coordinator (`coordinatorNode`).
    pub coordinator: NodeConfig,
    /// The workers (`workerNodes`), in config order.
    pub workers: Vec<NodeConfig>,
    /// Parent of the nodes' data directories (`clusterBaseFolder`).
    pub cluster_base_folder: PathBuf,
    /// Parent of the nodes' WAL archives (`archiveBaseFolder`).
    pub archive_base_folder: PathBuf,
    /// Where base backups and the restore point record live (`backupBaseFolder`).
    pub backup_base_folder: PathBuf,
    /// The backup restore-start uses when none is given (`backupToRestore`).
    pub backup_to_restore: Option<String>,
    /// The restore point restore-start uses when none is given (`restorePoint`).
    pub restore_point: Option<String>,
    /// The OS user that owns and runs the servers (`osUser`); `None`: the current user, or
    /// `postgres` when that is root.
    pub os_user: Option<String>,
    /// The PostgreSQL bin folder (`pgBinDir`); `None`: from `pg_config`, else Debian's path.
    pub pg_bin_dir: Option<PathBuf>,
    /// The repository of the WAL archive (`repository`); `None`: `archiveBaseFolder`.
    pub repository: Option<RepositoryConfig>,
    /// How WAL is compressed in the repository (`compression`; default zstd level 1).
    #[serde(serialize_with = "serialize_display")]
    pub compression: Compression,
    /// How many WAL segments archive-get prefetches after the one PostgreSQL asks for
    /// (`archiveGetQueue`; default [`DEFAULT_ARCHIVE_GET_QUEUE`], 0 = off, at most
    /// [`MAX_ARCHIVE_GET_QUEUE`]).
    pub archive_get_queue: usize,
    /// The citus-recovery binary PostgreSQL runs as `archive_command`/`restore_command`
    /// (`binary`); `None`: the running binary for the CLI, an error for the library.
    pub binary: Option<PathBuf>,
    /// How node hosts are reached over SSH (`ssh`); `None` (and no node's own `ssh`): the
    /// nodes run on this host.
    pub ssh: Option<SshConfig>,
    /// What `expire` keeps (`retention`); `None`: expire needs `--retain-full`/`--retain-days`.
    pub retention: Option<Retention>,
    /// The thresholds of `check` (`check`; every one has a default).
    pub check: CheckThresholds,
    /// The cluster-wide connection keys (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`,
    /// `passfile`); a node's own keys override them.
    #[serde(skip_serializing_if = "ConnectionSettings::is_empty")]
    pub connection: ConnectionSettings,
    /// How `restore-point` waits for its locks under load (`restorePointLockTimeout` in
    /// seconds, default 2; `restorePointRetries`, default 3).
    pub restore_point_locks: RestorePointLocks,
    /// What `drill` checks on the restored fork (`drill`).
    pub drill: DrillConfig,
    /// The file this config was read from, if any.
    pub source: Option<PathBuf>,
}

/// What `expire` keeps: `{"full": 7}`, `{"days": 30}` or both. A backup is kept when either
/// rule keeps it; the newest complete backup is always kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Keep the newest `full` complete backups (at least 1).
    #[serde(default)]
    pub full: Option<u32>,
    /// Keep every complete backup that ended less than `days` days ago (at least 1).
    #[serde(default)]
    pub days: Option<u32>,
}

/// The thresholds of `check` (`"check": {...}` in the config, camelCase keys). A value of
/// `null` turns that test off. Ages are in hours, lags in WAL segments.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CheckThresholds {
    /// Closed WAL segments not yet archived: warning at this many (default 8).
    pub archive_lag_warning: Option<u64>,
    /// Closed WAL segments not yet archived: critical at this many (default 64).
    pub archive_lag_critical: Option<u64>,
    /// Age of the newest complete backup in hours: warning (default 26).
    pub backup_age_warning_hours: Option<f64>,
    /// Age of the newest complete backup in hours: critical (default 50; no backup at all is
    /// critical unless this is `null`, then a warning).
    pub backup_age_critical_hours: Option<f64>,
    /// Age of the newest restore point in hours: warning (default 26).
    pub restore_point_age_warning_hours: Option<f64>,
    /// Age of the newest restore point in hours: critical (default off).
    pub restore_point_age_critical_hours: Option<f64>,
    /// Free space on a node's data directory file system or the repository, in percent:
    /// warning at or below (default 15).
    pub free_space_warning_percent: Option<f64>,
    /// Free space in percent: critical at or below (default 5).
    pub free_space_critical_percent: Option<f64>,
    /// How long the round trip (`--round-trip`) waits for each node's segment, in seconds
    /// (default 60); longer is critical.
    pub round_trip_timeout_seconds: f64,
}

impl Default for CheckThresholds {
    fn default() -> Self {
        CheckThresholds {
            archive_lag_warning: Some(8),
            archive_lag_critical: Some(64),
            backup_age_warning_hours: Some(26.0),
            backup_age_critical_hours: Some(50.0),
            restore_point_age_warning_hours: Some(26.0),
            restore_point_age_critical_hours: None,
            free_space_warning_percent: Some(15.0),
            free_space_critical_percent: Some(5.0),
            round_trip_timeout_seconds: 60.0,
        }
    }
}

/// The `drill` object: SQL run on the drill's restored fork.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillConfig {
    /// Each query, in order; all must pass for the drill to pass.
    #[serde(default)]
    pub checks: Vec<DrillCheck>,
}

/// One SQL check of `drill`: `{"node": "coordinator", "sql": "SELECT count(*) FROM t",
/// "expect": "42"}`; without `expect` the query must only run without error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillCheck {
    /// The node it runs on.
    pub node: String,
    /// The query; the first column of the first row is compared.
    pub sql: String,
    /// The expected value, as text (`psql` prints it so).
    #[serde(default)]
    pub expect: Option<String>,
}

/// How long `citus_create_restore_point` may wait for its locks, and how often it is tried:
/// it waits behind any transaction holding `pg_dist_node`, `pg_dist_partition` or
/// `pg_dist_transaction`, and every distributed commit queues behind its wait, so the wait is
/// bounded (`lock_timeout`) and retried after a short backoff instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RestorePointLocks {
    /// `lock_timeout` of each attempt, in milliseconds (`restorePointLockTimeout`, seconds).
    pub lock_timeout_ms: u64,
    /// Attempts after the first (`restorePointRetries`).
    pub retries: u32,
}

impl Default for RestorePointLocks {
    fn default() -> Self {
        RestorePointLocks {
            lock_timeout_ms: 2000,
            retries: 3,
        }
    }
}

impl RestorePointLocks {
    /// The pause before retry `n` (1-based): 250 ms doubling, at most 4 s, so writers that
    /// queued behind the failed attempt get through first.
    pub fn backoff(&self, n: u32) -> std::time::Duration {
        std::time::Duration::from_millis((250u64 << n.saturating_sub(1).min(4)).min(4000))
    }
}

// Serialize is derived for the config's JSON view; Eq is not (floats), ClusterConfig needs it.
impl Eq for CheckThresholds {}

fn serialize_display<S: serde::Serializer>(
    value: &Compression,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// Segments archive-get prefetches when the config says nothing (`archiveGetQueue`).
pub const DEFAULT_ARCHIVE_GET_QUEUE: usize = 8;
/// The largest `archiveGetQueue`: each queued segment is held decoded in memory once.
pub const MAX_ARCHIVE_GET_QUEUE: usize = 64;

/// The JSON shape, exactly as the old scripts wrote it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConfig {
    cluster_name: String,
    worker_count: usize,
    coordinator_node: RawNode,
    worker_nodes: Vec<RawNode>,
    cluster_base_folder: PathBuf,
    archive_base_folder: PathBuf,
    backup_base_folder: PathBuf,
    #[serde(default)]
    backup_to_restore: Option<String>,
    #[serde(default)]
    restore_point: Option<String>,
    #[serde(default)]
    os_user: Option<String>,
    #[serde(default)]
    pg_bin_dir: Option<PathBuf>,
    #[serde(default)]
    repository: Option<RepositoryConfig>,
    #[serde(default)]
    compression: Option<String>,
    #[serde(default)]
    archive_get_queue: Option<i64>,
    #[serde(default)]
    binary: Option<PathBuf>,
    #[serde(default)]
    ssh: Option<SshConfig>,
    retention: Option<Retention>,
    #[serde(default)]
    check: CheckThresholds,
    #[serde(default)]
    sslmode: Option<SslMode>,
    #[serde(default)]
    sslrootcert: Option<PathBuf>,
    #[serde(default)]
    sslcert: Option<PathBuf>,
    #[serde(default)]
    sslkey: Option<PathBuf>,
    #[serde(default)]
    passfile: Option<PathBuf>,
    /// Read only to be refused: the value is never kept.
    #[serde(default)]
    password: Option<serde::de::IgnoredAny>,
    restore_point_lock_timeout: Option<f64>,
    #[serde(default)]
    restore_point_retries: Option<u32>,
    #[serde(default)]
    drill: DrillConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: String,
    hostname: String,
    port: u16,
    username: String,
    dbname: String,
    #[serde(default)]
    ssh: Option<SshConfig>,
    #[serde(default)]
    sslmode: Option<SslMode>,
    #[serde(default)]
    sslrootcert: Option<PathBuf>,
    #[serde(default)]
    sslcert: Option<PathBuf>,
    #[serde(default)]
    sslkey: Option<PathBuf>,
    #[serde(default)]
    passfile: Option<PathBuf>,
    /// Read only to be refused: the value is never kept.
    #[serde(default)]
    password: Option<serde::de::IgnoredAny>,
}

impl ClusterConfig {
    /// Reads and validates a config file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: Some(path.to_path_buf()),
            field: "(file)".into(),
            problem: format!("cannot read it: {e}"),
            fix: "pass --config with the path of an existing cluster-config.json".into(),
        })?;
        Self::from_json_str(&text, Some(path))
    }

    /// Parses and validates config JSON; `path` is only used in error messages.
    pub fn from_json_str(text: &str, path: Option<&Path>) -> Result<Self> {
        let err = |field: String, problem: String, fix: &str| Error::Config {
            path: path.map(Path::to_path_buf),
            field,
            problem,
            fix: fix.into(),
        };
        let de = &mut serde_json::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = match e.path().to_string().as_str() {
                "." | "" => "(file)".to_string(),
                p => p.to_string(),
            };
            let inner = e.inner();
            let fix = match inner.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    "correct the JSON syntax at that position"
                }
                _ if inner.to_string().starts_with("unknown field")
                    && field.starts_with("repository") =>
                {
                    "remove the field or correct its spelling (names are camelCase); credentials \
                     never go in the config: give S3 ones in the environment (AWS_ACCESS_KEY_ID, \
                     AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) of the tool and of the servers"
                }
                _ if inner.to_string().starts_with("unknown field") => {
                    "remove the field or correct its spelling (names are camelCase)"
                }
                _ if inner.to_string().starts_with("missing field") => "add the field",
                _ => "give the field a value of the type named",
            };
            err(field, inner.to_string(), fix)
        })?;
        Self::from_raw(raw, path)
    }

    fn from_raw(raw: RawConfig, path: Option<&Path>) -> Result<Self> {
        let err = |field: &str, problem: String, fix: String| Error::Config {
            path: path.map(Path::to_path_buf),
            field: field.to_string(),
            problem,
            fix,
        };
        if raw.cluster_name.trim().is_empty() {
            return Err(err(
                "clusterName",
                "is empty".into(),
                "give the cluster a name".into(),
            ));
        }
        check_text(&raw.cluster_name).map_err(|p| err("clusterName", p, CONTROL_FIX.into()))?;
        for (field, value) in [
            ("osUser", &raw.os_user),
            ("backupToRestore", &raw.backup_to_restore),
            ("restorePoint", &raw.restore_point),
        ] {
            if let Some(value) = value {
                check_text(value).map_err(|p| err(field, p, CONTROL_FIX.into()))?;
            }
        }
        if raw.worker_count != raw.worker_nodes.len() {
            return Err(err(
                "workerCount",
                format!(
                    "is {} but workerNodes lists {} node(s)",
                    raw.worker_count,
                    raw.worker_nodes.len()
                ),
                "make workerCount equal to the number of entries in workerNodes".into(),
            ));
        }
        let node = |raw: RawNode, field: String, role| -> Result<NodeConfig> {
            check_node_name(&raw.name).map_err(|p| {
                err(
                    &format!("{field}.name"),
                    p,
                    "use letters, digits, '_', '-' or '.' (it becomes a folder name)".into(),
                )
            })?;
            check_node_name_is_free(&raw.name).map_err(|p| {
                err(
                    &format!("{field}.name"),
                    p,
                    "rename the node: the library keeps its own files (<node>.log, <node>.before-restore-<time>, catalog and lock files) beside the nodes' folders".into(),
                )
            })?;
            for (key, value) in [
                ("hostname", &raw.hostname),
                ("username", &raw.username),
                ("dbname", &raw.dbname),
            ] {
                if value.trim().is_empty() {
                    return Err(err(
                        &format!("{field}.{key}"),
                        "is empty".into(),
                        format!("give the node a {key}"),
                    ));
                }
                check_text(value)
                    .map_err(|p| err(&format!("{field}.{key}"), p, CONTROL_FIX.into()))?;
            }
            if raw.port == 0 {
                return Err(err(
                    &format!("{field}.port"),
                    "is 0".into(),
                    "use a TCP port from 1 to 65535".into(),
                ));
            }
            if let Some(ssh) = &raw.ssh {
                ssh.check()
                    .map_err(|(key, p, fix)| err(&format!("{field}.ssh.{key}"), p, fix))?;
            }
            if raw.password.is_some() {
                return Err(err(
                    &format!("{field}.password"),
                    PASSWORD_PROBLEM.into(),
                    PASSWORD_FIX.into(),
                ));
            }
            let connection = ConnectionSettings {
                sslmode: raw.sslmode,
                sslrootcert: raw.sslrootcert,
                sslcert: raw.sslcert,
                sslkey: raw.sslkey,
                passfile: raw.passfile,
            };
            connection
                .check()
                .map_err(|(key, p, fix)| err(&format!("{field}.{key}"), p, fix))?;
            Ok(NodeConfig {
                name: raw.name,
                hostname: raw.hostname,
                port: raw.port,
                username: raw.username,
                dbname: raw.dbname,
                role,
                ssh: raw.ssh,
                connection,
            })
        };
        if let Some(ssh) = &raw.ssh {
            ssh.check()
                .map_err(|(key, p, fix)| err(&format!("ssh.{key}"), p, fix))?;
        }
        if raw.password.is_some() {
            return Err(err(
                "password",
                PASSWORD_PROBLEM.into(),
                PASSWORD_FIX.into(),
            ));
        }
        let connection = ConnectionSettings {
            sslmode: raw.sslmode,
            sslrootcert: raw.sslrootcert.clone(),
            sslcert: raw.sslcert.clone(),
            sslkey: raw.sslkey.clone(),
            passfile: raw.passfile.clone(),
        };
        connection
            .check()
            .map_err(|(key, p, fix)| err(key, p, fix))?;
        let coordinator = node(
            raw.coordinator_node,
            "coordinatorNode".into(),
            NodeRole::Coordinator,
        )?;
        let workers = raw
            .worker_nodes
            .into_iter()
            .enumerate()
            .map(|(i, w)| node(w, format!("workerNodes[{i}]"), NodeRole::Worker))
            .collect::<Result<Vec<_>>>()?;

        let any_ssh = raw.ssh.is_some()
            || std::iter::once(&coordinator)
                .chain(&workers)
                .any(|n| n.ssh.is_some());
        let mut names = HashSet::new();
        let mut hosts: Vec<(HostKey, u16, String)> = Vec::new();
        for (i, n) in std::iter::once(&coordinator).chain(&workers).enumerate() {
            let field = if i == 0 {
                "coordinatorNode".to_string()
            } else {
                format!("workerNodes[{}]", i - 1)
            };
            if !names.insert(n.name.as_str()) {
                return Err(err(
                    &format!("{field}.name"),
                    format!("node name {:?} is used twice", n.name),
                    "give every node its own name".into(),
                ));
            }
            let key = HostKey::of(&n.hostname);
            if let Some((_, _, other)) = hosts
                .iter()
                .find(|(k, port, _)| *port == n.port && k.same_host(&key))
            {
                return Err(err(
                    &format!("{field}.port"),
                    format!(
                        "{}:{} is used by another node ({other}; localhost, 127.0.0.1, ::1 and names that resolve to the same address are one host)",
                        n.hostname, n.port
                    ),
                    "give every node on a host its own port".into(),
                ));
            }
            hosts.push((key, n.port, format!("{}:{}", n.hostname, n.port)));
            // ssh would take a leading '-' for an option, and `user@` for a user.
            if any_ssh && (n.hostname.starts_with('-') || n.hostname.contains(['@', ' '])) {
                return Err(err(
                    &format!("{field}.hostname"),
                    format!("{:?} starts with '-' or holds '@' or a blank", n.hostname),
                    "give only the host's name or address (the SSH user goes in ssh.user)".into(),
                ));
            }
        }

        let folders = [
            ("clusterBaseFolder", &raw.cluster_base_folder),
            ("archiveBaseFolder", &raw.archive_base_folder),
            ("backupBaseFolder", &raw.backup_base_folder),
        ];
        for (field, folder) in folders {
            if !folder.is_absolute() {
                return Err(err(
                    field,
                    format!("{} is a relative path", folder.display()),
                    "use an absolute path, so the result does not depend on the working folder"
                        .into(),
                ));
            }
            check_path(folder).map_err(|(p, fix)| err(field, p, fix.into()))?;
        }
        let compression = match &raw.compression {
            None => Compression::default(),
            Some(text) => text
                .parse::<Compression>()
                .map_err(|p| err("compression", p, "use one of the accepted values".into()))?,
        };
        let archive_get_queue = match raw.archive_get_queue {
            None => DEFAULT_ARCHIVE_GET_QUEUE,
            Some(n) if (0..=MAX_ARCHIVE_GET_QUEUE as i64).contains(&n) => n as usize,
            Some(n) => {
                return Err(err(
                    "archiveGetQueue",
                    format!("{n} is out of range"),
                    format!("use 0 (prefetch off) to {MAX_ARCHIVE_GET_QUEUE} segments"),
                ))
            }
        };
        let mut absolute = vec![("binary", raw.binary.as_ref())];
        if let Some(RepositoryConfig::Posix { path }) = &raw.repository {
            absolute.push(("repository.path", Some(path)));
        }
        for (field, path) in absolute.into_iter().filter_map(|(f, p)| Some((f, p?))) {
            if !path.is_absolute() {
                return Err(err(
                    field,
                    format!("{} is a relative path", path.display()),
                    "use an absolute path".into(),
                ));
            }
            check_path(path).map_err(|(p, fix)| err(field, p, fix.into()))?;
        }
        if let Some(RepositoryConfig::S3(s3)) = &raw.repository {
            if s3.bucket.trim().is_empty() {
                return Err(err(
                    "repository.bucket",
                    "is empty".into(),
                    "give the name of an existing bucket".into(),
                ));
            }
            if !s3.prefix.is_empty() {
                crate::repository::Key::new(&s3.prefix).map_err(|p| {
                    err(
                        "repository.prefix",
                        format!("{:?}: {p}", s3.prefix),
                        "write the prefix as a/b: no leading '/', no '.' or '..' parts".into(),
                    )
                })?;
            }
        }
        if let Some(dir) = &raw.pg_bin_dir {
            if !dir.is_absolute() {
                return Err(err(
                    "pgBinDir",
                    format!("{} is a relative path", dir.display()),
                    "use an absolute path such as /usr/lib/postgresql/15/bin".into(),
                ));
            }
            check_path(dir).map_err(|(p, fix)| err("pgBinDir", p, fix.into()))?;
        }
        // Compared as resolved (symlinks followed as far as the path exists), so a folder reached
        // through a link into a data directory is seen for what it is.
        let data_dirs: Vec<(String, PathBuf)> = std::iter::once(&coordinator)
            .chain(&workers)
            .map(|n| (n.name.clone(), raw.cluster_base_folder.join(&n.name)))
            .collect();
        let shown = |given: &Path, real: &Path| {
            if given == real {
                given.display().to_string()
            } else {
                format!("{} (resolved: {})", given.display(), real.display())
            }
        };
        let mut outside: Vec<(&str, &PathBuf)> = folders[1..].to_vec();
        if let Some(RepositoryConfig::Posix { path }) = &raw.repository {
            outside.push(("repository.path", path));
        }
        for (field, folder) in &outside {
            let real = resolve(folder);
            for (node, data_dir) in &data_dirs {
                let real_data = resolve(data_dir);
                if real.starts_with(&real_data) || real_data.starts_with(&real) {
                    return Err(err(
                        field,
                        format!(
                            "{} overlaps the data directory of node {node}, {}",
                            shown(folder, &real),
                            shown(data_dir, &real_data)
                        ),
                        "keep archives and backups outside every data directory, and no data directory inside them: a restore moves the data directory aside".into(),
                    ));
                }
            }
        }
        let (archive, backup) = (
            resolve(&raw.archive_base_folder),
            resolve(&raw.backup_base_folder),
        );
        if archive == backup {
            return Err(err(
                "backupBaseFolder",
                format!(
                    "{} is the same folder as archiveBaseFolder {}",
                    shown(&raw.backup_base_folder, &backup),
                    shown(&raw.archive_base_folder, &archive)
                ),
                "give backups and WAL archives folders of their own".into(),
            ));
        }
        if let Some(r) = &raw.retention {
            check_retention(r).map_err(|(field, problem)| {
                err(
                    &format!("retention.{field}"),
                    problem,
                    "give {\"full\": N} (keep the newest N backups) and/or {\"days\": D} (keep those of the last D days), each at least 1".into(),
                )
            })?;
        }
        check_thresholds(&raw.check).map_err(|(field, problem)| {
            err(
                &format!("check.{field}"),
                problem,
                "give a positive number, null to turn the test off, or leave it out for the default (docs/lifecycle.md)".into(),
            )
        })?;
        let mut restore_point_locks = RestorePointLocks::default();
        if let Some(secs) = raw.restore_point_lock_timeout {
            if !(secs.is_finite() && secs > 0.0 && secs <= 3600.0) {
                return Err(err(
                    "restorePointLockTimeout",
                    format!("is {secs}"),
                    "give the seconds a restore point may wait for its locks per attempt, above 0 and at most 3600 (default 2)".into(),
                ));
            }
            // At least 1 ms: PostgreSQL reads lock_timeout = 0 as "wait forever".
            restore_point_locks.lock_timeout_ms = ((secs * 1000.0).round() as u64).max(1);
        }
        if let Some(retries) = raw.restore_point_retries {
            if retries > 20 {
                return Err(err(
                    "restorePointRetries",
                    format!("is {retries}"),
                    "give at most 20 retries (default 3)".into(),
                ));
            }
            restore_point_locks.retries = retries;
        }
        for (i, c) in raw.drill.checks.iter().enumerate() {
            if coordinator.name != c.node && !workers.iter().any(|w| w.name == c.node) {
                return Err(err(
                    &format!("drill.checks[{i}].node"),
                    format!("names node {:?}, which the config lacks", c.node),
                    "name the coordinator or a worker".into(),
                ));
            }
        }
        let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        Ok(ClusterConfig {
            cluster_name: raw.cluster_name,
            coordinator,
            workers,
            cluster_base_folder: raw.cluster_base_folder,
            archive_base_folder: raw.archive_base_folder,
            backup_base_folder: raw.backup_base_folder,
            backup_to_restore: non_empty(raw.backup_to_restore),
            restore_point: non_empty(raw.restore_point),
            os_user: non_empty(raw.os_user),
            pg_bin_dir: raw.pg_bin_dir,
            repository: raw.repository,
            compression,
            archive_get_queue,
            binary: raw.binary,
            ssh: raw.ssh,
            retention: raw.retention,
            check: raw.check,
            connection,
            restore_point_locks,
            drill: raw.drill,
            source: path.map(Path::to_path_buf),
        })
    }

    /// The connection keys of `node`: its own over the cluster's.
    pub fn connection_for(&self, node: &NodeConfig) -> ConnectionSettings {
        node.connection.over(&self.connection)
    }

    /// Whether any node is reached over SSH (a cluster-level or a node's own `ssh` object).
    pub fn uses_ssh(&self) -> bool {
        self.ssh.is_some() || self.nodes().any(|n| n.ssh.is_some())
    }

    /// The SSH settings of `node`: its own `ssh` keys over the cluster's; `None` when neither
    /// exists. When [`Self::uses_ssh`], a node without either is reached with the defaults.
    pub fn ssh_for(&self, node: &NodeConfig) -> Option<SshConfig> {
        match (&node.ssh, &self.ssh) {
            (Some(own), Some(cluster)) => Some(own.over(cluster)),
            (Some(own), None) => Some(own.clone()),
            (None, cluster) => cluster.clone(),
        }
    }

    /// All nodes: the coordinator first, then the workers in config order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeConfig> {
        std::iter::once(&self.coordinator).chain(&self.workers)
    }

    /// The node of that name.
    pub fn node(&self, name: &str) -> Option<&NodeConfig> {
        self.nodes().find(|n| n.name == name)
    }

    /// A node's data directory: `<clusterBaseFolder>/<name>`.
    pub fn data_dir(&self, node: &NodeConfig) -> PathBuf {
        self.cluster_base_folder.join(&node.name)
    }

    /// Where pg_basebackup writes a server-compressed backup of `node` while it is read into
    /// the repository: `<clusterBaseFolder>/<node>.backup-staging`, beside the data directory
    /// (on the node's host, where the servers' user may write, as a restore needs), never
    /// inside it. One per node: backups run one at a time (the repository's lock), and the
    /// next backup clears what a killed one left.
    pub fn backup_staging_dir(&self, node: &NodeConfig) -> PathBuf {
        self.cluster_base_folder
            .join(format!("{}.backup-staging", node.name))
    }

    /// Every node as a test harness or a client needs it: name, role, address, data directory
    /// and a libpq connection string. The coordinator first.
    pub fn node_infos(&self) -> Vec<NodeInfo> {
        self.nodes()
            .map(|n| NodeInfo {
                name: n.name.clone(),
                role: match n.role {
                    NodeRole::Coordinator => "coordinator",
                    NodeRole::Worker => "worker",
                }
                .into(),
                host: n.hostname.clone(),
                port: n.port,
                user: n.username.clone(),
                dbname: n.dbname.clone(),
                data_dir: self.data_dir(n),
                dsn: n.dsn(),
            })
            .collect()
    }

    /// The libpq connection string of the node named `node`.
    pub fn dsn(&self, node: &str) -> Result<String> {
        self.node(node)
            .map(NodeConfig::dsn)
            .ok_or_else(|| Error::InvalidArgument {
                what: "node name",
                value: node.into(),
                problem: format!(
                    "the config has no such node; it has {}",
                    self.nodes()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    /// A node's server log, kept beside (not inside) its data directory so a restore keeps it.
    pub fn log_file(&self, node: &NodeConfig) -> PathBuf {
        self.cluster_base_folder.join(format!("{}.log", node.name))
    }

    /// A node's WAL archive: `<archiveBaseFolder>/<name>`.
    pub fn archive_dir(&self, node: &NodeConfig) -> PathBuf {
        self.archive_base_folder.join(&node.name)
    }

    /// The folder of one backup: `<backupBaseFolder>/<backup>`.
    pub fn backup_dir(&self, backup: &str) -> PathBuf {
        self.backup_base_folder.join(backup)
    }
}

/// Refuses a retention that keeps nothing or has no rule: field and problem.
pub fn check_retention(r: &Retention) -> std::result::Result<(), (&'static str, String)> {
    match (r.full, r.days) {
        (None, None) => Err(("full", "neither full nor days is given".into())),
        (Some(0), _) => Err(("full", "is 0: the newest backup is always kept".into())),
        (_, Some(0)) => Err(("days", "is 0".into())),
        _ => Ok(()),
    }
}

/// Refuses negative, non-finite or inverted thresholds: field and problem.
fn check_thresholds(t: &CheckThresholds) -> std::result::Result<(), (&'static str, String)> {
    let numbers = [
        ("backupAgeWarningHours", t.backup_age_warning_hours),
        ("backupAgeCriticalHours", t.backup_age_critical_hours),
        (
            "restorePointAgeWarningHours",
            t.restore_point_age_warning_hours,
        ),
        (
            "restorePointAgeCriticalHours",
            t.restore_point_age_critical_hours,
        ),
        ("freeSpaceWarningPercent", t.free_space_warning_percent),
        ("freeSpaceCriticalPercent", t.free_space_critical_percent),
        (
            "roundTripTimeoutSeconds",
            Some(t.round_trip_timeout_seconds),
        ),
    ];
    for (field, v) in numbers {
        if let Some(v) = v.filter(|v| !v.is_finite() || *v <= 0.0) {
            return Err((field, format!("is {v}")));
        }
    }
    for (field, v) in [
        ("freeSpaceWarningPercent", t.free_space_warning_percent),
        ("freeSpaceCriticalPercent", t.free_space_critical_percent),
    ] {
        if let Some(v) = v.filter(|v| *v > 100.0) {
            return Err((field, format!("is {v}, over 100 percent")));
        }
    }
    Ok(())
}

/// Why a `password` key is refused (the value is never shown).
const PASSWORD_PROBLEM: &str =
    "a password in the config file is not accepted (the file is read by many and copied around)";
/// How to give a password instead.
const PASSWORD_FIX: &str = "remove the key and give the password the libpq way: a passfile (the `passfile` key, PGPASSFILE or ~/.pgpass, mode 0600) or PGPASSWORD in the environment";

/// Node names become folder names, so they are kept to a portable character set.
fn check_node_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.starts_with('.') {
        return Err(format!("{name:?} starts with '.'"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!("{name:?} contains {c:?}"));
    }
    Ok(())
}

/// The fix for a control character in a name or path.
const CONTROL_FIX: &str =
    "remove the control character (a newline, tab or other invisible character): it would break the server configuration and the commands built from it";

/// Refuses control characters (newlines included) in a name.
fn check_text(value: &str) -> std::result::Result<(), String> {
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!("{value:?} contains the control character {c:?}")),
        None => Ok(()),
    }
}

/// Refuses `.` and `..` components and control characters in a path: folders are compared and
/// put into server settings and shell commands as written.
fn check_path(path: &Path) -> std::result::Result<(), (String, &'static str)> {
    let text = path.to_string_lossy();
    check_text(&text).map_err(|p| (p, CONTROL_FIX))?;
    // Path::components drops inner `.` components, so the text is split instead.
    if let Some(part) = text.split('/').find(|p| *p == "." || *p == "..") {
        return Err((
            format!("{} has a {part:?} component", path.display()),
            "write the folder without . and .. components (the path it means, from the root)",
        ));
    }
    Ok(())
}

/// The path with the longest prefix that exists resolved (symlinks followed, by
/// `canonicalize`) and the rest appended as written.
fn resolve(path: &Path) -> PathBuf {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        if let Ok(mut real) = existing.canonicalize() {
            real.extend(rest.iter().rev());
            return real;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Catalog, state and lock files the library keeps in clusterBaseFolder and backupBaseFolder.
const LIBRARY_FILES: [&str; 5] = [
    "restore-points.json",
    "citus-recovery-backup.json",
    "citus-recovery-node.json",
    "citus-recovery-restore.json",
    "citus-recovery.lock",
];

/// Refuses a node name that could be taken for one of the library's own files or folders
/// beside the nodes' folders: `<node>.log`, `<node>.before-restore-<time>`, the catalog.
fn check_node_name_is_free(name: &str) -> std::result::Result<(), String> {
    if let Some(end) = [".log", ".json", ".lock"]
        .into_iter()
        .find(|end| name.ends_with(end))
    {
        return Err(format!(
            "{name:?} ends in {end}, as the library's own files do"
        ));
    }
    if let Some(part) = [
        ".before-restore-",
        ".failed-restore-",
        ".tablespaces-",
        ".backup-staging",
    ]
    .into_iter()
    .find(|part| name.contains(part))
    {
        return Err(format!(
            "{name:?} contains {part:?}, as the folders a restore or a backup keeps beside a data directory do"
        ));
    }
    if LIBRARY_FILES.contains(&name) {
        return Err(format!(
            "{name:?} is the name of one of the library's own files"
        ));
    }
    Ok(())
}

/// What a host name stands for, to tell two names of one host apart from two hosts.
#[derive(Debug)]
struct HostKey {
    /// The name, lowercased.
    name: String,
    /// Its addresses, loopback ones as `None` (localhost, 127.0.0.1 and ::1 are one host).
    addresses: Vec<Option<IpAddr>>,
}

impl HostKey {
    /// The key of `host`: IP addresses as they are, `localhost` as loopback, other names
    /// resolved only when `/etc/hosts` lists them, so validation never waits for the network.
    fn of(host: &str) -> Self {
        let name = host
            .trim_matches(|c| c == '[' || c == ']')
            .to_ascii_lowercase();
        let loopback = |ip: IpAddr| {
            if ip == IpAddr::from([127, 0, 0, 1]) || ip == IpAddr::from(Ipv6Addr::LOCALHOST) {
                None
            } else {
                Some(ip)
            }
        };
        let addresses = if let Ok(ip) = name.parse::<IpAddr>() {
            vec![loopback(ip)]
        } else if name == "localhost" || name.ends_with(".localhost") {
            vec![None]
        } else if in_etc_hosts(&name) {
            (name.as_str(), 0)
                .to_socket_addrs()
                .map(|addrs| addrs.map(|a| loopback(a.ip())).collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        HostKey { name, addresses }
    }

    /// Whether both stand for one host.
    fn same_host(&self, other: &HostKey) -> bool {
        self.name == other.name || self.addresses.iter().any(|a| other.addresses.contains(a))
    }
}

/// Whether `/etc/hosts` lists `name` (lowercased), so resolving it needs no network.
fn in_etc_hosts(name: &str) -> bool {
    let Ok(text) = std::fs::read_to_string("/etc/hosts") else {
        return false;
    };
    text.lines().any(|line| {
        let line = line.split('#').next().unwrap_or("");
        line.split_whitespace()
            .skip(1)
            .any(|n| n.eq_ignore_ascii_case(name))
    })
}

#[cfg(test)]
mod tests;
