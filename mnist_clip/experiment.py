"""One training run end to end: data, training, the run folder, the summary and the plots."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from mnist_clip.config import Config
from mnist_clip.console.interrupts import (
    STOP_NOTICE,
    begin_drawing,
    catch_stop_signals,
    drawing_stopped,
    end_drawing,
    in_worker_thread,
)
from mnist_clip.console.tf_setup import blas_on_one_thread
from mnist_clip.data import Dataset
from mnist_clip.errors import Interrupted
from mnist_clip.runs.folder import PLOTS_DIR, RunTarget
from mnist_clip.runs.reader import nonfinite_steps
from mnist_clip.runs.schema import epoch_columns_for, is_flag_column, metric_columns_for
from mnist_clip.runs.writer import RunWriter
from mnist_clip.training.methods import compared_with_threshold
from mnist_clip.version import __version__


@dataclass
class Progress:
    """What the caller is told while a run goes on (all optional): the number of steps to
    come before anything is compiled, each epoch's steps and results, the end, and the
    pictures being drawn."""

    on_epoch: Callable = lambda result, trainer: None
    on_steps: Callable = lambda result: None
    on_begin: Callable = lambda total_steps: None
    on_end: Callable = lambda: None
    on_drawing: Callable = lambda names: None  # the pictures about to be drawn, by file name


@dataclass
class Outcome:
    path: Path
    summary: dict
    exit_code: int
    plot_paths: list = field(default_factory=list)
    pictures_stopped: bool = False  # a stop came while the pictures were drawn: some are missing


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
    config: Config,
    columns: tuple[str, ...],
    values: np.ndarray,
    epochs: list,
    status: str,
    first_nonfinite_step: int | None,
    wall_seconds: float,
    train_seconds: float,
    nonfinite_update: dict | None = None,
) -> dict:
    """summary.json from the step values and the epoch results of a run. `nonfinite_update`: what
    the first non-finite step would have written non-finite, when its loss and gradients were finite."""
    def column(name: str) -> np.ndarray:
        return values[:, columns.index(name)]


    steps = len(values)
    quantity, series = compared_with_threshold(config.clip, column, config.param_names, config.net.shapes)
    compared = np.concatenate([np.asarray(v, float) for v in series.values()]) if steps else np.zeros(0)
    compared = compared[np.isfinite(compared)]
    clipped = column("clipped") if steps else np.zeros(0)
    last = epochs[-1] if epochs else None
    per_tensor = {
        name[: -len("_clipped")]: int(column(name).sum()) if steps else 0
        for name in columns if name != "clipped" and is_flag_column(name)
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
        "nonfinite_update": nonfinite_update,
        "wall_seconds": round(wall_seconds, 3),
        "train_seconds": round(train_seconds, 3),
        "ms_per_step": steady_ms_per_step(epochs),
        "ms_per_step_includes_compiling": len(epochs) <= 1,
        "compared_quantity": quantity,
        "largest_compared_value": float(compared.max()) if compared.size else None,
        "clipping_never_acted": config.clip != "none" and steps > 0 and int(clipped.sum()) == 0,
    }


def never_acted_line(summary: dict, config: Config) -> str | None:
    """One line when a run's clipping never acted, with the largest value it was compared with."""
    if not summary.get("clipping_never_acted"):
        return None
    threshold = (f"AutoClip's threshold (percentile {config.clip_percentile:g})" if config.clip == "autoclip"
                 else f"the threshold {config.clip_norm:g}")
    largest = summary["largest_compared_value"]
    return (f"note: {config.clip} clipping never acted in {summary['steps']} steps: the largest "
            f"{summary['compared_quantity']} was {largest:.4g}, never above {threshold}")


def steady_ms_per_step(epochs: list) -> float | None:
    """Training time per step without the first epoch, whose time includes tracing
    and compiling the graph (with a single epoch, that epoch is all there is)."""
    timed = epochs[1:] if len(epochs) > 1 else epochs
    steps = sum(len(e.values) for e in timed)
    return round(1000 * sum(e.train_seconds for e in timed) / steps, 4) if steps else None


def diagnose_run(trainer, values: np.ndarray, step: int, update: dict | None = None) -> dict:
    """The diagnosis of the run's first non-finite step, with the facts of the batches it inspects
    (and `update`, what the step would have written non-finite when its gradients were finite)."""
    from mnist_clip.runs.diagnosis import diagnose, steps_to_inspect

    metrics = dict(zip(trainer.columns, values.T))
    batches = {inspected: trainer.batch_facts(inspected) for inspected in steps_to_inspect(metrics, step)}
    return diagnose(metrics, trainer.config, step, batches, trainer.clean_largest_input, update)


