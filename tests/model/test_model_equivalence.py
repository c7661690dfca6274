"""Numerical parity with the official model code (PyPI mini-dust3r 0.1.2) on random weights.

Same weights on both sides (ours loads the reference's state_dict with strict=True), CPU,
fp32. Compared: both views' points and confidences, and all dec_depth + 1 decoder levels,
within atol = rtol = 1e-4.
"""

from __future__ import annotations

import math

import pytest
import torch
from dust3r_reference import ours_from, run_reference

from pipeline.model.config import Dust3rConfig
from pipeline.model.registry import MODEL_SIZES
from pipeline.probing.capture import capture
from pipeline.probing.locations import block_name

TOL = dict(atol=1e-4, rtol=1e-4)

CONFIGS = {
    "tiny": (MODEL_SIZES["tiny"], (2, 64, 48)),
    "tiny-dpt": (MODEL_SIZES["tiny-dpt"], (1, 32, 32)),  # the DPT head is heavy at any model size
    "odd-grid-dpt": (MODEL_SIZES["tiny-dpt"], (1, 48, 32)),  # 3 x 2 patches: refinenet4 crops
    "variant": (
        Dust3rConfig(
            img_size=(48, 80),
            enc_embed_dim=96,
            enc_depth=3,
            enc_num_heads=3,
            dec_embed_dim=48,
            dec_depth=3,
            dec_num_heads=2,
            mlp_ratio=2.0,
            norm_im2_in_dec=False,
            depth_mode=("square", -math.inf, math.inf),
            conf_mode=("sigmoid", 0.5, 3.0),
        ),
        (2, 48, 80),
    ),
    "no-conf": (Dust3rConfig(**{**MODEL_SIZES["tiny"].to_kwargs(), "conf_mode": None}), (1, 32, 32)),
}


def assert_outputs_close(ours: tuple[dict, dict], ref: tuple[dict, dict]) -> None:
    for view, (o, r) in enumerate(zip(ours, ref, strict=True), start=1):
        assert sorted(o) == sorted(r), f"view {view} keys"
        for key in r:
            torch.testing.assert_close(
                o[key], r[key], **TOL, msg=lambda m, k=key, v=view: f"view {v} {k}: {m}"
            )


def reference_levels(ref: torch.nn.Module, img1: torch.Tensor, img2: torch.Tensor) -> tuple[list, list]:
    views = dict(img=img1, instance=["a"] * len(img1)), dict(img=img2, instance=["b"] * len(img2))
    _, (f1, f2), (p1, p2) = ref._encode_symmetrized(*views)
    levels1, levels2 = ref._decoder(f1, p1, f2, p2)
    return list(levels1), list(levels2)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_outputs_and_levels_match_reference(reference, name: str) -> None:
    config, (b, h, w) = CONFIGS[name]
    ref = reference(config, seed=1)
    model = ours_from(ref, config)
    g = torch.Generator().manual_seed(2)
    img1, img2 = torch.randn(b, 3, h, w, generator=g), torch.randn(b, 3, h, w, generator=g)
    with torch.inference_mode():
        assert_outputs_close(model(img1, img2), run_reference(ref, img1, img2))
        ours_levels = model.decode(*_reorder(model.encode(img1, img2)))
        for view, (ours, theirs) in enumerate(
            zip(ours_levels, reference_levels(ref, img1, img2), strict=True), 1
        ):
            assert len(ours) == len(theirs) == config.dec_depth + 1
            for i, (o, t) in enumerate(zip(ours, theirs, strict=True)):
                torch.testing.assert_close(o, t, **TOL, msg=lambda m, i=i, v=view: f"view {v} level {i}: {m}")


def test_views_of_different_shapes_match_reference(reference) -> None:
    config = MODEL_SIZES["tiny"]
    ref = reference(config, seed=3)
    model = ours_from(ref, config)
    img1, img2 = torch.randn(2, 3, 64, 48), torch.randn(2, 3, 48, 64)
    with torch.inference_mode():
        ours = model(img1, img2)
        assert ours[1]["pts3d_in_other_view"].shape == (2, 48, 64, 3)
        assert_outputs_close(ours, run_reference(ref, img1, img2))


def test_captured_block_outputs_are_the_reference_levels(reference) -> None:
    """The hook names line up with the official decoder levels (bXX.mlp = level XX + 1)."""
    config = MODEL_SIZES["tiny"]
    ref = reference(config, seed=4)
    model = ours_from(ref, config)
    img1, img2 = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    names = ["enc"] + [f"{block_name(b)}.mlp" for b in range(config.dec_depth)]
    with torch.inference_mode():
        _, acts = capture(model, img1, img2, locations=names)
        for view, levels in enumerate(reference_levels(ref, img1, img2)):
            torch.testing.assert_close(acts["enc"][:, view], levels[0], **TOL)
            for b in range(config.dec_depth - 1):
                torch.testing.assert_close(acts[f"{block_name(b)}.mlp"][:, view], levels[b + 1], **TOL)
            last = model.dec_norm(acts[f"{block_name(config.dec_depth - 1)}.mlp"][:, view])
            torch.testing.assert_close(last, levels[-1], **TOL)


def test_full_size_224_linear_matches_reference(reference) -> None:
    """The released architecture itself (532 M parameters), one pair."""
    config = MODEL_SIZES["dust3r-224-linear"]
    ref = reference(config, seed=5)
    model = ours_from(ref, config)
    assert sum(p.numel() for p in model.parameters()) == 532_342_784
    img1, img2 = torch.randn(1, 3, 224, 224), torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        assert_outputs_close(model(img1, img2), run_reference(ref, img1, img2))


def _reorder(encoded: tuple) -> tuple:
    """encode's (e1, e2, pos1, pos2) -> decode's (e1, pos1, e2, pos2)."""
    e1, e2, pos1, pos2 = encoded
    return e1, pos1, e2, pos2
