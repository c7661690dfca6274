"""Load official DUSt3R checkpoints without running code from them.

Two layouts are read:

* `.pth` as released by Naver: a pickle of {"model": state_dict, "args": argparse.Namespace},
  where `args.model` is the constructor call as text, e.g.
  "AsymmetricCroCo3DStereo(pos_embed='RoPE100', img_size=(224, 224), head_type='linear', ...)".
  It is read with `torch.load(weights_only=True)`, allowing `argparse.Namespace` and nothing
  else, and the call is parsed with `ast` (keyword values through `ast.literal_eval`, the name
  `inf` as a float). Nothing is ever `eval`-ed, so a malicious pickle cannot run code.
* Hugging Face (`PyTorchModelHubMixin`): a folder with `config.json` (constructor kwargs, bare
  `Infinity` allowed) and `model.safetensors`.

A checkpoint that is not what its arguments claim is refused with a `CheckpointError` naming
the file and listing the missing, unexpected and wrongly shaped keys.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import pickle
import re
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor

from pipeline.errors import CheckpointError, ConfigError
from pipeline.model.config import Dust3rConfig
from pipeline.model.dust3r import Dust3r
from pipeline.model.registry import config_name

ARCHITECTURE = "AsymmetricCroCo3DStereo"
HF_CONFIG = "config.json"
HF_WEIGHTS = "model.safetensors"
_SHOWN_KEYS = 3


def load_checkpoint(
    path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> Dust3r:
    """Build the model a checkpoint describes and load its weights strictly.

    Args:
        path: a `.pth` file, a Hugging Face folder, or the `model.safetensors` inside one.
        device: where the model goes.
        dtype: parameter dtype; None keeps float32.

    Returns:
        The model in eval mode.

    Raises:
        CheckpointError: the file is missing, unreadable, not the official layout, holds
            objects other than tensors, or its weights do not match its architecture.

    Example:
        >>> load_checkpoint("DUSt3R_ViTLarge_BaseDecoder_224_linear.pth").config.dec_depth
        12
    """
    config, state = read_checkpoint(path)
    with torch.device("meta"):
        model = Dust3r(config)
    state = _check_state(state, model, Path(path).name, config)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    return model.to(device=device, dtype=dtype).eval()


def read_checkpoint(path: str | Path) -> tuple[Dust3rConfig, dict[str, Tensor]]:
    """The config and the raw state_dict of a checkpoint, in either layout (not yet checked)."""
    path = Path(path)
    if path.is_dir() or path.name in (HF_WEIGHTS, HF_CONFIG):
        folder = path if path.is_dir() else path.parent
        return _read_hf(folder / HF_CONFIG, folder / HF_WEIGHTS)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file or folder")
    return _read_pth(path)


def parse_constructor(text: str, *, source: str) -> dict[str, Any]:
    """Keyword arguments of "AsymmetricCroCo3DStereo(k=v, ...)", read without evaluating code.

    Args:
        text: the constructor call, as stored in a `.pth` checkpoint's `args.model`.
        source: the file it came from, for error messages.

    Raises:
        CheckpointError: not a call of the DUSt3R class, positional or `**` arguments, or a
            value that is not a literal.
    """
    try:
        call = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise CheckpointError(f"{source}: args.model is not a constructor call: {text[:80]!r}") from None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
        raise CheckpointError(f"{source}: args.model is not a constructor call: {text[:80]!r}")
    if call.func.id != ARCHITECTURE:
        raise CheckpointError(f"{source}: unknown architecture {call.func.id!r}; expected {ARCHITECTURE}")
    if call.args or any(kw.arg is None for kw in call.keywords):
        raise CheckpointError(f"{source}: args.model must use keyword arguments only: {text[:80]!r}")
    kwargs = {}
    for kw in call.keywords:
        try:
            kwargs[kw.arg] = ast.literal_eval(_InfAsFloat().visit(kw.value))
        except ValueError:
            raise CheckpointError(
                f"{source}: args.model argument {kw.arg}={ast.unparse(kw.value)} is not a literal"
            ) from None
    return kwargs


class _InfAsFloat(ast.NodeTransformer):
    """Turn the name `inf` (as the official code has `inf = float('inf')` in scope) into a float."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        return ast.Constant(math.inf) if node.id == "inf" else node


