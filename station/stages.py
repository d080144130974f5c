"""The inspection cycle as two stages on their own threads, a bounded queue between them.

::

    job queue (cycle.queue_depth) ─▶ acquisition thread: acquire(job)
        ─▶ hand-over queue (cycle.pipeline_depth) ─▶ inference thread: infer(job, staged)
        ─▶ deliver(job, outcome)

Part N+1 is acquired (lights, cameras) while part N is inferred. The acquisition thread takes
the next job only when the hand-over queue has room for its part (at most ``depth`` acquired
parts wait, and none is acquired just to wait for room: a part's frames are as fresh as the
pipeline allows, and nothing is acquired behind a stuck inference). Each thread takes its jobs
in the order they were queued and passes them on in that order, so outcomes are delivered in
trigger order; a fault in either stage is that job's outcome (an ERROR the stage functions
make, or :attr:`Stages.crashed` for an exception that escaped them), never another job's.

The daemon's main thread owns the job objects' answers (:attr:`Job.outcome`, published in
trigger order); this module only runs the stages and says which jobs are in them
(:meth:`Stages.working`) and for how long (:meth:`Stages.elapsed`: the time in the stages,
not the wait between them, which is queueing like the job queue). A job the daemon has
already answered (``abandoned``: behind a stuck cycle, or at shutdown) is never acquired,
and not inferred if it was answered while it waited between the stages. ``None`` in the job
queue stops both threads once the jobs before it are through.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

import structlog

from drivers.cameras.pairing import FrameSet
from station.cycle import Outcome

log = structlog.get_logger(__name__)

Staged = TypeVar("Staged")


@dataclass(eq=False)
class Job:
    """One inspection from its acceptance to its verdict."""

    inspection_id: str
    part_id: str | None
    envelope: list[bytes] | None = None  # reply route, when the requester waits
    request_id: str | None = None
    started: float | None = None  # monotonic, when the acquisition stage took it
    abandoned: bool = False  # answered before its stages returned: their result is discarded
    counted: bool = False  # in Daemon._pending (accepted in this run) until its verdict
    line: FrameSet | None = None  # cycle.trigger hardware: the frames the line delivered
    timed_out: bool = False  # abandoned for taking longer than cycle.cycle_timeout_s
    outcome: Outcome | None = None  # the verdict, published when every earlier one is
    waited: float = 0.0  # seconds spent between the stages
    handed_at: float | None = None  # monotonic, while it waits between the stages


class Stages(Generic[Staged]):
    """The acquisition and inference threads (see the module docstring).

    ``acquire(job) -> staged`` and ``infer(job, staged) -> Outcome`` should never raise;
    ``crashed(job, reason) -> Outcome`` makes the ERROR outcome when one does.
    ``deliver(job, outcome)`` is called on the inference thread, in trigger order.
    """

    def __init__(
        self,
        jobs: queue.Queue[Job | None],
        acquire: Callable[[Job], Staged],
        infer: Callable[[Job, Staged], Outcome],
        deliver: Callable[[Job, Outcome], None],
        crashed: Callable[[Job, str], Outcome],
        depth: int = 1,
    ) -> None:
        if depth < 1:
            raise ValueError(f"depth (cycle.pipeline_depth) must be >= 1, got {depth}")
        self._jobs = jobs
        self._acquire = acquire
        self._infer = infer
        self._deliver = deliver
        self.crashed = crashed
        self.depth = depth
        self._room = threading.Semaphore(depth)  # free places in the hand-over queue
        self._handover: queue.Queue[tuple[Job, Staged | None, Outcome | None] | None] = (
            queue.Queue())
        self._lock = threading.Lock()
        self._working: list[Job] = []
        self._threads = [
            threading.Thread(target=self._acquisition, name="cycle-acquire", daemon=True),
            threading.Thread(target=self._inference, name="cycle-infer", daemon=True),
        ]

    # --- what the daemon asks -----------------------------------------------------------

    def start(self) -> None:
        """Start both threads."""
        for thread in self._threads:
            thread.start()

    def is_alive(self) -> bool:
        """Whether either thread still runs."""
        return any(t.is_alive() for t in self._threads)

    def join(self, timeout: float | None = None) -> None:
        """Wait for both threads (at most ``timeout`` in all)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def working(self) -> list[Job]:
        """The jobs in a stage (taken for acquisition, outcome not yet delivered), oldest
        first."""
        with self._lock:
            return list(self._working)

    def between(self) -> int:
        """Acquired parts waiting for the inference stage."""
        return self._handover.qsize()

    def elapsed(self, job: Job, now: float) -> float | None:
        """Seconds ``job`` has spent in the stages by ``now`` (monotonic), the wait between
        them not counted; None before acquisition took it."""
        with self._lock:
            if job.started is None:
                return None
            end = job.handed_at if job.handed_at is not None else now
            return max(0.0, end - job.started - job.waited)

    # --- the threads --------------------------------------------------------------------

    def _acquisition(self) -> None:
        while True:
            self._room.acquire()  # a place for this part between the stages
            job = self._jobs.get()
            if job is None:
                self._handover.put(None)
                return
            if job.abandoned:  # answered already (stuck, shutdown): never acquired
                self._room.release()
                continue
            with self._lock:
                job.started = time.monotonic()
                self._working.append(job)
            staged: Staged | None = None
            early: Outcome | None = None
            try:
                staged = self._acquire(job)
            except Exception as exc:  # acquire should not raise; if it does: this job's ERROR
                log.exception("acquisition crashed", inspection_id=job.inspection_id)
                early = self._crash(job, "acquisition", exc)
            with self._lock:
                job.handed_at = time.monotonic()
            self._handover.put((job, staged, early))

    def _inference(self) -> None:
        while True:
            item = self._handover.get()
            if item is None:
                return
            job, staged, outcome = item
            self._room.release()  # the next part may be acquired while this one is inferred
            with self._lock:
                if job.handed_at is not None:
                    job.waited += time.monotonic() - job.handed_at
                job.handed_at = None
            if outcome is None and job.abandoned:  # answered while it waited: skip the work
                outcome = self.crashed(job, "abandoned: answered before it was inferred")
            if outcome is None:
                try:
                    outcome = self._infer(job, cast(Staged, staged))
                except Exception as exc:  # infer should not raise; if it does: ERROR
                    log.exception("inference crashed", inspection_id=job.inspection_id)
                    outcome = self._crash(job, "inference", exc)
            with self._lock:
                self._working.remove(job)
            try:
                self._deliver(job, outcome)
            except Exception:  # the daemon's hand-over must not stop the stage
                log.exception("outcome not delivered", inspection_id=job.inspection_id)

    def _crash(self, job: Job, stage: str, exc: Exception) -> Outcome:
        try:
            return self.crashed(job, f"internal error in {stage}: {type(exc).__name__}: {exc}")
        except Exception:  # cannot make even the ERROR: the daemon's timeout will answer it
            log.exception("error outcome failed", inspection_id=job.inspection_id)
            raise
