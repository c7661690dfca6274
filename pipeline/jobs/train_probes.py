"""The train_probes job: a features store (or the live model) → models/probes/<set>/.

Every probe kind asked for (mlp, linear) is trained at every location asked for in one
pass over the training pairs; each kind becomes one probe set folder (safetensors + JSON).
Loss curves go to a separate folder for `dvc plots`, and a checkpoint lets a killed run
resume; it is removed once the probe files are written.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from torch import nn

from pipeline.errors import ConfigError
from pipeline.jobs.extract_model import pick_device
from pipeline.memory import keep_freed_memory
from pipeline.params import section_kwargs
from pipeline.probes.batches import ProbeSource
from pipeline.probes.files import save_probes
from pipeline.probes.heads import Head
from pipeline.probes.live import LiveSource
from pipeline.probes.probeset import ProbeSet, ProbeSpec
from pipeline.probes.store_source import StoreSource
from pipeline.probes.trainer import TrainConfig, train
from pipeline.probing.locations import residual_locations
from pipeline.store.writer import open_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainProbesParams(TrainConfig):
    """params.yaml `train_probes:`: the training budget (TrainConfig's fields, inherited so
    their defaults and checks live in one place) plus what to probe and where.

    Attributes:
        kinds: probe kinds trained together ("mlp", "linear").
        locations: "all" (enc and every location of the store) or a list of names.
        head: "pointmap" or "depth", the head of the `kinds` sets.
        depth_kinds: kinds also trained, in the same pass, with the depth head (sets named
            "depth-<kind>"): the depth-vs-pointmap comparison of the paper's Table 1.
        depth_beta: depth = beta · exp(raw) for depth probes.
        hidden, n_layers, shared_views: probe architecture (see ProbeSpec).
        train_splits, val_splits: pairs used for training and for validation, by scene split.
        prefetch: batches read ahead from the store.
        device: "auto" (cuda when available), "cpu" or "cuda[:i]".
    """

    kinds: tuple[str, ...] = ("mlp",)
    locations: str | tuple[str, ...] = "all"
    head: str = "pointmap"
    depth_kinds: tuple[str, ...] = ()
    depth_beta: float = 1.0
    hidden: int = 1024
    n_layers: int = 5
    shared_views: bool = False
    train_splits: tuple[str, ...] = ("train",)
    val_splits: tuple[str, ...] = ("val",)
    prefetch: int = 2
    device: str = "auto"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainProbesParams:
        """Build from a params.yaml section; unknown keys are refused by name."""
        return cls(**section_kwargs(cls, "train_probes", raw))

    def train_config(self) -> TrainConfig:
        names = {f.name for f in fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in asdict(self).items() if k in names})


def build_sets(
    params: TrainProbesParams, widths: dict[str, int], grid: tuple[int, int], patch_size: int
) -> dict[str, ProbeSet]:
    """One probe set per kind (and per depth kind), at every location of `widths`."""
    heads = [(kind, Head(params.head, beta=params.depth_beta)) for kind in params.kinds]
    heads += [(kind, Head("depth", beta=params.depth_beta)) for kind in params.depth_kinds]
    specs = [
        ProbeSpec(
            kind,
            widths,
            grid,
            patch_size=patch_size,
            head=head,
            hidden=params.hidden,
            n_layers=params.n_layers,
            shared_views=params.shared_views,
            seed=params.seed,
        )
        for kind, head in heads
    ]
    if len({s.name for s in specs}) != len(specs):
        raise ConfigError(
            f"train_probes: a probe set is listed twice (kinds {list(params.kinds)}, head {params.head!r}, "
            f"depth_kinds {list(params.depth_kinds)})"
        )
    return {s.name: ProbeSet(s) for s in specs}


def store_locations(features: Path, choice: str | tuple[str, ...]) -> list[str]:
    """The locations to probe: "all" means enc plus every location the store holds."""
    if choice != "all":
        return list(choice)
    return ["enc", *(str(x) for x in open_store(features, "features")["location"][:])]


def run_train_probes(
    features: Path,
    renders: Path,
    out: Path,
    params: TrainProbesParams,
    *,
    curves_dir: Path,
    model: nn.Module | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train every probe set and write `out/<set>/{probes.safetensors,config.json}`.

    Args:
        features: the features store (unused in live mode).
        renders: the renders store the targets (and, live, the images) come from.
        out: folder of the probe sets; `out/checkpoint.pt` while training.
        params: kinds, locations, architecture and budget.
        curves_dir: where train_loss.csv, val_loss.csv and val_loss.json go.
        model: a `Dust3r` to train from live, tuned-lens style, instead of the store;
            "all" locations then means the model's residual-stream locations.
        progress: show a progress bar.

    Returns:
        set name → location → final validation loss.
    """
    keep_freed_memory()  # every step allocates the same large batched tensors: reuse them (2x on CPU)
    cfg = params.train_config()
    common = {"batch_size": cfg.batch_size, "seed": cfg.seed}
    if model is None:
        locs = store_locations(features, params.locations)

        def make(splits: tuple[str, ...]) -> ProbeSource:
            return StoreSource(features, renders, locs, splits=splits, prefetch=params.prefetch, **common)
    else:
        depth = model.config.dec_depth
        locs = residual_locations(depth) if params.locations == "all" else list(params.locations)

        def make(splits: tuple[str, ...]) -> ProbeSource:
            return LiveSource(model, renders, locs, splits=splits, **common)

    source, val_source = make(params.train_splits), make(params.val_splits)
    if len(val_source.pairs) == 0:
        log.warning("no pairs in splits %s: skipping validation", list(params.val_splits))
        val_source = None
    sets = build_sets(params, source.widths, source.grid, source.image_size[0] // source.grid[0])
    device = pick_device(params.device)
    for s in sets.values():
        s.to(device)
    started = time.time()
    result = train(
        sets,
        source,
        val_source,
        cfg,
        checkpoint=out / "checkpoint.pt",
        curves_dir=curves_dir,
        progress=progress,
    )
    meta = {
        "features": source.identity(),
        "training": {
            **asdict(cfg),
            "pairs_seen": cfg.steps * cfg.batch_size,
            "wall_s": time.time() - started,
        },
    }
    for name, s in sets.items():
        save_probes(
            out / name,
            s,
            {**meta, "final_loss": {"train": result["train"][name], "val": result["val"].get(name, {})}},
        )
    (curves_dir / "val_loss.json").write_text(json.dumps(result["val"], indent=2) + "\n")
    (out / "checkpoint.pt").unlink(missing_ok=True)
    return result["val"]
