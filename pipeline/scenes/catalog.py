"""One way for the render stage to enumerate and load scenes, whatever their source.

`list_scenes` is cheap (no mesh is read) and returns `SceneRef`s in a deterministic order;
`load_scene` turns one ref into a `Scene`. Procedural rooms and mesh folders go through
the same two calls, so the render stage holds no source-specific code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.scenes.base import SPLITS, Scene
from pipeline.scenes.layout import folder_scenes
from pipeline.scenes.mesh_files import load_mesh_scene
from pipeline.scenes.procedural import generate_room, procedural_scene_id
from pipeline.scenes.splits import apportion, check_splits, procedural_splits

PROCEDURAL = "procedural"


@dataclass(frozen=True)
class SceneRef:
    """A scene to load later.

    Attributes:
        scene_id: stable identifier, recorded with every pair.
        split: one of SPLITS.
        source: "procedural", or the mesh file path as a string.
        index: procedural room index, or the position in the folder's full sorted listing
            (stable whatever `splits` or `n_scenes` were asked for).
    """

    scene_id: str
    split: str
    source: str
    index: int


def list_scenes(
    source: str,
    *,
    n_scenes: int | None,
    seed: int,
    splits: tuple[str, ...] = SPLITS,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
) -> list[SceneRef]:
    """List scenes without loading them.

    Args:
        source: "procedural", or a folder laid out as docs/scenes.md describes (HM3D's glb
            release as unpacked works).
        n_scenes: procedural: how many rooms to list (required); a room's split does not depend on it.
            Folder: a cap on the scenes returned (None: all), shared among the asked splits
            in proportion to their sizes, taking the first scene ids of each split.
        seed: fixes procedural rooms and their split assignment; unused for folders,
            whose splits never depend on the seed.
        splits: keep only scenes of these splits.
        split_fractions: train/val/test shares of procedural rooms (`procedural_splits`).

    Returns:
        SceneRefs sorted by index (procedural) or by scene id (folder).

    Raises:
        ConfigError: n_scenes missing or < 1, unknown split, bad fractions.
        SceneError: the folder is missing or matches no layout (the message shows it).

    Example:
        >>> [r.scene_id for r in list_scenes("procedural", n_scenes=2, seed=0)]
        ['procedural-0-000000', 'procedural-0-000001']
    """
    splits = check_splits(splits)
    if n_scenes is not None and n_scenes < 1:
        raise ConfigError(f"n_scenes must be ≥ 1 or None, got {n_scenes}")
    if source == PROCEDURAL:
        if n_scenes is None:
            raise ConfigError("n_scenes is required for procedural scenes (how many rooms to generate)")
        labels = procedural_splits(n_scenes, seed, split_fractions)
        return [
            SceneRef(procedural_scene_id(seed, i), split, PROCEDURAL, i)
            for i, split in enumerate(labels)
            if split in splits
        ]
    listing = [
        SceneRef(sid, split, str(path), i) for i, (sid, split, path) in enumerate(folder_scenes(Path(source)))
    ]
    refs = [r for r in listing if r.split in splits]
    if n_scenes is None or n_scenes >= len(refs):
        return refs
    by_split = [[r for r in refs if r.split == s] for s in splits]
    quotas = apportion(n_scenes, [len(group) for group in by_split])
    kept = [r for group, q in zip(by_split, quotas, strict=True) for r in group[:q]]
    return sorted(kept, key=lambda r: r.scene_id)


def load_scene(ref: SceneRef, *, seed: int) -> Scene:
    """Build or read the scene a ref points to.

    Args:
        ref: from `list_scenes`.
        seed: the seed given to `list_scenes` (procedural rooms are a function of it).

    Raises:
        SceneError: the mesh file is missing, unreadable, or lost a texture; the message
            names the file (and the material).
        ConfigError: a procedural ref listed under another seed.
    """
    if ref.source == PROCEDURAL:
        if ref.scene_id != procedural_scene_id(seed, ref.index):
            raise ConfigError(f"scene '{ref.scene_id}' was listed with another seed than seed={seed}")
        return generate_room(seed, ref.index, split=ref.split, scene_id=ref.scene_id)
    return load_mesh_scene(Path(ref.source), scene_id=ref.scene_id, split=ref.split)
