"""The scoring processes of one worker, reused across mini-batches.

``init()`` runs once per scoring process, not once per mini-batch: a worker keeps an idle
process per spec and lends it to the next mini-batch of the same job and deployment. On a
Dask worker each job has its own pool, owned by the job's worker plugin
(:mod:`flows.worker_state`), which closes it when the job ends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from blocks.errors import ErrorCategory
from scoring.capture import SinkFactory
from scoring.process import ScoringFailure, ScoringProcess
from scoring.spec import ScoringProcessSpec

#: failures after which a scoring process can serve the next mini-batch: run() raised or
#: returned something unusable; the script itself is fine (init() ran, nothing died)
_PROCESS_STAYS_HEALTHY = (ErrorCategory.USER_ERROR, ErrorCategory.BAD_RETURN)


class ScoringProcessPool:
    """Idle scoring processes keyed by spec; one borrower at a time per process.

    ``sinks`` keeps each process's output whole (see :class:`ScoringProcess`).
    """

    def __init__(self, sinks: SinkFactory | None = None) -> None:
        self.sinks = sinks
        self._idle: dict[str, list[ScoringProcess]] = {}
        self._lock = threading.Lock()
        self._closed = False

    @property
    def idle(self) -> int:
        """How many processes wait in the pool (idle or starting)."""
        with self._lock:
            return sum(len(processes) for processes in self._idle.values())

    @contextmanager
    def borrow(
        self, spec: ScoringProcessSpec, fork_server: str | None = None
    ) -> Iterator[ScoringProcess]:
        """Lend a ready process (starting one, and waiting for its ``init()``, if none is idle).

        A process is started from the job's ``fork_server`` when it has one.

        A process that failed in a way that may have left it broken (timeout, death) is
        not returned to the pool; the next borrower gets a fresh one.
        """
        process = self._take_idle(spec)
        if process is None:
            process = ScoringProcess(spec, fork_server, self.sinks)
            process.launch()
        process.wait_ready()
        healthy = False
        try:
            yield process
            healthy = True
        except ScoringFailure as failure:
            healthy = process.alive and failure.category in _PROCESS_STAYS_HEALTHY
            raise
        finally:
            kept = False
            if healthy and process.alive:
                with self._lock:
                    if not self._closed:
                        self._idle.setdefault(spec.key, []).append(process)
                        kept = True
            if not kept and healthy:  # lent before the pool closed: shut down as it would be
                process.stop()
            elif not kept:
                process.kill()

    def prepare(self, spec: ScoringProcessSpec, count: int, fork_server: str | None = None) -> int:
        """Launch processes so that ``count`` are idle or starting for ``spec``; no waiting.

        Called when a job reaches this worker, so that interpreter start, imports and
        ``init()`` overlap with the rest of the job's start instead of delaying its first
        mini-batch. Returns how many were launched.
        """
        with self._lock:
            if self._closed:
                return 0
            idle = self._idle.setdefault(spec.key, [])
            missing = max(count - sum(p.alive for p in idle), 0)
            launched = [ScoringProcess(spec, fork_server, self.sinks) for _ in range(missing)]
            for process in launched:
                process.launch()
            idle.extend(launched)
        return missing

    def _take_idle(self, spec: ScoringProcessSpec) -> ScoringProcess | None:
        with self._lock:
            idle = self._idle.get(spec.key, [])
            while idle:
                process = idle.pop()
                if process.alive or not process.ready:
                    # one started ahead that has ended: its init() failed (or it died), which
                    # wait_ready() reports instead of hiding it behind a fresh process
                    return process
                process.kill()  # ended while idle after a good init(): replaced
        return None

    def close_job(self, job: str) -> list[str]:
        """Shut down every idle process of ``job`` (calling ``shutdown()``); return errors."""
        with self._lock:
            keys = [key for key, procs in self._idle.items() if procs and procs[0].spec.job == job]
            processes = [proc for key in keys for proc in self._idle.pop(key)]
        return self._stop(processes, 30.0)

    def close(self, *, grace: float = 30.0) -> list[str]:
        """Shut down every idle process (calling ``shutdown()``); return the errors.

        Processes lent out when the pool closes are shut down when they come back.
        """
        with self._lock:
            self._closed = True
            processes = [proc for procs in self._idle.values() for proc in procs]
            self._idle.clear()
        return self._stop(processes, grace)

    @staticmethod
    def _stop(processes: list[ScoringProcess], grace: float) -> list[str]:
        errors = []
        for process in processes:
            failure = process.stop(grace=grace)
            if failure is not None:
                errors.append(f"shutdown() of {process.spec.deployment} failed: {failure.detail}")
        return errors

    def close_all(self) -> None:
        self.close(grace=5.0)
