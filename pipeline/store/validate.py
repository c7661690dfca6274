"""Check a store on disk against store_schema.yaml and summarise it.

Each problem is one sentence naming the store, the array or attribute, what the schema
expects and what was found, so `probe3r store validate` output can be acted on directly.
"""

from __future__ import annotations

import numpy as np
import zarr

from pipeline.errors import SchemaError, StoreNotFoundError
from pipeline.store.location import StoreLocation, exists
from pipeline.store.schema import ArraySpec, Schema, attr_type_ok, load_schema


def _open_any(path: StoreLocation) -> zarr.Group:
    if not exists(path):
        raise StoreNotFoundError(f"{path}: no store there")
    try:
        return zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as err:
        raise StoreNotFoundError(f"{path}: not a zarr group ({err})") from None


def _codec_problems(
    path: StoreLocation, name: str, array: zarr.Array, expected: list, where: str
) -> list[str]:
    found = [type(c).__name__ for c in array.compressors]
    want = [type(c).__name__ for c in expected]
    if found != want:
        return [f"{path}: array '{name}' has compressors {found} where {where} expects {want}"]
    return []


def validate_store(path: StoreLocation, schema: Schema | None = None) -> list[str]:
    """Every way the store at `path` differs from its schema entry; empty when it conforms.

    The store kind is read from the group's `store_kind` attribute.
    """
    schema = schema or load_schema()
    group = _open_any(path)
    kind = group.attrs.get("store_kind")
    if kind is None:
        return [f"{path}: missing attribute 'store_kind' (one of {sorted(schema.stores)})"]
    if kind not in schema.stores:
        return [f"{path}: store_kind {kind!r} is not in {schema.path.name} ({sorted(schema.stores)})"]
    spec = schema.store(kind)
    problems: list[str] = []
    attrs = dict(group.attrs)
    for aname, type_name in spec.attrs.items():
        if aname not in attrs:
            problems.append(
                f"{path}: missing attribute '{aname}' ({type_name}) required by {schema.path.name} ({kind})"
            )
        elif not attr_type_ok(attrs[aname], type_name):
            problems.append(
                f"{path}: attribute '{aname}' is {type(attrs[aname]).__name__} where {schema.path.name} ({kind}) expects {type_name}"
            )
    if attrs.get("schema_version") not in (None, schema.version):
        problems.append(
            f"{path}: schema_version {attrs['schema_version']} but {schema.path.name} is version {schema.version}"
        )
    present = {name for name, _ in group.arrays()}
    for name in sorted(present - set(spec.arrays)):
        problems.append(f"{path}: array '{name}' is not listed in {schema.path.name} ({kind})")
    sizes: dict[str, int] = dict(spec.dim_sizes)
    encodings = attrs.get("encodings") or {}
    if not isinstance(encodings, dict):
        problems.append(f"{path}: attribute 'encodings' is {type(encodings).__name__}, expected a dict")
        encodings = {}
    for name, listed in spec.arrays.items():
        where = f"{schema.path.name} ({listed.key})"
        try:
            aspec = listed.encoded(encodings.get(name))
        except SchemaError as err:
            problems.append(f"{path}: `encodings` attribute: {err}")
            continue
        if name in encodings:
            where += f" with encoding {encodings[name]!r}"
        if name not in present:
            problems.append(f"{path}: missing array '{name}' listed in {where}")
            continue
        array = group[name]
        dims = tuple(array.metadata.dimension_names or ())
        if dims != aspec.dims:
            problems.append(f"{path}: array '{name}' has dims {dims} where {where} expects {aspec.dims}")
            continue
        if aspec.dtype_name == "string":
            ok = array.dtype.kind in ("T", "U", "O")
        else:
            ok = np.dtype(array.dtype) == aspec.dtype
        if not ok:
            problems.append(
                f"{path}: array '{name}' has dtype {array.dtype} where {where} expects {aspec.dtype_name}"
            )
        for dim, n in zip(dims, array.shape, strict=True):
            if sizes.setdefault(dim, n) != n:
                problems.append(
                    f"{path}: array '{name}' has {dim}={n} where other arrays have {dim}={sizes[dim]}"
                )
        problems += _codec_problems(path, name, array, schema.compressors(aspec), where)
        if (aspec.shards is not None) != (array.shards is not None):
            problems.append(
                f"{path}: array '{name}' is {'' if array.shards else 'not '}sharded where {where} says "
                f"{'shards' if aspec.shards else 'no shards'}"
            )
        elif isinstance(attrs.get("pairs_per_shard"), int):
            problems += _layout_problems(path, name, array, aspec, attrs["pairs_per_shard"], where)
    return problems


def _layout_problems(
    path: StoreLocation, name: str, array: zarr.Array, aspec: ArraySpec, pairs_per_shard: int, where: str
) -> list[str]:
    """Chunk and shard shapes against the schema, resolved with the array's own dim sizes."""
    sizes = {**dict(zip(aspec.dims, array.shape, strict=True)), "shard": pairs_per_shard}
    problems = []
    for field, found, entries in (
        ("chunks", array.chunks, aspec.chunks),
        ("shards", array.shards, aspec.shards),
    ):
        if entries is None:
            continue
        expected = aspec.resolve(entries, sizes)
        if tuple(found) != expected:
            problems.append(
                f"{path}: array '{name}' has {field} {tuple(found)} where {where} expects {expected}"
            )
    return problems


def ensure_valid(path: StoreLocation) -> None:
    """Raise SchemaError listing every problem `validate_store` finds."""
    problems = validate_store(path)
    if problems:
        raise SchemaError(f"{path} does not match the schema:\n  " + "\n  ".join(problems))


def store_info(path: StoreLocation) -> str:
    """A human-readable summary: kind, attributes and each array's dims, dtype, chunks and size."""
    group = _open_any(path)
    lines = [f"{path}  (store_kind={group.attrs.get('store_kind')!r})", "attributes:"]
    for key, value in sorted(group.attrs.items()):
        text = repr(value)
        lines.append(f"  {key}: {text if len(text) < 100 else text[:97] + '...'}")
    lines.append("arrays:")
    for name, array in sorted(group.arrays()):
        dims = ", ".join(
            f"{d}: {n}" for d, n in zip(array.metadata.dimension_names or (), array.shape, strict=False)
        )
        lines.append(
            f"  {name:<14} ({dims})  {array.dtype}  chunks={array.chunks}  shards={array.shards}  "
            f"stored={array.nbytes_stored() / 2**20:.1f} MiB"
        )
    return "\n".join(lines)
