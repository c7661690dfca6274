"""Extract throughput, store sizes and attention encodings, side by side in one run.

Prints: forward-only pairs/s (captured forward, no store), store-write pairs/s for the
same bytes without the model, extract pairs/s (all residual locations + compact
attention, end to end) with encoding and writing in a thread beside the model and in turn
with it (the job picks one by `overlap_pays`), MB/s, stored bytes per pair and compression ratio per array, the
attention encodings (size vs float16, error, argmaxes kept) on the model's own maps and on
peaky synthetic maps, float16 codec choices, and the two read patterns' timings.

    .venv/bin/python benchmarks/extract.py --model small --n-pairs 32
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numcodecs
import numpy as np
import torch
import zarr

from pipeline.jobs import extract as extract_job
from pipeline.jobs.extract import overlap_pays, run_extract
from pipeline.jobs.extract_model import ModelRunner
from pipeline.jobs.extract_params import ExtractParams
from pipeline.jobs.extract_shard import ShardInput, features_for_shard
from pipeline.store import attention_codec
from pipeline.store.features import SHARD_ARRAYS, create_features_store, write_shard
from pipeline.store.float16 import shorten_mantissa
from pipeline.store.int8 import decode_int8, encode_int8
from pipeline.store.writer import create_store


def make_renders(path: Path, n_pairs: int, size: int, pairs_per_shard: int) -> None:
    """Renders with smooth random images (blocky noise): the model sees varied inputs."""
    group = create_store(
        path,
        "renders",
        sizes={"pair": n_pairs, "y": size, "x": size},
        pairs_per_shard=pairs_per_shard,
        attrs={
            "params": {"bench": True},
            "n_pairs": n_pairs,
            "pairs_per_shard": pairs_per_shard,
            "image_size": [size, size],
            "camera_convention": "opencv",
            "complete": True,
            "failed_scenes": [],
        },
        coords={"view": np.array([1, 2])},
    )
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (n_pairs, 2, size // 16, size // 16, 3), dtype=np.uint8)
    group["rgb"][:] = coarse.repeat(16, axis=2).repeat(16, axis=3)
    group["split"][:] = np.array(
        ["test" if i % 10 == 0 else "train" for i in range(n_pairs)], dtype=np.dtypes.StringDType()
    )
    group["scene_id"][:] = np.array(["bench"] * n_pairs, dtype=np.dtypes.StringDType())
    group["status"][:] = 1


def attention_table(p: np.ndarray, label: str) -> None:
    """Size of each encoding (zstd-3 on the encoded bytes) against raw float16, error, argmax kept."""
    zstd = numcodecs.Zstd(level=3)
    fp16 = p.astype(np.float16).nbytes
    print(f"\nattention encodings on {label} ({p.shape}, raw fp16 {fp16 / 1e6:.2f} MB)")
    print(
        f"  {'encoding':<14}{'x smaller than fp16':>20}{'max abs err':>14}{'argmax kept':>13}{'mass lost':>11}"
    )
    for name in attention_codec.ENCODINGS:
        parts = attention_codec.encode(p, name, k=8)
        size = sum(len(zstd.encode(np.ascontiguousarray(v))) for v in parts.values())
        q = attention_codec.decode(parts, name, p.shape[-1])
        lost = float(np.maximum(p - q, 0).sum(-1).mean()) if name == "topk" else 0.0
        kept = attention_codec.argmax_preserved(p, parts, q)
        print(
            f"  {name if name != 'topk' else 'topk-8':<14}{fp16 / size:>20.1f}{np.abs(q - p).max():>14.2e}{kept:>13.4f}{lost:>11.3f}"
        )


def float16_codecs(acts: np.ndarray) -> None:
    """Lossless and lossy ratios and encode speed of the float16 residual stream."""
    x = np.ascontiguousarray(acts.astype(np.float16))
    print(f"\nfloat16 features: codecs on {x.nbytes / 1e6:.1f} MB of captured activations")
    cases = {
        "blosc zstd1 shuffle 256K": (
            numcodecs.Blosc("zstd", 1, numcodecs.Blosc.SHUFFLE, blocksize=262144),
            x,
        ),
        "blosc zstd1 shuffle auto": (numcodecs.Blosc("zstd", 1, numcodecs.Blosc.SHUFFLE), x),
        "blosc zstd1 bitshuffle 256K": (
            numcodecs.Blosc("zstd", 1, numcodecs.Blosc.BITSHUFFLE, blocksize=262144),
            x,
        ),
        "zstd 3": (numcodecs.Zstd(level=3), x),
        "zstd 9": (numcodecs.Zstd(level=9), x),
        "fp16-m7 + blosc zstd1 shuffle": (
            numcodecs.Blosc("zstd", 1, numcodecs.Blosc.SHUFFLE, blocksize=262144),
            shorten_mantissa(x, 7),
        ),
        "fp16-m5 + blosc zstd1 shuffle": (
            numcodecs.Blosc("zstd", 1, numcodecs.Blosc.SHUFFLE, blocksize=262144),
            shorten_mantissa(x, 5),
        ),
    }
    for name, (codec, data) in cases.items():
        t = time.perf_counter()
        size = len(codec.encode(data))
        dt = time.perf_counter() - t
        print(f"  {name:<32} ratio {x.nbytes / size:5.2f}   encode {x.nbytes / dt / 1e6:7.0f} MB/s")
    t = time.perf_counter()
    codes, scale = encode_int8(torch.from_numpy(np.asarray(acts, np.float32)))
    size = len(numcodecs.Blosc("zstd", 1, numcodecs.Blosc.SHUFFLE, blocksize=262144).encode(codes))
    size += len(numcodecs.Zstd(level=3).encode(scale))
    dt = time.perf_counter() - t
    ref = np.asarray(acts, np.float64)
    err = decode_int8(codes, scale) - ref
    rel_rms = np.sqrt(np.mean(err**2) / np.mean(ref**2))
    print(
        f"  {'int8 per-channel + blosc zstd1':<32} ratio {x.nbytes / size:5.2f}   encode {x.nbytes / dt / 1e6:7.0f} MB/s"
        f"   relative RMS error {rel_rms:.2%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small")
    parser.add_argument("--n-pairs", type=int, default=32)
    parser.add_argument("--pairs-per-shard", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--model-threads",
        type=int,
        default=0,
        help="torch threads for the model (0: torch's default, every core). 1 on a 2-core machine leaves a "
        "core to the writer, as a GPU leaves the CPU: it shows whether compute and I/O overlap",
    )
    args = parser.parse_args()
    if args.model_threads:
        torch.set_num_threads(args.model_threads)
    root = Path(tempfile.mkdtemp(prefix="probe3r-bench-"))
    params = ExtractParams(
        model=args.model,
        pairs_per_shard=args.pairs_per_shard,
        batch_size=args.batch_size,
        full_attention_splits=(),
    )
    runner = ModelRunner.from_params(params)
    size = runner.model.config.img_size[0]
    make_renders(root / "renders.zarr", args.n_pairs, size, args.pairs_per_shard)
    rgb = zarr.open_group(str(root / "renders.zarr"), mode="r")["rgb"][:]
    n = args.n_pairs
    print(
        f"model {args.model} ({runner.weights_id}), {size}x{size}, {n} pairs, device {runner.device}, "
        f"{len(runner.locations)} locations + enc, {len(runner.attn_locations)} attention maps per view"
    )

    runner(rgb[: args.batch_size])  # warm-up
    t = time.perf_counter()
    for i in range(0, n, args.batch_size):
        batch = {k: v.numpy() for k, v in runner(rgb[i : i + args.batch_size]).items()}
    forward = n / (time.perf_counter() - t)

    layout = runner.layout(n_pairs=n, image_size=(size, size))
    shard = ShardInput(
        0,
        0,
        rgb[: args.pairs_per_shard],
        np.ones(args.pairs_per_shard, bool),
        np.array(["bench"] * args.pairs_per_shard),
        np.array(["train"] * args.pairs_per_shard),
        np.zeros(args.pairs_per_shard, bool),
    )
    data = features_for_shard(
        runner,
        shard,
        layout,
        batch_size=args.batch_size,
        overflow="error",
        mantissa_bits=10,
        full_attn_locations=np.zeros(len(layout.attn_locations), bool),
    )
    group = create_features_store(root / "write.zarr", layout, attrs={})
    t = time.perf_counter()
    for k in range(layout.n_shards):
        write_shard(group, k, k * args.pairs_per_shard, data)
    write = n / (time.perf_counter() - t)
    plain = create_features_store(root / "plain.zarr", layout, attrs={})
    t = time.perf_counter()
    for k in range(layout.n_shards):  # the same arrays through zarr's own write path
        sl = slice(k * args.pairs_per_shard, (k + 1) * args.pairs_per_shard)
        for name in (*SHARD_ARRAYS, "status"):
            if data.get(name) is not None:
                plain[name][sl] = data[name]
    zarr_write = n / (time.perf_counter() - t)

    chosen = overlap_pays(runner.device)
    rates = {}
    for overlap in (not chosen, chosen):  # the job's own choice last: its store is kept
        shutil.rmtree(root / "features.zarr", ignore_errors=True)
        extract_job.overlap_pays = lambda device, overlap=overlap: overlap
        t = time.perf_counter()
        run_extract(root / "renders.zarr", root / "features.zarr", params)
        dt = time.perf_counter() - t
        rates[overlap] = n / dt
    extract_job.overlap_pays = overlap_pays
    extract = rates[chosen]
    stored = zarr.open_group(str(root / "features.zarr"), mode="r")
    total = sum(a.nbytes_stored() for _, a in stored.arrays())
    print(f"\n  forward only   {forward:8.2f} pairs/s")
    print(f"  store write    {write:8.2f} pairs/s  (same bytes, no model; whole-shard writer)")
    print(
        f"  zarr write     {zarr_write:8.2f} pairs/s  (the same through zarr: whole-shard writer {write / zarr_write:.2f}x)"
    )
    for overlap, rate in rates.items():
        how = "writer thread beside the model" if overlap else "encode and write in turn with the model"
        mark = "  <- the job's choice here" if overlap == chosen else ""
        print(
            f"  extract        {rate:8.2f} pairs/s  = {rate / min(forward, write):.2f} x the slower of the two ({how}){mark}"
        )
    print(f"  extract stores {total / n * extract / 1e6:.1f} MB/s")
    print("\n  bytes per pair stored, and compression ratio")
    for name in ("acts", "enc", "attn", "attn_argmax", "pts3d", "conf", "token_norm"):
        a = stored[name]
        print(
            f"  {name:<12}{a.nbytes_stored() / n / 1e6:9.3f} MB   ratio {a.nbytes / a.nbytes_stored():5.2f}"
        )
    print(f"  {'all':<12}{total / n / 1e6:9.3f} MB")

    t = time.perf_counter()
    stored["acts"][:, :, len(layout.locations) // 2]
    one_loc = time.perf_counter() - t
    t = time.perf_counter()
    stored["acts"][n // 2]
    one_pair = time.perf_counter() - t
    print(
        f"\n  read one location of all {n} pairs: {one_loc * 1e3:.0f} ms; all locations of one pair: {one_pair * 1e3:.0f} ms"
    )

    attention_table(batch["attn"][:2], f"{args.model}'s maps (random init: near uniform)")
    logits = np.random.default_rng(0).standard_normal(batch["attn"][:2].shape) * np.random.default_rng(
        1
    ).uniform(2, 8, (*batch["attn"][:2].shape[:-1], 1))
    peaky = np.exp(logits - logits.max(-1, keepdims=True))
    attention_table(
        (peaky / peaky.sum(-1, keepdims=True)).astype(np.float32),
        "peaky synthetic maps (softmax, logit std 2-8)",
    )
    float16_codecs(batch["acts"])
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
