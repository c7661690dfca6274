"""Thin readers from the stores, probe files and metrics into the plain arrays viz draws.

Figures and viewers never open a store: these functions read one pair (or one metrics
file) into numpy arrays and dicts, so the drawing code stays testable on small fixtures.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from pipeline.errors import ConfigError, SchemaError, StoreNotFoundError
from pipeline.probes.probeset import ProbeSet
from pipeline.store.attention_codec import decode_uint8
from pipeline.store.features import read_acts
from pipeline.store.writer import open_store
from pipeline.viz.pair import PairView

RENDER_OK = 1


def _check_pair(path: Path, group: zarr.Group, pair: int) -> None:
    n = int(group.attrs["n_pairs"])
    if not 0 <= pair < n:
        raise ConfigError(f"{path}: pair {pair} is out of range; the store holds pairs 0 … {n - 1}")
    if int(group["status"][pair]) != RENDER_OK:
        raise SchemaError(f"{path}: pair {pair} has status {int(group['status'][pair])}, not 1 (done)")


def weights_line(weights: str) -> str:
    """The checkpoint identity as shown to readers, flagging random weights."""
    if weights.startswith("random-init"):
        return f"{weights} (WARNING: random-init, not a trained DUSt3R)"
    return weights


def load_pair(renders: Path, pair: int, *, features: Path | None = None) -> PairView:
    """One rendered pair with its GT, cameras and (from a features store) the model's output.

    Args:
        renders: the renders store.
        pair: pair index (must be rendered, and extracted when `features` is given).
        features: the features store of the same renders, or None.

    Raises:
        StoreNotFoundError: a store is missing.
        ConfigError: the pair is out of range.
        SchemaError: the pair was not rendered or extracted.
    """
    r = open_store(renders, "renders")
    _check_pair(renders, r, pair)
    c2w = r["cam_to_world"][pair]  # (V, 4, 4) camera → world
    cam_to_view1 = np.linalg.inv(c2w[0])[None] @ c2w
    identity = {
        "renders": f"{renders} (pair {pair} of {r.attrs['n_pairs']})",
        "scene": f"{r['scene_id'][pair]} ({r['split'][pair]}); overlap {float(r['overlap'][pair]):.2f}, "
        f"rotation {float(r['rotation_deg'][pair]):.0f}°",
    }
    model = conf = None
    if features is not None:
        f = open_store(features, "features")
        _check_pair(features, f, pair)
        model, conf = f["pts3d"][pair], f["conf"][pair]
        identity["model"] = f"{f.attrs.get('model_name')} · {weights_line(str(f.attrs.get('model_weights')))}"
        identity["features"] = str(features)
    return PairView(
        rgb=r["rgb"][pair],
        valid=r["valid"][pair],
        cam_to_view1=cam_to_view1,
        intrinsics=r["intrinsics"][pair],
        gt=r["pts3d_view1"][pair],
        model=model,
        model_conf=conf,
        title=f"pair {pair} · {r['scene_id'][pair]}",
        identity=identity,
    )


def pair_acts(features: Path, pair: int, locations: Sequence[str]) -> dict[str, torch.Tensor]:
    """location → (1, V, N, D) float32 tokens of one pair, read from the features store.

    Raises:
        SchemaError: a location is not in the store.
    """
    f = open_store(features, "features")
    stored = [str(x) for x in f["location"][:]]
    missing = [loc for loc in locations if loc != "enc" and loc not in stored]
    if missing:
        raise SchemaError(
            f"{features}: no location {missing[0]} in `acts` (the probes need it); stored: {', '.join(stored)}"
        )
    acts = {}
    if "enc" in locations:
        acts["enc"] = torch.from_numpy(f["enc"][pair : pair + 1].astype(np.float32))
    block = read_acts(f, (slice(pair, pair + 1),))  # (1, V, L, N, D)
    for loc in locations:
        if loc != "enc":
            acts[loc] = torch.from_numpy(block[:, :, stored.index(loc)].astype(np.float32))
    return acts


@torch.no_grad()
def apply_probes(
    probes: ProbeSet, acts: dict[str, torch.Tensor]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Probed pointmaps and confidences of one pair at every probe location, in probe order.

    Returns:
        (points, conf): location → (V, H, W, 3) in view 1's frame, location → (V, H, W).

    Raises:
        ConfigError: the probes predict depth, not pointmaps.
    """
    if probes.spec.head.name != "pointmap":
        raise ConfigError(f"the viewers draw pointmap probes; these are {probes.spec.head.name} probes")
    device = next(probes.parameters()).device
    out = probes({k: v.to(device) for k, v in acts.items()})
    points = {loc: o["pred"][0].float().cpu().numpy() for loc, o in out.items()}
    conf = {loc: o["conf"][0].float().cpu().numpy() for loc, o in out.items()}
    return points, conf


def pair_attention(features: Path, pair: int, *, view: int = 2) -> dict[str, np.ndarray]:
    """attention location → (A, Q, K) float32 probabilities of one pair's view-`view` decoder.

    Uses the full float16 maps where the pair has them, else decodes the uint8 ones.
    """
    f = open_store(features, "features")
    _check_pair(features, f, pair)
    names = [str(x) for x in f["attn_location"][:] if str(x) != "none"]
    v = view - 1
    if bool(f["has_full_attn"][pair]):
        full = f["attn_full"][pair, v].astype(np.float32)  # (L, A, Q, K), NaN where not kept
    else:
        full = None
    coded = decode_uint8(f["attn"][pair, v])
    out = {}
    for i, name in enumerate(names):
        exact = full is not None and np.isfinite(full[i]).all()
        out[name] = full[i] if exact else coded[i]
    return out


def load_json(path: Path) -> dict[str, Any]:
    """A JSON file as a dict; the error names the file and what is wrong with it.

    Raises:
        StoreNotFoundError: the file does not exist.
        SchemaError: it is not a JSON object.
    """
    if not path.is_file():
        raise StoreNotFoundError(f"{path}: not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SchemaError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise SchemaError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
