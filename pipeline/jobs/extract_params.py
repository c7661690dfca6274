"""The extract stage's parameters (params.yaml `extract:`), and which of them decide a store.

`identity()` is what a features store records in its `params` attribute; a resumed run
must match it exactly. Batch size, device, worker count and the shard assignment are
left out: they change how fast a store is filled, not what it holds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pipeline.errors import ConfigError
from pipeline.params import section_kwargs

AUTOCAST = ("none", "bf16", "fp16")
RUN_ONLY = ("batch_size", "device")


@dataclass(frozen=True)
class ExtractParams:
    """Everything that decides a features store's content, plus how to run.

    Attributes:
        model: a config name from pipeline.model.registry.MODEL_SIZES (e.g. "small").
        checkpoint: path of a `.pth` or safetensors checkpoint; None = random init with `seed`.
        seed: seeds the random initialisation (ignored with a checkpoint).
        locations: decoder residual-stream locations for `acts`: "residual" (dec_in and the
            three per block), "all" (also the `.out` sublayer outputs) or a list of names.
        attention: attention maps stored compactly for every pair: "all" (self and cross of
            every block), "self", "cross", "none" or a list such as ["b01.cross"].
        full_attention: attention maps also stored as full float16, same choices as `attention`
            (each must be stored compactly too).
        full_attention_splits: splits whose pairs get the full maps (the evaluation split by default).
        feature_encoding: "fp16" (exact float16 rounding), or opt-in lossy: "fp16-m<bits>"
            (float16 with <bits> of 10 mantissa bits kept; relative error <= 2**-(bits+1))
            or "int8" (per-channel scales; error <= 1/254 of the channel's largest value in
            that pair, view and location; half the bytes).
        overflow: what to do with activations beyond float16's range: "error" or "clip".
        n_high_norm: token indices with the largest norms kept per pair, view and location.
        pairs_per_shard: pairs per shard of the features store, the unit of work of one writer.
        autocast: "none", "bf16" or "fp16"; autocast on CUDA only (CPU runs float32).
        batch_size: pairs per forward pass.
        device: "auto" (cuda when available), "cpu", "cuda" or "cuda:<i>".
    """

    model: str = "small"
    checkpoint: str | None = None
    seed: int = 0
    locations: str | tuple[str, ...] = "residual"
    attention: str | tuple[str, ...] = "all"
    full_attention: str | tuple[str, ...] = "all"
    full_attention_splits: tuple[str, ...] = ("test",)
    feature_encoding: str = "fp16"
    overflow: str = "error"
    n_high_norm: int = 4
    pairs_per_shard: int = 16
    autocast: str = "none"
    batch_size: int = 4
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("n_high_norm", "pairs_per_shard", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"extract.{name} must be >= 1, got {getattr(self, name)}")
        if self.autocast not in AUTOCAST:
            raise ConfigError(f"extract.autocast must be one of {AUTOCAST}, got {self.autocast!r}")
        if self.overflow not in ("error", "clip"):
            raise ConfigError(f"extract.overflow must be 'error' or 'clip', got {self.overflow!r}")
        self.mantissa_bits()  # validates feature_encoding

    def mantissa_bits(self) -> int:
        """Mantissa bits kept by `feature_encoding` (10 for exact float16; int8 has no mantissa)."""
        enc = self.feature_encoding
        if enc in ("fp16", "int8"):
            return 10
        if enc.startswith("fp16-m") and enc[6:].isdigit() and 0 <= int(enc[6:]) <= 10:
            return int(enc[6:])
        raise ConfigError(f"extract.feature_encoding must be 'fp16', 'fp16-m<0..10>' or 'int8', got {enc!r}")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ExtractParams:
        """Build from a params.yaml section; unknown keys are refused by name."""
        return cls(**section_kwargs(cls, "extract", raw))

    def identity(self) -> dict[str, Any]:
        """JSON-safe dict of the content-deciding parameters (stored in the store's attrs)."""
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        for key in RUN_ONLY:
            out.pop(key)
        return out
