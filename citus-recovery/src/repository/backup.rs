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
    /// The tar's length as read (WAL left out included).
    pub tar_bytes: u64,
    /// The bytes of WAL segments in `pg_wal/` left out of the stored tar.
    pub wal_left_out: u64,
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

/// How [`upload_tar`] stores what it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TarEncoding {
    /// The input is the tar, compressed by this codec as it passes.
    Encode(Compression),
    /// The input is the tar as one zstd stream compressed elsewhere (by the server, so the
    /// tar never crossed the connection uncompressed): stored as it comes
    /// ([`StreamEncoder::carrying_zstd`]) and decompressed only to be scanned. It must hold no
    /// WAL segment (it cannot be left out): `pg_basebackup -X stream` keeps WAL apart.
    CarriedZstd,
}

impl From<Compression> for TarEncoding {
    fn from(c: Compression) -> Self {
        TarEncoding::Encode(c)
    }
}

/// Streams `tar` (read on a blocking thread) into `repo` at `key`, stored as `encoding` says,
/// noting each regular file's size and CRC32C on the way. `done` (the writing program's exit)
/// is awaited alongside; only when it succeeded and `accept` approves what went past is the
/// object completed. Otherwise nothing is left visible at `key` and the first failure is
/// returned. Memory stays bounded: a few chunks of [`super::codec::STREAM_CHUNK`] and the
/// upload's parts.
pub async fn upload_tar(
    repo: &dyn Repository,
    key: &Key,
    encoding: impl Into<TarEncoding>,
    tar: Box<dyn Read + Send>,
    done: impl Future<Output = Result<()>> + Send,
    accept: impl FnOnce(&ScannedTar) -> Result<()> + Send,
) -> Result<UploadedTar> {
    let encoding = encoding.into();
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(8);
    let thread_tx = tx.clone();
    let scan = tokio::task::spawn_blocking(move || scan_and_encode(tar, encoding, thread_tx));
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

/// Feeds the encoder and sends the chunks it completes into the upload's channel.
struct Out {
    encoder: StreamEncoder,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
}

impl Out {
    fn put(&mut self, data: &[u8]) -> std::io::Result<()> {
        for chunk in self.encoder.push(data) {
            self.tx
                .blocking_send(Ok(chunk))
                .map_err(|_| std::io::Error::other("the upload stopped"))?;
        }
        Ok(())
    }
}

/// A reader that stores what it reads as it passes: the server's compressed bytes go into the
/// object while the decompressor above reads them.
struct Tee<R> {
    inner: R,
    out: Out,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.put(&buf[..n])?;
        Ok(n)
    }
}

/// The tar block size.
const BLOCK: usize = 512;

/// Reads into `buf` until it is full or the input ends; returns how much was read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn bad_tar(problem: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, problem)
}

/// A tar header's numeric field: octal text, or base-256 when the first byte's top bit is set.
fn tar_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut n = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            n = n.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(n);
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// A ustar header's path (`prefix/name`), its type flag and its data size, its checksum checked.
fn parse_header(h: &[u8; BLOCK]) -> std::io::Result<(String, u8, u64)> {
    let declared = tar_number(&h[148..156]);
    let computed: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| u64::from(if (148..156).contains(&i) { b' ' } else { b }))
        .sum();
    if declared != Some(computed) {
        return Err(bad_tar(format!(
            "a tar header's checksum is {declared:?} where its bytes sum to {computed}: the \
             stream is damaged"
        )));
    }
    let field = |range: std::ops::Range<usize>| {
        let f = &h[range];
        let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
        String::from_utf8_lossy(&f[..end]).into_owned()
    };
    let name = field(0..100);
    // POSIX ustar has a prefix field; GNU tar ("ustar  ") keeps other fields there.
    let path = if &h[257..263] == b"ustar\0" && h[345] != 0 {
        format!("{}/{name}", field(345..500))
    } else {
        name
    };
    let size = tar_number(&h[124..136])
        .ok_or_else(|| bad_tar(format!("the tar header of {path} has no readable size")))?;
    Ok((path, h[156], size))
}

/// Whether `path` is a WAL segment in `pg_wal/` (24 hex digits): what `pg_basebackup -X fetch`
/// adds to the tar, unlisted in the manifest. Its `archive_status/*.done` and `.history` files
/// are listed, small, and kept.
fn is_wal_segment(path: &str) -> bool {
    path.strip_prefix("pg_wal/")
        .and_then(crate::wal::lsn::split_segment_file_name)
        .is_some()
}

