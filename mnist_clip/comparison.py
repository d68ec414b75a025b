"""Several runs -> one table (compare.csv) and one figure of small multiples (compare.png)."""

from __future__ import annotations

import csv
import io
import re
import warnings
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mnist_clip.plots import (
    DIVERGED_COLOR,
    architecture_label,
    colormap,
    epoch_axis,
    last_complete_epoch,
    layer_profile,
    log_y,
    norm_ratio,
    positive,
    run_smoothing,
    save_figure,
    signal_ratio,
    step_axis,
    step_axis_words,
    steps_per_epoch,
    subplots,
)
from mnist_clip.config import Config
from mnist_clip.runs import Run, clip_label, optimizer_label, format_value, read_run, write_atomic
from mnist_clip.stats import paired_difference, spread

TABLE_COLUMNS = (
    "name",
    "clip",
    "architecture",
    "status",
    "steps",
    "steps_clipped",
    "final_loss",
    "test_accuracy",
    "median_w1_wL_first_epoch",
    "median_w1_wL_last_epoch",
    "median_delta1_deltaL_first_epoch",
    "median_delta1_deltaL_last_epoch",
    "diverged",
    "seed",
    "group",
    "statistic",
)
# The columns a group's statistics rows summarise (diverged: 1 or 0 per run).
STATISTIC_COLUMNS = ("test_accuracy", "final_loss", "steps_clipped", "diverged", "median_w1_wL_first_epoch",
                     "median_w1_wL_last_epoch", "median_delta1_deltaL_first_epoch", "median_delta1_deltaL_last_epoch")
STATISTICS = ("mean", "std", "min", "max")

# Settings a reader tells runs apart by, in the order labels show them.
SETTING_KEYS = ("clip", "optimizer", "loss", "lr", "input_scale", "hidden", "activation", "init", "norm", "residual", "trainable", "epochs", "batch_size",
                "shuffle", "on_nonfinite", "dataset", "seed")


def setting_text(config: dict, key: str) -> str:
    if key == "clip":
        return clip_label(config)
    if key == "hidden":
        return architecture_label(config).split(" ")[0]
    if key == "optimizer":
        return optimizer_label(config)
    if key == "trainable":
        return "trains " + ",".join(config.get("trainable", []))
    if key == "dataset":
        return config.get("dataset_used", {}).get("name", config.get("dataset", "?"))
    value = config.get(key, getattr(Config, key, None))  # a key older runs lack has its default
    return f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}"


def differing_keys(configs: list[dict], keys=SETTING_KEYS) -> list[str]:
    """The settings whose values differ between these runs (the clip key covers its threshold)."""
    return [key for key in keys if len({setting_text(config, key) for config in configs}) > 1]


TIMESTAMP = re.compile(r"-\d{8}-\d{6}$")  # what default_run_name appends


def shown_names(runs: list[Run]) -> dict[int, str]:
    """{id(run): name as the figure shows it}: without the folders' timestamps when the names
    stay distinct without them (deep_sigmoid, not deep_sigmoid-20260101-120000)."""
    short = [TIMESTAMP.sub("", run.name) or run.name for run in runs]
    names = short if len(set(short)) == len(runs) else [run.name for run in runs]
    return {id(run): name for run, name in zip(runs, names)}


def run_labels(runs: list[Run]) -> list[str]:
    """Each run's name with every setting that differs between the runs shown."""
    keys = differing_keys([run.config for run in runs])
    names = shown_names(runs)
    return [f"{names[id(run)]} ({', '.join([setting_text(run.config, k) for k in keys] or [run.clip_label])}, "
            f"{run.status})" for run in runs]


