"""--tensorboard event files, read back with TensorBoard's own event reader."""

import numpy as np
import pytest
from click.testing import CliRunner

from mnist_clip.cli import cli
from mnist_clip.config import PARAM_NAMES
from mnist_clip.runs.reader import read_run

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
from tensorboard.util import tensor_util  # noqa: E402


def test_event_files_hold_every_step_and_epoch(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--dataset", "mnist-5k", "--epochs", "2", "--tensorboard", "--no-plots",
                                      "--out", str(tmp_path), "--name", "tb"])
    assert result.exit_code == 0, result.output
    events = event_accumulator.EventAccumulator(
        str(tmp_path / "tb" / "tensorboard"),
        size_guidance={event_accumulator.TENSORS: 0},
    )
    events.Reload()
    run = read_run(tmp_path / "tb")

    def series(tag):
        items = events.Tensors(tag)
        return [e.step for e in items], np.array([tensor_util.make_ndarray(e.tensor_proto) for e in items])

    for tag, column in [("train/loss", "loss"), ("global_norm/before", "global_norm_before"),
                        ("grad_norm_before/w1", "w1_before"), ("grad_norm_after/w3", "w3_after"),
                        ("signal/delta1", "delta1"), ("dead_relu/h2", "dead_h2")]:
        steps, values = series(tag)
        assert steps == list(range(64)), tag
        np.testing.assert_array_equal(values.astype(np.float32), run.metrics[column].astype(np.float32), err_msg=tag)
        assert events.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"
    steps, accuracy = series("test/accuracy")
    assert steps == [31, 63]
    np.testing.assert_allclose(accuracy, run.epochs["test_accuracy"], rtol=1e-6)
    for name in PARAM_NAMES:
        steps, histograms = series(f"gradient/{name}")
        assert steps == [31, 63] and histograms.shape[-1] == 3  # (left edge, right edge, count) per bucket
        assert histograms[0][:, 2].sum() > 0
        assert events.SummaryMetadata(f"gradient/{name}").plugin_data.plugin_name == "histograms"
    counts = series("weight/w1")[1][0][:, 2]
    assert counts.sum() == 784 * 256
