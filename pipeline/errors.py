"""One family of errors for the whole project.

Every error probe3r raises on purpose derives from `Probe3rError`, so the CLI can print it
as one line without a traceback, and also from the builtin that describes it, so callers
that catch `ValueError` or `FileNotFoundError` keep working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class Probe3rError(Exception):
    """Base of every error raised on purpose by probe3r."""


class ConfigError(Probe3rError, ValueError):
    """A parameter, option or config value is out of its allowed range or unknown."""


class SchemaError(Probe3rError, ValueError):
    """A store or a schema entry does not match `store_schema.yaml`."""


class ShapeError(Probe3rError, ValueError):
    """A tensor or array has a shape other than the one documented."""


class StoreNotFoundError(Probe3rError, FileNotFoundError):
    """A store (or an array inside it) that should exist does not."""


class SceneError(Probe3rError, ValueError):
    """A scene file or folder cannot be used: missing, unreadable, or lost a texture."""


class SamplingError(Probe3rError, RuntimeError):
    """No camera pair meeting the requested constraints could be found in a scene."""


class CheckpointError(Probe3rError, ValueError):
    """A model checkpoint is not what it claims to be."""


class DependencyError(Probe3rError, ImportError):
    """An optional dependency (e.g. habitat-sim) is needed and not installed; says how to install it."""


def unknown_name_message(kind: str, name: str, valid: Iterable[str], *, limit: int = 12) -> str:
    """Build "Unknown <kind> 'x'. Did you mean 'y'? Valid: a, b, ..." for any name lookup.

    Args:
        kind: what was being looked up, e.g. "location" or "model size".
        name: the name the user gave.
        valid: every accepted name, in display order.
        limit: how many valid names to list before eliding the rest.
    """
    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    shown = ", ".join(valid[:limit]) + (f", … ({len(valid) - limit} more)" if len(valid) > limit else "")
    return f"Unknown {kind} '{name}'.{hint} Valid: {shown}"
