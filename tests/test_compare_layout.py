"""compare.png holds for any mix of runs: every text inside the figure, no two titles over each
other, nothing written over the panels, short legend labels, and a curve that leaves a panel's
range told beside it. Checked with matplotlib's own extents on real tiny runs."""

import csv
import json
import shutil

import numpy as np
import pytest
from conftest import first_digits
from matplotlib.backends.backend_agg import FigureCanvasAgg
from runfolders import write_run

import mnist_clip as mc
from mnist_clip.runs.reader import read_run
from mnist_clip.viz.compare import LABEL_CHARS, compare_figure

TINY = {"epochs": 2, "plots": False, "progress": "quiet"}


@pytest.fixture(scope="module")
def runs(mnist_5k, tmp_path_factory):
    """Run folders of a few steps each: real runs on the first 300 digits of a recurrent net that
    diverges (and a second seed of it) and of a deep sigmoid net with batch norm; and MLP runs
    written by the fixture writer: completed, diverged at step 4, interrupted. Then the same
    runs again under other names."""
    out = tmp_path_factory.mktemp("runs")
    data = first_digits(mnist_5k, 300, 100)
    rnn = {"hidden": (32,), "lr": 100.0, "batch_size": 64, **TINY}
    made = {
        "rnn": mc.train("rnn_explode", out=out, name="rnn_explode", data=data, **rnn),
        "rnn_seed": mc.train("rnn_explode", out=out, name="rnn_explode_seed", data=data, seed=1235, **rnn),
        "deep_bn": mc.train("deep_sigmoid_batchnorm", out=out, name="deep_sigmoid_batchnorm", data=data,
                            hidden=(16,) * 6, **TINY),
    }
    assert made["rnn"].summary["status"] == "diverged" and made["deep_bn"].summary["status"] == "completed"
    paths = {key: result.path for key, result in made.items()}
    paths["mlp"] = write_run(out / "mlp", steps=64, steps_per_epoch=32, train_size=4000)
    paths["explode"] = write_run(out / "explode", steps=40, clip="none", nonfinite_from=4, seed=1)
    paths["interrupted"] = write_run(out / "interrupted", steps=25, clip="value", seed=2)
    summary = paths["interrupted"] / "summary.json"  # as a run stopped by Ctrl-C writes it
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "status": "interrupted"}))
    for key in list(paths):
        shutil.copytree(paths[key], out / f"again-{paths[key].name}")
        paths[f"again-{key}"] = out / f"again-{paths[key].name}"
    return paths


