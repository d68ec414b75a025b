"""A Keras model's run folder (written by GradientProbe): its net, columns and config check.

No TensorFlow here: the run folder's readers (plot, compare, load_run) use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from mnist_clip.errors import InputError
from mnist_clip.nn import LayerKind, Net, Tensor
from mnist_clip.runs.schema import EPOCH_COLUMNS, clip_columns

SOURCE = "keras"  # config.json's "source" in a probe's run folder
# A Keras variable's role, from the last part of its path, and the role the pictures draw it as.
ROLES = {"kernel": "kernel", "recurrent_kernel": "recurrent kernel", "bias": "bias", "gamma": "gamma",
         "beta": "beta", "embeddings": "embeddings"}
DRAWN_AS = {"kernel": "weight", "recurrent kernel": "recurrent", "embeddings": "weight", "bias": "bias",
            "gamma": "gain", "beta": "shift", "other": "bias"}
WEIGHT_ROLES = ("kernel", "recurrent kernel", "embeddings")  # the matrices: their norm and movement are logged
MODEL_ONLY_FIGURES = ("signals.png",)
LEFT_OUT = ("signals.png is not drawn for a Keras model: the back-propagated signal per layer and the inactive "
            "units are recorded only in mnist-clip's own nets")


def is_probe_config(config: Mapping[str, Any]) -> bool:
    return config.get("source") == SOURCE


def role_of_path(path: str) -> str:
    """kernel, recurrent kernel, bias, gamma, beta, embeddings or other, from a variable's path."""
    return ROLES.get(path.rsplit("/", 1)[-1], "other")


@dataclass(frozen=True)
class ModelNet(Net):
    """A Keras model's trained variables as the pictures read a net: one layer per model layer
    that owns a weight matrix, first to last in the model's order. Variables of a layer without
    one (a BatchNormalization's gamma and beta) are drawn with the layer before it."""

    variables: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def of_config(cls, config: Mapping[str, Any]) -> "ModelNet":
        variables = tuple(config["keras_model"]["variables"])
        owners: list[str] = []
        for variable in variables:
            if variable["role"] in WEIGHT_ROLES and variable["layer"] not in owners:
                owners.append(variable["layer"])
        placed, tensors_by_layer, current = {}, {}, 1
        for variable in variables:
            if variable["layer"] in owners:
                current = owners.index(variable["layer"]) + 1
            placed[variable["path"]] = current
            tensors_by_layer.setdefault(current, []).append(
                Tensor(variable["path"], tuple(variable["shape"]), DRAWN_AS[variable["role"]], current))
        layers = tuple(ModelLayer(index, 0, 0, None, tag=owner,
                                  owned=tuple(tensors_by_layer.get(index, ())),
                                  kernel=next(v["path"] for v in variables
                                              if v["layer"] == owner and v["role"] in WEIGHT_ROLES))
                       for index, owner in enumerate(owners, start=1))
        if not layers:  # no weight matrix at all: every variable in one layer
            layers = (ModelLayer(1, 0, 0, None, tag="model",
                                 owned=tuple(t for ts in tensors_by_layer.values() for t in ts), kernel=""),)
        return cls(layers, variables)

    @property
    def hidden_layers(self) -> tuple:
        return ()  # no inactive units are recorded

    @property
    def signals(self) -> tuple[str, ...]:
        return ()  # no back-propagated signal is recorded

    @property
    def is_recurrent(self) -> bool:
        return False

    @property
    def weights(self) -> tuple[str, ...]:
        return weight_paths(self.variables)

    @property
    def layer_weights(self) -> tuple[str, ...]:
        return tuple(layer.weight for layer in self.layers if layer.weight)

    @property
    def activation(self) -> str:
        return "relu"


@dataclass(frozen=True)
class ModelLayer(LayerKind):
    """A layer of a user's Keras model, as the probe sees it: the variables it owns."""

    index: int
    fan_in: int
    fan_out: int
    activation: str | None
    tag: str = ""
    owned: tuple[Tensor, ...] = ()
    kernel: str = ""

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        return self.owned

    @property
    def weight(self) -> str:
        return self.kernel

    @property
    def bias(self) -> str | None:
        return None

    @property
    def state(self) -> tuple:
        return ()

    def describe(self) -> str:
        return self.tag


