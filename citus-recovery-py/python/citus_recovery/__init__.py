"""Consistent point-in-time backup and restore of a Citus (or plain PostgreSQL) cluster.

Every node is backed up together and restored together to one named restore point::

    import citus_recovery

    cluster = citus_recovery.Cluster.from_config("cluster-config.json")
    cluster.prepare_archiving()
    backup = cluster.basebackup()
    point = cluster.create_restore_point("before-migration")
    print(cluster.plan_restore_start(backup.name, point.name))  # changes nothing
    cluster.restore_start(backup.name, point.name)  # every node paused at the point
    cluster.restore_finish()  # writable again (or restore_abort() to go back)

All behaviour lives in the Rust library; this package is a thin binding over it
(``citus_recovery._native``). See docs/python.md for the full guide.
"""

from citus_recovery._native import (
    AbortPlan,
    AbortReport,
    ArchivePlan,
    ArchiveReport,
    ArchivingInUseError,
    UntrustedFileError,
    RepositoryLockedError,
    RestoreInProgressError,
    IdentityError,
    NotAtTargetError,
    Backup,
    BasebackupPlan,
    CitusRecoveryError,
    Cluster,
    ClusterStatus,
    ConfigError,
    FinishPlan,
    FinishReport,
    InvalidArgumentError,
    NodeAbort,
    NodeBackup,
    NodeError,
    NodeInfo,
    VerifyError,
    VerifyReport,
    Check,
    CheckReport,
    ExpirePlan,
    NodeFinish,
    NodePaused,
    NodePlan,
    NodeRestore,
    NodeRestorePoint,
    NodeStatus,
    Phase,
    Plan,
    RestorePlan,
    RestorePoint,
    RestorePointPlan,
    RestoreReport,
    RestoreState,
    UnknownBackupError,
    UnknownRestorePointError,
    __version__,
)

__all__ = [
    "AbortPlan",
    "AbortReport",
    "ArchivePlan",
    "ArchiveReport",
    "ArchivingInUseError",
    "UntrustedFileError",
    "RepositoryLockedError",
    "RestoreInProgressError",
    "IdentityError",
    "NotAtTargetError",
    "Backup",
    "BasebackupPlan",
    "CitusRecoveryError",
    "Cluster",
    "CheckReport",
    "ExpirePlan",
    "ClusterStatus",
    "ConfigError",
    "FinishPlan",
    "FinishReport",
    "InvalidArgumentError",
    "NodeAbort",
    "NodeBackup",
    "NodeError",
    "NodeInfo",
    "VerifyError",
    "VerifyReport",
    "Check",
    "NodeFinish",
    "NodePaused",
    "NodePlan",
    "NodeRestore",
    "NodeRestorePoint",
    "NodeStatus",
    "Phase",
    "Plan",
    "RestorePlan",
    "RestorePoint",
    "RestorePointPlan",
    "RestoreReport",
    "RestoreState",
    "UnknownBackupError",
    "UnknownRestorePointError",
    "__version__",
]
