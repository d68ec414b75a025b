"""The net its Net value describes (an MLP of any depth, or the recurrent net): parameters,
initialisers, forward pass and loss."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from mnist_clip.config import N_CLASSES, REFERENCE_HIDDEN, layer_sizes
from mnist_clip.net import BATCH_NORM_MOMENTUM, N_ROWS, NORM_EPSILON, ROW_WIDTH, Net

INIT_STDDEV = 0.1
LAYER_SIZES = layer_sizes()  # the reference net


def layer_seed(seed: int, layer: int) -> int:
    """The seed of layer `layer`'s Keras initializer: distinct per layer and per run seed,
    so that seeds 1234 and 1235 share no layer's draw."""
    return int(np.random.SeedSequence([seed, layer]).generate_state(1)[0] & 0x7FFFFFFF)


def keras_initializer(init: str, seed: int, gain: float = 1.0):
    """Keras's GlorotNormal, HeNormal or Orthogonal(gain) with this seed."""
    import keras

    if init == "orthogonal":
        return keras.initializers.Orthogonal(gain=gain, seed=seed)
    kinds = {"glorot": keras.initializers.GlorotNormal, "he": keras.initializers.HeNormal}
    return kinds[init](seed=seed)


# The seed "layer" of the recurrent weight's draw: apart from every layer's own
RECURRENT_SEED_LAYER = 0


def init_params(seed: int, hidden: tuple[int, ...] = REFERENCE_HIDDEN, init: str = "reference",
                net: Net | None = None, recurrent_gain: float = 1.0) -> dict[str, tf.Variable]:
    """Weights in the net's order (w1, w2, ... or wx, wh, wo); biases and shifts (beta) zero,
    gains (gamma) one.

    reference: the tutorial's draw, value for value: after `tf.random.set_seed(seed)`,
    truncated_normal(stddev=0.1) for each weight in turn.
    glorot / he: Keras's GlorotNormal / HeNormal, layer l seeded with layer_seed(seed, l).
    The recurrent weight wh, whatever `init`: recurrent_gain x Keras's Orthogonal, seeded with
    layer_seed(seed, 0), so that every singular value is the gain.
    """
    net = net or Net.of({"hidden": hidden})
    tf.random.set_seed(seed)
    params = {}
    for tensor in net.tensors:
        if tensor.role == "gain":
            initial = tf.ones(tensor.shape)
        elif tensor.role == "recurrent":
            draw = keras_initializer("orthogonal", layer_seed(seed, RECURRENT_SEED_LAYER), recurrent_gain)
            initial = tf.convert_to_tensor(draw(tensor.shape, dtype="float32"))
        elif tensor.role != "weight":
            initial = tf.zeros(tensor.shape)
        elif init == "reference":
            initial = tf.random.truncated_normal(tensor.shape, stddev=INIT_STDDEV)
        else:
            draw = keras_initializer(init, layer_seed(seed, tensor.layer))(tensor.shape, dtype="float32")
            initial = tf.convert_to_tensor(draw)
        params[tensor.name] = tf.Variable(initial, name=tensor.name)
    return params


def config_params(config) -> dict[str, tf.Variable]:
    """A Config's initial parameters."""
    return init_params(config.seed, config.hidden, config.init, config.net, config.recurrent_gain)


def init_state(net: Net) -> dict[str, tf.Variable]:
    """Batch norm's moving statistics, as Keras starts them: means 0, variances 1."""
    return {tensor.name: tf.Variable(tf.zeros(tensor.shape) if tensor.role == "moving_mean" else tf.ones(tensor.shape),
                                     trainable=False, name=tensor.name) for tensor in net.state}


ACTIVATION_FUNCTIONS = {"relu": tf.nn.relu, "sigmoid": tf.sigmoid, "tanh": tf.tanh}


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


def masked_mean(values: tf.Tensor, real: tf.Tensor) -> tf.Tensor:
    """The mean over the rows `real` marks (the real examples of a padded batch). The padding's
    rows are selected away, not multiplied by zero: their gradient is exactly zero, NaN or not.
    With every row real it is reduce_mean's sum and division, bit for bit."""
    count = tf.reduce_sum(tf.cast(real, values.dtype))
    return tf.reduce_sum(tf.where(real, values, tf.zeros_like(values)), axis=0) / count


