"""compare: the table against numbers computed straight from the CSVs, the figure, odd runs."""

import csv

import numpy as np
from click.testing import CliRunner
from PIL import Image
from runfolders import write_run

from mnist_clip.cli import cli


def expected_row(run_dir):
    """The compare.csv row, computed from metrics.csv and epochs.csv with the csv module."""
    with open(run_dir / "metrics.csv") as file:
        rows = [r for r in csv.DictReader(file)]
    with open(run_dir / "epochs.csv") as file:
        epochs = [r for r in csv.DictReader(file)]
    epoch = np.array([int(r["epoch"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    ratio = np.array([float(r["w1_before"]) / float(r["w3_before"]) for r in rows])
    signal = np.array([float(r["delta1"]) / float(r["delta3"]) for r in rows])
    first, last = epoch == epoch[0], epoch == epoch[-1]
    return {
        "steps": len(rows),
        "steps_clipped": sum(int(r["clipped"]) for r in rows),
        "final_loss": float(np.mean(loss[last])),
        "test_accuracy": float(epochs[-1]["test_accuracy"]),
        "median_w1_wL_first_epoch": float(np.median(ratio[first][np.isfinite(ratio[first])])),
        "median_w1_wL_last_epoch": float(np.median(ratio[last][np.isfinite(ratio[last])])),
        "median_delta1_deltaL_first_epoch": float(np.median(signal[first])),
        "median_delta1_deltaL_last_epoch": float(np.median(signal[last])),
    }


def test_compare_table_and_figure(tmp_path):
    runs = [
        write_run(tmp_path / "long", steps=80, seed=1),
        write_run(tmp_path / "short", steps=35, clip="none", seed=2),
        write_run(tmp_path / "nan", steps=50, nonfinite_from=23, clip="none", seed=3),
    ]
    out = tmp_path / "cmp"
    result = CliRunner().invoke(cli, ["compare", *map(str, runs), "--out", str(out)])
    assert result.exit_code == 0, result.output
    with open(out / "compare.csv") as file:
        table = list(csv.DictReader(file))
    assert [row["name"] for row in table] == ["long", "short", "nan"]
    assert [row["status"] for row in table] == ["completed", "completed", "diverged"]
    assert [row["clip"] for row in table] == ["global_norm 15", "no clipping", "no clipping"]
    for row, run in zip(table, runs):
        want = expected_row(run)
        assert int(row["steps"]) == want["steps"] and int(row["steps_clipped"]) == want["steps_clipped"]
        for key in ("test_accuracy", "median_w1_wL_first_epoch", "median_w1_wL_last_epoch",
                    "median_delta1_deltaL_first_epoch", "median_delta1_deltaL_last_epoch"):
            assert np.isclose(float(row[key]), want[key], rtol=1e-6), key
        if run.name == "nan":
            assert row["final_loss"] == "nan"  # the diverged step's NaN loss is part of its last epoch
        else:
            assert np.isclose(float(row["final_loss"]), want["final_loss"], rtol=1e-6)
    image = Image.open(out / "compare.png")
    assert image.size[0] == 1200 and 1300 < image.size[1] < 1600  # the panels, then the legend, table and notes
    assert (np.asarray(image.convert("L")) < 200).mean() > 0.02
    for name in ("long", "short", "nan"):
        assert name in result.output  # the terminal table


def test_default_output_folder_is_new_and_beside_the_runs(tmp_path):
    runs = [write_run(tmp_path / "a", steps=20), write_run(tmp_path / "b", steps=20, clip="none")]
    result = CliRunner().invoke(cli, ["compare", *map(str, runs)])
    assert result.exit_code == 0
    made = [p for p in tmp_path.iterdir() if p.name.startswith("compare-")]
    assert len(made) == 1 and sorted(p.name for p in made[0].iterdir()) == ["compare.csv", "compare.png"]


def test_compare_numbers_the_runs_and_tables_their_names_without_the_timestamps(tmp_path):
    from mnist_clip.runs.reader import read_run
    from mnist_clip.viz.compare import compare_figure

    runs = [read_run(write_run(tmp_path / "deep_sigmoid-20260101-120000", steps=20)),
            read_run(write_run(tmp_path / "deep_relu_he-20260101-120500", steps=20, clip="none"))]
    fig = compare_figure(runs)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:2] == ["1: global_norm 15", "2: no clipping"]  # what differs, and only that
    table = [t.get_text() for t in fig.texts if t.get_text().startswith("#")][0].splitlines()
    assert table[1].split()[:2] == ["1", "deep_sigmoid"] and table[2].split()[:2] == ["2", "deep_relu_he"]
    # two runs of one recipe keep their timestamps: they are how a reader tells them apart
    again = [runs[0], read_run(write_run(tmp_path / "deep_sigmoid-20260101-130000", steps=20, seed=4))]
    table = [t.get_text() for t in compare_figure(again).texts if t.get_text().startswith("#")][0].splitlines()
    assert [line.split()[1] for line in table[1:]] == ["deep_sigmoid-20260101-120000", "deep_sigmoid-20260101-130000"]


def test_the_seed_report_says_a_tie_is_a_tie():
    from mnist_clip.plans.compare import paired_rows, paired_text

    def row(accuracy, diverged):
        return {"test_accuracy": accuracy, "final_loss": 0.1, "steps_clipped": 3, "diverged": diverged,
                "median_w1_wL_first_epoch": 0.5, "median_w1_wL_last_epoch": 0.5}

    clipped = [row(a, 0) for a in (0.8, 0.7, 0.6)]
    unclipped = [row(a, d) for a, d in ((0.7, 0), (0.7, 1), (0.7, 0))]
    lines = {line.split(":")[0].strip(): line for line in paired_text(paired_rows(clipped, unclipped))}
    assert lines["test accuracy"].endswith("clipping ahead in 1, behind in 1 and tied in 1 of 3 seeds")
    assert lines["diverged (1 = yes)"].endswith("clipping ahead in 1, behind in 0 and tied in 2 of 3 seeds")
    neither = paired_text(paired_rows(clipped, [row(0.7, 0)] * 3))
    diverged = next(line for line in neither if line.strip().startswith("diverged"))
    assert diverged.endswith("the same with and without clipping in all 3 seeds") and "ahead in 0" not in diverged
