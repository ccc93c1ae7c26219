//! [`LocalBackend`]: nodes whose servers run on this host.
//!
//! Server-side programs (`initdb`, `pg_ctl`, `pg_basebackup`) run as the configured OS user,
//! switching user when the library runs as root, because PostgreSQL refuses to run as root.
//! File work on a node's host runs on a blocking thread that has taken the servers' user's
//! filesystem identity ([`as_user::as_user`]), and never follows a path's last component when it
//! is a link ([`node_fs`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::process::Command;

use super::{
    BackupFiles, BackupStream, ClusterBackend, FileSync, ServerState, StartWait, StreamedWal,
    TablespaceTarget, TarStreams,
};
use crate::config::{ClusterConfig, NodeConfig};
use crate::error::{Error, Result};
use crate::files::OsUser;
use crate::wal::ProvenSegment;

mod as_user;
pub(in crate::backend) mod extract;
mod followed;
mod node_fs;

pub use extract::PENDING_CONTROL_FILE;

/// How long `pg_ctl` may wait for a start or a stop.
const PG_CTL_TIMEOUT_SECS: u32 = 600;

/// Serves nodes on this host.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    config: ClusterConfig,
    user: OsUser,
    bin_dir: PathBuf,
    /// WAL restore-start's pre-flight read, by node, until its prefetch step takes it.
    proven: Arc<Mutex<HashMap<String, Vec<ProvenSegment>>>>,
}

impl LocalBackend {
    /// Builds a backend for `config`: resolves the OS user and the PostgreSQL bin folder, and
    /// checks both, so a wrong setting fails here rather than half-way through a command.
    pub fn new(config: ClusterConfig) -> Result<Self> {
        let user = OsUser::for_config(&config)?;
        let bin_dir = match &config.pg_bin_dir {
            Some(dir) => dir.clone(),
            None => default_bin_dir(),
        };
        for program in ["initdb", "pg_ctl", "pg_basebackup", "postgres"] {
            if !bin_dir.join(program).is_file() {
                return Err(Error::Config {
                    path: config.source.clone(),
                    field: "pgBinDir".into(),
                    problem: format!("{} has no {program}", bin_dir.display()),
                    fix: "set pgBinDir to the bin folder of the PostgreSQL server installation (such as /usr/lib/postgresql/15/bin)".into(),
                });
            }
        }
        Ok(LocalBackend {
            config,
            user,
            bin_dir,
            proven: Arc::default(),
        })
    }

    /// The OS user the servers run as.
    pub fn os_user(&self) -> &OsUser {
        &self.user
    }

