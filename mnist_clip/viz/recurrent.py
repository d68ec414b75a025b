"""The recurrent net's pictures: the back-propagated signal dL/dh_t through the 28 time steps.

Back-propagation through time multiplies dL/dh_t by wh^T diag(act'(.)) once per step back, so
|dh_1| / |dh_28| is the signal's growth (exploding) or decay (vanishing) over 27 such products.
Like the MLP's pictures, each is a pure function of the run folder.
"""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from mnist_clip.nn import N_ROWS
from mnist_clip.runs.reader import Run
from mnist_clip.viz.profiles import (
    drawn_epochs,
    edge_handles,
    edge_marks,
    profile_axis,
    runup_colors,
    runup_rows,
    step_profile,
)
from mnist_clip.viz.series import norm_ratio, positive, run_smoothing, short_batches, signal_ratio
from mnist_clip.viz.steps import loss_figure, norms_figure, smoothed_lines, updates_figure
from mnist_clip.viz.style import (
    FIGSIZE,
    colormap,
    finish_figure,
    layer_colors,
    legend_below,
    log_y,
    mark_divergence,
    run_step_axis,
    short_batch_note,
    subplots,
)

SHOWN_TIME_STEPS = (1, 7, 14, 21, 28)  # the time steps signals.png draws over the training steps
MIDDLE_STEP = N_ROWS // 2
ZERO_COLOR = "0.7"  # a signal of exactly 0 in the time x step map


def time_colors(times) -> list:
    cmap = colormap("viridis")
    return [cmap(0.9 * (t - 1) / (N_ROWS - 1)) for t in times]


def growth_per_step(ratio: float) -> float:
    """The mean factor per step back in time: (|dh_1| / |dh_28|)^(1/27)."""
    return float(ratio ** (1.0 / (N_ROWS - 1))) if ratio > 0 and np.isfinite(ratio) else np.nan


def growth_words(profile: np.ndarray, inactive: float | None = None, kind: str = "saturated") -> str:
    """What one profile of |dL/dh_t| over t = 1..28 shows, in plain words: its growth per step
    back, or where it is exactly 0 or Inf; and the share of hidden units `kind` (saturated or
    dead) when given. Says only what the profile holds."""
    profile = np.asarray(profile, dtype=float)
    parts = []
    if np.isposinf(profile[-1]):
        parts.append("dL/dh28 is Inf")
    elif not np.isfinite(profile[-1]):
        parts.append("dL/dh28 is NaN")
    zero = np.flatnonzero(profile == 0) + 1  # the time steps with no signal at all
    if zero.size:
        start = zero.size == zero[-1]  # t = 1 .. k, every one
        span = (f"t < {zero[-1] + 1}" if start else f"{zero.size} of {N_ROWS} time steps")
        parts.append(f"exactly 0 for {span}")
    if not parts:
        parts.append(f"x{growth_per_step(profile[0] / profile[-1]):.3g} per step back" if profile[-1] > 0
                     else "no finite signal")
    if inactive is not None and np.isfinite(inactive) and inactive > 0:
        parts.append(f"every hidden unit {kind}" if inactive >= 1 else f"{100 * inactive:.0f}% of the units {kind}")
    return "; ".join(parts)


def time_profile(run: Run, epoch: int) -> np.ndarray:
    """Per time step t = 1..28, the median over the epoch's finite steps of |dL/dh_t|."""
    rows = run.metrics["epoch"] == epoch
    profile = []
    for column in run.net.signals:
        values = run.metrics[column][rows]
        values = values[np.isfinite(values)]
        profile.append(float(np.median(values)) if values.size else np.nan)
    return np.array(profile)


def clipping_note(run: Run) -> str:
    clip = run.config.get("clip")
    if clip in ("global_norm", "autoclip"):
        return "Clipping by global norm scales every gradient of a step alike: it leaves these ratios unchanged."
    if clip == "none":
        return "No clipping in this run."
    return f"{clip} clipping acts on the weights' gradients, after these signals are taken."


def time_ratio_figure(run: Run) -> Figure:
    """|dh_1| / |dh_28| and |dh_14| / |dh_28| per step, raw and smoothed, beside gain^27 where
    the net's kind gives that estimate."""
    fig, ax = subplots(figsize=FIGSIZE)
    steps = run.metrics["step"]
    smoothing = run_smoothing(run)
    first, middle = time_colors((1, MIDDLE_STEP))
    smoothed_lines(ax, steps, signal_ratio(run), smoothing, first, "|dL/dh1| / |dL/dh28|")
    smoothed_lines(ax, steps, signal_ratio(run, f"dh{MIDDLE_STEP}"), smoothing, middle,
                   f"|dL/dh{MIDDLE_STEP}| / |dL/dh28|")
    ax.axhline(1.0, color="0.5", linewidth=0.8)
    if run.net.linear_growth is not None:
        linear = run.net.linear_growth ** (N_ROWS - 1)
        ax.axhline(linear, color="0.3", linestyle=":", linewidth=1.2,
                   label=f"gain^27 = {linear:.3g}: the linear-regime estimate for the initial wh")
    log_y(ax)
    ax.set_ylabel("ratio of signal norms (log)")
    ax.set_title(textwrap.fill(
        "The back-propagated signal at the first time step relative to the last: raw per step (pale) and "
        f"{smoothing.words()}. Above 1 it grows backwards through time (exploding), below 1 it fades "
        f"(vanishing). {clipping_note(run)}", 120), fontsize=10)
    mark_divergence(ax, run)
    run_step_axis(ax, run, epochs_on_top=True)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=9)
    return finish_figure(fig, run, short_batch_note(run))


