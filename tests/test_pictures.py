"""What a reader sees, asserted on the Figures' own data: the first steps at a readable scale,
smoothing that starts at the raw values, thresholds against the quantity each method compares,
honest legends, and pictures that keep their text inside."""

import csv

import numpy as np
import pytest
from click.testing import CliRunner
from runfolders import write_run

from mnist_clip.cli import cli
from mnist_clip.config import Config
from mnist_clip.plans.grid import make_cells, parse_grid
from mnist_clip.plans.sweep import sweep_rows
from mnist_clip.runs.reader import read_run
from mnist_clip.viz.compare import compare_figure
from mnist_clip.viz.mlp import RUN_FIGURES, flow_figure, ratio_figure, signals_figure
from mnist_clip.viz.stability import stability_figure
from mnist_clip.viz.steps import loss_figure, norms_figure


def drawn(fig):
    """The figure laid out and drawn as its PNG would be; returns the renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def lines_by_label(ax) -> dict:
    return {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}


def all_labels(fig) -> list[str]:
    labels = []
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            labels += [text.get_text() for text in legend.get_texts()]
    for legend in fig.legends:
        labels += [text.get_text() for text in legend.get_texts()]
    return labels


def long_run(tmp_path, **options):
    return read_run(write_run(tmp_path / "run", steps=960, steps_per_epoch=32, train_size=4000,
                              first_step_scale=20.0, **options))


def step_axes(fig) -> list:
    """The axes of a figure that have steps on x (on the step scale)."""
    return [ax for ax in fig.axes if ax.get_xscale() == "function" and "epoch" not in ax.get_xlabel()]


def where_on_axis(ax, steps) -> np.ndarray:
    """Steps' positions across an axes, 0 at its left edge and 1 at its right."""
    x = ax.transData.transform(np.column_stack([steps, np.ones(len(steps))]))[:, 0]
    return (x - ax.bbox.x0) / ax.bbox.width


def test_every_picture_of_a_run_and_compare_use_one_step_axis(tmp_path):
    run = long_run(tmp_path)
    early = read_run(write_run(tmp_path / "early", steps=960, steps_per_epoch=32, nonfinite_from=4, train_size=4000))
    # log(1 + step/8) for 32 steps per epoch, from step -0.5 to 959.5, computed here on its own
    steps = np.array([0.0, 1, 4, 31.5, 100, 500, 959])
    position = lambda s: np.log1p(np.asarray(s) / 8.0)  # noqa: E731
    want = (position(steps) - position(-0.5)) / (position(959.5) - position(-0.5))
    figures = {make.__name__: make(run) for make in RUN_FIGURES.values()}
    figures["compare"] = compare_figure([run, early])
    for name, fig in figures.items():
        drawn(fig)
        axes = step_axes(fig)
        assert axes, name
        for ax in axes:
            np.testing.assert_allclose(where_on_axis(ax, steps), want, atol=2e-3, err_msg=name)
    # the slope changes smoothly: no kink at the end of the first epoch or anywhere else
    ax = step_axes(figures["norms_figure"])[0]
    x = where_on_axis(ax, np.arange(0, 960, 1.0))
    slopes = np.diff(x)
    assert np.all(slopes > 0) and np.all(slopes[1:] / slopes[:-1] > 0.85)  # the old opened axis: 0.11 at step 32
    x0, x4 = where_on_axis(ax, [0, 4])
    assert x4 - x0 > 0.08  # the first five steps, where runs blow up, get room (0.4% on a plain axis)


def test_epochs_are_counted_1_to_n_on_every_top_axis(tmp_path):
    run = long_run(tmp_path)
    for make in (norms_figure, ratio_figure, signals_figure):
        fig = make(run)
        drawn(fig)
        tops = [ax for ax in fig.axes if ax.get_xlabel() == "end of epoch"]
        assert len(tops) == 1, make.__name__
        labels = [int(t.get_text()) for t in tops[0].get_xticklabels()]
        assert labels[0] >= 1 and labels[-1] == 30, labels  # the console's epoch 1/30 .. 30/30
        ticks = tops[0].get_xticks()
        np.testing.assert_allclose(ticks, [min(32 * e, 960) - 0.5 for e in labels])  # each at its epoch's end


def test_smoothed_curves_start_at_the_raw_values(tmp_path):
    run = long_run(tmp_path)
    raw_ratio = run.metrics["w1_before"] / run.metrics["w3_before"]
    for make in (ratio_figure, loss_figure):
        fig = make(run)
        smoothed = [line for line in fig.axes[0].get_lines() if "mean" in line.get_label() or "before clipping" in line.get_label()]
        assert smoothed, make.__name__
        first = smoothed[0].get_ydata()[0]
        raw_first = raw_ratio[0] if make is ratio_figure else run.metrics["loss"][0]
        assert np.isclose(first, raw_first, rtol=1e-6), make.__name__


