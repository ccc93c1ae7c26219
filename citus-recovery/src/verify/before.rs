//! Time-based targets: operators think in times ("just before 14:05"), but a consistent cluster
//! can only be restored to a restore point every node has. [`point_before`] turns a time into the
//! newest such point created before it.

use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;

use super::listing::ArchivedRestorePoint;
use crate::catalog::Backup;
use crate::error::{Error, Result};

/// The restore point chosen for a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChosenPoint {
    /// The restore point's name: restore to it as if it had been named.
    pub name: String,
    /// When it was created: the latest time written in its records on the nodes.
    pub time: DateTime<Utc>,
    /// The time asked for.
    pub before: DateTime<Utc>,
    /// Which point, and how far before the time it is, in words (for plans and reports).
    pub note: String,
}

/// The newest restore point created strictly before `before` whose record is in the archive of
/// every node of `nodes`, exactly once there (a name written twice on a node is ambiguous:
/// recovery would stop at whichever copy comes first after the backup), and that one of
/// `backups` could reach: a backup whose every node's part ends at or before the point's record
/// there. Its time is the latest of its records' times, so the point is complete on every node
/// before `before`. That backup test is by LSN alone; `verify` then checks timelines and WAL.
pub fn point_before(
    points: &[ArchivedRestorePoint],
    nodes: &[String],
    backups: &[Backup],
    before: DateTime<Utc>,
) -> Result<ChosenPoint> {
    let mut skipped = Vec::new();
    let mut best: Option<(&ArchivedRestorePoint, DateTime<Utc>)> = None;
    for p in points {
        let counts: Vec<usize> = nodes
            .iter()
            .map(|n| p.copies.iter().filter(|c| &c.node == n).count())
            .collect();
        let Some(time) = p.copies.iter().map(|c| c.time).max() else {
            continue;
        };
        if time >= before {
            continue;
        }
        if let Some(i) = counts.iter().position(|c| *c == 0) {
            skipped.push(format!("{:?} (not in the archive of {})", p.name, nodes[i]));
            continue;
        }
        if let Some(i) = counts.iter().position(|c| *c > 1) {
            skipped.push(format!(
                "{:?} (written {} times on {}; name it with --restore-point and --backup instead)",
                p.name, counts[i], nodes[i]
            ));
            continue;
        }
        let reachable = backups.iter().any(|b| {
            p.copies
                .iter()
                .all(|c| b.node(&c.node).is_some_and(|part| part.end_lsn <= c.lsn))
        });
        if !reachable {
            skipped.push(format!(
                "{:?} (no complete backup ends before it on every node)",
                p.name
            ));
            continue;
        }
        // Newest: the later time, then the greater name (a fixed order for equal times).
        let newer = best.map_or(true, |(b, t)| {
            (t, b.name.as_str()) < (time, p.name.as_str())
        });
        if newer {
            best = Some((p, time));
        }
    }
    let Some((point, time)) = best else {
        return Err(Error::UnknownRestorePoint {
            name: format!("before {}", before.format("%Y-%m-%d %H:%M:%S UTC")),
            hint: if skipped.is_empty() {
                "no restore point in the WAL archives was created before that time; `citus-recovery list` shows them".into()
            } else {
                format!(
                    "no restore point created before that time is on every node: {}",
                    skipped.join(", ")
                )
            },
        });
    };
    let note = format!(
        "restore point {:?} chosen for --before {}: created {}, {} before it; the newest created before that time on every node",
        point.name,
        before.format("%Y-%m-%d %H:%M:%S UTC"),
        time.format("%Y-%m-%d %H:%M:%S UTC"),
        human_duration(before - time)
    );
    Ok(ChosenPoint {
        name: point.name.clone(),
        time,
        before,
        note,
    })
}

/// A duration in words: `2h 5m 3s`, `4m 0s`, `12s`.
pub fn human_duration(d: chrono::TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h {m}m {s}s")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else if d.num_milliseconds() < 1000 {
        format!("{:.3}s", d.num_milliseconds().max(0) as f64 / 1000.0)
    } else {
        format!("{s}s")
    }
}