/// Reads the whole tar through the encoder, noting its regular files; returns the encoder
/// (its end not yet sent) and what went past. WAL segments in `pg_wal/` (the WAL that
/// `pg_basebackup -X fetch` adds) are left out of the stored tar and of the files noted: the
/// archive holds that WAL, and the manifest does not list it. A parser of its own rather than
/// the `tar` crate: each byte is copied once on its way to the encoder.
fn scan_and_encode(
    tar: Box<dyn Read + Send>,
    encoding: TarEncoding,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
) -> std::io::Result<(StreamEncoder, ScannedTar)> {
    let (encoder, header) = match encoding {
        TarEncoding::Encode(compression) => StreamEncoder::new(compression),
        TarEncoding::CarriedZstd => StreamEncoder::carrying_zstd(),
    };
    tx.blocking_send(Ok(header))
        .map_err(|_| std::io::Error::other("the upload stopped"))?;
    let out = Out { encoder, tx };
    match encoding {
        TarEncoding::Encode(_) => {
            let mut out = out;
            let scanned = scan_tar(tar, Some(&mut out))?;
            Ok((out.encoder, scanned))
        }
        TarEncoding::CarriedZstd => {
            let tee = std::io::BufReader::with_capacity(
                super::codec::STREAM_CHUNK,
                Tee { inner: tar, out },
            );
            let mut decoder = zstd::stream::read::Decoder::with_buffer(tee)?;
            let scanned = scan_tar(Box::new(&mut decoder), None)?;
            // Whatever the decompressor left unread is stored too (and must be nothing a
            // reader could take for more data: it ends where a zstd frame ends).
            let mut tee = decoder.finish().into_inner();
            let mut rest = [0u8; 8192];
            while tee.read(&mut rest)? > 0 {}
            Ok((tee.out.encoder, scanned))
        }
    }
}

