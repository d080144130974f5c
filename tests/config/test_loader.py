"""Tests of config.loader: files, shipped configs, environment and --set overrides, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import dump_config, load_config
from config.errors import ConfigError
from config.loader import SHIPPED, env_overrides, find_config, shipped_config
from config.schema import StationConfig


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load(name: str) -> None:
    """Every shipped config validates, with no environment overrides."""
    cfg = load_config(name, env={})
    assert len(cfg.cameras) == 2
    assert cfg.base_dir == shipped_config(name).parent


def test_round_trip_of_effective_config(tmp_path: Path) -> None:
    """The effective config, dumped and loaded again, is the same config."""
    cfg = load_config("default", env={})
    import yaml

    again = load_config(write(tmp_path, yaml.safe_dump(dump_config(cfg))), env={})
    assert dump_config(again) == dump_config(cfg)


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    """An empty file gives the schema defaults."""
    cfg = load_config(write(tmp_path, ""), env={})
    assert dump_config(cfg) == StationConfig().model_dump(mode="json")


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    """cfg.resolve() is relative to the file's directory, not the working directory."""
    cfg = load_config(write(tmp_path, "name: x\n"), env={})
    assert cfg.resolve("samples/a.jpg") == tmp_path / "samples/a.jpg"
    assert cfg.resolve("/abs/b.jpg") == Path("/abs/b.jpg")


def test_set_overrides_nested_keys_and_list_items(tmp_path: Path) -> None:
    """--set reaches sections and list items, with YAML typing of the value."""
    cfg = load_config(
        "default",
        ["cycle.queue_depth=5", "cameras.1.timeout_s=4.5", "lights.backend=none",
         "storage.keep_defect_maps=false"],
        env={},
    )
    assert cfg.cycle.queue_depth == 5
    assert cfg.cameras[1].timeout_s == 4.5
    assert cfg.lights.backend == "none"
    assert cfg.storage.keep_defect_maps is False


@pytest.mark.parametrize("raw,flips", [("off", "off"), ("on", "on"), ("no", "off"),
                                       ("model", "model")])
def test_flips_on_and_off_survive_yaml_booleans(raw: str, flips: str) -> None:
    """YAML reads a bare on / off / no as a boolean; pipeline.flips takes it as 'on' / 'off'."""
    cfg = load_config("default", [f"pipeline.flips={raw}"], env={})
    assert cfg.pipeline.flips == flips


def test_environment_overrides_and_precedence() -> None:
    """STATION_A__B variables override the file; --set overrides the environment."""
    env = {"STATION_CYCLE__QUEUE_DEPTH": "7", "STATION_MESSAGING__COMMAND": "tcp://127.0.0.1:7",
           "STATION_CONFIG": "ignored-here", "OTHER": "x"}
    cfg = load_config("default", env=env)
    assert cfg.cycle.queue_depth == 7
    assert cfg.messaging.command == "tcp://127.0.0.1:7"
    cfg = load_config("default", ["cycle.queue_depth=3"], env=env)
    assert cfg.cycle.queue_depth == 3
    assert [k for k, _, _ in env_overrides(env)] == ["cycle.queue_depth", "messaging.command"]


def test_bad_value_names_key_value_and_rule(tmp_path: Path) -> None:
    """An out-of-range value: the error names the key, the value and the allowed range."""
    path = write(tmp_path, "cycle:\n  queue_depth: 0\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    text = str(err.value)
    assert "cycle.queue_depth = 0" in text
    assert ">= 1" in text and "<= 64" in text
    assert str(path) in text


def test_unknown_key_lists_valid_keys(tmp_path: Path) -> None:
    """A misspelt key is refused with the keys that exist at that level."""
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "lights:\n  baud: 9600\n"), env={})
    assert "lights.baud" in str(err.value)
    assert "unknown key" in str(err.value)
    assert "baudrate" in str(err.value)


def test_wrong_type_and_bad_choice(tmp_path: Path) -> None:
    """A string where a number belongs, and a value outside a set of choices."""
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "pipeline: {tile_size: big, device: tpu}\n"), env={})
    text = str(err.value)
    assert "pipeline.tile_size = 'big'" in text
    assert "pipeline.device = 'tpu'" in text and "'cuda'" in text


def test_duplicate_camera_names_refused(tmp_path: Path) -> None:
    """Two cameras with one name cannot be told apart in verdicts."""
    with pytest.raises(ConfigError, match=r"unique; a appears more than once"):
        load_config(write(tmp_path, "cameras: [{name: a}, {name: a}]\n"), env={})


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    """Broken YAML and a list at the top level get their own messages."""
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "a: [1,\n"), env={})
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"), env={})


def test_missing_file_names_shipped_configs() -> None:
    """A config that is neither a file nor a shipped name lists the shipped ones."""
    with pytest.raises(ConfigError, match=r"default, genicam-sim, booth\.example"):
        find_config("/no/such/file.yaml")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("queue_depth", "expected dotted.key=value"),
        ("cycle..queue_depth=1", "is not a dotted key"),
        ("cameras.x.timeout_s=1", "must be a number"),
        ("cameras.9.timeout_s=1", "out of range"),
        ("name.sub=1", "cannot be set"),
    ],
)
def test_bad_set_overrides(override: str, message: str) -> None:
    """Every malformed --set is refused with a message naming it."""
    with pytest.raises(ConfigError, match=message):
        load_config("default", [override], env={})


def test_bad_environment_override_names_the_variable() -> None:
    """A bad value from the environment names the variable's key."""
    with pytest.raises(ConfigError, match=r"cycle\.queue_depth = 'many'"):
        load_config("default", env={"STATION_CYCLE__QUEUE_DEPTH": "many"})