@pytest.mark.parametrize("clip, threshold, series", [
    ("global_norm", 15.0, ["global norm before", "global norm after (where clipping acted)"]),
    ("value", 0.3, ["w1", "b1", "w2", "b2", "w3", "b3"]),
    ("none", None, ["global norm before"]),
])
def test_the_threshold_is_drawn_against_what_the_method_compares(tmp_path, clip, threshold, series):
    run = long_run(tmp_path, clip=clip)
    fig = norms_figure(run)
    bottom = fig.axes[1]
    lines = lines_by_label(bottom)
    thresholds = [line for label, line in lines.items() if label.startswith("threshold")]
    if threshold is None:
        assert not thresholds
        assert not any("after" in label for label in all_labels(fig))  # unclipped: no "after" curves
    else:
        assert len(thresholds) == 1 and np.allclose(thresholds[0].get_ydata(), threshold)
    drawn = [line for line in bottom.get_lines() if not line.get_label().startswith(("threshold", "clipping", "NaN"))]
    if clip == "value":  # each tensor's largest |element|, not the global norm (the short batches left out)
        full = np.arange(run.steps) % 32 != 31
        ydata = [line.get_ydata() for line in drawn if len(line.get_ydata()) == full.sum()]
        assert any(np.allclose(y, run.metrics["w3_max_abs"][full]) for y in ydata)
        assert not any(np.allclose(y, run.metrics["global_norm_before"][full]) for y in ydata)
    for label in series:
        assert label in lines or label in [line.get_label() for line in drawn] or clip == "value"


def test_a_run_that_diverges_in_its_first_epoch_is_drawn_over_its_steps(tmp_path):
    run = read_run(write_run(tmp_path / "run", steps=960, steps_per_epoch=32, nonfinite_from=4, train_size=4000))
    assert run.steps == 5
    for make in (norms_figure, ratio_figure, signals_figure):
        fig = make(run)
        ax = fig.axes[0]
        low, high = ax.get_xlim()
        assert low <= 0 and 4 <= high <= 5  # the five steps fill the axis
        ticks = ax.get_xticks()
        assert np.allclose(ticks, np.round(ticks))
        texts = [t.get_text() for a in fig.axes for t in a.get_xticklabels()]
        assert not any("." in t for t in texts)  # no fractional epochs or steps
        assert not any("epoch" in a.get_xlabel() for a in fig.axes)  # a run within one epoch has no epoch axis


def test_titles_never_speak_of_a_one_step_smoothing_window(tmp_path):
    run = read_run(write_run(tmp_path / "run", steps=12, steps_per_epoch=32))
    for make in (ratio_figure, signals_figure):
        fig = make(run)
        titles = " ".join(ax.get_title() for ax in fig.axes)
        assert "1-step" not in titles and "raw values" in titles


def test_the_short_last_batch_is_left_out_of_the_raw_lines_and_said_only_where_it_is(tmp_path):
    run = long_run(tmp_path)
    short = np.arange(960) % 32 == 31  # 4,000 digits at batch 128: every 32nd step holds 32 examples
    figures = {make: make(run) for make in (norms_figure, signals_figure, flow_figure, loss_figure)}
    for make, fig in figures.items():
        notes = " ".join(t.get_text().replace("\n", " ") for t in fig.texts)
        assert "4,000 = 31 x 128 + 32" in notes and "30 such steps, left out of the " in notes, make.__name__
    top = figures[norms_figure].axes[0]  # raw per-tensor lines: the full batches only
    w1 = [line for line in top.get_lines() if line.get_label() == "w1"][0]
    np.testing.assert_array_equal(w1.get_xdata(), np.flatnonzero(~short))
    np.testing.assert_allclose(w1.get_ydata(), run.metrics["w1_before"][~short])
    dead = [line for line in figures[signals_figure].axes[2].get_lines() if line.get_label() == "h2: dead units"][0]
    assert 31 not in dead.get_xdata() and len(dead.get_xdata()) == 930
    mesh = figures[flow_figure].axes[1].collections[0]  # the map: a column per full batch, no stripe
    assert mesh.get_array().shape == (3, 930)
    even = read_run(write_run(tmp_path / "even", steps=300, steps_per_epoch=30, train_size=128 * 30))
    for make in (ratio_figure, flow_figure):
        assert not any("shorter batch" in t.get_text() for t in make(even).texts)


