"""The net its Net value describes, in TensorFlow: initial parameters, the forward pass (a loop
over the layers, each computing itself), the losses and accuracy."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from mnist_clip.nn.layer import N_CLASSES, Draws, ForwardRecord, Tensor
from mnist_clip.nn.net import REFERENCE_HIDDEN, Net
from mnist_clip.nn.ops import (  # noqa: F401  (re-exported: the training step and tests use them)
    ACTIVATION_FUNCTIONS,
    BATCH_NORM_MOMENTUM,
    INIT_STDDEV,
    batch_moments,
    keras_initializer,
    layer_seed,
    masked_mean,
    normalize,
)

# The seed "layer" of the recurrent weight's draw: apart from every layer's own
RECURRENT_SEED_LAYER = 0


class SeededDraws(Draws):
    """reference: the tutorial's draw, value for value: after `tf.random.set_seed(seed)`,
    truncated_normal(stddev=0.1) for each weight in turn. glorot / he: Keras's GlorotNormal /
    HeNormal, layer l seeded with layer_seed(seed, l). A recurrent weight, whatever the init:
    gain x Keras's Orthogonal seeded with layer_seed(seed, 0), so that every singular value is
    the gain."""

    def __init__(self, seed: int, init: str, recurrent_gain: float | None = None):
        self.seed, self.init, self.recurrent_gain = seed, init, recurrent_gain

    def weight(self, tensor: Tensor):
        if self.init == "reference":
            return tf.random.truncated_normal(tensor.shape, stddev=INIT_STDDEV)
        draw = keras_initializer(self.init, layer_seed(self.seed, tensor.layer))
        return tf.convert_to_tensor(draw(tensor.shape, dtype="float32"))

    def orthogonal(self, tensor: Tensor, gain: float):
        gain = gain if self.recurrent_gain is None else self.recurrent_gain
        draw = keras_initializer("orthogonal", layer_seed(self.seed, RECURRENT_SEED_LAYER), gain)
        return tf.convert_to_tensor(draw(tensor.shape, dtype="float32"))


def init_params(seed: int, hidden: tuple[int, ...] = REFERENCE_HIDDEN, init: str = "reference",
                net: Net | None = None, recurrent_gain: float | None = None) -> dict[str, tf.Variable]:
    """Each tensor in the net's order (w1, b1, w2, ... or wx, wh, bh, wo, bo), as its layer
    initialises it (SeededDraws says how weights are drawn). `recurrent_gain`, when given,
    replaces the gain the net's recurrent layer carries."""
    net = net or Net.of({"hidden": hidden})
    tf.random.set_seed(seed)
    draws = SeededDraws(seed, init, recurrent_gain)
    return {tensor.name: tf.Variable(layer.initial(tensor, draws), name=tensor.name)
            for layer in net.layers for tensor in layer.tensors}


def config_params(config) -> dict[str, tf.Variable]:
    """A Config's initial parameters."""
    return init_params(config.seed, config.hidden, config.init, config.net)


def init_state(net: Net) -> dict[str, tf.Variable]:
    """Batch norm's moving statistics, as Keras starts them: means 0, variances 1."""
    return {tensor.name: tf.Variable(tf.zeros(tensor.shape) if tensor.role == "moving_mean" else tf.ones(tensor.shape),
                                     trainable=False, name=tensor.name) for tensor in net.state}


def activation_derivative(activation: str, h: tf.Tensor) -> tf.Tensor:
    """act'(z), written with the activation's output h = act(z)."""
    if activation == "relu":
        return tf.cast(h > 0.0, h.dtype)
    if activation == "sigmoid":
        return h * (1.0 - h)
    return 1.0 - h * h


# The largest value of each activation's derivative: a unit is "saturated" when its
# derivative is below 1% of this for every example of the batch.
DERIVATIVE_MAX = {"relu": 1.0, "sigmoid": 0.25, "tanh": 1.0}
SATURATION_FRACTION = 0.01


