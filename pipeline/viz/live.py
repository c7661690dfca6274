"""Run DUSt3R live for the viewers: the user's photos, and knockouts on a stored pair.

The model is rebuilt (by `extract_model.rebuild_model`) from the extract parameters a probe
set records, so probes are applied to the network they were trained on: a checkpoint's
sha256 or the seeded random initialisation must match, or the run is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pipeline.errors import ConfigError, SchemaError
from pipeline.jobs.extract_model import rebuild_model
from pipeline.model.dust3r import Dust3r
from pipeline.model.preprocess import load_image
from pipeline.probes.probeset import ProbeSet
from pipeline.probing.capture import capture
from pipeline.probing.interventions import Intervention
from pipeline.viz.loaders import apply_probes, weights_line
from pipeline.viz.pair import PairView, estimate_focal, similarity_transform


def model_for_probes(
    probes: ProbeSet, *, where: str, checkpoint: Path | None, device: str
) -> tuple[Dust3r, str]:
    """The model a probe set was trained on and its weights identity, from its config.json.

    The features identity recorded there is rebuilt by `extract_model.rebuild_model`.

    Raises:
        SchemaError: no extract parameters recorded, or the rebuilt weights are not the recorded ones.
    """
    source = probes.meta.get("features") or {}
    if not isinstance(source.get("params"), dict):
        raise SchemaError(f"{where}: config.json records no extract parameters; cannot rebuild its model")
    return rebuild_model(
        source["params"],
        source.get("model_weights"),
        where=where,
        checkpoint=checkpoint,
        device=device,
        hint="pass the checkpoint the probes were trained on",
    )


def load_photo(path: Path, size: tuple[int, int]) -> Tensor:
    """(1, 3, H, W) in [-1, 1] at exactly `size` (the probes' input): DUSt3R's official
    preprocessing, then, where that gives another shape (a portrait photo for a landscape
    512 model, a small test model), a centre crop to `size`'s aspect and a resize.
    """
    if not path.is_file():
        raise ConfigError(f"--image {path}: no such file")
    x = load_image(path, 512 if max(size) > 224 else 224, square_ok=size[0] == size[1])
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    h, w = x.shape[-2:]
    crop_h, crop_w = min(h, round(w * size[0] / size[1])), min(w, round(h * size[1] / size[0]))
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    x = x[..., top : top + crop_h, left : left + crop_w]
    return torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


@dataclass
class LiveResult:
    """What a live pass gives the viewers: the pair, probed pointmaps, view-2 attention."""

    pair: PairView
    points: dict[str, np.ndarray]
    conf: dict[str, np.ndarray]
    attention: dict[str, np.ndarray]


@torch.inference_mode()
def probe_live(
    model: Dust3r, probes: ProbeSet, img1: Tensor, img2: Tensor, *, interventions: Sequence[Intervention] = ()
) -> dict[str, np.ndarray]:
    """location → (V, H, W, 3) probed pointmaps of one live pass (e.g. under a knockout).

    Args:
        model: the DUSt3R the probes were trained on.
        probes: a pointmap probe set.
        img1, img2: (1, 3, H, W) in [-1, 1].
        interventions: applied during the pass.
    """
    device = next(model.parameters()).device
    _, acts = capture(
        model, img1.to(device), img2.to(device), locations=probes.spec.locations, interventions=interventions
    )
    return apply_probes(probes, acts.stream)[0]


@torch.inference_mode()
def run_live(
    model: Dust3r,
    probes: ProbeSet,
    img1: Tensor,
    img2: Tensor,
    *,
    attention: Sequence[str] = (),
    interventions: Sequence[Intervention] = (),
    title: str = "",
    identity: dict[str, str] | None = None,
) -> LiveResult:
    """Probe every location of `probes` on one live pair; place view 2's camera from the model.

    View 2's camera is the similarity that maps the model's view-2 pointmap in its own frame
    (a second pass with the views swapped) onto its pointmap in view 1's frame; focal
    lengths are fitted to each view's own-frame pointmap, as DUSt3R does for photos.

    Args:
        model: the DUSt3R the probes were trained on.
        probes: a pointmap probe set.
        img1, img2: (1, 3, H, W) in [-1, 1].
        attention: attention locations to keep (view 2's decoder), e.g. "b01.cross".
        interventions: applied to the probed pass (not to the swapped pass).
        title, identity: shown by the viewers.
    """
    device = next(model.parameters()).device
    img1, img2 = img1.to(device), img2.to(device)
    (res1, res2), acts = capture(
        model,
        img1,
        img2,
        locations=probes.spec.locations,
        attention=attention,
        device="cpu",
        interventions=interventions,
    )
    own2 = model(img2, img1)[0]["pts3d"][0].float().cpu().numpy()  # view 2 in its own frame
    points, conf = apply_probes(probes, acts.stream)
    model_pts = np.stack(
        [res1["pts3d"][0].float().cpu().numpy(), res2["pts3d_in_other_view"][0].float().cpu().numpy()]
    )
    model_conf = np.stack([res1["conf"][0].float().cpu().numpy(), res2["conf"][0].float().cpu().numpy()])
    H, W = model_pts.shape[1:3]
    rgb = np.stack([_to_uint8(img1), _to_uint8(img2)])
    w2 = model_conf[1].reshape(-1) - 1
    cam2 = similarity_transform(own2.reshape(-1, 3), model_pts[1].reshape(-1, 3), np.maximum(w2, 0) + 1e-6)
    K = [
        np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
        for f in (estimate_focal(p, (H, W)) for p in (model_pts[0], own2))
    ]
    pair = PairView(
        rgb=rgb,
        valid=np.ones((2, H, W), bool),
        cam_to_view1=np.stack([np.eye(4), cam2]),
        intrinsics=np.stack(K),
        model=model_pts,
        model_conf=model_conf,
        title=title,
        identity=identity or {},
    )
    att = {name: a[0, 1].float().numpy() for name, a in acts.attention.items()}  # view 2: (A, Q, K)
    return LiveResult(pair, points, conf, att)


def _to_uint8(img: Tensor) -> np.ndarray:
    """(1, 3, H, W) in [-1, 1] → (H, W, 3) uint8."""
    return ((img[0].permute(1, 2, 0).float().cpu().numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


def rgb_to_input(rgb: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 → (1, 3, H, W) in [-1, 1], exactly as extract feeds stored renders."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 127.5 - 1


def identity_lines(weights: str, probes_path: Path) -> dict[str, str]:
    """The run identity a live viewer shows: weights (flagged when random) and the probe file."""
    return {"model weights": weights_line(weights), "probes": str(probes_path)}
