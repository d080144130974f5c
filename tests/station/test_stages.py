"""The two cycle stages on their threads: overlap, trigger order, faults, shutdown, timing
bookkeeping. Stage functions are plain functions that record what happens and wait on
events the tests set; nothing waits on a clock."""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from config import load_config
from station.cycle import Outcome, error_outcome
from station.stages import Job, Stages

CFG = load_config("default", [], env={})
INFO = {"model_id": "test", "trained": True}


def outcome(job: Job, verdict: str, reason: str = "") -> Outcome:
    """A verdict header for ``job`` (PASS from the stages, ERROR with ``reason``)."""
    out = error_outcome(CFG, job.inspection_id, job.part_id, reason or "ok", INFO, None)
    out.header.verdict = verdict  # type: ignore[assignment]
    return out


class Booth:
    """Stage functions that log every step and can be held on a gate per job and stage."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []
        self.delivered: list[tuple[str, str, list[str]]] = []
        self.gates: dict[tuple[str, str], threading.Event] = {}
        self.cond = threading.Condition()
        self.fail: dict[tuple[str, str], Exception] = {}
        self.delay: Callable[[str, str], float] = lambda stage, iid: 0.0

    def gate(self, stage: str, iid: str) -> threading.Event:
        """The gate ``stage`` waits on for job ``iid`` (closed until set)."""
        return self.gates.setdefault((stage, iid), threading.Event())

    def _step(self, stage: str, job: Job) -> None:
        with self.cond:
            self.log.append((f"{stage}:in", job.inspection_id))
            self.cond.notify_all()
        gate = self.gates.get((stage, job.inspection_id))
        if gate is not None:
            gate.wait()
        time.sleep(self.delay(stage, job.inspection_id))
        with self.cond:
            self.log.append((f"{stage}:out", job.inspection_id))
            self.cond.notify_all()
        exc = self.fail.get((stage, job.inspection_id))
        if exc is not None:
            raise exc

    def acquire(self, job: Job) -> str:
        self._step("acquire", job)
        return f"frames of {job.inspection_id}"

    def infer(self, job: Job, staged: str) -> Outcome:
        assert staged == f"frames of {job.inspection_id}"
        self._step("infer", job)
        return outcome(job, "PASS")

    def deliver(self, job: Job, out: Outcome) -> None:
        with self.cond:
            self.delivered.append((job.inspection_id, out.header.verdict, out.header.reasons))
            self.cond.notify_all()

    def wait_for(self, what: Callable[[], bool], timeout_s: float = 30.0) -> None:
        """Wait (on the condition, not a clock race) until ``what()`` holds."""
        with self.cond:
            assert self.cond.wait_for(what, timeout_s), f"not reached: {self.log}"

    def seen(self, step: str, iid: str) -> bool:
        return (step, iid) in self.log


@pytest.fixture
def booth() -> Iterator[tuple[Booth, queue.Queue[Job | None], Stages[str]]]:
    """Stages over a Booth, started; stopped (gates opened, sentinel) after the test."""
    b = Booth()
    jobs: queue.Queue[Job | None] = queue.Queue()
    stages: Stages[str] = Stages(
        jobs, b.acquire, b.infer, b.deliver,
        lambda job, reason: outcome(job, "ERROR", reason), depth=1)
    stages.start()
    yield b, jobs, stages
    for gate in b.gates.values():
        gate.set()
    jobs.put(None)
    stages.join(10)
    assert not stages.is_alive()


def put(jobs: queue.Queue[Job | None], *names: str) -> list[Job]:
    """Queue a job per name."""
    made = [Job(inspection_id=n, part_id=n) for n in names]
    for job in made:
        jobs.put(job)
    return made


def test_part_n_plus_1_is_acquired_while_part_n_is_inferred(booth: Any) -> None:
    """With part 1's inference held, part 2 is acquired and waits between the stages; part 3
    is not acquired while there is no room for it (depth 1); everything is delivered in
    order once inference goes on, part 3 acquired while part 2 is inferred."""
    b, jobs, stages = booth
    hold = b.gate("infer", "p1")
    hold_2 = b.gate("infer", "p2")
    put(jobs, "p1", "p2", "p3", "p4")
    b.wait_for(lambda: b.seen("infer:in", "p1") and b.seen("acquire:out", "p2"))
    assert not b.seen("infer:out", "p1")
    assert [j.inspection_id for j in stages.working()] == ["p1", "p2"]
    assert stages.between() == 1
    hold.set()
    b.wait_for(lambda: b.seen("infer:in", "p2") and b.seen("acquire:out", "p3"))
    assert not b.seen("infer:out", "p2")
    assert not b.seen("acquire:in", "p4")  # p3 waits; no room for p4 yet
    hold_2.set()
    b.wait_for(lambda: len(b.delivered) == 4)
    assert [d[0] for d in b.delivered] == ["p1", "p2", "p3", "p4"]
    assert stages.working() == []


def test_order_is_kept_whatever_the_stage_times(booth: Any) -> None:
    """Forty parts with stage times varying at random (0 to 4 ms each, fixed seed): the
    outcomes come out in trigger order, each exactly once."""
    b, jobs, _ = booth
    rng = random.Random(10)
    times = {(s, f"p{i:02d}"): rng.uniform(0, 0.004) for s in ("acquire", "infer")
             for i in range(40)}
    b.delay = lambda stage, iid: times[(stage, iid)]
    names = [f"p{i:02d}" for i in range(40)]
    put(jobs, *names)
    b.wait_for(lambda: len(b.delivered) == 40)
    assert [d[0] for d in b.delivered] == names


def test_a_fault_acquiring_part_n_plus_1_while_n_infers_is_that_part_only(booth: Any) -> None:
    """Part 2's acquisition raises while part 1 is held in inference: part 1 is PASS, part 2
    is an ERROR naming the fault, delivered after part 1 and never inferred; part 3 PASS."""
    b, jobs, _ = booth
    hold = b.gate("infer", "p1")
    b.fail[("acquire", "p2")] = RuntimeError("grab exploded")
    put(jobs, "p1", "p2", "p3")
    b.wait_for(lambda: b.seen("acquire:out", "p2") and b.seen("infer:in", "p1"))
    hold.set()
    b.wait_for(lambda: len(b.delivered) == 3)
    assert [(d[0], d[1]) for d in b.delivered] == [("p1", "PASS"), ("p2", "ERROR"),
                                                   ("p3", "PASS")]
    assert b.delivered[1][2] == ["internal error in acquisition: RuntimeError: grab exploded"]
    assert not b.seen("infer:in", "p2")


def test_a_fault_in_inference_is_that_part_only(booth: Any) -> None:
    """Inference raising for part 1 makes part 1 an ERROR; part 2 is inferred as usual."""
    b, jobs, _ = booth
    b.fail[("infer", "p1")] = ValueError("nan everywhere")
    put(jobs, "p1", "p2")
    b.wait_for(lambda: len(b.delivered) == 2)
    assert b.delivered[0][1:] == ("ERROR", ["internal error in inference: ValueError: "
                                            "nan everywhere"])
    assert b.delivered[1][1] == "PASS"


def test_answered_jobs_are_never_acquired_and_not_inferred(booth: Any) -> None:
    """A job the daemon answered (abandoned) is skipped: one waiting between the stages is
    not inferred (its outcome, still delivered in order, is the daemon's to discard), one
    still queued is never acquired nor delivered."""
    b, jobs, _ = booth
    hold = b.gate("infer", "p1")
    p1, p2, _, p4 = put(jobs, "p1", "p2", "p3", "p4")
    b.wait_for(lambda: b.seen("acquire:out", "p2") and b.seen("infer:in", "p1"))
    p2.abandoned = True  # waits between the stages
    p4.abandoned = True  # still queued: no room for it at depth 1
    hold.set()
    b.wait_for(lambda: len(b.delivered) == 3)
    assert [(d[0], d[1]) for d in b.delivered] == [("p1", "PASS"), ("p2", "ERROR"),
                                                   ("p3", "PASS")]
    assert b.delivered[1][2] == ["abandoned: answered before it was inferred"]
    assert not b.seen("infer:in", "p2")
    put(jobs, "p5")
    b.wait_for(lambda: len(b.delivered) == 4)
    assert b.delivered[3][0] == "p5" and not b.seen("acquire:in", "p4")
    assert p1.outcome is None  # the stages never touch the daemon's answer


def test_shutdown_sentinel_stops_both_threads_after_the_parts_before_it() -> None:
    """None in the job queue: every job before it is delivered, then both threads end."""
    b = Booth()
    jobs: queue.Queue[Job | None] = queue.Queue()
    stages: Stages[str] = Stages(jobs, b.acquire, b.infer, b.deliver,
                                 lambda job, reason: outcome(job, "ERROR", reason))
    stages.start()
    put(jobs, "p1", "p2")
    jobs.put(None)
    stages.join(10)
    assert not stages.is_alive()
    assert [d[0] for d in b.delivered] == ["p1", "p2"]


def test_elapsed_leaves_out_the_wait_between_the_stages() -> None:
    """elapsed() counts the time in the stages: frozen while a part waits between them."""
    stages: Stages[str] = Stages(queue.Queue(), lambda j: "", lambda j, s: outcome(j, "PASS"),
                                 lambda j, o: None, lambda j, r: outcome(j, "ERROR", r))
    job = Job(inspection_id="x", part_id=None)
    assert stages.elapsed(job, 100.0) is None
    job.started = 10.0
    assert stages.elapsed(job, 12.5) == 2.5
    job.handed_at = 11.0  # acquired after 1 s; waiting since
    assert stages.elapsed(job, 50.0) == 1.0
    job.handed_at, job.waited = None, 30.0  # taken by inference at 41 s
    assert stages.elapsed(job, 42.0) == 2.0
    with pytest.raises(ValueError, match="pipeline_depth"):
        Stages(queue.Queue(), lambda j: "", lambda j, s: outcome(j, "PASS"), lambda j, o: None,
               lambda j, r: outcome(j, "ERROR", r), depth=0)