    /// The PostgreSQL bin folder in use.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Runs file work `f` on a blocking thread as the servers' user; a failure that names no node
    /// is given `node` and `action`.
    async fn on_host<T: Send + 'static>(
        &self,
        node: &NodeConfig,
        action: &str,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let user = self.user.clone();
        tokio::task::spawn_blocking(move || as_user::as_user(&user, f))
            .await
            .map_err(|e| Error::node(&node.name, action, e.to_string()))?
    }

    /// A command for a PostgreSQL program, run as the servers' user. It keeps this process's
    /// environment on purpose: servers started through `pg_ctl start` inherit the `AWS_*`
    /// variables their `archive_command`/`restore_command` (citus-recovery archive-push and
    /// archive-get) need to reach an S3 repository; credentials never go in the config.
    fn program(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(name));
        self.switch_user(&mut cmd);
        // The user may not be able to enter our working folder (such as /root).
        cmd.current_dir("/")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .env("LC_ALL", "C");
        cmd
    }

    /// Makes `cmd` run as the servers' user when we are someone else (root).
    fn switch_user(&self, cmd: &mut Command) {
        if self.user.needs_switch() {
            // As root, std also drops the supplementary groups before switching.
            cmd.uid(self.user.uid)
                .gid(self.user.gid)
                .env("USER", &self.user.name)
                .env("LOGNAME", &self.user.name)
                .env("HOME", &self.user.home);
        }
    }

    /// What pg_basebackup wrote into `folder`: its total size, and the oids of the
    /// `<oid>.tar<suffix>` tablespace files (`suffix`: `.zst` when it compressed them).
    async fn list_backup(
        &self,
        node: &NodeConfig,
        folder: &Path,
        suffix: &'static [u8],
    ) -> Result<BackupFiles> {
        let folder = folder.to_path_buf();
        self.on_host(node, "list the backup", move || {
            use std::os::unix::ffi::OsStrExt;
            let (mut bytes, mut tablespaces) = (0, Vec::new());
            let entries = std::fs::read_dir(&folder).map_err(|e| Error::io("list", &folder, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::io("list", &folder, e))?;
                let meta = entry
                    .metadata()
                    .map_err(|e| Error::io("look at", entry.path(), e))?;
                bytes += meta.len();
                let name = entry.file_name();
                if let Some(oid) = name
                    .as_bytes()
                    .strip_suffix(suffix)
                    .and_then(extract::tablespace_oid)
                {
                    tablespaces.push(oid);
                }
            }
            tablespaces.sort_unstable();
            Ok(BackupFiles {
                folder,
                bytes,
                tablespaces,
            })
        })
        .await
    }

    /// `pg_basebackup` of `node` into `target` (`-`: the tar on stdout): tar format, fast
    /// checkpoint, a CRC32C manifest, WAL as `wal` says (`stream`, `none`). TLS settings and the
    /// password go through the environment, never the command line.
    fn pg_basebackup(
        &self,
        node: &NodeConfig,
        target: &std::ffi::OsStr,
        wal: &str,
        label: &str,
    ) -> Result<Command> {
        let mut cmd = self.client_program("pg_basebackup");
        cmd.arg("-h")
            .arg(&node.hostname)
            .arg("-p")
            .arg(node.port.to_string())
            .arg("-U")
            .arg(&node.username)
            .arg("-D")
            .arg(target)
            .arg("-Ft")
            .arg("-X")
            .arg(wal)
            .arg("-c")
            .arg("fast")
            .arg("--manifest-checksums=CRC32C")
            .arg("-l")
            .arg(label)
            .arg("--no-password")
            .envs(crate::connect::program_env(&self.config, node)?);
        Ok(cmd)
    }

    /// Like [`Self::program`], for a client program that must not outlive us (`pg_basebackup`,
    /// which forks a WAL streaming child that only stops when the server goes away). It runs
    /// under `sh` as the leader of a new process group: the kernel sends `sh` SIGTERM when this
    /// process dies, however it dies, and `sh` then terminates the whole group. A cancelled call
    /// terminates the group through [`GroupGuard`].
    fn client_program(&self, name: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(SUPERVISOR).arg(self.bin_dir.join(name));
        self.switch_user(&mut cmd);
        cmd.current_dir("/")
            .stdin(Stdio::null())
            .env("LC_ALL", "C")
            .process_group(0);
        // SAFETY: prctl is async-signal-safe, and nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)
            });
        }
        cmd
    }

    /// Runs a [`Self::client_program`] command to completion, terminating its process group if
    /// the call is cancelled half-way.
    async fn run_supervised(
        &self,
        node: &NodeConfig,
        action: &str,
        mut cmd: Command,
    ) -> Result<String> {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::node(&node.name, action, format!("cannot run it: {e}")))?;
        let mut guard = GroupGuard(child.id());
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| Error::node(&node.name, action, format!("cannot wait for it: {e}")))?;
        guard.0 = None;
        finish(node, action, out)
    }

    /// The held pre-flight WAL of `node` in the window `first` and the `count - 1` after it;
    /// nothing is held for the node afterwards.
    fn take_proven(
        &self,
        node: &str,
        first: &str,
        count: usize,
        segment_size: u64,
    ) -> Vec<ProvenSegment> {
        let held = self
            .proven
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(node)
            .unwrap_or_default();
        let window =
            crate::archiving::window_segments(first, count, segment_size).unwrap_or_default();
        held.into_iter()
            .filter(|s| window.contains(&s.name))
            .collect()
    }

    /// [`Self::run`] with `segments` written to the program's stdin ([`crate::archiving::seed_header`]
    /// and each frame), then stdin closed.
    async fn run_with_input(
        &self,
        node: &NodeConfig,
        action: &str,
        mut cmd: Command,
        segments: &[ProvenSegment],
    ) -> Result<String> {
        use tokio::io::AsyncWriteExt;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::node(&node.name, action, format!("cannot run it: {e}")))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let write = async move {
            for segment in segments {
                stdin
                    .write_all(crate::archiving::seed_header(segment).as_bytes())
                    .await?;
                stdin.write_all(&segment.frame).await?;
            }
            stdin.shutdown().await
        };
        // Written while the output is read: neither side waits on a full pipe.
        let (written, out) = tokio::join!(write, child.wait_with_output());
        let out =
            out.map_err(|e| Error::node(&node.name, action, format!("cannot run it: {e}")))?;
        let text = finish(node, action, out)?;
        written
            .map_err(|e| Error::node(&node.name, action, format!("cannot send it the WAL: {e}")))?;
        Ok(text)
    }

    /// Runs a command to completion; a non-zero exit is an error quoting its output.
    async fn run(&self, node: &NodeConfig, action: &str, mut cmd: Command) -> Result<String> {
        let out = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|e| Error::node(&node.name, action, format!("cannot run it: {e}")))?;
        finish(node, action, out)
    }
}

