"""`mnist-clip demo`: a plan of twin runs per seed, the config with its clipping and without, from
the same weights and data; trained in turn into one folder, put in place whole, then compared."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mnist_clip.config import Config
from mnist_clip.errors import InputError, name as named
from mnist_clip.plans.runner import check_seeds, load_data
from mnist_clip.runs.folder import DEMO_FILE, RunTarget, write_json
from mnist_clip.runs.reader import Run, read_run

TWINS = ("clipped", "unclipped")


@dataclass(frozen=True)
class Twin:
    """One twin for one seed: a run folder clipped/unclipped or, with several seeds, <twin>-seed<N>."""

    label: str  # clipped or unclipped
    config: Config
    seeded: bool

    @property
    def name(self) -> str:
        return f"{self.label}-seed{self.config.seed}" if self.seeded else self.label

    @property
    def folder_name(self) -> str:
        return self.name


def plan_demo(config: Config, seeds: int = 1) -> list[Twin]:
    """The twins, seed by seed: the config as given, then the same without clipping."""
    if config.clip == "none":
        raise InputError(f"{named('clip')}: demo compares a clipping method with none; give one of global_norm, norm, "
                         "value, average_norm, agc or autoclip", "clip")
    check_seeds(config, seeds, runs_per_seed=len(TWINS))
    variants = dict(zip(TWINS, (config, config.replace(clip="none"))))
    return [Twin(label, variant.replace(seed=seed), seeds > 1)
            for seed in range(config.seed, config.seed + seeds) for label, variant in variants.items()]


@dataclass
class DemoOutcome:
    folder: Path
    runs: list[tuple[Run, int]]  # each run read back from the demo's final folder, with its exit status
    rows: list[dict]  # compare.csv's
    exit_code: int = 0  # the first run's that was not 0
    notes: list[str] = field(default_factory=list)  # the paired report, and a note when clipping never acted


def run_demo(config: Config, reporter, train_run: Callable, out: str | Path = "outputs", name: str | None = None,
             overwrite: bool = False, plots: bool = True, tensorboard: bool = False, data=None, seeds: int = 1,
             recipe: str | None = None) -> DemoOutcome:
    """Train the twins in turn in this process, each with its own report (`train_run` trains one
    run into a folder and reports it: the path behind `train`), into a new folder that replaces an
    earlier one of its name (overwrite) only once all have run; then compare.csv and compare.png."""
    from mnist_clip.console.interrupts import catch_stop_signals
    from mnist_clip.experiment import never_acted_line
    from mnist_clip.plans.compare import compare_runs, paired_rows, paired_text

    twins = plan_demo(config, seeds)
    prefix = f"demo-{recipe}" if recipe else "demo"
    target = RunTarget(Path(out), name, f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}", overwrite, marker=DEMO_FILE)
    target.check()
    reporter.epochs_note(recipe, config.epochs)
    data = data if data is not None else load_data(config, reporter)
    with catch_stop_signals() as stop:
        folder = target.create()
        write_json(folder / DEMO_FILE, {"config": config.to_dict(), "seeds": seeds})
        trained, exit_code = [], 0
        for twin in twins:
            if stop.requested:
                break
            clip = twin.config.clip
            reporter.line(f"--- {twin.folder_name}: {'no clipping' if clip == 'none' else clip}")
            result = train_run(twin.config, reporter, folder, twin.folder_name, False, plots, tensorboard, data)
            trained.append((result.path.name, result.exit_code))
            exit_code = exit_code or result.exit_code
        final = target.commit(folder, keep_old=bool(exit_code))
    runs = [(read_run(final / folder_name), code) for folder_name, code in trained]
    rows, _ = compare_runs([run.path for run, _ in runs], final)
    notes = []
    if seeds > 1:
        by_clip = [[row for row in rows if not row["statistic"] and (row["clip"] == "no clipping") == unclipped]
                   for unclipped in (False, True)]
        if len(by_clip[0]) == len(by_clip[1]):
            notes += paired_text(paired_rows(*by_clip))
    clipped = [run for run, _ in runs if run.config.get("clip") != "none"]
    acted = [run for run in clipped if never_acted_line(run.summary, config)]
    if acted and len(acted) == len(clipped):
        notes.append(never_acted_line(acted[0].summary, config).replace("note: ", "note: the two runs are the same run: "))
    return DemoOutcome(final, runs, rows, exit_code, notes)
