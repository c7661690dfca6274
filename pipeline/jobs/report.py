"""The report job: stores, probes and metrics → reports/report.html, figures and viewers.

For each chosen pair it draws Fig. 3, 9, 15 and 13 and writes a 4D pointmap viewer and an
attention viewer next to the report; Fig. 4, 5, 8 and Table 1 come from metrics.json. The
knockout of Fig. 13 needs a live forward pass, so the model is rebuilt from the features
store's extract parameters. Any missing input is named in its section, not fatal.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import ConfigError, Probe3rError
from pipeline.jobs.extract_model import store_model
from pipeline.params import section_kwargs
from pipeline.probes.files import load_probes
from pipeline.probes.probeset import ProbeSet
from pipeline.probing.interventions import knockout_keys
from pipeline.store.writer import open_store
from pipeline.viz.attention_viewer import query_patch, write_attention_viewer
from pipeline.viz.live import probe_live, rgb_to_input
from pipeline.viz.loaders import apply_probes, load_json, load_pair, pair_acts, pair_attention, weights_line
from pipeline.viz.metrics_view import headline_numbers
from pipeline.viz.pair import PairView
from pipeline.viz.report import Section, write_report
from pipeline.viz.sections import (
    attention_sections,
    guarded,
    knockout_section,
    metrics_sections,
    sequence_section,
)
from pipeline.viz.viewer4d import write_viewer4d

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportParams:
    """params.yaml `report:`.

    Attributes:
        pairs: pairs of the stores drawn in Fig. 3, 9, 13, 15 and given viewers.
        probe_set: the probe set drawn (a folder of the probes directory).
        query: view-2 query patch of Fig. 9/15 (row-major; None: the centre patch).
        fig15_maps: attention maps of Fig. 15 (paper: b01.self and b00.cross).
        knockout_location: self-attention map of view 2 to intervene on (paper: b02.self).
        knockout_heads: its heads (paper: 0, 3, 8, 9; heads beyond the model's are dropped).
        knockout_top_k: keys knocked out per head, those with the most attention (paper: 5).
        figure_stride: pixel subsampling of the static point-cloud figures.
        viewer_stride: pixel subsampling of the 4D viewer.
        device: "auto", "cpu" or "cuda[:i]" for the probes and the knockout pass.
    """

    pairs: tuple[int, ...] = (0,)
    probe_set: str = "mlp"
    query: int | None = None
    fig15_maps: tuple[str, ...] = ("b01.self", "b00.cross")
    knockout_location: str = "b02.self"
    knockout_heads: tuple[int, ...] = (0, 3, 8, 9)
    knockout_top_k: int = 5
    figure_stride: int = 4
    viewer_stride: int = 2
    device: str = "cpu"

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ReportParams:
        """Build from a params.yaml section; unknown keys are refused by name."""
        return cls(**section_kwargs(cls, "report", raw))


def _identity(
    renders: Path, features: Path, probes: Path, params: ReportParams
) -> tuple[dict[str, str], bool]:
    f = open_store(features, "features")
    r = open_store(renders, "renders")
    weights = str(f.attrs.get("model_weights"))
    return {
        "model": str(f.attrs.get("model_name")),
        "weights": weights_line(weights),
        "data": f"{renders}: {r.attrs.get('n_pairs')} pairs, source {r.attrs.get('params', {}).get('source')}, "
        f"image size {r.attrs.get('image_size')}",
        "features": f"{features} (extract params {f.attrs.get('params')})",
        "probes": str(probes),
        "report parameters": str(asdict(params)),
    }, weights.startswith("random-init")


def _knockout(features: Path, view: PairView, params: ReportParams, probes: ProbeSet) -> Section:
    """Fig. 13: rebuild the store's model, probe the last location with and without the knockout."""
    f = open_store(features, "features")
    model = store_model(f, device=params.device, where=str(features))
    heads = [h for h in params.knockout_heads if 0 <= h < model.config.dec_num_heads]
    if not heads:
        raise ConfigError(
            f"report.knockout_heads {list(params.knockout_heads)}: the model has {model.config.dec_num_heads} heads"
        )
    img1, img2 = rgb_to_input(view.rgb[0]), rgb_to_input(view.rgb[1])
    last = [loc for loc in probes.spec.locations if not loc.endswith(".out")][-1]
    ko = knockout_keys(params.knockout_location, heads, top_k=params.knockout_top_k, views=(2,))
    before = probe_live(model, probes, img1, img2)[last]
    after = probe_live(model, probes, img1, img2, interventions=[ko])[last]
    label = (
        f"{params.knockout_location} heads {heads}, top-{params.knockout_top_k} keys, view 2; probe at {last}"
    )
    return knockout_section(view, before, after, label=label)


@torch.no_grad()
def run_report(
    renders: Path, features: Path, probes_dir: Path, metrics_dir: Path, out: Path, params: ReportParams
) -> dict[str, Any]:
    """Write out/report.html, out/viewers/pair_XXXX.html and out/viewers/attention_XXXX.html.

    Args:
        renders, features: the stores.
        probes_dir: folder of probe sets (models/probes); `params.probe_set` is drawn.
        metrics_dir: folder holding metrics.json and plots/ (written by evaluate).
        out: the report folder (reports/).
        params: pairs, probe set, attention and knockout choices.

    Returns:
        {"report": path, "viewers": [paths], "missing": [section titles not drawn]}.
    """
    identity, random_weights = _identity(renders, features, probes_dir, params)
    try:
        metrics, missing_metrics = load_json(metrics_dir / "metrics.json"), ""
    except Probe3rError as err:
        metrics, missing_metrics = None, f"{err} (run `probe3r evaluate` first)"
    probes = load_probes(probes_dir / params.probe_set, device=params.device)
    sections: list[Section] = []
    viewers: list[Path] = []
    grid = tuple(open_store(features, "features").attrs["patch_grid"])
    query = query_patch(params.query, grid)  # a bad report.query stops here, before any work
    for pair in params.pairs:
        view = load_pair(renders, pair, features=features)
        points, conf = apply_probes(probes, pair_acts(features, pair, probes.spec.locations))
        stream = {k: v for k, v in points.items() if not k.endswith(".out")}
        v4d = write_viewer4d(
            out / "viewers" / f"pair_{pair:04d}.html", view, stream, conf, stride=params.viewer_stride
        )
        sections.append(
            sequence_section(view, stream, stride=params.figure_stride, viewer=f"viewers/{v4d.name}")
        )
        viewers.append(v4d)
        try:
            attention = pair_attention(features, pair)
            att = write_attention_viewer(
                out / "viewers" / f"attention_{pair:04d}.html",
                view.rgb,
                attention,
                grid=grid,
                query=query,
                title=view.title,
                identity=view.identity,
            )
            viewers.append(att)
            sections += attention_sections(
                view,
                attention,
                grid=grid,
                query=query,
                fig15_maps=params.fig15_maps,
                viewer=f"viewers/{att.name}",
            )
        except Probe3rError as err:
            sections.append(Section(f"Fig. 9 / 15 · attention · {view.title}", missing=str(err)))
        title = f"Fig. 13 · attention knockout · {view.title}"
        sections.append(guarded(title, lambda v=view: _knockout(features, v, params, probes)))
    sections += metrics_sections(
        metrics, missing_metrics, method=params.probe_set, plots=metrics_dir / "plots"
    )
    headline = headline_numbers(metrics, params.probe_set) if metrics else []
    page = write_report(
        out / "report.html",
        title="probe3r report",
        identity=identity,
        headline=headline,
        sections=sections,
        random_weights=random_weights,
    )
    missing = [s.title for s in sections if s.missing]
    for title in missing:
        log.warning("report: not drawn: %s", title)
    return {"report": page, "viewers": viewers, "missing": missing, "n_sections": len(sections)}
