"""The run folder: unique names, refusal to overwrite, atomic files, reading cut files."""

import json

import numpy as np
import pytest

from mnist_clip.errors import InputError
from mnist_clip.runs.folder import RunTarget, write_atomic
from mnist_clip.runs.reader import read_csv, read_run
from mnist_clip.runs.schema import METRIC_COLUMNS, STEP_VALUE_COLUMNS
from mnist_clip.runs.writer import RunWriter


def test_default_names_never_collide(tmp_path):
    paths = [RunTarget(tmp_path, None, "global_norm-15-20260101-000000", False).create() for _ in range(3)]
    assert [p.name for p in paths] == [
        "global_norm-15-20260101-000000",
        "global_norm-15-20260101-000000-2",
        "global_norm-15-20260101-000000-3",
    ]


def fake_run(path, marker):
    path.mkdir()
    (path / "config.json").write_text("{}")
    (path / "metrics.csv").write_text("step\n")
    (path / "marker.txt").write_text(marker)
    return path


def test_a_given_name_is_never_reused_without_overwrite(tmp_path):
    first = RunTarget(tmp_path, "mine", "x", False).create()
    (first / "keep.txt").write_text("result")
    with pytest.raises(InputError, match="already exists; choose another name or add overwrite=True$") as caught:
        RunTarget(tmp_path, "mine", "x", False).create()
    assert caught.value.render("cli").endswith("already exists; choose another --name or add --overwrite")
    assert (first / "keep.txt").read_text() == "result"


def test_overwrite_replaces_the_old_run_only_when_the_new_one_is_committed(tmp_path):
    fake_run(tmp_path / "mine", "old")
    target = RunTarget(tmp_path, "mine", "x", True)
    written = target.create()
    assert written != tmp_path / "mine" and written.parent == tmp_path
    assert (tmp_path / "mine" / "marker.txt").read_text() == "old"  # untouched while the new run trains
    (written / "marker.txt").write_text("new")
    assert target.commit(written) == tmp_path / "mine"
    assert (tmp_path / "mine" / "marker.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temporary sibling left


def test_an_interrupted_replacement_keeps_the_old_run(tmp_path):
    fake_run(tmp_path / "mine", "old")
    target = RunTarget(tmp_path, "mine", "x", True)
    written = target.create()
    kept = target.commit(written, keep_old=True)
    assert (tmp_path / "mine" / "marker.txt").read_text() == "old"
    assert kept.name.startswith("mine-interrupted-") and kept.is_dir()


@pytest.mark.parametrize("make", ["sweep", "plain folder", "symlink", "file"])
def test_overwrite_refuses_what_is_not_a_run(tmp_path, make):
    path = tmp_path / "mine"
    if make == "sweep":
        fake_run(path, "sweep")
        (path / "sweep.json").write_text("{}")
    elif make == "plain folder":
        path.mkdir()
        (path / "notes.txt").write_text("mine")
    elif make == "symlink":
        fake_run(tmp_path / "elsewhere", "x")
        path.symlink_to(tmp_path / "elsewhere")
    else:
        path.write_text("a file")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(InputError, match="is not a run folder"):
        RunTarget(tmp_path, "mine", "x", True).create()
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_run_being_written_is_not_replaced(tmp_path):
    run = fake_run(tmp_path / "mine", "old")
    writer = RunWriter(run)  # holds the folder's lock, as a training run does
    target = RunTarget(tmp_path, "mine", "x", True)
    written = target.create()
    with pytest.raises(InputError, match="is being written by another run"):
        target.commit(written)
    writer.close()
    assert (run / "marker.txt").read_text() == "old"
    assert target.commit(written) == run


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "summary.json"
    write_atomic(target, b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    (tmp_path / "plain.txt").write_bytes(b"x")  # the mode any new file gets
    assert target.stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777


def test_written_run_reads_back_and_a_cut_last_line_is_dropped(tmp_path):
    writer = RunWriter(tmp_path)
    writer.write_config({"clip": "global_norm", "clip_norm": 15.0})
    values = np.random.default_rng(0).random((5, len(STEP_VALUE_COLUMNS))).astype(np.float32)
    values[:, STEP_VALUE_COLUMNS.index("clipped")] = [1, 0, 1, 0, 0]
    writer.append_steps(0, 0, values)
    writer.close()
    with open(tmp_path / "metrics.csv", "a") as file:
        file.write("5,0,0.123,0.5")  # a kill mid-line
    run = read_run(tmp_path)
    assert run.steps == 5 and run.summary is None and run.status == "unfinished"
    assert list(run.metrics) == list(METRIC_COLUMNS)
    np.testing.assert_array_equal(run.metrics["loss"].astype(np.float32), values[:, 0])  # %.9g round-trips float32
    assert run.metrics["clipped"].tolist() == [1, 0, 1, 0, 0]


def test_nan_and_inf_survive_the_csv(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("a,b\n1,nan\ninf,2\n")
    table = read_csv(path)
    assert np.isnan(table["b"][0]) and np.isinf(table["a"][1])


@pytest.mark.parametrize("files", [[], ["config.json"]])
def test_not_a_run_folder(tmp_path, files):
    for name in files:
        (tmp_path / name).write_text(json.dumps({}))
    with pytest.raises(InputError, match="is not a run folder"):
        read_run(tmp_path)


def test_summary_json_is_strict_json_even_after_a_blow_up(tmp_path):
    writer = RunWriter(tmp_path)
    writer.write_summary({"status": "diverged", "final_train_loss": float("inf"), "test_loss": float("nan"),
                          "per_tensor": {"w1": float("-inf"), "b1": 2.0}, "steps": 5})
    writer.close()
    text = (tmp_path / "summary.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text) == {"status": "diverged", "final_train_loss": None, "test_loss": None,
                                "per_tensor": {"w1": None, "b1": 2.0}, "steps": 5}


def test_a_run_written_before_the_update_columns_is_still_read_and_drawn(tmp_path):
    from mnist_clip.config import PARAM_NAMES
    from mnist_clip.nn import Net
    from mnist_clip.runs.schema import EPOCH_COLUMNS, gradient_columns
    from mnist_clip.viz.mlp import RUN_FIGURES
    from mnist_clip.viz.registry import write_run_plots
    from mnist_clip.viz.steps import updates_figure

    columns = gradient_columns(Net.of({}), "global_norm")
    (tmp_path / "old").mkdir()
    writer = RunWriter(tmp_path / "old", ("step", "epoch", *columns), EPOCH_COLUMNS)
    writer.write_config({"clip": "global_norm", "clip_norm": 15.0, "lr": 0.01, "input_scale": 50.0, "batch_size": 128,
                         "dataset_used": {"name": "test", "train_size": 640}})
    rng = np.random.default_rng(1)
    for epoch in range(2):
        writer.append_steps(5 * epoch, epoch, rng.random((5, len(columns))).astype(np.float32) + 0.1)
        writer.append_epoch((epoch, 5, 0.5, 0.4, 0.3, 0, 0.1))
    writer.write_summary({"status": "completed"})
    writer.close()
    run = read_run(tmp_path / "old")
    assert list(run.metrics) == ["step", "epoch", *columns] and "w1_update" not in run.metrics
    assert list(run.epochs) == list(EPOCH_COLUMNS)
    assert len(write_run_plots(tmp_path / "old")) == len(RUN_FIGURES)
    words = [text.get_text() for ax in updates_figure(run).axes for text in ax.texts]
    assert any("written before mnist-clip logged each step's update" in text for text in words)