def time_signals_figure(run: Run) -> Figure:
    """|dL/dh_t| at a few time steps beside the weight gradients, the first-over-last ratios and
    the saturated (or dead) hidden units."""
    fig, (top, middle, bottom) = subplots(3, 1, figsize=(10, 9), sharex=True, height_ratios=(3, 2, 1.3))
    steps = run.metrics["step"]
    smoothing = run_smoothing(run)
    edges = set()  # steps whose signal is exactly 0 or Inf: kept in view on the axes' edges
    keep = smoothing.keep
    for t, color in zip(SHOWN_TIME_STEPS, time_colors(SHOWN_TIME_STEPS)):
        top.plot(steps, smoothing.geometric(run.metrics[f"dh{t}"]), color=color, linewidth=2, label=f"|dL/dh{t}|")
        edges |= edge_marks(top, steps[keep], run.metrics[f"dh{t}"][keep], color, size=4)
    layer_color = layer_colors(len(run.net.layers))
    for name in run.net.weights:
        tensor = run.net.tensor(name)
        top.plot(steps, smoothing.geometric(run.metrics[f"{name}_before"]), color=layer_color[tensor.layer - 1],
                 linewidth=1.0, linestyle="--" if tensor.role == "weight" else "-.", label=f"|g_{name}|")
        edges |= edge_marks(top, steps[keep], run.metrics[f"{name}_before"][keep], layer_color[tensor.layer - 1],
                            size=4)
    log_y(top)
    top.set_ylabel("L2 norm (log)")
    top.set_title(f"Back-propagated signal through time (solid, by time step) and weight gradients (dashed),\n"
                  f"{smoothing.words()}", fontsize=10)
    smoothed_lines(middle, steps, signal_ratio(run), smoothing, time_colors((1,))[0], "|dL/dh1| / |dL/dh28|")
    edges |= edge_marks(middle, steps[keep], signal_ratio(run)[keep], time_colors((1,))[0], size=4)
    for handle in edge_handles(edges):
        top.plot([], [], **{key: getattr(handle, f"get_{key}")() for key in ("color", "linestyle", "marker", "label")})
    wx, wo = run.net.layer_weights
    middle.plot(steps, smoothing.geometric(norm_ratio(run, wx, wo)), color="0.3", linewidth=1.2, linestyle="--",
                label=f"|g_{wx}| / |g_{wo}| ({'smoothed' if smoothing.smooths else 'raw'})")
    middle.axhline(1.0, color="0.5", linewidth=0.8)
    log_y(middle)
    middle.set_ylabel("first / last")
    middle.set_title("First time step over last, and input weight over output weight", fontsize=9)
    dead = run.activation == "relu"
    kind = ("dead (zero for every example at every time step)" if dead
            else "saturated (derivative < 1% of its maximum for every example at every time step)")
    for column in run.activity_columns:
        bottom.plot(steps[smoothing.keep], 100 * run.metrics[column][smoothing.keep], color=layer_color[0], linewidth=1,
                    label=f"hidden units {'dead' if dead else 'saturated'}")
    bottom.set_title(f"Hidden units {kind}, raw per step", fontsize=9)
    bottom.set_ylabel("units (%)")
    largest = max((np.nanmax(100 * run.metrics[column][smoothing.keep], initial=0.0) for column in run.activity_columns),
                  default=0.0)
    bottom.set_ylim(0, max(5.0, 1.1 * largest))  # a line at 0 stays in sight above the axis
    for ax in (top, middle, bottom):
        mark_divergence(ax, run)
    run_step_axis(bottom, run)
    run_step_axis(top, run, label=False, epochs_on_top=True)
    return finish_figure(fig, run, short_batch_note(run), legend_axes=(top, middle, bottom))


def inactive_share(run: Run, rows) -> float | None:
    """The median share of hidden units saturated (or dead) over the given rows."""
    if not run.activity_columns:
        return None
    values = np.asarray(run.metrics[run.activity_columns[0]])[rows]
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else None


