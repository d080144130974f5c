"""Frames of line-triggered cameras made into parts: one set per trigger, by arrival and id.

With ``cycle.trigger: hardware`` the PLC pulses a line wired to every camera; each camera
sends its frame when it is ready, and nobody tells the station which frames belong together.
:class:`FramePairer` decides, from each frame's arrival stamp (its host timestamp: the arrival,
for a line-triggered camera) and frame id, on the frames it is offered in arrival order per
camera:

* The oldest waiting frame opens a part. Every other camera's oldest waiting frame joins it
  when it arrived within ``window_ns`` of it. One set per trigger, always: every frame ends
  up in exactly one set, and a set missing a camera's frame is still one set (one ERROR
  verdict), never two.
* A camera's next frame that arrived later than the window belongs to this part only when
  it did not arrive with the opening camera's *next* frame (then it is the next part's: this
  camera missed the trigger) and its frame id says so (below); then the part is an ERROR
  naming the skew. Otherwise the part is missing that camera's frame.
* A camera with no frame at all: the part waits until ``timeout_ns`` after its first frame,
  then it is missing that camera's frame (a missed trigger, a lost frame, a camera down).
* Frame ids: cameras count their frames from different starts, so the ids of the last good
  set are the reference; in the next set, every camera's id must have moved on by the same
  amount. A set within the window whose ids disagree is an ERROR (a camera missed or doubled
  a trigger) and becomes the new reference. After a set with a missing frame, or
  :meth:`FramePairer.resync` (a camera reopened: its counter restarted), there is no
  reference until the next complete set.

It is a plain object without threads or clocks: the caller offers frames and asks, with the
time now, which sets are decided (:meth:`FramePairer.ready`); tests drive it with made-up
times. Sets come out in the order their first frames arrived.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from drivers.frame import Frame

#: The most a frame may take from its arrival stamp to :meth:`FramePairer.offer` (the
#: hand-over from a camera's listener thread; a GenICam frame's copy out of shared memory)
#: [ns]. A decision that depends on whether a frame arrived beside another waits this long
#: beyond the window.
HANDOVER_NS = 50_000_000


@dataclass(frozen=True)
class FrameSet:
    """One trigger's frames: a part when ``reason`` is None, else an ERROR with the reason.

    ``frames`` in camera order (only those that arrived); ``skew_ns`` the spread of their
    arrival stamps when every camera delivered (else None); ``device_skew_ns`` the spread of
    their device clocks when every frame has one (meaningful for PTP-synchronised cameras).
    """

    frames: list[Frame]
    first_arrival_ns: int
    skew_ns: int | None
    device_skew_ns: int | None = None
    reason: str | None = None


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.1f} ms"


class FramePairer:
    """Makes :class:`FrameSet` s of frames offered by several cameras (see module docstring)."""

    def __init__(self, cameras: Sequence[str], window_ns: int, timeout_ns: int,
                 max_waiting: int = 64, handover_ns: int = HANDOVER_NS) -> None:
        """``cameras`` by name, in the order sets list them; ``window_ns`` the widest arrival
        spread of one part, ``timeout_ns`` (>= window) how long a part waits for missing
        frames; at most ``max_waiting`` frames wait per camera (older ones are decided
        first, as if their time were up)."""
        if not cameras or len(set(cameras)) != len(cameras):
            raise ValueError(f"cameras must be distinct names, got {list(cameras)}")
        if window_ns <= 0 or timeout_ns < window_ns:
            raise ValueError(
                f"need 0 < window_ns <= timeout_ns, got window_ns={window_ns}, "
                f"timeout_ns={timeout_ns}")
        self.cameras = list(cameras)
        self.window_ns = int(window_ns)
        self.timeout_ns = int(timeout_ns)
        self.max_waiting = max(2, max_waiting)
        self.handover_ns = max(0, int(handover_ns))
        self._waiting: dict[str, deque[Frame]] = {c: deque() for c in self.cameras}
        self._reference: dict[str, int] | None = None

    def offer(self, frame: Frame) -> None:
        """A frame as it arrived (per camera in arrival order); ``ValueError`` for a camera
        the pairer does not know."""
        if frame.camera not in self._waiting:
            raise ValueError(
                f"frame from camera {frame.camera!r}, which is not one of "
                f"{', '.join(self.cameras)}")
        self._waiting[frame.camera].append(frame)

    def waiting(self) -> int:
        """Frames offered and not yet in a set."""
        return sum(len(q) for q in self._waiting.values())

    def resync(self) -> None:
        """Forget the frame-id reference (a camera's counter restarted)."""
        self._reference = None

    def ready(self, now_ns: int) -> list[FrameSet]:
        """The sets decided by ``now_ns`` (host clock, as the arrival stamps), oldest first."""
        out: list[FrameSet] = []
        while True:
            decided = self._next(now_ns)
            if decided is None:
                return out
            out.append(decided)

    def flush(self) -> list[FrameSet]:
        """Every waiting frame decided now, as if every timeout had passed (at shutdown)."""
        out: list[FrameSet] = []
        while self.waiting():
            decided = self._next(None)
            assert decided is not None
            out.append(decided)
        return out

    # -- the decision ---------------------------------------------------------------------

    def _next(self, now_ns: int | None) -> FrameSet | None:
        heads = {c: q[0] for c, q in self._waiting.items() if q}
        if not heads:
            return None
        c0 = min(heads, key=lambda c: (heads[c].host_timestamp_ns, self.cameras.index(c)))
        f0 = heads[c0]
        a0 = f0.host_timestamp_ns
        overflow = any(len(q) >= self.max_waiting for q in self._waiting.values())
        # With no clock (flush) or too many waiting, every wait is over.
        expired = now_ns is None or overflow or now_ns - a0 >= self.timeout_ns
        q0 = self._waiting[c0]
        after = q0[1] if len(q0) > 1 else None  # the opening camera's next frame
        members: dict[str, Frame] = {c0: f0}
        late: dict[str, Frame] = {}
        missing: dict[str, str] = {}
        for cam in self.cameras:
            if cam == c0:
                continue
            f = heads.get(cam)
            if f is None:
                if not expired:
                    return None  # it may still come
                missing[cam] = (
                    f"no frame from {cam} within cycle.pair_timeout_ms = "
                    f"{_ms(self.timeout_ns)} of {c0}'s frame {f0.frame_id} (a missed trigger, "
                    "a lost frame or a camera down)")
                continue
            gap = f.host_timestamp_ns - a0
            if gap <= self.window_ns:
                members[cam] = f
                continue
            if after is not None and abs(f.host_timestamp_ns - after.host_timestamp_ns) \
                    <= self.window_ns:
                missing[cam] = (
                    f"no frame from {cam} for {c0}'s frame {f0.frame_id}: {cam}'s next "
                    f"frame ({f.frame_id}) arrived {_ms(gap)} later, with {c0}'s next frame "
                    f"({after.frame_id}), so {cam} missed this trigger")
                continue
            if after is None and not expired and (
                    now_ns is not None
                    and now_ns - f.host_timestamp_ns < self.window_ns + self.handover_ns):
                return None  # the opening camera's next frame may yet arrive beside it
            same = self._same_trigger(c0, f0, cam, f)
            if same is False or (same is None and after is not None and
                                 after.host_timestamp_ns - f.host_timestamp_ns < gap):
                missing[cam] = (
                    f"no frame from {cam} for {c0}'s frame {f0.frame_id}: {cam}'s next "
                    f"frame ({f.frame_id}) arrived {_ms(gap)} later, beyond "
                    f"cycle.pair_window_ms = {_ms(self.window_ns)}, and "
                    + ("its id belongs to another trigger" if same is False
                       else f"nearer to {c0}'s next frame"))
                continue
            late[cam] = f
        for cam in (*members, *late):
            self._waiting[cam].popleft()
        frames = [fr for cam in self.cameras
                  for fr in ((members | late).get(cam),) if fr is not None]
        complete = not missing
        stamps = [fr.host_timestamp_ns for fr in frames]
        skew = max(stamps) - min(stamps) if complete else None
        devices = [fr.device_timestamp_ns for fr in frames]
        device_skew = (max(d for d in devices if d is not None)
                       - min(d for d in devices if d is not None)
                       if complete and len(frames) > 1 and all(d is not None for d in devices)
                       else None)
        reason: str | None = None
        if missing:
            reason = "missing partner: " + "; ".join(missing.values())
            self._reference = None
        elif late:
            names = ", ".join(f"{cam}'s frame {f.frame_id} {_ms(f.host_timestamp_ns - a0)}"
                              for cam, f in late.items())
            reason = (f"frames of one trigger arrived {_ms(skew or 0)} apart, beyond "
                      f"cycle.pair_window_ms = {_ms(self.window_ns)}: {names} after {c0}'s "
                      f"frame {f0.frame_id} (a slow transfer or a camera delay)")
            self._reference = {fr.camera: fr.frame_id for fr in frames}
        else:
            ids = {fr.camera: fr.frame_id for fr in frames}
            if self._reference is not None and not self._ids_agree(ids):
                was = ", ".join(f"{c} {i}" for c, i in self._reference.items())
                now = ", ".join(f"{c} {i}" for c, i in ids.items())
                reason = (f"frame ids disagree: {now} arrived within {_ms(skew or 0)}, but "
                          f"after the last good set ({was}) every camera's id should have "
                          "moved on by the same amount (a camera missed or doubled a "
                          "trigger); these ids are the new reference")
            self._reference = ids
        return FrameSet(frames=frames, first_arrival_ns=a0, skew_ns=skew,
                        device_skew_ns=device_skew, reason=reason)

    def _ids_agree(self, ids: dict[str, int]) -> bool:
        ref = self._reference
        assert ref is not None
        steps = {ids[c] - ref[c] for c in ids if c in ref}
        return len(steps) <= 1

    def _same_trigger(self, c0: str, f0: Frame, cam: str, f: Frame) -> bool | None:
        """Whether the ids say ``f`` is of ``f0``'s trigger; None without a reference."""
        ref = self._reference
        if ref is None or c0 not in ref or cam not in ref:
            return None
        return f.frame_id - ref[cam] == f0.frame_id - ref[c0]
