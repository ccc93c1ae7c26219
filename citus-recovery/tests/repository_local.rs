//! The local repositories (memory and posix) against the conformance suite, and the posix
//! backend's own promises: no link below the root is followed, no temporary file is listed or
//! left behind.

#[path = "conformance/repository.rs"]
mod conformance;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use bytes::Bytes;
use citus_recovery::repository::memory::MemoryRepository;
use citus_recovery::repository::posix::PosixRepository;
use citus_recovery::repository::{Key, PutOutcome, RepoError, Repository};
use futures::StreamExt;

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

/// Every name below `dir`, relative, sorted (links not followed).
fn tree(dir: &Path) -> Vec<String> {
    fn go(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                go(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    go(dir, dir, &mut out);
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_repository_conforms() {
    conformance::run(&MemoryRepository::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posix_repository_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let repo = PosixRepository::new(dir.path().to_path_buf());
    conformance::run(&repo).await;
    // Nothing but (now empty) folders is left: no temporary file after all those puts,
    // conflicts and races.
    for name in tree(dir.path()) {
        assert!(
            dir.path().join(&name).is_dir(),
            "{name} left behind in the repository"
        );
    }
}

#[tokio::test]
async fn posix_objects_are_private_and_intact() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo/sub");
    let repo = PosixRepository::create(root.clone()).unwrap();
    assert_eq!(
        std::fs::metadata(&root).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let k = key("wal/n1/000000010000000000000001.zst");
    repo.put_create(&k, Bytes::from_static(b"segment"))
        .await
        .unwrap();
    let file = root.join("wal/n1/000000010000000000000001.zst");
    assert_eq!(std::fs::read(&file).unwrap(), b"segment");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(root.join("wal/n1"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert!(repo.describe().contains(&root.display().to_string()));
    // `create` on an existing folder is fine; on a file it says so.
    PosixRepository::create(root.clone()).unwrap();
    let e = PosixRepository::create(file).unwrap_err();
    assert!(e.to_string().contains("cannot make the folder"), "{e}");
    // A missing root is an error naming it, not a panic.
    let gone = PosixRepository::new(dir.path().join("missing"));
    let e = gone.get(&k).await.unwrap_err();
    assert!(
        e.to_string().contains("missing") && e.to_string().contains("existing folder"),
        "{e}"
    );
}

#[tokio::test]
async fn posix_never_follows_a_link_below_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"not yours").unwrap();
    let repo = PosixRepository::new(root.clone());

    // A folder of the key is a link (to a folder outside): put, get, head, list, delete refuse
    // or see nothing, and nothing is written outside.
    symlink(&outside, root.join("wal")).unwrap();
    let e = repo
        .put_create(&key("wal/secret2"), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RepoError::Unavailable { detail, .. } if detail.contains("symbolic link")),
        "{e:?}"
    );
    let e = repo
        .put_create(&key("wal/deeper/x"), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    let e = repo.get(&key("wal/secret")).await.unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert!(repo.head(&key("wal/secret")).await.is_err());
    assert!(repo.list(&key("wal")).await.is_err());
    assert_eq!(repo.list(&Key::root()).await.unwrap(), vec![]);
    assert!(repo.delete(&key("wal/secret")).await.is_err());
    assert_eq!(tree(&outside), ["secret"]);
    assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"not yours");

    // The object itself is a link: never read, never replaced, not listed.
    std::fs::create_dir(root.join("cat")).unwrap();
    symlink(outside.join("secret"), root.join("cat/obj")).unwrap();
    assert!(repo.get(&key("cat/obj")).await.is_err());
    assert!(repo
        .put_create(&key("cat/obj"), Bytes::from_static(b"not yours"))
        .await
        .is_err());
    assert_eq!(repo.list(&key("cat")).await.unwrap(), vec![]);
    assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"not yours");
    // Deleting removes the link, not its target.
    repo.delete(&key("cat/obj")).await.unwrap();
    assert!(root.join("cat/obj").symlink_metadata().is_err());
    assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"not yours");
}

#[tokio::test]
async fn posix_crash_leftovers_are_not_objects() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let repo = PosixRepository::new(root.clone());
    let k = key("wal/n1/000000010000000000000001");
    repo.put_create(&k, Bytes::from_static(b"whole"))
        .await
        .unwrap();
    // What a crash between write and publish leaves.
    std::fs::write(root.join("wal/n1/.tmp-4242-7"), b"half").unwrap();
    std::fs::create_dir(root.join(".tmp-1-1")).unwrap();
    std::fs::write(root.join(".tmp-1-1/x"), b"half").unwrap();
    let listed: Vec<_> = repo
        .list(&Key::root())
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(listed, std::slice::from_ref(&k));
    assert_eq!(repo.head(&key("wal/n1/.tmp-4242-7")).await.unwrap(), None);
    assert!(matches!(
        repo.get(&key("wal/n1/.tmp-4242-7")).await,
        Err(RepoError::NotFound { .. })
    ));
    let e = repo
        .put_create(&key("wal/n1/.tmp-9"), Bytes::new())
        .await
        .unwrap_err();
    assert!(e.to_string().contains(".tmp-"), "{e}");
    // Puts next to the leftover still work and leave nothing of their own.
    assert_eq!(
        repo.put_create(&k, Bytes::from_static(b"whole"))
            .await
            .unwrap(),
        PutOutcome::AlreadyThere
    );
    assert!(matches!(
        repo.put_create(&k, Bytes::from_static(b"other")).await,
        Err(RepoError::Conflict { .. })
    ));
    // A failing put (a folder where the object should go) removes its temporary file.
    std::fs::create_dir(root.join("wal/n1/folder")).unwrap();
    let e = repo
        .put_create(&key("wal/n1/folder"), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("folder"), "{e}");
    assert_eq!(
        tree(&root.join("wal")),
        [
            "n1",
            "n1/.tmp-4242-7",
            "n1/000000010000000000000001",
            "n1/folder"
        ]
    );
    // A file where a folder of the key should be.
    let e = repo
        .put_create(&key("wal/n1/000000010000000000000001/x"), Bytes::new())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("a file is where a folder"), "{e}");
}