def _read_pth(path: Path) -> tuple[Dust3rConfig, dict[str, Tensor]]:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        if found is None:
            raise CheckpointError(
                f"{path.name}: not a readable torch checkpoint ({str(err)[:200]})"
            ) from None
        raise CheckpointError(
            f"{path.name}: refused to unpickle: it holds objects other than tensors and "
            f"argparse.Namespace ({found.group(1)}); DUSt3R checkpoints hold only those"
        ) from None
    except (RuntimeError, OSError, EOFError) as err:
        raise CheckpointError(f"{path.name}: not a readable torch checkpoint ({err})") from None
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict) and "args" in ckpt):
        found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path.name}: expected a dict with 'model' and 'args', found {found}")
    text = getattr(ckpt["args"], "model", None)
    if not isinstance(text, str):
        raise CheckpointError(f"{path.name}: 'args' has no constructor string 'model'")
    return _config(parse_constructor(text, source=path.name), path.name), ckpt["model"]


def _read_hf(config_path: Path, weights_path: Path) -> tuple[Dust3rConfig, dict[str, Tensor]]:
    for file in (config_path, weights_path):
        if not file.is_file():
            raise CheckpointError(
                f"{file}: missing; a Hugging Face checkpoint has {HF_CONFIG} and {HF_WEIGHTS}"
            )
    try:
        kwargs = json.loads(config_path.read_text())  # json accepts the bare Infinity HF writes
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{config_path.name}: not valid JSON ({err})") from None
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"{config_path.name}: expected an object of constructor arguments")
    try:
        state = safetensors.torch.load_file(weights_path)
    except safetensors.SafetensorError as err:
        raise CheckpointError(f"{weights_path.name}: not a readable safetensors file ({err})") from None
    return _config(kwargs, config_path.name), state


def _config(kwargs: dict[str, Any], source: str) -> Dust3rConfig:
    try:
        return Dust3rConfig.from_kwargs(kwargs, source=source)
    except ConfigError as err:
        raise CheckpointError(str(err)) from None


def _check_state(
    state: dict[str, Tensor], model: Dust3r, source: str, config: Dust3rConfig
) -> dict[str, Tensor]:
    """Compare keys and shapes with the model; fill keys that alias a present one.

    The DPT head holds the same convolutions under two names (`scratch.layer1_rn` and
    `scratch.layer_rn.0`); safetensors stores only one of them.
    """
    expected = model.state_dict()
    state = dict(state)
    names_of: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names_of.setdefault(id(param), []).append(name)
    for names in names_of.values():
        present = [n for n in names if n in state]
        for name in names:
            if present and name not in state:
                state[name] = state[present[0]]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"'{k}' expected {tuple(expected[k].shape)} found {tuple(v.shape)}"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    problems = [
        _listing("missing key", [f"'{k}'" for k in missing]),
        _listing("unexpected key", [f"'{k}'" for k in unexpected]),
        _listing("wrong shape", wrong),
    ]
    problems = [p for p in problems if p]
    if problems:
        arch = config_name(config) or _describe(config)
        raise CheckpointError(f"{source}: weights do not match {arch}: " + "; ".join(problems))
    return state


def _listing(what: str, items: list[str]) -> str:
    if not items:
        return ""
    more = f" (+{len(items) - _SHOWN_KEYS} more)" if len(items) > _SHOWN_KEYS else ""
    return f"{len(items)} {what}{'s' if len(items) > 1 else ''}: {', '.join(items[:_SHOWN_KEYS])}{more}"


def _describe(c: Dust3rConfig) -> str:
    return (
        f"DUSt3R enc {c.enc_embed_dim}x{c.enc_depth} ({c.enc_num_heads} heads), "
        f"dec {c.dec_embed_dim}x{c.dec_depth} ({c.dec_num_heads} heads), {c.head_type} head"
    )
