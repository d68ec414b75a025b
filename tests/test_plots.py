"""Run pictures: drawn from the folder alone, sized, not blank, robust to NaN and cut files."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mnist_clip.plots import log_moving_average, moving_average, write_run_plots
from runfolders import write_run

SIZES = {"norms.png": (1000, 700), "ratio.png": (1000, 700), "loss.png": (1000, 700), "signals.png": (1000, 900),
         "flow.png": (1200, 600), "updates.png": (1000, 700)}


def ink(path) -> float:
    """Share of pixels that are clearly not background."""
    return float((np.asarray(Image.open(path).convert("L")) < 200).mean())


@pytest.mark.parametrize("nonfinite_from", [None, 37], ids=["finite", "diverged"])
def test_every_picture_has_its_size_and_content(tmp_path, nonfinite_from):
    run = write_run(tmp_path / "run", steps=60, nonfinite_from=nonfinite_from)
    paths = write_run_plots(run)
    assert sorted(p.name for p in paths) == sorted(SIZES)
    for path in paths:
        assert Image.open(path).size == SIZES[path.name]
        assert ink(path) > 0.02, path.name


def test_divergence_is_marked_in_red(tmp_path):
    def red_pixels(run):
        image = np.asarray(Image.open(write_run_plots(run)[0]).convert("RGB")).astype(int)
        r, g, b = image[..., 0], image[..., 1], image[..., 2]
        return int(((r > 180) & (g < 80) & (b < 80)).sum())

    # both runs draw the red clip threshold; only the diverged one has the dotted red divergence line
    assert red_pixels(write_run(tmp_path / "bad", steps=60, nonfinite_from=30)) > red_pixels(write_run(tmp_path / "ok", steps=60)) + 200


def test_a_killed_run_without_summary_still_plots(tmp_path):
    run = write_run(tmp_path / "run", steps=25, summary=False)
    with open(run / "metrics.csv", "a") as file:
        file.write("25,2,0.1,0.5,3")  # a line cut by SIGKILL
    assert len(write_run_plots(run)) == 6


def test_moving_averages_ignore_nan_and_start_at_the_raw_values():
    values = np.array([1.0, np.nan, 3.0, 5.0, np.nan])
    # the window shrinks symmetrically at both ends: the ends are their own average
    np.testing.assert_allclose(moving_average(values, 3), [1.0, 2.0, 4.0, 4.0, np.nan])
    smoothed = log_moving_average(np.array([1.0, 100.0, 1.0]), 3)
    np.testing.assert_allclose(smoothed, [1.0, 100 ** (1 / 3), 1.0])
    rng = np.random.default_rng(3)
    raw = rng.random(200) + 0.5
    wide = moving_average(raw, 32)
    for i in (0, 5, 100, 199):  # against a plain mean over the same symmetric window
        half = min(16, i, 199 - i)
        assert np.isclose(wide[i], raw[i - half : i + half + 1].mean())


def test_plotting_does_not_import_tensorflow(tmp_path):
    run = write_run(tmp_path / "run", steps=20)
    code = (
        "import sys; from mnist_clip.plots import write_run_plots; "
        f"write_run_plots({str(run)!r}); assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
