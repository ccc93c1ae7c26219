"""The long calls of ``Cluster`` as ``asyncio`` coroutines, for harnesses that drive load while a
backup or a restore runs::

    from citus_recovery.aio import AsyncCluster

    cluster = AsyncCluster(citus_recovery.Cluster.from_config("cluster-config.json"))
    backup_task = asyncio.create_task(cluster.basebackup("b1"))
    await drive_load()            # the event loop runs on while the backup does
    backup = await backup_task

Each call runs on a worker thread (the blocking call releases the GIL). Cancelling the awaiting
task stops the call within a tenth of a second and raises ``asyncio.CancelledError``; like
Ctrl-C, what the call already did on the nodes stays done (an interrupted ``restore_start``
can be undone with ``restore_abort``). A ``progress=`` callback is called on the worker thread:
hand events to the loop with ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, TypeVar

from citus_recovery._native import (
    AbortReport,
    ArchiveReport,
    Backup,
    CancelToken,
    Cluster,
    FinishReport,
    RestorePoint,
    RestoreReport,
    VerifyReport,
)

__all__ = ["AsyncCluster"]

T = TypeVar("T")


async def _run(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Runs a blocking call on a worker thread; cancelling the awaiting task cancels the call."""
    token = CancelToken()

    def work() -> T:
        with token:
            return call(*args, **kwargs)

    future = asyncio.get_running_loop().run_in_executor(None, work)
    try:
        result: T = await asyncio.shield(future)
    except asyncio.CancelledError:
        token.cancel()
        # Wait until the call has stopped, so nothing runs on after the cancellation returns.
        try:
            await future
        except BaseException:
            pass
        raise
    return result


class AsyncCluster:
    """A ``Cluster`` whose long calls are awaitable and cancellable; same arguments."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        """The blocking ``Cluster`` underneath, for the quick calls (``nodes``, ``dsn``...)."""

    async def prepare_archiving(self, *args: Any, **kwargs: Any) -> ArchiveReport:
        """``Cluster.prepare_archiving``, awaitable."""
        return await _run(self.cluster.prepare_archiving, *args, **kwargs)

    async def basebackup(self, *args: Any, **kwargs: Any) -> Backup:
        """``Cluster.basebackup``, awaitable."""
        return await _run(self.cluster.basebackup, *args, **kwargs)

    async def create_restore_point(self, *args: Any, **kwargs: Any) -> RestorePoint:
        """``Cluster.create_restore_point``, awaitable."""
        return await _run(self.cluster.create_restore_point, *args, **kwargs)

    async def verify(self, *args: Any, **kwargs: Any) -> VerifyReport:
        """``Cluster.verify``, awaitable."""
        return await _run(self.cluster.verify, *args, **kwargs)

    async def restore_start(self, *args: Any, **kwargs: Any) -> RestoreReport:
        """``Cluster.restore_start``, awaitable."""
        return await _run(self.cluster.restore_start, *args, **kwargs)

    async def restore_finish(self, *args: Any, **kwargs: Any) -> FinishReport:
        """``Cluster.restore_finish``, awaitable."""
        return await _run(self.cluster.restore_finish, *args, **kwargs)

    async def restore_abort(self, *args: Any, **kwargs: Any) -> AbortReport:
        """``Cluster.restore_abort``, awaitable."""
        return await _run(self.cluster.restore_abort, *args, **kwargs)
