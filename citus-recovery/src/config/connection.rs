//! The connection keys of the config: TLS (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) and
//! where the password is looked up (`passfile`), cluster-wide with a per-node override.
//!
//! Passwords never go in the config: a `password` key is refused. They come the libpq way, from
//! `PGPASSWORD` or a passfile (`passfile`, `PGPASSFILE`, `~/.pgpass`); see `crate::connect`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// libpq's `sslmode`: whether TLS is used and what of the server's certificate is checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// Without TLS first; with TLS (unverified) when the server refuses that.
    Allow,
    /// TLS when the server offers it (unverified), else without (libpq's default).
    #[default]
    Prefer,
    /// TLS always, the certificate not checked (encrypted, but open to a man in the middle);
    /// with `sslrootcert` given, as `verify-ca` (as libpq does).
    Require,
    /// TLS, the certificate chain checked against `sslrootcert`; the host name is not.
    VerifyCa,
    /// TLS, the chain checked and the certificate's name matched to the node's `hostname`.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling (`verify-full`).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The connection keys of one level (cluster or node); every key is optional. Holds paths
/// only, never a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionSettings {
    /// `sslmode` (default `prefer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslmode: Option<SslMode>,
    /// The CA certificate(s) (PEM) the server's certificate must chain to (`sslrootcert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslrootcert: Option<PathBuf>,
    /// The client certificate (PEM) shown to the server (`sslcert`; with `sslkey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslcert: Option<PathBuf>,
    /// The client certificate's private key (PEM, mode 0600 or stricter) (`sslkey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslkey: Option<PathBuf>,
    /// The password file (`.pgpass` format, mode 0600 or stricter) (`passfile`); default
    /// `PGPASSFILE`, else `~/.pgpass`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passfile: Option<PathBuf>,
}

impl ConnectionSettings {
    /// Whether no key is given.
    pub fn is_empty(&self) -> bool {
        *self == ConnectionSettings::default()
    }

    /// This level's keys, with every key it leaves out taken from `base`.
    pub fn over(&self, base: &ConnectionSettings) -> ConnectionSettings {
        ConnectionSettings {
            sslmode: self.sslmode.or(base.sslmode),
            sslrootcert: self
                .sslrootcert
                .clone()
                .or_else(|| base.sslrootcert.clone()),
            sslcert: self.sslcert.clone().or_else(|| base.sslcert.clone()),
            sslkey: self.sslkey.clone().or_else(|| base.sslkey.clone()),
            passfile: self.passfile.clone().or_else(|| base.passfile.clone()),
        }
    }

    /// The mode in force (`prefer` when none is given).
    pub fn mode(&self) -> SslMode {
        self.sslmode.unwrap_or_default()
    }

    /// Checks the keys as written (the files are checked when connecting, since `cluster
    /// create --secure` makes some of them); `Err((key, problem, fix))` names the first bad one.
    pub(crate) fn check(&self) -> std::result::Result<(), (&'static str, String, String)> {
        for (key, path) in [
            ("sslrootcert", &self.sslrootcert),
            ("sslcert", &self.sslcert),
            ("sslkey", &self.sslkey),
            ("passfile", &self.passfile),
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
        Ok(())
    }
}
