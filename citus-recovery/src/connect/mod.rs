//! Connections to the nodes' servers, the libpq way: the password from `PGPASSWORD` or a
//! password file (the `passfile` key, `PGPASSFILE`, `~/.pgpass`), TLS as `sslmode` says (over
//! rustls), and the same settings handed to the programs the library runs (`pg_basebackup`)
//! through their environment, never their command line.
//!
//! A password is held as a [`passfile::Secret`] and shown nowhere: not in errors, logs, plans
//! or `Debug` output.

pub(crate) mod certs;
pub mod passfile;
mod tls;

use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Socket};

use crate::config::{ClusterConfig, ConnectionSettings, NodeConfig, SslMode};
use crate::error::{Error, Result};
use passfile::Secret;

/// Where a node's password was found, for error messages (never the password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// `PGPASSWORD` in the environment.
    Environment,
    /// A line of this password file.
    File(PathBuf),
    /// Nowhere: the `PGPASSWORD` variable is unset and no password file line matches (the
    /// file looked at, if any existed).
    None(Option<PathBuf>),
}

impl std::fmt::Display for PasswordSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordSource::Environment => f.write_str("PGPASSWORD"),
            PasswordSource::File(p) => write!(f, "the password file {}", p.display()),
            PasswordSource::None(Some(p)) => write!(
                f,
                "nowhere (PGPASSWORD is unset and no line of {} matches)",
                p.display()
            ),
            PasswordSource::None(None) => {
                f.write_str("nowhere (PGPASSWORD is unset and there is no password file)")
            }
        }
    }
}

fn address(node: &NodeConfig) -> String {
    format!("{}:{}", node.hostname, node.port)
}

fn refused(node: &NodeConfig, problem: String, fix: String) -> Error {
    Error::Connection {
        node: node.name.clone(),
        address: address(node),
        problem,
        fix,
    }
}

/// The home folder of the user running us (`HOME`, else the password database's).
fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
        })
}

/// The password for `node`, as libpq finds it: `PGPASSWORD`, else the first matching line of
/// the password file (the `passfile` key, else `PGPASSFILE`, else `~/.pgpass`). A configured
/// `passfile` that is missing, or any password file that group or others may read, is an error.
pub fn password(
    config: &ClusterConfig,
    node: &NodeConfig,
) -> Result<(Option<Secret>, PasswordSource)> {
    if let Some(p) = std::env::var_os("PGPASSWORD").filter(|p| !p.is_empty()) {
        let p = p.into_string().map_err(|_| {
            refused(
                node,
                "PGPASSWORD is not valid UTF-8".into(),
                "set PGPASSWORD to the password as UTF-8 text".into(),
            )
        })?;
        return Ok((Some(Secret::new(p)), PasswordSource::Environment));
    }
    let settings = config.connection_for(node);
    let (path, configured) = match &settings.passfile {
        Some(p) => (Some(p.clone()), true),
        None => (
            std::env::var_os("PGPASSFILE")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .or_else(|| home().map(|h| h.join(".pgpass"))),
            false,
        ),
    };
    let Some(path) = path else {
        return Ok((None, PasswordSource::None(None)));
    };
    let text = passfile::read(&path)?;
    let Some(text) = text else {
        if configured {
            return Err(refused(
                node,
                format!("the password file {} (passfile) does not exist", path.display()),
                "create it (lines host:port:database:user:password, mode 0600) or correct the passfile key".into(),
            ));
        }
        return Ok((None, PasswordSource::None(None)));
    };
    let found = passfile::lookup(
        &text,
        passfile::Target {
            host: &node.hostname,
            port: node.port,
            database: &node.dbname,
            user: &node.username,
        },
    );
    Ok(match found {
        Some(s) => (Some(s), PasswordSource::File(path)),
        None => (None, PasswordSource::None(Some(path))),
    })
}

/// Checks the client certificate keys: both or neither, and a key file only we may read.
fn check_client_files(node: &NodeConfig, s: &ConnectionSettings) -> Result<()> {
    match (&s.sslcert, &s.sslkey) {
        (None, None) => Ok(()),
        (Some(_), None) | (None, Some(_)) => Err(refused(
            node,
            "only one of sslcert and sslkey is given".into(),
            "give both (the client certificate and its private key) or neither".into(),
        )),
        (Some(_), Some(key)) => {
            let meta = std::fs::metadata(key).map_err(|e| {
                refused(
                    node,
                    format!("cannot read sslkey {}: {e}", key.display()),
                    "point sslkey at the client certificate's private key".into(),
                )
            })?;
            // libpq: owned by us, no group/other rights; owned by root, at most group-readable.
            let mode = meta.permissions().mode() & 0o777;
            let ours = meta.uid() == nix::unistd::getuid().as_raw();
            let too_open = if ours {
                mode & 0o077 != 0
            } else {
                mode & 0o037 != 0
            };
            if (meta.uid() == 0 || ours) && too_open {
                return Err(refused(
                    node,
                    format!(
                        "sslkey {} has mode {mode:04o}: others may read it",
                        key.display()
                    ),
                    format!("run `chmod 0600 {}`", key.display()),
                ));
            }
            Ok(())
        }
    }
}

