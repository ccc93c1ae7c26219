//! Remote commands as one string for the login shell of the SSH user.
//!
//! `ssh` joins its arguments with spaces and the remote login shell parses the result, so every
//! word is quoted here. The script runs under `sh -c` whatever the login shell is, and paths reach
//! it as positional parameters (`"$1"`), never pasted into the script's text.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// A word in single quotes, with each `'` written as `'\''`: the shell takes everything else
/// literally (spaces, `"`, `$`, backquotes, `\`, newlines).
pub fn quote(word: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(word.len() + 2);
    out.push(b'\'');
    for &b in word {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

/// One argument of a remote script.
#[derive(Debug, Clone)]
pub enum Arg<'a> {
    /// A path on the node's host.
    Path(&'a Path),
    /// Any other text.
    Text(&'a str),
}

impl Arg<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Arg::Path(p) => p.as_os_str().as_bytes(),
            Arg::Text(t) => t.as_bytes(),
        }
    }
}

/// The command line `sh -c '<script>' citus-recovery '<arg1>' ...` for `ssh`.
pub fn command(script: &str, args: &[Arg<'_>]) -> OsString {
    let mut line = b"sh -c ".to_vec();
    line.extend(quote(script.as_bytes()));
    line.extend_from_slice(b" citus-recovery");
    for arg in args {
        line.push(b' ');
        line.extend(quote(arg.bytes()));
    }
    OsString::from_vec(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a command line the way sshd does (`$SHELL -c <line>`) with a local sh.
    fn run_like_sshd(line: &OsString) -> Vec<u8> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(line)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        out.stdout
    }

    #[test]
    fn awkward_words_reach_the_script_unchanged() {
        let awkward = [
            "plain",
            "with space",
            "it's",
            "'",
            "''",
            "double \" quote",
            "$HOME and $(id) and `id`",
            "back\\slash",
            "new\nline",
            "-n",
            "*",
            "",
            "%C %h",
        ];
        for word in awkward {
            let line = command(r#"printf '%s' "$1""#, &[Arg::Text(word)]);
            assert_eq!(run_like_sshd(&line), word.as_bytes(), "{word:?}");
        }
        let path = Path::new("/tmp/a b/c'd/$e");
        let line = command(
            r#"printf '%s|%s' "$1" "$2""#,
            &[Arg::Path(path), Arg::Text("x y")],
        );
        assert_eq!(run_like_sshd(&line), b"/tmp/a b/c'd/$e|x y");
    }

    #[test]
    fn quote_escapes_only_single_quotes() {
        assert_eq!(quote(b"a'b"), b"'a'\\''b'".to_vec());
        assert_eq!(quote(b"$x"), b"'$x'".to_vec());
    }
}
