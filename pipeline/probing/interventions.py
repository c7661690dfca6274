"""Change activations during a live forward pass: knockout, head ablation, patching.

Every intervention is one function with the contract `fn(x, *, loc) -> Tensor | None`, run
at a named site (`loc` is the `Site`: name, namespace, view). None leaves x unchanged; a
returned tensor replaces x and must have its shape (`ShapeError` otherwise). Functions must
not modify x in place. The built-ins:

* `knockout_keys`: zero post-softmax attention weights of chosen keys in chosen heads
  (the paper's Appendix G), by explicit key index or by the top-k keys of each head.
* `ablate_heads`: zero chosen heads' outputs before the output projection.
* `patch_stream`: replace the stream at a location with given values (activation patching).

Run them with `intervened(model, [...])`, or pass them to `capture(..., interventions=[...])`
to read activations of the same pass. Attention weights only exist when something listens:
an attention intervention switches that layer from `F.scaled_dot_product_attention` to an
explicit softmax, which differs by float rounding only (outputs agree to about 1e-5).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pipeline.errors import ConfigError, ShapeError
from pipeline.probing.hooks import Site, attached, checked


@dataclass(frozen=True)
class Intervention:
    """Apply `fn(x, *, loc)` at `name` in `namespace` ("stream", "attention" or "heads") for `views`."""

    namespace: str
    name: str
    fn: Callable[..., Tensor | None]
    views: tuple[int, ...] = (1, 2)

    def sites(self) -> list[Site]:
        """One site per view."""
        return [Site(self.namespace, self.name, view) for view in self.views]


@contextmanager
def intervened(model: nn.Module, interventions: Sequence[Intervention]) -> Iterator[None]:
    """Apply interventions to every forward pass of `model` inside the block.

    Names are checked before anything is attached; the hooks come off on exit, even on error.
    Interventions at the same site run in the given order.

    Example:
        >>> with intervened(model, [ablate_heads("b01.cross", [3], views=(2,))]):
        ...     res1, res2 = model(img1, img2)
    """
    with attached(model, [(site, checked(iv.fn, site)) for iv in interventions for site in iv.sites()]):
        yield


def knockout_keys(
    name: str,
    heads: Sequence[int],
    *,
    keys: Sequence[int] | None = None,
    top_k: int | None = None,
    views: tuple[int, ...] = (1, 2),
    renormalize: bool = False,
) -> Intervention:
    """Stop chosen heads from reading chosen keys: their post-softmax weights become 0.

    Args:
        name: attention location, e.g. "b02.self".
        heads: head indices to change; other heads are untouched.
        keys: key token indices (row-major patch indices) to knock out, for every query.
        top_k: instead of `keys`, knock out, per sample and head, the k keys that receive the
            most attention summed over all queries (register-like tokens).
        views: which views' decoders to change.
        renormalize: rescale each changed row to sum to 1 again (the paper does not).

    Raises:
        ConfigError: neither or both of `keys` and `top_k`; (when run) a head or key out of range.
    """
    if (keys is None) == (top_k is None):
        raise ConfigError(f"knockout_keys({name!r}): give exactly one of keys= and top_k=")
    heads, keys = list(heads), None if keys is None else list(keys)

    def knock(w: Tensor, *, loc: Site) -> Tensor:
        _check_indices(heads, w.shape[1], "head", loc)
        sel = w[:, heads]  # (B, h, Q, K)
        if keys is not None:
            _check_indices(keys, w.shape[-1], "key", loc)
            drop = torch.zeros(w.shape[-1], dtype=torch.bool, device=w.device)
            drop[keys] = True
            drop = drop.expand(*sel.shape[:2], -1)
        else:
            top = sel.sum(dim=2).topk(min(top_k, w.shape[-1]), dim=-1).indices  # (B, h, k)
            drop = torch.zeros(sel.shape[:2] + sel.shape[-1:], dtype=torch.bool, device=w.device)
            drop.scatter_(-1, top, True)
        sel = sel.masked_fill(drop[:, :, None, :], 0.0)
        if renormalize:
            sel = sel / sel.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(sel.dtype).tiny)
        out = w.clone()
        out[:, heads] = sel
        return out

    return Intervention("attention", name, knock, views)


def ablate_heads(name: str, heads: Sequence[int], *, views: tuple[int, ...] = (1, 2)) -> Intervention:
    """Zero chosen heads' outputs before the attention's output projection.

    Args:
        name: attention location, e.g. "b01.cross".
        heads: head indices to silence.
        views: which views' decoders to change.
    """
    heads = list(heads)

    def ablate(x: Tensor, *, loc: Site) -> Tensor:
        _check_indices(heads, x.shape[1], "head", loc)
        out = x.clone()
        out[:, heads] = 0.0
        return out

    return Intervention("heads", name, ablate, views)


def patch_stream(name: str, values: Tensor, *, views: tuple[int, ...] = (1, 2)) -> Intervention:
    """Replace the stream at a location with given values (e.g. captured from another pair).

    Args:
        name: stream location, e.g. "b05.cross" or "b05.cross.out".
        values: (B, V, N, D) with view 1 first, as `capture` returns; view v gets values[:, v - 1].
        views: which views to replace.

    Raises:
        ShapeError: (when run) values[:, v - 1] is not the stream's (B, N, D).
    """

    def patch(x: Tensor, *, loc: Site) -> Tensor:
        if values.ndim != 4 or values.shape[1] < loc.view:
            raise ShapeError(f"patch at {loc}: values must be (B, V, N, D), got {tuple(values.shape)}")
        return values[:, loc.view - 1].to(device=x.device, dtype=x.dtype)

    return Intervention("stream", name, patch, views)


def _check_indices(indices: list[int], size: int, what: str, loc: Site) -> None:
    bad = [i for i in indices if not -size <= i < size]
    if bad:
        raise ConfigError(
            f"intervention at {loc}: {what} {bad[0]} out of range; there are {size} ({what}s 0..{size - 1})"
        )
