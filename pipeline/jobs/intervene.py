"""The intervene job: knock out attention live, probe the changed stream, report what moved.

Interventions need a live forward pass (the cached features are the unchanged model's),
so each chosen pair is run twice through the store's own model, once plain and once with
the knockouts, with every probed location captured; the probe sets and the model's head
then score both, and the change of every metric is reported with a bootstrap interval.
Knockouts are written as strings (params.yaml, `--knockout`), e.g. the paper's Appendix G:

    b02.self:heads=0,3,8,9:top_k=5:views=2     zero the 5 most-attended keys of 4 heads
    b01.cross:heads=3:keys=0,1,2               zero chosen keys ("keys=all": every key)
    b01.cross:heads=3,5:ablate                 zero the heads' outputs instead

Knocked-out rows keep their other weights as they are, as in the paper; the flag
`renormalize` (e.g. `b02.self:heads=0:top_k=5:renormalize`) rescales each changed row to
sum to 1 instead.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.errors import ConfigError
from pipeline.jobs.eval_inputs import probe_set_names, read_rows
from pipeline.jobs.eval_pointmaps import METRICS, score_batch
from pipeline.jobs.eval_report import jsonable
from pipeline.jobs.eval_tables import write_csv
from pipeline.jobs.extract_model import store_identity, store_model
from pipeline.metrics.bootstrap import bootstrap_mean
from pipeline.params import section_kwargs
from pipeline.probes.files import load_probes
from pipeline.probing.capture import capture
from pipeline.probing.interventions import Intervention, ablate_heads, knockout_keys
from pipeline.probing.locations import attention_locations, check_names
from pipeline.store.writer import open_store

log = logging.getLogger(__name__)

STATUS_OK = 1
KNOCKOUT_FIELDS = ("heads", "keys", "top_k", "views", "ablate", "renormalize")


@dataclass(frozen=True)
class InterveneParams:
    """params.yaml `intervene:`.

    Attributes:
        knockouts: knockout strings (module docstring); empty runs the plain model twice.
        pairs: explicit pair indices; None takes the first `n_pairs` extracted pairs of `splits`.
        splits, n_pairs: which pairs when `pairs` is None.
        probe_sets: "all" or a list of set names.
        save_locations: probe locations whose pointmaps are saved (the model's output always is).
        batch_size: pairs per forward pass.
        procrustes_scale: see EvaluateParams.
        n_boot, confidence, seed: bootstrap of the metric changes.
        device: "auto", "cpu" or "cuda[:i]".
    """

    knockouts: tuple[str, ...] = ("b02.self:heads=0,3,8,9:top_k=5:views=2",)
    pairs: tuple[int, ...] | None = None
    splits: tuple[str, ...] = ("test",)
    n_pairs: int = 8
    probe_sets: str | tuple[str, ...] = "all"
    save_locations: tuple[str, ...] = ()
    batch_size: int = 2
    procrustes_scale: bool = False
    n_boot: int = 1000
    confidence: float = 0.95
    seed: int = 0
    device: str = "auto"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> InterveneParams:
        """Build from a params.yaml section; unknown keys are refused by name."""
        return cls(**section_kwargs(cls, "intervene", raw))


def _ints(text: str, spec: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x]
    except ValueError:
        raise ConfigError(f"knockout {spec!r}: expected comma-separated integers, got {text!r}") from None


def parse_knockout(spec: str, *, dec_depth: int, n_tokens: int, n_heads: int) -> Intervention:
    """One knockout string → an `Intervention` (see the module docstring for the syntax).

    Raises:
        ConfigError: unknown location or field; no heads, or heads, views, keys or top_k out
            of range; both keys and top_k, or either (or renormalize) with ablate; a value
            given to the flag renormalize.
    """
    name, *parts = spec.split(":")
    check_names([name], attention_locations(dec_depth), "attention location")
    opts: dict[str, str] = {}
    for part in parts:
        key, _, value = part.partition("=")
        if key not in KNOCKOUT_FIELDS:
            raise ConfigError(
                f"knockout {spec!r}: unknown field {key!r}; fields: {', '.join(KNOCKOUT_FIELDS)}"
            )
        if key in ("ablate", "renormalize") and value:
            raise ConfigError(f"knockout {spec!r}: {key} is a flag and takes no value, got {key}={value}")
        opts[key] = value
    heads = _ints(opts.get("heads", ""), spec)
    if not heads:
        raise ConfigError(f"knockout {spec!r}: give the heads, e.g. {name}:heads=0,3:top_k=5")
    _check_range(spec, "heads", heads, n_heads)
    views = tuple(_ints(opts.get("views", "1,2"), spec))
    if not views or not set(views) <= {1, 2}:
        raise ConfigError(f"knockout {spec!r}: views must be 1, 2 or 1,2, got {opts.get('views')!r}")
    if "ablate" in opts:
        if {"keys", "top_k", "renormalize"} & set(opts):
            raise ConfigError(
                f"knockout {spec!r}: ablate removes whole heads; it takes no keys, top_k or renormalize"
            )
        return ablate_heads(name, heads, views=views)
    keys = None
    if "keys" in opts:
        keys = list(range(n_tokens)) if opts["keys"] == "all" else _ints(opts["keys"], spec)
        _check_range(spec, "keys", keys, n_tokens)
    top_k = None
    if "top_k" in opts:
        top_k = _ints(opts["top_k"], spec)
        if len(top_k) != 1 or not 1 <= top_k[0] <= n_tokens:
            raise ConfigError(f"knockout {spec!r}: top_k must be one integer in 1..{n_tokens}")
        top_k = top_k[0]
    return knockout_keys(name, heads, keys=keys, top_k=top_k, views=views, renormalize="renormalize" in opts)


def _check_range(spec: str, field: str, values: list[int], n: int) -> None:
    bad = [v for v in values if not 0 <= v < n]
    if bad:
        raise ConfigError(f"knockout {spec!r}: {field} {bad} out of range 0..{n - 1}")


def choose_pairs(features: Any, params: InterveneParams) -> np.ndarray:
    """The explicit pairs, or the first n_pairs extracted pairs of the chosen splits."""
    status = features["status"][:]
    if params.pairs is not None:
        pairs = np.array(sorted(params.pairs), dtype=np.int64)
        bad = [int(p) for p in pairs if not (0 <= p < len(status) and status[p] == STATUS_OK)]
        if bad:
            raise ConfigError(f"intervene.pairs: {bad} are not extracted pairs of the store")
        return pairs
    ok = np.flatnonzero((status == STATUS_OK) & np.isin(features["split"][:], list(params.splits)))
    if len(ok) == 0:
        raise ConfigError(f"intervene: no extracted pair in splits {list(params.splits)}")
    return ok[: params.n_pairs]


def _outputs(model_out: tuple, acts: Any, sets: dict) -> dict[str, dict]:
    res1, res2 = model_out
    out = {
        "model": {
            "": {
                "pred": torch.stack([res1["pts3d"], res2["pts3d_in_other_view"]], 1),
                "conf": torch.stack([res1["conf"], res2["conf"]], 1),
            }
        }
    }
    for name, s in sets.items():
        out[name] = s({loc: acts.stream[loc] for loc in s.spec.locations})
    return out


def run_intervene(
    features: Path, renders: Path, probes: Path, out: Path, params: InterveneParams
) -> dict[str, Any]:
    """Run the knockouts on the chosen pairs; write out/metrics.json, out/pairs.csv, out/pointmaps.npz.

    Returns:
        {"pairs": [...], "knockouts": [...], "methods": {method: {location: {metric: plain,
        metric_knocked, metric_change (+ _lo/_hi)}}}}.
    """
    group, rgroup = open_store(features, "features"), open_store(renders, "renders")
    model = store_model(group, device=params.device, where=str(features))
    device = next(model.parameters()).device
    cfg = model.config
    n_tokens = int(np.prod(group.attrs["patch_grid"]))
    knockouts = [
        parse_knockout(k, dec_depth=cfg.dec_depth, n_tokens=n_tokens, n_heads=cfg.dec_num_heads)
        for k in params.knockouts
    ]
    sets = {n: load_probes(probes / n, device=device) for n in probe_set_names(probes, params.probe_sets)}
    locations = list(dict.fromkeys(loc for s in sets.values() for loc in s.spec.locations))
    check_names(params.save_locations, locations, "intervene.save_locations entry")
    pairs = choose_pairs(group, params)
    scores: dict[tuple[str, str], list] = {}
    saved: dict[str, list] = {}
    for start in range(0, len(pairs), params.batch_size):
        idx = pairs[start : start + params.batch_size]
        rgb = torch.from_numpy(read_rows(rgroup["rgb"], idx)).to(device)
        img = rgb.permute(0, 1, 4, 2, 3).float() / 127.5 - 1  # DUSt3R's [-1, 1] input
        gt = torch.from_numpy(read_rows(rgroup["pts3d_view1"], idx))
        depth = torch.from_numpy(read_rows(rgroup["depth"], idx))
        valid = torch.from_numpy(read_rows(rgroup["valid"], idx))
        for run, ivs in (("plain", []), ("knocked", knockouts)):
            with torch.no_grad():
                model_out, acts = capture(model, img[:, 0], img[:, 1], locations=locations, interventions=ivs)
                outputs = _outputs(model_out, acts, sets)
            for method, per_loc in outputs.items():
                head = "pointmap" if method == "model" else sets[method].spec.head.name
                got = score_batch(
                    per_loc, gt, depth, valid, head=head, procrustes_scale=params.procrustes_scale
                )
                scores.setdefault((method, run), []).append(got)
                for loc in ("", *params.save_locations):
                    if loc in per_loc and (method == "model") == (loc == ""):
                        saved.setdefault(f"{method}/{loc or 'output'}/{run}", []).append(
                            per_loc[loc]["pred"].cpu().numpy()
                        )
    method_locs = {"model": [""]} | {n: list(s.spec.locations) for n, s in sets.items()}
    result: dict[str, Any] = {
        **store_identity(features),
        "pairs": pairs,
        "knockouts": list(params.knockouts),
        "methods": {},
    }
    rows = []
    for method, locs in method_locs.items():
        plain = {k: np.concatenate([b[k] for b in scores[(method, "plain")]]) for k in METRICS}
        knocked = {k: np.concatenate([b[k] for b in scores[(method, "knocked")]]) for k in METRICS}
        change = np.stack([knocked[k] - plain[k] for k in METRICS], -1)  # (P, L, M)
        stats = bootstrap_mean(
            change.reshape(len(pairs), -1),
            n_boot=params.n_boot,
            confidence=params.confidence,
            seed=params.seed,
        )
        shaped = {k: v.reshape(change.shape[1:]) for k, v in stats.items()}
        entry = {}
        for j, loc in enumerate(locs):
            e = {}
            for m, k in enumerate(METRICS):
                if np.isnan(plain[k][:, j]).all():
                    continue
                e |= {k: np.nanmean(plain[k][:, j]), f"{k}_knocked": np.nanmean(knocked[k][:, j])}
                e |= {
                    f"{k}_change": shaped["mean"][j, m],
                    f"{k}_change_lo": shaped["low"][j, m],
                    f"{k}_change_hi": shaped["high"][j, m],
                }
            entry[loc] = e
            rows += [
                [int(p), method, loc] + [v for k in METRICS for v in (plain[k][i, j], knocked[k][i, j])]
                for i, p in enumerate(pairs)
            ]
        result["methods"][method] = entry
    result = jsonable(result)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    write_csv(
        out / "pairs.csv",
        ["pair", "method", "location"] + [f"{k}{s}" for k in METRICS for s in ("", "_knocked")],
        rows,
    )
    np.savez_compressed(
        out / "pointmaps.npz", pairs=pairs, **{k: np.concatenate(v) for k, v in saved.items()}
    )
    log.info("%s: %d pairs, knockouts %s", out, len(pairs), list(params.knockouts))
    return result
