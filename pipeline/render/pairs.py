"""Sample and render view pairs with measured overlap and relative rotation.

A try draws camera 1 in free space looking at a visible surface point, proposes camera 2
according to the pair kind, and keeps the pair only if its relative rotation and its
*measured* overlap fall in the accepted ranges:

- "simple": camera 2 near camera 1, looking at the same spot (large overlap, small
  rotation); accepted overlap >= 0.5 and rotation <= 45 degrees.
- "difficult": camera 2 orbited 100 to 180 degrees around the target, looking back at it
  (opposite views); accepted overlap <= 0.5 and rotation >= 90 degrees.
- "any": camera 2 orbited by any angle; no range of its own.

The kind's ranges are intersected with the config's `overlap` and `rotation_deg`. Overlap
is the share of view-2 valid pixels visible in view 1 (exact correspondences, occlusion
tested). It is first estimated on a small geometry-only render so that hopeless tries
cost little, then measured on the full-resolution pair that is returned.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from pipeline.errors import ConfigError, SamplingError, unknown_name_message
from pipeline.render.base import Renderer, ViewRender
from pipeline.render.camera import Camera, look_at
from pipeline.render.correspondence import correspondences, overlap_fraction
from pipeline.render.renderer import SceneRenderer
from pipeline.render.sampling import free_space, orbit, pick_target, rotation_angle_deg, sample_position
from pipeline.scenes.base import Scene

KIND_RANGES = {  # kind -> (overlap range, rotation range in degrees)
    "any": ((0.0, 1.0), (0.0, 180.0)),
    "simple": ((0.5, 1.0), (0.0, 45.0)),
    "difficult": ((0.0, 0.5), (90.0, 180.0)),
}
POSITION_CANDIDATES = 16  # free-space candidates drawn per try for each camera
PREVIEW_SIZE = 48  # longer side of the geometry-only overlap preview, pixels
PREVIEW_MARGIN = 0.1  # overlap slack of the preview, whose pixels are 5x coarser


@dataclass(frozen=True)
class PairSamplingConfig:
    """Constraints on sampled pairs (params.yaml `render:` sampling keys).

    Attributes:
        height, width: image size H, W in pixels (224 default, 512 supported, any H != W).
        fov_deg: horizontal field of view range in degrees, drawn uniformly per view.
        overlap: accepted measured overlap range (share of view-2 valid pixels seen in
            view 1).
        rotation_deg: accepted range of the angle of R1^T R2, degrees.
        min_clearance: smallest distance from either camera to any surface, metres.
        kind: "any", "simple" or "difficult" (see the module docstring).
        max_tries: pair proposals before giving up with SamplingError.
        up: world direction that appears up in the images (cameras never roll).
    """

    height: int = 224
    width: int = 224
    fov_deg: tuple[float, float] = (50.0, 75.0)
    overlap: tuple[float, float] = (0.3, 1.0)
    rotation_deg: tuple[float, float] = (0.0, 180.0)
    min_clearance: float = 0.3
    kind: str = "any"
    max_tries: int = 200
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)

    def __post_init__(self) -> None:
        for name in ("height", "width", "max_tries"):
            if getattr(self, name) < 1:
                raise ConfigError(f"render.{name} must be >= 1, got {getattr(self, name)}")
        _check_range("fov_deg", self.fov_deg, 0.0, 180.0, open_ends=True)
        _check_range("overlap", self.overlap, 0.0, 1.0)
        _check_range("rotation_deg", self.rotation_deg, 0.0, 180.0)
        if not self.min_clearance >= 0:
            raise ConfigError(f"render.min_clearance must be >= 0 metres, got {self.min_clearance}")
        if self.kind not in KIND_RANGES:
            raise ConfigError(unknown_name_message("render.kind", self.kind, KIND_RANGES))
        if len(self.up) != 3 or not np.linalg.norm(self.up) > 0:
            raise ConfigError(f"render.up must be a non-zero 3-vector, got {self.up}")
        (ov_lo, ov_hi), (rot_lo, rot_hi) = self.accepted_ranges()
        if ov_lo > ov_hi or rot_lo > rot_hi:
            kov, krot = KIND_RANGES[self.kind]
            raise ConfigError(
                f"render.kind '{self.kind}' accepts overlap {kov} and rotation_deg {krot}, which "
                f"leave nothing of overlap {self.overlap} and rotation_deg {self.rotation_deg}"
            )

    def accepted_ranges(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """(overlap range, rotation range): the config's ranges within the kind's."""
        (kol, koh), (krl, krh) = KIND_RANGES[self.kind]
        return (
            (max(self.overlap[0], kol), min(self.overlap[1], koh)),
            (max(self.rotation_deg[0], krl), min(self.rotation_deg[1], krh)),
        )


def _check_range(
    name: str, value: tuple[float, float], lo: float, hi: float, open_ends: bool = False
) -> None:
    ok = len(value) == 2 and value[0] <= value[1]
    ok = ok and ((lo < value[0] and value[1] < hi) if open_ends else (lo <= value[0] and value[1] <= hi))
    if not ok:
        bounds = f"({lo}, {hi})" if open_ends else f"[{lo}, {hi}]"
        raise ConfigError(f"render.{name} must be (low, high) with low <= high inside {bounds}, got {value}")


@dataclass(frozen=True, eq=False)
class PairRender:
    """A rendered view pair; the view axis comes first and view 1 (index 0) is the reference.

    Attributes:
        rgb: (2, H, W, 3) uint8.
        depth: (2, H, W) float64 z-depth in each view's own camera frame, metres; 0 where
            invalid.
        pts_world: (2, H, W, 3) float64 world frame, metres; NaN where invalid.
        pts_view1: (2, H, W, 3) float64 in view 1's camera frame (OpenCV axes), metres;
            NaN where invalid.
        valid: (2, H, W) bool.
        K: (2, 3, 3) float64 intrinsics, pixels.
        cam_to_world: (2, 4, 4) float64 OpenCV camera frame to world, metres.
        corr: (2, H, W, 2) float64 (u, v) pixel coordinates: corr[0] in view 2 of each
            view-1 pixel, corr[1] in view 1 of each view-2 pixel; NaN where none.
        overlap: share of view-2 valid pixels visible in view 1.
        rotation_deg: angle of R1^T R2, degrees.
    """

    rgb: np.ndarray
    depth: np.ndarray
    pts_world: np.ndarray
    pts_view1: np.ndarray
    valid: np.ndarray
    K: np.ndarray
    cam_to_world: np.ndarray
    corr: np.ndarray
    overlap: float
    rotation_deg: float


def prepare_scene(scene: Scene, backend: str = "embree") -> Renderer:
    """Build a scene's renderer once (BVH, colour tables) to render many pairs from it.

    Args:
        scene: the scene.
        backend: "embree" (exact, default) or "habitat" (needs habitat-sim).

    Returns:
        A `SceneRenderer`, or a `HabitatRenderer` for backend "habitat".

    Example:
        >>> from pipeline.render.demo_scenes import room_with_objects
        >>> prepare_scene(room_with_objects()).caster.n_faces
        3864
    """
    if backend == "embree":
        return SceneRenderer(scene)
    if backend == "habitat":
        from pipeline.render.habitat_backend import HabitatRenderer

        return HabitatRenderer(scene)
    raise ConfigError(unknown_name_message("render backend", backend, ["embree", "habitat"]))


def render_view(renderer: Renderer, camera: Camera) -> ViewRender:
    """Render one shaded view of the renderer's scene.

    Example:
        >>> from pipeline.render.camera import look_at
        >>> from pipeline.render.demo_scenes import room_with_objects
        >>> pose = look_at(np.array([1.0, 1.0, 1.5]), np.array([3.0, 3.0, 1.0]), np.array([0.0, 0.0, 1.0]))
        >>> view = render_view(prepare_scene(room_with_objects()), Camera.from_fov(60.0, 96, 64, pose))
        >>> view.pts_world.shape
        (64, 96, 3)
    """
    return renderer.render(camera)


def pair_from_views(renderer: Renderer, v1: ViewRender, v2: ViewRender) -> PairRender:
    """Assemble two views into a PairRender: correspondences, view-1 frame, measures."""
    corr12 = correspondences(renderer.caster, v1, v2)
    corr21 = correspondences(renderer.caster, v2, v1)
    pts_world = np.stack([v1.pts_world, v2.pts_world])
    w2c1 = v1.camera.world_to_cam
    return PairRender(
        rgb=np.stack([v1.rgb, v2.rgb]),
        depth=np.stack([v1.depth, v2.depth]),
        pts_world=pts_world,
        pts_view1=np.einsum("ij,vhwj->vhwi", w2c1[:3, :3], pts_world) + w2c1[:3, 3],
        valid=np.stack([v1.valid, v2.valid]),
        K=np.stack([v1.K, v2.K]),
        cam_to_world=np.stack([v1.cam_to_world, v2.cam_to_world]),
        corr=np.stack([corr12, corr21]),
        overlap=overlap_fraction(corr21, v2.valid),
        rotation_deg=rotation_angle_deg(v1.cam_to_world[:3, :3], v2.cam_to_world[:3, :3]),
    )


def sample_pair(renderer: Renderer, cfg: PairSamplingConfig, rng: np.random.Generator) -> PairRender:
    """Draw and render one pair meeting `cfg`, deterministically given `rng`.

    Args:
        renderer: the prepared scene (`prepare_scene`).
        cfg: resolution, FoV, overlap, rotation, clearance and kind constraints.
        rng: the only source of randomness.

    Returns:
        The rendered pair with its measured overlap and rotation.

    Raises:
        SamplingError: no pair met the constraints in `cfg.max_tries` tries; the message
            names the scene and counts the failures of each constraint.

    Example:
        >>> from pipeline.render.demo_scenes import room_with_objects
        >>> renderer = prepare_scene(room_with_objects())
        >>> pair = sample_pair(renderer, PairSamplingConfig(kind="simple"), np.random.default_rng(0))
        >>> pair.pts_view1.shape, pair.overlap >= 0.5
        ((2, 224, 224, 3), True)
    """
    caster, scene = renderer.caster, renderer.scene
    up = np.asarray(cfg.up, np.float64) / np.linalg.norm(cfg.up)
    (ov_lo, ov_hi), (rot_lo, rot_hi) = cfg.accepted_ranges()
    lo, hi = scene.bounds()
    pad = np.minimum(cfg.min_clearance, 0.5 * (hi - lo))  # never an empty box to draw from
    lo, hi = lo + pad, hi - pad
    fails: Counter[str] = Counter()
    for _ in range(cfg.max_tries):
        eye1 = sample_position(caster, lo, hi, cfg.min_clearance, rng, POSITION_CANDIDATES)
        if eye1 is None:
            fails[f"camera 1 in free space (min_clearance {cfg.min_clearance} m)"] += 1
            continue
        target = pick_target(caster, eye1, up, max(cfg.min_clearance, 0.1), rng)
        if target is None:
            fails["look-at target on visible geometry"] += 1
            continue
        eye2, target2 = _propose_second(cfg.kind, eye1, target, up, rng)
        if not free_space(caster, eye2[None], cfg.min_clearance, rng)[0]:
            fails[f"camera 2 in free space (min_clearance {cfg.min_clearance} m)"] += 1
            continue
        fov1, fov2 = rng.uniform(*cfg.fov_deg, size=2)
        pose1, pose2 = look_at(eye1, target, up), look_at(eye2, target2, up)
        rot = rotation_angle_deg(pose1[:3, :3], pose2[:3, :3])
        if not rot_lo <= rot <= rot_hi:
            fails[f"rotation_deg in [{rot_lo}, {rot_hi}]"] += 1
            continue
        preview = _preview_overlap(renderer, cfg, (fov1, fov2), (pose1, pose2))
        if not ov_lo - PREVIEW_MARGIN <= preview <= ov_hi + PREVIEW_MARGIN:
            fails[f"overlap in [{ov_lo}, {ov_hi}] (preview)"] += 1
            continue
        v1 = renderer.render(Camera.from_fov(fov1, cfg.width, cfg.height, pose1))
        v2 = renderer.render(Camera.from_fov(fov2, cfg.width, cfg.height, pose2))
        pair = pair_from_views(renderer, v1, v2)
        if ov_lo <= pair.overlap <= ov_hi:
            return pair
        fails[f"overlap in [{ov_lo}, {ov_hi}]"] += 1
    detail = "; ".join(f"{name} failed {n}x" for name, n in fails.most_common())
    raise SamplingError(
        f"scene '{scene.scene_id}' ({scene.source}): no '{cfg.kind}' camera pair found in "
        f"{cfg.max_tries} tries: {detail}"
    )


def _propose_second(
    kind: str, eye1: np.ndarray, target: np.ndarray, up: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Camera 2's position and look-at target for a pair kind."""
    dist = np.linalg.norm(target - eye1)
    target2 = target + rng.normal(0.0, 0.05 * dist, 3)
    if kind == "simple":
        step = rng.normal(size=3)
        return eye1 + step / np.linalg.norm(step) * dist * rng.uniform(0.05, 0.3), target2
    sign = rng.choice([-1.0, 1.0])
    angle = sign * (rng.uniform(100.0, 180.0) if kind == "difficult" else rng.uniform(0.0, 180.0))
    eye2 = orbit(eye1, target, up, angle, rng.uniform(0.7, 1.3))
    return eye2 + up * rng.normal(0.0, 0.1 * dist), target2


def _preview_overlap(
    renderer: Renderer,
    cfg: PairSamplingConfig,
    fovs: tuple[float, float],
    poses: tuple[np.ndarray, np.ndarray],
) -> float:
    """Overlap measured on a small geometry-only render of the pair."""
    s = PREVIEW_SIZE / max(cfg.height, cfg.width)
    w, h = max(8, round(cfg.width * s)), max(8, round(cfg.height * s))
    v1, v2 = (
        renderer.render(Camera.from_fov(f, w, h, p), shade=False) for f, p in zip(fovs, poses, strict=True)
    )
    return overlap_fraction(correspondences(renderer.caster, v2, v1), v2.valid)
