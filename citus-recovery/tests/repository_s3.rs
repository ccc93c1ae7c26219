//! The S3 repository against a real S3-speaking server (moto on 127.0.0.1): the conformance
//! suite, prefixes, a server that stops and comes back, wrong credentials.

// Kept byte for byte as its author wrote it (shared by every backend's test).
#[rustfmt::skip]
#[path = "conformance/repository.rs"]
mod conformance;
#[path = "common/s3.rs"]
mod s3;

use std::time::Instant;

use bytes::Bytes;
use citus_recovery::repository::{Key, ObjectRepository, PutOutcome, RepoError, Repository};

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

#[tokio::test]
async fn conformance_under_a_prefix_and_at_the_bucket_root() {
    let server = moto_or_skip!(&["conformance", "conformance-root"], false);
    let repo = server.repository("conformance", "prod-eu/cluster1");
    conformance::run(&repo).await;
    conformance::run(&server.repository("conformance-root", "")).await;

    // Keys with every character a key may have survive the trip (URL encoding).
    let odd = key("catalog/x=1+2%20-_.y");
    assert_eq!(
        repo.put_create(&odd, Bytes::from_static(b"odd"))
            .await
            .unwrap(),
        PutOutcome::Created
    );
    assert_eq!(repo.get(&odd).await.unwrap(), Bytes::from_static(b"odd"));
    let listed = repo.list(&key("catalog")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, odd);
    // An object named exactly like the listed prefix is listed too (the contract's "or equals").
    let exact = key("catalog/x=1+2%20-_.y");
    assert_eq!(repo.list(&exact).await.unwrap()[0].key, exact);
    repo.delete(&odd).await.unwrap();
}

#[tokio::test]
async fn a_prefix_keeps_two_repositories_apart_in_one_bucket() {
    let server = moto_or_skip!(&["shared"], false);
    let a = server.repository("shared", "a");
    let ab = server.repository("shared", "a-b");
    let nested = server.repository("shared", "a/b");
    let k = key("wal/n1/000000010000000000000001");
    for (repo, data) in [(&a, "in a"), (&ab, "in a-b"), (&nested, "in a/b")] {
        assert_eq!(
            repo.put_create(&k, Bytes::from(data)).await.unwrap(),
            PutOutcome::Created,
            "{}",
            repo.describe()
        );
    }
    assert_eq!(a.get(&k).await.unwrap(), Bytes::from("in a"));
    assert_eq!(ab.get(&k).await.unwrap(), Bytes::from("in a-b"));
    assert_eq!(nested.get(&k).await.unwrap(), Bytes::from("in a/b"));
    assert_eq!(ab.list(&Key::root()).await.unwrap().len(), 1);
    assert_eq!(nested.list(&Key::root()).await.unwrap().len(), 1);
    // `a` sees its own object and `a/b`'s objects as keys `b/...`: nesting one repository
    // inside another's prefix is the configuration's mistake to refuse, not the store's.
    let in_a: Vec<String> = a
        .list(&Key::root())
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key.as_str().to_string())
        .collect();
    assert_eq!(
        in_a,
        vec![format!("b/{}", k.as_str()), k.as_str().to_string()]
    );
    a.delete(&k).await.unwrap();
    assert_eq!(ab.get(&k).await.unwrap(), Bytes::from("in a-b"));
    assert!(matches!(a.get(&k).await, Err(RepoError::NotFound { .. })));
}

