"""What a step writes, checked for finiteness in one vectorized read per tensor; and the sums
and norms those reads are made of, which the step's logging uses too."""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from mnist_clip.nn import Net
from mnist_clip.training.optimizers import UpdateRule


def element_sum(values: tf.Tensor, scale: float = 1.0) -> tf.Tensor:
    """The sum of a tensor's elements (times `scale`) as a matrix-vector product, then a sum of
    its rows.

    On XLA:CPU a reduction fused with the computation of its operand runs element by element,
    and every reduction pays a fixed cost besides; the product runs in a vectorized kernel,
    8 to 20 times faster on the nets' tensors. Its additions come in another order than
    tf.reduce_sum's: the same sum to float32 rounding."""
    matrix = tf.reshape(values, [-1, values.shape[-1]] if values.shape.rank >= 2 else [1, -1])
    return tf.reduce_sum(tf.linalg.matvec(matrix, tf.fill([int(matrix.shape[1])], tf.constant(scale, values.dtype))))


def l2_norm(values: tf.Tensor) -> tf.Tensor:
    """tf.norm, by element_sum: for the norms only logged (weights, steps, signals)."""
    return tf.sqrt(element_sum(tf.square(values)))


# Scaled by this, the largest float32 is 2.7e8, and a sum of a million of them stays finite:
# the scaled sum of a tensor is finite exactly when all its elements are.
FINITE_SCALE = 2.0**-100


def nonfinite_kind(tensor: tf.Tensor) -> tf.Tensor:
    """0 when every element is finite, else 1 (the scaled sum is infinite: some element is) or
    2 (it is NaN: some element is NaN, or infinities of both signs). One vectorized read of
    the tensor, nothing computed element by element."""
    total = element_sum(tensor, FINITE_SCALE)
    return tf.where(tf.math.is_nan(total), 2.0, tf.where(tf.math.is_inf(total), 1.0, 0.0))


def first_nonfinite_write(kinds: list[tf.Tensor]) -> tf.Tensor:
    """One number for what a step wrote: 0 if all of it is finite, else 2 i + kind for the first
    written tensor i that is not (kind 1 Inf, 2 NaN); see written_nonfinite."""
    kinds = tf.stack(kinds)
    bad = kinds > 0
    first = tf.argmax(tf.cast(bad, tf.int32), output_type=tf.int32)
    code = 2.0 * tf.cast(first, tf.float32) + tf.gather(kinds, first)
    return tf.where(tf.reduce_any(bad), code, 0.0)


def written_tensors(net: Net, rule: UpdateRule, trained: Sequence[bool]) -> list[tuple[str, str]]:
    """What a step writes, as (what, tensor) in the order it computes it: batch norm's moving
    statistics (in the forward pass), then per trained tensor the optimizer's state (Keras's
    slot names: momentum, velocity) and its new value (the update)."""
    written = [("moving statistic", tensor.name) for tensor in net.state]
    for name, is_trained in zip(net.names, trained):
        if is_trained:
            written += [(slot, name) for slot in rule.slots] + [("update", name)]
    return written


def written_nonfinite(code: float, net: Net, rule: UpdateRule, trained: Sequence[bool]) -> dict | None:
    """What a step's record (its first_nonfinite_write code) says it wrote non-finite first:
    {"what": update, a slot name (momentum, velocity) or moving statistic, "tensor": its name,
    "value": NaN or Inf}; None when everything it wrote was finite."""
    if not code:
        return None
    index = (int(code) - 1) // 2
    what, tensor = written_tensors(net, rule, trained)[index]
    return {"what": what, "tensor": tensor, "value": "NaN" if int(code) - 2 * index == 2 else "Inf"}
