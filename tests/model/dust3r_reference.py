"""The reference model (PyPI mini-dust3r, the official code repackaged) with random weights.

Reference models are built on the meta device and filled from a pool of seeded random
numbers, which avoids the reference's ~20 s xavier initialisation of the full-size model.
`dec_blocks2` and every norm get their own values (they are identical / constant at init).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from pipeline.model.config import Dust3rConfig
from pipeline.model.dust3r import Dust3r


def constructor_string(config: Dust3rConfig, **extra: object) -> str:
    """The `args.model` text of an official `.pth` for `config` (repr writes inf as `inf`)."""
    kwargs = {**config.to_kwargs(), **extra}
    return "AsymmetricCroCo3DStereo(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"


def build_reference(ref_model: object, config: Dust3rConfig, seed: int = 0) -> nn.Module:
    """`ref_model.AsymmetricCroCo3DStereo` (module `mini_dust3r.model`) for `config`, random weights."""
    with torch.device("meta"):
        ref = ref_model.AsymmetricCroCo3DStereo(landscape_only=False, **config.to_kwargs())
    ref = ref.to_empty(device="cpu").eval()
    fill_random(ref, seed)
    return ref


def fill_random(model: nn.Module, seed: int) -> None:
    """Give every parameter seeded random values of a sensible scale (in place)."""
    g = torch.Generator().manual_seed(seed)
    pool = torch.randn(2 * max(p.numel() for p in model.parameters()), generator=g)
    with torch.no_grad():
        for name, p in model.named_parameters():
            n = p.numel()
            start = int(torch.randint(0, pool.numel() - n + 1, (1,), generator=g))
            values = pool[start : start + n].view_as(p)
            if p.ndim > 1:  # 1/sqrt(fan_in); less in the deep conv stack of the DPT head
                scale = 0.7 if ".dpt." in name else 1.0
                p.copy_(values * scale * (n // p.shape[0]) ** -0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * values)
            else:
                p.copy_(0.05 * values)


def ours_from(ref: nn.Module, config: Dust3rConfig) -> Dust3r:
    """Our model sharing the reference's tensors (strict load, no copy)."""
    with torch.device("meta"):
        model = Dust3r(config)
    model.load_state_dict(ref.state_dict(), strict=True, assign=True)
    return model.eval()


def run_reference(ref: nn.Module, img1: torch.Tensor, img2: torch.Tensor) -> tuple[dict, dict]:
    """The reference forward (it needs `instance` in the view dicts)."""
    names = [str(i) for i in range(img1.shape[0])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # its torch.cuda.amp.autocast call
        return ref(dict(img=img1, instance=names), dict(img=img2, instance=[n + "'" for n in names]))
