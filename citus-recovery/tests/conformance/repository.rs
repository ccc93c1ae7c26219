//! The contract of [`Repository`], written once and run against every backend (memory, posix,
//! S3): each backend's test file calls [`run`] on a fresh, empty repository.

use bytes::Bytes;
use citus_recovery::repository::{Key, PutOutcome, RepoError, Repository};

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
