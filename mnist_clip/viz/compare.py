"""compare.png: several runs as small multiples on shared axes, with their legend, a table
of the runs and notes at the foot."""

from __future__ import annotations

import textwrap
import warnings
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mnist_clip.runs.labels import training_label
from mnist_clip.runs.reader import Run
from mnist_clip.runs.table import SETTING_KEYS, differing_keys, group_runs, setting_text, shown_names
from mnist_clip.viz.labels import architecture_label
from mnist_clip.viz.profiles import last_complete_epoch, layer_profile, runup_rows, step_profile
from mnist_clip.viz.series import norm_ratio, positive, run_smoothing, short_batches, signal_ratio, steps_per_epoch
from mnist_clip.viz.style import (
    DIVERGED_COLOR,
    DPI,
    TICK_SIZE,
    colormap,
    epoch_axis,
    log_y,
    step_axis,
    step_axis_words,
    subplots,
    tight_layout,
)


def _smoothed(run: Run, values: np.ndarray) -> np.ndarray:
    return run_smoothing(run).geometric(values)


def run_colors(count: int) -> list:
    """Distinct colours for up to 20 runs (tab10, then tab20)."""
    palette = colormap("tab10" if count <= 10 else "tab20").colors
    return [palette[i % len(palette)] for i in range(count)]


# compare.png's geometry, in inches and characters at DPI: the panels keep their size whatever
# the runs; the legend, the table of runs and the notes below them make the figure taller.
COMPARE_WIDTH = 12.0
PANELS_HEIGHT = 13.0
TITLE_CHARS = 60  # a panel title's line at 10 points fits half the width
LABEL_CHARS = 56  # a legend label at most
TABLE_CHARS = 168  # a table line at 8-point monospace across the width
NOTE_CHARS = 190  # a note line at 8 points
MAX_DECADES = 10  # a log panel covers every value if they span at most this many powers of ten
BEYOND_DECADES = 2  # otherwise it shows this much beyond the runs that did not diverge,
SHOWN_DECADES = 6  # and at least this many powers of ten in all, so that a run-up stays in view a while


# The settings of the net, said together in a legend label as the titles say them ('784-32x8-10
# sigmoid, batch norm'), first: a label cut short keeps what tells the nets apart.
NET_KEYS = ("hidden", "activation", "recurrent_gain", "norm", "residual", "init")


def label_words(config: dict, keys: list[str]) -> str:
    net = [architecture_label(config)] if any(key in NET_KEYS for key in keys) else []
    return ", ".join(net + [setting_text(config, key) for key in keys if key not in NET_KEYS])


@dataclass
class Entry:
    """What compare.png draws as one line: a run, or a group of seeds (their median and a band)."""

    number: int
    label: str
    runs: list
    color: tuple
    style: str

    @property
    def tag(self) -> str:
        return str(self.number)


def compare_entries(runs: list[Run]) -> tuple[list[Entry], bool]:
    """The runs as numbered entries, each labelled by the settings that differ between them
    (a group of seeds when runs differ only in their seed); and whether any group was formed."""
    groups = group_runs(runs)
    grouped = any(len(members) > 1 for _, members in groups)
    members = [group for _, group in groups] if grouped else [[run] for run in runs]
    keys = differing_keys([group[0].config for group in members],
                          [k for k in SETTING_KEYS if k != "seed"] if grouped else SETTING_KEYS)
    names = shown_names(runs)
    colors = run_colors(len(members))
    entries = []
    for index, group in enumerate(members):
        words = label_words(group[0].config, keys) or names[id(group[0])]
        if len(group) > 1:
            words += f" ({len(group)} seeds)"
        entries.append(Entry(index + 1, f"{index + 1}: {textwrap.shorten(words, LABEL_CHARS, placeholder=' ...')}",
                             group, colors[index], ("-", "--")[index % 2]))
    return entries, grouped


