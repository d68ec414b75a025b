"""Seeds: the statistics against independent computations, demo and sweep over several seeds,
and results that do not depend on how cells are grouped."""

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from mnist_clip.cli import cli
from mnist_clip.stats import paired_difference, spread, t_975


def test_spread_and_paired_difference_against_numpy_and_scipy():
    rng = np.random.default_rng(5)
    first, second = rng.normal(0.6, 0.05, 7), rng.normal(0.55, 0.05, 7)
    got = spread(first)
    assert np.isclose(got["mean"], first.mean()) and np.isclose(got["std"], np.std(first, ddof=1))
    assert got["min"] == first.min() and got["max"] == first.max() and got["n"] == 7
    difference = first - second
    pair = paired_difference(first, second)
    stats = pytest.importorskip("scipy.stats")
    half = stats.t.ppf(0.975, 6) * np.std(difference, ddof=1) / np.sqrt(7)
    assert np.isclose(pair["mean"], difference.mean())
    assert np.isclose(pair["low"], difference.mean() - half, rtol=1e-3) and np.isclose(pair["high"], difference.mean() + half, rtol=1e-3)
    assert pair["ahead"] == int((difference > 0).sum())
    assert paired_difference(first, second, higher_is_better=False)["ahead"] == int((difference < 0).sum())
    for df in (1, 4, 9, 29, 30, 31, 45, 200, 5000):
        assert np.isclose(t_975(df), stats.t.ppf(0.975, df), atol=1e-3), df
    assert np.isnan(spread([0.5])["std"]) and spread([np.nan, 1.0])["n"] == 1


