"""Shared fixtures: the real bundled digits, and small arrays for fast checks."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from mnist_clip.data import Dataset


@pytest.fixture(scope="session")
def mnist_5k() -> Dataset:
    from mnist_clip.data import load_mnist_5k

    return load_mnist_5k("test fixture")


def first_digits(dataset: Dataset, n_train: int, n_test: int) -> Dataset:
    """The first n_train training and n_test test digits of a real data set: short runs on real data."""
    return Dataset(f"{dataset.name}-part", "the first digits, for a test", "test", dataset.x_train[:n_train],
                   dataset.y_train[:n_train], dataset.x_test[:n_test], dataset.y_test[:n_test])


def small_dataset(n_train: int = 300, n_test: int = 100, seed: int = 0) -> Dataset:
    """Random 28x28 'images' with pixel values 0..255: enough to exercise the loop quickly."""
    rng = np.random.default_rng(seed)
    return Dataset(
        "small",
        "built by the test",
        "test",
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train).astype(np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test).astype(np.uint8),
    )


@pytest.fixture
def small() -> Dataset:
    return small_dataset()
