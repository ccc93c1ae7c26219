//! Names of backups and restore points: the defaults and the rules, checked before anything runs.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};

/// PostgreSQL keeps restore point names in a 64-byte buffer, NUL included (`MAXFNAMELEN`).
pub const MAX_RESTORE_POINT_NAME_BYTES: usize = 63;

/// The default name of a backup or restore point: the UTC date and time, `20261125T143625Z`,
/// which sorts in time order and is a safe folder name.
pub fn default_name(now: DateTime<Utc>) -> String {
    now.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Checks a time stamp made by [`default_name`] (`20261125T143625Z`), as read back from a file:
/// it becomes part of folder names, so nothing else is accepted.
pub fn check_stamp(stamp: &str) -> Result<()> {
    let ok = stamp.len() == 16
        && stamp.bytes().enumerate().all(|(i, b)| match i {
            8 => b == b'T',
            15 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            what: "time stamp",
            value: stamp.into(),
            problem: "is not of the form 20261125T143625Z".into(),
        })
    }
}

/// Checks a backup name: it becomes a folder name, so it is kept to a portable character set.
pub fn check_backup_name(name: &str) -> Result<()> {
    let bad = |problem: String| Error::InvalidArgument {
        what: "backup name",
        value: name.into(),
        problem,
    };
    if name.is_empty() || name.len() > 100 {
        return Err(bad("must have 1 to 100 characters".into()));
    }
    if name.starts_with('.') {
        return Err(bad("must not start with '.'".into()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(bad(format!(
            "contains {c:?}; use letters, digits, '_', '-' and '.' (it becomes a folder name)"
        )));
    }
    if name.ends_with(".json") {
        return Err(bad(
            "must not end in .json (the catalog's own files do)".into()
        ));
    }
    Ok(())
}

/// Checks a restore point name. Quotes, semicolons and any other printable characters are fine:
/// the name travels as a SQL parameter and is quoted in the recovery settings.
pub fn check_restore_point_name(name: &str) -> Result<()> {
    let bad = |problem: String| Error::InvalidArgument {
        what: "restore point name",
        value: name.into(),
        problem,
    };
    if name.is_empty() {
        return Err(bad("is empty".into()));
    }
    if name.len() > MAX_RESTORE_POINT_NAME_BYTES {
        return Err(bad(format!(
            "is {} bytes long; PostgreSQL keeps at most {MAX_RESTORE_POINT_NAME_BYTES} bytes, so use a shorter name",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(bad(
            "contains a control character (such as a newline), which the recovery settings cannot hold".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_name_is_utc_and_sortable() {
        let t = DateTime::parse_from_rfc3339("2026-11-25T14:36:25+02:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(default_name(t), "20261125T123625Z");
        check_backup_name(&default_name(t)).unwrap();
        check_restore_point_name(&default_name(t)).unwrap();
    }

    #[test]
    fn stamps() {
        check_stamp("20261125T143625Z").unwrap();
        for bad in [
            "",
            "20261125T143625",
            "../../../etc/x",
            "20261125T14362/Z",
            "2026112XT143625Z",
        ] {
            assert!(check_stamp(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn backup_names() {
        for ok in ["nightly", "2026-11-25_a.1"] {
            check_backup_name(ok).unwrap();
        }
        for bad in [
            "",
            ".hidden",
            "a/b",
            "a b",
            "x'y",
            "restore-points.json",
            "..",
            ".",
            "a\nb",
            &"x".repeat(101),
        ] {
            assert!(
                matches!(check_backup_name(bad), Err(Error::InvalidArgument { .. })),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn restore_point_names() {
        for ok in [
            "it's; DROP TABLE x; --",
            "\"quoted\"",
            "ünïcødé",
            &"x".repeat(63),
        ] {
            check_restore_point_name(ok).unwrap();
        }
        let err = check_restore_point_name(&"x".repeat(64)).unwrap_err();
        assert!(err.to_string().contains("64 bytes"), "{err}");
        // 32 two-byte characters: 64 bytes though only 32 characters.
        assert!(check_restore_point_name(&"é".repeat(32)).is_err());
        assert!(check_restore_point_name("").is_err());
        assert!(check_restore_point_name("a\nb").is_err());
    }
}
