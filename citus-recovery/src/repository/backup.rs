//! Base backups in the repository: where their objects lie, the upload of a tar stream checked
//! as it passes, and the blocking reader a restore extracts from.
//!
//! ```text
//! backups/<backup>/<node>/base.tar<.zst|.lz4>     the data directory's tar, streamed (codec.rs)
//! backups/<backup>/<node>/<oid>.tar<.zst|.lz4>    a user tablespace's tar (the fallback)
//! backups/<backup>/<node>/backup_manifest         PostgreSQL's manifest, one frame
//! ```
//!
//! A tar object is completed only after the whole tar went past, the program that wrote it
//! succeeded and the caller's check (the manifest's sizes and CRC32C) accepted it: a failed
//! backup never leaves a complete object, and no catalog entry names an incomplete one.

use std::future::Future;
use std::io::Read;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::codec::{Compression, StreamEncoder};
use super::{GetStream, Key, RepoError, Repository};
use crate::error::{Error, Result};

/// The folder of every backup's objects.
pub const BACKUPS: &str = "backups";

/// The name of the manifest's object in a node's folder.
pub const MANIFEST: &str = "backup_manifest";

/// The largest `backup_manifest` kept from a tar (it lists every file of the data directory).
const MAX_MANIFEST_BYTES: u64 = 1 << 30;

/// `backups/<backup>/<node>`: the folder of one node's part of a backup.
pub fn node_folder(backup: &str, node: &str) -> Result<Key> {
    let bad = |e: String| Error::InvalidArgument {
        what: "backup or node name",
        value: format!("{backup}/{node}"),
        problem: format!("{e}; use plain names"),
    };
    Key::new(BACKUPS)
        .and_then(|k| k.join(backup))
        .and_then(|k| k.join(node))
        .map_err(bad)
}

/// The key of the tar `name` (`base` or a tablespace's oid) of a node's backup.
pub fn tar_key(folder: &Key, name: &str, compression: Compression) -> Key {
    folder
        .join(&format!("{name}.tar{}", compression.suffix()))
        .expect("a tar's name is a valid key part")
}

/// The key of a node's `backup_manifest`.
pub fn manifest_key(folder: &Key) -> Key {
    folder.join(MANIFEST).expect("a constant key part")
}

/// The tar behind a tar object's name (`base.tar.zst` is `base`, `16384.tar` is `16384`).
pub fn tar_name(object: &str) -> Option<&str> {
    let stem = object
        .strip_suffix(".zst")
        .or_else(|| object.strip_suffix(".lz4"))
        .unwrap_or(object);
    stem.strip_suffix(".tar")
}

/// The objects of one node's backup in the repository: the manifest (decoded) and the tar
/// objects by tar name (`base`, or a tablespace's oid).
pub async fn stored_objects(
    repo: &dyn Repository,
    backup: &str,
    node: &str,
) -> Result<(Key, Vec<u8>, Vec<(String, super::ObjectMeta)>)> {
    let folder = node_folder(backup, node)?;
    let mkey = manifest_key(&folder);
    let frame = repo.get(&mkey).await.map_err(|e| match e {
        RepoError::NotFound { .. } => Error::Corrupt {
            key: mkey.as_str().into(),
            problem: format!(
                "it is missing, so backup {backup} of node {node} is incomplete; choose another \
                 backup"
            ),
        },
        other => other.into(),
    })?;
    let manifest = super::codec::decode(&frame).map_err(|e| Error::Corrupt {
        key: mkey.as_str().into(),
        problem: format!("{e}; choose another backup"),
    })?;
    let tars = repo
        .list(&folder)
        .await?
        .into_iter()
        .filter_map(|m| Some((tar_name(m.key.name())?.to_string(), m)))
        .collect();
    Ok((mkey, manifest.to_vec(), tars))
}

/// One regular file of a tar, as it streamed past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarFile {
    /// Its path in the tar.
    pub path: String,
    /// Its size.
    pub size: u64,
    /// Its CRC32C.
    pub crc: u32,
}