/// Runs `$0 "$@"` in the background and waits for it; on SIGTERM (sent by the kernel when our
/// process dies) it terminates its whole process group, children of the program included.
const SUPERVISOR: &str = r#"trap 'trap - TERM; kill -TERM 0' TERM; "$0" "$@" & wait $!"#;

/// The pipe size asked for a streamed backup's tar (the default is 64 KiB).
const PIPE_BYTES: nix::libc::c_int = 1 << 20;

/// Terminates a supervised process group when dropped while armed.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

/// Waits for `child` (its stderr piped) to exit: `Ok` only if it succeeded, else an error
/// quoting what it wrote. The guard moves in whole: dropping the future unfinished stops the
/// program's process group.
fn exited(
    mut child: tokio::process::Child,
    guard: GroupGuard,
    node: &str,
    action: &'static str,
) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let name = node.to_string();
    async move {
        use tokio::io::AsyncReadExt;
        // The whole guard moves in (a closure would capture only the field it sets).
        let mut guard = guard;
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text).await;
        let status = child
            .wait()
            .await
            .map_err(|e| Error::node(&name, action, format!("cannot wait for it: {e}")))?;
        guard.0 = None;
        if status.success() {
            Ok(())
        } else {
            Err(Error::node(
                &name,
                action,
                format!(
                    "{action} ({status}): {}",
                    String::from_utf8_lossy(&text).trim()
                ),
            ))
        }
    }
}

/// A finished command's output as text; a non-zero exit is an error quoting it.
fn finish(node: &NodeConfig, action: &str, out: std::process::Output) -> Result<String> {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(Error::node(
            &node.name,
            action,
            format!("{} ({}): {}", action, out.status, text.trim()),
        ))
    }
}

/// `pg_config --bindir` when it answers, else Debian's folder of the newest installed major version.
fn default_bin_dir() -> PathBuf {
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
    {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if dir.join("postgres").is_file() {
                return dir;
            }
        }
    }
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let major = versions.last().copied().unwrap_or(15);
    PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"))
}

#[async_trait]
impl ClusterBackend for LocalBackend {
    fn config(&self) -> &ClusterConfig {
        &self.config
    }

    async fn connect(&self, node: &NodeConfig) -> Result<tokio_postgres::Client> {
        crate::connect::connect(&self.config, node).await
    }

    async fn server_state(&self, node: &NodeConfig) -> Result<ServerState> {
        let data_dir = self.config.data_dir(node);
        if !data_dir.join("PG_VERSION").is_file() {
            return Ok(ServerState::Missing);
        }
        let mut cmd = self.program("pg_ctl");
        cmd.arg("status").arg("-D").arg(&data_dir);
        let status = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .map_err(|e| Error::node(&node.name, "pg_ctl status", format!("cannot run it: {e}")))?;
        // pg_ctl status: 0 running, 3 not running, 4 no usable data directory.
        Ok(match status.code() {
            Some(0) => ServerState::Running,
            Some(4) => ServerState::Missing,
            _ => ServerState::Stopped,
        })
    }