def group_runs(runs: list[Run]) -> list[tuple[str, list[Run]]]:
    """Runs with the same settings but the seed, in order of first appearance, each group
    labelled with the settings that tell the groups apart."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        key = "|".join(setting_text(run.config, k) for k in SETTING_KEYS if k != "seed")
        groups.setdefault(key, []).append(run)
    members = []
    for group in groups.values():
        seeds = [run.config.get("seed") for run in group]
        # a group of seeds needs distinct seeds; the same run repeated stays a run of its own
        members += [group] if len(set(seeds)) == len(seeds) else [[run] for run in group]
    keys = differing_keys([group[0].config for group in members], [k for k in SETTING_KEYS if k != "seed"])
    labels = [", ".join([setting_text(group[0].config, k) for k in keys] or [group[0].clip_label]) for group in members]
    return list(zip(labels, members))


def group_rows(rows: list[dict], runs: list[Run]) -> list[dict]:
    """Per group of two or more runs: its mean, std, min and max over the runs (a row each)."""
    by_name = {row["name"]: row for row in rows}
    extra = []
    for label, members in group_runs(runs):
        if len(members) < 2:
            continue
        member_rows = [by_name[run.name] for run in members]
        diverged = sum(row["diverged"] for row in member_rows)
        for statistic in STATISTICS:
            row = {column: "" for column in TABLE_COLUMNS}
            row.update(name=label, clip=member_rows[0]["clip"], architecture=member_rows[0]["architecture"],
                       status=f"{diverged}/{len(members)} diverged", steps=len(members), group=label,
                       statistic=statistic, seed="")
            for column in STATISTIC_COLUMNS:
                row[column] = spread([r[column] for r in member_rows])[statistic]
            extra.append(row)
    return extra


def final_loss(run: Run) -> float:
    """Mean training loss over the last epoch present in metrics.csv."""
    if not run.steps:
        return float("nan")
    last = run.metrics["epoch"] == run.metrics["epoch"][-1]
    return float(np.mean(run.metrics["loss"][last]))


def median_ratio_in_epoch(run: Run, which: str, signal: bool = False) -> float:
    """Median over the first or last epoch's steps of |g_w1| / |g_wL| (before clipping, wL the
    output layer) or, with `signal`, of the back-propagated signal's |dL/dz1| / |dL/dzL|."""
    if not run.steps:
        return float("nan")
    epoch = run.metrics["epoch"][0] if which == "first" else run.metrics["epoch"][-1]
    ratio = (signal_ratio(run) if signal else norm_ratio(run))[run.metrics["epoch"] == epoch]
    ratio = ratio[np.isfinite(ratio)]
    return float(np.median(ratio)) if ratio.size else float("nan")


def table_row(run: Run) -> dict:
    accuracy = run.epochs["test_accuracy"]
    return {
        "name": run.name,
        "clip": run.clip_label,
        "architecture": architecture_label(run.config),
        "status": run.status,
        "steps": run.steps,
        "steps_clipped": int(run.metrics["clipped"].sum()),
        "final_loss": final_loss(run),
        "test_accuracy": float(accuracy[-1]) if accuracy.size else float("nan"),
        "median_w1_wL_first_epoch": median_ratio_in_epoch(run, "first"),
        "median_w1_wL_last_epoch": median_ratio_in_epoch(run, "last"),
        "median_delta1_deltaL_first_epoch": median_ratio_in_epoch(run, "first", signal=True),
        "median_delta1_deltaL_last_epoch": median_ratio_in_epoch(run, "last", signal=True),
        "diverged": int(run.nonfinite_step is not None),
        "seed": run.config.get("seed", ""),
        "group": "",
        "statistic": "",
    }


def table_text(rows: list[dict], width: int | None = None) -> str:
    """The table as aligned text for the terminal, within its width: a column every run shares
    is said once above the table, the first and last epoch's ratios share a column, and a table
    still too wide shows each run as a few wrapped lines. A recurrent net's columns use its own
    names (wx/wo, dh1/dh28)."""
    from mnist_clip.reporting import fit_line, table_lines

    def cell(column: str, value) -> str:
        if column == "test_accuracy":
            return f"{100 * value:.1f}%" if np.isfinite(value) else "-"
        if isinstance(value, float):
            return f"{value:.3g}" if np.isfinite(value) else str(value)
        return str(value)

    shown = [row for row in rows if not row.get("statistic")]
    recurrent = [str(row["architecture"]).startswith("rnn ") for row in shown]
    weights, signal = (("wx/wo", "dh1/dh28") if all(recurrent) else ("w1/wL", "δ1/δL") if not any(recurrent)
                       else ("w1/wL or wx/wo", "δ1/δL or dh1/dh28"))
    columns = [("run", ("name",)), ("clip", ("clip",)), ("net", ("architecture",)), ("status", ("status",)),
               ("steps", ("steps",)), ("clipped", ("steps_clipped",)), ("final loss", ("final_loss",)),
               ("test acc", ("test_accuracy",)),
               (f"{weights} ep 1 -> last", ("median_w1_wL_first_epoch", "median_w1_wL_last_epoch")),
               (f"{signal} ep 1 -> last", ("median_delta1_deltaL_first_epoch", "median_delta1_deltaL_last_epoch"))]
    cells = [[" -> ".join(cell(key, row[key]) for key in keys) for _, keys in columns] for row in shown]
    headers = [header for header, _ in columns]
    common = [i for i in range(1, len(headers)) if len(cells) > 1 and len({r[i] for r in cells}) == 1
              and headers[i] in ("clip", "net", "status", "steps")]
    lines = []
    if common:
        lines.append(fit_line("every run: " + ", ".join(f"{headers[i]} {cells[0][i]}" for i in common), width))
    keep = [i for i in range(len(headers)) if i not in common]
    lines += table_lines([headers[i] for i in keep], [[r[i] for i in keep] for r in cells], width)
    return "\n".join(lines)


