//! The contract of [`Repository`], written once and run against every backend (memory, posix,
//! S3): each backend's test file calls [`run`] on a fresh, empty repository.

use bytes::Bytes;
use citus_recovery::repository::{Key, PutOutcome, PutStream, RepoError, Repository};
use futures::{StreamExt, TryStreamExt};

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

/// Runs every check on `repo`, which must be empty.
pub async fn run(repo: &dyn Repository) {
    assert!(!repo.describe().is_empty());
    create_only(repo).await;
    get_and_head(repo).await;
    listing(repo).await;
    deleting(repo).await;
    concurrent_puts(repo).await;
    large_objects(repo).await;
    listing_an_object_key(repo).await;
    streaming(repo).await;
    abandoned_streams(repo).await;
}

/// `data` in pieces of `piece` bytes, as a put stream.
fn pieces(data: &Bytes, piece: usize) -> PutStream {
    let parts: Vec<std::io::Result<Bytes>> =
        data.chunks(piece).map(|c| Ok(data.slice_ref(c))).collect();
    futures::stream::iter(parts).boxed()
}

async fn read_all(repo: &dyn Repository, k: &Key) -> Result<Bytes, RepoError> {
    let parts: Vec<Bytes> = repo.get_stream(k).await?.try_collect().await?;
    Ok(parts.concat().into())
}

async fn streaming(repo: &dyn Repository) {
    // Larger than a multipart part (8 MiB), in uneven pieces; and a small one; and an empty one.
    let big: Bytes = (0..20 * 1024 * 1024u32)
        .map(|i| (i % 253) as u8)
        .collect::<Vec<_>>()
        .into();
    for (name, data) in [
        ("backups/b1/n1/base.tar.zst", big.clone()),
        ("backups/b1/n1/small", Bytes::from_static(b"a small object")),
        ("backups/b1/n1/empty", Bytes::new()),
    ] {
        let k = key(name);
        assert_eq!(
            repo.put_stream(&k, pieces(&data, 3 * 1024 * 1024 + 7))
                .await
                .unwrap(),
            data.len() as u64,
            "{name}"
        );
        assert_eq!(read_all(repo, &k).await.unwrap(), data, "{name}");
        assert_eq!(repo.get(&k).await.unwrap().len(), data.len(), "{name}");
        assert_eq!(
            repo.head(&k).await.unwrap().map(|m| m.size),
            Some(data.len() as u64)
        );
        // Create-only: a second stream to the key conflicts and changes nothing.
        match repo
            .put_stream(&k, pieces(&Bytes::from_static(b"other"), 2))
            .await
        {
            Err(RepoError::Conflict { key }) => assert_eq!(key, k),
            other => panic!("{name}: a second put_stream must conflict, got {other:?}"),
        }
        assert_eq!(read_all(repo, &k).await.unwrap(), data, "{name} unchanged");
        repo.delete(&k).await.unwrap();
    }
    // A streamed get of an absent key fails at the call.
    match repo.get_stream(&key("backups/none/n1/base.tar")).await {
        Err(RepoError::NotFound { .. }) => {}
        Err(e) => panic!("absent key must be NotFound, got {e:?}"),
        Ok(_) => panic!("absent key must be NotFound, got a stream"),
    }
    // An object made by put_create reads back through get_stream too.
    let k = key("backups/b1/n1/backup_manifest");
    repo.put_create(&k, Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(read_all(repo, &k).await.unwrap(), Bytes::from_static(b"{}"));
    repo.delete(&k).await.unwrap();
}

async fn abandoned_streams(repo: &dyn Repository) {
    // A stream that fails, after a little data and after more than a part: nothing is visible.
    for (name, before) in [
        ("backups/b2/n1/small", 1000usize),
        ("backups/b2/n1/big", 12 << 20),
    ] {
        let k = key(name);
        let mut parts: Vec<std::io::Result<Bytes>> = vec![Ok(Bytes::from(vec![1u8; before]))];
        parts.push(Err(std::io::Error::other("pg_basebackup failed")));
        match repo
            .put_stream(&k, futures::stream::iter(parts).boxed())
            .await
        {
            Err(RepoError::Abandoned { key, detail }) => {
                assert_eq!(key, k);
                assert!(detail.contains("pg_basebackup failed"), "{detail}");
            }
            other => panic!("{name}: a failed stream must be Abandoned, got {other:?}"),
        }
        assert_eq!(
            repo.head(&k).await.unwrap(),
            None,
            "{name}: nothing visible"
        );
        assert!(matches!(
            repo.get(&k).await,
            Err(RepoError::NotFound { .. })
        ));
    }
    // A put dropped half-way (the stream never ends): nothing visible either.
    let k = key("backups/b2/n1/dropped");
    let endless = futures::stream::iter(vec![Ok(Bytes::from(vec![2u8; 4096]))])
        .chain(futures::stream::pending())
        .boxed();
    let put = repo.put_stream(&k, endless);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), put)
            .await
            .is_err(),
        "the put waits for the stream's end"
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        repo.head(&k).await.unwrap(),
        None,
        "dropped: nothing visible"
    );
    assert_eq!(repo.list(&key("backups/b2")).await.unwrap(), vec![]);
}

