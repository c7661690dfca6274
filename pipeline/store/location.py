"""Where a store lives: a local folder, or a URL on any fsspec filesystem (s3://, gs://, memory://).

zarr opens both kinds from a string; what differs is everything around it: whether the
store exists, removing it, and publishing a new one (an atomic rename locally; object
stores have no rename). Local paths stay `Path` so the rest of the project keeps its
path handling; URLs stay strings, because `Path("s3://b/x")` collapses the `//`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import fsspec

from pipeline.errors import ConfigError

StoreLocation = Path | str  # a local folder, or a "scheme://..." URL


def store_location(text: str | Path) -> StoreLocation:
    """A URL ("scheme://...") stays a string; a file:// URL or anything else becomes a local Path.

    file:// URLs are local folders: as Paths they get the atomic creation and free-space
    check of local stores. One naming another host (file://host/p) is refused.

    Example:
        >>> store_location("s3://bucket/features.zarr"), store_location("file:///data/f.zarr")
        ('s3://bucket/features.zarr', PosixPath('/data/f.zarr'))
    """
    if isinstance(text, str) and text.startswith("file://"):
        rest = text.removeprefix("file://")
        host, _, _ = rest.partition("/")
        if host not in ("", "localhost"):  # file://host/p names a folder on another machine
            raise ConfigError(
                f"{text}: a file:// URL must name a local path (file:///path), not host {host!r}"
            )
        return Path("/" + rest.removeprefix("localhost").lstrip("/"))
    return text if is_url(text) else Path(text)


def is_url(location: str | Path) -> bool:
    """True for "scheme://..." strings (a Path never is one)."""
    return isinstance(location, str) and "://" in location


def exists(location: StoreLocation) -> bool:
    """Whether anything is at `location` (a folder, a file or, on object stores, a key prefix)."""
    if is_url(location):
        fs, path = fsspec.core.url_to_fs(str(location))
        return bool(fs.exists(path))
    return Path(location).exists()


def remove(location: StoreLocation) -> None:
    """Delete the store at `location` and everything in it."""
    if is_url(location):
        fs, path = fsspec.core.url_to_fs(str(location))
        fs.rm(path, recursive=True)
    else:
        shutil.rmtree(location)
