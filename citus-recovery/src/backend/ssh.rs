//! [`SshBackend`]: nodes on other hosts, reached over SSH as the servers' OS user.
//!
//! Server control (`pg_ctl`, `initdb`), the server log and the file work in a node's folders run
//! on the node's host, as small POSIX `sh` scripts over one multiplexed connection per host
//! ([`session`]). SQL goes straight to the node's address, as with local nodes.
//!
//! Why the system `ssh` with ControlMaster rather than a Rust SSH library: it is what the
//! `openssh` crate wraps anyway, it needs no new dependency, and the admin's own ssh setup
//! (agent, `~/.ssh/config`, ProxyJump, certificates) keeps working.
//!
//! The remote side runs as the SSH user (the servers' user), so it cannot reach anything that
//! user could not; what root-side hardening the local backend does is not needed there. Paths
//! reach the scripts as quoted positional parameters ([`quote`]).
//! Base backups are taken on the node's host into a folder there; extracting one and installing
//! its `pg_control` run there too, through the host's own `citus-recovery` ([`node_side`]).
//! With a repository, the host's `citus-recovery node-backup`/`node-restore` stream between the
//! node and the repository there, so no node's bytes pass through this process; `AWS_*`
//! variables reach them, and `pg_ctl start`, on stdin.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::OnceCell;

use super::{BackupFiles, ClusterBackend, FileSync, ServerState, StartWait, TablespaceTarget};
use crate::config::{ClusterConfig, NodeConfig, SshConfig, DEFAULT_MAX_SESSIONS, DEFAULT_SSH_PORT};
use crate::error::{Error, Result};

pub mod node_side;
mod quote;
mod session;

use quote::{command, Arg};
use session::{ControlDir, Host, Output, Target};

/// How long `pg_ctl` may wait for a start or a stop, as on local nodes.
const PG_CTL_TIMEOUT_SECS: u32 = 600;
/// Exit status of `read_file`'s script for a file that does not exist.
const MISSING: i32 = 4;

/// Serves nodes on other hosts over SSH.
#[derive(Debug)]
pub struct SshBackend {
    config: ClusterConfig,
    /// Each node's host; nodes with one target share it (one connection, one session limit).
    hosts: HashMap<String, Arc<RemoteHost>>,
    _control: ControlDir,
}

/// A host and what was learned about it.
#[derive(Debug)]
struct RemoteHost {
    host: Host,
    /// The PostgreSQL bin folder on that host.
    bin_dir: OnceCell<PathBuf>,
    /// Set once the host's citus-recovery binary was found to be our version.
    binary_checked: OnceCell<()>,
}

