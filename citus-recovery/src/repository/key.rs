//! [`Key`]: a logical path in a repository, checked so that no backend can turn it into a path
//! outside the repository.

use std::fmt;

/// A logical key: parts separated by `/`, each part non-empty, not `.` or `..`, made of ASCII
/// letters, digits and `_ - . = + %` only. The empty key is the repository's root (a prefix that
/// lists everything).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Key(String);

impl Key {
    /// The root: lists everything.
    pub fn root() -> Key {
        Key(String::new())
    }

    /// Parses and checks a key; the error says what is wrong.
    pub fn new(key: &str) -> Result<Key, String> {
        if key.is_empty() {
            return Ok(Key::root());
        }
        for part in key.split('/') {
            check_part(part).map_err(|p| format!("key {key:?}: {p}"))?;
        }
        Ok(Key(key.to_string()))
    }

    /// This key with one more part.
    pub fn join(&self, part: &str) -> Result<Key, String> {
        check_part(part).map_err(|p| format!("key part {part:?}: {p}"))?;
        Ok(Key(if self.0.is_empty() {
            part.to_string()
        } else {
            format!("{}/{part}", self.0)
        }))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parts of the key.
    pub fn parts(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|p| !p.is_empty())
    }

    /// The last part (the object's name), empty for the root.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }

    /// Whether `self` lies under `prefix` (or is it).
    pub fn starts_with(&self, prefix: &Key) -> bool {
        prefix.0.is_empty()
            || self.0 == prefix.0
            || (self.0.starts_with(&prefix.0)
                && self.0.as_bytes().get(prefix.0.len()) == Some(&b'/'))
    }
}

fn check_part(part: &str) -> Result<(), &'static str> {
    if part.is_empty() {
        return Err("has an empty part");
    }
    if part == "." || part == ".." {
        return Err("has a '.' or '..' part");
    }
    if !part
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-.=+%".contains(&b))
    {
        return Err("has a character other than letters, digits and _ - . = + %");
    }
    Ok(())
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "/" } else { &self.0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_inside_the_repository() {
        for ok in [
            "wal/worker1/000000010000000000000003.zst",
            "a",
            "catalog/x=1+2%",
        ] {
            assert_eq!(Key::new(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "/abs", "a//b", "a/../b", "..", "./a", "a/", "a b", "a\\b", "ü", "a\n",
        ] {
            assert!(Key::new(bad).is_err(), "{bad:?}");
        }
        let k = Key::new("wal").unwrap().join("worker1").unwrap();
        assert_eq!(k.as_str(), "wal/worker1");
        assert_eq!(k.name(), "worker1");
        assert!(k.join("..").is_err());
        assert!(k.starts_with(&Key::new("wal").unwrap()));
        assert!(!Key::new("wallet")
            .unwrap()
            .starts_with(&Key::new("wal").unwrap()));
        assert!(k.starts_with(&Key::root()));
    }
}
