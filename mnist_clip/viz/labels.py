"""The words of a run's pictures: the net in one label, the run's title, and what its
clipping method compares with its threshold."""

from __future__ import annotations

import numpy as np

from mnist_clip.config import format_hidden
from mnist_clip.nn import N_ROWS, ROW_WIDTH
from mnist_clip.runs.labels import training_label
from mnist_clip.runs.reader import Run
from mnist_clip.training.methods import METHODS, compared_with_threshold


def architecture_label(config: dict) -> str:
    """'784-256-128-10 relu' for the reference, 'rnn 28x28-128-10 tanh, gain 1' for the recurrent
    net; the init is named when it is not the reference's."""
    if config.get("source") == "keras":
        from mnist_clip.probe_schema import architecture_label as model_label

        return model_label(config)
    hidden = tuple(config.get("hidden", (256, 128)))
    layers = f"784-{format_hidden(hidden).replace(',', '-')}-10" if hidden else "784-10 (linear)"
    init = config.get("init", "reference")
    if config.get("model", "mlp") != "mlp":  # a recurrent net: rnn or lstm
        layers = f"{config['model']} {N_ROWS}x{ROW_WIDTH}-{hidden[0]}-10"
        return (f"{layers} {config.get('activation', 'tanh')}, gain {config.get('recurrent_gain', 1.0):g}"
                + ("" if init == "reference" else f", {init} init"))
    norm = {"batch": ", batch norm", "layer": ", layer norm"}.get(config.get("norm", "none"), "")
    residual = ", residual" if config.get("residual") else ""
    return (f"{layers} {config.get('activation', 'relu')}" + ("" if init == "reference" else f", {init} init")
            + norm + residual)


def run_title(run: Run) -> str:
    """The run's name and settings: clipping, lr, scale, net, seed, the tensors trained when
    not all, the data and the status."""
    cfg = run.config
    used = cfg.get("dataset_used", {})
    trained = cfg.get("trainable")
    partial = f", trains {','.join(trained)} only" if trained and len(trained) < len(run.tensors) else ""
    seed = f", seed {cfg['seed']}" if "seed" in cfg else ""
    return (
        f"{run.name}: {run.clip_label}, {training_label(cfg)}, "
        + (f"x/{cfg['input_scale']:g}, " if cfg.get("input_scale") is not None else "") +
        f"{architecture_label(cfg)}{seed}{partial}, {used.get('name', '?')} ({run.status})"
    )


def compared_quantity(run: Run):
    """What the run's clipping method compares with its threshold, per step.

    Returns (title, y label, {label: values}, per_tensor, threshold values per step or None,
    threshold label)."""
    method = METHODS[run.config.get("clip", "none")]
    quantity, series = compared_with_threshold(method.name, run.metrics.__getitem__, run.tensors, run.net.shapes)
    if method.name == "none":
        return method.title, quantity, series, False, None, ""
    if not method.per_tensor:
        series["global norm after"] = run.metrics["global_norm_after"]
    if method.name == "autoclip":
        threshold = run.metrics["clip_threshold"]
    else:
        threshold = np.full(run.steps, float(run.config.get("clip_norm")))
    return method.title, quantity, series, method.per_tensor, threshold, method.threshold_label(run.config)
