//! The floors: the same PostgreSQL work done with PostgreSQL's own tools and nothing else, every
//! node at once, polling fast (5-10 ms) so the floor is as low as it can be.

use std::path::Path;
use std::time::{Duration, Instant};

use citus_recovery::backend::{ServerState, StartWait};
use citus_recovery::plan::recovery_conf::{self, quote_value};
use citus_recovery::NodeConfig;
use futures::future::try_join_all;

use crate::local::{poll, run, Env, Local, Result};

/// How long one node's raw base backup took.
#[derive(Debug, Clone, Copy)]
pub struct RawBackup {
    /// Until `pg_basebackup` exited.
    pub files: Duration,
    /// Until, in addition, the WAL segment holding its stop LSN was archived (what the library
    /// also waits for, so the backup can be restored from the archive).
    pub archived: Duration,
    /// Bytes written.
    pub bytes: u64,
}

/// `pg_basebackup` of every node at once into `<dest>/<node>` (tar, WAL streamed, fast checkpoint:
/// the library's settings); the cluster's times are the slowest node's.
pub async fn basebackup(env: &Env, local: &Local, dest: &Path) -> Result<RawBackup> {
    env.mkdir(dest, 0o700)?;
    let started = Instant::now();
    let per_node = try_join_all(local.nodes().map(|node| async move {
        let folder = dest.join(&node.name);
        let mut cmd = env.pg("pg_basebackup");
        cmd.args(["-h", &node.hostname, "-p", &node.port.to_string()])
            .args(["-U", &node.username, "-Ft", "-X", "stream", "-c", "fast"])
            .args(["-l", "raw", "--no-password", "-D"])
            .arg(&folder);
        run(&mut cmd, &format!("pg_basebackup of {}", node.name)).await?;
        let files = started.elapsed();
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(folder.join("backup_manifest"))?)?;
        let end = manifest["WAL-Ranges"]
            .as_array()
            .and_then(|r| r.last())
            .and_then(|r| r["End-LSN"].as_str())
            .ok_or("backup_manifest has no WAL-Ranges")?
            .to_string();
        let client = local.connect(node).await?;
        let segment: String = client
            .query_one("SELECT pg_walfile_name($1::text::pg_lsn - 1)", &[&end])
            .await?
            .get(0);
        let archived = local.config().archive_dir(node).join(&segment);
        poll(Duration::from_millis(5), "archive", || async {
            Ok(archived.exists())
        })
        .await?;
        let mut bytes = 0;
        for entry in std::fs::read_dir(&folder)? {
            bytes += entry?.metadata()?.len();
        }
        Result::Ok(RawBackup {
            files,
            archived: started.elapsed(),
            bytes,
        })
    }))
    .await?;
    Ok(RawBackup {
        files: per_node.iter().map(|r| r.files).max().unwrap_or_default(),
        archived: per_node
            .iter()
            .map(|r| r.archived)
            .max()
            .unwrap_or_default(),
        bytes: per_node.iter().map(|r| r.bytes).sum(),
    })
}

/// Stops the node if it runs and moves its data directory to `<data>.<suffix>`; returns that path.
pub async fn stop_and_move_aside(
    local: &Local,
    node: &NodeConfig,
    suffix: &str,
) -> Result<std::path::PathBuf> {
    let backend = local.cluster.backend();
    if backend.server_state(node).await? == ServerState::Running {
        backend.stop(node).await?;
    }
    let data = local.config().data_dir(node);
    let aside = data.with_extension(suffix);
    std::fs::rename(&data, &aside)?;
    Ok(aside)
}

