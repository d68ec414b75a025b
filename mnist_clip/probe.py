"""GradientProbe: per-tensor gradient norms before and after clipping, every step, for any Keras 3
model, inside `model.fit` or a hand-written loop, into a run folder that plot, compare and
load_run read.

    probe = mc.GradientProbe(out="outputs", name="my-cnn")
    model.compile(optimizer=probe.wrap(keras.optimizers.Adam(1e-3, global_clipnorm=1.0)), loss=...)
    model.fit(x, y, epochs=3, callbacks=[probe])
    probe.run.figures()
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Iterator

import keras
import numpy as np

from mnist_clip.config import Config
from mnist_clip.console.tf_setup import blas_on_one_thread
from mnist_clip.errors import InputError, name as named
from mnist_clip.probe_schema import (
    SOURCE,
    architecture_label,
    diagnose_probe,
    probe_epoch_columns,
    probe_metric_columns,
    role_of_path,
    weight_paths,
)
from mnist_clip.probe_step import (
    AUTOCLIP_HISTORY,
    DEFAULT_STEPS_PER_EPOCH,
    ProbedOptimizer,
    Recorder,
    check_wrappable,
    keras_clipping,
)
from mnist_clip.runs.folder import PLOTS_DIR, RunTarget
from mnist_clip.runs.reader import read_run
from mnist_clip.runs.schema import is_flag_column
from mnist_clip.runs.writer import RunWriter
from mnist_clip.training.methods import compared_with_threshold
from mnist_clip.version import __version__

ACCURACY_LOGS = ("val_accuracy", "val_acc", "val_categorical_accuracy", "val_sparse_categorical_accuracy")


class GradientProbe(keras.callbacks.Callback):
    """Watches a Keras model's training: wrap its optimizer with `probe.wrap(...)` and pass the
    probe to `fit(callbacks=[probe])`, or use `with probe.watch(model):` and `probe.end_epoch()`
    around a loop of your own. `probe.run` is then the run folder read back (an mc.RunResult).

    clip: None to log the wrapped optimizer's own global_clipnorm, clipnorm or clipvalue (as
    global_norm, norm, value), or one of mnist-clip's methods (global_norm, norm, value,
    average_norm, agc, autoclip, none) applied by the probe at clip_norm (clip_percentile for
    autoclip); then the optimizer must not clip too. on_nonfinite="stop" skips a step whose loss or
    gradients hold NaN/Inf (weights and optimizer state stay) and stops training; "continue"
    applies every step as Keras would. steps_per_epoch: a custom loop's longest epoch (fit knows)."""

    def __init__(self, out: str | Path = "outputs", name: str | None = None, clip: str | None = None,
                 clip_norm: float = Config.clip_norm, clip_percentile: float = Config.clip_percentile,
                 overwrite: bool = False, plots: bool = True, tensorboard: bool = False, on_nonfinite: str = "stop",
                 steps_per_epoch: int | None = None, dataset: str = "your data", verbose: bool = True):
        super().__init__()
        for key, value in (("overwrite", overwrite), ("plots", plots), ("tensorboard", tensorboard)):
            if not isinstance(value, bool):
                raise InputError(f"{named(key)}: must be True or False (got {value!r})", key)
        if not isinstance(out, (str, Path)):
            raise InputError(f"{named('out')}: must be a folder path (got {type(out).__name__})", "out")
        if steps_per_epoch is not None and (isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int)
                                            or steps_per_epoch < 1):
            raise InputError(f"{named('steps_per_epoch')}: must be a whole number >= 1 (got {steps_per_epoch!r})",
                             "steps_per_epoch")
        # the product's own checks of the clipping options, with their messages
        Config(clip=clip or "none", clip_norm=clip_norm, clip_percentile=clip_percentile, on_nonfinite=on_nonfinite)
        RunTarget(Path(out), name, "probe", overwrite).check()
        self.out, self.name, self.overwrite = Path(out), name, overwrite
        self.clip, self.clip_norm, self.clip_percentile = clip, float(clip_norm), float(clip_percentile)
        self.plots, self.tensorboard, self.on_nonfinite = plots, tensorboard, on_nonfinite
        self.steps_per_epoch, self.dataset, self.verbose = steps_per_epoch, dataset, verbose
        self.optimizer: ProbedOptimizer | None = None
        self.run = None  # the last run's RunResult
        self._recorder: Recorder | None = None
        self._open: dict | None = None  # the run being written

    # --- wrapping ---------------------------------------------------------------------------

    def wrap(self, optimizer) -> ProbedOptimizer:
        """The optimizer, watched by this probe; give it to model.compile."""
        check_wrappable(optimizer)
        if self.optimizer is not None:
            raise InputError("this GradientProbe already wraps an optimizer; make one probe per optimizer")
        own = keras_clipping(optimizer)
        if own is not None and self.clip is not None:
            attribute = {"global_norm": "global_clipnorm", "norm": "clipnorm", "value": "clipvalue"}[own[0]]
            raise InputError(f"clip: given twice, to the probe ({named('clip', self.clip)}) and to the optimizer "
                             f"({attribute}={own[1]:g}); keep one")
        optimizer._mnist_clip_probed = True
        self.optimizer = ProbedOptimizer(optimizer, self)
        return self.optimizer

    def clipping(self) -> tuple[str, float, str]:
        """(method, threshold, who clips: optimizer, probe or nobody)."""
        own = keras_clipping(self.optimizer.inner_optimizer) if self.optimizer is not None else None
        if own is not None:
            return own[0], own[1], "optimizer"
        if self.clip not in (None, "none"):
            return self.clip, self.clip_norm, "probe"
        return "none", self.clip_norm, "nobody"

    def record_loss(self, loss):
        """In your own loop: the step's loss (returned unchanged), to be logged with its gradients."""
        if self._recorder is not None:
            self._recorder.pending_loss = loss
        return loss

    def _recorder_for(self, variables) -> Recorder:
        if self._recorder is None:
            raise InputError("the probe is not watching a run: pass callbacks=[probe] to fit, or train inside "
                             "`with probe.watch(model):`")
        return self._recorder

    # --- fit's callback hooks ---------------------------------------------------------------

    def on_train_begin(self, logs=None) -> None:
        if self.model.optimizer is not self.optimizer or self.optimizer is None:
            raise InputError("the model's optimizer is not this probe's: compile with optimizer=probe.wrap(...)")
        self._begin(self.model, self.params.get("epochs"), self.params.get("steps"))

    def on_epoch_begin(self, epoch, logs=None) -> None:
        if self._open is not None:
            self._open["epoch_started"] = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None) -> None:
        logs = logs or {}
        accuracy = next((logs[key] for key in ACCURACY_LOGS if key in logs), None)
        self.end_epoch(logs.get("val_loss"), accuracy)

    def on_train_end(self, logs=None) -> None:
        self.end()

    # --- a loop of your own -----------------------------------------------------------------

    @contextlib.contextmanager
    def watch(self, model, epochs: int | None = None, loss=None) -> Iterator["GradientProbe"]:
        """Around a hand-written loop: `with probe.watch(model):`, a `probe.end_epoch()` after each
        epoch; leaving the block ends the run (an epoch not yet ended is ended first). epochs and
        loss (a Keras loss or its name) are written into config.json."""
        if not isinstance(model, keras.Model):
            raise InputError(f"model: not a Keras model (got {type(model).__name__})")
        if self.optimizer is None:
            raise InputError("wrap the optimizer first: optimizer = probe.wrap(keras.optimizers.SGD(...))")
        if not self.optimizer.built:
            self.optimizer.build(model.trainable_variables)
        self._begin(model, epochs, self.steps_per_epoch, loss)
        try:
            yield self
        except BaseException:
            self.end("interrupted")
            raise
        if self._open is not None and self._recorder is not None and int(self._recorder.count.numpy()):
            self.end_epoch()
        self.end()

    @property
    def stopped(self) -> bool:
        """A non-finite step stopped training (on_nonfinite="stop"): a loop of your own should end."""
        return bool(self._open and self._open["first_nonfinite"] is not None and self.on_nonfinite == "stop")

    # --- the run folder ---------------------------------------------------------------------

    def _begin(self, model, epochs: int | None, steps: int | None, loss=None) -> None:
        if self._open is not None:  # a fit that raised never ended its run: numpy's BLAS back first
            self._open["blas"].restore_original_limits()
        variables = list(model.trainable_variables)
        if not variables:
            raise InputError("model: it has no trainable variables to watch")
        target = RunTarget(self.out, self.name, f"{model.name}-{time.strftime('%Y%m%d-%H%M%S')}", self.overwrite)
        target.check()
        method, threshold, who = self.clipping()
        capacity = max(int(steps or 0), int(self.steps_per_epoch or 0)) or DEFAULT_STEPS_PER_EPOCH
        recorder = self._recorder
        if (recorder is None or recorder.capacity < capacity or [id(v) for v in recorder.variables]
                != [id(v) for v in variables]):
            history = capacity * epochs if epochs else AUTOCLIP_HISTORY
            self._recorder = Recorder(variables, method, threshold, self.clip_percentile, who == "probe",
                                      self.on_nonfinite, capacity, history)
            if recorder is not None and getattr(model, "train_function", None) is not None:
                model.make_train_function(force=True)  # the compiled step writes into the new buffers
        else:
            recorder.halted.assign(False)
            if recorder.autoclip is not None:
                recorder.autoclip.sorted.assign(np.full(recorder.autoclip.capacity, np.inf, np.float32))
                recorder.autoclip.count.assign(0)
        self._recorder.reset_epoch()
        folder = target.create()
        config = self._config(model, variables, method, threshold, who, epochs,
                              loss if loss is not None else getattr(model, "loss", None))
        writer = RunWriter(folder, probe_metric_columns(config), probe_epoch_columns(config))
        writer.write_config(config)
        initial = {v.path: np.asarray(v.numpy()) for v in variables}
        writer.write_params("init", initial)
        board = None
        if self.tensorboard:
            from mnist_clip.tensorboard_log import TensorBoardLog

            board = TensorBoardLog(folder, probe_metric_columns(config)[2:])
        self._open = {"target": target, "folder": folder, "writer": writer, "config": config, "model": model,
                      "initial": initial,
                      "initial_norms": {p: float(np.linalg.norm(w.ravel())) for p, w in initial.items()},
                      "values": [], "epochs": [], "first_nonfinite": None, "board": board,
                      "started": time.perf_counter(), "epoch_started": time.perf_counter(), "train_seconds": 0.0,
                      "blas": blas_on_one_thread()}

    def _config(self, model, variables, method: str, threshold: float, who: str, epochs: int | None, loss) -> dict:
        import tensorflow as tf

        inner = self.optimizer.inner_optimizer
        layers = []
        for variable in variables:
            layer = variable.path.rsplit("/", 1)[0] if "/" in variable.path else variable.path
            if layer not in layers:
                layers.append(layer)
        described = [{"path": v.path, "shape": list(v.shape), "role": role_of_path(v.path),
                      "layer": v.path.rsplit("/", 1)[0] if "/" in v.path else v.path,
                      "layer_index": layers.index(v.path.rsplit("/", 1)[0] if "/" in v.path else v.path) + 1,
                      "dtype": str(v.dtype)} for v in variables]
        learning_rate = inner.learning_rate
        try:
            lr = float(learning_rate.numpy() if hasattr(learning_rate, "numpy") else learning_rate)
        except (TypeError, ValueError):
            lr = 0.0  # a schedule that cannot be read as one number
        settings = {key: value for key, value in inner.get_config().items()
                    if key != "name" and (isinstance(value, (int, float, str, bool)) or value is None)}
        if not isinstance(loss, str):
            loss = "loss" if loss is None else getattr(loss, "name", type(loss).__name__)
        config = {
            "source": SOURCE,
            "keras_model": {"class": type(model).__name__, "name": model.name, "variables": described,
                            "parameters": int(sum(np.prod(v.shape) for v in variables))},
            "optimizer": type(inner).__name__.lower(),
            "optimizer_settings": settings,
            "lr": lr,
            "loss": loss,
            "clip": method,
            "clip_norm": threshold,
            "clip_percentile": self.clip_percentile,
            "clipped_by": who,
            "on_nonfinite": self.on_nonfinite,
            "epochs": epochs,
            "dataset_used": {"name": self.dataset},
            "mnist_clip_version": __version__,
            "tensorflow_version": tf.__version__,
            "keras_version": keras.__version__,
        }
        config["architecture"] = architecture_label(config)
        return config

    def end_epoch(self, test_loss: float | None = None, test_accuracy: float | None = None) -> None:
        """Hand the epoch's steps to the run folder (the host's one read of the buffers per epoch)."""
        run = self._open
        if run is None:
            raise InputError("no run is being watched: use `with probe.watch(model):` (or fit with callbacks=[probe])")
        values, count = self._recorder.read_epoch()
        self._recorder.reset_epoch()
        seconds = time.perf_counter() - run["epoch_started"]
        run["epoch_started"] = time.perf_counter()
        if count > self._recorder.capacity:
            raise InputError(f"{named('steps_per_epoch')}: this epoch had {count} steps, more than the "
                             f"{self._recorder.capacity} the probe holds; give GradientProbe(steps_per_epoch={count})")
        if run["first_nonfinite"] is not None and self.on_nonfinite == "stop":
            return  # training stopped: later steps were not applied
        first_step = sum(len(v) for v in run["values"])
        bad = ~(np.isfinite(values[:, 0]) & np.isfinite(values[:, 1]))
        if bad.any():
            if run["first_nonfinite"] is None:
                run["first_nonfinite"] = first_step + int(np.argmax(bad))
            if self.on_nonfinite == "stop":
                values = values[: int(np.argmax(bad)) + 1]
                if self.model is not None and self.model is run["model"]:
                    run["model"].stop_training = True
        epoch = len(run["epochs"])
        run["writer"].append_steps(first_step, epoch, values)
        run["values"].append(values)
        run["train_seconds"] += seconds
        columns = probe_metric_columns(run["config"])[2:]
        weights = weight_paths(run["config"]["keras_model"]["variables"])
        current = {v.path: v.numpy() for v in run["model"].trainable_variables if v.path in weights}
        moved = [float(np.linalg.norm((current[p] - run["initial"][p]).ravel()) / run["initial_norms"][p])
                 for p in weights]
        row = (epoch, len(values), float(np.mean(values[:, 0])) if len(values) else math.nan,
               _number(test_loss), _number(test_accuracy), int(values[:, columns.index("clipped")].sum()),
               round(seconds, 4), *moved)
        run["writer"].append_epoch(row)
        run["epochs"].append({"steps": len(values), "seconds": seconds, "test_loss": row[3], "test_accuracy": row[4]})
        if run["board"] is not None:
            _write_board(run["board"], values, first_step, row)

    def end(self, status: str | None = None) -> None:
        """End the run: final weights, summary (with the diagnosis of a non-finite step), pictures."""
        run, self._open = self._open, None
        if run is None:
            return
        writer = run["writer"]
        try:
            columns = probe_metric_columns(run["config"])[2:]
            values = np.concatenate(run["values"]) if run["values"] else np.zeros((0, len(columns)))
            status = status or ("diverged" if run["first_nonfinite"] is not None else "completed")
            writer.write_params("final", {v.path: np.asarray(v.numpy()) for v in run["model"].trainable_variables})
            summary = _summary(run, columns, values, status)
            writer.write_summary(summary)
        finally:
            run["blas"].restore_original_limits()
            writer.close()
            if run["board"] is not None:
                run["board"].close()
        final = run["target"].commit(run["folder"], keep_old=status == "interrupted")
        if self.plots and status != "interrupted":
            from mnist_clip.viz.registry import write_run_plots

            write_run_plots(final)
        from mnist_clip.api import RunResult

        self.run = RunResult(read_run(final))
        if self.verbose:
            print(f"mnist-clip: {final} ({status}, {len(values)} steps"
                  + (f", pictures in {final / PLOTS_DIR}" if self.plots and status != "interrupted" else "") + ")")
            for line in (summary.get("diagnosis") or {}).get("text", []):
                print(f"mnist-clip: {line}")


