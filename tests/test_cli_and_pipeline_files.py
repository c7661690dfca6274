"""The CLI mounts every stage with documented options; dvc.yaml and params.yaml agree."""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_root_help_lists_every_dvc_stage_as_a_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage in stages:
        assert stage.replace("_", "-") in result.output


def test_render_help_explains_each_option() -> None:
    result = runner.invoke(app, ["render", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for option in (
        "--params",
        "--out",
        "--source",
        "--n-pairs",
        "--seed",
        "--workers",
        "--scheduler",
        "--overwrite",
    ):
        assert option in result.output
    assert "Resumable" in result.output


def _cmd_paths(cmd: str) -> set[str]:
    words = shlex.split(cmd)
    return {w for w in words if "/" in w or w.endswith((".zarr", ".yaml", ".json"))} - {"params.yaml"}


def test_dvc_stage_paths_on_the_command_line_match_deps_and_outs() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        entries = [
            *stage.get("deps", []),
            *stage.get("outs", []),
            *stage.get("metrics", []),
            *stage.get("plots", []),
        ]
        declared = {next(iter(e)) if isinstance(e, dict) else e for e in entries}
        missing = _cmd_paths(stage["cmd"]) - declared
        assert not missing, f"stage {name}: paths on its cmd but not in deps/outs: {missing}"
        for dep in stage.get("deps", []):
            assert (ROOT / dep).exists() or dep.startswith(("data/", "models/", "reports/")), (
                f"stage {name}: dep {dep} does not exist"
            )


def _module_file(name: str) -> Path | None:
    """The file of a dotted module of this repo (pipeline.x.y or stages.x), None for other packages."""
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported_files(entry: Path) -> set[Path]:
    """Every file of this repo that importing `entry` runs: its own imports, transitively, and
    the __init__.py of each package on the way (read from the source, nothing is imported)."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                parts = name.split(".")
                for i in range(1, len(parts) + 1):  # packages run their __init__ first
                    found = _module_file(".".join(parts[:i]))
                    if found is not None:
                        todo.append(found)
    return seen


def test_every_dvc_stage_depends_on_the_code_it_runs() -> None:
    """A change to any file a stage's command imports must make `dvc repro` rerun that stage."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        command = shlex.split(stage["cmd"])[1].replace("-", "_")
        deps = [ROOT / d for d in stage.get("deps", [])]
        for path in sorted(_imported_files(ROOT / "stages" / f"{command}.py")):
            assert any(path == d or d in path.parents for d in deps), (
                f"dvc.yaml stage {name}: runs {path.relative_to(ROOT)} but no dep covers it"
            )


def test_every_dvc_stage_has_a_params_section_named_like_it() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, stage in stages.items():
        assert name in params, f"params.yaml has no section '{name}'"
        assert name in stage.get("params", []), f"stage {name} does not list its params section"


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in readme


PARAM_CLASSES = {
    "render": ("pipeline.jobs.render", "RenderParams", ("seed",)),
    "extract": ("pipeline.jobs.extract_params", "ExtractParams", ("seed", "device")),
    "train_probes": ("pipeline.jobs.train_probes", "TrainProbesParams", ("seed", "device")),
    "evaluate": ("pipeline.jobs.eval_params", "EvaluateParams", ("seed", "device")),
    "intervene": ("pipeline.jobs.intervene", "InterveneParams", ("seed", "device")),
    "report": ("pipeline.jobs.report", "ReportParams", ()),
}


@pytest.mark.parametrize("params_file", ["params.yaml", "params/paper.yaml"])
def test_every_stage_section_of_the_shipped_params_files_is_accepted(params_file: str) -> None:
    """A typo in a shipped params file must fail here, not an hour into a GPU run."""
    import importlib

    from pipeline.params import load_section

    for section, (module, cls_name, base_keys) in PARAM_CLASSES.items():
        cls = getattr(importlib.import_module(module), cls_name)
        cls.from_dict(load_section(ROOT / params_file, section, base_keys=base_keys))
