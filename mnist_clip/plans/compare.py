"""Comparing run folders: compare.csv and compare.png written together, and the paired
seed report a demo prints."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnist_clip.runs.folder import write_atomic
from mnist_clip.runs.reader import read_run
from mnist_clip.runs.table import table_csv, table_rows
from mnist_clip.stats import paired_difference, spread
from mnist_clip.viz.compare import compare_figure
from mnist_clip.viz.style import save_figure


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