def _number(value) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _write_board(board, values: np.ndarray, first_step: int, row: tuple) -> None:
    import tensorflow as tf

    last = first_step + len(values) - 1
    with board.writer.as_default():
        board._write_steps(tf.constant(values, tf.float32), tf.constant(first_step, tf.int64))
        for tag, value in (("test/loss", row[3]), ("test/accuracy", row[4])):
            if math.isfinite(value):
                tf.summary.scalar(tag, value, step=last)
    board.writer.flush()


def _summary(run: dict, columns: tuple, values: np.ndarray, status: str) -> dict:
    """summary.json, with the keys of the product's runs where they apply."""
    config, steps, epochs = run["config"], len(values), run["epochs"]
    paths = [v["path"] for v in config["keras_model"]["variables"]]
    shapes = {v["path"]: tuple(v["shape"]) for v in config["keras_model"]["variables"]}

    def column(name: str) -> np.ndarray:
        return values[:, columns.index(name)]

    quantity, series = compared_with_threshold(config["clip"], column, paths, shapes)
    compared = np.concatenate([np.asarray(v, float) for v in series.values()]) if steps else np.zeros(0)
    compared = compared[np.isfinite(compared)]
    clipped = column("clipped") if steps else np.zeros(0)
    per_tensor = {name[: -len("_clipped")]: int(column(name).sum()) if steps else 0
                  for name in columns if name != "clipped" and is_flag_column(name)}
    timed = epochs[1:] if len(epochs) > 1 else epochs
    timed_steps = sum(e["steps"] for e in timed)
    summary = {
        "status": status,
        "steps": steps,
        "epochs_completed": len(epochs),
        "final_train_loss": float(np.mean(column("loss")[-epochs[-1]["steps"]:])) if epochs and steps else None,
        "final_step_loss": float(column("loss")[-1]) if steps else None,
        "test_loss": epochs[-1]["test_loss"] if epochs else None,
        "test_accuracy": epochs[-1]["test_accuracy"] if epochs else None,
        "clipped_steps": int(clipped.sum()),
        "clipped_fraction": float(clipped.mean()) if steps else 0.0,
        "clipped_steps_per_tensor": per_tensor,
        "clipped_fraction_per_tensor": {k: (v / steps if steps else 0.0) for k, v in per_tensor.items()},
        "first_nonfinite_step": run["first_nonfinite"],
        "skipped_steps": int(run["first_nonfinite"] is not None and config["on_nonfinite"] == "stop"),
        "wall_seconds": round(time.perf_counter() - run["started"], 3),
        "train_seconds": round(run["train_seconds"], 3),
        "ms_per_step": round(1000 * sum(e["seconds"] for e in timed) / timed_steps, 4) if timed_steps else None,
        "ms_per_step_includes_compiling": len(epochs) <= 1,
        "compared_quantity": quantity,
        "largest_compared_value": float(compared.max()) if compared.size else None,
        "clipping_never_acted": config["clip"] != "none" and steps > 0 and int(clipped.sum()) == 0,
    }
    if run["first_nonfinite"] is not None:
        summary["diagnosis"] = diagnose_probe(dict(zip(columns, values.T)), config, run["first_nonfinite"],
                                              [e["steps"] for e in epochs])
    return summary
