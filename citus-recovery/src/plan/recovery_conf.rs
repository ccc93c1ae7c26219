//! Recovery settings in `postgresql.auto.conf`: written by restore-start, removed by
//! restore-finish. Pure text functions, so they are unit-tested without a server.
//!
//! Like pgBackRest, older `restore_command` and `recovery_*` lines are commented out with a marker
//! rather than deleted, and our own settings sit between two marker lines.

/// Marks a line this library commented out.
pub const COMMENTED_MARKER: &str = "# citus-recovery commented out: ";
/// Opens the block of settings this library wrote.
pub const BEGIN_MARKER: &str = "# citus-recovery recovery settings: begin";
/// Closes it.
pub const END_MARKER: &str = "# citus-recovery recovery settings: end";
/// Opens the block of settings raised to what the replayed WAL needs (`XLOG_PARAMETER_CHANGE`):
/// the cluster ran with them at the restore point, so restore-finish keeps them.
pub const RAISED_BEGIN_MARKER: &str =
    "# citus-recovery settings raised to what the WAL up to the restore point needs: begin";
/// Closes it.
pub const RAISED_END_MARKER: &str =
    "# citus-recovery settings raised to what the WAL up to the restore point needs: end";

/// Quotes a value for a PostgreSQL configuration file: single quotes doubled, backslashes
/// escaped (the file format treats a backslash as an escape inside quotes).
pub fn quote_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Whether a configuration line sets a recovery parameter that would fight ours.
fn is_recovery_line(line: &str) -> bool {
    let key = line.trim_start();
    key.starts_with("restore_command") || key.starts_with("recovery_target")
}

/// Whether a configuration line sets `key`.
fn sets(line: &str, key: &str) -> bool {
    line.trim_start()
        .strip_prefix(key)
        .is_some_and(|rest| rest.starts_with([' ', '\t', '=']))
}

/// Returns `conf` without our blocks, with other lines setting recovery parameters or any of
/// `raised` commented out, then a block raising `raised` (if any) and a block holding `settings`
/// at the end. Values are quoted already.
pub fn apply(conf: &str, settings: &[(String, String)], raised: &[(String, String)]) -> String {
    let mut out = String::new();
    let rest = strip_between(&strip_block(conf), RAISED_BEGIN_MARKER, RAISED_END_MARKER);
    for line in rest.lines() {
        if is_recovery_line(line) || raised.iter().any(|(k, _)| sets(line, k)) {
            out.push_str(COMMENTED_MARKER);
        }
        out.push_str(line);
        out.push('\n');
    }
    let mut block = |begin: &str, lines: &[(String, String)], end: &str| {
        out.push_str(begin);
        out.push('\n');
        for (key, value) in lines {
            out.push_str(&format!("{key} = {value}\n"));
        }
        out.push_str(end);
        out.push('\n');
    };
    if !raised.is_empty() {
        block(RAISED_BEGIN_MARKER, raised, RAISED_END_MARKER);
    }
    block(BEGIN_MARKER, settings, END_MARKER);
    out
}

/// Returns `conf` without our recovery block (the lines we commented out stay commented: they
/// are stale; raised settings stay).
pub fn strip_block(conf: &str) -> String {
    strip_between(conf, BEGIN_MARKER, END_MARKER)
}

fn strip_between(conf: &str, begin: &str, end: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in conf.lines() {
        match line.trim_end() {
            l if l == begin => inside = true,
            l if l == end => inside = false,
            _ if !inside => {
                out.push_str(line);
                out.push('\n');
            }
            _ => {}
        }
    }
    out
}

/// Whether `conf` holds a block of ours.
pub fn has_block(conf: &str) -> bool {
    conf.lines().any(|l| l.trim_end() == BEGIN_MARKER)
}

/// The `restore_command` reading one node's archive folder. Exit codes follow what PostgreSQL and
/// pgBackRest expect: 0 restored, 1 not in the archive (a normal part of recovery: PostgreSQL
/// takes it as the end of the WAL), and above 125 for anything else, which makes PostgreSQL abort
/// recovery instead of ending it early: 201 when the folder is not a directory the servers' user
/// can read and search, 200 when the copy fails.
///
/// PostgreSQL replaces `%f`, `%p`, `%r` and `%%` anywhere in the command, so every `%` of the
/// folder is doubled.
pub fn restore_command(archive_dir: &std::path::Path) -> String {
    let dir = shell_quote(&archive_dir.to_string_lossy()).replace('%', "%%");
    format!(
        "d={dir}; if [ ! -d \"$d\" ] || [ ! -r \"$d\" ] || [ ! -x \"$d\" ]; then echo \"restore_command: cannot read the WAL archive folder $d\" >&2; exit 201; fi; \
         f=\"$d/%f\"; if [ ! -e \"$f\" ]; then exit 1; fi; cp \"$f\" \"%p\" || exit 200"
    )
}

