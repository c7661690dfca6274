"""The one description of a DUSt3R architecture.

Field names are the keyword arguments of the official `AsymmetricCroCo3DStereo` constructor,
so a checkpoint's constructor string or `config.json` maps onto this dataclass one to one
(see `pipeline/model/checkpoint.py`), and a config prints in the words of the checkpoint.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from pipeline.errors import ConfigError

_INF = math.inf
POINT_MODES = ("exp", "linear", "square")
CONF_MODES = ("exp", "sigmoid")
HEAD_TYPES = ("linear", "dpt")
DPT_MIN_DEC_DEPTH = 10  # the official create_dpt_head asserts dec_depth > 9

# Constructor arguments that exist in checkpoints but do not change inference: how the
# official loader treats them is written next to each. `from_kwargs` checks and drops them.
TRAINING_ONLY_ARGS: dict[str, tuple[Any, ...] | None] = {
    "freeze": ("none", "mask", "encoder"),  # which parameters get gradients
    "mask_ratio": None,  # CroCo pre-training masking; DUSt3R never masks
    "landscape_only": (True, False),  # the official loaders force False
    "patch_embed_cls": ("PatchEmbedDust3R", "ManyAR_PatchEmbed"),  # loaders use PatchEmbedDust3R
}


@dataclass(frozen=True)
class Dust3rConfig:
    """Sizes and output modes of one DUSt3R model.

    Attributes:
        img_size: (H, W) the model was trained at; inputs may be any multiple of patch_size.
        patch_size: side of the square patches, in pixels.
        enc_embed_dim: encoder width D_enc.
        enc_depth: number of encoder blocks.
        enc_num_heads: encoder attention heads; D_enc / heads must be a multiple of 4 (RoPE2D).
        dec_embed_dim: decoder width D.
        dec_depth: number of blocks in each of the two decoders.
        dec_num_heads: decoder attention heads A; D / A must be a multiple of 4.
        mlp_ratio: MLP hidden width over block width.
        norm_im2_in_dec: whether each decoder block layer-norms the other view (`norm_y`).
        pos_embed: "RoPE<base>", e.g. "RoPE100"; DUSt3R has no additive position embedding.
        head_type: "linear" (one Linear per patch, pixel shuffle) or "dpt".
        output_mode: only "pts3d" (points plus confidence) exists for DUSt3R.
        depth_mode: (mode, vmin, vmax) for the points; mode in exp/linear/square, no bounds.
        conf_mode: (mode, vmin, vmax) for the confidence, mode exp or sigmoid; None for no
            confidence channel.
    """

    img_size: tuple[int, int] = (224, 224)
    patch_size: int = 16
    enc_embed_dim: int = 1024
    enc_depth: int = 24
    enc_num_heads: int = 16
    dec_embed_dim: int = 768
    dec_depth: int = 12
    dec_num_heads: int = 12
    mlp_ratio: float = 4.0
    norm_im2_in_dec: bool = True
    pos_embed: str = "RoPE100"
    head_type: str = "linear"
    output_mode: str = "pts3d"
    depth_mode: tuple[str, float, float] = ("exp", -_INF, _INF)
    conf_mode: tuple[str, float, float] | None = ("exp", 1.0, _INF)

    def __post_init__(self) -> None:
        for name in ("patch_size", "enc_embed_dim", "enc_depth", "enc_num_heads"):
            _check_positive_int(name, getattr(self, name))
        for name in ("dec_embed_dim", "dec_depth", "dec_num_heads"):
            _check_positive_int(name, getattr(self, name))
        _check_heads("enc", self.enc_embed_dim, self.enc_num_heads)
        _check_heads("dec", self.dec_embed_dim, self.dec_num_heads)
        size = self.img_size
        if not (isinstance(size, tuple) and len(size) == 2 and all(isinstance(s, int) for s in size)):
            raise ConfigError(f"img_size: expected a (H, W) tuple of ints, got {size!r}")
        if any(s <= 0 or s % self.patch_size for s in size):
            raise ConfigError(
                f"img_size: {size} must be positive multiples of patch_size ({self.patch_size})"
            )
        if not (isinstance(self.mlp_ratio, int | float) and int(self.enc_embed_dim * self.mlp_ratio) > 0):
            raise ConfigError(f"mlp_ratio: expected a positive number, got {self.mlp_ratio!r}")
        if re.fullmatch(r"RoPE\d+(\.\d+)?", str(self.pos_embed)) is None:
            raise ConfigError(f"pos_embed: expected 'RoPE<base>' such as 'RoPE100', got {self.pos_embed!r}")
        if self.head_type not in HEAD_TYPES:
            raise ConfigError(f"head_type: expected one of {HEAD_TYPES}, got {self.head_type!r}")
        if self.head_type == "dpt" and self.dec_depth < DPT_MIN_DEC_DEPTH:
            raise ConfigError(
                f"dec_depth: the dpt head needs dec_depth >= {DPT_MIN_DEC_DEPTH} (as the official code), "
                f"got {self.dec_depth}"
            )
        if self.head_type == "dpt" and self.patch_size != 16:
            raise ConfigError(
                f"patch_size: the dpt head upsamples by 16 and needs patch_size 16, got {self.patch_size}"
            )
        if self.output_mode != "pts3d":
            raise ConfigError(f"output_mode: only 'pts3d' is defined for DUSt3R, got {self.output_mode!r}")
        _check_mode("depth_mode", self.depth_mode, POINT_MODES)
        if self.depth_mode[1:] != (-_INF, _INF):
            raise ConfigError(
                f"depth_mode: bounds must be (-inf, inf) as in DUSt3R, got {self.depth_mode[1:]}"
            )
        if self.conf_mode is not None:
            _check_mode("conf_mode", self.conf_mode, CONF_MODES)

    @property
    def rope_base(self) -> float:
        """The RoPE frequency base, e.g. 100.0 for 'RoPE100'."""
        return float(self.pos_embed[len("RoPE") :])

    @property
    def head_channels(self) -> int:
        """Channels per output pixel: x, y, z and, with a conf_mode, the raw confidence."""
        return 3 + (self.conf_mode is not None)

    @property
    def dpt_levels(self) -> tuple[int, int, int, int]:
        """Decoder levels the DPT head reads: (0, d/2, 3d/4, d) as in the official code."""
        d = self.dec_depth
        return (0, d * 2 // 4, d * 3 // 4, d)

    def to_kwargs(self) -> dict[str, Any]:
        """Constructor keyword arguments, as they appear in a checkpoint."""
        return asdict(self)

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any], *, source: str = "config") -> Dust3rConfig:
        """Build a config from checkpoint constructor arguments (`.pth` args or config.json).

        Lists become tuples, an int img_size becomes (S, S), and the training-only arguments in
        `TRAINING_ONLY_ARGS` are checked and dropped.

        Args:
            kwargs: keyword arguments of `AsymmetricCroCo3DStereo(...)`.
            source: what the arguments came from, for error messages (e.g. a file name).

        Raises:
            ConfigError: an unknown argument or an invalid value, named with `source`.
        """
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in kwargs.items():
            if key in TRAINING_ONLY_ARGS:
                allowed = TRAINING_ONLY_ARGS[key]
                if allowed is not None and value not in allowed:
                    raise ConfigError(f"{source}: {key}={value!r} is not one of {allowed}")
                continue
            if key not in known:
                raise ConfigError(
                    f"{source}: unknown constructor argument {key}={value!r}; "
                    f"known: {', '.join(sorted(known | TRAINING_ONLY_ARGS.keys()))}"
                )
            if isinstance(value, list):
                value = tuple(value)
            if key == "img_size" and isinstance(value, int):
                value = (value, value)
            if key in ("depth_mode", "conf_mode") and isinstance(value, tuple):
                value = (value[0], *(float(v) for v in value[1:]))
            values[key] = value
        try:
            return cls(**values)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None


def _check_positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{name}: expected a positive int, got {value!r}")


def _check_heads(prefix: str, dim: int, heads: int) -> None:
    if dim % heads or (dim // heads) % 4:
        raise ConfigError(
            f"{prefix}_num_heads: {prefix}_embed_dim ({dim}) / {prefix}_num_heads ({heads}) must be an "
            f"integer multiple of 4 (RoPE2D splits each head into y and x halves of rotated pairs)"
        )


def _check_mode(name: str, mode: object, modes: tuple[str, ...]) -> None:
    if not (isinstance(mode, tuple) and len(mode) == 3 and mode[0] in modes):
        raise ConfigError(f"{name}: expected (mode, vmin, vmax) with mode in {modes}, got {mode!r}")
