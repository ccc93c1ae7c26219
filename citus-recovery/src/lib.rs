//! # citus-recovery
//!
//! Consistent point-in-time recovery for a [Citus](https://www.citusdata.com/) cluster: one
//! coordinator and N workers, each a PostgreSQL server, backed up together and restored together
//! to the same named restore point, so the restored cluster agrees with itself. It works on plain
//! PostgreSQL nodes too (without Citus' cross-node guarantee).
//!
//! The five steps, each a typed [plan](plan) executed through a [`ClusterBackend`]:
//!
//! 1. [`ArchivePlan`]: WAL archiving on every node;
//! 2. [`BasebackupPlan`]: a base backup of every node at once;
//! 3. [`RestorePointPlan`]: a named restore point, archived on every node;
//! 4. [`RestorePlan`]: every node restored and paused at the restore point;
//! 5. [`FinishPlan`]: recovery ended, the cluster writable.
//!
//! [`Cluster`] is the front door: one method per command, `plan_*` to look before leaping.
//!
//! ```no_run
//! use citus_recovery::{Cluster, Plan};
//!
//! # async fn demo() -> citus_recovery::Result<()> {
//! let cluster = Cluster::from_config_file("cluster-config.json")?;
//! cluster.prepare_archiving(true, false).await?;
//! let backup = cluster.basebackup(None).await?;
//! let point = cluster.create_restore_point(Some("before-migration")).await?;
//! // ... later, on the worst day of the year:
//! let plan = cluster.plan_restore_start(Some(&backup.name), Some(&point.name)).await?;
//! println!("{plan}"); // numbered steps per node; nothing has changed yet
//! cluster.restore_start(Some(&backup.name), Some(&point.name)).await?;
//! // every node is paused at the restore point: check the data with read-only queries, then
//! cluster.restore_finish().await?;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod archiving;
pub mod backend;
pub mod catalog;
pub mod check;
mod cluster;
pub mod config;
pub mod connect;
pub mod drill;
mod error;
pub mod expire;
pub mod files;
pub mod fork;
pub mod import;
pub mod lock;
pub mod names;
pub mod observe;
pub mod plan;
pub mod progress;
pub mod repository;
pub mod trusted;
pub mod verify;
pub mod wal;

pub use backend::{ClusterBackend, LocalBackend, SshBackend};
pub use catalog::{Backup, NodeBackup, NodeRestorePoint, RestorePoint};
pub use check::CheckReport;
pub use cluster::{Apply, Cluster, ClusterStatus, RestoreTarget};
pub use config::{ClusterConfig, NodeConfig, NodeRole};
pub use error::{Error, Result};
pub use expire::ExpirePlan;
pub use plan::{
    AbortPlan, AbortReport, ArchivePlan, ArchiveReport, BasebackupPlan, FinishPlan, FinishReport,
    Plan, RestorePlan, RestorePointPlan, RestoreReport, RunOptions,
};
pub use verify::VerifyReport;
