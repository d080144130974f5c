"""Load a station config: YAML file, then ``STATION_*`` environment overrides, then ``--set``.

Precedence, lowest first: schema defaults < the file < environment < ``--set``.

Environment overrides name a dotted key with ``__`` between the parts, after the prefix
``STATION_``: ``STATION_MESSAGING__COMMAND=tcp://127.0.0.1:6000`` sets ``messaging.command``,
``STATION_CAMERAS__0__TIMEOUT_S=5`` sets the first camera's timeout. Variables without ``__``
(``STATION_CONFIG``, ``STATION_DATA_DIR``) are options of the command line, not overrides.
Values are read as YAML scalars, so ``true``, ``3`` and ``0.5`` get their types.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from config.errors import ConfigError
from config.schema import StationConfig

ENV_PREFIX = "STATION_"
SHIPPED_DIR = Path(__file__).resolve().parent
SHIPPED = ("default", "genicam-sim", "booth.example")


def shipped_config(name: str) -> Path:
    """Path of a configuration shipped with the package (``default``, ``genicam-sim``, ...)."""
    if name not in SHIPPED:
        raise ConfigError(
            f"--config {name!r}: not a file and not a shipped config; "
            f"shipped configs are {', '.join(SHIPPED)}"
        )
    return SHIPPED_DIR / f"{name}.yaml"


def find_config(arg: str | os.PathLike[str] | None) -> Path:
    """Turn a ``--config`` argument into a file: a path, a shipped name, or the default."""
    if arg is None:
        arg = os.environ.get(ENV_PREFIX + "CONFIG") or "default"
    path = Path(arg).expanduser()
    if path.is_file():
        return path
    if str(arg) in SHIPPED:
        return shipped_config(str(arg))
    raise ConfigError(
        f"--config {str(arg)!r}: no such file; give a YAML file or one of the shipped "
        f"configs: {', '.join(SHIPPED)}"
    )


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def _set_dotted(data: dict[str, Any], key: str, value: Any, source: str) -> None:
    parts = [p for p in key.split(".")]
    if not key or any(not p for p in parts):
        raise ConfigError(f"{source}: key {key!r} is not a dotted key like 'messaging.command'")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit():
                raise ConfigError(
                    f"{source}: {where!r} indexes a list, so {part!r} must be a number"
                )
            idx = int(part)
            if idx >= len(node):
                raise ConfigError(
                    f"{source}: {where!r} is out of range; the list has {len(node)} item(s) "
                    "(add the item in the config file first)"
                )
            if last:
                node[idx] = value
            else:
                node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(f"{source}: {where!r} cannot be set; its parent is not a section")


def env_overrides(env: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(dotted key, raw value, source) for every ``STATION_A__B`` variable in ``env``."""
    found = []
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and "__" in name:
            key = name[len(ENV_PREFIX):].lower().replace("__", ".")
            found.append((key, env[name], f"environment variable {name}"))
    return found


def _field_rule(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """The description and bounds of the field at ``loc``, for error messages."""
    current: Any = model
    info = None
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            if fields and info is None:
                return "valid keys here: " + ", ".join(sorted(fields))
            if fields:
                return "valid keys here: " + ", ".join(sorted(fields))
            return ""
        info = fields[part]
        ann = info.annotation
        current = _inner_model(ann)
    if info is None:
        return ""
    bits = field_bounds(info)
    rule = f"allowed: {', '.join(bits)}; " if bits else ""
    return f"{rule}{info.description or ''}".strip("; ")


def field_bounds(info: Any) -> list[str]:
    """A field's numeric bounds as text, e.g. ``[">= 1", "<= 64"]``."""
    bits = []
    for meta in info.metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            val = getattr(meta, attr, None)
            if val is not None:
                bits.append(f"{sym} {val}")
    return bits


def _inner_model(ann: Any) -> Any:
    """The BaseModel inside an annotation like ``list[CameraConfig]`` or ``X | None``."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem: the key, the bad value, the rule."""
    lines = [f"{source}: {exc.error_count()} problem(s) in the configuration"]
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        value = err.get("input")
        shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
        if len(shown) > 80:
            shown = shown[:77] + "..."
        rule = _field_rule(StationConfig, loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        line = f"  {key} = {shown}: {msg}"
        if rule:
            line += f" ({rule})"
        lines.append(line)
    return "\n".join(lines)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; errors name the file, line and what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r}: cannot read it ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(path)!r}: the top level must be a mapping of sections "
            f"(cameras:, lights:, ...), got a {type(data).__name__}"
        )
    return data


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
) -> StationConfig:
    """Load and validate a station config.

    ``path``: a YAML file or a shipped config name; ``None`` is ``$STATION_CONFIG`` or
    ``default``. ``overrides``: ``dotted.key=value`` strings (``--set``). ``env``: the
    environment to read ``STATION_*`` overrides from (``os.environ`` when ``None``).
    Raises ``ConfigError`` naming every bad key, its value and the rule.
    """
    env = os.environ if env is None else env
    file = find_config(path)
    data = read_yaml(file)
    for key, raw, source in env_overrides(env):
        _set_dotted(data, key, _parse_scalar(raw), source)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"--set {item!r}: expected dotted.key=value, e.g. cycle.queue_depth=4"
            )
        key, raw = item.split("=", 1)
        _set_dotted(data, key.strip(), _parse_scalar(raw), f"--set {item!r}")
    try:
        cfg = StationConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, f"config {str(file)!r}")) from exc
    cfg._base_dir = file.resolve().parent
    return cfg


def dump_config(cfg: StationConfig) -> dict[str, Any]:
    """The effective config as plain data (JSON-compatible)."""
    return cfg.model_dump(mode="json")