def texts(fig, renderer) -> list:
    """Every text drawn, with its extent: the titles, axis labels, the tick labels in view,
    legends, the notes and the table."""
    shown = [fig._suptitle, *fig.texts, *(text for legend in fig.legends for text in legend.get_texts())]
    for ax in fig.axes:
        shown += [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        for labels, limits, coordinate in ((ax.get_xticklabels(which="both"), ax.get_xlim(), 0),
                                           (ax.get_yticklabels(which="both"), ax.get_ylim(), 1)):
            low, high = sorted(limits)  # matplotlib draws the ticks within the view only
            shown += [text for text in labels if low <= text.get_position()[coordinate] <= high]
        if ax.get_legend() is not None:
            shown += ax.get_legend().get_texts()
    return [(text, text.get_window_extent(renderer)) for text in shown
            if text is not None and text.get_visible() and text.get_text().strip()]


def overlap(a, b, slack: float = 1.0) -> bool:
    return a.x0 + slack < b.x1 and b.x0 + slack < a.x1 and a.y0 + slack < b.y1 and b.y0 + slack < a.y1


def check_layout(fig):
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    page = fig.bbox
    drawn = texts(fig, renderer)
    for text, box in drawn:
        assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1, \
            f"{text.get_text()!r} leaves the figure: {box} of {page}"
    panels = [ax for ax in fig.axes if ax.get_visible()]
    titles = [(ax.title, ax.title.get_window_extent(renderer)) for ax in panels if ax.get_title()]
    titles.append((fig._suptitle, fig._suptitle.get_window_extent(renderer)))
    for i, (first, a) in enumerate(titles):
        for second, b in titles[i + 1:]:
            assert not overlap(a, b), f"titles overlap: {first.get_text()!r} and {second.get_text()!r}"
        for ax in panels:
            assert not overlap(a, ax.get_window_extent(renderer)), f"title {first.get_text()!r} over a panel"
    # the notes, the table and the legend sit below the panels, over none of them
    foot = [(text, text.get_window_extent(renderer)) for text in fig.texts]
    foot += [(legend, legend.get_window_extent(renderer)) for legend in fig.legends]
    for artist, box in foot:
        for ax in panels:
            assert not overlap(box, ax.get_window_extent(renderer)), f"{artist} over a panel"
        for other, other_box in foot:
            assert artist is other or not overlap(box, other_box, slack=2.0), f"{artist} over {other}"
    # tick labels of one axis apart (time steps 1..28 included)
    for ax in panels:
        for axis_labels in (ax.get_xticklabels(), ax.get_yticklabels()):
            boxes = [box for text, box in drawn if text in axis_labels]
            for i, a in enumerate(boxes):
                assert not any(overlap(a, b) for b in boxes[i + 1:]), f"tick labels overlap in {ax.get_title()!r}"
    labels = [text.get_text() for legend in fig.legends for text in legend.get_texts()]
    assert labels and all(len(label) <= LABEL_CHARS + 4 for label in labels), labels
    return labels


MIXES = {
    "every kind": ["mlp", "explode", "rnn", "deep_bn", "interrupted"],
    "twelve": ["mlp", "explode", "rnn", "deep_bn", "interrupted", "rnn_seed", "again-mlp", "again-explode",
               "again-rnn", "again-deep_bn", "again-interrupted", "again-rnn_seed"],
    "seed groups": ["rnn", "rnn_seed", "deep_bn", "mlp", "explode"],
    "two": ["rnn", "deep_bn"],
}


@pytest.mark.parametrize("mix", list(MIXES))
def test_compare_keeps_every_text_inside_and_apart(runs, mix):
    shown = [read_run(runs[key]) for key in MIXES[mix]]
    labels = check_layout(compare_figure(shown))
    if mix == "twelve":
        assert len([label for label in labels if label[0].isdigit()]) == 12


def test_legend_names_what_differs_and_the_table_the_rest(runs):
    shown = [read_run(runs[key]) for key in ("mlp", "deep_bn", "rnn")]
    fig = compare_figure(shown)
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    # the nets differ, not the tensors trained (every run trains all of its own)
    assert [label.split(":")[0] for label in labels[:3]] == ["1", "2", "3"]
    assert not any("trains" in label or "w1" in label for label in labels)
    assert "784-256-128-10" in labels[0] and "784-16x6-10" in labels[1] and "rnn" in labels[2]
    table = next(text.get_text() for text in fig.texts if text.get_text().startswith("#"))
    for run in shown:
        assert run.name in table
    assert "NaN/Inf at step" in table.splitlines()[3] and "completed" in table.splitlines()[1]


def test_a_curve_that_leaves_the_range_is_told_beside_the_panel(runs):
    shown = [read_run(runs[key]) for key in ("mlp", "explode")]
    with open(runs["explode"] / "metrics.csv") as file:
        loss = np.array([float(row["loss"]) for row in csv.DictReader(file)])
    highest = np.nanmax(np.where(np.isfinite(loss), loss, np.nan))
    fig = compare_figure(shown)
    loss_ax = fig.axes[0]
    stable_high = np.nanmax(shown[0].metrics["loss"])
    low, high = loss_ax.get_ylim()
    if np.log10(highest / min(np.nanmin(shown[0].metrics["loss"]), np.nanmin(loss))) > 10:
        assert high < highest and high >= stable_high  # the others are not flattened
        assert f"2 up to {highest:.2g}" in loss_ax.get_title().replace("\n", " ")
    else:
        assert high >= highest  # the range covers the run-up


def test_a_signal_of_exactly_0_is_marked_and_said(runs):
    rnn = read_run(runs["rnn"])
    ratio = rnn.metrics["dh1"] / rnn.metrics["dh28"]
    fig = compare_figure([read_run(runs["deep_bn"]), rnn])
    signal_ax = fig.axes[4]
    zero = np.flatnonzero(ratio == 0)
    if zero.size:  # the saturated net passes nothing back: said, not left as a gap that reads as vanishing
        first = int(rnn.metrics["step"][zero[0]])
        assert f"2 exactly 0 on {zero.size} step" in signal_ax.get_title().replace("\n", " ")
        assert any(line.get_marker() == "v" and line.get_xdata()[0] == first for line in signal_ax.get_lines())
    else:
        assert "exactly 0" not in signal_ax.get_title()


def test_a_run_without_a_complete_epoch_shows_its_last_finite_step_per_layer(runs):
    explode = read_run(runs["explode"])  # NaN/Inf at step 4, in its first epoch
    fig = compare_figure([read_run(runs["mlp"]), explode])
    profile_ax = fig.axes[6]
    dotted = [line for line in profile_ax.get_lines() if line.get_linestyle() == ":"]
    assert len(dotted) == 1
    np.testing.assert_allclose(dotted[0].get_ydata(), [explode.metrics[f"w{layer}_before"][3] for layer in (1, 2, 3)])
    assert "dotted" in profile_ax.get_title()
    notes = " ".join(text.get_text().replace("\n", " ") for text in fig.texts)
    assert "2: NaN/Inf at step 4, no complete epoch: its last finite step, 3, drawn dotted" in notes