/// What went past while a tar was uploaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScannedTar {
    /// Every regular file, in the tar's order.
    pub files: Vec<TarFile>,
    /// The content of a top-level `backup_manifest` entry (PostgreSQL adds one to the tar it
    /// writes to stdout).
    pub manifest: Option<Vec<u8>>,
    /// The tar's length.
    pub tar_bytes: u64,
}

/// A tar stored by [`upload_tar`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedTar {
    /// Its key.
    pub key: Key,
    /// The stored object's size.
    pub stored: u64,
    /// What went past.
    pub scanned: ScannedTar,
}

/// Streams `tar` (read on a blocking thread) into `repo` at `key`, encoded by `compression`,
/// noting each regular file's size and CRC32C on the way. `done` (the writing program's exit)
/// is awaited alongside; only when it succeeded and `accept` approves what went past is the
/// object completed. Otherwise nothing is left visible at `key` and the first failure is
/// returned. Memory stays bounded: a few chunks of [`super::codec::STREAM_CHUNK`] and the
/// upload's parts.
pub async fn upload_tar(
    repo: &dyn Repository,
    key: &Key,
    compression: Compression,
    tar: Box<dyn Read + Send>,
    done: impl Future<Output = Result<()>> + Send,
    accept: impl FnOnce(&ScannedTar) -> Result<()> + Send,
) -> Result<UploadedTar> {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(8);
    let thread_tx = tx.clone();
    let scan = tokio::task::spawn_blocking(move || scan_and_encode(tar, compression, thread_tx));
    let put = repo.put_stream(key, super::posix::receiver_stream(rx));
    let work = async move {
        let (scanned, exit) = tokio::join!(scan, done);
        let outcome = match scanned {
            Ok(Ok((encoder, scanned))) => exit
                .and_then(|()| accept(&scanned))
                .map(|()| (encoder, scanned)),
            Ok(Err(e)) => exit.and(Err(Error::Io {
                action: "read the backup stream for".into(),
                path: key.as_str().into(),
                source: e,
            })),
            Err(e) => Err(Error::node(
                "-",
                "stream a backup",
                format!("the reading thread failed: {e}"),
            )),
        };
        match outcome {
            Ok((encoder, scanned)) => {
                // The end marker and the trailer: the object completes now.
                let _ = tx.send(Ok(encoder.finish())).await;
                Ok(scanned)
            }
            Err(e) => {
                let _ = tx.send(Err(std::io::Error::other(format!("{e}")))).await;
                Err(e)
            }
        }
    };
    tokio::pin!(put, work);
    // A store that fails first stops the work: dropping `done` stops the program, which may be
    // blocked (a server waiting for its WAL to be archived) and would never end by itself.
    let (stored, scanned) = tokio::select! {
        stored = &mut put => match stored {
            Err(e) if !matches!(e, RepoError::Abandoned { .. }) => return Err(e.into()),
            stored => (stored, work.await),
        },
        scanned = &mut work => (put.await, scanned),
    };
    match (stored, scanned) {
        (Ok(stored), Ok(scanned)) => Ok(UploadedTar {
            key: key.clone(),
            stored,
            scanned,
        }),
        // The store's own failure explains more than "the upload stopped".
        (Err(e), _) if !matches!(e, RepoError::Abandoned { .. }) => Err(e.into()),
        (_, Err(e)) => Err(e),
        (Err(e), Ok(_)) => Err(e.into()),
    }
}