def test_flow_of_a_diverged_run_draws_its_last_finite_steps(tmp_path):
    run = read_run(write_run(tmp_path / "late", steps=960, steps_per_epoch=32, nonfinite_from=40, train_size=4000))
    fig = flow_figure(run)
    left = fig.axes[0]
    labels = [t.get_text() for t in left.get_legend().get_texts()]
    # epoch 1, the last it completed, then 4 of the last 10 finite steps (30..39), the last one included
    assert labels[:5] == ["epoch 1 (median)", "step 30", "step 33", "step 36", "step 39 (last finite)"]
    weights = [np.asarray(line.get_ydata(), dtype=float) for line in left.get_lines()]
    last = np.array([run.metrics[f"w{layer}_before"][39] for layer in (1, 2, 3)])
    assert any(np.allclose(y, last) for y in weights)
    assert "NaN/Inf at step 40" in left.get_title()
    early = read_run(write_run(tmp_path / "early", steps=960, steps_per_epoch=32, nonfinite_from=4, train_size=4000))
    labels = [t.get_text() for t in flow_figure(early).axes[0].get_legend().get_texts()]
    assert labels[:4] == ["step 0", "step 1", "step 2", "step 3 (last finite)"]  # no epoch was completed


def test_the_signal_through_time_is_told_as_it_is():
    from mnist_clip.viz.recurrent import growth_words

    gain = 1.17 ** (27 - np.arange(28))  # x1.17 per step back from t = 28
    assert growth_words(gain) == growth_words(gain, 0.0) == "x1.17 per step back"
    saturated = np.r_[np.zeros(27), np.inf]
    assert growth_words(saturated, 0.78) == "dL/dh28 is Inf; exactly 0 for t < 28; 78% of the units saturated"
    assert growth_words(saturated, 1.0).endswith("every hidden unit saturated")
    assert growth_words(np.r_[np.zeros(20), np.ones(8)], None) == "exactly 0 for t < 21"
    assert "saturated" not in growth_words(np.r_[np.zeros(20), np.ones(8)], None)


def test_cures_and_stability_write_their_numbers_as_the_run_pictures_do():
    from mnist_clip.viz.cures import cures_figure

    rows = [dict(cure=cure, status="completed", test_accuracy=0.5, first_nonfinite_step="",
                 median_delta1_deltaL_first_epoch=first, median_delta1_deltaL_last_epoch=last, w1_moved=moved)
            for cure, first, last, moved in (("base", 0.3, 1e-5, 0.002), ("lower_lr", 0.5, 0.02, 0.4))]
    fig = cures_figure(rows)
    drawn(fig)
    for ax in fig.axes[2:]:
        low, high = ax.get_xlim()
        labels = [t.get_text() for t in ax.get_xticklabels(which="both")
                  if t.get_text() and low <= t.get_position()[0] <= high]
        assert labels and not any("$" in text or "^" in text for text in labels), labels  # no 10^-3 beside 0.5
    grid = [("lr", [0.01, 0.1])]
    stability = stability_figure([dict(lr="0.01", status="completed", test_accuracy=0.679),
                                  dict(lr="0.1", status="completed", test_accuracy=0.3)], grid)
    drawn(stability)
    bar = stability.axes[-1]
    ticks = [t.get_text() for t in bar.get_yticklabels() if t.get_text()]
    assert ticks == ["0", "20", "40", "60", "80", "100"] and "(%)" in bar.get_ylabel()
    assert "68%" in [t.get_text() for t in stability.axes[0].texts]  # the cells say the same in %


