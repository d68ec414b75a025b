"""A table of runs (compare.csv): a row per run read from its folder, the settings that
tell runs apart, and the statistics rows of each group of seeds."""

from __future__ import annotations

import csv
import io
import re

import numpy as np

from mnist_clip.config import Config
from mnist_clip.nn import Net
from mnist_clip.runs.labels import optimizer_label
from mnist_clip.runs.reader import Run
from mnist_clip.runs.writer import format_value
from mnist_clip.stats import spread
from mnist_clip.training.methods import clip_label
from mnist_clip.viz.labels import architecture_label
from mnist_clip.viz.series import norm_ratio, signal_ratio

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
SETTING_KEYS = ("clip", "optimizer", "loss", "lr", "input_scale", "hidden", "activation", "recurrent_gain", "init", "norm", "residual", "trainable", "epochs", "batch_size",
                "shuffle", "on_nonfinite", "dataset", "seed")


def setting_text(config: dict, key: str) -> str:
    if key == "clip":
        return clip_label(config)
    if key == "hidden":
        return architecture_label(config).split(" ")[0]
    if key == "optimizer":
        return optimizer_label(config)
    if key == "trainable":
        trained = config.get("trainable", [])
        return "trains all" if set(trained) >= set(Net.of(config).names) else "trains " + ",".join(trained)
    if key == "recurrent_gain":
        return f"gain {config.get(key, 1.0):g}" if config.get("model", "mlp") != "mlp" else "no recurrence"
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
    from mnist_clip.console.reporting import fit_line, table_lines

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


def table_rows(runs: list[Run]) -> list[dict]:
    """compare.csv: a row per run, then the statistics rows of each group of seeds."""
    rows = [table_row(run) for run in runs]
    return rows + group_rows(rows, runs)
