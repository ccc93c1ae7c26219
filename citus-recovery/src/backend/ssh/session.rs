//! One multiplexed SSH connection per node host, through the system `ssh` and its ControlMaster.
//!
//! The first command to a host starts a master connection (`ssh -M -N -f`, under a lock so
//! nodes sharing a host do not race to start one); every command then runs as a channel of it.
//! A semaphore keeps at most `maxSessions` channels open at once, as sshd refuses more. The
//! control sockets live in a folder of our own (mode 0700, made fresh, never reused).

use std::ffi::OsString;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::{Mutex, Semaphore};

use crate::error::{Error, Result};

/// How long a master connection outlives its last command: bounds what a crashed process leaves.
const CONTROL_PERSIST_SECS: u32 = 120;
/// `ssh`'s own exit status for a failure of the connection (not of the remote command).
const SSH_FAILED: i32 = 255;

/// Where and how to log in to one host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The host name or address (also PostgreSQL's).
    pub host: String,
    /// The SSH port.
    pub port: u16,
    /// The user to log in as.
    pub user: String,
    /// The private key, if one is configured.
    pub identity_file: Option<PathBuf>,
    /// The known_hosts file, if one is configured.
    pub known_hosts_file: Option<PathBuf>,
    /// Trust on first use (a changed key is refused either way).
    pub accept_new_host_keys: bool,
}

impl Target {
    /// `user@host:port`, for messages.
    pub fn display(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

/// The folder holding the control sockets; removed, with the masters stopped, when dropped.
#[derive(Debug)]
pub struct ControlDir {
    path: PathBuf,
}

impl ControlDir {
    /// Makes a new folder under the temporary folder, mode 0700; never one that exists already
    /// (someone else could have made it).
    pub fn new() -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        let mut last = None;
        for _ in 0..16 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            // Short: a socket path must fit in 108 bytes with ssh's 40-character %C.
            let path = base.join(format!("crssh-{}-{n}-{nanos:x}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(ControlDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(Error::io("create the SSH control folder", path, e)),
            }
        }
        Err(Error::io(
            "create the SSH control folder",
            base,
            last.unwrap_or_else(|| std::io::Error::other("no free name")),
        ))
    }
}

impl Drop for ControlDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The output of a remote command that ran (whatever its exit status).
#[derive(Debug)]
pub struct Output {
    /// The remote command's exit status (`None`: killed by a signal).
    pub code: Option<i32>,
    /// What it wrote to stdout.
    pub stdout: Vec<u8>,
    /// What it wrote to stderr, as text.
    pub stderr: String,
}

/// One node host: its target, its master connection and its channel limit.
#[derive(Debug)]
pub struct Host {
    target: Target,
    control_path: PathBuf,
    sessions: Semaphore,
    master: Mutex<bool>,
}

impl Host {
    /// A host reached through control sockets in `dir`, with at most `max_sessions` channels.
    pub fn new(target: Target, dir: &ControlDir, index: usize, max_sessions: usize) -> Self {
        Host {
            target,
            control_path: dir.path.join(format!("h{index}")),
            sessions: Semaphore::new(max_sessions),
            master: Mutex::new(false),
        }
    }

