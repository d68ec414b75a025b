"""One training run end to end: data, training, the run folder, the summary and the plots."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from mnist_clip import __version__
from mnist_clip.config import PARAM_NAMES, Config
from mnist_clip.data import Dataset
from mnist_clip.runs import STEP_VALUE_COLUMNS, TENSOR_CLIPPED_COLUMNS, RunWriter, nonfinite_steps

NONFINITE_ADVICE = (
    "exploding gradients; the usual cures are a lower --lr, inputs scaled to 0..1 "
    "(--input-scale 255) or clipping (--clip global_norm --clip-norm 15)"
)


@dataclass
class StopRequest:
    """Set by SIGINT/SIGTERM; training stops at the next chunk boundary."""

    signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + self.signum if self.signum else 0


@contextlib.contextmanager
def catch_stop_signals() -> Iterator[StopRequest]:
    """The first SIGINT or SIGTERM asks for a clean stop; the handlers then revert to the
    system default, so a second one ends the process at once. Files stay whole either
    way: all but metrics.csv are replaced atomically, and readers skip a cut last line."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    watched = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in watched}

    def handler(signum, frame):
        request.signum = signum
        for other in watched:
            signal.signal(other, signal.SIG_DFL)

    for signum in watched:
        signal.signal(signum, handler)
    try:
        yield request
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def in_worker_thread(function: Callable, *args):
    """Run function(*args) in a thread while the main thread waits in short joins.

    Python runs signal handlers only on the main thread, between bytecodes; a
    chunk running in TensorFlow's C++ on the main thread would hold a Ctrl-C
    back until it ends. Waiting here, the handler runs at once, so the second
    Ctrl-C meets the default action and ends the process immediately.
    """
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = function(*args)
        except BaseException as err:  # handed to the main thread below
            outcome["error"] = err

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.05)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@dataclass
class Progress:
    """What the caller is told while a run goes on (all optional)."""

    on_epoch: Callable = lambda result, trainer: None
    on_steps: Callable = lambda result: None


@dataclass
class Outcome:
    path: Path
    summary: dict
    exit_code: int
    plot_paths: list = field(default_factory=list)


def run_config(config: Config, dataset: Dataset) -> dict:
    """config.json: every resolved parameter and the data actually used."""
    import tensorflow as tf

    return {
        **config.to_dict(),
        "trainable": list(config.trainable),
        "dataset_used": dataset.describe(),
        "mnist_clip_version": __version__,
        "tensorflow_version": tf.__version__,
    }


def summarize(
    values: np.ndarray,
    epochs: list,
    status: str,
    first_nonfinite_step: int | None,
    wall_seconds: float,
    train_seconds: float,
) -> dict:
    """summary.json from the step values and the epoch results of a run."""
    def column(name: str) -> np.ndarray:
        return values[:, STEP_VALUE_COLUMNS.index(name)]

    steps = len(values)
    clipped = column("clipped") if steps else np.zeros(0)
    last = epochs[-1] if epochs else None
    per_tensor = {
        name: int(column(col).sum()) if steps else 0 for name, col in zip(PARAM_NAMES, TENSOR_CLIPPED_COLUMNS)
    }
    return {
        "status": status,
        "steps": steps,
        "epochs_completed": sum(1 for e in epochs if e.finished),
        "final_train_loss": float(np.mean(last.column("loss"))) if last is not None and len(last.values) else None,
        "final_step_loss": float(column("loss")[-1]) if steps else None,
        "test_loss": last.test_loss if last is not None else None,
        "test_accuracy": last.test_accuracy if last is not None else None,
        "clipped_steps": int(clipped.sum()),
        "clipped_fraction": float(clipped.mean()) if steps else 0.0,
        "clipped_steps_per_tensor": per_tensor,
        "clipped_fraction_per_tensor": {k: (v / steps if steps else 0.0) for k, v in per_tensor.items()},
        "first_nonfinite_step": first_nonfinite_step,
        "wall_seconds": round(wall_seconds, 3),
        "train_seconds": round(train_seconds, 3),
        "ms_per_step": steady_ms_per_step(epochs),
        "ms_per_step_includes_compiling": len(epochs) <= 1,
    }


def steady_ms_per_step(epochs: list) -> float | None:
    """Training time per step without the first epoch, whose time includes tracing
    and compiling the graph (with a single epoch, that epoch is all there is)."""
    timed = epochs[1:] if len(epochs) > 1 else epochs
    steps = sum(len(e.values) for e in timed)
    return round(1000 * sum(e.train_seconds for e in timed) / steps, 4) if steps else None


def first_nonfinite(values: np.ndarray, first_step: int) -> int | None:
    column = {name: values[:, STEP_VALUE_COLUMNS.index(name)] for name in ("loss", "global_norm_before")}
    bad = nonfinite_steps(column["loss"], column["global_norm_before"])
    return first_step + int(np.argmax(bad)) if bad.any() else None


def run_experiment(
    config: Config,
    dataset: Dataset,
    run_dir: Path,
    progress: Progress | None = None,
    draw_plots: bool = True,
    tensorboard: bool = False,
) -> Outcome:
    """Train `config` on `dataset`, writing everything into the (new, empty) run_dir."""
    from mnist_clip.train import Trainer, train_epochs

    progress = progress or Progress()
    started = time.perf_counter()
    writer = RunWriter(run_dir)
    board = None
    try:
        writer.write_config(run_config(config, dataset))
        trainer = Trainer(config, dataset)
        writer.write_params("init", trainer.initial_params)
        if tensorboard:
            from mnist_clip.tensorboard_log import TensorBoardLog

            board = TensorBoardLog(run_dir)
        all_values, epochs, nonfinite_step, train_seconds = [], [], None, 0.0
        with catch_stop_signals() as stop:
            for result in train_epochs(trainer, should_stop=lambda: stop.requested, call=in_worker_thread):
                writer.append_steps(result.first_step, result.epoch, result.values)
                all_values.append(result.values)
                epochs.append(result)
                train_seconds += result.train_seconds
                writer.append_epoch(
                    (
                        result.epoch,
                        len(result.values),
                        float(np.mean(result.column("loss"))) if len(result.values) else float("nan"),
                        result.test_loss,
                        result.test_accuracy,
                        int(result.column("clipped").sum()),
                        round(result.seconds, 4),
                    )
                )
                if nonfinite_step is None:
                    nonfinite_step = first_nonfinite(result.values, result.first_step)
                if board is not None:
                    board.write_epoch(result, trainer)
                progress.on_steps(result)
                progress.on_epoch(result, trainer)
            interrupted = stop.requested
        if interrupted:
            status = "interrupted"
        elif nonfinite_step is not None:
            status = "diverged"
        else:
            status = "completed"
        writer.write_params("final", trainer.params_arrays())
        values = np.concatenate(all_values) if all_values else np.zeros((0, 0))
        summary = summarize(
            values, epochs, status, nonfinite_step, time.perf_counter() - started, train_seconds
        )
        writer.write_summary(summary)
    finally:
        writer.close()
        if board is not None:
            board.close()
    plot_paths = []
    if draw_plots:
        from mnist_clip.plots import write_run_plots

        plot_paths = write_run_plots(run_dir)
    return Outcome(run_dir, summary, stop.exit_code, plot_paths)
