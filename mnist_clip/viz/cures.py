"""The cures picture: per cure, each seed's outcome, the signal reaching the first layer and how far w1 moved."""

from __future__ import annotations

import textwrap

import numpy as np

from mnist_clip.plans.cure_table import BY_NAME, changes_text
from mnist_clip.stats import spread


def by_cure(rows: list[dict]) -> dict[str, list[dict]]:
    """The run rows (not skipped, not statistics) of each cure, in the table's order."""
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        if not row.get("statistic") and row.get("status") not in ("skipped", "not run", ""):
            grouped.setdefault(row["cure"], []).append(row)
    return grouped


def cures_figure(rows: list[dict], title: str = "Cures"):
    """Per cure, one row across three panels: the test accuracy of each seed (diverged seeds as
    red crosses) with the mean ± sd and how many diverged; the back-propagated signal that
    reaches the first layer, |δ1| / |δL| (first epoch hollow, last epoch filled); and how far w1
    moved from its start. The flow panels show the seeds that completed: a diverged run's last
    steps are its explosion, not the flow the cure leaves. A skipped cure's row says why."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogLocator

    from mnist_clip.viz.series import positive
    from mnist_clip.viz.style import DIVERGED_COLOR, PlainLogFormatter, subplots

    grouped = by_cure(rows)
    skipped = {row["cure"]: row["note"] for row in rows if row.get("status") == "skipped"}
    cures = [cure for cure in BY_NAME if cure in grouped or cure in skipped]
    fig, axes = subplots(1, 4, figsize=(14, 1.9 + 0.45 * max(len(cures), 1)), sharey=True,
                         width_ratios=(1.5, 0.38, 1, 1), layout="constrained")
    accuracy_ax, diverged_ax, signal_ax, moved_ax = axes
    rng = np.random.default_rng(0)  # a fixed jitter keeps seeds of equal value apart
    for index, cure in enumerate(cures):
        y = len(cures) - 1 - index
        if cure in skipped:
            accuracy_ax.text(1, y, textwrap.fill(textwrap.shorten(f"skipped: {skipped[cure]}", 190), 100),
                             va="center", fontsize=7, color="0.45")
            continue
        members = grouped[cure]
        jitter = (rng.random(len(members)) - 0.5) * 0.3 if len(members) > 1 else np.zeros(1)
        diverged = np.array([row["status"] == "diverged" for row in members])
        accuracy = np.array([row["test_accuracy"] for row in members], dtype=float) * 100
        accuracy_ax.scatter(accuracy[~diverged], y + jitter[~diverged], s=22, color="0.35", zorder=3)
        accuracy_ax.scatter(accuracy[diverged], y + jitter[diverged], s=34, marker="x", color=DIVERGED_COLOR, zorder=3)
        values = spread(accuracy)
        if values["n"] > 1:
            accuracy_ax.errorbar(values["mean"], y, xerr=values["std"], fmt="|", markersize=16, color="black",
                                 capsize=4, linewidth=1.5, zorder=4)
        elif values["n"]:
            accuracy_ax.plot(values["mean"], y, "|", markersize=16, color="black", zorder=4)
        steps = sorted({int(row["first_nonfinite_step"]) for row in members if row["status"] == "diverged"})
        where = "" if not steps else f"\nat step {steps[0]}" if len(steps) == 1 else f"\nat steps {steps[0]}-{steps[-1]}"
        diverged_ax.text(0.5, y, f"{int(diverged.sum())} of {len(members)}{where}", va="center", ha="center",
                         fontsize=8, color=DIVERGED_COLOR if diverged.any() else "0.35")
        completed = [row for row, bad in zip(members, diverged) if not bad]
        shift = jitter[~diverged]
        for ax, first, last in ((signal_ax, "median_delta1_deltaL_first_epoch", "median_delta1_deltaL_last_epoch"),
                                (moved_ax, None, "w1_moved")):
            ends = positive([row[last] for row in completed])
            if not np.isfinite(ends).any():
                words = "every seed diverged" if not completed else "0 (no signal left)" if \
                    any(row[last] == 0 for row in completed) else "not recorded"
                ax.text(0.5, y, words, transform=ax.get_yaxis_transform(), ha="center", va="center", fontsize=7,
                        color="0.45")
                continue
            ax.scatter(ends, y + shift, s=22, color="tab:blue", zorder=3)
            if first:
                starts = positive([row[first] for row in completed])
                ax.scatter(starts, y + shift, s=22, facecolors="none", edgecolors="tab:blue", zorder=3)
                if np.isfinite(starts).any():
                    ax.annotate("", (np.nanmedian(ends), y), (np.nanmedian(starts), y),
                                arrowprops={"arrowstyle": "->", "color": "0.55", "lw": 1})
    labels = [f"{cure}\n{changes_text(BY_NAME[cure]) or '(the setup)'}" for cure in cures]
    accuracy_ax.set_yticks(range(len(cures) - 1, -1, -1), labels, fontsize=8)
    accuracy_ax.set_ylim(-0.6, len(cures) - 0.4)
    accuracy_ax.set_xlim(0, 100)
    accuracy_ax.axvline(10, color="0.8", linewidth=0.8, zorder=1)
    accuracy_ax.set_xlabel("test accuracy after the last epoch (%); grey line: chance", fontsize=9)
    accuracy_ax.set_title("Outcome: each seed, and mean ± sd", fontsize=10)
    diverged_ax.set_xlim(0, 1)
    diverged_ax.set_xticks([])
    diverged_ax.set_title("diverged", fontsize=10)
    for ax in (signal_ax, moved_ax):
        ax.set_xscale("log")
        # at most about six labelled powers of ten, written as the run pictures write them (0.001, 0.5, 1e-06)
        ax.xaxis.set_major_locator(LogLocator(numticks=6))
        ax.xaxis.set_major_formatter(PlainLogFormatter())
        ax.xaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
        ax.tick_params(axis="x", which="both", labelsize=8)
        ax.grid(axis="x", alpha=0.3, which="major")
    signal_ax.axvline(1.0, color="0.6", linewidth=0.8)
    signal_ax.set_title("Signal reaching the first layer\n|δ1| / |δL|", fontsize=10)
    signal_ax.set_xlabel("median, first epoch (hollow) -> last (filled)\n(the seeds that completed)", fontsize=9)
    moved_ax.set_title("How far w1 moved from its start\n||w1 - w1_init|| / ||w1_init||", fontsize=10)
    moved_ax.set_xlabel("at the end of training\n(the seeds that completed)", fontsize=9)
    for ax in axes:
        ax.tick_params(axis="y", length=0)
        for y in range(len(cures) - 1):
            ax.axhline(y + 0.5, color="0.92", linewidth=0.8, zorder=0)
    handles = [Line2D([], [], linestyle="none", marker="o", color="0.35", label="a seed that completed"),
               Line2D([], [], linestyle="none", marker="x", color=DIVERGED_COLOR, label="a seed that diverged (NaN/Inf)"),
               Line2D([], [], linestyle="none", marker="|", markersize=12, color="black", label="mean ± sd over the seeds")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(textwrap.fill(title, 150), fontsize=10)
    return fig
