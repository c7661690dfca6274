"""Named DUSt3R configurations: the two official checkpoints and small ones for CPU work.

The official entries repeat the constructor arguments of the released checkpoints
(`DUSt3R_ViTLarge_BaseDecoder_224_linear` and `..._512_dpt`). `tiny` and `tiny-dpt` are for
unit tests (a forward pass takes milliseconds); `small` keeps the 12-block decoders, and so
the paper's 38 locations per view, at a size that runs a pair in well under a second on a
laptop CPU.
"""

from __future__ import annotations

import torch

from pipeline.errors import ConfigError, unknown_name_message
from pipeline.model.config import Dust3rConfig
from pipeline.model.dust3r import Dust3r

_VIT_LARGE_BASE = dict(
    enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12, dec_num_heads=12
)

MODEL_SIZES: dict[str, Dust3rConfig] = {
    "dust3r-224-linear": Dust3rConfig(img_size=(224, 224), head_type="linear", **_VIT_LARGE_BASE),
    "dust3r-512-dpt": Dust3rConfig(img_size=(512, 512), head_type="dpt", **_VIT_LARGE_BASE),
    "small": Dust3rConfig(
        img_size=(224, 224),
        enc_embed_dim=384,
        enc_depth=12,
        enc_num_heads=6,
        dec_embed_dim=384,
        dec_depth=12,
        dec_num_heads=6,
    ),
    "tiny": Dust3rConfig(
        img_size=(64, 64),
        enc_embed_dim=64,
        enc_depth=2,
        enc_num_heads=2,
        dec_embed_dim=64,
        dec_depth=4,
        dec_num_heads=4,
    ),
    "tiny-dpt": Dust3rConfig(
        img_size=(64, 64),
        head_type="dpt",
        enc_embed_dim=64,
        enc_depth=2,
        enc_num_heads=2,
        dec_embed_dim=32,
        dec_depth=10,
        dec_num_heads=2,
    ),
}


def get_config(name: str) -> Dust3rConfig:
    """The registered config called `name` (see `MODEL_SIZES`).

    Raises:
        ConfigError: unknown name, with the closest match and the valid names.
    """
    if name not in MODEL_SIZES:
        raise ConfigError(unknown_name_message("model size", name, MODEL_SIZES))
    return MODEL_SIZES[name]


def config_name(config: Dust3rConfig) -> str | None:
    """The registered name of `config`, or None when it matches no entry."""
    return next((name for name, known in MODEL_SIZES.items() if known == config), None)


def build_model(config: str | Dust3rConfig, *, seed: int | None = None) -> Dust3r:
    """A randomly initialised model, initialised like a fresh official one.

    Args:
        config: a name from `MODEL_SIZES` or a config.
        seed: seeds a private generator for the initialisation; None uses torch's global RNG.

    Example:
        >>> build_model("tiny", seed=0).config.dec_depth
        4
    """
    cfg = get_config(config) if isinstance(config, str) else config
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return Dust3r(cfg).init_weights(generator)
