//! Watching a recovering server: until it pauses at the target, or until it is promoted.

use std::time::{Duration, Instant};

use super::step::{parse_lsn, timeline_of, RunOptions, StepOutput};
use crate::backend::{ClusterBackend, ServerState};
use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::wal::Lsn;

/// How often progress is logged while waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// How often the server process is looked at while it refuses connections.
const STATE_CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long a server must look stopped before it counts as stopped.
const STOPPED_GRACE: Duration = Duration::from_secs(3);

/// Waits until the node's recovery is paused at `restore_point`. A server that stops, or that
/// leaves recovery without pausing, is an error naming the node and quoting its log. Since
/// PostgreSQL 14 recovery also pauses where the WAL raises a setting above the server's value,
/// so a pause counts only once replay has passed the restore point record at `target`.
pub(super) async fn paused(
    backend: &dyn ClusterBackend,
    node: &NodeConfig,
    restore_point: &str,
    target: Option<Lsn>,
    opts: &RunOptions,
) -> Result<StepOutput> {
    let action = format!("recover to restore point {restore_point:?}");
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut client = None;
    // Right after `pg_ctl start -W` the postmaster may not be visible yet: a server counts as
    // stopped only when it has looked stopped for a while.
    let mut stopped_since: Option<Instant> = None;
    // Asking pg_ctl starts a process: while the server refuses connections (starting up), ask
    // it once a second rather than at every poll.
    let mut last_state_check: Option<Instant> = None;
    // Replay progress runs from the first LSN seen to the restore point's record.
    let mut first_lsn: Option<Lsn> = None;
    loop {
        if started.elapsed() > opts.wait_timeout {
            return Err(Error::node(
                &node.name,
                &action,
                format!(
                    "not paused at the restore point after {:?}; server log:\n{}",
                    opts.wait_timeout,
                    backend.log_tail(node, 20).await
                ),
            ));
        }
        if client.is_none() {
            match backend.connect(node).await {
                Ok(c) => client = Some(c),
                // A refused login or certificate does not get better by waiting.
                Err(e @ Error::Connection { .. }) => return Err(e),
                Err(_) => {
                    if last_state_check.is_some_and(|t| t.elapsed() < STATE_CHECK_EVERY) {
                        tokio::time::sleep(super::step::pace(opts, started)).await;
                        continue;
                    }
                    last_state_check = Some(Instant::now());
                    // Starting up, or gone: only the process can tell.
                    if backend.server_state(node).await? == ServerState::Running {
                        stopped_since = None;
                    } else if stopped_since.get_or_insert_with(Instant::now).elapsed()
                        > STOPPED_GRACE
                    {
                        return Err(Error::node(
                            &node.name,
                            &action,
                            format!(
                                "the server stopped before it reached the restore point (is the point in this node's archive, after the backup?); server log:\n{}",
                                backend.log_tail(node, 20).await
                            ),
                        ));
                    }
                    tokio::time::sleep(super::step::pace(opts, started)).await;
                    continue;
                }
            }
        }
        let c = client.as_ref().expect("connected above");
        let row = c
            .query_one(
                "SELECT pg_is_in_recovery(), \
                 CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() ELSE '' END, \
                 coalesce(pg_last_wal_replay_lsn()::text, '')",
                &[],
            )
            .await;
        match row {
            Err(_) => client = None, // the server may have just stopped; look again
            Ok(row) => {
                let (in_recovery, state, lsn): (bool, String, String) =
                    (row.get(0), row.get(1), row.get(2));
                if !in_recovery {
                    return Err(Error::node(
                        &node.name,
                        &action,
                        format!(
                            "the server left recovery without pausing at the restore point; server log:\n{}",
                            backend.log_tail(node, 20).await
                        ),
                    ));
                }
                if let (Ok(now), Some(t)) = (lsn.parse::<Lsn>(), target) {
                    if first_lsn.is_none() && crate::progress::current().is_some() {
                        first_lsn = Some(replay_start(c, now).await);
                    }
                    if let Some(from) = first_lsn {
                        let (done, total) =
                            (now.0.saturating_sub(from.0), t.0.saturating_sub(from.0));
                        crate::progress::update(
                            crate::progress::ProgressUnit::WalBytes,
                            done,
                            Some(total),
                        );
                    }
                }
                if state == "paused" {
                    let replay_lsn = parse_lsn(node, &lsn)?;
                    match target {
                        Some(t) if replay_lsn <= t => {
                            return Err(Error::NotAtTarget {
                                node: node.name.clone(),
                                restore_point: restore_point.into(),
                                replay_lsn: replay_lsn.to_string(),
                                target_lsn: t.to_string(),
                                cause: pause_cause(&backend.log_tail(node, 200).await),
                            })
                        }
                        _ => return Ok(StepOutput::Paused { replay_lsn }),
                    }
                }
                if last_progress.elapsed() > PROGRESS_EVERY {
                    last_progress = Instant::now();
                    tracing::info!(node = %node.name, replay_lsn = %lsn, "replaying WAL");
                }
            }
        }
        tokio::time::sleep(super::step::pace(opts, started)).await;
    }
}

/// Where replay began, for progress: the redo point of the checkpoint recovery started from
/// (still the backup's early on), else the replay LSN first seen.
async fn replay_start(client: &tokio_postgres::Client, now: Lsn) -> Lsn {
    let redo = client
        .query_one("SELECT redo_lsn::text FROM pg_control_checkpoint()", &[])
        .await
        .ok()
        .and_then(|row| row.get::<_, String>(0).parse::<Lsn>().ok());
    redo.map_or(now, |r| r.min(now))
}

/// Why recovery paused, from the server log: the lines PostgreSQL writes for a pause.
fn pause_cause(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("insufficient parameter settings")
                || l.contains("is a lower setting than on the primary")
                || l.contains("recovery has paused")
                || l.contains("recovery stopping")
        })
        .collect();
    if lines.is_empty() {
        "the server log does not say why; check it, and pg_get_wal_replay_pause_state()".into()
    } else {
        lines[lines.len().saturating_sub(6)..].join("\n")
    }
}

/// Waits until the node has left recovery; returns its new timeline.
pub(super) async fn promoted(
    backend: &dyn ClusterBackend,
    node: &NodeConfig,
    opts: &RunOptions,
) -> Result<StepOutput> {
    let started = Instant::now();
    let client = backend.connect(node).await?;
    loop {
        let row = client
            .query_one(
                "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN '' ELSE pg_walfile_name(pg_current_wal_lsn()) END",
                &[],
            )
            .await
            .map_err(|e| Error::sql(&node.name, "wait for promotion", e))?;
        let (in_recovery, segment): (bool, String) = (row.get(0), row.get(1));
        if !in_recovery {
            return Ok(StepOutput::Promoted {
                timeline: timeline_of(&segment),
            });
        }
        if started.elapsed() > opts.wait_timeout {
            return Err(Error::node(
                &node.name,
                "wait for promotion",
                format!(
                    "still in recovery after {:?}; server log:\n{}",
                    opts.wait_timeout,
                    backend.log_tail(node, 20).await
                ),
            ));
        }
        tokio::time::sleep(super::step::pace(opts, started)).await;
    }
}