def batch_moments(z: tf.Tensor, real: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """Batch norm's statistics per unit: tf.nn.moments over the batch (the biased variance, as
    Keras), over the rows `real` marks when the batch is padded."""
    if real is None:
        return tf.nn.moments(z, axes=[0])
    rows = real[:, tf.newaxis]
    mean = masked_mean(z, rows)
    return mean, masked_mean(tf.math.squared_difference(z, tf.stop_gradient(mean)), rows)


class Forward(NamedTuple):
    """Matmul outputs z_1..z_L (z_L is the output; for a normalised layer, before the norm),
    hidden activations a_1..a_{L-1} (the recurrent net's: h_1..h_28), batch norm's batch
    statistics {layer: (mean, variance)}, the tensors whose gradients are the logged signal
    (z_l, or h_t) and the hidden units whose inactive share is logged, one tensor per column."""

    zs: list
    hs: list
    batch_stats: dict
    signals: list
    units: list

    @property
    def out(self) -> tf.Tensor:
        return self.zs[-1]


def normalize(z: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, mean: tf.Tensor, variance: tf.Tensor) -> tf.Tensor:
    return gamma * (z - mean) / tf.sqrt(variance + NORM_EPSILON) + beta


def forward(params: dict[str, tf.Variable], x: tf.Tensor, net: Net | str = "relu",
            moving: dict[str, tf.Tensor] | None = None, real: tf.Tensor | None = None) -> Forward:
    """The net's forward pass. `net` may be an activation name for a plain MLP of the params'
    depth. Batch norm uses the batch's statistics (over the rows `real` marks, in a padded
    batch), or with `moving` (the test set) the moving ones."""
    if isinstance(net, str):
        n_layers = sum(1 for name in params if name.startswith("w"))
        hidden = tuple(int(params[f"w{layer}"].shape[1]) for layer in range(1, n_layers))
        net = Net.of({"hidden": hidden, "activation": net})
    if net.is_recurrent:
        return recurrent_forward(params, x, net.activation)
    zs, hs, stats, h = [], [], {}, x
    for layer in net.layers:
        z = h @ params[layer.weight]
        if layer.bias is not None:
            z = z + params[layer.bias]
        zs.append(z)
        if layer.activation is None:
            break
        u = z
        if layer.norm == "batch":
            if moving is None:
                mean, variance = batch_moments(z, real)
                stats[layer.index] = (mean, variance)
            else:
                mean, variance = moving[f"moving_mean{layer.index}"], moving[f"moving_variance{layer.index}"]
            u = normalize(z, params[f"gamma{layer.index}"], params[f"beta{layer.index}"], mean, variance)
        elif layer.norm == "layer":
            mean, variance = tf.nn.moments(z, axes=[1], keepdims=True)
            u = normalize(z, params[f"gamma{layer.index}"], params[f"beta{layer.index}"], mean, variance)
        a = ACTIVATION_FUNCTIONS[layer.activation](u)
        hs.append(a)
        h = a + h if layer.residual else a
    return Forward(zs, hs, stats, zs, hs)


def recurrent_forward(params: dict[str, tf.Variable], x: tf.Tensor, activation: str) -> Forward:
    """h_0 = 0; h_t = act(x_t @ wx + h_(t-1) @ wh + bh) for the image's rows t = 1..28;
    out = h_28 @ wo + bo (Keras's SimpleRNN, then Dense). The loop over time is unrolled:
    28 static steps that XLA compiles with the rest of the training step."""
    act = ACTIVATION_FUNCTIONS[activation]
    rows = tf.reshape(x, [-1, N_ROWS, ROW_WIDTH])
    inputs = tf.einsum("btr,rh->bth", rows, params["wx"])  # every row's x_t @ wx in one matmul
    h = act(inputs[:, 0] + params["bh"])  # h_0 = 0 adds nothing
    hs = [h]
    for t in range(1, N_ROWS):
        h = act(inputs[:, t] + h @ params["wh"] + params["bh"])
        hs.append(h)
    out = h @ params["wo"] + params["bo"]
    # a unit is inactive when it is for every example at every time step
    return Forward([out], hs, {}, hs, [tf.concat(hs, axis=0)])


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

