//! The node host's side of [`super::SshBackend`]: work that runs there through hidden
//! `citus-recovery` subcommands (`node-extract`, `node-install-control-file`, `node-backup`,
//! `node-restore`), with the same code and checks as on local nodes.
//!
//! `node-backup` and `node-restore` move a node's bytes between its server and the repository
//! on the node's host itself, so the admin host is no funnel. They read the host's copy of the
//! config (the same path as on the admin host, which `archive_command` needs anyway) and get
//! the admin's `AWS_*` variables on stdin ([`read_environment`]), never on a command line.
//!
//! They run as the user SSH logged in as, which must be the servers' user: as root they refuse,
//! since the files they write would belong to root and the local backend's switch to the
//! servers' user is not done here.

use std::io::BufRead;
use std::path::Path;

use crate::backend::local::extract;
use crate::backend::{ClusterBackend, LocalBackend, TablespaceTarget};
use crate::config::ClusterConfig;
use crate::error::{Error, Result};
use crate::plan::StoredBackup;

/// The prefix of the environment variables the admin host hands a node host on stdin: the S3
/// repository's credentials and settings.
pub const FORWARDED_ENV_PREFIX: &str = "AWS_";

/// What the admin host writes on the stdin of `node-backup`/`node-restore`: each forwarded
/// variable as a `NAME=value` line (values without a newline), then an empty line.
pub fn environment_request() -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in std::env::vars_os() {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
            continue;
        };
        if name.starts_with(FORWARDED_ENV_PREFIX) && !value.contains('\n') {
            out.extend_from_slice(format!("{name}={value}\n").as_bytes());
        }
    }
    out.push(b'\n');
    out
}

/// The variable that carries a node's password in a request (as libpq's `PGPASSWORD`).
pub const PASSWORD_VARIABLE: &str = "PGPASSWORD";

/// `request` (from [`environment_request`]) with the node's password as a
/// [`PASSWORD_VARIABLE`] line, for `node-backup`, which connects to its server from the host.
/// A password with a newline (which no passfile line can hold) is left out.
pub fn with_password(mut request: Vec<u8>, password: &str) -> Vec<u8> {
    if password.contains('\n') || password.is_empty() {
        return request;
    }
    // Before the empty line that ends the request.
    request.pop();
    request.extend_from_slice(format!("{PASSWORD_VARIABLE}={password}\n\n").as_bytes());
    request
}

/// Reads [`environment_request`]'s lines from stdin and sets them in this process's
/// environment (only names starting with [`FORWARDED_ENV_PREFIX`]); then watches the rest of
/// stdin on a thread and exits this process when it ends: the admin host went away, so the
/// work stops (a `pg_basebackup` child dies with us, its parent-death signal set).
pub fn read_environment() -> Result<()> {
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    loop {
        line.clear();
        let n = stdin
            .read_line(&mut line)
            .map_err(|e| Error::io("read the request on", "stdin", e))?;
        let text = line.trim_end_matches('\n');
        if n == 0 || text.is_empty() {
            break;
        }
        match text.split_once('=') {
            Some((name, value))
                if name.starts_with(FORWARDED_ENV_PREFIX) || name == PASSWORD_VARIABLE =>
            {
                std::env::set_var(name, value)
            }
            _ => {
                return Err(Error::InvalidArgument {
                    what: "request on stdin",
                    value: text.split('=').next().unwrap_or_default().into(),
                    problem: format!(
                        "only {FORWARDED_ENV_PREFIX}* variables are accepted; this subcommand is run by citus-recovery over SSH, not by hand"
                    ),
                })
            }
        }
    }
    drop(stdin);
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        std::process::exit(1);
    });
    Ok(())
}

/// The node-side backend and the node, from the host's copy of the config.
fn local(config: &Path, node: &str) -> Result<(LocalBackend, crate::config::NodeConfig)> {
    refuse_root()?;
    let config = ClusterConfig::from_file(config)?;
    let found = config
        .node(node)
        .cloned()
        .ok_or_else(|| Error::InvalidArgument {
            what: "node",
            value: node.into(),
            problem: "is not in the config on this host; copy the admin host's config here".into(),
        })?;
    Ok((LocalBackend::new(config)?, found))
}

/// The repository of the host's config.
fn repository(backend: &LocalBackend) -> Result<std::sync::Arc<dyn crate::repository::Repository>> {
    crate::cluster::open_repository(backend.config())?.ok_or_else(|| Error::Config {
        path: backend.config().source.clone(),
        field: "repository".into(),
        problem: "is not set in the config on this host".into(),
        fix: "copy the admin host's config (with its repository) to the same path here".into(),
    })
}

/// `node-backup`: streams a base backup of `node` (its server reached from this host) into the
/// repository of the config at `config`, as [`crate::plan::basebackup::into_repository`] does
/// on the admin host. The result's `manifest` holds only the manifest's `WAL-Ranges` (the
/// whole manifest is in the repository).
pub async fn backup_to_repository(config: &Path, node: &str, backup: &str) -> Result<StoredBackup> {
    let (backend, node) = local(config, node)?;
    let repo = repository(&backend)?;
    let client = backend.connect(&node).await?;
    let mut stored =
        crate::plan::basebackup::into_repository(&backend, repo.as_ref(), &node, backup, &client)
            .await?;
    let ranges = serde_json::from_str::<serde_json::Value>(&stored.manifest)
        .ok()
        .and_then(|m| m.get("WAL-Ranges").cloned())
        .unwrap_or(serde_json::Value::Null);
    stored.manifest = serde_json::json!({ "WAL-Ranges": ranges }).to_string();
    Ok(stored)
}

