"""Dirty data: the examples made dirty are those recorded, the batches marked are those that held
one, the test set stays clean, and runs without dirt keep their files as they were."""

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import first_digits

import mnist_clip as mc
from mnist_clip.cli import cli
from mnist_clip.config import Config
from mnist_clip.runs.schema import METRIC_COLUMNS, metric_columns_for
from mnist_clip.training.dirt import dirty_count, dirty_examples


@pytest.mark.parametrize("shuffle", [False, True])
def test_the_marked_batches_are_those_that_trained_on_a_dirty_example(tmp_path, mnist_5k, shuffle):
    from mnist_clip.training.step import Trainer

    data = first_digits(mnist_5k, 300, 50)
    settings = dict(dirty_fraction=0.02, dirty_scale=100.0, epochs=2, batch_size=64, shuffle=shuffle)
    run = mc.train(out=tmp_path, name="d", plots=False, progress="quiet", data=data, **settings)
    dirty = np.load(run.path / "dirty_examples.npy")
    assert dirty.dtype == np.int64 and len(dirty) == round(0.02 * 300) == 6
    assert len(set(dirty.tolist())) == 6 and 0 <= dirty.min() and dirty.max() < 300
    assert run.metrics.columns[-1] == "dirty_in_batch"

    # The batches the compiled loop was fed, each row matched to the training example it is.
    clean = data.x_train.reshape(300, -1).astype(np.float64) / 50
    trainer = Trainer(Config(**settings), data)
    marked, seen_dirty = [], set()
    for epoch in range(2):
        for xb, _ in trainer.epoch_batches(epoch):
            for batch in xb.numpy().astype(np.float64):
                rows_dirty = []
                for row in batch:
                    if row.max() > clean.max() * 1.0001:  # inputs beyond any clean pixel: a dirty row
                        example = int(np.argmin(np.abs(clean - row / 100).max(axis=1)))
                        np.testing.assert_allclose(row, clean[example] * 100, rtol=1e-6)
                        rows_dirty.append(example)
                marked.append(len(rows_dirty))
                seen_dirty.update(rows_dirty)
    assert seen_dirty == set(dirty.tolist())  # every dirty example, and only those, was trained on dirty
    assert run.metrics["dirty_in_batch"].tolist() == marked
    assert sum(marked) == 2 * 6  # each dirty example once per epoch
    assert float(trainer.x_test.numpy().max()) <= 255 / 50 + 1e-6  # the test set stays clean

    from mnist_clip.viz.steps import norms_figure

    figure = norms_figure(run.run)
    labels = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    held = sum(1 for count in marked if count)
    assert f"batch holds dirty examples: {held} of 10 steps" in labels


def test_the_dirty_set_is_seeded_and_sized():
    assert dirty_count(4000, 0.0005) == 2 and dirty_count(4000, 0.00001) == 1 and dirty_count(4000, 0) == 0
    first, again = dirty_examples(4000, 0.01, 1234), dirty_examples(4000, 0.01, 1234)
    np.testing.assert_array_equal(first, again)
    assert len(first) == 40 and np.all(np.diff(first) > 0)
    assert set(dirty_examples(4000, 0.01, 1235)) != set(first.tolist())


def test_runs_without_dirt_keep_their_columns():
    assert metric_columns_for(Config().to_dict()) == METRIC_COLUMNS
    assert metric_columns_for(Config(dirty_fraction=0.1).to_dict()) == (*METRIC_COLUMNS, "dirty_in_batch")


@pytest.mark.parametrize("args, message", [
    (["--dirty-fraction", "1"], "--dirty-fraction: must be a number in [0, 1) (got 1.0); 0 leaves the data clean"),
    (["--dirty-fraction", "-0.1"], "--dirty-fraction: must be a number in [0, 1)"),
    (["--dirty-fraction", "nan"], "--dirty-fraction: must be a number in [0, 1)"),
    (["--dirty-scale", "0"], "--dirty-scale: must be > 0 (got 0.0)"),
    (["--dirty-scale", "inf"], "--dirty-scale: must be a finite number"),
    (["--dirty-fraction", "0.1", "--dirty-scale", "1e38"], "--dirty-scale: 1e+38 times the largest input (255 / 50) "
                                                            "overflows float32"),
])
def test_bad_dirt_is_one_line_and_no_folder(tmp_path, args, message):
    result = CliRunner().invoke(cli, ["train", *args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and result.stderr.startswith(f"Error: {message}") and result.stderr.count("\n") == 1
    assert not (tmp_path / "o").exists()