/// The text of an error and its sources.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Turns a failed connection attempt into an error that names the node and the fix.
fn failure(
    node: &NodeConfig,
    s: &ConnectionSettings,
    source: &PasswordSource,
    e: tokio_postgres::Error,
) -> Error {
    let mode = s.mode();
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        if code == "28P01" {
            return refused(
                node,
                format!(
                    "the server refused the password of user {} (SQLSTATE 28P01); it came from {source}",
                    node.username
                ),
                "correct the password there (PGPASSWORD, or the line host:port:database:user:password of the password file)".into(),
            );
        }
        if code == "28000" && db.message().contains("no encryption") {
            return refused(
                node,
                format!(
                    "the server accepts this login only over TLS (sslmode is {mode}): {}",
                    db.message()
                ),
                "set sslmode to verify-full (with sslrootcert), verify-ca or require in the config"
                    .into(),
            );
        }
        if code == "28000" && db.message().contains("channel binding") {
            return refused(
                node,
                format!("{} (the server's certificate is not the one this TLS session saw)", db.message()),
                "make sure nothing intercepts TLS between this host and the node (a proxy or a man in the middle), and use sslmode verify-full".into(),
            );
        }
        if code == "28000" {
            return refused(
                node,
                db.message().to_string(),
                "admit this host, user and database in the node's pg_hba.conf, or connect as a user it admits".into(),
            );
        }
        return Error::sql(&node.name, format!("connect to {}", address(node)), e);
    }
    let text = chain(&e);
    if text.contains("password missing") {
        return refused(
            node,
            format!("the server asks for a password and none was found: {source}"),
            format!(
                "add a line {}:{}:{}:{}:<password> to the password file (the passfile key, PGPASSFILE or ~/.pgpass; mode 0600), or set PGPASSWORD",
                passfile::escape(&node.hostname),
                node.port,
                passfile::escape(&node.dbname),
                passfile::escape(&node.username)
            ),
        );
    }
    if text.contains("server does not support TLS") {
        return refused(
            node,
            format!("sslmode is {mode} but the server does not offer TLS"),
            "turn ssl on in the node's postgresql.conf (ssl = on, with a certificate), or lower sslmode".into(),
        );
    }
    if text.contains("certificate") || text.contains("TLS") {
        let roots = s
            .sslrootcert
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(none)".into());
        return refused(
            node,
            format!("the TLS handshake failed (sslmode {mode}, sslrootcert {roots}): {text}"),
            format!(
                "give sslrootcert the CA that signed the node's certificate; with verify-full the certificate must name {:?}, the node's hostname (verify-ca skips the name check)",
                node.hostname
            ),
        );
    }
    Error::sql(&node.name, format!("connect to {}", address(node)), e)
}

async fn open<T>(
    cfg: &tokio_postgres::Config,
    tls: T,
) -> std::result::Result<Client, tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket> + 'static + Send,
    T::TlsConnect: Send,
    T::Stream: Send + 'static,
    <T::TlsConnect as tokio_postgres::tls::TlsConnect<Socket>>::Future: Send,
{
    let (client, connection) = cfg.connect(tls).await?;
    tokio::spawn(async move {
        // The connection ends when the client is dropped; its error, if any, surfaces through
        // the client's next call.
        let _ = connection.await;
    });
    Ok(client)
}

