"""Load hardware configs by preset name (``hw_configs/NAME.yaml``) or by path."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import ValidationError

from qesim.errors import InputError, format_validation_error
from qesim.hw.config import HardwareConfig


def config_dir() -> Path:
    """``hw_configs/`` of the source tree (a checkout or an editable install), else the copy that a
    wheel carries inside the package (``qesim/hw/presets/``, filled by setup.py at build time)."""
    here = Path(__file__).resolve()
    src = here.parents[2] / "hw_configs"
    if src.is_dir() and (here.parents[2] / "pyproject.toml").exists():
        return src
    return here.parent / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in config_dir().glob("*.yaml"))


def load_yaml(path: Path) -> dict:
    """A YAML mapping from ``path``; InputError for an unreadable, binary, malformed or too
    deeply nested file, or one whose top level is not a mapping."""
    from qesim.safeio import parse_yaml

    data = parse_yaml(path, "YAML file")
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of hardware fields at the top level, got {type(data).__name__}")
    return data


def config_from_dict(data: dict, source: str) -> HardwareConfig:
    """Validate a parsed config; InputError listing every invalid field (unknown keys get a
    did-you-mean)."""
    try:
        return HardwareConfig.model_validate(data)
    except ValidationError as e:
        raise InputError(format_validation_error(source, e, HardwareConfig)) from None


@lru_cache(maxsize=64)
def _load_path(path: str, mtime: float, shown: str) -> HardwareConfig:
    """The config at the absolute ``path``; errors name it as the user gave it (``shown``)."""
    return config_from_dict(load_yaml(Path(path)), shown)


def load_hw(name_or_path: str) -> HardwareConfig:
    """A preset name (``flightllm-u280``) or a path to a YAML file."""
    if not str(name_or_path).strip():  # Path('') is the current directory
        raise InputError(f"empty hardware name; known: {', '.join(preset_names())} (or a path to a .yaml file)")
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise InputError(f"{p}: hardware config file not found")
        try:
            return _load_path(str(p.resolve()), p.stat().st_mtime, str(p))
        except InputError as e:  # parse_yaml names the resolved path; the user gave ``p``
            raise InputError(str(e).replace(str(p.resolve()), str(p))) from None
    cand = config_dir() / f"{name_or_path}.yaml"
    if not cand.exists():
        raise InputError(
            f"unknown hardware {name_or_path!r}; known: {', '.join(preset_names())} (or a path to a .yaml file)"
        )
    return _load_path(str(cand), cand.stat().st_mtime, str(cand))
