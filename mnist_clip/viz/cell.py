"""cell.png, for a net that carries a cell state (the LSTM): the back-propagated signal through
time along the hidden state, dL/dh_t, beside the one along the cell state, dL/dc_t.

Back through h the signal passes the gates' and tanh's derivatives and the recurrent weight at
every step; back through c it is multiplied by the forget gate alone. The picture shows how much
more of the signal reaches t = 1 through the cell.
"""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mnist_clip.nn import N_ROWS
from mnist_clip.runs.reader import Run
from mnist_clip.viz.profiles import drawn_epochs, edge_handles, edge_marks, profile_axis
from mnist_clip.viz.series import positive, run_smoothing
from mnist_clip.viz.steps import smoothed_lines
from mnist_clip.viz.style import (
    colormap,
    finish_figure,
    legend_below,
    log_y,
    mark_divergence,
    run_step_axis,
    short_batch_note,
    subplots,
)

GROUP_STYLES = {"dh": "-", "dc": "--"}  # the hidden state solid, the cell state dashed


def epoch_profile(run: Run, epoch: int, prefix: str) -> np.ndarray:
    """Per time step t = 1..28, the median over the epoch's finite steps of the column prefix+t."""
    rows = run.metrics["epoch"] == epoch
    profile = []
    for t in range(1, N_ROWS + 1):
        values = run.metrics[f"{prefix}{t}"][rows]
        values = values[np.isfinite(values)]
        profile.append(float(np.median(values)) if values.size else np.nan)
    return np.array(profile)


def first_over_last(run: Run, prefix: str) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return run.metrics[f"{prefix}1"] / run.metrics[f"{prefix}{N_ROWS}"]


def reach_words(profile: np.ndarray) -> str:
    """'1/28 reaches t = 1: 0.0021' or what keeps the share from being read."""
    if not (np.isfinite(profile[0]) and np.isfinite(profile[-1])) or profile[-1] <= 0:
        return "no finite share"
    return f"t=1 gets {profile[0] / profile[-1]:.2g} of t=28"


def cell_figure(run: Run) -> Figure:
    """Left: |dL/dh_t| and |dL/dc_t| against t at a few epochs; right: the share of each that
    reaches t = 1, |x_1| / |x_28|, per training step."""
    groups = dict(run.net.signal_groups)
    fig, (left, right) = subplots(1, 2, figsize=(12, 6), width_ratios=(1, 1.1))
    times = np.arange(1, N_ROWS + 1)
    epochs = drawn_epochs(run)
    cmap = colormap("plasma")
    handles, edges = [], set()
    for i, epoch in enumerate(epochs):
        color = cmap(0.85 * i / max(1, len(epochs) - 1))
        words = []
        for prefix, style in GROUP_STYLES.items():
            profile = epoch_profile(run, epoch, prefix)
            left.plot(times, positive(profile), style, color=color, linewidth=1.8, marker="o", markersize=3)
            edges |= edge_marks(left, times, profile, color, size=5)
            words.append(f"{prefix}: {reach_words(profile)}")
        handles.append(Line2D([], [], color=color, linewidth=3, label=f"epoch {epoch + 1} median; {'; '.join(words)}"))
    handles += [Line2D([], [], color="0.3", linestyle=style, linewidth=1.8, label=f"|{groups[prefix].split(',')[0]}|")
                for prefix, style in GROUP_STYLES.items()]
    handles += edge_handles(edges)
    profile_axis(left, run, "time step t (image row; back-propagation runs from 28 down to 1)", "signal norm",
                 "Signal through time along the hidden state (solid)\nand along the cell state (dashed)")
    legend_below(left, handles, ncol=1)
    left.grid(alpha=0.3, which="both")

    steps = run.metrics["step"]
    smoothing = run_smoothing(run)
    for prefix, color in (("dh", "tab:blue"), ("dc", "tab:orange")):
        smoothed_lines(right, steps, first_over_last(run, prefix), smoothing, color, f"|dL/{prefix}1| / |dL/{prefix}28|")
    right.axhline(1.0, color="0.5", linewidth=0.8)
    log_y(right)
    right.set_ylabel("share of the signal at t = 28 that reaches t = 1 (log)")
    right.set_title(textwrap.fill(f"The share that reaches the first time step, raw per step (pale) and "
                                  f"{smoothing.words()}", 70), fontsize=10)
    right.legend(loc="best", fontsize=9)
    mark_divergence(right, run)
    run_step_axis(right, run)
    return finish_figure(fig, run, short_batch_note(run))