def table_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TABLE_COLUMNS)
    for row in rows:
        writer.writerow([format_value(c, row[c]) if isinstance(row[c], float) else row[c] for c in TABLE_COLUMNS])
    return buffer.getvalue()


def _smoothed(run: Run, values: np.ndarray) -> np.ndarray:
    return run_smoothing(run).geometric(values)


def run_colors(count: int) -> list:
    """Distinct colours for up to 20 runs (tab10, then tab20)."""
    palette = colormap("tab10" if count <= 10 else "tab20").colors
    return [palette[i % len(palette)] for i in range(count)]


def limit_to_stable_runs(ax, values_by_run: list[tuple[Run, np.ndarray]], names: dict | None = None) -> None:
    """Fit the y axis (log) to the runs that did not diverge, so that one run that climbs
    to 1e30 before its NaN does not flatten the others; say so when a run leaves the scale."""
    stable = [positive(v) for run, v in values_by_run if run.nonfinite_step is None]
    stable = np.concatenate([v[np.isfinite(v)] for v in stable]) if stable else np.zeros(0)
    if not stable.size:
        return
    low, high = stable.min(), stable.max()
    top = high * 3
    beyond = []
    for run, values in values_by_run:
        finite = positive(values)
        finite = finite[np.isfinite(finite)]
        low = min(low, finite.min()) if finite.size else low
        if finite.size and finite.max() > top:
            beyond.append(f"{(names or {}).get(id(run), run.name)} reaches {finite.max():.3g}")
    ax.set_ylim(low / 1.5, top)
    if beyond:
        ax.text(0.99, 0.03, "off the scale: " + "; ".join(beyond), transform=ax.transAxes, ha="right", va="bottom",
                fontsize=7, color=DIVERGED_COLOR)


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


def profile_notes(runs: list[Run], names: dict) -> list[str]:
    """What the profile panels draw of each diverged run: its last epoch before the NaN/Inf,
    or nothing if it had none (a few exploding steps are not the end of training)."""
    notes = []
    for run in runs:
        if run.nonfinite_step is None:
            continue
        epoch = last_complete_epoch(run)
        notes.append(f"{names[id(run)]}: NaN/Inf at step {run.nonfinite_step}; "
                     + (f"its epoch {epoch + 1} is drawn" if epoch is not None else "no complete epoch, not drawn"))
    return notes[:4] + ([f"... and {len(notes) - 4} more diverged runs"] if len(notes) > 4 else [])


