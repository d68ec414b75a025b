"""Dirty data: a seeded, fixed set of training examples whose inputs are multiplied by a scale,
and which of them each batch holds. No TensorFlow here."""

from __future__ import annotations

import numpy as np

DIRTY_STREAM = 0xD127  # keeps this draw apart from the epochs' shuffling, which is seeded with [seed, epoch]


def dirty_count(n_train: int, fraction: float) -> int:
    """round(fraction x n_train), and at least one example when the fraction is above 0."""
    if fraction <= 0 or n_train == 0:
        return 0
    return min(n_train, max(1, int(np.floor(fraction * n_train + 0.5))))


def dirty_examples(n_train: int, fraction: float, seed: int) -> np.ndarray:
    """The indices (in the training set, sorted) of the examples made dirty: a draw without
    replacement seeded by the run's seed, the same for every run of that seed and fraction."""
    count = dirty_count(n_train, fraction)
    if not count:
        return np.zeros(0, dtype=np.int64)
    chosen = np.random.default_rng([seed, DIRTY_STREAM]).choice(n_train, size=count, replace=False)
    return np.sort(chosen).astype(np.int64)


def make_dirty(x: np.ndarray, dirty: np.ndarray, scale: float) -> np.ndarray:
    """The inputs (already scaled, float32, one row per example) with the dirty rows times `scale`."""
    x = x.copy()
    x[dirty] *= np.float32(scale)
    return x


def batch_members(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """The examples of each batch of an epoch whose examples come in `order`: consecutive
    slices of batch_size, the last one shorter when batch_size does not divide the set."""
    return [order[first: first + batch_size] for first in range(0, len(order), batch_size)]


def dirty_per_batch(order: np.ndarray, batch_size: int, dirty: np.ndarray) -> np.ndarray:
    """How many dirty examples each batch of the epoch holds."""
    is_dirty = np.zeros(len(order), dtype=bool)
    is_dirty[dirty] = True
    return np.array([int(is_dirty[members].sum()) for members in batch_members(order, batch_size)], dtype=np.int64)
