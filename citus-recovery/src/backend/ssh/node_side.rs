//! The node host's side of [`super::SshBackend`]: work that runs there through hidden
//! `citus-recovery` subcommands (`node-extract`, `node-install-control-file`), with the same
//! code and checks as on local nodes.
//!
//! They run as the user SSH logged in as, which must be the servers' user: as root they refuse,
//! since the files they write would belong to root and the local backend's switch to the
//! servers' user is not done here.

use std::path::Path;

use crate::backend::local::extract;
use crate::backend::TablespaceTarget;
use crate::error::{Error, Result};

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
    fn tablespace_values_are_parsed_and_checked() {
        let t = parse_tablespace("16384=/srv/ts new=1").unwrap();
        assert_eq!(t.oid, 16384);
        assert_eq!(t.location, Path::new("/srv/ts new=1"));
        for bad in ["16384", "x=/a", "16384=relative", "=/a"] {
            assert!(parse_tablespace(bad).is_err(), "{bad}");
        }
    }
}