def compare_figure(runs: list[Run]) -> Figure:
    """Runs overlaid on shared step axes (the one step scale of every picture): loss, global norm with the
    thresholds of the global-norm methods, first/last gradient ratio, signal ratio, test accuracy
    and inactive units; and each run's profile per layer over its last complete epoch. Thin lines are the raw
    values, thick ones their moving geometric mean; a run that hit NaN/Inf ends at a red dotted line.
    Runs that differ only in their seed are drawn as a group: the median and a min-max band."""
    fig, axes = subplots(4, 2, figsize=(12, 13))
    (loss_ax, acc_ax), (norm_ax, ratio_ax), (signal_ax, dead_ax), (profile_ax, depth_ax) = axes
    names = shown_names(runs)
    groups = group_runs(runs)
    grouped = any(len(members) > 1 for _, members in groups)
    colors = run_colors(len(groups) if grouped else len(runs))
    thresholds: dict[float, list[str]] = {}
    plotted: dict = {loss_ax: [], norm_ax: [], ratio_ax: [], signal_ax: []}

    def step_series(run: Run):
        return ((loss_ax, run.metrics["loss"]), (norm_ax, run.metrics["global_norm_before"]),
                (ratio_ax, norm_ratio(run)), (signal_ax, signal_ratio(run)))

    if grouped:
        for (label, members), color in zip(groups, colors):
            style = "-"
            diverged = sum(run.nonfinite_step is not None for run in members)
            label = f"{label}: median of {len(members)} seeds, band min-max ({diverged}/{len(members)} diverged)"
            steps = np.arange(max(run.steps for run in members))
            for index, (ax, _) in enumerate(step_series(members[0])):
                table = stacked([_smoothed(run, step_series(run)[index][1]) for run in members])
                band(ax, steps[: table.shape[1]], table, color, label, style)
                for run in members:
                    plotted[ax].append((run, step_series(run)[index][1]))
            activity = [run_smoothing(run).mean(run.metrics[run.activity_columns[-1]]) * 100
                        for run in members if run.activity_columns]
            if activity:
                table = stacked(activity)
                band(dead_ax, steps[: table.shape[1]], table, color, label, style, log=False)
            accuracy = stacked([run.epochs["test_accuracy"] * 100 for run in members])
            band(acc_ax, np.arange(1, accuracy.shape[1] + 1), accuracy, color, label, log=False, marker="o")
            profiled = [(run, last_complete_epoch(run)) for run in members if last_complete_epoch(run) is not None]
            if profiled:
                for ax, prefix in ((profile_ax, "w"), (depth_ax, "delta")):
                    table = stacked([layer_profile(run, epoch, prefix) for run, epoch in profiled])
                    band(ax, np.arange(1, table.shape[1] + 1), table, color, label, marker="o")
            for run in members:
                if run.config.get("clip") == "global_norm":
                    thresholds.setdefault(float(run.config.get("clip_norm")), []).append(names[id(run)])
    labels = run_labels(runs)
    for i, run in enumerate(runs if not grouped else []):
        color = colors[i]
        style = ("-", "--")[i % 2]  # runs that coincide stay visible
        label = labels[i]
        steps = run.metrics["step"]
        for ax, values in step_series(run):
            ax.plot(steps, positive(values), color=color, linewidth=0.6, alpha=0.35)
            ax.plot(steps, _smoothed(run, values), color=color, linewidth=1.6, linestyle=style, label=label)
            plotted[ax].append((run, values))
        if run.activity_columns:  # the last hidden layer, next to the output
            dead_ax.plot(steps, 100 * run_smoothing(run).mean(run.metrics[run.activity_columns[-1]]),
                         color=color, linewidth=1.6, linestyle=style, label=label)
        epochs = run.epochs["epoch"] + 1
        acc_ax.plot(epochs, 100 * run.epochs["test_accuracy"], marker="o", linestyle=style, color=color, markersize=3,
                    label=label)
        last_epoch = last_complete_epoch(run)
        if last_epoch is not None:
            layers = np.arange(1, run.n_layers + 1)
            signal = layer_profile(run, last_epoch, "delta")
            profile_ax.plot(layers, positive(layer_profile(run, last_epoch, "w")), "o", linestyle=style, color=color,
                            markersize=4, label=label)
            depth_ax.plot(np.arange(1, len(signal) + 1), positive(signal), "s", linestyle=style,
                          color=color, markersize=3, label=label)
        clip = run.config.get("clip")
        if clip == "global_norm":
            thresholds.setdefault(float(run.config.get("clip_norm")), []).append(names[id(run)])
        elif clip == "autoclip":
            norm_ax.plot(steps, positive(run.metrics["clip_threshold"]), color=color, linestyle=":", linewidth=1.2,
                         label=f"AutoClip threshold of {names[id(run)]}")
    for run in runs:
        step = run.nonfinite_step
        if step is not None:
            for ax in (loss_ax, norm_ax, ratio_ax, signal_ax):
                ax.axvline(step, color=DIVERGED_COLOR, linestyle=":", linewidth=1)
    diverged_steps = sorted({run.nonfinite_step for run in runs if run.nonfinite_step is not None})
    if diverged_steps:
        shown = ", ".join(str(step) for step in diverged_steps[:6]) + (" ..." if len(diverged_steps) > 6 else "")
        loss_ax.plot([], [], color=DIVERGED_COLOR, linestyle=":", label=f"NaN/Inf (step {shown})")
    for threshold, clipped_at in sorted(thresholds.items()):
        named = ", ".join(clipped_at) if len(clipped_at) <= 3 else f"{len(clipped_at)} runs"
        norm_ax.axhline(threshold, color="0.4", linewidth=0.8, linestyle="--", label=f"threshold {threshold:g} ({named})")
    threshold_handles = [(h, l) for h, l in zip(*norm_ax.get_legend_handles_labels()) if "hreshold" in l]
    if threshold_handles:
        norm_ax.legend(*zip(*threshold_handles), fontsize=7, loc="upper right")
    titles = {
        loss_ax: ("training loss (log)", "MSE loss", "step"),
        norm_ax: ("global gradient norm before clipping, with the global-norm thresholds", "global norm", "step"),
        ratio_ax: ("|g_w1| / |g_wL| before clipping (wL: the output layer)", "ratio", "step"),
        signal_ax: ("back-propagated signal |dL/dz1| / |dL/dzL|", "ratio", "step"),
        profile_ax: ("weight-gradient norm per layer, median over the last complete epoch", "|g_w| (log)", "layer"),
        depth_ax: ("back-propagated signal |δ| per layer, median over the last complete epoch", "|δ| (log)", "layer"),
    }
    recurrent = [run.net.is_recurrent for run in runs]
    if all(recurrent):
        titles.update({
            ratio_ax: ("|g_wx| / |g_wo| before clipping (input over output weight)", "ratio", "step"),
            signal_ax: ("signal through time |dL/dh1| / |dL/dh28|", "ratio", "step"),
            profile_ax: ("weight-gradient norm per layer (wx, wo), median over the last complete epoch",
                         "|g_w| (log)", "layer"),
            depth_ax: ("signal |dL/dh_t| per time step, median over the last complete epoch", "|dL/dh_t| (log)",
                       "time step t"),
        })
    elif any(recurrent):
        titles.update({
            ratio_ax: ("first layer's weight gradient over the last's (w1 / wL; the rnn's wx / wo)", "ratio", "step"),
            signal_ax: ("signal first over last (dz1 / dzL; the rnn's dh1 / dh28)", "ratio", "step"),
            depth_ax: ("signal per layer (the rnn's: per time step), median over the last complete epoch",
                       "signal (log)", "layer, or time step"),
        })
    for ax, (title, ylabel, xlabel) in titles.items():
        log_y(ax)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.set_xlabel(xlabel)
    for ax in (ratio_ax, signal_ax):
        ax.axhline(1.0, color="0.6", linewidth=0.8)
    with_steps = [run for run in runs if run.steps]
    n_steps = max((run.steps for run in with_steps), default=1)
    per_epoch = steps_per_epoch(with_steps[0]) if with_steps else 1
    for ax in (loss_ax, norm_ax, ratio_ax, signal_ax, dead_ax):
        step_axis(ax, n_steps, per_epoch, label=False)
        ax.set_xlabel(step_axis_words(per_epoch), fontsize=8)
    for ax, values_by_run in plotted.items():
        limit_to_stable_runs(ax, values_by_run, names)
    acc_ax.set_title("test accuracy after each epoch", fontsize=10)
    epoch_axis(acc_ax, max((len(run.epochs["epoch"]) for run in runs), default=1))
    acc_ax.set_ylabel("test accuracy (%)")
    acc_ax.set_ylim(0, 100)
    dead_ax.set_title("units of the last hidden layer dead (ReLU) or saturated, moving average", fontsize=10)
    dead_ax.set_ylabel("inactive units (%)")
    dead_ax.set_ylim(bottom=0)
    for ax in (profile_ax, depth_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        notes = profile_notes(runs, names)
        if notes:
            ax.text(0.02, 0.97, "\n".join(notes), transform=ax.transAxes, ha="left", va="top", fontsize=7,
                    color=DIVERGED_COLOR)
    handles, labels = loss_ax.get_legend_handles_labels()
    legend_rows = -(-len(labels) // 2)
    fig.legend(handles, labels, loc="lower center", ncol=2 if len(labels) > 1 else 1, fontsize=9)
    if grouped:
        title = "Runs compared by group: lines are the median over seeds of each run's moving geometric mean; bands min-max"
    else:
        title = "Runs compared: thick lines are moving geometric means, thin lines the raw values per step"
    fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0.01 + 0.017 * legend_rows, 1, 1))
    return fig


