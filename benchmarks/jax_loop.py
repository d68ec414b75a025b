"""Variant (f) of bench_train.py: mnist-clip's training step with full logging, as a JAX expert writes it.

One `jax.jit` program per shape of an epoch's batches: `lax.scan` over the batches, the weights
carried (and donated), every value of metrics.csv computed inside and handed back once, as one
[steps, columns] array. The net, initial weights, data order, clipping and columns are those of
mnist-clip's compiled loop (variant (c)), so that the two can be timed and their numbers compared:
loss, accuracy, the global and per-tensor gradient norms before and after clipping, the flags, the
back-propagated signal (dL/dz_l per layer, or dL/dh_t per time step of the recurrent net), the
share of inactive units, each tensor's step and each weight's norm.

The signals come the JAX way: a zero added to each z_l (h_t) is an input of the loss, and its
gradient is dL/dz_l (dL/dh_t), from the one backward pass that gives the weights' gradients.

Covered: plain MLPs (no norm, no residual) and the recurrent net, MSE loss, SGD, clip global_norm,
a non-finite step stops the run as `--on-nonfinite stop` does (masked: the update is a select, not
a branch). Anything else raises ValueError.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from mnist_clip.config import Config
from mnist_clip.nn.model import DERIVATIVE_MAX, SATURATION_FRACTION, config_params, one_hot, prepare_inputs
from mnist_clip.nn import N_ROWS, ROW_WIDTH, Net
from mnist_clip.runs.schema import activity_column_prefix, step_value_columns

ACTIVATIONS = {"relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}


def check_supported(config: Config) -> None:
    net = config.net
    if config.clip != "global_norm" or config.optimizer != "sgd" or config.momentum != 0 or config.loss != "mse":
        raise ValueError("the JAX loop covers clip global_norm, plain SGD and MSE only")
    if config.model == "lstm" or any(getattr(layer, "norm", "none") != "none" or getattr(layer, "residual", False)
                                     for layer in net.layers):
        raise ValueError("the JAX loop covers plain MLPs and the simple recurrent net only")
    if config.trainable != net.names or config.shuffle or config.dirty_fraction:
        raise ValueError("the JAX loop trains every tensor on unshuffled, clean data")


def inactive_fraction(activation: str, h: jnp.ndarray) -> jnp.ndarray:
    """mnist_clip.nn.model.inactive_fraction: units off (ReLU) or saturated for the whole batch."""
    if activation == "relu":
        inactive = h <= 0.0
    else:
        derivative = h * (1.0 - h) if activation == "sigmoid" else 1.0 - h * h
        inactive = derivative < np.float32(SATURATION_FRACTION * DERIVATIVE_MAX[activation])
    return jnp.mean(jnp.all(inactive, axis=0).astype(jnp.float32))


def signal_shapes(net: Net, batch_size: int) -> list[tuple[int, ...]]:
    """The shapes of the zeros whose gradients are the logged signals."""
    if net.is_recurrent:
        return [(N_ROWS, batch_size, net.layers[0].fan_out)]
    return [(batch_size, layer.fan_out) for layer in net.layers]


def mlp_forward(net: Net, params: dict, x: jnp.ndarray, probes: list):
    """z_l = h_(l-1) @ w_l + b_l (+ its probe, a zero); out = z_L. Returns (out, hidden activations)."""
    h, units = x, []
    for layer, probe in zip(net.layers, probes):
        z = h @ params[layer.weight] + params[layer.bias] + probe
        if layer.activation is None:
            return z, units
        h = ACTIVATIONS[layer.activation](z)
        units.append(h)
    raise AssertionError("the last layer has no activation")


def make_rnn_forward(unroll: int | bool):
    def rnn_forward(net: Net, params: dict, x: jnp.ndarray, probes: list):
        """h_t = act(x_t @ wx + h_(t-1) @ wh + bh) (+ its probe) over the 28 rows, by lax.scan over time;
        out = h_28 @ wo + bo. Returns (out, [every h_t stacked over time and batch])."""
        act = ACTIVATIONS[net.activation]
        rows = x.reshape(-1, N_ROWS, ROW_WIDTH)
        inputs = jnp.einsum("btr,rh->tbh", rows, params["wx"])  # every row's x_t @ wx in one matmul
        wh, bh = params["wh"], params["bh"]

        def cell(h, row):
            x_t, probe = row
            h = act(x_t + h @ wh + bh) + probe
            return h, h

        h0 = jnp.zeros((x.shape[0], wh.shape[0]), x.dtype)
        h, hs = lax.scan(cell, h0, (inputs, probes[0]), unroll=unroll)
        return h @ params["wo"] + params["bo"], [hs.reshape(-1, hs.shape[-1])]

    return rnn_forward


_PROGRAMS: dict = {}  # one jitted program per net and form, shared by every trainer (as (c)'s are)


def make_epoch(config: Config, update: str = "select", unroll: int | bool = 1):
    """The jitted program (params, lr, clip_norm, stopped, xb [n, B, ...], yb [n, B, 10]) ->
    (params, stopped, values [n, columns], steps run). `update`: "select" masks the update with
    jnp.where (the program has no branch), "cond" branches with lax.cond as (c) does.
    `unroll`: how many time steps of the recurrent net each iteration of its scan runs."""
    check_supported(config)
    key = (config.net, update, unroll)
    if key not in _PROGRAMS:
        _PROGRAMS[key] = build_epoch(config.net, update, unroll)
    return _PROGRAMS[key]


def build_epoch(net: Net, update: str, unroll: int | bool):
    names, weights = net.names, net.weights
    columns = step_value_columns(net, "global_norm")
    prefix = activity_column_prefix(net.activation)
    activity_columns = [f"{prefix}_h{layer.index}" for layer in net.hidden_layers]
    forward = make_rnn_forward(unroll) if net.is_recurrent else mlp_forward

    def loss_of(params, probes, x, y):
        out, units = forward(net, params, x, probes)
        return jnp.mean(jnp.mean(jnp.square(y - out), axis=1)), (out, units)

    value_and_grad = jax.value_and_grad(loss_of, argnums=(0, 1), has_aux=True)

    def step(carry, batch, lr, clip_norm):
        params, stopped = carry
        x, y = batch
        probes = [jnp.zeros(shape, x.dtype) for shape in signal_shapes(net, x.shape[0])]
        (loss, (out, units)), (grads, signal_grads) = value_and_grad(params, probes, x, y)
        before = {name: jnp.sqrt(jnp.sum(grads[name] * grads[name])) for name in names}
        global_before = jnp.sqrt(jnp.sum(jnp.square(jnp.stack([before[name] for name in names]))))
        # tf.clip_by_global_norm's factor, NaN when the global norm is not finite
        scale = clip_norm * jnp.minimum(1.0 / global_before, 1.0 / clip_norm) + (global_before - global_before)
        after = {name: before[name] * scale for name in names}
        fired = (global_before > clip_norm).astype(jnp.float32)
        finite = jnp.isfinite(loss) & jnp.isfinite(global_before)
        apply = finite & jnp.logical_not(stopped)
        values = {
            "loss": loss,
            "accuracy": jnp.mean((jnp.argmax(out, axis=1) == jnp.argmax(y, axis=1)).astype(jnp.float32)),
            "global_norm_before": global_before,
            "global_norm_after": jnp.sqrt(jnp.sum(jnp.square(jnp.stack([after[name] for name in names])))),
            "clipped": fired,
        }
        for name in names:
            values.update({f"{name}_before": before[name], f"{name}_after": after[name], f"{name}_clipped": fired,
                           f"{name}_update": jnp.where(finite, lr * after[name], 0.0)})
        for name in weights:
            values[f"{name}_norm"] = jnp.sqrt(jnp.sum(params[name] * params[name]))
        if net.is_recurrent:
            per_step = jnp.sqrt(jnp.sum(jnp.square(signal_grads[0]), axis=(1, 2)))
            values.update({signal: per_step[t] for t, signal in enumerate(net.signals)})
        else:
            values.update({signal: jnp.sqrt(jnp.sum(g * g)) for signal, g in zip(net.signals, signal_grads)})
        values.update({column: inactive_fraction(net.activation, h) for column, h in zip(activity_columns, units)})

        def updated(params):
            return {name: params[name] - grads[name] * scale * lr for name in names}

        if update == "select":
            new = updated(params)
            params = {name: jnp.where(apply, new[name], params[name]) for name in names}
        else:
            params = lax.cond(apply, updated, lambda params: params, params)
        row = jnp.stack([values[column] for column in columns])
        return (params, stopped | jnp.logical_not(finite)), (row, jnp.logical_not(stopped))

    def epoch(params, lr, clip_norm, stopped, xb, yb):
        (params, stopped), (rows, ran) = lax.scan(lambda carry, batch: step(carry, batch, lr, clip_norm),
                                                  (params, stopped), (xb, yb))
        return params, stopped, rows, jnp.sum(ran.astype(jnp.int32))

    return jax.jit(epoch, donate_argnums=(0,)), columns


def batched(array: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """mnist_clip.training.step.batched: [full batches, B, ...] and [1, remainder, ...]."""
    n_full = len(array) // batch_size
    parts = [array[: n_full * batch_size].reshape(n_full, batch_size, *array.shape[1:])] if n_full else []
    if len(array) % batch_size:
        parts.append(array[n_full * batch_size:][np.newaxis])
    return parts


class JaxTrainer:
    """The config's run in JAX, one epoch (one program call per batch shape) at a time."""

    def __init__(self, config: Config, dataset, update: str = "select", unroll: int | bool = 1):
        self.config = config
        self.program, self.columns = make_epoch(config, update, unroll)
        self.params = {name: jnp.asarray(v.numpy()) for name, v in config_params(config).items()}
        x = prepare_inputs(dataset.x_train, config.input_scale)
        y = one_hot(dataset.y_train)
        self.batches = [(jnp.asarray(xb), jnp.asarray(yb))
                        for xb, yb in zip(batched(x, config.batch_size), batched(y, config.batch_size))]
        self.lr = jnp.float32(config.lr)
        self.clip_norm = jnp.float32(config.clip_norm)
        self.stopped = jnp.asarray(False)

    def train_epoch(self) -> tuple[np.ndarray, bool]:
        """One epoch: the values of the steps run (the records reach Python once per program
        call, as (c)'s do), and whether a non-finite step stopped the run."""
        parts = []
        for xb, yb in self.batches:
            self.params, self.stopped, rows, steps_run = self.program(self.params, self.lr, self.clip_norm,
                                                                      self.stopped, xb, yb)
            parts.append(np.asarray(rows)[: int(steps_run)])
            if bool(self.stopped):
                return np.concatenate(parts), True
        return np.concatenate(parts), False

    def lowered_text(self, batch: int = 0) -> str:
        """The optimized HLO of the program for the epoch's `batch`-th part (for comparison with TF's)."""
        xb, yb = self.batches[batch]
        return self.program.lower(self.params, self.lr, self.clip_norm, self.stopped, xb, yb).compile().as_text()


def jax_loop(config: Config, dataset, **options) -> Callable[[int], np.ndarray]:
    """(f) for bench_train.py: run(n_epochs) trains n epochs, returns the last epoch's values."""
    trainer = JaxTrainer(config, dataset, **options)

    def run(n_epochs: int) -> np.ndarray:
        values = None
        for _ in range(n_epochs):
            values, _ = trainer.train_epoch()
        return values

    run.columns = trainer.columns
    run.trainer = trainer
    return run