    async fn init_node(&self, node: &NodeConfig, settings: &[(String, String)]) -> Result<()> {
        let data_dir = self.config.data_dir(node);
        if data_dir.exists() {
            return Err(Error::node(
                &node.name,
                "initdb",
                format!(
                    "{} exists already; remove it or choose another clusterBaseFolder",
                    data_dir.display()
                ),
            ));
        }
        self.create_dir(node, &self.config.cluster_base_folder)
            .await?;
        let mut cmd = self.program("initdb");
        cmd.arg("-D")
            .arg(&data_dir)
            .arg("-U")
            .arg(&node.username)
            .arg("--auth=trust")
            .arg("--encoding=UTF8")
            .arg("--locale=C")
            .arg("--no-instructions");
        self.run(node, "initdb", cmd).await?;
        let mut extra = String::from("\n# added by citus-recovery cluster create\n");
        for (key, value) in settings {
            extra.push_str(&format!("{key} = {value}\n"));
        }
        let conf = data_dir.join("postgresql.conf");
        self.on_host(node, "write postgresql.conf", move || {
            let mut text = node_fs::read_file(&conf)?.ok_or_else(|| {
                Error::io(
                    "read",
                    &conf,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "initdb wrote none"),
                )
            })?;
            text.push_str(&extra);
            node_fs::write_file(&conf, text.as_bytes(), FileSync::Now)
        })
        .await
    }

    async fn start(&self, node: &NodeConfig, wait: StartWait) -> Result<()> {
        let data_dir = self.config.data_dir(node);
        let log = self.config.log_file(node);
        let mut cmd = self.program("pg_ctl");
        cmd.arg("start")
            .arg("-D")
            .arg(&data_dir)
            .arg("-l")
            .arg(&log);
        match wait {
            StartWait::UntilReady => cmd.arg("-w").arg("-t").arg(PG_CTL_TIMEOUT_SECS.to_string()),
            StartWait::NoWait => cmd.arg("-W"),
        };
        match self.run(node, "start", cmd).await {
            Ok(_) => Ok(()),
            Err(Error::Node {
                node: n, detail, ..
            }) => Err(Error::node(
                n,
                "start",
                format!(
                    "{detail}\nserver log ({}):\n{}",
                    log.display(),
                    self.log_tail(node, 20).await
                ),
            )),
            Err(e) => Err(e),
        }
    }

    async fn stop(&self, node: &NodeConfig) -> Result<()> {
        let mut cmd = self.program("pg_ctl");
        cmd.arg("stop")
            .arg("-D")
            .arg(self.config.data_dir(node))
            .arg("-m")
            .arg("fast")
            .arg("-w")
            .arg("-t")
            .arg(PG_CTL_TIMEOUT_SECS.to_string());
        self.run(node, "stop", cmd).await.map(|_| ())
    }

    async fn base_backup(
        &self,
        node: &NodeConfig,
        folder: &Path,
        label: &str,
    ) -> Result<BackupFiles> {
        // pg_basebackup fills an existing empty folder; the folder above it may be the
        // invoking user's (the catalog's), where the servers' user cannot create entries.
        self.create_dir(node, folder).await?;
        let mut cmd = self.pg_basebackup(node, folder.as_os_str(), "stream", label)?;
        // The WAL streaming child looks for its parent at each status tick: if we are killed,
        // it notices within a second instead of streaming on for ten.
        cmd.arg("--status-interval=1");
        self.run_supervised(node, "pg_basebackup", cmd).await?;
        self.list_backup(node, folder, b"").await
    }

    async fn extract_backup(
        &self,
        node: &NodeConfig,
        backup: &Path,
        data_dir: &Path,
        tablespaces: &[TablespaceTarget],
    ) -> Result<()> {
        let (backup, data_dir, tablespaces) = (
            backup.to_path_buf(),
            data_dir.to_path_buf(),
            tablespaces.to_vec(),
        );
        let reporter = crate::progress::current();
        self.on_host(node, "extract backup", move || {
            crate::progress::on_thread(reporter, || {
                extract::extract_backup(&backup, &data_dir, &tablespaces)
            })
        })
        .await
        .map_err(|e| match e {
            Error::Node { .. } => e,
            other => Error::node(&node.name, "extract backup", other.to_string()),
        })
    }

    async fn base_backup_stream(
        &self,
        node: &NodeConfig,
        label: &str,
        wal: StreamedWal,
    ) -> Result<BackupStream> {
        let wal = match wal {
            StreamedWal::Fetch => "fetch",
            StreamedWal::None => "none",
        };
        let mut cmd = self.pg_basebackup(node, "-".as_ref(), wal, label)?;
        let action = "pg_basebackup";
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::node(&node.name, action, format!("cannot run it: {e}")))?;
        let guard = GroupGuard(child.id());
        let pipe = |e: std::io::Error| Error::node(&node.name, action, format!("its pipe: {e}"));
        let stdout = child
            .stdout
            .take()
            .expect("stdout is piped")
            .into_owned_fd()
            .map_err(pipe)?;
        // A bigger pipe: fewer wake-ups of pg_basebackup and of the reader per MiB. Best
        // effort (the limit is /proc/sys/fs/pipe-max-size).
        let _ = nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&stdout),
            nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_BYTES),
        );
        let done = exited(child, guard, &node.name, action);
        Ok(BackupStream {
            tar: Box::new(std::fs::File::from(stdout)),
            done: Box::pin(done),
        })
    }

    async fn base_backup_server_zstd(
        &self,
        node: &NodeConfig,
        folder: &Path,
        label: &str,
        level: i32,
    ) -> Result<BackupStream> {
        self.create_dir(node, folder).await?;
        let mut cmd = self.pg_basebackup(node, folder.as_os_str(), "stream", label)?;
        cmd.arg(format!("--compress=server-zstd:{level}"))
            // The folder is only passed through: the repository makes the backup durable.
            .arg("--no-sync")
            .arg("--status-interval=1");
        let action = "pg_basebackup";
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::node(&node.name, action, format!("cannot run it: {e}")))?;
        let guard = GroupGuard(child.id());
        let writer = followed::Writer::default();
        let reader = followed::FollowedFile::new(
            folder.join("base.tar.zst"),
            self.user.clone(),
            writer.clone(),
        );
        let exit = exited(child, guard, &node.name, action);
        let done = async move {
            // Dropped unfinished: the program is stopped, and the reader ends.
            let stop = followed::StopOnDrop(writer.clone());
            exit.await?;
            writer.succeeded();
            drop(stop);
            Ok(())
        };
        Ok(BackupStream {
            tar: Box::new(reader),
            done: Box::pin(done),
        })
    }

    async fn base_backup_staged(
        &self,
        node: &NodeConfig,
        folder: &Path,
        label: &str,
    ) -> Result<BackupFiles> {
        self.create_dir(node, folder).await?;
        let mut cmd = self.pg_basebackup(node, folder.as_os_str(), "none", label)?;
        cmd.arg("--compress=client-zstd:1");
        self.run_supervised(node, "pg_basebackup", cmd).await?;
        self.list_backup(node, folder, b".zst").await
    }

    async fn open_read(
        &self,
        node: &NodeConfig,
        path: &Path,
    ) -> Result<Box<dyn std::io::Read + Send>> {
        let path = path.to_path_buf();
        let file = self
            .on_host(node, "open a file", move || node_fs::open_regular(&path))
            .await?;
        Ok(Box::new(file))
    }

    async fn remove_empty_dir(&self, node: &NodeConfig, path: &Path) -> Result<()> {
        let path = path.to_path_buf();
        // As the invoking user: the staging folder lies in the catalog's folder, where the
        // servers' user may not remove entries. rmdir never follows a link in the last
        // component (it fails with ENOTDIR) and removes only an empty folder.
        tokio::task::spawn_blocking(move || {
            std::fs::remove_dir(&path).map_err(|e| Error::io("remove folder", &path, e))
        })
        .await
        .map_err(|e| Error::node(&node.name, "remove a folder", e.to_string()))?
    }

    async fn extract_backup_streams(
        &self,
        node: &NodeConfig,
        tars: TarStreams,
        data_dir: &Path,
        tablespaces: &[TablespaceTarget],
    ) -> Result<()> {
        let (data_dir, tablespaces) = (data_dir.to_path_buf(), tablespaces.to_vec());
        let reporter = crate::progress::current();
        self.on_host(node, "extract backup", move || {
            crate::progress::on_thread(reporter, || {
                extract::extract_streams(tars, &data_dir, &tablespaces)
            })
        })
        .await
        .map_err(|e| match e {
            Error::Node { .. } | Error::Corrupt { .. } => e,
            other => Error::node(&node.name, "extract backup", other.to_string()),
        })
    }

    async fn install_control_file(
        &self,
        node: &NodeConfig,
        data_dir: &Path,
        tablespaces: &[TablespaceTarget],
    ) -> Result<()> {
        let (data_dir, tablespaces) = (data_dir.to_path_buf(), tablespaces.to_vec());
        self.on_host(node, "install pg_control", move || {
            extract::install_control_file(&data_dir, &tablespaces)
        })
        .await
        .map_err(|e| match e {
            Error::Node { .. } => e,
            other => Error::node(&node.name, "install pg_control", other.to_string()),
        })
    }

    async fn create_dir(&self, node: &NodeConfig, path: &Path) -> Result<()> {
        self.user.check_reachable(path)?;
        let (path, user) = (path.to_path_buf(), self.user.clone());
        // create_dir switches identity itself: it may need root for a root-only parent.
        tokio::task::spawn_blocking(move || node_fs::create_dir(&path, &user))
            .await
            .map_err(|e| Error::node(&node.name, "create folder", e.to_string()))?
    }

    async fn exists(&self, node: &NodeConfig, path: &Path) -> Result<bool> {
        let path = path.to_path_buf();
        self.on_host(node, "look at a path", move || node_fs::exists(&path))
            .await
    }

    async fn rename(&self, node: &NodeConfig, from: &Path, to: &Path) -> Result<()> {
        let (from, to) = (from.to_path_buf(), to.to_path_buf());
        self.on_host(node, "rename", move || node_fs::rename(&from, &to))
            .await
    }

    async fn read_file(&self, node: &NodeConfig, path: &Path) -> Result<Option<String>> {
        let path = path.to_path_buf();
        self.on_host(node, "read a file", move || node_fs::read_file(&path))
            .await
    }

    async fn write_file(
        &self,
        node: &NodeConfig,
        path: &Path,
        contents: &[u8],
        sync: FileSync,
    ) -> Result<()> {
        let (path, contents) = (path.to_path_buf(), contents.to_vec());
        self.on_host(node, "write a file", move || {
            node_fs::write_file(&path, &contents, sync)
        })
        .await
    }

    async fn remove_file(&self, node: &NodeConfig, path: &Path) -> Result<()> {
        let path = path.to_path_buf();
        self.on_host(node, "remove a file", move || node_fs::remove_file(&path))
            .await
    }

    async fn log_tail(&self, node: &NodeConfig, lines: usize) -> String {
        let log = self.config.log_file(node);
        let path = log.clone();
        match self
            .on_host(node, "read the server log", move || {
                node_fs::read_file(&path)
            })
            .await
        {
            Ok(Some(text)) => {
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Ok(None) => format!("({} does not exist)", log.display()),
            Err(e) => format!("(cannot read {}: {e})", log.display()),
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
        let (binary, config) = crate::plan::archive::tool_paths(&self.config)?;
        let proven = self.take_proven(&node.name, first, count, segment_size);
        // As the servers' user, with this process's environment (the `AWS_*` variables), as
        // the server's own restore_command runs: the worker's files are that user's.
        let mut cmd = Command::new(binary);
        self.switch_user(&mut cmd);
        cmd.current_dir("/")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .arg("--config")
            .arg(config)
            .args(crate::archiving::prefetch_args(
                &node.name,
                first,
                count,
                segment_size,
            ))
            .arg("--pg-wal")
            .arg(pg_wal);
        if proven.is_empty() {
            return self
                .run(node, "start the WAL prefetch", cmd)
                .await
                .map(|_| ());
        }
        tracing::info!(
            "{} of the window's {count} segments come from what the pre-flight read, not from the repository again",
            proven.len()
        );
        cmd.arg("--proven-on-stdin");
        self.run_with_input(node, "start the WAL prefetch", cmd, &proven)
            .await
            .map(|_| ())
    }

    fn hold_proven_wal(&self, node: &str, segments: Vec<ProvenSegment>) {
        let mut held = self.proven.lock().unwrap_or_else(|p| p.into_inner());
        if segments.is_empty() {
            held.remove(node);
        } else {
            held.insert(node.to_string(), segments);
        }
    }

    async fn remove_spool(
        &self,
        node: &NodeConfig,
        pg_wal: &Path,
    ) -> Result<crate::archiving::SpoolRemoval> {
        let pg_wal = pg_wal.to_path_buf();
        self.on_host(node, "remove the WAL prefetch spool", move || {
            crate::archiving::remove_spool_in(&pg_wal, super::SPOOL_REMOVE_WAIT)
        })
        .await
    }

    async fn citus_available(&self, _node: &NodeConfig) -> Result<bool> {
        let mut cmd = Command::new(self.bin_dir.join("pg_config"));
        cmd.arg("--pkglibdir").arg("--sharedir");
        let (lib, share) = match cmd.output().await {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout).to_string();
                let mut lines = text.lines().map(PathBuf::from);
                (lines.next(), lines.next())
            }
            _ => (None, None),
        };
        let lib = lib.unwrap_or_else(|| self.bin_dir.join("../lib"));
        let share = share.unwrap_or_else(|| PathBuf::from("/usr/share/postgresql/15"));
        Ok(lib.join("citus.so").is_file() && share.join("extension/citus.control").is_file())
    }
}