/// Quotes a string for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_quotes_and_backslashes() {
        assert_eq!(quote_value("plain"), "'plain'");
        assert_eq!(quote_value("it's"), "'it''s'");
        assert_eq!(quote_value(r"a\b"), r"'a\\b'");
        assert_eq!(quote_value("x'; DROP"), "'x''; DROP'");
    }

    #[test]
    fn apply_comments_out_old_lines_and_is_idempotent() {
        let conf = "# Do not edit this file manually!\nwal_level = 'replica'\nrestore_command = 'cp old'\nrecovery_target_name = 'old'\n";
        let settings = vec![
            ("restore_command".to_string(), quote_value("cp new")),
            ("recovery_target_name".to_string(), quote_value("rp")),
        ];
        let once = apply(conf, &settings, &[]);
        assert!(once.contains("wal_level = 'replica'\n"));
        assert!(once.contains(&format!("{COMMENTED_MARKER}restore_command = 'cp old'")));
        assert!(once.contains(&format!("{COMMENTED_MARKER}recovery_target_name = 'old'")));
        assert!(once.ends_with(&format!(
            "{BEGIN_MARKER}\nrestore_command = 'cp new'\nrecovery_target_name = 'rp'\n{END_MARKER}\n"
        )));
        let twice = apply(&once, &settings, &[]);
        assert_eq!(
            once, twice,
            "applying again replaces the block instead of stacking"
        );
        assert!(has_block(&twice));
        let stripped = strip_block(&twice);
        assert!(!has_block(&stripped));
        assert!(!stripped.contains("'cp new'"));
        assert!(stripped.contains("wal_level = 'replica'"));
    }

    #[test]
    fn raised_settings_replace_older_lines_and_outlive_restore_finish() {
        let conf = "max_connections = 100\nmax_connections_extra = 1\n";
        let settings = vec![("recovery_target_name".to_string(), quote_value("rp"))];
        let raised = vec![("max_connections".to_string(), "200".to_string())];
        let once = apply(conf, &settings, &raised);
        assert!(once.contains(&format!("{COMMENTED_MARKER}max_connections = 100")));
        assert!(once.contains("\nmax_connections_extra = 1\n"), "{once}");
        assert!(once.contains(&format!(
            "{RAISED_BEGIN_MARKER}\nmax_connections = 200\n{RAISED_END_MARKER}\n{BEGIN_MARKER}"
        )));
        assert_eq!(apply(&once, &settings, &raised), once, "idempotent");
        let finished = strip_block(&once);
        assert!(finished.contains("\nmax_connections = 200\n"), "{finished}");
        assert!(!finished.contains("recovery_target_name = 'rp'"));
    }

    #[test]
    fn restore_command_quotes_the_folder() {
        let cmd = restore_command(std::path::Path::new("/a b/it's 100%"));
        assert!(cmd.starts_with("d='/a b/it'\\''s 100%%'; "), "{cmd}");
    }

    /// What PostgreSQL does to the command before running it (`BuildRestoreCommand`): `%f`, `%p`
    /// and `%r` replaced, `%%` made one `%`, any other `%` kept.
    fn substitute(cmd: &str, file: &str, dest: &str) -> String {
        let mut out = String::new();
        let mut chars = cmd.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.peek() {
                Some('f') => out.push_str(file),
                Some('p') => out.push_str(dest),
                Some('r') => out.push_str("000000010000000000000001"),
                Some('%') => out.push('%'),
                _ => {
                    out.push('%');
                    continue;
                }
            }
            chars.next();
        }
        out
    }

    /// Runs the restore command of `archive` as PostgreSQL would, as the servers' user when we
    /// are root (root reads every folder, so permissions are only tested as another user).
    fn run(archive: &std::path::Path, file: &str, dest: &std::path::Path) -> Option<i32> {
        let cmd = substitute(&restore_command(archive), file, &dest.to_string_lossy());
        let mut command = if nix::unistd::Uid::effective().is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--", "sh", "-c"]);
            c
        } else {
            let mut c = std::process::Command::new("sh");
            c.arg("-c");
            c
        };
        command
            .arg(cmd)
            .current_dir("/")
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .code()
    }

    /// A folder the servers' user owns (when we are root), inside a world-searchable temp dir.
    fn scratch() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        dir
    }

    fn make_archive(parent: &std::path::Path, name: &str) -> std::path::PathBuf {
        let archive = parent.join(name);
        std::fs::create_dir(&archive).unwrap();
        std::fs::write(archive.join("000000010000000000000001"), b"wal").unwrap();
        use std::os::unix::fs::PermissionsExt;
        for p in [archive.clone(), archive.join("000000010000000000000001")] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        archive
    }

    #[test]
    fn restore_command_exit_codes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch();
        // %, %f, %%, spaces and a quote in the folder name: all kept literally.
        for name in ["plain", "100% sure it's a %f and %% b"] {
            let archive = make_archive(dir.path(), name);
            let out = dir.path().join(format!("restored {name}"));
            assert_eq!(
                run(&archive, "000000010000000000000001", &out),
                Some(0),
                "{name}"
            );
            assert_eq!(std::fs::read(&out).unwrap(), b"wal");
            assert_eq!(
                run(&archive, "000000010000000000000002", &out),
                Some(1),
                "{name}: a missing file is the only exit 1"
            );
            assert_eq!(
                run(
                    &archive,
                    "000000010000000000000001",
                    &dir.path().join("no/such/folder/x")
                ),
                Some(200),
                "{name}: a failing copy must abort recovery"
            );
        }
        let archive = make_archive(dir.path(), "locked");
        let out = dir.path().join("restored");
        assert_eq!(
            run(
                &dir.path().join("no such folder"),
                "000000010000000000000001",
                &out
            ),
            Some(201),
            "a missing archive folder is not the end of the WAL"
        );
        assert_eq!(
            run(
                &archive.join("000000010000000000000001"),
                "000000010000000000000001",
                &out
            ),
            Some(201),
            "a file is not an archive folder"
        );
        for (mode, what) in [(0o311, "unreadable"), (0o644, "not searchable")] {
            std::fs::set_permissions(&archive, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(
                run(&archive, "000000010000000000000002", &out),
                Some(201),
                "an {what} archive folder is not the end of the WAL"
            );
        }
        std::fs::set_permissions(&archive, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}
