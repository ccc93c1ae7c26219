"""Type stubs of the native module; ``citus_recovery`` re-exports everything here.

Every class is read-only: attributes are properties, and nothing can be constructed from Python
except ``Cluster``. Times are timezone-aware ``datetime`` objects in UTC, LSNs are strings as
PostgreSQL writes them (``"0/3000028"``), paths are ``pathlib.Path``.
"""

import os
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, List, Literal, Optional, Union, final, overload

from typing_extensions import disjoint_base

__version__: str

__all__ = [
    "__version__",
    "Cluster",
    "Backup",
    "NodeBackup",
    "RestorePoint",
    "NodeRestorePoint",
    "Plan",
    "ExpirePlan",
    "ImportPlan",
    "ImportReport",
    "CheckReport",
    "ForkPlan",
    "ForkReport",
    "DrillReport",
    "Phase",
    "NodePlan",
    "ArchivePlan",
    "BasebackupPlan",
    "RestorePointPlan",
    "RestorePlan",
    "FinishPlan",
    "AbortPlan",
    "ArchiveReport",
    "RestoreReport",
    "NodePaused",
    "FinishReport",
    "NodeFinish",
    "AbortReport",
    "NodeAbort",
    "ClusterStatus",
    "NodeStatus",
    "RestoreState",
    "NodeRestore",
    "CitusRecoveryError",
    "ConfigError",
    "InvalidArgumentError",
    "UnknownBackupError",
    "UnknownRestorePointError",
    "NodeError",
    "Check",
    "VerifyError",
    "VerifyReport",
    "ArchivingInUseError",
    "UntrustedFileError",
    "RepositoryLockedError",
    "NodeInfo",
    "RestoreInProgressError",
    "IdentityError",
    "NotAtTargetError",
    "ClusterStateError",
    "NodeNotRunningError",
    "NodeInRecoveryError",
    "ArchivingOffError",
    "NotPausedError",
    "NoRestoreUnderWayError",
    "DataDirExistsError",
    "DataDirMissingError",
    "OldDataDirGoneError",
    "PlanOutdatedError",
    "BackupTooNewError",
    "UnlistedCitusNodeError",
    "ServersUserError",
    "WalArchiveError",
    "LockedError",
    "RepositoryError",
    "CorruptError",
    "FileError",
    "RestorePointLockTimeoutError",
    "ProgressEvent",
    "CancelToken",
]

# ---------------------------------------------------------------------------------------------
# Errors: the message is always the core library's, naming the node or the field at fault.
# ---------------------------------------------------------------------------------------------

class CitusRecoveryError(Exception):
    """Base class of every error citus_recovery raises."""

    rollback: Optional[str]
    """``None``, except when a failed ``restore_start`` rolled the nodes back: how that went.
    The exception's class is then that of the failure."""

class ConfigError(CitusRecoveryError):
    """The cluster configuration is invalid; nothing was run."""

    field: str
    """The field at fault as written in the JSON (``workerNodes[1].port``), or ``(file)``."""
    problem: str
    fix: str
    path: Optional[Path]
    """The config file, when the config came from one."""

class InvalidArgumentError(CitusRecoveryError, ValueError):
    """An argument is invalid (a name too long, taken, or with a bad character); nothing was run."""

    what: str
    """What the argument is (``"restore point name"``, ``"backup name"``)."""
    value: str
    problem: str

class UnknownBackupError(CitusRecoveryError):
    """No complete backup of that name exists."""

    name: str
    """The backup asked for (empty when none was given and the config names none)."""
    folder: Path
    hint: str
    """What exists instead, and the fix."""

class UnknownRestorePointError(CitusRecoveryError):
    """No restore point of that name is recorded."""

    name: str
    hint: str

class VerifyError(CitusRecoveryError):
    """A check before restore-start failed, so nothing was changed."""

    backup: str
    restore_point: str
    failures: List[str]
    """Each failed check, naming the node, the file or segment, and what to do."""