#[tokio::test]
async fn a_stopped_server_is_unavailable_naming_the_repository_and_works_again_after_restart() {
    let mut server = moto_or_skip!(&["flaky"], false);
    let repo = server.repository("flaky", "p");
    let k = key("wal/n1/000000010000000000000001");
    repo.put_create(&k, Bytes::from_static(b"one"))
        .await
        .unwrap();
    server.stop();
    let started = Instant::now();
    for (action, result) in [
        (
            "put",
            repo.put_create(&k, Bytes::from_static(b"one"))
                .await
                .map(|_| ()),
        ),
        ("get", repo.get(&k).await.map(|_| ())),
        ("head", repo.head(&k).await.map(|_| ())),
        ("list", repo.list(&Key::root()).await.map(|_| ())),
        ("delete", repo.delete(&k).await),
    ] {
        match result {
            Err(e @ RepoError::Unavailable { .. }) => {
                let text = e.to_string();
                eprintln!("{text}");
                assert!(text.contains(&repo.describe()), "{text}");
                assert!(text.contains(action), "{text}");
                assert!(text.contains("cannot reach the S3 server"), "{text}");
            }
            // Above all not NotFound: an archive-get must not tell PostgreSQL "no such WAL".
            other => panic!("{action} with the server stopped: {other:?}"),
        }
    }
    assert!(
        started.elapsed().as_secs() < 60,
        "a stopped server is reported within bounded retries, took {:?}",
        started.elapsed()
    );
    server
        .restart()
        .expect("moto starts again on the same port");
    // moto keeps objects in memory, so the restarted server is empty: the same repository
    // object works again without being rebuilt.
    assert_eq!(
        repo.put_create(&k, Bytes::from_static(b"two"))
            .await
            .unwrap(),
        PutOutcome::Created
    );
    assert_eq!(repo.get(&k).await.unwrap(), Bytes::from_static(b"two"));
}

#[tokio::test]
async fn wrong_credentials_give_a_clear_error_without_the_secret() {
    let server = moto_or_skip!(&["guarded"], true);
    let settings = server.settings("guarded", "p");
    let k = key("catalog/x");
    // The right credentials work, so the server really checks them.
    let good = server.repository("guarded", "p");
    good.put_create(&k, Bytes::from_static(b"x")).await.unwrap();
    assert_eq!(good.get(&k).await.unwrap(), Bytes::from_static(b"x"));

    const SENTINEL: &str = "SENTINEL-secret-Zq7w9x";
    for (key_id, secret) in [
        (server.access_key_id.as_str(), SENTINEL),
        ("AKIAUNKNOWNKEY000000", SENTINEL),
    ] {
        let bad = ObjectRepository::s3_with_credentials(&settings, key_id, secret).unwrap();
        for result in [
            bad.get(&k).await.map(|_| ()),
            bad.put_create(&key("catalog/y"), Bytes::from_static(b"y"))
                .await
                .map(|_| ()),
            bad.list(&Key::root()).await.map(|_| ()),
        ] {
            let e = result.expect_err("wrong credentials must fail");
            assert!(matches!(e, RepoError::Unavailable { .. }), "{e:?}");
            let (text, debug) = (e.to_string(), format!("{e:?}"));
            eprintln!("{text}");
            assert!(text.contains("access denied"), "names the fix: {text}");
            assert!(text.contains("AWS_SECRET_ACCESS_KEY"), "{text}");
            assert!(text.contains(&bad.describe()), "{text}");
            for shown in [&text, &debug, &format!("{bad:?}")] {
                assert!(!shown.contains(SENTINEL), "secret shown: {shown}");
                assert!(!shown.contains(&server.secret_access_key), "{shown}");
            }
        }
    }
}

/// `ObjectRepository::s3` takes the credentials from the AWS variables, and a wrong secret
/// given there never shows. The only test here that touches the environment (the others pass
/// credentials explicitly), so setting it cannot race another test's reading.
#[tokio::test]
async fn credentials_come_from_the_environment() {
    let server = moto_or_skip!(&["from-env"], true);
    let settings = server.settings("from-env", "p");
    let k = key("catalog/x");
    std::env::remove_var("AWS_SESSION_TOKEN");
    std::env::set_var("AWS_ACCESS_KEY_ID", &server.access_key_id);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", &server.secret_access_key);
    let repo = ObjectRepository::s3(&settings).unwrap();
    assert_eq!(
        repo.put_create(&k, Bytes::from_static(b"x")).await.unwrap(),
        PutOutcome::Created
    );
    const SENTINEL: &str = "SENTINEL-env-secret-Kp3v";
    std::env::set_var("AWS_SECRET_ACCESS_KEY", SENTINEL);
    std::env::set_var("AWS_SESSION_TOKEN", "SENTINEL-env-token-Jr8m");
    let bad = ObjectRepository::s3(&settings).unwrap();
    let e = bad.get(&k).await.unwrap_err();
    for shown in [
        e.to_string(),
        format!("{e:?}"),
        format!("{bad:?}"),
        bad.describe(),
    ] {
        assert!(!shown.contains("SENTINEL"), "secret shown: {shown}");
    }
    assert!(e.to_string().contains("access denied"), "{e}");
    for v in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ] {
        std::env::remove_var(v);
    }
}