def time_flow_figure(run: Run) -> Figure:
    """Gradient flow through time: |dL/dh_t| against t for a few epochs (a diverged run: its last
    complete epochs, then its last finite steps one by one), with gain^(28-t) for the initial
    recurrent weight; and a time step x training step map of log10 |dL/dh_t|."""
    fig, (left, right) = subplots(1, 2, figsize=(12, 6), width_ratios=(1, 1.1))
    times = np.arange(1, N_ROWS + 1)
    epochs = drawn_epochs(run)
    kind = "dead" if run.activation == "relu" else "saturated"
    cmap = colormap("viridis" if run.nonfinite_step is not None else "plasma")
    median = ", median" if run.nonfinite_step is not None else ""  # beside single steps
    profiles = [(f"epoch {epoch + 1}{median}", time_profile(run, epoch),
                 inactive_share(run, run.metrics["epoch"] == epoch), cmap(0.85 * i / max(1, len(epochs) - 1)))
                for i, epoch in enumerate(epochs)]
    rows = runup_rows(run)
    profiles += [(f"step {int(run.metrics['step'][row])}" + (" (last finite)" if row == rows[-1] else ""),
                  step_profile(run, row, "signal"), inactive_share(run, [row]), color)
                 for row, color in zip(rows, runup_colors(len(rows)))]
    handles, edges = [], set()
    for words, profile, inactive, color in profiles:
        left.plot(times, positive(profile), "o-", color=color, linewidth=1.8, markersize=3)
        edges |= edge_marks(left, times, profile, color, size=5)
        handles.append(Line2D([], [], color=color, linewidth=3, label=f"{words}: {growth_words(profile, inactive, kind)}"))
    # the first step's signal, at the initial weights, beside what the gain alone would make of it
    initial = np.array([run.metrics[column][0] for column in run.net.signals], dtype=float)
    if np.all(np.isfinite(initial)) and initial[-1] > 0:
        left.plot(times, positive(initial), color="0.45", linewidth=1.0, marker=".", markersize=4)
        handles.append(Line2D([], [], color="0.45", linewidth=1.0, marker=".",
                              label=f"step 0 (initial weights): {growth_words(initial)}"))
        growth = run.net.linear_growth
        if growth is not None:
            left.plot(times, initial[-1] * growth ** (N_ROWS - times), color="0.35", linestyle=":", linewidth=1.4)
            handles.append(Line2D([], [], color="0.35", linestyle=":", linewidth=1.4,
                                  label=f"x{growth:g} per step back: the gain, from step 0's dh28"))
    handles += edge_handles(edges)
    profile_axis(left, run, "time step t (image row; back-propagation runs from 28 down to 1)", "|dL/dh_t|",
                 "Signal through time. Rising toward t = 1 is exploding,\n"
                 "falling toward t = 1 is vanishing; flat is healthy.")
    long_labels = max(len(handle.get_label()) for handle in handles) > 48
    legend_below(left, handles, ncol=1 if long_labels else 2)
    left.grid(alpha=0.3, which="both")

    steps = run.metrics["step"]
    full = ~short_batches(run)  # a short batch's signal stands apart: it would draw a stripe
    signal = np.array([run.metrics[column][full] for column in run.net.signals], dtype=float)
    # the step whose loss turned NaN/Inf has no signal to show (its zeros are not saturation): blank
    signal[:, ~np.isfinite(run.metrics["loss"][full])] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        log_table = np.log10(positive(signal))
    finite = log_table[np.isfinite(log_table)]
    # no signal at all: every unit on the way back saturated (tanh' is 0 in float32)
    zero, overflow = signal == 0, np.isposinf(signal)
    if finite.size:
        cmap = colormap("magma").with_extremes(under=ZERO_COLOR, over="tab:cyan", bad="white")
        shown = np.where(zero, finite.min() - 1.0, np.where(overflow, finite.max() + 1.0, log_table))
        image = right.pcolormesh(np.append(steps[full] - 0.5, steps[-1] + 0.5), np.arange(0.5, N_ROWS + 1),
                                 np.ma.masked_invalid(shown), cmap=cmap, vmin=finite.min(), vmax=finite.max(),
                                 shading="flat", rasterized=True)
        extend = {(True, True): "both", (True, False): "min", (False, True): "max"}.get((zero.any(), overflow.any()),
                                                                                     "neither")
        bar = fig.colorbar(image, ax=right, pad=0.02, extend=extend)
        bar.set_label("log10 |dL/dh_t| (full range)" + ("; grey: exactly 0" if zero.any() else "")
                      + ("; cyan: Inf" if overflow.any() else "")
                      + ("; white: NaN, or the step whose loss was not finite" if np.isnan(signal).any() else ""),
                      fontsize=9)
        bar.ax.tick_params(labelsize=8)
    right.set_ylabel("time step t")
    right.set_ylim(0.5, N_ROWS + 0.5)
    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_title("Signal |dL/dh_t| per time step and training step", fontsize=10)
    mark_divergence(right, run)
    run_step_axis(right, run)
    return finish_figure(fig, run, short_batch_note(run, "the map"))


TIME_FIGURES = {  # a recurrent net's pictures: the MLP's norms, loss and updates, the rest through time
    "norms.png": norms_figure,
    "ratio.png": time_ratio_figure,
    "loss.png": loss_figure,
    "signals.png": time_signals_figure,
    "flow.png": time_flow_figure,
    "updates.png": updates_figure,
}
