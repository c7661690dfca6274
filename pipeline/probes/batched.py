"""Many independent per-token MLPs evaluated together: one batched matmul per layer.

Training 76 probes (38 locations x 2 views) as 76 small modules costs 76 kernel launches
per layer and 76 optimiser walks; stacking their weights along a leading probe axis P turns
each layer into one `baddbmm` over (P, M, D) inputs. The probes stay mathematically
independent: no parameter is shared across P, and `clip_grad_norm_per_group` clips each
group's gradient norm separately, so a batched step equals P separate steps.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from pipeline.errors import ConfigError, ShapeError, unknown_name_message
from pipeline.fast_linear import linear

PROBE_KINDS = ("mlp", "linear")


def layer_sizes(kind: str, d_in: int, d_out: int, *, hidden: int = 1024, n_layers: int = 5) -> list[int]:
    """Widths of a probe's layers, input first: a linear probe is [d_in, d_out].

    Args:
        kind: "mlp" (n_layers Linear layers with ReLU between) or "linear" (one Linear).
        d_in: token width at the probed location.
        d_out: raw outputs per token (channels · p²).
        hidden: width of every hidden layer of an MLP.
        n_layers: Linear layers of an MLP (the paper's 5 = 4 hidden + output).
    """
    if kind not in PROBE_KINDS:
        raise ConfigError(unknown_name_message("probe kind", kind, PROBE_KINDS))
    if kind == "linear":
        return [d_in, d_out]
    if n_layers < 2 or hidden < 1:
        raise ConfigError(f"an mlp probe needs n_layers >= 2 and hidden >= 1, got {n_layers} and {hidden}")
    return [d_in] + [hidden] * (n_layers - 1) + [d_out]


def probe_seed(seed: int, *names: str | int) -> int:
    """A stable seed for one probe, so its init does not depend on which others train with it."""
    return zlib.crc32("/".join(str(n) for n in (seed, *names)).encode())


class BatchedMLP(nn.Module):
    """P independent MLPs with the same layer sizes, ReLU between layers.

    Parameters are `weight{k}` (P, d_k, d_{k+1}) and `bias{k}` (P, d_{k+1}), stored
    input-major so the forward is `baddbmm(bias, x, weight)`; probe p's layer k equals
    `nn.Linear` with weight `weight{k}[p].T`.
    """

    def __init__(self, sizes: Sequence[int], seeds: Sequence[int]) -> None:
        """Args:
        sizes: layer widths, input first (see `layer_sizes`).
        seeds: one per probe; probe p's weights are drawn like `nn.Linear`'s default
            (uniform ±1/√fan_in) from a generator seeded with seeds[p].
        """
        super().__init__()
        self.sizes = tuple(int(s) for s in sizes)
        self.n_probes = len(seeds)
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        for k, (d_in, d_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:], strict=True)):
            bound = 1 / math.sqrt(d_in)
            w = torch.stack([(torch.rand(d_in, d_out, generator=g) * 2 - 1) * bound for g in gens])
            b = torch.stack([(torch.rand(d_out, generator=g) * 2 - 1) * bound for g in gens])
            self.register_parameter(f"weight{k}", nn.Parameter(w))
            self.register_parameter(f"bias{k}", nn.Parameter(b))
        self._output_major_cache: dict[int, tuple[tuple[int, int], Tensor]] = {}

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    def forward(
        self, x: Tensor, out_order: Tensor | slice | None = None, probes: slice | None = None
    ) -> Tensor:
        """Apply probe p to the tokens x[p].

        Args:
            x: (P, M, D) M tokens for each of the P probes (of `probes` when given).
            out_order: which outputs to compute, in this order, applied to the last layer's
                weights (cheaper than computing every output and indexing them): (d_out',)
                indices (a permutation, or a subset), or a slice (a view of the weights, no copy).
            probes: apply only these probes (a slice of the probe axis: a view of the
                weights, no copy), e.g. every other one for one view's heads.

        Returns:
            (P, M, d_out') raw outputs.
        """
        self._check_input(x, probes)
        for k in range(self.n_layers):
            w, b = getattr(self, f"weight{k}"), getattr(self, f"bias{k}")
            if probes is not None:
                w, b = w[probes], b[probes]
            if out_order is not None and k == self.n_layers - 1:
                w, b = w[..., out_order], b[..., out_order]
            x = torch.baddbmm(b.unsqueeze(1), x, w)
            if k < self.n_layers - 1:
                x = torch.relu(x)
        return x

    @torch.no_grad()
    def forward_each(
        self, x: Tensor, out_order: slice | None = None, probes: slice | None = None
    ) -> list[Tensor]:
        """`forward` for inference, probe by probe: P tensors (M, d_out') instead of one.

        Each probe runs all its layers through `fast_linear.linear` (oneDNN on a CPU, about
        twice MKL's batched product there) while its activations are still in cache, on
        output-major copies of the weights made once per weight version (`_output_major`).
        Equal to `forward` to float32 rounding; no gradients.

        Args:
            x: (P, M, D) as for `forward`.
            out_order: a slice of the last layer's outputs (a view of its weights), or None.
            probes: a slice of the probe axis, or None for every probe.
        """
        self._check_input(x, probes)
        chosen = range(self.n_probes)[probes or slice(None)]
        layers = [self._output_major(k) for k in range(self.n_layers)]
        outputs = []
        for i, p in enumerate(chosen):
            h = x[i]
            for w, b in layers[:-1]:
                h = linear(h, w[p], b[p]).relu_()
            w, b = layers[-1] if out_order is None else (t[:, out_order] for t in layers[-1])
            outputs.append(linear(h, w[p], b[p]))
        return outputs

    def _check_input(self, x: Tensor, probes: slice | None) -> None:
        """ShapeError unless x is (P, M, D) for the chosen probes and the first layer's width."""
        chosen = range(self.n_probes)[probes or slice(None)]
        if x.ndim != 3 or x.shape[0] != len(chosen) or x.shape[2] != self.sizes[0]:
            raise ShapeError(f"x: expected (P={len(chosen)}, M, D={self.sizes[0]}), got {tuple(x.shape)}")

    def _output_major(self, k: int) -> tuple[Tensor, Tensor]:
        """Layer k's weights as (P, d_out, d_in), nn.Linear's layout, and its biases (P, d_out).

        The copy is kept until the weights change: its key is the parameter's storage and
        version counter, which every in-place update (an optimiser step, `load_state_dict`)
        moves on.
        """
        w, b = getattr(self, f"weight{k}"), getattr(self, f"bias{k}")
        key = (w.data_ptr(), w._version)
        cached = self._output_major_cache.get(k)
        if cached is None or cached[0] != key:
            cached = (key, w.detach().transpose(1, 2).contiguous())
            self._output_major_cache[k] = cached
        return cached[1], b.detach()

    def clip_grad_norm_per_group(self, max_norm: float, group_size: int = 1) -> Tensor:
        """Scale gradients so each group of `group_size` consecutive probes has norm <= max_norm.

        Same rule as `torch.nn.utils.clip_grad_norm_` applied to each group's parameters
        alone: coefficient min(1, max_norm / (norm + 1e-6)). A group is what one separate
        training run would hold, e.g. the two view heads of one location.

        Returns:
            (P / group_size,) gradient norms before clipping.
        """
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        n_groups = self.n_probes // group_size
        sq = sum(g.reshape(n_groups, -1).pow(2).sum(1) for g in grads)
        norms = torch.as_tensor(sq).sqrt()
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.repeat_interleave(group_size).view(-1, *[1] * (g.ndim - 1)))
        return norms
