"""`probe3r render`: render view pairs into data/renders.zarr."""

from __future__ import annotations


def render() -> None:
    """Render pairs of views of scenes into a renders store (not implemented yet)."""
