"""The 784-256-128-10 ReLU MLP: its parameters, forward pass and loss."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

LAYER_SIZES = (784, 256, 128, 10)
INIT_STDDEV = 0.1


def param_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for layer, (fan_in, fan_out) in enumerate(zip(LAYER_SIZES[:-1], LAYER_SIZES[1:]), start=1):
        shapes[f"w{layer}"] = (fan_in, fan_out)
        shapes[f"b{layer}"] = (fan_out,)
    return shapes


def init_params(seed: int) -> dict[str, tf.Variable]:
    """The reference's initialisation, draw for draw: after `tf.random.set_seed(seed)`,
    truncated_normal(stddev=0.1) weights and zero biases in the order w1 b1 w2 b2 w3 b3."""
    tf.random.set_seed(seed)
    params = {}
    for name, shape in param_shapes().items():
        if name.startswith("w"):
            initial = tf.random.truncated_normal(shape, stddev=INIT_STDDEV)
        else:
            initial = tf.zeros(shape)
        params[name] = tf.Variable(initial, name=name)
    return params


class Forward(NamedTuple):
    """Pre-activations z_l and hidden activations h_l, kept for the signal diagnostics."""

    z1: tf.Tensor
    h1: tf.Tensor
    z2: tf.Tensor
    h2: tf.Tensor
    out: tf.Tensor


def forward(params: dict[str, tf.Variable], x: tf.Tensor) -> Forward:
    z1 = x @ params["w1"] + params["b1"]
    h1 = tf.nn.relu(z1)
    z2 = h1 @ params["w2"] + params["b2"]
    h2 = tf.nn.relu(z2)
    out = h2 @ params["w3"] + params["b3"]
    return Forward(z1, h1, z2, h2, out)


def mse_loss(y_onehot: tf.Tensor, out: tf.Tensor) -> tf.Tensor:
    """Mean over the batch of the mean over the 10 outputs of (y - out)^2."""
    return tf.reduce_mean(tf.reduce_mean(tf.square(y_onehot - out), axis=1))


def accuracy(y_onehot: tf.Tensor, out: tf.Tensor) -> tf.Tensor:
    hits = tf.equal(tf.argmax(out, axis=1), tf.argmax(y_onehot, axis=1))
    return tf.reduce_mean(tf.cast(hits, tf.float32))


def prepare_inputs(images: np.ndarray, input_scale: float) -> np.ndarray:
    """Flattened float32 pixels divided by `input_scale` (the reference divides by 50)."""
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(input_scale)


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(LAYER_SIZES[-1], dtype=np.float32)[labels]
