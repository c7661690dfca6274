"""Read `store_schema.yaml`, the one description of every store, into typed specs.

Writers build arrays from an `ArraySpec` (never from ad-hoc keyword arguments) and
`validate_store` checks an existing store against the same spec, so a store on disk and
the document that describes it cannot drift apart silently.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from zarr.codecs import BloscCodec, ZstdCodec

from pipeline.errors import SchemaError, unknown_name_message

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "store_schema.yaml"

_DTYPES: dict[str, Any] = {
    "uint8": np.dtype("uint8"),
    "uint16": np.dtype("uint16"),
    "int8": np.dtype("int8"),
    "int32": np.dtype("int32"),
    "int64": np.dtype("int64"),
    "float16": np.dtype("float16"),
    "float32": np.dtype("float32"),
    "float64": np.dtype("float64"),
    "bool": np.dtype("bool"),
    "string": np.dtypes.StringDType(),
}
_ATTR_TYPES: dict[str, type | tuple[type, ...]] = {
    "int": int,
    "float": (int, float),
    "str": str,
    "bool": bool,
    "list": list,
    "dict": dict,
}


@dataclass(frozen=True)
class ArraySpec:
    """One array of a store as the schema describes it.

    `chunks` and `shards` hold ints or names: a dim name means the whole dim, `shard`
    means the store's pairs-per-shard. `resolve` turns them into numbers.
    """

    store: str
    name: str
    dims: tuple[str, ...]
    dtype_name: str
    chunks: tuple[int | str, ...]
    shards: tuple[int | str, ...] | None
    codec: str | None
    fill_value: Any
    description: str
    write_empty_chunks: bool = True
    encodings: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """'store.array', how error messages refer to this entry of store_schema.yaml."""
        return f"{self.store}.{self.name}"

    @property
    def dtype(self) -> Any:
        return _DTYPES[self.dtype_name]

    def encoded(self, encoding: str | None) -> ArraySpec:
        """This entry as stored with one of its opt-in `encodings` (None: as listed).

        Raises:
            SchemaError: the array has no such encoding.
        """
        if encoding is None:
            return self
        if encoding not in self.encodings:
            raise SchemaError(f"{self.key}: {unknown_name_message('encoding', encoding, self.encodings)}")
        override = self.encodings[encoding]
        dtype = override.get("dtype", self.dtype_name)
        return replace(
            self,
            dtype_name=dtype,
            fill_value=_parse_fill(override.get("fill_value"), dtype),
            codec=override.get("codec", self.codec),
            encodings={},
        )

    def shape(self, sizes: dict[str, int]) -> tuple[int, ...]:
        """Array shape given the size of every dim."""
        missing = [d for d in self.dims if d not in sizes]
        if missing:
            raise SchemaError(f"{self.key}: no size given for dims {missing}")
        return tuple(int(sizes[d]) for d in self.dims)

    def resolve(self, entries: tuple[int | str, ...], sizes: dict[str, int]) -> tuple[int, ...]:
        """Turn symbolic chunk or shard entries into numbers (capped at the dim's size, min 1)."""
        out = []
        for dim, entry in zip(self.dims, entries, strict=True):
            value = sizes[entry] if isinstance(entry, str) else entry
            out.append(max(1, min(int(value), int(sizes[dim]))))
        return tuple(out)


@dataclass(frozen=True)
class StoreSpec:
    """A store kind: its required attributes, fixed dim sizes and arrays."""

    name: str
    description: str
    attrs: dict[str, str]
    dim_sizes: dict[str, int]
    arrays: dict[str, ArraySpec]

    def array(self, name: str) -> ArraySpec:
        if name not in self.arrays:
            raise SchemaError(unknown_name_message(f"array of store '{self.name}'", name, self.arrays))
        return self.arrays[name]


@dataclass(frozen=True)
class Schema:
    """The whole of store_schema.yaml."""

    version: int
    codecs: dict[str, dict]
    stores: dict[str, StoreSpec]
    path: Path

    def store(self, name: str) -> StoreSpec:
        if name not in self.stores:
            raise SchemaError(unknown_name_message("store kind", name, self.stores))
        return self.stores[name]

    def array(self, store: str, name: str) -> ArraySpec:
        return self.store(store).array(name)

    def compressors(self, spec: ArraySpec) -> list:
        """The zarr codec objects for an array's compression entry."""
        if spec.codec is None:
            return []
        if spec.codec not in self.codecs:
            raise SchemaError(f"{self.path.name}: {spec.key} names codec '{spec.codec}' not under 'codecs'")
        ((kind, cfg),) = self.codecs[spec.codec].items()
        if kind == "blosc":
            return [BloscCodec(**cfg)]
        if kind == "zstd":
            return [ZstdCodec(**cfg)]
        raise SchemaError(f"{self.path.name}: codec '{spec.codec}' has unknown kind '{kind}' (blosc or zstd)")


def _parse_fill(value: Any, dtype_name: str) -> Any:
    if isinstance(value, str) and value.lower() == "nan":
        return math.nan
    if value is None:
        return "" if dtype_name == "string" else 0
    return value


def _parse_array(store: str, name: str, raw: dict, path: Path) -> ArraySpec:
    where = f"{path.name}: {store}.{name}"
    for key in ("dims", "dtype", "chunks"):
        if key not in raw:
            raise SchemaError(f"{where}: missing '{key}'")
    encodings = dict(raw.get("encodings") or {})
    for dtype in [raw["dtype"], *(e.get("dtype", raw["dtype"]) for e in encodings.values())]:
        if dtype not in _DTYPES:
            raise SchemaError(f"{where}: {unknown_name_message('dtype', dtype, _DTYPES)}")
    dims = tuple(raw["dims"])
    for key in ("chunks", "shards"):
        if key in raw and len(raw[key]) != len(dims):
            raise SchemaError(f"{where}: '{key}' has {len(raw[key])} entries for {len(dims)} dims {dims}")
    return ArraySpec(
        store=store,
        name=name,
        dims=dims,
        dtype_name=raw["dtype"],
        chunks=tuple(raw["chunks"]),
        shards=tuple(raw["shards"]) if "shards" in raw else None,
        codec=raw.get("codec"),
        fill_value=_parse_fill(raw.get("fill_value"), raw["dtype"]),
        description=str(raw.get("description", "")).strip(),
        write_empty_chunks=bool(raw.get("write_empty_chunks", True)),
        encodings=encodings,
    )


@functools.cache
def load_schema(path: Path = SCHEMA_PATH) -> Schema:
    """Parse store_schema.yaml (cached: the file is read once per process)."""
    if not path.is_file():
        raise SchemaError(f"store schema not found at {path}")
    raw = yaml.safe_load(path.read_text())
    stores = {}
    for sname, sraw in raw.get("stores", {}).items():
        for t in sraw.get("attrs", {}).values():
            if t not in _ATTR_TYPES:
                raise SchemaError(
                    f"{path.name}: {sname}.attrs: {unknown_name_message('attribute type', t, _ATTR_TYPES)}"
                )
        stores[sname] = StoreSpec(
            name=sname,
            description=str(sraw.get("description", "")).strip(),
            attrs=dict(sraw.get("attrs", {})),
            dim_sizes=dict(sraw.get("dim_sizes", {})),
            arrays={a: _parse_array(sname, a, araw, path) for a, araw in sraw["arrays"].items()},
        )
    return Schema(version=int(raw["schema_version"]), codecs=raw.get("codecs", {}), stores=stores, path=path)


def attr_type_ok(value: Any, type_name: str) -> bool:
    """Whether an attribute value has the schema's type (bools are not ints here)."""
    if type_name in ("int", "float") and isinstance(value, bool):
        return False
    return isinstance(value, _ATTR_TYPES[type_name])
