"""Read one stage's section of params.yaml and apply command-line overrides.

params.yaml has one section per dvc stage, named exactly like it, plus `base:` for values
every stage shares (seed, device). A stage sees `base` merged under its own section.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError, StoreNotFoundError, unknown_name_message


def load_section(path: Path, section: str, *, base_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """The `section` of a params file, with the named `base:` keys merged in underneath.

    Raises:
        StoreNotFoundError: the file does not exist.
        ConfigError: it is not a mapping, or has no such section.
    """
    if not path.is_file():
        raise StoreNotFoundError(f"{path}: params file not found")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of stage sections, got {type(raw).__name__}")
    if section not in raw:
        raise ConfigError(f"{path}: {unknown_name_message('params section', section, raw)}")
    base = raw.get("base", {}) or {}
    merged = {k: base[k] for k in base_keys if k in base}
    merged.update(raw[section] or {})
    return merged


def apply_overrides(values: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """Copy of `values` with every override that is not None put in place."""
    return {**values, **{k: v for k, v in overrides.items() if v is not None}}


def section_kwargs(cls: type, section: str, raw: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for the params dataclass `cls` from its params.yaml `section`.

    Unknown keys are refused by name (a typo must not be ignored silently), and YAML lists
    become tuples so the frozen dataclasses stay hashable.

    Raises:
        ConfigError: naming the section, the unknown keys and the known ones.
    """
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{section}: unknown parameter(s) {unknown}; known: {sorted(known)}")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
