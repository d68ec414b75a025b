"""The runner of every plan of many runs: the run limit, one folder per run, resumed where it
stopped, trained in this process or in worker processes, under a lock, stopped cleanly."""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import os
import queue
import shutil
import signal
import time
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Protocol, TypeVar

from mnist_clip.config import MAX_SEED, Config
from mnist_clip.errors import InputError, name as named
from mnist_clip.runs.folder import SUMMARY_FILE
from mnist_clip.runs.reader import read_run_files
from mnist_clip.runs.writer import format_value

FINISHED = ("completed", "diverged")
# The most runs one command plans (a sweep's cells times its seeds, a demo's pairs): each run
# trains for seconds and writes a folder of a few MB, so 10,000 runs already take hours and
# gigabytes; a plan beyond that is a typo, refused before anything is built.
MAX_RUNS = 10_000

T = TypeVar("T")


class PlannedRun(Protocol):
    """One run of a plan: what messages call it, its folder's name, its config."""

    @property
    def name(self) -> str: ...

    @property
    def folder_name(self) -> str: ...

    @property
    def config(self) -> Config: ...


def check_plan_size(runs: int, key: str, counted: str) -> None:
    """Refuse a plan of more than MAX_RUNS runs (`key` makes it so), before any folder or
    list of them exists. Every command that plans many runs asks here."""
    if runs > MAX_RUNS:
        raise InputError(f"{named(key)}: {runs:,} runs ({counted}); at most {MAX_RUNS:,} runs are planned at once, since each "
                         "trains for seconds and writes a folder of a few MB: split it into smaller plans", key)


def check_seeds(base: Config, seeds: int, runs_per_seed: int = 1) -> None:
    """--seeds N trains seeds seed, seed + 1, ..., seed + N - 1: all must be valid seeds."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InputError(f"{named('seeds')}: must be a whole number >= 1 (got {seeds!r})", "seeds")
    check_plan_size(seeds * runs_per_seed, "seeds", f"{seeds} seeds" + (f" x {runs_per_seed}" if runs_per_seed > 1 else ""))
    if base.seed + seeds - 1 > MAX_SEED:
        raise InputError(f"{named('seeds')}: {seeds} seeds from seed {base.seed} go past {MAX_SEED}; "
                         f"at most {MAX_SEED - base.seed + 1} fit, or choose a smaller {named('seed')}", "seeds")


def check_jobs(jobs: int) -> None:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InputError(f"{named('jobs')}: must be a whole number >= 1 (got {jobs!r})", "jobs")


def load_data(config: Config, reporter):
    """The config's dataset, loaded and reported in one line."""
    from mnist_clip.data import load_dataset

    dataset = load_dataset(config.dataset, config.data_path)
    reporter.data(dataset)
    return dataset


def run_finished(run_dir: Path) -> bool:
    """A run is done when its summary says completed or diverged; anything else is run again
    (a resumed plan has refused a summary of the wrong shape before: ResumablePlan.check_runs)."""
    from mnist_clip.validation import read_summary

    try:
        return read_summary(run_dir / SUMMARY_FILE)["status"] in FINISHED
    except (OSError, ValueError):
        return False


# One dataset per process, loaded once.
_DATASETS: dict = {}


def preload_dataset(config: Config, dataset) -> None:
    """Hand this process's runs a dataset already loaded."""
    _DATASETS[(config.dataset, config.data_path)] = dataset


def load_datasets(runs: list[PlannedRun], keep: bool) -> None:
    """Load every dataset the runs use that is not loaded yet, so that a bad one fails
    before the plan starts; keep them when the runs train in this process."""
    from mnist_clip.data import load_dataset

    for key in dict.fromkeys((run.config.dataset, run.config.data_path) for run in runs):
        if key not in _DATASETS:
            dataset = load_dataset(*key)
            if keep:
                _DATASETS[key] = dataset


