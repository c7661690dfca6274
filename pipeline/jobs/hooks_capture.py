"""Capture DUSt3R's residual stream and attention maps for extract, via the model's hook points.

A stand-in for `pipeline.probing`'s capture, which was not written when extract was: it
uses the same location spelling (blueprint, "Names that everything shares") and the
model's `HookPoint`s directly. Locations: `enc`, `dec_in`, `bNN.self|cross|mlp` (stream
after the add) and `bNN.self|cross|mlp.out` (the sublayer's own output); attention
`bNN.self|cross` with post-softmax weights (B, A, Q, K).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from pipeline.model.dust3r import Dust3r

_SUBLAYERS = ("self", "cross", "mlp")


def residual_names(dec_depth: int, *, with_out: bool) -> list[str]:
    """Decoder locations in forward order: dec_in, b00.self, b00.cross, b00.mlp, … (and .out forms)."""
    names = ["dec_in"]
    for b in range(dec_depth):
        for sub in _SUBLAYERS:
            names += [f"b{b:02d}.{sub}.out", f"b{b:02d}.{sub}"] if with_out else [f"b{b:02d}.{sub}"]
    return names


def attention_names(dec_depth: int) -> list[str]:
    """Attention locations in forward order: b00.self, b00.cross, b01.self, …"""
    return [f"b{b:02d}.{kind}" for b in range(dec_depth) for kind in ("self", "cross")]


def _hook(model: Dust3r, location: str, view: int, *, attention: bool) -> torch.nn.Module:
    if location in ("enc", "dec_in"):
        return getattr(model, f"hook_{location}{view}")
    block_name, sub, *out = location.split(".")
    blocks = model.dec_blocks if view == 1 else model.dec_blocks2
    block = blocks[int(block_name[1:])]
    if attention:
        return (block.attn if sub == "self" else block.cross_attn).hook_weights
    return getattr(block, f"hook_{sub}_out" if out else f"hook_{sub}")


def capture_arrays(
    model: Dust3r, img1: Tensor, img2: Tensor, locations: Sequence[str], attention: Sequence[str]
) -> dict[str, np.ndarray]:
    """One forward pass; return the outputs and the asked-for activations as float32 numpy.

    Args:
        model: the model (eval mode).
        img1: (B, 3, H, W) view 1 in [-1, 1].
        img2: (B, 3, H, W) view 2 in [-1, 1].
        locations: decoder locations for "acts" (see `residual_names`).
        attention: attention locations for "attn" (see `attention_names`).

    Returns:
        "enc" (B, V, N, D_enc), "acts" (B, V, L, N, D), "attn" (B, V, La, A, Q, K),
        "pts3d" (B, V, H, W, 3) in view 1's frame, "conf" (B, V, H, W); view 1 first.
    """
    store: dict[tuple[str, str, int], Tensor] = {}
    attached: list[tuple[torch.nn.Module, Callable]] = []

    def keep(key: tuple[str, str, int]) -> Callable[[Tensor], Tensor]:
        def fn(x: Tensor) -> Tensor:
            store[key] = x.detach().float().cpu()
            return x

        return fn

    wanted = [("acts", loc) for loc in ("enc", *locations)] + [("attn", loc) for loc in attention]
    try:
        for kind, loc in wanted:
            for view in (1, 2):
                hook = _hook(model, loc, view, attention=kind == "attn")
                fn = keep((kind, loc, view))
                hook.fns.append(fn)
                attached.append((hook, fn))
        res1, res2 = model(img1, img2)
    finally:
        for hook, fn in attached:
            hook.fns.remove(fn)

    def stack(kind: str, names: Sequence[str]) -> np.ndarray:
        views = [torch.stack([store[(kind, n, v)] for n in names], dim=1) for v in (1, 2)]
        return torch.stack(views, dim=1).numpy()  # (B, V, L, ...)

    enc = torch.stack([store[("acts", "enc", 1)], store[("acts", "enc", 2)]], dim=1).numpy()
    B, _, N, _ = enc.shape
    A = model.config.dec_num_heads
    return {
        "enc": enc,
        "acts": stack("acts", locations)
        if locations
        else np.zeros((B, 2, 0, N, model.config.dec_embed_dim), np.float32),
        "attn": stack("attn", attention) if attention else np.zeros((B, 2, 0, A, N, N), np.float32),
        "pts3d": torch.stack([res1["pts3d"], res2["pts3d_in_other_view"]], 1).float().cpu().numpy(),
        "conf": torch.stack([res1["conf"], res2["conf"]], 1).float().cpu().numpy(),
    }