/// `node-restore`: streams `node`'s part of `backup` from the repository of the config at
/// `config` into the new `data_dir` on this host, as
/// [`crate::plan::basebackup::extract_from_repository`] does, with every extraction check.
pub async fn restore_from_repository(
    config: &Path,
    node: &str,
    backup: &str,
    data_dir: &Path,
    tablespaces: &[TablespaceTarget],
) -> Result<()> {
    let (backend, node) = local(config, node)?;
    let repo = repository(&backend)?;
    crate::plan::basebackup::extract_from_repository(
        &backend,
        repo.as_ref(),
        &node,
        backup,
        data_dir,
        tablespaces,
    )
    .await
}

/// Extracts the base backup in `backup` into `data_dir` on this host, as
/// [`crate::ClusterBackend::extract_backup`] describes.
pub fn extract_backup(
    backup: &Path,
    data_dir: &Path,
    tablespaces: &[TablespaceTarget],
) -> Result<()> {
    refuse_root()?;
    extract::extract_backup(backup, data_dir, tablespaces)
}

/// Makes an extracted `data_dir` on this host startable, as
/// [`crate::ClusterBackend::install_control_file`] describes.
pub fn install_control_file(data_dir: &Path, tablespaces: &[TablespaceTarget]) -> Result<()> {
    refuse_root()?;
    extract::install_control_file(data_dir, tablespaces)
}

/// Removes the prefetch spool in `pg_wal` on this host, as
/// [`crate::ClusterBackend::remove_spool`] describes.
pub fn remove_spool(pg_wal: &Path) -> Result<crate::archiving::SpoolRemoval> {
    refuse_root()?;
    crate::archiving::remove_spool_in(pg_wal, crate::backend::SPOOL_REMOVE_WAIT)
}

/// Parses a `--tablespace` value, `<oid>=<new folder>`.
pub fn parse_tablespace(value: &str) -> Result<TablespaceTarget> {
    let invalid = |problem: &str| Error::InvalidArgument {
        what: "tablespace",
        value: value.into(),
        problem: problem.into(),
    };
    let (oid, location) = value
        .split_once('=')
        .ok_or_else(|| invalid("write it as <oid>=<new folder>"))?;
    let oid = oid
        .parse::<u32>()
        .map_err(|_| invalid("the oid before '=' is not a number"))?;
    if !Path::new(location).is_absolute() {
        return Err(invalid("the folder after '=' is not an absolute path"));
    }
    Ok(TablespaceTarget {
        oid,
        location: location.into(),
    })
}

fn refuse_root() -> Result<()> {
    if nix::unistd::Uid::effective().is_root() {
        return Err(Error::InvalidArgument {
            what: "user",
            value: "root".into(),
            problem: "node-side steps run as the servers' OS user, not root; set the config's ssh.user to that user (such as postgres)".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_aws_variables_are_forwarded_one_line_each_then_an_empty_line() {
        std::env::set_var("AWS_CR_NODE_SIDE_TEST", "a b=c");
        std::env::set_var("AWS_CR_NODE_SIDE_TEST_NL", "two\nlines");
        std::env::set_var("CR_NODE_SIDE_TEST_OTHER", "secret");
        let text = String::from_utf8(environment_request()).unwrap();
        assert!(text.ends_with("\n\n") || text == "\n", "{text:?}");
        let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        assert!(lines.contains(&"AWS_CR_NODE_SIDE_TEST=a b=c"), "{lines:?}");
        assert!(
            lines.iter().all(|l| l.starts_with(FORWARDED_ENV_PREFIX)),
            "{lines:?}"
        );
        // A value with a newline would break the line protocol: left out.
        assert!(!text.contains("AWS_CR_NODE_SIDE_TEST_NL"), "{text:?}");
        assert!(!text.contains("secret"), "{text:?}");
    }

    #[test]
    fn the_backup_summary_round_trips_as_json() {
        let stored = StoredBackup {
            bytes: 42,
            tablespaces: vec![16384],
            manifest: r#"{"WAL-Ranges":[]}"#.into(),
            manifest_key: "backups/b/n/backup_manifest".into(),
        };
        let json = serde_json::to_string(&stored).unwrap();
        assert!(json.contains("\"manifestKey\""), "{json}");
        assert_eq!(serde_json::from_str::<StoredBackup>(&json).unwrap(), stored);
    }

    #[test]
    fn tablespace_values_are_parsed_and_checked() {
        let t = parse_tablespace("16384=/srv/ts new=1").unwrap();
        assert_eq!(t.oid, 16384);
        assert_eq!(t.location, Path::new("/srv/ts new=1"));
        for bad in ["16384", "x=/a", "16384=relative", "=/a"] {
            assert!(parse_tablespace(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_password_line_comes_before_the_end_of_the_request() {
        let req = with_password(b"AWS_REGION=x\n\n".to_vec(), "s3cret");
        assert_eq!(req, b"AWS_REGION=x\nPGPASSWORD=s3cret\n\n");
        let req = with_password(b"\n".to_vec(), "a\nb");
        assert_eq!(
            req, b"\n",
            "a password with a newline would end the request early"
        );
    }
}
