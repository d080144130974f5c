"""Tests of station.cli and the config/history/schema subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from station.cli import build_parser, main
from tests.models.tester import save_tiny
from tests.station.test_store import header


def subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(action.choices)


@pytest.mark.parametrize("name", subcommands())
def test_every_subcommand_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`station NAME --help` exits 0 and prints a usage line."""
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert f"station {name}" in capsys.readouterr().out


def test_the_commands_the_issues_name_exist() -> None:
    """The subcommands the README and the issues promise are all there."""
    assert set(subcommands()) >= {
        "run", "config", "schema", "trigger", "watch", "history", "status", "devices",
        "lights", "lightsim", "inspect", "bench", "model", "train", "evaluate", "study",
        "capture",
    }


def test_config_check_ok_and_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`config check` says OK (exit 0) or lists the problems (exit 2)."""
    assert main(["config", "check", "default"]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("messaging: {max_request_bytes: 10}\nlights: {colour: red}\n")
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "messaging.max_request_bytes = 10" in err and ">= 256" in err
    assert "lights.colour" in err and "unknown key" in err


def test_config_show_yaml_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`config show` prints the effective config with defaults and overrides applied."""
    assert main(["config", "show", "default", "--set", "cycle.queue_depth=9"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data["cycle"]["queue_depth"] == 9 and data["storage"]["max_disk_mb"] == 2048
    assert main(["config", "show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "demo-station"


def test_history_on_an_empty_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`history` without a store says so instead of failing."""
    assert main(["history", "--data-dir", str(tmp_path)]) == 0
    assert "no inspections yet" in capsys.readouterr().out


def test_every_option_has_help_text() -> None:
    """Every option and argument of every subcommand says what it is for in --help."""
    import argparse

    from station.cli import build_parser

    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "station")
    assert not missing, missing


def test_config_check_finds_missing_files(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`config check` refuses (exit 2) a config whose checkpoint, replay images or region
    mask do not exist, and says the folder relative paths were resolved against."""
    cfg = tmp_path / "station.yaml"
    cfg.write_text(
        "model: {checkpoint: models/mine.ckpt}\n"
        "cameras:\n  - {name: cam0, replay: {images: ['shots/*.png']}}\n"
        "rules: {regions: {cam0: {mask: masks/cam0.png}}}\n"
    )
    assert main(["config", "check", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "3 problem(s)" in err
    for needle in ("model.checkpoint = 'models/mine.ckpt'", "cameras[0] (cam0).replay.images",
                   "rules.regions.cam0.mask = 'masks/cam0.png'"):
        assert needle in err
    assert f"resolved against the config file's folder {tmp_path}" in err
    (tmp_path / "models").mkdir()
    save_tiny(tmp_path / "models" / "mine.ckpt")
    (tmp_path / "shots").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("shots/a.png", "masks/cam0.png"):
        cv2.imwrite(str(tmp_path / name), np.full((8, 8), 255, np.uint8))
    assert main(["config", "check", str(cfg)]) == 0
    assert f"relative paths resolved against {tmp_path}" in capsys.readouterr().out


def test_history_reads_the_store_the_config_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`history --config` reads storage.data_dir of that config and says which store."""
    from station.store import Store

    monkeypatch.delenv("STATION_DATA_DIR", raising=False)
    data = tmp_path / "booth"
    store = Store(data)
    store.record(header(7, "FAIL"), {})
    store.close()
    cfg = tmp_path / "booth.yaml"
    cfg.write_text(f"storage: {{data_dir: {data}}}\n")
    assert main(["history", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert str(data / "inspections.sqlite3") in out.splitlines()[0]
    assert "id007" in out and "P7" in out and "FAIL" in out