class ArchivingInUseError(CitusRecoveryError):
    """WAL archiving on a node belongs to something else (another backup tool), so
    ``prepare_archiving`` changed nothing; ``replace_existing=True`` takes it over, which stops
    that tool's WAL stream."""

    node: str
    setting: str
    """``archive_command``, ``archive_library`` or ``basic_archive.archive_directory``."""
    current: str
    """Its value, with anything that looks like a password, key or token masked."""

class UntrustedFileError(CitusRecoveryError):
    """A file or folder of the library's own (catalog, restore state, lock) could have been
    changed by someone other than the user running the tool, so it was not trusted; nothing was
    changed."""

    path: str
    problem: str
    fix: str

class ClusterStateError(CitusRecoveryError):
    """The cluster is not in a state the command can work from (a restore under way or not, a
    node stopped or in recovery, a plan outdated); nothing was changed."""

class RestoreInProgressError(ClusterStateError):
    """A restore is under way (``restore_start`` began, nothing ended it) and the command must
    not run now; nothing was changed."""

    backup: str
    restore_point: str
    started: str
    """When ``restore_start`` began (RFC 3339)."""
    fix: str

class IdentityError(CitusRecoveryError):
    """A node's server is not the one its backup was taken of (``system_identifier``), or the
    backup was taken of other nodes than the config has; nothing was changed."""

    node: str
    problem: str
    fix: str

class NotAtTargetError(CitusRecoveryError):
    """Recovery paused before the restore point (for instance where the WAL raised a setting
    above the restored server's value); ``restore_start`` rolls the nodes back."""

    node: str
    restore_point: str
    replay_lsn: str
    target_lsn: str
    cause: str
    """The server log's lines that say why."""

class NodeNotRunningError(ClusterStateError):
    """A node's server must run for the command and does not; nothing was changed."""

    node: str
    state: str
    """``"stopped"`` or ``"no data directory"``."""
    fix: str

class NodeInRecoveryError(ClusterStateError):
    """A node is in recovery where the command needs a primary; nothing was changed."""

    node: str
    command: str
    """The command refused (``"basebackup"``, ``"restore-point"``)."""
    fix: str

class ArchivingOffError(ClusterStateError):
    """WAL archiving is not on for a node: run ``prepare_archiving()`` first; nothing was
    changed."""

    node: str
    why: str
    """Why the command needs archiving."""

class NotPausedError(ClusterStateError):
    """A node is in recovery but not paused at the restore point, so ``restore_finish`` cannot
    end recovery there; nothing was changed."""

    node: str
    pause_state: str
    """``pg_get_wal_replay_pause_state()`` as found."""

class NoRestoreUnderWayError(ClusterStateError):
    """``restore_finish`` or ``restore_abort`` found no restore under way; nothing was changed."""

    detail: str

class DataDirExistsError(ClusterStateError):
    """``create()`` found a node's data directory there already; nothing was changed."""

    node: str
    data_dir: Path

class DataDirMissingError(ClusterStateError):
    """A node has no data directory where the command needs one (``create()`` first)."""

    node: str
    data_dir: Path

class OldDataDirGoneError(ClusterStateError):
    """The data directory from before the restore under way exists neither in place nor where
    ``restore_start`` moved it; restore it by hand; nothing was changed."""

    node: str
    data_dir: Path
    moved_aside_to: Path

class PlanOutdatedError(ClusterStateError):
    """The plan given to ``Cluster.apply`` no longer fits the cluster (a node's state changed, a
    restore began or ended, the backup is gone); build it again; nothing was changed."""

    what: str
    """What changed since the plan was built."""

class BackupTooNewError(CitusRecoveryError):
    """The restore point lies before the end of the backup on a node: choose an older backup;
    nothing was changed."""

    backup: str
    restore_point: str
    made: str
    """When the restore point was made (RFC 3339)."""
    node: str

class UnlistedCitusNodeError(CitusRecoveryError):
    """Citus' ``pg_dist_node`` lists a node the config lacks: add it to ``workerNodes``;
    nothing was changed."""

    host: str
    port: int
    active: bool

