//! Printing results: human text by default, JSON on stdout with `--json`.

use std::fmt::Display;

use serde::Serialize;

use citus_recovery::verify::listing::ArchivedRestorePoint;
use citus_recovery::{Backup, ClusterStatus, Plan, RestorePoint, Result};

/// Where and how results are printed.
pub struct Output {
    /// JSON instead of text.
    pub json: bool,
    /// The live progress, ended before anything is printed so output never tears the bars.
    pub progress: std::sync::Arc<super::progress::Progress>,
}

impl Output {
    /// A plan: its numbered steps, or its JSON.
    pub fn plan<P: Plan>(&self, plan: &P) -> Result<()> {
        self.progress.finish();
        if self.json {
            println!("{}", plan.to_json());
        } else {
            print!("{plan}");
        }
        Ok(())
    }

    /// A command's report.
    pub fn report<T: Serialize + Display>(&self, report: &T) -> Result<()> {
        self.progress.finish();
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(report).expect("plain data serializes")
            );
        } else {
            print!("{report}");
        }
        Ok(())
    }

    /// The cluster's state.
    pub fn status(&self, status: &ClusterStatus) -> Result<()> {
        self.report(status)
    }

    /// A line of text (as `{"message": ...}` in JSON).
    pub fn text(&self, text: &str) -> Result<()> {
        self.progress.finish();
        if self.json {
            println!("{}", serde_json::json!({ "message": text }));
        } else {
            println!("{text}");
        }
        Ok(())
    }

    /// Backups and restore points; `local`: restore points' times in this host's time zone.
    pub fn list(
        &self,
        backups: &[Backup],
        points: &[ArchivedRestorePoint],
        local: bool,
    ) -> Result<()> {
        self.progress.finish();
        if self.json {
            let value = serde_json::json!({ "backups": backups, "restore_points": points });
            println!(
                "{}",
                serde_json::to_string_pretty(&value).expect("plain data serializes")
            );
            return Ok(());
        }
        println!("backups ({}):", backups.len());
        for b in backups {
            print!("{b}");
        }
        println!("restore points in the WAL archives ({}):", points.len());
        for p in points {
            print!("{}", p.render(local));
        }
        Ok(())
    }

    /// Backups and the restore points recorded in the catalog.
    /// `unreachable`: the points no backup reaches (after expire), marked.
    pub fn list_recorded(
        &self,
        backups: &[Backup],
        points: &[RestorePoint],
        unreachable: &[String],
        local: bool,
    ) -> Result<()> {
        self.progress.finish();
        if self.json {
            let value = serde_json::json!({ "backups": backups, "restore_points": points, "unreachable_restore_points": unreachable });
            println!(
                "{}",
                serde_json::to_string_pretty(&value).expect("plain data serializes")
            );
            return Ok(());
        }
        println!("backups ({}):", backups.len());
        for b in backups {
            print!("{b}");
        }
        println!("restore points in the catalog ({}):", points.len());
        for p in points {
            if unreachable.contains(&p.name) {
                println!("  (UNREACHABLE: older than the oldest backup; `expire --restore-points` removes it)");
            }
            print!("{}", p.render(local));
        }
        Ok(())
    }
}
