//! Which backup can reach a restore point, decided by LSN on every node, never by wall-clock time.
//!
//! A backup serves a node when that node's archive holds the restore point record at or after
//! the backup's stop LSN, on a timeline whose history runs through the backup's timeline and
//! start LSN. Without a backup that serves every node there is no consistent restore, and the
//! choice fails naming the node; it never falls back to the newest backup.

use std::collections::HashMap;

use crate::catalog::{Backup, NodeBackup};
use crate::error::{Error, Result};
use crate::wal::{RestorePointRecord, TimeLineId, TimelineHistory};

/// Gives the history of a timeline as one node's archive holds it (`None`: no such file).
pub trait Histories {
    /// The history of `timeline` on `node`.
    fn history(&self, node: &str, timeline: TimeLineId) -> Option<TimelineHistory>;
}

impl<F: Fn(&str, TimeLineId) -> Option<TimelineHistory>> Histories for F {
    fn history(&self, node: &str, timeline: TimeLineId) -> Option<TimelineHistory> {
        self(node, timeline)
    }
}

/// The record recovery from `backup` would stop at on one node, or why there is none.
pub fn target_on_node<'a>(
    backup: &NodeBackup,
    records: &'a [RestorePointRecord],
    histories: &dyn Histories,
) -> std::result::Result<&'a RestorePointRecord, String> {
    let reachable = |r: &&RestorePointRecord| {
        r.timeline == backup.timeline
            || histories
                .history(&backup.node, r.timeline)
                .is_some_and(|h| h.timeline_of(backup.start_lsn) == backup.timeline)
    };
    // Recovery stops at the first record of the name it replays after the backup's start.
    let first = records
        .iter()
        .filter(|r| r.lsn >= backup.start_lsn)
        .filter(reachable)
        .min_by_key(|r| (r.lsn, r.timeline));
    match first {
        Some(r) if r.lsn >= backup.end_lsn => Ok(r),
        Some(r) => Err(format!(
            "the restore point at {} lies inside backup {} (it ends at {}): recovery cannot stop before the backup is consistent",
            r.lsn, backup.backup, backup.end_lsn
        )),
        None if records.is_empty() => Err("the restore point is not in its WAL archive".into()),
        None => Err(format!(
            "the restore point ({}) is not after backup {} on a timeline reachable from the backup's timeline {} (start {})",
            records
                .iter()
                .map(|r| format!("{} on timeline {}", r.lsn, r.timeline))
                .collect::<Vec<_>>()
                .join(", "),
            backup.backup,
            backup.timeline,
            backup.start_lsn
        )),
    }
}

