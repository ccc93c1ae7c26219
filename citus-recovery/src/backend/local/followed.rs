//! A file read while a program still writes it: `base.tar.zst` of a base backup the server
//! compresses, which `pg_basebackup` writes only into a folder (never to a pipe while it also
//! keeps the manifest). The reader follows the file as it grows and frees what it has read
//! (`FALLOC_FL_PUNCH_HOLE`), so the folder never holds the whole backup, even compressed.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::{FallocateFlags, OFlag};

use super::as_user::as_user;
use super::node_fs;
use crate::files::OsUser;

/// How often the reader looks again when it caught up with the writer.
const POLL: Duration = Duration::from_millis(5);

/// Read bytes are freed from the disk in steps of this size.
const FREE_STEP: u64 = 8 << 20;

/// Where the writing program is, shared by the reader and whoever waits for the program.
#[derive(Debug, Clone, Default)]
pub(crate) struct Writer(Arc<AtomicU8>);

const RUNNING: u8 = 0;
const SUCCEEDED: u8 = 1;
const STOPPED: u8 = 2;

impl Writer {
    /// The program exited successfully: what the file holds now is all of it.
    pub(crate) fn succeeded(&self) {
        self.0.store(SUCCEEDED, Ordering::Release);
    }

    /// The program failed or was stopped: the reader ends with an error.
    pub(crate) fn stopped(&self) {
        let _ = self
            .0
            .compare_exchange(RUNNING, STOPPED, Ordering::AcqRel, Ordering::Acquire);
    }

    fn state(&self) -> u8 {
        self.0.load(Ordering::Acquire)
    }
}

/// Sets [`Writer::stopped`] when dropped before [`Writer::succeeded`]: a wait dropped
/// unfinished must not leave the reader polling for ever.
pub(crate) struct StopOnDrop(pub(crate) Writer);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stopped();
    }
}

/// Reads `path` as `writer` writes it; opened (as the servers' user, never through a link, a
/// regular file only) once it appears. Ends at the file's end once the writer succeeded; an
/// error once it stopped otherwise.
pub(crate) struct FollowedFile {
    path: PathBuf,
    user: OsUser,
    writer: Writer,
    file: Option<File>,
    read: u64,
    freed: u64,
    can_free: bool,
}

impl FollowedFile {
    /// The file at `path`, written by `writer`, opened as `user`.
    pub(crate) fn new(path: PathBuf, user: OsUser, writer: Writer) -> Self {
        FollowedFile {
            path,
            user,
            writer,
            file: None,
            read: 0,
            freed: 0,
            can_free: true,
        }
    }

    /// The file once it exists.
    fn open(&self) -> std::io::Result<Option<File>> {
        let path = self.path.clone();
        // Read and write: the part read is freed.
        as_user(&self.user, move || {
            node_fs::open_regular_if_present(&path, OFlag::O_RDWR)
        })
        .map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// Frees the part read, in whole steps; a file system that cannot is left alone.
    fn free_read(&mut self, file: &File) {
        let to = self.read - self.read % FREE_STEP;
        if !self.can_free || to <= self.freed {
            return;
        }
        let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        match nix::fcntl::fallocate(
            file.as_raw_fd(),
            flags,
            self.freed as i64,
            (to - self.freed) as i64,
        ) {
            Ok(()) => self.freed = to,
            Err(_) => self.can_free = false,
        }
    }
}

impl Read for FollowedFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            // The state before the read: nothing read after the writer succeeded is the end.
            let state = self.writer.state();
            let Some(mut file) = self.file.take() else {
                match self.open()? {
                    Some(file) => self.file = Some(file),
                    None if state == RUNNING => std::thread::sleep(POLL),
                    None => {
                        return Err(std::io::Error::other(format!(
                            "{} was never written: the backup stopped",
                            self.path.display()
                        )))
                    }
                }
                continue;
            };
            let n = match file.read(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
                Err(e) => return Err(e),
            };
            if n > 0 {
                self.read += n as u64;
                self.free_read(&file);
                self.file = Some(file);
                return Ok(n);
            }
            self.file = Some(file);
            match state {
                SUCCEEDED => return Ok(0),
                RUNNING => std::thread::sleep(POLL),
                _ => {
                    return Err(std::io::Error::other(format!(
                        "the backup stopped while {} was written",
                        self.path.display()
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn me() -> OsUser {
        // This process's own user: no switch (the files are this process's).
        let me = nix::unistd::User::from_uid(nix::unistd::Uid::effective())
            .unwrap()
            .expect("this process's user has a name");
        OsUser::lookup(&me.name).unwrap()
    }

    #[test]
    fn the_reader_follows_the_file_until_its_writer_succeeded_and_frees_what_it_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("base.tar.zst");
        let writer = Writer::default();
        let mut reader = FollowedFile::new(path.clone(), me(), writer.clone());
        let data: Vec<u8> = (0..(20u32 << 20)).map(|i| (i % 251) as u8).collect();
        let (w, p, d) = (writer.clone(), path.clone(), data.clone());
        let thread = std::thread::spawn(move || {
            // The file appears late and grows in pieces.
            std::thread::sleep(Duration::from_millis(30));
            let mut f = File::create(&p).unwrap();
            for piece in d.chunks(3 << 20) {
                f.write_all(piece).unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
            w.succeeded();
        });
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        thread.join().unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data);
        // The first 16 MiB read were freed (when the file system can), the size kept.
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), data.len() as u64);
        if reader.can_free {
            use std::os::unix::fs::MetadataExt;
            assert!(
                meta.blocks() * 512 <= (data.len() as u64) - (16 << 20),
                "{}",
                meta.blocks()
            );
        }
    }

    #[test]
    fn a_writer_that_stopped_ends_the_reader_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("base.tar.zst");
        let writer = Writer::default();
        // Never written.
        let mut reader = FollowedFile::new(path.clone(), me(), writer.clone());
        drop(StopOnDrop(writer.clone()));
        let e = reader.read(&mut [0u8; 10]).unwrap_err();
        assert!(e.to_string().contains("never written"), "{e}");
        // Written in part.
        std::fs::write(&path, b"abc").unwrap();
        let writer = Writer::default();
        let mut reader = FollowedFile::new(path.clone(), me(), writer.clone());
        let mut buf = [0u8; 10];
        assert_eq!(reader.read(&mut buf).unwrap(), 3);
        writer.stopped();
        let e = reader.read(&mut buf).unwrap_err();
        assert!(e.to_string().contains("stopped while"), "{e}");
    }

    #[test]
    fn a_link_in_its_place_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("base.tar.zst");
        std::os::unix::fs::symlink("/etc/passwd", &path).unwrap();
        let writer = Writer::default();
        writer.succeeded();
        let mut reader = FollowedFile::new(path, me(), writer);
        assert!(reader.read(&mut [0u8; 10]).is_err());
    }
}
