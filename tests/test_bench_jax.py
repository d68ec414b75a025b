"""The benchmark's JAX loop (variant (f)) logs what mnist-clip's compiled loop logs, to float32 rounding."""

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jax")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_train import CASES, check_same_values  # noqa: E402
from conftest import first_digits  # noqa: E402
from jax_loop import JaxTrainer  # noqa: E402

from mnist_clip.config import Config  # noqa: E402
from mnist_clip.runs.schema import step_value_columns  # noqa: E402
from mnist_clip.training.step import Trainer  # noqa: E402


def both_loops(config: Config, data) -> tuple[np.ndarray, bool, np.ndarray, bool, tuple]:
    """One epoch of mnist-clip's compiled loop (c) and of the JAX loop (f) from the same weights."""
    expected, expected_stopped, _ = Trainer(config, data).train_chunks(0)
    jax_trainer = JaxTrainer(config, data)
    values, stopped = jax_trainer.train_epoch()
    return expected, expected_stopped, values, stopped, jax_trainer.columns


# 300 digits at batch 128: two full batches and a short one, both programs of an epoch
REFERENCE = {"n_train": 300, "batch_size": 128}


@pytest.fixture(scope="module")
def reference_epoch(mnist_5k):
    return both_loops(Config(batch_size=REFERENCE["batch_size"]), first_digits(mnist_5k, REFERENCE["n_train"], 32))


# the benchmark's cases; the deep sigmoid net narrower and shallower (6 sigmoid layers of 32), which
# exercises the same code (saturation, many layers) and compiles in half the time
SMALL_DEEP = {"hidden": (32,) * 6}


@pytest.mark.parametrize("case, n_train, batch_size", [
    ("reference", REFERENCE["n_train"], REFERENCE["batch_size"]),
    ("deep-sigmoid-10x128", 192, 64),
    ("rnn", 96, 32),
])
def test_jax_loop_equals_the_compiled_loop(mnist_5k, reference_epoch, case, n_train, batch_size):
    config = Config(batch_size=batch_size).replace(**CASES[case][0])
    if case == "deep-sigmoid-10x128":
        config = config.replace(**SMALL_DEEP)
    if case == "reference":
        expected, expected_stopped, values, stopped, columns = reference_epoch
    else:
        expected, expected_stopped, values, stopped, columns = both_loops(config, first_digits(mnist_5k, n_train, 32))

    assert columns == step_value_columns(config.net, config.clip)
    assert not stopped and not expected_stopped
    assert values.shape == expected.shape == (config.steps_per_epoch(n_train), len(columns))
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-7)
    assert check_same_values(config, expected, values)["flags_and_shares_equal"]
    # the clipping path was taken: the reference and the rnn clip their first step
    if case != "deep-sigmoid-10x128":
        assert values[0, columns.index("clipped")] == 1.0


def test_the_check_rejects_a_difference_beyond_rounding(reference_epoch):
    expected, _, values, _, columns = reference_epoch
    values = values.copy()
    values[1, columns.index("w2_before")] *= 1 + 1e-4
    with pytest.raises(RuntimeError, match="step 1, w2_before"):
        check_same_values(Config(), expected, values)


def test_a_nonfinite_step_stops_the_jax_loop_as_it_stops_mnist_clips(mnist_5k):
    # a learning rate that diverges at once, no clipping in effect; the reference's shapes (no compiling)
    config = Config(batch_size=REFERENCE["batch_size"], lr=1e4, clip_norm=1e30)
    expected, expected_stopped, values, stopped, columns = both_loops(
        config, first_digits(mnist_5k, REFERENCE["n_train"], 32))
    assert expected_stopped and stopped
    assert len(values) == len(expected) < config.steps_per_epoch(REFERENCE["n_train"])
    global_norm = columns.index("global_norm_before")
    assert not np.isfinite(values[-1, global_norm]) and np.isfinite(values[:-1, global_norm]).all()
    np.testing.assert_allclose(values[:-1], expected[:-1], rtol=1e-5, atol=1e-7)