def table_rows(runs: list[Run]) -> list[dict]:
    """compare.csv: a row per run, then the statistics rows of each group of seeds."""
    rows = [table_row(run) for run in runs]
    return rows + group_rows(rows, runs)


def compare_runs(run_dirs: list, out_dir: Path) -> tuple[list[dict], list[Path]]:
    """Read the runs, write compare.csv and compare.png into out_dir; return the table rows and files."""
    runs = [read_run(path) for path in run_dirs]
    rows = table_rows(runs)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "compare.csv"
    write_atomic(csv_path, table_csv(rows).encode())
    png_path = save_figure(compare_figure(runs), out_dir / "compare.png")
    return rows, [png_path, csv_path]


# The seed report of a demo: (column, words, higher is better, as a percentage)
PAIRED_METRICS = (
    ("test_accuracy", "test accuracy", True, True),
    ("final_loss", "final training loss", False, False),
    ("steps_clipped", "steps clipped", None, False),
    ("diverged", "diverged (1 = yes)", False, False),
    ("median_w1_wL_first_epoch", "median |g_w1| / |g_wL|, first epoch", None, False),
    ("median_w1_wL_last_epoch", "median |g_w1| / |g_wL|, last epoch", None, False),
)


def paired_rows(clipped: list[dict], unclipped: list[dict]) -> list[dict]:
    """Per metric: each twin's spread over the seeds, and the paired difference clipped -
    unclipped (same seed) with its 95% interval and how often clipping came out ahead."""
    rows = []
    for column, words, higher_better, percent in PAIRED_METRICS:
        first, second = [row[column] for row in clipped], [row[column] for row in unclipped]
        difference = paired_difference(first, second, higher_is_better=bool(higher_better))
        if clipped and all(str(row.get("architecture", "")).startswith("rnn ") for row in clipped):
            words = words.replace("g_w1", "g_wx").replace("g_wL", "g_wo")  # the recurrent net's own names
        rows.append({"metric": column, "words": words, "percent": percent, "clipped": spread(first),
                     "unclipped": spread(second), "difference": difference,
                     "ahead": difference["ahead"] if higher_better is not None else None})
    return rows


