"""Write whole shards of Zarr v3 arrays, compressing their inner chunks in a thread pool.

zarr-python handles each inner chunk of a shard in Python-level async machinery, which
caps a writer at about 175 MB/s here and competes with the model for the CPU during
extraction. A features shard is always written whole by one writer, so nothing needs
zarr's read-modify-write: this module builds the shard file itself, as the Zarr v3
sharding specification lays it out (inner chunks, then an index of (offset, nbytes)
uint64 pairs with a crc32c), compressing the chunks in parallel with numcodecs, which
releases the GIL. Any Zarr reader reads the result; a test checks it against zarr's own
writes. Arrays with other codecs (strings, index at the start) go through zarr.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from itertools import product

import google_crc32c
import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec, ZstdCodec
from zarr.codecs.sharding import ShardingCodecIndexLocation
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from pipeline.errors import ShapeError

EMPTY = 2**64 - 1  # index entry of an inner chunk that is not stored
_SHUFFLE = {"noshuffle": numcodecs.Blosc.NOSHUFFLE, "shuffle": numcodecs.Blosc.SHUFFLE, "bitshuffle": 2}


def _compressor(array: zarr.Array) -> Callable[[np.ndarray], bytes] | None:
    """The inner chunks' byte compressor of a sharded numeric array, or None if not handled here."""
    codecs = array.metadata.codecs
    if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
        return None
    sharding = codecs[0]
    index_ok = [type(c) for c in sharding.index_codecs] == [BytesCodec, Crc32cCodec]
    if sharding.index_location != ShardingCodecIndexLocation.end or not index_ok:
        return None
    inner = sharding.codecs
    if not inner or not isinstance(inner[0], BytesCodec) or len(inner) > 2:
        return None
    if array.dtype.kind not in "biuf" or (array.dtype.itemsize > 1 and inner[0].endian.value != "little"):
        return None
    if len(inner) == 1:
        return lambda chunk: chunk.tobytes()
    codec = inner[1]
    if isinstance(codec, BloscCodec):
        blosc = numcodecs.Blosc(
            cname=codec.cname.value,
            clevel=codec.clevel,
            shuffle=_SHUFFLE[codec.shuffle.value],
            blocksize=codec.blocksize,
            typesize=codec.typesize,
        )
        return lambda chunk: blosc.encode(chunk.reshape(-1).view(np.uint8))
    if isinstance(codec, ZstdCodec):
        zstd = numcodecs.Zstd(level=codec.level, checksum=codec.checksum)
        return lambda chunk: zstd.encode(chunk.reshape(-1).view(np.uint8))
    return None


def supports(array: zarr.Array) -> bool:
    """True if `write_shard` can write this array itself (sharded, numeric, bytes + blosc/zstd)."""
    return _compressor(array) is not None


def _inner_chunks(shard_shape: tuple[int, ...], chunk_shape: tuple[int, ...]) -> Iterator[tuple[slice, ...]]:
    """Slices of the inner chunks of one shard, in C order (the order of the shard index)."""
    counts = [s // c for s, c in zip(shard_shape, chunk_shape, strict=True)]
    for index in product(*(range(n) for n in counts)):
        yield tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, chunk_shape, strict=True))


def _is_fill(chunk: np.ndarray, fill_value: object) -> bool:
    if isinstance(fill_value, float) and np.isnan(fill_value):
        return bool(np.isnan(chunk).all())
    return bool((chunk == fill_value).all())


def encode_shard(
    array: zarr.Array, shard_coords: tuple[int, ...], data: np.ndarray, pool: Executor
) -> bytes | None:
    """The bytes of one shard file of `array`, or None when every inner chunk is empty.

    Args:
        array: a sharded array that `supports`.
        shard_coords: the shard's position in the shard grid.
        data: the values of the shard's region of the array (cut at the array's end).
        pool: runs the inner chunks' compression in parallel.

    Raises:
        ShapeError: `data` is not the shape of that region.
    """
    compress = _compressor(array)
    if compress is None:
        raise ValueError(f"{array.path}: codecs not handled by shard_writer; write through zarr")
    shard_shape = array.shards
    chunk_shape = array.metadata.codecs[0].chunk_shape
    start = [c * s for c, s in zip(shard_coords, shard_shape, strict=True)]
    region = tuple(min(s, n - b) for s, n, b in zip(shard_shape, array.shape, start, strict=True))
    if tuple(data.shape) != region:
        raise ShapeError(
            f"{array.path}: shard {shard_coords} covers {region}, got data of shape {data.shape}"
        )
    fill = array.metadata.fill_value
    fill = fill.item() if isinstance(fill, np.generic) else fill
    if region == tuple(shard_shape):
        full = np.asarray(data, dtype=array.dtype)
    else:  # the last shard: pad to whole inner chunks with the fill value, as zarr does
        full = np.full(shard_shape, fill, dtype=array.dtype)
        full[tuple(slice(0, r) for r in region)] = data
    skip_empty = not array.config.write_empty_chunks
    slices = list(_inner_chunks(shard_shape, chunk_shape))
    inside = [all(s.start < r for s, r in zip(sl, region, strict=True)) for sl in slices]

    def one(k: int) -> bytes | None:
        chunk = np.ascontiguousarray(full[slices[k]])
        if not inside[k] or (skip_empty and _is_fill(chunk, fill)):
            return None
        return compress(chunk.astype(chunk.dtype.newbyteorder("<"), copy=False))

    encoded = list(pool.map(one, range(len(slices))))
    if all(e is None for e in encoded):
        return None
    index = np.full((len(slices), 2), EMPTY, dtype="<u8")
    offset = 0
    for k, blob in enumerate(encoded):
        if blob is not None:
            index[k] = (offset, len(blob))
            offset += len(blob)
    index_bytes = index.tobytes()
    checksum = np.uint32(google_crc32c.value(index_bytes)).astype("<u4").tobytes()
    return b"".join(e for e in encoded if e is not None) + index_bytes + checksum


def write_shard(array: zarr.Array, shard_coords: tuple[int, ...], data: np.ndarray, pool: Executor) -> None:
    """Replace one whole shard of `array` with `data` (see `encode_shard`); an empty shard is deleted."""
    blob = encode_shard(array, shard_coords, data, pool)
    store = array.store_path.store
    # an array at the store's root has path "": its key must stay relative ("c/0", never "/c/0")
    key = "/".join(
        part for part in (array.store_path.path, array.metadata.encode_chunk_key(shard_coords)) if part
    )
    if blob is None:
        sync(store.delete(key))
    else:
        sync(store.set(key, default_buffer_prototype().buffer.from_bytes(blob)))
