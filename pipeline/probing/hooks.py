"""Where each named location lives in the model, and attaching functions to it for one pass.

A `Site` is a name from `locations.py` in one namespace, for one view. `hook_paths` is the
single table from sites to module paths (a test resolves every entry); `attached` puts
functions on the hook points for the duration of a `with` block and always takes them off.

Namespaces:
    "stream": residual stream and sublayer outputs, (B, N, D).
    "attention": post-softmax attention weights, (B, A, Q, K).
    "heads": each head's attention output before merge and projection, (B, A, Q, E), E = D / A.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType

from torch import Tensor, nn

from pipeline.errors import ConfigError, ShapeError
from pipeline.model.hook_point import HookPoint
from pipeline.probing.locations import attention_locations, check_names, split_location, stream_locations

NAMESPACES = ("stream", "attention", "heads")
VIEWS = (1, 2)
_KIND = {"stream": "location", "attention": "attention location", "heads": "attention location"}
_ATTN_MODULE = {"self": "attn", "cross": "cross_attn"}


@dataclass(frozen=True)
class Site:
    """One hook point: `name` in `namespace`, for view 1 or 2."""

    namespace: str
    name: str
    view: int

    def __str__(self) -> str:
        return f"'{self.name}' ({self.namespace}, view {self.view})"


def valid_names(namespace: str, dec_depth: int) -> list[str]:
    """The names a namespace accepts for a model with `dec_depth` decoder blocks."""
    if namespace not in NAMESPACES:
        raise ConfigError(f"namespace: expected one of {NAMESPACES}, got {namespace!r}")
    return stream_locations(dec_depth) if namespace == "stream" else attention_locations(dec_depth)


@cache
def hook_paths(dec_depth: int) -> Mapping[Site, str]:
    """Module path of the hook point of every site, for a model with `dec_depth` blocks (read-only).

    Example:
        >>> hook_paths(12)[Site("stream", "b07.cross", 2)]
        'dec_blocks2.7.hook_cross'
    """
    table: dict[Site, str] = {}
    for view in VIEWS:
        decoder = "dec_blocks" if view == 1 else "dec_blocks2"
        table[Site("stream", "enc", view)] = f"hook_enc{view}"
        table[Site("stream", "dec_in", view)] = f"hook_dec_in{view}"
        for name in stream_locations(dec_depth)[2:]:
            block, sublayer, is_out = split_location(name)
            table[Site("stream", name, view)] = f"{decoder}.{block}.hook_{sublayer}{'_out' if is_out else ''}"
        for name in attention_locations(dec_depth):
            block, sublayer, _ = split_location(name)
            module = f"{decoder}.{block}.{_ATTN_MODULE[sublayer]}"
            table[Site("attention", name, view)] = f"{module}.hook_weights"
            table[Site("heads", name, view)] = f"{module}.hook_heads"
    return MappingProxyType(table)


def resolve(model: nn.Module, site: Site) -> HookPoint:
    """The hook point of `site` in `model` (a `Dust3r`).

    Raises:
        ConfigError: unknown namespace, name (with a suggestion) or view.
    """
    check_names([site.name], valid_names(site.namespace, model.config.dec_depth), _KIND[site.namespace])
    if site.view not in VIEWS:
        raise ConfigError(f"view: expected 1 or 2, got {site.view!r} (for {site.name!r})")
    return model.get_submodule(hook_paths(model.config.dec_depth)[site])


@contextmanager
def attached(model: nn.Module, fns: Sequence[tuple[Site, Callable[[Tensor], Tensor]]]) -> Iterator[None]:
    """Attach `fn` to the hook point of each site while the block runs.

    All sites are resolved before anything is attached, so a typo changes nothing. The
    functions come off on exit, also when the block raises. Functions attached later to the
    same point run after earlier ones.
    """
    points = [(resolve(model, site), fn) for site, fn in fns]
    try:
        for point, fn in points:
            point.fns.append(fn)
        yield
    finally:
        for point, fn in points:
            if fn in point.fns:
                point.fns.remove(fn)


def checked(fn: Callable[..., Tensor | None], site: Site) -> Callable[[Tensor], Tensor]:
    """Wrap an intervention `fn(x, *, loc) -> Tensor | None` for a hook point.

    None keeps x; a tensor replaces it and must have x's shape.

    Raises:
        ShapeError: (when run) the returned tensor's shape differs, naming the site and both shapes.
    """

    def run(x: Tensor) -> Tensor:
        y = fn(x, loc=site)
        if y is None:
            return x
        if not isinstance(y, Tensor) or y.shape != x.shape:
            found = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ShapeError(f"intervention at {site}: returned {found}, expected {tuple(x.shape)}")
        return y

    return run