def first_nonfinite(result) -> tuple[int | None, dict | None]:
    """The epoch's first non-finite step: a NaN/Inf loss or gradient, or a step whose loss and
    gradients were finite but which computed a NaN/Inf to write (then also what it was)."""
    bad = nonfinite_steps(result.column("loss"), result.column("global_norm_before"))
    step = result.first_step + int(np.argmax(bad)) if bad.any() else None
    written = result.nonfinite_write
    if written is not None and (step is None or written["step"] < step):
        return written["step"], written
    return step, None


def draw_here(run_dir: Path, announce: Callable[[list[str]], None]) -> list[Path]:
    """Draw the run's pictures in this process, having announced their names."""
    from mnist_clip.viz.registry import figure_names, write_run_plots

    announce(figure_names(run_dir))
    return write_run_plots(run_dir)


def run_experiment(
    config: Config,
    dataset: Dataset,
    run_dir: Path,
    progress: Progress | None = None,
    draw_plots: bool = True,
    tensorboard: bool = False,
    draw: Callable[[Path, Callable[[list[str]], None]], list] | None = None,
) -> Outcome:
    """Train `config` on `dataset`, writing everything into the (new, empty) run_dir; the
    pictures are drawn by `draw(run_dir, progress.on_drawing)` (painter processes) or here."""
    from mnist_clip.training.step import Trainer, train_epochs

    progress = progress or Progress()
    started = time.perf_counter()
    end_drawing()  # an earlier run's pictures are done: a stop now stops this run's training
    writer = RunWriter(run_dir, metric_columns_for(config.to_dict()), epoch_columns_for(config.to_dict()))
    board = None
    try:
        writer.write_config(run_config(config, dataset))
        progress.on_begin(config.epochs * config.steps_per_epoch(len(dataset.y_train)))
        trainer = Trainer(config, dataset)
        writer.write_params("init", trainer.initial_params)
        if config.dirty_fraction > 0:
            writer.write_dirty(trainer.dirty)
        if tensorboard:
            from mnist_clip.tensorboard_log import TensorBoardLog

            board = TensorBoardLog(run_dir, trainer.columns, config.net, config.loss)
        all_values, epochs, nonfinite_step, nonfinite_update, train_seconds = [], [], None, None, 0.0
        with catch_stop_signals(STOP_NOTICE) as stop, blas_on_one_thread():
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
                        *result.moved.values(),
                    )
                )
                if nonfinite_step is None:
                    nonfinite_step, nonfinite_update = first_nonfinite(result)
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
        values = np.concatenate(all_values) if all_values else np.zeros((0, len(trainer.columns)))
        summary = summarize(
            config, trainer.columns, values, epochs, status, nonfinite_step, time.perf_counter() - started, train_seconds,
            nonfinite_update,
        )
        if nonfinite_step is not None:
            summary["diagnosis"] = diagnose_run(trainer, values, nonfinite_step, nonfinite_update)
        writer.write_summary(summary)
    finally:
        if draw_plots:
            begin_drawing()  # a Ctrl-C from here on stops the drawing
        progress.on_end()
        writer.close()
        if board is not None:
            board.close()
    plot_paths = (draw or draw_here)(run_dir, progress.on_drawing) if draw_plots else []
    return Outcome(run_dir, summary, stop.exit_code, plot_paths, drawing_stopped())


def train_into(
    config: Config,
    dataset: Dataset,
    target: RunTarget,
    progress: Progress | None = None,
    draw_plots: bool = True,
    tensorboard: bool = False,
    on_start: Callable[[Path], None] = lambda path: None,
    draw: Callable[[Path, Callable[[list[str]], None]], list] | None = None,
) -> Outcome:
    """Make the run's folder (see RunTarget), train into it, and put it in its place.

    A stop asked for before the folder exists raises Interrupted and writes nothing.
    A run that replaces an earlier one (--overwrite) replaces it only when it ends
    with a summary; an interrupted replacement keeps the earlier run and is moved
    to a name of its own."""
    with catch_stop_signals(STOP_NOTICE) as stop:
        if stop.requested:
            raise Interrupted(stop.exit_code)
        run_dir = target.create()
        on_start(target.final or run_dir)
        outcome = run_experiment(config, dataset, run_dir, progress, draw_plots, tensorboard, draw)
    final = target.commit(run_dir, keep_old=outcome.summary["status"] == "interrupted")
    if final != run_dir:
        outcome.path = final
        outcome.plot_paths = [final / PLOTS_DIR / path.name for path in outcome.plot_paths]
    return outcome
