//! Clusters that admit only scram-sha-256 passwords over TLS (`cluster create --secure`): the
//! five steps end to end with `sslmode=verify-full`, and the connection faults (wrong password,
//! no password, no TLS, a certificate for another name) reported clearly, never with a secret.

mod common;
#[path = "common/repository_cycle.rs"]
mod repository_cycle;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use citus_recovery::{ClusterBackend, ClusterConfig, Error, LocalBackend};
use common::{TestCluster, FIRST, SECOND};

/// verify-full with a CA and passfile `create --secure` writes, nodes at 127.0.0.1 (so their
/// certificates name that address, and `localhost` is another name).
fn secure_config(v: &mut serde_json::Value, dir: &Path) {
    v["sslmode"] = "verify-full".into();
    v["sslrootcert"] = dir.join("ca.crt").display().to_string().into();
    v["passfile"] = dir.join("pgpass").display().to_string().into();
    v["coordinatorNode"]["hostname"] = "127.0.0.1".into();
    for w in v["workerNodes"].as_array_mut().unwrap() {
        w["hostname"] = "127.0.0.1".into();
    }
}

/// The config file of `t`, changed by `edit`.
fn variant(t: &TestCluster, edit: impl FnOnce(&mut serde_json::Value)) -> ClusterConfig {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.config_file()).unwrap()).unwrap();
    edit(&mut v);
    ClusterConfig::from_json_str(&v.to_string(), None).expect("valid config")
}

/// Connects to the coordinator with `config`.
async fn connect_coordinator(config: ClusterConfig) -> Result<tokio_postgres::Client, Error> {
    let node = config.coordinator.clone();
    LocalBackend::new(config).unwrap().connect(&node).await
}

/// The generated password (the last field of the passfile's first line).
fn password(t: &TestCluster) -> String {
    let text = std::fs::read_to_string(t.dir().join("pgpass")).unwrap();
    text.lines()
        .next()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string()
}