/// Parses a time given on the command line: `2026-11-26 14:05:00+00`, with a `T` instead of the
/// space, with `Z`, `UTC`, `+01:00` or `+0100` as the zone, seconds and fractions optional. A
/// time without a zone is refused: which 14:05 would be a guess.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>> {
    let t = text.trim();
    let normalized = if let Some(rest) = t.strip_suffix(" UTC").or_else(|| t.strip_suffix("UTC")) {
        format!("{}+00:00", rest.trim_end())
    } else if let Some(rest) = t.strip_suffix('Z').or_else(|| t.strip_suffix('z')) {
        format!("{rest}+00:00")
    } else {
        t.to_string()
    };
    let normalized = normalized.replacen('T', " ", 1);
    for format in [
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%d %H:%M%#z",
        "%Y-%m-%d %H:%M:%S%.f %#z",
        "%Y-%m-%d %H:%M %#z",
    ] {
        if let Ok(t) = DateTime::<FixedOffset>::parse_from_str(&normalized, format) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    Err(Error::InvalidArgument {
        what: "time",
        value: text.into(),
        problem: "is not a date and time with a zone; write it as \"2026-11-26 14:05:00+00\" (or with Z, UTC, +01:00)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::NodeBackup;
    use crate::verify::listing::ArchivedCopy;
    use crate::wal::Lsn;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, h, m, s).unwrap()
    }

    fn point(name: &str, copies: &[(&str, DateTime<Utc>)]) -> ArchivedRestorePoint {
        ArchivedRestorePoint {
            name: name.into(),
            recorded: true,
            copies: copies
                .iter()
                .enumerate()
                .map(|(i, (node, time))| ArchivedCopy {
                    node: node.to_string(),
                    lsn: Lsn(0x1000 * (i as u64 + 1)),
                    timeline: 1,
                    time: *time,
                })
                .collect(),
            missing_on: Vec::new(),
        }
    }

    fn nodes() -> Vec<String> {
        vec!["coordinator".into(), "worker1".into()]
    }

    /// A backup of both nodes ending at `end` on each.
    fn backup(end: u64) -> Vec<Backup> {
        let part = |node: &str| NodeBackup {
            backup: "b".into(),
            node: node.into(),
            start_lsn: Lsn(end / 2),
            end_lsn: Lsn(end),
            timeline: 1,
            start_time: at(12, 0, 0),
            end_time: at(12, 0, 0),
            pg_version: "15".into(),
            bytes: 0,
            system_identifier: None,
            hot_standby: None,
            tablespaces: Vec::new(),
            wal_segment_size: None,
        };
        vec![Backup {
            name: "b".into(),
            cluster_name: "c".into(),
            start_time: at(12, 0, 0),
            end_time: at(12, 0, 0),
            citus_version: None,
            nodes: vec![part("coordinator"), part("worker1")],
        }]
    }

    #[test]
    fn the_newest_point_on_every_node_before_the_time_is_chosen() {
        let points = vec![
            point(
                "a",
                &[("coordinator", at(13, 0, 0)), ("worker1", at(13, 0, 0))],
            ),
            point(
                "b",
                &[("coordinator", at(14, 1, 0)), ("worker1", at(14, 1, 1))],
            ),
            // Only on the coordinator: not a cluster-wide point.
            point("c", &[("coordinator", at(14, 3, 0))]),
            // After the time.
            point(
                "d",
                &[("coordinator", at(14, 6, 0)), ("worker1", at(14, 6, 0))],
            ),
        ];
        let chosen = point_before(&points, &nodes(), &backup(0x10), at(14, 5, 0)).unwrap();
        assert_eq!(chosen.name, "b");
        assert_eq!(chosen.time, at(14, 1, 1));
        assert!(chosen.note.contains("\"b\""), "{}", chosen.note);
        assert!(chosen.note.contains("3m 59s before"), "{}", chosen.note);
        // Exactly at the time is not before it.
        let chosen = point_before(&points, &nodes(), &backup(0x10), at(14, 1, 1)).unwrap();
        assert_eq!(chosen.name, "a");
    }

    /// The choice reaches the reports (text and JSON), not only the log.
    #[test]
    fn the_restore_and_verify_reports_show_the_choice() {
        let points = vec![point(
            "b",
            &[("coordinator", at(14, 1, 0)), ("worker1", at(14, 1, 1))],
        )];
        let chosen = point_before(&points, &nodes(), &backup(0x10), at(14, 5, 0)).unwrap();
        let restore = crate::RestoreReport {
            backup: "b".into(),
            restore_point: "b".into(),
            nodes: Vec::new(),
            before: Some(chosen.clone()),
        };
        let verify = crate::VerifyReport {
            backup: "b".into(),
            chosen_because: None,
            restore_point: "b".into(),
            target: crate::catalog::RestorePoint {
                name: "b".into(),
                time: chosen.time,
                citus: true,
                nodes: Vec::new(),
            },
            wal_parameters: Default::default(),
            checks: Vec::new(),
            before: Some(chosen.clone()),
        };
        for (text, json) in [
            (restore.to_string(), serde_json::to_value(&restore).unwrap()),
            (verify.to_string(), serde_json::to_value(&verify).unwrap()),
        ] {
            assert!(text.contains(&chosen.note), "{text}");
            assert!(text.contains("3m 59s before"), "{text}");
            assert_eq!(json["before"]["name"], "b", "{json}");
            assert_eq!(json["before"]["note"], chosen.note.as_str(), "{json}");
            assert_eq!(json["before"]["time"], "2026-11-26T14:01:01Z", "{json}");
        }
        // A named point: no note in the text, null in the JSON.
        let named = crate::RestoreReport {
            before: None,
            ..restore
        };
        assert!(!named.to_string().contains("chosen for --before"));
        assert!(serde_json::to_value(&named).unwrap()["before"].is_null());
    }

    #[test]
    fn a_point_complete_only_after_the_time_or_written_twice_is_not_chosen() {
        let points = vec![
            point(
                "a",
                &[("coordinator", at(13, 0, 0)), ("worker1", at(13, 0, 0))],
            ),
            // Its worker record is after 14:05: the point did not exist everywhere then.
            point(
                "late",
                &[("coordinator", at(14, 4, 0)), ("worker1", at(14, 5, 1))],
            ),
            point(
                "twice",
                &[
                    ("coordinator", at(14, 2, 0)),
                    ("coordinator", at(14, 3, 0)),
                    ("worker1", at(14, 2, 0)),
                ],
            ),
        ];
        let chosen = point_before(&points, &nodes(), &backup(0x10), at(14, 5, 0)).unwrap();
        assert_eq!(chosen.name, "a");
        assert!(chosen.note.contains("1h 5m 0s before"), "{}", chosen.note);
    }

    #[test]
    fn a_point_no_backup_reaches_is_not_chosen() {
        // Copies are at 0x1000 (coordinator) and 0x2000 (worker1); the backup ends at 0x1800.
        let points = vec![
            point(
                "a",
                &[("coordinator", at(13, 0, 0)), ("worker1", at(13, 0, 0))],
            ),
            point(
                "b",
                &[("coordinator", at(14, 0, 0)), ("worker1", at(14, 0, 0))],
            ),
        ];
        let mut points = points;
        points[1].copies[0].lsn = Lsn(0x3000);
        points[1].copies[1].lsn = Lsn(0x3000);
        let chosen = point_before(&points, &nodes(), &backup(0x2800), at(14, 5, 0)).unwrap();
        assert_eq!(chosen.name, "b");
        let err = point_before(&points, &nodes(), &backup(0x3800), at(14, 5, 0)).unwrap_err();
        assert!(
            err.to_string()
                .contains("no complete backup ends before it"),
            "{err}"
        );
        let err = point_before(&points, &nodes(), &[], at(14, 5, 0)).unwrap_err();
        assert!(
            err.to_string().contains("\"b\" (no complete backup"),
            "{err}"
        );
    }

    #[test]
    fn no_point_before_the_time_is_an_error_saying_why() {
        let points = vec![point("c", &[("coordinator", at(14, 3, 0))])];
        let err = point_before(&points, &nodes(), &backup(0x10), at(14, 5, 0)).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::UnknownRestorePoint { .. }), "{text}");
        assert!(text.contains("not in the archive of worker1"), "{text}");
        let err = point_before(&[], &nodes(), &backup(0x10), at(14, 5, 0)).unwrap_err();
        assert!(err.to_string().contains("citus-recovery list"), "{err}");
    }

    #[test]
    fn times_parse_only_with_a_zone() {
        for text in [
            "2026-11-26 14:05:00+00",
            "2026-11-26 14:05:00+00:00",
            "2026-11-26T14:05:00Z",
            "2026-11-26 14:05 UTC",
            "2026-11-26 15:05:00.000+01:00",
            "2026-11-26 15:05:00 +0100",
        ] {
            assert_eq!(parse_time(text).unwrap(), at(14, 5, 0), "{text}");
        }
        for bad in ["2026-11-26 14:05:00", "yesterday", "14:05"] {
            let err = parse_time(bad).unwrap_err().to_string();
            assert!(err.contains("2026-11-26 14:05:00+00"), "{bad}: {err}");
        }
    }
}
