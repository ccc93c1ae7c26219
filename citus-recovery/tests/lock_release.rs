//! The repository lock when the repository (S3: moto behind the forwarder of
//! `common/proxy.rs`) does not answer as a command ends: a repository back within seconds gets
//! the lock deleted by the retries; one that stays down leaves the lock, and the tool says the
//! exact command that breaks it, which then works.

#[path = "common/proxy.rs"]
mod proxy;
#[path = "common/s3.rs"]
mod s3;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use citus_recovery::config::ClusterConfig;
use citus_recovery::lock::ClusterLock;
use citus_recovery::repository::{ObjectRepository, Repository};
use proxy::Proxy;

/// What the library logs, kept for the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_left_while_the_repository_is_down_is_retried_then_named_with_its_fix() {
    let server = moto_or_skip!(&["cr-lock"], false);
    let mut proxy = Proxy::start(server.port());
    let dir = tempfile::tempdir().unwrap();
    // A path with a blank: the printed command quotes it.
    let config_path = dir.path().join("my config.json");
    let json = serde_json::json!({
        "clusterName": "c", "workerCount": 0,
        "coordinatorNode": {"name": "coordinator", "hostname": "localhost", "port": 9700, "username": "postgres", "dbname": "postgres"},
        "workerNodes": [],
        "clusterBaseFolder": dir.path().join("cluster"),
        "archiveBaseFolder": dir.path().join("archive"),
        "backupBaseFolder": dir.path().join("backup"),
        "repository": {"type": "s3", "bucket": "cr-lock", "prefix": "p", "region": "us-east-1",
                       "endpoint": proxy.endpoint(), "allowHttp": true},
    });
    std::fs::write(&config_path, json.to_string()).unwrap();
    let config = ClusterConfig::from_file(&config_path).unwrap();
    let repo: Arc<dyn Repository> = Arc::new(
        ObjectRepository::s3_with_credentials(
            &server.settings("cr-lock", "p"),
            &server.access_key_id,
            &server.secret_access_key,
        )
        .unwrap(),
    );
    // The same bucket, through the forwarder.
    let mut settings = server.settings("cr-lock", "p");
    settings.endpoint = Some(proxy.endpoint());
    let through: Arc<dyn Repository> = Arc::new(
        ObjectRepository::s3_with_credentials(
            &settings,
            &server.access_key_id,
            &server.secret_access_key,
        )
        .unwrap(),
    );
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    // Down when the command ends, back 1.5 s later: a retry deletes the lock.
    let held = ClusterLock::acquire_in(&config, Some(&through), "basebackup")
        .await
        .unwrap();
    proxy.down();
    let back = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        proxy.up();
        proxy
    });
    drop(held);
    let mut proxy = back.join().unwrap();
    assert_eq!(
        ClusterLock::holder(&config, Some(&repo)).await.unwrap(),
        None,
        "released once the repository answered: {}",
        log.text()
    );
    assert!(!log.text().contains("stays behind"), "{}", log.text());

    // Down for good: the lock stays, and the log says exactly what to run.
    let held = ClusterLock::acquire_in(&config, Some(&through), "restore-point")
        .await
        .unwrap();
    let token = held.holder_info().unwrap().token.clone();
    proxy.down();
    let started = Instant::now();
    drop(held);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(7) && waited < Duration::from_secs(60),
        "retried briefly: {waited:?}"
    );
    let text = log.text();
    let quoted = format!("'{}'", config_path.display());
    let expected = format!("citus-recovery --config {quoted} unlock --force");
    assert!(
        text.contains("stays behind")
            && text.contains("`restore-point`")
            && text.contains(&expected),
        "{text}"
    );
    proxy.up();
    let left = ClusterLock::holder(&config, Some(&repo)).await.unwrap();
    assert_eq!(left.map(|h| h.token), Some(token), "the lock stayed behind");

    // The printed command, run as printed (the binary under test for `citus-recovery`).
    let line = text.lines().find(|l| l.contains("stays behind")).unwrap();
    let command = line
        .split('`')
        .find(|part| part.starts_with("citus-recovery --config"))
        .unwrap();
    let command = command.replacen(
        "citus-recovery",
        &format!("'{}'", env!("CARGO_BIN_EXE_citus-recovery")),
        1,
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .env("AWS_ACCESS_KEY_ID", &server.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &server.secret_access_key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{command}: {out:?}");
    assert_eq!(
        ClusterLock::holder(&config, Some(&repo)).await.unwrap(),
        None
    );
}