/// Reads the whole tar, noting its regular files and passing it to `out` when given (WAL
/// segments left out); see [`scan_and_encode`].
fn scan_tar(mut tar: Box<dyn Read + '_>, mut out: Option<&mut Out>) -> std::io::Result<ScannedTar> {
    let stored_as_is = out.is_none();
    let mut put = |data: &[u8]| match out.as_deref_mut() {
        Some(out) => out.put(data),
        None => Ok(()),
    };
    let mut scanned = ScannedTar::default();
    let mut buf = vec![0u8; super::codec::STREAM_CHUNK];
    let mut h = [0u8; BLOCK];
    loop {
        let n = read_full(&mut tar, &mut h)?;
        scanned.tar_bytes += n as u64;
        if n == 0 {
            break;
        }
        if n < BLOCK {
            return Err(bad_tar(format!(
                "the tar ends inside a header ({n} of {BLOCK} bytes): the stream was cut short"
            )));
        }
        if h.iter().all(|&b| b == 0) {
            // The end-of-archive blocks: the rest (more zeros, padding) goes as it is.
            put(&h)?;
            loop {
                let n = read_full(&mut tar, &mut buf)?;
                if n == 0 {
                    break;
                }
                scanned.tar_bytes += n as u64;
                put(&buf[..n])?;
            }
            break;
        }
        let (path, kind, size) = parse_header(&h)?;
        if matches!(kind, b'L' | b'K' | b'x' | b'g') {
            // PostgreSQL's tar writer never uses long names or pax headers.
            return Err(bad_tar(format!(
                "the tar has an extended header (type {:?}) before {path}, which PostgreSQL's \
                 tar never writes; this reader does not take it",
                kind as char
            )));
        }
        let file = matches!(kind, b'0' | 0 | b'7');
        let leave_out = file && is_wal_segment(&path);
        if leave_out && stored_as_is {
            return Err(bad_tar(format!(
                "the server's compressed tar holds the WAL segment {path}, which cannot be left \
                 out of it; take the backup with its WAL apart (pg_basebackup -X stream)"
            )));
        }
        let keep = file && path == MANIFEST && size <= MAX_MANIFEST_BYTES;
        if !leave_out {
            put(&h)?;
        }
        let padded = size
            .div_ceil(BLOCK as u64)
            .checked_mul(BLOCK as u64)
            .ok_or_else(|| bad_tar(format!("the tar header of {path} claims {size} bytes")))?;
        let (mut left, mut crc, mut kept) = (padded, 0u32, Vec::new());
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = read_full(&mut tar, &mut buf[..want])?;
            if n < want {
                return Err(bad_tar(format!(
                    "the tar ends inside {path} ({} of {padded} bytes): the stream was cut short",
                    padded - left + n as u64
                )));
            }
            left -= n as u64;
            scanned.tar_bytes += n as u64;
            // The data without the padding after it.
            let data = (n as u64).min(size.saturating_sub(padded - left - n as u64)) as usize;
            if file && !leave_out {
                crc = crc32c::crc32c_append(crc, &buf[..data]);
                if keep {
                    kept.extend_from_slice(&buf[..data]);
                }
            }
            if leave_out {
                scanned.wal_left_out += data as u64;
            } else {
                put(&buf[..n])?;
            }
        }
        if keep {
            scanned.manifest = Some(kept);
        }
        if file && !leave_out {
            scanned.files.push(TarFile { path, size, crc });
        }
    }
    Ok(scanned)
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
        let back = read_back(&repo, &key).await;
        assert_eq!(back, tar);
    }

    /// The data of the streamed object at `key`, decoded and checked.
    async fn read_back(repo: &dyn Repository, key: &Key) -> Vec<u8> {
        let stream = repo.get_stream(key).await.unwrap();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            StreamDecoder::new(blocking_reader_in(stream))
                .read_to_end(&mut out)
                .unwrap();
            out
        })
        .await
        .unwrap()
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

    /// Uploads `tar` uncompressed into a memory repository; what came back, and the scan.
    async fn round_trip(tar: Vec<u8>) -> Result<(Vec<u8>, ScannedTar)> {
        let repo = MemoryRepository::new();
        let key = Key::new("backups/b/n/base.tar").unwrap();
        let up = upload_tar(
            &repo,
            &key,
            Compression::None,
            Box::new(std::io::Cursor::new(tar)),
            async { Ok(()) },
            |_| Ok(()),
        )
        .await?;
        let back = read_back(&repo, &key).await;
        Ok((back, up.scanned))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fetched_wal_is_left_out_and_long_paths_are_read() {
        let long = format!("base/16384/{}/{}", "d".repeat(80), "f".repeat(60));
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |path: &str, kind: tar::EntryType, data: &[u8]| {
            // POSIX ustar, as PostgreSQL writes: a long path goes into the prefix field.
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o700);
            header.set_path(path).unwrap();
            header.set_cksum();
            builder.append(&header, data).unwrap();
        };
        add("PG_VERSION", tar::EntryType::Regular, b"15\n");
        add("pg_wal", tar::EntryType::Directory, b"");
        add("pg_wal/archive_status", tar::EntryType::Directory, b"");
        add(&long, tar::EntryType::Regular, &[7u8; 1500]);
        add(
            "pg_wal/000000010000000000000003",
            tar::EntryType::Regular,
            &[3u8; 70000],
        );
        add(
            "pg_wal/archive_status/000000010000000000000003.done",
            tar::EntryType::Regular,
            b"",
        );
        add(
            "pg_wal/00000002.history",
            tar::EntryType::Regular,
            b"1\t0/3000000\tno\n",
        );
        add("backup_manifest", tar::EntryType::Regular, b"{}");
        let tar = builder.into_inner().unwrap();
        let (back, scanned) = round_trip(tar.clone()).await.unwrap();
        assert_eq!(scanned.tar_bytes, tar.len() as u64);
        assert_eq!(scanned.wal_left_out, 70000);
        let done = "pg_wal/archive_status/000000010000000000000003.done";
        let paths: Vec<&str> = scanned.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "PG_VERSION",
                long.as_str(),
                done,
                "pg_wal/00000002.history",
                "backup_manifest"
            ]
        );
        assert_eq!(scanned.files[1].crc, crc32c::crc32c(&[7u8; 1500]));
        assert_eq!(scanned.manifest.as_deref(), Some(&b"{}"[..]));
        // What was stored is a tar of everything else, the WAL folders kept.
        let mut stored = Vec::new();
        for entry in tar::Archive::new(back.as_slice()).entries().unwrap() {
            let entry = entry.unwrap();
            stored.push(entry.path().unwrap().to_string_lossy().into_owned());
        }
        assert_eq!(
            stored,
            [
                "PG_VERSION",
                "pg_wal",
                "pg_wal/archive_status",
                long.as_str(),
                done,
                "pg_wal/00000002.history",
                "backup_manifest"
            ]
        );
        assert!(back.len() < tar.len() - 70000, "{} bytes", back.len());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_damaged_or_cut_tar_header_is_refused() {
        let tar = tar_of(&[("PG_VERSION", b"15\n"), ("global/1262", &[1u8; 600])]);
        let mut damaged = tar.clone();
        damaged[1024 + 3] ^= 0x20; // a letter of the second header's path
        let e = round_trip(damaged).await.unwrap_err().to_string();
        assert!(e.contains("checksum") && e.contains("damaged"), "{e}");
        let e = round_trip(tar[..1024 + 100].to_vec())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("inside a header"), "{e}");
        let e = round_trip(tar[..1024 + 512 + 100].to_vec())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("inside global/1262"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_impossible_size_is_refused() {
        let mut header = tar::Header::new_ustar();
        header.set_path("base/1/1259").unwrap();
        header.set_size(u64::MAX);
        header.set_cksum();
        let e = round_trip(header.as_bytes().to_vec())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("claims 18446744073709551615 bytes"), "{e}");
    }

    #[test]
    fn tar_numbers() {
        assert_eq!(tar_number(b"00000001750\0"), Some(1000));
        assert_eq!(tar_number(b"   \0"), Some(0));
        assert_eq!(tar_number(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0]), Some(256));
        assert_eq!(tar_number(b"9"), None);
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