async fn create_only(repo: &dyn Repository) {
    let k = key("wal/node1/000000010000000000000001");
    let data = Bytes::from_static(b"first");
    assert_eq!(
        repo.put_create(&k, data.clone()).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        repo.put_create(&k, data.clone()).await.unwrap(),
        PutOutcome::AlreadyThere,
        "identical bytes again: success"
    );
    match repo.put_create(&k, Bytes::from_static(b"other")).await {
        Err(RepoError::Conflict { key }) => assert_eq!(key, k),
        other => panic!("different bytes must conflict, got {other:?}"),
    }
    assert_eq!(repo.get(&k).await.unwrap(), data, "never overwritten");
    // Same length, different bytes: still a conflict.
    assert!(matches!(
        repo.put_create(&k, Bytes::from_static(b"fir5t")).await,
        Err(RepoError::Conflict { .. })
    ));
    assert_eq!(repo.get(&k).await.unwrap(), data);
    // An empty object is an object.
    let empty = key("catalog/empty");
    assert_eq!(
        repo.put_create(&empty, Bytes::new()).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(repo.get(&empty).await.unwrap(), Bytes::new());
    repo.delete(&empty).await.unwrap();
    repo.delete(&k).await.unwrap();
}

async fn get_and_head(repo: &dyn Repository) {
    let k = key("a/b/c");
    match repo.get(&k).await {
        Err(RepoError::NotFound { key }) => assert_eq!(key, k),
        other => panic!("absent key must be NotFound, got {other:?}"),
    }
    assert_eq!(repo.head(&k).await.unwrap(), None);
    repo.put_create(&k, Bytes::from_static(b"12345"))
        .await
        .unwrap();
    let meta = repo.head(&k).await.unwrap().expect("present");
    assert_eq!((meta.key, meta.size), (k.clone(), 5));
    repo.delete(&k).await.unwrap();
}

async fn listing(repo: &dyn Repository) {
    let names = [
        "wal/n1/000000010000000000000002",
        "wal/n1/000000010000000000000001",
        "wal/n10/000000010000000000000001",
        "wal/n2/00000002.history",
        "backups/b1/n1/base.tar",
    ];
    for n in names {
        repo.put_create(&key(n), Bytes::from(n.as_bytes().to_vec()))
            .await
            .unwrap();
    }
    let under = |p: &str| {
        let p = key(p);
        async move {
            repo.list(&p)
                .await
                .unwrap()
                .into_iter()
                .map(|m| (m.key.as_str().to_string(), m.size))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        under("wal/n1").await,
        vec![
            ("wal/n1/000000010000000000000001".to_string(), 31),
            ("wal/n1/000000010000000000000002".to_string(), 31),
        ],
        "sorted, and wal/n10 is not under wal/n1"
    );
    assert_eq!(under("wal").await.len(), 4);
    assert_eq!(under("nothing").await, vec![]);
    let all = repo.list(&Key::root()).await.unwrap();
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0].key < w[1].key), "sorted by key");
    for n in names {
        repo.delete(&key(n)).await.unwrap();
    }
    assert_eq!(repo.list(&Key::root()).await.unwrap(), vec![]);
}

async fn deleting(repo: &dyn Repository) {
    let k = key("x/y");
    repo.delete(&k)
        .await
        .expect("deleting an absent key is fine");
    repo.put_create(&k, Bytes::from_static(b"1")).await.unwrap();
    repo.delete(&k).await.unwrap();
    assert_eq!(repo.head(&k).await.unwrap(), None);
    // Deleted, it can be created again.
    assert_eq!(
        repo.put_create(&k, Bytes::from_static(b"2")).await.unwrap(),
        PutOutcome::Created
    );
    repo.delete(&k).await.unwrap();
}

async fn concurrent_puts(repo: &dyn Repository) {
    // Many writers of one key: exactly one creates, the identical ones succeed, no torn object.
    let k = key("race/one");
    let data = Bytes::from(vec![7u8; 256 * 1024]);
    let results =
        futures::future::join_all((0..8).map(|_| repo.put_create(&k, data.clone()))).await;
    let created = results
        .iter()
        .filter(|r| matches!(r, Ok(PutOutcome::Created)))
        .count();
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(created, 1, "exactly one writer creates");
    assert_eq!(repo.get(&k).await.unwrap(), data);
    // Writers of different content: one wins, the others conflict, the winner is intact.
    let k2 = key("race/two");
    let results = futures::future::join_all(
        (0..6u8).map(|i| repo.put_create(&k2, Bytes::from(vec![i; 64 * 1024]))),
    )
    .await;
    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, Ok(PutOutcome::Created)))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(results
        .iter()
        .all(|r| matches!(r, Ok(PutOutcome::Created) | Err(RepoError::Conflict { .. }))));
    assert_eq!(
        repo.get(&k2).await.unwrap(),
        Bytes::from(vec![winners[0] as u8; 64 * 1024])
    );
    repo.delete(&k).await.unwrap();
    repo.delete(&k2).await.unwrap();
}

async fn large_objects(repo: &dyn Repository) {
    // A WAL segment's size.
    let k = key("wal/big/000000010000000000000009");
    let data: Bytes = (0..16 * 1024 * 1024u32)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    repo.put_create(&k, data.clone()).await.unwrap();
    assert_eq!(repo.get(&k).await.unwrap(), data);
    assert_eq!(
        repo.head(&k).await.unwrap().unwrap().size,
        data.len() as u64
    );
    repo.delete(&k).await.unwrap();
}

async fn listing_an_object_key(repo: &dyn Repository) {
    // A prefix that is an object's own key lists that object, and not its namesakes
    // (`solo/obj2`, `solo/obj.x`), which only share the text.
    for n in ["solo/obj", "solo/obj2", "solo/obj.x"] {
        repo.put_create(&key(n), Bytes::from_static(b"1"))
            .await
            .unwrap();
    }
    let listed: Vec<_> = repo
        .list(&key("solo/obj"))
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.key.as_str().to_string(), m.size))
        .collect();
    assert_eq!(listed, vec![("solo/obj".to_string(), 1)]);
    for n in ["solo/obj", "solo/obj2", "solo/obj.x"] {
        repo.delete(&key(n)).await.unwrap();
    }
}