def ahead_words(ahead: int, ties: int, n: int) -> str:
    """How often clipping came out ahead; a tie is said as a tie, not counted as a loss."""
    if not ties:
        return f"clipping ahead in {ahead} of {n} seeds"
    if ties == n:
        return f"the same with and without clipping in all {n} seeds"
    return f"clipping ahead in {ahead}, behind in {n - ahead - ties} and tied in {ties} of {n} seeds"


def paired_text(rows: list[dict]) -> list[str]:
    """The seed report as lines for the terminal."""
    def number(value: float, percent: bool, difference: bool = False) -> str:
        if not np.isfinite(value):
            return "-"
        if percent:
            return f"{100 * value:+.1f} points" if difference else f"{100 * value:.1f}%"
        return f"{value:+.4g}" if difference else f"{value:.4g}"

    n = rows[0]["difference"]["n"] if rows else 0
    lines = [f"over {n} seeds (paired: the same seed with and without clipping; 95% interval: mean difference "
             f"± t(0.975, {n - 1}) x sd / sqrt({n})):"]
    for row in rows:
        p = row["percent"]
        clipped, unclipped, diff = row["clipped"], row["unclipped"], row["difference"]
        side = lambda s: (f"{number(s['mean'], p)} ± {number(s['std'], p)} "  # noqa: E731
                          f"({number(s['min'], p)}-{number(s['max'], p)})")
        line = (f"  {row['words']}: clipped {side(clipped)}, unclipped {side(unclipped)}; difference "
                f"{number(diff['mean'], p, True)} [{number(diff['low'], p, True)}, {number(diff['high'], p, True)}]")
        if row["ahead"] is not None:
            line += "; " + ahead_words(row["ahead"], diff["ties"], diff["n"])
        lines.append(line)
    return lines
