"""`mnist-clip cures`: a setup trained beside each cure that applies to it, from the same weights
and data per seed, as a plan of runs (resumed, in parallel, under a lock); then cures.csv,
cures.png and the paired report against the setup itself."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from mnist_clip.config import Config
from mnist_clip.errors import name as named, render
from mnist_clip.plans.cure_table import BY_NAME, apply_cure, changes_text, check_cure_names
from mnist_clip.plans.runner import ResumablePlan, check_jobs, check_seeds, load_data, rows_csv
from mnist_clip.stats import paired_difference, spread

CURES_FILE = "cures.json"
CURES_STOP_NOTICE = ("stopping the cures: no new runs, the runs in flight stop after their epoch "
                     "(Ctrl-C again to quit at once)")
ROW_COLUMNS = ("cure", "seed", "name", "status", "diverged", "first_nonfinite_step", "test_accuracy", "final_loss",
               "clipped_steps", "median_w1_wL_first_epoch", "median_w1_wL_last_epoch",
               "median_delta1_deltaL_first_epoch", "median_delta1_deltaL_last_epoch", "w1_moved", "cause", "changes",
               "note", "statistic")
STATISTIC_COLUMNS = ("diverged", "test_accuracy", "final_loss", "clipped_steps", "median_w1_wL_first_epoch",
                     "median_w1_wL_last_epoch", "median_delta1_deltaL_first_epoch", "median_delta1_deltaL_last_epoch",
                     "w1_moved")


@dataclass(frozen=True)
class CureCell:
    """One cure for one seed: a run folder <cure> or, with several seeds, <cure>-seed<N>."""

    cure: str
    config: Config
    seeded: bool

    @property
    def name(self) -> str:
        return f"{self.cure}-seed{self.config.seed}" if self.seeded else self.cure

    @property
    def folder_name(self) -> str:
        return self.name


def plan_cures(base: Config, names: tuple[str, ...] | list[str] = (), seeds: int = 1
               ) -> tuple[list[CureCell], list[tuple[str, str]]]:
    """The runs (per seed, every cure that applies) and the cures skipped, each with why."""
    cured, skipped = [], []
    for cure_name in check_cure_names(list(names)):
        result = apply_cure(BY_NAME[cure_name], base)
        if isinstance(result, Config):
            cured.append((cure_name, result))
        else:
            skipped.append((cure_name, result))
    check_seeds(base, seeds, runs_per_seed=len(cured))
    cells = [CureCell(cure_name, config.replace(seed=base.seed + offset), seeds > 1)
             for offset in range(seeds) for cure_name, config in cured]
    return cells, skipped


def skipped_lines(skipped: list[tuple[str, str]], language: str = "python") -> list[str]:
    return [f"skipped {cure}: {render(reason, language)}" for cure, reason in skipped]


@dataclass
class CuresOutcome:
    folder: Path
    exit_code: int  # 0, 128 + the signal that stopped it, or 1 if a run failed
    files: list[Path]
    rows: list[dict]  # cures.csv's
    cells: list[CureCell]
    skipped: list[tuple[str, str]]
    title: str = ""
    notes: list[str] = field(default_factory=list)  # the closing report's lines


def run_cures(base: Config, names, out: str | Path, name: str | None = None, seeds: int = 1, jobs: int = 1,
              plots: bool = False, report: Callable[[str], None] = print, dataset=None,
              progress: Callable[[int], Callable[[str], None]] | None = None, recipe: str | None = None,
              language: str = "python") -> CuresOutcome:
    """Train every planned run not finished yet into <out>/<name>/, then write cures.csv and
    cures.png.

    The folder is locked while it runs; resuming it with another setup is refused, with more
    cures or seeds trains the missing runs."""
    cells, skipped = plan_cures(base, names, seeds)
    plan = ResumablePlan("cures", CURES_FILE, "", cells, "runs", base, seeds, [], "the missing runs are trained",
                         "only these are reported", CURES_STOP_NOTICE)
    runs_per_seed = len(cells) // seeds
    record = {"base": base.to_dict(), "seeds": seeds, "cures": [cell.cure for cell in cells[:runs_per_seed]]}
    intro = skipped_lines(skipped, language) + [f"{len(cells)} runs: {runs_per_seed} cures"
                                                + (f" x {seeds} seeds" if seeds > 1 else "") + f", {jobs} job(s)"]

    def outputs(folder: Path) -> tuple[list[dict], list[Path]]:
        rows = cure_rows(cells, skipped, folder)
        return rows, write_cure_outputs(rows, folder, setup_title(base, cells))

    folder, exit_code, (rows, files) = plan.run(out, name, record, intro, jobs, plots, outputs, report=report,
                                                progress=progress, dataset=dataset,
                                                prefix=f"cures-{recipe}" if recipe else "cures")
    return CuresOutcome(folder, exit_code, files, rows, cells, skipped)


def run_cures_reported(config: Config, names: list[str], reporter, out, name, seeds: int, jobs: int, plots: bool,
                       data=None, recipe: str | None = None, language: str = "python") -> CuresOutcome:
    """`cures` with its progress and closing lines (in .notes): the one path behind the command and mc.cures."""
    from mnist_clip.runs.folder import check_out_folder

    check_jobs(jobs)
    check_out_folder(Path(out))
    plan_cures(config, names, seeds)  # every run's config is valid before anything loads
    reporter.epochs_note(recipe, config.epochs)
    data = data if data is not None else load_data(config, reporter)
    outcome = run_cures(config, names, out, name, seeds, jobs, plots, report=reporter.line, dataset=data,
                        progress=lambda total: reporter.sweep_progress(total, "run", "cures"), recipe=recipe,
                        language=language)
    reporter.close_bar()
    outcome.title = setup_title(config, outcome.cells)
    notes = [outcome.title] + cures_text(outcome.rows, outcome.skipped, language, config.net.is_recurrent)
    notes += diagnosis_lines(outcome.cells, outcome.folder) + [f"wrote {path}" for path in outcome.files]
    again = render(f"run the same command with {named('name', outcome.folder.name)}" if language == "cli"
                   else f"call cures again with {named('name', outcome.folder.name)}", language)
    if outcome.exit_code and outcome.exit_code != 1:
        notes.append(f"interrupted; {again} to resume")
    elif outcome.exit_code:
        notes.append(f"some runs failed (see above); {again} to try them again")
    outcome.notes = notes
    return outcome


def cure_rows(cells: list[CureCell], skipped: list[tuple[str, str]], folder: Path) -> list[dict]:
    """cures.csv: a row per cure and seed (cure by cure), a row per skipped cure, and with
    several seeds per cure its mean, std, min and max over the seeds that finished."""
    from mnist_clip.runs.reader import read_run
    from mnist_clip.runs.table import STATISTICS, table_row

    rows = []
    for cell in sorted(cells, key=lambda c: (list(BY_NAME).index(c.cure), c.config.seed)):
        row = {column: "" for column in ROW_COLUMNS}
        row.update(cure=cell.cure, seed=cell.config.seed, name=cell.name, changes=changes_text(BY_NAME[cell.cure]))
        path = folder / cell.folder_name
        if (path / "config.json").is_file():
            run = read_run(path)
            compared = table_row(run)
            summary = run.summary or {}
            diagnosis = summary.get("diagnosis") or {}
            moved = run.epochs.get(f"{run.net.layer_weights[0]}_moved", np.zeros(0))  # w1, or the rnn's wx
            row.update(status=run.status, diverged=compared["diverged"],
                       first_nonfinite_step=summary.get("first_nonfinite_step"),
                       test_accuracy=compared["test_accuracy"], final_loss=compared["final_loss"],
                       clipped_steps=compared["steps_clipped"], w1_moved=float(moved[-1]) if moved.size else math.nan,
                       cause=diagnosis.get("cause", ""),
                       **{key: compared[key] for key in ROW_COLUMNS if key.startswith("median_")})
        else:
            row["status"] = "not run"
        rows.append(row)
    for cure, reason in skipped:
        rows.append({**{column: "" for column in ROW_COLUMNS}, "cure": cure, "status": "skipped",
                     "changes": changes_text(BY_NAME[cure]), "note": render(reason)})
    if not any(cell.seeded for cell in cells):
        return rows
    for cure in dict.fromkeys(cell.cure for cell in cells):
        members = [row for row in rows if row["cure"] == cure and row["status"] != "skipped"]
        finished = [row for row in members if row["status"] in ("completed", "diverged")]
        diverged = sum(row["status"] == "diverged" for row in members)
        for statistic in STATISTICS:
            row = {column: "" for column in ROW_COLUMNS}
            row.update(cure=cure, status=f"{diverged}/{len(members)} diverged", changes=members[0]["changes"],
                       statistic=statistic, name=cure)
            for column in STATISTIC_COLUMNS:
                row[column] = spread([r[column] for r in finished])[statistic]
            rows.append(row)
    return rows


def write_cure_outputs(rows: list[dict], folder: Path, title: str) -> list[Path]:
    from mnist_clip.runs.folder import write_atomic
    from mnist_clip.viz.cures import cures_figure
    from mnist_clip.viz.style import save_figure

    csv_path = folder / "cures.csv"
    write_atomic(csv_path, rows_csv(rows).encode())
    png_path = save_figure(cures_figure(rows, title), folder / "cures.png")
    return [png_path, csv_path]


def setup_title(base: Config, cells: list[CureCell]) -> str:
    from mnist_clip.console.reporting import settings_text

    seeds = sorted({cell.config.seed for cell in cells})
    seed_words = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]}"
    return f"Cures for: {settings_text(base).replace(f'seed {base.seed}', seed_words)}"


def number(value: float, percent: bool = False, signed: bool = False) -> str:
    if value is None or value == "" or not np.isfinite(value):
        return "-"
    if percent:
        return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}%"
    return f"{value:+.2g}" if signed else f"{value:.2g}"


def paired_with_base(rows: list[dict], cure: str, column: str, higher_is_better: bool = True) -> dict:
    """The cure minus base, seed by seed."""
    from mnist_clip.viz.cures import by_cure

    grouped = by_cure(rows)
    base = {row["seed"]: row[column] for row in grouped.get("base", [])}
    pairs = [(row[column], base[row["seed"]]) for row in grouped.get(cure, []) if row["seed"] in base]
    if not pairs:
        return paired_difference([], [], higher_is_better)
    first, second = zip(*pairs)
    return paired_difference(first, second, higher_is_better)


def cures_text(rows: list[dict], skipped: list[tuple[str, str]] = (), language: str = "python",
               recurrent: bool = False, width: int | None = None) -> list[str]:
    """The report in the style of `demo --seeds`: per cure, how many seeds diverged, the test
    accuracy's spread, its paired difference from base with a 95% interval and in how many seeds
    the cure came out ahead, and the gradient flow it leaves (for the recurrent net its own
    names: dh1/dh28, wx); then the skipped cures. The table fits the terminal's width."""
    from mnist_clip.console.reporting import fit_line, table_lines
    from mnist_clip.viz.cures import by_cure

    grouped = by_cure(rows)
    n = max((len(members) for members in grouped.values()), default=0)
    signal, first = ("dh1/dh28", "wx") if recurrent else ("δ1/δL", "w1")
    interval = " [95%]" if n > 1 else ""
    headers = ["cure", "changes", "diverged", "test acc", f"vs base{interval}", "ahead", f"{signal} ep 1->last",
               f"{first} moved"]
    table = []
    for cure, members in grouped.items():
        accuracy = spread([row["test_accuracy"] for row in members])
        diverged = sum(row["status"] == "diverged" for row in members)
        steps = sorted({int(row["first_nonfinite_step"]) for row in members if row["status"] == "diverged"})
        where = "" if not steps else f" (step {steps[0]})" if len(steps) == 1 else f" (steps {steps[0]}-{steps[-1]})"
        shown = number(accuracy["mean"], True)
        if len(members) > 1:
            shown += f" ± {100 * accuracy['std']:.1f} ({number(accuracy['min'], True)}-{number(accuracy['max'], True)})"
        if cure == "base":
            versus, ahead = "", ""
        else:
            difference = paired_with_base(rows, cure, "test_accuracy")
            versus = number(difference["mean"], True, True) + " points"
            if difference["n"] > 1:
                versus += f" [{number(difference['low'], True, True)}, {number(difference['high'], True, True)}]"
            ahead = (f"{difference['ahead']} of {difference['n']}"
                     + (f" ({difference['ties']} tie{'s' if difference['ties'] > 1 else ''})"
                        if difference["ties"] else ""))
        flow = "->".join(number(float(np.median([row[f"median_delta1_deltaL_{which}_epoch"] for row in members])))
                           for which in ("first", "last"))
        moved = number(float(np.median([row["w1_moved"] for row in members])))
        table.append([cure, members[0]["changes"] or "(the setup)", f"{diverged} of {len(members)}{where}", shown, versus,
                      ahead, flow, moved])
    lines = []
    if n > 1:
        lines.append(fit_line(f"over {n} seeds (paired: each cure against base with the same seed; 95% interval: mean "
                              f"difference ± t(0.975, {n - 1}) x sd / sqrt({n}); ratios and {first} moved: medians):",
                              width))
    if table:
        fitted = table_lines(headers, table, width)
        narrower = table_lines(headers[:1] + headers[2:], [row[:1] + row[2:] for row in table], width)
        if len(fitted) > len(table) + 1 and len(narrower) == len(table) + 1:
            # the changes are what keeps the table from fitting: they are in cures.csv and `cures --list`
            fitted = narrower + [fit_line("what each cure sets: `mnist-clip cures --list` (mc.plans.cure_table.CURES), and "
                                          "cures.csv's changes column", width)]
        lines += fitted
    return lines + [fit_line(line, width) for line in skipped_lines(list(skipped), language)]


def diagnosis_lines(cells: list[CureCell], folder: Path) -> list[str]:
    """Each diverged run's diagnosis: its likely cause and what happened."""
    from mnist_clip.runs.diagnosis import describe
    from mnist_clip.validation import read_summary

    lines = []
    for cell in sorted(cells, key=lambda c: (list(BY_NAME).index(c.cure), c.config.seed)):
        try:
            summary = read_summary(folder / cell.folder_name / "summary.json")
        except (OSError, ValueError):
            continue
        described = describe(summary)
        if described:
            cause = summary["diagnosis"].get("cause", "diverged")
            lines.append(f"{cell.name}: {cause}: {described[0]}")
    return lines