class ServersUserError(CitusRecoveryError):
    """File work cannot be done as the servers' OS user (identity switch refused, a folder it
    cannot reach or write)."""

    user: str
    problem: str
    fix: str

class WalArchiveError(CitusRecoveryError):
    """A node's WAL archive could not be read; the message names the file."""

    node: str

class RestorePointLockTimeoutError(CitusRecoveryError):
    """citus_create_restore_point could not take its locks within restorePointLockTimeout in
    any attempt; nothing was written."""

    name: str
    node: str
    lock_timeout_ms: int
    attempts: int

class LockedError(CitusRecoveryError):
    """Another command that changes the cluster holds its lock; wait for it."""

    holder: str
    path: Path

class RepositoryLockedError(LockedError):
    """Another command holds the cluster's lock in the repository (maybe on another admin
    host); nothing was changed. ``stale`` says why the lock looks abandoned (then break it with
    ``citus-recovery unlock --force``), else None."""

    holder: str
    repository: str
    stale: Optional[str]

class RepositoryError(CitusRecoveryError):
    """The repository failed or refused a request; the message names the repository and the
    key, never a secret."""

    kind: str
    """``"not_found"``, ``"conflict"`` or ``"unavailable"``."""
    key: Optional[str]
    repository: Optional[str]
    """The repository, for ``"unavailable"``."""

class CorruptError(CitusRecoveryError):
    """An object in the repository is damaged (bad checksum, truncated)."""

    key: str
    problem: str

class FileError(CitusRecoveryError):
    """A file operation failed; the message has the operating system's error."""

    action: str
    path: Path

class NodeError(CitusRecoveryError):
    """Work on one or more nodes failed."""

    node: Optional[str]
    """The node, when one node failed (``None`` when several did)."""
    nodes: List[str]
    """Every node that failed."""
    action: Optional[str]
    """What was being done, when one node failed."""
    detail: Optional[str]
    """Why it failed (the server's message, the program's output), when one node failed."""
    errors: List[CitusRecoveryError]
    """When several nodes failed: each one's error."""

# ---------------------------------------------------------------------------------------------
# The catalog.
# ---------------------------------------------------------------------------------------------

@final
class NodeBackup:
    """One node's part of a base backup."""

    @property
    def backup(self) -> str: ...
    @property
    def node(self) -> str: ...
    @property
    def start_lsn(self) -> str: ...
    @property
    def end_lsn(self) -> str:
        """Recovery must replay at least this far to be consistent."""
    @property
    def timeline(self) -> int: ...
    @property
    def start_time(self) -> datetime: ...
    @property
    def end_time(self) -> datetime: ...
    @property
    def pg_version(self) -> str: ...
    @property
    def bytes(self) -> int: ...
    @property
    def wal_segment_size(self) -> Optional[int]:
        """The server's wal_segment_size in bytes; None for backups made before it was recorded."""

@final
class Backup:
    """A complete base backup of the whole cluster."""

    @property
    def name(self) -> str:
        """The backup's name (also its folder name)."""
    @property
    def cluster_name(self) -> str: ...
    @property
    def start_time(self) -> datetime: ...
    @property
    def end_time(self) -> datetime: ...
    @property
    def citus_version(self) -> Optional[str]:
        """The Citus version on the coordinator, ``None`` on plain PostgreSQL."""
    @property
    def nodes(self) -> List[NodeBackup]:
        """Every node's part, in config order."""
    @property
    def bytes(self) -> int:
        """Total bytes over all nodes."""
    def node(self, node: str) -> Optional[NodeBackup]:
        """The part of the backup for ``node``."""
    def to_json(self) -> str:
        """The backup's manifest as JSON."""

@final
class NodeRestorePoint:
    """Where one node's copy of a restore point lies."""

    @property
    def node(self) -> str: ...
    @property
    def lsn(self) -> Optional[str]:
        """The record's LSN where known (Citus reports only the coordinator's)."""
    @property
    def timeline(self) -> int: ...
    @property
    def segment(self) -> str:
        """The last WAL segment that had to be archived for the point to be usable."""

