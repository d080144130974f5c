"""Test doubles shipped with the station: synthetic booth scenes of known truth, and fakes.

Scenes are plain functions ``fn(frame_index, features) -> ndarray`` that
``drivers.cameras`` ``ReplayCamera.from_function`` serves as frames. They return the scene
*at the replay camera's reference exposure* (10000 µs, 0 dB) as float32 in [0, 1] of full
scale; the camera applies ``ExposureTime`` and ``Gain`` linearly and saturates, so the
truth of every scene can be written down:

- :func:`exposure_scene`: the brightest pixel reaches full scale at exactly
  ``saturate_above_us``; the mean grey at exposure ``t`` is ``mean_ratio * t / saturate_above_us``.
- :func:`focus_scene` / :func:`focus_sweep`: a fixed random texture blurred by a known sigma
  (the sweep is sharpest at a known frame: turning the lens through focus).
- :func:`vignette_scene`: a uniform target under cos⁴-free, quadratic falloff
  ``1 - falloff * (r / r_corner)²`` plus a dark offset; lights off shows the dark offset only.
- :func:`chessboard_scene`: a rendered chessboard with a known square size in pixels.

Lighting: a scene takes ``light``, a function returning ``{channel: output 0..1}`` of the
channels lit now; :class:`FakeLights` (a ``Luminaires`` in memory) and
:func:`simulator_light` (reads ``drivers.lights.simulator.LightSimulator``) provide one.
:class:`HiddenFeatures` wraps a camera and hides features (a camera without ``Gain``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from config.errors import CameraFeatureError, LightRefused
from drivers.cameras.base import Camera, CameraHealth
from drivers.frame import Frame
from drivers.lights.base import LightsHealth

FeatureValue = bool | int | float | str
Image = npt.NDArray[np.float32]
SceneFn = Callable[[int, Mapping[str, FeatureValue]], Image]
#: ``{channel: output in 0..1}`` of the channels lit now.
LightFn = Callable[[], Mapping[int, float]]
#: The replay camera's reference exposure [µs] (pixel values of a scene are at this exposure).
REFERENCE_EXPOSURE_US = 10_000.0


def _f32(array: object) -> Image:
    """``array`` as a float32 ndarray (typed)."""
    return np.asarray(array, dtype=np.float32)


def always_lit() -> Mapping[int, float]:
    """A light source that is always fully on (one channel, output 1.0)."""
    return {1: 1.0}


class FakeLights:
    """A ``Luminaires`` in memory: channel states you can read back, dead channels on request.

    ``dead``: channels that accept commands but give no light (a broken luminaire).
    ``refuse``: channels that answer NG (LightRefused) when switched on.
    """

    def __init__(
        self,
        channels: Mapping[int, int] | None = None,
        *,
        dead: Iterable[int] = (),
        refuse: Iterable[int] = (),
    ) -> None:
        #: channel -> recipe intensity (0..255), what ``on()`` applies
        self.recipe: dict[int, int] = dict(channels or {1: 255})
        self.intensity: dict[int, int] = dict(self.recipe)
        self.lit: set[int] = set()
        self.dead = set(dead)
        self.refuse = set(refuse)
        self.calls: list[str] = []

    def open(self) -> None:
        """Nothing to open."""
        self.calls.append("open")

    def on(self) -> None:
        """Every recipe channel on at its intensity."""
        self.calls.append("on")
        for ch, value in self.recipe.items():
            self.intensity[ch] = value
            self.set_channel(ch, True)

    def off(self) -> None:
        """Every channel off."""
        self.calls.append("off")
        self.lit.clear()

    def set_intensity(self, channel: int, value: int) -> None:
        """Set one channel's intensity."""
        self.calls.append(f"intensity {channel} {value}")
        self.intensity[channel] = value

    def set_channel(self, channel: int, lit: bool) -> None:
        """Switch one channel; a ``refuse`` channel raises ``LightRefused`` when switched on."""
        self.calls.append(f"channel {channel} {'on' if lit else 'off'}")
        if lit and channel in self.refuse:
            raise LightRefused(f"channel {channel}: luminaire fault (fake)", code=6)
        if lit:
            self.lit.add(channel)
        else:
            self.lit.discard(channel)

    def health(self) -> LightsHealth:
        """State as ``status`` shows it."""
        return LightsHealth(backend="fake", connected=True, lit=bool(self.lit),
                            channels=dict(self.intensity))

    def close(self) -> None:
        """Lights off."""
        self.off()

    def output(self) -> dict[int, float]:
        """``{channel: light output 0..1}`` of the lit, working channels (a ``LightFn``)."""
        return {ch: self.intensity.get(ch, 0) / 255.0 for ch in self.lit if ch not in self.dead}