@pytest.mark.parametrize("command", ["demo", "sweep"])
@pytest.mark.parametrize("seeds, message", [
    ("0", "--seeds: must be a whole number >= 1 (got 0)"),
    ("-2", "--seeds: must be a whole number >= 1 (got -2)"),
    ("3", "--seeds: 3 seeds from seed 2147483646 go past 2147483647; at most 2 fit, or choose a smaller --seed"),
])
def test_bad_seed_counts_are_one_line_and_make_no_folder(tmp_path, command, seeds, message):
    args = [command, "--seeds", seeds, "--out", str(tmp_path / "o")]
    if seeds == "3":
        args += ["--seed", "2147483646"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and result.stderr == f"Error: {message}\n"
    assert not (tmp_path / "o").exists()


def read_table(path):
    with open(path) as file:
        return list(csv.DictReader(file))


def test_a_sweep_over_seeds_tables_maps_resumes_and_extends(tmp_path):
    def sweep(seeds, *extra):
        return CliRunner().invoke(cli, ["sweep", "--dataset", "mnist-5k", "--epochs", "1", "--grid", "lr=0.01,0.1",
                                        "--grid", "clip_norm=none,15", "--seeds", str(seeds), "--jobs", "1",
                                        "--out", str(tmp_path), "--name", "s", *extra])

    result = sweep(2)
    assert result.exit_code == 0, result.output
    folder = tmp_path / "s"
    table = read_table(folder / "sweep.csv")
    runs = [row for row in table if not row["statistic"]]
    assert len(runs) == 8 and sorted({row["seed"] for row in runs}) == ["1234", "1235"]
    assert sorted(p.name for p in (folder / "cells").iterdir())[0] == "lr=0.01,clip_norm=15,seed=1234"
    means = {(row["lr"], row["clip_norm"]): row for row in table if row["statistic"] == "mean"}
    for (lr, clip_norm), row in means.items():  # each mean is the mean over its seeds' own rows
        seeds = [r for r in runs if (r["lr"], r["clip_norm"]) == (lr, clip_norm) and r["status"] == "completed"]
        if seeds:
            assert np.isclose(float(row["test_accuracy"]), np.mean([float(r["test_accuracy"]) for r in seeds]))
    unclipped = [r for r in runs if (r["lr"], r["clip_norm"]) == ("0.1", "none")]
    assert all(r["status"] == "diverged" for r in unclipped)  # x/50 at lr 0.1 explodes for both seeds
    assert means[("0.1", "none")]["status"] == "2/2 diverged"

    from mnist_clip.config import Config
    from mnist_clip.plans.grid import make_cells, parse_grid
    from mnist_clip.plans.sweep import sweep_rows
    from mnist_clip.viz.stability import stability_figure

    grid = parse_grid(["lr=0.01,0.1", "clip_norm=none,15"])
    fig = stability_figure(sweep_rows(make_cells(Config(epochs=1, dataset="mnist-5k"), grid, 2), folder), grid)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "2/2 diverged\nstep 3" in texts
    assert sum("0/2 diverged" in t for t in texts) == 3 and all("not run" not in t for t in texts)

    # resume per seed: only the seed cut short is trained again
    (folder / "cells" / "lr=0.01,clip_norm=15,seed=1235" / "summary.json").unlink()
    again = sweep(2)
    assert again.exit_code == 0 and "7 of 8 cells finished earlier; running the other 1" in again.output
    # more seeds extend the sweep
    more = sweep(3)
    assert more.exit_code == 0 and "seeds: 3 asked for, 2 before; the sweep trains the missing ones" in more.output
    assert "8 of 12 cells finished earlier; running the other 4" in more.output
    assert len([row for row in read_table(folder / "sweep.csv") if not row["statistic"]]) == 12
    one = sweep(1)
    assert one.exit_code == 2 and "resume it with --seeds 2 or more" in one.stderr


def test_a_cell_trained_in_a_sweep_equals_the_same_config_trained_alone(tmp_path):
    swept = CliRunner().invoke(cli, ["sweep", "--dataset", "mnist-5k", "--epochs", "2", "--grid", "lr=0.01,0.05",
                                     "--grid", "input_scale=50,255", "--seeds", "2", "--jobs", "1",
                                     "--out", str(tmp_path), "--name", "s"])
    assert swept.exit_code == 0, swept.output
    alone = CliRunner().invoke(cli, ["train", "--dataset", "mnist-5k", "--epochs", "2", "--lr", "0.05",
                                     "--input-scale", "255", "--seed", "1235", "--out", str(tmp_path), "--name", "alone",
                                     "--no-plots"])
    assert alone.exit_code == 0
    cell = tmp_path / "s" / "cells" / "lr=0.05,input_scale=255,seed=1235"
    assert (cell / "metrics.csv").read_bytes() == (tmp_path / "alone" / "metrics.csv").read_bytes()


def test_demo_over_seeds_pairs_the_twins_and_reports_their_statistics(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--dataset", "mnist-5k", "--epochs", "1", "--seeds", "3", "--no-plots",
                                      "--out", str(tmp_path), "--name", "d"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "d"
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [
        "clipped-seed1234", "clipped-seed1235", "clipped-seed1236",
        "unclipped-seed1234", "unclipped-seed1235", "unclipped-seed1236"]
    for seed in (1234, 1235, 1236):  # each pair shares its seed
        for label in ("clipped", "unclipped"):
            assert json.loads((folder / f"{label}-seed{seed}" / "config.json").read_text())["seed"] == seed
    table = read_table(folder / "compare.csv")
    runs = {row["name"]: row for row in table if not row["statistic"]}
    clipped = [float(runs[f"clipped-seed{s}"]["test_accuracy"]) for s in (1234, 1235, 1236)]
    unclipped = [float(runs[f"unclipped-seed{s}"]["test_accuracy"]) for s in (1234, 1235, 1236)]
    stats = {(row["group"], row["statistic"]): row for row in table if row["statistic"]}
    assert np.isclose(float(stats[("global_norm 15", "mean")]["test_accuracy"]), np.mean(clipped))
    assert np.isclose(float(stats[("no clipping", "std")]["test_accuracy"]), np.std(unclipped, ddof=1))
    difference = np.array(clipped) - np.array(unclipped)
    ahead = int((difference > 0).sum())
    assert "over 3 seeds" in result.output
    lines = result.output.splitlines()
    first = next(i for i, l in enumerate(lines) if l.strip().startswith("test accuracy:"))
    end = next(i for i in range(first + 1, len(lines)) if not lines[i].startswith("    "))
    line = " ".join(l.strip() for l in lines[first:end])  # the line as wrapped to the width, joined again
    assert f"difference {100 * difference.mean():+.1f} points" in line
    assert line.endswith(f"clipping ahead in {ahead} of 3 seeds")