def test_compare_keeps_an_exploding_run_from_flattening_the_others_and_labels_thresholds(tmp_path):
    stable = read_run(write_run(tmp_path / "a", steps=960, steps_per_epoch=32, train_size=4000))
    boom = write_run(tmp_path / "b", steps=960, steps_per_epoch=32, train_size=4000, clip="none", nonfinite_from=4)
    lines = (boom / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:]]
    rows[3][header.index("loss")] = "1e33"  # the loss climbs to 1e33 before its NaN
    (boom / "metrics.csv").write_text("\n".join([lines[0]] + [",".join(r) for r in rows]) + "\n")
    fig = compare_figure([stable, read_run(boom)])
    loss_ax, norm_ax = fig.axes[0], fig.axes[2]
    assert loss_ax.get_ylim()[1] < 1e3  # fitted to the run that did not diverge, and two powers of ten
    assert loss_ax.get_ylim()[1] >= np.nanmax(stable.metrics["loss"])
    assert "2 up to 1e+33 (step 3)" in loss_ax.get_title().replace("\n", " ")  # beside the panel, not over it
    assert not loss_ax.texts
    top_marks = [line for line in loss_ax.get_lines() if line.get_marker() == "^"]
    assert len(top_marks) == 1 and top_marks[0].get_xdata()[0] == 3  # where run 2 leaves the range
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "clip threshold 15 (of 1)" in legend and norm_ax.get_legend() is None
    smoothed = [line for line in fig.axes[4].get_lines() if line.get_label().startswith("1: ")]
    assert len(fig.axes[4].get_lines()) >= 4  # raw and smoothed for both runs in the signal panel too
    assert smoothed
    x0, x4 = loss_ax.transData.transform([(0, 1), (4, 1)])[:, 0]
    assert (x4 - x0) / loss_ax.bbox.width > 0.08  # the diverged run's 5 steps get room (0.4% on a plain axis)


@pytest.mark.parametrize("specs", [["lr=0.1"], ["lr=0.1,0.2"], ["lr=0.1,0.2", "clip_norm=none,5"],
                                   ["lr=1,2,3,4,5,6", "clip_norm=1,2,3,4,5,6"],
                                   ["lr=1,2", "clip_norm=1,2", "input_scale=50,255", "seed=1,2"]])
def test_sweep_maps_of_any_size_keep_their_text_inside(specs):
    grid = parse_grid(specs)
    keys = [key for key, _ in grid]
    import itertools

    rows = []
    for combination in itertools.product(*(values for _, values in grid)):
        row = {key: ("none" if v is None else f"{v:g}") for key, v in zip(keys, combination)}
        row.update(status="completed", test_accuracy=0.5, name="x")
        rows.append(row)
    fig = stability_figure(rows, grid)
    renderer = drawn(fig)
    canvas = fig.bbox
    texts = [fig._suptitle] + [t for ax in fig.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts)]
    for text in texts:
        if text is None or not text.get_text():
            continue
        box = text.get_window_extent(renderer)
        assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= canvas.x1 + 1 and box.y1 <= canvas.y1 + 1, text.get_text()
    assert fig.axes[0].get_xlabel() == keys[0]


def test_a_sweep_over_clip_maps_and_tables_its_cells(tmp_path):
    result = CliRunner().invoke(cli, ["sweep", "--dataset", "mnist-5k", "--epochs", "1", "--grid", "clip=none,value",
                                      "--clip-norm", "0.3", "--out", str(tmp_path), "--name", "s", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "s" / "sweep.csv") as file:
        rows = list(csv.DictReader(file))
    assert [row["clip"] for row in rows] == ["none", "value"]
    grid = parse_grid(["clip=none,value"])
    cells = make_cells(Config(clip_norm=0.3, epochs=1, dataset="mnist-5k"), grid)
    fig = stability_figure(sweep_rows(cells, tmp_path / "s"), grid)
    cell_texts = [t.get_text() for t in fig.axes[0].texts]
    assert "not run" not in cell_texts and len(cell_texts) == 2


def test_a_threshold_that_never_fires_is_said(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--dataset", "mnist-5k", "--epochs", "1", "--input-scale", "255",
                                      "--out", str(tmp_path), "--name", "r", "--no-plots"])
    assert result.exit_code == 0
    import json

    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    metrics = read_run(tmp_path / "r").metrics
    assert summary["clipping_never_acted"] is True and summary["clipped_steps"] == 0
    assert np.isclose(summary["largest_compared_value"], metrics["global_norm_before"].max(), rtol=1e-6)
    assert summary["largest_compared_value"] < 15
    assert "note: global_norm clipping never acted in 32 steps: the largest global norm was" in result.output


def test_titles_name_the_seed_and_the_tensors_trained(tmp_path):
    import json

    run_dir = write_run(tmp_path / "run", steps=20)
    config = json.loads((run_dir / "config.json").read_text())
    config.update(seed=7, trainable=["w3", "b3"])
    (run_dir / "config.json").write_text(json.dumps(config))
    title = norms_figure(read_run(run_dir))._suptitle.get_text()
    assert "seed 7" in title and "trains w3,b3 only" in title