/// Connects to `node`'s database as its configured user, with the password and TLS settings of
/// the config and environment. Errors name the node and the fix, and never hold the password.
pub async fn connect(config: &ClusterConfig, node: &NodeConfig) -> Result<Client> {
    let s = config.connection_for(node);
    check_client_files(node, &s)?;
    let (password, source) = password(config, node)?;
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&node.hostname)
        .port(node.port)
        .user(&node.username)
        .dbname(&node.dbname)
        .application_name("citus-recovery")
        .connect_timeout(Duration::from_secs(10));
    if let Some(p) = &password {
        cfg.password(p.expose());
    }
    let mode = s.mode();
    let verify = match mode {
        SslMode::VerifyFull => tls::Verify::Full,
        SslMode::VerifyCa => tls::Verify::Chain,
        // libpq: require with a root certificate given verifies the chain.
        SslMode::Require if s.sslrootcert.is_some() => tls::Verify::Chain,
        _ => tls::Verify::None,
    };
    let connector = || -> Result<tls::MakeRustlsConnect> {
        let client = s.sslcert.as_deref().zip(s.sslkey.as_deref());
        let c = tls::client_config(verify, s.sslrootcert.as_deref(), client).map_err(|p| {
            refused(
                node,
                format!("{}: {}", p.key, p.problem),
                format!(
                    "correct the {} key of the config (a PEM file this user can read)",
                    p.key
                ),
            )
        })?;
        Ok(tls::MakeRustlsConnect::new(c))
    };
    use tokio_postgres::config::SslMode as Wire;
    let result = match mode {
        SslMode::Disable => open(cfg.ssl_mode(Wire::Disable), tokio_postgres::NoTls).await,
        SslMode::Allow => {
            match open(cfg.ssl_mode(Wire::Disable), tokio_postgres::NoTls).await {
                // Refused without TLS (pg_hba hostssl only): try again with it.
                Err(e) if e.as_db_error().is_some() => {
                    open(cfg.ssl_mode(Wire::Require), connector()?).await
                }
                other => other,
            }
        }
        SslMode::Prefer => open(cfg.ssl_mode(Wire::Prefer), connector()?).await,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            open(cfg.ssl_mode(Wire::Require), connector()?).await
        }
    };
    result.map_err(|e| failure(node, &s, &source, e))
}

/// The environment a libpq program (`pg_basebackup`) connecting to `node` gets, so it connects
/// as the library does: `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY` from the config
/// and `PGPASSWORD` with the password the library found (the program may run as another OS
/// user, who cannot read our password file). Never put on a command line.
pub(crate) fn program_env(
    config: &ClusterConfig,
    node: &NodeConfig,
) -> Result<Vec<(&'static str, OsString)>> {
    let s = config.connection_for(node);
    let mut env = vec![("PGSSLMODE", OsString::from(s.mode().as_str()))];
    for (name, path) in [
        ("PGSSLROOTCERT", &s.sslrootcert),
        ("PGSSLCERT", &s.sslcert),
        ("PGSSLKEY", &s.sslkey),
    ] {
        if let Some(p) = path {
            env.push((name, p.clone().into_os_string()));
        }
    }
    if let (Some(p), _) = password(config, node)? {
        env.push(("PGPASSWORD", OsString::from(p.expose())));
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-node config on a port nothing listens on, with `keys` at cluster level.
    fn config(keys: serde_json::Value) -> ClusterConfig {
        let mut v = serde_json::json!({
            "clusterName": "t", "workerCount": 0,
            "coordinatorNode": {"name": "coordinator", "hostname": "127.0.0.1", "port": 1, "username": "postgres", "dbname": "postgres"},
            "workerNodes": [],
            "clusterBaseFolder": "/srv/c", "archiveBaseFolder": "/srv/a", "backupBaseFolder": "/srv/b"
        });
        for (k, val) in keys.as_object().unwrap() {
            v[k] = val.clone();
        }
        ClusterConfig::from_json_str(&v.to_string(), None).unwrap()
    }

    async fn refusal(c: &ClusterConfig) -> String {
        match connect(c, &c.coordinator).await {
            Err(e @ Error::Connection { .. }) => e.to_string(),
            other => panic!("expected a connection error, got {:?}", other.map(|_| ())),
        }
    }

    #[tokio::test]
    async fn file_problems_are_named_before_any_network() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(serde_json::json!({"sslmode": "verify-full"}));
        let e = refusal(&c).await;
        assert!(
            e.contains("sslrootcert") && e.contains("node coordinator"),
            "{e}"
        );

        let cert = dir.path().join("client.crt");
        let c = config(serde_json::json!({"sslcert": cert}));
        let e = refusal(&c).await;
        assert!(e.contains("sslcert and sslkey"), "{e}");

        let key = dir.path().join("client.key");
        std::fs::write(&key, "not a key").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = config(serde_json::json!({"sslmode": "require", "sslcert": cert, "sslkey": key}));
        let e = refusal(&c).await;
        assert!(e.contains("chmod 0600"), "{e}");

        let missing = dir.path().join("nope");
        let c = config(serde_json::json!({"passfile": missing}));
        let e = refusal(&c).await;
        assert!(
            e.contains("does not exist") && e.contains("passfile"),
            "{e}"
        );
    }

    #[test]
    fn program_env_carries_the_tls_keys() {
        let c = config(serde_json::json!({"sslmode": "verify-ca", "sslrootcert": "/etc/ca.crt"}));
        let env = program_env(&c, &c.coordinator).unwrap();
        assert!(env.contains(&("PGSSLMODE", "verify-ca".into())), "{env:?}");
        assert!(
            env.contains(&("PGSSLROOTCERT", "/etc/ca.crt".into())),
            "{env:?}"
        );
    }
}
