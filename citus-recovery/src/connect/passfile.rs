//! libpq's password file (`.pgpass`): `hostname:port:database:username:password` lines, `*`
//! matching anything in the first four fields, `\` escaping the next character (`\:`, `\\`),
//! `#` starting a comment line; the first matching line wins.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// A password: shown nowhere (its `Debug` says `<redacted>`, it has no `Display`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Secret(password.into())
    }

    /// The password itself, for the driver or a child's environment only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What a connection is to, for matching a line.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The host name as configured.
    pub host: &'a str,
    /// The port.
    pub port: u16,
    /// The database.
    pub database: &'a str,
    /// The user.
    pub user: &'a str,
}

/// Splits a line into its fields at unescaped `:`; the fifth field takes the rest of the line.
/// Each field keeps a flag per character: whether it was escaped (an escaped `*` is literal).
fn fields(line: &str) -> Option<Vec<Vec<(char, bool)>>> {
    let mut out = vec![Vec::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    out.last_mut()?.push((next, true));
                }
            }
            ':' if out.len() < 5 => out.push(Vec::new()),
            c => out.last_mut()?.push((c, false)),
        }
    }
    (out.len() == 5).then_some(out)
}

/// Whether a field matches `value`: a lone unescaped `*`, or the same text.
fn matches(field: &[(char, bool)], value: &str) -> bool {
    if field == [('*', false)] {
        return true;
    }
    field.iter().map(|(c, _)| *c).eq(value.chars())
}

/// The password of the first line of `text` matching `target`, as libpq finds it.
pub fn lookup(text: &str, target: Target<'_>) -> Option<Secret> {
    let port = target.port.to_string();
    text.lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(fields)
        .find(|f| {
            matches(&f[0], target.host)
                && matches(&f[1], &port)
                && matches(&f[2], target.database)
                && matches(&f[3], target.user)
        })
        .map(|f| Secret(f[4].iter().map(|(c, _)| *c).collect()))
}

/// Reads a password file: `Ok(None)` when it does not exist. It must be trusted as the
/// library's own files are ([`crate::trusted::open`]: ours, not a link, in folders no one else
/// can change), since the tool may run as root and sends what it reads to a server. Like libpq,
/// a file that group or others may read is refused (here as an error, not libpq's silent skip).
pub fn read(path: &Path) -> Result<Option<String>> {
    let Some(mut file) = crate::trusted::open(path)? else {
        return Ok(None);
    };
    let mode = file
        .metadata()
        .map_err(|e| Error::io("inspect", path, e))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::UntrustedFile {
            path: path.to_path_buf(),
            problem: format!("is a password file of mode {mode:04o}: group or others may read it"),
            fix: format!(
                "run `chmod 0600 {}` (libpq ignores such a file)",
                path.display()
            ),
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| Error::io("read", path, e))?;
    Ok(Some(text))
}

/// Writes `host:port:*:user:password` with `:` and `\` escaped, one field.
pub fn escape(field: &str) -> String {
    field.replace('\\', "\\\\").replace(':', "\\:")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t<'a>(host: &'a str, port: u16, database: &'a str, user: &'a str) -> Target<'a> {
        Target {
            host,
            port,
            database,
            user,
        }
    }

    fn pw(text: &str, target: Target<'_>) -> Option<String> {
        lookup(text, target).map(|s| s.expose().to_string())
    }

    #[test]
    fn first_matching_line_wins_and_wildcards_match_anything() {
        let text =
            "# comment\nother:5432:*:postgres:no\ndb1:5432:app:postgres:one\n*:*:*:postgres:any\n";
        assert_eq!(
            pw(text, t("db1", 5432, "app", "postgres")).as_deref(),
            Some("one")
        );
        assert_eq!(
            pw(text, t("db1", 5433, "app", "postgres")).as_deref(),
            Some("any")
        );
        assert_eq!(pw(text, t("db1", 5432, "app", "alice")), None);
    }

    #[test]
    fn escapes_are_read_as_libpq_reads_them() {
        // A host with a colon (IPv6), a password with ':' and '\', an escaped '*' is literal.
        let text = "\\:\\:1:5432:*:u:pa\\:ss\\\\word\nh:5432:\\*:u:star\n";
        assert_eq!(
            pw(text, t("::1", 5432, "x", "u")).as_deref(),
            Some("pa:ss\\word")
        );
        assert_eq!(pw(text, t("h", 5432, "x", "u")), None);
        assert_eq!(pw(text, t("h", 5432, "*", "u")).as_deref(), Some("star"));
    }

    #[test]
    fn short_lines_and_crlf_are_handled() {
        let text = "h:5432:db\r\nh:5432:db:u:secret\r\n";
        assert_eq!(pw(text, t("h", 5432, "db", "u")).as_deref(), Some("secret"));
    }

    #[test]
    fn escape_round_trips() {
        let line = format!("h:1:*:u:{}", escape("a:b\\c"));
        assert_eq!(pw(&line, t("h", 1, "d", "u")).as_deref(), Some("a:b\\c"));
    }

    #[test]
    fn a_file_others_may_read_is_refused_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        assert!(read(&path).unwrap().is_none());
        std::fs::write(&path, "*:*:*:*:hunter2\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read(&path).unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(
            shown.contains("0644") && shown.contains("chmod 0600"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read(&path).unwrap().unwrap().contains("hunter2"));
        assert!(read(dir.path()).is_err(), "a folder is not a password file");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(
            matches!(read(&link), Err(Error::UntrustedFile { .. })),
            "a link is never followed"
        );
    }

    #[test]
    fn debug_of_a_secret_hides_it() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
