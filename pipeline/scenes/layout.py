"""Find the scenes in a folder: split folders, HM3D's release layout, split list files.

Accepted layouts (see docs/scenes.md):
- `<root>/<split>/<name>.{glb,gltf,ply,obj}`: one scene per file, id `<name>`;
- `<root>/<split>/<dir>/<mesh>`: one scene per sub-folder, id `<dir>`. This is HM3D's glb
  release as unpacked (`<root>/val/00800-TEEsavR23oF/TEEsavR23oF.glb`). Inside a folder a
  plain mesh is preferred over `*.basis.glb` (basis textures can't be decoded; loading one
  raises a SceneError) and `*.semantic.*` annotation meshes are ignored;
- `<root>/splits.yaml` mapping split → list of scene ids overrides the folders: it alone
  decides which scenes are used and their splits, wherever under `<root>` they lie.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.errors import SceneError, unknown_name_message
from pipeline.scenes.base import SPLITS
from pipeline.scenes.splits import is_test_from_val

MESH_SUFFIXES = (".glb", ".gltf", ".ply", ".obj")
SPLIT_FILES = ("splits.yaml", "splits.yml")
EXPECTED_LAYOUT = (
    "expected <root>/<split>/<scene>.glb|.gltf|.ply|.obj, HM3D's "
    "<root>/<split>/00800-TEEsavR23oF/TEEsavR23oF.glb, or a <root>/splits.yaml "
    f"mapping split ({', '.join(SPLITS)}) to scene ids"
)


def _is_mesh(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in MESH_SUFFIXES and ".semantic." not in path.name


def _stem(path: Path) -> str:
    """'kfPV7w3FaU5' for 'kfPV7w3FaU5.glb' and for 'kfPV7w3FaU5.basis.glb'."""
    name = path.name[: -len(path.suffix)]
    return name.removesuffix(".basis")


def _prefer_plain(paths: list[Path]) -> Path:
    """The first non-basis mesh in sorted order, else the first basis one."""
    return sorted(paths, key=lambda p: (p.name.endswith(".basis.glb"), p.name))[0]


def scenes_in(folder: Path, *, skip_dirs: tuple[str, ...] = (), require_mesh: bool = True) -> dict[str, Path]:
    """Scene id → mesh path for the scenes directly in `folder` (files and sub-folders).

    Args:
        folder: a split folder, or the root when a split list file is used.
        skip_dirs: sub-folder names that are not scenes (the split folders under the root).
        require_mesh: raise for a sub-folder without a mesh. Off for the root, where
            unrelated folders (HM3D's minival, caches) may sit next to the split list.
    """
    by_id: dict[str, list[Path]] = {}
    for entry in sorted(folder.iterdir()):
        if _is_mesh(entry):
            by_id.setdefault(_stem(entry), []).append(entry)
        elif entry.is_dir() and entry.name not in skip_dirs and not entry.name.startswith("."):
            meshes = [p for p in entry.iterdir() if _is_mesh(p)]
            if not meshes and not require_mesh:
                continue
            if not meshes:
                raise SceneError(
                    f"{entry}: scene folder has no .glb/.gltf/.ply/.obj mesh (*.semantic.* files are ignored)"
                )
            by_id.setdefault(entry.name, []).extend(meshes)
    return {sid: _prefer_plain(paths) for sid, paths in by_id.items()}


def _merge(into: dict[str, Path], more: dict[str, Path]) -> None:
    for sid, path in more.items():
        if sid in into:
            raise SceneError(f"scene id '{sid}' found twice: {into[sid]} and {path}; rename one")
        into[sid] = path


def _split_file(root: Path) -> Path | None:
    found = [root / n for n in SPLIT_FILES if (root / n).is_file()]
    return found[0] if found else None


def _read_split_file(path: Path) -> dict[str, list[str]]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SceneError(f"{path}: cannot read split list: {err}") from err
    if not isinstance(data, dict):
        raise SceneError(f"{path}: expected a mapping of split name to a list of scene ids")
    out: dict[str, list[str]] = {}
    for split, ids in data.items():
        if split not in SPLITS:
            raise SceneError(f"{path}: {unknown_name_message('split', str(split), SPLITS)}")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise SceneError(f"{path}: split '{split}' must be a list of scene id strings")
        out[split] = ids
    return out


def _match(wanted: str, found: dict[str, Path]) -> str | None:
    """The found id equal to `wanted`, or HM3D's '<NNNNN>-<wanted>' folder id."""
    if wanted in found:
        return wanted
    hits = [sid for sid in found if sid.split("-", 1)[-1] == wanted and sid.split("-", 1)[0].isdigit()]
    return hits[0] if len(hits) == 1 else None


def folder_scenes(root: Path) -> list[tuple[str, str, Path]]:
    """Every scene under `root` as (scene_id, split, mesh path), sorted by scene id.

    Raises:
        SceneError: the folder is missing or matches no layout, a split list names a scene
            that isn't there, or two scenes share an id.
    """
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise SceneError(f"scene folder {root} {what}; {EXPECTED_LAYOUT}")
    split_dirs = [s for s in SPLITS if (root / s).is_dir()]
    split_file = _split_file(root)
    if split_file is not None:
        found: dict[str, Path] = {}
        _merge(found, scenes_in(root, skip_dirs=SPLITS, require_mesh=False))
        for split in split_dirs:
            _merge(found, scenes_in(root / split))
        out, seen = [], {}
        for split, ids in _read_split_file(split_file).items():
            for wanted in ids:
                sid = _match(wanted, found)
                if sid is None:
                    raise SceneError(f"{split_file}: {split} scene '{wanted}' not found under {root}")
                if sid in seen:
                    raise SceneError(f"{split_file}: scene '{wanted}' listed in both {seen[sid]} and {split}")
                seen[sid] = split
                out.append((sid, split, found[sid]))
        return sorted(out)
    if not split_dirs:
        raise SceneError(
            f"scene folder {root} has no split folders and no {SPLIT_FILES[0]}; {EXPECTED_LAYOUT}"
        )
    out, all_found = [], {}
    for split in split_dirs:
        scenes = scenes_in(root / split)
        _merge(all_found, scenes)
        for sid, path in scenes.items():
            derived = split == "val" and "test" not in split_dirs and is_test_from_val(sid)
            out.append((sid, "test" if derived else split, path))
    return sorted(out)