def run_one(config: Config, run_dir: str, plots: bool) -> tuple[str, dict, int]:
    """Train one run into run_dir (in this process or in a worker process)."""
    from mnist_clip.console.tf_setup import import_tensorflow
    from mnist_clip.data import load_dataset

    import_tensorflow()
    from mnist_clip.experiment import run_experiment

    key = (config.dataset, config.data_path)
    if key not in _DATASETS:
        _DATASETS[key] = load_dataset(*key)
    path = Path(run_dir)
    path.mkdir()
    outcome = run_experiment(config, _DATASETS[key], path, draw_plots=plots)
    return run_dir, outcome.summary, outcome.exit_code


def _worker_main(tasks, results, parent_pid: int) -> None:
    """A worker: trains the runs it is handed until told to stop. Ctrl-C at the terminal is
    the parent's to handle; the parent's SIGTERM stops the run in flight after its epoch (a
    second one ends the worker at once)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from mnist_clip.console.interrupts import catch_stop_signals, die_with_parent

    die_with_parent(parent_pid)

    with catch_stop_signals(signals=(signal.SIGTERM,)) as stop:
        while not stop.requested:
            try:
                task = tasks.get(timeout=0.1)
            except queue.Empty:
                continue
            if task is None:
                return
            config, run_dir, plots = task
            try:
                results.put(("done", *run_one(config, run_dir, plots)))
            except BaseException as err:  # reported by the parent, which goes on with the other runs
                from mnist_clip.runs.folder import describe_error

                results.put(("failed", run_dir, f"{type(err).__name__}: {describe_error(err)}", 1))


def run_planned(
    runs: list[PlannedRun],
    folder: Path,
    jobs: int,
    plots: bool,
    report: Callable[[str], None] = print,
    progress: Callable[[int], Callable[[str], None]] | None = None,
    unit: str = "cells",
    notice: str | None = None,
) -> int:
    """Run the runs not finished yet, each into folder/<folder_name>. Returns 0, or 128 + the
    signal that stopped them (runs cut short run again on resuming), or 1 if a run failed."""
    from mnist_clip.console.interrupts import SWEEP_STOP_NOTICE, catch_stop_signals

    todo = []
    for run in runs:
        run_dir = folder / run.folder_name
        if run_finished(run_dir):
            continue
        if run_dir.exists():
            shutil.rmtree(run_dir)  # cut short earlier: start it again
        todo.append((run, run_dir))
    done_before = len(runs) - len(todo)
    if done_before:
        report(f"{done_before} of {len(runs)} {unit} finished earlier; running the other {len(todo)}")
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    run_done = progress(len(todo)) if progress else report
    planned = {str(run_dir): run for run, run_dir in todo}
    counter = itertools.count(1)
    failed = []

    def announce(message: tuple) -> None:
        kind, run_dir, summary, _ = message
        run = planned[run_dir]
        if kind == "failed":
            failed.append(run.name)
            result = f"failed: {summary}"
        elif summary["status"] == "diverged":
            result = f"diverged at step {summary['first_nonfinite_step']}"
        elif summary["test_accuracy"] is None:
            result = summary["status"]
        else:
            result = f"{summary['status']}, test acc {100 * summary['test_accuracy']:.1f}%"
        run_done(f"[{next(counter)}/{len(todo)}] {run.name}: {result}  ({time.perf_counter() - started:.0f} s)")

    with catch_stop_signals(notice or SWEEP_STOP_NOTICE) as stop:
        if jobs <= 1 or len(todo) <= 1:
            for run, run_dir in todo:
                if stop.requested:
                    break
                announce(("done", *run_one(run.config, str(run_dir), plots)))
        else:
            _run_in_workers(todo, min(jobs, len(todo)), plots, announce, stop, report)
        if stop.requested:
            return stop.exit_code
    return 1 if failed else 0


def _run_in_workers(todo, jobs: int, plots: bool, announce: Callable, stop, report: Callable) -> None:
    """Hand the runs to `jobs` worker processes, one run per idle worker, so that a stop
    leaves nothing queued. The workers live for the whole plan (TensorFlow is imported
    and the data loaded once per worker) and die with this process."""
    context = get_context("spawn")
    tasks, results = context.Queue(), context.Queue()
    tasks.cancel_join_thread()
    workers = [context.Process(target=_worker_main, args=(tasks, results, os.getpid()), daemon=True)
               for _ in range(jobs)]
    for worker in workers:
        worker.start()
    pending = list(todo)
    in_flight = 0
    try:
        while (pending or in_flight) and not stop.requested:
            while pending and in_flight < jobs:
                run, run_dir = pending.pop(0)
                tasks.put((run.config, str(run_dir), plots))
                in_flight += 1
            try:
                message = results.get(timeout=0.1)
            except queue.Empty:
                dead = [w for w in workers if not w.is_alive()]
                if dead and not stop.requested:
                    report(f"a sweep worker process ended unexpectedly (exit status {dead[0].exitcode}); stopping")
                    break
                continue
            in_flight -= 1
            announce(message)
        for worker in workers:
            if worker.is_alive():
                if stop.requested:
                    os.kill(worker.pid, signal.SIGTERM)
                else:
                    tasks.put(None)
        while any(worker.is_alive() for worker in workers) or not results.empty():
            try:
                announce(results.get(timeout=0.1))
            except queue.Empty:
                continue
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
            worker.join()


def rows_csv(rows: list[dict]) -> str:
    """A plan's table as CSV: every column any row has, in the order they first appear."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(
            ["" if row.get(c) is None else format_value(c, row[c]) if isinstance(row.get(c), float) else row[c]
             for c in columns]
        )
    return buffer.getvalue()