#[tokio::test]
async fn a_missing_bucket_is_named_and_never_taken_for_a_missing_object() {
    let server = moto_or_skip!(&["exists"], false);
    let k = key("wal/n1/000000010000000000000001");
    // Each call on its own fresh repository: the bucket check must not depend on call order.
    for action in ["put", "get", "head", "list", "delete"] {
        let repo = server.repository("does-not-exist", "p");
        let result = match action {
            "put" => repo
                .put_create(&k, Bytes::from_static(b"a"))
                .await
                .map(|_| ()),
            "get" => repo.get(&k).await.map(|_| ()),
            "head" => repo.head(&k).await.map(|_| ()),
            "list" => repo.list(&Key::root()).await.map(|_| ()),
            _ => repo.delete(&k).await,
        };
        match result {
            Err(e @ RepoError::Unavailable { .. }) => {
                let text = e.to_string();
                assert!(text.contains("bucket does not exist"), "{text}");
                assert!(text.contains("s3://does-not-exist/p"), "{text}");
            }
            other => panic!("{action} in a missing bucket: {other:?}"),
        }
    }
    // In a bucket that exists, the same calls say "not there".
    let repo = server.repository("exists", "p");
    assert_eq!(repo.head(&k).await.unwrap(), None);
    assert!(matches!(
        repo.get(&k).await,
        Err(RepoError::NotFound { .. })
    ));
    repo.delete(&k).await.unwrap();
}

/// Two repository objects (as two processes would have) racing to create one key: with no
/// shared in-process lock the outcome rests on the server's conditional put alone. Real S3 is
/// atomic; moto checks and writes in two steps, so this only reports what happened.
#[tokio::test]
async fn racing_writers_without_a_shared_lock_report() {
    let server = moto_or_skip!(&["race"], false);
    let k = key("race/one");
    let mut both = 0;
    for round in 0..20 {
        let k = k.join(&round.to_string()).unwrap();
        let (r1, r2) = (server.repository("race", ""), server.repository("race", ""));
        let (a, b) = tokio::join!(
            r1.put_create(&k, Bytes::from(vec![1u8; 64 * 1024])),
            r2.put_create(&k, Bytes::from(vec![2u8; 64 * 1024]))
        );
        if matches!((&a, &b), (Ok(PutOutcome::Created), Ok(PutOutcome::Created))) {
            both += 1;
        } else {
            assert!(
                matches!(
                    (&a, &b),
                    (Ok(PutOutcome::Created), Err(RepoError::Conflict { .. }))
                        | (Err(RepoError::Conflict { .. }), Ok(PutOutcome::Created))
                ),
                "{a:?} {b:?}"
            );
        }
    }
    eprintln!("moto: both writers 'created' one key in {both} of 20 cross-process races");
}

/// Throughput of 16 MiB objects (a WAL segment) on loopback, printed for the benchmarks.
#[tokio::test]
async fn throughput_of_16_mib_objects() {
    let server = moto_or_skip!(&["speed"], false);
    let repo = server.repository("speed", "");
    let data: Bytes = (0..16 * 1024 * 1024u32)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    const N: usize = 8;
    let started = Instant::now();
    for i in 0..N {
        repo.put_create(&key(&format!("seg/{i}")), data.clone())
            .await
            .unwrap();
    }
    let put = started.elapsed();
    let started = Instant::now();
    for i in 0..N {
        assert_eq!(
            repo.get(&key(&format!("seg/{i}"))).await.unwrap().len(),
            data.len()
        );
    }
    let get = started.elapsed();
    let mb = (N * data.len()) as f64 / 1e6;
    eprintln!(
        "moto on loopback, {N} x 16 MiB: put {:.1} MB/s, get {:.1} MB/s",
        mb / put.as_secs_f64(),
        mb / get.as_secs_f64()
    );
}