def inactive_fraction(activation: str, h: tf.Tensor, real: tf.Tensor | None = None) -> tf.Tensor:
    """ReLU: the share of units that are zero for every example of the batch (dead).
    sigmoid, tanh: the share whose derivative is below 1% of its maximum for every
    example (saturated). Either way, units that pass almost no gradient back.
    `real` [rows] marks the rows of a padded batch that are real examples: only they count."""
    if activation == "relu":
        inactive = h <= 0.0
    else:
        inactive = activation_derivative(activation, h) < SATURATION_FRACTION * DERIVATIVE_MAX[activation]
    if real is not None:
        inactive = inactive | tf.logical_not(real)[:, tf.newaxis]
    # Per unit, the count of examples where it is inactive, as a matrix-vector product: exact
    # (small integers), and on XLA:CPU far cheaper than a fused reduction over the batch.
    rows = int(inactive.shape[0])
    counts = tf.linalg.matvec(tf.cast(inactive, tf.float32), tf.ones([rows]), transpose_a=True)
    return tf.reduce_mean(tf.cast(tf.equal(counts, float(rows)), tf.float32))


class Forward(NamedTuple):
    """Matmul outputs z_1..z_L (z_L is the output; for a normalised layer, before the norm),
    hidden activations a_1..a_{L-1} (a recurrent net's: h_1..h_28), batch norm's batch
    statistics {layer: (mean, variance)}, the tensors whose gradients are the logged signal
    (one per signal column) and the hidden units whose inactive share is logged, one tensor
    per column."""

    zs: list
    hs: list
    batch_stats: dict
    signals: list
    units: list

    @property
    def out(self) -> tf.Tensor:
        return self.zs[-1]


def forward(params: dict[str, tf.Variable], x: tf.Tensor, net: Net | str = "relu",
            moving: dict[str, tf.Tensor] | None = None, real: tf.Tensor | None = None) -> Forward:
    """The net's forward pass, layer after layer. `net` may be an activation name for a plain MLP
    of the params' depth. Batch norm uses the batch's statistics (over the rows `real` marks, in
    a padded batch), or with `moving` (the test set) the moving ones."""
    if isinstance(net, str):
        n_layers = sum(1 for name in params if name.startswith("w"))
        hidden = tuple(int(params[f"w{layer}"].shape[1]) for layer in range(1, n_layers))
        net = Net.of({"hidden": hidden, "activation": net})
    record = ForwardRecord(moving=moving, real=real)
    h = x
    for layer in net.layers:
        h = layer.forward(params, h, record)
    return Forward(record.zs, record.hs, record.batch_stats, record.signals, record.units)


def moving_stats_after(state: dict[str, tf.Tensor], batch_stats: dict) -> dict[str, tf.Tensor]:
    """moving = 0.99 moving + 0.01 batch statistic (Keras's rule), as values: what one training
    step writes, for the caller to commit."""
    return {name: state[name] * BATCH_NORM_MOMENTUM + value * (1 - BATCH_NORM_MOMENTUM)
            for layer, (mean, variance) in batch_stats.items()
            for name, value in ((f"moving_mean{layer}", mean), (f"moving_variance{layer}", variance))}


def mse_loss(y_onehot: tf.Tensor, out: tf.Tensor) -> tf.Tensor:
    """Mean over the batch of the mean over the 10 outputs of (y - out)^2."""
    return tf.reduce_mean(tf.reduce_mean(tf.square(y_onehot - out), axis=1))


def crossentropy_loss(y_onehot: tf.Tensor, out: tf.Tensor) -> tf.Tensor:
    """Mean over the batch of -sum_k y_k log softmax(out)_k, on the output layer's logits."""
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y_onehot, logits=out))


LOSS_FUNCTIONS = {"mse": mse_loss, "crossentropy": crossentropy_loss}
# Each loss before its mean over the batch: one value per example
EXAMPLE_LOSSES = {
    "mse": lambda y_onehot, out: tf.reduce_mean(tf.square(y_onehot - out), axis=1),
    "crossentropy": lambda y_onehot, out: tf.nn.softmax_cross_entropy_with_logits(labels=y_onehot, logits=out),
}


def accuracy(y_onehot: tf.Tensor, out: tf.Tensor, real: tf.Tensor | None = None) -> tf.Tensor:
    """The share of examples (of the real ones, when `real` marks them) whose largest output is their label."""
    hits = tf.cast(tf.equal(tf.argmax(out, axis=1), tf.argmax(y_onehot, axis=1)), tf.float32)
    return tf.reduce_mean(hits) if real is None else masked_mean(hits, real)


def prepare_inputs(images: np.ndarray, input_scale: float) -> np.ndarray:
    """Flattened float32 pixels divided by `input_scale` (the reference divides by 50)."""
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(input_scale)


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(N_CLASSES, dtype=np.float32)[labels]
