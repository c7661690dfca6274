"""Float32 linear layers for inference on the CPU through oneDNN instead of MKL.

PyTorch's CPU build sends a float32 `F.linear`, `mm` or `baddbmm` to MKL's sgemm, which
takes its AVX-512 kernels on Intel processors only: on the AMD EPYC (Zen 5) these
numbers were measured on, it ran the probe and model shapes at 100-115 GFLOP/s per core
where oneDNN, which PyTorch ships too and which picks its kernels by instruction set,
ran them at 230-250 with the same float32 arithmetic (a product of 384-wide rows differs
from float64 by ~7e-7 relative either way). `linear` takes oneDNN's path where it can:

- on a CPU, every tensor float32 and oneDNN built in and enabled
  (`torch.backends.mkldnn.enabled`: `torch.backends.mkldnn.flags(enabled=False)` turns it
  off along with PyTorch's own oneDNN paths, or `use_onednn(False)` this one alone);
- when no gradient is needed: oneDNN's op has no backward, and PyTorch would silently
  return no gradient through it, so training keeps `F.linear`.

Everywhere else it is `F.linear`. `benchmarks/linear.py` measures both
paths side by side, for another machine to check the choice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor
from torch.nn import functional as F

_state = {"enabled": True}


def _onednn_linear():
    """PyTorch's dense-tensor oneDNN linear, or None in a build without it."""
    try:
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


_ONEDNN_LINEAR = _onednn_linear()


@contextmanager
def use_onednn(enabled: bool) -> Iterator[None]:
    """Within the block `linear` takes oneDNN's path where it can (True) or always `F.linear`."""
    before = _state["enabled"]
    _state["enabled"] = enabled
    try:
        yield
    finally:
        _state["enabled"] = before


def onednn_applies(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> bool:
    """Whether `linear(x, weight, bias)` runs on oneDNN (see the module docstring for when)."""
    tensors = (x, weight) if bias is None else (x, weight, bias)
    return (
        _state["enabled"]
        and _ONEDNN_LINEAR is not None
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
        and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
        and x.numel() > 0
    )


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """`F.linear(x, weight, bias)`, on oneDNN where that applies: x (..., D_in), weight (D_out, D_in).

    Example:
        >>> linear(torch.ones(2, 3), torch.ones(4, 3)).shape
        torch.Size([2, 4])
    """
    if not onednn_applies(x, weight, bias):
        return F.linear(x, weight, bias)
    return _ONEDNN_LINEAR(x, weight, bias, "none", [], "")


class Linear(torch.nn.Linear):
    """`nn.Linear` whose forward is `linear`: the same parameters, names and checkpoints."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)