/// Passes what is read through the encoder into the upload's channel.
struct Tee<R> {
    inner: R,
    encoder: StreamEncoder,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    bytes: u64,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for chunk in self.encoder.push(&buf[..n]) {
            self.tx
                .blocking_send(Ok(chunk))
                .map_err(|_| std::io::Error::other("the upload stopped"))?;
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Reads the whole tar through the encoder, noting its files; returns the encoder (its end
/// not yet sent) and what went past.
fn scan_and_encode(
    tar: Box<dyn Read + Send>,
    compression: Compression,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
) -> std::io::Result<(StreamEncoder, ScannedTar)> {
    let (encoder, header) = StreamEncoder::new(compression);
    tx.blocking_send(Ok(header))
        .map_err(|_| std::io::Error::other("the upload stopped"))?;
    let mut tee = Tee {
        // Tar headers are read 512 bytes at a time: buffer the pipe.
        inner: std::io::BufReader::with_capacity(1 << 20, tar),
        encoder,
        tx,
        bytes: 0,
    };
    let mut scanned = ScannedTar::default();
    {
        let mut archive = tar::Archive::new(&mut tee);
        let mut buf = vec![0u8; 1 << 20];
        for entry in archive.entries()? {
            let mut entry = entry?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry.path()?.to_string_lossy().into_owned();
            let keep = path == MANIFEST && entry.size() <= MAX_MANIFEST_BYTES;
            let mut kept = Vec::new();
            let (mut crc, mut size) = (0u32, 0u64);
            loop {
                let n = entry.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                crc = crc32c::crc32c_append(crc, &buf[..n]);
                size += n as u64;
                if keep {
                    kept.extend_from_slice(&buf[..n]);
                }
            }
            if keep {
                scanned.manifest = Some(kept);
            }
            scanned.files.push(TarFile { path, size, crc });
        }
    }
    // The end-of-archive blocks and padding are part of the tar too.
    std::io::copy(&mut tee, &mut std::io::sink())?;
    scanned.tar_bytes = tee.bytes;
    Ok((tee.encoder, scanned))
}

/// Reads every tar object of a node's backup (`tars`: tar name and key) from `repo` in full,
/// decoding and checking each chunk, and checks every file against `manifest`, without
/// writing anything. Damage is a problem in the result naming the object; a repository that
/// cannot be read is an error.
pub async fn check_stored_tars(
    repo: &dyn Repository,
    manifest: &[u8],
    tars: &[(String, Key)],
) -> Result<crate::verify::manifest::TarCheck> {
    use crate::verify::manifest::{ManifestCheck, TarCheck};
    let mut check = match ManifestCheck::parse(manifest) {
        Ok(c) => c,
        Err(problem) => {
            return Ok(TarCheck {
                problems: vec![problem],
                ..TarCheck::default()
            })
        }
    };
    let mut place = String::new();
    for (name, key) in tars {
        let stream = repo.get_stream(key).await?;
        let reader = super::codec::StreamDecoder::new(blocking_reader(stream));
        let prefix = if name == "base" {
            String::new()
        } else {
            format!("pg_tblspc/{name}/")
        };
        let shown = key.as_str().to_string();
        place = shown.clone();
        let (back, failure) = tokio::task::spawn_blocking(move || {
            let failure = scan_files(reader, &prefix, &shown, &mut check).err();
            (check, failure)
        })
        .await
        .map_err(|e| Error::node("-", "check a backup", format!("the thread failed: {e}")))?;
        check = back;
        if let Some(e) = failure {
            check.check.problems.push(format!("{}: {e}", key.as_str()));
        }
    }
    Ok(check.finish(&place))
}

/// Checks every regular file of the tar in `reader` off `check`, under `prefix`.
fn scan_files(
    reader: impl Read,
    prefix: &str,
    shown: &str,
    check: &mut crate::verify::manifest::ManifestCheck,
) -> std::io::Result<()> {
    let mut archive = tar::Archive::new(reader);
    let mut buf = vec![0u8; 1 << 20];
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        if prefix.is_empty() && crate::verify::manifest::ManifestCheck::ignored(&path) {
            continue;
        }
        let (mut crc, mut size) = (0u32, 0u64);
        loop {
            let n = entry.read(&mut buf)?;
            if n == 0 {
                break;
            }
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            size += n as u64;
        }
        check.file(shown, &format!("{prefix}{path}"), size, crc);
    }
    Ok(())
}

/// A blocking reader of a streamed object (spawns a task on the current runtime that pulls
/// the stream). A failed piece is an error of kind `Other` holding the [`RepoError`] text.
pub fn blocking_reader(mut stream: GetStream) -> ChannelReader {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        while let Some(piece) = stream.next().await {
            let failed = piece.is_err();
            if tx.send(piece).await.is_err() || failed {
                break;
            }
        }
    });
    ChannelReader {
        rx,
        current: Bytes::new(),
    }
}

