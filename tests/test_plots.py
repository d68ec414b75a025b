"""Run pictures: drawn from the folder alone, sized, not blank, robust to NaN and cut files."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from runfolders import write_run

from mnist_clip.runs.reader import read_run
from mnist_clip.viz.compare import compare_figure
from mnist_clip.viz.mlp import ratio_figure, signals_figure
from mnist_clip.viz.registry import figures_for, write_run_plots
from mnist_clip.viz.series import log_moving_average, moving_average, run_smoothing, windowed_mean

SIZES = {"norms.png": (1000, 700), "ratio.png": (1000, 700), "loss.png": (1000, 700), "signals.png": (1000, 900),
         "flow.png": (1200, 600), "updates.png": (1000, 700)}


def ink(path) -> float:
    """Share of pixels that are clearly not background."""
    return float((np.asarray(Image.open(path).convert("L")) < 200).mean())


@pytest.mark.parametrize("nonfinite_from", [None, 37], ids=["finite", "diverged"])
def test_every_picture_has_its_size_and_content(tmp_path, nonfinite_from):
    run = write_run(tmp_path / "run", steps=60, nonfinite_from=nonfinite_from)
    paths = write_run_plots(run)
    assert [p.name for p in paths] == list(figures_for(read_run(run))) and set(SIZES) == {p.name for p in paths}
    for path in paths:
        assert Image.open(path).size == SIZES[path.name]
        assert ink(path) > 0.02, path.name


def test_the_pictures_lay_out_to_matplotlibs_own_tight_layout_and_are_drawn_once(tmp_path, monkeypatch):
    """The layout that measures each Axes once gives matplotlib's tight_layout pixel for pixel;
    saving draws the figure once (matplotlib's placeholder engine would draw it twice)."""
    import io

    from matplotlib.figure import Figure

    import mnist_clip.viz.style as style

    run = read_run(write_run(tmp_path / "run", steps=60, nonfinite_from=37))
    draws = []
    real_draw = Figure.draw
    monkeypatch.setattr(Figure, "draw", lambda fig, renderer: draws.append(fig) or real_draw(fig, renderer))

    def png(fig) -> bytes:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=style.DPI)
        return buffer.getvalue()

    ours = {}
    for name, make in figures_for(run).items():
        fig = make(run)
        assert fig.get_layout_engine() is None
        draws.clear()
        ours[name] = png(fig)
        assert len(draws) == 1, name
    monkeypatch.setattr(style, "tight_layout", lambda fig, rect: fig.tight_layout(rect=rect))
    for name, make in figures_for(run).items():
        fig = make(run)
        draws.clear()
        assert png(fig) == ours[name], name
        assert len(draws) == 2, name  # the placeholder engine's extra draw


def test_divergence_is_marked_in_red(tmp_path):
    def red_pixels(run):
        image = np.asarray(Image.open(write_run_plots(run, ["norms.png"])[0]).convert("RGB")).astype(int)
        r, g, b = image[..., 0], image[..., 1], image[..., 2]
        return int(((r > 180) & (g < 80) & (b < 80)).sum())

    # both runs draw the red clip threshold; only the diverged one has the dotted red divergence line
    assert red_pixels(write_run(tmp_path / "bad", steps=60, nonfinite_from=30)) > red_pixels(write_run(tmp_path / "ok", steps=60)) + 200


def test_a_killed_run_without_summary_still_plots(tmp_path):
    run = write_run(tmp_path / "run", steps=25, summary=False)
    with open(run / "metrics.csv", "a") as file:
        file.write("25,2,0.1,0.5,3")  # a line cut by SIGKILL
    assert len(write_run_plots(run)) == 6


def test_moving_averages_ignore_nan_start_at_the_raw_values_and_stay_full_at_the_end():
    values = np.array([1.0, np.nan, 3.0, 5.0, np.nan])
    # the window shrinks at the start (the first value is its own average) and is moved back
    # at the end, so the last steps are averaged over a full window
    np.testing.assert_allclose(moving_average(values, 3), [1.0, 2.0, 4.0, 4.0, 4.0])
    smoothed = log_moving_average(np.array([1.0, 100.0, 1.0]), 3)
    np.testing.assert_allclose(smoothed, [1.0, 100 ** (1 / 3), 100 ** (1 / 3)])
    rng = np.random.default_rng(3)
    raw = rng.random(200) + 0.5
    keep = rng.random(200) > 0.2
    wide = moving_average(raw, 32, keep)
    for i in (0, 5, 100, 183, 184, 199):  # against a plain mean over the same window
        low = i - min(15, i)  # 32 wide: 15 before, 16 after; at the start as many before as after
        high = min(i + min(16, i), 199) + 1
        low = min(low, high - min(32, 2 * i + 1))
        window = raw[low:high][keep[low:high]]
        assert np.isclose(wide[i], window.mean()), i


