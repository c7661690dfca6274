"""Split rules: which scene belongs to train, val or test.

Splits are always by scene, never by pair, so no test pair shares a room with a training
pair. Procedural rooms get exact, seeded shares of `n_scenes`; mesh folders take their
split from the folder (or a split list file), and a folder without `test/` (HM3D ships
only train and val) gets a fixed half of val as test, chosen by a hash of the scene id so
the choice never depends on the run seed or on which other scenes are present.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from pipeline.errors import ConfigError, unknown_name_message
from pipeline.scenes.base import SPLITS

TEST_FROM_VAL_FRACTION = 0.5
_TEST_FROM_VAL_SALT = "probe3r:test-from-val:"


def check_splits(splits: Sequence[str]) -> tuple[str, ...]:
    """Return `splits` as a tuple after checking every name is one of SPLITS."""
    for name in splits:
        if name not in SPLITS:
            raise ConfigError(unknown_name_message("split", name, SPLITS))
    return tuple(splits)


def check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    """Return train/val/test fractions after checking there are 3, each ≥ 0, summing to 1."""
    fr = tuple(float(f) for f in fractions)
    if len(fr) != len(SPLITS) or min(fr) < 0 or abs(sum(fr) - 1) > 1e-6:
        raise ConfigError(
            f"split_fractions must be {len(SPLITS)} non-negative numbers for {', '.join(SPLITS)} "
            f"summing to 1, got {list(fractions)}"
        )
    return fr


def apportion(n: int, weights: Sequence[float]) -> list[int]:
    """Split n into integer counts proportional to `weights` (largest remainder).

    Every positive weight gets at least one when n allows it, so a small run still has a
    val and a test scene.

    Example:
        >>> apportion(3, [0.8, 0.1, 0.1])
        [1, 1, 1]
    """
    w = np.asarray(weights, np.float64)
    exact = n * w / w.sum()
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    positive = w > 0
    while n >= positive.sum() and (counts[positive] == 0).any():
        counts[np.argmax(counts)] -= 1
        counts[np.flatnonzero(positive & (counts == 0))[0]] += 1
    return counts.tolist()


def procedural_splits(n_scenes: int, seed: int, fractions: Sequence[float]) -> list[str]:
    """Split of procedural scenes 0 … n_scenes - 1; room i's split never depends on n_scenes.

    A larger store therefore extends a smaller one's split instead of reshuffling it (no
    room is train in one store and test in another). The first rooms take one of each split
    with a positive share, in an order drawn from the seed, so a small run still has a val
    and a test room; each later room goes to the split furthest below its share so far
    (ties broken by the seed), so every prefix holds each share to within about one room.
    """
    shares = np.asarray(check_fractions(fractions), np.float64)
    shares = shares / shares.sum()
    rng = np.random.default_rng([seed, 7001])  # 7001: a stream apart from rooms'
    first = rng.permutation(np.flatnonzero(shares > 0))
    counts = np.zeros(len(SPLITS))
    labels = []
    for i in range(n_scenes):
        jitter = rng.random(len(SPLITS)) * 1e-9  # drawn for every room: labels stay prefix-stable
        k = int(first[i]) if i < len(first) else int(np.argmax(shares * (i + 1) - counts + jitter))
        counts[k] += 1
        labels.append(SPLITS[k])
    return labels


def is_test_from_val(scene_id: str) -> bool:
    """True for the val scenes that become test when a folder has no test split (~half)."""
    digest = hashlib.sha256((_TEST_FROM_VAL_SALT + scene_id).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < TEST_FROM_VAL_FRACTION