@final
class RestorePoint:
    """A named restore point, written on every node."""

    @property
    def name(self) -> str: ...
    @property
    def time(self) -> datetime: ...
    @property
    def citus(self) -> bool:
        """Made by ``citus_create_restore_point`` (consistent across nodes)."""
    @property
    def nodes(self) -> List[NodeRestorePoint]: ...
    def node(self, node: str) -> Optional[NodeRestorePoint]: ...
    def to_json(self) -> str: ...

# ---------------------------------------------------------------------------------------------
# Plans: str(plan) is the CLI's --dry-run text, to_json() its --dry-run --json output.
# ---------------------------------------------------------------------------------------------

@final
class NodePlan:
    """One node's steps within a phase."""

    @property
    def node(self) -> str: ...
    @property
    def steps(self) -> List[str]: ...

@final
class Phase:
    """Steps that run on several nodes at once."""

    @property
    def title(self) -> str: ...
    @property
    def nodes(self) -> List[NodePlan]: ...

@disjoint_base
class Plan:
    """What every plan offers. Building a plan changed nothing on any node."""

    @property
    def command(self) -> str:
        """The command the plan belongs to (``"restore-start"``)."""
    @property
    def steps(self) -> List[str]:
        """Every step as one line, ``"node: step"``."""
    @property
    def notes(self) -> List[str]:
        """Remarks to read before running it."""
    @property
    def phases(self) -> List[Phase]: ...
    def to_json(self) -> str:
        """The plan as pretty JSON."""

@final
class ArchivePlan(Plan):
    """The plan of ``prepare_archiving``."""

    @property
    def restart_pending(self) -> Dict[str, List[str]]:
        """Nodes that need a restart the plan does not do, with the settings."""

@final
class BasebackupPlan(Plan):
    """The plan of ``basebackup``."""

    @property
    def name(self) -> str: ...
    @property
    def citus_version(self) -> Optional[str]: ...

@final
class RestorePointPlan(Plan):
    """The plan of ``create_restore_point``."""

    @property
    def name(self) -> str: ...
    @property
    def citus(self) -> bool: ...

@final
class RestorePlan(Plan):
    """The plan of ``restore_start``."""

    @property
    def backup(self) -> str: ...
    @property
    def restore_point(self) -> str: ...
    @property
    def state(self) -> RestoreState:
        """The restore state written before any node is touched."""

@final
class FinishPlan(Plan):
    """The plan of ``restore_finish``."""

@final
class AbortPlan(Plan):
    """The plan of ``restore_abort``."""

    @property
    def backup(self) -> str: ...
    @property
    def restore_point(self) -> str: ...
    @property
    def state(self) -> RestoreState:
        """The restore being undone."""

# ---------------------------------------------------------------------------------------------
# Reports: str(report) is the CLI's text, to_json() its --json output.
# ---------------------------------------------------------------------------------------------

@final
class ArchiveReport:
    """What ``prepare_archiving`` did."""

    @property
    def restarted(self) -> List[str]: ...
    @property
    def restart_pending(self) -> Dict[str, List[str]]: ...
    def to_json(self) -> str: ...

@final
class NodePaused:
    """One node after ``restore_start``."""

    @property
    def node(self) -> str: ...
    @property
    def replay_lsn(self) -> str: ...
    @property
    def moved_aside_to(self) -> Optional[Path]:
        """Where the old data directory was kept."""

@final
class RestoreReport:
    """What ``restore_start`` did: every node paused at the restore point."""

    @property
    def backup(self) -> str: ...
    @property
    def restore_point(self) -> str: ...
    @property
    def nodes(self) -> List[NodePaused]: ...
    @property
    def before_note(self) -> Optional[str]: ...
    def to_json(self) -> str: ...

@final
class NodeFinish:
    """One node after ``restore_finish``."""

    @property
    def node(self) -> str: ...
    @property
    def timeline(self) -> Optional[int]:
        """The new timeline when this call promoted the node."""

@final
class FinishReport:
    """What ``restore_finish`` did."""

    @property
    def nodes(self) -> List[NodeFinish]: ...
    def to_json(self) -> str: ...