def test_log_axes_label_at_least_three_ticks_in_one_font_size(tmp_path):
    run = long_run(tmp_path)
    narrow = read_run(write_run(tmp_path / "narrow", steps=40))  # norms within about one decade
    for make in RUN_FIGURES.values():
        for source in (run, narrow):
            fig = make(source)
            drawn(fig)
            for ax in fig.axes:
                if ax.get_yscale() != "log":
                    continue
                low, high = ax.get_ylim()
                labels = [t for t in ax.yaxis.get_majorticklabels() + ax.yaxis.get_minorticklabels()
                          if t.get_text() and t.get_visible() and low <= t.get_position()[1] <= high]
                assert len(labels) >= 3, (make.__name__, ax.get_title(), [t.get_text() for t in labels])
                assert {t.get_fontsize() for t in labels} == {8}, make.__name__


def write_recurrent_run(path, model: str, steps: int = 40, per_epoch: int = 10):
    """A recurrent run folder whose signal decays by known factors per step back in time: dh_t
    by 0.5, and for an LSTM dc_t by 0.9; each step's profile scaled by (1 + step)."""
    from mnist_clip.runs.schema import metric_columns_for
    from mnist_clip.runs.writer import RunWriter

    config = {"model": model, "hidden": [8], "activation": "tanh", "recurrent_gain": 1.5, "clip": "global_norm",
              "clip_norm": 15.0, "lr": 0.1, "input_scale": 255.0, "batch_size": 32,
              "dataset_used": {"name": "test", "train_size": 32 * per_epoch}}
    columns = metric_columns_for(config)[2:]
    values = np.full((steps, len(columns)), 0.5)
    at = {name: i for i, name in enumerate(columns)}
    scale = 1.0 + np.arange(steps)
    for t in range(1, 29):
        values[:, at[f"dh{t}"]] = scale * 0.5 ** (28 - t)
        if model == "lstm":
            values[:, at[f"dc{t}"]] = 2 * scale * 0.9 ** (28 - t)
    values[:, at["global_norm_before"]] = 3.0
    path.mkdir()
    writer = RunWriter(path, metric_columns_for(config))
    writer.write_config(config)
    for epoch, first in enumerate(range(0, steps, per_epoch)):
        writer.append_steps(first, epoch, values[first : first + per_epoch].astype(np.float32))
        writer.append_epoch((epoch, per_epoch, 0.5, 0.5, 0.5, 0, 0.1))
    writer.write_summary({"status": "completed"})
    writer.close()
    return read_run(path)


def test_the_cell_state_is_drawn_for_the_lstm_alone_and_the_gain_line_for_the_simple_net(tmp_path):
    from mnist_clip.viz.cell import cell_figure
    from mnist_clip.viz.recurrent import time_flow_figure, time_ratio_figure
    from mnist_clip.viz.registry import figures_for

    lstm, rnn = write_recurrent_run(tmp_path / "lstm", "lstm"), write_recurrent_run(tmp_path / "rnn", "rnn")
    assert "cell.png" in figures_for(lstm) and "cell.png" not in figures_for(rnn)
    assert set(figures_for(rnn)) == set(figures_for(lstm)) - {"cell.png"}
    fig = cell_figure(lstm)
    left, right = fig.axes[:2]
    # the profiles: per epoch the median over its steps, 0.5^(28-t) and 2 x 0.9^(28-t) times that median's scale
    solid = [line for line in left.get_lines() if line.get_linestyle() == "-" and len(line.get_xdata()) == 28]
    dashed = [line for line in left.get_lines() if line.get_linestyle() == "--" and len(line.get_xdata()) == 28]
    assert len(solid) == len(dashed) >= 2
    median_scale = np.median(1.0 + np.arange(10))  # the first epoch's steps 0..9
    np.testing.assert_allclose(solid[0].get_ydata(), median_scale * 0.5 ** (28 - np.arange(1, 29)), rtol=1e-6)
    np.testing.assert_allclose(dashed[0].get_ydata(), 2 * median_scale * 0.9 ** (28 - np.arange(1, 29)), rtol=1e-6)
    shares = {line.get_label(): line.get_ydata() for line in right.get_lines() if line.get_label().startswith("|dL/")}
    np.testing.assert_allclose(shares["|dL/dh1| / |dL/dh28|"], 0.5**27, rtol=1e-5)
    np.testing.assert_allclose(shares["|dL/dc1| / |dL/dc28|"], 0.9**27, rtol=1e-5)
    assert any(f"t=1 gets {0.9**27:.2g} of t=28" in label for label in all_labels(fig))
    for make in (time_ratio_figure, time_flow_figure):  # gain^27 is the simple net's estimate only
        assert any("gain" in label and "per step back" in label or "gain^27" in label for label in all_labels(make(rnn)))
        assert not any("gain^27" in label or "the gain, from" in label for label in all_labels(make(lstm)))