def changed_base_keys(stored: dict, base: Config, grid: list[tuple[str, list]]) -> list[str]:
    """The base options, other than the grid's own keys, in which a plan folder's
    recorded base differs from `base`."""
    defaults = Config().to_dict()
    current = base.to_dict()
    swept = {key for key, _ in grid} | ({"clip"} if any(key == "clip_norm" for key, _ in grid) else set())
    return [key for key in current if key not in swept and stored.get(key, defaults[key]) != current[key]]


def open_plan_folder(out: Path, name: str | None, prefix: str = "sweep", kind: str = "sweep") -> tuple[Path, bool]:
    """A resumable plan's folder: made new (True), or an existing one to resume (False)."""
    from mnist_clip.runs.folder import RunTarget, check_name

    if name is None:
        return RunTarget(out, None, f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}", False).create(), True
    check_name(name)
    path = out / name
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise InputError(f"{path} exists and is not a {kind} folder; choose another {named('name')}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        path.mkdir()
        return path, True
    except FileExistsError:
        return path, False


@dataclass(frozen=True)
class ResumablePlan:
    """A folder of runs that a second command of the same name resumes (a sweep, cures): its
    kind, its record file, where its runs go (a subfolder, or "" for the folder itself), the
    runs, what they are called in messages, the base config and seeds they were planned from,
    and the keys they vary (a resumed folder may differ from the base only in those)."""

    kind: str
    record: str
    runs_folder: str
    runs: list[PlannedRun]
    unit: str
    base: Config
    seeds: int = 1
    grid: list = ()
    more_seeds: str = "the sweep trains the missing ones"
    fewer_seeds: str = "the sweep maps only these"
    notice: str | None = None  # what a stop says; the sweep's by default

    def run(self, out: str | Path, name: str | None, record: dict, intro: list[str], jobs: int, plots: bool,
            outputs: Callable[[Path], T], report: Callable[[str], None] = print,
            progress: Callable[[int], Callable[[str], None]] | None = None, dataset=None,
            prefix: str | None = None) -> tuple[Path, int, T]:
        """Train every run not finished yet into <out>/<name>/ (new, or resumed), then write the
        plan's tables and pictures with `outputs(folder)`, also after a stop. The folder is
        locked throughout. Returns (folder, exit status, what `outputs` returned)."""
        from mnist_clip.runs.folder import check_out_folder, write_json

        out = Path(out)
        check_out_folder(out)
        if dataset is not None:
            preload_dataset(self.base, dataset)
        load_datasets(self.runs, keep=jobs <= 1)  # a missing data_path file is refused before the folder exists
        with self.open(out, name, report, prefix) as folder:
            write_json(folder / self.record, record)
            for line in intro:
                report(line)
            exit_code = run_planned(self.runs, folder / self.runs_folder, jobs, plots, report=report, progress=progress,
                                    unit=self.unit, notice=self.notice)
            written = outputs(folder)
        return folder, exit_code, written

    @contextlib.contextmanager
    def open(self, out: Path, name: str | None, report: Callable[[str], None], prefix: str | None = None):
        """The plan's folder, new or resumed, locked for the block. A folder of another kind, or
        one recorded with other base options, is refused; a new folder refused or failed before
        any run finished is removed."""
        from mnist_clip.runs.folder import folder_lock

        folder, new = open_plan_folder(out, name, prefix or self.kind, self.kind)
        try:
            with folder_lock(folder, f"{self.kind} {folder} is being run by another mnist-clip process; wait for it or "
                                     f"choose another {named('name')}"):
                if new:
                    report(f"{self.kind}: {folder}")
                else:
                    self.check_resumable(folder, report)
                yield folder
        except BaseException:
            runs = folder / self.runs_folder
            if new and not any(run_finished(runs / run.folder_name) for run in self.runs):
                shutil.rmtree(folder, ignore_errors=True)  # refused or failed before any result: leave nothing
            raise

    def check_runs(self, folder: Path) -> None:
        """Every run the folder holds already has files of the right shape: a file changed by
        hand is refused before anything is written, not found after the missing runs trained."""
        for run in self.runs:
            run_dir = folder / self.runs_folder / run.folder_name
            if (run_dir / "config.json").is_file():
                read_run_files(run_dir)

    def check_resumable(self, folder: Path, report: Callable[[str], None]) -> None:
        from mnist_clip.validation import read_plan_record

        record = folder / self.record
        if not record.is_file():
            raise InputError(f"{folder} exists and is not a {self.kind} folder; choose another {named('name')}")
        try:
            recorded = read_plan_record(record)  # a record of the wrong shape: InputError naming the key
        except InputError:
            raise
        except (OSError, ValueError):
            raise InputError(f"{record} cannot be read; choose another {named('name')}") from None
        stored, stored_seeds = recorded.get("base", {}), recorded.get("seeds", 1)
        if (stored_seeds > 1) != (self.seeds > 1):
            raise InputError(
                f"{self.kind} {folder.name} was run with {stored_seeds} seed(s) and its {self.unit} are named "
                f"{'with' if stored_seeds > 1 else 'without'} their seed; resume it with "
                f"{named('seeds', 2) + ' or more' if stored_seeds > 1 else named('seeds', 1)}, or choose another {named('name')}"
            )
        changed = changed_base_keys(stored, self.base, list(self.grid))
        if changed:
            shown = ", ".join(f"{key} {stored.get(key)!r} -> {getattr(self.base, key)!r}" for key in changed[:4])
            raise InputError(
                f"{self.kind} {folder.name} was run with other options ({shown}); resuming would mix "
                f"incomparable {self.unit}: give the same options, or another {named('name')}"
            )
        self.check_runs(folder)
        report(f"{self.kind}: {folder} (resuming)")
        if self.seeds != stored_seeds:
            report(f"seeds: {self.seeds} asked for, {stored_seeds} before; "
                   f"{self.more_seeds if self.seeds > stored_seeds else self.fewer_seeds}")