/// Throughput figures, not a check: `cargo test --release --test repository_local -- --ignored
/// --nocapture`. Reads the 16 MiB WAL segments in `$CITUS_RECOVERY_WAL_DIR` (for real WAL),
/// else uses made-up segments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run by hand"]
async fn measure_put_and_codec_throughput() {
    use citus_recovery::repository::codec::{self, Compression};
    use std::time::Instant;
    const MIB: f64 = 1024.0 * 1024.0;
    let segments: Vec<Vec<u8>> = match std::env::var_os("CITUS_RECOVERY_WAL_DIR") {
        Some(dir) => {
            let mut names: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.metadata().unwrap().len() == 16 << 20)
                .collect();
            names.sort();
            names.iter().map(|p| std::fs::read(p).unwrap()).collect()
        }
        None => (0..4u8)
            .map(|s| {
                (0..16usize << 20)
                    .map(|i| {
                        if i % 8192 < 5000 {
                            s
                        } else {
                            (i / 3 % 251) as u8
                        }
                    })
                    .collect()
            })
            .collect(),
    };
    assert!(!segments.is_empty());
    let total = (segments.len() << 24) as f64 / MIB;
    for c in [Compression::None, Compression::Zstd(1), Compression::Lz4] {
        let t = Instant::now();
        let frames: Vec<Bytes> = segments.iter().map(|s| codec::encode(c, s)).collect();
        let enc = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for (f, s) in frames.iter().zip(&segments) {
            assert_eq!(codec::decode(f).unwrap().len(), s.len());
        }
        let dec = t.elapsed().as_secs_f64();
        let stored: usize = frames.iter().map(|f| f.len()).sum();
        println!(
            "codec {c}: encode {:.0} MB/s, decode {:.0} MB/s, stored {:.1}% of {} segments \
             ({:?} bytes each)",
            total / enc,
            total / dec,
            stored as f64 * 100.0 / (segments.len() << 24) as f64,
            segments.len(),
            frames.iter().map(|f| f.len()).collect::<Vec<_>>()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let repo = PosixRepository::new(dir.path().to_path_buf());
    let n = 32;
    let data: Vec<Bytes> = (0..n)
        .map(|i| {
            let mut s = segments[i % segments.len()].clone();
            s[0] = i as u8;
            s.into()
        })
        .collect();
    let t = Instant::now();
    for (i, d) in data.iter().enumerate() {
        let k = key(&format!("wal/n1/{i:024X}"));
        assert_eq!(
            repo.put_create(&k, d.clone()).await.unwrap(),
            PutOutcome::Created
        );
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "posix put_create, one writer: {n} x 16 MiB in {secs:.2} s = {:.0} MB/s, {:.1} ms each",
        (n * 16) as f64 / secs,
        secs * 1000.0 / n as f64
    );
    let t = Instant::now();
    let puts = data.iter().enumerate().map(|(i, d)| {
        let k = key(&format!("wal/n2/{i:024X}"));
        let repo = &repo;
        async move { repo.put_create(&k, d.clone()).await.unwrap() }
    });
    futures::future::join_all(puts).await;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "posix put_create, {n} at once: {:.0} MB/s",
        (n * 16) as f64 / secs
    );
    let t = Instant::now();
    for (i, d) in data.iter().enumerate() {
        let k = key(&format!("wal/n1/{i:024X}"));
        assert_eq!(
            repo.put_create(&k, d.clone()).await.unwrap(),
            PutOutcome::AlreadyThere
        );
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "posix put_create of identical objects (retries): {:.0} MB/s",
        (n * 16) as f64 / secs
    );
    let t = Instant::now();
    for i in 0..n {
        let k = key(&format!("wal/n1/{i:024X}"));
        assert_eq!(repo.get(&k).await.unwrap().len(), 16 << 20);
    }
    let secs = t.elapsed().as_secs_f64();
    println!("posix get: {:.0} MB/s", (n * 16) as f64 / secs);
}

/// `owned_by`: objects (put and streamed) and the folders made for them go to the given user,
/// a folder that was there stays its owner's. Needs root (to give files away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_by_gives_new_objects_and_folders_to_the_user() {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: giving files to another user needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    std::fs::create_dir_all(root.join("wal")).unwrap();
    let repo = PosixRepository::new(root.clone()).owned_by(65534, 65534);
    repo.put_create(
        &key("wal/n1/000000010000000000000001"),
        Bytes::from_static(b"x"),
    )
    .await
    .unwrap();
    let stream = futures::stream::iter([Ok(Bytes::from_static(b"y"))]).boxed();
    repo.put_stream(&key("wal/n1/000000010000000000000002"), stream)
        .await
        .unwrap();
    for made in [
        "wal/n1",
        "wal/n1/000000010000000000000001",
        "wal/n1/000000010000000000000002",
    ] {
        let meta = std::fs::metadata(root.join(made)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "{made}");
    }
    assert_eq!(
        std::fs::metadata(root.join("wal")).unwrap().uid(),
        0,
        "was there"
    );
}