    /// Where and how it is logged in to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// An `ssh` command with every option but the destination and the remote command.
    fn ssh(&self) -> Command {
        let t = &self.target;
        let mut cmd = Command::new("ssh");
        cmd.arg("-o")
            .arg("BatchMode=yes")
            .arg("-o")
            .arg(if t.accept_new_host_keys {
                "StrictHostKeyChecking=accept-new"
            } else {
                "StrictHostKeyChecking=yes"
            })
            .arg("-o")
            .arg("ConnectTimeout=10")
            .arg("-o")
            .arg("ServerAliveInterval=10")
            .arg("-o")
            .arg("ServerAliveCountMax=3")
            .arg("-o")
            .arg(option("ControlPath", &self.control_path))
            .arg("-p")
            .arg(t.port.to_string())
            .arg("-l")
            .arg(&t.user);
        if let Some(key) = &t.identity_file {
            cmd.arg("-o")
                .arg("IdentitiesOnly=yes")
                .arg("-i")
                .arg(escape_percent(key));
        }
        if let Some(file) = &t.known_hosts_file {
            // Only that file vouches for host keys.
            cmd.arg("-o")
                .arg(option("UserKnownHostsFile", file))
                .arg("-o")
                .arg("GlobalKnownHostsFile=/dev/null");
        }
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    /// Starts the master connection unless it runs; an error says why the host is unreachable.
    async fn ensure_master(&self, node: &str) -> Result<()> {
        let mut started = self.master.lock().await;
        if *started && self.control_path.exists() {
            return Ok(());
        }
        let mut cmd = self.ssh();
        cmd.arg("-o")
            .arg("ControlMaster=yes")
            .arg("-o")
            .arg(format!("ControlPersist={CONTROL_PERSIST_SECS}"))
            .arg("-N")
            .arg("-f")
            .arg("--")
            .arg(&self.target.host)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = cmd.output().await.map_err(|e| {
            Error::node(
                node,
                "ssh",
                format!(
                    "cannot run ssh: {e}; fix: install the OpenSSH client (Debian: openssh-client)"
                ),
            )
        })?;
        if !out.status.success() {
            return Err(self.connect_error(node, &String::from_utf8_lossy(&out.stderr)));
        }
        *started = true;
        Ok(())
    }

    /// The error for a connection that failed, with the fix for the usual causes.
    pub fn connect_error(&self, node: &str, stderr: &str) -> Error {
        let t = &self.target;
        let fix = if stderr.contains("Host key verification failed")
            || stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        {
            format!(
                "the host key of {} is not the one known_hosts{} has (or none is there): check the key out of band and add it (ssh-keyscan -p {} {} prints it), or remove the stale line if the host was reinstalled",
                t.host,
                t.known_hosts_file
                    .as_ref()
                    .map(|f| format!(" ({})", f.display()))
                    .unwrap_or_default(),
                t.port,
                t.host
            )
        } else if stderr.contains("Permission denied") {
            format!(
                "authorize the key{} for user {} on {} (its ~/.ssh/authorized_keys)",
                t.identity_file
                    .as_ref()
                    .map(|f| format!(" {}.pub", f.display()))
                    .unwrap_or_default(),
                t.user,
                t.host
            )
        } else {
            format!(
                "check that {} is up and its sshd listens on port {}",
                t.host, t.port
            )
        };
        // A connection cut mid-command (the host or its sshd gone) leaves ssh nothing to say.
        let said = match stderr.trim() {
            "" => "the connection was lost, ssh said nothing",
            text => text,
        };
        Error::node(
            node,
            format!("ssh to {}", t.display()),
            format!("{said}; fix: {fix}"),
        )
    }

    /// Runs `remote` (a [`super::quote::command`] line) on the host, feeding it `stdin`; a
    /// connection failure is an error, the remote command's own exit status is the caller's.
    pub async fn run(&self, node: &str, remote: &OsString, stdin: Option<&[u8]>) -> Result<Output> {
        self.run_with(node, remote, stdin, false).await
    }

    /// Like [`Self::run_watched`], with `stdin` written first (then held open).
    pub async fn run_watched_with_input(
        &self,
        node: &str,
        remote: &OsString,
        stdin: &[u8],
    ) -> Result<Output> {
        self.run_with(node, remote, Some(stdin), true).await
    }

    /// Like [`Self::run_watched`], writing `stdin` first and then holding it open.
    pub async fn run_fed_watched(
        &self,
        node: &str,
        remote: &OsString,
        stdin: &[u8],
    ) -> Result<Output> {
        self.run_with(node, remote, Some(stdin), true).await
    }

    async fn run_with(
        &self,
        node: &str,
        remote: &OsString,
        stdin: Option<&[u8]>,
        hold_stdin: bool,
    ) -> Result<Output> {
        self.ensure_master(node).await?;
        let _permit = self
            .sessions
            .acquire()
            .await
            .map_err(|e| Error::node(node, "ssh", e.to_string()))?;
        let mut cmd = self.ssh();
        cmd.arg("-o")
            .arg("ControlMaster=no")
            .arg("-T")
            .arg("--")
            .arg(&self.target.host)
            .arg(remote)
            .stdin(if stdin.is_some() || hold_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::node(node, "ssh", format!("cannot run ssh: {e}")))?;
        let mut held = None;
        if let Some(mut pipe) = child.stdin.take() {
            if let Some(bytes) = stdin {
                // A command that fails early closes its stdin; its exit status tells why.
                let _ = pipe.write_all(bytes).await;
            }
            if hold_stdin {
                held = Some(pipe);
            }
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| Error::node(node, "ssh", format!("cannot wait for ssh: {e}")))?;
        drop(held);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.code() == Some(SSH_FAILED) {
            // The master may have gone (idle timeout, host restarted): start it again next time.
            *self.master.lock().await = false;
            return Err(self.connect_error(node, &stderr));
        }
        Ok(Output {
            code: out.status.code(),
            stdout: out.stdout,
            stderr,
        })
    }

    /// Stops the master connection if one was started (when the backend is dropped).
    pub fn stop_master(&self) {
        let started = self.master.try_lock().map(|s| *s).unwrap_or(true);
        if !started || !self.control_path.exists() {
            return;
        }
        let _ = std::process::Command::new("ssh")
            .arg("-o")
            .arg(option("ControlPath", &self.control_path))
            .arg("-p")
            .arg(self.target.port.to_string())
            .arg("-l")
            .arg(&self.target.user)
            .arg("-O")
            .arg("exit")
            .arg("--")
            .arg(&self.target.host)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `Key=path` for `-o`, with ssh's `%` tokens escaped so the path is taken as written (the
/// backend refuses paths with blanks or quotes, which `-o` would split).
fn option(key: &str, path: &Path) -> OsString {
    let mut s = OsString::from(format!("{key}="));
    s.push(escape_percent(path));
    s
}

/// The path with each `%` doubled: ssh expands `%` tokens in key and known_hosts paths.
fn escape_percent(path: &Path) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut out = Vec::new();
    for &b in path.as_os_str().as_bytes() {
        out.push(b);
        if b == b'%' {
            out.push(b'%');
        }
    }
    OsString::from_vec(out)
}