/// Waits until the node's recovery is paused, polling every 10 ms.
pub async fn wait_paused(local: &Local, node: &NodeConfig) -> Result<()> {
    let started = Instant::now();
    let mut client = None;
    loop {
        if client.is_none() {
            // Refused until the server accepts connections.
            client = local.connect(node).await.ok();
            let backend = local.cluster.backend();
            if client.is_none()
                && started.elapsed() > Duration::from_secs(5)
                && backend.server_state(node).await? != ServerState::Running
            {
                return Err(format!(
                    "node {} stopped before pausing; server log:\n{}",
                    node.name,
                    backend.log_tail(node, 20).await
                )
                .into());
            }
        }
        if let Some(c) = &client {
            let state: String = c
                .query_one("SELECT pg_get_wal_replay_pause_state()", &[])
                .await?
                .get(0);
            if state == "paused" {
                return Ok(());
            }
        }
        if started.elapsed() > Duration::from_secs(3600) {
            return Err(format!("node {} not paused after an hour", node.name).into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Restore until paused, by hand: every node at once stops, moves its data directory aside,
/// extracts the backup with GNU tar, gets the library's recovery settings, starts, and is polled
/// until paused. The old data directories are left at `<data>.raw-aside` for the caller to remove.
pub async fn restore(
    env: &Env,
    local: &Local,
    backup: &str,
    restore_point: &str,
    timeline: u32,
) -> Result<Duration> {
    let started = Instant::now();
    try_join_all(local.nodes().map(|node| async move {
        let config = local.config();
        stop_and_move_aside(local, node, "raw-aside").await?;
        let data = config.data_dir(node);
        let source = config.backup_dir(backup).join(&node.name);
        gnu_tar_extract(env, &source, &data).await?;
        let conf = data.join("postgresql.auto.conf");
        let settings = [
            (
                "restore_command",
                recovery_conf::restore_command(&config.archive_dir(node)),
            ),
            ("recovery_target_name", restore_point.to_string()),
            ("recovery_target_action", "pause".into()),
            ("recovery_target_timeline", timeline.to_string()),
            ("hot_standby", "on".into()),
        ]
        .map(|(k, v)| (k.to_string(), quote_value(&v)));
        let text = recovery_conf::apply(&std::fs::read_to_string(&conf)?, &settings, &[]);
        citus_recovery::files::write_atomic(&conf, text.as_bytes(), 0o600, &env.user)?;
        citus_recovery::files::write_atomic(&data.join("recovery.signal"), b"", 0o600, &env.user)?;
        local
            .cluster
            .backend()
            .start(node, StartWait::NoWait)
            .await?;
        wait_paused(local, node).await
    }))
    .await?;
    Ok(started.elapsed())
}

/// Extraction only, by the library: every node's backup into `<dest>/<node>`, all at once.
pub async fn extract_library(env: &Env, local: &Local, backup: &str, dest: &Path) -> Result<()> {
    env.mkdir(dest, 0o700)?;
    try_join_all(local.nodes().map(|node| async move {
        let source = local.config().backup_dir(backup).join(&node.name);
        local
            .cluster
            .backend()
            .extract_backup(node, &source, &dest.join(&node.name), &[])
            .await?;
        Result::Ok(())
    }))
    .await?;
    Ok(())
}

/// Extraction only, by GNU tar as the servers' user: every node's backup into `<dest>/<node>`,
/// all at once.
/// GNU tar, as the servers' user, of one node's `base.tar` into `data` and `pg_wal.tar` into
/// its `pg_wal`: the floor the library's own extraction is measured against.
async fn gnu_tar_extract(env: &Env, source: &Path, data: &Path) -> Result<()> {
    env.mkdir(data, 0o700)?;
    let mut tar = env.as_server_user("tar");
    tar.arg("-xf")
        .arg(source.join("base.tar"))
        .arg("-C")
        .arg(data);
    run(&mut tar, "tar -x base.tar").await?;
    env.mkdir(&data.join("pg_wal"), 0o700)?;
    let mut tar = env.as_server_user("tar");
    tar.arg("-xf")
        .arg(source.join("pg_wal.tar"))
        .arg("-C")
        .arg(data.join("pg_wal"));
    run(&mut tar, "tar -x pg_wal.tar").await?;
    Ok(())
}

pub async fn extract_tar(env: &Env, local: &Local, backup: &str, dest: &Path) -> Result<()> {
    env.mkdir(dest, 0o700)?;
    try_join_all(local.nodes().map(|node| async move {
        let source = local.config().backup_dir(backup).join(&node.name);
        let data = dest.join(&node.name);
        gnu_tar_extract(env, &source, &data).await?;
        Result::Ok(())
    }))
    .await?;
    Ok(())
}

/// Ends recovery by hand: `pg_wal_replay_resume()` on every node, polled until out of recovery.
pub async fn finish(local: &Local) -> Result<Duration> {
    let started = Instant::now();
    try_join_all(local.nodes().map(|node| async move {
        let client = local.connect(node).await?;
        client.execute("SELECT pg_wal_replay_resume()", &[]).await?;
        poll(Duration::from_millis(5), "promotion", || async {
            let r: bool = client
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await?
                .get(0);
            Ok(!r)
        })
        .await
    }))
    .await?;
    Ok(started.elapsed())
}

/// A restore point by hand: `pg_create_restore_point` and `pg_switch_wal` on every node, polled
/// until the segment is in the node's archive (what the library's restore-point does on plain
/// nodes).
pub async fn restore_point(local: &Local, name: &str) -> Result<Duration> {
    let started = Instant::now();
    try_join_all(local.nodes().map(|node| async move {
        let client = local.connect(node).await?;
        client
            .execute("SELECT pg_create_restore_point($1)", &[&name])
            .await?;
        let segment: String = client
            .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
            .await?
            .get(0);
        let archived = local.config().archive_dir(node).join(segment);
        poll(Duration::from_millis(5), "archive", || async {
            Ok(archived.exists())
        })
        .await
    }))
    .await?;
    Ok(started.elapsed())
}

/// How long `dd` takes to write `bytes` with one `fdatasync` at the end: the disk's own limit.
pub async fn dd(folder: &Path, bytes: u64) -> Result<Duration> {
    let file = folder.join("dd.bin");
    let blocks = bytes.div_ceil(4 << 20);
    let mut cmd = tokio::process::Command::new("dd");
    cmd.arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .args(["bs=4M", &format!("count={blocks}"), "conv=fdatasync"]);
    let started = Instant::now();
    run(&mut cmd, "dd").await?;
    let took = started.elapsed();
    std::fs::remove_file(&file)?;
    Ok(took)
}
