//! [`RestoreTarget`]: the restore point a restore stops at, named one of three ways, so the
//! command-line tool and the Python module pass what they were given and choose nothing.

use chrono::{DateTime, Utc};

use super::Cluster;
use crate::error::{Error, Result};
use crate::plan::{RestorePlan, RestoreReport};
use crate::verify::before::ChosenPoint;
use crate::verify::VerifyReport;

/// The restore point a restore (or its verify) stops at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RestoreTarget {
    /// The config's `restorePoint`.
    #[default]
    Configured,
    /// The restore point of this name.
    Named(String),
    /// The newest restore point in every node's archive created before this time, that a
    /// backup reaches (see [`Cluster::restore_point_before`]).
    Before(DateTime<Utc>),
}

impl RestoreTarget {
    /// The target from a restore point's name or a time (`--restore-point`, `--before`); at
    /// most one may be given, neither means the config's.
    pub fn new(restore_point: Option<String>, before: Option<DateTime<Utc>>) -> Result<Self> {
        match (restore_point, before) {
            (Some(name), Some(_)) => Err(Error::InvalidArgument {
                what: "restore point",
                value: name,
                problem: "give a restore point or a time to pick one before, not both".into(),
            }),
            (Some(name), None) => Ok(Self::Named(name)),
            (None, Some(time)) => Ok(Self::Before(time)),
            (None, None) => Ok(Self::Configured),
        }
    }
}

impl Cluster {
    /// The restore point's name (`None`: the config's), and for [`RestoreTarget::Before`] the
    /// choice, whose note is logged.
    async fn resolve_target(
        &self,
        target: &RestoreTarget,
    ) -> Result<(Option<String>, Option<ChosenPoint>)> {
        match target {
            RestoreTarget::Configured => Ok((None, None)),
            RestoreTarget::Named(name) => Ok((Some(name.clone()), None)),
            RestoreTarget::Before(time) => {
                let chosen = self.restore_point_before(*time).await?;
                tracing::info!("{}", chosen.note);
                Ok((Some(chosen.name.clone()), Some(chosen)))
            }
        }
    }

    /// [`Cluster::verify`] to `target`; a point chosen by time is in the report's `before`.
    pub async fn verify_to(
        &self,
        backup: Option<&str>,
        target: &RestoreTarget,
    ) -> Result<VerifyReport> {
        let (point, chosen) = self.resolve_target(target).await?;
        let mut report = self.verify(backup, point.as_deref()).await?;
        report.before = chosen;
        Ok(report)
    }

    /// [`Cluster::plan_restore_start`] to `target`; a point chosen by time says so in a note.
    pub async fn plan_restore_start_to(
        &self,
        backup: Option<&str>,
        target: &RestoreTarget,
    ) -> Result<RestorePlan> {
        let (point, chosen) = self.resolve_target(target).await?;
        let mut plan = self.plan_restore_start(backup, point.as_deref()).await?;
        plan.notes.extend(chosen.map(|c| c.note));
        Ok(plan)
    }

    /// [`Cluster::restore_start`] to `target`; a point chosen by time is in the report's
    /// `before`.
    pub async fn restore_start_to(
        &self,
        backup: Option<&str>,
        target: &RestoreTarget,
    ) -> Result<RestoreReport> {
        let (point, chosen) = self.resolve_target(target).await?;
        let mut report = self.restore_start(backup, point.as_deref()).await?;
        report.before = chosen;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_and_a_time_together_are_refused() {
        let time = Utc::now();
        assert_eq!(
            RestoreTarget::new(None, None).unwrap(),
            RestoreTarget::Configured
        );
        assert_eq!(
            RestoreTarget::new(Some("p".into()), None).unwrap(),
            RestoreTarget::Named("p".into())
        );
        assert_eq!(
            RestoreTarget::new(None, Some(time)).unwrap(),
            RestoreTarget::Before(time)
        );
        let err = RestoreTarget::new(Some("p".into()), Some(time)).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument { value, .. } if value == "p"),
            "{err}"
        );
        assert!(err.to_string().contains("not both"), "{err}");
    }
}
