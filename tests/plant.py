"""Helpers of the plant's tests: a station config for a test broker, verdicts recorded into a
store's outbox, and a store with its publisher running."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from config import StationConfig, load_config
from station.cycle import error_outcome, new_inspection_id
from station.messaging.wire import VerdictHeader
from station.store import Store

#: The users of every test broker: name -> password.
USERS = {"station": "station-secret", "collector": "collector-secret"}

ROOT = "acme/plant1/paint/line1"


def plant_config(tmp_path: Path, port: int, *extra: str, password: str = USERS["station"],
                 name: str = "booth-1") -> StationConfig:
    """The default config with the plant's broker on ``port``, as user station (password in a
    file), fast retries."""
    pw = tmp_path / f"mqtt-password-{name}"
    pw.write_text(password + "\n")
    pw.chmod(0o600)
    return load_config("default", [
        f"name={name}", "mqtt.enabled=true", f"mqtt.port={port}", "mqtt.username=station",
        f"mqtt.password_file={pw}", f"mqtt.topic_root={ROOT}/{{station}}",
        "mqtt.retry_first_s=0.05", "mqtt.retry_max_s=0.5", "mqtt.connect_timeout_s=3",
        *extra,
    ], env={})


def record(store: Store, cfg: StationConfig, n: int, header: VerdictHeader | None = None
           ) -> list[str]:
    """Record ``n`` ERROR verdicts (or copies of ``header`` with new ids); their ids in order."""
    ids = []
    for i in range(n):
        iid = new_inspection_id()
        if header is None:
            h = error_outcome(cfg, iid, f"P-{i}", "test verdict",
                              {"model_id": "m", "trained": True}, "cal-1").header
        else:
            h = header.model_copy(update={"inspection_id": iid})
        store.record(h.model_dump(by_alias=True, mode="json"), {})
        ids.append(iid)
    return ids


class Running:
    """A store with its outbox and a publisher thread; stopped and closed after the test."""

    def __init__(self, tmp_path: Path, cfg: StationConfig) -> None:
        self.cfg = cfg
        self.data = tmp_path / f"data-{cfg.name}"
        from station.plant.publisher import Publisher

        self.store = Store(self.data, outbox=True)
        self.publisher = Publisher(cfg, self.store, self.data)

    def health(self) -> dict[str, Any]:
        return self.publisher.health()

    def close(self) -> None:
        self.publisher.stop()
        self.store.close()


def small_images(folder: Path, n: int = 4, size: int = 96) -> Path:
    """``n`` grey images of ``size`` px (noise) in ``folder``; returns the glob of them."""
    import cv2
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / f"part{i}.png"),
                    rng.integers(0, 256, (size, size), dtype=np.uint8))
    return folder / "*.png"


def station_yaml(folder: Path, name: str, port: int, checkpoint: Path, *,
                 password: str = USERS["station"], mqtt: dict[str, Any] | None = None) -> Path:
    """A config file for ``station run``: two replay cameras on small images, the light
    simulator, a tiny model on the CPU (cycles of a few milliseconds), the broker on ``port``
    as user station; ``mqtt`` overrides keys of the mqtt section. Returns its path."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    samples = small_images(folder / "images")
    pw = folder / f"{name}.password"
    pw.write_text(password + "\n")
    pw.chmod(0o600)
    cams = [{"name": c, "backend": "replay", "timeout_s": 5.0,
             "replay": {"images": [str(samples)], "pixel_format": "Mono8"}}
            for c in ("cam0", "cam1")]
    data = {
        "version": 1, "name": name, "cameras": cams,
        "lights": {"backend": "simulator", "settle_ms": 0,
                   "channels": [{"channel": 1, "name": "top", "intensity": 180}]},
        "pipeline": {"device": "cpu", "mode": "whole"},
        "model": {"checkpoint": str(checkpoint)},
        "storage": {"preview_px": 0},
        "mqtt": {"enabled": True, "port": port, "username": "station",
                 "password_file": str(pw), "topic_root": f"{ROOT}/{{station}}",
                 "retry_first_s": 0.1, "retry_max_s": 1.0, "keepalive_s": 5,
                 **(mqtt or {})},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def collector_yaml(folder: Path, port: int, database: str) -> Path:
    """A config file for ``station collect``: the broker on ``port`` as user collector, the
    verdicts below ROOT into ``database``."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    pw = folder / "collector.password"
    pw.write_text(USERS["collector"] + "\n")
    data = {
        "version": 1,
        "mqtt": {"port": port, "username": "collector", "password_file": str(pw),
                 "topic_root": f"{ROOT}/{{station}}", "retry_first_s": 0.1,
                 "retry_max_s": 1.0},
        "collect": {"database": database, "batch_wait_s": 0.05, "stats_interval_s": 2},
    }
    path = folder / "collector.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