/// See [`blocking_reader`]; read it on a blocking thread, never on the runtime's own.
#[derive(Debug)]
pub struct ChannelReader {
    rx: mpsc::Receiver<std::result::Result<Bytes, RepoError>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(piece)) => self.current = piece,
                Some(Err(e)) => return Err(std::io::Error::other(e.to_string())),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::codec::StreamDecoder;
    use crate::repository::memory::MemoryRepository;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            header.set_cksum();
            builder.append_data(&mut header, path, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tar_goes_up_checked_and_comes_back() {
        let repo = MemoryRepository::new();
        let big = vec![5u8; 3 << 20];
        let tar = tar_of(&[
            ("PG_VERSION", b"15\n"),
            ("base/1/1259", &big),
            ("backup_manifest", b"{\"Files\": []}"),
        ]);
        let key = Key::new("backups/b/n/base.tar.zst").unwrap();
        let up = upload_tar(
            &repo,
            &key,
            Compression::Zstd(1),
            Box::new(std::io::Cursor::new(tar.clone())),
            async { Ok(()) },
            |s| {
                assert_eq!(s.files.len(), 3);
                Ok(())
            },
        )
        .await
        .unwrap();
        assert_eq!(up.scanned.tar_bytes, tar.len() as u64);
        assert_eq!(
            up.scanned.manifest.as_deref(),
            Some(&b"{\"Files\": []}"[..])
        );
        assert_eq!(up.scanned.files[0].crc, crc32c::crc32c(b"15\n"));
        assert!(
            up.stored < tar.len() as u64 / 10,
            "compressed: {}",
            up.stored
        );
        let stream = repo.get_stream(&key).await.unwrap();
        let back = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            StreamDecoder::new(blocking_reader_in(stream))
                .read_to_end(&mut out)
                .unwrap();
            out
        })
        .await
        .unwrap();
        assert_eq!(back, tar);
    }

    /// [`blocking_reader`] needs the runtime: build it on a blocking thread through a handle.
    fn blocking_reader_in(stream: GetStream) -> ChannelReader {
        let _guard = tokio::runtime::Handle::current().enter();
        blocking_reader(stream)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_program_or_check_leaves_nothing() {
        let repo = MemoryRepository::new();
        let tar = tar_of(&[("PG_VERSION", b"15\n")]);
        let key = Key::new("backups/b/n/base.tar").unwrap();
        let e = upload_tar(
            &repo,
            &key,
            Compression::None,
            Box::new(std::io::Cursor::new(tar.clone())),
            async { Err(Error::node("n", "pg_basebackup", "exit status 1")) },
            |_| Ok(()),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("exit status 1"), "{e}");
        assert_eq!(repo.head(&key).await.unwrap(), None);
        let e = upload_tar(
            &repo,
            &key,
            Compression::None,
            Box::new(std::io::Cursor::new(tar)),
            async { Ok(()) },
            |_| {
                Err(Error::Corrupt {
                    key: "k".into(),
                    problem: "PG_VERSION has checksum 00".into(),
                })
            },
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("PG_VERSION has checksum"), "{e}");
        assert_eq!(repo.head(&key).await.unwrap(), None);
        // A cut tar: its reading fails, nothing is stored.
        let cut = tar_of(&[("a", &[1u8; 5000])])[..2000].to_vec();
        assert!(upload_tar(
            &repo,
            &key,
            Compression::None,
            Box::new(std::io::Cursor::new(cut)),
            async { Ok(()) },
            |_| Ok(()),
        )
        .await
        .is_err());
        assert_eq!(repo.head(&key).await.unwrap(), None);
    }

    #[test]
    fn names_of_tar_objects() {
        assert_eq!(tar_name("base.tar.zst"), Some("base"));
        assert_eq!(tar_name("16384.tar.lz4"), Some("16384"));
        assert_eq!(tar_name("base.tar"), Some("base"));
        assert_eq!(tar_name("backup_manifest"), None);
        let folder = node_folder("b1", "worker1").unwrap();
        assert_eq!(
            tar_key(&folder, "base", Compression::Zstd(3)).as_str(),
            "backups/b1/worker1/base.tar.zst"
        );
        assert_eq!(
            manifest_key(&folder).as_str(),
            "backups/b1/worker1/backup_manifest"
        );
    }
}
