"""The MLP of any depth: its parameters, initialisers, forward pass and loss."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import tensorflow as tf

from mnist_clip.config import N_CLASSES, REFERENCE_HIDDEN, layer_sizes, param_shapes

INIT_STDDEV = 0.1
LAYER_SIZES = layer_sizes()  # the reference net


def layer_seed(seed: int, layer: int) -> int:
    """The seed of layer `layer`'s Keras initializer: distinct per layer and per run seed,
    so that seeds 1234 and 1235 share no layer's draw."""
    return int(np.random.SeedSequence([seed, layer]).generate_state(1)[0] & 0x7FFFFFFF)


def keras_initializer(init: str, seed: int):
    """Keras's GlorotNormal or HeNormal with this seed."""
    import keras

    kinds = {"glorot": keras.initializers.GlorotNormal, "he": keras.initializers.HeNormal}
    return kinds[init](seed=seed)


def init_params(seed: int, hidden: tuple[int, ...] = REFERENCE_HIDDEN, init: str = "reference") -> dict[str, tf.Variable]:
    """Weights in the order w1, w2, ...; biases zero.

    reference: the tutorial's draw, value for value: after `tf.random.set_seed(seed)`,
    truncated_normal(stddev=0.1) for each weight in turn.
    glorot / he: Keras's GlorotNormal / HeNormal, layer l seeded with layer_seed(seed, l).
    """
    tf.random.set_seed(seed)
    params = {}
    for name, shape in param_shapes(hidden).items():
        if name.startswith("b"):
            initial = tf.zeros(shape)
        elif init == "reference":
            initial = tf.random.truncated_normal(shape, stddev=INIT_STDDEV)
        else:
            initial = tf.convert_to_tensor(keras_initializer(init, layer_seed(seed, int(name[1:])))(shape, dtype="float32"))
        params[name] = tf.Variable(initial, name=name)
    return params


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


def inactive_fraction(activation: str, h: tf.Tensor) -> tf.Tensor:
    """ReLU: the share of units that are zero for every example of the batch (dead).
    sigmoid, tanh: the share whose derivative is below 1% of its maximum for every
    example (saturated). Either way, units that pass almost no gradient back."""
    if activation == "relu":
        inactive = h <= 0.0
    else:
        inactive = activation_derivative(activation, h) < SATURATION_FRACTION * DERIVATIVE_MAX[activation]
    return tf.reduce_mean(tf.cast(tf.reduce_all(inactive, axis=0), tf.float32))


class Forward(NamedTuple):
    """Pre-activations z_1..z_L (z_L is the output) and hidden activations h_1..h_{L-1}."""

    zs: list
    hs: list

    @property
    def out(self) -> tf.Tensor:
        return self.zs[-1]


def forward(params: dict[str, tf.Variable], x: tf.Tensor, activation: str = "relu") -> Forward:
    n_layers = len(params) // 2
    act = ACTIVATION_FUNCTIONS[activation]
    zs, hs, h = [], [], x
    for layer in range(1, n_layers + 1):
        z = h @ params[f"w{layer}"] + params[f"b{layer}"]
        zs.append(z)
        if layer < n_layers:
            h = act(z)
            hs.append(h)
    return Forward(zs, hs)


def mse_loss(y_onehot: tf.Tensor, out: tf.Tensor) -> tf.Tensor:
    """Mean over the batch of the mean over the 10 outputs of (y - out)^2."""
    return tf.reduce_mean(tf.reduce_mean(tf.square(y_onehot - out), axis=1))


def crossentropy_loss(y_onehot: tf.Tensor, out: tf.Tensor) -> tf.Tensor:
    """Mean over the batch of -sum_k y_k log softmax(out)_k, on the output layer's logits."""
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y_onehot, logits=out))


LOSS_FUNCTIONS = {"mse": mse_loss, "crossentropy": crossentropy_loss}


def accuracy(y_onehot: tf.Tensor, out: tf.Tensor) -> tf.Tensor:
    hits = tf.equal(tf.argmax(out, axis=1), tf.argmax(y_onehot, axis=1))
    return tf.reduce_mean(tf.cast(hits, tf.float32))


def prepare_inputs(images: np.ndarray, input_scale: float) -> np.ndarray:
    """Flattened float32 pixels divided by `input_scale` (the reference divides by 50)."""
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(input_scale)


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(N_CLASSES, dtype=np.float32)[labels]