impl SshBackend {
    /// Builds a backend for `config`, whose nodes are all reached over SSH: each with its
    /// [`ClusterConfig::ssh_for`] settings, the defaults (user `osUser` or `postgres`, port 22,
    /// ssh's own keys and known_hosts, 10 sessions) for any key left out. Connects to nothing yet.
    pub fn new(config: ClusterConfig) -> Result<Self> {
        let control = ControlDir::new()?;
        let mut by_target: HashMap<Target, Arc<RemoteHost>> = HashMap::new();
        let mut hosts = HashMap::new();
        for node in config.nodes() {
            let ssh = config.ssh_for(node).unwrap_or_default();
            check_ssh_path(&config, node, &ssh)?;
            let target = Target {
                host: node.hostname.clone(),
                port: ssh.port.unwrap_or(DEFAULT_SSH_PORT),
                user: ssh
                    .user
                    .clone()
                    .or_else(|| config.os_user.clone())
                    .unwrap_or_else(|| "postgres".into()),
                identity_file: ssh.identity_file.clone(),
                known_hosts_file: ssh.known_hosts_file.clone(),
                accept_new_host_keys: ssh.accept_new_host_keys.unwrap_or(false),
            };
            if target.user == "root" {
                return Err(Error::Config {
                    path: config.source.clone(),
                    field: "osUser".into(),
                    problem: format!("node {} would be reached over SSH as root", node.name),
                    fix: "set ssh.user (or osUser) to the OS user the servers run as, such as postgres".into(),
                });
            }
            let index = by_target.len();
            let host = by_target
                .entry(target.clone())
                .or_insert_with(|| {
                    let sessions = ssh.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS);
                    Arc::new(RemoteHost {
                        host: Host::new(target, &control, index, sessions),
                        bin_dir: OnceCell::new(),
                        binary_checked: OnceCell::new(),
                    })
                })
                .clone();
            hosts.insert(node.name.clone(), host);
        }
        Ok(SshBackend {
            config,
            hosts,
            _control: control,
        })
    }

    /// The SSH target (`user@host:port`) of a node, for messages and tests.
    pub fn target_of(&self, node: &NodeConfig) -> Option<String> {
        self.hosts
            .get(&node.name)
            .map(|h| h.host.target().display())
    }

    /// Runs `program` with `args` (each passed as one word, however it is spelled) on the node's
    /// host as the SSH user, and returns its standard output; a non-zero exit is an error quoting
    /// its standard error. For checks such as `citus-recovery --version` on each host.
    pub async fn run_on_host(
        &self,
        node: &NodeConfig,
        program: &str,
        args: &[&str],
    ) -> Result<String> {
        let mut words = vec![Arg::Text(program)];
        words.extend(args.iter().map(|a| Arg::Text(a)));
        let out = self
            .exec_ok(node, program, r#"exec "$@""#, &words, None)
            .await?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn host(&self, node: &NodeConfig) -> Result<&RemoteHost> {
        self.hosts
            .get(&node.name)
            .map(Arc::as_ref)
            .ok_or_else(|| Error::InvalidArgument {
                what: "node",
                value: node.name.clone(),
                problem: "is not a node of this backend's config".into(),
            })
    }

    /// Runs `script` with `args` on the node's host.
    async fn exec(
        &self,
        node: &NodeConfig,
        script: &str,
        args: &[Arg<'_>],
        stdin: Option<&[u8]>,
    ) -> Result<Output> {
        let host = self.host(node)?;
        host.host
            .run(&node.name, &command(script, args), stdin)
            .await
    }

    /// Runs `script`; any exit status but 0 is an error for `action` quoting its stderr.
    async fn exec_ok(
        &self,
        node: &NodeConfig,
        action: &str,
        script: &str,
        args: &[Arg<'_>],
        stdin: Option<&[u8]>,
    ) -> Result<Output> {
        let out = self.exec(node, script, args, stdin).await?;
        if out.code == Some(0) {
            Ok(out)
        } else {
            Err(self.failed(node, action, &out))
        }
    }

    fn failed(&self, node: &NodeConfig, action: &str, out: &Output) -> Error {
        let status = match out.code {
            Some(code) => format!("exit status {code}"),
            None => "killed by a signal".into(),
        };
        let target = self
            .target_of(node)
            .unwrap_or_else(|| node.hostname.clone());
        Error::node(
            &node.name,
            action,
            format!("on {target} ({status}): {}", out.stderr.trim()),
        )
    }

    /// The PostgreSQL bin folder on the node's host: `pgBinDir` when set, else what the host's
    /// `pg_config` says, else Debian's folder of the newest installed major version; checked to
    /// hold the programs used.
    async fn bin_dir(&self, node: &NodeConfig) -> Result<PathBuf> {
        let host = self.host(node)?;
        host.bin_dir
            .get_or_try_init(|| async {
                let given = self
                    .config
                    .pg_bin_dir
                    .as_ref()
                    .map(|d| d.as_os_str().to_string_lossy().into_owned())
                    .unwrap_or_default();
                let out = self
                    .exec_ok(
                        node,
                        "find the PostgreSQL programs",
                        FIND_BIN_DIR,
                        &[Arg::Text(&given)],
                        None,
                    )
                    .await
                    .map_err(|e| match e {
                        Error::Node { node, action, detail } => Error::node(
                            node,
                            action,
                            format!("{detail}; fix: install the PostgreSQL server programs on that host, or set pgBinDir to their folder there"),
                        ),
                        other => other,
                    })?;
                let text = String::from_utf8_lossy(&out.stdout);
                Ok(PathBuf::from(text.trim_end_matches('\n')))
            })
            .await
            .cloned()
    }

    /// The citus-recovery binary on the node hosts: the config's `binary`, else `citus-recovery`
    /// from the SSH user's PATH there. Checked once per host to be this library's version.
    async fn node_binary(&self, node: &NodeConfig) -> Result<String> {
        let binary = self
            .config
            .binary
            .as_ref()
            .map(|b| b.to_string_lossy().into_owned())
            .unwrap_or_else(|| "citus-recovery".into());
        let host = self.host(node)?;
        host.binary_checked
            .get_or_try_init(|| async {
                let want = format!("citus-recovery {}", env!("CARGO_PKG_VERSION"));
                let fix = format!(
                    "install citus-recovery {} on {} at {binary} (the config's binary), the same version as here",
                    env!("CARGO_PKG_VERSION"),
                    node.hostname
                );
                let out = self
                    .exec(node, r#"exec "$1" --version"#, &[Arg::Text(&binary)], None)
                    .await?;
                let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if out.code != Some(0) || got != want {
                    let found = if out.code == Some(0) {
                        got
                    } else {
                        out.stderr.trim().to_string()
                    };
                    return Err(Error::node(
                        &node.name,
                        "check the citus-recovery binary",
                        format!("{binary} on {}: {found}; fix: {fix}", node.hostname),
                    ));
                }
                Ok(())
            })
            .await?;
        Ok(binary)
    }

    /// The config file's path, which each node host's `node-backup`/`node-restore` reads there
    /// too (as its `archive_command` does).
    fn config_file(&self) -> Result<&Path> {
        self.config.source.as_deref().ok_or_else(|| Error::Config {
            path: None,
            field: "(file)".into(),
            problem: "nodes over SSH with a repository read the config file on their own hosts, but this config was not loaded from a file".into(),
            fix: "load the config from a file, and copy that file to the same path on every node host".into(),
        })
    }

    /// Runs the host's `citus-recovery` with `args` (after the binary), the forwarded
    /// environment on its stdin, which then stays open: the remote side stops when we go away.
    async fn node_command(
        &self,
        node: &NodeConfig,
        action: &str,
        args: &[Arg<'_>],
    ) -> Result<Output> {
        let binary = self.node_binary(node).await?;
        let mut words = vec![Arg::Text(&binary)];
        words.extend_from_slice(args);
        let host = self.host(node)?;
        let mut request = node_side::environment_request();
        // node-backup connects to its server from the host: it gets the password found here,
        // so no passfile is needed there (see docs/remote.md).
        if action == "node-backup" {
            if let (Some(p), _) = crate::connect::password(&self.config, node)? {
                request = node_side::with_password(request, p.expose());
            }
        }
        let out = host
            .host
            .run_fed_watched(&node.name, &command(r#"exec "$@""#, &words), &request)
            .await?;
        if out.code == Some(0) {
            Ok(out)
        } else {
            Err(self.failed(node, action, &out))
        }
    }

    /// Runs this tool (`args`, then a `--tablespace` for each of `tablespaces`) on the node's
    /// host for file work: unlike [`Self::node_command`] it forwards no environment (nothing
    /// there needs a secret). A failure is one of `action`.
    async fn node_tool(
        &self,
        node: &NodeConfig,
        action: &str,
        args: &[Arg<'_>],
        tablespaces: &[TablespaceTarget],
    ) -> Result<()> {
        let binary = self.node_binary(node).await?;
        let values = tablespace_values(tablespaces);
        let mut words = vec![Arg::Text(&binary)];
        words.extend_from_slice(args);
        push_tablespaces(&mut words, &values);
        self.exec_ok(node, action, r#"exec "$@""#, &words, None)
            .await
            .map(|_| ())
    }

    async fn program(&self, node: &NodeConfig, name: &str) -> Result<PathBuf> {
        Ok(self.bin_dir(node).await?.join(name))
    }
}

/// `$1`: pgBinDir or empty. Prints the bin folder to use.
const FIND_BIN_DIR: &str = r#"
if [ -n "$1" ]; then d=$1
elif command -v pg_config >/dev/null 2>&1 && d=$(pg_config --bindir) && [ -x "$d/postgres" ]; then :
else d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
fi
for p in initdb pg_ctl postgres pg_config; do
  [ -x "$d/$p" ] || { echo "no PostgreSQL program $p in '${d:-(none found)}'" >&2; exit 3; }
done
printf '%s\n' "$d"
"#;

/// `$1` data dir, `$2` pg_ctl. Prints `missing` or `status N`.
const SERVER_STATE: &str = r#"
if [ ! -f "$1/PG_VERSION" ]; then echo missing; exit 0; fi
"$2" status -D "$1" >/dev/null 2>&1
echo "status $?"
"#;

/// `$1` pg_basebackup, `$2` folder, `$3` host, `$4` port, `$5` user, `$6` label, `$7` sslmode,
/// `$8` sslrootcert, `$9` sslcert, `$10` sslkey (empty: not set). The first line of stdin is
/// the password (empty: none), exported as PGPASSWORD, never an argument. Prints
/// `<bytes> <name>` for each file written. Our stdin stays open while we wait: when it ends (we
/// went away) the whole session's process group is stopped, pg_basebackup's WAL child included.
const BASE_BACKUP: &str = r#"
IFS= read -r pw || pw=
if [ -n "$pw" ]; then PGPASSWORD=$pw; export PGPASSWORD; fi
unset pw
PGSSLMODE=$7; export PGSSLMODE
if [ -n "$8" ]; then PGSSLROOTCERT=$8; export PGSSLROOTCERT; fi
if [ -n "$9" ]; then PGSSLCERT=$9; export PGSSLCERT; fi
if [ -n "${10}" ]; then PGSSLKEY=${10}; export PGSSLKEY; fi
exec 3<&0
( cat <&3 >/dev/null; kill -TERM 0 ) >/dev/null 2>&1 &
watcher=$!
exec 3<&-
"$1" -h "$3" -p "$4" -U "$5" -D "$2" -Ft -X stream -c fast -l "$6" --status-interval=1 --no-password
rc=$?
kill "$watcher" 2>/dev/null
[ "$rc" = 0 ] || exit "$rc"
cd -- "$2" || exit 1
for f in *; do
  [ -f "$f" ] && printf '%s %s\n' "$(stat -c %s -- "$f")" "$f"
done
exit 0
"#;

/// `$@` pg_ctl and its arguments; stdin: `AWS_*=value` lines, then an empty line, exported.
const START_WITH_ENVIRONMENT: &str = r#"
while IFS= read -r line && [ -n "$line" ]; do
  case $line in
    AWS_*=*) export "$line" ;;
    *) echo "refused a variable that is not AWS_*" >&2; exit 3 ;;
  esac
done
exec "$@" </dev/null >/dev/null
"#;

/// `$1` path. Prints the KiB available in its file system (of its nearest existing folder).
const FREE_SPACE: &str = r#"
d=$1
while [ ! -e "$d" ]; do d=$(dirname -- "$d"); done
df -Pk -- "$d" | awk 'NR == 2 { print $4 }'
"#;

/// `$1` path. Prints `yes` or `no`; a link counts and is not followed.
const EXISTS: &str = r#"
if [ -e "$1" ] || [ -L "$1" ]; then echo yes; else echo no; fi
"#;

/// `$1` path, `$2` its folder. Exit 4: missing; 3: not a regular file.
const READ_FILE: &str = r#"
if [ -L "$1" ]; then echo "$1 is a symbolic link, which is never followed" >&2; exit 3; fi
if [ ! -e "$1" ]; then
  if [ -e "$2" ] && [ ! -x "$2" ]; then echo "cannot look into $2: permission denied" >&2; exit 1; fi
  exit 4
fi
if [ ! -f "$1" ]; then echo "$1 is not a regular file" >&2; exit 3; fi
exec cat -- "$1"
"#;

/// `$1` path, `$2` its folder, `$3` `now` or `later`; contents on stdin.
const WRITE_FILE: &str = r#"
set -eC
if [ -L "$1" ]; then echo "$1 is a symbolic link, which is never followed" >&2; exit 3; fi
if [ -d "$1" ]; then echo "$1 is a folder" >&2; exit 3; fi
umask 077
tmp="$1.citus-recovery-tmp.$$"
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
chmod 600 -- "$tmp"
if [ "$3" = now ]; then sync -- "$tmp"; fi
mv -f -T -- "$tmp" "$1"
trap - EXIT
if [ "$3" = now ]; then sync -- "$2"; fi
"#;

/// `$1` from, `$2` to, `$3` and `$4` their folders. Never replaces `$2`.
const RENAME: &str = r#"
set -e
if [ ! -e "$1" ] && [ ! -L "$1" ]; then echo "$1 does not exist" >&2; exit 3; fi
if [ -e "$2" ] || [ -L "$2" ]; then echo "$2 exists already; nothing was renamed" >&2; exit 3; fi
mv -n -T -- "$1" "$2"
if [ -e "$1" ] || [ -L "$1" ]; then echo "$2 appeared meanwhile; nothing was renamed" >&2; exit 3; fi
sync -- "$3" "$4"
"#;

/// `$1` path.
const REMOVE_FILE: &str = r#"
if [ -d "$1" ] && [ ! -L "$1" ]; then echo "$1 is a folder, not a file" >&2; exit 3; fi
exec rm -- "$1"
"#;

/// `$1` path: made with missing parents, mode 0700; an existing folder is fine.
const CREATE_DIR: &str = r#"
if [ -L "$1" ]; then echo "$1 is a symbolic link, which is never followed" >&2; exit 3; fi
if [ -e "$1" ] && [ ! -d "$1" ]; then echo "$1 exists and is not a folder" >&2; exit 3; fi
umask 077
exec mkdir -p -- "$1"
"#;

/// `$1` data dir, `$2` initdb, `$3` superuser; settings to append on stdin.
const INIT_NODE: &str = r#"
set -e
if [ -e "$1" ] || [ -L "$1" ]; then echo "$1 exists already; remove it or choose another clusterBaseFolder" >&2; exit 3; fi
"$2" -D "$1" -U "$3" --auth=trust --encoding=UTF8 --locale=C --no-instructions >/dev/null
cat >> "$1/postgresql.conf"
sync -- "$1/postgresql.conf"
"#;

/// Like [`INIT_NODE`], the first line of stdin being the superuser's password: piped to
/// initdb by a shell builtin, so it is never an argument or a file.
const INIT_NODE_WITH_PASSWORD: &str = r#"
set -e
if [ -e "$1" ] || [ -L "$1" ]; then echo "$1 exists already; remove it or choose another clusterBaseFolder" >&2; exit 3; fi
IFS= read -r pw
printf '%s\n' "$pw" | "$2" -D "$1" -U "$3" --pwfile=/dev/stdin --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C --no-instructions >/dev/null
pw=
cat >> "$1/postgresql.conf"
sync -- "$1/postgresql.conf"
"#;

/// `$1` log, `$2` lines.
const LOG_TAIL: &str = r#"
if [ -L "$1" ]; then echo "($1 is a symbolic link, which is never followed)"; exit 0; fi
if [ ! -e "$1" ]; then echo "($1 does not exist)"; exit 0; fi
exec tail -n "$2" -- "$1"
"#;

/// `$1` pg_config. Prints `yes` or `no`.
const CITUS_AVAILABLE: &str = r#"
lib=$("$1" --pkglibdir) && share=$("$1" --sharedir) || exit 1
if [ -f "$lib/citus.so" ] && [ -f "$share/extension/citus.control" ]; then echo yes; else echo no; fi
"#;

/// Refuses key and known_hosts paths that `ssh -o` would split or unquote.
fn check_ssh_path(config: &ClusterConfig, node: &NodeConfig, ssh: &SshConfig) -> Result<()> {
    for (key, path) in [
        ("identityFile", &ssh.identity_file),
        ("knownHostsFile", &ssh.known_hosts_file),
    ] {
        let Some(path) = path else { continue };
        let text = path.to_string_lossy();
        if text.contains(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '\\')) {
            return Err(Error::Config {
                path: config.source.clone(),
                field: format!("ssh.{key} (node {})", node.name),
                problem: format!(
                    "{} holds a blank, a quote or a backslash, which ssh's options cannot carry",
                    path.display()
                ),
                fix: "move the file to a path without blanks or quotes".into(),
            });
        }
    }
    Ok(())
}

/// Appends `--tablespace VALUE` for each of `values` (from [`tablespace_values`]).
fn push_tablespaces<'a>(args: &mut Vec<Arg<'a>>, values: &'a [PathBuf]) {
    for value in values {
        args.extend([Arg::Text("--tablespace"), Arg::Path(value)]);
    }
}

/// `--tablespace` values, `<oid>=<new folder>` (as paths: a folder need not be UTF-8).
fn tablespace_values(tablespaces: &[TablespaceTarget]) -> Vec<PathBuf> {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    tablespaces
        .iter()
        .map(|t| {
            let mut bytes = format!("{}=", t.oid).into_bytes();
            bytes.extend_from_slice(t.location.as_os_str().as_bytes());
            PathBuf::from(std::ffi::OsString::from_vec(bytes))
        })
        .collect()
}

/// The parent folder of a path, for syncing it (`/` for a top-level name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("/"),
    }
}

#[async_trait]
impl ClusterBackend for SshBackend {
    fn config(&self) -> &ClusterConfig {
        &self.config
    }

    async fn connect(&self, node: &NodeConfig) -> Result<tokio_postgres::Client> {
        // SQL goes straight to the node's address, as LocalBackend does.
        crate::connect::connect(&self.config, node).await
    }

    async fn server_state(&self, node: &NodeConfig) -> Result<ServerState> {
        let pg_ctl = self.program(node, "pg_ctl").await?;
        let data_dir = self.config.data_dir(node);
        let out = self
            .exec_ok(
                node,
                "pg_ctl status",
                SERVER_STATE,
                &[Arg::Path(&data_dir), Arg::Path(&pg_ctl)],
                None,
            )
            .await?;
        // pg_ctl status: 0 running, 3 not running, 4 no usable data directory.
        Ok(match String::from_utf8_lossy(&out.stdout).trim() {
            "missing" | "status 4" => ServerState::Missing,
            "status 0" => ServerState::Running,
            _ => ServerState::Stopped,
        })
    }

    async fn init_node(&self, node: &NodeConfig, settings: &[(String, String)]) -> Result<()> {
        self.create_dir(node, &self.config.cluster_base_folder)
            .await?;
        let initdb = self.program(node, "initdb").await?;
        let mut extra = String::from("\n# added by citus-recovery cluster create\n");
        for (key, value) in settings {
            extra.push_str(&format!("{key} = {value}\n"));
        }
        self.exec_ok(
            node,
            "initdb",
            INIT_NODE,
            &[
                Arg::Path(&self.config.data_dir(node)),
                Arg::Path(&initdb),
                Arg::Text(&node.username),
            ],
            Some(extra.as_bytes()),
        )
        .await
        .map(|_| ())
    }

    async fn init_node_with_password(
        &self,
        node: &NodeConfig,
        settings: &[(String, String)],
        password: &crate::connect::passfile::Secret,
    ) -> Result<()> {
        if password.expose().contains(['\n', '\r']) {
            return Err(Error::node(
                &node.name,
                "initdb",
                "the password holds a line break, which initdb's password file cannot carry",
            ));
        }
        self.create_dir(node, &self.config.cluster_base_folder)
            .await?;
        let initdb = self.program(node, "initdb").await?;
        let mut stdin = format!("{}\n", password.expose());
        stdin.push_str("\n# added by citus-recovery cluster create\n");
        for (key, value) in settings {
            stdin.push_str(&format!("{key} = {value}\n"));
        }
        self.exec_ok(
            node,
            "initdb",
            INIT_NODE_WITH_PASSWORD,
            &[
                Arg::Path(&self.config.data_dir(node)),
                Arg::Path(&initdb),
                Arg::Text(&node.username),
            ],
            Some(stdin.as_bytes()),
        )
        .await
        .map(|_| ())
    }

    async fn start(&self, node: &NodeConfig, wait: StartWait) -> Result<()> {
        let pg_ctl = self.program(node, "pg_ctl").await?;
        let (data_dir, log) = (self.config.data_dir(node), self.config.log_file(node));
        let timeout = PG_CTL_TIMEOUT_SECS.to_string();
        let mut args = vec![
            Arg::Path(&pg_ctl),
            Arg::Text("start"),
            Arg::Text("-D"),
            Arg::Path(&data_dir),
            Arg::Text("-l"),
            Arg::Path(&log),
        ];
        match wait {
            StartWait::UntilReady => {
                args.extend([Arg::Text("-w"), Arg::Text("-t"), Arg::Text(&timeout)])
            }
            StartWait::NoWait => args.push(Arg::Text("-W")),
        }
        // pg_ctl sends the server's output to the log and detaches it, so the channel closes.
        // The server gets our AWS_* variables, on stdin (never a command line), as a local
        // server does: its archive_command and restore_command reach an S3 repository with them.
        let out = self
            .exec(
                node,
                START_WITH_ENVIRONMENT,
                &args,
                Some(&node_side::environment_request()),
            )
            .await?;
        if out.code == Some(0) {
            return Ok(());
        }
        let err = self.failed(node, "start", &out);
        Err(match err {
            Error::Node {
                node: n, detail, ..
            } => Error::node(
                n,
                "start",
                format!(
                    "{detail}\nserver log ({}):\n{}",
                    log.display(),
                    self.log_tail(node, 20).await
                ),
            ),
            other => other,
        })
    }

    async fn stop(&self, node: &NodeConfig) -> Result<()> {
        let pg_ctl = self.program(node, "pg_ctl").await?;
        let data_dir = self.config.data_dir(node);
        let timeout = PG_CTL_TIMEOUT_SECS.to_string();
        self.exec_ok(
            node,
            "stop",
            r#"exec "$@" >/dev/null"#,
            &[
                Arg::Path(&pg_ctl),
                Arg::Text("stop"),
                Arg::Text("-D"),
                Arg::Path(&data_dir),
                Arg::Text("-m"),
                Arg::Text("fast"),
                Arg::Text("-w"),
                Arg::Text("-t"),
                Arg::Text(&timeout),
            ],
            None,
        )
        .await
        .map(|_| ())
    }

    async fn base_backup(
        &self,
        node: &NodeConfig,
        folder: &Path,
        label: &str,
    ) -> Result<BackupFiles> {
        // On the node's host, into a folder there: its bytes never cross to this host.
        self.create_dir(node, folder).await?;
        let pg_basebackup = self.program(node, "pg_basebackup").await?;
        let port = node.port.to_string();
        let host = self.host(node)?;
        // TLS paths as arguments (they are no secret), the password on stdin.
        let tls = self.config.connection_for(node);
        let none = std::path::PathBuf::new();
        let (password, _) = crate::connect::password(&self.config, node)?;
        let mut input = password
            .as_ref()
            .map(|p| p.expose().as_bytes().to_vec())
            .unwrap_or_default();
        input.push(b'\n');
        let out = host
            .host
            .run_watched_with_input(
                &node.name,
                &command(
                    BASE_BACKUP,
                    &[
                        Arg::Path(&pg_basebackup),
                        Arg::Path(folder),
                        Arg::Text(&node.hostname),
                        Arg::Text(&port),
                        Arg::Text(&node.username),
                        Arg::Text(label),
                        Arg::Text(tls.mode().as_str()),
                        Arg::Path(tls.sslrootcert.as_ref().unwrap_or(&none)),
                        Arg::Path(tls.sslcert.as_ref().unwrap_or(&none)),
                        Arg::Path(tls.sslkey.as_ref().unwrap_or(&none)),
                    ],
                ),
                &input,
            )
            .await?;
        if out.code != Some(0) {
            return Err(self.failed(node, "pg_basebackup", &out));
        }
        let (mut bytes, mut tablespaces) = (0, Vec::new());
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some((size, name)) = line.split_once(' ') else {
                continue;
            };
            bytes += size.parse::<u64>().unwrap_or(0);
            if let Some(oid) = name
                .strip_suffix(".tar")
                .and_then(|n| n.parse::<u32>().ok())
            {
                tablespaces.push(oid);
            }
        }
        tablespaces.sort_unstable();
        Ok(BackupFiles {
            folder: folder.to_path_buf(),
            bytes,
            tablespaces,
        })
    }

    async fn extract_backup(
        &self,
        node: &NodeConfig,
        backup: &Path,
        data_dir: &Path,
        tablespaces: &[TablespaceTarget],
    ) -> Result<()> {
        // On the node's host, by the same code as for local nodes (node_side).
        let args = [
            Arg::Text("node-extract"),
            Arg::Text("--backup"),
            Arg::Path(backup),
            Arg::Text("--data-dir"),
            Arg::Path(data_dir),
        ];
        self.node_tool(node, "extract backup", &args, tablespaces)
            .await
    }

    async fn check_node_tools(&self, node: &NodeConfig) -> Result<()> {
        // Before any ssh: a config that is not a file cannot be on the hosts.
        let config = self.config_file()?;
        self.node_binary(node).await?;
        let out = self
            .exec(
                node,
                r#"[ -f "$1" ] && [ -r "$1" ]"#,
                &[Arg::Path(config)],
                None,
            )
            .await?;
        if out.code == Some(0) {
            return Ok(());
        }
        let user = self
            .target_of(node)
            .map(|t| t.split('@').next().unwrap_or_default().to_string())
            .unwrap_or_default();
        Err(Error::node(
            &node.name,
            "check the config file",
            format!(
                "{} is not a file {user} can read on {}, and the host's citus-recovery reads it there; fix: copy this config to {} at {}, readable by {user}",
                config.display(),
                node.hostname,
                node.hostname,
                config.display()
            ),
        ))
    }

    async fn free_space(&self, node: &NodeConfig, path: &Path) -> Result<Option<u64>> {
        let out = self
            .exec_ok(
                node,
                "read the free space",
                FREE_SPACE,
                &[Arg::Path(path)],
                None,
            )
            .await?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .parse::<u64>()
            .map(|kib| Some(kib * 1024))
            .map_err(|_| {
                Error::node(
                    &node.name,
                    "read the free space",
                    format!(
                        "df on {} printed {:?}, not a number",
                        node.hostname,
                        text.trim()
                    ),
                )
            })
    }

    async fn backup_to_repository_on_host(
        &self,
        node: &NodeConfig,
        backup: &str,
    ) -> Result<Option<crate::plan::StoredBackup>> {
        if self.config.repository.is_none() {
            return Ok(None);
        }
        let config = self.config_file()?;
        let out = self
            .node_command(
                node,
                "node-backup",
                &[
                    Arg::Text("node-backup"),
                    Arg::Text("--config"),
                    Arg::Path(config),
                    Arg::Text("--node"),
                    Arg::Text(&node.name),
                    Arg::Text("--backup"),
                    Arg::Text(backup),
                ],
            )
            .await?;
        serde_json::from_slice(&out.stdout).map(Some).map_err(|e| {
            Error::node(
                &node.name,
                "node-backup",
                format!(
                    "its result on {} is not the expected JSON ({e}); is citus-recovery there the same version?",
                    node.hostname
                ),
            )
        })
    }

    async fn restore_from_repository_on_host(
        &self,
        node: &NodeConfig,
        backup: &str,
        data_dir: &Path,
        tablespaces: &[TablespaceTarget],
    ) -> Result<bool> {
        if self.config.repository.is_none() {
            return Ok(false);
        }
        let config = self.config_file()?;
        let values = tablespace_values(tablespaces);
        let mut args = vec![
            Arg::Text("node-restore"),
            Arg::Text("--config"),
            Arg::Path(config),
            Arg::Text("--node"),
            Arg::Text(&node.name),
            Arg::Text("--backup"),
            Arg::Text(backup),
            Arg::Text("--data-dir"),
            Arg::Path(data_dir),
        ];
        push_tablespaces(&mut args, &values);
        self.node_command(node, "node-restore", &args).await?;
        Ok(true)
    }

    async fn install_control_file(
        &self,
        node: &NodeConfig,
        data_dir: &Path,
        tablespaces: &[TablespaceTarget],
    ) -> Result<()> {
        let args = [
            Arg::Text("node-install-control-file"),
            Arg::Text("--data-dir"),
            Arg::Path(data_dir),
        ];
        self.node_tool(node, "install pg_control", &args, tablespaces)
            .await
    }

    async fn start_prefetch(
        &self,
        node: &NodeConfig,
        pg_wal: &Path,
        first: &str,
        count: usize,
        segment_size: u64,
    ) -> Result<()> {
        let config = self.config_file()?;
        let prefetch = crate::archiving::prefetch_args(&node.name, first, count, segment_size);
        let mut args = vec![Arg::Text("--config"), Arg::Path(config)];
        args.extend(prefetch.iter().map(|a| Arg::Text(a)));
        // The worker reaches an S3 repository with our `AWS_*` variables, sent on stdin.
        args.extend([
            Arg::Text("--pg-wal"),
            Arg::Path(pg_wal),
            Arg::Text("--env-on-stdin"),
        ]);
        self.node_command(node, "start the WAL prefetch", &args)
            .await
            .map(|_| ())
    }

    async fn remove_spool(
        &self,
        node: &NodeConfig,
        pg_wal: &Path,
    ) -> Result<crate::archiving::SpoolRemoval> {
        let binary = self.node_binary(node).await?;
        let action = "remove the WAL prefetch spool";
        let words = [
            Arg::Text(&binary),
            Arg::Text("node-remove-spool"),
            Arg::Text("--pg-wal"),
            Arg::Path(pg_wal),
        ];
        let out = self
            .exec_ok(node, action, r#"exec "$@""#, &words, None)
            .await?;
        serde_json::from_slice(&out.stdout).map_err(|e| {
            Error::node(
                &node.name,
                action,
                format!(
                    "its result on {} is not the expected JSON ({e}); is citus-recovery there the same version?",
                    node.hostname
                ),
            )
        })
    }

    async fn create_dir(&self, node: &NodeConfig, path: &Path) -> Result<()> {
        self.exec_ok(node, "create folder", CREATE_DIR, &[Arg::Path(path)], None)
            .await
            .map(|_| ())
    }

    async fn exists(&self, node: &NodeConfig, path: &Path) -> Result<bool> {
        let out = self
            .exec_ok(node, "look at a path", EXISTS, &[Arg::Path(path)], None)
            .await?;
        Ok(out.stdout.starts_with(b"yes"))
    }

    async fn rename(&self, node: &NodeConfig, from: &Path, to: &Path) -> Result<()> {
        self.exec_ok(
            node,
            "rename",
            RENAME,
            &[
                Arg::Path(from),
                Arg::Path(to),
                Arg::Path(parent(from)),
                Arg::Path(parent(to)),
            ],
            None,
        )
        .await
        .map(|_| ())
    }

    async fn read_file(&self, node: &NodeConfig, path: &Path) -> Result<Option<String>> {
        let out = self
            .exec(
                node,
                READ_FILE,
                &[Arg::Path(path), Arg::Path(parent(path))],
                None,
            )
            .await?;
        match out.code {
            Some(0) => String::from_utf8(out.stdout).map(Some).map_err(|_| {
                Error::node(
                    &node.name,
                    "read a file",
                    format!("{} is not UTF-8 text", path.display()),
                )
            }),
            Some(MISSING) => Ok(None),
            _ => Err(self.failed(node, "read a file", &out)),
        }
    }

    async fn write_file(
        &self,
        node: &NodeConfig,
        path: &Path,
        contents: &[u8],
        sync: FileSync,
    ) -> Result<()> {
        let sync = match sync {
            FileSync::Now => "now",
            FileSync::Later => "later",
        };
        self.exec_ok(
            node,
            "write a file",
            WRITE_FILE,
            &[Arg::Path(path), Arg::Path(parent(path)), Arg::Text(sync)],
            Some(contents),
        )
        .await
        .map(|_| ())
    }

    async fn remove_file(&self, node: &NodeConfig, path: &Path) -> Result<()> {
        self.exec_ok(node, "remove a file", REMOVE_FILE, &[Arg::Path(path)], None)
            .await
            .map(|_| ())
    }

    async fn log_tail(&self, node: &NodeConfig, lines: usize) -> String {
        let log = self.config.log_file(node);
        let count = lines.to_string();
        match self
            .exec_ok(
                node,
                "read the server log",
                LOG_TAIL,
                &[Arg::Path(&log), Arg::Text(&count)],
                None,
            )
            .await
        {
            Ok(out) => String::from_utf8_lossy(&out.stdout)
                .trim_end_matches('\n')
                .to_string(),
            Err(e) => format!("(cannot read {}: {e})", log.display()),
        }
    }

    async fn citus_available(&self, node: &NodeConfig) -> Result<bool> {
        let pg_config = self.program(node, "pg_config").await?;
        let out = self
            .exec_ok(
                node,
                "look for Citus",
                CITUS_AVAILABLE,
                &[Arg::Path(&pg_config)],
                None,
            )
            .await?;
        Ok(out.stdout.starts_with(b"yes"))
    }
}

impl Drop for SshBackend {
    fn drop(&mut self) {
        let mut stopped = Vec::new();
        for host in self.hosts.values() {
            if !stopped.iter().any(|h| Arc::ptr_eq(h, host)) {
                host.host.stop_master();
                stopped.push(host.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ssh: serde_json::Value) -> ClusterConfig {
        let mut v = serde_json::json!({
            "clusterName": "demo",
            "workerCount": 2,
            "coordinatorNode": {"name": "coordinator", "hostname": "10.0.0.1", "port": 5432, "username": "postgres", "dbname": "postgres"},
            "workerNodes": [
                {"name": "worker1", "hostname": "10.0.0.2", "port": 5432, "username": "postgres", "dbname": "postgres"},
                {"name": "worker2", "hostname": "10.0.0.2", "port": 5433, "username": "postgres", "dbname": "postgres", "ssh": {"port": 2222}}
            ],
            "clusterBaseFolder": "/srv/citus/cluster",
            "archiveBaseFolder": "/srv/citus/archive",
            "backupBaseFolder": "/srv/citus/backup",
        });
        v["ssh"] = ssh;
        ClusterConfig::from_json_str(&v.to_string(), None).unwrap()
    }

    #[test]
    fn nodes_get_their_targets_and_share_a_host_only_when_equal() {
        let backend = SshBackend::new(config(serde_json::json!({"user": "pg"}))).unwrap();
        let c = backend.config().clone();
        assert_eq!(backend.target_of(&c.coordinator).unwrap(), "pg@10.0.0.1:22");
        assert_eq!(backend.target_of(&c.workers[0]).unwrap(), "pg@10.0.0.2:22");
        assert_eq!(
            backend.target_of(&c.workers[1]).unwrap(),
            "pg@10.0.0.2:2222"
        );
        let (w1, w2) = (&backend.hosts["worker1"], &backend.hosts["worker2"]);
        assert!(!Arc::ptr_eq(w1, w2), "another port is another connection");
    }

    #[test]
    fn cluster_new_picks_ssh_when_the_config_has_it() {
        // A bin folder this host lacks: LocalBackend::new would refuse it, SshBackend looks on
        // the node hosts, later.
        let mut c = config(serde_json::json!({"user": "postgres"}));
        c.pg_bin_dir = Some(PathBuf::from("/nonexistent/postgresql/bin"));
        assert!(crate::Cluster::new(c.clone()).is_ok());
        c.ssh = None;
        c.workers[1].ssh = None;
        assert!(matches!(
            crate::Cluster::new(c),
            Err(Error::Config { field, .. }) if field == "pgBinDir"
        ));
    }

    /// Without a repository the node hosts do not move backups (the caller's own path, no
    /// ssh); with one, a config not read from a file is refused before any ssh, naming the fix.
    #[tokio::test]
    async fn node_host_backups_need_a_repository_and_a_config_file() {
        let c = config(serde_json::json!({"user": "postgres"}));
        let backend = SshBackend::new(c.clone()).unwrap();
        let node = c.coordinator.clone();
        assert_eq!(
            backend
                .backup_to_repository_on_host(&node, "b1")
                .await
                .unwrap(),
            None
        );
        assert!(!backend
            .restore_from_repository_on_host(&node, "b1", Path::new("/srv/new"), &[])
            .await
            .unwrap());
        let mut c = c;
        c.repository = Some(crate::config::RepositoryConfig::Posix {
            path: "/srv/repo".into(),
        });
        let backend = SshBackend::new(c).unwrap();
        for err in [
            backend
                .backup_to_repository_on_host(&node, "b1")
                .await
                .unwrap_err(),
            backend
                .restore_from_repository_on_host(&node, "b1", Path::new("/srv/new"), &[])
                .await
                .unwrap_err(),
            backend.check_node_tools(&node).await.unwrap_err(),
        ] {
            let text = err.to_string();
            assert!(
                matches!(err, Error::Config { .. })
                    && text.contains("not loaded from a file")
                    && text.contains("same path on every node host"),
                "{text}"
            );
        }
    }

    #[test]
    fn key_paths_ssh_would_split_are_refused() {
        let err = SshBackend::new(config(
            serde_json::json!({"knownHostsFile": "/home/a b/known_hosts"}),
        ))
        .unwrap_err();
        assert!(
            matches!(&err, Error::Config { field, .. } if field.starts_with("ssh.knownHostsFile")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_host_is_an_error_naming_it() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let mut v = serde_json::json!({
            "clusterName": "demo", "workerCount": 0,
            "coordinatorNode": {"name": "coordinator", "hostname": "127.0.0.1", "port": 5432, "username": "postgres", "dbname": "postgres"},
            "workerNodes": [],
            "clusterBaseFolder": "/srv/c", "archiveBaseFolder": "/srv/a", "backupBaseFolder": "/srv/b",
        });
        v["ssh"] = serde_json::json!({"port": 1, "knownHostsFile": "/dev/null"});
        let config = ClusterConfig::from_json_str(&v.to_string(), None).unwrap();
        let backend = SshBackend::new(config).unwrap();
        let node = backend.config().coordinator.clone();
        let err = backend.exists(&node, Path::new("/tmp")).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("node coordinator"), "{text}");
        assert!(text.contains("postgres@127.0.0.1:1"), "{text}");
        assert!(text.contains("fix:"), "{text}");
    }
}
