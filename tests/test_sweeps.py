"""sweep: grid parsing, cells, resuming, parallel jobs, and its table and map."""

import csv

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mnist_clip.cli import cli
from mnist_clip.config import Config
from mnist_clip.errors import InputError
from mnist_clip.plans.grid import make_cells, parse_grid


def test_grid_values_take_the_fields_types():
    grid = parse_grid(["lr=0.01,0.1", "clip-norm=none,15", "batch_size=64", "train=w3+b3,w1"])
    assert grid == [("lr", [0.01, 0.1]), ("clip_norm", [None, 15.0]), ("batch_size", [64]),
                    ("train", [("w3", "b3"), ("w1",)])]
    assert parse_grid(["shuffle=true,false"]) == [("shuffle", [True, False])]


def test_clip_norm_none_means_no_clipping():
    cells = make_cells(Config(lr=0.5), parse_grid(["clip_norm=none,5", "input_scale=50,255"]))
    assert [c.name for c in cells] == [
        "clip_norm=none,input_scale=50", "clip_norm=none,input_scale=255",
        "clip_norm=5,input_scale=50", "clip_norm=5,input_scale=255",
    ]
    assert [(c.config.clip, c.config.clip_norm, c.config.input_scale, c.config.lr) for c in cells] == [
        ("none", 15.0, 50.0, 0.5), ("none", 15.0, 255.0, 0.5), ("global_norm", 5.0, 50.0, 0.5), ("global_norm", 5.0, 255.0, 0.5),
    ]


@pytest.mark.parametrize(
    "specs, message",
    [
        (["lrr=0.1"], "unknown config key 'lrr'; did you mean 'lr'?"),
        (["lr"], "expected KEY=V1,V2"),
        (["epochs=two"], "grid epochs: 'two' is not a valid integer"),
        (["lr=0.1", "lr=0.2"], "given twice"),
        (["lr=1", "seed=1", "epochs=1", "batch_size=1", "input_scale=1"], "at most 4 keys"),
    ],
)
def test_bad_grids(specs, message):
    with pytest.raises(InputError, match=message):
        parse_grid(specs)


def test_bad_cell_values_fail_before_anything_runs(tmp_path):
    result = CliRunner().invoke(cli, ["sweep", "--grid", "lr=0.1,-1", "--out", str(tmp_path)])
    assert result.exit_code == 2 and result.stderr == "Error: --grid lr=-1: must be > 0 (got -1.0)\n"
    assert not any(tmp_path.iterdir())


def sweep(tmp_path, *extra):
    return CliRunner().invoke(cli, ["sweep", "--dataset", "mnist-5k", "--epochs", "1", "--out", str(tmp_path),
                                    "--name", "s", *extra])


def read_table(path):
    with open(path) as file:
        return list(csv.DictReader(file))


def test_sweep_runs_resumes_and_maps(tmp_path):
    grid = ["--grid", "lr=0.01,0.1", "--grid", "clip_norm=none,15", "--jobs", "1"]
    result = sweep(tmp_path, *grid)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "s"
    cells = sorted(p.name for p in (folder / "cells").iterdir())
    assert cells == ["lr=0.01,clip_norm=15", "lr=0.01,clip_norm=none", "lr=0.1,clip_norm=15", "lr=0.1,clip_norm=none"]
    table = read_table(folder / "sweep.csv")
    by_name = {row["name"]: row for row in table}
    for name in cells:  # each row agrees with its own run folder
        with open(folder / "cells" / name / "epochs.csv") as file:
            accuracy = float(list(csv.DictReader(file))[-1]["test_accuracy"])
        assert np.isclose(float(by_name[name]["test_accuracy"]), accuracy)
    assert by_name["lr=0.1,clip_norm=none"]["status"] == "diverged"  # x/50 at lr 0.1 explodes unclipped
    assert by_name["lr=0.1,clip_norm=none"]["first_nonfinite_step"] == "3"
    assert by_name["lr=0.1,clip_norm=15"]["status"] == "completed"
    image = Image.open(folder / "stability.png")
    assert (np.asarray(image.convert("L")) < 200).mean() > 0.05

    # resume: nothing finished runs again; a cell cut short (no summary) does
    kept = (folder / "cells" / "lr=0.01,clip_norm=15" / "metrics.csv").stat().st_mtime_ns
    (folder / "cells" / "lr=0.01,clip_norm=none" / "summary.json").unlink()
    again = sweep(tmp_path, *grid)
    assert again.exit_code == 0
    assert "3 of 4 cells finished earlier; running the other 1" in again.output
    assert again.output.count("[1/1] lr=0.01,clip_norm=none: completed") == 1
    assert (folder / "cells" / "lr=0.01,clip_norm=15" / "metrics.csv").stat().st_mtime_ns == kept
    assert read_table(folder / "sweep.csv") == table


def test_parallel_jobs_give_the_same_cells(tmp_path):
    grid = ["--grid", "lr=0.01,0.05"]
    assert sweep(tmp_path / "one", *grid, "--jobs", "1").exit_code == 0
    result = sweep(tmp_path / "two", *grid, "--jobs", "2")
    assert result.exit_code == 0, result.output
    for cell in ("lr=0.01", "lr=0.05"):
        one = (tmp_path / "one" / "s" / "cells" / cell / "metrics.csv").read_bytes()
        assert (tmp_path / "two" / "s" / "cells" / cell / "metrics.csv").read_bytes() == one


def test_a_folder_that_is_not_a_sweep_is_not_resumed(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "keep.txt").write_text("mine")
    result = sweep(tmp_path, "--grid", "lr=0.01")
    assert result.exit_code == 2 and "is not a sweep folder" in result.stderr
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["keep.txt"]


def test_a_sweep_and_a_compare_over_mixed_depths(tmp_path):
    # 4,000 digits in batches of 125: no shorter last batch, so one compiled program per net, not two
    result = sweep(tmp_path, "--grid", "hidden=32,32x4", "--grid", "activation=relu,sigmoid", "--batch-size", "125",
                   "--jobs", "1")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "s"
    table = {row["name"]: row for row in read_table(folder / "sweep.csv")}
    assert sorted(table) == sorted(["hidden=32,activation=relu", "hidden=32,activation=sigmoid",
                                    "hidden=32x4,activation=relu", "hidden=32x4,activation=sigmoid"])
    assert table["hidden=32x4,activation=sigmoid"]["architecture"] == "784-32x4-10 sigmoid"
    for name, row in table.items():  # first/last ratio straight from each cell's metrics.csv
        metrics = read_table(folder / "cells" / name / "metrics.csv")
        last = 2 if row["hidden"] == "32" else 5
        ratio = [float(r["w1_before"]) / float(r[f"w{last}_before"]) for r in metrics]
        assert np.isclose(float(row["median_w1_wL_last_epoch"]), np.median(ratio), rtol=1e-6)
        assert ("saturated_h1" in metrics[0]) == (row["activation"] == "sigmoid")
    runs = [folder / "cells" / "hidden=32,activation=relu", folder / "cells" / "hidden=32x4,activation=sigmoid"]
    compared = CliRunner().invoke(cli, ["compare", *map(str, runs), "--out", str(tmp_path / "cmp")])
    assert compared.exit_code == 0, compared.output
    rows = read_table(tmp_path / "cmp" / "compare.csv")
    assert [r["architecture"] for r in rows] == ["784-32-10 relu", "784-32x4-10 sigmoid"]
    plotted = CliRunner().invoke(cli, ["plot", str(runs[1])])
    assert plotted.exit_code == 0 and "flow.png" in plotted.output