@final
class NodeAbort:
    """One node after ``restore_abort``."""

    @property
    def node(self) -> str: ...
    @property
    def restored_old_data_dir(self) -> bool:
        """Whether its old data directory was put back."""
    @property
    def failed_restore_kept_at(self) -> Optional[Path]:
        """Where the data directory ``restore_start`` had made was moved (kept)."""

@final
class AbortReport:
    """What ``restore_abort`` did: the data directories from before ``restore_start`` are back."""

    @property
    def nodes(self) -> List[NodeAbort]: ...
    def to_json(self) -> str: ...

@final
class NodeRestore:
    """What ``restore_start`` changes on one node."""

    @property
    def node(self) -> str: ...
    @property
    def data_dir(self) -> Path: ...
    @property
    def moved_aside_to(self) -> Optional[Path]: ...

@final
class RestoreState:
    """A restore under way: begun by ``restore_start``, not yet ended by ``restore_finish``."""

    @property
    def backup(self) -> str: ...
    @property
    def restore_point(self) -> str: ...
    @property
    def started(self) -> datetime: ...
    @property
    def nodes(self) -> List[NodeRestore]: ...
    def to_json(self) -> str: ...

@final
class NodeStatus:
    """One node, as observed (nothing was changed to find this out)."""

    @property
    def node(self) -> str: ...
    @property
    def server(self) -> str:
        """``"running"``, ``"stopped"`` or ``"missing"`` (no data directory)."""
    @property
    def in_recovery(self) -> Optional[bool]: ...
    @property
    def pause_state(self) -> Optional[str]: ...
    @property
    def lsn(self) -> Optional[str]: ...
    @property
    def timeline(self) -> Optional[int]: ...
    @property
    def settings(self) -> Dict[str, str]: ...
    @property
    def citus_version(self) -> Optional[str]:
        """The Citus extension's version, ``None`` where it is not created."""
    @property
    def server_version(self) -> Optional[str]: ...
    @property
    def server_zstd(self) -> Optional[bool]:
        """Whether the server was built with zstd (it then compresses repository backups)."""
    @property
    def error(self) -> Optional[str]: ...
    @property
    def archiving(self) -> bool: ...

@final
class ClusterStatus:
    """Every node's state."""

    @property
    def cluster_name(self) -> str: ...
    @property
    def nodes(self) -> List[NodeStatus]: ...
    @property
    def restore(self) -> Optional[RestoreState]: ...
    def to_json(self) -> str: ...

# ---------------------------------------------------------------------------------------------
# The cluster.
# ---------------------------------------------------------------------------------------------

@final
class NodeInfo:
    """One node as a client or a test harness needs it."""

    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str:
        """``"coordinator"`` or ``"worker"``."""
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def user(self) -> str: ...
    @property
    def dbname(self) -> str: ...
    @property
    def data_dir(self) -> str:
        """The data directory's path (a string, as generated from the core type)."""
    @property
    def dsn(self) -> str:
        """A libpq connection string: ``host=... port=... user=... dbname=...``."""

@final
class ProgressEvent:
    """One report of a node's step, given to a ``progress=`` callback.

    Every step of every node reports ``state`` ``"start"``, then ``"progress"`` while it works
    (at most four a second), then ``"done"`` at 100% when it succeeded. ``done <= total``."""

    @property
    def node(self) -> str: ...
    @property
    def phase(self) -> str:
        """The step as plans name it: ``base_backup``, ``extract``, ``wait_paused``, ..."""
    @property
    def state(self) -> str:
        """``"start"``, ``"progress"`` or ``"done"``."""
    @property
    def done(self) -> int: ...
    @property
    def total(self) -> Optional[int]:
        """``None`` while unknown; never below ``done``."""
    @property
    def unit(self) -> str:
        """``"steps"`` (0 or 1 of 1), ``"bytes"`` or ``"wal_bytes"`` (WAL replayed towards the
        restore point)."""
    @property
    def rate(self) -> Optional[float]:
        """Units per second since the step started, once measurable."""
    @property
    def eta_secs(self) -> Optional[float]: ...
    @property
    def elapsed_secs(self) -> float: ...
    @property
    def message(self) -> str:
        """What the step does or waits for, in words."""

