"""The evaluate stage's parameters (params.yaml `evaluate:`): every open choice of the metrics.

Defaults follow paper_method.md where it gives one (the 16 px headline, the 0-64 px curve,
top-5 register keys as in the Appendix G knockout) and are stated choices elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError
from pipeline.params import section_kwargs


@dataclass(frozen=True)
class EvaluateParams:
    """params.yaml `evaluate:`.

    Attributes:
        splits: pairs evaluated, by scene split (the paper: held-out scenes).
        max_pairs: evaluate at most this many of them, the first ones (None: all).
        batch_size: pairs read and scored together.
        probe_sets: "all" (every folder of the probes directory) or a list of set names
            ("mlp", "linear", "depth-mlp", ...).
        lens: also score the head lens (the model's own head at every decoder location).
        procrustes_scale: fit a similarity instead of the paper's rigid motion in E.2.
        thresholds_px: the accuracy curve's thresholds, pixels.
        headline_px: the threshold quoted in metrics.json (16 = one DUSt3R patch).
        corr_head_min_accuracy, corr_head_min_ratio: a cross-attention head is a
            correspondence head when its mean headline accuracy is >= min_accuracy and
            >= min_ratio times the best head's of its block.
        register_top_k: keys counted in a head's top-k mass.
        register_min_independence, register_min_topk_mass: a head is a register head in a
            pair when both scores reach these thresholds.
        register_min_pair_share: and is reported as a register head when that holds in at
            least this share of pairs.
        sink_factor: a key is a sink when it receives >= factor / K attention (heads averaged).
        high_norm_factor: a token is high-norm when its norm is >= factor x its map's median.
        n_boot, confidence: bootstrap resamples of pairs and interval coverage.
        overlap_bins, rotation_bins: bin edges for the binned tables (overlap share, degrees).
        device: "auto", "cpu" or "cuda[:i]" for the probes and the lens.
        seed: seeds the bootstrap.
    """

    splits: tuple[str, ...] = ("test",)
    max_pairs: int | None = None
    batch_size: int = 4
    probe_sets: str | tuple[str, ...] = "all"
    lens: bool = True
    procrustes_scale: bool = False
    thresholds_px: tuple[float, ...] = tuple(float(t) for t in range(0, 65, 4))
    headline_px: float = 16.0
    corr_head_min_accuracy: float = 0.3
    corr_head_min_ratio: float = 0.5
    register_top_k: int = 5
    register_min_independence: float = 0.7
    register_min_topk_mass: float = 0.5
    register_min_pair_share: float = 0.5
    sink_factor: float = 5.0
    high_norm_factor: float = 3.0
    n_boot: int = 1000
    confidence: float = 0.95
    overlap_bins: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    rotation_bins: tuple[float, ...] = (0.0, 30.0, 60.0, 90.0, 180.0)
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.register_top_k < 1 or self.n_boot < 0:
            raise ConfigError("evaluate.batch_size and register_top_k must be >= 1 and n_boot >= 0")
        if self.headline_px not in self.thresholds_px:
            raise ConfigError(
                f"evaluate.headline_px {self.headline_px} must be one of thresholds_px {list(self.thresholds_px)}"
            )

    @property
    def headline_index(self) -> int:
        return list(self.thresholds_px).index(self.headline_px)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EvaluateParams:
        """Build from a params.yaml section; unknown keys are refused by name."""
        values = section_kwargs(cls, "evaluate", raw)
        for key in ("thresholds_px", "overlap_bins", "rotation_bins"):
            if key in values:
                values[key] = tuple(float(x) for x in values[key])
        if "headline_px" in values:
            values["headline_px"] = float(values["headline_px"])
        return cls(**values)
