"""Camera placement: free-space positions, look-at targets, second-view proposals.

Free space. A position is usable when every probe ray (PROBE_DIRS directions spread
evenly over the sphere, randomly rotated per test) travels at least `min_clearance`
before hitting anything, and at most BACKFACE_MAX of the rays that hit see the back of a
face. The second rule rejects points inside closed objects (from inside, every ray meets
the object's back faces) and outside a room's walls. It relies on probe3r's winding
convention for scenes: faces are counter-clockwise seen from the side a camera may look
at them from, so room walls face inwards and objects outwards (HM3D scans and glTF
exports follow it). Probing by rays misses obstacles thinner than the gaps between probe
directions at the clearance distance (about 0.2 * min_clearance with 128 directions).

All randomness comes from the numpy Generator passed in, so a seed fixes every camera.
"""

from __future__ import annotations

import numpy as np

from pipeline.render.raycast import RayCaster

PROBE_DIRS = 128
BACKFACE_MAX = 0.1


def sphere_directions(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) unit vectors spread evenly over the sphere (Fibonacci), randomly rotated."""
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    r = np.sqrt(1.0 - z * z)
    phi = np.pi * (1.0 + 5**0.5) * k
    dirs = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    return dirs @ q.T


def free_space(
    caster: RayCaster, positions: np.ndarray, min_clearance: float, rng: np.random.Generator
) -> np.ndarray:
    """Which positions a camera may stand at (see the module docstring).

    Args:
        caster: the scene's ray caster.
        positions: (P, 3) world candidate positions, metres.
        min_clearance: smallest allowed distance to any surface, metres.
        rng: rotates the probe directions.

    Returns:
        (P,) bool, True where the position is in free space with enough clearance.
    """
    dirs = sphere_directions(PROBE_DIRS, rng)
    P = len(positions)
    hits = caster.cast(np.repeat(positions, PROBE_DIRS, axis=0), np.tile(dirs, (P, 1)))
    t = hits.t.reshape(P, PROBE_DIRS)
    hit = hits.hit.reshape(P, PROBE_DIRS)
    facing = np.einsum("ij,ij->i", caster.face_normals[np.maximum(hits.face, 0)], np.tile(dirs, (P, 1)))
    back = (facing > 0).reshape(P, PROBE_DIRS) & hit
    back_share = back.sum(1) / np.maximum(hit.sum(1), 1)
    return (t.min(1) >= min_clearance) & (back_share <= BACKFACE_MAX)


def sample_position(
    caster: RayCaster,
    lo: np.ndarray,
    hi: np.ndarray,
    min_clearance: float,
    rng: np.random.Generator,
    n_candidates: int,
) -> np.ndarray | None:
    """A uniformly random free-space position in the box [lo, hi], or None.

    Args:
        caster: the scene's ray caster.
        lo, hi: (3,) world corners of the box to draw from, metres.
        min_clearance: smallest allowed distance to any surface, metres.
        rng: the sampling generator.
        n_candidates: positions drawn and tested in one batch.

    Returns:
        (3,) world position, or None when none of the candidates is in free space.
    """
    cand = rng.uniform(lo, hi, size=(n_candidates, 3))
    ok = np.flatnonzero(free_space(caster, cand, min_clearance, rng))
    return cand[ok[0]] if ok.size else None


def pick_target(
    caster: RayCaster,
    eye: np.ndarray,
    up: np.ndarray,
    min_dist: float,
    rng: np.random.Generator,
    n_rays: int = 16,
) -> np.ndarray | None:
    """A look-at target on geometry visible from `eye`, or None.

    Directions are drawn with elevation between -45 and +20 degrees about the plane
    normal to `up`, like a person looking around a room, and the first whose hit is at
    least `min_dist` away is taken, so the target is always a visible surface point.

    Args:
        caster: the scene's ray caster.
        eye: (3,) world camera position, metres.
        up: (3,) unit world up direction.
        min_dist: nearest acceptable target distance, metres.
        rng: the sampling generator.
        n_rays: directions tried.

    Returns:
        (3,) world target point, or None.
    """
    e1 = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    az = rng.uniform(0, 2 * np.pi, n_rays)
    el = np.deg2rad(rng.uniform(-45.0, 20.0, n_rays))
    dirs = np.cos(el)[:, None] * (np.cos(az)[:, None] * e1 + np.sin(az)[:, None] * e2)
    dirs += np.sin(el)[:, None] * up
    hits = caster.cast(eye, dirs)
    ok = np.flatnonzero(hits.hit & (hits.t >= min_dist))
    return hits.points[ok[0]] if ok.size else None


def orbit(eye: np.ndarray, target: np.ndarray, up: np.ndarray, angle_deg: float, scale: float) -> np.ndarray:
    """(3,) `eye` rotated about the axis through `target` along `up`, distance scaled."""
    a = np.deg2rad(angle_deg)
    v = eye - target
    v_rot = v * np.cos(a) + np.cross(up, v) * np.sin(a) + up * (up @ v) * (1 - np.cos(a))
    return target + scale * v_rot


def rotation_angle_deg(R1: np.ndarray, R2: np.ndarray) -> float:
    """Angle of the relative rotation R1^T R2, degrees in [0, 180]."""
    c = (np.trace(R1.T @ R2) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))