_ProgressCallback = Callable[[ProgressEvent], Any]

@final
class CancelToken:
    """Stops a long call from another thread (what ``citus_recovery.aio`` uses): enter it with
    ``with`` on the thread making the call; ``cancel()`` makes the call raise
    ``asyncio.CancelledError`` within a tenth of a second."""

    def __new__(cls) -> CancelToken: ...
    def cancel(self) -> None: ...
    @property
    def cancelled(self) -> bool: ...
    def __enter__(self) -> CancelToken: ...
    def __exit__(self, kind: Any, value: Any, traceback: Any) -> Literal[False]: ...

@final
class Cluster:
    """A Citus (or plain PostgreSQL) cluster of nodes on this host.

    Long calls release the GIL and can be interrupted with Ctrl-C (``KeyboardInterrupt``).
    Their ``progress=`` callback is called with every ``ProgressEvent``, on the thread doing the
    work, with the GIL taken; an exception it raises is reported (``sys.unraisablehook``) and
    does not stop the work. The library's log lines go to the ``logging`` logger
    ``citus_recovery`` (the node in each record's ``node`` attribute).
    """

    def __new__(
        cls,
        config: Dict[str, Any],
        *,
        config_file: Optional[Union[str, os.PathLike[str]]] = None,
        wait_timeout: Optional[float] = None,
        poll_interval: Optional[float] = None,
        concurrency: Optional[int] = None,
    ) -> Cluster:
        """A cluster from a config dict in the ``cluster-config.json`` format (camelCase keys,
        ``repository``, ``compression`` and ``binary`` included).

        With ``config_file`` (an absolute path) the config is also written there, whole (mode
        0644, links not followed), and read back: a config with a ``repository`` needs it, as
        PostgreSQL's ``archive_command``/``restore_command`` run ``binary --config
        <config_file>``; without it ``prepare_archiving`` raises ``ConfigError``.

        The keywords set the run options: how long to wait for archiving, a pause or a
        promotion (seconds, default 3600), how often to look (seconds, default 0.1), how many
        nodes are worked on at once (0, the default: all)."""
    @staticmethod
    def from_config(
        path: Union[str, os.PathLike[str]],
        *,
        wait_timeout: Optional[float] = None,
        poll_interval: Optional[float] = None,
        concurrency: Optional[int] = None,
    ) -> Cluster:
        """A cluster from a ``cluster-config.json`` file; the keywords as for the constructor."""
    @property
    def cluster_name(self) -> str: ...
    @property
    def node_names(self) -> List[str]:
        """The coordinator first, then the workers in config order."""
    @property
    def nodes(self) -> List[NodeInfo]:
        """Every node's name, role, address, data directory and connection string."""
    def dsn(self, node: str) -> str:
        """The node's libpq connection string (for psql or psycopg); no password in it.
        An unknown node raises ``InvalidArgumentError``."""
    def create(self, plain: bool = False, secure: bool = False) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def status(self) -> ClusterStatus: ...
    def plan_prepare_archiving(
        self, restart: bool = True, replace_existing: bool = False
    ) -> ArchivePlan: ...
    def prepare_archiving(
        self,
        restart: bool = True,
        replace_existing: bool = False,
        *,
        progress: Optional[_ProgressCallback] = None,
    ) -> ArchiveReport:
        """Turns on WAL archiving on every node. Archiving another tool set up raises
        ``ArchivingInUseError`` unless ``replace_existing``."""
    def plan_basebackup(self, name: Optional[str] = None) -> BasebackupPlan: ...
    def basebackup(
        self, name: Optional[str] = None, *, progress: Optional[_ProgressCallback] = None
    ) -> Backup: ...
    def plan_restore_point(self, name: Optional[str] = None) -> RestorePointPlan: ...
    def create_restore_point(
        self, name: Optional[str] = None, *, progress: Optional[_ProgressCallback] = None
    ) -> RestorePoint: ...
    def plan_restore_start(
        self,
        backup: Optional[str] = None,
        restore_point: Optional[str] = None,
        *,
        before: Optional[datetime] = None,
    ) -> RestorePlan:
        """``before`` (an aware datetime), instead of ``restore_point``: the newest restore point
        on every node created before it; a note of the plan says which and how far before."""
    def restore_start(
        self,
        backup: Optional[str] = None,
        restore_point: Optional[str] = None,
        *,
        before: Optional[datetime] = None,
        progress: Optional[_ProgressCallback] = None,
    ) -> RestoreReport: ...
    def plan_restore_finish(self) -> FinishPlan: ...
    def restore_finish(self, *, progress: Optional[_ProgressCallback] = None) -> FinishReport: ...
    def verify(
        self,
        backup: Optional[str] = None,
        restore_point: Optional[str] = None,
        *,
        before: Optional[datetime] = None,
    ) -> VerifyReport:
        """Runs every pre-flight check of a restore; changes nothing."""
    def plan_restore_abort(self) -> AbortPlan: ...
    def restore_abort(self, *, progress: Optional[_ProgressCallback] = None) -> AbortReport:
        """Undoes ``restore_start``: the old data directories are put back."""
    @overload
    def apply(self, plan: ArchivePlan) -> ArchiveReport:
        """Runs a plan from a ``plan_*`` method exactly as printed, after checking under the
        cluster's lock that the cluster has not changed since it was built; else
        ``PlanOutdatedError`` and nothing is changed. Returns what the plain command returns."""
    @overload
    def apply(self, plan: BasebackupPlan) -> Backup: ...
    @overload
    def apply(self, plan: RestorePointPlan) -> RestorePoint: ...
    @overload
    def apply(self, plan: RestorePlan) -> RestoreReport: ...
    @overload
    def apply(self, plan: FinishPlan) -> FinishReport: ...
    @overload
    def apply(self, plan: AbortPlan) -> AbortReport: ...
    def list_backups(self) -> List[Backup]: ...
    def list_restore_points(self) -> List[RestorePoint]: ...
    def delete_restore_point(self, name: str) -> RestorePoint:
        """Removes the restore point from the catalog (under the cluster lock) and returns it.
        The WAL record itself stays in every node's WAL: recovery can still stop at it by name.
        An unknown name raises ``UnknownRestorePointError`` naming those that exist."""
    def restore_state(self) -> Optional[RestoreState]: ...
    def plan_import_folders(self) -> ImportPlan:
        """The WAL files, backups and restore points of ``backupBaseFolder`` and
        ``archiveBaseFolder`` that the repository lacks; changes nothing."""
    def import_folders(self) -> ImportReport:
        """Copies them into the repository (under the cluster lock; every backup file checked
        against its manifest; the folders unchanged; run again after a failure to carry on)."""
    def plan_expire(
        self,
        retain_full: Optional[int] = None,
        retain_days: Optional[int] = None,
        restore_points: bool = False,
    ) -> ExpirePlan:
        """What ``expire`` would remove and the bytes freed; changes nothing."""
    def expire(
        self,
        retain_full: Optional[int] = None,
        retain_days: Optional[int] = None,
        restore_points: bool = False,
    ) -> ExpirePlan:
        """Removes old backups and the WAL no kept backup needs (under the cluster lock; safe
        to interrupt, run again to finish); returns the plan it carried out."""
    def check(self, round_trip: bool = False) -> CheckReport:
        """Archiving, backup and restore point health; ``exit_code`` 0 OK, 1 warning, 2
        critical."""
    def plan_fork(
        self,
        target: Cluster,
        *,
        restore_point: Optional[str] = None,
        backup: Optional[str] = None,
        promote: bool = False,
        archive: bool = False,
    ) -> ForkPlan:
        """This cluster restored into ``target`` (its own folders and ports); changes nothing."""
    def fork(
        self,
        target: Cluster,
        *,
        restore_point: Optional[str] = None,
        backup: Optional[str] = None,
        promote: bool = False,
        archive: bool = False,
    ) -> ForkReport:
        """Restores this cluster into ``target``, paused or (``promote``) writable with
        ``pg_dist_node`` pointing at the fork's nodes; never writes this cluster."""
    def drill(self) -> DrillReport:
        """Forks the newest restore point onto free ports, runs ``drill.checks``, tears the
        fork down; ``exit_code`` 0 passed, 2 failed."""

