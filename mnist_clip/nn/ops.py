"""The TensorFlow pieces layer kinds share: activations, masked means over a padded batch, batch
statistics, normalisation and Keras's initializers."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mnist_clip.nn.layer import BATCH_NORM_MOMENTUM, NORM_EPSILON  # noqa: F401  (re-exported)

INIT_STDDEV = 0.1  # the tutorial's truncated normal

ACTIVATION_FUNCTIONS = {"relu": tf.nn.relu, "sigmoid": tf.sigmoid, "tanh": tf.tanh}


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


def normalize(z: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, mean: tf.Tensor, variance: tf.Tensor) -> tf.Tensor:
    return gamma * (z - mean) / tf.sqrt(variance + NORM_EPSILON) + beta


def image_rows(x: tf.Tensor, rows: int, width: int) -> tf.Tensor:
    """A batch of flattened images [B, rows * width] as sequences [B, rows, width]."""
    return tf.reshape(x, [-1, rows, width])
