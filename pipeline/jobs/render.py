"""The render job: scenes → sampled view pairs → data/renders.zarr, shard by shard.

Pair i is fully determined by (seed, i): its scene is scene i // pairs_per_scene and its
camera sampler is seeded with (seed, i). So the store does not depend on how many workers
ran, in which order shards finished, or whether the run was killed and resumed: a shard is
written whole and its `status` last, and a resumed run redoes every shard whose status is
not complete.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import ConfigError, Probe3rError, SchemaError
from pipeline.jobs.parallel import run_shard_tasks
from pipeline.render.pairs import PairSamplingConfig, prepare_scene, sample_pair
from pipeline.scenes.catalog import SceneRef, list_scenes, load_scene
from pipeline.store.writer import create_store, open_store, schema_array, shard_slices

log = logging.getLogger(__name__)

STATUS_PENDING, STATUS_OK, STATUS_FAILED = 0, 1, 2


@dataclass(frozen=True)
class RenderParams:
    """Everything that decides a renders store's content (params.yaml `render:` section).

    Attributes:
        source: "procedural" or a folder of mesh scenes (HM3D's glb release layout works).
        n_pairs: pairs to render.
        pairs_per_scene: consecutive pairs drawn from one scene (scenes are reused
            cyclically when a folder holds fewer).
        pairs_per_shard: pairs per shard file, the unit of work of one process.
        seed: fixes scenes and cameras.
        n_scenes: cap on the scenes taken from a folder (None: all).
        split_fractions: train/val/test shares for procedural scenes.
        sampling: camera pair constraints (resolution, FoV, overlap, rotation, kind).
    """

    source: str = "procedural"
    n_pairs: int = 64
    pairs_per_scene: int = 4
    pairs_per_shard: int = 16
    seed: int = 0
    n_scenes: int | None = None
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    sampling: PairSamplingConfig = field(default_factory=PairSamplingConfig)

    def __post_init__(self) -> None:
        for name in ("n_pairs", "pairs_per_scene", "pairs_per_shard"):
            if getattr(self, name) < 1:
                raise ConfigError(f"render.{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ConfigError(f"render.seed must be >= 0, got {self.seed}")
        if self.source == "procedural" and self.n_scenes is not None:
            raise ConfigError(
                f"render.n_scenes ({self.n_scenes}) caps scenes of a folder source; procedural rooms number "
                f"n_pairs / pairs_per_scene: set n_scenes: null or change pairs_per_scene"
            )

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RenderParams:
        """Build from a params.yaml section; unknown keys are refused by name."""
        sampling_keys = {f.name for f in fields(PairSamplingConfig)} - {"up"}  # up comes from each scene
        known = ({f.name for f in fields(cls)} - {"sampling"}) | sampling_keys
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"render: unknown parameter(s) {unknown}; known: {sorted(known)}")
        sampling = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in sampling_keys}
        top = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k not in sampling_keys}
        return cls(**top, sampling=PairSamplingConfig(**sampling))

    def identity(self) -> dict[str, Any]:
        """JSON-safe dict stored in the store's attrs; a resumed run must match it exactly."""
        out = asdict(self)
        return _jsonable(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def scene_plan(params: RenderParams) -> list[SceneRef]:
    """The scene of every pair, in pair order."""
    n_needed = math.ceil(params.n_pairs / params.pairs_per_scene)
    if params.source == "procedural":
        refs = list_scenes(
            "procedural", n_scenes=n_needed, seed=params.seed, split_fractions=params.split_fractions
        )
    else:
        refs = list_scenes(params.source, n_scenes=params.n_scenes, seed=params.seed)
    return [refs[(i // params.pairs_per_scene) % len(refs)] for i in range(params.n_pairs)]


def _pair_rng(seed: int, pair_index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, pair_index]))


def render_shard(store_path: str, start: int, refs: list[SceneRef], params: RenderParams) -> dict[str, Any]:
    """Render pairs start … start+len(refs)-1 and write them to the store as one shard.

    Scene and sampling failures are recorded per pair (status 2 and the reason in `error`);
    anything else is a bug and propagates.
    """
    cfg = params.sampling
    n, H, W = len(refs), cfg.height, cfg.width
    out = {
        "rgb": np.zeros((n, 2, H, W, 3), np.uint8),
        "depth": np.zeros((n, 2, H, W), np.float32),
        "valid": np.zeros((n, 2, H, W), bool),
        "pts3d_world": np.full((n, 2, H, W, 3), np.nan, np.float32),
        "pts3d_view1": np.full((n, 2, H, W, 3), np.nan, np.float32),
        "corr": np.full((n, 2, H, W, 2), np.nan, np.float32),
        "intrinsics": np.full((n, 2, 3, 3), np.nan),
        "cam_to_world": np.full((n, 2, 4, 4), np.nan),
        "overlap": np.full(n, np.nan, np.float32),
        "rotation_deg": np.full(n, np.nan, np.float32),
    }
    status = np.zeros(n, np.uint8)
    errors = [""] * n
    loaded: dict[str, Any] = {}  # scene_id -> (prepared renderer, sampling config) or the error text
    for k, ref in enumerate(refs):
        if ref.scene_id not in loaded:
            loaded.clear()  # one scene in memory at a time
            try:
                scene = load_scene(ref, seed=params.seed)
                loaded[ref.scene_id] = (prepare_scene(scene), replace(cfg, up=scene.up))
            except Probe3rError as err:
                loaded[ref.scene_id] = f"scene {ref.scene_id}: {err}"
        prepared = loaded[ref.scene_id]
        if isinstance(prepared, str):
            status[k], errors[k] = STATUS_FAILED, prepared
            continue
        renderer, scene_cfg = prepared
        try:
            pair = sample_pair(renderer, scene_cfg, _pair_rng(params.seed, start + k))
        except Probe3rError as err:
            status[k], errors[k] = STATUS_FAILED, f"sampling in {ref.scene_id}: {err}"
            continue
        out["rgb"][k], out["depth"][k], out["valid"][k] = pair.rgb, pair.depth, pair.valid
        out["pts3d_world"][k], out["pts3d_view1"][k], out["corr"][k] = (
            pair.pts_world,
            pair.pts_view1,
            pair.corr,
        )
        out["intrinsics"][k], out["cam_to_world"][k] = pair.K, pair.cam_to_world
        out["overlap"][k], out["rotation_deg"][k] = pair.overlap, pair.rotation_deg
        status[k] = STATUS_OK
    group = open_store(Path(store_path), "renders", mode="r+")
    sl = slice(start, start + n)
    for name, values in out.items():
        schema_array(group, "renders", name)[sl] = values
    group["scene_id"][sl] = np.array([r.scene_id for r in refs], dtype=np.dtypes.StringDType())
    group["split"][sl] = np.array([r.split for r in refs], dtype=np.dtypes.StringDType())
    group["error"][sl] = np.array(errors, dtype=np.dtypes.StringDType())
    group["status"][sl] = status  # last: marks the shard complete
    return {"ok": int((status == STATUS_OK).sum()), "failed": int((status == STATUS_FAILED).sum())}


def _open_or_create(out: Path, params: RenderParams, overwrite: bool) -> Any:
    cfg = params.sampling
    if out.exists() and not overwrite:
        group = open_store(out, "renders", mode="r+")
        stored = group.attrs.get("params")
        if stored != params.identity():
            diff = sorted(k for k in params.identity() if (stored or {}).get(k) != params.identity()[k])
            raise SchemaError(
                f"{out}: made with other render parameters (differ: {', '.join(diff)}); "
                "pass --overwrite to replace it or choose another --out"
            )
        return group
    return create_store(
        out,
        "renders",
        sizes={"pair": params.n_pairs, "y": cfg.height, "x": cfg.width},
        pairs_per_shard=params.pairs_per_shard,
        attrs={
            "params": params.identity(),
            "n_pairs": params.n_pairs,
            "pairs_per_shard": params.pairs_per_shard,
            "image_size": [cfg.height, cfg.width],
            "camera_convention": "opencv",
            "complete": False,
            "failed_scenes": [],
        },
        coords={"view": np.array([1, 2])},
        overwrite=overwrite,
    )


def _check_plan_unchanged(out: Path, group: Any, plan: list, status: np.ndarray) -> None:
    """Refuse to resume when the pairs already rendered came from other scenes.

    The parameters can match while a scene folder has gained or lost scenes since the store
    was started; the rest of the store would then follow another plan than its first shards.
    """
    done = np.flatnonzero(status != STATUS_PENDING)
    if len(done) == 0:
        return
    stored = group["scene_id"][:]
    moved = [int(i) for i in done if stored[i] != plan[i].scene_id]
    if moved:
        i = moved[0]
        raise SchemaError(
            f"{out}: {len(moved)} rendered pairs came from other scenes than the source now lists (pair {i}: "
            f"'{stored[i]}', now '{plan[i].scene_id}'); the scene folder changed since the store was "
            "started: pass --overwrite to render it afresh or choose another --out"
        )


def run_render(
    out: Path,
    params: RenderParams,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Render every pending shard of `out` (creating the store if needed) and finalise it.

    Returns:
        summary with n_pairs, n_ok, n_failed, shards_rendered and failed_scenes.
    """
    group = _open_or_create(out, params, overwrite)
    plan = scene_plan(params)
    status = group["status"][:]
    _check_plan_unchanged(out, group, plan, status)
    tasks = [
        (str(out), sl.start, plan[sl], params)
        for sl in shard_slices(params.n_pairs, params.pairs_per_shard)
        if (status[sl] == STATUS_PENDING).any()
    ]
    log.info(
        "%s: %d of %d shards to render", out, len(tasks), math.ceil(params.n_pairs / params.pairs_per_shard)
    )
    run_shard_tasks(render_shard, tasks, workers=workers, scheduler=scheduler, desc="render")
    status, errors = group["status"][:], group["error"][:]
    failed: dict[str, dict[str, str]] = {}
    for i in np.flatnonzero(status == STATUS_FAILED):
        ref = plan[i]
        if errors[i].startswith(f"scene {ref.scene_id}:"):
            failed.setdefault(
                ref.scene_id, {"scene_id": ref.scene_id, "source": ref.source, "reason": str(errors[i])}
            )
    group.attrs.update(
        {"complete": bool((status != STATUS_PENDING).all()), "failed_scenes": list(failed.values())}
    )
    return {
        "n_pairs": params.n_pairs,
        "n_ok": int((status == STATUS_OK).sum()),
        "n_failed": int((status == STATUS_FAILED).sum()),
        "shards_rendered": len(tasks),
        "failed_scenes": list(failed.values()),
    }