@final
class ForkPlan(Plan):
    """The plan of ``fork``."""

    @property
    def backup(self) -> str: ...
    @property
    def restore_point(self) -> str: ...
    @property
    def promote(self) -> bool: ...
    @property
    def moves(self) -> List[Dict[str, Any]]: ...

@final
class ForkReport:
    """What ``fork`` did."""

    @property
    def promoted(self) -> bool: ...
    @property
    def seconds(self) -> float: ...
    def to_dict(self) -> Dict[str, Any]: ...
    def to_json(self) -> str: ...

@final
class DrillReport:
    """What ``drill`` found."""

    @property
    def status(self) -> str: ...
    @property
    def exit_code(self) -> int: ...
    @property
    def seconds_to_recover(self) -> Optional[float]: ...
    @property
    def checks(self) -> List[Dict[str, Any]]: ...
    def to_dict(self) -> Dict[str, Any]: ...
    def to_json(self) -> str: ...

@final
class ExpirePlan(Plan):
    """The plan of ``expire`` (also what ``expire`` returns)."""

    @property
    def kept(self) -> List[str]: ...
    @property
    def backups(self) -> List[Dict[str, Any]]: ...
    @property
    def incomplete(self) -> List[Dict[str, Any]]: ...
    @property
    def wal(self) -> List[Dict[str, Any]]: ...
    @property
    def unreachable_restore_points(self) -> List[str]: ...
    @property
    def bytes_freed(self) -> int: ...

