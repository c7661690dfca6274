"""Probe-training throughput, side by side in one run (numbers go to docs/probes.md).

Measures, on synthetic stores shaped like the `small` DUSt3R (38 locations per view, N =
196 tokens at 224x224):
  * all locations in one pass vs one location at a time (same steps each, in-memory data);
  * store-fed vs in-memory-fed vs live-fed (the model's forward pass) training;
  * the raw read rate of the same bytes from the store: the same batches through the
    store source without training, and plain zarr reads of whole shards.
Training feeds are timed best-of-2 (the machine may be shared); location by location is
the sum over 38 single-location runs.
Throughput is in pairs per second with every location trained, i.e. a location-by-location
run must train all 38 locations before it has seen a pair at every location.

    .venv/bin/python benchmarks/probes.py --pairs 16 --batch-size 4 --steps 4 --kind linear
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr

from pipeline.memory import keep_freed_memory
from pipeline.model.registry import build_model, get_config
from pipeline.probes.batches import TensorSource
from pipeline.probes.live import LiveSource
from pipeline.probes.probeset import ProbeSet, ProbeSpec
from pipeline.probes.store_source import StoreSource
from pipeline.probes.trainer import TrainConfig, train
from pipeline.probing.locations import residual_locations
from pipeline.store.features import FeatureLayout, create_features_store
from pipeline.store.writer import create_store


def make_stores(root: Path, n_pairs: int, model: str) -> tuple[Path, Path, list[str]]:
    """Random renders and features stores with the model's sizes (content does not matter here)."""
    cfg = get_config(model)
    H, W = cfg.img_size
    grid = (H // cfg.patch_size, W // cfg.patch_size)
    g = np.random.default_rng(0)
    renders = root / "renders.zarr"
    r = create_store(
        renders,
        "renders",
        sizes={"pair": n_pairs, "y": H, "x": W},
        pairs_per_shard=8,
        attrs={"params": {"bench": 1}, "n_pairs": n_pairs, "pairs_per_shard": 8, "image_size": [H, W]},
        coords={"view": np.array([1, 2])},
    )
    r["rgb"][:] = g.integers(0, 256, (n_pairs, 2, H, W, 3), dtype=np.uint8)
    r["pts3d_view1"][:] = (g.normal(size=(n_pairs, 2, H, W, 3)) + np.array([0, 0, 4])).astype(np.float32)
    r["depth"][:] = g.uniform(1, 5, (n_pairs, 2, H, W)).astype(np.float32)
    r["valid"][:] = g.random((n_pairs, 2, H, W)) > 0.1
    r["status"][:] = 1
    r["split"][:] = np.array(["train"] * n_pairs, dtype=np.dtypes.StringDType())
    dec = residual_locations(cfg.dec_depth)[1:]
    layout = FeatureLayout(
        n_pairs=n_pairs,
        pairs_per_shard=8,
        locations=tuple(dec),
        attn_locations=(),
        image_size=(H, W),
        patch_grid=grid,
        enc_dim=cfg.enc_embed_dim,
        dec_dim=cfg.dec_embed_dim,
        n_heads=cfg.dec_num_heads,
    )
    features = root / "features.zarr"
    f = create_features_store(features, layout, attrs={"renders": {"params": {"bench": 1}}})
    n = grid[0] * grid[1]
    for s in range(0, n_pairs, 8):
        sl = slice(s, min(s + 8, n_pairs))
        k = sl.stop - sl.start
        f["enc"][sl] = g.normal(size=(k, 2, n, cfg.enc_embed_dim)).astype(np.float16)
        f["acts"][sl] = g.normal(size=(k, 2, len(dec), n, cfg.dec_embed_dim)).astype(np.float16)
    f["split"][:] = np.array(["train"] * n_pairs, dtype=np.dtypes.StringDType())
    f["status"][:] = 1
    return features, renders, ["enc", *dec]


def timed_train(sets: dict[str, ProbeSet], source, cfg: TrainConfig, repeats: int = 1) -> float:
    """Best-of-`repeats` seconds for cfg.steps steps, after one untimed warm-up step."""
    train(sets, source, None, TrainConfig(**{**cfg.__dict__, "steps": 1}), progress=False)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        train(sets, source, None, cfg, progress=False)
        best = min(best, time.perf_counter() - t)
    return best


def plain_read_rate(features: Path, renders: Path, n_pairs: int) -> float:
    """Pairs/s reading every pair's acts, enc and targets in whole-shard slices with plain zarr."""
    f, r = zarr.open_group(str(features), mode="r"), zarr.open_group(str(renders), mode="r")
    t = time.perf_counter()
    for s in range(0, n_pairs, 8):
        for array in (f["acts"], f["enc"], r["pts3d_view1"], r["depth"], r["valid"]):
            array[s : s + 8]
    return n_pairs / (time.perf_counter() - t)


def main() -> None:
    keep_freed_memory()  # as the train_probes stage does: batched steps reuse their pages
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="small")
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--kind", default="linear")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument(
        "--prefetch", type=int, default=2, help="store batches read ahead in a thread (0: inline)"
    )
    ap.add_argument("--skip-separate", action="store_true", help="skip the slow location-by-location run")
    args = ap.parse_args()
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size)
    pairs_done = args.steps * args.batch_size
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        features, renders, locs = make_stores(Path(tmp), args.pairs, args.model)
        store = StoreSource(
            features, renders, locs, splits=["train"], batch_size=args.batch_size, prefetch=args.prefetch
        )
        spec = {"kind": args.kind, "grid": store.grid, "hidden": args.hidden}

        def new_sets(widths: dict[str, int]) -> dict[str, ProbeSet]:
            return {args.kind: ProbeSet(ProbeSpec(widths=widths, **spec))}

        # raw read: the same batches, the same bytes, no training
        t = time.perf_counter()
        for _, _ in zip(range(pairs_done // args.batch_size), store.batches(), strict=False):
            pass
        results["raw_store_read"] = pairs_done / (time.perf_counter() - t)
        results["plain_zarr_shard_read"] = plain_read_rate(features, renders, args.pairs)
        all_idx = np.arange(args.pairs)
        whole = store.read(all_idx)
        memory = TensorSource(
            {k: v.contiguous() for k, v in whole.acts.items()},
            whole.pts3d,
            whole.depth,
            whole.valid,
            pairs=all_idx,
            batch_size=args.batch_size,
        )
        results["in_memory_fed"] = pairs_done / timed_train(new_sets(store.widths), memory, cfg, 2)
        results["store_fed"] = pairs_done / timed_train(new_sets(store.widths), store, cfg, 2)
        model = build_model(args.model, seed=0).eval()
        live = LiveSource(model, renders, locs, splits=["train"], batch_size=args.batch_size)
        results["live_fed"] = pairs_done / timed_train(new_sets(store.widths), live, cfg)
        if not args.skip_separate:
            total = sum(timed_train(new_sets({loc: store.widths[loc]}), memory, cfg) for loc in locs)
            results["location_by_location"] = pairs_done / total
    results = {k: round(v, 3) for k, v in results.items()}
    report = {
        "setup": {
            **vars(args),
            "locations": len(locs),
            "probes": 2 * len(locs),
            "torch_threads": torch.get_num_threads(),
        },
        "pairs_per_s": results,
    }
    if "location_by_location" in results:
        report["one_pass_speedup"] = round(results["in_memory_fed"] / results["location_by_location"], 2)
    slower = min(results["in_memory_fed"], results["raw_store_read"])
    report["store_fed_over_slower_of_memory_and_read"] = round(results["store_fed"] / slower, 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
