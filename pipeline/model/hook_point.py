"""Identity modules that mark the places where activations can be read or changed.

A `HookPoint` holds no parameters, so adding one changes no `state_dict` key. It carries
exactly one tensor. Functions attached to it run in order on that tensor; each returns the
tensor to pass on. `pipeline/probing/hooks.py` names the hook points and attaches functions;
the model only calls them.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn


class HookPoint(nn.Module):
    """Identity on one tensor, unless functions are attached.

    Attention modules ask `active` to decide whether a value must be materialised at all
    (attention weights are only computed explicitly when someone listens).
    """

    def __init__(self) -> None:
        super().__init__()
        self.fns: list[Callable[[Tensor], Tensor]] = []

    @property
    def active(self) -> bool:
        """Whether any function is attached."""
        return bool(self.fns)

    def forward(self, x: Tensor) -> Tensor:
        for fn in self.fns:
            x = fn(x)
        return x