def test_windowed_mean_against_a_loop_in_float64():
    rng = np.random.default_rng(5)
    values = rng.lognormal(size=150)
    values[[7, 60]] = np.nan
    width = rng.integers(1, 30, size=150)
    keep = rng.random(150) > 0.1
    got = windowed_mean(values, width, keep)
    for i in range(150):
        high = min(i + width[i] // 2, 149) + 1
        low = max(high - width[i], 0)
        chosen = [values[j] for j in range(low, high) if keep[j] and np.isfinite(values[j])]
        assert (np.isnan(got[i]) and not chosen) or np.isclose(got[i], sum(chosen) / len(chosen)), i


def long_run(tmp_path, name="run", **options):
    return read_run(write_run(tmp_path / name, steps=960, steps_per_epoch=32, train_size=4000, **options))


def test_the_smoothing_leaves_short_batches_out_and_holds_still_at_the_end(tmp_path):
    run = long_run(tmp_path)
    smoothing = run_smoothing(run)
    short = np.arange(960) % 32 == 31  # 4,000 = 31 x 128 + 32: every epoch's last batch is short
    assert np.array_equal(~smoothing.keep, short)
    flat = np.where(short, 40.0, 0.5)  # full batches all alike, short ones far off
    np.testing.assert_allclose(smoothing.geometric(flat), 0.5)
    np.testing.assert_allclose(smoothing.mean(flat), 0.5)
    # the window grows from one step to an epoch, and is full at the very end
    assert smoothing.width[0] == 1 and smoothing.width[-1] == 32 and smoothing.width.max() == 32
    trend = np.linspace(1.0, 2.0, 960)
    smoothed = smoothing.mean(trend)
    last = trend[-32:][~short[-32:]].mean()  # the last epoch's full batches
    assert np.isclose(smoothed[-1], last)
    assert np.all(np.diff(smoothed[500:]) >= -1e-12)  # no hook or dive at the end of a steady trend
    assert np.isclose(smoothed[0], trend[0])  # and the line starts at the raw value
    even = read_run(write_run(tmp_path / "even", steps=300, steps_per_epoch=30, train_size=128 * 30))
    assert run_smoothing(even).keep.all()  # no short batch: nothing left out


def test_no_picture_hooks_at_the_end_of_a_run_with_short_batches(tmp_path):
    """Raw values steady on the full batches and far off on the short ones: every smoothed
    line of every picture stays level to the last step."""
    path = write_run(tmp_path / "run", steps=960, steps_per_epoch=32, train_size=4000)
    lines = (path / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:]]
    for step, row in enumerate(rows):
        short = step % 32 == 31
        for column in header:
            if column.endswith("_before") or column.startswith("delta") or column == "loss":
                row[header.index(column)] = "2.0" if short else "0.2"
            if column.startswith("dead_"):
                row[header.index(column)] = "0.6" if short else "0.2"
        row[header.index("w1_before")] = "8.0" if short else "0.1"  # a ratio |g_w1|/|g_w3| of 0.5 on full batches
    (path / "metrics.csv").write_text("\n".join([lines[0]] + [",".join(r) for r in rows]) + "\n")
    run = read_run(path)
    want = {ratio_figure: [0.5, 1.0], signals_figure: [0.1, 0.2, 1.0, 0.5]}
    for make, levels in want.items():
        fig = make(run)
        smoothed = [line for ax in fig.axes for line in ax.get_lines()
                    if len(line.get_ydata()) == 960 and line.get_linewidth() >= 1.2]
        assert smoothed, make.__name__
        for line in smoothed:
            y = np.asarray(line.get_ydata(), dtype=float)
            assert any(np.allclose(y, level) for level in levels), (make.__name__, line.get_label(), y[-3:])
    fig = compare_figure([run, read_run(write_run(tmp_path / "other", steps=960, steps_per_epoch=32, train_size=4000))])
    dead = [line for line in fig.axes[5].get_lines() if line.get_label().startswith("1: ")]
    assert dead and np.allclose(dead[0].get_ydata(), 20.0)  # % dead units: level to the end, no jump
    norm = [line for line in fig.axes[2].get_lines() if line.get_label().startswith("1: ")]
    assert norm and np.allclose(norm[0].get_ydata(), norm[0].get_ydata()[0])


def test_plotting_does_not_import_tensorflow(tmp_path):
    run = write_run(tmp_path / "run", steps=20)
    code = (
        "import sys; from mnist_clip.viz.registry import write_run_plots; "
        f"write_run_plots({str(run)!r}); assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