class _SimulatorLike(Protocol):
    def lit_channels(self) -> frozenset[int]: ...


def simulator_light(simulator: object) -> LightFn:
    """A ``LightFn`` reading a ``drivers.lights.simulator.LightSimulator``'s channel states."""

    def light() -> Mapping[int, float]:
        out: dict[int, float] = {}
        for ch in simulator.lit_channels():  # type: ignore[attr-defined]
            out[int(ch)] = simulator.state(ch).intensity / 255.0  # type: ignore[attr-defined]
        return out

    return light


def _light_level(light: LightFn | None, response: Mapping[int, float] | None) -> float:
    """Sum over lit channels of output × response (response 1.0 for unnamed channels)."""
    if light is None:
        return 1.0
    resp = response or {}
    return float(sum(out * resp.get(ch, 1.0) for ch, out in light().items()))


def radial(shape: tuple[int, int]) -> Image:
    """Distance from the image centre over the distance of a corner (0 centre, 1 corners)."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    r = np.hypot(y - cy, x - cx) / float(np.hypot(cy, cx))
    return _f32(r)


def texture(shape: tuple[int, int], seed: int = 1, cell_px: int = 4) -> Image:
    """A fixed random grey texture (blocks of ``cell_px``), values 0.2..0.8: lots of edges."""
    h, w = shape
    rng = np.random.default_rng(seed)
    small = rng.uniform(0.2, 0.8, size=(-(-h // cell_px), -(-w // cell_px))).astype(np.float32)
    big = np.kron(small, np.ones((cell_px, cell_px), np.float32))
    return np.ascontiguousarray(big[:h, :w])


def blur(image: Image, sigma: float) -> Image:
    """Gaussian blur of ``sigma`` px (0: unchanged)."""
    if sigma <= 0:
        return image
    return _f32(cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma))


def exposure_scene(
    shape: tuple[int, int] = (120, 160),
    saturate_above_us: float = 40_000.0,
    *,
    mean_ratio: float = 0.5,
    light: LightFn | None = None,
) -> SceneFn:
    """A horizontal ramp whose brightest column saturates above ``saturate_above_us`` exactly.

    Truth: mean grey (fraction of full scale) at exposure ``t`` µs, 0 dB, below saturation is
    ``mean_ratio * t / saturate_above_us``; the ramp runs linearly from
    ``2 * mean_ratio - 1`` to 1 of the peak (``mean_ratio`` in 0.5..1).
    """
    if not 0.5 <= mean_ratio <= 1.0:
        raise ValueError(f"mean_ratio must be in 0.5..1, got {mean_ratio}")
    h, w = shape
    peak = REFERENCE_EXPOSURE_US / saturate_above_us
    ramp = np.linspace(2 * mean_ratio - 1.0, 1.0, w, dtype=np.float32) * peak
    base = np.ascontiguousarray(np.broadcast_to(ramp, (h, w)), dtype=np.float32)

    def scene(index: int, features: Mapping[str, FeatureValue]) -> Image:
        level = _light_level(light, None)
        return _f32(np.clip(base * min(level, 1.0), 0.0, 1.0))

    scene.__name__ = "exposure_scene"
    return scene


def focus_scene(
    shape: tuple[int, int] = (120, 160), blur_sigma: float = 0.0, *, seed: int = 1
) -> SceneFn:
    """The same textured target every frame, blurred by ``blur_sigma`` px (0: sharp)."""
    image = blur(texture(shape, seed), blur_sigma)

    def scene(index: int, features: Mapping[str, FeatureValue]) -> Image:
        return image

    scene.__name__ = "focus_scene"
    return scene


def focus_sweep(
    shape: tuple[int, int] = (120, 160),
    *,
    best_frame: int = 5,
    sigma_per_frame: float = 0.6,
    seed: int = 1,
) -> SceneFn:
    """Turning the lens through focus: frame ``i`` is blurred by
    ``|i - best_frame| * sigma_per_frame`` px, so frame ``best_frame`` is the sharpest."""
    sharp = texture(shape, seed)

    def scene(index: int, features: Mapping[str, FeatureValue]) -> Image:
        return blur(sharp, abs(index - best_frame) * sigma_per_frame)

    scene.__name__ = "focus_sweep"
    return scene


def vignette(shape: tuple[int, int], falloff: float) -> Image:
    """Relative illumination ``1 - falloff * r²`` (r = 1 at the corners)."""
    return (1.0 - falloff * radial(shape) ** 2).astype(np.float32)


def vignette_scene(
    shape: tuple[int, int] = (120, 160),
    *,
    falloff: float = 0.3,
    level: float = 0.5,
    dark_level: float = 0.02,
    noise: float = 0.0,
    light: LightFn | None = None,
    response: Mapping[int, float] | None = None,
    seed: int = 3,
) -> SceneFn:
    """A uniform target under vignetted light: ``dark_level + level * light * (1 - falloff r²)``.

    Truth: the flat map is ``vignette(shape, falloff)`` normalised to mean 1 over the region of
    interest, its uniformity (min/max over a centred ROI of ``f`` of width and height) is
    ``1 - falloff * f²``; with lights off (``light`` returns nothing) only ``dark_level``
    (+ noise) remains. ``noise``: Gaussian, sigma as a fraction of full scale.
    """
    shade = vignette(shape, falloff)
    rng = np.random.default_rng(seed)

    def scene(index: int, features: Mapping[str, FeatureValue]) -> Image:
        img = dark_level + level * _light_level(light, response) * shade
        if noise > 0:
            img = img + rng.normal(0.0, noise, size=shape).astype(np.float32)
        return _f32(np.clip(img, 0.0, 1.0))

    scene.__name__ = "vignette_scene"
    return scene


def render_chessboard(
    cols: int = 9, rows: int = 6, square_px: int = 20, margin_px: int = 30,
    low: float = 0.1, high: float = 0.9,
) -> Image:
    """A chessboard with ``cols`` x ``rows`` *inner* corners and squares of ``square_px`` px,
    on a ``high`` (white) margin of ``margin_px``: (cols+1) x (rows+1) squares."""
    board_w, board_h = (cols + 1) * square_px, (rows + 1) * square_px
    img = np.full((board_h + 2 * margin_px, board_w + 2 * margin_px), high, np.float32)
    for r in range(rows + 1):
        for c in range(cols + 1):
            if (r + c) % 2 == 0:
                y0, x0 = margin_px + r * square_px, margin_px + c * square_px
                img[y0:y0 + square_px, x0:x0 + square_px] = low
    return img


def chessboard_scene(
    cols: int = 9, rows: int = 6, square_px: int = 20, margin_px: int = 30,
    *, light: LightFn | None = None, blur_sigma: float = 0.7,
) -> SceneFn:
    """A rendered chessboard (slightly blurred like a real lens); truth: ``square_px`` px per
    square, so ``mm_per_px = square_mm / square_px``."""
    image = blur(render_chessboard(cols, rows, square_px, margin_px), blur_sigma)

    def scene(index: int, features: Mapping[str, FeatureValue]) -> Image:
        return _f32(np.clip(image * min(_light_level(light, None), 1.0), 0.0, 1.0))

    scene.__name__ = "chessboard_scene"
    return scene


def lit_scene(
    base: SceneFn, light: LightFn, response: Mapping[int, float] | None = None,
    ambient: float = 0.0,
) -> SceneFn:
    """``base`` scaled by ``ambient + Σ output × response`` of the lit channels."""

    def scene(index: int, features: Mapping[str, FeatureValue]) -> Image:
        level = ambient + _light_level(light, response)
        return _f32(np.clip(base(index, features) * level, 0.0, 1.0))

    scene.__name__ = f"lit_{getattr(base, '__name__', 'scene')}"
    return scene


class HiddenFeatures:
    """A ``Camera`` that forwards to ``inner`` but lacks the ``hidden`` features, the way a
    GenICam device without that node answers (``CameraFeatureError``)."""

    def __init__(self, inner: Camera, hidden: Iterable[str]) -> None:
        self.inner = inner
        self.name = inner.name
        self.hidden = frozenset(hidden)

    def open(self) -> None:
        """Open the inner camera."""
        self.inner.open()

    def trigger(self) -> None:
        """Trigger the inner camera."""
        self.inner.trigger()

    def grab(self, timeout_s: float) -> Frame:
        """Grab from the inner camera."""
        return self.inner.grab(timeout_s)

    def close(self) -> None:
        """Close the inner camera."""
        self.inner.close()

    def health(self) -> CameraHealth:
        """The inner camera's health."""
        return self.inner.health()

    def get_feature(self, node: str) -> FeatureValue:
        """The inner feature, unless hidden."""
        self._check(node)
        return self.inner.get_feature(node)

    def set_feature(self, node: str, value: FeatureValue) -> None:
        """Set the inner feature, unless hidden."""
        self._check(node)
        self.inner.set_feature(node, value)

    def _check(self, node: str) -> None:
        if node in self.hidden:
            raise CameraFeatureError(f"camera {self.name}: node {node!r} does not exist")
