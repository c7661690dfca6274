"""Compact encodings of attention maps, and the measurements that choose between them.

Full float16 maps cost 2 bytes per entry: 0.9 MB per head-set per view at 196 tokens, or
about 44 MB per pair over 24 attention locations, which is more than the residual
stream. The store therefore keeps every pair's maps as `uint8-argmax` and full float16
maps only for a chosen subset (see store_schema.yaml, features.attn).

`uint8-argmax` stores round(p * 255) (absolute error <= 1/510) and, beside it, each row's
exact argmax (first index on ties) as uint16 in `attn_argmax`: plain uint8 alone loses the
argmax wherever the top entries are within 1/255 of each other, which on near-uniform
maps is most rows. It was chosen by measurement (`benchmarks/extract.py`, docs/store.md):
about 10x smaller than float16 both on near-uniform and on peaky maps, where
`rowmax-uint8` (each row divided by its maximum, finer on flat rows) is only 2x smaller
on flat maps. The other encodings here exist so the benchmark can measure them side by side.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.errors import ConfigError, unknown_name_message

ROWMAX_UINT8 = "rowmax-uint8"
ROWMAX_MAX_REL_ERROR = (1 + 2.0**-10) / 510  # of the row maximum; see the module docstring
UINT8_ARGMAX = "uint8-argmax"
UINT8_MAX_ABS_ERROR = 1 / 510  # round(p * 255) / 255 is within half a step of p
ENCODINGS = (UINT8_ARGMAX, ROWMAX_UINT8, "uint8", "sqrt-uint8", "uint16", "topk")


def encode_uint8_argmax(p: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Encode attention rows as round(p * 255) and each row's exact argmax.

    Runs in torch on the tensor's device (the GPU during extraction), so only the uint8
    codes and uint16 argmaxes cross to the host.

    Args:
        p: (..., K) attention probabilities (rows over the last axis), K <= 65536.

    Returns:
        codes: (..., K) uint8, within 1/510 of p after dividing by 255.
        argmax: (...,) uint16 index of each row's maximum (the first on ties).

    Example:
        >>> codes, argmax = encode_uint8_argmax(np.array([[0.2, 0.5, 0.3]], np.float32))
        >>> codes.tolist(), argmax.tolist()
        ([[51, 128, 76]], [1])
    """
    t = torch.as_tensor(p)
    if t.shape[-1] > 65536:
        raise ConfigError(f"attention rows of {t.shape[-1]} keys do not fit uint16 argmaxes")
    codes = t.float().mul(255).round_().to(torch.uint8)
    argmax = t.argmax(-1).to(torch.int32)
    return codes.cpu().numpy(), argmax.cpu().numpy().astype(np.uint16)


def decode_uint8(codes: np.ndarray) -> np.ndarray:
    """Inverse of the codes of `encode_uint8_argmax`: (..., K) uint8 → (..., K) float32 probabilities.

    Use the stored argmax, not the argmax of the decoded rows, for matches: ties among the
    rounded values are common on flat rows.
    """
    return np.divide(codes, np.float32(255), dtype=np.float32)  # one pass: cast and divide together


def encode_rowmax_uint8(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Encode attention rows as uint8 fractions of their maximum.

    Args:
        p: (..., K) attention probabilities (rows over the last axis), any float dtype.

    Returns:
        codes: (..., K) uint8; 255 exactly where p equals its row maximum.
        scale: (...,) float16 row maxima.

    Example:
        >>> codes, scale = encode_rowmax_uint8(np.full((2, 4), 0.25))
        >>> codes.shape, scale.shape
        ((2, 4), (2,))
    """
    p = np.asarray(p, dtype=np.float32)
    row_max = p.max(axis=-1, keepdims=True)
    scale = row_max.astype(np.float16)
    scale = np.where(scale < row_max, np.nextafter(scale, np.float16(np.inf)), scale)  # round up: p <= scale
    safe = np.where(scale > 0, scale.astype(np.float32), np.float32(1))
    codes = np.minimum(np.floor(p / safe * 255), 254).astype(np.uint8)
    codes[p == row_max] = 255
    return codes, scale[..., 0]


def decode_rowmax_uint8(codes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Inverse of `encode_rowmax_uint8`: (..., K) uint8 and (...,) scale → (..., K) float32."""
    s = np.asarray(scale, dtype=np.float32)[..., None]
    c = np.asarray(codes, dtype=np.float32)
    return np.where(c == 255, s, s * (c + 0.5) / 255).astype(np.float32)


def encode(p: np.ndarray, name: str, *, k: int = 8) -> dict[str, np.ndarray]:
    """Encode (..., K) attention rows with one of ENCODINGS; returns the arrays to store."""
    p = np.asarray(p, dtype=np.float32)
    if name == UINT8_ARGMAX:
        codes, argmax = encode_uint8_argmax(p)
        return {"codes": codes, "argmax": argmax}
    if name == ROWMAX_UINT8:
        codes, scale = encode_rowmax_uint8(p)
        return {"codes": codes, "scale": scale}
    if name == "uint8":
        return {"codes": np.round(p * 255).astype(np.uint8)}
    if name == "sqrt-uint8":
        return {"codes": np.round(np.sqrt(p) * 255).astype(np.uint8)}
    if name == "uint16":
        return {"codes": np.round(p * 65535).astype(np.uint16)}
    if name == "topk":
        index = np.argsort(-p, axis=-1, kind="stable")[..., :k].astype(np.int16)
        return {"index": index, "value": np.take_along_axis(p, index, axis=-1).astype(np.float16)}
    raise ConfigError(unknown_name_message("attention encoding", name, ENCODINGS))


def decode(parts: dict[str, np.ndarray], name: str, n_keys: int) -> np.ndarray:
    """Inverse of `encode`: the stored arrays back to (..., K) float32 probabilities."""
    if name == UINT8_ARGMAX:
        return decode_uint8(parts["codes"])
    if name == ROWMAX_UINT8:
        return decode_rowmax_uint8(parts["codes"], parts["scale"])
    if name == "uint8":
        return parts["codes"].astype(np.float32) / 255
    if name == "sqrt-uint8":
        return (parts["codes"].astype(np.float32) / 255) ** 2
    if name == "uint16":
        return parts["codes"].astype(np.float32) / 65535
    if name == "topk":
        index = parts["index"].astype(np.int64)
        out = np.zeros((*index.shape[:-1], n_keys), np.float32)
        np.put_along_axis(out, index, parts["value"].astype(np.float32), axis=-1)
        return out
    raise ConfigError(unknown_name_message("attention encoding", name, ENCODINGS))


def argmax_preserved(p: np.ndarray, parts: dict[str, np.ndarray], decoded: np.ndarray) -> float:
    """Share of rows whose argmax over keys survives the encoding (first index on ties).

    An encoding that stores the argmax (`parts["argmax"]`) is judged by it; others by the
    argmax of their decoded rows.
    """
    kept = parts["argmax"] if "argmax" in parts else np.argmax(decoded, axis=-1)
    return float((np.argmax(p, axis=-1) == kept).mean())