/// The newest backup that reaches the restore point on every node of `nodes`, and why it was
/// chosen. `records` holds each node's archived records of the restore point.
pub fn choose_backup<'a>(
    backups: &'a [Backup],
    nodes: &[String],
    point: &str,
    records: &HashMap<String, Vec<RestorePointRecord>>,
    histories: &dyn Histories,
) -> Result<(&'a Backup, String)> {
    let mut newest_first: Vec<&Backup> = backups.iter().collect();
    newest_first.sort_by(|a, b| b.end_time.cmp(&a.end_time).then(b.name.cmp(&a.name)));
    let mut refusals = Vec::new();
    'backups: for backup in newest_first {
        let mut reasons = Vec::new();
        for node in nodes {
            let Some(part) = backup.node(node) else {
                refusals.push(format!("{}: it has no part for node {node}", backup.name));
                continue 'backups;
            };
            let empty = Vec::new();
            match target_on_node(part, records.get(node).unwrap_or(&empty), histories) {
                Ok(r) => reasons.push(format!(
                    "{node}: stop {} <= point {} (timeline {})",
                    part.end_lsn, r.lsn, r.timeline
                )),
                Err(why) => {
                    refusals.push(format!("{}: node {node}: {why}", backup.name));
                    continue 'backups;
                }
            }
        }
        let why = format!(
            "backup {} is the newest whose stop LSN lies before restore point {point:?} on every node ({})",
            backup.name,
            reasons.join("; ")
        );
        return Ok((backup, why));
    }
    Err(Error::UnknownBackup {
        name: String::new(),
        folder: Default::default(),
        hint: if refusals.is_empty() {
            "there are no complete backups; take one with `citus-recovery basebackup`".into()
        } else {
            format!(
                "no backup can reach restore point {point:?} on every node: {}",
                refusals.join("; ")
            )
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::Lsn;
    use chrono::{TimeZone, Utc};

    fn part(backup: &str, node: &str, start: u64, end: u64, timeline: u32) -> NodeBackup {
        NodeBackup {
            backup: backup.into(),
            node: node.into(),
            start_lsn: Lsn(start),
            end_lsn: Lsn(end),
            timeline,
            start_time: Utc.timestamp_opt(0, 0).unwrap(),
            end_time: Utc.timestamp_opt(0, 0).unwrap(),
            pg_version: "15".into(),
            bytes: 0,
            system_identifier: None,
            hot_standby: None,
            tablespaces: Vec::new(),
            wal_segment_size: None,
        }
    }

    fn backup(name: &str, secs: i64, parts: Vec<NodeBackup>) -> Backup {
        Backup {
            name: name.into(),
            cluster_name: "c".into(),
            start_time: Utc.timestamp_opt(secs, 0).unwrap(),
            end_time: Utc.timestamp_opt(secs, 0).unwrap(),
            citus_version: None,
            nodes: parts,
        }
    }

    fn record(lsn: u64, timeline: u32) -> RestorePointRecord {
        RestorePointRecord {
            name: "rp".into(),
            lsn: Lsn(lsn),
            end_lsn: Lsn(lsn + 0x60),
            time: Utc.timestamp_opt(0, 0).unwrap(),
            timeline,
            segment: String::new(),
            last_segment: String::new(),
        }
    }

    fn no_history(_: &str, _: TimeLineId) -> Option<TimelineHistory> {
        None
    }

    #[test]
    fn the_newest_backup_before_the_point_on_every_node_wins() {
        let nodes = vec!["a".to_string(), "b".to_string()];
        let backups = vec![
            backup(
                "old",
                1,
                vec![
                    part("old", "a", 0x100, 0x200, 1),
                    part("old", "b", 0x100, 0x200, 1),
                ],
            ),
            // Newer by the clock, but on node b it ends after the point.
            backup(
                "new",
                3,
                vec![
                    part("new", "a", 0x900, 0xA00, 1),
                    part("new", "b", 0x2000, 0x2100, 1),
                ],
            ),
            backup(
                "mid",
                2,
                vec![
                    part("mid", "a", 0x300, 0x400, 1),
                    part("mid", "b", 0x300, 0x400, 1),
                ],
            ),
        ];
        let records = HashMap::from([
            ("a".to_string(), vec![record(0x1000, 1)]),
            ("b".to_string(), vec![record(0x1000, 1)]),
        ]);
        let (chosen, why) = choose_backup(&backups, &nodes, "rp", &records, &no_history).unwrap();
        assert_eq!(chosen.name, "mid");
        assert!(why.contains("b: stop 0/400 <= point 0/1000"), "{why}");
    }

    #[test]
    fn no_fallback_to_the_newest_and_the_node_is_named() {
        let nodes = vec!["a".to_string(), "b".to_string()];
        let backups = vec![backup(
            "only",
            1,
            vec![
                part("only", "a", 0x100, 0x200, 1),
                part("only", "b", 0x100, 0x200, 1),
            ],
        )];
        let records = HashMap::from([("a".to_string(), vec![record(0x1000, 1)])]);
        let err = choose_backup(&backups, &nodes, "rp", &records, &no_history).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("only: node b: the restore point is not in its WAL archive"),
            "{text}"
        );
    }

    #[test]
    fn a_point_inside_the_backup_is_refused() {
        let p = part("b", "a", 0x100, 0x2000, 1);
        let records = vec![record(0x1000, 1)];
        let err = target_on_node(&p, &records, &no_history).unwrap_err();
        assert!(err.contains("lies inside backup b"), "{err}");
    }

    #[test]
    fn another_timeline_counts_only_through_its_history() {
        let p = part("b", "a", 0x100, 0x200, 1);
        let records = vec![record(0x5000, 2)];
        assert!(
            target_on_node(&p, &records, &no_history).is_err(),
            "no history file: unreachable"
        );
        let history = |_: &str, tli: TimeLineId| {
            (tli == 2).then(|| {
                TimelineHistory::parse(
                    2,
                    "1\t0/3000\tno reason\n",
                    std::path::Path::new("00000002.history"),
                )
                .unwrap()
            })
        };
        assert_eq!(
            target_on_node(&p, &records, &history).unwrap().lsn,
            Lsn(0x5000)
        );
        // A backup taken on timeline 1 after the switch at 0/3000 is not on timeline 2's path.
        let late = part("late", "a", 0x4000, 0x4100, 1);
        assert!(target_on_node(&late, &records, &history).is_err());
    }
}