def status_words(run: Run) -> str:
    step = run.nonfinite_step
    return f"NaN/Inf at step {step}" if step is not None else run.status


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def entry_table(entries: list[Entry], names: dict) -> list[str]:
    """The runs behind the legend's numbers, a line each: name, settings, outcome."""
    header = ("#", "run", "clip", "training", "net", "status", "steps", "test acc")
    limits = (3, 34, 18, 28, 44, 28, 9, 9)
    rows = []
    for entry in entries:
        first = entry.runs[0]
        accuracy = [float(run.epochs["test_accuracy"][-1]) for run in entry.runs if run.epochs["test_accuracy"].size]
        steps = sorted({run.steps for run in entry.runs})
        if len(entry.runs) == 1:
            run_name, status = names[id(first)], status_words(first)
        else:
            diverged = [run.nonfinite_step for run in entry.runs if run.nonfinite_step is not None]
            run_name = f"{names[id(first)]} +{len(entry.runs) - 1} seeds"
            status = f"{len(diverged)}/{len(entry.runs)} diverged" + (
                f" (steps {min(diverged)}-{max(diverged)})" if diverged else "")
        rows.append((entry.tag, run_name, first.clip_label, training_label(first.config),
                     architecture_label(first.config), status,
                     str(steps[0]) if len(steps) == 1 else f"{steps[0]}-{steps[-1]}",
                     f"{100 * np.mean(accuracy):.1f}%" if accuracy else "-"))
    cells = [[cut(value, limit) for value, limit in zip(row, limits)] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return [cut("  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip(), TABLE_CHARS)
            for row in cells]


def keep_in_range(ax, series: list[tuple[Entry, Run, np.ndarray]]) -> str | None:
    """Fit a log panel to every value when they span at most MAX_DECADES; else to the runs that
    did not diverge and BEYOND_DECADES more, so that one run that climbs to 1e30 before its
    NaN does not flatten the others. A curve that leaves the range gets a triangle on the edge
    where it leaves, and so does a value of exactly 0 (which no log axis shows); the words
    returned (for the title, beside the plot) give each one's extreme."""
    words = [*exactly_zero(ax, series)]
    finite = [(entry, run, positive(values)) for entry, run, values in series]
    every = np.concatenate([v[np.isfinite(v)] for _, _, v in finite] or [np.zeros(0)])
    if not every.size:
        return range_words(words)
    low, high = float(every.min()), float(every.max())
    stable = np.concatenate([v[np.isfinite(v)] for _, run, v in finite if run.nonfinite_step is None] or [np.zeros(0)])
    if not stable.size or np.log10(high / low) <= MAX_DECADES:
        ax.set_ylim(low / 1.5, high * 1.5)
        return range_words(words)
    bottom = max(low / 1.5, float(stable.min()) / 10 ** BEYOND_DECADES)
    top = min(high * 1.5, float(stable.max()) * 10 ** BEYOND_DECADES)
    if np.log10(top / bottom) < SHOWN_DECADES:  # room for the run-up: the curve leaves later
        if high > top:
            top = min(high * 1.5, bottom * 10 ** SHOWN_DECADES)
        else:
            bottom = max(low / 1.5, top / 10 ** SHOWN_DECADES)
    ax.set_ylim(bottom, top)
    extremes: dict[tuple, tuple[float, int]] = {}  # (entry number, "up" or "down"): the farthest value, its step
    for entry, run, values in finite:
        steps = run.metrics["step"]
        for beyond, edge, direction in ((values > top, 1.0, "up"), (values < bottom, 0.0, "down")):
            if not beyond.any():
                continue
            edge_mark(ax, steps[np.argmax(beyond)], edge, entry.color)
            index = int(np.nanargmax(values) if direction == "up" else np.nanargmin(values))
            sign = 1 if direction == "up" else -1
            known = extremes.get((entry.number, direction))
            if known is None or sign * values[index] > sign * known[0]:
                extremes[(entry.number, direction)] = (float(values[index]), int(steps[index]))
    words = [f"{number} {direction} to {value:.2g} (step {step})"
             for (number, direction), (value, step) in sorted(extremes.items())] + words
    return range_words(words)


def edge_mark(ax, step, edge: float, color) -> None:
    ax.plot(step, edge, marker="^" if edge else "v", color=color, markersize=7, clip_on=False,
            transform=ax.get_xaxis_transform(), zorder=5, linestyle="none")


def exactly_zero(ax, series: list[tuple[Entry, Run, np.ndarray]]) -> list[str]:
    """A triangle on the bottom edge where an entry's value first is exactly 0 (a signal that
    saturated units stopped), and words for the title: on how many steps, from which."""
    zeros: dict[int, tuple[int, int, tuple]] = {}  # entry number: (steps at 0, first such step, colour)
    for entry, run, values in series:
        zero = np.asarray(values) == 0
        if zero.any():
            first = int(run.metrics["step"][np.argmax(zero)])
            count, known, _ = zeros.get(entry.number, (0, first, entry.color))
            zeros[entry.number] = (count + int(zero.sum()), min(known, first), entry.color)
    for number, (count, first, color) in sorted(zeros.items()):
        edge_mark(ax, first, 0.0, color)
    runs = {entry.number: len(entry.runs) for entry, _, _ in series}
    return [f"{number} exactly 0 on {count} step{'s' if count > 1 else ''}"
            + (f" of its {runs[number]} runs" if runs[number] > 1 else "") + f" from step {first}"
            for number, (count, first, _) in sorted(zeros.items())]


def range_words(words: list[str]) -> str | None:
    if not words:
        return None
    return ("off the range (triangles): " + "; ".join(words[:3])
            + (f"; {len(words) - 3} more" if len(words) > 3 else ""))


def stacked(series: list[np.ndarray]) -> np.ndarray:
    """Runs' per-step values as rows of one array, shorter runs padded with NaN."""
    length = max((len(values) for values in series), default=0)
    table = np.full((len(series), length), np.nan)
    for row, values in enumerate(series):
        table[row, : len(values)] = values
    return table


def band(ax, x, table: np.ndarray, color, label: str, style: str = "-", log: bool = True, marker=None) -> None:
    """The median over the rows (runs) as a line, and their min-max as a band."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # steps that only some runs reached
        median = np.nanmedian(table, axis=0)
        low, high = np.nanmin(table, axis=0), np.nanmax(table, axis=0)
    clean = positive if log else np.asarray
    ax.fill_between(x, clean(low), clean(high), color=color, alpha=0.18, linewidth=0)
    ax.plot(x, clean(median), color=color, linewidth=1.6, linestyle=style, marker=marker, markersize=3, label=label)


def profile_notes(entries: list[Entry]) -> list[str]:
    """What the per-layer panels draw of each diverged run: its last epoch before the NaN/Inf,
    or nothing if it had none (a few exploding steps are not the end of training)."""
    notes = []
    for entry in entries:
        for run in entry.runs:
            if run.nonfinite_step is None:
                continue
            epoch = last_complete_epoch(run)
            who = entry.tag if len(entry.runs) == 1 else f"{entry.tag} ({run.name})"
            runup = runup_rows(run)
            if epoch is not None:
                drawn = f"its epoch {epoch + 1} drawn"
            elif len(entry.runs) == 1 and runup:
                drawn = f"no complete epoch: its last finite step, {int(run.metrics['step'][runup[-1]])}, drawn dotted"
            else:
                drawn = "no complete epoch to draw"
            notes.append(f"{who}: NaN/Inf at step {run.nonfinite_step}, {drawn}")
    shown = notes[:6] + ([f"{len(notes) - 6} more diverged runs"] if len(notes) > 6 else [])
    return ["The per-layer panels draw each run's last complete epoch. " + "; ".join(shown) + "."] if shown else []


def compare_titles(runs: list[Run]) -> dict[str, tuple[str, str, str]]:
    """Per panel: (title, y label, x label), in the words of the nets compared."""
    titles = {
        "loss": ("training loss (log)", "loss", "step"),
        "norm": ("global gradient norm before clipping, with the global-norm thresholds", "global norm", "step"),
        "ratio": ("|g_w1| / |g_wL| before clipping (wL: the output layer)", "ratio", "step"),
        "signal": ("back-propagated signal |dL/dz1| / |dL/dzL|", "ratio", "step"),
        "profile": ("weight-gradient norm per layer, median over the last complete epoch", "|g_w| (log)", "layer"),
        "depth": ("back-propagated signal |δ| per layer, median over the last complete epoch", "|δ| (log)", "layer"),
    }
    recurrent = [run.net.is_recurrent for run in runs]
    if all(recurrent):
        titles.update({
            "ratio": ("|g_wx| / |g_wo| before clipping (input over output weight)", "ratio", "step"),
            "signal": ("signal through time |dL/dh1| / |dL/dh28|", "ratio", "step"),
            "profile": ("weight-gradient norm per layer (wx, wo), median over the last complete epoch",
                        "|g_w| (log)", "layer"),
            "depth": ("signal |dL/dh_t| per time step, median over the last complete epoch", "|dL/dh_t| (log)",
                      "time step t"),
        })
    elif any(recurrent):
        titles.update({
            "ratio": ("first layer's weight gradient over the last's (w1 / wL; the rnn's wx / wo)", "ratio", "step"),
            "signal": ("signal first over last (dz1 / dzL; the rnn's dh1 / dh28)", "ratio", "step"),
            "depth": ("signal per layer (the rnn's: per time step), median over the last complete epoch",
                      "signal (log)", "layer, or time step"),
        })
    return titles


def compare_figure(runs: list[Run]) -> Figure:
    """Runs overlaid on shared step axes (the one step scale of every picture): loss, global norm with the
    thresholds of the global-norm methods, first/last gradient ratio, signal ratio, test accuracy
    and inactive units; and each run's profile per layer over its last complete epoch. Thin lines are the raw
    values, thick ones their moving geometric mean; a run that hit NaN/Inf ends at a red dotted line.
    Runs that differ only in their seed are drawn as a group: the median and a min-max band.

    The legend numbers the runs and names only the settings that differ between them; a table
    under it names the rest, and the notes under the table say what the panels leave out."""
    entries, grouped = compare_entries(runs)
    names = shown_names(runs)
    table = entry_table(entries, names)
    notes = profile_notes(entries)
    short = [run for run in runs if short_batches(run).any()]
    if short:
        notes.append("The thin raw lines leave out each epoch's short last batch (fewer examples: its values stand "
                     "apart), as the moving means do.")
    notes = [line for note in notes for line in textwrap.wrap(note, NOTE_CHARS)]

    fig, axes = subplots(4, 2, figsize=(COMPARE_WIDTH, PANELS_HEIGHT))
    (loss_ax, acc_ax), (norm_ax, ratio_ax), (signal_ax, dead_ax), (profile_ax, depth_ax) = axes
    panels = {"loss": loss_ax, "norm": norm_ax, "ratio": ratio_ax, "signal": signal_ax, "profile": profile_ax,
              "depth": depth_ax}
    thresholds: dict[float, list[str]] = {}
    plotted: dict = {loss_ax: [], norm_ax: [], ratio_ax: [], signal_ax: []}

    def step_series(run: Run):
        return ((loss_ax, run.metrics["loss"]), (norm_ax, run.metrics["global_norm_before"]),
                (ratio_ax, norm_ratio(run)), (signal_ax, signal_ratio(run)))

    dotted = False  # a run's last finite step drawn in the per-layer panels
    for entry in entries:
        color, style, label = entry.color, entry.style, entry.label
        for run in entry.runs:
            for ax, values in step_series(run):
                plotted[ax].append((entry, run, values))
            clip = run.config.get("clip")
            if clip == "global_norm":
                thresholds.setdefault(float(run.config.get("clip_norm")), []).append(entry.tag)
            elif clip == "autoclip" and len(entry.runs) == 1:
                norm_ax.plot(run.metrics["step"], positive(run.metrics["clip_threshold"]), color=color, linestyle=":",
                             linewidth=1.2, label=f"AutoClip threshold of {entry.tag}")
        if len(entry.runs) > 1:
            steps = np.arange(max(run.steps for run in entry.runs))
            for index, (ax, _) in enumerate(step_series(entry.runs[0])):
                values = stacked([_smoothed(run, step_series(run)[index][1]) for run in entry.runs])
                band(ax, steps[: values.shape[1]], values, color, label, style)
            activity = [run_smoothing(run).mean(run.metrics[run.activity_columns[-1]]) * 100
                        for run in entry.runs if run.activity_columns]
            if activity:
                values = stacked(activity)
                band(dead_ax, steps[: values.shape[1]], values, color, label, style, log=False)
            accuracy = stacked([run.epochs["test_accuracy"] * 100 for run in entry.runs])
            band(acc_ax, np.arange(1, accuracy.shape[1] + 1), accuracy, color, label, log=False, marker="o")
            profiled = [(run, last_complete_epoch(run)) for run in entry.runs if last_complete_epoch(run) is not None]
            if profiled:
                for ax, prefix in ((profile_ax, "w"), (depth_ax, "delta")):
                    values = stacked([layer_profile(run, epoch, prefix) for run, epoch in profiled])
                    band(ax, np.arange(1, values.shape[1] + 1), values, color, label, marker="o")
            continue
        run = entry.runs[0]
        steps = run.metrics["step"]
        full = ~short_batches(run)  # a short batch's values stand apart: out of the raw line too
        for ax, values in step_series(run):
            ax.plot(steps[full], positive(values)[full], color=color, linewidth=0.6, alpha=0.35)
            ax.plot(steps, _smoothed(run, values), color=color, linewidth=1.6, linestyle=style, label=label)
        if run.activity_columns:  # the last hidden layer, next to the output
            dead_ax.plot(steps, 100 * run_smoothing(run).mean(run.metrics[run.activity_columns[-1]]),
                         color=color, linewidth=1.6, linestyle=style, label=label)
        acc_ax.plot(run.epochs["epoch"] + 1, 100 * run.epochs["test_accuracy"], marker="o", linestyle=style,
                    color=color, markersize=3, label=label)
        last_epoch = last_complete_epoch(run)
        runup = runup_rows(run)
        if last_epoch is not None:
            weights, signal = layer_profile(run, last_epoch, "w"), layer_profile(run, last_epoch, "delta")
        elif runup:  # diverged in its first epoch: its last finite step, dotted, hollow
            weights, signal = step_profile(run, runup[-1], "w"), step_profile(run, runup[-1], "delta")
            style = ":"
            dotted = True
        else:
            continue
        hollow = {"markerfacecolor": "none"} if last_epoch is None else {}
        profile_ax.plot(np.arange(1, len(weights) + 1), positive(weights), "o", linestyle=style, color=color,
                        markersize=4, label=label, **hollow)
        depth_ax.plot(np.arange(1, len(signal) + 1), positive(signal), "s", linestyle=style,
                      color=color, markersize=3, label=label, **hollow)
    diverged_steps = sorted({run.nonfinite_step for run in runs if run.nonfinite_step is not None})
    for step in diverged_steps:
        for ax in (loss_ax, norm_ax, ratio_ax, signal_ax):
            ax.axvline(step, color=DIVERGED_COLOR, linestyle=":", linewidth=1)
    if diverged_steps:
        shown = ", ".join(str(step) for step in diverged_steps[:6]) + (" ..." if len(diverged_steps) > 6 else "")
        loss_ax.plot([], [], color=DIVERGED_COLOR, linestyle=":", label=f"NaN/Inf (step {shown})")
    for threshold, tags in sorted(thresholds.items()):
        tags = list(dict.fromkeys(tags))
        named = ", ".join(tags) if len(tags) <= 4 else f"{len(tags)} runs"
        norm_ax.axhline(threshold, color="0.4", linewidth=0.8, linestyle="--",
                        label=f"clip threshold {threshold:g} (of {named})")

    offsets = {ax: keep_in_range(ax, series) for ax, series in plotted.items()}
    for key, (title, ylabel, xlabel) in compare_titles(runs).items():
        ax = panels[key]
        if dotted and key in ("profile", "depth"):
            title += " (dotted: a run's last finite step)"
        log_y(ax)
        if offsets.get(ax):
            title += ". " + offsets[ax]
        ax.set_title(textwrap.fill(title, TITLE_CHARS), fontsize=10)
        ax.set_ylabel(ylabel)
        ax.set_xlabel(xlabel, fontsize=9)
    for ax in (ratio_ax, signal_ax):
        ax.axhline(1.0, color="0.6", linewidth=0.8)
    with_steps = [run for run in runs if run.steps]
    n_steps = max((run.steps for run in with_steps), default=1)
    per_epoch = steps_per_epoch(with_steps[0]) if with_steps else 1
    for ax in (loss_ax, norm_ax, ratio_ax, signal_ax, dead_ax):
        step_axis(ax, n_steps, per_epoch, label=False)
        ax.set_xlabel(step_axis_words(per_epoch), fontsize=8)
    acc_ax.set_title("test accuracy after each epoch", fontsize=10)
    epoch_axis(acc_ax, max((len(run.epochs["epoch"]) for run in runs), default=1))
    acc_ax.set_xlabel("epoch", fontsize=9)
    acc_ax.set_ylabel("test accuracy (%)")
    acc_ax.set_ylim(0, 100)
    dead_ax.set_title(textwrap.fill("units of the last hidden layer dead (ReLU) or saturated, moving average",
                                    TITLE_CHARS), fontsize=10)
    dead_ax.set_ylabel("inactive units (%)")
    dead_ax.set_ylim(bottom=0)
    for ax in (profile_ax, depth_ax):
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True, min_n_ticks=1))
        ax.tick_params(axis="x", labelsize=TICK_SIZE)
    if not any(run.net.signals for run in runs):  # Keras models' runs (GradientProbe) only
        for ax in (signal_ax, dead_ax, depth_ax):
            ax.text(0.5, 0.5, "not recorded for a Keras model: only mnist-clip's own nets\nrecord the "
                    "back-propagated signal and inactive units", transform=ax.transAxes, ha="center", va="center",
                    fontsize=9, color="0.4")

    # the foot, from the bottom up: the notes, the table of runs, the legend
    entries_shown = {}
    for ax in (loss_ax, norm_ax):
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries_shown.setdefault(label, handle)
    longest = max((len(label) for label in entries_shown), default=1)
    columns = max(1, min(4, len(entries_shown), int(COMPARE_WIDTH * DPI / (6.5 * longest + 60))))
    foot = [fig.text(0.01, 0, "\n".join(notes), fontsize=8, color="0.3")] if notes else []
    foot.append(fig.text(0.01, 0, "\n".join(table), fontsize=8, family="monospace"))
    foot.append(fig.legend(list(entries_shown.values()), list(entries_shown), loc="lower center", ncol=columns,
                           fontsize=9, frameon=False))
    foot_height = place_foot(fig, foot, PANELS_HEIGHT * DPI)
    if grouped:
        title = "Runs compared by group: lines are the median over seeds of each run's moving geometric mean; bands min-max"
    else:
        title = "Runs compared: thick lines are moving geometric means, thin lines the raw values per step"
    heading = fig.suptitle(title, fontsize=12, y=1 - FOOT_GAP_PIXELS / fig.bbox.height, va="top")
    top = heading.get_window_extent(fig.canvas.get_renderer()).height + 2 * FOOT_GAP_PIXELS
    # below the heading and above the foot: tight_layout alone lets a tall title reach the heading
    tight_layout(fig, rect=(0, foot_height / fig.bbox.height, 1, 1 - top / fig.bbox.height))
    return fig


FOOT_GAP_PIXELS = 8


def place_foot(fig: Figure, artists: list, panels_height: float) -> float:
    """Stack texts and a legend from the bottom of the figure up, each at its measured height,
    and make the figure that much taller than panels_height (pixels), so that the panels above
    keep their size. Returns the stack's height in pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    heights = [artist.get_window_extent(renderer).height for artist in artists]
    total = panels_height + sum(heights) + FOOT_GAP_PIXELS * (len(artists) + 1)
    fig.set_size_inches(fig.get_figwidth(), total / DPI)
    bottom = FOOT_GAP_PIXELS / 2
    for artist, height in zip(artists, heights):
        if hasattr(artist, "set_bbox_to_anchor"):
            artist.set_bbox_to_anchor((0.5, bottom / total), transform=fig.transFigure)
        else:
            artist.set_position((0.01, bottom / total))
            artist.set_verticalalignment("bottom")
        bottom += height + FOOT_GAP_PIXELS
    return bottom
