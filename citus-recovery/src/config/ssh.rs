//! The `ssh` objects of the config: how the library reaches node hosts over SSH.
//!
//! A cluster-level `"ssh": {...}` turns SSH on for every node; a node's own `"ssh"` object
//! overrides any of its keys for that node (and turns SSH on even without a cluster-level one).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The port `ssh` uses when none is given.
pub const DEFAULT_SSH_PORT: u16 = 22;
/// OpenSSH's default `MaxSessions`: channels one connection may carry at once.
pub const DEFAULT_MAX_SESSIONS: usize = 10;

/// One `ssh` object as written (cluster-level or a node's override); every key is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SshConfig {
    /// The user to log in as: the OS user the servers run as (default: `osUser`, else `postgres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The SSH port (default 22).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The private key to log in with (absolute); default: ssh's own choice (agent, `~/.ssh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
    /// The known_hosts file the host keys are checked against (absolute); default: ssh's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts_file: Option<PathBuf>,
    /// How many commands may run at once on one host, at most the host sshd's `MaxSessions`
    /// (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<usize>,
    /// Accept and record the key of a host not yet in known_hosts (trust on first use); a
    /// changed key is refused either way. Default false: an unknown host is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_new_host_keys: Option<bool>,
}

impl SshConfig {
    /// This object with every key it leaves out taken from `base`.
    pub fn over(&self, base: &SshConfig) -> SshConfig {
        SshConfig {
            user: self.user.clone().or_else(|| base.user.clone()),
            port: self.port.or(base.port),
            identity_file: self
                .identity_file
                .clone()
                .or_else(|| base.identity_file.clone()),
            known_hosts_file: self
                .known_hosts_file
                .clone()
                .or_else(|| base.known_hosts_file.clone()),
            max_sessions: self.max_sessions.or(base.max_sessions),
            accept_new_host_keys: self.accept_new_host_keys.or(base.accept_new_host_keys),
        }
    }

    /// Checks the keys given; `Err((key, problem, fix))` names the first bad one.
    pub(crate) fn check(&self) -> std::result::Result<(), (&'static str, String, String)> {
        if let Some(user) = &self.user {
            if user.is_empty() || user.starts_with('-') || user.contains(['@', ' ']) {
                return Err((
                    "user",
                    format!("{user:?} is not a user name"),
                    "give the OS user the servers run as, such as postgres".into(),
                ));
            }
            super::check_text(user).map_err(|p| ("user", p, super::CONTROL_FIX.into()))?;
            // The node-side scripts rely on running with the servers' rights, never root's.
            if user == "root" {
                return Err((
                    "user",
                    "is root".into(),
                    "log in as the OS user the servers run as (such as postgres), never root"
                        .into(),
                ));
            }
        }
        if self.port == Some(0) {
            return Err((
                "port",
                "is 0".into(),
                "use the port the host's sshd listens on (1 to 65535; default 22)".into(),
            ));
        }
        for (key, path) in [
            ("identityFile", &self.identity_file),
            ("knownHostsFile", &self.known_hosts_file),
        ] {
            if let Some(path) = path {
                if !path.is_absolute() {
                    return Err((
                        key,
                        format!("{} is a relative path", path.display()),
                        "use an absolute path".into(),
                    ));
                }
                super::check_path(path).map_err(|(p, fix)| (key, p, fix.into()))?;
            }
        }
        if self.max_sessions == Some(0) {
            return Err((
                "maxSessions",
                "is 0".into(),
                format!("use 1 up to the host sshd's MaxSessions (default {DEFAULT_MAX_SESSIONS})"),
            ));
        }
        Ok(())
    }
}
