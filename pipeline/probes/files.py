"""Probe files: one safetensors of weights plus one JSON config per probe set.

Weights are stored per probe in `nn.Linear` convention, key `<location>/view<v>/<k>.weight`
(out, in) and `.bias` (out,), or `<location>/shared/<k>.…` for a shared head, so the file
is usable without probe3r. The JSON holds the `ProbeSpec` plus provenance: the model, the
feature store's identity, the training budget and the final losses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from pipeline.errors import SchemaError, StoreNotFoundError
from pipeline.probes.probeset import VIEWS, ProbeSet, ProbeSpec

WEIGHTS, CONFIG = "probes.safetensors", "config.json"
FORMAT_VERSION = 1


def _head_names(probes: ProbeSet) -> tuple[str, ...]:
    return ("shared",) if probes.spec.shared_views else tuple(f"view{v}" for v in VIEWS)


def probe_tensors(probes: ProbeSet) -> dict[str, torch.Tensor]:
    """Every probe's layers as flat `nn.Linear`-style tensors keyed by location/head/layer."""
    out = {}
    heads = _head_names(probes)
    for key, locs in probes.group_locations.items():
        group = probes.groups[key]
        for i, loc in enumerate(locs):
            for j, head in enumerate(heads):
                p = i * len(heads) + j
                for k in range(group.n_layers):
                    out[f"{loc}/{head}/{k}.weight"] = getattr(group, f"weight{k}")[p].T.contiguous()
                    out[f"{loc}/{head}/{k}.bias"] = getattr(group, f"bias{k}")[p].contiguous()
    return out


def save_probes(path: Path, probes: ProbeSet, meta: dict[str, Any]) -> None:
    """Write `path/probes.safetensors` and `path/config.json`.

    Args:
        path: folder of the probe set (created), e.g. models/probes/mlp.
        probes: the trained set.
        meta: provenance for the JSON: model, features store identity, training budget,
            final losses (anything JSON-serialisable).
    """
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu() for k, v in probe_tensors(probes).items()}
    save_file(tensors, str(path / WEIGHTS), metadata={"format_version": str(FORMAT_VERSION)})
    config = {"format_version": FORMAT_VERSION, "spec": probes.spec.to_dict(), **meta}
    (path / CONFIG).write_text(json.dumps(config, indent=2) + "\n")


def load_probes(path: Path, *, device: str | torch.device = "cpu") -> ProbeSet:
    """The probe set saved at `path`, ready to apply to captured features.

    `probes.meta` holds the JSON config (model, store identity, losses, …).

    Example:
        >>> probes = load_probes(Path("models/probes/mlp"))
        >>> probes(acts)["b03.cross"]["pred"].shape
        torch.Size([2, 2, 224, 224, 3])

    Raises:
        StoreNotFoundError: the folder lacks probes.safetensors or config.json.
        SchemaError: the weights do not match the config's spec.
    """
    for name in (WEIGHTS, CONFIG):
        if not (path / name).is_file():
            raise StoreNotFoundError(f"{path}: no {name} (expected a probe set written by train-probes)")
    config = json.loads((path / CONFIG).read_text())
    if config.get("format_version") != FORMAT_VERSION:
        raise SchemaError(
            f"{path / CONFIG}: format_version {config.get('format_version')!r}, this probe3r reads {FORMAT_VERSION}"
        )
    probes = ProbeSet(ProbeSpec.from_dict(config["spec"]))
    tensors = load_file(str(path / WEIGHTS))
    expected = probe_tensors(probes)
    if set(tensors) != set(expected):
        diff = sorted(set(tensors) ^ set(expected))
        raise SchemaError(
            f"{path / WEIGHTS}: keys differ from {CONFIG}'s spec: {diff[:3]} (+{len(diff) - 3} more)"
        )
    wrong = [k for k in expected if tensors[k].shape != expected[k].shape]
    if wrong:  # copy_ would broadcast a wrong but compatible shape silently
        k = wrong[0]
        raise SchemaError(
            f"{path / WEIGHTS}: '{k}' has shape {tuple(tensors[k].shape)}, {CONFIG}'s spec gives "
            f"{tuple(expected[k].shape)} ({len(wrong)} tensors differ)"
        )
    heads = _head_names(probes)
    with torch.no_grad():
        for key, locs in probes.group_locations.items():
            group = probes.groups[key]
            for k in range(group.n_layers):
                w = [tensors[f"{loc}/{h}/{k}.weight"].T for loc in locs for h in heads]
                b = [tensors[f"{loc}/{h}/{k}.bias"] for loc in locs for h in heads]
                getattr(group, f"weight{k}").copy_(torch.stack(w))
                getattr(group, f"bias{k}").copy_(torch.stack(b))
    probes.meta = config
    return probes.to(device).eval()
