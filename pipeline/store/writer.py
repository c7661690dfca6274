"""Create and open stores exactly as store_schema.yaml describes them.

Writes are meant to be shard-aligned: zarr 3 rewrites a whole shard file on any write to
it, so two writers touching one shard silently lose data. Callers assign work by whole
shards (see `shard_slices`) and never round-robin pairs.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from pipeline import __version__
from pipeline.errors import SchemaError, StoreNotFoundError
from pipeline.store.location import StoreLocation, exists, is_url, remove
from pipeline.store.schema import ArraySpec, Schema, StoreSpec, load_schema


class StoreExistsError(SchemaError):
    """A store is already where a new one was to be created."""


def store_sizes(spec: StoreSpec, sizes: Mapping[str, int], pairs_per_shard: int) -> dict[str, int]:
    """All dim sizes of a store: the schema's fixed ones, the caller's, and `shard`."""
    out = {**spec.dim_sizes, **sizes, "shard": int(pairs_per_shard)}
    for name, fixed in spec.dim_sizes.items():
        if name in sizes and int(sizes[name]) != int(fixed):
            raise SchemaError(
                f"{spec.name}: dim '{name}' is fixed at {fixed} by the schema, got {sizes[name]}"
            )
    return out


def create_store(
    path: StoreLocation,
    kind: str,
    *,
    sizes: Mapping[str, int],
    pairs_per_shard: int,
    attrs: Mapping[str, Any],
    coords: Mapping[str, np.ndarray] | None = None,
    overwrite: bool = False,
    schema: Schema | None = None,
    encodings: Mapping[str, str] | None = None,
) -> zarr.Group:
    """Create an empty store of `kind` with every array its schema entry lists.

    Args:
        path: folder of the new store, or a URL on an fsspec filesystem.
        kind: store kind in store_schema.yaml (e.g. "renders").
        sizes: sizes of the dims the schema does not fix (e.g. pair, y, x).
        pairs_per_shard: pairs in one shard file, also the chunk of per-pair arrays.
        attrs: the store's attributes; `schema_version`, `store_kind` and `probe3r_version`
            are added here.
        coords: values of coordinate arrays (arrays named like their dim), written now.
        overwrite: replace an existing store at `path` instead of refusing.
        encodings: opt-in encodings of arrays ({array: encoding} from the schema's
            `encodings` entries), recorded in the `encodings` attribute.

    Raises:
        SchemaError: if the store exists and `overwrite` is false, sizes contradict the
            schema, or an encoding is not listed for its array.
    """
    schema = schema or load_schema()
    spec = schema.store(kind)
    encodings = dict(encodings or {})
    specs = {name: spec.array(name).encoded(encodings.get(name)) for name in spec.arrays}
    for name in encodings:
        spec.array(name)  # unknown array names fail here
    if exists(path):
        if not overwrite:
            raise StoreExistsError(f"{path}: a store already exists there; pass --overwrite to replace it")
        remove(path)
    all_sizes = store_sizes(spec, sizes, pairs_per_shard)
    if is_url(path):  # object stores have no rename: created in place (see docs/store.md)
        _fill_new_store(path, schema, kind, specs, all_sizes, attrs, coords, encodings)
        return zarr.open_group(str(path), mode="r+")
    path = Path(path)
    staging = path.with_name(f".{path.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        _fill_new_store(staging, schema, kind, specs, all_sizes, attrs, coords, encodings)
        publish(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return zarr.open_group(str(path), mode="r+")


def publish(staging: Path, path: Path) -> None:
    """Move a fully created store into place in one atomic rename.

    Processes started together (`--shard i/n` on a new store) may all try to create it: one
    rename wins, the others get `StoreExistsError` and open the winner's store. Nobody ever
    sees a half-created store at `path`, even after a crash.

    Raises:
        StoreExistsError: something is already at `path`.
    """
    try:
        os.rename(staging, path)  # atomic; fails if `path` is a non-empty directory or a file
    except OSError as err:
        if path.exists():
            raise StoreExistsError(f"{path}: another process created the store first") from None
        raise err


def _fill_new_store(
    path: StoreLocation,
    schema: Schema,
    kind: str,
    specs: Mapping[str, ArraySpec],
    all_sizes: Mapping[str, int],
    attrs: Mapping[str, Any],
    coords: Mapping[str, np.ndarray] | None,
    encodings: Mapping[str, str],
) -> None:
    """Create every array, coordinate and attribute of a new store at `path`."""
    group = zarr.open_group(str(path), mode="w")
    for aspec in specs.values():
        shape = aspec.shape(all_sizes)
        chunks = aspec.resolve(aspec.chunks, all_sizes)
        shards = aspec.resolve(aspec.shards, all_sizes) if aspec.shards else None
        if shards is not None:
            for dim, c, s in zip(aspec.dims, chunks, shards, strict=True):
                if s % c:
                    raise SchemaError(
                        f"{aspec.key}: shards along '{dim}' ({s}) are not a multiple of chunks ({c})"
                    )
        group.create_array(
            aspec.name,
            shape=shape,
            chunks=chunks,
            shards=shards,
            dtype=aspec.dtype,
            compressors=schema.compressors(aspec),
            fill_value=aspec.fill_value,
            dimension_names=aspec.dims,
            attributes={"description": aspec.description},
            config={"write_empty_chunks": aspec.write_empty_chunks},
        )
    for name, values in (coords or {}).items():
        group[name][...] = np.asarray(values, dtype=specs[name].dtype)
    group.attrs.update(
        {
            "schema_version": schema.version,
            "store_kind": kind,
            "probe3r_version": __version__,
            "encodings": encodings,
            **attrs,
        }
    )


def open_store(path: StoreLocation, kind: str, *, mode: str = "r") -> zarr.Group:
    """Open an existing store (a local folder or an fsspec URL) and check it is of `kind`.

    Raises:
        StoreNotFoundError: nothing at `path`, or no zarr group there.
        SchemaError: the store is of another kind.
    """
    if not exists(path):
        raise StoreNotFoundError(f"{path}: no store there (expected a {kind} store)")
    try:
        group = zarr.open_group(str(path), mode=mode)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as err:
        raise StoreNotFoundError(f"{path}: not a zarr group ({err})") from None
    found = group.attrs.get("store_kind")
    if found != kind:
        raise SchemaError(f"{path}: store_kind is {found!r}, expected {kind!r}")
    return group


def schema_array(group: zarr.Group, kind: str, name: str) -> zarr.Array:
    """`group[name]` set up for writing as the schema creates it.

    zarr does not keep `write_empty_chunks` with the array: opened again, every array
    skips chunks that hold only the fill value, and scans every chunk it writes to find
    them. Writers take arrays through here so the schema's choice holds for every write.
    """
    spec = load_schema().array(kind, name)
    return group[name].with_config({"write_empty_chunks": spec.write_empty_chunks})


def shard_slices(n_pairs: int, pairs_per_shard: int) -> Iterator[slice]:
    """Pair ranges of the shards of a store, in order; the last may be shorter."""
    for start in range(0, n_pairs, pairs_per_shard):
        yield slice(start, min(start + pairs_per_shard, n_pairs))