def weight_paths(variables: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    return tuple(v["path"] for v in variables if v["role"] in WEIGHT_ROLES)


def value_columns(paths: Sequence[str], weights: Sequence[str], clip: str) -> tuple[str, ...]:
    """metrics.csv's value columns for a Keras model: the product's, without what only its own nets
    record (batch accuracy, the back-propagated signal, inactive units)."""
    return ("loss", "global_norm_before", "global_norm_after", "clipped",
            *(f"{path}_{when}" for path in paths for when in ("before", "after")),
            *(f"{path}_clipped" for path in paths),
            *clip_columns(paths, clip),
            *(f"{path}_update" for path in paths),
            *(f"{path}_norm" for path in weights))


def probe_metric_columns(config: Mapping[str, Any]) -> tuple[str, ...]:
    variables = config["keras_model"]["variables"]
    paths = [v["path"] for v in variables]
    return ("step", "epoch", *value_columns(paths, weight_paths(variables), config.get("clip", "none")))


def probe_epoch_columns(config: Mapping[str, Any]) -> tuple[str, ...]:
    return (*EPOCH_COLUMNS, *(f"{path}_moved" for path in weight_paths(config["keras_model"]["variables"])))


def check_probe_config(config: Mapping[str, Any], where) -> None:
    """A probe's config.json has its model's variables, each with a path, shape, role and layer."""
    model = config.get("keras_model")
    variables = model.get("variables") if isinstance(model, dict) else None
    good = isinstance(variables, list) and all(
        isinstance(v, dict) and isinstance(v.get("path"), str) and isinstance(v.get("layer"), str)
        and isinstance(v.get("shape"), list) and v.get("role") in DRAWN_AS for v in variables)
    if not good or not isinstance(config.get("clip", "none"), str):
        raise InputError(f"{where}: its keras_model variables (path, shape, role, layer) are not as mnist-clip writes "
                         "them; the file was changed by hand?")


def architecture_label(config: Mapping[str, Any]) -> str:
    """'Keras cnn, 14,410 params'."""
    model = config.get("keras_model", {})
    return f"Keras {model.get('name', 'model')}, {model.get('parameters', 0):,} params"


def backward_paths(variables: Sequence[Mapping[str, Any]]) -> list[str]:
    """The variables in the order back-propagation reaches them: the last layer first."""
    order = sorted(range(len(variables)), key=lambda i: (-variables[i].get("layer_index", 0), i))
    return [variables[i]["path"] for i in order]


def diagnose_probe(metrics: Mapping[str, Any], config: Mapping[str, Any], step: int,
                   epoch_steps: Sequence[int]) -> dict:
    """Why a Keras model's run went non-finite at `step`: what turned NaN/Inf first (the loss, or
    the gradients from the output layer back), how the global norm got there, and the batch."""
    import math

    import numpy as np

    from mnist_clip.runs.diagnosis import growth_words, run_up, what_failed

    variables = config["keras_model"]["variables"]
    loss = float(metrics["loss"][step])
    bad = [p for p in backward_paths(variables) if not math.isfinite(float(metrics[f"{p}_before"][step]))]
    kind = {p: "NaN" if math.isnan(float(metrics[f"{p}_before"][step])) else "Inf" for p in bad}
    if not math.isfinite(loss):
        failed = {"first_nonfinite": "loss", "value": "NaN" if math.isnan(loss) else "Inf", "loss": None}
    elif bad:
        failed = {"first_nonfinite": bad[0], "value": kind[bad[0]], "loss": loss}
    else:
        failed = {"first_nonfinite": "global_norm", "value": "Inf", "loss": loss}
    failed["nonfinite_gradients"] = bad
    failed["first_nonfinite_tensor"] = bad[0] if bad else None
    growth = run_up(np.asarray(metrics["global_norm_before"], float), step)
    epoch, batch, before = 0, step, 0
    for epoch, count in enumerate(epoch_steps):
        if step < before + count:
            batch = step - before
            break
        before += count
    words = what_failed(failed)
    if failed["first_nonfinite"] == "loss" and bad:
        words += (f" (in the forward pass); the first tensor back-propagation reached, {bad[0]}, is {kind[bad[0]]} "
                  f"too, with {len(bad)} of {len(variables)} tensors non-finite")
    elif failed["first_nonfinite"] == "loss":
        words += " (in the forward pass), every gradient still finite"
    applied = ("the step was not applied: the weights and the optimizer's state are those before it, and training "
               "stopped" if config.get("on_nonfinite", "stop") == "stop"
               else "the step was applied (on_nonfinite='continue')")
    if growth["pattern"] == "growth" and (growth.get("per_step") or 0) > 1:
        cause = "exploding gradients: the global norm grew step after step; lower the learning rate or clip"
    elif failed["first_nonfinite"] == "loss":
        cause = ("the forward pass made NaN/Inf without a run-up in the gradients: look at this batch's inputs and "
                 "at operations that can overflow or divide by zero (log, exp, division, sqrt)")
    else:
        cause = "a single large step: clip the gradients, or lower the learning rate"
    text = [f"diverged at step {step} (epoch {epoch + 1}, batch {batch + 1} of the epoch): {words}, "
            f"{growth_words(growth)}; {applied}.", f"likely cause: {cause}."]
    return {"step": step, "epoch": epoch, "batch_in_epoch": batch, **failed, "growth": growth,
            "applied": config.get("on_nonfinite", "stop") != "stop", "cause": cause, "text": text}