async fn five_steps(t: &TestCluster, citus: bool) {
    let c = &t.cluster;
    c.prepare_archiving(true, false)
        .await
        .expect("prepare archiving");
    c.basebackup(Some("base")).await.expect("base backup");
    if citus {
        t.sql("coordinator", &format!("CREATE TABLE xx(id int); SELECT create_distributed_table('xx', 'id'); INSERT INTO xx SELECT generate_series(1, {FIRST})"))
            .await
            .expect("distributed insert over scram + TLS between the nodes");
    } else {
        t.insert_everywhere(FIRST, true).await;
    }
    let point = c
        .create_restore_point(Some("rp"))
        .await
        .expect("restore point");
    assert_eq!(point.citus, citus);
    if citus {
        t.sql(
            "coordinator",
            &format!("INSERT INTO xx SELECT generate_series(1, {SECOND})"),
        )
        .await
        .unwrap();
    } else {
        t.insert_everywhere(SECOND, false).await;
    }
    c.restore_start(Some("base"), Some("rp"))
        .await
        .expect("restore-start");
    c.restore_finish().await.expect("restore-finish");
    if citus {
        assert_eq!(t.count("coordinator", "xx").await, FIRST);
    } else {
        assert_eq!(t.counts().await, vec![FIRST; t.node_names().len()]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_plain_cluster_runs_the_five_steps_and_reports_connection_faults() {
    skip_unless_postgres!();
    let t = TestCluster::with_config(1, secure_config);
    t.cluster
        .create_secure(true)
        .await
        .expect("create --secure");
    let mode = std::fs::metadata(t.dir().join("pgpass"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the passfile is ours alone");
    let secret = password(&t);
    assert_eq!(secret.len(), 32);
    for node in t.node_names() {
        assert_eq!(
            t.sql(
                &node,
                "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            )
            .await
            .unwrap(),
            ["true"],
            "{node}: the library's own connection is TLS"
        );
        assert_eq!(
            t.sql(
                &node,
                "SELECT left(rolpassword, 13) FROM pg_authid WHERE rolname = 'postgres'"
            )
            .await
            .unwrap(),
            ["SCRAM-SHA-256"]
        );
    }

    five_steps(&t, false).await;

    // The restored servers still admit only scram over TLS; each fault is named.
    let shown = |e: &Error| {
        // Printed so that a run shows what a user would read.
        eprintln!("{e}");
        format!("{e} {e:?}")
    };
    let wrong = t.dir().join("wrong-pgpass");
    std::fs::write(&wrong, "*:*:*:*:not-the-password-1234\n").unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = connect_coordinator(variant(&t, |v| {
        v["passfile"] = wrong.display().to_string().into()
    }))
    .await
    .expect_err("a wrong password is refused");
    let text = shown(&e);
    assert!(matches!(e, Error::Connection { .. }), "{text}");
    assert!(
        text.contains("coordinator") && text.contains("28P01") && text.contains("wrong-pgpass"),
        "{text}"
    );
    assert!(
        !text.contains("not-the-password-1234") && !text.contains(&secret),
        "a password leaked: {text}"
    );

    let empty = t.dir().join("empty-pgpass");
    std::fs::write(&empty, "# no lines\n").unwrap();
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = connect_coordinator(variant(&t, |v| {
        v["passfile"] = empty.display().to_string().into()
    }))
    .await
    .expect_err("no password");
    assert!(
        shown(&e).contains("asks for a password and none was found"),
        "{}",
        shown(&e)
    );

    let open = t.dir().join("open-pgpass");
    std::fs::write(&open, format!("*:*:*:*:{secret}\n")).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = connect_coordinator(variant(&t, |v| {
        v["passfile"] = open.display().to_string().into()
    }))
    .await
    .expect_err("a passfile others may read is refused");
    assert!(
        shown(&e).contains("chmod 0600") && !shown(&e).contains(&secret),
        "{}",
        shown(&e)
    );

    let e = connect_coordinator(variant(&t, |v| v["sslmode"] = "disable".into()))
        .await
        .expect_err("no TLS is rejected by the server");
    assert!(
        shown(&e).contains("only over TLS") && shown(&e).contains("sslmode"),
        "{}",
        shown(&e)
    );

    // The certificate names 127.0.0.1; localhost reaches the same server under another name.
    let e = connect_coordinator(variant(&t, |v| {
        v["coordinatorNode"]["hostname"] = "localhost".into()
    }))
    .await
    .expect_err("verify-full refuses a certificate for another name");
    let text = shown(&e);
    assert!(
        text.contains("node coordinator")
            && text.contains("TLS handshake")
            && text.contains("localhost"),
        "{text}"
    );
    // (The generated passfile names 127.0.0.1: this one matches any host.)
    let any_host = t.dir().join("any-host-pgpass");
    std::fs::write(&any_host, format!("*:*:*:*:{secret}\n")).unwrap();
    std::fs::set_permissions(&any_host, std::fs::Permissions::from_mode(0o600)).unwrap();
    connect_coordinator(variant(&t, |v| {
        v["coordinatorNode"]["hostname"] = "localhost".into();
        v["sslmode"] = "verify-ca".into();
        v["passfile"] = any_host.display().to_string().into();
    }))
    .await
    .expect("verify-ca checks the chain only");
    // A CA that did not sign the node's certificate: verify-ca refuses it too.
    let stranger = {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    };
    let stranger_ca = t.dir().join("stranger-ca.crt");
    std::fs::write(&stranger_ca, stranger).unwrap();
    let e = connect_coordinator(variant(&t, |v| {
        v["sslmode"] = "verify-ca".into();
        v["sslrootcert"] = stranger_ca.display().to_string().into();
    }))
    .await
    .expect_err("verify-ca refuses a certificate from another CA");
    assert!(
        shown(&e).contains("TLS handshake") && shown(&e).contains("stranger-ca.crt"),
        "{}",
        shown(&e)
    );

    // PGPASSWORD comes before the passfile (the tool, so the variable stays in its process).
    let config = t.dir().join("wrong-passfile-config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.config_file()).unwrap()).unwrap();
    v["passfile"] = wrong.display().to_string().into();
    std::fs::write(&config, v.to_string()).unwrap();
    let status = |password: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_citus-recovery"));
        cmd.arg("--config")
            .arg(&config)
            .args(["cluster", "status"])
            .env_remove("CITUS_RECOVERY_CONFIG")
            .env_remove("PGPASSWORD");
        if let Some(p) = password {
            cmd.env("PGPASSWORD", p);
        }
        let out = cmd.output().unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let with_env = status(Some(&secret));
    assert!(
        with_env.contains("primary") && !with_env.contains("error"),
        "{with_env}"
    );
    let without = status(None);
    assert!(without.contains("28P01"), "{without}");
    assert!(!without.contains(&secret) && !with_env.contains(&secret));

    // md5: a role whose password is stored as md5, admitted by an md5 line placed first.
    t.sql(
        "coordinator",
        &format!("SET password_encryption = 'md5'; CREATE ROLE md5user LOGIN SUPERUSER PASSWORD '{secret}'"),
    )
    .await
    .unwrap();
    let hba = t
        .config()
        .data_dir(&t.config().coordinator)
        .join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("hostssl all md5user 0.0.0.0/0 md5\n{rules}")).unwrap();
    t.sql("coordinator", "SELECT pg_reload_conf()")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let md5 = connect_coordinator(variant(&t, |v| {
        v["coordinatorNode"]["username"] = "md5user".into();
        v["passfile"] = any_host.display().to_string().into();
    }))
    .await
    .expect("md5 authentication");
    let method = md5
        .query_one(
            "SELECT left(rolpassword, 3) FROM pg_authid WHERE rolname = current_user",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(method.get::<_, String>(0), "md5");

    for mode in ["require", "prefer", "allow"] {
        connect_coordinator(variant(&t, |v| v["sslmode"] = mode.into()))
            .await
            .unwrap_or_else(|e| panic!("sslmode {mode}: {e}"));
    }

    // No secret in the config's Debug or the status shown.
    let config = format!("{:?} {}", t.config(), t.cluster.status().await.unwrap());
    assert!(!config.contains(&secret), "{config}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_citus_cluster_runs_the_five_steps() {
    skip_unless_postgres!();
    let mut t = TestCluster::with_config(1, secure_config);
    skip_unless_citus!(t);
    // With a repository, so the streamed base backup (pg_basebackup to a pipe) authenticates
    // over TLS too.
    let repo = t.dir().join("repo");
    repository_cycle::with_repository(&mut t, serde_json::json!({"type": "posix", "path": repo}));
    t.cluster
        .create_secure(false)
        .await
        .expect("create --secure with Citus");
    assert_eq!(
        t.sql("coordinator", "SELECT count(*) FROM pg_dist_node")
            .await
            .unwrap(),
        ["2"],
        "the worker was added over scram + TLS"
    );
    five_steps(&t, true).await;
    assert!(
        repo.join("backups/base/coordinator").is_dir(),
        "the base backup went into the repository"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_secure_needs_the_keys_it_writes() {
    skip_unless_postgres!();
    let t = TestCluster::new(1);
    let e = t.cluster.create_secure(true).await.expect_err("no sslmode");
    assert!(e.to_string().contains("verify-full"), "{e}");
    assert!(
        !t.config().data_dir(&t.config().coordinator).exists(),
        "nothing was created"
    );
}

#[test]
fn the_cli_refuses_secure_without_its_keys_and_a_password_key_without_repeating_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cluster-config.json");
    let run = |json: &serde_json::Value| {
        std::fs::write(&config, json.to_string()).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_citus-recovery"))
            .arg("--config")
            .arg(&config)
            .args(["cluster", "create", "--secure", "--plain"])
            .env_remove("CITUS_RECOVERY_CONFIG")
            .env_remove("PGPASSWORD")
            .output()
            .unwrap()
    };
    let good: serde_json::Value =
        serde_json::from_str(&common::config_json(dir.path(), 1)).unwrap();
    let out = run(&good);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("sslmode") && err.contains("verify-full"),
        "{err}"
    );
    assert!(!dir.path().join("cluster").exists(), "nothing was created");

    let mut with_password = good.clone();
    with_password["workerNodes"][0]["password"] = "s3cret-in-config".into();
    let out = run(&with_password);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("workerNodes[0].password") && err.contains("passfile"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}