@final
class ImportPlan(Plan):
    """The plan of ``import_folders``: what is copied, in the order it is copied."""

    @property
    def repository(self) -> str: ...
    @property
    def wal(self) -> List[Dict[str, Any]]: ...
    @property
    def backups(self) -> List[Dict[str, Any]]: ...
    @property
    def restore_points(self) -> List[str]: ...
    @property
    def is_empty(self) -> bool: ...

@final
class ImportReport:
    """What ``import_folders`` copied."""

    @property
    def repository(self) -> str: ...
    @property
    def wal_files(self) -> int: ...
    @property
    def wal_already_there(self) -> int: ...
    @property
    def backups(self) -> List[str]: ...
    @property
    def restore_points(self) -> List[str]: ...
    @property
    def backup_bytes_stored(self) -> int: ...

@final
class CheckReport:
    """What ``check`` reports."""

    @property
    def status(self) -> str:
        """``"ok"``, ``"warning"`` or ``"critical"``."""
    @property
    def exit_code(self) -> int: ...
    @property
    def nodes(self) -> List[Dict[str, Any]]: ...
    @property
    def findings(self) -> List[Dict[str, Any]]: ...
    def to_dict(self) -> Dict[str, Any]: ...
    def to_json(self) -> str: ...
    def to_prometheus(self) -> str: ...

@final
class Check:
    """The outcome of one pre-flight check."""

    @property
    def node(self) -> Optional[str]: ...
    @property
    def check(self) -> str: ...
    @property
    def ok(self) -> bool: ...
    @property
    def detail(self) -> str: ...

@final
class VerifyReport:
    """Every pre-flight check for one backup and restore point."""

    @property
    def backup(self) -> str: ...
    @property
    def chosen_because(self) -> Optional[str]: ...
    @property
    def restore_point(self) -> str: ...
    @property
    def before_note(self) -> Optional[str]: ...
    @property
    def ok(self) -> bool: ...
    @property
    def checks(self) -> List[Check]: ...
    def failures(self) -> List[str]: ...
    def to_json(self) -> str: ...
